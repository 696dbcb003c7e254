/* The mmap family, each with a printed checksum or fact and no addresses (they
 * change with ASLR): anonymous and file mmap, MAP_FIXED over a mapping, munmap
 * of a middle page (mincore says ENOMEM), mprotect, mremap that must grow
 * and move, brk via sbrk, and madvise(MADV_DONTNEED) that zeroes a private
 * anonymous mapping. Exit status 15. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* FNV-1a, 64 bits. */
static uint64_t checksum(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7 + seed);
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static const char *yes(int b)
{
    return b ? "yes" : "no";
}

int main(void)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char vec[1];

    /* Anonymous, then a hole punched in the middle. */
    unsigned char *anon = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    fill(anon, 4 * page, 1);
    printf("anon 4 pages: %016llx\n", (unsigned long long)checksum(anon, 4 * page));
    printf("munmap page 1: %d\n", munmap(anon + page, page));
    int gone = mincore(anon + page, page, vec) < 0 && errno == ENOMEM;
    printf("page 1 unmapped: %s, pages 2-3 kept: %016llx\n", yes(gone),
           (unsigned long long)checksum(anon + 2 * page, 2 * page));

    /* mprotect read-only and back. */
    printf("mprotect page 0 read-only: %d\n", mprotect(anon, page, PROT_READ));
    uint64_t ro = checksum(anon, page);
    printf("mprotect page 0 read-write: %d\n", mprotect(anon, page, PROT_READ | PROT_WRITE));
    anon[0] ^= 0xff;
    printf("page 0 read-only: %016llx, after a write: %016llx\n", (unsigned long long)ro,
           (unsigned long long)checksum(anon, page));

    /* MAP_FIXED replaces page 3 with fresh zero pages. */
    void *fixed = mmap(anon + 3 * page, page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("MAP_FIXED at page 3: same address %s, zeroed %s\n", yes(fixed == anon + 3 * page),
           yes(all_zero(anon + 3 * page, page)));
    munmap(anon, page);
    munmap(anon + 2 * page, 2 * page);

    /* A private mapping of our own executable; writes stay in this process. */
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    unsigned char *exe = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (exe == MAP_FAILED) {
        perror("mmap /proc/self/exe");
        return 1;
    }
    printf("exe mapped: ELF magic %s, 64-bit %s\n", yes(memcmp(exe, "\x7f" "ELF", 4) == 0),
           yes(exe[4] == 2));
    exe[0] = 'X';
    printf("exe private write: %c%c%c%c\n", exe[0], exe[1], exe[2], exe[3]);
    munmap(exe, page);

    /* mremap: the page after `grow` belongs to another mapping (different
     * protection), so growing from 1 to 4 pages has to move. */
    unsigned char *grow = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(grow + page, page, PROT_READ);
    fill(grow, page, 3);
    uint64_t before = checksum(grow, page);
    unsigned char *moved = mremap(grow, page, 4 * page, MREMAP_MAYMOVE);
    if (moved == MAP_FAILED) {
        perror("mremap");
        return 1;
    }
    printf("mremap 1 -> 4 pages: moved %s, contents kept %s, new pages zero %s\n",
           yes(moved != grow), yes(checksum(moved, page) == before),
           yes(all_zero(moved + page, 3 * page)));
    fill(moved + 3 * page, page, 4);
    printf("mremap last page written: %016llx\n",
           (unsigned long long)checksum(moved + 3 * page, page));
    munmap(moved, 4 * page);
    munmap(grow + page, page);

    /* brk: grow by 16 pages, use them, give them back. stdout's buffer is
     * already allocated, so malloc does not move the break in between. */
    unsigned char *brk0 = sbrk(0);
    unsigned char *heap = sbrk(16 * page);
    fill(heap, 16 * page, 5);
    uint64_t heap_sum = checksum(heap, 16 * page);
    sbrk(-(intptr_t)(16 * page));
    unsigned char *brk1 = sbrk(0);
    printf("sbrk 16 pages: from old break %s, checksum %016llx, shrunk back %s\n",
           yes(heap == brk0), (unsigned long long)heap_sum, yes(brk1 == brk0));

    /* MADV_DONTNEED on private anonymous memory: the next read sees zeros. */
    unsigned char *dn = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(dn, 0x5a, 2 * page);
    printf("before MADV_DONTNEED: %016llx\n", (unsigned long long)checksum(dn, 2 * page));
    int advised = madvise(dn, 2 * page, MADV_DONTNEED);
    printf("madvise: %d, zeros afterwards: %s\n", advised, yes(all_zero(dn, 2 * page)));
    munmap(dn, 2 * page);
    return 15;
}
