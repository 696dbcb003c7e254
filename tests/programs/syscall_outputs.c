/* Runs syscalls against a real kernel and shows what they wrote, for
 * tests/test_syscalls.py to compare with retrograde.tracee.syscalls.
 *
 * Every output buffer of every call lies in `arena`, which is filled with a canary
 * byte before the call's inputs are placed in it. Each call prints one line:
 *
 *   call LABEL NR A0 A1 A2 A3 A4 A5 RESULT BEFORE_HEX AFTER_HEX
 *
 * with RESULT as the raw kernel result (-errno on failure) and the arena before and
 * after the call, so the test can see every byte the kernel changed. Before the calls,
 * "size TYPE N" lines give sizeof() of the structs the table hardcodes, "ioctl NAME N"
 * the ioctl requests it knows, as the headers define them, and "base ADDR" the arena's
 * address. A call whose setup is impossible here (no ptys, no SysV IPC)
 * is left out, not failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/times.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <asm/ldt.h>
#include <asm/msgbuf.h>
#include <asm/prctl.h>
#include <asm/sembuf.h>
#include <asm/shmbuf.h>
#include <asm/termbits.h>
#include <asm/termios.h>
#include <linux/capability.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <linux/msg.h>
#include <linux/prctl.h>
#include <linux/sched.h>
#include <linux/sem.h>
#include <linux/shm.h>
#include <linux/sockios.h>
#include <net/if.h>

#define ARENA 4096
#define CANARY 0xA5
static unsigned char arena[ARENA] __attribute__((aligned(4096)));
static unsigned char before[ARENA];
#define AT(off) ((long)(arena + (off)))

static void fill(void) { memset(arena, CANARY, ARENA); }

static void put_long(long off, long value) { memcpy(arena + off, &value, sizeof value); }
static void put_int(long off, int value) { memcpy(arena + off, &value, sizeof value); }
static int get_int(long off) { int v; memcpy(&v, arena + off, sizeof v); return v; }

static void hex(const unsigned char *p) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < ARENA; i++) {
        putchar(digits[p[i] >> 4]);
        putchar(digits[p[i] & 15]);
    }
}

/* Calls syscall nr, and if it forked, ends the child at once. */
static long record6(const char *label, long nr, long a0, long a1, long a2, long a3, long a4,
                    long a5) {
    pid_t self = getpid();
    memcpy(before, arena, ARENA);
    long r = syscall(nr, a0, a1, a2, a3, a4, a5);
    if (r == -1) r = -errno;
    if (getpid() != self) _exit(0);
    printf("call %s %ld %ld %ld %ld %ld %ld %ld %ld ", label, nr, a0, a1, a2, a3, a4, a5, r);
    hex(before);
    putchar(' ');
    hex(arena);
    putchar('\n');
    return r;
}
#define RECORD(label, nr, ...) record_n(label, nr, __VA_ARGS__, 0, 0, 0, 0, 0, 0)
#define record_n(label, nr, a0, a1, a2, a3, a4, a5, ...) \
    record6(label, nr, (long)(a0), (long)(a1), (long)(a2), (long)(a3), (long)(a4), (long)(a5))

#define SIZE(type) printf("size %s %zu\n", #type, sizeof(type))

