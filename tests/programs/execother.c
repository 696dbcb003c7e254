/* execve of another program: argv[1], or the "hello" next to this binary.
 * Prints one line, then becomes hello, so the exit status is hello's 3. */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char target[PATH_MAX];

    if (argc > 1) {
        snprintf(target, sizeof target, "%s", argv[1]);
    } else {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0) {
            perror("readlink /proc/self/exe");
            return 1;
        }
        self[n] = '\0';
        snprintf(target, sizeof target, "%s/hello", dirname(self));
    }

    printf("execother: exec %s\n", strrchr(target, '/') ? strrchr(target, '/') + 1 : target);
    fflush(stdout);
    char *args[] = {"hello", NULL};
    execv(target, args);
    perror("execv");
    return 1;
}
