/* Dies of an unhandled SIGSEGV (a NULL write two calls deep) after a flushed
 * line: a recording that ends in a fatal signal. subprocess reports -11. */
#include <stdio.h>

static int *volatile target;

static void write_through(int *p, int value)
{
    *p = value;
}

static void crash(void)
{
    write_through(target, 42);
}

int main(void)
{
    printf("fatal: about to write through NULL\n");
    fflush(stdout);
    crash();
    printf("fatal: still alive\n");
    return 0;
}
