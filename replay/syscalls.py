"""Syscall emulation: one recorded syscall replayed in its task.

Syscalls are emulated under PTRACE_SYSEMU: the kernel stops at each syscall
entry and skips the call; the number and arguments are checked against the
trace (a mismatch is a Divergence naming the event and both calls), the
recorded result goes into rax and the recorded output bytes into memory.
Calls whose effect lives in the task's own kernel state (the mmap family,
signal dispositions and masks, sigreturn, exit) are carried out for real, the
mmap family at the recorded addresses and from the trace's copies of files;
``brk`` is emulated with mmap/munmap, since the program break belongs to the
stub. An execve that succeeded is emulated (replay/exec.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
from collections.abc import Callable

from retrograde.trace.events import ExecEvent, MappingRecord, SyscallEvent
from retrograde.trace.format import TraceError, TraceReader, data_ranges
from retrograde.trace.output import (
    FROM_MEMORY,
    EchoedFds,
    file_offset,
    output_fd,
    written_from_memory,
)
from retrograde.tracee import page as rpage
from retrograde.tracee.maps import page_up, parse_maps
from retrograde.tracee.process import PTRACE_CONT, PTRACE_SYSCALL, Stop, TraceeError
from retrograde.tracee.registers import Registers, syscall_args
from retrograde.tracee.syscalls import (
    EXECUTED_IN_REPLAY,
    INTERRUPTED,
    MMAP_FAMILY,
    syscall_name,
    syscall_number,
)

from .address_space import AddressSpace, Mapping, prot_perms
from .errors import Divergence, TraceEnds
from .exec import emulate_exec, map_trace_file, perms_prot, trap_random_sites
from .task import TRAP_FLAG, Task

NR = {name: syscall_number(name) for name in (
    "mmap", "munmap", "mprotect", "mremap", "brk", "madvise", "openat", "close", "execve",
    "execveat", "exit", "exit_group", "rt_sigreturn", "shmat", "shmdt", "memfd_create",
    "ftruncate")}
NATIVE = {NR["rt_sigreturn"], NR["exit"], NR["exit_group"]}  # must run from the program's own pc
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_GROWSDOWN = 0x1, 0x2, 0x10, 0x20, 0x100
MAP_NORESERVE = 0x4000
MAP_KEPT_FLAGS = MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_NORESERVE | 0x8000 | 0x20000  # POPULATE STACK
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4


def format_call(nr: int, args: tuple[int, ...]) -> str:
    return f"{syscall_name(nr)}({', '.join(hex(a) for a in args)})"


class SyscallReplay:
    """Replays the syscalls of one session's tasks.

    ``ended(n, stop)`` is the session's: the process ended at a call run
    natively (exit, exit_group), and event ``n`` must say so. ``echo(n, event)``
    is the session's too: output is echoed once, however often a timeline goes
    over it (EchoFrontier).
    """

    def __init__(self, reader: TraceReader, random_sites: frozenset[int], check_maps: bool,
                 ended: Callable[[int, Stop], None],
                 echo: Callable[[int, SyscallEvent, Task], None]) -> None:
        self.reader = reader
        self.random_sites = random_sites
        self.check_maps = check_maps
        self.ended = ended
        self.echo = echo

    def _event(self, n: int) -> object:
        try:
            return self.reader[n]
        except IndexError:
            raise TraceEnds(n) from None

    def replay(self, task: Task, n: int, event: SyscallEvent, stop: Stop) -> int:
        """Replay one syscall from its entry stop; returns how many events it consumed."""
        regs = check_syscall(task, n, event, stop)
        t = task.tracee
        nr = event.nr
        if nr in (NR["execve"], NR["execveat"]) and event.result == 0:
            exec_event = self._event(n + 1)
            if not isinstance(exec_event, ExecEvent):
                raise Divergence(n + 1, "an execve without its exec event")
            emulate_exec(task, self.reader, n, exec_event, self.random_sites)
            self.check(task, n)
            return 2
        if nr in NATIVE:
            return self._run_natively(task, n, event, regs)
        if nr in MMAP_FAMILY:
            _space(task).mmap_calls += 1
        if nr in MMAP_FAMILY and event.result >= 0 or (nr == NR["brk"]):
            self._mmap_family(task, n, event)
            trap_random_sites(task, self.random_sites)
        elif nr in EXECUTED_IN_REPLAY:
            task.inject(nr, *event.args)
            regs = t.get_regs()  # the call may have moved fs_base (arch_prctl)
        self.echo(n, event, task)
        regs.rax = event.result & 0xFFFFFFFFFFFFFFFF
        # `syscall` saved the flags in r11, with the trap flag when the debugger
        # single-stepped it; the recorded program never ran with it set.
        regs.r11 &= ~TRAP_FLAG
        t.set_regs(regs)
        for addr, data in event.writes:
            write_output(task, addr, data)
        return 1

    def _run_natively(self, task: Task, n: int, event: SyscallEvent, regs: Registers) -> int:
        """Back up to the syscall instruction and let the kernel run it for real."""
        t = task.tracee
        regs.rip -= 2
        regs.rax = regs.orig_rax
        t.set_regs(regs)
        # The first stop is the exit of the emulated (skipped) call: the kernel
        # reports it because PTRACE_SYSCALL is now set; the instruction runs after it.
        stop = task.resume_until(PTRACE_SYSCALL)
        if stop.kind == "syscall":
            if event.nr == NR["rt_sigreturn"]:
                # Entry, then exit of the real call: the frame is restored only at
                # the exit, and a task left at the entry would lose the sigreturn
                # to the next injected syscall (a checkpoint's fork sets orig_rax).
                for _ in range(2):
                    stop = task.resume_until(PTRACE_SYSCALL)
                    if stop.kind != "syscall":
                        break
                else:
                    return 1
            else:
                stop = task.resume_until(PTRACE_CONT)
        if stop.kind in ("exited", "killed"):
            self.ended(n + 1, stop)
            return 2
        raise Divergence(n, f"{syscall_name(event.nr)} ended in {task.describe(stop)}")

    def check(self, task: Task, n: int) -> None:
        """With ``check_maps``, the model must be what the kernel shows."""
        if self.check_maps:
            assert task.space is not None
            problem = task.space.check(parse_maps(task.tracee.read_maps()))
            if problem:
                raise Divergence(n, f"address space differs: {problem}")

    def _mmap_family(self, task: Task, n: int, event: SyscallEvent) -> None:
        """Carry out an mmap-family call at its recorded addresses.

        Every mapping replay makes is private, whatever the recording had: the
        checkpoints are fork clones, and a MAP_SHARED page would be shared by a
        checkpoint and the clones run from it, so running one would change the
        other's past; a shared mapping of the trace's copy of a file would also
        write into the trace. What a shared mapping showed is reproduced instead:
        the program's own stores by execution, and what a syscall changed in the
        file behind it (write, truncate, ...) by the bytes the recorder read through
        the mapping after that call (trace/file_views.py), stored as its output.
        Two views of the same shared pages (a file mapped twice, mremap with
        old_size 0) are the exception: from the second one on, all views of that
        object are MAP_SHARED views of one memfd of the replay process, so that a
        store through one shows through the others; and every clone gets its own
        memfd with a copy of the pages (``rebacked``), so that a checkpoint never
        sees another clone's future.
        """
        nr, args, result = event.nr, event.args, event.result
        space = _space(task)
        if nr == NR["brk"]:
            _emulate_brk(task, n, result)
        elif nr == NR["mmap"]:
            flags = (args[3] & MAP_KEPT_FLAGS) | MAP_PRIVATE | MAP_FIXED
            if args[3] & MAP_SHARED:
                # A shared view's pages were the file's, never reserved against
                # overcommit; a private writable one would be, all at once (a 100 GiB
                # sparse file's view is refused with ENOMEM).
                flags |= MAP_NORESERVE
            record = event.mapping
            if record is not None and is_aliased(task, record.shared):
                got = self._map_shared_view(task, record, args[2])
            elif record is not None and record.file_hash:
                got = map_trace_file(task, self.reader, result, args[1], args[2], flags,
                                     record.file_hash, args[5])
            else:  # anonymous memory, or /dev/zero
                got = task.inject(NR["mmap"], result, args[1], args[2], flags | MAP_ANONYMOUS,
                                  -1, 0)
            space.map(record or MappingRecord(result, result + page_up(args[1]),
                                              prot_perms(args[2], bool(args[3] & MAP_SHARED)),
                                              0, ""))
            if got != result:
                raise Divergence(n, f"mmap at {result:#x} gave {got:#x} in replay")
        elif nr == NR["mremap"]:
            self._mremap(task, n, event)
        elif nr == NR["shmat"]:
            self._shmat(task, n, event)
        elif nr == NR["shmdt"]:
            for start, end in space.attached(args[0]):
                task.inject(NR["munmap"], start, end - start)
                space.unmap(start, end - start)
        else:
            got = task.inject(nr, *args)
            if got != result:
                raise Divergence(n, f"{format_call(nr, args)} returned {got} in replay, "
                                    f"{result} when recorded")
            if nr == NR["munmap"]:
                space.unmap(args[0], args[1])
            elif nr == NR["mprotect"]:
                space.protect(args[0], args[1], args[2])
        self.check(task, n)

    def _mremap(self, task: Task, n: int, event: SyscallEvent) -> None:
        space = _space(task)
        args, result = event.args, event.result
        old, old_size, new_size, flags = args[0], args[1], args[2], args[3]
        dontunmap = bool(flags & MREMAP_DONTUNMAP)
        record = event.mapping
        source = space.find(old)
        name = source.recorded.shared if source is not None else None
        if name is not None and (old_size == 0 or name in space.shared_objects):
            # A view of an object with several views, or a second one being made:
            # the kernel moves, grows or duplicates the memfd's view as it did the
            # original's.
            assert source is not None
            _ensure_backed(task, name, source.offset + old - source.start + new_size)
            moves = (flags & MREMAP_DONTUNMAP) | MREMAP_MAYMOVE | MREMAP_FIXED
            got = task.inject(NR["mremap"], old, old_size, new_size,
                              moves if result != old else 0, result)
            if got == result and record is not None and record.file_hash and old_size:
                # What the file holds past the old end, as the recorder copied it.
                self._write_trace_file(task, name, record.file_hash,
                                       record.offset + page_up(old_size),
                                       page_up(new_size) - page_up(old_size))
            record = None  # the model moves the view, which keeps its object and offset
        elif record is not None and record.file_hash:
            # A file mapping that grew, or a second view of shared pages: the recorder
            # copied what backs it now, up to its new end (the trace's copy the region
            # came from may end before that, and pages past it would raise SIGBUS).
            # Build it from that copy, then put back what the old pages showed (a
            # private mapping's own stores among them).
            kept = task.tracee.read_partial(old, page_up(old_size)) if old_size else b""
            got = map_trace_file(task, self.reader, result, new_size, perms_prot(record.perms),
                                 MAP_NORESERVE if record.perms.endswith("s") else 0,
                                 record.file_hash, record.offset)
            if got == result and result != old and old_size and not dontunmap:
                task.inject(NR["munmap"], old, old_size)
            if kept:
                task.tracee.write(result, kept)
        elif result == old:
            got = task.inject(NR["mremap"], old, old_size, new_size, 0, 0)
        else:
            got = task.inject(NR["mremap"], old, old_size, new_size,
                              (flags & MREMAP_DONTUNMAP) | MREMAP_MAYMOVE | MREMAP_FIXED, result)
        if got != result:
            raise Divergence(n, f"mremap to {result:#x} gave {got:#x} in replay")
        space.remap(old, old_size, result, new_size, dontunmap=dontunmap)
        if record is not None and record.file_hash:
            space.map(record)

    def _map_shared_view(self, task: Task, record: MappingRecord, prot: int) -> int:
        """Map another view of a shared object: a MAP_SHARED view of its memfd."""
        assert record.shared is not None
        length = record.end - record.start
        _ensure_backed(task, record.shared, record.offset + length)
        fd = _space(task).shared_objects[record.shared][0]
        got = task.inject(NR["mmap"], record.start, length, prot, MAP_SHARED | MAP_FIXED, fd,
                          record.offset)
        if got == record.start and record.file_hash:
            # The file as the recorder copied it at this mmap: what the other views of
            # it show where they overlap, and what this one adds elsewhere.
            self._write_trace_file(task, record.shared, record.file_hash, record.offset, length)
        return got

    def _write_trace_file(self, task: Task, name: str, digest: str, offset: int,
                          length: int) -> None:
        """Copy bytes [offset, offset + length) of the trace's copy ``digest`` into the
        memfd of shared object ``name`` at the same offset (the copy's data ranges:
        its holes are the zeros the memfd holds past what was written)."""
        with open(self.reader.file_path(digest), "rb") as f, \
                _object_file(task, _space(task).shared_objects[name][0]) as pages:
            size = os.fstat(f.fileno()).st_size
            for start, end in data_ranges(f.fileno(), min(size, offset + length)):
                start = max(start, offset)
                while start < end:
                    block = os.pread(f.fileno(), min(end - start, 1 << 20), start)
                    if not block:
                        break
                    os.pwrite(pages.fileno(), block, start)
                    start += len(block)

    def _shmat(self, task: Task, n: int, event: SyscallEvent) -> None:
        """A SysV segment, attached as a private mapping of its contents at attach time.

        The segment's id is the recording's and may name nothing (or another
        segment) now: replay never attaches, nor changes, a live host segment.
        """
        record = event.mapping
        if record is None or not record.file_hash:
            raise TraceError(f"event {n}: shmat without a copy of the segment (a trace from "
                             "an older retrograde, which replay cannot use without the live "
                             "segment)")
        if is_aliased(task, record.shared):
            got = self._map_shared_view(task, record, perms_prot(record.perms))
        else:
            got = map_trace_file(task, self.reader, record.start, record.end - record.start,
                                 perms_prot(record.perms), 0, record.file_hash, record.offset)
        if got != record.start:
            raise Divergence(n, f"shmat at {record.start:#x} gave {got:#x} in replay")
        _space(task).map(record)


# The calls that block with a temporary mask, and where it is: (pointer argument,
# size argument); pselect6's last argument points to {const sigset_t *ss; size_t ss_len}.
_MASK_ARGUMENTS = {syscall_number("rt_sigsuspend"): (0, 1), syscall_number("ppoll"): (3, 4),
                   syscall_number("epoll_pwait"): (4, 5), syscall_number("epoll_pwait2"): (4, 5)}
_PSELECT6 = syscall_number("pselect6")


def temporary_mask(task: Task, call: SyscallEvent) -> int | None:
    """The mask ``call`` blocked while it waited, if it was one that has one and a
    signal interrupted it (TEMPORARY_MASK in replay/task.py); read from the
    program's memory, which holds what it held at the call."""
    if call.result not in INTERRUPTED:  # the recorder keeps results signed
        return None
    t = task.tracee
    if call.nr == _PSELECT6:
        if not call.args[5]:
            return None
        pointer, size = struct.unpack("<QQ", t.read_partial(call.args[5], 16).ljust(16, b"\0"))
    elif call.nr in _MASK_ARGUMENTS:
        at, size_at = _MASK_ARGUMENTS[call.nr]
        pointer, size = call.args[at], call.args[size_at]
    else:
        return None
    if not pointer or size != 8:
        return None  # no temporary mask, or the kernel refused the call
    return int.from_bytes(t.read_partial(pointer, 8).ljust(8, b"\0"), "little")


