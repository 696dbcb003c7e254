"""What a change to a file shows through the program's mappings of it.

A write(2) to a file the program has mapped changes what the mapping shows: always
for MAP_SHARED, and for MAP_PRIVATE in the pages not yet copied on write (Linux
leaves that unspecified in mmap(2) but does it). No store into the program's memory
happens that a syscall rule could name, yet the program can read the new bytes with
a plain load. Replay emulates the write, and maps the trace's copy of the file
privately (checkpoints are fork clones, which must not share pages, and the trace's
copy must never change) or, for a file with several views, from a memfd of its own
(replay/session.py): either way it would show the old bytes.

So right after each call that may change a mapped file's contents or size, the
recorder reads the part of every mapping of that file the call changed, as the
program now sees it, and stores it with the call's own output bytes. Replay puts it
back like any output: it needs neither the file nor a writable copy of it, and what
another process or the kernel changed in the file meanwhile is in the trace too, as
of the program's next call that changed the file. (Changes made by others between
two such calls are seen only at the next one; a single traced process that is the
only writer is reproduced exactly.)

One file is the program's memory itself: a write to /proc/PID/mem of its own
process (/proc/self/mem, /proc/thread-self/mem) stores into its pages, read-only
ones included, as a JIT or a debugger in the process may do (rr's jit_proc_mem).
Replay emulates that write too, so the bytes it stored are kept as output of the
call, read back from the memory it wrote (``_own_memory``).

Sizes: pages beyond the end of a file raise SIGBUS. The trace's copy of a file
mapped past its end is extended with a hole (format.add_file's ``size``), so in
replay the whole mapping is readable and shows zeros past the end, as a file grown
under its mapping does. A file that shrinks under a mapping shows zeros in replay
where the recording had SIGBUS; a program that touches such a page gets a
divergence at that signal's event instead of the fault.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import struct

from ..tracee.maps import PAGE_SIZE, parse_maps
from ..tracee.process import Tracee
from ..tracee.syscalls import syscall_number

_NR = {name: syscall_number(name) for name in (
    "write", "writev", "pwrite64", "pwritev", "pwritev2", "sendfile", "splice",
    "copy_file_range", "ftruncate", "truncate", "fallocate", "open", "openat", "openat2",
    "creat", "madvise")}
FILE_CHANGERS = frozenset(_NR.values()) - {_NR["madvise"]}
"""Calls that may change the contents or the size of a file the program has mapped."""
# Advice that drops pages: a private mapping's own copies go, and what comes back is
# the file as it is now (in replay: the trace's copy as it was), or for MADV_REMOVE
# on a shared mapping, a hole punched in the file.
_MADV_DONTNEED, _MADV_REMOVE, _MADV_DONTNEED_LOCKED = 4, 9, 24

_O_TRUNC = 0o1000
_O_APPEND = 0o2000
_FALLOC_FL_PUNCH_HOLE, _FALLOC_FL_COLLAPSE_RANGE = 0x02, 0x08
_FALLOC_FL_ZERO_RANGE, _FALLOC_FL_INSERT_RANGE = 0x10, 0x20
_AT_FDCWD = -100

Write = tuple[int, bytes]

# What readlink says of an fd open on a process's memory: /proc/self/mem is
# /proc/TGID/mem, /proc/thread-self/mem is /proc/TGID/task/TID/mem.
_MEMORY_WRITERS = frozenset(_NR[name] for name in (
    "write", "writev", "pwrite64", "pwritev", "pwritev2"))
_MEMORY_FILE = re.compile(r"/proc/(\d+)(?:/task/(\d+))?/mem")


class FileViews:
    """Follows the files a recorded program maps, and reads what their changes show."""

    def __init__(self, tracee: Tracee) -> None:
        self.tracee = tracee
        self.sizes: dict[tuple[int, int], int] = {}  # (st_dev, st_ino) -> size last seen
        # Files mapped shared or changed since they were mapped: what their mappings
        # show may differ from the trace's copy, and neither their size nor their times
        # need change when a store through a shared mapping changes them (shmem's
        # never do), so a copy of one cannot be reused by its inode's times.
        self.written: set[tuple[int, int]] = set()

    def note(self, path: str, shared: bool = False) -> bool:
        """``path`` (a /proc link to a file) is mapped now: remember its size. Returns
        whether its contents may have changed since it was last seen (see ``written``)."""
        try:
            st = os.stat(path)
        except OSError:
            return True
        key = (st.st_dev, st.st_ino)
        if stat.S_ISREG(st.st_mode):
            self.sizes[key] = st.st_size
        if shared:
            self.written.add(key)
        return key in self.written

    def changes(self, nr: int, args: tuple[int, ...], result: int) -> list[Write]:
        """What completed call ``nr`` changed in the program's mappings, as (address, bytes)."""
        if result < 0:
            return []
        if nr == _NR["madvise"]:
            return self._dropped(args[0], args[1], args[2] & 0xFFFFFFFF) if self.sizes else []
        if nr not in FILE_CHANGERS:
            return []
        target = self._target(nr, args, result)
        if target is None:
            return []
        try:
            st = os.stat(target)
        except OSError:
            return []
        if st.st_dev == self._procfs and stat.S_ISREG(st.st_mode):
            return self._own_memory(nr, args, result, target)
        key = (st.st_dev, st.st_ino)
        old_size = self.sizes.get(key)
        if old_size is None:
            return []  # not a file the program has mapped
        self.sizes[key] = new_size = st.st_size
        self.written.add(key)
        # File ranges that show something new: (start, end, beyond the end of the file).
        ranges: list[tuple[int, int, bool]] = []
        written = self._written(nr, args, result, old_size, new_size)
        if written is not None and written[0] < written[1]:
            ranges.append((*written, False))
        if new_size < old_size:
            ranges.append((new_size, old_size, True))
        elif new_size > old_size:
            # Only the page that held the old end can show anything but zeros: the
            # pages after it were past the end, unreadable, and are zeros in replay.
            ranges.append((old_size, min(new_size, -(-old_size // PAGE_SIZE) * PAGE_SIZE), False))
        if not ranges:
            return []
        return self._read_views(st, ranges)

    @functools.cached_property
    def _procfs(self) -> int:
        return os.stat("/proc/self/mem").st_dev

    def _own_memory(self, nr: int, args: tuple[int, ...], result: int, target: str
                    ) -> list[Write]:
        """The bytes a write-like call stored into the program's own memory through
        /proc/PID/mem, where ``target`` is a procfs file (any other one: none)."""
        # splice, sendfile and copy_file_range refuse mem files
        if nr not in _MEMORY_WRITERS or result == 0 or not self._names_own_memory(target):
            return []
        written = self._written(nr, args, result, 0, 0)
        if written is None:
            return []
        return [(written[0], self.tracee.read_partial(written[0], result))]

    def memory_store(self, nr: int, args: tuple[int, ...]) -> tuple[int, int] | None:
        """At its entry, the addresses a write-like call would store into through
        /proc/PID/mem of the program's own process, or None for any other call."""
        if nr not in _MEMORY_WRITERS:
            return None
        path = self._fd_path(args[0])
        try:
            st = os.stat(path)
        except OSError:
            return None
        if st.st_dev != self._procfs or not stat.S_ISREG(st.st_mode) or \
                not self._names_own_memory(path):
            return None
        if nr in (_NR["write"], _NR["pwrite64"]):
            length = args[2]
        else:
            count = min(args[2] & 0xFFFFFFFF, 1024)
            data = self.tracee.read_partial(args[1], 16 * count)
            length = sum(size for _, size in struct.iter_unpack("<QQ", data[:len(data) // 16 * 16]))
        if nr in (_NR["pwrite64"], _NR["pwritev"]) or \
                (nr == _NR["pwritev2"] and args[3] != 0xFFFFFFFFFFFFFFFF):
            start = args[3]
        else:
            start = self.position(args[0])
        return start, start + length

    def _names_own_memory(self, path: str) -> bool:
        """Whether ``path``, a procfs file, is /proc/PID/mem of the program's process."""
        try:
            match = _MEMORY_FILE.fullmatch(os.readlink(path))
        except OSError:
            return False
        return match is not None and self.is_own_process(int(match[1]))

    def is_own_process(self, pid: int) -> bool:
        """Whether ``pid`` names a thread of the traced process (its task list has it)."""
        return pid > 0 and os.path.exists(f"/proc/{self.tracee.pid}/task/{pid}")

    # -- which file, which bytes ------------------------------------------------------------
    def _fd_path(self, fd: int) -> str:
        return f"/proc/{self.tracee.pid}/fd/{fd & 0xFFFFFFFF}"

    def _target(self, nr: int, args: tuple[int, ...], result: int) -> str | None:
        if nr in (_NR["splice"], _NR["copy_file_range"]):
            return self._fd_path(args[2])
        if nr == _NR["truncate"]:
            path = self._string(args[0])
            return None if path is None else os.path.join(f"/proc/{self.tracee.pid}/cwd", path)
        if nr in (_NR["open"], _NR["openat"], _NR["openat2"], _NR["creat"]):
            flags = {_NR["open"]: args[1], _NR["openat"]: args[2], _NR["creat"]: _O_TRUNC,
                     _NR["openat2"]: self._u64(args[2])}[nr]
            return self._fd_path(result) if flags & _O_TRUNC else None
        return self._fd_path(args[0])

    def _written(self, nr: int, args: tuple[int, ...], result: int, old_size: int,
                 size: int) -> tuple[int, int] | None:
        """The file range a write-like call stored into, or None for the others."""
        if nr in (_NR["ftruncate"], _NR["truncate"], _NR["open"], _NR["openat"],
                  _NR["openat2"], _NR["creat"]):
            return None
        if nr == _NR["fallocate"]:
            mode, offset, length = args[1], args[2], args[3]
            if mode & (_FALLOC_FL_COLLAPSE_RANGE | _FALLOC_FL_INSERT_RANGE):
                return offset, max(size, old_size)  # everything after it moved
            if mode & (_FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_ZERO_RANGE):
                return offset, offset + length
            return None
        fd = args[2] if nr in (_NR["splice"], _NR["copy_file_range"]) else args[0]
        pos, flags = self._fdinfo(fd)
        if flags & _O_APPEND:
            return size - result, size  # pwrite appends too with O_APPEND (pwrite(2), BUGS)
        if nr in (_NR["pwrite64"], _NR["pwritev"]) or \
                (nr == _NR["pwritev2"] and args[3] != 0xFFFFFFFFFFFFFFFF):
            return args[3], args[3] + result
        if nr in (_NR["splice"], _NR["copy_file_range"]) and args[3]:
            end = self._u64(args[3])  # the kernel stored the offset after the copy there
            return end - result, end
        return pos - result, pos

    def position(self, fd: int) -> int:
        """The file position of the program's ``fd``."""
        return self._fdinfo(fd)[0]

    def _fdinfo(self, fd: int) -> tuple[int, int]:
        """(position, flags) of the program's ``fd``."""
        pos = flags = 0
        try:
            with open(f"/proc/{self.tracee.pid}/fdinfo/{fd & 0xFFFFFFFF}") as f:
                for line in f:
                    name, _, value = line.partition(":")
                    if name == "pos":
                        pos = int(value)
                    elif name == "flags":
                        flags = int(value, 8)
        except OSError:
            pass  # the fd went away with the task (it was killed): nothing left to read
        return pos, flags

    def _u64(self, addr: int) -> int:
        return int.from_bytes(self.tracee.read_partial(addr, 8).ljust(8, b"\0"), "little")

    def _string(self, addr: int) -> str | None:
        data = self.tracee.read_partial(addr, 4096)
        end = data.find(b"\0")
        return os.fsdecode(data[:end]) if end >= 0 else None

    # -- what the mappings show ----------------------------------------------------------
    def _dropped(self, start: int, length: int, advice: int) -> list[Write]:
        """What madvise dropping the pages of [start, start + length) shows there: only
        file mappings matter (anonymous memory comes back as zeros in both runs), and
        of those the shared ones and those of files that changed since they were
        mapped (the others come back as the trace's copy shows them)."""
        if advice not in (_MADV_DONTNEED, _MADV_REMOVE, _MADV_DONTNEED_LOCKED):
            return []
        end = start + -(-length // PAGE_SIZE) * PAGE_SIZE
        out: list[Write] = []
        for m in parse_maps(self.tracee.read_maps()):
            lo, hi = max(start, m.start), min(end, m.end)
            if lo >= hi or not m.is_file:
                continue
            try:
                st = os.stat(f"/proc/{self.tracee.pid}/map_files/{m.start:x}-{m.end:x}")
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if advice == _MADV_REMOVE:  # a hole in the file: every mapping of it shows it
                self.written.add(key)
                offset = m.offset + (lo - m.start)
                out += self._read_views(st, [(offset, offset + hi - lo, False)])
            elif m.perms[3] == "s" or key in self.written:
                out.append((lo, self.tracee.read_partial(lo, hi - lo)))
        return out

    def _read_views(self, st: os.stat_result, ranges: list[tuple[int, int, bool]]) -> list[Write]:
        out: list[Write] = []
        pid = self.tracee.pid
        for m in parse_maps(self.tracee.read_maps()):
            if m.inode != st.st_ino or not m.is_file:
                continue
            try:
                if os.stat(f"/proc/{pid}/map_files/{m.start:x}-{m.end:x}").st_dev != st.st_dev:
                    continue
            except OSError:
                continue
            for start, end, past_the_end in ranges:
                lo, hi = max(start, m.offset), min(end, m.offset + m.size)
                if lo >= hi:
                    continue
                addr = m.start + (lo - m.offset)
                data = self.tracee.read_partial(addr, hi - lo)
                if past_the_end:  # unreadable now (SIGBUS): zeros in replay
                    data = data.ljust(hi - lo, b"\0")
                if data:
                    out.append((addr, data))
        return out
