"""Exec emulation (seed 001): the program image of a replayed process.

Every exec, the first included, is emulated: the task execs the replay's own
stub (a static ELF whose only segment is the retrograde page, replay/stub.py),
unmaps everything but that page, maps every recorded mapping again (files from
the trace's copies, at their recorded addresses), writes the recorded contents
(stack, auxv, patched vDSO) and sets the recorded registers. The recorded
executable need not exist, and ASLR need not be disabled.

The recorded rdrand/rdseed sites get ud2 here too, wherever code is mapped
(``trap_random_sites``): the image is where they live.
"""

from __future__ import annotations

import os

from retrograde.trace.events import ExecEvent, MappingRecord
from retrograde.trace.format import TraceError, TraceReader
from retrograde.tracee import page as rpage
from retrograde.tracee.cpu import decode_random, find_random_instructions, has_random_instructions
from retrograde.tracee.maps import parse_maps
from retrograde.tracee.process import PTRACE_SYSCALL, TraceeError
from retrograde.tracee.registers import registers_from_bytes
from retrograde.tracee.syscalls import syscall_number

from .address_space import AddressSpace
from .errors import Divergence
from .stub import write_stub
from .task import Task

NR_MMAP, NR_MUNMAP, NR_OPENAT, NR_CLOSE, NR_EXECVE = (
    syscall_number(name) for name in ("mmap", "munmap", "openat", "close", "execve"))
MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_GROWSDOWN = 0x2, 0x10, 0x20, 0x100
AT_FDCWD = -100
UD2 = b"\x0f\x0b"  # faults with SIGILL: the trap on a recorded rdrand/rdseed


def perms_prot(perms: str) -> int:
    """The PROT_* bits of a /proc/PID/maps permission string."""
    return sum(bit for c, bit in (("r", 1), ("w", 2), ("x", 4)) if c in perms[:3])


def emulate_exec(task: Task, reader: TraceReader, n: int, event: ExecEvent,
                 random_sites: frozenset[int]) -> None:
    """Exec the stub for the new image's retrograde page, then rebuild the image."""
    assert task.space is not None
    t = task.tracee
    stub = str(write_stub(event.retrograde_page)).encode() + b"\0"
    scratch = task.space.page + rpage.SCRATCH_OFFSET
    argv_at = scratch + ((len(stub) + 7) & ~7)
    t.write(scratch, stub)
    t.write(argv_at, scratch.to_bytes(8, "little") + bytes(16))
    result = task.inject(NR_EXECVE, scratch, argv_at, argv_at + 8)
    if t.last_stop.kind != "event":
        raise Divergence(n, f"the replay stub could not be executed (error {-result})")
    t.reopen_memory()
    finish_stub_exec(task, reader, event, random_sites)


def finish_stub_exec(task: Task, reader: TraceReader, event: ExecEvent,
                     random_sites: frozenset[int]) -> None:
    """At the stub's PTRACE_EVENT_EXEC stop: rebuild the recorded address space.
    The exec closed the memfds of shared objects (MFD_CLOEXEC) and left no trap
    on the code, so the new space starts without either."""
    t = task.tracee
    stop = task.resume_until(PTRACE_SYSCALL)  # to execve's exit stop, where injecting is allowed
    if stop.kind != "syscall":
        raise TraceeError(f"the replay stub did not start ({stop})")
    space = task.space = AddressSpace(list(event.mappings), page=event.retrograde_page,
                                      brk=event.brk)
    # An exec names its thread after the file, as the kernel's comm (TASK_COMM_LEN 16).
    task.name = os.path.basename(event.path)[:15]
    for m in parse_maps(t.read_maps()):
        if m.start != space.page and m.name != "[vsyscall]":
            task.inject(NR_MUNMAP, m.start, m.size)
    for record in event.mappings:
        if record.name == rpage.NAME:
            continue
        _rebuild_mapping(task, reader, record)
    t.set_regs(registers_from_bytes(event.regs))
    t.set_xstate(event.xstate)
    trap_random_sites(task, random_sites)


