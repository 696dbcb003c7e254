"""The syscall table: names, the memory each completed call writes, and replay roles.

Three kinds of evidence: unit tests with a fake tracee memory, a check against the real
kernel (tests/programs/syscall_outputs.c runs syscalls on a canary-filled buffer and
prints every byte they changed; each changed byte must be inside a region the table
predicts, and the struct sizes it hardcodes must be gcc's), and a check that everything
real programs on this machine call is in the table.
"""

from __future__ import annotations

import errno
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from retrograde.tracee.syscalls import (
    EXECUTED_IN_REPLAY,
    MMAP_FAMILY,
    REFUSED_IN_RECORDING,
    STRUCT_SIZES,
    SYSCALL_NAMES,
    UnsupportedSyscall,
    ioctl_request_name,
    unmodelled_request,
    is_supported,
    kernel_may_implement,
    output_regions,
    syscall_name,
    syscall_number,
)

PROGRAMS = Path(__file__).parent / "programs"


def nr(name: str) -> int:
    return syscall_number(name)


def words(text: str) -> list[str]:
    return text.split()


class FakeMemory:
    """A tracee's memory: one zeroed range at ``base``; reads outside it fail loudly."""

    def __init__(self, base: int = 0x10000, size: int = 0x4000) -> None:
        self.base = base
        self.data = bytearray(size)

    def put(self, addr: int, data: bytes) -> None:
        self.data[addr - self.base:addr - self.base + len(data)] = data

    def put_u32(self, addr: int, value: int) -> None:
        self.put(addr, struct.pack("<I", value))

    def put_u64(self, addr: int, *values: int) -> None:
        self.put(addr, struct.pack(f"<{len(values)}Q", *values))

    def read(self, addr: int, n: int) -> bytes:
        if not self.base <= addr <= addr + n <= self.base + len(self.data):
            raise AssertionError(f"read of {n} bytes at {addr:#x} is outside the tracee")
        return bytes(self.data[addr - self.base:addr - self.base + n])


M = 0x10000  # FakeMemory's base


def regions(name: str, args: tuple[int, ...], result: int, mem: FakeMemory | None = None):
    return output_regions(nr(name), args, result, (mem or FakeMemory()).read)


# --- names ---------------------------------------------------------------------------------

def test_names_cover_every_x86_64_syscall_of_linux_6_18():
    assert syscall_name(0) == "read"
    assert syscall_name(262) == "newfstatat"
    assert syscall_name(283) == "timerfd_create"  # python-ptrace says "timerfd"
    assert syscall_name(334) == "rseq"
    assert syscall_name(435) == "clone3"
    assert syscall_name(441) == "epoll_pwait2"
    assert syscall_name(462) == "mseal"
    assert syscall_name(469) == "file_setattr"
    assert all(n in SYSCALL_NAMES for n in range(335))
    assert all(n in SYSCALL_NAMES for n in range(424, 470))


def test_x32_numbers_are_not_native_calls():
    # python-ptrace also lists the x32 ABI's 512-547 (rt_sigaction again at 512, ...).
    assert syscall_name(512) == "syscall_512"
    assert syscall_number("rt_sigaction") == 13
    assert syscall_number("recvmsg") == 47


def test_unknown_numbers_get_a_name_that_maps_back():
    assert syscall_name(1000) == "syscall_1000"
    assert syscall_number("syscall_1000") == 1000
    assert all(syscall_number(syscall_name(n)) == n for n in range(-1, 600))
    with pytest.raises(ValueError, match="frobnicate"):
        syscall_number("frobnicate")


def test_names_agree_with_this_machines_kernel_headers():
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    if not header.exists():
        pytest.skip("no kernel headers")
    defined = re.findall(r"#define __NR_(\w+) (\d+)", header.read_text())
    assert len(defined) > 300
    for name, number in defined:
        assert syscall_name(int(number)) == name


# --- unsupported calls ------------------------------------------------------------------------

def test_unsupported_syscall_names_the_call():
    with pytest.raises(UnsupportedSyscall) as caught:
        regions("io_setup", (128, M), 0)
    assert (caught.value.nr, caught.value.name) == (206, "io_setup")
    assert str(caught.value) == "unsupported syscall io_setup (nr 206)"
    with pytest.raises(UnsupportedSyscall, match=r"unsupported syscall syscall_999 \(nr 999\)"):
        output_regions(999, (), 0, FakeMemory().read)


