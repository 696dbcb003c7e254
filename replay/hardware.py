"""The debug hardware of a replayed task: debug registers DR0-DR7 and the perf
hardware-breakpoint counters over them (tracee/perf.py).

Both use the same four slots of the CPU, so one object per task owns them: the
timeline says which watchpoints are armed, the task's run modes ask for an
execution breakpoint or a counter, and nothing else writes a debug register or
opens a counter. Invariant: between runs DR7 holds exactly the armed
watchpoints (none in a checkpoint) and DR6 is clear once a trigger is taken.

PERF_TRAP: every counter that stops its task carries a token of its own, which
the kernel puts in its SIGTRAP's siginfo (si_perf_data); the task's one resume
loop lets through only the traps of counters open on it now. Any other perf
trap is not the program's (it has no counter a replay reproduces) and is
suppressed: one full suite saw a SIGTRAP at a counted place in a run that had
no counter open, twice, which this rule makes harmless whatever its origin.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from retrograde.tracee.perf import (
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    ArrivalCounter,
    ArrivalSampler,
    Place,
    counter_for,
    hold_scheduling_hooks,
    perf_trap_token,
)
from retrograde.tracee.process import Tracee

SLOTS = 4
DR6_TRIGGERED = 0xF  # B0-B3: which slot's condition was met
DR7_L0_EXECUTE = 1  # slot 0 enabled, condition "execute", length 1


@dataclass(frozen=True)
class Watch:
    """A watchpoint: ``length`` (1, 2, 4 or 8) aligned bytes at ``addr``."""

    addr: int
    length: int
    kind: str  # "watch" | "rwatch" | "awatch"

    @property
    def place(self) -> Place:
        """The perf counter's view: x86 has no read-only data breakpoint, so rwatch
        counts reads and writes, as its debug-register bits do."""
        return Place(self.addr, HW_BREAKPOINT_W if self.kind == "watch" else HW_BREAKPOINT_RW,
                     self.length)

    @property
    def dr7_bits(self) -> tuple[int, int]:
        rw = {"watch": 0b01, "rwatch": 0b11, "awatch": 0b11}[self.kind]
        size = {1: 0b00, 2: 0b01, 4: 0b11, 8: 0b10}[self.length]
        return rw, size


class DebugHardware:
    """DR0-DR7 and the perf counters of one task."""

    def __init__(self, tracee: Tracee) -> None:
        self.tracee = tracee
        self.trapping: set[int] = set()  # the tokens of this task's open counters that stop it
        hold_scheduling_hooks()  # once per process: every later counter opens fast

    def is_ours(self, siginfo: bytes) -> bool:
        """Whether a SIGTRAP with ``siginfo`` is not a perf counter's, or is one of
        this task's open counters' (the others' are strays: PERF_TRAP)."""
        token = perf_trap_token(siginfo)
        return token is None or token in self.trapping

    def _opened(self, counter: ArrivalCounter) -> ArrivalCounter:
        if counter.token:
            self.trapping.add(counter.token)
            counter.on_close = self.trapping.discard
        return counter

    def arm(self, watches: Sequence[Watch]) -> None:
        """Make DR0-DR3 and DR7 hold ``watches`` (the first four), and nothing else."""
        t = self.tracee
        if not t.alive:
            return
        dr7 = 0
        for i, w in enumerate(watches[:SLOTS]):
            t.set_debugreg(i, w.addr)
            rw, size = w.dr7_bits
            dr7 |= (1 << (2 * i)) | (rw << (16 + 4 * i)) | (size << (18 + 4 * i))
        t.set_debugreg(7, dr7)

    def take_trigger(self) -> int | None:
        """The slot whose watchpoint trapped (DR6 says so, even when a single step
        trapped too), clearing DR6; None when none did."""
        dr6 = self.tracee.get_debugreg(6)
        if not dr6 & DR6_TRIGGERED:
            return None
        self.tracee.set_debugreg(6, 0)
        return (dr6 & DR6_TRIGGERED).bit_length() - 1

    @property
    def idle(self) -> bool:
        """Whether no debug register is enabled (no watchpoint, no breakpoint)."""
        return self.tracee.get_debugreg(7) == 0

    def carry_to(self, other: DebugHardware) -> None:
        """Give ``other``'s task this task's enabled debug registers (a fork clone
        taking this task's place: a fork does not copy them). Only the enabled
        ones: each address written takes a debug register away from perf
        counters, even one DR7 leaves disabled."""
        dr7 = self.tracee.get_debugreg(7)
        if not dr7:
            return
        for i in range(SLOTS):
            if dr7 & (3 << 2 * i):
                other.tracee.set_debugreg(i, self.tracee.get_debugreg(i))
        other.tracee.set_debugreg(7, dr7)

    @contextlib.contextmanager
    def execution_breakpoint(self, addr: int) -> Iterator[None]:
        """Slot 0 traps every arrival at ``addr`` while entered (no watchpoint may be
        armed: the slot is theirs otherwise)."""
        t = self.tracee
        t.set_debugreg(0, addr)
        t.set_debugreg(7, DR7_L0_EXECUTE)
        try:
            yield
        finally:
            if t.alive:
                t.set_debugreg(7, 0)
                t.set_debugreg(6, 0)

    def arrivals(self, addr: int, stop_at: int = 0) -> ArrivalCounter:
        """A counter of arrivals at ``addr`` (tracee/perf.py); PerfUnavailable if none."""
        return self._opened(ArrivalCounter(self.tracee.pid, addr, stop_at=stop_at))

    def sampler(self, addr: int, *, stack: int, pages: int) -> ArrivalSampler:
        """A ring of the registers (and ``stack`` bytes at rsp) of every arrival at
        ``addr`` (tracee/perf.py); PerfUnavailable if none."""
        return ArrivalSampler(self.tracee.pid, addr, stack=stack, pages=pages)

    def counter(self, place: Place, stop_at: int = 0) -> ArrivalCounter:
        """A counter of arrivals at, or accesses of, ``place``; PerfUnavailable if none."""
        return self._opened(counter_for(self.tracee.pid, place, stop_at=stop_at))
