/* Signals delivered under the temporary mask of the call they interrupt. SIGUSR1 is
 * blocked and pending when the program waits with a mask of {SIGINT} only, by
 * sigsuspend, ppoll or pselect (argv[1]: suspend, ppoll, pselect; suspend when
 * absent): SIGUSR1 is delivered there, and its handler prints what the frame
 * saved, the mask from before the wait (SIGUSR1 blocked, SIGINT not). Back from
 * the handler the old mask holds again, so a SIGINT the program raises is
 * delivered at once. Prints two lines, exit status 0. */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <ucontext.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int sig, siginfo_t *info, void *context)
{
    (void)info;
    ucontext_t *uc = context;
    if (sig == SIGUSR1)
        printf("usr1 handled; its frame saves usr1 %s, int %s\n",
               sigismember(&uc->uc_sigmask, SIGUSR1) ? "blocked" : "unblocked",
               sigismember(&uc->uc_sigmask, SIGINT) ? "blocked" : "unblocked");
    else
        interrupted = 1;
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "suspend";
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t usr1, only_int;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigemptyset(&only_int);
    sigaddset(&only_int, SIGINT);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    kill(getpid(), SIGUSR1); /* pending: blocked */
    int result;
    if (strcmp(how, "ppoll") == 0)
        result = ppoll(NULL, 0, NULL, &only_int);
    else if (strcmp(how, "pselect") == 0)
        result = pselect(0, NULL, NULL, NULL, NULL, &only_int);
    else
        result = sigsuspend(&only_int);
    kill(getpid(), SIGINT);
    printf("%s returned %d; int %s\n", how, result, interrupted ? "delivered" : "not delivered");
    return 0;
}
