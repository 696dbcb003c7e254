/* Buffered and traced calls interleaved, with signals arriving during the buffered
 * stretches (record --syscall-buffer). argv[1]: a regular file to read, argv[2]: rounds.
 * Each round lseeks, preads, reads, fstats and reads the clock (buffered), and every
 * 50th round writes into a pipe and reads it back (traced: a pipe may block). SIGALRM
 * every millisecond runs a handler that makes buffered calls of its own. A thread
 * blocks in a read of a second pipe until main writes it. A child execs `sh -c` to
 * print its LD_PRELOAD, which the library must have taken away. Exit status 42. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile long alarms, handler_pid_ok;
static int blocked_pipe[2];
static char thread_got[16];

static void on_alarm(int signo)
{
    (void)signo;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    handler_pid_ok += getpid() > 0;
    alarms++;
}

static void *reader(void *arg)
{
    (void)arg;
    ssize_t n = read(blocked_pipe[0], thread_got, sizeof thread_got - 1);
    if (n > 0)
        thread_got[n] = 0;
    return NULL;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "/etc/services";
    long rounds = argc > 2 ? strtol(argv[2], NULL, 0) : 20000;
    int fd = open(path, O_RDONLY);
    int loop[2];
    if (fd < 0 || pipe(loop) || pipe(blocked_pipe))
        return 1;
    /* The alarms go to main (the thread starts with them blocked): it only blocks. */
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm, NULL);
    pthread_t thread;
    pthread_create(&thread, NULL, reader, NULL);
    pthread_sigmask(SIG_UNBLOCK, &alarm, NULL);

    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval every_ms = {{0, 2000}, {0, 2000}};
    setitimer(ITIMER_REAL, &every_ms, NULL);

    unsigned long sum = 0;
    char buf[256];
    struct stat st;
    for (long i = 0; i < rounds; i++) {
        lseek(fd, (i * 37) % 4096, SEEK_SET);
        ssize_t n = read(fd, buf, 64);
        for (ssize_t j = 0; j < n; j++)
            sum = sum * 31 + (unsigned char)buf[j];
        n = pread(fd, buf, sizeof buf, (i * 91) % 8192);
        for (ssize_t j = 0; j < n; j++)
            sum = sum * 7 + (unsigned char)buf[j];
        fstat(fd, &st);
        sum += (unsigned long)st.st_size;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        sum ^= (unsigned long)ts.tv_nsec & 0xff;
        if (i % 4 == 0) {
            char token[8], back[8];
            snprintf(token, sizeof token, "%ld", i % 9973);
            write(loop[1], token, sizeof token);
            read(loop[0], back, sizeof back);
            sum += (unsigned long)back[0];
        }
        if (i == rounds / 2)
            write(blocked_pipe[1], "half way", 8);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    pthread_join(thread, NULL);

    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        execl("/bin/sh", "sh", "-c", "echo child LD_PRELOAD=\"[$LD_PRELOAD]\"", (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(child, &status, 0);
    const char *preload = getenv("LD_PRELOAD");
    printf("sum %lu alarms %ld handler %ld thread '%s' child %d own LD_PRELOAD [%s]\n", sum,
           alarms, handler_pid_ok, thread_got, WEXITSTATUS(status), preload ? preload : "");
    return 42;
}
