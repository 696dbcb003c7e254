/* The syscall buffer: a preload library that makes the common syscalls without a
 * ptrace stop each (record --syscall-buffer; tracee/sysbuf.py builds it).
 *
 * The recorder installs a seccomp filter before the program starts that lets
 * syscalls from one instruction of the retrograde page (SYSBUF_SITE: `syscall;
 * ret`) run untraced and sends every other syscall to the tracer. The wrappers
 * below make their call from there and append a record of it (number,
 * arguments, result, the bytes the kernel stored) to a buffer of the thread's
 * own; the recorder reads the buffer at every ptrace stop of the thread and
 * writes its records into the trace as ordinary syscall events, in order.
 * Replay installs no filter: every call of the library stops there and is
 * answered from those events, and the library writes the same records again.
 *
 * Protocol with the recorder (a traced call with number SYSBUF_NR):
 *   SYSBUF_NR(SYSBUF_REGISTER, buffer, size): 0 when the recorder buffers (it
 *     answers ENOSYS otherwise, and so does a kernel: then nothing is buffered);
 *   SYSBUF_NR(SYSBUF_FLUSH): the buffer is full; the recorder takes its records
 *     and sets `end` back to 0 as part of that event (so replay does too).
 * While `inflight` is set a call is between its syscall and its commit: the
 * recorder delivers no asynchronous signal and preempts nothing there.
 *
 * Calls that may block (a read of a pipe, socket or terminal) go through the
 * traced path: every buffered read first fstat()s its fd (also buffered), so a
 * descriptor closed and reopened as a pipe behind our back is never misjudged.
 * Built with -mno-red-zone: the wrappers `call` into the page.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <sys/time.h>

#ifndef SYSBUF_SITE
#error "SYSBUF_SITE (address of the page's untraced syscall) must be defined"
#endif
#define SYSBUF_NR 0x7e7
#define SYSBUF_REGISTER 1
#define SYSBUF_FLUSH 2
#define BUFFER_SIZE (1 << 20)
#define HEADER_SIZE 64
#define RECORD_HEADER 64

struct header {
    volatile uint64_t end;      /* bytes of committed records after the header */
    volatile uint64_t inflight; /* 1 while a call is between its syscall and commit */
    uint64_t reserved[6];
};

struct record {
    uint32_t size; /* the whole record, a multiple of 8 */
    uint32_t nr;
    int64_t args[6];
    int64_t result;
    /* then the output bytes, in the order of the syscall table's rule */
};

static __thread struct header *buffer;
static __thread int state;  /* 0: not asked yet, 1: buffering, -1: not */
static __thread int busy;   /* in a wrapper already (a signal handler's call) */

