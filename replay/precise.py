"""Reaching a state recorded inside user code by execution (DESIGN.md, "Precise
asynchronous events").

An asynchronous signal delivered inside user code is recorded with the task's
registers, extended state, a digest of its writable memory and that memory. The
replay must get the task into that very state by running the program's own
instructions from the previous event: between two events nothing else changes
registers or memory, so the first time the task stands at the recorded pc in
the recorded state is the recorded delivery, and everything after it is the
recorded future.

A loop that spins until the signal comes passes the pc once an iteration,
perhaps millions of times. A ptrace stop at each pass costs 25-90 µs; instead
``search`` samples every arrival at the pc on a perf execution breakpoint
(tracee/perf.py, ``ArrivalSampler``: registers and the top of the stack, about
11 µs an arrival, no stop) and stops the task only every ring-full of arrivals
to look for the recorded registers and stack among the records. Only an arrival
whose sample matches is confirmed the slow way: the task goes back to where
the ring-full began (a clone taken there), runs to exactly that arrival on a
counter and compares the extended state and the memory digest. Stack bytes tell
apart the passes of a loop whose counter lives in the frame (-O0); a counter in
a global costs a confirmation a pass, which ``CONFIRMATION_LIMIT`` bounds.

The first search of an event runs from the boundary before it (in a clone,
``PreciseStates.judge``); its arrival count and the clone, stopped in the state,
are kept: a session standing at that boundary later takes over a copy of that
clone's process when nothing could stop it on the way (no breakpoint, no
watchpoint), and otherwise reaches the state in one counted run. Beyond
``ARRIVAL_LIMIT`` arrivals the replay gives up executing and writes the
recorded state into the task, and says so (``PreciseStates.notes``).

Nothing here is specific to signals: a ``RecordedState`` is any state recorded
inside user code (a thread preempted mid-loop is the next user).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrograde.trace.dump import signal_name
from retrograde.trace.events import PreemptEvent, SignalEvent
from retrograde.tracee.maps import has_memory_digest, live_stack_before_history
from retrograde.tracee.perf import SAMPLED_REGISTERS, ArrivalSampler, PerfUnavailable
from retrograde.tracee.process import PTRACE_SYSEMU, Stop, Tracee
from retrograde.tracee.registers import (
    REGISTER_NAMES,
    Registers,
    registers_from_bytes,
    registers_to_bytes,
)

if TYPE_CHECKING:
    from .hardware import DebugHardware
    from .session import ReplaySession

ARRIVAL_LIMIT = 1_000_000  # arrivals at the pc a search runs through (about 11 s here)
LIMIT_VARIABLE = "RETROGRADE_PRECISE_ARRIVALS"  # overrides ARRIVAL_LIMIT
CONFIRMATION_LIMIT = 2_000  # arrivals whose sample matched but whose state may not
MAX_KEPT = 8  # sessions kept stopped in a state found
STACK_SAMPLED = 256  # bytes at the stack pointer each sample holds
RESUME_FLAG = 0x10000  # EFLAGS.RF
XSTATE_BV = slice(512, 520)  # which XSAVE components are in use: a fork may change it


def arrival_limit() -> int:
    """ARRIVAL_LIMIT, or the positive number in $RETROGRADE_PRECISE_ARRIVALS."""
    value = os.environ.get(LIMIT_VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else ARRIVAL_LIMIT


@dataclass(frozen=True)
class RecordedState:
    """A task's state recorded inside user code: ``regs`` (user_regs_struct
    bytes), ``xstate`` (the XSAVE area, if recorded), ``digest`` of writable
    memory, and that ``memory`` as (address, bytes)."""

    regs: bytes
    xstate: bytes | None
    digest: bytes
    memory: tuple[tuple[int, bytes], ...] = ()

    @classmethod
    def of_signal(cls, event: SignalEvent) -> RecordedState:
        assert event.regs is not None and event.digest is not None
        return cls(event.regs, event.xstate, event.digest, event.memory)

    @classmethod
    def of_event(cls, event: SignalEvent | PreemptEvent) -> RecordedState:
        """The state of a precise signal, or of a task preempted in user code."""
        if isinstance(event, SignalEvent):
            return cls.of_signal(event)
        return cls(event.regs, event.xstate or None, event.digest,
                   getattr(event, "memory", ()))  # a restore needs the memory, if recorded

    @property
    def registers(self) -> Registers:
        return registers_from_bytes(self.regs)

    @property
    def pc(self) -> int:
        return int(self.registers.rip)

    def stack(self, length: int) -> bytes | None:
        """The ``length`` recorded bytes at the stack pointer, if memory has them, or
        fewer: those before a live signal frame's bytes of history, which replay's
        do not match (tracee.maps.frame_history)."""
        return live_stack_before_history(self.memory, self.registers.rsp, length)


PreciseEvent = SignalEvent | PreemptEvent


def is_precise(event: object) -> bool:
    """Whether ``event`` is reached at a state recorded inside user code."""
    return isinstance(event, PreemptEvent) or (isinstance(event, SignalEvent)
                                                and event.where == "precise")


def arrival_stop(event: PreciseEvent) -> Stop:
    """The stop a run to ``event``'s state ends in: its signal's delivery stop, or
    for a preemption the "state" stop, which delivers nothing."""
    if isinstance(event, SignalEvent):
        return Stop("signal", signo=event.signo)
    return Stop("state")


def describe_event(event: PreciseEvent) -> str:
    if isinstance(event, SignalEvent):
        return signal_name(event.signo)
    return f"the preemption of task {event.task}"


def in_state(t: Tracee, state: RecordedState) -> bool:
    """Whether ``t`` stands in ``state`` (an RF the kernel set at a debug trap aside;
    the memory digest is computed only when registers and extended state match)."""
    regs = t.get_regs()
    regs.eflags &= ~RESUME_FLAG
    recorded = state.registers
    recorded.eflags &= ~RESUME_FLAG
    if registers_to_bytes(regs) != registers_to_bytes(recorded):
        return False
    if state.xstate:
        xstate = t.get_xstate()
        if xstate[:XSTATE_BV.start] != state.xstate[:XSTATE_BV.start] or \
                xstate[XSTATE_BV.stop:] != state.xstate[XSTATE_BV.stop:]:
            return False
    return has_memory_digest(t, state.digest)


@dataclass(frozen=True)
class Outcome:
    """How a run toward a recorded state ended: ``reached`` (the task stands in it,
    resume flag clear, after ``arrivals`` arrivals at its pc), ``stop`` (another
    stop came first: a breakpoint, a watchpoint, an event, an interrupt; the task
    is there), or ``beyond`` (the limit passed; the task is somewhere after)."""

    kind: str
    arrivals: int = 0
    stop: Stop | None = None


def search(session: ReplaySession, state: RecordedState, limit: int,
           breakpoints: frozenset[int] = frozenset()) -> Outcome:
    """Run ``session`` to the first arrival at ``state``'s pc, from where it
    stands, at which the task is in ``state``, arming ``breakpoints`` (not the
    pc itself) on the way. Raises PerfUnavailable without a sampler and a
    counter (no free debug register) before anything ran."""
    pc = state.pc
    stack = state.stack(STACK_SAMPLED)
    made = confirmations = 0
    while made < limit:
        task = session.task
        task.leave_for(pc)  # an arrival where it stands is not counted
        t = task.tracee
        clone = session.clone()  # where this ring-full begins
        start: ReplaySession | None = clone
        try:
            with _sampler(task.hardware, pc, STACK_SAMPLED if stack is not None else 0) \
                    as sampler:
                key = sampler.key(state.registers, stack or b"")
                batch = min(sampler.capacity - 1, limit - made)
                with task.hardware.arrivals(pc, stop_at=batch) as pacer:
                    stop = _run_with_breakpoints(session, breakpoints)
                    paced = pacer.count
                count, matching = sampler.find(sampler.drain(), key)
            if count != paced:
                raise PerfUnavailable(0, f"sampled {count} of {paced} arrivals at {pc:#x}")
            if matching:
                # The first arrival sampled in the recorded registers: go back to
                # where the ring-full began and run to exactly that one.
                start = None
                session.adopt(clone)
                session.task.run_to_arrival(pc, matching[0])
                made += matching[0]
                if in_state(session.process, state):
                    return Outcome("reached", made)
                confirmations += 1
                if confirmations >= CONFIRMATION_LIMIT:
                    return Outcome("beyond", made)
                continue  # on from this arrival, which the resume flag skips
            made += count
            if not (stop.kind == "signal" and stop.signo == signal.SIGTRAP and count == batch
                    and t.get_regs().rip == pc):
                return Outcome("stop", made, stop)  # not the pacer's: the caller's
        finally:
            if start is not None:
                start.close()
    return Outcome("beyond", made)


class NotSampled(Exception):
    """A condition read what an arrival's sample does not hold (memory off the
    sampled stack, the extended registers): it is judged at a stop instead."""


_SAMPLED_AT = [REGISTER_NAMES.index(name) for name in SAMPLED_REGISTERS]
_RIP, _RSP = SAMPLED_REGISTERS.index("rip"), SAMPLED_REGISTERS.index("rsp")
_EFLAGS = REGISTER_NAMES.index("eflags")


class SampledArrival:
    """An arrival at a breakpoint as its perf sample holds it, read the way a
    condition reads a stopped replay (timeline.StoppedAt): the general registers,
    and memory within the STACK_SAMPLED bytes at the stack pointer. The registers
    the sample lacks (fs_base, gs_base, ds-gs, orig_rax) never change in user
    code: they are the task's as the run began."""

    def __init__(self, values: tuple[int, ...], stack: bytes, others: list[int]) -> None:
        self._values = values
        self._stack = stack
        self._others = others

    @property
    def pc(self) -> int:
        return self._values[_RIP]

    def general_registers(self) -> bytes:
        fields = list(self._others)
        for value, at in zip(self._values, _SAMPLED_AT, strict=True):
            fields[at] = value
        fields[_EFLAGS] &= ~RESUME_FLAG
        return struct.pack(f"{len(fields)}Q", *fields)

    def registers(self) -> tuple[bytes, bytes]:
        raise NotSampled("the extended registers are not sampled")

    def read_memory(self, addr: int, length: int) -> bytes:
        rsp = self._values[_RSP]
        if rsp <= addr and addr + length <= rsp + len(self._stack):
            return self._stack[addr - rsp:addr - rsp + length]
        raise NotSampled(f"{length} bytes at {addr:#x} are not on the sampled stack")