static void sizes(void) {
    SIZE(struct stat); SIZE(struct statx); SIZE(struct statfs); SIZE(struct rusage);
    SIZE(struct utsname); SIZE(struct sysinfo); SIZE(struct tms); SIZE(struct timespec);
    SIZE(struct timeval); SIZE(struct timezone); SIZE(struct itimerspec);
    SIZE(struct itimerval); SIZE(struct rlimit); SIZE(struct timex); SIZE(siginfo_t);
    SIZE(stack_t); SIZE(struct epoll_event); SIZE(struct pollfd); SIZE(struct flock);
    SIZE(struct f_owner_ex); SIZE(struct iovec); SIZE(struct msghdr); SIZE(struct mmsghdr);
    SIZE(struct sockaddr_storage); SIZE(struct termios); SIZE(struct termios2);
    SIZE(struct termio); SIZE(struct winsize); SIZE(struct ifreq); SIZE(struct ifconf);
    SIZE(struct fiemap); SIZE(struct fiemap_extent); SIZE(struct fsxattr);
    SIZE(struct file_dedupe_range); SIZE(struct file_dedupe_range_info);
    SIZE(struct sched_param); SIZE(struct user_desc); SIZE(struct mq_attr);
    SIZE(struct msqid64_ds); SIZE(struct semid64_ds); SIZE(struct shmid64_ds);
    SIZE(struct msginfo); SIZE(struct seminfo); SIZE(struct shminfo64); SIZE(struct shm_info);
    SIZE(struct __user_cap_data_struct);
    printf("offset struct msghdr msg_namelen %zu\n", offsetof(struct msghdr, msg_namelen));
    printf("offset struct msghdr msg_controllen %zu\n", offsetof(struct msghdr, msg_controllen));
    printf("offset struct msghdr msg_flags %zu\n", offsetof(struct msghdr, msg_flags));
    printf("offset struct mmsghdr msg_len %zu\n", offsetof(struct mmsghdr, msg_len));
}

#define IOCTL(request) printf("ioctl %s %lu\n", #request, (unsigned long)(request))

static void ioctl_requests(void) {
    IOCTL(TCGETS); IOCTL(TCSETS); IOCTL(TCSETSW); IOCTL(TCSETSF); IOCTL(TCGETA);
    IOCTL(TCSETA); IOCTL(TCSETAW); IOCTL(TCSETAF); IOCTL(TCSBRK); IOCTL(TCXONC);
    IOCTL(TCFLSH); IOCTL(TIOCEXCL); IOCTL(TIOCNXCL); IOCTL(TIOCSCTTY); IOCTL(TIOCGPGRP);
    IOCTL(TIOCSPGRP); IOCTL(TIOCOUTQ); IOCTL(TIOCSTI); IOCTL(TIOCGWINSZ); IOCTL(TIOCSWINSZ);
    IOCTL(TIOCMGET); IOCTL(TIOCMBIS); IOCTL(TIOCMBIC); IOCTL(TIOCMSET); IOCTL(TIOCGSOFTCAR);
    IOCTL(TIOCSSOFTCAR); IOCTL(FIONREAD); IOCTL(TIOCCONS); IOCTL(TIOCPKT); IOCTL(FIONBIO);
    IOCTL(TIOCNOTTY); IOCTL(TIOCSETD); IOCTL(TIOCGETD); IOCTL(TCSBRKP); IOCTL(TIOCSBRK);
    IOCTL(TIOCCBRK); IOCTL(TIOCGSID); IOCTL(TCGETS2); IOCTL(TCSETS2); IOCTL(TCSETSW2);
    IOCTL(TCSETSF2); IOCTL(TIOCGPTN); IOCTL(TIOCSPTLCK); IOCTL(TIOCGDEV); IOCTL(TIOCSIG);
    IOCTL(TIOCVHANGUP); IOCTL(TIOCGPKT); IOCTL(TIOCGPTLCK); IOCTL(TIOCGEXCL);
    IOCTL(TIOCGPTPEER); IOCTL(FIONCLEX); IOCTL(FIOCLEX); IOCTL(FIOASYNC);
    IOCTL(TIOCGLCKTRMIOS); IOCTL(TIOCSLCKTRMIOS); IOCTL(TIOCSERGETLSR); IOCTL(FIOQSIZE);
    IOCTL(FIOSETOWN); IOCTL(SIOCSPGRP); IOCTL(FIOGETOWN); IOCTL(SIOCGPGRP);
    IOCTL(SIOCATMARK); IOCTL(SIOCGSTAMP_OLD); IOCTL(SIOCGSTAMPNS_OLD);
    IOCTL(SIOCGSTAMP_NEW); IOCTL(SIOCGSTAMPNS_NEW); IOCTL(SIOCGIFNAME); IOCTL(SIOCGIFCONF);
    IOCTL(SIOCGIFFLAGS); IOCTL(SIOCGIFADDR); IOCTL(SIOCGIFDSTADDR); IOCTL(SIOCGIFBRDADDR);
    IOCTL(SIOCGIFNETMASK); IOCTL(SIOCGIFMETRIC); IOCTL(SIOCGIFMTU); IOCTL(SIOCGIFHWADDR);
    IOCTL(SIOCGIFINDEX); IOCTL(SIOCGIFPFLAGS); IOCTL(SIOCGIFTXQLEN); IOCTL(SIOCOUTQNSD);
    IOCTL(SIOCGIFMAP); IOCTL(FIBMAP); IOCTL(FIGETBSZ); IOCTL(BLKGETSIZE); IOCTL(BLKSSZGET);
    IOCTL(BLKPBSZGET); IOCTL(BLKGETSIZE64); IOCTL(FS_IOC_GETFLAGS); IOCTL(FS_IOC_SETFLAGS);
    IOCTL(FS_IOC_GETVERSION); IOCTL(FS_IOC_FSGETXATTR); IOCTL(FS_IOC_FSSETXATTR);
    IOCTL(FS_IOC_FIEMAP); IOCTL(FICLONE); IOCTL(FICLONERANGE); IOCTL(FIDEDUPERANGE);
}

