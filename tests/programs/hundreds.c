/* A loop with no syscall inside it, for conditional breakpoints and value
 * histories: N iterations (argv[1], default 50000), each adding i to `sum`,
 * storing i * i in a slot of `squares` that `slot` then points at, and every
 * 100th one writing `hundreds` (1, 2, 3, ...: i / 100 + 1). Lines a test
 * uses end in a "// loop: NAME" or "// write: NAME" marker. Exit status 0. */
#include <stdio.h>
#include <stdlib.h>

long sum;
long hundreds;
int squares[16];
int *slot = squares;

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 50000;
    for (int i = 0; i < n; i++) {
        sum += i; // loop: body
        squares[i % 16] = i * i;
        slot = &squares[i % 16];
        if (i % 100 == 0)
            hundreds = i / 100 + 1; // write: hundreds
    }
    printf("sum %ld, hundreds %ld\n", sum, hundreds);
    return 0;
}