def _registers_as_fields(t: Tracee) -> list[int]:
    """The task's registers as user_regs_struct's fields: what samples lack comes from here."""
    return list(struct.unpack(f"{len(REGISTER_NAMES)}Q", registers_to_bytes(t.get_regs())))


@dataclass(frozen=True)
class Judged:
    """How ``first_holding`` ended after ``arrivals`` arrivals: ``holds`` (the
    last one is a hit), ``other`` (another stop comes next, none a hit so far)
    or ``unsampled`` (the condition needs a stop to be judged, from the one
    after these on)."""

    kind: str
    arrivals: int


def first_holding(session: ReplaySession, addr: int, holds: Callable[[SampledArrival], bool],
                  breakpoints: frozenset[int]) -> Judged:
    """Run ``session`` from where it stands to the first arrival at ``addr`` at
    which ``holds`` (a breakpoint's condition), judged on each arrival's perf
    sample rather than at a stop each; ``breakpoints`` are armed on the way.

    However it ends, the session stands at its last arrival counted (where it
    began if none), in the state a breakpoint stop gives there; whatever else
    stopped the run (an event, another breakpoint, a watchpoint, a signal, an
    interrupt) is still ahead, for the caller's ordinary run to meet. A ring of
    samples runs from a clone to a pacer counter's stop, so the arrivals are
    judged a ring-full at a time and the hit is reached again from the clone.
    """
    others = _registers_as_fields(session.task.tracee)
    made = 0
    probe = True  # a ring-full of one first: a condition samples cannot judge fails cheaply
    while True:
        task = session.task
        t = task.tracee
        clone = session.clone()  # where this ring-full begins
        adopted = False
        try:
            try:
                batch, stop, samples = _ring_full(session, addr, 1 if probe else None,
                                                  breakpoints)
                paced = len(samples)
                probe = False
                hit = next((n for n, (values, stack) in enumerate(samples, 1)
                            if holds(SampledArrival(values, stack, others))), None)
            except (NotSampled, PerfUnavailable):
                hit, samples = None, []
                kind = "unsampled"
            else:
                kind = "holds" if hit is not None else "other"
                if hit is None and paced == batch and stop.kind == "signal" and \
                        stop.signo == signal.SIGTRAP and t.get_regs().rip == addr:
                    made += batch  # a ring-full and none holds: on from this arrival
                    regs = t.get_regs()
                    regs.eflags &= ~RESUME_FLAG  # the state a breakpoint stop gives
                    t.set_regs(regs)
                    continue
            session.adopt(clone)
            adopted = True
            # An interrupt stopped the run: it stops the caller's run too, from here.
            interrupted = kind == "other" and session.task.is_interrupt(stop)
            arrivals = hit if hit is not None else 0 if interrupted else len(samples)
            if arrivals:
                session.task.run_to_arrival(addr, arrivals)
            return Judged(kind, made + arrivals)
        finally:
            if not adopted:
                clone.close()


