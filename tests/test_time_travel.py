"""Time travel on a Timeline: random walks of forward and backward moves.

Two properties, checked by hypothesis on one recording of `watch`, on one of
`roll` stopped after a loop too long to count back over by single-stepping, and
(over every thread's state) on one of `trio`, three threads taking turns:

* a mark names one state: whenever a walk comes back to a mark it visited
  before, the replay's state digest (registers, xstate, writable memory) is
  the same as the first time;
* going back k instructions and then single-stepping k times returns to the
  very state the walk left.

The digest is ReplaySession.state_digest() except for one field: the
XSAVE header's XSTATE_BV (bytes 512..519 of the xstate), which says which
components the CPU tracks as "in init state" rather than what they hold. A
replay whose xstate was set from the recording (the live session after exec)
reports SSE (bit 1) in use, while a fork clone of it -- what every checkpoint
restore and seek runs on -- may report it in init state, with identical
register contents: the kernel fills a component in init state with its init
values, so masking the bitmap loses nothing architectural.

Every Timeline is closed at the end of its example, and no process traced by
this test process outlives it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runner import record

from retrograde.replay import task as task_module
from retrograde.replay import timeline as timeline_module
from retrograde.replay.marks import Arrivals
from retrograde.replay.session import ReplaySession
from retrograde.replay.timeline import Mark, Timeline
from retrograde.trace.events import ExecEvent
from retrograde.trace.format import TraceReader
from retrograde.tracee.maps import memory_digest, writable_memory
from retrograde.tracee.registers import registers_to_bytes

BREAK_AT = ("add_to_global", "record_hit")
ENDED = ("exited", "end")
XSTATE_BV = slice(512, 520)


def state_digest(session: ReplaySession) -> bytes:
    """session.state_digest(), with the XSAVE header's XSTATE_BV left out (see above)."""
    t = session.process
    xstate = bytearray(t.get_xstate())
    xstate[XSTATE_BV] = bytes(8)
    return memory_digest([(0, registers_to_bytes(t.get_regs())), (1, bytes(xstate)),
                          *writable_memory(t)])


def program_digest(session: ReplaySession) -> bytes:
    """The whole program's state: every live thread's registers and xstate (by
    recorded tid, XSTATE_BV left out as above) and the writable memory they share."""
    parts: list[tuple[int, bytes]] = []
    for task in sorted(session.live_tasks(), key=lambda task: task.recorded_tid):
        xstate = bytearray(task.tracee.get_xstate())
        xstate[XSTATE_BV] = bytes(8)
        parts += [(2 * task.recorded_tid, registers_to_bytes(task.tracee.get_regs())),
                  (2 * task.recorded_tid + 1, bytes(xstate))]
    return memory_digest([*parts, *writable_memory(session.process)])


def _traced_by_me() -> list[int]:
    """Live processes whose tracer is this process (replays, checkpoints, clones)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields.get("TracerPid", "0")) == me and not fields.get("State", "").strip(
                ).startswith("Z"):
            found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def watch_trace(programs, tmp_path_factory) -> tuple[TraceReader, frozenset[int]]:
    """The recording of `watch` and the addresses of BREAK_AT in its replay."""
    out = tmp_path_factory.mktemp("time-travel") / "watch"
    recorded = record([programs.watch], out=out)
    assert recorded.returncode == 22, recorded.stderr.decode(errors="replace")
    with TraceReader(out) as reader:
        addresses = _function_addresses(reader, programs.watch)
        yield reader, frozenset(addresses[name] for name in BREAK_AT)


def _function_addresses(reader: TraceReader, binary: Path) -> dict[str, int]:
    """Where the program's functions are in the replay (its load address + symbols)."""
    exec_event = reader[0]
    assert isinstance(exec_event, ExecEvent)
    path = Path(exec_event.path).resolve()
    bias = next(m.start for m in exec_event.mappings
                if m.offset == 0 and m.name and Path(m.name).resolve() == path)
    with open(binary, "rb") as f:
        return {s.name: bias + s["st_value"]
                for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}


MOVES = st.one_of(
    st.just(("stepi",)),
    st.just(("continue",)),
    st.just(("reverse-stepi",)),
    st.just(("reverse-continue",)),
    st.tuples(st.just("reverse-roll"), st.integers(2, 50)),
    st.tuples(st.just("there-and-back"), st.integers(1, 50)),
)
LONG_LOOP = 1_250_000  # iterations of roll.c's 4-instruction loop
LONG_LOOP_MOVES = st.one_of(
    st.just(("stepi",)),
    st.just(("reverse-stepi",)),
    st.tuples(st.just("reverse-roll"), st.integers(2, 3000)),
    st.tuples(st.just("there-and-back"), st.integers(1, 50)),
)


@settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(moves=st.lists(MOVES, min_size=1, max_size=12))
def test_marks_name_one_state_and_rolls_come_back(watch_trace, moves):
    reader, breakpoints = watch_trace
    timeline = Timeline(reader)
    try:
        timeline.breakpoints = set(breakpoints)
        walk(timeline, moves, breakpoints, positions=True)
    finally:
        timeline.close()
    assert not _traced_by_me(), "replay processes outlived their Timeline"


@pytest.fixture(scope="module")
def long_loop_trace(programs, tmp_path_factory) -> tuple[TraceReader, int]:
    """roll.c over 5 * 10^6 instructions (no event in the loop), and after_loop."""
    out = tmp_path_factory.mktemp("time-travel") / "roll"
    assert record([programs.roll, str(LONG_LOOP)], out=out).returncode == 25
    with TraceReader(out) as reader:
        yield reader, _function_addresses(reader, programs.roll)["after_loop"]


@settings(deadline=None, max_examples=10, suppress_health_check=[HealthCheck.too_slow])
@given(moves=st.lists(LONG_LOOP_MOVES, min_size=1, max_size=8))
def test_marks_past_waypoints_name_one_state(long_loop_trace, moves):
    """The same walks from the first arrival after a loop too long to count back
    by single-stepping: the marks there are named from waypoint clones."""
    reader, after_loop = long_loop_trace
    timeline = Timeline(reader)
    # The loop runs natively in well under a millisecond on a fast idle CPU, less
    # than the first slice between waypoint clones: slice it finer, so that the
    # walk crosses waypoints however fast this machine is.
    with mock.patch.object(timeline_module, "WAYPOINT_FIRST_SLICE", 0.0001):
        try:
            timeline.breakpoints = {after_loop}
            assert timeline.forward(False).reason == "breakpoint"
            timeline.breakpoints = set()
            walk(timeline, [("reverse-stepi",), *moves], frozenset())
            assert timeline.waypoints, "the first step back did not need a waypoint"
        finally:
            timeline.close()
    assert not _traced_by_me(), "replay processes outlived their Timeline"


@pytest.fixture(scope="module")
def trio_trace(programs, tmp_path_factory) -> tuple[TraceReader, frozenset[int]]:
    """The recording of `trio` (three threads taking turns) and where note() is."""
    out = tmp_path_factory.mktemp("time-travel") / "trio"
    recorded = record([programs.trio], out=out)
    assert recorded.returncode == 4, recorded.stderr.decode(errors="replace")
    assert b"trio: total 60" in recorded.stdout
    with TraceReader(out) as reader:
        assert len({e.task for e in reader if e.kind == "syscall"}) == 3
        yield reader, frozenset({_function_addresses(reader, programs.trio)["note"]})


@settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(moves=st.lists(MOVES, min_size=1, max_size=12))
def test_marks_name_one_state_of_every_thread(trio_trace, moves):
    """The walks of the first property on three threads: a mark names one state
    of the whole program (every thread's registers and the memory they share),
    and k back then k forward comes back to it, across the other threads' slices."""
    reader, breakpoints = trio_trace
    timeline = Timeline(reader)
    try:
        timeline.breakpoints = set(breakpoints)
        walk(timeline, moves, breakpoints, positions=True, digest_of=program_digest)
    finally:
        timeline.close()
    assert not _traced_by_me(), "replay processes outlived their Timeline"


def position(timeline: Timeline) -> tuple[int, int]:
    """``timeline.position()`` as (event, instruction)."""
    match = re.fullmatch(r"event (\d+), instruction (\d+)", timeline.position())
    assert match, timeline.position()
    return int(match[1]), int(match[2])