def test_which_numbers_a_kernel_may_implement():
    # Answering ENOSYS to these changes nothing: no kernel has code for them.
    for number in (-1 & (1 << 64) - 1, 1000, 1 << 20, 470, 512, nr("tuxcall"),
                   nr("epoll_wait_old"), nr("_sysctl")):
        assert not kernel_may_implement(number, "6.18.4"), number
    # These the program would see work on some kernel: the recorder warns.
    for number in (nr("io_setup"), nr("io_uring_setup"), nr("bpf"), 0x4000_0000 | 39):
        assert kernel_may_implement(number, "6.18.4"), number
    # The kernel reads the low 32 bits, sign-extended: the first is getpid, the second -1.
    assert kernel_may_implement(0x1_0000_0027, "6.18.4")
    assert not kernel_may_implement(0xFFFF_FFFF, "6.18.4")
    # A number above the table may be a call added after it.
    assert kernel_may_implement(470, "6.19.0") and kernel_may_implement(470, "7.0-rc1")
    assert not kernel_may_implement(1 << 20, "7.0")


def test_a_call_the_kernel_does_not_have_wrote_nothing():
    assert output_regions(999, (M,), -errno.ENOSYS, FakeMemory().read) == []
    # io_setup failing otherwise may have done anything.
    with pytest.raises(UnsupportedSyscall):
        regions("io_setup", (128, M), -errno.EINVAL)


def test_restart_syscall_alone_continues_nothing_and_stores_nothing():
    # Called by hand, with no interrupted call to continue, the kernel answers EINTR.
    assert regions("restart_syscall", (M,), -errno.EINTR) == []
    assert regions("restart_syscall", (M,), 0) == []
    # The recorder asks instead for the rules of the call it continues...
    # ... which, for an interrupted nanosleep interrupted again, is the time left:
    assert regions("nanosleep", (M, M + 16), -516) == [(M + 16, 16)]  # -ERESTART_RESTARTBLOCK


# --- plain buffers ----------------------------------------------------------------------------

def test_read_saves_what_arrived():
    assert regions("read", (3, M, 100), 42) == [(M, 42)]
    assert regions("read", (3, M, 100), 0) == []


def test_failed_calls_wrote_nothing():
    assert regions("read", (3, M, 100), -errno.EBADF) == []
    assert regions("fstat", (3, M), -errno.EBADF) == []
    # The raw register is accepted too: -EFAULT as an unsigned 64-bit rax.
    assert regions("read", (3, M, 100), (1 << 64) - errno.EFAULT) == []


def test_null_pointers_are_skipped():
    assert regions("gettimeofday", (M, 0), 0) == [(M, 16)]
    assert regions("gettimeofday", (0, M), 0) == [(M, 8)]
    assert regions("rt_sigprocmask", (0, M, 0, 8), 0) == []


def test_readv_fills_the_iovecs_in_order_up_to_the_result():
    mem = FakeMemory()
    mem.put_u64(M, 0x20000, 4, 0x21000, 4, 0x22000, 16)
    assert regions("readv", (3, M, 3), 10, mem) == [(0x20000, 4), (0x21000, 4), (0x22000, 2)]
    assert regions("readv", (3, M, 3), 4, mem) == [(0x20000, 4)]


def test_stat_family_struct_sizes():
    assert regions("fstat", (3, M), 0) == [(M, 144)]
    assert regions("newfstatat", (-100, 0x400000, M, 0), 0) == [(M, 144)]
    assert regions("statx", (-100, 0x400000, 0, 0xFFF, M), 0) == [(M, 256)]
    assert regions("statfs", (0x400000, M), 0) == [(M, 120)]


def test_getdents64_and_readlink_return_the_bytes_they_stored():
    assert regions("getdents64", (3, M, 32768), 744) == [(M, 744)]
    assert regions("readlinkat", (-100, 0x400000, M, 4096), 13) == [(M, 13)]
    assert regions("getcwd", (M, 4096), 9) == [(M, 9)]  # the result counts the NUL