def holding_arrivals(session: ReplaySession, addr: int,
                     holds: Callable[[SampledArrival], bool],
                     goal: tuple[int, int] | None,
                     breakpoints: frozenset[int] = frozenset()) -> list[int] | None:
    """Which arrivals at ``addr`` from where ``session`` stands (the first is 1) a
    breakpoint's condition ``holds`` at, judged on their perf samples: up to the
    ``m``-th arrival at ``x`` for a ``goal`` (x, m), the arrivals before it when x
    is ``addr``; without one, up to the next stop of any kind (the event that
    ends the interval). None if one of ``breakpoints`` (armed on the way: the
    debugger's others) is arrived at first, its hit would come between them, or
    if the run stops before the goal at all.
    The session is left wherever it stopped, for the caller to discard. Raises
    NotSampled or PerfUnavailable."""
    task = session.task
    t = task.tracee
    others = _registers_as_fields(t)
    limit = goal[1] - 1 if goal is not None and goal[0] == addr else None
    made, found = 0, []
    with contextlib.ExitStack() as stack:
        target = None
        if goal is not None and goal[0] != addr:
            task.leave_for(goal[0])
            target = stack.enter_context(task.hardware.arrivals(goal[0], stop_at=goal[1]))
        while limit is None or made < limit:
            # A first ring-full of one: a condition samples cannot judge fails cheaply.
            most = 1 if made == 0 else limit - made if limit is not None else None
            if limit is not None and most is not None:
                most = min(most, limit - made)
            batch, stop, samples = _ring_full(session, addr, most, breakpoints)
            paced = len(samples)
            if stop.kind == "signal" and stop.signo == signal.SIGTRAP and \
                    t.get_regs().rip - 1 in breakpoints:
                return None
            found += [made + n for n, (values, stack_bytes) in enumerate(samples, 1)
                      if holds(SampledArrival(values, stack_bytes, others))]
            made += paced
            if task.is_interrupt(stop):
                raise KeyboardInterrupt
            if target is not None and target.count >= goal[1]:  # type: ignore[index]
                break
            if not (paced == batch and stop.kind == "signal" and stop.signo == signal.SIGTRAP
                    and t.get_regs().rip == addr):
                break  # the interval's end, or another stop
        if goal is not None and (made < limit if limit is not None else  # type: ignore[index]
                                 target is None or target.count < goal[1]):
            return None  # the run never came to the goal: the caller judges by stops
    return found


