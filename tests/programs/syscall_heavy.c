/* Many small events: N iterations (argv[1], default 10000) of a 64-byte read
 * from /dev/zero and a clock_gettime(CLOCK_MONOTONIC) (the vDSO natively, a
 * recorded syscall under retrograde). Exit status 24. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? strtol(argv[1], NULL, 0) : 10000;
    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) {
        perror("/dev/zero");
        return 1;
    }

    unsigned char buf[64];
    long bytes = 0, nonzero = 0;
    int nondecreasing = 1;
    struct timespec last = {0, 0}, now;
    for (long i = 0; i < iterations; i++) {
        ssize_t n = read(fd, buf, sizeof buf);
        for (ssize_t j = 0; j < n; j++)
            nonzero += buf[j] != 0;
        bytes += n;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec < last.tv_sec || (now.tv_sec == last.tv_sec && now.tv_nsec < last.tv_nsec))
            nondecreasing = 0;
        last = now;
    }
    close(fd);
    printf("syscall_heavy: %ld reads, %ld bytes, %ld nonzero, clock nondecreasing %s\n",
           iterations, bytes, nonzero, nondecreasing ? "yes" : "no");
    return 24;
}