def test_size_zero_only_asks_how_big():
    assert regions("getxattr", (0x400000, 0x400100, M, 0), 40) == []
    assert regions("getxattr", (0x400000, 0x400100, M, 64), 40) == [(M, 40)]
    assert regions("getgroups", (0, M), 5) == []
    assert regions("getgroups", (32, M), 5) == [(M, 20)]


def test_signal_sets_are_as_long_as_sigsetsize():
    assert regions("rt_sigaction", (10, 0, M, 8), 0) == [(M, 32)]
    assert regions("rt_sigprocmask", (0, 0, M, 8), 0) == [(M, 8)]
    assert regions("sigaltstack", (0, M), 0) == [(M, 24)]
    assert regions("rt_sigtimedwait", (M, M + 8, 0, 8), 12) == [(M + 8, 128)]


# --- waiting ----------------------------------------------------------------------------------

def test_wait4_writes_only_when_a_child_was_reported():
    assert regions("wait4", (-1, M, 0, M + 8), 4242) == [(M, 4), (M + 8, 144)]
    assert regions("wait4", (-1, M, 1, M + 8), 0) == []  # WNOHANG, nothing ready


def test_waitid_stores_its_siginfo_fields_even_when_it_fails():
    assert regions("waitid", (0, 0, M, 4, 0), -errno.ECHILD) == [(M, 28)]
    mem = FakeMemory()
    mem.put_u32(M, 17)  # si_signo = SIGCHLD: a child was found
    assert regions("waitid", (1, 42, M, 4, M + 128), 0, mem) == [(M, 28), (M + 128, 144)]
    mem.put_u32(M, 0)  # WNOHANG and nobody ready: no rusage
    assert regions("waitid", (1, 42, M, 5, M + 128), 0, mem) == [(M, 28)]


def test_poll_stores_revents_even_when_interrupted():
    assert regions("poll", (M, 3, -1), 1) == [(M, 24)]
    assert regions("poll", (M, 3, -1), -516) == [(M, 24)]  # -ERESTART_RESTARTBLOCK
    assert regions("poll", (M, 3, -1), -errno.EFAULT) == []
    assert regions("ppoll", (M, 2, M + 64, 0, 8), -errno.EINTR) == [(M, 16), (M + 64, 16)]


def test_select_rewrites_the_sets_and_the_timeout():
    assert regions("select", (70, M, 0, M + 256, M + 512), 1) == [
        (M, 16), (M + 256, 16), (M + 512, 16)]
    assert regions("select", (70, M, 0, 0, M + 512), -errno.EINTR) == [(M + 512, 16)]


def test_an_interrupted_sleep_reports_the_time_left():
    assert regions("nanosleep", (M, M + 16), 0) == []
    assert regions("nanosleep", (M, M + 16), -errno.EINTR) == [(M + 16, 16)]
    assert regions("clock_nanosleep", (1, 0, M, M + 16), -errno.EINTR) == [(M + 16, 16)]
    assert regions("clock_nanosleep", (1, 1, M, M + 16), -errno.EINTR) == []  # TIMER_ABSTIME


def test_epoll_wait_stores_packed_12_byte_events():
    assert regions("epoll_wait", (4, M, 64, -1), 3) == [(M, 36)]


# --- sockets ----------------------------------------------------------------------------------

def test_accept_records_the_real_address_length_and_the_address():
    mem = FakeMemory()
    mem.put_u32(M + 200, 16)  # what the kernel stored: the address's real length
    assert regions("accept4", (3, M, M + 200, 0), 5, mem) == [(M + 200, 4), (M, 16)]
    # The caller may have passed a shorter buffer: the kernel then copied fewer bytes,
    # but the bytes beyond are the caller's, unchanged, and recording them is harmless.
    mem.put_u32(M + 200, 110)
    assert regions("getsockname", (3, M, M + 200), 0, mem) == [(M + 200, 4), (M, 110)]
    assert regions("accept4", (3, 0, 0, 0), 5, mem) == []


def test_recvfrom_with_msg_trunc_stores_no_more_than_the_buffer():
    assert regions("recvfrom", (3, M, 8, 0x20, 0, 0), 20) == [(M, 8)]