def _ring_full(session: ReplaySession, addr: int, most: int | None,
               breakpoints: frozenset[int]) -> tuple[int, Stop, list[tuple[tuple[int, ...], bytes]]]:
    """Run ``session`` (``breakpoints`` armed) to the next stop, at the latest after
    ``most`` arrivals at ``addr`` and as many as a ring of samples holds, sampling
    each: (that bound, the stop, the samples in order). Raises PerfUnavailable if
    a sample is missing."""
    task = session.task
    with _sampler(task.hardware, addr, STACK_SAMPLED) as sampler:
        batch = min(most, sampler.capacity - 1) if most is not None else sampler.capacity - 1
        task.leave_for(addr)
        with task.hardware.arrivals(addr, stop_at=batch) as pacer:
            stop = _run_with_breakpoints(session, breakpoints)
            paced = pacer.count
        samples = sampler.samples(sampler.drain())
    if len(samples) != paced:
        raise PerfUnavailable(0, f"sampled {len(samples)} of {paced} arrivals at {addr:#x}")
    return batch, stop, samples


def _sampler(hardware: DebugHardware, pc: int, stack: int) -> ArrivalSampler:
    """The largest ring the kernel lets this user lock (perf_event_mlock_kb)."""
    for pages in (2048, 512, 64):
        try:
            return hardware.sampler(pc, stack=stack, pages=pages)
        except PerfUnavailable as error:
            if error.errno != errno.EPERM or pages == 64:
                raise
    raise AssertionError("unreachable")