static void drain(int fd) {
    char buf[256];
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    while (read(fd, buf, sizeof buf) > 0) {}
    fcntl(fd, F_SETFL, flags);
}

static void files(int p[2], const char *path, const char *path2) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    write(fd, "abcdefghijklmnop", 16);

    write(p[1], "hello", 5);
    fill();
    RECORD("read", SYS_read, p[0], AT(16), 64);

    write(p[1], "0123456789", 10);
    fill();
    put_long(0, AT(100)); put_long(8, 4);
    put_long(16, AT(200)); put_long(24, 4);
    put_long(32, AT(300)); put_long(40, 16);
    RECORD("readv", SYS_readv, p[0], AT(0), 3);

    fill();
    put_long(0, AT(100)); put_long(8, 3);
    put_long(16, AT(200)); put_long(24, 100);
    RECORD("preadv", SYS_preadv, fd, AT(0), 2, 2, 0);
    fill();
    RECORD("pread64", SYS_pread64, fd, AT(0), 100, 4);
    fill();
    RECORD("read_EBADF", SYS_read, -1, AT(0), 16);

    fill(); RECORD("fstat", SYS_fstat, fd, AT(0));
    fill(); RECORD("stat", SYS_stat, "/", AT(0));
    fill(); RECORD("lstat", SYS_lstat, "/", AT(0));
    fill(); RECORD("newfstatat", SYS_newfstatat, AT_FDCWD, "/", AT(0), 0);
    fill(); RECORD("statx", SYS_statx, AT_FDCWD, "/", 0, 0xfff, AT(0));
    fill(); RECORD("statfs", SYS_statfs, "/", AT(0));
    fill(); RECORD("fstatfs", SYS_fstatfs, fd, AT(0));
    fill(); RECORD("getcwd", SYS_getcwd, AT(0), 1024);
    fill(); RECORD("readlink", SYS_readlink, "/proc/self/exe", AT(0), 1024);
    fill(); RECORD("readlinkat", SYS_readlinkat, AT_FDCWD, "/proc/self/exe", AT(0), 1024);

    int dir = open("/", O_RDONLY | O_DIRECTORY);
    fill(); RECORD("getdents64", SYS_getdents64, dir, AT(0), 2048);
    close(dir);

    fill(); RECORD("listxattr", SYS_listxattr, path, AT(0), 256);
    fill(); RECORD("getxattr", SYS_getxattr, path, "user.missing", AT(0), 256);

    fill();
    put_int(0, 128);  /* handle_bytes: MAX_HANDLE_SZ */
    RECORD("name_to_handle_at", SYS_name_to_handle_at, AT_FDCWD, path, AT(0), AT(512), 0);
    fill();
    put_int(0, 0);
    RECORD("name_to_handle_at_overflow", SYS_name_to_handle_at, AT_FDCWD, path, AT(0),
           AT(512), 0);

    fill();
    put_long(0, 0); put_long(8, 0);
    RECORD("cachestat", 451, fd, AT(0), AT(64), 0);

    fill();
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    memcpy(arena, &lock, sizeof lock);
    RECORD("fcntl_F_GETLK", SYS_fcntl, fd, F_GETLK, AT(0));
    fill();
    memcpy(arena, &lock, sizeof lock);
    RECORD("fcntl_F_OFD_GETLK", SYS_fcntl, fd, F_OFD_GETLK, AT(0));
    fill(); RECORD("fcntl_F_GETFL", SYS_fcntl, fd, F_GETFL);
    fill(); RECORD("ioctl_FIOCLEX", SYS_ioctl, fd, FIOCLEX, 0);
    fill(); RECORD("ioctl_TCGETS_file", SYS_ioctl, fd, TCGETS, AT(0));

    write(p[1], "xyz", 3);
    fill(); RECORD("ioctl_FIONREAD", SYS_ioctl, p[0], FIONREAD, AT(0));
    drain(p[0]);

    fill();
    put_long(0, 2);
    RECORD("sendfile", SYS_sendfile, p[1], fd, AT(0), 5);
    drain(p[0]);

    int fd2 = open(path2, O_RDWR | O_CREAT | O_TRUNC, 0600);
    fill();
    put_long(0, 0); put_long(8, 0);
    RECORD("copy_file_range", SYS_copy_file_range, fd, AT(0), fd2, AT(8), 8, 0);

    write(p[1], "SPLI", 4);
    fill();
    put_long(0, 100);
    RECORD("splice", SYS_splice, p[0], 0, fd2, AT(0), 4, 0);

    write(p[1], "vmspli", 6);
    fill();
    put_long(0, AT(100)); put_long(8, 16);
    RECORD("vmsplice", SYS_vmsplice, p[0], AT(0), 1, 0);

    static char remote[8] = "remote!";
    fill();
    put_long(0, AT(100)); put_long(8, 8);
    put_long(16, (long)remote); put_long(24, 8);
    RECORD("process_vm_readv", SYS_process_vm_readv, getpid(), AT(0), 1, AT(16), 1, 0);

    close(fd);
    close(fd2);
}

