/* A CPU loop that makes no syscall until SIGALRM comes, from a timer on the
 * process's own CPU time (timer_create on CLOCK_PROCESS_CPUTIME_ID), so that
 * the loop runs for the same time however loaded the machine is: with the
 * default 5 ms, a few 10^5 passes of its body here (more under recording,
 * which holds the signal a while hoping for a syscall). Each pass mixes a state
 * through a chain of 32 multiply-adds; the handler prints the pass and the state,
 * which differ between native runs and must be the recorded ones in a replay.
 * Argument: the timer in microseconds. Exit status 29. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile unsigned long i, at_alarm, state_at_alarm;
static volatile sig_atomic_t alarms;
static unsigned long state = 1;

static void on_alarm(int sig)
{ // enter: alarm
    (void)sig;
    at_alarm = i;
    state_at_alarm = state;
    alarms++;
}

#define STEP x = x * 6364136223846793005UL + 1442695040888963407UL;
#define STEPS8 STEP STEP STEP STEP STEP STEP STEP STEP

#define STEPS32 STEPS8 STEPS8 STEPS8 STEPS8

static unsigned long mix(unsigned long x)
{
    STEPS32 // mix
#ifdef HEAVY /* 192 steps a pass, about six times as long (bench/sections.py) */
    STEPS32 STEPS32 STEPS32 STEPS32 STEPS32
#endif
    return x;
}

int main(int argc, char **argv)
{
    long usec = argc > 1 ? atol(argv[1]) : 5000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGALRM;
    timer_t timer;
    if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &sev, &timer) != 0)
        return 1;
    struct itimerspec once = {{0, 0}, {usec / 1000000, usec % 1000000 * 1000}};
    timer_settime(timer, 0, &once, NULL);
    for (i = 0; !alarms; i++) // loop
        state = mix(state) + i; // pass
    printf("SIGALRM at pass %lu of %lu, state %lx\n", at_alarm, i, state_at_alarm);
    return 29;
}
