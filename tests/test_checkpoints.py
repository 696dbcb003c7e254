"""Checkpoints: fork clones of a stopped replay that can be resumed any number of times."""

from __future__ import annotations

import signal
import subprocess
import time

from retrograde.replay.session import ReplaySession
from retrograde.trace.format import TraceReader
from runner import RETROGRADE, alive, children_of, latest, record


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


def test_checkpoint_processes_die_with_the_replayer(programs, trace_root):
    record([programs.compute, "1500000000"], timeout=120)  # about 3 s of native work
    replay = subprocess.Popen([*RETROGRADE, "replay", "-a", "--no-echo"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    replaying = children_of(replay.pid)
    assert replaying
    replay.send_signal(signal.SIGTERM)
    replay.wait(10)
    time.sleep(0.2)
    assert not [pid for pid in replaying if alive(pid)]


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
