/* Three threads (main and two workers) take turns on one mutex, each adding
 * to a shared total 20 times and calling note() with it; prints the total
 * and exits 4. The order of turns is the scheduler's, so it is the
 * recording's. */
#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile long total;
static volatile long last_by[3];

__attribute__((noinline)) void note(int who, long value)
{
    last_by[who] = value;
}

static void *take_turns(void *arg)
{
    int who = (int)(long)arg;
    for (int i = 0; i < 20; i++) {
        volatile long spin = 0;
        for (int j = 0; j < 1000 * (who + 1); j++)
            spin += j;
        pthread_mutex_lock(&lock);
        total++;
        note(who, total);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(void)
{
    pthread_t workers[2];
    for (long w = 0; w < 2; w++)
        pthread_create(&workers[w], NULL, take_turns, (void *)(w + 1));
    take_turns((void *)0);
    for (int w = 0; w < 2; w++)
        pthread_join(workers[w], NULL);
    printf("trio: total %ld\n", total);
    return 4;
}
