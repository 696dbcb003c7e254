/* A syscall retrograde does not support, io_uring_setup (its completions
 * are written by the kernel without a syscall, so they cannot be recorded),
 * issued with raw syscall(2) after a flushed line. Natively it fails (entries
 * = 0 is EINVAL; EPERM or ENOSYS where io_uring is disabled) and the program
 * exits 21. */
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    struct io_uring_params params;
    memset(&params, 0, sizeof params);

    printf("unsupported: calling io_uring_setup\n");
    fflush(stdout);
    long result = syscall(SYS_io_uring_setup, 0, &params);
    printf("unsupported: io_uring_setup returned %ld\n", result);
    return 21;
}
