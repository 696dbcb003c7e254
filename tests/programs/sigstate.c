/* What a program inherits about signals, printed from the kernel's own view.
 *
 *   sigstate          print the Sig* lines of /proc/self/status (not SigQ, which
 *                     counts the queued signals of every process of the user)
 *   sigstate pipe     write into a pipe whose reader is gone: with SIGPIPE at its
 *                     default the program dies by it, else it reports EPIPE, exits 3
 *   sigstate wait     print "waiting", then sleep until a signal ends it; a SIGINT
 *                     that arrives ignored or blocked is no end: exits 4 after 60 s
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void print_signal_state(void)
{
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    while (fgets(line, sizeof line, status))
        if ((strncmp(line, "Sig", 3) == 0 && strncmp(line, "SigQ", 4) != 0)
            || strncmp(line, "ShdPnd", 6) == 0)
            fputs(line, stdout);
    fclose(status);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "pipe") == 0) {
        int fds[2];
        pipe(fds);
        close(fds[0]);
        printf("sigstate: writing into a closed pipe\n");
        fflush(stdout);
        if (write(fds[1], "x", 1) < 0)
            printf("sigstate: write failed: %s\n", strerror(errno));
        return 3;
    }
    if (argc > 1 && strcmp(argv[1], "wait") == 0) {
        printf("waiting\n");
        fflush(stdout);
        for (int i = 0; i < 60; i++)
            sleep(1);
        return 4;
    }
    print_signal_state();
    return 0;
}
