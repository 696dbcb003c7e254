/* Signals to the program's whole process group, as a program that ends its own
 * job does: kill(0, SIGUSR1) is handled, kill(0, SIGABRT) kills it. Under
 * `retrograde record` the recorder is in that group too and must outlive both. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t usr1s;

static void on_usr1(int sig)
{
    usr1s += sig;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    kill(0, SIGUSR1);
    printf("usr1 handled: %d\n", (int)usr1s);
    fflush(stdout);
    kill(0, SIGABRT);
    printf("not reached\n");
    return 0;
}
