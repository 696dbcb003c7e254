"""Checkpoints: fork clones of a stopped replay that can be resumed any number of times."""

from __future__ import annotations

import re
import signal

import pytest
from gdb_driver import Debugging, outliving, session_processes
from runner import latest, record

from retrograde.replay.session import ReplaySession
from retrograde.trace.format import TraceReader


def _run_to(session: ReplaySession, event: int) -> None:
    while session.next_event < event:
        session.step_event()


def test_a_checkpoint_resumed_twice_reaches_the_same_end(programs, trace_root, capfd):
    record([programs.mmaps])
    with TraceReader(latest(trace_root)) as reader:
        last = len(reader) - 3  # just before exit_group: the process still exists there
        with ReplaySession(reader, echo=True) as first:
            first.start()
            _run_to(first, len(reader) // 2)
            checkpoint = first.clone()
            _run_to(first, last)
            want = first.state_digest()
            assert first.run_to_end().exit_status == 15
            first_output = capfd.readouterr().out
            with checkpoint:
                for _ in range(2):
                    with checkpoint.clone() as again:
                        assert again.next_event == len(reader) // 2
                        _run_to(again, last)
                        assert again.state_digest() == want
                        assert again.run_to_end().exit_status == 15
                    # the resumed half prints the second half of the output again
                    assert first_output.endswith(capfd.readouterr().out)
                # the checkpoint itself never ran: it is still at the halfway point
                assert checkpoint.next_event == len(reader) // 2


@pytest.mark.parametrize("ending", [signal.SIGTERM, signal.SIGKILL])
def test_checkpoint_processes_die_with_the_replayer(programs, trace_root, ending):
    """A replay served to gdb keeps checkpoints (event boundaries, near recent stops,
    named ones), each a stopped process: all of them exist while it serves, and none
    outlives it, however it ends."""
    record([programs.watch], out=trace_root / "watch")
    with Debugging() as debug:
        gdb, server = debug.start(trace_root / "watch")
        gdb.cmd("break add_to_global")
        gdb.stop("continue")
        gdb.cmd("monitor checkpoint first")
        gdb.stop("continue")
        gdb.stop("reverse-stepi")  # leaves clones near the stop
        info = gdb.cmd("monitor info checkpoints")
        named = len(re.findall(r"^\w+: event", info, re.MULTILINE))
        counts = re.search(r"automatic: (\d+) at event boundaries .*, (\d+) near recent stops",
                           info)
        assert named == 1 and counts, info
        kept = named + int(counts[1]) + int(counts[2])
        stubs = [p for p in session_processes(server.process.pid) if "retrograde-stub" in p]
        assert kept >= 3 and len(stubs) == 1 + kept  # the live replay and every checkpoint
        server.process.send_signal(ending)
        server.process.wait(10)
        assert not outliving(server.process.pid)


def test_a_checkpoint_at_every_event_changes_nothing(programs, trace_root, monkeypatch):
    """Where checkpoints land depends on time; with one at every event, a replay
    through signal handlers and sigreturns must still follow the recording."""
    from retrograde.replay import timeline as timeline_module
    from retrograde.replay.timeline import Timeline

    monkeypatch.setattr(timeline_module, "CHECKPOINT_INTERVAL_SECONDS", 0.0)
    monkeypatch.setattr(timeline_module, "MAX_BOUNDARY_CHECKPOINTS", 10_000)
    record([programs.signals])
    with TraceReader(latest(trace_root)) as reader, Timeline(reader) as timeline:
        timeline.report_signals = frozenset()
        arrival = timeline.forward(step=False)
        assert arrival.reason == "end"
        assert len(timeline.boundary_checkpoints) > len(reader) // 2
        assert timeline.forward(step=False).reason == "exited"
        assert timeline.live.end.exit_status == 16
