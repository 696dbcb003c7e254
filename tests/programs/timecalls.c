/* Reads that glibc serves without entering the kernel: clock_gettime
 * (REALTIME, MONOTONIC), gettimeofday and time from the vDSO, and sched_getcpu
 * from the rseq area that the kernel rewrites on every return to user space
 * (glibc 2.35+; not even the vDSO's getcpu). A recorder must make these
 * recorded events, so a replay returns the recorded values.
 *
 * The values differ between runs: each is printed on a "name: value" line for
 * a test to compare with the trace. The last line is the same in every run.
 * Exit status 12. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

#define MONOTONIC_READS 1000

static double seconds(struct timespec t)
{
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void)
{
    struct timespec realtime, mono_first, mono_last, mono;
    struct timeval tv;

    clock_gettime(CLOCK_REALTIME, &realtime);
    gettimeofday(&tv, NULL);
    time_t now = time(NULL);
    printf("realtime: %lld.%09ld\n", (long long)realtime.tv_sec, realtime.tv_nsec);
    printf("gettimeofday: %lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
    printf("time: %lld\n", (long long)now);

    int nondecreasing = 1;
    clock_gettime(CLOCK_MONOTONIC, &mono_first);
    mono_last = mono_first;
    for (int i = 1; i < MONOTONIC_READS; i++) {
        clock_gettime(CLOCK_MONOTONIC, &mono);
        if (seconds(mono) < seconds(mono_last))
            nondecreasing = 0;
        mono_last = mono;
    }
    printf("monotonic first: %lld.%09ld\n", (long long)mono_first.tv_sec, mono_first.tv_nsec);
    printf("monotonic last: %lld.%09ld\n", (long long)mono_last.tv_sec, mono_last.tv_nsec);
    printf("cpu: %d\n", sched_getcpu());

    /* time() reads the clock as of the last tick, so it may trail the
     * clock_gettime read before it by a second boundary. */
    double tv_seconds = tv.tv_sec + tv.tv_usec / 1e6;
    int agree = tv_seconds >= seconds(realtime) - 1e-6 && tv_seconds - seconds(realtime) < 1.0 &&
                now >= realtime.tv_sec - 1 && now <= realtime.tv_sec + 1;
    printf("deterministic: clocks agree %s, %d monotonic reads nondecreasing %s\n",
           agree ? "yes" : "no", MONOTONIC_READS, nondecreasing ? "yes" : "no");
    return 12;
}
