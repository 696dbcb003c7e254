/* getrandom(2): 16 bytes that differ in every native run and must be the
 * recorded ones in a replay. Exit status 13. */
#include <stdio.h>
#include <sys/random.h>

int main(void)
{
    unsigned char bytes[16];
    ssize_t n = getrandom(bytes, sizeof bytes, 0);

    printf("getrandom returned %zd\n", n);
    printf("random: ");
    for (size_t i = 0; i < sizeof bytes; i++)
        printf("%02x", bytes[i]);
    printf("\n");
    return 13;
}