def walk(timeline: Timeline, moves: list[tuple], breakpoints: frozenset[int],
         positions: bool = False,
         digest_of: Callable[[ReplaySession], bytes] = state_digest) -> None:
    """Carry out ``moves``; check that each mark visited names one state, and that
    k back then k forward arrives where it started. With ``positions``, also that
    one state has one canonical position whichever mark reached it, and that
    moving forwards makes it greater, backwards less."""
    visited: dict = {}
    placed: dict[bytes, tuple[int, int]] = {}

    def note() -> bytes | None:
        """Check (and remember) the digest at the current mark."""
        if timeline.live.end is not None:
            return None
        digest = digest_of(timeline.live)
        seen = visited.setdefault(timeline.mark, digest)
        assert seen == digest, f"{timeline.mark} names two states"
        if positions:
            here = placed.setdefault(digest, position(timeline))
            assert here == position(timeline), f"{timeline.mark} is at two positions"
        return digest

    note()
    for move in moves:
        was = position(timeline) if positions and timeline.live.end is None else None
        if move[0] == "stepi":
            arrival = timeline.forward(True)
        elif move[0] == "continue":
            arrival = timeline.forward(False)
            if arrival.reason == "breakpoint":
                assert timeline.live.process.get_regs().rip in breakpoints
        elif move[0] == "reverse-stepi":
            arrival = timeline.reverse_step(1)
        elif move[0] == "reverse-continue":
            arrival = timeline.reverse_continue()
            if arrival.reason == "breakpoint":
                assert timeline.live.process.get_regs().rip in breakpoints
        elif move[0] == "reverse-roll":
            arrival = timeline.reverse_step(move[1])
        else:  # there-and-back: reverse_step(k), then k single steps forward
            k = move[1]
            if timeline.mark == timeline.start_mark:
                continue
            before_mark, before = timeline.mark, note()
            back = timeline.reverse_step(k)
            note()
            if back.reason == "history-begin":
                continue  # fewer than k instructions of history: nothing to count
            for _ in range(k):
                arrival = timeline.forward(True)
                note()
            assert arrival.reason in ("step", "end"), arrival
            assert digest_of(timeline.live) == before, (
                f"{k} back from {before_mark} and {k} forward arrived at "
                f"{timeline.mark}, another state")
        note()
        if was is not None and timeline.live.end is None and move[0] != "there-and-back" \
                and arrival.reason not in ("history-begin", "end"):
            now = position(timeline)
            assert now > was if move[0] in ("stepi", "continue") else now < was, (move, was, now)
        if arrival.reason in ENDED:
            break


def test_stepping_over_a_syscall_gives_the_state_running_to_it_gives(programs, tmp_path):
    """The syscall instruction copies the flags into r11, trap flag included when
    single-stepped; the state after it must still be the recorded one."""
    trace = tmp_path / "hello"
    assert record([programs.hello], out=trace).returncode == 3
    with TraceReader(trace) as reader:
        write = next(n for n, e in enumerate(reader) if e.kind == "syscall" and e.nr == 1)
        with Timeline(reader) as stepped, Timeline(reader) as ran:
            stepped.seek(Mark(write))
            while stepped.mark.event == write:
                assert stepped.forward(step=True).reason == "step"
            ran.seek(Mark(write + 1))
            assert stepped.mark == ran.mark == Mark(write + 1)
            assert registers_to_bytes(stepped.live.process.get_regs()) == \
                registers_to_bytes(ran.live.process.get_regs())
            assert stepped.live.state_digest() == ran.live.state_digest()


@pytest.mark.parametrize("software_arrivals", [0, task_module.SOFTWARE_ARRIVALS],
                         ids=["hardware", "int3"])
def test_counting_arrivals_with_a_debug_register_matches_counting_with_int3(
        programs, tmp_path, monkeypatch, software_arrivals):
    """Seeks count breakpoint arrivals on a hardware breakpoint (or, for a few, on
    an int3 of their own); a scan counts them with the debugger's int3: the n-th
    arrival must be the same place either way, also when counting starts at the
    breakpoint's own address."""
    monkeypatch.setattr(task_module, "SOFTWARE_ARRIVALS", software_arrivals)
    trace = tmp_path / "watch"
    assert record([programs.watch], out=trace).returncode == 22
    with TraceReader(trace) as reader, Timeline(reader) as timeline:
        address = _function_addresses(reader, programs.watch)["record_hit"]
        timeline.breakpoints = {address}
        first = timeline.forward(step=False)
        assert first.reason == "breakpoint"
        software = []
        for _ in range(3):
            timeline.forward(step=False)
            software.append(timeline.live.state_digest())
        third = Mark(first.mark.event, first.mark.steps[:-1] + (Arrivals(address, 3),))
        timeline.recent.clear()  # seek from the boundary, through run_to_arrival
        timeline.seek(third)
        assert timeline.live.state_digest() == software[1]
        fourth = Mark(third.event, third.steps[:-1] + (Arrivals(address, 4),))
        timeline.seek(fourth)  # from the clone at the 3rd arrival: starts on the address
        assert timeline.live.state_digest() == software[2]
