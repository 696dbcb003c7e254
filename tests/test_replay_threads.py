"""`replay -a` of pthread programs (tests/programs/mt.c): every thread is replayed in
the recorded order of slices, so output, exit status and the interleaving (the order
of lock acquisitions a program logs) are the recording's."""

from __future__ import annotations

import pytest
from runner import record, replay

from retrograde.replay.session import ReplayEnd, ReplaySession
from retrograde.trace.events import CloneEvent, ExitEvent
from retrograde.trace.format import TraceReader

# (mode, exit status): the modes whose recording is deterministic to replay today
# (spin and cpu are preempted beyond the bound a search reaches by execution).
MODES = [("mutex", 0), ("pi", 0), ("condvar", 0), ("barrier", 0), ("many", 0), ("lockorder", 0), ("names", 0),
         ("tgkill", 0), ("masks", 0), ("exitgroup", 3), ("abort", 134)]


@pytest.mark.parametrize(("mode", "status"), MODES)
def test_a_thread_program_replays_as_recorded(programs, trace_root, mode, status):
    trace = trace_root / f"mt-{mode}"
    recording = record([programs.mt, mode], out=trace, timeout=60)
    assert recording.returncode == status, recording.stderr
    with TraceReader(trace) as reader:
        events = list(reader.events())
    threads = [e for e in events if isinstance(e, CloneEvent)]
    assert threads, "the program made no thread"
    assert isinstance(events[-1], ExitEvent)
    replayed = replay(trace, timeout=90)
    assert replayed.returncode == status, replayed.stderr
    assert replayed.stdout == recording.stdout
    assert b"diverged" not in replayed.stderr


def test_the_order_of_lock_acquisitions_is_the_recorded_one(programs, trace_root):
    """Two recordings log different orders more often than not; each replay prints
    its own recording's."""
    orders = []
    for n in range(2):
        trace = trace_root / f"lockorder-{n}"
        recording = record([programs.mt, "lockorder"], out=trace, timeout=60)
        assert b"order " in recording.stdout, recording.stderr
        replayed = replay(trace, timeout=90)
        assert replayed.stdout == recording.stdout, replayed.stderr
        orders.append(recording.stdout)
    assert all(len(order.split(b"order ")[1].strip()) == 40 for order in orders)


def test_a_checkpoint_of_five_threads_replays_to_the_same_end(programs, trace_root):
    """In barrier's rounds (main and 4 workers, some parked in futex waits), a copy of
    the replay (a fork of one thread, the others cloned into it with their registers,
    masks and clear-tid words), and a copy of that copy, each replay to the recorded
    end, as does the original after them."""
    trace = trace_root / "mt-barrier"
    record([programs.mt, "barrier"], out=trace, timeout=60)
    with TraceReader(trace) as reader, ReplaySession(reader) as session:
        session.start()
        while len(session.live_tasks()) < 5:
            session.step_event()
        for _ in range(60):
            session.step_event()
        assert len(session.live_tasks()) == 5
        assert any(task.reached is not None for task in session.live_tasks())
        with session.clone() as copy:
            assert copy.run_to_end() == ReplayEnd(0, None)
        with session.clone() as copy, copy.clone() as copy_of_copy:
            assert copy_of_copy.run_to_end() == ReplayEnd(0, None)
        assert session.run_to_end() == ReplayEnd(0, None)
