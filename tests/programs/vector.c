/* Puts known bytes in ymm2 (and so xmm2) before calling `checkpoint`, so a
 * debugger test can check the extended registers it is shown. Exit status 26. */
#include <stdio.h>

__attribute__((noinline)) static void checkpoint(void)
{
    __asm__ volatile("" ::: "memory");
}

int main(void)
{
    static unsigned char pattern[32];
    for (int i = 0; i < 32; i++)
        pattern[i] = (unsigned char)(i + 1);
    __asm__ volatile("vmovdqu %0, %%ymm2" : : "m"(pattern) : "xmm2");
    checkpoint();
    printf("vector: ymm2 loaded\n");
    return 26;
}
