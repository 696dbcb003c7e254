"""Conditional breakpoints judged on perf samples of their arrivals
(replay/precise.py: first_holding, holding_arrivals) instead of at a ptrace stop
each, on a Timeline: the same arrival, the same mark and the same state as when
every arrival stops, forwards and backwards, and a condition that reads what a
sample does not hold (a global) judged at stops instead, still right.

hundreds.c at -O0: at the first instruction of the loop's body, rax holds i
(the loop's test loaded it) and `sum` is i(i-1)/2.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from gdb_driver import source_line
from runner import record
from test_time_travel import _function_addresses

from retrograde.client import Symbols
from retrograde.replay.precise import SampledArrival
from retrograde.replay.session import StopReason
from retrograde.replay.timeline import StoppedAt, Timeline
from retrograde.trace.format import TraceReader
from retrograde.tracee.registers import REGISTER_NAMES

RAX = REGISTER_NAMES.index("rax") * 8
BODY = source_line("hundreds", "// loop: body")


@pytest.fixture(scope="module")
def hundreds(programs, tmp_path_factory) -> tuple[TraceReader, int, int]:
    """The recording of 3000 iterations, the body's first address and `sum`'s."""
    out = tmp_path_factory.mktemp("sampled") / "hundreds"
    assert record([programs.hundreds, "3000"], out=out).returncode == 0
    with TraceReader(out) as reader:
        binary = Path(programs.hundreds).read_bytes()
        main = _function_addresses(reader, programs.hundreds)["main"]
        symbols = Symbols(binary, bias=main - Symbols(binary).functions["main"].address)
        body = min(symbols.line_addresses("hundreds.c", BODY))
        yield reader, body, symbols.globals["sum"].address


Judge = Callable[[StoppedAt | SampledArrival, int], bool]


def judging(seen: list[str], test: Callable[[StoppedAt | SampledArrival], bool]) -> Judge:
    def holds(arrival: StoppedAt | SampledArrival, addr: int) -> bool:
        seen.append(type(arrival).__name__)
        return test(arrival)
    return holds


def rax_is(value: int) -> Callable[[StoppedAt | SampledArrival], bool]:
    return lambda arrival: struct.unpack_from("Q", arrival.general_registers(), RAX)[0] == value


def conditional(timeline: Timeline, body: int, holds: Judge) -> None:
    timeline.breakpoints = {body}
    timeline.has_condition = lambda addr: addr == body
    timeline.breakpoint_holds = holds
    timeline.condition_changed(body)


def by_stops(reader: TraceReader, body: int, test: Callable[[StoppedAt], bool]) -> Timeline:
    """A Timeline stopped at the first arrival at ``body`` where ``test`` holds,
    found as a debugger without server-side conditions finds it: a stop at each."""
    timeline = Timeline(reader)
    timeline.breakpoints = {body}
    while True:
        assert timeline.forward(False).reason == StopReason.BREAKPOINT
        if test(StoppedAt(timeline.live)):
            return timeline


def test_a_condition_on_registers_is_judged_on_samples_forwards_and_backwards(hundreds):
    reader, body, _ = hundreds
    with Timeline(reader) as timeline, by_stops(reader, body, rax_is(2222)) as expected:
        seen: list[str] = []
        conditional(timeline, body, judging(seen, rax_is(2222)))
        arrival = timeline.forward(False)
        assert arrival.reason == StopReason.BREAKPOINT
        assert timeline.live.process.get_regs().rax == 2222
        assert timeline.mark == expected.mark
        assert timeline.live.state_digest() == expected.live.state_digest()
        assert set(seen) == {"SampledArrival"} and len(seen) >= 2223

        seen.clear()
        conditional(timeline, body, judging(seen, rax_is(1500)))
        arrival = timeline.reverse_continue()
        assert arrival.reason == StopReason.BREAKPOINT
        assert timeline.live.process.get_regs().rax == 1500
        assert set(seen) == {"SampledArrival"} and len(seen) == 2222  # the ones before 2222
        # The hit before it, if any, is before this interval's first arrival: none.
        seen.clear()
        assert timeline.reverse_continue().reason == StopReason.HISTORY_BEGIN


def test_a_condition_on_a_global_is_judged_at_stops(hundreds):
    """`sum` is not on the sampled stack: the first sample says so, and every
    arrival stops from there, as without samples."""
    reader, body, sum_address = hundreds

    def sum_is(value: int) -> Callable[[StoppedAt | SampledArrival], bool]:
        return lambda arrival: struct.unpack(
            "q", arrival.read_memory(sum_address, 8))[0] == value

    with Timeline(reader) as timeline:
        seen: list[str] = []
        conditional(timeline, body, judging(seen, sum_is(1000 * 999 // 2)))
        while True:  # the debugger skips the arrivals where it does not hold
            assert timeline.forward(False).reason == StopReason.BREAKPOINT
            if sum_is(1000 * 999 // 2)(StoppedAt(timeline.live)):
                break
        assert timeline.live.process.get_regs().rax == 1000
        # One arrival sampled, whose condition could not be judged; the rest stopped
        # (and were judged by the caller, as gdbstub does).
        assert seen == ["SampledArrival"]
