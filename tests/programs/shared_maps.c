/* Shared and special mappings, each step printing what the program sees (no
 * addresses): a MAP_SHARED file mapping and the file's fd seeing each other's
 * writes (write, pwrite, writev, msync), the file grown and shrunk under its
 * mapping, a private file mapping seeing writes to its file in the pages it did
 * not copy, /dev/zero and memfd mappings, and mremap of shared and private file
 * mappings: growing in place and into a neighbour (moved), to sizes that are not
 * page multiples, after two mappings coalesced, and a second view of shared pages.
 * argv[1] is a directory for the files. Exit status 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

static size_t page;

/* FNV-1a, 64 bits. */
static unsigned long long checksum(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return (unsigned long long)h;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 13 + seed);
}

static void *map(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = mmap(addr, len, prot, flags, fd, off);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

static char *pread_str(int fd, size_t n, off_t off)
{
    static char buf[64];
    memset(buf, 0, sizeof buf);
    if (pread(fd, buf, n, off) < 0)
        perror("pread");
    return buf;
}

static void shared_file(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/shared.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    unsigned char *init = malloc(2 * page);
    fill(init, 2 * page, 1);
    if (write(fd, init, 2 * page) != (ssize_t)(2 * page))
        perror("write");
    free(init);
    /* Four pages of a two-page file: the last two are past its end for now. */
    unsigned char *m = map(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("shared file mapped: %016llx\n", checksum(m, 2 * page));

    memcpy(m + 100, "through the mapping", 19);
    printf("pread sees the mapping's store: %s\n", pread_str(fd, 19, 100));
    pwrite(fd, "by pwrite", 9, page + 10);
    printf("mapping sees pwrite: %.9s\n", (char *)m + page + 10);
    lseek(fd, 200, SEEK_SET);
    write(fd, "by write", 8);
    printf("mapping sees write: %.8s\n", (char *)m + 200);
    struct iovec iov[2] = {{"by ", 3}, {"writev", 6}};
    writev(fd, iov, 2);
    printf("mapping sees writev: %.9s\n", (char *)m + 208);
    memcpy(m + 300, "synced", 6);
    printf("msync: %d, pread: %s\n", msync(m, page, MS_SYNC), pread_str(fd, 6, 300));

    /* Grown under its mapping: page 2 reads zeros, then what pwrite put there. */
    printf("ftruncate to 3 pages: %d\n", ftruncate(fd, 3 * page));
    printf("page 2 after the growth: %016llx\n", checksum(m + 2 * page, page));
    pwrite(fd, "grown", 5, 2 * page + 7);
    printf("page 2 after pwrite: %.5s\n", (char *)m + 2 * page + 7);
    /* A write at the end grows it by itself. */
    lseek(fd, 0, SEEK_END);
    write(fd, "appended", 8);
    printf("appended through the fd: %.8s\n", (char *)m + 3 * page);
    /* Shrunk, then grown again: what was cut off is gone. */
    ftruncate(fd, page + 50);
    ftruncate(fd, 2 * page);
    printf("after shrink and regrowth: %.9s|%016llx\n", (char *)m + page + 10,
           checksum(m + page + 50, page - 50));
    printf("whole mapping: %016llx\n", checksum(m, 2 * page));

    /* A private mapping of the same file: untouched pages follow the file. The page
     * after it is taken, by a PROT_NONE part of the reservation it is made in. */
    unsigned char *p = map(NULL, 3 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p = map(p, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
    p[0] = 'P';  /* page 0 is now the mapping's own copy */
    pwrite(fd, "file0", 5, 0);
    pwrite(fd, "file1", 5, page);
    printf("private mapping: page 0 %.5s (own copy), page 1 %.5s (the file)\n",
           (char *)p, (char *)p + page);

    /* mremap of a private file mapping: grown, moved (page 1 of `p` is taken). */
    ftruncate(fd, 4 * page);
    pwrite(fd, "page3", 5, 3 * page);
    unsigned char *blocker = p + 2 * page;
    unsigned char *q = mremap(p, 2 * page, 4 * page - 1000, MREMAP_MAYMOVE);
    printf("private file mremap 2 -> 4 pages: moved %s, own copy kept %.5s, page 3 %.5s\n",
           q != p ? "yes" : "no", (char *)q, (char *)q + 3 * page);
    /* MADV_DONTNEED drops the private copy: page 0 shows the file again. */
    printf("private page 0 after MADV_DONTNEED: %d, %.5s\n", madvise(q, page, MADV_DONTNEED),
           (char *)q);
    munmap(q, 4 * page);
    munmap(blocker, page);
    /* ... and changes nothing in a shared mapping. */
    memcpy(m + 400, "kept", 4);
    printf("shared page 0 after MADV_DONTNEED: %d, %.4s\n", madvise(m, page, MADV_DONTNEED),
           (char *)m + 400);

    /* mremap of the shared mapping: shrunk to a size that is not a page multiple,
     * then grown back in place. */
    unsigned char *s = mremap(m, 4 * page, 2 * page + 123, 0);
    unsigned char *t = mremap(s, 2 * page + 123, 4 * page, 0);
    printf("shared mremap shrink/grow in place: %s, page 3 %.5s\n",
           s == m && t == m ? "yes" : "no", (char *)t + 3 * page);
    /* A second view of the same pages, made while they hold this. */
    unsigned char *dup = mremap(t, 0, page, MREMAP_MAYMOVE);
    printf("second view of page 0: %.5s\n", dup == MAP_FAILED ? "fail" : (char *)dup);
    munmap(dup, page);
    munmap(t, 4 * page);
    close(fd);
    unlink(path);
}

static void dev_zero(void)
{
    int fd = open("/dev/zero", O_RDWR);
    unsigned char *s = map(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    unsigned char *p = map(NULL, 2 * page + 1, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    printf("/dev/zero zeros: %016llx %016llx\n", checksum(s, 3 * page), checksum(p, 2 * page));
    fill(s, 3 * page, 2);
    fill(p, 2 * page, 3);
    printf("/dev/zero written: %016llx %016llx\n", checksum(s, 3 * page),
           checksum(p, 2 * page));
    /* Shrink the shared one, then move it. */
    unsigned char *moved = mremap(s, 3 * page, page + 10, 0);
    printf("/dev/zero shared shrunk: %016llx\n", checksum(moved, page));
    munmap(moved, page + 10);
    munmap(p, 2 * page + 1);
}

static void memfd(void)
{
    int fd = memfd_create("retrograde-test", 0);
    ftruncate(fd, 3 * page);
    unsigned char *m = map(NULL, 4 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *blocker = m + 3 * page;
    m = map(m, 3 * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    pwrite(fd, "from the fd", 11, 42);
    printf("memfd mapping sees pwrite: %.11s\n", (char *)m + 42);
    memcpy(m + page, "from the mapping", 16);
    printf("memfd pread sees the mapping: %s\n", pread_str(fd, 16, page));
    /* Grown, and the mapping with it: it has to move (the next page is taken). */
    ftruncate(fd, 5 * page);
    pwrite(fd, "tail", 4, 4 * page + 1);
    unsigned char *g = mremap(m, 3 * page, 5 * page - 7, MREMAP_MAYMOVE);
    printf("memfd mremap 3 -> 5 pages: moved %s, kept %.11s|%.16s, tail %.4s\n",
           g != m ? "yes" : "no", (char *)g + 42, (char *)g + page, (char *)g + 4 * page + 1);
    printf("memfd whole: %016llx\n", checksum(g, 5 * page));
    munmap(blocker, page);
    memcpy(g + 4 * page + 1, "TAIL", 4);
    munmap(g, 5 * page);
    /* Mapped again: the stores through the old mapping are in the memfd. */
    unsigned char *again = map(NULL, 5 * page, PROT_READ, MAP_PRIVATE, fd, 0);
    printf("memfd mapped again: %.4s, %016llx\n", (char *)again + 4 * page + 1,
           checksum(again, 5 * page));
    munmap(again, 5 * page);
    close(fd);
}

static void coalesced(void)
{
    /* Two mmaps side by side with equal protection are one mapping to the kernel;
     * mremap takes them as one. */
    unsigned char *a = map(NULL, 4 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(a, 4 * page);
    unsigned char *lo = map(a, page, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    unsigned char *hi = map(a + page, page, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    fill(lo, page, 4);
    fill(hi, page, 5);
    unsigned long long before = checksum(lo, 2 * page);
    unsigned char *g = mremap(lo, 2 * page, 3 * page + 5, MREMAP_MAYMOVE);
    printf("coalesced mremap: %s, kept %s\n", g == MAP_FAILED ? "failed" : "done",
           g != MAP_FAILED && checksum(g, 2 * page) == before ? "yes" : "no");
    munmap(g, 4 * page);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: shared_maps DIR\n");
        return 2;
    }
    page = (size_t)sysconf(_SC_PAGESIZE);
    shared_file(argv[1]);
    dev_zero();
    memfd();
    coalesced();
    return 0;
}
