/* Writes to stdout (and to a dup of it, and to stderr) with every call that can:
 * write, writev, pwrite64, pwritev, pwritev2, sendfile and splice from a file,
 * splice from a pipe, vmsplice, copy_file_range. Which calls work depends on what
 * stdout is (a pipe, a file): a call that fails says so with write(2) instead, so
 * the output is the same in every run with the same stdout. argv[1] is a scratch
 * directory. Exit status 0. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

static void say(int fd, const char *text)
{
    if (write(fd, text, strlen(text)) < 0)
        _exit(3);
}

static void result(const char *call, ssize_t n)
{
    char line[128];
    snprintf(line, sizeof line, " [%s %s]\n", call, n < 0 ? "failed" : "done");
    say(1, line);
}

int main(int argc, char **argv)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/source.txt", argv[1]);
    int src = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    say(src, "from a file: sendfile|from a file: splice|"
             "from a file: copy_file_range|from a file: sendfile at an offset|");

    say(1, "write");
    result("write", 0);
    struct iovec iov[3] = {{"wri", 3}, {"te", 2}, {"v", 1}};
    result("writev", writev(1, iov, 3));
    result("pwrite64", pwrite(1, "pwrite64", 8, 0));
    struct iovec piov[2] = {{"pwri", 4}, {"tev", 3}};
    result("pwritev", pwritev(1, piov, 2, 0));
    result("pwritev2", pwritev2(1, piov, 2, -1, 0));

    off_t offset = 0;
    result("sendfile", sendfile(1, src, &offset, 21));
    off_t in = 22;
    result("splice from a file", splice(src, &in, 1, NULL, 19, 0));
    lseek(src, 42, SEEK_SET);
    result("copy_file_range", copy_file_range(src, NULL, 1, NULL, 29, 0));
    lseek(src, 72, SEEK_SET);
    result("sendfile at the position", sendfile(1, src, NULL, 34));

    int p[2];
    if (pipe(p) < 0)
        return 1;
    say(p[1], "through a pipe: splice");
    result("splice from a pipe", splice(p[0], NULL, 1, NULL, 64, 0));
    struct iovec viov[2] = {{"vm", 2}, {"splice", 6}};
    result("vmsplice", vmsplice(1, viov, 2, 0));

    int copy = dup(1);
    say(copy, "through a dup of stdout");
    result("write to the dup", 0);
    close(copy);
    say(2, "to stderr\n");
    close(src);
    unlink(path);
    return 0;
}