def _run_with_breakpoints(session: ReplaySession, breakpoints: frozenset[int]) -> Stop:
    """Resume with int3 on ``breakpoints`` until the next stop the replay cares about."""
    task = session.task
    with task.breakpoints_armed(breakpoints), task.interruptible():
        # Registered before the check: a request now is seen here or sent as SIGSTOP.
        if task.interrupt_requested():
            return Stop("signal", signo=signal.SIGSTOP)
        return task.resume_until(PTRACE_SYSEMU, interruptible=True)


def run_counted(session: ReplaySession, state: RecordedState, arrivals: int,
                breakpoints: frozenset[int]) -> Outcome:
    """From the boundary a search found ``state`` from, run to that many arrivals
    at its pc in one counted run (``breakpoints`` armed). Raises PerfUnavailable
    without a counter."""
    pc = state.pc
    task = session.task
    task.leave_for(pc)
    t = task.tracee
    with task.hardware.arrivals(pc, stop_at=arrivals) as goal:
        stop = _run_with_breakpoints(session, breakpoints)
        made = goal.count
    if made == arrivals and stop.kind == "signal" and stop.signo == signal.SIGTRAP and \
            t.get_regs().rip == pc:
        task.arrived_at(pc)
        return Outcome("reached" if in_state(t, state) else "beyond", made)
    return Outcome("stop", made, stop)


@dataclass(frozen=True)
class Verdict:
    """What the search from an event's boundary found: the state after
    ``arrivals`` arrivals at its pc (None: not within the limit), from the
    boundary whose registers and state digest are ``boundary``."""

    arrivals: int | None
    boundary: tuple[bytes, bytes]