def test_recvmsg_follows_the_msghdr():
    mem = FakeMemory()
    name, iov, data1, data2, control = M + 0x100, M + 0x200, M + 0x1000, M + 0x2000, M + 0x300
    # struct msghdr, as the kernel left it: namelen 2, controllen 24.
    mem.put(M, struct.pack("<QI4xQQQQI4x", name, 2, iov, 2, control, 24, 0))
    mem.put_u64(iov, data1, 5, data2, 100)
    assert regions("recvmsg", (3, M, 0), 12, mem) == [
        (M + 8, 4), (name, 2),  # msg_namelen and the address
        (M + 40, 8), (M + 48, 4),  # msg_controllen, msg_flags
        (control, 24),
        (data1, 5), (data2, 7),
    ]


def test_recvmmsg_and_sendmmsg_store_each_msg_len():
    mem = FakeMemory()
    iov = M + 0x800
    for i in range(2):
        mem.put(M + 64 * i, struct.pack("<QI4xQQQQI4xI4x", 0, 0, iov + 16 * i, 1, 0, 0, 0, 3))
    mem.put_u64(iov, M + 0x1000, 64, M + 0x2000, 64)
    assert regions("recvmmsg", (3, M, 2, 0, 0), 2, mem) == [
        (M + 56, 4), (M + 40, 8), (M + 48, 4), (M + 0x1000, 3),
        (M + 120, 4), (M + 104, 8), (M + 112, 4), (M + 0x2000, 3),
    ]
    assert regions("sendmmsg", (3, M, 2, 0), 2) == [(M + 56, 4), (M + 120, 4)]


def test_getsockopt_trusts_optlen_after_the_call():
    mem = FakeMemory()
    mem.put_u32(M + 64, 4)
    assert regions("getsockopt", (3, 1, 3, M, M + 64), 0, mem) == [(M + 64, 4), (M, 4)]
    assert regions("getsockopt", (3, 1, 59, M, M + 64), -errno.ERANGE, mem) == [(M + 64, 4)]


# --- multiplexed calls ------------------------------------------------------------------------

def test_ioctl_sizes_by_request():
    assert regions("ioctl", (0, 0x5401, M), 0) == [(M, 36)]  # TCGETS: kernel termios
    assert regions("ioctl", (1, 0x5413, M), 0) == [(M, 8)]  # TIOCGWINSZ
    assert regions("ioctl", (3, 0x541B, M), 0) == [(M, 4)]  # FIONREAD
    assert regions("ioctl", (3, 0x5451, 0), 0) == []  # FIOCLEX
    assert regions("ioctl", (3, 0x80045430, M), 0) == [(M, 4)]  # TIOCGPTN
    assert ioctl_request_name(0x5401) == "TCGETS"


def test_ioctl_request_is_the_low_32_bits():
    assert regions("ioctl", (0, 0xFFFF_FFFF_0000_5401, M), 0) == [(M, 36)]


def test_an_unknown_ioctl_request_is_refused_by_name_unless_it_failed():
    with pytest.raises(UnsupportedSyscall) as caught:
        regions("ioctl", (3, 0x1234ABCD, M), 0)
    assert str(caught.value) == "unsupported syscall ioctl(0x1234abcd) (nr 16)"
    assert regions("ioctl", (1, 0x1234ABCD, M), -errno.ENOTTY) == []
    assert regions("ioctl", (1, 0x5401, M), -errno.ENOTTY) == []  # isatty() on a pipe


def test_fiemap_counts_the_extents_the_kernel_filled():
    mem = FakeMemory()
    mem.put(M + 20, struct.pack("<II", 3, 32))  # fm_mapped_extents, fm_extent_count
    assert regions("ioctl", (3, 0xC020660B, M), 0, mem) == [(M, 32 + 3 * 56)]