static void process_state(void) {
    struct sigaction handler = {.sa_handler = SIG_IGN, .sa_flags = SA_RESTART};
    sigaddset(&handler.sa_mask, SIGTERM);
    sigaction(SIGUSR1, &handler, NULL);

    fill(); RECORD("uname", SYS_uname, AT(0));
    fill(); RECORD("sysinfo", SYS_sysinfo, AT(0));
    fill(); RECORD("times", SYS_times, AT(0));
    fill(); RECORD("getrusage", SYS_getrusage, RUSAGE_SELF, AT(0));
    fill(); RECORD("clock_gettime", SYS_clock_gettime, CLOCK_MONOTONIC, AT(0));
    fill(); RECORD("clock_getres", SYS_clock_getres, CLOCK_MONOTONIC, AT(0));
    fill(); RECORD("gettimeofday", SYS_gettimeofday, AT(0), AT(64));
    fill(); RECORD("time", SYS_time, AT(0));
    fill(); RECORD("getrlimit", SYS_getrlimit, RLIMIT_NOFILE, AT(0));
    fill(); RECORD("prlimit64", SYS_prlimit64, 0, RLIMIT_NOFILE, 0, AT(0));
    fill(); RECORD("getitimer", SYS_getitimer, ITIMER_REAL, AT(0));
    fill();
    memset(arena + 64, 0, 32);
    RECORD("setitimer", SYS_setitimer, ITIMER_REAL, AT(64), AT(0));
    fill(); RECORD("rt_sigaction", SYS_rt_sigaction, SIGUSR1, 0, AT(0), 8);
    fill(); RECORD("rt_sigprocmask", SYS_rt_sigprocmask, SIG_BLOCK, 0, AT(0), 8);
    fill(); RECORD("rt_sigpending", SYS_rt_sigpending, AT(0), 8);
    fill(); RECORD("sigaltstack", SYS_sigaltstack, 0, AT(0));
    fill(); RECORD("getresuid", SYS_getresuid, AT(0), AT(8), AT(16));
    fill(); RECORD("getresgid", SYS_getresgid, AT(0), AT(8), AT(16));
    fill(); RECORD("getgroups", SYS_getgroups, 64, AT(0));
    fill(); RECORD("getgroups_probe", SYS_getgroups, 0, AT(0));
    fill(); RECORD("sched_getaffinity", SYS_sched_getaffinity, 0, 128, AT(0));
    fill(); RECORD("sched_getparam", SYS_sched_getparam, 0, AT(0));
    fill(); RECORD("sched_rr_get_interval", SYS_sched_rr_get_interval, 0, AT(0));
    fill(); RECORD("sched_getattr", SYS_sched_getattr, 0, AT(0), 56, 0);
    fill();
    memset(arena, 0, 128);
    put_int(0, 128);
    arena[100] = 1;  /* a non-zero byte the kernel does not know: -E2BIG */
    RECORD("sched_setattr_E2BIG", SYS_sched_setattr, 0, AT(0), 0);
    fill(); RECORD("getrandom", SYS_getrandom, AT(0), 16, 0);
    fill(); RECORD("getcpu", SYS_getcpu, AT(0), AT(8), 0);
    fill(); RECORD("get_robust_list", SYS_get_robust_list, 0, AT(0), AT(8));
    fill(); RECORD("get_mempolicy", SYS_get_mempolicy, AT(0), AT(8), 65, 0, 0);
    fill(); RECORD("mincore", SYS_mincore, arena, ARENA, AT(2048));
    fill(); RECORD("prctl_PR_GET_NAME", SYS_prctl, PR_GET_NAME, AT(0));
    fill(); RECORD("prctl_PR_GET_PDEATHSIG", SYS_prctl, PR_GET_PDEATHSIG, AT(0));
    fill(); RECORD("arch_prctl_ARCH_GET_FS", SYS_arch_prctl, ARCH_GET_FS, AT(0));
    fill();
    put_int(0, _LINUX_CAPABILITY_VERSION_3); put_int(4, 0);
    RECORD("capget", SYS_capget, AT(0), AT(64));
    fill();
    put_int(0, 0); put_int(4, 0);
    RECORD("capget_probe", SYS_capget, AT(0), 0);
    fill();
    put_int(0, 256);
    RECORD("lsm_list_modules", 461, AT(64), AT(0), 0);

    fill();
    put_int(0, 0);
    RECORD("futex_lock_pi", SYS_futex, AT(0), FUTEX_LOCK_PI | FUTEX_PRIVATE_FLAG, 0, 0, 0, 0);
    RECORD("futex_unlock_pi", SYS_futex, AT(0), FUTEX_UNLOCK_PI | FUTEX_PRIVATE_FLAG, 0, 0, 0,
           0);
    fill();
    put_int(0, 0); put_int(64, 5);
    RECORD("futex_wake_op", SYS_futex, AT(0), FUTEX_WAKE_OP | FUTEX_PRIVATE_FLAG, 1, 1, AT(64),
           FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0));

    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, NULL);
    syscall(SYS_tgkill, getpid(), gettid(), SIGUSR2);
    fill();
    put_long(0, 1L << (SIGUSR2 - 1));
    RECORD("rt_sigtimedwait", SYS_rt_sigtimedwait, AT(0), AT(64), 0, 8);
}

