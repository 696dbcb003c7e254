"""The x86-64 Linux syscall table: numbers, names, and the memory each call writes.

The recorder stops at every syscall exit and asks :func:`output_regions` which bytes of
the tracee the kernel wrote, saves them, and the replayer emulates the call by writing
them back and setting the recorded result. Every rule below answers one question: *given
the arguments and the result of a completed call, where may the kernel have stored into
the caller's memory?*

A rule may over-approximate but must never under-approximate. Bytes a region covers that
the kernel left alone cost nothing: the recorder saves what they held at the syscall exit
and the replayer writes those same values back at the same moment. A byte the kernel
wrote that no region covers is a silently wrong trace. So where the exact extent depends on
a value the kernel overwrote (the sockaddr length of ``accept``), on kernel-internal state
(``select`` clamps ``nfds`` to the size of the fd table) or on a race (the FUTEX_WAITERS
bit), the rule takes the larger extent.

Conventions, from the kernel rather than the man pages where the two disagree:

* Results are signed; -4095..-1 is ``-errno``. At a ptrace syscall-exit stop the kernel's
  internal restart codes (-ERESTARTSYS and friends, 512..516) are visible too; they are
  failures like any other.
* A failed call writes nothing, except the calls registered with ``on_failure=True``,
  whose rules say what the kernel stores even then (``waitid``'s siginfo, the remaining
  time of an interrupted ``nanosleep``, ...).
* ``int`` arguments are the low 32 bits of their register; the kernel ignores the rest.
* NULL pointers and empty regions are dropped.
* A syscall, ioctl request, fcntl command or prctl option the table does not know raises
  :class:`UnsupportedSyscall` when it succeeds. When it fails, it stored nothing, with one
  exception: an unknown syscall *number* is only known to be harmless when it failed with
  ENOSYS, because only then did no kernel code run for it. (The recorder does not let such
  a number run at all: see :func:`kernel_may_implement`; nor an ioctl, fcntl or prctl
  request the table lacks: see :class:`UnmodelledRequest`. Under ``record --strict`` both
  run, and one that succeeds stops the recording.)
* ``restart_syscall`` continues the call that an earlier stop of the same task reported
  with -ERESTART_RESTARTBLOCK and writes what that call writes (``poll``'s revents,
  ``nanosleep``'s remaining time): the recorder passes the original number and arguments
  with the new result. Given as itself (no call to continue: the kernel answers EINTR),
  it stores nothing.

Struct sizes are ``sizeof`` on x86-64 (``STRUCT_SIZES``); ``tests/test_syscalls.py``
checks each against gcc, and checks the rules against a real kernel by running syscalls on
a buffer full of a canary pattern and comparing what changed with what the rules predict.
"""

from __future__ import annotations

import errno
import platform
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from ptrace.syscall.linux.x86_64 import (  # type: ignore[import-untyped]
    SYSCALL_NAMES as _PTRACE_SYSCALL_NAMES,
)

__all__ = [
    "EXECUTED_IN_REPLAY",
    "INTERRUPTED",
    "MMAP_FAMILY",
    "REFUSED_IN_RECORDING",
    "STRUCT_SIZES",
    "SYSCALL_NAMES",
    "Region",
    "UnmodelledRequest",
    "UnsupportedSyscall",
    "ioctl_request_name",
    "is_supported",
    "kernel_may_implement",
    "output_regions",
    "remote_writes",
    "signed32",
    "syscall_name",
    "syscall_number",
    "unmodelled_request",
]

Region = tuple[int, int]
"""(address, length) of bytes the kernel may have written."""

ReadMemory = Callable[[int, int], bytes]


# --- names and numbers -------------------------------------------------------------------

# python-ptrace's table stops at process_madvise (440), calls 283 "timerfd" where the
# kernel says timerfd_create, and also lists the x32 ABI's 512-547, which are not calls
# a 64-bit task can make (without __X32_SYSCALL_BIT they return ENOSYS). The rest is from
# arch/x86/entry/syscalls/syscall_64.tbl up to Linux 6.18.
_NEWER_NAMES: Final = {
    283: "timerfd_create",
    335: "uretprobe",  # 6.11
    336: "uprobe",  # 6.18
    441: "epoll_pwait2",
    442: "mount_setattr",
    443: "quotactl_fd",
    444: "landlock_create_ruleset",
    445: "landlock_add_rule",
    446: "landlock_restrict_self",
    447: "memfd_secret",
    448: "process_mrelease",
    449: "futex_waitv",
    450: "set_mempolicy_home_node",
    451: "cachestat",  # 6.5
    452: "fchmodat2",
    453: "map_shadow_stack",
    454: "futex_wake",  # 6.7
    455: "futex_wait",
    456: "futex_requeue",
    457: "statmount",  # 6.8
    458: "listmount",
    459: "lsm_get_self_attr",
    460: "lsm_set_self_attr",
    461: "lsm_list_modules",
    462: "mseal",  # 6.10
    463: "setxattrat",  # 6.13
    464: "getxattrat",
    465: "listxattrat",
    466: "removexattrat",
    467: "open_tree_attr",  # 6.15
    468: "file_getattr",  # 6.17
    469: "file_setattr",
}

SYSCALL_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {nr: name for nr, name in _PTRACE_SYSCALL_NAMES.items() if nr < 512} | _NEWER_NAMES
)
_NUMBERS: Final = {name: nr for nr, name in SYSCALL_NAMES.items()}
_UNNAMED = re.compile(r"syscall_(-?\d+)")


def syscall_name(nr: int) -> str:
    """The kernel's name for syscall ``nr`` on x86-64, or ``syscall_NR`` if it has none."""
    return SYSCALL_NAMES.get(nr, f"syscall_{nr}")


def syscall_number(name: str) -> int:
    """The inverse of :func:`syscall_name` (``syscall_NR`` names included)."""
    if name in _NUMBERS:
        return _NUMBERS[name]
    unnamed = _UNNAMED.fullmatch(name)
    if unnamed is None:
        raise ValueError(f"unknown syscall name {name!r}")
    return int(unnamed.group(1))


class UnsupportedSyscall(Exception):
    """A completed call whose writes to memory the table does not know.

    Recording it would make a trace that replays wrongly, so the recorder stops with this
    one-line message instead: for a syscall number under ``record --strict`` (otherwise
    the call is not run and the program is told ENOSYS), and for a request of a
    multiplexed call that succeeded. ``name`` is the syscall's name, or for a multiplexed call
    the request the table lacks: ``ioctl(0x5409)``, ``fcntl(1039)``, ``prctl(59)``.
    """

    def __init__(self, nr: int, name: str | None = None) -> None:
        self.nr = nr
        self.name = syscall_name(nr) if name is None else name
        super().__init__(nr, self.name)

    def __str__(self) -> str:
        return f"unsupported syscall {self.name} (nr {self.nr})"


# --- the shape of kernel structs ---------------------------------------------------------

# sizeof() on x86-64 (glibc and the uapi headers agree on all of these, except that
# "struct termios" is the kernel's, from <asm/termbits.h>: glibc's has 24 more bytes).
STRUCT_SIZES: Final[Mapping[str, int]] = MappingProxyType({
    "struct stat": 144,
    "struct statx": 256,
    "struct statfs": 120,
    "struct rusage": 144,
    "struct utsname": 390,
    "struct sysinfo": 112,
    "struct tms": 32,
    "struct timespec": 16,
    "struct timeval": 16,
    "struct timezone": 8,
    "struct itimerspec": 32,
    "struct itimerval": 32,
    "struct rlimit": 16,
    "struct timex": 208,
    "siginfo_t": 128,
    "stack_t": 24,
    "struct epoll_event": 12,  # __attribute__((packed)) on x86-64 only
    "struct pollfd": 8,
    "struct flock": 32,
    "struct f_owner_ex": 8,
    "struct iovec": 16,
    "struct msghdr": 56,
    "struct mmsghdr": 64,
    "struct sockaddr_storage": 128,
    "struct termios": 36,
    "struct termios2": 44,
    "struct termio": 18,
    "struct winsize": 8,
    "struct ifreq": 40,
    "struct ifconf": 16,
    "struct fiemap": 32,
    "struct fiemap_extent": 56,
    "struct fsxattr": 28,
    "struct file_dedupe_range": 24,
    "struct file_dedupe_range_info": 32,
    "struct sched_param": 4,
    "struct user_desc": 16,
    "struct mq_attr": 64,
    "struct msqid64_ds": 120,
    "struct semid64_ds": 104,
    "struct shmid64_ds": 112,
    "struct msginfo": 32,
    "struct seminfo": 40,
    "struct shminfo64": 72,
    "struct shm_info": 48,
    "struct cachestat": 40,
    "struct __user_cap_data_struct": 12,
})
_S = STRUCT_SIZES