def test_unmodelled_requests_and_what_a_kernel_without_them_answers():
    ioctl, fcntl, prctl = (syscall_number(n) for n in ("ioctl", "fcntl", "prctl"))
    assert unmodelled_request(ioctl, (3, 0x5401, M)) is None  # TCGETS is modelled
    assert unmodelled_request(fcntl, (3, 5, M)) is None  # F_GETLK
    assert unmodelled_request(prctl, (16, M)) is None  # PR_GET_NAME
    assert unmodelled_request(syscall_number("read"), (3, 0x1234, M)) is None
    serial = unmodelled_request(ioctl, (3, 0xFFFF_FFFF_0000_541E, M))  # the low 32 bits
    assert serial is not None and str(serial) == "ioctl request 0x541e (TIOCGSERIAL)"
    assert serial.fd == 3 and serial.answer(0o2) == errno.ENOTTY
    assert serial.answer(None) == errno.EBADF  # not open
    assert serial.answer(0o10000000) == errno.EBADF  # O_PATH
    encoded = unmodelled_request(ioctl, (3, 0xC0186201, M))
    assert encoded is not None and encoded.name == "_IOWR('b', 0x1, 24)"
    assert unmodelled_request(ioctl, (3, 0x12345678, M)).name is None  # type: ignore[union-attr]
    uids = unmodelled_request(fcntl, (3, 17, M))
    assert uids is not None and str(uids) == "fcntl command 17 (F_GETOWNER_UIDS)"
    assert uids.answer(0) == errno.EINVAL
    sve = unmodelled_request(prctl, (51, 0))
    assert sve is not None and str(sve) == "prctl option 51 (PR_SVE_GET_VL)"
    assert sve.fd is None and sve.answer(None) == errno.EINVAL  # prctl takes no descriptor
    assert str(unmodelled_request(prctl, (0xFFFF_FFFF, 0))) == "prctl option -1"


def test_fcntl_f_getlk_writes_the_flock():
    assert regions("fcntl", (3, 5, M), 0) == [(M, 32)]  # F_GETLK
    assert regions("fcntl", (3, 36, M), 0) == [(M, 32)]  # F_OFD_GETLK
    assert regions("fcntl", (3, 1030, 3), 4) == []  # F_DUPFD_CLOEXEC
    with pytest.raises(UnsupportedSyscall, match=r"fcntl\(9999\)"):
        regions("fcntl", (3, 9999, M), 0)


def test_prctl_and_arch_prctl():
    assert regions("prctl", (16, M), 0) == [(M, 16)]  # PR_GET_NAME
    assert regions("prctl", (15, M), 0) == []  # PR_SET_NAME
    assert regions("arch_prctl", (0x1003, M), 0) == [(M, 8)]  # ARCH_GET_FS
    assert regions("arch_prctl", (0x1002, 0x7F0000000000), 0) == []  # ARCH_SET_FS
    # glibc 2.36 probes ARCH_CET_STATUS, an ABI the kernel never merged: EINVAL, nothing.
    assert regions("arch_prctl", (0x3001, M), -errno.EINVAL) == []
    with pytest.raises(UnsupportedSyscall, match=r"arch_prctl\(0x2003\)"):
        regions("arch_prctl", (0x2003, M), 0)  # ARCH_MAP_VDSO_64 maps memory


def test_ptrace_is_recordable_only_when_it_fails():
    assert regions("ptrace", (0, 0, 0, 0), -errno.EPERM) == []  # PTRACE_TRACEME, traced
    with pytest.raises(UnsupportedSyscall, match=r"ptrace\(16\)"):
        regions("ptrace", (16, 4242, 0, 0), 0)  # PTRACE_ATTACH


def test_semctl_getall_is_refused():
    with pytest.raises(UnsupportedSyscall, match=r"semctl\(13\)"):
        regions("semctl", (5, 0, 13, M), 0)


# --- processes --------------------------------------------------------------------------------

CLONE_PIDFD, CLONE_PARENT_SETTID, CLONE_CHILD_SETTID = 0x1000, 0x100000, 0x1000000


def test_clone_stores_tids_in_parent_and_child():
    flags = CLONE_PARENT_SETTID | CLONE_CHILD_SETTID | 17
    assert regions("clone", (flags, 0, M, M + 8, 0), 4242) == [(M, 4)]
    assert regions("clone", (flags, 0, M, M + 8, 0), 0) == [(M + 8, 4)]  # the child
    assert regions("fork", (), 4242) == []


def test_clone3_reads_its_clone_args():
    mem = FakeMemory()
    mem.put_u64(M, CLONE_PIDFD | CLONE_PARENT_SETTID, M + 256, 0, M + 264, 17)
    assert regions("clone3", (M, 64), 4242, mem) == [(M + 256, 4), (M + 264, 4)]


