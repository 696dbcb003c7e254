/* fork(): the child prints and exits 7, the parent waits for it and exits 19.
 */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    printf("forker: before fork\n");
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        printf("forker: in the child\n");
        fflush(stdout);
        _exit(7);
    }
    int status;
    waitpid(child, &status, 0);
    printf("forker: child exited with %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 19;
}
