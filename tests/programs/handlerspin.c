/* A signal recorded at a precise state inside the handler of one delivered at a
 * syscall boundary: raise(SIGUSR1) enters on_usr1, which spins in user code until
 * SIGALRM (a one-shot timer of 5 ms) sets the flag. A pass of the spin is a
 * chain of divisions, so the alarm comes after some 10^5 passes. Exit status 0. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

static volatile sig_atomic_t alarms;
static volatile unsigned long spins;
static volatile unsigned long divisor = 1000003;

static void on_alarm(int sig)
{
    alarms = sig;
}

static void on_usr1(int sig)
{
    unsigned long x = (unsigned long)sig;
#define CHURN x = x * 31 % divisor; x = x * 31 % divisor; x = x * 31 % divisor; x = x * 31 % divisor;
    while (!alarms) { spins++; CHURN CHURN CHURN CHURN CHURN CHURN CHURN CHURN } // spin
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
    struct itimerval in_5ms = {{0, 0}, {0, 5000}};
    setitimer(ITIMER_REAL, &in_5ms, NULL);
    raise(SIGUSR1);
    printf("alarm %d in the usr1 handler after %s spins\n", (int)alarms,
           spins > 0 ? "some" : "no");
    return 0;
}