def check_syscall(task: Task, n: int, event: SyscallEvent, stop: Stop) -> Registers:
    """The registers at the entry ``stop``; a Divergence unless it is the recorded call."""
    if stop.kind != "syscall":
        raise Divergence(n, f"recorded {format_call(event.nr, event.args)}, replay "
                            f"{task.describe(stop)}")
    regs = task.tracee.get_regs()
    nr, args = regs.orig_rax, syscall_args(regs)
    if nr != event.nr or args != tuple(event.args):
        raise Divergence(n, f"recorded {format_call(event.nr, event.args)}, replay "
                            f"{format_call(nr, args)}")
    return regs


def _space(task: Task) -> AddressSpace:
    if task.space is None:
        raise TraceeError("the replay has not been started")
    return task.space


def _emulate_brk(task: Task, n: int, result: int) -> None:
    """The program break is the stub's, not the program's: emulate it with mmap/munmap."""
    space = _space(task)
    old_end, new_end = page_up(space.brk), page_up(result)
    if new_end > old_end:
        got = task.inject(NR["mmap"], old_end, new_end - old_end, 3,
                          MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0)
        if got != old_end:
            raise Divergence(n, f"cannot grow the heap to {result:#x}")
        space.map(MappingRecord(old_end, new_end, "rw-p", 0, "[heap]"))
    elif new_end < old_end:
        task.inject(NR["munmap"], new_end, old_end - new_end)
        space.unmap(new_end, old_end - new_end)
    space.brk = result


