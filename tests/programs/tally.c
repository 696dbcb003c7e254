/* The reader of a pipeline: sums the numbers on its stdin, one a line, and
 * prints the total (for `sh -c 'numbers | tally'`, debugged with replay -p).
 */
#include <stdio.h>
#include <stdlib.h>

static long total;

static void add(long n)
{
    total += n; /* add: total */
}

int main(void)
{
    char line[64];
    while (fgets(line, sizeof line, stdin))
        add(strtol(line, NULL, 10));
    printf("tally: %ld\n", total);
    return total == 55 ? 0 : 1;
}
