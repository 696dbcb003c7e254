/* File-system syscalls, each result printed so that a recorded run can be
 * compared with a native one: mkdir, openat, write, read, lseek, pread64,
 * fstat, newfstatat, statx, getdents64 (opendir/readdir), rename, unlink, rmdir.
 * argv[1] is an empty scratch directory; nothing is printed that names it, so
 * the output does not depend on where it is. Exit status 10. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char path_buf[4][4096];

static const char *in(const char *dir, const char *name, int slot)
{
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", dir, name);
    return path_buf[slot];
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) < 0)
        die(path);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Directory order depends on the file system, so the names are sorted. */
static void list_dir(const char *label, const char *dir)
{
    char *names[16];
    int n = 0;
    DIR *d = opendir(dir);
    if (!d)
        die(dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && n < 16)
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], compare_names);
    printf("%s:", label);
    for (int i = 0; i < n; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf(" (%d entries)\n", n);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s EMPTY_DIR\n", argv[0]);
        return 2;
    }
    umask(022);

    char sub[4096];
    snprintf(sub, sizeof sub, "%s/sub", argv[1]);
    if (mkdir(sub, 0755) < 0)
        die("mkdir");
    printf("mkdir sub: ok\n");

    const char *a = in(sub, "a.txt", 0);
    write_file(a, "The quick brown fox\n");
    write_file(in(sub, "b.txt", 1), "bee\n");
    write_file(in(sub, "c.txt", 2), "");

    int fd = open(a, O_RDONLY);
    if (fd < 0)
        die("open a.txt");
    char buf[64] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    printf("read %zd bytes: %s", n, buf);

    off_t pos = lseek(fd, 4, SEEK_SET);
    memset(buf, 0, sizeof buf);
    n = read(fd, buf, 5);
    printf("lseek to %lld, read %zd: %s\n", (long long)pos, n, buf);

    memset(buf, 0, sizeof buf);
    n = pread(fd, buf, 3, 16);
    printf("pread at 16: %s\n", buf);
    printf("lseek SEEK_END: %lld\n", (long long)lseek(fd, 0, SEEK_END));

    struct stat st;
    if (fstat(fd, &st) < 0)
        die("fstat");
    printf("fstat: size %lld, regular %d, mode %o\n", (long long)st.st_size,
           S_ISREG(st.st_mode), st.st_mode & 0777);
    close(fd);

    if (stat(sub, &st) < 0)
        die("stat");
    printf("stat sub: directory %d, mode %o\n", S_ISDIR(st.st_mode), st.st_mode & 0777);

    struct statx stx;
    if (statx(AT_FDCWD, a, 0, STATX_SIZE | STATX_MODE | STATX_NLINK, &stx) < 0)
        die("statx");
    printf("statx: size %llu, mode %o, nlink %u\n", (unsigned long long)stx.stx_size,
           stx.stx_mode & 0777, stx.stx_nlink);

    list_dir("listing", sub);

    const char *renamed = in(sub, "renamed.txt", 3);
    if (rename(a, renamed) < 0)
        die("rename");
    int old_missing = stat(a, &st) < 0 && errno == ENOENT;
    printf("rename: old name gone %d, new size %lld\n", old_missing,
           stat(renamed, &st) == 0 ? (long long)st.st_size : -1LL);
    list_dir("after rename", sub);

    if (unlink(renamed) < 0 || unlink(path_buf[1]) < 0 || unlink(path_buf[2]) < 0)
        die("unlink");
    list_dir("after unlink", sub);
    if (rmdir(sub) < 0)
        die("rmdir");
    list_dir("after rmdir", argv[1]);
    return 10;
}
