/* A CPU loop of at least 2*10^7 iterations that makes no syscall, interrupted by
 * SIGALRM from a 50 ms setitimer (long enough that the recorder is not still at
 * setitimer's exit when it comes); the handler records the loop counter, which
 * differs between native runs and must be the recorded one in a replay.
 * Exit status 24. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

static volatile unsigned long i, at_alarm;
static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{ // enter: alarm
    (void)sig;
    at_alarm = i; // handler: alarm
    alarms++;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval in_50ms = {{0, 0}, {0, 50000}};
    setitimer(ITIMER_REAL, &in_50ms, NULL);
    for (i = 0; i < 20000000 || !alarms; i++) // loop
        ;
    printf("SIGALRM at iteration %lu of %lu\n", at_alarm, i);
    return 24;
}
