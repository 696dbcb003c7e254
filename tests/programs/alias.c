/* Two views of the same shared pages, each store through one read through the
 * other: a memfd mapped twice, a file mapped twice, a second view of shared
 * anonymous memory made by mremap with old_size 0, and a ring buffer (one memfd
 * page mapped twice in a row) written across its end. A counter kept through one
 * view and printed through the other, one write(2) a step, shows each step.
 * argv[1] is a scratch directory. Exit status 0. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *map(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = mmap(addr, len, prot, flags, fd, off);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char line[256];
    setvbuf(stdout, NULL, _IONBF, 0);

    int mfd = memfd_create("alias", 0);
    ftruncate(mfd, 2 * page);
    volatile unsigned *a = map(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    volatile unsigned *b = map(NULL, page, PROT_READ, MAP_SHARED, mfd, page);
    for (int i = 0; i < 12; i++) {
        a[page / sizeof *a] += 3;  /* page 1 of a is page 0 of b */
        snprintf(line, sizeof line, "memfd step %d: %u\n", i, b[0]);
        write(1, line, strlen(line));
    }

    char path[4096];
    snprintf(path, sizeof path, "%s/alias.dat", argv[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ftruncate(fd, page);
    char *f1 = map(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *f2 = map(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    strcpy(f1, "through the first view");
    printf("file, second view: %s\n", f2);
    strcpy(f2 + 100, "through the second view");
    printf("file, first view: %s\n", f1 + 100);
    pwrite(fd, "by pwrite", 9, 200);
    printf("file, both views: %s %s\n", f1 + 200, f2 + 200);
    close(fd);
    unlink(path);

    char *anon = map(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char *dup = mremap(anon, 0, page, MREMAP_MAYMOVE);
    strcpy(dup, "through the dup");
    printf("anonymous, original view: %s\n", anon);

    int rfd = memfd_create("ring", 0);
    ftruncate(rfd, page);
    char *ring = map(NULL, 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    map(ring, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, rfd, 0);
    map(ring + page, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, rfd, 0);
    memcpy(ring + page - 5, "wrapped around", 14);
    printf("ring: %.9s|%.5s\n", ring, ring + page - 5);
    for (int i = 0; i < 12; i++) {
        ring[page + 1000] += 1;
        snprintf(line, sizeof line, "ring step %d: %d\n", i, ring[1000]);
        write(1, line, strlen(line));
    }
    return 0;
}
