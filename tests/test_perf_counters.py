"""Arrivals counted by the kernel on perf hardware-breakpoint events
(tracee/perf.py), checked against roll.c's loop, whose rcx says which iteration
a stop is in: the n-th arrival at loop_head has rcx = ITERATIONS - n + 1."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from pathlib import Path

from elftools.elf.elffile import ELFFile
from runner import latest, record

from retrograde.replay.session import ReplaySession
from retrograde.trace.events import ExecEvent, SyscallEvent
from retrograde.trace.format import TraceReader
from retrograde.tracee.perf import SAMPLED_REGISTERS, ArrivalCounter, ArrivalSampler
from retrograde.tracee.process import PTRACE_SYSEMU

ITERATIONS = 30000
NR_WRITE = 1


def symbol(reader: TraceReader, program: Path, name: str) -> int:
    """The run-time address of ``name`` in the (position-independent) program,
    from the mappings the trace recorded at exec."""
    with program.open("rb") as f:
        value = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]["st_value"]
    exec_event = reader[0]
    assert isinstance(exec_event, ExecEvent)
    base = min(m.start - m.offset for m in exec_event.mappings if m.name.endswith(program.name))
    return base + value


@contextlib.contextmanager
def before_the_loop(programs, trace_root) -> Iterator[tuple[ReplaySession, int, int]]:
    """A replay of roll.c at the end of its first write (it prints, then loops),
    with the addresses of loop_head and after_loop."""
    record([programs.roll])
    with TraceReader(latest(trace_root)) as reader, ReplaySession(reader) as session:
        session.start()
        first_write = next(n for n, e in enumerate(reader)
                           if isinstance(e, SyscallEvent) and e.nr == NR_WRITE)
        while session.next_event <= first_write:
            session.step_event()
        yield (session, symbol(reader, programs.roll, "loop_head"),
               symbol(reader, programs.roll, "after_loop"))


def test_arrivals_are_counted_and_the_nth_one_stops_the_task(programs, trace_root):
    with before_the_loop(programs, trace_root) as (session, head, after):
        session.task.run_to_arrival(head, 1000)  # one stop, on a counter
        regs = session.process.get_regs()
        assert (regs.rip, regs.rcx) == (head, ITERATIONS - 999)
        with ArrivalCounter(session.process.pid, head) as counter:
            session.task.run_to_arrival(after, 1)
            # resuming at loop_head executes it: the one the task stood at counts too
            assert counter.count == 1 + ITERATIONS - 1000
        assert session.process.get_regs().rcx == 0


def test_a_counter_stop_is_the_state_a_breakpoint_gives(programs, trace_root):
    with before_the_loop(programs, trace_root) as (one, head, _), one.clone() as other:
        for _ in range(500):  # int3 at loop_head, a stop at each arrival
            assert one.run(breakpoints=frozenset({head})).reason == "breakpoint"
        with ArrivalCounter(other.process.pid, head, stop_at=500) as counter:
            other.run(step=True)  # one instruction, not an arrival
            assert counter.count == 0
            other.task.run_to_arrival(head, 500)
        assert one.state_digest() == other.state_digest()


def test_every_arrival_is_sampled_with_its_registers_and_stack(programs, trace_root):
    """An ArrivalSampler at loop_head, paced by a counter that stops the task at the
    2000th arrival: 2000 records, the n-th with rcx = ITERATIONS - n + 1, and
    ``find`` names the last one from the registers and stack bytes the task
    stops with."""
    with before_the_loop(programs, trace_root) as (session, head, _):
        t = session.process
        with ArrivalSampler(t.pid, head, stack=64, pages=256) as sampler, \
                session.task.hardware.arrivals(head, stop_at=2000):
            session._next_trap(PTRACE_SYSEMU, "sampling roll's loop")
            records = sampler.drain()
        regs = t.get_regs()
        assert (regs.rip, regs.rcx) == (head, ITERATIONS - 1999)
        assert len(records) == 2000 * sampler.record_size
        rcx = SAMPLED_REGISTERS.index("rcx")
        first = struct.unpack_from(f"{len(SAMPLED_REGISTERS)}Q", records, 16)
        assert (first[SAMPLED_REGISTERS.index("rip")], first[rcx]) == (head, ITERATIONS)
        assert first[SAMPLED_REGISTERS.index("rsp")] == regs.rsp
        stack = t.read(regs.rsp, 64)
        assert sampler.find(records, sampler.key(regs, stack)) == (2000, [2000])
        assert [struct.unpack_from("Q", records, at + 16 + 8 * rcx)[0]
                for at in range(0, len(records), sampler.record_size)] == \
            list(range(ITERATIONS, ITERATIONS - 2000, -1))


def test_a_trap_of_a_counter_the_replay_did_not_open_is_not_the_programs(programs, trace_root):
    """PERF_TRAP (replay/hardware.py): a perf SIGTRAP whose token is of no counter the
    task's debug hardware has open is suppressed, whatever opened it; the
    replay's own counters still stop the task. Without the rule the first
    foreign trap would be taken for the program's, a divergence."""
    with before_the_loop(programs, trace_root) as (session, head, after):
        with ArrivalCounter(session.process.pid, head, stop_at=7000) as foreign:
            session.task.run_to_arrival(head, 10000)  # past the foreign trap at 7000
            assert session.process.get_regs().rcx == ITERATIONS - 9999
            end = session.run_to_end()  # and past 14000, 21000, 28000
            # The 10,000th arrival counts twice: it is run again without the
            # resume flag, as after a breakpoint.
            assert foreign.count == ITERATIONS + 1
        assert end.exit_status == 25
