/* What a program learns about the CPUs it may run on, and what it asks for.
 *
 * Prints the CPUs sched_getaffinity names, binds itself to the lowest of them
 * and reads that back, then makes the two calls the kernel refuses: a mask with
 * no online CPU (EINVAL) and a mask at an unmapped address (EFAULT).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int print_cpus(const char *label)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        printf("%s: error %s\n", label, strerror(errno));
        return -1;
    }
    int lowest = -1;
    printf("%s: %d cpus:", label, CPU_COUNT(&set));
    for (int n = 0; n < CPU_SETSIZE; n++)
        if (CPU_ISSET(n, &set)) {
            printf(" %d", n);
            if (lowest < 0)
                lowest = n;
        }
    printf("\n");
    return lowest;
}

int main(void)
{
    int lowest = print_cpus("inherited");
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(lowest, &one);
    printf("bind to %d: %d\n", lowest, sched_setaffinity(0, sizeof one, &one));
    print_cpus("bound");
    cpu_set_t none;
    CPU_ZERO(&none);
    CPU_SET(CPU_SETSIZE - 1, &none);  /* no machine here has CPU 1023 online */
    long got = syscall(SYS_sched_setaffinity, 0, sizeof none, &none);
    printf("no online cpu: %ld %s\n", got, got ? strerror(errno) : "");
    got = syscall(SYS_sched_setaffinity, 0, sizeof one, (void *)8);
    printf("unmapped mask: %ld %s\n", got, got ? strerror(errno) : "");
    print_cpus("still");
    return 0;
}
