/* Code that does not exist when the program starts: maps a page at a fixed
 * address, writes a function into it, makes it executable (and no longer
 * writable, as JITs do) and calls it twice, for breakpoints planted before
 * the address is mapped. The function (at JIT_ADDRESS) returns its argument
 * plus 40: "jit: 42 43", exit status 42. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define JIT_ADDRESS 0x6a1700000000UL

int main(void)
{
    /* lea eax, [rdi + 40]; ret */
    static const unsigned char add_forty[] = {0x8d, 0x47, 0x28, 0xc3};
    void *page = mmap((void *)JIT_ADDRESS, 4096, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (page != (void *)JIT_ADDRESS) {
        perror("mmap");
        return 1;
    }
    memcpy(page, add_forty, sizeof add_forty);
    if (mprotect(page, 4096, PROT_READ | PROT_EXEC) != 0) {
        perror("mprotect");
        return 1;
    }
    int (*generated)(int) = (int (*)(int))page;
    int first = generated(2); // call: first
    int second = generated(3);
    printf("jit: %d %d\n", first, second);
    return first;
}
