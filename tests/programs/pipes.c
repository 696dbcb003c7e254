/* Pipes and descriptor juggling: pipe2, write, read, poll (timeout 0, so
 * no waiting), dup, dup2, close, EOF and POLLHUP. Exit status 11. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, 0);
    return n == 1 ? p.revents : 0;
}

static const char *events(int revents)
{
    if (revents & POLLIN)
        return "POLLIN";
    if (revents & POLLHUP)
        return "POLLHUP";
    return revents ? "other" : "none";
}

int main(void)
{
    int p[2];
    char buf[64];

    if (pipe2(p, O_CLOEXEC) < 0) {
        perror("pipe2");
        return 1;
    }
    printf("empty pipe: %s\n", events(readable(p[0])));

    write(p[1], "ping", 4);
    printf("after write: %s\n", events(readable(p[0])));
    ssize_t n = read(p[0], buf, sizeof buf);
    printf("read %zd: %.*s\n", n, (int)n, buf);

    /* dup2 to a fixed number: the program's own descriptor numbering is what a
     * recorder must not disturb. */
    int high = dup2(p[1], 42);
    write(high, "via 42", 6);
    n = read(p[0], buf, sizeof buf);
    printf("dup2 -> %d, read %zd: %.*s\n", high, n, (int)n, buf);
    close(high);

    /* Point stdout into the pipe for a moment and read back what printf wrote. */
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(p[1], STDOUT_FILENO);
    printf("captured line\n");
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    n = read(p[0], buf, sizeof buf);
    printf("stdout redirected, read %zd: %.*s", n, (int)n, buf);

    close(p[1]);
    printf("writer closed: %s\n", events(readable(p[0])));
    printf("read at EOF: %zd\n", read(p[0], buf, sizeof buf));
    close(p[0]);
    return 11;
}
