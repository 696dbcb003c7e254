/* Takes a path by the low bit of rdrand: odd, getppid; even, getpid; and says which.
 * Recorded once, a replay takes the other path about half of the time, and the
 * divergence must name the rdrand and its pc. `rdrand N` does it N times, so that
 * a replay diverges with probability 1 - 2^-N. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) static unsigned long random_word(void)
{
    unsigned long value;
    unsigned char ok;
    do
        __asm__ volatile("rdrand %0; setc %1" : "=r"(value), "=qm"(ok));
    while (!ok);
    return value;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    for (int i = 0; i < rounds; i++) {
        if (random_word() & 1)
            getppid();
        else
            getpid();
    }
    printf("rdrand: %d rounds\n", rounds);
    return 0;
}
