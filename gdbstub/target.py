"""What the RSP server needs from the thing it debugs (the replay engine implements it).

Numbers here are Linux's: signal numbers are Linux x86-64 ones (the server
translates gdb's own numbering), addresses and lengths are plain ints, register
blocks are the kernel's raw layouts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .agent import Condition


@dataclass(frozen=True)
class Stop:
    """Why a resume ended, in the terms of a gdb stop reply.

    reason is one of "signal", "breakpoint", "watchpoint", "step", "exited",
    "terminated", "history-begin", "history-end", "interrupted". For
    "breakpoint" the pc is the breakpoint's address (the target has already
    undone the int3's advance: that is what gdb assumes of `swbreak`/`hwbreak`).
    """

    reason: str
    signo: int = 5  # SIGTRAP for breakpoint/step/watch/history-*; the signal for "terminated"
    thread: int = 0  # the thread it happened in; 0: the target's tid
    watch_kind: str | None = None  # "watch" | "rwatch" | "awatch"
    watch_addr: int | None = None
    exit_status: int | None = None  # for "exited"
    hw: bool = False  # a hardware breakpoint (hwbreak:) rather than swbreak:
    console: str = ""  # lines for the debugger's console, sent before the stop reply


@dataclass(frozen=True)
class MemoryRegion:
    """One mapping of the program, as /proc/PID/maps showed it when recorded."""

    start: int
    end: int
    perms: str  # "r-xp"
    name: str = ""  # the file's path, "[stack]", ...; empty for anonymous memory


@dataclass(frozen=True)
class Thread:
    """One thread of the program, as `info threads` lists it."""

    tid: int
    name: str = ""  # its comm ("" when unknown)


class DebugTarget(Protocol):
    """A stopped program that gdb can inspect and move through time.

    Threading: `serve` calls every method but `interrupt` from the one thread
    that called `serve`, one call at a time, because ptrace(2) takes requests
    for a tracee only from its tracer thread. `interrupt` comes from the
    server's I/O thread while `resume` runs, so it must not use ptrace itself
    (set a flag, signal the tracee).
    """

    pid: int
    tid: int
    # Where the target says what a long move is doing while it runs (lines ending
    # in a newline), from any thread: `serve` points it at the debugger's console.
    # Only what is said during `resume` or `monitor` is shown; the rest is dropped.
    console: Callable[[str], None]

    def threads(self) -> list[Thread]:
        """The threads alive now, the process's first (``tid``) first while it lives;
        empty once the program has ended. Their memory is one address space."""
        ...

    def registers(self, thread: int = 0) -> tuple[bytes, bytes]:
        """(user_regs_struct, the XSAVE area from PTRACE_GETREGSET NT_X86_XSTATE) of
        ``thread`` (0: the one the last stop was in)."""
        ...

    def read_memory(self, addr: int, length: int) -> bytes:
        """The recorded memory; may be short; OSError when nothing at addr is readable."""
        ...

    def resume(self, step: bool, reverse: bool, signal: int = 0, thread: int = 0,
               others: bool = True) -> Stop:
        """Run (or step) forwards or backwards until something stops the program.

        A step is one instruction of ``thread`` (0: the present thread's), the
        other threads running their recorded slices in between, either way; the
        Stop names the thread it happened in (the stepped one, for a step).
        ``others`` False: the debugger resumed ``thread`` alone (scheduler-locking),
        so it expects no stop in another thread; theirs are passed over."""
        ...

    def interrupt(self) -> None:
        """Make a running `resume` return Stop("interrupted", signo=2) soon.

        The server forwards gdb's interrupt only while a packet (in practice the
        resume it interrupts) is queued or being handled, so it may come just
        before that `resume` starts, and should then stop it at once."""
        ...

    def insert_breakpoint(self, kind: int, addr: int, length: int,
                          condition: Condition | None = None) -> bool:
        """kind as in Z packets: 0 sw, 1 hw, 2 write, 3 read, 4 access watchpoint.
        False: not supported, or no room. With a ``condition`` (gdb's, for kinds
        0 and 1), an arrival where it does not hold is not a stop, whichever way
        the program runs; inserting an inserted breakpoint again replaces it."""
        ...

    def remove_breakpoint(self, kind: int, addr: int, length: int) -> bool: ...

    def auxv(self) -> bytes: ...

    def exec_file(self) -> str: ...

    def libraries_svr4(self) -> str:
        """The qXfer:libraries-svr4 XML document (<library-list-svr4 ...>)."""
        ...

    def siginfo(self) -> bytes:
        """The 128-byte siginfo_t of the last signal."""
        ...

    def memory_regions(self) -> list[MemoryRegion]:
        """The program's mappings, sorted by address and not overlapping."""
        ...

    def r_debug_slot(self) -> int | None:
        """Where the dynamic loader stores the address of its r_debug (the value of
        DT_DEBUG in the executable's dynamic section); None for a static program."""
        ...

    def open_file(self, path: str) -> bytes | None:
        """The contents gdb should see for `path` (the trace's copy); None: ENOENT."""
        ...

    def monitor(self, command: str) -> str:
        """Run a `monitor` command; its output. ValueError for an unknown command."""
        ...

    def kill(self) -> None: ...

    def pass_signals(self, signals: set[int]) -> None:
        """Signals gdb does not want to stop for (QPassSignals), as Linux numbers."""
        ...
