/* Signals to step into and over from a debugger:
 *  - raise(SIGUSR1): delivered at the syscall boundary of the kill
 *  - SIGALRM from a one-shot setitimer while the program spins in user code
 *    (no syscall until the handler sets the flag): delivered at a precise state.
 *    5 ms, so that the recorder is not still at setitimer's exit when it comes.
 *    A pass of the spin is a chain of 32 divisions (about 200 ns), all on one
 *    line: the signal comes after some 10^5 passes of whatever instruction it
 *    interrupts (replay reaches up to 10^6 arrivals by execution), and at the
 *    spin's line wherever in the pass it lands.
 * Each handler's lines are marked ("// enter: NAME", "// handler: NAME") for a test to find.
 * Exit status 23. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

static volatile sig_atomic_t usr1s, alarms;
static volatile unsigned long spins, spins_at_alarm;
static volatile unsigned long divisor = 1000003; /* volatile: a real division */

static void on_usr1(int sig)
{ // enter: usr1
    usr1s += sig; // handler: usr1
}

static void on_alarm(int sig)
{ // enter: alarm
    spins_at_alarm = spins; // handler: alarm
    alarms++;
}

static void handle(int sig, void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

int main(void)
{
    handle(SIGUSR1, on_usr1);
    handle(SIGALRM, on_alarm);
    raise(SIGUSR1);
    usr1s += 100; // after: raise
    struct itimerval in_5ms = {{0, 0}, {0, 5000}};
    setitimer(ITIMER_REAL, &in_5ms, NULL);
    unsigned long x = 1;
#define CHURN x = x * 31 % divisor; x = x * 31 % divisor; x = x * 31 % divisor; x = x * 31 % divisor;
    while (!alarms) { spins++; CHURN CHURN CHURN CHURN CHURN CHURN CHURN CHURN } // spin
    printf("usr1s %d, alarms %d, spins at the alarm: %s\n", (int)usr1s, (int)alarms,
           spins_at_alarm > 0 ? "some" : "none");
    return 23;
}
