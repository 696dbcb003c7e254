/* Takes a path by the low bit of rdrand: odd, getppid; even, getpid; N rounds.
 *
 *   rdrand N          one rdrand site: recorded, the replay takes the same paths
 *   rdrand N seed     the same with rdseed
 *   rdrand N five     five rdrand sites and the rdseed: more than the four debug
 *                     registers the recorder watches them with. The branch is on the
 *                     last one, whose values are not recorded: a replay takes another
 *                     path with probability 1 - 2^-N, and the divergence must name
 *                     that rdrand and its pc
 *
 * Prints the sum of the low bits, which a replay must reproduce. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RANDOM_SITE(name, insn)                                          \
    __attribute__((noinline)) static unsigned long name(void)          \
    {                                                                    \
        unsigned long value;                                             \
        unsigned char ok;                                                \
        do                                                               \
            __asm__ volatile(insn " %0; setc %1" : "=r"(value), "=qm"(ok)); \
        while (!ok);                                                     \
        return value;                                                    \
    }

/* In address order: the recorder watches the first four, so site4 and site5 run
 * unrecorded. */
RANDOM_SITE(site1, "rdrand")
RANDOM_SITE(seed, "rdseed")
RANDOM_SITE(site2, "rdrand")
RANDOM_SITE(site3, "rdrand")
RANDOM_SITE(site4, "rdrand")
RANDOM_SITE(site5, "rdrand")

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    const char *mode = argc > 2 ? argv[2] : "";
    unsigned long ones = 0;
    for (int i = 0; i < rounds; i++) {
        unsigned long word;
        if (strcmp(mode, "five") == 0)
            word = site1() ^ site2() ^ site3() ^ site4() ^ (site5() & 1);
        else if (strcmp(mode, "seed") == 0)
            word = seed();
        else
            word = site1();
        if (strcmp(mode, "five") == 0 ? site5() & 1 : word & 1)
            getppid();
        else
            getpid();
        ones += word & 1;
    }
    printf("rdrand: %d rounds, %lu odd\n", rounds, ones);
    return 0;
}
