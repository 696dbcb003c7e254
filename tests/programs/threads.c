/* pthread_create (clone with CLONE_THREAD): two threads each sum a range,
 * the main thread joins them. Exit status 20. Built with -pthread. */
#include <pthread.h>
#include <stdio.h>

struct range {
    long from, to, sum;
};

static void *sum_range(void *arg)
{
    struct range *r = arg;
    for (long i = r->from; i < r->to; i++)
        r->sum += i;
    return NULL;
}

int main(void)
{
    struct range ranges[2] = {{0, 1000, 0}, {1000, 2000, 0}};
    pthread_t threads[2];

    printf("threads: starting 2\n");
    fflush(stdout);
    for (int i = 0; i < 2; i++)
        if (pthread_create(&threads[i], NULL, sum_range, &ranges[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    printf("threads: sums %ld + %ld = %ld\n", ranges[0].sum, ranges[1].sum,
           ranges[0].sum + ranges[1].sum);
    return 20;
}
