"""The timeline: positions in a replay, checkpoints, and moving backwards.

A position is a ``Mark`` (replay/marks.py): an event boundary plus a recipe of
segments that reaches the moment from there, replayed from a checkpoint at
that boundary.

Going backwards is restoring a checkpoint and running forwards (seed 002):
reverse-continue scans forward from the nearest earlier checkpoint to the
present with the user's breakpoints armed and seeks to the last hit;
reverse-stepi and reverse-roll N count the instructions from a nearby clone to
the present by single-stepping and seek to N before, in one seek.

The timeline owns the live session, every checkpoint and the user's
breakpoints and watchpoints. Invariant: checkpoints are stopped clones that
never run and never hold a breakpoint (the session writes int3s only while
running) nor an armed watchpoint. The debugger server sees the replay only
through the timeline (``registers``, ``read_memory``, ``stopped_at``, ...),
never a live task.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Self

from retrograde.trace.events import (
    CloneEvent,
    Event,
    ExitEvent,
    PreemptEvent,
    RdtscEvent,
    SignalEvent,
    SyscallEntryEvent,
    SyscallEvent,
)
from retrograde.trace.format import TraceReader
from retrograde.trace.tasks import Debuggee, debuggee_of, process_tree
from retrograde.tracee.perf import PerfUnavailable, Place
from retrograde.tracee.process import TraceeError
from retrograde.tracee.registers import registers_from_bytes, registers_to_bytes

from .address_space import Mapping
from .flow import predecessors
from .hardware import Watch
from .marks import (
    Arrivals,
    Counted,
    ExactState,
    Key,
    Mark,
    Position,
    Reach,
    Segment,
    Steps,
    Triggers,
    hits_of,
    on_the_way,
    remainder,
)
from .precise import (
    NotSampled,
    SampledArrival,
    first_holding,
    holding_arrivals,
)
from .session import (
    ALL_SIGNALS,
    RESUME_FLAG,
    EchoFrontier,
    Interruption,
    ReplayEnd,
    ReplaySession,
    RunStop,
    StopReason,
)

__all__ = ["Arrival", "Mark", "StopReason", "StoppedAt", "Timeline", "Watch"]

CHECKPOINT_INTERVAL_SECONDS = 0.05  # replay time between two boundary checkpoints
CHECKPOINT_INTERVAL_EVENTS = 8  # or events: a reverse search from a stop replays fewer first
MAX_BOUNDARY_CHECKPOINTS = 48
MAX_RECENT_CLONES = 24
CLONE_EVERY_STEPS = 256  # while counting instructions, leave a clone this often
STEPS_BEFORE_CLOSING_IN = 400  # single steps to try before a long stretch is narrowed down
WAYPOINT_FIRST_SLICE = 0.001  # seconds of native running between waypoint clones, then /6
WAYPOINT_LEVELS = 3  # slices of 1, 0.17, 0.03 ms: shorter ones are mostly the tracer's latency
WAYPOINTS_A_LEVEL = 2
MAX_WAYPOINTS = 12
ARRIVALS_BETWEEN_CLONES = 256  # while counting arrivals on perf counters, clone this often
NEVER = 1 << 62  # a count no run reaches
WHEN_COUNT_LIMIT = 50_000  # first instructions of an interval named by their number (2 s)
MAX_POSITIONS = 4096
MAX_ARRIVALS_KNOWN = 4096
MAX_FIRST_INSTRUCTIONS = 2  # intervals whose first instructions are kept
COUNTED_PLACES = 3  # user breakpoints and watchpoints a scan counts: 4 debug registers, one
#                     left for the run's own goal
CLONES_A_WALK = 48  # clones a reverse search leaves among the hits of the interval it is in
MAX_WALK_CLONES = 64
PROGRESS_AFTER = 1.0  # seconds of reverse search before it says what it is doing


@dataclass(frozen=True)
class Arrival:
    """What a timeline move ended at, in terms the debugger server translates."""

    reason: StopReason  # not EVENT nor REACHED: a move goes on past those
    mark: Mark
    signo: int = 0
    watch: Watch | None = None


Hit = tuple[Mark, Watch | None]  # where, and the Watch that triggered (None: a breakpoint)


@dataclass
class _Walk:
    """What reverse searches learned about one stretch, for the next hop over it.

    ``counts`` holds the hits of each key in each event interval from
    ``start`` (a boundary) to where the first search began; ``at`` says, of
    the places the searches stopped at, the event and the hits of each key
    in its interval before the place: the next hop back from there is the
    last of those, or the last hit of an earlier interval, known without
    counting again. Valid while the same breakpoints
    and watchpoints (``armed``) are set.
    """

    armed: tuple[frozenset[int], tuple[Watch, ...]]
    start: int
    counts: dict[int, dict[Key, int]]
    at: dict[Mark, tuple[int, dict[Key, int]]]
    cloned: set[tuple[int, Key]]  # intervals and keys whose hits have clones among them


class _Reporter:
    """The one thread that speaks for long searches: started once, on the first search,
    since starting a thread for each costs milliseconds of a hop that takes a few."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._current: SearchProgress | None = None
        self._thread: threading.Thread | None = None

    def watch(self, progress: SearchProgress | None) -> None:
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._report, daemon=True,
                                                name="search progress")
                self._thread.start()
            self._current = progress
            self._changed.notify()

    def _report(self) -> None:
        while True:
            with self._changed:
                while self._current is None:
                    self._changed.wait()
                progress, wait = self._current, PROGRESS_AFTER
                while self._current is progress:
                    if not self._changed.wait(wait) and self._current is progress:
                        # Said under the lock: the search's end waits for this line,
                        # so every line comes before the one saying how long it took.
                        progress.say_phase()
                        wait = 1.0


_REPORTER = _Reporter()