def test_futex_writes_only_for_wake_op_and_pi():
    assert regions("futex", (M, 0x80, 1, 0, 0, 0), 0) == []  # FUTEX_WAIT_PRIVATE
    assert regions("futex", (M, 0x85, 1, 1, M + 8, 0), 1) == [(M + 8, 4)]  # WAKE_OP
    assert regions("futex", (M, 0x86, 0, 0, 0, 0), -errno.ETIMEDOUT) == [(M, 4)]  # LOCK_PI


def test_capget_version_probe_gets_the_header_back():
    assert regions("capget", (M, M + 8), -errno.EINVAL) == [(M, 4)]
    assert regions("capget", (M, 0), 0) == [(M, 4)]  # NULL data: the probe succeeds
    mem = FakeMemory()
    mem.put_u32(M, 0x20080522)
    assert regions("capget", (M, M + 8), 0, mem) == [(M, 4), (M + 8, 24)]


def test_sendfile_updates_the_offset_even_on_failure():
    assert regions("sendfile", (1, 3, M, 100), 100) == [(M, 8)]
    assert regions("sendfile", (1, 3, M, 100), -errno.EPIPE) == [(M, 8)]
    assert regions("sendfile", (1, 3, 0, 100), 100) == []


# --- replay roles ----------------------------------------------------------------------------

def names(numbers: frozenset[int]) -> set[str]:
    return {syscall_name(n) for n in numbers}


def test_mmap_family():
    assert names(MMAP_FAMILY) == {
        "mmap", "munmap", "mprotect", "mremap", "brk", "madvise", "shmat", "shmdt",
        "pkey_mprotect", "remap_file_pages", "map_shadow_stack"}


def test_executed_in_replay():
    assert MMAP_FAMILY <= EXECUTED_IN_REPLAY
    must = {"execve", "exit", "exit_group", "clone", "rt_sigreturn", "arch_prctl",
            "rt_sigaction", "rt_sigprocmask", "sigaltstack", "set_robust_list"}
    assert must <= names(EXECUTED_IN_REPLAY)
    emulated = {"read", "write", "rseq", "seccomp", "prctl", "alarm", "setitimer", "kill",
                "rt_sigsuspend", "futex", "nanosleep", "close", "openat", "ioctl"}
    assert not emulated & names(EXECUTED_IN_REPLAY)


def test_rseq_is_refused_while_recording():
    assert REFUSED_IN_RECORDING == {nr("rseq"): errno.ENOSYS}
    assert is_supported(nr("rseq"))
    assert regions("rseq", (M, 32, 0, 0x53053053), -errno.ENOSYS) == []
    assert not is_supported(nr("io_uring_setup"))


# --- coverage of real programs ----------------------------------------------------------------

# What glibc 2.36, coreutils, python3 (json, subprocess, ssl, sqlite3, asyncio, threading),
# sqlite3 and gzip call on this machine (strace), plus the calls of typical C test programs.
USED_BY_REAL_PROGRAMS = words("""
    read write pread64 pwrite64 readv writev preadv preadv2 open openat openat2 close
    close_range stat fstat lstat newfstatat statx statfs fstatfs lseek getdents64 getcwd
    readlink readlinkat access faccessat faccessat2 poll ppoll select pselect6 epoll_create1
    epoll_ctl epoll_wait epoll_pwait ioctl fcntl dup dup2 dup3 pipe pipe2 socketpair socket
    connect bind listen accept accept4 getsockname getpeername getsockopt setsockopt sendto
    recvfrom sendmsg recvmsg shutdown uname sysinfo getrlimit setrlimit prlimit64 getrusage
    times clock_gettime clock_getres clock_nanosleep nanosleep gettimeofday time getrandom
    getpid getppid gettid getuid geteuid getgid getegid getgroups getresuid getresgid getpgrp
    getpgid getsid setpgid setsid umask chdir fchdir mkdir mkdirat rmdir unlink unlinkat
    rename renameat renameat2 link linkat symlink symlinkat chmod fchmod fchmodat chown
    fchown lchown fchownat utimensat truncate ftruncate fsync fdatasync fallocate sync mmap
    munmap mprotect mremap brk madvise msync mincore mlock munlock mlockall munlockall
    rt_sigaction rt_sigprocmask rt_sigpending rt_sigsuspend rt_sigtimedwait rt_sigqueueinfo
    rt_sigreturn sigaltstack kill tgkill tkill pause alarm setitimer getitimer timer_create
    timer_settime timer_gettime timer_delete timerfd_create timerfd_settime timerfd_gettime
    eventfd2 signalfd4 inotify_init1 inotify_add_watch inotify_rm_watch wait4 waitid exit
    exit_group arch_prctl set_tid_address set_robust_list get_robust_list rseq prctl
    sched_getaffinity sched_yield sched_getparam sched_getscheduler getpriority setpriority
    futex membarrier memfd_create copy_file_range sendfile splice tee flock mknod chroot
    capget personality getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr
    sync_file_range fadvise64 readahead execve execveat clone clone3 fork vfork shmget shmat
    shmdt shmctl semget semop semctl msgget msgsnd msgrcv msgctl getcpu
""")


