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
is set in that state, as for any debug-register stop. The trap's si_perf_data
is the counter's ``token`` (the event's sig_data), unique in the tracer, so a
trap names the counter it came from (``perf_trap_token``).

The same counters take write (HW_BREAKPOINT_W) and read/write (HW_BREAKPOINT_RW;
x86 has no read-only data breakpoint) ranges of 1, 2, 4 or 8 aligned bytes: a
data breakpoint is a trap, so a count stops the task just after the
instruction that made the n-th access, the place a watchpoint reports.

The events are per task and not inherited, so a fork clone of a counted process
starts uncounted; closing the counter removes the breakpoint.

``ArrivalSampler`` is the same execution breakpoint with a sample period of 1
and PERF_SAMPLE_REGS_USER (plus PERF_SAMPLE_STACK_USER: bytes at the user
stack pointer): every arrival leaves the task's general registers in a ring
buffer shared with the tracer, again without a stop. Here an arrival costs
about 10.7 µs sampled against 10.0 µs counted (11.1 µs with 256 bytes of
stack). The ring does not overwrite: records that find it full are lost, so
the tracer must stop the task (a counter with ``stop_at``) before it fills.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from .registers import Registers

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
PERF_SAMPLE_REGS_USER, PERF_SAMPLE_STACK_USER = 1 << 12, 1 << 13
PERF_RECORD_SAMPLE = 9
PERF_SAMPLE_REGS_ABI_64 = 2
# The sampled registers in the order of arch/x86/include/uapi/asm/perf_regs.h
# (a sample lists them by increasing bit). Bits 12-15 (ds, es, fs, gs) are
# refused for 64-bit tasks; their values never change in user code anyway.
SAMPLED_REGISTERS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "eflags",
                     "cs", "ss", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
SAMPLED_REGISTER_MASK = 0xFF0FFF
RESUME_FLAG = 0x10000  # EFLAGS.RF: set by the breakpoint handler after the sample is taken
# struct perf_event_mmap_page: data_head, data_tail, data_offset, data_size
MMAP_DATA_HEAD = 1024
SIG_DATA_OFFSET = 120  # perf_event_attr.sig_data: si_perf_data of the event's SIGTRAP
TRAP_PERF = 6  # si_code of a perf event's SIGTRAP
_tokens = itertools.count(1)


def perf_trap_token(siginfo: bytes) -> int | None:
    """The token of the counter whose SIGTRAP ``siginfo`` is (si_perf_data, which
    the kernel copies from the event's sig_data), or None for another trap."""
    if int.from_bytes(siginfo[8:12], "little", signed=True) != TRAP_PERF:
        return None
    return int.from_bytes(siginfo[24:32], "little")


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


PERF_TYPE_SOFTWARE, PERF_COUNT_SW_DUMMY = 1, 9
_hooks_held: list[int] = []


def hold_scheduling_hooks() -> None:
    """Keep the kernel's perf hooks on context switches enabled while this process
    lives, so that opening a counter stays cheap.

    The kernel turns those hooks on through a static key, patched into its text
    when the first task-bound perf event of the system opens and patched out
    about a second after the last one closes. Here that patching made the open
    that turns them on cost 7-20 ms instead of 0.2 ms, paid by every reverse
    search that started after a second with no counter open (that is, nearly
    every first hop a debugger asks for). A dummy software event on this
    process, held for its life, keeps them on: it counts nothing, takes no debug
    register, and is not inherited. Without perf, nothing is held."""
    if _hooks_held:
        return
    attr = bytearray(ATTR_SIZE)
    struct.pack_into("IIQ", attr, 0, PERF_TYPE_SOFTWARE, ATTR_SIZE, PERF_COUNT_SW_DUMMY)
    struct.pack_into("Q", attr, 40, EXCLUDE_KERNEL | EXCLUDE_HV)
    try:
        _hooks_held.append(_open_event(attr, 0, "perf dummy event"))
    except PerfUnavailable:
        pass