_PAGE_SIZE = 4096
_UIO_MAXIOV = 1024  # the kernel refuses longer iovec arrays, so a completed call has fewer

# Restart codes from include/linux/errno.h: never returned to user space, but seen by ptrace.
_ERESTARTSYS = 512
_ERESTARTNOINTR = 513
_ERESTARTNOHAND = 514
_ERESTART_RESTARTBLOCK = 516
# The results of a call that a signal interrupted while it slept.
INTERRUPTED = frozenset(
    -e for e in (errno.EINTR, _ERESTARTSYS, _ERESTARTNOINTR, _ERESTARTNOHAND,
                 _ERESTART_RESTARTBLOCK)
)


@dataclass(frozen=True)
class _Exit:
    """A completed call as the rules see it: its arguments, signed result and memory."""

    nr: int
    args: tuple[int, ...]
    result: int
    read: ReadMemory

    @property
    def failed(self) -> bool:
        return -4095 <= self.result < 0

    def int_arg(self, i: int) -> int:
        """Argument ``i`` as the C ``int`` the kernel takes from its register's low half."""
        return signed32(self.args[i])

    def u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def s32(self, addr: int) -> int:
        return signed32(self.u32(addr))

    def u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def iovec_prefix(self, iov: int, count: int, nbytes: int) -> list[Region]:
        """Where a scatter read put its first ``nbytes``: the iovecs, filled in order."""
        if not iov or nbytes <= 0:
            return []
        count = min(count, _UIO_MAXIOV)
        out = []
        for base, length in struct.iter_unpack("<QQ", self.read(iov, count * 16)):
            if nbytes <= 0:
                break
            out.append((base, min(length, nbytes)))
            nbytes -= length
        return out


def signed32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


Rule = Callable[[_Exit], Iterable[Region]]

_RULES: dict[int, Rule] = {}
_WRITES_ON_FAILURE: set[int] = set()


def _define(names: str, rule: Rule, *, on_failure: bool = False) -> None:
    for name in names.split():
        nr = _NUMBERS[name]
        assert nr not in _RULES, f"{name} defined twice"
        _RULES[nr] = rule
        if on_failure:
            _WRITES_ON_FAILURE.add(nr)


def _rule(names: str, *, on_failure: bool = False) -> Callable[[Rule], Rule]:
    def register(rule: Rule) -> Rule:
        _define(names, rule, on_failure=on_failure)
        return rule

    return register


def _nothing(call: _Exit) -> list[Region]:
    return []


def _struct(arg: int, size: int) -> Rule:
    """A struct of fixed size at argument ``arg``."""
    return lambda c: [(c.args[arg], size)]


def _structs(*placed: tuple[int, int]) -> Rule:
    """Several fixed-size outputs: (argument, size) pairs."""
    return lambda c: [(c.args[arg], size) for arg, size in placed]


def _result_bytes(arg: int, unit: int = 1) -> Rule:
    """The result counts the bytes (or ``unit``-sized items) stored at argument ``arg``."""
    return lambda c: [(c.args[arg], c.result * unit)]


def _result_bytes_unless_probe(arg: int, size_arg: int, unit: int = 1) -> Rule:
    """Like :func:`_result_bytes`, but a size of 0 only asks how big the answer is."""
    return lambda c: [(c.args[arg], c.result * unit)] if c.args[size_arg] else []


def _sized_by(arg: int, size_arg: int, extra: int = 0) -> Rule:
    """A buffer whose size the caller passes, such as a sigset and its sigsetsize."""
    return lambda c: [(c.args[arg], extra + c.args[size_arg])]


def _iovecs(iov_arg: int, count_arg: int) -> Rule:
    return lambda c: c.iovec_prefix(c.args[iov_arg], c.args[count_arg], c.result)


# --- calls that store nothing in the caller's memory ---------------------------------------

_define(
    """
    write pwrite64 writev pwritev pwritev2 sendto sendmsg
    open openat openat2 creat close close_range dup dup2 dup3 lseek
    access faccessat faccessat2 chdir fchdir chroot pivot_root umask
    mkdir mkdirat rmdir unlink unlinkat rename renameat renameat2 link linkat
    symlink symlinkat mknod mknodat chmod fchmod fchmodat fchmodat2
    chown fchown lchown fchownat utime utimes futimesat utimensat
    truncate ftruncate fallocate fsync fdatasync sync syncfs sync_file_range
    fadvise64 readahead flock tee
    setxattr lsetxattr fsetxattr setxattrat removexattr lremovexattr fremovexattr
    removexattrat file_setattr
    socket connect bind listen shutdown setsockopt
    epoll_create epoll_create1 epoll_ctl eventfd eventfd2 signalfd signalfd4
    timerfd_create inotify_init inotify_init1 inotify_add_watch inotify_rm_watch
    fanotify_init fanotify_mark memfd_create memfd_secret userfaultfd
    pidfd_open pidfd_getfd pidfd_send_signal open_by_handle_at
    open_tree open_tree_attr move_mount fsopen fsconfig fsmount fspick mount_setattr
    mount umount2 swapon swapoff
    landlock_create_ruleset landlock_add_rule landlock_restrict_self
    mmap munmap mprotect mremap brk madvise msync mlock mlock2 munlock mlockall
    munlockall remap_file_pages pkey_mprotect pkey_alloc pkey_free mseal
    map_shadow_stack process_madvise process_mrelease
    mbind set_mempolicy set_mempolicy_home_node migrate_pages
    shmget shmat shmdt semget semop semtimedop msgget msgsnd
    mq_open mq_unlink mq_timedsend mq_notify
    getpid getppid gettid getuid geteuid getgid getegid getpgrp getpgid getsid
    setpgid setsid setuid setgid setreuid setregid setresuid setresgid
    setfsuid setfsgid setgroups
    getpriority setpriority sched_yield sched_setparam sched_setscheduler
    sched_getscheduler sched_get_priority_max sched_get_priority_min
    sched_setaffinity ioprio_get ioprio_set
    setrlimit personality unshare setns kcmp membarrier rseq
    set_tid_address set_robust_list
    kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo rt_sigsuspend pause alarm
    rt_sigreturn restart_syscall
    timer_getoverrun timer_delete
    futex_waitv futex_wake futex_wait futex_requeue
    execve execveat exit exit_group fork vfork
    settimeofday clock_settime sethostname setdomainname reboot vhangup acct
    iopl ioperm init_module finit_module delete_module kexec_load kexec_file_load
    add_key request_key lsm_set_self_attr
    """,
    _nothing,
)

# --- fixed-size structs -----------------------------------------------------------------

_define("stat fstat lstat", _struct(1, _S["struct stat"]))
_define("newfstatat", _struct(2, _S["struct stat"]))
_define("statx", _struct(4, _S["struct statx"]))
_define("statfs fstatfs", _struct(1, _S["struct statfs"]))
_define("uname", _struct(0, _S["struct utsname"]))
_define("sysinfo", _struct(0, _S["struct sysinfo"]))
_define("times", _struct(0, _S["struct tms"]))
_define("getrusage", _struct(1, _S["struct rusage"]))
_define("getrlimit", _struct(1, _S["struct rlimit"]))
_define("prlimit64", _struct(3, _S["struct rlimit"]))
_define("gettimeofday", _structs((0, _S["struct timeval"]), (1, _S["struct timezone"])))
_define("time", _struct(0, 8))
_define("clock_gettime clock_getres", _struct(1, _S["struct timespec"]))
_define("adjtimex", _struct(0, _S["struct timex"]))
_define("clock_adjtime", _struct(1, _S["struct timex"]))
_define("getitimer", _struct(1, _S["struct itimerval"]))
_define("setitimer", _struct(2, _S["struct itimerval"]))
_define("timer_create", _struct(2, 4))  # the kernel's timer_t is an int
_define("timer_settime timerfd_settime", _struct(3, _S["struct itimerspec"]))
_define("timer_gettime timerfd_gettime", _struct(1, _S["struct itimerspec"]))
_define("sigaltstack", _struct(1, _S["stack_t"]))
# struct sigaction as the kernel sees it: handler, flags, restorer, then a sigset of
# sigsetsize bytes (which rt_sigaction requires to be 8).
_define("rt_sigaction", _sized_by(2, 3, extra=24))
_define("rt_sigprocmask", _sized_by(2, 3))
_define("rt_sigpending", _sized_by(0, 1))
_define("pipe pipe2", _struct(0, 8))
_define("socketpair", _struct(3, 8))
_define("getresuid getresgid", _structs((0, 4), (1, 4), (2, 4)))
_define("getcpu", _structs((0, 4), (1, 4)))
_define("sched_getparam", _struct(1, _S["struct sched_param"]))
_define("sched_rr_get_interval", _struct(1, _S["struct timespec"]))
_define("get_robust_list", _structs((1, 8), (2, 8)))
_define("get_thread_area", _struct(0, _S["struct user_desc"]))
# With entry_number -1 the kernel picks a free TLS slot and stores its number there.
_define("set_thread_area", _struct(0, 4))
_define("mq_getsetattr", _struct(2, _S["struct mq_attr"]))
_define("cachestat", _struct(2, _S["struct cachestat"]))
# copy_struct_to_user: usize bytes, the tail beyond the kernel's struct zeroed.
_define("file_getattr", _sized_by(2, 3))


