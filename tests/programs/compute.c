/* CPU-bound with no syscall between startup and the final printf: one long
 * event interval. argv[1] is the iteration count (default 200000000, about
 * 0.4 s at -O0 here). Prints the final xorshift64 state; exit status 23. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    unsigned long long iterations = argc > 1 ? strtoull(argv[1], NULL, 0) : 200000000ULL;
    uint64_t x = 0x9e3779b97f4a7c15ULL;

    for (unsigned long long i = 0; i < iterations; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    printf("compute: %llu iterations -> %016llx\n", iterations, (unsigned long long)x);
    return 23;
}
