/* The writer of a pipeline: prints the numbers 1 to 10, one a line (for
 * `sh -c 'numbers | tally'`, debugged with replay -p).
 */
#include <stdio.h>

int main(void)
{
    for (int i = 1; i <= 10; i++)
        printf("%d\n", i);
    return 0;
}