# -- shared objects with several views ----------------------------------------------------
def is_aliased(task: Task, name: str | None) -> bool:
    """Whether a new view of shared object ``name`` is not its only one. An object
    whose views are all gone is forgotten: its memfd may hold pages that a later
    mapping of the same file must not show."""
    if name is None:
        return False
    if _views(task, name):
        return True
    gone = _space(task).shared_objects.pop(name, None)
    if gone is not None:
        task.inject(NR["close"], gone[0])
    return False


def _views(task: Task, name: str) -> list[Mapping]:
    return [m for m in _space(task).mappings if m.recorded.shared == name]


def _ensure_backed(task: Task, name: str, size: int) -> None:
    """A memfd backs the views of ``name`` and holds at least ``size`` bytes."""
    objects = _space(task).shared_objects
    known = objects.get(name)
    if known is None:
        back_shared_object(task, name, size)
    elif known[1] < size:
        task.inject(NR["ftruncate"], known[0], size)
        objects[name] = (known[0], size)


def back_shared_object(task: Task, name: str, size: int = 0) -> int:
    """Make one new memfd back every live view of shared object ``name`` (at least
    ``size`` bytes long), with the pages they show now; returns the memfd.

    Called for an object's second view, with the views it has, and for each
    clone, whose views the fork left shared with its parent's."""
    space = _space(task)
    t = task.tracee
    views = _views(task, name)
    kept = [(m, t.read_partial(m.start, m.end - m.start)) for m in views]
    scratch = space.page + rpage.SCRATCH_OFFSET
    t.write(scratch, b"retrograde-shared\0")
    fd = task.inject(NR["memfd_create"], scratch, 1)  # MFD_CLOEXEC
    if fd < 0:
        raise TraceeError(f"cannot make the pages of a shared mapping (error {-fd})")
    size = max([size] + [m.offset + m.end - m.start for m in views])
    task.inject(NR["ftruncate"], fd, size)
    with _object_file(task, fd) as pages:
        for m, data in kept:
            os.pwrite(pages.fileno(), data, m.offset)
    for m, _ in kept:
        got = task.inject(NR["mmap"], m.start, m.end - m.start, perms_prot(m.perms),
                          MAP_SHARED | MAP_FIXED, fd, m.offset)
        if got != m.start:
            raise TraceeError(f"cannot map a shared view at {m.start:#x} (error {-got})")
    old = space.shared_objects.get(name)
    if old is not None:
        task.inject(NR["close"], old[0])
    space.shared_objects[name] = (fd, size)
    return fd


