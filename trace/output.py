"""What a program writes to the stdout and stderr it started with.

``replay -a`` echoes that output as the replay goes, whatever call wrote it. Most
calls take the bytes from the program's memory (write, writev, pwrite64, pwritev,
pwritev2, and vmsplice into a pipe), so replay reads them there, as the program
holds them at the call. sendfile, splice and copy_file_range move them from another
file inside the kernel, past the program's memory (``cat`` of a file into a file is
one copy_file_range): the recorder reads the bytes from the source right after the
call and stores them with the call (SyscallEvent.echo), since replay has neither
the source nor leave to read host files.

Both sides follow the same fds with :class:`EchoedFds`: 1 and 2 at the start, the
dups of them, and nothing after close. A positional write (pwrite64, ...) succeeds
only on a file, and is echoed at the same offset when replay's own output is a
file too, so that ``replay -a > out`` writes what the program wrote into its file.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
from collections.abc import Callable

from ..tracee.syscalls import syscall_number

_NR = {name: syscall_number(name) for name in (
    "write", "writev", "pwrite64", "pwritev", "pwritev2", "vmsplice", "sendfile", "splice",
    "copy_file_range", "close", "close_range", "dup", "dup2", "dup3", "fcntl")}
_F_DUPFD, _F_DUPFD_CLOEXEC = 0, 1030
_CLOSE_RANGE_CLOEXEC = 4
_UIO_MAXIOV = 1024
_F_SETPIPE_SZ, _F_GETPIPE_SZ = 1031, 1032
_SPLICE_F_NONBLOCK = 0x02
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.tee.restype = ctypes.c_ssize_t
_LIBC.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]

FROM_MEMORY = frozenset(_NR[n] for n in ("write", "writev", "pwrite64", "pwritev", "pwritev2",
                                         "vmsplice"))
"""Calls that write bytes from the program's memory to their first argument's fd."""
FROM_ANOTHER_FILE = frozenset(_NR[n] for n in ("sendfile", "splice", "copy_file_range"))
"""Calls that move bytes from one fd to another inside the kernel."""

ReadMemory = Callable[[int, int], bytes]


def output_fd(nr: int, args: tuple[int, ...]) -> int | None:
    """The fd call ``nr`` writes program output to, or None for other calls."""
    if nr in FROM_MEMORY or nr == _NR["sendfile"]:
        return args[0] & 0xFFFFFFFF
    if nr in (_NR["splice"], _NR["copy_file_range"]):
        return args[2] & 0xFFFFFFFF
    return None


def source(nr: int, args: tuple[int, ...]) -> tuple[int, int]:
    """(fd, address of its offset or 0) that a FROM_ANOTHER_FILE call reads from."""
    if nr == _NR["sendfile"]:
        return args[1] & 0xFFFFFFFF, args[2]
    return args[0] & 0xFFFFFFFF, args[1]


def file_offset(nr: int, args: tuple[int, ...]) -> int | None:
    """Where in its file a positional write (pwrite64, pwritev, pwritev2) wrote."""
    if nr in (_NR["pwrite64"], _NR["pwritev"]) or \
            (nr == _NR["pwritev2"] and args[3] != 0xFFFF_FFFF_FFFF_FFFF):
        return args[3]
    return None


def written_from_memory(nr: int, args: tuple[int, ...], result: int,
                        read: ReadMemory) -> bytes:
    """The ``result`` bytes a FROM_MEMORY call wrote, read from the program's memory."""
    if nr in (_NR["write"], _NR["pwrite64"]):
        return read(args[1], result)
    count = min(args[2], _UIO_MAXIOV)
    iovecs = read(args[1], 16 * count)
    data = bytearray()
    for base, length in struct.iter_unpack("<QQ", iovecs[:len(iovecs) // 16 * 16]):
        if len(data) >= result:
            break
        data += read(base, min(length, result - len(data)))
    return bytes(data[:result])


def peek_pipe(path: str, limit: int) -> bytes:
    """Up to ``limit`` bytes the pipe at ``path`` (a /proc/PID/fd link) holds, left in it:
    tee(2) duplicates a pipe's contents into another pipe without consuming them."""
    source = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        capacity = fcntl.fcntl(source, _F_GETPIPE_SZ)
        fcntl.fcntl(write_end, _F_SETPIPE_SZ, capacity)
        copied = _LIBC.tee(source, write_end, min(limit, capacity), _SPLICE_F_NONBLOCK)
        return os.read(read_end, copied) if copied > 0 else b""
    finally:
        for fd in (source, read_end, write_end):
            os.close(fd)


class EchoedFds:
    """The program's fds that lead to the stdout (1) or stderr (2) it started with."""

    def __init__(self) -> None:
        self.streams = {1: 1, 2: 2}  # program fd -> the stream it was at the start

    def copy(self) -> EchoedFds:
        clone = EchoedFds()
        clone.streams = dict(self.streams)
        return clone

    def stream(self, fd: int | None) -> int | None:
        return None if fd is None else self.streams.get(fd)

    def follow(self, nr: int, args: tuple[int, ...], result: int) -> None:
        """Update after completed call ``nr`` (close, dup, ...)."""
        if result < 0:
            return
        fd = args[0] & 0xFFFFFFFF
        if nr == _NR["close"]:
            self.streams.pop(fd, None)
        elif nr == _NR["close_range"]:
            if not args[2] & _CLOSE_RANGE_CLOEXEC:
                last = args[1] & 0xFFFFFFFF
                for open_fd in [f for f in self.streams if fd <= f <= last]:
                    del self.streams[open_fd]
        elif nr in (_NR["dup2"], _NR["dup3"]):
            target = args[1] & 0xFFFFFFFF
            if fd in self.streams:
                self.streams[target] = self.streams[fd]
            elif fd != target:
                self.streams.pop(target, None)
        elif (nr == _NR["dup"] or (nr == _NR["fcntl"] and args[1] in (_F_DUPFD,
                                                                       _F_DUPFD_CLOEXEC))) \
                and fd in self.streams:
            self.streams[result] = self.streams[fd]