def test_everything_real_programs_call_is_in_the_table():
    missing = [name for name in USED_BY_REAL_PROGRAMS if not is_supported(nr(name))]
    assert missing == []


STRACED_COMMANDS = [
    "ls -la / >/dev/null",
    "cp /etc/hostname $SCRATCH/h && rm $SCRATCH/h",
    "sort /etc/passwd >/dev/null",
    "gzip -c /etc/passwd | gzip -dc >/dev/null",
    "date >/dev/null; stat / >/dev/null; df / >/dev/null",
    "find /etc -maxdepth 1 -name '*.conf' >/dev/null",
    "sqlite3 :memory: 'create table t(x); insert into t values(1); select * from t;'",
    (f"{sys.executable} -c 'import json, subprocess, ssl, sqlite3, threading, asyncio;"
     " subprocess.run([\"true\"]); ssl.create_default_context();"
     " threading.Thread(target=print).start(); asyncio.run(asyncio.sleep(0))'"),
]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_every_syscall_of_real_programs_here_is_in_the_table(tmp_path):
    log = tmp_path / "strace.log"
    script = "; ".join(STRACED_COMMANDS)
    run = subprocess.run(
        ["strace", "-f", "-qq", "-o", str(log), "sh", "-c", script],
        env={"PATH": "/usr/bin:/bin", "SCRATCH": str(tmp_path)},
        capture_output=True, text=True, timeout=60, check=False,
    )
    if run.returncode != 0 and "ptrace" in run.stderr:
        pytest.skip(f"strace cannot trace here: {run.stderr.strip()}")
    called = set(re.findall(r"^\d+ +(\w+)\(", log.read_text(), re.MULTILINE))
    assert {"openat", "mmap", "execve", "clone3", "wait4"} <= called
    missing = sorted(name for name in called if not is_supported(nr(name)))
    assert missing == []


# --- against the real kernel ------------------------------------------------------------------

@dataclass(frozen=True)
class KernelCall:
    label: str
    nr: int
    args: tuple[int, ...]
    result: int
    before: bytes
    after: bytes


@dataclass(frozen=True)
class ProbeRun:
    base: int
    sizes: dict[str, int]
    offsets: dict[str, int]
    ioctls: dict[str, int]
    calls: dict[str, KernelCall]

    def read_after(self, call: KernelCall) -> Callable[[int, int], bytes]:
        def read(addr: int, n: int) -> bytes:
            offset = addr - self.base
            assert 0 <= offset <= offset + n <= len(call.after), (
                f"{call.label}: the table read {n} bytes at {addr:#x}, outside the buffers")
            return call.after[offset:offset + n]
        return read


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> ProbeRun:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    work = tmp_path_factory.mktemp("syscall_outputs")
    exe = work / "syscall_outputs"
    subprocess.run(["gcc", "-O1", "-o", str(exe), str(PROGRAMS / "syscall_outputs.c")],
                   check=True, capture_output=True)
    out = subprocess.run([str(exe), str(work)], check=True, capture_output=True, text=True,
                         timeout=30).stdout
    base, sizes, offsets, ioctls, calls = 0, {}, {}, {}, {}
    for line in out.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "base":
            base = int(rest)
        elif kind == "size":
            ctype, _, size = rest.rpartition(" ")
            sizes[ctype] = int(size)
        elif kind == "ioctl":
            request, _, number = rest.partition(" ")
            ioctls[request] = int(number)
        elif kind == "offset":
            field, _, offset = rest.rpartition(" ")
            offsets[field] = int(offset)
        elif kind == "call":
            label, number, *args, result, before, after = rest.split()
            calls[label] = KernelCall(label, int(number), tuple(int(a) for a in args),
                                      int(result), bytes.fromhex(before), bytes.fromhex(after))
    return ProbeRun(base, sizes, offsets, ioctls, calls)


