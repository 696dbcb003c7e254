/* Maps a whole file (argv[1], a large sparse one) read-only, privately and
 * shared, and prints the bytes at the offsets given after it, as text. Exit
 * status 0. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(argv[1]);
        return 1;
    }
    const char *priv = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    const char *shared = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (priv == MAP_FAILED || shared == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    printf("mapped %lld bytes\n", (long long)st.st_size);
    for (int i = 2; i < argc; i++) {
        long long offset = atoll(argv[i]);
        printf("at %lld: %.16s|%.16s|%d\n", offset, priv + offset, shared + offset,
               shared[offset + 100000]);
    }
    return 0;
}