class SearchProgress:
    """Says what a long reverse search is doing: after PROGRESS_AFTER seconds a line
    every second (from a thread of its own, _REPORTER: the search itself is a
    native run that may not come back for a while), and at the end the time it
    took."""

    def __init__(self, announce: Callable[[str], None], what: str) -> None:
        self.announce = announce
        self.what = what
        self.phase = "starting"
        self.started = time.monotonic()

    def say_phase(self) -> None:
        self.announce(f"{self.what}: {self.phase} ({time.monotonic() - self.started:.0f} s)")

    def __enter__(self) -> Self:
        _REPORTER.watch(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _REPORTER.watch(None)
        took = time.monotonic() - self.started
        if took >= PROGRESS_AFTER:
            ended = "interrupted after" if exc[0] is KeyboardInterrupt else "took"
            self.announce(f"{self.what} {ended} {took:.1f} s")


class _NotCountable(Exception):
    """The hits of an event interval cannot be reached on counters."""


def _announce_on_stderr(text: str) -> None:
    print(f"retrograde: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Link:
    """How a waypoint was found: on the way from ``parent`` to the
    ``from_parent``-th arrival at ``addr`` after it, which is the
    ``from_waypoint``-th arrival after the waypoint."""

    parent: Mark
    from_parent: int
    from_waypoint: int
    addr: int | None  # None: the stop of the event after them


class State(NamedTuple):
    """A replay's state: equal registers and digests, equal futures."""

    registers: bytes
    digest: bytes
    rsp: int
    rip: int

    def same(self, other: State) -> bool:
        return (self.registers, self.digest) == (other.registers, other.digest)


class _Arrivals:
    """Breakpoint and watchpoint hits seen since ``base``, each named by its count.

    "The 5th arrival at x after base" is a recipe as good as a chain of every
    stop on the way, and stays one segment long however dense the hits are, so
    a scan through 10^5 hits costs linear time.
    """

    def __init__(self, base: Mark) -> None:
        self.base = base
        self.counts: dict[Key, int] = {}

    def hit(self, stop: RunStop, armed: list[Watch]) -> Hit:
        watch = armed[stop.watch] if stop.reason == StopReason.WATCH else None
        key: Key = watch if watch is not None else stop.addr
        self.counts[key] = count = self.counts.get(key, 0) + 1
        return self.base.then(hits_of(key, count)), watch


class StoppedAt:
    """A replay stopped at a breakpoint, as a condition reads it: registers and the
    memory the recording saw. Valid until the replay moves."""

    def __init__(self, session: ReplaySession) -> None:
        self._session = session

    @property
    def pc(self) -> int:
        return int(self._session.process.get_regs().rip)

    def general_registers(self) -> bytes:
        """The general registers (struct user_regs_struct)."""
        return registers_to_bytes(self._session.process.get_regs())

    def registers(self) -> tuple[bytes, bytes]:
        """The general registers and the XSAVE area."""
        t = self._session.process
        return registers_to_bytes(t.get_regs()), t.get_xstate()

    def read_memory(self, addr: int, length: int) -> bytes:
        """As much of [addr, addr + length) as is readable."""
        return self._session.read_memory(addr, length)


class _FirstInstructions:
    """The first instructions of one event interval, single-stepped from its
    boundary once and only as far as a question needs (at most
    WHEN_COUNT_LIMIT): at which instruction each pc is arrived at, and after how
    many instructions the event's stop comes. The stepping session is kept
    until then, so the next question goes on from where the last one stopped."""

    def __init__(self, session: ReplaySession, step: Callable[..., RunStop]) -> None:
        self.session: ReplaySession | None = session
        self._step = step
        self.instructions = 0
        self.arrivals: dict[int, list[int]] = {}  # pc -> instruction numbers it is at
        self.stop: int | None = None  # instructions before the event's stop

    def _extend(self, steps: int) -> None:
        session = self.session
        assert session is not None
        for _ in range(min(steps, WHEN_COUNT_LIMIT - self.instructions)):
            stop = self._step(session, step=True, stop_before_event=True, stop_at_end=False)
            if stop.reason != StopReason.STEP:
                self.stop = self.instructions if stop.reason == StopReason.REACHED else None
                self.close()
                return
            self.instructions += 1
            pc = int(session.process.get_regs().rip)
            self.arrivals.setdefault(pc, []).append(self.instructions)
        if self.instructions >= WHEN_COUNT_LIMIT:
            self.close()

    def instruction_of(self, pc: int, arrival: int) -> int | None:
        """The number of the instruction at which ``pc`` is arrived at the
        ``arrival``-th time; None beyond the first WHEN_COUNT_LIMIT."""
        while len(self.arrivals.get(pc, ())) < arrival and self.session is not None:
            self._extend(CLONE_EVERY_STEPS * 4)
        at = self.arrivals.get(pc, [])
        return at[arrival - 1] if len(at) >= arrival else None

    def reach(self) -> int | None:
        """The instructions before the event's stop; None beyond the first WHEN_COUNT_LIMIT."""
        while self.session is not None:
            self._extend(CLONE_EVERY_STEPS * 4)
        return self.stop

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


class Timeline:
    """The history of one process of a trace (``debuggee``; default: the first
    process, from the first exec), from its start to its end.

    The other processes of a process tree run alongside, in the recorded order,
    so that everything the debugged one sees is as recorded, but nothing of
    theirs is a stop, a hit or an instruction of this history: the session
    arms nothing in them (ReplaySession.debugged), going back one instruction
    skips their slices whole, and the history begins where the debuggee's
    debugging does (its creation, or its exec) and ends with its exit.
    """

    def __init__(self, reader: TraceReader, *, echo: bool = False,
                 debuggee: Debuggee | None = None) -> None:
        self.reader = reader
        self.echo = echo
        processes = process_tree(reader)
        self.debuggee = debuggee if debuggee is not None else debuggee_of(processes, None)
        # The recorded process of each recorded task, and whether there are several.
        self._process_of = {tid: process.pid for process in processes for tid in process.tasks}
        self.several_processes = len(processes) > 1
        self.live = ReplaySession(reader, echo=echo)
        self.live.frontier = EchoFrontier()  # output is echoed once, wherever the replay goes
        self.live.debugged = self.debuggee.pid
        self.live.start()
        self._run_to(self.debuggee.start)
        self.mark = Mark(self.live.next_event)
        self.start_mark = self.mark
        self.boundary_checkpoints: dict[int, ReplaySession] = {}
        self.recent: OrderedDict[Mark, ReplaySession] = OrderedDict()
        self.named: dict[str, tuple[Mark, ReplaySession]] = {}
        self.waypoints: OrderedDict[Mark, ReplaySession] = OrderedDict()
        self.links: dict[Mark, Link] = {}
        self.walk_clones: OrderedDict[Mark, ReplaySession] = OrderedDict()
        self._walk: _Walk | None = None
        self._writers: dict[int, int] = {}  # pc after an access -> the instruction that made it
        self._last_writer: dict[Key, int] = {}  # watchpoint -> the last writer found for it
        self.announce: Callable[[str], None] = _announce_on_stderr
        self.positions: dict[Mark, Position | str] = {}
        self._arrivals_known: dict[tuple[Mark, int], int] = {}  # (mark, pc): arrivals at pc
        self._first: dict[int, _FirstInstructions] = {}
        self.breakpoints: set[int] = set()
        self.watches: list[Watch] = []
        # Asked at each arrival at a user breakpoint a scan passes (the session
        # stopped there): False makes the arrival no hit. It is still counted,
        # since marks name arrivals, and it is the caller's to skip going forwards.
        # A forward run may ask it of an arrival's perf sample (precise.SampledArrival),
        # which raises precise.NotSampled for what the sample lacks.
        self.breakpoint_holds: Callable[[StoppedAt | SampledArrival, int], bool] = \
            lambda stopped, addr: True
        # Whether a breakpoint has a condition: counters count arrivals, not the ones
        # where it holds, so a search with one stops at every arrival instead.
        self.has_condition: Callable[[int], bool] = lambda addr: False
        self._unsampled: set[int] = set()  # conditional breakpoints judged at stops only
        self.report_signals: frozenset[int] = ALL_SIGNALS
        self.interrupted = Interruption()
        self.live.interruption = self.interrupted
        # A trace of several threads: each event interval is one thread's, but a
        # perf counter counts in one task, so reverse searches stop at every hit.
        self.threaded = len(self._process_of) > 1
        self._last_checkpoint_time = time.monotonic()
        self._checkpoint_boundary()

    def _run_to(self, start: int) -> None:
        """Replay the events before ``start``, where the debuggee's history begins, and
        on to the first boundary a checkpoint can be taken at (none while a vfork's
        parent sleeps in the kernel)."""
        live = self.live
        while live.end is None and live.next_event < len(self.reader) and (
                live.next_event < start or not live.can_clone):
            live.step_event()

    def _debugged_event(self, n: int) -> bool:
        """Whether event ``n`` (and the interval before it) is the debugged process's."""
        return self._process_of.get(self.reader[n].task) == self.debuggee.pid

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        for session in [self.live, *self.boundary_checkpoints.values(), *self.recent.values(),
                        *self.waypoints.values(), *self.walk_clones.values(),
                        *(s for _, s in self.named.values())]:
            session.close()
        self.live.precise.close()
        for first in self._first.values():
            first.close()
        self._first.clear()
        self.walk_clones.clear()
        self.boundary_checkpoints.clear()
        self.recent.clear()
        self.waypoints.clear()
        self.links.clear()
        self.named.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checkpoints ------------------------------------------------------------------------
    def _checkpoint_boundary(self) -> None:
        """Keep a clone at this event boundary; thin the old ones exponentially."""
        live = self.live
        if live.end is not None or self.mark.steps or live.next_event in self.boundary_checkpoints \
                or not live.can_clone:
            return
        self.boundary_checkpoints[live.next_event] = live.clone()
        self._last_checkpoint_time = time.monotonic()
        if len(self.boundary_checkpoints) > MAX_BOUNDARY_CHECKPOINTS:
            self._thin_checkpoints()

    def _keep_boundary(self, event: int, session: ReplaySession) -> None:
        """Keep a clone of ``session`` (at ``event``'s boundary) as its checkpoint."""
        if not session.can_clone:
            return
        self.boundary_checkpoints[event] = session.clone()
        if len(self.boundary_checkpoints) > MAX_BOUNDARY_CHECKPOINTS:
            self._thin_checkpoints()

    def _thin_checkpoints(self) -> None:
        """Drop the checkpoint whose neighbours are closest, weighted by distance from now."""
        events = sorted(self.boundary_checkpoints)
        now = self.live.next_event
        worst, worst_score = None, None
        for before, here, after in zip(events, events[1:], events[2:]):
            score = (after - before) / max(1, now - here)
            if worst_score is None or score < worst_score:
                worst, worst_score = here, score
        if worst is not None:
            self.boundary_checkpoints.pop(worst).close()

    def _remember(self, mark: Mark, session: ReplaySession) -> None:
        """Keep a clone of ``session`` (at ``mark``) among the recent ones."""
        if session.end is not None or mark in self.recent or not session.can_clone:
            return
        self.recent[mark] = session.clone()
        while len(self.recent) > MAX_RECENT_CLONES:
            self.recent.popitem(last=False)[1].close()

    def checkpoint(self, name: str) -> Mark:
        if self.live.end is not None:
            raise ValueError("the program has ended here: go back first")
        if not self.live.can_clone:
            raise ValueError("no checkpoint can be taken here, while a vfork's parent sleeps "
                             "in the kernel: go on a little first")
        if name in self.named:
            self.named.pop(name)[1].close()
        self.named[name] = (self.mark, self.live.clone())
        return self.mark

    def delete_checkpoint(self, name: str) -> bool:
        """Forget checkpoint ``name`` and end its process; False if there is none."""
        if name not in self.named:
            return False
        self.named.pop(name)[1].close()
        return True

    # -- moving the live session ------------------------------------------------------------
    def _clones_on_the_way(self, target: Mark) -> list[tuple[Mark, ReplaySession]]:
        return [(mark, session) for mark, session in [*self.recent.items(),
                                                      *self.waypoints.items(),
                                                      *self.walk_clones.items(),
                                                      *self.named.values()]
                if on_the_way(mark, target)]

    @staticmethod
    def _latest(marks: list[Mark]) -> Mark:
        """Of marks that all lie on the way to one place, the one nearest to it."""
        best = marks[0]
        for mark in marks[1:]:
            if on_the_way(best, mark):  # best is on the way to mark
                best = mark
        return best

    def _source_for(self, target: Mark) -> tuple[Mark, ReplaySession]:
        """The stopped clone from which ``target`` is cheapest to reach."""
        on_the_way = dict(self._clones_on_the_way(target))
        if on_the_way:
            best = self._latest(list(on_the_way))
            return best, on_the_way[best]
        events = [e for e in self.boundary_checkpoints if e <= target.event]
        if not events:
            raise ValueError(f"no checkpoint before {target}")
        return Mark(max(events)), self.boundary_checkpoints[max(events)]

    def _fresh_at(self, target: Mark, *, source: tuple[Mark, ReplaySession] | None = None,
                  hits: list[Hit] | None = None) -> ReplaySession:
        """A new session at ``target``, cloned from ``source`` (default: the cheapest
        clone). With ``hits``, the user's breakpoints and watchpoints are armed on
        the way and their hits strictly before ``target`` are appended to it."""
        source_mark, source_session = source or self._source_for(target)
        session = source_session.clone()
        try:
            self._drive(session, source_mark, target, hits is not None, hits)
        except BaseException:
            session.close()
            raise
        return session

    def seek(self, target: Mark) -> None:
        """Make the live session be at ``target``."""
        if target == self.mark and self.live.started:
            return
        fresh = self._fresh_at(target)
        self.live.close()
        self.live = fresh
        self.mark = target
        self._remember(target, fresh)

    @staticmethod
    def _apply_watches(session: ReplaySession, watches: list[Watch]) -> None:
        if session.started:
            session.arm(watches)

    @staticmethod
    def _step(session: ReplaySession, **how: object) -> RunStop:
        """``session.run`` for the timeline's own moves: no signals reported, and an
        interrupt abandons the move (the live session is left where it was)."""
        how.setdefault("report_signals", frozenset())
        stop = session.run(**how)  # type: ignore[arg-type]
        if stop.reason == StopReason.INTERRUPTED:
            raise KeyboardInterrupt
        return stop

    def _drive(self, session: ReplaySession, start: Mark, target: Mark, observe: bool,
               hits: list[Hit] | None) -> None:
        """Run ``session`` from ``start`` to ``target``; collect user hits on the way."""
        bps = frozenset(self.breakpoints) if observe else frozenset()
        watches = list(self.watches) if observe else []
        self._apply_watches(session, watches)
        arrivals = _Arrivals(start)
        while session.next_event < target.event:
            if self.interrupted.is_set():
                raise KeyboardInterrupt
            stop = self._step(session, breakpoints=bps, until_event=True, stop_at_end=False)
            if session.next_event != arrivals.base.event:
                arrivals = _Arrivals(Mark(session.next_event))
            elif stop.reason in (StopReason.BREAKPOINT, StopReason.WATCH):
                hit = arrivals.hit(stop, watches)
                if observe and hits is not None and self._is_hit(session, hit, stop.addr):
                    hits.append(hit)
        cur = arrivals.base
        segments = (remainder(cur, target) or ()) if cur.event == target.event else ()
        for i, segment in enumerate(segments):
            cur = self._run_segment(session, cur, segment, bps, watches, hits if observe else None,
                                    final=i == len(segments) - 1)
        self._apply_watches(session, [])

    def _run_segment(self, session: ReplaySession, cur: Mark, segment: Segment,
                     bps: frozenset[int], watches: list[Watch],
                     hits: list[Hit] | None, final: bool = True) -> Mark:
        """Carry out one segment from ``cur``; returns the mark in the segment's own
        terms (so that the end of a drive is the very mark it was asked for).

        User hits on the way are appended to ``hits`` as recipes from the last
        point of the segment's own progress. The ``final`` segment's end is not
        a breakpoint hit: a reverse-continue does not report where it starts
        from. A watchpoint's trigger there is a hit: it stops after the write,
        so going backwards from there crosses that write first.
        """
        observing = hits is not None
        found: list[Hit] = hits if hits is not None else []
        task = session.task

        def counts(done: int, total: int, watch: bool = False) -> bool:
            return observing and (done < total or not final or watch)

        def at(progress: int) -> Mark:
            if progress == 0:
                return cur
            assert isinstance(segment, Counted)
            return Mark(cur.event, cur.steps + (segment.with_count(progress),))

        def observe(arrivals: _Arrivals, stop: RunStop, armed: list[Watch]) -> None:
            hit = arrivals.hit(stop, armed)
            if observing and self._is_hit(session, hit, stop.addr):
                found.append(hit)

        trapped = (StopReason.BREAKPOINT, StopReason.WATCH)
        if isinstance(segment, Reach):
            arrivals = _Arrivals(cur)
            while (stop := self._step(session, breakpoints=bps,
                                      stop_before_event=True)).reason in trapped:
                observe(arrivals, stop, watches)
            return cur.then(Reach())
        if isinstance(segment, ExactState):
            pc = segment.pc
            arrivals = _Arrivals(cur)
            while True:
                stop = self._step(session, breakpoints=bps | {pc}, stop_at_end=False)
                if stop.reason == StopReason.BREAKPOINT and stop.addr == pc and \
                        self._in_state(session, segment):
                    return cur.then(segment)
                if stop.reason not in trapped:
                    raise RuntimeError(f"lost the way to a state at {pc:#x} after {cur} ({stop})")
                if stop.reason == StopReason.WATCH or stop.addr in bps:
                    observe(arrivals, stop, watches)
        if isinstance(segment, Steps):
            for done in range(1, segment.count + 1):
                stop = self._step(session, step=True, stop_at_end=False)
                if counts(done, segment.count, watch=True) and stop.reason == StopReason.WATCH:
                    found.append((at(done), watches[stop.watch]))
                elif counts(done, segment.count) and (pc := session.process.get_regs().rip) \
                        in bps and self._holds(session, pc):
                    found.append((at(done), None))
            return at(segment.count)
        if isinstance(segment, Arrivals | Triggers):
            count = segment.count
            watch: Watch | None
            if isinstance(segment, Arrivals):
                addr = segment.addr
                armed, run_bps, watch = watches, bps | {addr}, None
                is_user_hit = addr in bps

                def arrived(stop: RunStop) -> bool:
                    return stop.reason == StopReason.BREAKPOINT and stop.addr == addr

                if not observing and not watches and task.quiet:
                    task.run_to_arrival(addr, count)  # a seek: the fast way
                    return at(count)
            else:
                watch = segment.watch
                armed, run_bps = (watches if watch in watches else [watch, *watches][:4]), bps
                is_user_hit = watch in watches

                def arrived(stop: RunStop) -> bool:
                    return stop.reason == StopReason.WATCH and armed[stop.watch] == watch

                if not observing and not watches and task.quiet:
                    try:
                        task.run_counting(watch.place, count, [])
                        return at(count)
                    except PerfUnavailable:
                        pass  # no free debug register for a counter: one stop a trigger
            self._apply_watches(session, armed)
            for done in range(1, count + 1):
                arrivals = _Arrivals(at(done - 1))
                while not arrived(stop := self._step(session, breakpoints=run_bps,
                                                     stop_at_end=False)):
                    if stop.reason not in trapped:
                        raise RuntimeError(f"lost the way to {segment} after "
                                           f"{arrivals.base} ({stop})")
                    observe(arrivals, stop, armed)
                if counts(done, count, watch=watch is not None) and is_user_hit and (
                        watch is not None or (isinstance(segment, Arrivals)
                                              and self._holds(session, segment.addr))):
                    found.append((at(done), watch))
            self._apply_watches(session, watches)
            return at(count)
        raise ValueError(f"unknown segment {segment}")

    def _is_hit(self, session: ReplaySession, hit: Hit, addr: int) -> bool:
        return hit[1] is not None or self._holds(session, addr)

    def _holds(self, session: ReplaySession, addr: int) -> bool:
        """Whether ``session``'s arrival at user breakpoint ``addr`` is a hit."""
        return self.breakpoint_holds(StoppedAt(session), addr)

    def _after(self, start: Mark, session: ReplaySession, stop: RunStop,
               watches: list[Watch]) -> Mark:
        """The mark of ``session`` after a run from ``start`` ended in ``stop``."""
        if session.end is not None:
            return Mark(len(self.reader))
        base = start if session.next_event == start.event else Mark(session.next_event)
        if stop.reason == StopReason.BREAKPOINT:
            return base.then(Arrivals(stop.addr, 1))
        if stop.reason == StopReason.STEP:
            return base.then(Steps(1)) if base is start else base
        if stop.reason == StopReason.WATCH:
            return base.then(Triggers(watches[stop.watch], 1))
        if stop.reason == StopReason.END and session.next_event >= len(self.reader):
            return Mark(session.next_event)  # the end of a cut-short trace: a boundary
        if stop.reason in (StopReason.END, StopReason.REACHED):
            return base.then(Reach())
        return base

    # -- what the debugger asks for -------------------------------------------------------------
    def forward(self, step: bool, thread: int | None = None, *, others: bool = True) -> Arrival:
        """Run forwards to the next stop; a ``step`` is one instruction of ``thread``
        (default: the thread the replay is in): the others' recorded slices before
        it run first, and stop there at a breakpoint, a watchpoint or a signal.

        Without ``others``, the debugger holds the other threads (scheduler-locking):
        they still run their recorded slices, as history is fixed, but nothing
        that happens in them is a stop: only ``thread``'s are."""
        live = self.live
        if self.end is not None:
            return Arrival(StopReason.EXITED, self.mark)
        if thread is not None and thread not in dict(self.threads()):
            thread, others = None, True  # it has ended: a step is the present thread's
        if thread is None and self.several_processes:
            thread = self.thread  # the debugged process's, wherever the replay stands
        self._apply_watches(live, self.watches)
        bps = frozenset(self.breakpoints)
        try:
            while True:
                start = self.mark
                ours = thread is None or live.task.recorded_tid == thread
                stepping = step and ours
                # A thread the debugger holds runs to its next event with nothing armed.
                held = not ours and not others
                if held:
                    self._apply_watches(live, [])
                elif not stepping:
                    found = self._judged_forward(live, bps)
                    if found is not None:
                        return found
                    start = self.mark
                stop = live.run(step=stepping, breakpoints=frozenset() if held else bps,
                                until_event=not stepping,
                                report_signals=frozenset() if held else self.report_signals)
                if held:
                    self._apply_watches(live, self.watches)
                if stop.reason == StopReason.INTERRUPTED:
                    if not live.is_debugged(live.task):
                        return self._interrupted_elsewhere()
                    return self._interrupted_here(start)
                self.mark = self._after(start, live, stop, self.watches)
                if live.end is None and not live.debugged_alive():
                    return self._to_debugged_exit()
                if step and thread is not None and stop.reason == StopReason.STEP and \
                        live.end is None and live.waits_in_kernel(thread):
                    # The step entered a call the others' events complete (a futex
                    # wait): the instruction is done once the call returns.
                    continue
                if stop.reason == StopReason.EVENT:
                    if time.monotonic() - self._last_checkpoint_time > \
                            CHECKPOINT_INTERVAL_SECONDS or live.next_event - max(
                                self.boundary_checkpoints, default=0) >= CHECKPOINT_INTERVAL_EVENTS:
                        self._checkpoint_boundary()
                    if self.interrupted.is_set():
                        self.interrupted.clear()
                        return Arrival(StopReason.INTERRUPTED, self.mark, signo=signal.SIGINT)
                    continue
                break
        finally:
            self._apply_watches(live, [])
        watch = self.watches[stop.watch] if stop.reason == StopReason.WATCH else None
        arrival = Arrival(stop.reason, self.mark, signo=stop.signo, watch=watch)
        if stop.reason == StopReason.STEP or not self.mark.steps:
            self._checkpoint_boundary()
        return arrival

    def condition_changed(self, addr: int) -> None:
        """The debugger gave breakpoint ``addr`` new conditions: try its samples again."""
        self._unsampled.discard(addr)

    def _sampled_condition(self, bps: frozenset[int]) -> int | None:
        """The conditional breakpoint among ``bps`` whose arrivals samples judge: the
        only one, one-task traces only, unless its condition was found to read
        what samples lack."""
        conditional = [addr for addr in bps if self.has_condition(addr)]
        if len(conditional) != 1 or conditional[0] in self._unsampled or self.threaded:
            return None
        return conditional[0]

    def _judged_forward(self, live: ReplaySession, bps: frozenset[int]) -> Arrival | None:
        """The first hit of the one conditional breakpoint among ``bps`` in the rest of
        the live interval, the condition judged on perf samples of its arrivals
        (precise.first_holding) instead of at a stop each: the arrival, or None
        with the live session moved on to the last arrival that did not hold
        (``self.mark`` with it), for the ordinary run to go on from there."""
        addr = self._sampled_condition(bps)
        if addr is None or not live.task.quiet:
            return None
        judged = first_holding(live, addr, lambda arrival: self.breakpoint_holds(arrival, addr),
                               bps - {addr})
        self.mark = self.mark.then(Arrivals(addr, judged.arrivals))
        if judged.kind == "unsampled":
            self._unsampled.add(addr)  # its condition reads what samples lack
        return Arrival(StopReason.BREAKPOINT, self.mark) if judged.kind == "holds" else None

    def _interrupted_elsewhere(self) -> Arrival:
        """An interrupt stopped another process than the debugged one, whose
        instructions are no place of this history: the stop is at the end of
        that slice, its event's boundary."""
        self.interrupted.clear()
        live = self.live
        self._step(live, until_event=True, stop_at_end=False)
        self.mark = Mark(len(self.reader)) if live.end is not None else Mark(live.next_event)
        return Arrival(StopReason.INTERRUPTED, self.mark, signo=signal.SIGINT)

    def _to_debugged_exit(self) -> Arrival:
        """The debugged process's threads are gone (its exit_group carried out, a
        fatal signal taken): the replay goes on to its leader's exit event, the
        others' events on the way run bare, and the process's end is the stop."""
        live = self.live
        last = self.debuggee.exit_event
        while live.end is None and live.next_event < len(self.reader) and (
                last is None or live.next_event <= last):
            self._step(live, until_event=True, stop_at_end=False)
        self.mark = Mark(len(self.reader)) if live.end is not None else Mark(live.next_event)
        return Arrival(StopReason.EXITED, self.mark)

    def _interrupted_here(self, start: Mark) -> Arrival:
        """Name the place an interrupt stopped the live run (an arbitrary instruction
        that no breakpoint count names) by its state, and keep a clone of it."""
        self.interrupted.clear()
        live = self.live
        base = start if live.next_event == start.event else Mark(live.next_event)
        regs = live.process.get_regs()
        self.mark = base.then(ExactState(regs.rip, registers_to_bytes(regs), live.state_digest()))
        self._remember(self.mark, live)
        return Arrival(StopReason.INTERRUPTED, self.mark, signo=signal.SIGINT)

    def reverse_continue(self, thread: int | None = None) -> Arrival:
        """Seek to the last breakpoint or watchpoint hit before now (seed 002's passes);
        with ``thread``, the last hit in that thread."""
        with SearchProgress(self.announce, "reverse search") as progress:
            places = self._counted_places()
            if places and not any(isinstance(segment, ExactState) for segment in self.mark.steps):
                try:
                    return self._reverse_search(places, progress)
                except (PerfUnavailable, _NotCountable):
                    pass  # no counters, or a hit in a handler: a stop at every hit instead
            end = self.mark
            if thread is None:
                found, end = self._judged_reverse(progress)
                if found is not None:
                    return found
            return self._reverse_continue_by_stops(progress, thread, end)

    def _judged_reverse(self, progress: SearchProgress) -> tuple[Arrival | None, Mark]:
        """reverse-continue to the one conditional breakpoint, alone armed, inside the
        present's event interval, its condition judged on perf samples of the
        arrivals there (precise.holding_arrivals) rather than at a stop each: the
        hit, or None and the mark the search by stops goes on from (the
        interval's boundary when this one has none). Only a present at an
        arrival (a breakpoint's stop) is judged this way, and the debugger's
        other breakpoints only if none is arrived at in between."""
        end = self.mark
        addr = self._sampled_condition(frozenset(self.breakpoints))
        if addr is None or self.watches or len(end.steps) != 1 or \
                not isinstance(end.steps[0], Arrivals) or end.event >= len(self.reader):
            return None, end  # a present at its interval's boundary has nothing before it there
        progress.phase = f"judging arrivals at {addr:#x} in event {end.event}"
        step = end.steps[0]
        assert isinstance(step, Arrivals)
        session = self._fresh_at(Mark(end.event))
        try:
            if not session.task.quiet:
                return None, end  # a signal to deliver first: its handler runs first
            hits = holding_arrivals(session, addr,
                                    lambda arrival: self.breakpoint_holds(arrival, addr),
                                    (step.addr, step.count),
                                    frozenset(self.breakpoints) - {addr})
        except (NotSampled, PerfUnavailable):
            self._unsampled.add(addr)
            return None, end
        finally:
            session.close()
        if hits is None:
            return None, end  # another breakpoint's arrival comes between: judged by stops
        if hits:
            return self._arrive_backwards(Mark(end.event, (Arrivals(addr, hits[-1]),)), None), end
        return None, Mark(end.event)

    def _counted_places(self) -> dict[Key, Place] | None:
        """The user's breakpoints and watchpoints as perf counter places, or None when
        they do not fit in the debug registers a counting run has or a breakpoint
        has a condition."""
        if self.threaded or any(self.has_condition(addr) for addr in self.breakpoints):
            return None
        places: dict[Key, Place] = {addr: Place(addr) for addr in sorted(self.breakpoints)}
        places |= {w: w.place for w in self.watches}
        return places if len(places) <= COUNTED_PLACES else None

    def _reverse_continue_by_stops(self, progress: SearchProgress, thread: int | None = None,
                                   end: Mark | None = None) -> Arrival:
        """reverse-continue with a ptrace stop at every hit on the way (no counters),
        from ``end`` (default: the present); with ``thread``, only its hits count
        (an interval is its event's task's)."""
        end = end or self.mark
        boundaries = sorted((e for e in self.boundary_checkpoints if e <= end.event),
                            reverse=True)
        for start in boundaries:
            if self.interrupted.is_set():
                raise KeyboardInterrupt
            progress.phase = f"stopping at every hit from event {start}"
            hits = [hit for hit in self._hits_before(Mark(start), end)
                    if thread is None or self.reader[hit[0].event].task == thread]
            if hits:
                return self._arrive_backwards(*hits[-1])
            end = Mark(start)
        self.seek(self.start_mark)
        return Arrival(StopReason.HISTORY_BEGIN, self.mark)

    # -- reverse search on counters -------------------------------------------------------------
    def _reverse_search(self, places: dict[Key, Place], progress: SearchProgress) -> Arrival:
        """reverse-continue by counting (DESIGN.md, "Reverse search"): one native run
        from a checkpoint to the present counts every hit in each event interval on
        perf counters, then the last hit is reached by one run that stops at it.
        What the count learned stays (a _Walk), so the next hop back over the same
        stretch counts nothing again: it goes to hit n - 1 from a clone nearby."""
        end = self.mark
        armed = (frozenset(self.breakpoints), tuple(self.watches))
        walk = self._walk if self._walk is not None and self._walk.armed == armed else None
        if walk is not None and end in walk.at:
            event, before = walk.at[end]
            known = [(event, before)] + [(e, walk.counts[e]) for e in sorted(walk.counts,
                                                                              reverse=True)
                                         if e < event]
            for e, counts in known:
                if any(counts.values()):
                    return self._hop_to_last(walk, e, counts, places, progress)
            end = Mark(walk.start)
        else:
            walk = _Walk(armed, end.event, {}, {}, set())
        self._walk = walk
        for start in sorted((e for e in self.boundary_checkpoints if e <= end.event),
                            reverse=True):
            progress.phase = f"counting hits from event {start} to {end}"
            intervals = self._count_hits(Mark(start), end, places)
            walk.counts.update(intervals)
            walk.start = min(walk.start, start)
            for event in sorted(intervals, reverse=True):
                if any(intervals[event].values()):
                    return self._hop_to_last(walk, event, intervals[event], places, progress)
            end = Mark(start)
        self.seek(self.start_mark)
        return Arrival(StopReason.HISTORY_BEGIN, self.mark)

    def _hop_to_last(self, walk: _Walk, event: int, counts: dict[Key, int],
                     places: dict[Key, Place], progress: SearchProgress) -> Arrival:
        """Arrive backwards at the last of ``counts`` (hits in ``event``'s interval
        before the present), and note there which hits come before it."""
        if event > 0 and isinstance(self.reader[event - 1], SignalEvent):
            # The interval starts by entering a handler (the signal is delivered at
            # the first resume): no native run from its boundary counts from there.
            raise _NotCountable(event)
        progress.phase = f"going to the last hit in event {event}"
        key = self._latest_key(event, counts, places)
        n = counts[key]
        arrival = self._hop(walk, event, key, n, places)
        # At the latest hit every other key has made all its hits: before it come
        # those, and this key's earlier ones.
        walk.at[arrival.mark] = (event, counts | {key: n - 1})
        return arrival

    def _count_hits(self, start: Mark, end: Mark,
                    places: dict[Key, Place]) -> dict[int, dict[Key, int]]:
        """The hits of each place in each event interval from ``start`` (a boundary)
        to just before ``end``: ``end``'s recipe run once, natively, with a perf
        counter on every place, read at every event.

        Counted as marks name them: an arrival the task stands at when counting
        starts, or at a boundary, or where an Arrivals segment of the recipe stopped,
        was counted already or is named from there, so it is skipped (resume
        flag); ``end``'s own arrival at a breakpoint is not a hit before it,
        while a watchpoint trigger at ``end`` is (it stops after the write).
        """
        rest = remainder(Mark(end.event), end) or ()
        session = self._fresh_at(start)
        counts: dict[int, dict[Key, int]] = {}
        try:
            with contextlib.ExitStack() as stack:
                hardware = session.task.hardware
                counters = {key: stack.enter_context(hardware.counter(place))
                            for key, place in places.items()}
                seen = dict.fromkeys(counters, 0)

                def interval(event: int) -> None:
                    now = {key: counter.count for key, counter in counters.items()}
                    counts[event] = {key: now[key] - seen[key] for key in now}
                    seen.update(now)

                self._skip_arrival_here(session, places)
                while session.next_event < end.event:
                    event = session.next_event
                    self._step(session, until_event=True, stop_at_end=False)
                    interval(event)
                    self._skip_arrival_here(session, places)
                if end.event not in self.boundary_checkpoints and session.end is None \
                        and session.task.quiet:
                    # The hops that follow run from this boundary, not from the start
                    # of the count: a forward run takes no checkpoint inside its stop's
                    # interval, which is where reverse searches begin.
                    self._keep_boundary(end.event, session)
                cur = Mark(end.event)
                for segment in rest:
                    cur = self._run_segment(session, cur, segment, frozenset(), [], None)
                    if isinstance(segment, Arrivals):
                        self._skip_arrival_here(session, places)
                interval(end.event)
        finally:
            session.close()
        if rest and isinstance(rest[-1], Arrivals) and rest[-1].addr in places:
            counts[end.event][rest[-1].addr] -= 1
        return counts

    @staticmethod
    def _skip_arrival_here(session: ReplaySession, places: dict[Key, Place]) -> None:
        """Let the next resume execute the instruction the task stands at without
        counting an arrival there (resume flag): it is not a hit after this place."""
        if session.end is not None or not session.task.quiet:
            return
        regs = session.process.get_regs()
        if any(p.executes and p.addr == regs.rip for p in places.values()):
            regs.eflags |= RESUME_FLAG
            session.process.set_regs(regs)

    def _latest_key(self, event: int, counts: dict[Key, int], places: dict[Key, Place]) -> Key:
        """Of the keys with hits in ``event``'s interval, the one whose last hit is the
        latest: at that hit, every other key has made all its hits."""
        keys = [key for key, n in counts.items() if n]
        if len(keys) == 1:
            return keys[0]
        for key in keys:
            others = [places[k] for k in keys if k != key]
            session = self._fresh_at(Mark(event))
            try:
                made = session.task.run_counting(places[key], counts[key], others)
            finally:
                session.close()
            if all(made[places[k]] == counts[k] for k in keys if k != key):
                return key
        raise RuntimeError(f"no last hit among {keys} in event {event}")

    def _hop(self, walk: _Walk, event: int, key: Key, n: int,
             places: dict[Key, Place]) -> Arrival:
        """Arrive backwards at hit ``n`` of ``key`` in ``event``'s interval."""
        if (event, key) not in walk.cloned:
            if n > 1:  # with one hit, no later hop in this interval starts from a clone
                self._clone_along(event, key, n, places[key])
            walk.cloned.add((event, key))
        hit = Mark(event, (hits_of(key, n),))
        if not isinstance(key, Watch):
            self.seek(hit)
            return Arrival(StopReason.BREAKPOINT, self.mark)
        # Going backwards, gdb expects to stop before the write, with the value it
        # had then: one instruction before the trigger.
        before = self._before_access(event, key, n, places[key])
        kept = self.recent.pop(before, None)  # left there by the writer's trial
        if kept is not None:
            self.live.close()
            self.live, self.mark = kept, before
        else:
            self.seek(before)
        return Arrival(StopReason.WATCH, self.mark, watch=key)

    def _clone_along(self, event: int, key: Key, n: int, place: Place) -> None:
        """One native run from ``event``'s boundary to hit ``n`` of ``key`` that leaves
        a clone every n / CLONES_A_WALK hits: the hops back through those hits
        start from one of them, a short run away."""
        every = max(1, -(-n // CLONES_A_WALK))
        session = self._fresh_at(Mark(event))

        def pause(_: Place, made: int) -> None:
            clone = session.clone()
            if place.executes:
                regs = clone.process.get_regs()
                regs.eflags &= ~RESUME_FLAG  # stopped between its debug trap and the instruction
                clone.process.set_regs(regs)
            self._keep_walk_clone(Mark(event, (hits_of(key, made),)), clone)

        try:
            session.task.run_counting(place, n, [], {place: every}, pause)
            if Mark(event, (hits_of(key, n),)) not in self.walk_clones:  # a pause's own
                self._keep_walk_clone(Mark(event, (hits_of(key, n),)), session.clone())
        finally:
            session.close()

    def _keep_walk_clone(self, mark: Mark, session: ReplaySession) -> None:
        if mark in self.walk_clones:
            self.walk_clones.pop(mark).close()
        self.walk_clones[mark] = session
        while len(self.walk_clones) > MAX_WALK_CLONES:
            self.walk_clones.popitem(last=False)[1].close()

    def _before_access(self, event: int, key: Key, n: int, place: Place) -> Mark:
        """The mark one instruction before access ``n`` of the watched ``place`` in
        ``event``'s interval: the instruction that made it.

        A data breakpoint traps just after that instruction, whose address is one
        of a few candidates (replay/flow.py): the run from a clone before the
        access to it counts their arrivals, and the candidate whose last arrival,
        stepped once, gives exactly the trigger's registers is the one (kept by
        the pc after it, so the next hop tries it first). Without one, the
        instructions are counted by single-stepping."""
        hit = Mark(event, (hits_of(key, n),))
        source_mark, source = self._source_for(Mark(event, (hits_of(key, n - 1),)) if n > 1
                                               else Mark(event))
        if source_mark.event != event:
            source_mark, source = Mark(event), self._fresh_at(Mark(event))
            self._remember_clone(source_mark, source)
        # The run to the access counts the arrivals at the instruction that made the
        # previous hop's access: in a walk through a loop, most often this one's too.
        guess = self._last_writer.get(key)
        at_hit = source.clone()
        try:
            made = at_hit.task.run_counting(place, n - self._hits_in(source_mark, key),
                                            [Place(guess)] if guess is not None else [])
            regs = at_hit.process.get_regs()
            regs.eflags &= ~RESUME_FLAG
            wanted = State(registers_to_bytes(regs), b"", regs.rsp, regs.rip)
            tried = []
            if guess is not None and made[Place(guess)] > 0:
                before = self._writer_at(source_mark, guess, made[Place(guess)], key, wanted)
                if before is not None:
                    return before
                tried.append(guess)
            known = self._writers.get(wanted.rip)
            # The writer found for this pc before first: decoding costs more than a hop.
            for decode in (False, True):
                if decode:
                    candidates = [p for p in self._candidates(at_hit, wanted.rip, wanted)
                                  if p != known]
                else:
                    candidates = [known] if known is not None else []
                candidates = [p for p in candidates if p not in tried]
                before = self._writer_among(candidates, source_mark, source, key, n, place,
                                            wanted)
                if before is not None:
                    return before
        finally:
            at_hit.close()
        return self._instructions_before(hit, 1)

    def _writer_among(self, candidates: list[int], source_mark: Mark, source: ReplaySession,
                      key: Key, n: int, place: Place, wanted: State) -> Mark | None:
        """Of ``candidates``, the instruction whose last arrival before access ``n``
        (counted from ``source``), stepped once, gives ``wanted``'s registers: the
        mark of that arrival."""
        if candidates:
            with source.clone() as runner:
                made = runner.task.run_counting(place, n - self._hits_in(source_mark, key),
                                           [Place(p) for p in candidates])
            for pc in candidates:
                if made[Place(pc)] > 0:
                    before = self._writer_at(source_mark, pc, made[Place(pc)], key, wanted)
                    if before is not None:
                        return before
        return None

    def _writer_at(self, source_mark: Mark, pc: int, count: int, key: Key,
                   wanted: State) -> Mark | None:
        """``source_mark`` then ``count`` arrivals at ``pc``, if one step from there
        gives ``wanted``'s registers (``pc`` made the access); kept for the seek."""
        before = source_mark.then(Arrivals(pc, count))
        with self._fresh_at(before) as trial:
            self._remember(before, trial)  # the seek there, if this is the one
            trial.task.single_steps(1)
            regs = trial.process.get_regs()
            regs.eflags &= ~RESUME_FLAG
            if registers_to_bytes(regs) != wanted.registers:
                return None
        self._writers[wanted.rip] = pc
        self._last_writer[key] = pc
        return before

    @staticmethod
    def _hits_in(mark: Mark, key: Key) -> int:
        """The hits of ``key`` that ``mark`` (a boundary, or one hit segment) names."""
        first = mark.steps[0] if mark.steps else None
        return first.count if isinstance(first, Counted) and first.key == key else 0

    def _hits_before(self, start: Mark, end: Mark) -> list[Hit]:
        """The user's breakpoint and watchpoint hits from ``start`` (a boundary
        with a checkpoint) to just before ``end``, in order.

        A scan runs ``end``'s recipe with the breakpoints armed. When the recipe
        passes a waypoint (an ExactState segment: an arrival in one exact state at a
        pc the long run it came from passed millions of times), the scan does
        not go through it: hits after the waypoint come from its clone, and the
        hits before it are those from ``start`` to the next event's stop less as
        many as the clone meets on its way there.
        """
        source = (start, self.boundary_checkpoints[start.event])
        states = [i for i, segment in enumerate(end.steps) if isinstance(segment, ExactState)]
        waypoint = Mark(end.event, end.steps[:states[-1] + 1]) if states else None
        clone = self.waypoints.get(waypoint) or self.recent.get(waypoint) \
            if waypoint is not None else None
        hits: list[Hit] = []
        if waypoint is None or clone is None or end.event >= len(self.reader):
            self._fresh_at(end, source=source, hits=hits).close()
            return hits
        self._fresh_at(end, source=(waypoint, clone), hits=hits).close()
        if hits:
            return hits
        beyond: list[Hit] = []
        self._fresh_at(waypoint.then(Reach()), source=(waypoint, clone), hits=beyond).close()
        self._fresh_at(Mark(end.event, (Reach(),)), source=source, hits=hits).close()
        del hits[len(hits) - len(beyond):]
        if hits and self._state_at(hits[-1][0]).same(self._state_of(clone)):
            hits.pop()  # the hit is the waypoint itself, which its clone does not meet
        return hits

    def _arrive_backwards(self, hit: Mark, watch: Watch | None) -> Arrival:
        if watch is not None:
            # Going backwards, gdb expects to stop before the write, with the
            # value it had then: one instruction before the trigger.
            self.seek(self._instructions_before(hit, 1))
            return Arrival(StopReason.WATCH, self.mark, watch=watch)
        self.seek(hit)
        return Arrival(StopReason.BREAKPOINT, self.mark)

    def reverse_step(self, count: int = 1) -> Arrival:
        """Go back ``count`` instructions in one seek (reverse-stepi, reverse-roll N)."""
        if self.mark == self.start_mark:
            return Arrival(StopReason.HISTORY_BEGIN, self.mark)
        target = self._instructions_before(self.mark, count)
        self.seek(target)
        if target == self.start_mark:
            return Arrival(StopReason.HISTORY_BEGIN, self.mark)
        return Arrival(StopReason.STEP, self.mark)

    def reverse_step_thread(self, thread: int) -> Arrival:
        """reverse-stepi in one thread: back to the place before the last instruction
        ``thread`` executed, across the slices of the other threads in between
        (a thread not alive here: the program's previous instruction)."""
        if thread not in dict(self.threads()):
            return self.reverse_step(1)
        if self.mark == self.start_mark:
            return Arrival(StopReason.HISTORY_BEGIN, self.mark)
        target = self._previous_instruction_of(thread, self.mark)
        if target is None:
            return Arrival(StopReason.HISTORY_BEGIN, self.mark)
        self.seek(target)
        if target == self.start_mark:
            return Arrival(StopReason.HISTORY_BEGIN, self.mark)
        return Arrival(StopReason.STEP, self.mark)

    def _previous_instruction_of(self, thread: int, end: Mark) -> Mark | None:
        """The mark before ``thread``'s last instruction before ``end``; None when the
        thread has run none since it was made.

        Each event interval is the instructions of its event's task (the trace is a
        serial schedule), so the others' slices are skipped whole: from the
        boundary of an interval not the thread's, its instruction before is its
        latest event (a syscall, an rdtsc), reached. A call it was parked in
        (its SyscallEntryEvent, completed later by its SyscallEvent) is one
        instruction: the entry's state and the return's reached stop show the
        same thread at the same syscall.
        """
        reader = self.reader

        def latest_before(event: int) -> int | None:
            return next((k for k in range(min(event, len(reader)) - 1,
                                          self.start_mark.event - 1, -1)
                         if reader[k].task == thread), None)

        def completes_parked_call(event: int) -> bool:
            before = latest_before(event)
            return isinstance(reader[event], SyscallEvent) and before is not None and \
                isinstance(reader[before], SyscallEntryEvent)

        cur = end
        at_return = end.steps in ((), (Reach(),)) and end.event < len(reader) and \
            reader[end.event].task == thread and completes_parked_call(end.event)
        while cur != self.start_mark:
            if cur.steps and cur.event < len(reader) and reader[cur.event].task == thread:
                before = self._instructions_before(cur, 1)
                if before.event == cur.event:
                    return before
            earlier = latest_before(cur.event)
            if earlier is None:
                return self.start_mark
            event = reader[earlier]
            if isinstance(event, CloneEvent):
                return None  # made here: nothing of it before
            reached = Mark(earlier, (Reach(),))
            if isinstance(event, SyscallEntryEvent) and at_return:
                cur, at_return = reached, False  # the same call: what came before it
            elif isinstance(event, SignalEvent | PreemptEvent):
                cur, at_return = reached, False  # no instruction: the one before it
            elif completes_parked_call(earlier):
                # Its boundary already stands at the call: the parked stop is the
                # one the SyscallEvent carries out, no stop of its own to reach.
                return Mark(earlier)
            else:
                return reached
        return self.start_mark

    def _instructions_before(self, end: Mark, count: int) -> Mark:
        """The mark ``count`` instructions before ``end`` (the start, if fewer)."""
        remaining = count
        back = 1  # arrivals back, when end is the n-th arrival at a place
        closed_in = False
        ended = len(self.reader)
        if end.event >= ended and ended >= 2 and isinstance(self.reader[ended - 1], ExitEvent):
            # After the recorded exit no state is left, not even at the exit event's
            # boundary: the step back from there is to the event that ended the
            # program (exit_group, a fatal signal), as gdb showed it before the exit.
            remaining -= 1
            end = Mark(ended - 2, (Reach(),))
            if remaining == 0:
                return end
        while True:
            end = self._by_arrivals(end)
            if end in self.links:
                # A waypoint: only its state names it, so no count reaches it from
                # an earlier mark; the step back across it is found from its parent.
                before = self._previous_across(end)
                if before is not None:
                    remaining -= 1
                    if remaining == 0:
                        return before
                    end, back, closed_in = before, 1, False
                    continue
            anchor = self._anchor_before(end, back)
            rest = remainder(anchor, end)
            assert rest is not None
            long_stretch = not closed_in and back == 1 and len(rest) == 1 and \
                self._closable(Mark(end.event, rest))
            # From a waypoint the stretch is a slice of native running: count no step.
            limit = 0 if anchor in self.links else STEPS_BEFORE_CLOSING_IN
            distance = self._count_steps(anchor, end, limit=limit if long_stretch else None)
            if distance is None:
                # Far from every known mark, inside a long native run: narrow it down.
                closed_in = True
                end, before = self._close_in(end)
                if before is not None:
                    remaining -= 1
                    if remaining == 0:
                        return before
                    end, closed_in = before, False
                continue
            if distance >= remaining:
                return anchor.then(Steps(distance - remaining))
            remaining -= distance
            back = 1
            if len(rest) == 1 and isinstance(rest[0], Arrivals) and \
                    rest[0].same_kind(anchor.last or Reach()):
                # Counted back over rest[0].count arrivals of a loop: aim the next
                # anchor at enough arrivals for what remains, in one count.
                per_arrival = max(1, distance // rest[0].count)
                back = -(-remaining // per_arrival) + 1
            if anchor.steps:
                end = anchor
                continue
            if anchor.event <= self.start_mark.event:
                return self.start_mark
            # The instruction before a boundary is the previous event itself (the
            # syscall, the rdtsc); the next pass names the place before it in
            # steps, as forward stepping reaches it. A signal is no instruction:
            # its stop and the place it was delivered at are one state. Another
            # process's slices are no part of this history: skipped whole.
            previous = anchor.event - 1
            while previous >= self.start_mark.event and not self._debugged_event(previous):
                previous -= 1
            if previous < self.start_mark.event:
                return self.start_mark
            if not isinstance(self.reader[previous], SignalEvent):
                remaining -= 1
            end = Mark(previous, (Reach(),))

    def _by_arrivals(self, end: Mark) -> Mark:
        """``end``, or when it is the stop of a signal reached at a precise state
        after n arrivals at its pc (replay/precise.py), the n-th arrival there:
        the same state, named so that counting back from it takes a few passes
        of the loop, not every instruction since the boundary."""
        if end.steps != (Reach(),) or end.event >= len(self.reader):
            return end
        event = self.reader[end.event]
        if not (isinstance(event, SignalEvent) and event.where == "precise" and event.regs):
            return end
        arrivals = self.live.precise.arrivals(end.event)
        if not arrivals:
            return end
        return Mark(end.event, (Arrivals(registers_from_bytes(event.regs).rip, arrivals),))

    def _anchor_before(self, end: Mark, back: int = 1) -> Mark:
        """The latest mark known to be on the way to ``end`` (not ``end`` itself).

        Candidates: the boundary, every shorter recipe that ``end`` extends,
        every kept clone on the way, and, when ``end``
        is the n-th arrival at a breakpoint, the (n-back)-th arrival: in a loop
        the instructions from there to ``end`` are ``back`` iterations, however
        long the interval has been running.
        """
        candidates = [Mark(end.event, end.steps[:i]) for i in range(max(1, len(end.steps)))]
        candidates += [m for m, _ in self._clones_on_the_way(end) if m != end]
        last = end.last
        if isinstance(last, Arrivals) and last.count > back:
            candidates.append(Mark(end.event, end.steps[:-1] + (last.with_count(last.count - back),)))
        return self._latest(candidates)

    @staticmethod
    def _in_state(session: ReplaySession, segment: ExactState) -> bool:
        regs = session.process.get_regs()
        return regs.rip == segment.pc and registers_to_bytes(regs) == segment.registers and \
            session.state_digest() == segment.digest

    def _count_steps(self, anchor: Mark, end: Mark, limit: int | None = None,
                     leave_clones: bool = True) -> int | None:
        """Instructions from ``anchor`` to ``end``, by single-stepping a fresh clone
        (None if there are more than ``limit``).

        Clones are left behind every CLONE_EVERY_STEPS instructions (unless not
        ``leave_clones``), so the next reverse step near here starts close by
        instead of at the anchor.
        """
        rest = remainder(anchor, end)
        assert rest is not None
        if not rest:
            return 0
        session = self._fresh_at(anchor)

        def remember(mark: Mark, session: ReplaySession) -> None:
            if leave_clones:
                self._remember(mark, session)

        remember(anchor, session)  # the next step back starts from here
        steps = 0
        cur = anchor
        try:
            for segment in rest:
                if isinstance(segment, Triggers):
                    self._apply_watches(session, [segment.watch])
                arrivals, wanted = 0, (segment.count if isinstance(segment, Counted) else 1)
                while arrivals < wanted:
                    if limit is not None and steps >= limit:
                        return None
                    if isinstance(segment, Steps | Arrivals) and session.task.quiet:
                        # Plain instructions up to the goal: the fast stepper.
                        chunk = CLONE_EVERY_STEPS - steps % CLONE_EVERY_STEPS
                        if isinstance(segment, Steps):
                            chunk = min(chunk, wanted - arrivals)
                        done, arrived = session.task.single_steps(
                            chunk, stop_at=segment.addr if isinstance(segment, Arrivals) else None)
                        steps += done
                        cur = cur.then(Steps(done))
                        arrivals += done if isinstance(segment, Steps) else int(arrived)
                        if steps % CLONE_EVERY_STEPS == 0:
                            remember(cur, session)
                        continue
                    stop = self._step(session, step=True,
                                      stop_before_event=isinstance(segment, Reach),
                                      stop_at_end=False)
                    if stop.reason == StopReason.EXITED:
                        raise RuntimeError(f"counting instructions from {anchor} to {end} ran "
                                           "past the end of the program")
                    if stop.reason == StopReason.REACHED:
                        break  # at the event's stop: no instruction was executed
                    steps += 1
                    cur = cur.then(Steps(1))
                    if steps % CLONE_EVERY_STEPS == 0:
                        remember(cur, session)
                    if isinstance(segment, Steps) or (
                            isinstance(segment, Triggers) and stop.reason == StopReason.WATCH) or (
                            isinstance(segment, Arrivals)
                            and session.process.get_regs().rip == segment.addr) or (
                            isinstance(segment, ExactState) and self._in_state(session, segment)):
                        arrivals += 1
                self._apply_watches(session, [])
        finally:
            session.close()
        return steps

    # -- closing in on a place far inside a long native run ------------------------------------
    def _closable(self, end: Mark) -> bool:
        """Whether ``end`` ends in a segment a native run can close in on: the n-th
        arrival at a place, or the stop of a syscall, rdtsc or fault."""
        if not isinstance(end.last, Arrivals | Reach):
            return False
        if isinstance(end.last, Arrivals):
            return True
        event = self.reader[end.event] if end.event < len(self.reader) else None
        return isinstance(event, SyscallEvent | RdtscEvent) or (
            isinstance(event, SignalEvent) and event.where == "sync"
            and event.signo != signal.SIGTRAP)

    @staticmethod
    def _goal(end: Mark) -> tuple[int | None, int]:
        """(place, arrivals) of ``end``'s last segment; (None, 0) for an event's stop."""
        last = end.last
        return (last.addr, last.count) if isinstance(last, Arrivals) else (None, 0)

    @staticmethod
    def _toward(mark: Mark, addr: int | None, count: int) -> Mark:
        return mark.then(Arrivals(addr, count)) if addr is not None else mark.then(Reach())

    def _close_in(self, end: Mark) -> tuple[Mark, Mark | None]:
        """For ``end``, the n-th arrival at a place or an event's stop after a long
        native run: a waypoint shortly before it, and the mark one instruction
        before ``end`` if that instruction can be identified.

        Returns (``end`` renamed from the waypoint, the mark before or None).
        The previous instruction is one of a few candidate addresses
        (replay/flow.py): their arrivals from the waypoint to ``end`` are counted
        on perf counters, and the candidate whose last arrival, stepped once,
        gives exactly ``end``'s state is the one. This only saves time: when it
        cannot be done (no perf counters, an unexpected stop), the caller counts
        single steps as before.
        """
        addr, count = self._goal(end)
        wanted = self._state_at(end)
        # At a syscall's stop the pc is past the 2-byte syscall instruction, whose
        # arrival is the place before the stop; a fault or rdtsc stops before it.
        syscall = addr is None and isinstance(self.reader[end.event], SyscallEvent)
        pc = wanted.rip - 2 if syscall else wanted.rip
        at_end = self.live if end == self.mark else self._fresh_at(end)
        try:
            candidates = self._candidates(at_end, pc, wanted)
        finally:
            if at_end is not self.live:
                at_end.close()

        def is_end(session: ReplaySession) -> bool:
            if syscall:
                return session.process.get_regs().rip == pc
            return self._state_of(session).same(wanted)

        base = Mark(end.event, end.steps[:-1])
        try:
            # From a waypoint the run is already short: count from there again.
            waypoint, made = (base, 0) if base in self.links else self._waypoint_before(end)
            renamed = self._toward(waypoint, addr, count - made)
            before = None
            if candidates:
                counts = self._count_arrivals(waypoint, renamed, candidates, keep=1)
                before = self._first_before(waypoint, counts, is_end)
        except (PerfUnavailable, TraceeError):
            return end, None
        return renamed, before

    @staticmethod
    def _candidates(session: ReplaySession, pc: int, state: State) -> list[int]:
        """Up to three likely addresses of the instruction before ``state`` (at ``pc``)."""
        read = session.process.read
        try:
            top = int.from_bytes(read(state.rsp, 8), "little")
        except OSError:
            top = 0
        return [p for p in predecessors(read, pc, top) if p != pc][:3]

    def _count_arrivals(self, start: Mark, end: Mark, addrs: list[int], keep: int,
                        less: dict[int, int] | None = None) -> dict[int, int]:
        """Arrivals at each of ``addrs`` from ``start`` to ``end`` (``start`` then
        one Arrivals or Reach segment) in mark terms (not counting ``start``'s own position),
        less ``less``, counted on perf counters in one run.

        The run stops at every ARRIVALS_BETWEEN_CLONES-th arrival to clone; of
        those within the counted stretch, the last ``keep`` at each address are
        kept among the recent clones (named from ``start`` by their count), so
        that later steps back through a loop start close by.
        """
        session = self._fresh_at(start)
        start_pc = session.process.get_regs().rip
        kept: dict[int, list[tuple[int, ReplaySession]]] = {a: [] for a in addrs}

        def pause(pc: int, arrivals: int) -> None:
            clone = session.clone()
            regs = clone.process.get_regs()
            regs.eflags &= ~RESUME_FLAG  # stopped between its debug trap and the instruction
            clone.process.set_regs(regs)
            kept[pc].append((arrivals - (pc == start_pc), clone))
            if len(kept[pc]) > keep:
                kept[pc].pop(0)[1].close()

        try:
            addr, count = self._goal(end)
            raw = session.task.run_to_arrival_counting(
                addr, count, addrs, ARRIVALS_BETWEEN_CLONES if keep else NEVER, pause)
        except BaseException:
            for clones in kept.values():
                for _, clone in clones:
                    clone.close()
            raise
        finally:
            session.close()
        counts = {a: raw[a] - (a == start_pc) - (less or {}).get(a, 0) for a in addrs}
        for a, clones in kept.items():
            for arrivals, clone in clones:
                if 0 < arrivals <= counts[a]:
                    self._remember_clone(start.then(Arrivals(a, arrivals)), clone)
                else:
                    clone.close()
        return counts

    def _first_before(self, start: Mark, arrivals: dict[int, int],
                      is_end: Callable[[ReplaySession], bool]) -> Mark | None:
        """Of ``start`` + the n-th arrival at pc for each (pc, n) of ``arrivals``,
        the one from which a single step arrives where ``is_end`` says."""
        for pc, n in arrivals.items():
            if n <= 0:
                continue
            before = start.then(Arrivals(pc, n))
            session = self._fresh_at(before)
            try:
                self._remember(before, session)
                session.task.single_steps(1)
                if is_end(session):
                    return before
            finally:
                session.close()
        return None

    def _remember_clone(self, mark: Mark, session: ReplaySession) -> None:
        """Keep ``session`` itself (a clone at ``mark``) among the recent ones."""
        if mark in self.recent:
            self.recent.pop(mark).close()
        self.recent[mark] = session
        while len(self.recent) > MAX_RECENT_CLONES:
            self.recent.popitem(last=False)[1].close()

    def _waypoint_before(self, end: Mark) -> tuple[Mark, int]:
        """A waypoint a short native run before ``end`` (the n-th arrival at a
        place), and the arrivals at that place before it.

        DESIGN.md, "Long event intervals": run natively from the segment's start,
        stopping every few milliseconds to clone; from the last clone before
        ``end`` again with shorter slices, and once more. The last two clones of
        each pass are kept, each named by its state after the arrivals at
        ``end``'s place so far and linked to the one before it (its parent): a
        step back across a waypoint is found from its parent
        (``_previous_across``), one slice back. Without any clone the segment's
        start is the waypoint.
        """
        addr, count = self._goal(end)
        base = Mark(end.event, end.steps[:-1])
        start_mark, start, made = base, self._fresh_at(base), 0
        try:
            for level in range(WAYPOINT_LEVELS):
                runner = start.clone()
                latest: list[tuple[ReplaySession, int]] = []
                origin = registers_to_bytes(start.process.get_regs())

                def pause(arrivals: int, runner: ReplaySession = runner, made: int = made,
                          latest: list[tuple[ReplaySession, int]] = latest,
                          origin: bytes = origin) -> None:
                    regs = runner.process.get_regs()
                    if regs.eflags & RESUME_FLAG or regs.rip == addr:
                        return  # between a debug trap and its instruction: not a state to name
                    if registers_to_bytes(regs) == origin:
                        return  # stopped before it ran at all
                    if len(latest) == WAYPOINTS_A_LEVEL:
                        latest.pop(0)[0].close()
                    latest.append((runner.clone(), made + arrivals))

                try:
                    runner.task.run_to_arrival_in_slices(addr, count - made,
                                                    WAYPOINT_FIRST_SLICE / 6 ** level, pause)
                finally:
                    runner.close()
                for clone, arrivals in latest:
                    regs = clone.process.get_regs()
                    mark = (base.then(Arrivals(addr, arrivals)) if addr is not None else base).then(
                        ExactState(regs.rip, registers_to_bytes(regs), clone.state_digest()))
                    clone = self._keep_waypoint(mark, clone, Link(start_mark, count - made,
                                                                  count - arrivals, addr))
                    if start_mark == base:
                        start.close()
                    start_mark, start, made = mark, clone, arrivals
        finally:
            if start_mark == base:
                start.close()
        return start_mark, made

    def _keep_waypoint(self, mark: Mark, session: ReplaySession, link: Link) -> ReplaySession:
        """Keep ``session`` as the waypoint ``mark``; returns the one kept."""
        if mark in self.waypoints:  # found again: the same state
            session.close()
            return self.waypoints[mark]
        self.waypoints[mark] = session
        self.links[mark] = link
        while len(self.waypoints) > MAX_WAYPOINTS:
            old, clone = self.waypoints.popitem(last=False)
            clone.close()
            self.links.pop(old, None)
        return session

    def _previous_across(self, waypoint: Mark) -> Mark | None:
        """The mark one instruction before ``waypoint``, named from its parent.

        The arrivals at a candidate between the parent and the waypoint are
        those from the parent to the place the waypoint was found on the way to,
        less those from the waypoint to there: two counting runs, and no need to
        stop at the waypoint, which only its state names.
        """
        link = self.links.get(waypoint)
        clone = self.waypoints.get(waypoint)
        if link is None or clone is None:
            return None
        wanted = self._state_of(clone)
        candidates = [p for p in self._candidates(clone, wanted.rip, wanted) if p != link.addr]
        if not candidates:
            return None
        try:
            after = self._count_arrivals(
                waypoint, self._toward(waypoint, link.addr, link.from_waypoint), candidates, 0)
            # Counts from the parent include an arrival at the waypoint's own pc.
            after = {pc: n + (pc == wanted.rip) for pc, n in after.items()}
            keep = max(after.values()) // ARRIVALS_BETWEEN_CLONES + 4
            before = self._count_arrivals(
                link.parent, self._toward(link.parent, link.addr, link.from_parent), candidates,
                keep, less=after)
        except (PerfUnavailable, TraceeError):
            return None
        return self._first_before(link.parent, before,
                                  lambda session: self._state_of(session).same(wanted))

    @staticmethod
    def _state_of(session: ReplaySession) -> State:
        regs = session.process.get_regs()
        regs.eflags &= ~RESUME_FLAG  # set at a fault's stop, clear after a step onto it
        return State(registers_to_bytes(regs), session.state_digest(resume_flag=False),
                     regs.rsp, regs.rip)

    def _state_at(self, mark: Mark) -> State:
        if mark == self.mark and self.live.started:
            return self._state_of(self.live)
        session = self._fresh_at(mark)
        try:
            return self._state_of(session)
        finally:
            session.close()

    # -- canonical positions --------------------------------------------------------------------
    def position(self) -> str:
        """The present as a canonical position (marks.Position): "event E, instruction
        I" among the first WHEN_COUNT_LIMIT instructions after event E's boundary,
        else "event E, arrival N at PC", N counted on a perf counter at the pc in one
        native run (or none: what an earlier count left at a prefix of the recipe is
        reused). One moment has one position, whichever recipe reached it. Without
        counters, or for a recipe they cannot follow, the instructions are counted
        by single-stepping up to WHEN_COUNT_LIMIT, and beyond it the mark's own
        recipe is shown, which names the moment but is not canonical."""
        mark = self.mark
        if self.live.end is not None:
            return f"the end (after event {len(self.reader) - 1})"
        if mark not in self.positions:
            self.positions[mark] = self._position_of(mark)
            if len(self.positions) > MAX_POSITIONS:
                del self.positions[next(iter(self.positions))]
        return str(self.positions[mark])

    def _position_of(self, mark: Mark) -> Position | str:
        """The canonical position of ``mark``, the present."""
        event = mark.event
        if not mark.steps:
            return Position(event, instruction=0)
        try:
            if mark.last == Reach():
                instruction = self._first_instructions(event).reach()
                return Position(event, instruction=instruction, at_stop=instruction is None)
            if any(isinstance(s, ExactState) for s in mark.steps):
                # An exact state is found by a stop at every arrival at its pc, which
                # may be millions: no count is made (see below).
                raise _NotCountable(event)
            steps = [s.count for s in mark.steps if isinstance(s, Steps)]
            if len(steps) == len(mark.steps) and sum(steps) <= WHEN_COUNT_LIMIT:
                return Position(event, instruction=sum(steps))
            pc = int(self.live.process.get_regs().rip)
            arrival = self._arrivals_to(mark, pc)
            instruction = self._first_instructions(event).instruction_of(pc, arrival) \
                if arrival <= WHEN_COUNT_LIMIT else None
            return Position(event, instruction=instruction, pc=pc, arrival=arrival)
        except (PerfUnavailable, _NotCountable, TraceeError):
            pass
        try:
            count = self._count_steps(Mark(event), mark, limit=WHEN_COUNT_LIMIT,
                                      leave_clones=False)
        except TraceeError:
            count = None
        if count is None:
            return f"{mark} (more than {WHEN_COUNT_LIMIT} instructions after event {event}: " \
                   "not counted)"
        return Position(event, instruction=count)

    def _arrivals_to(self, mark: Mark, pc: int) -> int:
        """The arrivals at ``pc`` from ``mark``'s boundary to ``mark`` (which stands
        at ``pc``), its own included, counted on a perf counter.

        Counts at the prefixes of recipes are kept (``_arrivals_known``): a hop of a
        walk is a clone's mark and one Arrivals segment at the writing
        instruction, so its count is the clone's plus that segment's, and the run
        from the boundary to the clone is made once. Every count is of
        arrivals after the boundary up to and including the prefix's own moment
        (an arrival when it stands at ``pc``)."""
        steps = mark.steps
        known, start = 0, 0
        for i in range(len(steps) - 1, 0, -1):
            kept = self._arrivals_known.get((Mark(mark.event, steps[:i]), pc))
            if kept is not None:
                known, start = kept, i
                break
        rest = steps[start:]
        if len(rest) == 1 and isinstance(rest[0], Arrivals) and rest[0].addr == pc:
            return known + rest[0].count
        cur = Mark(mark.event, steps[:start])
        session = self._fresh_at(cur)
        try:
            if not session.task.quiet:
                raise _NotCountable(mark.event)  # a signal to deliver first: counted by steps
            for segment in rest:
                # The arrival this place stands at is counted already: the next resume
                # executes it without a new one (resume flag).
                regs = session.process.get_regs()
                if regs.rip == pc:
                    regs.eflags |= RESUME_FLAG
                    session.process.set_regs(regs)
                with session.task.hardware.counter(Place(pc)) as counter:
                    cur = self._run_segment(session, cur, segment, frozenset(), [], None)
                    known += counter.count
                arrived = isinstance(segment, Arrivals) and segment.addr == pc
                if not arrived and session.process.get_regs().rip == pc:
                    known += 1  # stopped before executing it: not counted yet
                self._arrivals_known[(cur, pc)] = known
                while len(self._arrivals_known) > MAX_ARRIVALS_KNOWN:
                    del self._arrivals_known[next(iter(self._arrivals_known))]
        finally:
            session.close()
        return known

    def _first_instructions(self, event: int) -> _FirstInstructions:
        """The first instructions of ``event``'s interval, stepped as far as asked."""
        first = self._first.pop(event, None)
        if first is None:
            first = _FirstInstructions(self._fresh_at(Mark(event)), self._step)
        self._first[event] = first
        while len(self._first) > MAX_FIRST_INSTRUCTIONS:
            self._first.pop(next(iter(self._first))).close()
        return first

    # -- what the debugger sees ---------------------------------------------------------------
    # The server reads the replay through these, never through a live task: the
    # process behind the present changes with every seek.
    @property
    def end(self) -> ReplayEnd | None:
        """How the debugged program ended, once the replay has carried out its end
        (its leader's exit event, while other processes may go on)."""
        debuggee = self.debuggee
        if debuggee.exit_event is not None and self.live.next_event > debuggee.exit_event:
            event = self.reader[debuggee.exit_event]
            assert isinstance(event, ExitEvent)
            return ReplayEnd(event.status, event.signo)
        return self.live.end

    @property
    def notes(self) -> list[str]:
        """One line for each recorded state restored rather than reached (PreciseStates)."""
        return self.live.precise.notes

    def _alive(self) -> bool:
        return self.live.started and self.end is None and self.live.debugged_alive() and \
            self.live.present.tracee.alive

    @property
    def thread(self) -> int:
        """The recorded tid of the thread the replay is in (whose interval it stands in,
        or at a boundary the next event's), or when that is another process's, of
        the debugged process's first live thread."""
        return self.live.present.recorded_tid

    def threads(self) -> list[tuple[int, str]]:
        """The threads alive at the present, in creation order: (recorded tid, name)."""
        if not self._alive():
            return []
        live = self.live
        return [(task.recorded_tid, task.name) for task in live.live_tasks()
                if live.is_debugged(task)]

    def registers(self, thread: int | None = None) -> tuple[bytes, bytes] | None:
        """The registers (general, XSAVE area) of ``thread`` (default: the present
        one) at the present; None with no live process or no such thread.

        At a syscall's stop reached but not carried out, the pc is shown at the
        instruction itself, as a native debugger shows it before stepping over it;
        a thread parked in a call others complete shows it under way, after it."""
        if not self._alive():
            return None
        task = self.live.present if thread is None else self.live.tasks.get(thread)
        if task is None or task.gone is not None or not task.tracee.alive or \
                not self.live.is_debugged(task):
            return None
        regs = task.tracee.get_regs()
        if task is self.live.task and task.reached is not None and \
                task.reached.kind == "syscall":
            regs.rip -= 2
            regs.rax = regs.orig_rax
        return registers_to_bytes(regs), task.tracee.get_xstate()

    def read_memory(self, addr: int, length: int) -> bytes:
        """The program's memory at the present, as recorded (as much as is readable);
        OSError once the program has exited."""
        if not self._alive():
            raise OSError(5, "the program has exited")
        return self.live.read_memory(addr, length)

    def stopped_at(self) -> StoppedAt:
        return StoppedAt(self.live)

    def mappings(self) -> list[Mapping]:
        """The address-space model at the present (empty before the first exec)."""
        space = self.live.present.space if self.live.started else None
        return list(space.mappings) if space is not None else []

    def next_event(self) -> Event | None:
        """The event the replay carries out next, if it is the debugged process's;
        None past the last one or the end."""
        live = self.live
        if live.end is not None or live.next_event >= len(self.reader) or \
                not self._debugged_event(live.next_event):
            return None
        return self.reader[live.next_event]

    def reached_event(self) -> Event | None:
        """The next event, when the replay stands at its stop without carrying it out."""
        live = self.live
        if not live.started or live.task.reached is None or not live.is_debugged(live.task):
            return None
        return self.next_event()

    def pending_siginfo(self) -> bytes | None:
        """The siginfo of the signal the next resume delivers, if one is pending."""
        live = self.live
        if not live.started or not live.task.pending_signal or not live.is_debugged(live.task):
            return None
        return self.live.task.pending_siginfo

    # -- breakpoints ------------------------------------------------------------------------------
    def add_watch(self, watch: Watch) -> bool:
        if len(self.watches) >= 4 or watch.length not in (1, 2, 4, 8) or watch.addr % watch.length:
            return False
        self.watches.append(watch)
        return True

    def remove_watch(self, watch: Watch) -> bool:
        if watch in self.watches:
            self.watches.remove(watch)
            return True
        return False