class PreciseStates:
    """Which states recorded inside user code a replay reaches by execution, and
    after how many arrivals at their pc, shared by every session of one replay
    (clones included).

    Each is judged once, by a search from a clone at the boundary before it.
    When the search passes its limit, every session restores the recorded state
    at that boundary, before any instruction of the interval runs, so all paths
    through the interval are the same history: the instructions the recording
    ran there are not in it. ``notes`` says so, one line each, and ``announce``
    is called with each.
    """

    def __init__(self) -> None:
        self.verdicts: dict[int, Verdict] = {}
        self.notes: list[str] = []
        self.announce: Callable[[str], None] | None = None
        self.limit = arrival_limit()
        # The searches' sessions, each stopped in the state it found: a session at
        # the boundary with nothing to stop at on the way takes a copy's process.
        self.found: dict[int, ReplaySession] = {}

    def _keep(self, n: int, session: ReplaySession) -> None:
        """Keep ``session``, stopped in event ``n``'s state, as a checkpoint there."""
        self.found[n] = session
        while len(self.found) > MAX_KEPT:
            self.found.pop(next(iter(self.found))).close()

    def close(self) -> None:
        for session in self.found.values():
            session.close()
        self.found.clear()

    def verdict(self, n: int, session: ReplaySession) -> Verdict:
        if n not in self.verdicts:
            self.judge(n, session)
        return self.verdicts[n]

    def arrivals(self, n: int) -> int | None:
        """Arrivals at event ``n``'s pc from its boundary to its state, if judged so."""
        verdict = self.verdicts.get(n)
        return verdict.arrivals if verdict is not None else None

    def judge(self, n: int, session: ReplaySession) -> None:
        """Judge event ``n`` from ``session``, which stands at the boundary before it."""
        event = session.reader[n]
        assert is_precise(event) and isinstance(event, PreciseEvent)
        state = RecordedState.of_event(event)
        boundary = _boundary_of(session)
        trial: ReplaySession | None = session.clone()
        try:
            assert trial is not None
            trial.interruption = None
            if in_state(trial.process, state):
                found: int | None = 0
            else:
                try:
                    outcome = search(trial, state, self.limit)
                except PerfUnavailable:
                    outcome = _by_stops(trial, n, event, self.limit)
                # Any stop but the search's end is the replay's to report, by execution.
                found = outcome.arrivals if outcome.kind != "beyond" else None
                if outcome.kind == "reached":
                    self._keep(n, trial)
                    trial = None
        finally:
            if trial is not None:
                trial.close()
        self.verdicts[n] = Verdict(found, boundary)
        if found is None:
            done = "was delivered" if isinstance(event, SignalEvent) else "was reached"
            note = (f"event {n}: {describe_event(event)} {done} by restoring its "
                    f"recorded state: execution did not reach it within {self.limit} "
                    f"arrivals at pc {state.pc:#x} (${LIMIT_VARIABLE} raises the bound), "
                    f"and the instructions the recording ran there after event {n - 1} "
                    "are not in the history")
            self.notes.append(note)
            if self.announce is not None:
                self.announce(note)

    def reach(self, n: int, session: ReplaySession, state: RecordedState,
              breakpoints: frozenset[int]) -> Stop | None:
        """Run ``session`` toward event ``n``'s state, judged reachable: its stop
        (the signal's delivery stop at the state, or a stop that came first), or
        None when the state was not reached where the judgement found it."""
        verdict = self.verdicts[n]
        assert verdict.arrivals is not None
        event = session.reader[n]
        assert isinstance(event, PreciseEvent)
        delivery = arrival_stop(event)
        at_boundary = _boundary_of(session) == verdict.boundary
        if at_boundary and not breakpoints and n in self.found and \
                session.hardware_idle():
            session.adopt(self.found[n].clone())
            return delivery
        if state.pc not in breakpoints:
            try:
                if at_boundary:
                    outcome = run_counted(session, state, verdict.arrivals, breakpoints)
                else:
                    outcome = search(session, state, verdict.arrivals, breakpoints)
            except PerfUnavailable:
                pass
            else:
                if outcome.kind == "reached":
                    return delivery
                return outcome.stop
        # A breakpoint on the pc stops at the first pass anyway; without counters,
        # a stop a pass.
        outcome = _by_stops(session, n, event, verdict.arrivals + 1, breakpoints)
        return delivery if outcome.kind == "reached" else outcome.stop


def _boundary_of(session: ReplaySession) -> tuple[bytes, bytes]:
    return registers_to_bytes(session.process.get_regs()), session.state_digest()


def _by_stops(session: ReplaySession, n: int, event: PreciseEvent, limit: int,
              breakpoints: frozenset[int] = frozenset()) -> Outcome:
    """The search one ptrace stop a pass (session._run_to_precise_state)."""
    stop = session._run_to_precise_state(n, event, breakpoints, limit)
    if stop is None:
        return Outcome("beyond", limit)
    if stop == arrival_stop(event):
        return Outcome("reached", 0)
    return Outcome("stop", 0, stop)
