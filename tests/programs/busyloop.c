/* A SIGALRM that arrives while the program spins in user space, making no
 * syscall, until the handler sets a flag:
 *
 *     while (!flag) spins++;
 *
 * The recorder cannot hold the signal to the next syscall (there is none until
 * the flag is set); it must deliver it inside the loop and record where, and a
 * replay must deliver it at the same iteration. "spins: N" differs between
 * native runs and must be the recorded N in a replay.
 *
 * The timer is setitimer(ITIMER_REAL, 50 ms); with argument "alarm" it is
 * alarm(1) instead. Exit status 17. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t flag;

static void on_alarm(int sig)
{
    (void)sig;
    flag = 1;
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);

    int use_alarm = argc > 1 && strcmp(argv[1], "alarm") == 0;
    if (use_alarm) {
        alarm(1);
    } else {
        struct itimerval in_50ms = {{0, 0}, {0, 50000}};
        setitimer(ITIMER_REAL, &in_50ms, NULL);
    }

    unsigned long spins = 0;
    while (!flag)
        spins++;

    printf("got SIGALRM from %s after spinning: %s\n", use_alarm ? "alarm(1)" : "setitimer 50 ms",
           spins > 0 ? "yes" : "no");
    printf("spins: %lu\n", spins);
    return 17;
}