static void timers(void) {
    fill();
    put_long(0, 0); put_long(8, 1000);
    RECORD("nanosleep", SYS_nanosleep, AT(0), AT(64));
    fill();
    put_long(0, 0); put_long(8, 1000);
    RECORD("clock_nanosleep", SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, AT(0), AT(64));

    fill();
    if (RECORD("timer_create", SYS_timer_create, CLOCK_MONOTONIC, 0, AT(0)) == 0) {
        int id = get_int(0);
        fill();
        memset(arena + 64, 0, 32);
        RECORD("timer_settime", SYS_timer_settime, id, 0, AT(64), AT(0));
        fill(); RECORD("timer_gettime", SYS_timer_gettime, id, AT(0));
        syscall(SYS_timer_delete, id);
    }
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    fill();
    memset(arena + 64, 0, 32);
    put_long(64 + 16, 10);  /* it_value: 10 s */
    RECORD("timerfd_settime", SYS_timerfd_settime, tfd, 0, AT(64), AT(0));
    fill(); RECORD("timerfd_gettime", SYS_timerfd_gettime, tfd, AT(0));
    close(tfd);
}

static void waiting(int p[2]) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = 0x1122334455667788};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &event);
    write(p[1], "!", 1);
    fill(); RECORD("epoll_wait", SYS_epoll_wait, ep, AT(0), 4, 0);
    fill(); RECORD("epoll_pwait", SYS_epoll_pwait, ep, AT(0), 4, 0, 0, 8);
    close(ep);

    fill();
    struct pollfd fds[2] = {{.fd = p[0], .events = POLLIN}, {.fd = p[1], .events = POLLOUT}};
    memcpy(arena, fds, sizeof fds);
    RECORD("poll", SYS_poll, AT(0), 2, 0);
    fill();
    memcpy(arena, fds, sizeof fds);
    put_long(64, 0); put_long(72, 1000000);
    RECORD("ppoll", SYS_ppoll, AT(0), 2, AT(64), 0, 8);

    fd_set readable, writable;
    FD_ZERO(&readable);
    FD_ZERO(&writable);
    FD_SET(p[0], &readable);
    FD_SET(p[1], &writable);
    int nfds = (p[0] > p[1] ? p[0] : p[1]) + 1;
    fill();
    memcpy(arena, &readable, sizeof readable);
    memcpy(arena + 128, &writable, sizeof writable);
    put_long(512, 0); put_long(520, 1000);
    RECORD("select", SYS_select, nfds, AT(0), AT(128), 0, AT(512));
    fill();
    memcpy(arena, &readable, sizeof readable);
    put_long(512, 0); put_long(520, 1000000);
    RECORD("pselect6", SYS_pselect6, nfds, AT(0), 0, 0, AT(512), 0);
    drain(p[0]);
    fill();
    memcpy(arena, &readable, sizeof readable);
    put_long(512, 0); put_long(520, 1000);
    RECORD("select_timeout", SYS_select, nfds, AT(0), 0, 0, AT(512));

    pid_t child = fork();
    if (child == 0) _exit(7);
    fill(); RECORD("wait4", SYS_wait4, child, AT(0), 0, AT(64));
    child = fork();
    if (child == 0) _exit(8);
    fill(); RECORD("waitid", SYS_waitid, P_PID, child, AT(0), WEXITED, AT(256));
    fill(); RECORD("waitid_ECHILD", SYS_waitid, P_ALL, 0, AT(0), WEXITED | WNOHANG, AT(256));
    fill(); RECORD("wait4_ECHILD", SYS_wait4, -1, AT(0), WNOHANG, AT(64));

    fill();
    long child_pid = RECORD("clone", SYS_clone, CLONE_PARENT_SETTID | SIGCHLD, 0, AT(0), 0, 0);
    waitpid(child_pid, NULL, 0);
    fill();
    memset(arena, 0, 64);
    put_long(0, CLONE_PIDFD | CLONE_PARENT_SETTID);
    put_long(8, AT(256));
    put_long(24, AT(264));
    put_long(32, SIGCHLD);
    child_pid = RECORD("clone3", SYS_clone3, AT(0), CLONE_ARGS_SIZE_VER0);
    if (child_pid > 0) {
        waitpid(child_pid, NULL, 0);
        close(get_int(256));
    }
}

