"""Counting arrivals at an address, or accesses to a range, in the kernel: perf
hardware-breakpoint events.

A ptrace stop per breakpoint arrival costs 50-90 µs here; a perf event of type
PERF_TYPE_BREAKPOINT (perf_event_open(2)) counts the same arrivals on a debug
register inside the kernel's debug-exception handler, about 9 µs each in this
VM, without stopping the task. It needs no performance-monitoring unit: the
counter is the hw_breakpoint layer over DR0-DR3, the same registers ptrace's
POKEUSER debug registers use (so both together share four slots).

With ``stop_at`` the event's sample period is that count and ``sigtrap`` is set
(Linux 5.13): on the arrival that completes the period the kernel sends the task
a synchronous SIGTRAP (si_code TRAP_PERF) before the instruction executes, which
a tracer sees as a signal-delivery stop at exactly that arrival. The resume flag
is set in that state, as for any debug-register stop.

The same counters take write (HW_BREAKPOINT_W) and read/write (HW_BREAKPOINT_RW;
x86 has no read-only data breakpoint) ranges of 1, 2, 4 or 8 aligned bytes: a
data breakpoint is a trap, so a count stops the task just after the
instruction that made the n-th access, the place a watchpoint reports.

The events are per task and not inherited, so a fork clone of a counted process
starts uncounted; closing the counter removes the breakpoint.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass
from typing import Self

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_ulong]

NR_PERF_EVENT_OPEN = 298
PERF_TYPE_BREAKPOINT = 5
HW_BREAKPOINT_W, HW_BREAKPOINT_RW, HW_BREAKPOINT_X = 2, 3, 4
PERF_FLAG_FD_CLOEXEC = 8
ATTR_SIZE = 136  # PERF_ATTR_SIZE_VER8
# perf_event_attr flag bits (include/uapi/linux/perf_event.h)
EXCLUDE_KERNEL, EXCLUDE_HV, REMOVE_ON_EXEC, SIGTRAP = 1 << 5, 1 << 6, 1 << 36, 1 << 37


class PerfUnavailable(OSError):
    """The kernel refused the counter (no hw_breakpoint support, no free slot, or
    perf_event_paranoid): callers fall back to a ptrace stop per arrival."""


@dataclass(frozen=True)
class Place:
    """What a counter counts: executions of the instruction at ``addr``
    (HW_BREAKPOINT_X), or writes (or reads and writes) of ``length`` bytes there."""

    addr: int
    access: int = HW_BREAKPOINT_X
    length: int = 8

    @property
    def executes(self) -> bool:
        return self.access == HW_BREAKPOINT_X


class ArrivalCounter:
    """Counts a task's executions of the instruction at ``addr`` (arrivals: the
    count grows as the pc reaches ``addr``, before the instruction runs; a task
    resumed at ``addr`` without the resume flag counts that one too), or with
    ``access`` W or RW, the instructions that access ``length`` bytes at ``addr``
    (counted as each completes)."""

    def __init__(self, pid: int, addr: int, *, stop_at: int = 0,
                 access: int = HW_BREAKPOINT_X, length: int = 8) -> None:
        attr = bytearray(ATTR_SIZE)
        struct.pack_into("IIQQ", attr, 0, PERF_TYPE_BREAKPOINT, ATTR_SIZE, 0, stop_at)
        flags = EXCLUDE_KERNEL | EXCLUDE_HV
        if stop_at:
            flags |= SIGTRAP | REMOVE_ON_EXEC  # the kernel requires both together
        struct.pack_into("Q", attr, 40, flags)
        struct.pack_into("II", attr, 48, 1 if stop_at else 0, access)
        # An execution breakpoint's length must be sizeof(long) (the kernel's rule).
        struct.pack_into("QQ", attr, 56, addr,
                         ctypes.sizeof(ctypes.c_long) if access == HW_BREAKPOINT_X else length)
        buf = ctypes.create_string_buffer(bytes(attr), ATTR_SIZE)
        fd = _libc.syscall(NR_PERF_EVENT_OPEN, buf, pid, -1, -1, PERF_FLAG_FD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise PerfUnavailable(err, f"perf breakpoint at {addr:#x}: {os.strerror(err)}")
        self.fd: int | None = fd
        self.addr = addr
        self.place = Place(addr, access, length)

    @property
    def count(self) -> int:
        assert self.fd is not None
        return int(struct.unpack("Q", os.read(self.fd, 8))[0])

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def counter_for(pid: int, place: Place, stop_at: int = 0) -> ArrivalCounter:
    return ArrivalCounter(pid, place.addr, stop_at=stop_at, access=place.access,
                          length=place.length)
