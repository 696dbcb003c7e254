/* execve of itself: generation 0 prints and re-executes /proc/self/exe with
 * argument "1"; generation 1 prints and exits with status 18. The buffered
 * line is flushed before execve, which would otherwise drop it. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int generation = argc > 1 ? atoi(argv[1]) : 0;

    printf("execself generation %d, argc %d\n", generation, argc);
    if (generation == 0) {
        fflush(stdout);
        char *args[] = {argv[0], "1", NULL};
        execv("/proc/self/exe", args);
        perror("execv");
        return 1;
    }
    return 18;
}
