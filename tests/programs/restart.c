/* Sleeps that a signal interrupts, and what the kernel then does with the call.
 *
 *   restart ignored   SIGALRM ignored: natively the signal does not even wake
 *                     nanosleep, and poll; under ptrace it does, and the kernel
 *                     continues each call with restart_syscall
 *   restart handler   a SIGALRM handler without SA_RESTART: nanosleep and a pipe
 *                     read end with EINTR
 *   restart sa_restart  the same handler with SA_RESTART: nanosleep still ends with
 *                     EINTR (never restarted after a handler), the read is restarted
 *                     and gets the byte the handler wrote
 *
 * The timer is set to 200 ms and the program sleeps only while at least 150 ms are
 * left on it (else it sets it again), so the signal arrives during the call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int fds[2];
static volatile sig_atomic_t alarms, reading;

static void on_alarm(int signo)
{
    alarms++;
    if (reading)  /* what a restarted read then gets */
        write(fds[1], "!", 1);
}

/* Set the timer to 200 ms; returns when at least 150 ms are left. */
static void arm(void)
{
    for (;;) {
        struct itimerval timer = {.it_value = {.tv_usec = 200000}}, left;
        setitimer(ITIMER_REAL, &timer, 0);
        getitimer(ITIMER_REAL, &left);
        if (left.it_value.tv_usec >= 150000)
            return;
    }
}

static void show(const char *what, long result)
{
    printf("%-12s %ld %s\n", what, result, result < 0 ? strerrorname_np(errno) : "");
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "ignored";
    pipe(fds);
    struct sigaction action = {.sa_handler = on_alarm};
    if (strcmp(mode, "ignored") == 0)
        action.sa_handler = SIG_IGN;
    else if (strcmp(mode, "sa_restart") == 0)
        action.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &action, 0);

    struct timespec nap = {.tv_sec = 0, .tv_nsec = 600000000}, left = {-1, -1};
    arm();
    long result = nanosleep(&nap, &left);
    show("nanosleep", result);
    if (result < 0)  /* the time left is some of the 600 ms, never more */
        printf("  left in range %s\n",
               left.tv_sec == 0 && left.tv_nsec > 0 && left.tv_nsec < 600000000 ? "yes" : "no");

    if (strcmp(mode, "ignored") == 0) {
        arm();
        show("poll", poll(0, 0, 600));
    } else {
        char byte = 0;
        reading = 1;
        arm();
        show("read", read(fds[0], &byte, 1));
        printf("  byte %c, alarms %d\n", byte ? byte : '-', alarms);
    }
    return 0;
}