static void sockets(void) {
    fill(); RECORD("pipe2", SYS_pipe2, AT(0), O_CLOEXEC);
    close(get_int(0)); close(get_int(4));
    fill(); RECORD("socketpair", SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, AT(0));
    close(get_int(0)); close(get_int(4));

    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    int name_len = snprintf(address.sun_path + 1, sizeof address.sun_path - 1,
                            "retrograde-syscalls-%d", getpid());
    socklen_t address_len = offsetof(struct sockaddr_un, sun_path) + 1 + name_len;
    bind(listener, (struct sockaddr *)&address, address_len);
    listen(listener, 4);
    fill();
    put_int(200, 4);  /* shorter than the name: the kernel truncates */
    RECORD("getsockname_truncated", SYS_getsockname, listener, AT(0), AT(200));
    fill();
    put_int(200, 128);
    RECORD("getsockname", SYS_getsockname, listener, AT(0), AT(200));

    int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    connect(client, (struct sockaddr *)&address, address_len);
    fill();
    put_int(200, 128);
    long server = RECORD("accept4", SYS_accept4, listener, AT(0), AT(200), SOCK_CLOEXEC);
    fill();
    put_int(200, 128);
    RECORD("getpeername", SYS_getpeername, client, AT(0), AT(200));
    fill();
    put_int(64, 16);
    RECORD("getsockopt", SYS_getsockopt, client, SOL_SOCKET, SO_TYPE, AT(0), AT(64));
    close(client);
    close(server);
    close(listener);

    int d[2];
    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, d);
    send(d[0], "twenty bytes long...", 20, 0);
    fill();
    put_int(300, 128);
    RECORD("recvfrom_MSG_TRUNC", SYS_recvfrom, d[1], AT(0), 8, MSG_TRUNC, AT(100), AT(300));

    char data[] = "payload-0123";
    struct iovec out_iov = {.iov_base = data, .iov_len = 12};
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    struct msghdr out = {.msg_iov = &out_iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&out);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    int passed = 0;
    memcpy(CMSG_DATA(cmsg), &passed, sizeof passed);
    sendmsg(d[0], &out, 0);
    fill();
    struct iovec in_iov[2] = {{(void *)AT(1024), 5}, {(void *)AT(1100), 100}};
    memcpy(arena + 64, in_iov, sizeof in_iov);
    struct msghdr in = {.msg_name = (void *)AT(512), .msg_namelen = 128,
                        .msg_iov = (struct iovec *)AT(64), .msg_iovlen = 2,
                        .msg_control = (void *)AT(1536), .msg_controllen = 64};
    memcpy(arena, &in, sizeof in);
    if (RECORD("recvmsg", SYS_recvmsg, d[1], AT(0), MSG_CMSG_CLOEXEC) > 0)
        close(get_int(1536 + CMSG_LEN(0)));

    fill();
    struct iovec first = {data, 3}, second = {data + 3, 5};
    memcpy(arena + 256, &first, sizeof first);
    memcpy(arena + 272, &second, sizeof second);
    struct mmsghdr sent[2] = {
        {.msg_hdr = {.msg_iov = (struct iovec *)AT(256), .msg_iovlen = 1}},
        {.msg_hdr = {.msg_iov = (struct iovec *)AT(272), .msg_iovlen = 1}},
    };
    memcpy(arena, sent, sizeof sent);
    RECORD("sendmmsg", SYS_sendmmsg, d[0], AT(0), 2, 0);
    fill();
    struct iovec into_first = {(void *)AT(1024), 64}, into_second = {(void *)AT(1200), 64};
    memcpy(arena + 256, &into_first, sizeof into_first);
    memcpy(arena + 272, &into_second, sizeof into_second);
    struct mmsghdr received[2] = {
        {.msg_hdr = {.msg_iov = (struct iovec *)AT(256), .msg_iovlen = 1}},
        {.msg_hdr = {.msg_iov = (struct iovec *)AT(272), .msg_iovlen = 1}},
    };
    memcpy(arena, received, sizeof received);
    RECORD("recvmmsg", SYS_recvmmsg, d[1], AT(0), 2, MSG_DONTWAIT, 0);
    close(d[0]);
    close(d[1]);
}

