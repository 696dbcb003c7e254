/* Four threads for the debugger (tests/test_gdb_threads.py). main starts three
 * workers, each of which names itself (pthread_setname_np: prctl PR_SET_NAME):
 * writer-1 writes g_shared = 1, then writer-2, woken by it, writes g_shared = 2,
 * then the reporter, woken by writer-2, copies g_shared into g_seen and calls
 * report() with it. The semaphores fix the order of the writes whatever the
 * schedule; the barrier keeps every worker alive until the reporter has
 * reported, so a stop in report() sees all four threads. Exit status 7. */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>

volatile long g_shared;
volatile long g_seen;
volatile long g_reports;
static sem_t first_written, second_written;
static pthread_barrier_t all_reported;

void report(long value)
{
    g_reports += value; /* report: body */
}

static void *writer(void *arg)
{
    long value = (long)arg;
    char name[16];

    snprintf(name, sizeof name, "writer-%ld", value);
    pthread_setname_np(pthread_self(), name);
    if (value == 2)
        sem_wait(&first_written);
    g_shared = value; /* write: g_shared */
    sem_post(value == 1 ? &first_written : &second_written);
    pthread_barrier_wait(&all_reported);
    return NULL;
}

static void *reporter(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "reporter");
    sem_wait(&second_written);
    g_seen = g_shared; /* read: g_seen */
    report(g_seen);
    pthread_barrier_wait(&all_reported);
    return NULL;
}

int main(void)
{
    pthread_t threads[3];

    sem_init(&first_written, 0, 0);
    sem_init(&second_written, 0, 0);
    pthread_barrier_init(&all_reported, NULL, 3);
    pthread_create(&threads[0], NULL, writer, (void *)1L);
    pthread_create(&threads[1], NULL, writer, (void *)2L);
    pthread_create(&threads[2], NULL, reporter, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join(threads[i], NULL);
    printf("workers: g_shared %ld, reports %ld\n", g_shared, g_reports);
    return 7;
}
