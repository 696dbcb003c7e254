"""Human-readable events, for `retrograde dump TRACE [RANGE]`.

One line per event: its number, the task, the kind, then what happened, e.g.::

            17  [4242] syscall  read(3, 0x7ffc3e10, 832) = 832  wrote 832 bytes at 0x7ffc3e10
            18  [4242] syscall  mmap(0, 8192, 3, 34, -1, 0) = 0x7f3a1000  mmap#4 7f3a1000-7f3a3000 rw-p
            19  [4242] signal   SIGALRM at the syscall boundary
            20  [4242] exit     status 0

Integers that look like addresses (at least 0x10000) are hex, others decimal;
syscall arguments and results are the raw 64-bit registers, shown signed
(fd -1, AT_FDCWD -100). With verbose=True an exec also lists its mappings and a
syscall each of its writes, one per line.
"""

from __future__ import annotations

import errno
import functools
import signal
from collections.abc import Callable

from retrograde.trace.events import (
    Event,
    ExecEvent,
    ExitEvent,
    MappingRecord,
    RandomEvent,
    RdtscEvent,
    SignalEvent,
    SyscallEvent,
)

# Kernel-internal errnos (include/linux/errno.h) that a syscall can return to a
# tracer at syscall exit before signal handling restarts it; errno.errorcode
# does not know them.
_KERNEL_ERRNOS = {512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND",
                  515: "ENOIOCTLCMD", 516: "ERESTART_RESTARTBLOCK"}
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


def _describe(event: Event, verbose: bool) -> list[str]:
    """The text after the kind column, and any further lines."""
    if isinstance(event, SyscallEvent):
        args = ", ".join(_number(a) for a in event.args)
        text = f"{_syscall_name(event.nr)}({args}) = {_result(event.result)}"
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
    if isinstance(event, ExitEvent):
        if event.signo is not None:
            return [f"killed by {signal_name(event.signo)}"]
        return [f"status {event.status}"]
    return [repr(event)]


def format_event(n: int, event: Event, *, verbose: bool = False) -> str:
    """Event number n as one line (more with verbose=True, each indented)."""
    first, *more = _describe(event, verbose)
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
