"""Human-readable events, for `retrograde dump TRACE [RANGE]`.

One line per event: its number, the task, the kind, then what happened. A
syscall reads as strace prints it, its arguments decoded by the call's
signature (flags by name, AT_FDCWD, fds and sizes in decimal, pointers in hex)::

            11  [4242] syscall  openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3
            12  [4242] syscall  read(3, "\\177ELF\\2\\1\\1\\3\\0"..., 832) = 832  wrote 832 bytes at 0x7ffc3e10
            18  [4242] syscall  mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f3a1000  mmap#4
            19  [4242] signal   SIGALRM at the syscall boundary
            20  [4242] exit     status 0

Strings and buffers come only from what the trace holds: what the kernel wrote
(a read's buffer), and memory that holds a file's bytes because it was never
writable since it was mapped (ld.so's and libc's constant strings, read from
the trace's copies). Other memory (the stack, the heap) changed unrecorded
between events, so a pointer into it stays a pointer. A call the signature
table does not know shows its six raw registers. With verbose=True an exec also
lists its mappings and a syscall each of its writes, one per line.
"""

from __future__ import annotations

import errno
import functools
import signal
from collections.abc import Callable

from retrograde.trace.events import (
    CloneEvent,
    Event,
    ExecEvent,
    ExitEvent,
    MappingRecord,
    PreemptEvent,
    RandomEvent,
    RdtscEvent,
    SignalEvent,
    SyscallEntryEvent,
    SyscallEvent,
)
from retrograde.tracee.registers import REGISTER_NAMES

# Kernel-internal errnos (include/linux/errno.h) that a syscall can return to a
# tracer at syscall exit before signal handling restarts it; errno.errorcode
# does not know them.
_KERNEL_ERRNOS = {512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND",
                  515: "ENOIOCTLCMD", 516: "ERESTART_RESTARTBLOCK"}
CLONE_THREAD = 0x10000
_MAX_ERRNO = 4095  # results in [-4095, -1] are errors (the kernel's IS_ERR_VALUE)


@functools.cache
def _syscall_table() -> Callable[[int], str] | None:
    try:
        from retrograde.tracee.syscalls import syscall_name
    except ImportError:  # the syscall table is not there (yet)
        return None
    lookup: Callable[[int], str] = syscall_name
    return lookup


def _syscall_name(nr: int) -> str:
    lookup = _syscall_table()
    if lookup is not None:
        try:
            return lookup(nr)
        except (LookupError, ValueError):
            pass
    return f"syscall_{nr}"


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _number(value: int) -> str:
    value = _signed(value)
    return str(value) if -0x10000 < value < 0x10000 else hex(value)


def _result(value: int) -> str:
    value = _signed(value)
    if -_MAX_ERRNO <= value < 0:
        return "-" + (errno.errorcode.get(-value) or _KERNEL_ERRNOS.get(-value) or str(-value))
    return _number(value)


def signal_name(signo: int) -> str:
    try:
        return signal.Signals(signo).name
    except ValueError:
        if signal.SIGRTMIN < signo <= signal.SIGRTMAX:
            return f"SIGRTMIN+{signo - signal.SIGRTMIN}"
        return f"signal {signo}"


def _mapping(m: MappingRecord) -> str:
    text = f"{m.start:x}-{m.end:x} {m.perms}"
    if m.name:
        text += f" {m.name}"
        if m.offset:
            text += f" @{m.offset:#x}"
    if m.file_hash:
        text += f" (file {m.file_hash[:12]})"
    if m.contents is not None:
        text += f" ({len(m.contents)} bytes recorded)"
    return text


# -- syscall signatures ------------------------------------------------------------------
# Each argument's kind, from the kernel's prototypes (include/linux/syscalls.h):
#   fd dirfd int uint long size off  numbers (int-typed ones are the register's low 32 bits)
#   offhex                           an offset in hex (mmap's, as strace shows it)
#   ptr                              an address, shown in hex (NULL for 0)
#   path                             a NUL-terminated string the call reads
#   in:N / out:N                     a buffer of arg N's size (out: of the result's) that the
#                                    call reads / fills
#   oflags mode amode prot mapflags atflags whence signo sighow clock mremap futex arch fcntl ioctl
#   msflags madv                     named constants and flag sets

