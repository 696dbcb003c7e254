"""Recording of threads: every pthread program records with the output and exit
status of its native run, and the trace holds a CloneEvent and an ExitEvent per thread
(trace/scheduler.py runs one thread at a time). A recording that hangs fails by the
runner's timeout."""

from __future__ import annotations

import collections

import pytest

from retrograde.trace.events import (
    CloneEvent,
    ExitEvent,
    PreemptEvent,
    SignalEvent,
    SyscallEntryEvent,
)
from retrograde.trace.format import TraceReader
from retrograde.trace.tasks import process_tree
from tests.runner import native, record, retrograde

CLONE_THREAD = 0x10000


def recorded_like_native(program, tmp_path, *args, timeout=120):
    """Record ``program args``; assert output and status are the native run's; the trace."""
    expected = native([program, *args], timeout=timeout)
    trace = tmp_path / "t"
    got = record([program, *args], out=trace, timeout=timeout)
    assert got.stdout == expected.stdout, got.stderr
    assert got.returncode == expected.returncode, got.stderr
    return trace, got


def events_of(trace):
    with TraceReader(trace) as reader:
        assert reader.complete
        return list(reader.events())


def threads_of(events):
    return [e for e in events if isinstance(e, CloneEvent) and e.flags & CLONE_THREAD]


@pytest.mark.parametrize("mode,threads", [("mutex", 4), ("condvar", 1), ("barrier", 4),
                                          ("spin", 1), ("many", 100), ("names", 1),
                                          ("tgkill", 1), ("masks", 1)])
def test_pthread_programs_record_as_they_run(programs, tmp_path, mode, threads):
    trace, _ = recorded_like_native(programs.mt, tmp_path, mode)
    events = events_of(trace)
    clones = threads_of(events)
    assert len(clones) == threads
    exits = collections.Counter(e.task for e in events if isinstance(e, ExitEvent))
    assert all(exits[c.task] == 1 for c in clones)  # every thread's end, once
    first = events[0].task
    assert all(c.process == first for c in clones)
    # A thread's events come only after its CloneEvent.
    seen = {first}
    for e in events:
        if isinstance(e, CloneEvent):
            seen.add(e.task)
        assert e.task in seen, e
    (process,) = process_tree(events)
    assert process.exit_status == 0 and len(process.tasks) == threads + 1


def test_blocked_threads_are_parked_and_complete_later(programs, tmp_path):
    trace, _ = recorded_like_native(programs.mt, tmp_path, "condvar")
    events = events_of(trace)
    parked = [e for e in events if isinstance(e, SyscallEntryEvent)]
    assert len(parked) > 100  # every hand-over waits on the condvar
    # Each parked call's completion comes later, from the same task and call.
    for n, e in enumerate(events):
        if isinstance(e, SyscallEntryEvent):
            done = next(d for d in events[n + 1:] if d.task == e.task)
            assert (done.kind, done.nr, done.args[:3]) == ("syscall", e.nr, e.args[:3])


def test_a_spinning_thread_is_preempted(programs, tmp_path):
    trace, _ = recorded_like_native(programs.mt, tmp_path, "spin")
    preempts = [e for e in events_of(trace) if isinstance(e, PreemptEvent)]
    assert preempts and all(len(p.digest) == 16 and p.regs and p.xstate for p in preempts)


def test_cpu_bound_workers_per_core(programs, tmp_path):
    import os

    trace, got = recorded_like_native(programs.mt, tmp_path, "cpu", str(os.cpu_count()))
    assert len(threads_of(events_of(trace))) == os.cpu_count()


def test_lock_order_log_holds_every_acquisition(programs, tmp_path):
    trace = tmp_path / "t"
    got = record([programs.mt, "lockorder"], out=trace, timeout=60)
    assert got.returncode == 0
    order = got.stdout.decode().split()[-1]
    assert sorted(order) == sorted("ABCD" * 10)


def test_exit_from_a_worker_ends_every_thread(programs, tmp_path):
    trace, got = recorded_like_native(programs.mt, tmp_path, "exitgroup")
    assert got.returncode == 3
    events = events_of(trace)
    assert [e.status for e in events if isinstance(e, ExitEvent)] == [3, 3]
    assert events[-1].task == events[0].task  # the leader is reported last


def test_signal_to_one_thread_is_recorded_in_that_thread(programs, tmp_path):
    trace, got = recorded_like_native(programs.mt, tmp_path, "tgkill")
    assert b"worker" in got.stdout
    events = events_of(trace)
    (worker,) = threads_of(events)
    assert [e.task for e in events if isinstance(e, SignalEvent) and e.signo == 10] == \
        [worker.task]


def test_a_trace_of_threads_replays(programs, tmp_path):
    trace, recording = recorded_like_native(programs.mt, tmp_path, "names")
    got = retrograde("replay", "-a", trace)
    assert got.returncode == 0 and got.stdout == recording.stdout, got.stderr
