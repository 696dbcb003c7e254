/* Syscall numbers the kernel does not implement, and ioctl requests whose only
 * effect is an error: each result and errno is printed, and must be the same
 * natively, recorded and replayed.
 *
 *   nosys             the calls above; exits 0
 *   nosys unmodelled  io_setup, which the kernel implements and retrograde cannot
 *                     record (its completions arrive without a syscall): recorded,
 *                     the program is told ENOSYS, as on a kernel without AIO
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

static void show(const char *what, long result)
{
    printf("%-24s %ld %s\n", what, result, result < 0 ? strerrorname_np(errno) : "");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "unmodelled") == 0) {
        unsigned long context = 0;
        show("io_setup", syscall(SYS_io_setup, 1, &context));
        return 0;
    }
    show("syscall(-1)", syscall(-1));
    show("syscall(1000)", syscall(1000));
    show("syscall(470)", syscall(470));
    show("syscall(1 << 20)", syscall(1L << 20));
    show("tuxcall", syscall(184));
    show("epoll_wait_old", syscall(215, 0, 0, 0, 0));

    int fds[2];
    pipe(fds);
    struct termios termios;
    show("TCGETS on a pipe", ioctl(fds[0], TCGETS, &termios));
    struct winsize size;
    int null = open("/dev/null", O_RDWR);
    show("TIOCGWINSZ on /dev/null", ioctl(null, TIOCGWINSZ, &size));
    show("0x12345678 on a pipe", ioctl(fds[0], 0x12345678, 0));
    show("0x12345678 on /dev/null", ioctl(null, 0x12345678, 0));
    show("TCGETS on a bad fd", ioctl(99, TCGETS, &termios));
    int queued = -1;
    write(fds[1], "abc", 3);
    show("FIONREAD on a pipe", ioctl(fds[0], FIONREAD, &queued));
    printf("  queued %d\n", queued);
    return 0;
}
