/* Two file mappings side by side at consecutive offsets, which the kernel keeps as
 * one, made while the file changed between them (so replay's copies of the file
 * differ), then grown by mremap as one and moved: shared, then private. argv[1] is
 * a scratch directory. Exit status 0. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char path[4096]; snprintf(path, sizeof path, "%s/c.dat", argv[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ftruncate(fd, 4 * page);
    pwrite(fd, "zero", 4, 0); pwrite(fd, "one", 3, page); pwrite(fd, "two", 3, 2 * page);
    for (int shared = 1; shared >= 0; shared--) {
        int flags = shared ? MAP_SHARED : MAP_PRIVATE;
        char *r = mmap(NULL, 8 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        char *a = mmap(r, page, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, 0);
        pwrite(fd, shared ? "ONE" : "uno", 3, page);  /* the file changes between the two */
        char *b = mmap(r + page, page, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, page);
        munmap(r + 2 * page, 6 * page);
        char *m = mremap(a, 2 * page, 3 * page, MREMAP_MAYMOVE);
        printf("%s coalesced mremap: %s %.4s %.3s %.3s\n", shared ? "shared" : "private",
               m == MAP_FAILED ? "failed" : "done", m, m + page, m + 2 * page);
        char *s = mremap(m, 3 * page, 3 * page, MREMAP_MAYMOVE | MREMAP_FIXED, r + 4 * page);
        printf("moved: %s %.3s\n", s == MAP_FAILED ? "failed" : "done", s + page);
        (void)b;
        munmap(s, 3 * page);
    }
    unlink(path);
    return 0;
}
