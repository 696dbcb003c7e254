"""Positions in a replay: marks and their segments, values with no live process.

There are no performance counters, so a moment of the replay is named by a
recipe that reaches it (DESIGN.md, "Time"): a ``Mark`` is an event boundary
(the number of events completed) plus segments, each counted from where the
previous one ended:

    Arrivals(addr, n)        run until the n-th arrival at addr
    Steps(n)                 single-step n instructions
    Triggers(watch, n)       run until the n-th trigger of a watchpoint
    Reach()                  run until the next event's stop, without carrying it out
    ExactState(pc, registers, digest)
                             run until an arrival at pc in exactly this state
                             (registers and a digest of memory): where an interrupt
                             or a time slice stopped a run

Between two events execution is deterministic, so replaying a mark's segments
from a checkpoint at its boundary always arrives at the same state. A segment
never crosses an event. Counting segments (Arrivals, Steps, Triggers) of one
kind and target merge: the m-th arrival at a place, then the next one, is the
(m+1)-th. Reach and ExactState are atomic: done entirely or not at all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self

from .hardware import Watch

Key = int | Watch  # what a hit is a hit of: a breakpoint's address, or a watchpoint


def _number(value: int) -> str:
    return hex(value) if value >= 4096 else str(value)


class Segment:
    """One piece of a mark's recipe."""


class Counted(Segment):
    """A segment that counts: ``count`` of something, from where the last one ended."""

    count: int

    @property
    def key(self) -> Key | None:
        return None

    def same_kind(self, other: Segment) -> bool:
        """Whether ``other`` counts the same thing (so the two merge)."""
        return type(other) is type(self) and isinstance(other, Counted) and other.key == self.key

    def with_count(self, count: int) -> Self:
        return dataclasses.replace(self, count=count)  # type: ignore[type-var]


@dataclass(frozen=True)
class Arrivals(Counted):
    addr: int
    count: int

    @property
    def key(self) -> int:
        return self.addr

    def __str__(self) -> str:
        return f"bp {_number(self.addr)} {_number(self.count)}"


@dataclass(frozen=True)
class Steps(Counted):
    count: int

    def __str__(self) -> str:
        return f"step {_number(self.count)}"


@dataclass(frozen=True)
class Triggers(Counted):
    watch: Watch
    count: int

    @property
    def key(self) -> Watch:
        return self.watch

    def __str__(self) -> str:
        w = self.watch
        return f"{w.kind} {_number(w.addr)} {w.length} {_number(self.count)}"


@dataclass(frozen=True)
class Reach(Segment):
    def __str__(self) -> str:
        return "reach"


@dataclass(frozen=True)
class ExactState(Segment):
    pc: int
    registers: bytes
    digest: bytes

    def __str__(self) -> str:
        return f"state at {self.pc:#x}"


def hits_of(key: Key, count: int) -> Arrivals | Triggers:
    """The segment that names the ``count``-th hit of ``key``."""
    return Triggers(key, count) if isinstance(key, Watch) else Arrivals(key, count)


@dataclass(frozen=True)
class Mark:
    """A position: ``event`` events completed, then ``steps`` from that boundary."""

    event: int
    steps: tuple[Segment, ...] = ()

    def then(self, segment: Segment) -> Mark:
        """This mark, then ``segment``, merged with the last segment when both count
        the same thing."""
        if isinstance(segment, Counted) and segment.count == 0:
            return self
        last = self.steps[-1] if self.steps else None
        if isinstance(last, Counted) and last.same_kind(segment):
            assert isinstance(segment, Counted)
            return Mark(self.event, self.steps[:-1] + (last.with_count(last.count + segment.count),))
        # A debugger steps over a breakpoint before it continues: the m-th arrival at
        # a, one step, then the next arrival at a is the (m+1)-th arrival at a (one
        # instruction cannot arrive at a again, unless it is a jump to itself).
        if isinstance(segment, Arrivals) and len(self.steps) >= 2 and \
                self.steps[-1] == Steps(1):
            before = self.steps[-2]
            if isinstance(before, Arrivals) and before.addr == segment.addr:
                return Mark(self.event, self.steps[:-2] + (
                    Arrivals(segment.addr, before.count + segment.count),))
        return Mark(self.event, self.steps + (segment,))

    @property
    def last(self) -> Segment | None:
        return self.steps[-1] if self.steps else None

    @property
    def boundary(self) -> Mark:
        return Mark(self.event)

    def __str__(self) -> str:
        inside = ", ".join(str(segment) for segment in self.steps)
        return f"event {self.event}" + (f" + {inside}" if inside else "")


def on_the_way(prefix: Mark, target: Mark) -> bool:
    """Whether ``remainder(prefix, target)`` is not None, without making it (searches
    ask this of every kept clone)."""
    if prefix.event != target.event or len(prefix.steps) > len(target.steps):
        return False
    if not prefix.steps:
        return True
    i = len(prefix.steps) - 1
    last, goal = prefix.steps[i], target.steps[i]
    if prefix.steps[:i] != target.steps[:i]:
        return False
    if last == goal:
        return True
    return isinstance(last, Counted) and isinstance(goal, Counted) and last.same_kind(goal) \
        and last.count <= goal.count


def remainder(prefix: Mark, target: Mark) -> tuple[Segment, ...] | None:
    """The segments that lead from ``prefix`` to ``target``, or None when ``prefix``
    is not on the way to ``target``."""
    if prefix.event != target.event or len(prefix.steps) > len(target.steps):
        return None
    if not prefix.steps:
        return target.steps
    i = len(prefix.steps) - 1
    if prefix.steps[:i] != target.steps[:i]:
        return None
    last, goal = prefix.steps[i], target.steps[i]
    if last == goal:
        return target.steps[i + 1:]
    if not (isinstance(last, Counted) and isinstance(goal, Counted) and last.same_kind(goal)) \
            or last.count > goal.count:
        return None
    return (goal.with_count(goal.count - last.count),) + target.steps[i + 1:]


@dataclass(frozen=True)
class Position:
    """A moment's canonical name: the same whichever recipe reached it.

    ``arrival`` counts the arrivals at ``pc`` (the moment's own included) since
    the boundary of event ``event``: between two events execution is
    deterministic, so the n-th arrival at a pc is one moment. ``instruction``
    is the number of instructions since the boundary, known for the first
    instructions of an interval (single-stepped once an interval); there
    positions order as (event, instruction). ``at_stop``: the event's own stop,
    reached but not carried out. The boundary itself is instruction 0.
    """

    event: int
    instruction: int | None = None
    pc: int | None = None
    arrival: int = 0
    at_stop: bool = False

    def __str__(self) -> str:
        if self.instruction is not None:
            return f"event {self.event}, instruction {self.instruction}"
        if self.at_stop:
            return f"event {self.event}, at its stop"
        assert self.pc is not None
        return f"event {self.event}, arrival {self.arrival} at {self.pc:#x}"
