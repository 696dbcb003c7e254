/* Job control: the program is stopped (Ctrl-Z, kill -STOP) and continued (fg,
 * kill -CONT), and says what it saw. Output goes to stdout, line by line.
 *
 *   jobctl         "ready", then waits (sigsuspend) until a SIGCONT handler has run;
 *                  a stop signal stops it with the default action
 *   jobctl catch   also catches SIGTSTP as full-screen programs do: says so, stops
 *                  itself with the default action (raise), and says it resumed
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t continued;

static void on_cont(int signo)
{
    (void)signo;
    continued++;
}

static void on_tstp(int signo)
{
    static const char suspending[] = "suspending\n", resumed[] = "resumed\n";
    write(1, suspending, sizeof suspending - 1);
    signal(signo, SIG_DFL);
    sigset_t tstp;  /* blocked while its handler runs: let it stop us now */
    sigemptyset(&tstp);
    sigaddset(&tstp, signo);
    sigprocmask(SIG_UNBLOCK, &tstp, NULL);
    raise(signo);
    signal(signo, on_tstp);
    write(1, resumed, sizeof resumed - 1);
}

int main(int argc, char **argv)
{
    signal(SIGCONT, on_cont);
    if (argc > 1 && strcmp(argv[1], "catch") == 0)
        signal(SIGTSTP, on_tstp);
    sigset_t none;
    sigemptyset(&none);
    printf("ready\n");
    fflush(stdout);
    while (!continued)
        sigsuspend(&none);
    printf("continued: SIGCONT handled %d time(s)\n", (int)continued);
    return 0;
}