def _rebuild_mapping(task: Task, reader: TraceReader, record: MappingRecord) -> None:
    prot = perms_prot(record.perms)
    size = record.end - record.start
    flags = MAP_PRIVATE | MAP_FIXED
    if record.file_hash:
        got = map_trace_file(task, reader, record.start, size, prot, flags, record.file_hash,
                             record.offset)
    else:
        if record.name == "[stack]":
            flags |= MAP_GROWSDOWN
        got = task.inject(NR_MMAP, record.start, size, prot, flags | MAP_ANONYMOUS, -1, 0)
    if got != record.start:
        raise TraceeError(f"cannot rebuild mapping {record.start:#x}-{record.end:#x} "
                          f"{record.name} (error {-got})")
    if record.contents:
        task.tracee.write(record.start, record.contents)


def open_trace_file(task: Task, reader: TraceReader, digest: str) -> int:
    """Open the trace's copy ``digest`` in the task's process; returns the fd."""
    assert task.space is not None
    path = str(reader.file_path(digest)).encode() + b"\0"
    if len(path) > rpage.SCRATCH_SIZE:
        raise TraceError(f"trace path too long to open in the replay process: {path!r}")
    scratch = task.space.page + rpage.SCRATCH_OFFSET
    task.tracee.write(scratch, path)
    fd = task.inject(NR_OPENAT, AT_FDCWD, scratch, os.O_RDONLY | os.O_CLOEXEC, 0)
    if fd < 0:
        raise TraceError(f"cannot open {path.decode()[:-1]} in the replay process "
                         f"(errno {-fd})")
    return fd


def map_trace_file(task: Task, reader: TraceReader, addr: int, length: int, prot: int,
                   flags: int, digest: str, offset: int) -> int:
    """mmap the trace's copy ``digest`` privately at ``addr`` (MAP_FIXED)."""
    fd = open_trace_file(task, reader, digest)
    got = task.inject(NR_MMAP, addr, length, prot, flags | MAP_PRIVATE | MAP_FIXED, fd, offset)
    task.inject(NR_CLOSE, fd)
    return got


def trap_random_sites(task: Task, random_sites: frozenset[int]) -> None:
    """Put ud2 on every rdrand/rdseed the recording emulated, where it is mapped now.

    The recording stopped on each execution of these (debug registers), so here
    each execution must stop too, as a fault before the instruction, the way
    rdtsc faults in both runs: then the event is reached by ordinary running,
    single steps and arrival counts alike. Sites whose bytes are not (or no
    longer) the instruction are left alone.
    """
    if not random_sites:
        return
    assert task.space is not None
    traps = task.space.random_traps
    t = task.tracee
    for pc in random_sites:
        code = t.read_partial(pc, 15)
        if pc in traps and code[:2] == UD2:
            continue
        insn = decode_random(code)
        if insn is not None:
            t.write(pc, UD2)
            traps[pc] = (insn, code[:len(UD2)])


def random_instructions_note(task: Task | None) -> str | None:
    """Where the program's code has rdrand or rdseed the recording did not
    watch, to name in a divergence (the watched ones carry ud2 here).

    Their results are in no trace (this CPU cannot fault them), so a replay
    that executed one got another value than the recording did.
    """
    if task is None or not task.tracee.alive or task.space is None \
            or not has_random_instructions():
        return None
    t = task.tracee
    found = []
    for m in task.space.mappings:
        if "x" not in m.perms or m.kind in ("vdso", "vvar", "retrograde"):
            continue
        code = t.read_partial(m.start, m.end - m.start)
        for addr, name in find_random_instructions(code, m.start):
            where = ""
            if m.recorded.name:
                offset = m.recorded.offset + addr - m.recorded.start
                where = f" ({os.path.basename(m.recorded.name)}+{offset:#x})"
            found.append(f"{name} at pc {addr:#x}{where}")
    if not found:
        return None
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return (f"the program's code has {', '.join(found[:3])}{more}, which ran "
            "unrecorded (without CPUID faulting only four rdrand/rdseed sites can be "
            "watched): the replay may have got other values")