def test_struct_sizes_are_gccs(kernel):
    # struct cachestat is newer than this machine's headers (Linux 6.1 uapi).
    unchecked = set(STRUCT_SIZES) - set(kernel.sizes)
    assert unchecked <= {"struct cachestat"}
    assert {t: STRUCT_SIZES[t] for t in kernel.sizes} == kernel.sizes
    assert kernel.offsets == {"struct msghdr msg_namelen": 8,
                              "struct msghdr msg_controllen": 40,
                              "struct msghdr msg_flags": 48, "struct mmsghdr msg_len": 56}


def test_ioctl_request_numbers_are_the_headers(kernel):
    assert len(kernel.ioctls) > 90
    for request, number in kernel.ioctls.items():
        assert ioctl_request_name(number) == request


def changed_bytes(call: KernelCall) -> set[int]:
    return {i for i, (b, a) in enumerate(zip(call.before, call.after, strict=True)) if b != a}


def test_every_byte_the_kernel_changed_is_in_a_predicted_region(kernel):
    assert len(kernel.calls) > 90
    for call in kernel.calls.values():
        predicted = output_regions(call.nr, call.args, call.result, kernel.read_after(call))
        covered = set()
        for addr, length in predicted:
            offset = addr - kernel.base
            assert 0 <= offset <= offset + length <= len(call.after), (call.label, predicted)
            covered.update(range(offset, offset + length))
        missed = sorted(changed_bytes(call) - covered)
        assert not missed, f"{call.label}: kernel wrote bytes {missed[:8]}... not predicted"


# The exact prediction for some calls, as (offset into the arena, length). A call the
# probe could not make here (no pty, no SysV IPC) is not checked.
EXACT = {
    "read": [(16, 5)],
    "readv": [(100, 4), (200, 4), (300, 2)],
    "preadv": [(100, 3), (200, 11)],
    "read_EBADF": [],
    "fstat": [(0, 144)],
    "statx": [(0, 256)],
    "statfs": [(0, 120)],
    "uname": [(0, 390)],
    "sysinfo": [(0, 112)],
    "getrusage": [(0, 144)],
    "rt_sigaction": [(0, 32)],
    "sigaltstack": [(0, 24)],
    "fcntl_F_GETLK": [(0, 32)],
    "ioctl_TCGETS_pipe": [],
    "ioctl_TCGETS": [(0, 36)],
    "ioctl_TIOCGWINSZ": [(0, 8)],
    "ioctl_FIONREAD": [(0, 4)],
    "recvfrom_MSG_TRUNC": [(0, 8), (300, 4)],  # socketpair peers have no address
    "epoll_wait": [(0, 12)],
    "waitid_ECHILD": [(0, 28)],
    "wait4_ECHILD": [],
    "capget": [(0, 4), (64, 24)],
    "capget_probe": [(0, 4)],
    "sched_setattr_E2BIG": [(0, 4)],
    "futex_wake_op": [(64, 4)],
    "msgrcv": [(0, 10)],
}


def test_exact_predictions_for_common_calls(kernel):
    for label, expected in EXACT.items():
        if label not in kernel.calls:
            continue
        call = kernel.calls[label]
        predicted = output_regions(call.nr, call.args, call.result, kernel.read_after(call))
        assert [(a - kernel.base, n) for a, n in predicted] == expected, label


def test_a_truncated_address_is_recorded_at_its_real_length(kernel):
    call = kernel.calls["getsockname_truncated"]
    predicted = output_regions(call.nr, call.args, call.result, kernel.read_after(call))
    real_length = struct.unpack_from("<i", call.after, 200)[0]
    assert real_length > 4
    assert [(a - kernel.base, n) for a, n in predicted] == [(200, 4), (0, real_length)]
    # ... though the kernel copied only the 4 bytes the caller asked for.
    assert max(changed_bytes(call) - {200, 201, 202, 203}) < 4
