/* A loop without a syscall that writes the global g_last every 100th iteration
 * (the iteration number: 1000 writes of new values for 10^5 iterations), for
 * reverse watchpoint walks; g_never is not written in the loop, so a reverse
 * search for it scans the whole loop. argv[1]: iterations (default 100000).
 * Exit status 0. */
#include <stdio.h>
#include <stdlib.h>

volatile long g_last = -1;
volatile long g_never = 7;

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    long sum = 0;
    printf("history: %ld iterations\n", n);
    fflush(stdout);
    for (long i = 0; i < n; i++) {
        sum += i * 7;
        if (i % 100 == 0)
            g_last = i; // write: g_last
    }
    printf("history: last %ld, sum %ld, never %ld\n", g_last, sum, g_never);
    return 0;
}
