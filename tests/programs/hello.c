/* The smallest recording: one write(2), exit status 3.
 * Also built with -static as hello_static (no ld.so, no libc mappings). */
#include <unistd.h>

int main(void)
{
    static const char msg[] = "hello, world\n";
    write(STDOUT_FILENO, msg, sizeof msg - 1);
    return 3;
}