# --- buffers the result measures --------------------------------------------------------

_define("read pread64 getdents getdents64 readlink", _result_bytes(1))
_define("readlinkat", _result_bytes(2))
_define("getcwd getrandom", _result_bytes(0))  # getcwd counts the NUL
_define("sched_getaffinity", _result_bytes(2))
_define("epoll_wait epoll_pwait epoll_pwait2", _result_bytes(1, _S["struct epoll_event"]))
_define("getgroups", _result_bytes_unless_probe(1, 0, unit=4))
_define("getxattr lgetxattr fgetxattr", _result_bytes_unless_probe(2, 3))
_define("listxattr llistxattr flistxattr", _result_bytes_unless_probe(1, 2))
_define("listxattrat", _result_bytes_unless_probe(3, 4))
_define("listmount", _result_bytes(1, 8))
_define("readv preadv preadv2", _iovecs(1, 2))
_define("process_vm_readv", _iovecs(1, 2))
# process_vm_writev stores into the process it names, not into the caller: nothing here.
# When that process is the caller's own, the recorder keeps what it stored (remote_writes).
_define("process_vm_writev", _nothing)
# Reading from a pipe fills the iovecs; writing into one stores nothing. The call does not
# say which, so take the larger: when it wrote, those bytes are the caller's own, unchanged.
_define("vmsplice", _iovecs(1, 2))


@_rule("getxattrat")
def _getxattrat(c: _Exit) -> list[Region]:
    # struct xattr_args { __aligned_u64 value; __u32 size; __u32 flags; }
    args = c.args[4]
    value, size = c.u64(args), c.u32(args + 8)
    return [(value, c.result)] if size else []


@_rule("msgrcv")
def _msgrcv(c: _Exit) -> list[Region]:
    return [(c.args[1], 8 + c.result)]  # struct msgbuf: a long mtype, then the text


@_rule("mq_timedreceive")
def _mq_timedreceive(c: _Exit) -> list[Region]:
    return [(c.args[1], c.result), (c.args[3], 4)]


