/* A loop of exactly four instructions an iteration (nop, nop, dec, jnz), for
 * reverse-roll tests: N instructions back from `after_loop` is a known place,
 * identified by rip (the loop head, `loop_head`) and rcx (iterations left).
 * argv[1]: iterations (default 30000); with argv[2], a SIGSEGV after the loop.
 * Exit status 25. */
#include <stdio.h>
#include <stdlib.h>

#define ITERATIONS 30000

int main(int argc, char **argv)
{
    long left, iterations = argc > 1 ? atol(argv[1]) : ITERATIONS;
    printf("roll: %ld iterations\n", iterations);
    fflush(stdout);
    __asm__ volatile(
        "mov %1, %%rcx\n"
        ".globl loop_head\n"
        "loop_head:\n"
        "nop\n"
        "nop\n"
        "dec %%rcx\n"
        "jnz loop_head\n"
        ".globl after_loop\n"
        "after_loop:\n"
        "mov %%rcx, %0\n"
        : "=r"(left)
        : "r"(iterations)
        : "rcx");
    if (argc > 2)
        *(volatile long *)0 = left; /* the crash */
    printf("roll: %ld left\n", left);
    return 25;
}
