/* Process trees for the recording of processes, one per mode. Each prints what it
 * saw and exits 0 unless said otherwise.
 *
 *   procs forkexec    fork; the child execs /bin/echo through a pipe; the parent
 *                     reads the pipe, prints it, and reports the child's status
 *   procs vfork       vfork; the child _exits 4 at once; the parent reports it
 *   procs spawn       posix_spawn of /bin/true (glibc: clone3 CLONE_VM|CLONE_VFORK)
 *   procs crash       a child dereferences NULL; the parent reports SIGSEGV
 *   procs forks       100 sequential forks, each child exits with its number % 50
 *   procs sigfork     a SIGUSR1 handler forks; the child exits 9
 *   procs kill        the parent kills a sleeping child with SIGTERM (SIGCHLD handled)
 *   procs execthread  a second thread execs /bin/echo (exec from a non-main thread)
 *   procs userns      clone(CLONE_NEWUSER): the child, in a user namespace of its
 *                     own, maps a file shared (rr's clone_newflags) and exits 77
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void report(const char *what, int status)
{
    if (WIFEXITED(status))
        printf("procs: %s exited %d\n", what, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        printf("procs: %s killed by signal %d\n", what, WTERMSIG(status));
}

static volatile sig_atomic_t chld, forked_child;

static void on_usr1(int signo)
{
    (void)signo;
    pid_t p = fork();
    if (p == 0)
        _exit(9);
    forked_child = p;
}

static void on_chld(int signo)
{
    (void)signo;
    chld++;
}

static void *execs(void *arg)
{
    (void)arg;
    char *argv[] = {"echo", "procs: echo from a thread's exec", NULL};
    execve("/bin/echo", argv, environ);
    perror("execve");
    return NULL;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "forkexec";
    int status = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(mode, "forkexec") == 0) {
        int fds[2];
        if (pipe(fds) != 0)
            return 1;
        pid_t p = fork();
        if (p == 0) {
            dup2(fds[1], 1);
            close(fds[0]);
            close(fds[1]);
            execl("/bin/echo", "echo", "hello through a pipe", (char *)NULL);
            _exit(127);
        }
        close(fds[1]);
        char buf[256];
        ssize_t n, total = 0;
        while ((n = read(fds[0], buf + total, sizeof buf - 1 - total)) > 0)
            total += n;
        buf[total] = 0;
        waitpid(p, &status, 0);
        printf("procs: read \"%.*s\"\n", (int)strcspn(buf, "\n"), buf);
        report("echo", status);
    } else if (strcmp(mode, "vfork") == 0) {
        pid_t p = vfork();
        if (p == 0)
            _exit(4);
        waitpid(p, &status, 0);
        report("vfork child", status);
    } else if (strcmp(mode, "spawn") == 0) {
        pid_t p;
        char *args[] = {"true", NULL};
        int error = posix_spawn(&p, "/bin/true", NULL, NULL, args, environ);
        if (error) {
            printf("procs: posix_spawn failed %d\n", error);
            return 1;
        }
        waitpid(p, &status, 0);
        report("true", status);
    } else if (strcmp(mode, "crash") == 0) {
        pid_t p = fork();
        if (p == 0) {
            volatile int *nothing = NULL;
            *nothing = 1;
            _exit(0);
        }
        waitpid(p, &status, 0);
        report("crashing child", status);
    } else if (strcmp(mode, "forks") == 0) {
        long sum = 0;
        for (int i = 0; i < 100; i++) {
            pid_t p = fork();
            if (p == 0)
                _exit(i % 50);
            waitpid(p, &status, 0);
            sum += WEXITSTATUS(status);
        }
        printf("procs: 100 children, statuses sum to %ld\n", sum);
    } else if (strcmp(mode, "sigfork") == 0) {
        signal(SIGUSR1, on_usr1);
        raise(SIGUSR1);
        waitpid(forked_child, &status, 0);
        report("child of the handler", status);
    } else if (strcmp(mode, "kill") == 0) {
        signal(SIGCHLD, on_chld);
        pid_t p = fork();
        if (p == 0) {
            for (;;)
                pause();
        }
        usleep(10000);
        kill(p, SIGTERM);
        while (waitpid(p, &status, 0) < 0)
            ;
        report("sleeping child", status);
        printf("procs: SIGCHLD %s\n", chld ? "handled" : "missed");
    } else if (strcmp(mode, "userns") == 0) {
        char name[] = "/tmp/procs-userns-XXXXXX";
        int fd = mkstemp(name);
        if (fd < 0 || ftruncate(fd, 4096) != 0)
            return 1;
        unlink(name);
        long p = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (p == 0) {
            char *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            _exit(shared == MAP_FAILED ? 1 : 77);
        }
        if (p < 0) {
            perror("clone");
            return 1;
        }
        waitpid(p, &status, 0);
        report("child in its own user namespace", status);
    } else if (strcmp(mode, "execthread") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, execs, NULL);
        for (;;)
            pause();
    } else {
        fprintf(stderr, "procs: unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
