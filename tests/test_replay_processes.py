"""`replay -a` of process trees (tests/programs/procs.c): each child is forked for
real at its recorded fork, has its own address space and fd table, and the whole
tree's output is echoed as recorded."""

from __future__ import annotations

import pytest
from runner import record, replay

from retrograde.replay.session import ReplayEnd, ReplaySession
from retrograde.trace.format import TraceReader
from retrograde.trace.tasks import process_tree

MODES = ["forkexec", "vfork", "spawn", "crash", "forks", "sigfork", "kill", "userns"]


@pytest.mark.parametrize("mode", MODES)
def test_a_process_tree_replays_as_recorded(programs, trace_root, mode):
    trace = trace_root / f"procs-{mode}"
    recording = record([programs.procs, mode], out=trace, timeout=90)
    with TraceReader(trace) as reader:
        processes = process_tree(reader.events())
    assert len(processes) > 1, recording.stderr
    replayed = replay(trace, timeout=120)
    assert replayed.returncode == recording.returncode, replayed.stderr
    assert replayed.stdout == recording.stdout
    assert b"diverged" not in replayed.stderr


def test_a_child_redirecting_its_stdout_leaves_its_parents_echoed(programs, trace_root):
    """forkexec's child dup2s a pipe onto fd 1 and execs echo: the parent's own
    writes to fd 1 (what it read from the pipe) are still the terminal's."""
    trace = trace_root / "procs-forkexec"
    recording = record([programs.procs, "forkexec"], out=trace, timeout=90)
    replayed = replay(trace, timeout=90)
    assert b"through a pipe" in recording.stdout
    assert replayed.stdout == recording.stdout, replayed.stderr


def test_a_checkpoint_of_a_parent_and_its_child_replays_to_the_parents_end(programs,
                                                                             trace_root):
    """sigfork's parent forks in a signal handler and its child exits 9: a copy taken
    while both live forks each process and ends as the original does, with the first
    process's status."""
    trace = trace_root / "procs-sigfork"
    recording = record([programs.procs, "sigfork"], out=trace, timeout=90)
    with TraceReader(trace) as reader, ReplaySession(reader) as session:
        session.start()
        while len(session.live_tasks()) < 2:
            session.step_event()
        with session.clone() as copy:
            assert copy.run_to_end() == ReplayEnd(recording.returncode, None)
        assert session.run_to_end() == ReplayEnd(recording.returncode, None)