def rebacked(task: Task) -> None:
    """In a fork clone, give every shared object with several views its own memfd:
    the fork left the clone's views shared with its parent's pages."""
    for name in list(_space(task).shared_objects):
        if is_aliased(task, name):
            back_shared_object(task, name)


def _object_file(task: Task, fd: int) -> io.FileIO:
    """The replay process's memfd ``fd``, opened by the replayer: stores go into it
    directly, read-only views or not (/proc/PID/mem refuses to write through a
    shared mapping without PROT_WRITE)."""
    return io.FileIO(f"/proc/{task.tid}/fd/{fd}", "r+")


def write_output(task: Task, addr: int, data: bytes) -> None:
    """Store a recorded output at ``addr``; in a view of a shared object, into its memfd."""
    t = task.tracee
    space = _space(task)
    if not space.shared_objects:
        t.write(addr, data)
        return
    while data:
        m = space.find(addr)
        end = min(addr + len(data), m.end) if m is not None else addr + len(data)
        known = space.shared_objects.get(m.recorded.shared or "") if m is not None else None
        if m is not None and known is not None:
            with _object_file(task, known[0]) as pages:
                os.pwrite(pages.fileno(), data[:end - addr], m.offset + addr - m.start)
        else:
            t.write(addr, data[:end - addr])
        data, addr = data[end - addr:], end


def echo_output(event: SyscallEvent, echoed: EchoedFds, echo: bool, task: Task) -> None:
    """Echo what the call wrote to the program's original stdout or stderr
    (trace/output.py), wherever the program moved them; ``echoed`` follows the
    fds either way."""
    nr, args, result = event.nr, event.args, event.result
    stream = echoed.stream(output_fd(nr, args))
    echoed.follow(nr, args, result)
    if not echo or result <= 0 or stream is None:
        return
    if event.echo is not None:
        data = event.echo
    elif nr in FROM_MEMORY:
        data = written_from_memory(nr, args, result, task.tracee.read_partial)
    else:
        return
    out = sys.stdout if stream == 1 else sys.stderr
    out.flush()
    fd = out.fileno()
    offset = file_offset(nr, args)
    if offset is not None:
        with contextlib.suppress(OSError):  # ESPIPE: not a file here
            os.pwrite(fd, data, offset)
            return
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
