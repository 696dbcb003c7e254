"""The events of a trace: frozen values, one per thing that happened.

A trace is a sequence of events; an event's number is its position. Every event
names the task (kernel thread id at recording time) it happened in, so traces of
several tasks interleave without a format change. Raw register blocks are kept
as the kernel's own bytes (``user_regs_struct``, the XSAVE area), so that the
replayer can hand them back with PTRACE_SETREGS/SETREGSET unchanged; see
``retrograde.tracee.registers`` for named access.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class MappingRecord:
    """One region of the address space as the kernel showed it during recording.

    ``file_hash`` names the trace's copy of the mapped file (files/<hash>);
    ``contents`` holds the bytes of the region when they cannot be rebuilt from
    the file alone (anonymous memory, stack, vDSO, a written data segment).
    ``shared`` names what a MAP_SHARED view shows (the file or shmem object, as
    "dev:inode"): views with the same name show the same pages.
    """

    start: int
    end: int
    perms: str  # as in /proc/PID/maps: "r-xp"
    offset: int
    name: str  # path, "[stack]", "[vdso]", "[heap]", "" for anonymous
    file_hash: str | None = None
    contents: bytes | None = None
    shared: str | None = None


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    task: int

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"k": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "mappings":
                value = [m.__dict__ for m in value]
            elif f.name == "mapping" and value is not None:
                value = value.__dict__
            out[f.name] = value
        return out

    @staticmethod
    def from_wire(data: dict[str, Any]) -> Event:
        data = dict(data)
        cls = EVENT_KINDS[data.pop("k")]
        if "mappings" in data:
            data["mappings"] = [MappingRecord(**m) for m in data["mappings"]]
        if data.get("mapping") is not None:
            data["mapping"] = MappingRecord(**data["mapping"])
        for name in ("args", "writes", "argv", "memory"):
            if name in data:
                data[name] = tuple(tuple(w) if isinstance(w, list) else w for w in data[name])
        return cls(**data)


@dataclass(frozen=True)
class ExecEvent(Event):
    """The address space and registers right after a successful execve."""

    kind: ClassVar[str] = "exec"
    path: str = ""
    argv: tuple[str, ...] = ()
    mappings: list[MappingRecord] = field(default_factory=list)
    regs: bytes = b""
    xstate: bytes = b""
    auxv: bytes = b""
    retrograde_page: int = 0
    brk: int = 0  # the program break right after exec (mm->start_brk)


@dataclass(frozen=True)
class SyscallEvent(Event):
    """A completed syscall: its arguments, raw result and the memory it wrote.

    ``result`` is rax at syscall exit before signal handling rewrites it (so
    -ERESTARTSYS and friends appear as such). ``writes`` are (address, bytes)
    pairs the kernel stored into the tracee. ``mmap_id`` is the number of
    mmap-family calls before this one (Lizard's id(X)); ``mapping`` describes
    the region an mmap-family call created, with the trace's copy of its file.
    ``echo`` holds the bytes a call moved to the program's stdout or stderr from
    another file inside the kernel (sendfile, splice, copy_file_range), which
    replay echoes (trace/output.py).
    """

    kind: ClassVar[str] = "syscall"
    nr: int = 0
    args: tuple[int, ...] = ()
    result: int = 0
    writes: tuple[tuple[int, bytes], ...] = ()
    mmap_id: int | None = None
    mapping: MappingRecord | None = None
    echo: bytes | None = None


@dataclass(frozen=True)
class SignalEvent(Event):
    """A signal delivered to the program.

    ``where`` says how replay finds the delivery point:
    - "sync": a fault the program's own instruction raises; it recurs by itself.
    - "boundary": asynchronous, delivered as the task returns to user mode right
      after the previous event.
    - "precise": asynchronous, delivered inside user code; ``regs``, ``xstate``
      and ``digest`` (of writable memory) identify the state it was delivered in,
      and ``memory`` holds that writable memory, so replay can also restore the
      state directly when running to it would take too long (a spinning loop).
    """

    kind: ClassVar[str] = "signal"
    signo: int = 0
    siginfo: bytes = b""
    where: str = "sync"
    regs: bytes | None = None
    xstate: bytes | None = None
    digest: bytes | None = None
    memory: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True)
class RdtscEvent(Event):
    """An rdtsc/rdtscp the recorder emulated (PR_TSC_SIGSEGV made it fault)."""

    kind: ClassVar[str] = "rdtsc"
    pc: int = 0
    value: int = 0
    aux: int | None = None  # TSC_AUX for rdtscp


@dataclass(frozen=True)
class RandomEvent(RdtscEvent):
    """An rdrand/rdseed the recorder emulated: a debug register stopped the task on it.

    An RdtscEvent in how replay reaches it (a fault stops the task just before the
    instruction: replay puts ud2 there), with the value and carry the CPU gave."""

    kind: ClassVar[str] = "random"
    mnemonic: str = "rdrand"
    carry: bool = True


@dataclass(frozen=True)
class ExitEvent(Event):
    """The task ended: exit status, or the signal that killed it."""

    kind: ClassVar[str] = "exit"
    status: int | None = None
    signo: int | None = None


@dataclass(frozen=True)
class CloneEvent(Event):
    """A task was created: ``task`` is the new one (its kernel tid), ``parent`` the
    task whose clone, clone3, fork or vfork made it, ``process`` its thread group id
    (the parent's for CLONE_THREAD, its own otherwise) and ``flags`` the clone flags
    (fork: SIGCHLD; vfork: CLONE_VM | CLONE_VFORK | SIGCHLD).

    It comes right after the parent's SyscallEvent for the call, whose result is the
    new tid and whose ``writes`` are what the kernel stored in the parent's memory.
    ``writes`` here are what it stored in the child's at creation (CLONE_CHILD_SETTID).
    """

    kind: ClassVar[str] = "clone"
    parent: int = 0
    process: int = 0
    flags: int = 0
    writes: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True)
class SyscallEntryEvent(Event):
    """The task entered a syscall that blocked (or may block), and other tasks ran
    while it waited: it is parked at the entry of call ``nr`` with ``args`` until
    its SyscallEvent, later in the trace, completes it. ``writes`` are what the
    kernel stored into the program's memory as the call blocked, before any other
    task ran (FUTEX_LOCK_PI marks the lock word as having waiters)."""

    kind: ClassVar[str] = "syscall-entry"
    nr: int = 0
    args: tuple[int, ...] = ()
    writes: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True)
class PreemptEvent(Event):
    """The recorder stopped the task in user code at the end of its time slice and
    let another run. ``regs``, ``xstate`` and ``digest`` (of writable memory) name
    the state it was stopped in, as on a precise SignalEvent: replay reaches it by
    execution (replay/precise.py)."""

    kind: ClassVar[str] = "preempt"
    regs: bytes = b""
    xstate: bytes = b""
    digest: bytes = b""


EVENT_KINDS: dict[str, type[Event]] = {
    cls.kind: cls for cls in (ExecEvent, SyscallEvent, SignalEvent, RdtscEvent, RandomEvent,
                               ExitEvent, CloneEvent, SyscallEntryEvent, PreemptEvent)
}
