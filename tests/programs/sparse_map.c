/* Maps a whole file (argv[1], a large sparse one) read-only, privately and
 * shared, and prints the bytes at the offsets given after it, as text. With -w
 * first, the shared view is writable (rr's large_hole: the whole file's pages,
 * none of them reserved), and the only one: it writes a line through it at the
 * first offset and reads it back with pread. Exit status 0. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int writable = argc > 1 && strcmp(argv[1], "-w") == 0;
    argv += writable;
    argc -= writable;
    int fd = open(argv[1], writable ? O_RDWR : O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(argv[1]);
        return 1;
    }
    char *shared = mmap(NULL, st.st_size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED,
                        fd, 0);
    /* With -w no private view: its pages would show the line stored through the
     * shared one, which replay does not reproduce (docs/DESIGN.md, Shared mappings). */
    const char *priv = writable ? shared : mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (priv == MAP_FAILED || shared == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    printf("mapped %lld bytes\n", (long long)st.st_size);
    if (writable && argc > 2) {
        static const char line[] = "written through the map";
        char back[sizeof line] = "";
        memcpy(shared + atoll(argv[2]), line, sizeof line);
        pread(fd, back, sizeof line, atoll(argv[2]));
        printf("pread: %s\n", back);
    }
    for (int i = 2; i < argc; i++) {
        long long offset = atoll(argv[i]);
        printf("at %lld: %.16s|%.16s|%d\n", offset, priv + offset, shared + offset,
               shared[offset + 100000]);
    }
    return 0;
}