static void terminals(int p[2]) {
    fill(); RECORD("ioctl_TCGETS_pipe", SYS_ioctl, p[0], TCGETS, AT(0));
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0) return;
    fill(); RECORD("ioctl_TIOCGPTN", SYS_ioctl, master, TIOCGPTN, AT(0));
    unlockpt(master);
    int terminal = open(ptsname(master), O_RDWR | O_NOCTTY);
    if (terminal < 0) return;
    fill(); RECORD("ioctl_TCGETS", SYS_ioctl, terminal, TCGETS, AT(0));
    fill(); RECORD("ioctl_TCGETS2", SYS_ioctl, terminal, TCGETS2, AT(0));
    fill(); RECORD("ioctl_TIOCGWINSZ", SYS_ioctl, terminal, TIOCGWINSZ, AT(0));
    close(terminal);
    close(master);
}

static void sysv_ipc(void) {
    int shm = syscall(SYS_shmget, IPC_PRIVATE, 4096, 0600);
    if (shm >= 0) {
        fill(); RECORD("shmctl_IPC_STAT", SYS_shmctl, shm, IPC_STAT, AT(0));
        syscall(SYS_shmctl, shm, IPC_RMID, 0);
    }
    int sem = syscall(SYS_semget, IPC_PRIVATE, 2, 0600);
    if (sem >= 0) {
        fill(); RECORD("semctl_IPC_STAT", SYS_semctl, sem, 0, IPC_STAT, AT(0));
        syscall(SYS_semctl, sem, 0, IPC_RMID, 0);
    }
    int msq = syscall(SYS_msgget, IPC_PRIVATE, 0600);
    if (msq >= 0) {
        fill(); RECORD("msgctl_IPC_STAT", SYS_msgctl, msq, IPC_STAT, AT(0));
        struct { long type; char text[2]; } message = {1, {'h', 'i'}};
        syscall(SYS_msgsnd, msq, &message, 2, IPC_NOWAIT);
        fill(); RECORD("msgrcv", SYS_msgrcv, msq, AT(0), 64, 0, IPC_NOWAIT);
        syscall(SYS_msgctl, msq, IPC_RMID, 0);
    }
    char name[64];
    snprintf(name, sizeof name, "retrograde-syscalls-%d", getpid());
    struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 64};
    int mq = syscall(SYS_mq_open, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600, &attr);
    if (mq >= 0) {
        syscall(SYS_mq_timedsend, mq, "hey", 3, 5, 0);
        fill(); RECORD("mq_timedreceive", SYS_mq_timedreceive, mq, AT(0), 64, AT(128), 0);
        fill(); RECORD("mq_getsetattr", SYS_mq_getsetattr, mq, 0, AT(0));
        close(mq);
        syscall(SYS_mq_unlink, name);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    char path[4096], path2[4096];
    snprintf(path, sizeof path, "%s/f", argv[1]);
    snprintf(path2, sizeof path2, "%s/g", argv[1]);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    printf("base %ld\n", (long)arena);
    sizes();
    ioctl_requests();
    int p[2];
    pipe2(p, O_CLOEXEC);
    files(p, path, path2);
    process_state();
    timers();
    waiting(p);
    sockets();
    terminals(p);
    sysv_ipc();
    return 0;
}