_SIGNATURES: dict[str, tuple[str, ...]] = {
    "read": ("fd", "out:2", "size"), "write": ("fd", "in:2", "size"),
    "pread64": ("fd", "out:2", "size", "off"), "pwrite64": ("fd", "in:2", "size", "off"),
    "readv": ("fd", "ptr", "int"), "writev": ("fd", "ptr", "int"),
    "open": ("path", "oflags", "mode"), "openat": ("dirfd", "path", "oflags", "mode"),
    "creat": ("path", "mode"), "close": ("fd",), "close_range": ("uint", "uint", "uint"),
    "stat": ("path", "ptr"), "lstat": ("path", "ptr"), "fstat": ("fd", "ptr"),
    "newfstatat": ("dirfd", "path", "ptr", "atflags"),
    "statx": ("dirfd", "path", "atflags", "hex", "ptr"),
    "access": ("path", "amode"), "faccessat": ("dirfd", "path", "amode"),
    "faccessat2": ("dirfd", "path", "amode", "atflags"),
    "readlink": ("path", "out:1", "size"), "readlinkat": ("dirfd", "path", "out:2", "size"),
    "unlink": ("path",), "unlinkat": ("dirfd", "path", "atflags"),
    "mkdir": ("path", "mode"), "mkdirat": ("dirfd", "path", "mode"), "rmdir": ("path",),
    "rename": ("path", "path"), "renameat": ("dirfd", "path", "dirfd", "path"),
    "renameat2": ("dirfd", "path", "dirfd", "path", "uint"),
    "chdir": ("path",), "fchdir": ("fd",), "getcwd": ("out:1", "size"),
    "chmod": ("path", "mode"), "fchmod": ("fd", "mode"), "fchmodat": ("dirfd", "path", "mode"),
    "truncate": ("path", "off"), "ftruncate": ("fd", "off"),
    "execve": ("path", "ptr", "ptr"), "execveat": ("dirfd", "path", "ptr", "ptr", "atflags"),
    "lseek": ("fd", "off", "whence"), "getdents64": ("fd", "ptr", "size"),
    "dup": ("fd",), "dup2": ("fd", "fd"), "dup3": ("fd", "fd", "oflags"),
    "pipe": ("ptr",), "pipe2": ("ptr", "oflags"), "fcntl": ("fd", "fcntl", "long"),
    "ioctl": ("fd", "ioctl", "ptr"), "fsync": ("fd",), "fdatasync": ("fd",),
    "sendfile": ("fd", "fd", "ptr", "size"),
    "copy_file_range": ("fd", "ptr", "fd", "ptr", "size", "uint"),
    "splice": ("fd", "ptr", "fd", "ptr", "size", "uint"),
    "mmap": ("ptr", "size", "prot", "mapflags", "fd", "offhex"),
    "munmap": ("ptr", "size"), "mprotect": ("ptr", "size", "prot"), "brk": ("ptr",),
    "mremap": ("ptr", "size", "size", "mremap", "ptr"), "madvise": ("ptr", "size", "madv"),
    "msync": ("ptr", "size", "msflags"),
    "rt_sigaction": ("signo", "ptr", "ptr", "size"),
    "rt_sigprocmask": ("sighow", "ptr", "ptr", "size"), "rt_sigreturn": (),
    "kill": ("int", "signo"), "tgkill": ("int", "int", "signo"), "tkill": ("int", "signo"),
    "exit": ("int",), "exit_group": ("int",), "getpid": (), "gettid": (), "getppid": (),
    "getuid": (), "geteuid": (), "getgid": (), "getegid": (),
    "wait4": ("int", "ptr", "hex", "ptr"), "nanosleep": ("ptr", "ptr"),
    "clock_gettime": ("clock", "ptr"), "clock_getres": ("clock", "ptr"),
    "clock_nanosleep": ("clock", "hex", "ptr", "ptr"), "gettimeofday": ("ptr", "ptr"),
    "time": ("ptr",), "getrandom": ("out:1", "size", "hex"),
    "arch_prctl": ("arch", "ptr"), "set_tid_address": ("ptr",),
    "set_robust_list": ("ptr", "size"), "rseq": ("ptr", "size", "hex", "hex"),
    "prlimit64": ("int", "int", "ptr", "ptr"), "getrlimit": ("int", "ptr"),
    "futex": ("ptr", "futex", "uint", "ptr", "ptr", "uint"), "sched_yield": (),
    "uname": ("ptr",), "sysinfo": ("ptr",), "umask": ("mode",),
    "poll": ("ptr", "uint", "int"), "ppoll": ("ptr", "uint", "ptr", "ptr", "size"),
    "select": ("int", "ptr", "ptr", "ptr", "ptr"),
    "socket": ("int", "int", "int"), "connect": ("fd", "ptr", "uint"),
    "bind": ("fd", "ptr", "uint"), "listen": ("fd", "int"),
    "accept": ("fd", "ptr", "ptr"), "accept4": ("fd", "ptr", "ptr", "oflags"),
    "sendto": ("fd", "in:2", "size", "hex", "ptr", "uint"),
    "recvfrom": ("fd", "out:2", "size", "hex", "ptr", "ptr"),
    "eventfd2": ("uint", "oflags"), "memfd_create": ("path", "uint"),
    "prctl": ("int", "long", "long", "long", "long"),
}

