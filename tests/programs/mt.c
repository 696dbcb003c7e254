/* pthread programs for the recording of threads, one per mode; each prints what it
 * computed, the same on every run, and exits 0 unless said otherwise.
 *
 *   mt mutex      4 threads add 1 to a counter 20000 times each under a mutex
 *   mt pi         the same with a priority-inheritance mutex, which the kernel marks
 *                 as contended in its word when a waiter blocks (FUTEX_LOCK_PI): main
 *                 holds it while the workers start, and they yield holding it
 *                 (2000 times each: counter 8000)
 *   mt condvar    a producer hands 2000 numbers to a consumer through a condvar
 *   mt barrier    4 threads meet at a barrier 50 times, each round's sum checked
 *   mt spin       a thread spins on an atomic flag (no syscall) until main sets it
 *   mt many       100 short-lived threads, created and joined one after another
 *   mt cpu N      N CPU-bound workers (N: cores when absent), 3*10^8 steps in all
 *   mt lockorder  4 threads take a mutex 10 times each and log who took it; prints
 *                 the log (the order of acquisitions)
 *   mt names      a thread names itself (prctl PR_SET_NAME), reads back its comm
 *   mt tgkill     SIGUSR1 sent to one thread alone (tgkill) runs the handler there
 *   mt exitgroup  a worker thread calls exit(3) while main waits: status 3
 *   mt abort      main starts a worker that yields for ever and aborts at once:
 *                 killed by SIGABRT, which kills the worker too (rr's
 *                 async_signal_syscalls run without its argument)
 *   mt masks      a thread blocks SIGUSR2 for itself; a process-directed SIGUSR2
 *                 is taken by the thread that does not block it
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WORKERS 4

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long counter;

static void *add(void *arg)
{
    pthread_mutex_t *m = arg ? arg : &lock;
    for (int i = 0; i < (arg ? 2000 : 20000); i++) {
        pthread_mutex_lock(m);
        counter++;
        if (arg && i % 100 == 0)
            sched_yield();
        pthread_mutex_unlock(m);
    }
    return NULL;
}

static int slot_full;
static long slot;

static void *produce(void *arg)
{
    (void)arg;
    for (long i = 1; i <= 2000; i++) {
        pthread_mutex_lock(&lock);
        while (slot_full)
            pthread_cond_wait(&cond, &lock);
        slot = i;
        slot_full = 1;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static pthread_barrier_t barrier;
static long round_sum[50];

static void *meet(void *arg)
{
    long me = (long)arg;
    for (int r = 0; r < 50; r++) {
        __atomic_add_fetch(&round_sum[r], me + r, __ATOMIC_SEQ_CST);
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

static atomic_int flag;
static atomic_long spins;

static void *spin(void *arg)
{
    (void)arg;
    while (!atomic_load(&flag))
        atomic_fetch_add(&spins, 1);
    return NULL;
}

static void *short_lived(void *arg)
{
    return (void *)((long)arg * 2);
}

static long steps_each;
static void *crunch(void *arg)
{
    unsigned long x = (unsigned long)arg + 1;
    for (long i = 0; i < steps_each; i++)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    return (void *)(x & 0xff);
}

static char order[64];
static int taken;

static void *take(void *arg)
{
    for (int i = 0; i < 10; i++) {
        pthread_mutex_lock(&lock);
        order[taken++] = 'A' + (long)arg;
        pthread_mutex_unlock(&lock);
        usleep(100);
    }
    return NULL;
}

static void *named(void *arg)
{
    (void)arg;
    char comm[32] = "", path[64];
    prctl(PR_SET_NAME, "mt-worker");
    snprintf(path, sizeof path, "/proc/self/task/%ld/comm", (long)syscall(SYS_gettid));
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(comm, sizeof comm, f))
            comm[0] = 0;
        fclose(f);
    }
    comm[strcspn(comm, "\n")] = 0;
    char got[32] = "";
    prctl(PR_GET_NAME, got);
    printf("mt: worker named %s, comm %s\n", got, comm);
    return NULL;
}

static volatile sig_atomic_t handled_in;
static pid_t worker_tid;
static atomic_int worker_ready;

static void on_usr(int signo)
{
    (void)signo;
    handled_in = syscall(SYS_gettid) == worker_tid ? 2 : 1;
}

static void *waits_for_signal(void *arg)
{
    (void)arg;
    worker_tid = syscall(SYS_gettid);
    atomic_store(&worker_ready, 1);
    while (!handled_in)
        usleep(1000);
    return NULL;
}

static void *blocks_usr2(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    worker_tid = syscall(SYS_gettid);
    atomic_store(&worker_ready, 1);
    while (!handled_in)
        usleep(1000);
    return NULL;
}

static void *yields(void *arg)
{
    (void)arg;
    for (;;)
        sched_yield();
}

static void *exits_all(void *arg)
{
    (void)arg;
    usleep(2000);
    exit(3);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "mutex";
    pthread_t t[100];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(mode, "mutex") == 0 || strcmp(mode, "pi") == 0) {
        static pthread_mutex_t pi;
        pthread_mutexattr_t attr;
        pthread_mutexattr_init(&attr);
        pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
        pthread_mutex_init(&pi, &attr);
        pthread_mutex_lock(&pi);
        for (int i = 0; i < WORKERS; i++)
            pthread_create(&t[i], NULL, add, strcmp(mode, "pi") == 0 ? &pi : NULL);
        usleep(20000);
        pthread_mutex_unlock(&pi);
        for (int i = 0; i < WORKERS; i++)
            pthread_join(t[i], NULL);
        printf("mt: counter %ld\n", counter);
    } else if (strcmp(mode, "condvar") == 0) {
        long total = 0;
        pthread_create(&t[0], NULL, produce, NULL);
        for (int n = 0; n < 2000; n++) {
            pthread_mutex_lock(&lock);
            while (!slot_full)
                pthread_cond_wait(&cond, &lock);
            total += slot;
            slot_full = 0;
            pthread_cond_broadcast(&cond);
            pthread_mutex_unlock(&lock);
        }
        pthread_join(t[0], NULL);
        printf("mt: consumed %ld\n", total);
    } else if (strcmp(mode, "barrier") == 0) {
        pthread_barrier_init(&barrier, NULL, WORKERS);
        for (long i = 0; i < WORKERS; i++)
            pthread_create(&t[i], NULL, meet, (void *)i);
        for (int i = 0; i < WORKERS; i++)
            pthread_join(t[i], NULL);
        int good = 0;
        for (int r = 0; r < 50; r++)
            good += round_sum[r] == 6 + 4 * r;
        printf("mt: %d of 50 rounds met\n", good);
    } else if (strcmp(mode, "spin") == 0) {
        pthread_create(&t[0], NULL, spin, NULL);
        usleep(20000);
        atomic_store(&flag, 1);
        pthread_join(t[0], NULL);
        printf("mt: spinner saw the flag\n");
    } else if (strcmp(mode, "many") == 0) {
        long sum = 0;
        for (long i = 0; i < 100; i++) {
            void *r;
            pthread_create(&t[i], NULL, short_lived, (void *)i);
            pthread_join(t[i], &r);
            sum += (long)r;
        }
        printf("mt: 100 threads returned %ld\n", sum);
    } else if (strcmp(mode, "cpu") == 0) {
        int n = argc > 2 ? atoi(argv[2]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1 || n > 64)
            n = 1;
        steps_each = 300000000L / n;
        long mix = 0;
        for (long i = 0; i < n; i++)
            pthread_create(&t[i], NULL, crunch, (void *)i);
        for (int i = 0; i < n; i++) {
            void *r;
            pthread_join(t[i], &r);
            mix += (long)r;
        }
        printf("mt: %d workers, mix %ld\n", n, mix);
    } else if (strcmp(mode, "lockorder") == 0) {
        for (long i = 0; i < WORKERS; i++)
            pthread_create(&t[i], NULL, take, (void *)i);
        for (int i = 0; i < WORKERS; i++)
            pthread_join(t[i], NULL);
        printf("mt: order %s\n", order);
    } else if (strcmp(mode, "names") == 0) {
        pthread_create(&t[0], NULL, named, NULL);
        pthread_join(t[0], NULL);
    } else if (strcmp(mode, "tgkill") == 0 || strcmp(mode, "masks") == 0) {
        int masks = strcmp(mode, "masks") == 0;
        signal(masks ? SIGUSR2 : SIGUSR1, on_usr);
        pthread_create(&t[0], NULL, masks ? blocks_usr2 : waits_for_signal, NULL);
        while (!atomic_load(&worker_ready))
            usleep(1000);
        if (masks) {
            kill(getpid(), SIGUSR2);  /* only main can take it */
            while (!handled_in)
                usleep(1000);
        } else {
            syscall(SYS_tgkill, getpid(), worker_tid, SIGUSR1);
        }
        pthread_join(t[0], NULL);
        printf("mt: handled in the %s\n", handled_in == 2 ? "worker" : "main thread");
    } else if (strcmp(mode, "exitgroup") == 0) {
        pthread_create(&t[0], NULL, exits_all, NULL);
        for (;;)
            pause();
    } else if (strcmp(mode, "abort") == 0) {
        pthread_create(&t[0], NULL, yields, NULL);
        printf("mt: aborting\n");
        abort();
    } else {
        fprintf(stderr, "mt: unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