static long traced(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
    register long r10 __asm__("r10") = a3;
    register long r8 __asm__("r8") = a4;
    register long r9 __asm__("r9") = a5;
    long ret;
    __asm__ volatile("syscall" : "=a"(ret)
                     : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static long untraced(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
    register long r10 __asm__("r10") = a3;
    register long r8 __asm__("r8") = a4;
    register long r9 __asm__("r9") = a5;
    long ret;
    __asm__ volatile("call *%[site]" : "=a"(ret)
                     : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), "r"(r8), "r"(r9),
                       [site] "r"((long)SYSBUF_SITE)
                     : "rcx", "r11", "memory");
    return ret;
}

static struct header *thread_buffer(void)
{
    if (state == 0) {
        state = -1;
        long p = traced(SYS_mmap, 0, BUFFER_SIZE, 3, 0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */,
                        -1, 0);
        if (p < 0 && p > -4096)
            return 0;
        if (traced(SYSBUF_NR, SYSBUF_REGISTER, p, BUFFER_SIZE, 0, 0, 0) != 0) {
            traced(SYS_munmap, p, BUFFER_SIZE, 0, 0, 0, 0);
            return 0;
        }
        buffer = (struct header *)p;
        state = 1;
    }
    return state == 1 ? buffer : 0;
}

/* Where the completed call stored, as tracee/syscalls.py's rule says: at most two regions. */
static int regions(long nr, const long *a, long result, long *addr, long *len)
{
    if (result < 0 && result > -4096)
        return 0;
    switch (nr) {
    case SYS_read: case SYS_pread64:
        addr[0] = a[1]; len[0] = result; return result > 0;
    case SYS_getrandom:
        addr[0] = a[0]; len[0] = result; return result > 0;
    case SYS_fstat:
        addr[0] = a[1]; len[0] = sizeof(struct stat); return a[1] != 0;
    case SYS_newfstatat:
        addr[0] = a[2]; len[0] = sizeof(struct stat); return a[2] != 0;
    case SYS_clock_gettime:
        addr[0] = a[1]; len[0] = sizeof(struct timespec); return a[1] != 0;
    case SYS_gettimeofday: {
        int n = 0;
        if (a[0]) { addr[n] = a[0]; len[n] = sizeof(struct timeval); n++; }
        if (a[1]) { addr[n] = a[1]; len[n] = sizeof(struct timezone); n++; }
        return n;
    }
    default:
        return 0;
    }
}

static long most_stored(long nr, const long *a)
{
    switch (nr) {
    case SYS_read: case SYS_pread64: return a[2];
    case SYS_getrandom: return a[1];
    default: return 2 * sizeof(struct stat);
    }
}

/* Make call nr from the untraced site and record it; the traced path when no buffer. */
static long buffered(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
    long a[6] = {a0, a1, a2, a3, a4, a5};
    struct header *h = busy ? 0 : thread_buffer();
    if (!h)
        return traced(nr, a0, a1, a2, a3, a4, a5);
    long most = most_stored(nr, a);
    if (most < 0 || most > BUFFER_SIZE / 2)
        return traced(nr, a0, a1, a2, a3, a4, a5);
    busy = 1;
    if (HEADER_SIZE + h->end + RECORD_HEADER + (uint64_t)most + 8 > BUFFER_SIZE)
        traced(SYSBUF_NR, SYSBUF_FLUSH, 0, 0, 0, 0, 0); /* the recorder empties it */
    struct record *r = (struct record *)((char *)h + HEADER_SIZE + h->end);
    r->nr = (uint32_t)nr;
    for (int i = 0; i < 6; i++)
        r->args[i] = a[i];
    h->inflight = 1;
    __asm__ volatile("" ::: "memory");
    long result = untraced(nr, a0, a1, a2, a3, a4, a5);
    r->result = result;
    long addr[2], len[2];
    int n = regions(nr, a, result, addr, len);
    char *out = (char *)(r + 1);
    for (int i = 0; i < n; i++) {
        memcpy(out, (const void *)addr[i], (size_t)len[i]);
        out += len[i];
    }
    r->size = (uint32_t)(((out - (char *)r) + 7) & ~7L);
    __asm__ volatile("" ::: "memory");
    h->end += r->size; /* the commit */
    __asm__ volatile("" ::: "memory");
    h->inflight = 0;
    busy = 0;
    return result;
}

static long as_libc(long result)
{
    if (result < 0 && result > -4096) {
        errno = (int)-result;
        return -1;
    }
    return result;
}

/* A read of fd cannot block: a regular file, a directory, or /dev/null, zero, full,
 * random, urandom (the memory devices, major 1). */
static int never_blocks(int fd)
{
    struct stat st;
    if (buffered(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) != 0)
        return 0;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        return 1;
    return S_ISCHR(st.st_mode) && (st.st_rdev >> 8) == 1;
}

ssize_t read(int fd, void *buf, size_t n)
{
    if (busy || !thread_buffer() || !never_blocks(fd))
        return as_libc(traced(SYS_read, fd, (long)buf, (long)n, 0, 0, 0));
    return as_libc(buffered(SYS_read, fd, (long)buf, (long)n, 0, 0, 0));
}

ssize_t pread64(int fd, void *buf, size_t n, off_t offset)
{
    if (busy || !thread_buffer() || !never_blocks(fd))
        return as_libc(traced(SYS_pread64, fd, (long)buf, (long)n, offset, 0, 0));
    return as_libc(buffered(SYS_pread64, fd, (long)buf, (long)n, offset, 0, 0));
}
ssize_t pread(int fd, void *buf, size_t n, off_t offset) __attribute__((alias("pread64")));

off_t lseek(int fd, off_t offset, int whence)
{
    return as_libc(buffered(SYS_lseek, fd, offset, whence, 0, 0, 0));
}
off_t lseek64(int fd, off_t offset, int whence) __attribute__((alias("lseek")));

int fstat(int fd, struct stat *st)
{
    return (int)as_libc(buffered(SYS_fstat, fd, (long)st, 0, 0, 0, 0));
}
int fstat64(int fd, struct stat64 *st) __attribute__((alias("fstat")));

int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
    return (int)as_libc(buffered(SYS_newfstatat, dirfd, (long)path, (long)st, flags, 0, 0));
}
int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
    __attribute__((alias("fstatat")));

int stat(const char *path, struct stat *st)
{
    return fstatat(-100 /* AT_FDCWD */, path, st, 0);
}
int stat64(const char *path, struct stat64 *st) __attribute__((alias("stat")));

int lstat(const char *path, struct stat *st)
{
    return fstatat(-100, path, st, 0x100 /* AT_SYMLINK_NOFOLLOW */);
}
int lstat64(const char *path, struct stat64 *st) __attribute__((alias("lstat")));

int clock_gettime(clockid_t clock, struct timespec *ts)
{
    return (int)as_libc(buffered(SYS_clock_gettime, clock, (long)ts, 0, 0, 0, 0));
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    return (int)as_libc(buffered(SYS_gettimeofday, (long)tv, (long)tz, 0, 0, 0, 0));
}

pid_t getpid(void)
{
    return (pid_t)buffered(SYS_getpid, 0, 0, 0, 0, 0, 0);
}

pid_t gettid(void)
{
    return (pid_t)buffered(SYS_gettid, 0, 0, 0, 0, 0, 0);
}

ssize_t getrandom(void *buf, size_t n, unsigned int flags)
{
    /* GRND_RANDOM or an unseeded pool may block: only the urandom pool without it. */
    if (flags & 0x2)
        return as_libc(traced(SYS_getrandom, (long)buf, (long)n, flags, 0, 0, 0));
    return as_libc(buffered(SYS_getrandom, (long)buf, (long)n, flags, 0, 0, 0));
}

/* Take our library out of LD_PRELOAD, so that a child that execs does not load it
 * (and the program sees what it was given). The recorder puts it first. */
extern char **environ;
__attribute__((constructor)) static void hide_from_environment(void)
{
    static const char name[] = "LD_PRELOAD=";
    /* The main thread's buffer now, so that the program's first call is its own. */
    thread_buffer();
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, name, sizeof name - 1) != 0)
            continue;
        char *value = *e + sizeof name - 1;
        char *rest = value;
        while (*rest && *rest != ' ' && *rest != ':')
            rest++;
        if (strstr(value, "retrograde-sysbuf") == 0 || strstr(value, "retrograde-sysbuf") > rest)
            return;
        while (*rest == ' ' || *rest == ':')
            rest++;
        if (*rest) {
            memmove(value, rest, strlen(rest) + 1);
        } else {
            char **f = e;
            do f[0] = f[1]; while (*f++);
        }
        return;
    }
}