_AT_FDCWD = -100
_O_ACCMODE = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}
_O_FLAGS = [(0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
            (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o10000, "O_DSYNC"),
            (0o20000, "O_ASYNC"), (0o40000, "O_DIRECT"), (0o100000, "O_LARGEFILE"),
            (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"), (0o1000000, "O_NOATIME"),
            (0o2000000, "O_CLOEXEC"), (0o4000000, "__O_SYNC"), (0o10000000, "O_PATH"),
            (0o20000000, "__O_TMPFILE")]
_PROT = [(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC"), (0x01000000, "PROT_GROWSDOWN"),
         (0x02000000, "PROT_GROWSUP")]
_MAP_TYPE = {1: "MAP_SHARED", 2: "MAP_PRIVATE", 3: "MAP_SHARED_VALIDATE"}
_MAP_FLAGS = [(0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x40, "MAP_32BIT"),
              (0x100, "MAP_GROWSDOWN"), (0x800, "MAP_DENYWRITE"), (0x1000, "MAP_EXECUTABLE"),
              (0x2000, "MAP_LOCKED"), (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"),
              (0x10000, "MAP_NONBLOCK"), (0x20000, "MAP_STACK"), (0x40000, "MAP_HUGETLB"),
              (0x80000, "MAP_SYNC"), (0x100000, "MAP_FIXED_NOREPLACE")]
_AT_FLAGS = [(0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_REMOVEDIR"),
             (0x400, "AT_SYMLINK_FOLLOW"), (0x800, "AT_NO_AUTOMOUNT"), (0x1000, "AT_EMPTY_PATH")]
_MREMAP = [(1, "MREMAP_MAYMOVE"), (2, "MREMAP_FIXED"), (4, "MREMAP_DONTUNMAP")]
_MSYNC = [(1, "MS_ASYNC"), (2, "MS_INVALIDATE"), (4, "MS_SYNC")]
_NAMES = {
    "whence": {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END", 3: "SEEK_DATA", 4: "SEEK_HOLE"},
    "sighow": {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"},
    "clock": {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID",
              3: "CLOCK_THREAD_CPUTIME_ID", 4: "CLOCK_MONOTONIC_RAW", 5: "CLOCK_REALTIME_COARSE",
              6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME"},
    "arch": {0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS",
             0x1004: "ARCH_GET_GS", 0x1011: "ARCH_GET_CPUID", 0x1012: "ARCH_SET_CPUID",
             0x3001: "ARCH_CET_STATUS"},
    "fcntl": {0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL",
              5: "F_GETLK", 6: "F_SETLK", 7: "F_SETLKW", 1030: "F_DUPFD_CLOEXEC"},
    "madv": {0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED",
             4: "MADV_DONTNEED", 8: "MADV_FREE", 14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE"},
    "futex": {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 9: "FUTEX_WAIT_BITSET", 10: "FUTEX_WAKE_BITSET",
              128: "FUTEX_WAIT_PRIVATE", 129: "FUTEX_WAKE_PRIVATE",
              137: "FUTEX_WAIT_BITSET_PRIVATE", 138: "FUTEX_WAKE_BITSET_PRIVATE"},
}
_O_CREATES = 0o100 | 0o20000000  # O_CREAT, __O_TMPFILE
_STRING_SHOWN = 32  # bytes of a string or buffer, as strace's default -s 32


def _flag_names(value: int, flags: list[tuple[int, str]], base: list[str]) -> str:
    names = list(base)
    for bit, name in flags:
        if value & bit:
            names.append(name)
            value &= ~bit
    if value:
        names.append(hex(value))
    return "|".join(names) or "0"


def _open_flags(value: int) -> str:
    return _flag_names(value & ~3, _O_FLAGS, [_O_ACCMODE.get(value & 3, str(value & 3))])


def _quoted(data: bytes, more: bool) -> str:
    """Bytes as strace quotes them: C escapes, octal for the rest, ... when cut."""
    out = []
    for i, byte in enumerate(data[:_STRING_SHOWN]):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif char in "\n\t\r\v\f":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r", "\v": "\\v", "\f": "\\f"}[char])
        elif 32 <= byte < 127:
            out.append(char)
        else:
            following = data[i + 1:i + 2]
            # \1 followed by a digit would read as \12...: write all three digits then.
            out.append(f"\\{byte:03o}" if following.isdigit() else f"\\{byte:o}")
    cut = more or len(data) > _STRING_SHOWN
    return '"' + "".join(out) + '"' + ("..." if cut else "")


class RecordedMemory:
    """The parts of a program's memory whose contents the trace knows at each event:
    private file mappings that were never writable since they were mapped, which
    hold their file's bytes (read from the trace's copy). Fed every event in order
    (follow()), it follows exec and the mmap family.
    """

    def __init__(self, read_file: Callable[[str, int, int], bytes]) -> None:
        self._read_file = read_file
        # start -> (end, file digest, file offset of start); only never-written ranges
        self._ranges: dict[int, tuple[int, str, int]] = {}

    def follow(self, event: Event) -> None:
        if isinstance(event, ExecEvent):
            self._ranges.clear()
            for m in event.mappings:
                self._map(m)
        elif isinstance(event, SyscallEvent) and not _is_error(event.result):
            name = _syscall_name(event.nr)
            args = event.args + (0,) * (6 - len(event.args))
            if name == "mmap":
                self._forget(event.result, args[1])
                if event.mapping is not None:
                    self._map(event.mapping)
            elif name == "munmap":
                self._forget(args[0], args[1])
            elif name == "mprotect" and args[2] & 2:
                self._forget(args[0], args[1])  # writable from now: its bytes may change
            elif name == "mremap":
                self._forget(args[0], args[1])
                self._forget(event.result, args[2])
                if event.mapping is not None:
                    self._map(event.mapping)

    def _map(self, m: MappingRecord) -> None:
        if m.file_hash and "w" not in m.perms and m.perms.endswith("p"):
            self._forget(m.start, m.end - m.start)
            self._ranges[m.start] = (m.end, m.file_hash, m.offset)

    def _forget(self, start: int, length: int) -> None:
        end = start + _page_up(length)
        for low, (high, digest, offset) in list(self._ranges.items()):
            if low < end and start < high:
                del self._ranges[low]
                if low < start:
                    self._ranges[low] = (start, digest, offset)
                if end < high:
                    self._ranges[end] = (high, digest, offset + end - low)

    def read(self, addr: int, size: int) -> bytes:
        """Up to `size` known bytes from `addr` (fewer where knowledge ends)."""
        for low, (high, digest, offset) in self._ranges.items():
            if low <= addr < high:
                data = self._read_file(digest, offset + addr - low, min(size, high - addr))
                # Past the end of the file a mapping reads as zeros (to its page's end).
                return data
        return b""

    def string(self, addr: int) -> bytes | None:
        data = self.read(addr, 4096)
        end = data.find(b"\0")
        return data[:end] if end >= 0 else None


def _page_up(n: int) -> int:
    return (n + 4095) & ~4095


def _is_error(result: int) -> bool:
    return -_MAX_ERRNO <= _signed(result) < 0


def _argument(kind: str, value: int, event: SyscallEvent,
              memory: RecordedMemory | None) -> str:
    int32 = ((value & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
    if kind == "dirfd":
        return "AT_FDCWD" if int32 == _AT_FDCWD else str(int32)
    if kind in ("fd", "int"):
        return str(int32)
    if kind == "uint":
        return str(value & 0xFFFFFFFF)
    if kind in ("size", "off", "long"):
        return str(_signed(value)) if kind != "size" else str(value)
    if kind == "hex":
        return hex(value)
    if kind == "offhex":
        return hex(value) if value else "0"
    if kind == "amode":
        return _flag_names(value, [(4, "R_OK"), (2, "W_OK"), (1, "X_OK")], []) if value else "F_OK"
    if kind == "ptr":
        return "NULL" if value == 0 else hex(value)
    if kind == "path":
        text = memory.string(value) if memory is not None and value else None
        return _quoted(text, more=False) if text is not None else _argument("ptr", value, event,
                                                                           memory)
    if kind.startswith(("in:", "out:")):
        direction, size_arg = kind.split(":")
        size = (event.args[int(size_arg)] if direction == "in"
                else max(0, _signed(event.result)))
        data = None
        if direction == "out" and not _is_error(event.result):
            data = next((d for addr, d in event.writes if addr == value), None)
        elif direction == "in" and memory is not None:
            data = memory.read(value, min(size, _STRING_SHOWN + 1)) or None
        if data is None:
            return _argument("ptr", value, event, memory)
        return _quoted(data[:size], more=size > len(data[:size]))
    if kind == "oflags":
        return _open_flags(value & 0xFFFFFFFF)
    if kind == "mode":
        return f"0{value & 0o7777:o}" if value & 0o7777 else "0"
    if kind == "prot":
        return _flag_names(value, _PROT, []) if value else "PROT_NONE"
    if kind == "mapflags":
        kind_name = _MAP_TYPE.get(value & 3)
        return _flag_names(value & ~3, _MAP_FLAGS, [kind_name] if kind_name else [str(value & 3)])
    if kind == "atflags":
        return _flag_names(value & 0xFFFFFFFF, _AT_FLAGS, [])
    if kind == "mremap":
        return _flag_names(value, _MREMAP, [])
    if kind == "msflags":
        return _flag_names(value, _MSYNC, [])
    if kind == "signo":
        return signal_name(int32) if int32 > 0 else str(int32)
    if kind == "ioctl":
        return _ioctl_name(value & 0xFFFFFFFF)
    if kind in _NAMES:
        return _NAMES[kind].get(value, str(_signed(value)))
    return _number(value)


@functools.cache
def _ioctl_namer() -> Callable[[int], str] | None:
    try:
        from retrograde.tracee.syscalls import ioctl_request_name
    except ImportError:
        return None
    namer: Callable[[int], str] = ioctl_request_name
    return namer


def _ioctl_name(request: int) -> str:
    namer = _ioctl_namer()
    if namer is not None:
        try:
            return namer(request)
        except (LookupError, ValueError):
            pass
    return hex(request)


def format_syscall(event: SyscallEvent, memory: RecordedMemory | None = None) -> str:
    """The call as strace writes it: name(decoded arguments) = result."""
    name = _syscall_name(event.nr)
    signature = _SIGNATURES.get(name)
    if signature is None:
        args = ", ".join(_number(a) for a in event.args)
    else:
        values = event.args + (0,) * (len(signature) - len(event.args))
        if name in ("open", "openat") and not values[signature.index("oflags")] & _O_CREATES:
            signature = signature[:-1]  # the mode is read only when a file may be created
        args = ", ".join(_argument(kind, value, event, memory)
                         for kind, value in zip(signature, values))
    return f"{name}({args}) = {_result(event.result)}"


def _describe(event: Event, verbose: bool, memory: RecordedMemory | None) -> list[str]:
    """The text after the kind column, and any further lines."""
    if isinstance(event, SyscallEvent):
        text = format_syscall(event, memory)
        written = sum(len(data) for _, data in event.writes)
        if len(event.writes) == 1:
            text += f"  wrote {written} bytes at {event.writes[0][0]:#x}"
        elif event.writes:
            text += f"  wrote {written} bytes in {len(event.writes)} places"
        if event.mmap_id is not None:
            text += f"  mmap#{event.mmap_id}"
        if event.mapping is not None:
            text += f" {_mapping(event.mapping)}"
        more = ([f"write {len(data)} bytes at {addr:#x}: {data[:16].hex()}"
                 + ("..." if len(data) > 16 else "") for addr, data in event.writes]
                if verbose and len(event.writes) > 1 else [])
        return [text, *more]
    if isinstance(event, SignalEvent):
        where = {"sync": "raised by the program's own instruction (sync)",
                 "boundary": "at the syscall boundary",
                 "precise": "inside user code (precise)"}.get(event.where, event.where)
        return [f"{signal_name(event.signo)} {where}"]
    if isinstance(event, RandomEvent):
        carry = "" if event.carry else " (carry clear: none ready)"
        return [f"{event.mnemonic} at {event.pc:#x} = {event.value:#x}{carry}"]
    if isinstance(event, RdtscEvent):
        text = f"rdtsc{'p' if event.aux is not None else ''} at {event.pc:#x} = {event.value:#x}"
        if event.aux is not None:
            text += f" aux {event.aux:#x}"
        return [text]
    if isinstance(event, ExecEvent):
        text = f"{event.path} {list(event.argv)!r}  {len(event.mappings)} mappings"
        if event.retrograde_page:
            text += f", retrograde page {event.retrograde_page:#x}"
        return [text, *(_mapping(m) for m in event.mappings)] if verbose else [text]
    if isinstance(event, CloneEvent):
        what = "thread" if event.flags & CLONE_THREAD else "process"
        text = f"new {what} of [{event.parent}] in process {event.process}, flags {event.flags:#x}"
        if event.writes:
            text += f"  wrote {sum(len(d) for _, d in event.writes)} bytes in the child"
        return [text]
    if isinstance(event, SyscallEntryEvent):
        name = _syscall_name(event.nr)
        text = f"{name}({', '.join(_number(a) for a in event.args)}) blocks: parked"
        for addr, data in event.writes:
            text += f"  stored {data.hex()} at {addr:#x} as it blocked"
        return [text]
    if isinstance(event, PreemptEvent):
        at = REGISTER_NAMES.index("rip") * 8
        rip = int.from_bytes(event.regs[at:at + 8], "little")
        return [f"end of its time slice at {rip:#x}"]
    if isinstance(event, ExitEvent):
        if event.signo is not None:
            return [f"killed by {signal_name(event.signo)}"]
        return [f"status {event.status}"]
    return [repr(event)]


def format_event(n: int, event: Event, *, verbose: bool = False,
                 memory: RecordedMemory | None = None) -> str:
    """Event n as one line (more with verbose=True, each indented). With `memory`
    (following every event before this one), strings and buffers are shown where
    the trace knows them."""
    first, *more = _describe(event, verbose, memory)
    head = f"{n:>10}  [{event.task}] {event.kind:<8} "
    return "\n".join([head + first, *(" " * len(head) + "  " + line for line in more)])


def parse_range(text: str) -> tuple[int, int | None]:
    """An event range as (start, stop) for TraceReader.events(): stop is exclusive
    as in range(), None is "to the end", a negative start counts from the end. The
    bounds written are inclusive:

        "10"    -> (10, 11)    event 10
        "10-20" -> (10, 21)    events 10 to 20
        "10-"   -> (10, None)  event 10 to the end
        "-20"   -> (-20, None) the last 20 events (what led to a crash)

    ValueError for anything else; its text is the reason only, for the caller to
    put after the range it quotes.
    """
    def bound(part: str) -> int:
        if not (part.isascii() and part.isdigit()):
            raise ValueError("expected N, N-M, N- or -N (event numbers)")
        return int(part)

    low, dash, high = text.strip().partition("-")
    if not dash:
        n = bound(low)
        return n, n + 1
    if not low:
        last = bound(high)
        return (-last, None) if last else (0, 0)
    start = bound(low)
    if not high:
        return start, None
    stop = bound(high) + 1
    if stop <= start:
        raise ValueError("it ends before it starts")
    return start, stop