@_rule("mincore")
def _mincore(c: _Exit) -> list[Region]:
    return [(c.args[2], (c.args[1] + _PAGE_SIZE - 1) // _PAGE_SIZE)]


@_rule("get_mempolicy")
def _get_mempolicy(c: _Exit) -> list[Region]:
    # copy_nodes_to_user() in mm/mempolicy.c: ALIGN(maxnode - 1, 64) / 8 bytes, the part
    # beyond the kernel's own nodemask cleared.
    maxnode = c.args[2]
    mask_bytes = (maxnode - 1 + 63) // 64 * 8 if maxnode else 0
    return [(c.args[0], 4), (c.args[1], mask_bytes)]


@_rule("move_pages")
def _move_pages(c: _Exit) -> list[Region]:
    return [(c.args[4], c.args[1] * 4)]  # one int status per page


@_rule("sched_getattr")
def _sched_getattr(c: _Exit) -> list[Region]:
    # sched_attr_copy_to_user() stores min(usize, its own size) in attr->size, then
    # copies that many bytes.
    attr = c.args[1]
    return [(attr, c.u32(attr))] if attr else []


@_rule("sched_setattr", on_failure=True)
def _sched_setattr(c: _Exit) -> list[Region]:
    # An attr larger than the kernel knows, with non-zero tail: -E2BIG, and attr->size
    # set to the size the kernel does know.
    return [(c.args[1], 4)] if c.result == -errno.E2BIG else []


@_rule("statmount")
def _statmount(c: _Exit) -> list[Region]:
    buf = c.args[1]
    return [(buf, min(c.u32(buf), c.args[2]))] if buf else []  # sm->size: bytes stored


def _lsm_sized(c: _Exit, buf: int, size_ptr: int) -> list[Region]:
    # *size is value-result: the bytes stored in buf, or with -E2BIG the bytes needed.
    if c.result == -errno.E2BIG:
        return [(size_ptr, 4)]
    if c.failed or not size_ptr:
        return []
    return [(size_ptr, 4), (buf, c.u32(size_ptr))]


@_rule("lsm_get_self_attr", on_failure=True)
def _lsm_get_self_attr(c: _Exit) -> list[Region]:
    return _lsm_sized(c, c.args[1], c.args[2])  # (attr, ctx, size, flags)


@_rule("lsm_list_modules", on_failure=True)
def _lsm_list_modules(c: _Exit) -> list[Region]:
    return _lsm_sized(c, c.args[0], c.args[1])  # (ids, size, flags)


@_rule("syslog")
def _syslog(c: _Exit) -> list[Region]:
    read_actions = {2, 3, 4}  # SYSLOG_ACTION_READ, _READ_ALL, _READ_CLEAR
    return [(c.args[1], c.result)] if c.int_arg(0) in read_actions else []


@_rule("modify_ldt")
def _modify_ldt(c: _Exit) -> list[Region]:
    return [(c.args[1], c.result)] if c.int_arg(0) in (0, 2) else []  # read, read_default


@_rule("seccomp")
def _seccomp(c: _Exit) -> list[Region]:
    seccomp_get_notif_sizes = 3  # struct seccomp_notif_sizes: three __u16
    return [(c.args[2], 6)] if c.args[0] == seccomp_get_notif_sizes else []


# --- file offsets the kernel advances ------------------------------------------------------

@_rule("sendfile", on_failure=True)
def _sendfile(c: _Exit) -> list[Region]:
    # sendfile64 in fs/read_write.c stores the new offset whatever do_sendfile() returned;
    # only a fault on the offset itself stops it.
    return [] if c.result == -errno.EFAULT else [(c.args[2], 8)]


@_rule("copy_file_range")
def _copy_file_range(c: _Exit) -> list[Region]:
    return [(c.args[1], 8), (c.args[3], 8)] if c.result > 0 else []


_define("splice", _structs((1, 8), (3, 8)))


@_rule("name_to_handle_at", on_failure=True)
def _name_to_handle_at(c: _Exit) -> list[Region]:
    # struct file_handle { __u32 handle_bytes; int handle_type; unsigned char f_handle[]; }
    # Too small a handle: -EOVERFLOW, with the mount id and the header (handle_bytes now
    # the size needed) stored anyway. AT_HANDLE_MNT_ID_UNIQUE asks for a u64 mount id.
    handle, mount_id = c.args[2], c.args[3]
    mount_id_size = 8 if c.args[4] & 0x001 else 4
    if c.result == -errno.EOVERFLOW:
        return [(handle, 8), (mount_id, mount_id_size)]
    if c.failed or not handle:
        return []
    return [(handle, 8 + c.u32(handle)), (mount_id, mount_id_size)]


# --- processes and signals ----------------------------------------------------------------

@_rule("wait4")
def _wait4(c: _Exit) -> list[Region]:
    # Nothing at all unless a child was reported: WNOHANG with none ready returns 0.
    if c.result <= 0:
        return []
    return [(c.args[1], 4), (c.args[3], _S["struct rusage"])]


_SIGCHLD = 17
_WAITID_SIGINFO = 28  # si_signo, si_errno, si_code, padding, si_pid, si_uid, si_status


@_rule("waitid", on_failure=True)
def _waitid(c: _Exit) -> list[Region]:
    # kernel/exit.c: sys_waitid stores si_signo, si_errno, si_code, si_pid, si_uid and
    # si_status whenever infop is non-NULL: zeros when no child was ready (WNOHANG) and
    # even when the call fails (ECHILD, EINTR, EINVAL). Not the rest of the siginfo.
    # The rusage only when a child was found, which si_signo tells.
    if c.result == -errno.EFAULT:
        return []
    infop, rusage = c.args[2], c.args[4]
    out = [(infop, _WAITID_SIGINFO)]
    if c.result == 0 and rusage and (not infop or c.s32(infop) == _SIGCHLD):
        out.append((rusage, _S["struct rusage"]))
    return out


_CLONE_PIDFD = 0x0000_1000
_CLONE_PARENT_SETTID = 0x0010_0000
_CLONE_CHILD_SETTID = 0x0100_0000


def _clone_tids(
    c: _Exit, flags: int, pidfd: int, child_tid: int, parent_tid: int
) -> list[Region]:
    if c.result == 0:
        # The child, at its first stop: schedule_tail() has stored its tid.
        return [(child_tid, 4)] if flags & _CLONE_CHILD_SETTID else []
    out = []
    if flags & _CLONE_PIDFD:
        out.append((pidfd, 4))
    if flags & _CLONE_PARENT_SETTID:
        out.append((parent_tid, 4))
    return out


@_rule("clone")
def _clone(c: _Exit) -> list[Region]:
    # x86-64 argument order: flags, stack, parent_tid, child_tid, tls. The legacy call
    # returns the pidfd through parent_tid (so CLONE_PIDFD excludes CLONE_PARENT_SETTID).
    return _clone_tids(c, c.args[0], c.args[2], c.args[3], c.args[2])


@_rule("clone3")
def _clone3(c: _Exit) -> list[Region]:
    # struct clone_args { u64 flags, pidfd, child_tid, parent_tid, ... }, pointers as u64.
    args = c.args[0]
    flags, pidfd, child_tid, parent_tid = struct.unpack("<4Q", c.read(args, 32))
    return _clone_tids(c, flags, pidfd, child_tid, parent_tid)


@_rule("rt_sigtimedwait")
def _rt_sigtimedwait(c: _Exit) -> list[Region]:
    return [(c.args[1], _S["siginfo_t"])]


@_rule("nanosleep", on_failure=True)
def _nanosleep(c: _Exit) -> list[Region]:
    # An interrupted sleep stores the time left (do_nanosleep -> nanosleep_copyout), and
    # the ptrace exit stop already sees it, with -ERESTART_RESTARTBLOCK as the result.
    return [(c.args[1], _S["struct timespec"])] if c.result in INTERRUPTED else []


@_rule("clock_nanosleep", on_failure=True)
def _clock_nanosleep(c: _Exit) -> list[Region]:
    timer_abstime = 1  # an absolute deadline has no remaining time to report
    if c.result in INTERRUPTED and not c.args[1] & timer_abstime:
        return [(c.args[3], _S["struct timespec"])]
    return []


_FUTEX_CMD_MASK = ~(128 | 256)  # FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME
_FUTEX_WAKE_OP = 5
_FUTEX_PI_ON_UADDR = frozenset({6, 7, 8, 13})  # LOCK_PI, UNLOCK_PI, TRYLOCK_PI, LOCK_PI2
_FUTEX_PI_REQUEUE = frozenset({11, 12})  # WAIT_REQUEUE_PI, CMP_REQUEUE_PI


@_rule("futex", on_failure=True)
def _futex(c: _Exit) -> list[Region]:
    # futex(uaddr, op, val, timeout_or_val2, uaddr2, val3). Most operations only read the
    # futex word. FUTEX_WAKE_OP updates *uaddr2; the PI operations store owner tids and the
    # FUTEX_WAITERS bit, which a lock attempt may have set even when it then failed
    # (ETIMEDOUT, EINTR, EDEADLK).
    if c.result == -errno.EFAULT:
        return []
    op = c.int_arg(1) & _FUTEX_CMD_MASK
    uaddr, uaddr2 = c.args[0], c.args[4]
    if op == _FUTEX_WAKE_OP:
        return [] if c.failed else [(uaddr2, 4)]
    if op in _FUTEX_PI_ON_UADDR:
        return [(uaddr, 4)]
    if op in _FUTEX_PI_REQUEUE:
        return [(uaddr, 4), (uaddr2, 4)]
    return []


_CAP_DATA_WORDS = {0x19980330: 1, 0x20071026: 2, 0x20080522: 2}  # _LINUX_CAPABILITY_VERSION_*


@_rule("capget capset", on_failure=True)
def _capabilities(c: _Exit) -> list[Region]:
    # cap_validate_magic(): an unknown header->version gets the kernel's preferred one
    # stored back, and -EINVAL; except that capget with a NULL data pointer then returns
    # 0 (this is how libcap asks which version to use). So a successful capget may have
    # rewritten the header too.
    header, data = c.args[0], c.args[1]
    if c.result == -errno.EINVAL:
        return [(header, 4)]
    if c.failed or c.nr == _NUMBERS["capset"] or not header:
        return []
    words = _CAP_DATA_WORDS.get(c.u32(header), 0)
    return [(header, 4), (data, words * _S["struct __user_cap_data_struct"])]


# --- waiting on many descriptors ------------------------------------------------------------

def _pollfds(c: _Exit) -> list[Region]:
    # do_sys_poll() stores every revents once do_poll() returns, also when a signal ended
    # the wait. (Only the revents halves change; the whole array is simpler.)
    if c.result >= 0 or c.result in INTERRUPTED:
        return [(c.args[0], (c.args[1] & 0xFFFF_FFFF) * _S["struct pollfd"])]
    return []


def _remaining_timeout(c: _Exit, arg: int) -> list[Region]:
    # poll_select_finish() stores the time left for any result, errors included, once the
    # timeout was read: only a fault reading it prevents that (or a zero timeout, or the
    # STICKY_TIMEOUTS personality, in which case the bytes are unchanged).
    return [] if c.result == -errno.EFAULT else [(c.args[arg], _S["struct timespec"])]


_define("poll", _pollfds, on_failure=True)


@_rule("ppoll", on_failure=True)
def _ppoll(c: _Exit) -> list[Region]:
    return _pollfds(c) + _remaining_timeout(c, 2)


@_rule("select pselect6", on_failure=True)
def _select(c: _Exit) -> list[Region]:
    # The three fd_sets are rewritten on success, DIV_ROUND_UP(nfds, 64) longs each, nfds
    # first clamped to the fd table's size (so maybe fewer than this). select's timeval
    # and pselect6's timespec are both 16 bytes.
    out = []
    if c.result >= 0:
        set_bytes = (c.int_arg(0) + 63) // 64 * 8
        out = [(c.args[i], set_bytes) for i in (1, 2, 3)]
    return out + _remaining_timeout(c, 4)


# --- sockets --------------------------------------------------------------------------------

def _sockaddr(c: _Exit, addr: int, addrlen_ptr: int) -> list[Region]:
    """A sockaddr returned through a value-result length (move_addr_to_user, net/socket.c).

    The kernel copies min(*addrlen as passed, real length) bytes, then stores the real
    length in *addrlen. At the exit only the real length is left, so record that many bytes
    (at most a sockaddr_storage): when the caller's buffer was shorter, the bytes beyond it
    are the caller's memory as it is at this exit, which the replay holds identically at the
    same moment. An exact extent would need *addrlen as it was at the syscall entry.
    """
    if not addr or not addrlen_ptr:
        return []
    length = min(max(c.s32(addrlen_ptr), 0), _S["struct sockaddr_storage"])
    return [(addrlen_ptr, 4), (addr, length)]


@_rule("accept accept4 getsockname getpeername")
def _accept(c: _Exit) -> list[Region]:
    return _sockaddr(c, c.args[1], c.args[2])


@_rule("recvfrom")
def _recvfrom(c: _Exit) -> list[Region]:
    # With MSG_TRUNC a datagram socket returns the datagram's real length, even if longer
    # than the buffer.
    return [(c.args[1], min(c.result, c.args[2])), *_sockaddr(c, c.args[4], c.args[5])]


@_rule("getsockopt", on_failure=True)
def _getsockopt(c: _Exit) -> list[Region]:
    # optlen is value-result: on return it holds the bytes stored in optval. SO_PEERSEC
    # and SO_PEERGROUPS answer a too-small buffer with -ERANGE and the size they need.
    optval, optlen = c.args[3], c.args[4]
    if not optlen or (c.failed and c.result != -errno.ERANGE):
        return []
    if c.failed:
        return [(optlen, 4)]
    return [(optlen, 4), (optval, max(c.s32(optlen), 0))]


_MSG_NAMELEN = 8
_MSG_IOV = 16
_MSG_CONTROL = 32
_MSG_CONTROLLEN = 40
_MSG_FLAGS = 48
_MMSG_LEN = 56


def _received_msghdr(c: _Exit, msg: int, nbytes: int) -> list[Region]:
    """What ____sys_recvmsg stores for one struct msghdr that received ``nbytes``."""
    name, iov, iovlen, control = struct.unpack("<Q8xQQQ", c.read(msg, 40))
    out = []
    if name:
        out += _sockaddr(c, name, msg + _MSG_NAMELEN)
    # msg_controllen becomes the bytes of control data stored; msg_flags is always set.
    out += [(msg + _MSG_CONTROLLEN, 8), (msg + _MSG_FLAGS, 4)]
    if control:
        out.append((control, c.u64(msg + _MSG_CONTROLLEN)))
    return out + c.iovec_prefix(iov, iovlen, nbytes)


@_rule("recvmsg")
def _recvmsg(c: _Exit) -> list[Region]:
    return _received_msghdr(c, c.args[1], c.result)


@_rule("recvmmsg")
def _recvmmsg(c: _Exit) -> list[Region]:
    out = []
    for i in range(c.result):
        header = c.args[1] + i * _S["struct mmsghdr"]
        out.append((header + _MMSG_LEN, 4))
        out += _received_msghdr(c, header, c.u32(header + _MMSG_LEN))
    # __sys_recvmmsg stores the time left when at least one datagram arrived.
    if c.result > 0:
        out.append((c.args[4], _S["struct timespec"]))
    return out


@_rule("sendmmsg")
def _sendmmsg(c: _Exit) -> list[Region]:
    return [(c.args[1] + i * _S["struct mmsghdr"] + _MMSG_LEN, 4) for i in range(c.result)]


# --- multiplexed calls: ioctl, fcntl, prctl, arch_prctl, SysV IPC --------------------------

def _dispatch(c: _Exit, table: Mapping[int, Rule], key: int, label: str) -> Iterable[Region]:
    rule = table.get(key)
    if rule is None:
        raise UnsupportedSyscall(c.nr, label)
    return rule(c)


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    """_IOC() from <asm-generic/ioctl.h>: direction 1 = _IOC_WRITE, 2 = _IOC_READ."""
    return direction << 30 | size << 16 | kind << 8 | nr


def _ior(kind: int, nr: int, size: int) -> int:
    return _ioc(2, kind, nr, size)


def _iow(kind: int, nr: int, size: int) -> int:
    return _ioc(1, kind, nr, size)


def _iowr(kind: int, nr: int, size: int) -> int:
    return _ioc(3, kind, nr, size)


def _ioctl_arg(size: int) -> Rule:
    return lambda c: [(c.args[2], size)]


@dataclass(frozen=True)
class _IoctlRequest:
    name: str
    outputs: Rule


def _fiemap(c: _Exit) -> list[Region]:
    # struct fiemap: 32-byte header (fm_mapped_extents at 20, fm_extent_count at 24), then
    # fm_extent_count struct fiemap_extent of which the first fm_mapped_extents are filled.
    fiemap = c.args[2]
    mapped, capacity = struct.unpack("<II", c.read(fiemap + 20, 8))
    extents = min(mapped, capacity)
    return [(fiemap, _S["struct fiemap"] + extents * _S["struct fiemap_extent"])]


def _dedupe_range(c: _Exit) -> list[Region]:
    # struct file_dedupe_range: dest_count (__u16 at 16), then that many info records, in
    # each of which the kernel stores bytes_deduped and status.
    request = c.args[2]
    count = int.from_bytes(c.read(request + 16, 2), "little")
    return [(request, _S["struct file_dedupe_range"]
             + count * _S["struct file_dedupe_range_info"])]


def _ifconf(c: _Exit) -> list[Region]:
    # struct ifconf { int ifc_len; void *ifc_buf; }: ifc_len becomes the bytes of ifreqs
    # stored in ifc_buf (with ifc_buf NULL, only the length needed).
    ifconf = c.args[2]
    length, buf = c.s32(ifconf), c.u64(ifconf + 8)
    return [(ifconf, _S["struct ifconf"]), (buf, max(length, 0))]


_NO_DATA: Rule = _nothing
_INT = _ioctl_arg(4)
_IFREQ = _ioctl_arg(_S["struct ifreq"])
_TERMIOS = _ioctl_arg(_S["struct termios"])

# Request numbers for x86-64 from <asm-generic/ioctls.h>, <linux/sockios.h>, <linux/fs.h>.
# The legacy terminal and socket requests predate the _IOC encoding, so the direction and
# size bits of an unknown request cannot be trusted to say what it writes; and encoded
# ones may point at structs with pointers of their own (FS_IOC_FIEMAP, DRM, V4L2). Hence
# an explicit list, and UnsupportedSyscall for the rest.
_IOCTLS: Final[Mapping[int, _IoctlRequest]] = {
    request: _IoctlRequest(name, rule)
    for request, name, rule in [
        # terminals
        (0x5401, "TCGETS", _TERMIOS),
        (0x5402, "TCSETS", _NO_DATA),
        (0x5403, "TCSETSW", _NO_DATA),
        (0x5404, "TCSETSF", _NO_DATA),
        (0x5405, "TCGETA", _ioctl_arg(_S["struct termio"])),
        (0x5406, "TCSETA", _NO_DATA),
        (0x5407, "TCSETAW", _NO_DATA),
        (0x5408, "TCSETAF", _NO_DATA),
        (0x5409, "TCSBRK", _NO_DATA),
        (0x540A, "TCXONC", _NO_DATA),
        (0x540B, "TCFLSH", _NO_DATA),
        (0x540C, "TIOCEXCL", _NO_DATA),
        (0x540D, "TIOCNXCL", _NO_DATA),
        (0x540E, "TIOCSCTTY", _NO_DATA),
        (0x540F, "TIOCGPGRP", _INT),
        (0x5410, "TIOCSPGRP", _NO_DATA),
        (0x5411, "TIOCOUTQ", _INT),
        (0x5412, "TIOCSTI", _NO_DATA),
        (0x5413, "TIOCGWINSZ", _ioctl_arg(_S["struct winsize"])),
        (0x5414, "TIOCSWINSZ", _NO_DATA),
        (0x5415, "TIOCMGET", _INT),
        (0x5416, "TIOCMBIS", _NO_DATA),
        (0x5417, "TIOCMBIC", _NO_DATA),
        (0x5418, "TIOCMSET", _NO_DATA),
        (0x5419, "TIOCGSOFTCAR", _INT),
        (0x541A, "TIOCSSOFTCAR", _NO_DATA),
        (0x541B, "FIONREAD", _INT),
        (0x541D, "TIOCCONS", _NO_DATA),
        (0x5420, "TIOCPKT", _NO_DATA),
        (0x5421, "FIONBIO", _NO_DATA),
        (0x5422, "TIOCNOTTY", _NO_DATA),
        (0x5423, "TIOCSETD", _NO_DATA),
        (0x5424, "TIOCGETD", _INT),
        (0x5425, "TCSBRKP", _NO_DATA),
        (0x5427, "TIOCSBRK", _NO_DATA),
        (0x5428, "TIOCCBRK", _NO_DATA),
        (0x5429, "TIOCGSID", _INT),
        (_ior(ord("T"), 0x2A, _S["struct termios2"]), "TCGETS2",
         _ioctl_arg(_S["struct termios2"])),
        (_iow(ord("T"), 0x2B, _S["struct termios2"]), "TCSETS2", _NO_DATA),
        (_iow(ord("T"), 0x2C, _S["struct termios2"]), "TCSETSW2", _NO_DATA),
        (_iow(ord("T"), 0x2D, _S["struct termios2"]), "TCSETSF2", _NO_DATA),
        (_ior(ord("T"), 0x30, 4), "TIOCGPTN", _INT),
        (_iow(ord("T"), 0x31, 4), "TIOCSPTLCK", _NO_DATA),
        (_ior(ord("T"), 0x32, 4), "TIOCGDEV", _INT),
        (_iow(ord("T"), 0x36, 4), "TIOCSIG", _NO_DATA),
        (0x5437, "TIOCVHANGUP", _NO_DATA),
        (_ior(ord("T"), 0x38, 4), "TIOCGPKT", _INT),
        (_ior(ord("T"), 0x39, 4), "TIOCGPTLCK", _INT),
        (_ior(ord("T"), 0x40, 4), "TIOCGEXCL", _INT),
        (0x5441, "TIOCGPTPEER", _NO_DATA),  # returns a descriptor
        (0x5450, "FIONCLEX", _NO_DATA),
        (0x5451, "FIOCLEX", _NO_DATA),
        (0x5452, "FIOASYNC", _NO_DATA),
        (0x5456, "TIOCGLCKTRMIOS", _TERMIOS),
        (0x5457, "TIOCSLCKTRMIOS", _NO_DATA),
        (0x5459, "TIOCSERGETLSR", _INT),
        (0x5460, "FIOQSIZE", _ioctl_arg(8)),
        # sockets
        (0x8901, "FIOSETOWN", _NO_DATA),
        (0x8902, "SIOCSPGRP", _NO_DATA),
        (0x8903, "FIOGETOWN", _INT),
        (0x8904, "SIOCGPGRP", _INT),
        (0x8905, "SIOCATMARK", _INT),
        (0x8906, "SIOCGSTAMP_OLD", _ioctl_arg(_S["struct timeval"])),
        (0x8907, "SIOCGSTAMPNS_OLD", _ioctl_arg(_S["struct timespec"])),
        (_ior(0x89, 0x06, 16), "SIOCGSTAMP_NEW", _ioctl_arg(16)),
        (_ior(0x89, 0x07, 16), "SIOCGSTAMPNS_NEW", _ioctl_arg(16)),
        (0x8910, "SIOCGIFNAME", _IFREQ),
        (0x8912, "SIOCGIFCONF", _ifconf),
        (0x8913, "SIOCGIFFLAGS", _IFREQ),
        (0x8915, "SIOCGIFADDR", _IFREQ),
        (0x8917, "SIOCGIFDSTADDR", _IFREQ),
        (0x8919, "SIOCGIFBRDADDR", _IFREQ),
        (0x891B, "SIOCGIFNETMASK", _IFREQ),
        (0x891D, "SIOCGIFMETRIC", _IFREQ),
        (0x8921, "SIOCGIFMTU", _IFREQ),
        (0x8927, "SIOCGIFHWADDR", _IFREQ),
        (0x8933, "SIOCGIFINDEX", _IFREQ),
        (0x8935, "SIOCGIFPFLAGS", _IFREQ),
        (0x8942, "SIOCGIFTXQLEN", _IFREQ),
        (0x894B, "SIOCOUTQNSD", _INT),
        (0x8970, "SIOCGIFMAP", _IFREQ),
        # files and block devices
        (0x0001, "FIBMAP", _INT),
        (0x0002, "FIGETBSZ", _INT),
        (0x1260, "BLKGETSIZE", _ioctl_arg(8)),
        (0x1268, "BLKSSZGET", _INT),
        (0x127B, "BLKPBSZGET", _INT),
        (_ior(0x12, 114, 8), "BLKGETSIZE64", _ioctl_arg(8)),
        # FS_IOC_GETFLAGS and _GETVERSION are declared with a long but store an int.
        (_ior(ord("f"), 1, 8), "FS_IOC_GETFLAGS", _INT),
        (_iow(ord("f"), 2, 8), "FS_IOC_SETFLAGS", _NO_DATA),
        (_ior(ord("v"), 1, 8), "FS_IOC_GETVERSION", _INT),
        (_ior(ord("X"), 31, _S["struct fsxattr"]), "FS_IOC_FSGETXATTR",
         _ioctl_arg(_S["struct fsxattr"])),
        (_iow(ord("X"), 32, _S["struct fsxattr"]), "FS_IOC_FSSETXATTR", _NO_DATA),
        (_iowr(ord("f"), 11, _S["struct fiemap"]), "FS_IOC_FIEMAP", _fiemap),
        (_iow(0x94, 9, 4), "FICLONE", _NO_DATA),
        (_iow(0x94, 13, 32), "FICLONERANGE", _NO_DATA),
        (_iowr(0x94, 54, _S["struct file_dedupe_range"]), "FIDEDUPERANGE", _dedupe_range),
    ]
}


@_rule("ioctl")
def _ioctl(c: _Exit) -> Iterable[Region]:
    request = c.args[1] & 0xFFFF_FFFF  # unsigned int cmd
    known = _IOCTLS.get(request)
    if known is None:
        raise UnsupportedSyscall(c.nr, f"ioctl(0x{request:x})")
    return known.outputs(c)


def ioctl_request_name(request: int) -> str:
    """The name of an ioctl request the table knows, else its number in hex."""
    known = _IOCTLS.get(request & 0xFFFF_FFFF)
    return known.name if known else f"0x{request & 0xFFFF_FFFF:x}"


# Requests of <asm-generic/ioctls.h> the table does not model (serial lines, the
# console, the extended termios of a few ports): named in the recorder's warning.
_UNMODELLED_IOCTL_NAMES: Final[Mapping[int, str]] = {
    0x541C: "TIOCLINUX", 0x541E: "TIOCGSERIAL", 0x541F: "TIOCSSERIAL",
    0x542E: "TIOCGRS485", 0x542F: "TIOCSRS485", 0x5432: "TCGETX", 0x5433: "TCSETX",
    0x5434: "TCSETXF", 0x5435: "TCSETXW", 0x5453: "TIOCSERCONFIG", 0x5454: "TIOCSERGWILD",
    0x5455: "TIOCSERSWILD", 0x5458: "TIOCSERGSTRUCT", 0x545A: "TIOCSERGETMULTI",
    0x545B: "TIOCSERSETMULTI", 0x545C: "TIOCMIWAIT", 0x545D: "TIOCGICOUNT",
}


_FCNTL_OUTPUTS: Final[Mapping[int, Rule]] = {
    5: _struct(2, _S["struct flock"]),  # F_GETLK (also F_GETLK64 on x86-64)
    36: _struct(2, _S["struct flock"]),  # F_OFD_GETLK
    16: _struct(2, _S["struct f_owner_ex"]),  # F_GETOWN_EX
    1035: _struct(2, 8),  # F_GET_RW_HINT
    1037: _struct(2, 8),  # F_GET_FILE_RW_HINT
} | dict.fromkeys(
    [
        0, 1, 2, 3, 4,  # F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL
        6, 7, 8, 9, 10, 11,  # F_SETLK, F_SETLKW, F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG
        15, 37, 38,  # F_SETOWN_EX, F_OFD_SETLK, F_OFD_SETLKW
        1024, 1025, 1026,  # F_SETLEASE, F_GETLEASE, F_NOTIFY
        1027, 1028, 1029, 1030,  # F_DUPFD_QUERY, F_CREATED_QUERY, F_CANCELLK, F_DUPFD_CLOEXEC
        1031, 1032, 1033, 1034,  # F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS
        1036, 1038,  # F_SET_RW_HINT, F_SET_FILE_RW_HINT
    ],
    _nothing,
)


@_rule("fcntl")
def _fcntl(c: _Exit) -> Iterable[Region]:
    cmd = c.args[1] & 0xFFFF_FFFF
    return _dispatch(c, _FCNTL_OUTPUTS, cmd, f"fcntl({cmd})")


def _prctl_auxv(c: _Exit) -> list[Region]:
    # Returns the size of the whole auxv; stores at most arg3 bytes of it.
    return [(c.args[1], min(c.result, c.args[2]))]


def _prctl_set_mm(c: _Exit) -> list[Region]:
    pr_set_mm_map_size = 15  # stores sizeof(struct prctl_mm_map) as an unsigned int
    return [(c.args[2], 4)] if c.args[1] == pr_set_mm_map_size else []


def _prctl_sched_core(c: _Exit) -> list[Region]:
    pr_sched_core_get = 0  # stores the u64 cookie at arg5
    return [(c.args[4], 8)] if c.args[1] == pr_sched_core_get else []


# Options from <linux/prctl.h>. Most report through the result; these are the ones that
# store through a pointer.
_PRCTL_OUTPUTS: Final[Mapping[int, Rule]] = {
    2: _struct(1, 4),  # PR_GET_PDEATHSIG
    5: _struct(1, 4),  # PR_GET_UNALIGN
    9: _struct(1, 4),  # PR_GET_FPEMU
    11: _struct(1, 4),  # PR_GET_FPEXC
    16: _struct(1, 16),  # PR_GET_NAME: TASK_COMM_LEN
    19: _struct(1, 4),  # PR_GET_ENDIAN
    25: _struct(1, 4),  # PR_GET_TSC
    35: _prctl_set_mm,  # PR_SET_MM
    37: _struct(1, 4),  # PR_GET_CHILD_SUBREAPER
    40: _struct(1, 8),  # PR_GET_TID_ADDRESS
    62: _prctl_sched_core,  # PR_SCHED_CORE
    74: _struct(1, 8),  # PR_GET_SHADOW_STACK_STATUS
    0x41555856: _prctl_auxv,  # PR_GET_AUXV
} | dict.fromkeys(
    [
        1, 3, 4, 6, 7, 8, 10, 12, 13, 14, 15, 20, 21, 22, 23, 24, 26, 27, 28, 29, 30,
        31, 32, 33, 34, 36, 38, 39, 41, 42, 43, 44, 45, 46, 47, 52, 53, 55, 56, 57, 58,
        59, 65, 66, 67, 68, 75, 76, 77, 78,
        0x59616D61,  # PR_SET_PTRACER
        0x53564D41,  # PR_SET_VMA
    ],
    _nothing,
)


@_rule("prctl")
def _prctl(c: _Exit) -> Iterable[Region]:
    option = c.int_arg(0)
    return _dispatch(c, _PRCTL_OUTPUTS, option, f"prctl({option})")


# Options of <linux/prctl.h> the table does not model. On x86-64 the kernel answers
# every one of them EINVAL (they are arm64's), so the recorder's answer is the native one.
_UNMODELLED_PRCTL_NAMES: Final[Mapping[int, str]] = {
    50: "PR_SVE_SET_VL", 51: "PR_SVE_GET_VL", 54: "PR_PAC_RESET_KEYS",
    60: "PR_PAC_SET_ENABLED_KEYS", 61: "PR_PAC_GET_ENABLED_KEYS", 63: "PR_SME_SET_VL",
    64: "PR_SME_GET_VL",
}
# Commands of <asm-generic/fcntl.h> the table does not model: the flock64 ones exist
# only for 32-bit tasks (EINVAL here); F_GETOWNER_UIDS (checkpoint/restore) stores two
# uids through its argument.
_UNMODELLED_FCNTL_NAMES: Final[Mapping[int, str]] = {
    12: "F_GETLK64", 13: "F_SETLK64", 14: "F_SETLKW64", 17: "F_GETOWNER_UIDS",
}
_O_PATH = 0o10000000


@dataclass(frozen=True)
class UnmodelledRequest:
    """A request of ioctl, fcntl or prctl that the table cannot say the writes of.

    The recorder does not let the kernel run it (it could store anywhere the request's
    structure points): the program gets what a kernel without that request answers,
    ENOTTY from ioctl and EINVAL from fcntl and prctl, as it gets ENOSYS for a syscall
    the table lacks. Such a kernel still looks the descriptor up first: one that is not
    open, or is an O_PATH descriptor (which neither ioctl nor these fcntl commands
    accept), is EBADF whatever the request, exactly as natively.
    """

    call: str  # "ioctl", "fcntl" or "prctl"
    request: int
    name: str | None  # its name in the kernel's headers, when it has one we know
    error: int  # what a kernel without the request answers
    fd: int | None  # the descriptor the kernel looks up before the request

    def answer(self, open_flags: int | None) -> int:
        """The errno for the call, given the flags ``fd`` was opened with (None: not open)."""
        if self.fd is not None and (open_flags is None or open_flags & _O_PATH):
            return errno.EBADF
        return self.error

    def __str__(self) -> str:
        what = {"ioctl": "request", "fcntl": "command", "prctl": "option"}[self.call]
        number = f"0x{self.request:x}" if self.call == "ioctl" else str(self.request)
        return f"{self.call} {what} {number}" + (f" ({self.name})" if self.name else "")


def _ioc_text(request: int) -> str | None:
    """An encoded ioctl number as the _IOC macro that makes it, e.g. _IOR('T', 0x2a, 44)."""
    direction, size = request >> 30, request >> 16 & 0x3FFF
    kind, nr = request >> 8 & 0xFF, request & 0xFF
    if not direction or request >> 32:
        return None  # a legacy number: the bits say nothing
    macro = {1: "_IOW", 2: "_IOR", 3: "_IOWR"}[direction]
    letter = f"'{chr(kind)}'" if 0x20 < kind < 0x7F else f"0x{kind:x}"
    return f"{macro}({letter}, 0x{nr:x}, {size})"


def unmodelled_request(nr: int, args: Sequence[int]) -> UnmodelledRequest | None:
    """The request of this ioctl, fcntl or prctl call at its entry if the table does not
    model it, else None (not one of those calls, or a request the table knows)."""
    name = syscall_name(nr)
    if name not in ("ioctl", "fcntl", "prctl"):
        return None
    words = tuple(a & 0xFFFF_FFFF_FFFF_FFFF for a in args) + (0,) * (6 - len(args))
    if name == "ioctl":
        request = words[1] & 0xFFFF_FFFF  # unsigned int cmd
        if request in _IOCTLS:
            return None
        return UnmodelledRequest(name, request, _UNMODELLED_IOCTL_NAMES.get(request)
                                 or _ioc_text(request), errno.ENOTTY, words[0] & 0xFFFF_FFFF)
    if name == "fcntl":
        cmd = words[1] & 0xFFFF_FFFF
        if cmd in _FCNTL_OUTPUTS:
            return None
        return UnmodelledRequest(name, cmd, _UNMODELLED_FCNTL_NAMES.get(cmd), errno.EINVAL,
                                 words[0] & 0xFFFF_FFFF)
    option = signed32(words[0])
    if option in _PRCTL_OUTPUTS:
        return None
    return UnmodelledRequest(name, option, _UNMODELLED_PRCTL_NAMES.get(option), errno.EINVAL,
                             None)


# Codes from <asm/prctl.h>. ARCH_MAP_VDSO_* are left out on purpose: they map memory,
# which the address-space model would not know about.
_ARCH_PRCTL_OUTPUTS: Final[Mapping[int, Rule]] = {
    0x1003: _struct(1, 8),  # ARCH_GET_FS
    0x1004: _struct(1, 8),  # ARCH_GET_GS
    0x1021: _struct(1, 8),  # ARCH_GET_XCOMP_SUPP
    0x1022: _struct(1, 8),  # ARCH_GET_XCOMP_PERM
    0x1024: _struct(1, 8),  # ARCH_GET_XCOMP_GUEST_PERM
    0x4001: _struct(1, 8),  # ARCH_GET_UNTAG_MASK
    0x4003: _struct(1, 8),  # ARCH_GET_MAX_TAG_BITS
    0x5005: _struct(1, 8),  # ARCH_SHSTK_STATUS
} | dict.fromkeys(
    [
        0x1001, 0x1002,  # ARCH_SET_GS, ARCH_SET_FS
        0x1011, 0x1012,  # ARCH_GET_CPUID, ARCH_SET_CPUID
        0x1023, 0x1025,  # ARCH_REQ_XCOMP_PERM, ARCH_REQ_XCOMP_GUEST_PERM
        0x4002, 0x4004,  # ARCH_ENABLE_TAGGED_ADDR, ARCH_FORCE_TAGGED_SVA
        0x5001, 0x5002, 0x5003, 0x5004,  # ARCH_SHSTK_ENABLE, _DISABLE, _LOCK, _UNLOCK
    ],
    _nothing,
)


@_rule("arch_prctl")
def _arch_prctl(c: _Exit) -> Iterable[Region]:
    code = c.int_arg(0)
    return _dispatch(c, _ARCH_PRCTL_OUTPUTS, code, f"arch_prctl(0x{code:x})")


_IPC_64 = 0x100  # accepted and ignored on x86-64

_MSGCTL_OUTPUTS: Final[Mapping[int, Rule]] = {
    0: _nothing,  # IPC_RMID
    1: _nothing,  # IPC_SET
    2: _struct(2, _S["struct msqid64_ds"]),  # IPC_STAT
    3: _struct(2, _S["struct msginfo"]),  # IPC_INFO
    11: _struct(2, _S["struct msqid64_ds"]),  # MSG_STAT
    12: _struct(2, _S["struct msginfo"]),  # MSG_INFO
    13: _struct(2, _S["struct msqid64_ds"]),  # MSG_STAT_ANY
}
_SHMCTL_OUTPUTS: Final[Mapping[int, Rule]] = {
    0: _nothing,  # IPC_RMID
    1: _nothing,  # IPC_SET
    2: _struct(2, _S["struct shmid64_ds"]),  # IPC_STAT
    3: _struct(2, _S["struct shminfo64"]),  # IPC_INFO
    11: _nothing,  # SHM_LOCK
    12: _nothing,  # SHM_UNLOCK
    13: _struct(2, _S["struct shmid64_ds"]),  # SHM_STAT
    14: _struct(2, _S["struct shm_info"]),  # SHM_INFO
    15: _struct(2, _S["struct shmid64_ds"]),  # SHM_STAT_ANY
}
# semctl(semid, semnum, cmd, arg): GETALL (13) is missing on purpose: it stores one
# unsigned short per semaphore of the set, and how many there are is the kernel's secret.
_SEMCTL_OUTPUTS: Final[Mapping[int, Rule]] = {
    0: _nothing,  # IPC_RMID
    1: _nothing,  # IPC_SET
    2: _struct(3, _S["struct semid64_ds"]),  # IPC_STAT
    3: _struct(3, _S["struct seminfo"]),  # IPC_INFO
    11: _nothing,  # GETPID
    12: _nothing,  # GETVAL
    14: _nothing,  # GETNCNT
    15: _nothing,  # GETZCNT
    16: _nothing,  # SETVAL
    17: _nothing,  # SETALL
    18: _struct(3, _S["struct semid64_ds"]),  # SEM_STAT
    19: _struct(3, _S["struct seminfo"]),  # SEM_INFO
    20: _struct(3, _S["struct semid64_ds"]),  # SEM_STAT_ANY
}


def _ipc_ctl(table: Mapping[int, Rule], cmd_arg: int) -> Rule:
    def rule(c: _Exit) -> Iterable[Region]:
        cmd = c.int_arg(cmd_arg) & ~_IPC_64
        return _dispatch(c, table, cmd, f"{syscall_name(c.nr)}({cmd})")

    return rule


@_rule("ptrace")
def _ptrace(c: _Exit) -> list[Region]:
    # Only failures can be recorded. They are common: a program that checks for a debugger
    # with PTRACE_TRACEME gets EPERM, since the recorder is its tracer. A successful
    # request would change another process's memory and registers outside its syscalls.
    raise UnsupportedSyscall(c.nr, f"ptrace({c.args[0]})")


_define("msgctl", _ipc_ctl(_MSGCTL_OUTPUTS, 1))
_define("shmctl", _ipc_ctl(_SHMCTL_OUTPUTS, 1))
_define("semctl", _ipc_ctl(_SEMCTL_OUTPUTS, 2))


# --- the public questions -------------------------------------------------------------------

def is_supported(nr: int) -> bool:
    """Whether a recording can contain syscall ``nr``: the table knows what it writes, or
    the recorder refuses it (REFUSED_IN_RECORDING). For a multiplexed call such as ioctl,
    a given request may still be unknown to :func:`output_regions`."""
    return nr in _RULES or nr in REFUSED_IN_RECORDING


def remote_writes(args: Sequence[int], result: int, read: ReadMemory) -> list[Region]:
    """Where a completed process_vm_writev stored into the process it names: its
    remote iovecs (arguments 3 and 4), filled in order up to the result."""
    call = _Exit(_NUMBERS["process_vm_writev"], tuple(args), _signed64(result), read)
    return [] if call.failed else call.iovec_prefix(args[3], args[4] & 0xFFFFFFFF, call.result)


def output_regions(
    nr: int, args: Sequence[int], result: int, read: ReadMemory
) -> list[Region]:
    """Where the completed syscall ``nr`` may have written into the caller's memory.

    ``args`` are the six argument registers (fewer are padded with zeros), ``result`` is
    rax at the syscall exit (signed or as the raw unsigned register), and ``read(addr, n)``
    reads the tracee's memory as it is at the exit, for the sizes the kernel leaves there
    (iovecs, msghdr, socklen_t). Regions come in the order the kernel fills them; NULL
    and empty ones are left out.

    Raises UnsupportedSyscall for a call the table cannot account for.
    """
    words = tuple(a & 0xFFFF_FFFF_FFFF_FFFF for a in args)
    words += (0,) * (6 - len(words))
    result = _signed64(result)
    call = _Exit(nr, words, result, read)
    rule = _RULES.get(nr)
    if rule is None:
        if result == -errno.ENOSYS:
            return []
        raise UnsupportedSyscall(nr)
    if call.failed and nr not in _WRITES_ON_FAILURE:
        return []
    return [(addr, length) for addr, length in rule(call) if addr and length > 0]


def _signed64(value: int) -> int:
    value &= 0xFFFF_FFFF_FFFF_FFFF
    return value - (1 << 64) if value & (1 << 63) else value


# --- what the replayer does with each call --------------------------------------------------

def _numbers(names: str) -> frozenset[int]:
    return frozenset(_NUMBERS[name] for name in names.split())


# Numbers of the x86-64 table that no kernel since 5.5 implements (sys_ni_syscall): the
# kernel's answer to them is ENOSYS, so giving it without the kernel loses nothing.
_NOT_IMPLEMENTED: Final = _numbers(
    """
    _sysctl create_module get_kernel_syms query_module nfsservctl getpmsg putpmsg
    afs_syscall tuxcall security vserver epoll_ctl_old epoll_wait_old
    """
)
_X32_SYSCALL_BIT = 0x4000_0000
_TABLE_KERNEL = (6, 18)  # the newest kernel whose numbers SYSCALL_NAMES lists


def kernel_may_implement(nr: int, kernel_release: str | None = None) -> bool:
    """Whether a kernel may have code for syscall ``nr`` (``orig_rax``, unsigned).

    The recorder answers every call the table cannot record with ENOSYS, without
    running it. For a number no kernel implements (``syscall(-1)``, ``syscall(1000)``,
    the x32 numbers without the x32 bit) that is exactly the kernel's own answer; for
    the others the program sees a kernel older than the real one, and the recorder
    says so. An x32-ABI call (nr with bit 30) runs on kernels built with x32 support.
    A number above the table is new only on a kernel newer than the table. The
    kernel reads only the low 32 bits of rax, sign-extended (``movslq %eax`` in
    entry_SYSCALL_64): 0x1_0000_0027 is getpid, 0xffff_ffff is -1.
    """
    low = nr & 0xFFFF_FFFF
    canonical = low | (0xFFFF_FFFF_0000_0000 if low & 0x8000_0000 else 0)
    if canonical != nr:
        return kernel_may_implement(canonical, kernel_release)
    if nr & _X32_SYSCALL_BIT and nr < 1 << 32:
        return (nr & ~_X32_SYSCALL_BIT) < 1024
    if nr in SYSCALL_NAMES:
        return nr not in _NOT_IMPLEMENTED
    if kernel_release is None:
        kernel_release = platform.release()
    version = tuple(int(part) for part in re.findall(r"\d+", kernel_release)[:2])
    return nr < 1024 and version > _TABLE_KERNEL


MMAP_FAMILY: Final[frozenset[int]] = _numbers(
    """
    mmap munmap mprotect mremap brk madvise shmat shmdt pkey_mprotect remap_file_pages
    map_shadow_stack
    """
)
"""Calls that change the address space; each gets an mmap-family id (DESIGN.md, seed 000).

mseal is not one of them: sealing changes no mapping, only makes later munmap/mprotect
calls fail, and those failures are recorded results like any other. Executing it in
replay would instead stop the replayer from rebuilding the address space.
"""

EXECUTED_IN_REPLAY: Final[frozenset[int]] = MMAP_FAMILY | _numbers(
    """
    execve execveat exit exit_group clone clone3 fork vfork
    rt_sigreturn rt_sigaction rt_sigprocmask sigaltstack
    arch_prctl set_thread_area modify_ldt pkey_alloc pkey_free iopl ioperm
    set_tid_address set_robust_list personality
    """
)
"""Calls the replayer must perform rather than emulate.

Emulating a call means skipping it and setting its recorded result and output bytes. That
is right for everything whose effect reaches the program only through later syscalls
(which are emulated too) or through the bytes it wrote. It is wrong for these, whose effect
is on the task's own state and reaches the program without another syscall:

* the address space (MMAP_FAMILY), and task creation and death: clone, clone3, fork,
  vfork, exit, exit_group. execve and execveat are handled specially, with the stub.
* registers and CPU state: rt_sigreturn (restores the frame), arch_prctl (FS/GS bases,
  AMX permission, CPUID faulting), set_thread_area and modify_ldt (segment descriptors),
  pkey_alloc and pkey_free (PKRU, and the keys later pkey_mprotect calls name), iopl and
  ioperm (whether in/out fault).
* signal delivery, which the replayer injects and the kernel then carries out: the handler
  table (rt_sigaction), the mask (rt_sigprocmask), the alternate stack (sigaltstack).
  The mask is also saved in every signal frame the program can read.
* what the kernel does to memory when a thread exits: set_tid_address (clear the tid and
  wake its futex), set_robust_list (mark held robust futexes OWNER_DIED).
* personality: READ_IMPLIES_EXEC changes what later (executed) mmap calls map.

Executing a call does not make its recorded outputs optional: the replayer still sets the
recorded result and writes the recorded bytes afterwards, since some differ in replay
(the tids that clone stores).

Deliberately emulated: seccomp and prctl(PR_SET_SECCOMP), since the recorded results
already include the filter's verdicts and a live filter would judge the replayer's own
injected syscalls; alarm, setitimer, timer_*, timerfd_*: every signal they caused is in
the trace and injected, so live timers would deliver extra ones; rt_sigsuspend,
rt_sigtimedwait and the sigmask argument of ppoll, pselect6 and epoll_pwait: in replay
they do not block, and a signal that interrupted one is delivered under its temporary mask
by the replayer (TEMPORARY_MASK in replay/task.py). Not covered: a
program that enables syscall user dispatch (prctl PR_SET_SYSCALL_USER_DISPATCH), whose
syscalls recording sees as SIGSYS and replay would see as syscalls.
"""

REFUSED_IN_RECORDING: Final[Mapping[int, int]] = MappingProxyType({
    _NUMBERS["rseq"]: errno.ENOSYS,
})
"""Calls the recorder must not let run: it skips them and returns ``-errno`` instead.

A registered rseq area gets the current cpu_id, node_id and mm_cid stored into it on the
way back to user space after every preemption or migration, and a critical section that
was preempted is aborted to its abort handler: writes and jumps that belong to no syscall
stop, timing-dependent and invisible to the recorder. So neither executing rseq in replay
nor pretending it succeeded (glibc would then read a cpu_id nobody updates) reproduces
the recording. Refused with ENOSYS, glibc (2.35+) runs without rseq: ``__rseq_size`` is
0 and sched_getcpu() asks the (recorded) getcpu instead.

io_uring has the kernel fill shared rings asynchronously in the same way. Like every
call the table has no rule for, the recorder answers it ENOSYS without running it (with
a warning; ``record --strict`` stops instead), and programs fall back to ordinary
syscalls.
"""
