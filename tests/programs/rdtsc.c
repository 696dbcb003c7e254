/* rdtsc and rdtscp run in user space with no syscall; a recorder makes them
 * fault (prctl PR_SET_TSC, PR_TSC_SIGSEGV), emulates them and records the
 * values. Each value is printed ("rdtsc N: value", "rdtscp N: value aux A") for
 * a test to compare with the trace; the last line is the same in every run.
 * Exit status 14. */
#include <stdio.h>
#include <x86intrin.h>

#define READS 5

int main(void)
{
    unsigned long long tsc[2 * READS];
    unsigned int aux[READS];

    for (int i = 0; i < READS; i++)
        tsc[i] = __rdtsc();
    for (int i = 0; i < READS; i++)
        tsc[READS + i] = __rdtscp(&aux[i]);

    for (int i = 0; i < READS; i++)
        printf("rdtsc %d: %llu\n", i, tsc[i]);
    for (int i = 0; i < READS; i++)
        printf("rdtscp %d: %llu aux %u\n", i, tsc[READS + i], aux[i]);

    int increasing = 1;
    for (int i = 1; i < 2 * READS; i++)
        if (tsc[i] < tsc[i - 1])
            increasing = 0;
    printf("deterministic: %d reads, increasing %s\n", 2 * READS, increasing ? "yes" : "no");
    return 14;
}