def _open_event(attr: bytearray, pid: int, what: str) -> int:
    """perf_event_open of ``attr`` on task ``pid`` (any CPU): the event's fd."""
    buf = ctypes.create_string_buffer(bytes(attr), ATTR_SIZE)
    fd = _libc.syscall(NR_PERF_EVENT_OPEN, buf, pid, -1, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise PerfUnavailable(err, f"{what}: {os.strerror(err)}")
    return int(fd)


class _Event:
    """An open perf event; closing it removes its breakpoint."""

    fd: int | None
    token = 0
    on_close: Callable[[int], None] | None = None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            if self.on_close is not None:
                self.on_close(self.token)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArrivalCounter(_Event):
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
        self.token = next(_tokens) if stop_at else 0
        struct.pack_into("Q", attr, SIG_DATA_OFFSET, self.token)
        self.fd = _open_event(attr, pid, f"perf breakpoint at {addr:#x}")
        self.addr = addr
        self.place = Place(addr, access, length)

    @property
    def count(self) -> int:
        assert self.fd is not None
        return int(struct.unpack("Q", os.read(self.fd, 8))[0])


def counter_for(pid: int, place: Place, stop_at: int = 0) -> ArrivalCounter:
    return ArrivalCounter(pid, place.addr, stop_at=stop_at, access=place.access,
                          length=place.length)


class ArrivalSampler(_Event):
    """Samples a task's general registers (and ``stack`` bytes at its stack
    pointer) at every arrival at ``addr``, into a ring of ``pages`` pages.

    Records all have one size, one per arrival in order, so the n-th record of
    a ``drain`` is the n-th arrival since the previous one. ``find`` looks for
    a given state among them without decoding each.
    """

    def __init__(self, pid: int, addr: int, *, stack: int = 0, pages: int = 512) -> None:
        attr = bytearray(ATTR_SIZE)
        sample_type = PERF_SAMPLE_REGS_USER | (PERF_SAMPLE_STACK_USER if stack else 0)
        struct.pack_into("IIQQQ", attr, 0, PERF_TYPE_BREAKPOINT, ATTR_SIZE, 0, 1, sample_type)
        struct.pack_into("Q", attr, 40, EXCLUDE_KERNEL | EXCLUDE_HV)
        struct.pack_into("II", attr, 48, 0, HW_BREAKPOINT_X)
        struct.pack_into("QQ", attr, 56, addr, ctypes.sizeof(ctypes.c_long))
        struct.pack_into("QI", attr, 80, SAMPLED_REGISTER_MASK, stack)
        self.fd = fd = _open_event(attr, pid, f"perf sampler at {addr:#x}")
        try:
            # The ring's data area must be a power of two pages, after one header page;
            # its locked memory counts against perf_event_mlock_kb and RLIMIT_MEMLOCK.
            self.ring = mmap.mmap(fd, (1 + pages) * mmap.PAGESIZE)
        except OSError as error:
            self.close()
            raise PerfUnavailable(error.errno, f"perf sampler ring: {error.strerror}") from None
        self.addr = addr
        self.stack = stack
        _, _, self.data_offset, self.data_size = struct.unpack_from("QQQQ", self.ring,
                                                                    MMAP_DATA_HEAD)
        # header, abi, registers; then size, the stack bytes, dyn_size
        self.record_size = 8 + 8 + 8 * len(SAMPLED_REGISTERS) + (16 + stack if stack else 0)
        self.capacity = self.data_size // self.record_size  # arrivals the ring holds
        self.tail = 0

    def drain(self) -> bytes:
        """The records since the last drain, which frees their room. The task
        must be stopped: its records are then complete."""
        head = struct.unpack_from("Q", self.ring, MMAP_DATA_HEAD)[0]
        size, start = self.data_size, self.data_offset
        begin, end = self.tail % size, head % size
        if head - self.tail >= size:
            raise PerfUnavailable(0, "perf sampler ring overflowed")
        if begin <= end:
            records = self.ring[start + begin:start + end]
        else:
            records = self.ring[start + begin:start + size] + self.ring[start:start + end]
        self.tail = head
        struct.pack_into("Q", self.ring, MMAP_DATA_HEAD + 8, head)
        return records

    def key(self, regs: Registers, stack: bytes = b"") -> bytes:
        """The bytes a record of an arrival in state ``regs`` (and ``stack`` at its
        stack pointer: ``self.stack`` bytes, or the first of them) holds after its
        header."""
        values = [getattr(regs, name) for name in SAMPLED_REGISTERS]
        values[SAMPLED_REGISTERS.index("eflags")] &= ~RESUME_FLAG
        key = struct.pack(f"{1 + len(values)}Q", PERF_SAMPLE_REGS_ABI_64, *values)
        if self.stack:
            assert len(stack) <= self.stack
            key += struct.pack("Q", self.stack) + stack
            if len(stack) == self.stack:
                key += struct.pack("Q", self.stack)
        return key

    def find(self, records: bytes, key: bytes) -> tuple[int, list[int]]:
        """(arrivals in ``records``, the 1-based numbers of those whose record holds ``key``)."""
        size = self.record_size
        count = len(records) // size
        self._check(records)
        found = []
        at = records.find(key, 8)
        while at >= 0:
            if at % size == 8:
                found.append(at // size + 1)
            at = records.find(key, at + 1)
        return count, found

    def samples(self, records: bytes) -> list[tuple[tuple[int, ...], bytes]]:
        """Each arrival in ``records`` (a drain) as (its registers in
        SAMPLED_REGISTERS order, the stack bytes sampled at its stack pointer)."""
        size = self.record_size
        self._check(records)
        registers = struct.Struct(f"{len(SAMPLED_REGISTERS)}Q")
        stack_at = 16 + registers.size + 8
        found = []
        for at in range(0, len(records), size):
            values = registers.unpack_from(records, at + 16)
            stack = b""
            if self.stack:
                copied = struct.unpack_from("Q", records, at + size - 8)[0]
                stack = records[at + stack_at:at + stack_at + min(copied, self.stack)]
            found.append((values, stack))
        return found

    def _check(self, records: bytes) -> None:
        size = self.record_size
        count = len(records) // size
        # Any other record (PERF_RECORD_LOST, ...) would break the one-size order.
        if len(records) % size or records[0::size].count(PERF_RECORD_SAMPLE) != count or \
                records[6::size].count(size & 0xFF) != count:
            raise PerfUnavailable(0, "perf sampler: unexpected records in the ring")

    def close(self) -> None:
        if getattr(self, "ring", None) is not None:
            self.ring.close()
            self.ring = None  # type: ignore[assignment]
        super().close()
