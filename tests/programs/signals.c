/* Signals, synchronous and asynchronous, each phase printing a count:
 *  - SIGSEGV from a NULL write, recovered with siglongjmp, three times
 *  - SIGFPE from an integer division by zero, recovered the same way
 *  - alarm(1) + pause(): one SIGALRM, pause fails with EINTR (takes 1 s)
 *  - setitimer(ITIMER_REAL, 10 ms): exactly 5 ticks while in a pause loop
 *    (the fifth tick's handler disarms the timer)
 *  - sigqueue of SIGRTMIN+1 three times while blocked: queued, then
 *    delivered in order with their values when unblocked
 *  - sigaltstack: a SIGUSR1 handler with SA_ONSTACK runs on the alternate stack
 * Exit status 16. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define TICKS 5

static sigjmp_buf recover;
static int *volatile null_pointer;
static volatile int zero;
static volatile sig_atomic_t segvs, fpes, alarms, ticks;
static volatile int rt_values[8], rt_count, rt_all_si_queue = 1;
static volatile int handler_on_altstack = -1, kernel_says_onstack = -1;
static char altstack[64 * 1024];

static void handle(int sig, void (*handler)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

static void on_fault(int sig)
{
    if (sig == SIGSEGV)
        segvs++;
    else
        fpes++;
    siglongjmp(recover, sig);
}

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static void on_tick(int sig)
{
    static const struct itimerval disarm;
    (void)sig;
    if (ticks < TICKS && ++ticks == TICKS)
        setitimer(ITIMER_REAL, &disarm, NULL);
}

static void on_rt(int sig, siginfo_t *si, void *ucontext)
{
    (void)sig;
    (void)ucontext;
    if (rt_count < 8)
        rt_values[rt_count++] = si->si_value.sival_int;
    if (si->si_code != SI_QUEUE)
        rt_all_si_queue = 0;
}

static void on_usr1(int sig)
{
    char local;
    stack_t now;
    (void)sig;
    uintptr_t here = (uintptr_t)&local, base = (uintptr_t)altstack;
    handler_on_altstack = here >= base && here < base + sizeof altstack;
    sigaltstack(NULL, &now);
    kernel_says_onstack = (now.ss_flags & SS_ONSTACK) != 0;
}

int main(void)
{
    handle(SIGSEGV, on_fault, 0);
    handle(SIGFPE, on_fault, 0);
    for (int i = 0; i < 3; i++)
        if (sigsetjmp(recover, 1) == 0)
            *null_pointer = i;
    if (sigsetjmp(recover, 1) == 0)
        zero = 100 / zero;
    printf("SIGSEGV recoveries from a NULL write: %d\n", (int)segvs);
    printf("SIGFPE recoveries from a division by zero: %d\n", (int)fpes);

    handle(SIGALRM, on_alarm, 0);
    alarm(1);
    int paused = pause();
    int pause_errno = errno;
    printf("alarm(1) + pause: %d SIGALRM, pause returned %d %s\n", (int)alarms, paused,
           pause_errno == EINTR ? "EINTR" : strerror(pause_errno));

    handle(SIGALRM, on_tick, 0);
    struct itimerval every_10ms = {{0, 10000}, {0, 10000}};
    setitimer(ITIMER_REAL, &every_10ms, NULL);
    while (ticks < TICKS)
        pause();
    printf("setitimer 10 ms: %d ticks in a pause loop\n", (int)ticks);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN + 1, &sa, NULL);
    sigset_t rt, pending;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &rt, NULL);
    for (int i = 1; i <= 3; i++)
        sigqueue(getpid(), SIGRTMIN + 1, (union sigval){.sival_int = i * 14});
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGRTMIN + 1);
    int before_unblock = rt_count;
    sigprocmask(SIG_UNBLOCK, &rt, NULL);
    printf("sigqueue SIGRTMIN+1 x3 while blocked: pending %s, delivered before unblock %d, "
           "after: %d with values", was_pending ? "yes" : "no", before_unblock, rt_count);
    for (int i = 0; i < rt_count; i++)
        printf(" %d", rt_values[i]);
    printf(", all SI_QUEUE %s\n", rt_all_si_queue ? "yes" : "no");

    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    handle(SIGUSR1, on_usr1, SA_ONSTACK);
    raise(SIGUSR1);
    printf("sigaltstack: handler's local on the alternate stack %s, SS_ONSTACK %s\n",
           handler_on_altstack == 1 ? "yes" : "no", kernel_says_onstack == 1 ? "yes" : "no");
    return 16;
}
