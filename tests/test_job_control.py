"""Job control of a recording: stopped and continued as the program alone would be.

Ctrl-Z is typed into an interactive shell on a real pty (dash's `sh -i`, with job
control on); `kill -STOP`/`-CONT` are sent by pid. Each scenario runs natively and
under `retrograde record`, and the trace is replayed: the program's output is the
same three times, and the recording stops (state T in /proc) while the program does.
"""

from __future__ import annotations

import os
import pty
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from runner import RETROGRADE, children_of

from retrograde.trace.events import SignalEvent
from retrograde.trace.format import TraceReader

DEADLINE = 60  # seconds for anything to happen on a loaded machine


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (a state the kernel or a file reaches), failing after
    DEADLINE; the deadline bounds a hang, it is not a timing the test relies on."""
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def program_of(job: int, program: Path) -> int:
    """The recorded program among the recorder's children (the other one, while
    the recording is stopped, is its watcher)."""
    for child in children_of(job):
        with open(f"/proc/{child}/cmdline", "rb") as f:
            if f.read().split(b"\0")[0] == bytes(program):
                return child
    raise AssertionError(f"no {program} under process {job}")


def replayed_output(trace: Path) -> bytes:
    replayed = subprocess.run([*RETROGRADE, "replay", "-a", str(trace)], capture_output=True,
                              timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    return replayed.stdout


def signals_in(trace: Path) -> list[int]:
    with TraceReader(trace) as reader:
        assert reader.complete
        return [e.signo for e in reader if isinstance(e, SignalEvent)]


class Shell:
    """An interactive `sh -i` on a pty: commands typed in, what it prints drained."""

    def __init__(self, cwd: Path) -> None:
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # child: the session leader, on the pty
            os.chdir(cwd)
            os.execve("/bin/sh", ["sh", "-i"], {"PATH": os.environ["PATH"], "PS1": "$ ",
                                                "HOME": str(cwd)})
        self.screen = bytearray()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            self.screen += data

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def job(self) -> int:
        (job,) = children_of(self.pid)
        return job

    def close(self) -> None:
        for child in children_of(self.pid):
            for grandchild in children_of(child):
                os.kill(grandchild, signal.SIGKILL)
            os.kill(child, signal.SIGKILL)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        # The master is closed only once the reader has stopped (EIO: nothing holds
        # the pty's other side any more). Closed under a reader still in its loop,
        # the fd number goes to the next pipe or pty this process opens, and the
        # reader takes that one's bytes: the replay's output, the next shell's
        # report of the stop.
        self.reader.join(DEADLINE)
        assert not self.reader.is_alive(), "the pty is still open after the shell died"
        os.close(self.master)


def ctrl_z_then_fg(command: list[str], out: Path, cwd: Path,
                   while_stopped: Callable[[int], None]) -> bytes:
    """Run ``command`` as the shell's foreground job (stdout to ``out``), press Ctrl-Z
    once it says "ready", check it stopped, `fg` it, and return what it wrote."""
    shell = Shell(cwd)
    try:
        shell.type(f"{shlex.join(command)} > {shlex.quote(str(out))}\n".encode())
        until(lambda: out.exists() and out.read_bytes().startswith(b"ready\n"), "ready")
        job = shell.job()
        shell.type(b"\x1a")
        until(lambda: state(job) == "T", "the job to stop")  # the shell sees it stopped
        while_stopped(job)
        shell.type(b"fg\n")
        until(lambda: not children_of(shell.pid), "the job to finish")
        shell.type(b"exit\n")
        until(lambda: b"Stopped" in shell.screen, "the shell's report of the stop")
        return out.read_bytes()
    finally:
        shell.close()


@pytest.mark.parametrize("mode", [[], ["catch"]], ids=["default", "catching"])
def test_ctrl_z_stops_the_recording_and_fg_continues_it(programs, tmp_path, mode):
    program = [str(programs.jobctl), *mode]
    native = ctrl_z_then_fg(program, tmp_path / "native", tmp_path, lambda job: None)
    trace = tmp_path / "t"

    def program_stopped(job: int) -> None:
        assert state(program_of(job, programs.jobctl)) == "t"  # in its LISTENed group-stop

    recorded = ctrl_z_then_fg([*RETROGRADE, "record", "-o", str(trace), "--", *program],
                              tmp_path / "recorded", tmp_path, program_stopped)
    expected = b"ready\n" + (b"suspending\nresumed\n" if mode else b"") + \
        b"continued: SIGCONT handled 1 time(s)\n"
    assert native == recorded == expected
    assert replayed_output(trace) == recorded
    tstp, cont = signal.SIGTSTP, signal.SIGCONT
    # The handler's raise(SIGTSTP) is the second SIGTSTP, the one that stops it.
    assert signals_in(trace) == ([tstp, tstp, cont] if mode else [tstp, cont])


def record_in_background(program: Path, trace: Path) -> tuple[subprocess.Popen, int]:
    recording = subprocess.Popen([*RETROGRADE, "record", "-o", str(trace), "--", str(program)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True)
    assert recording.stdout is not None
    assert recording.stdout.readline() == b"ready\n"
    return recording, program_of(recording.pid, program)


@pytest.mark.parametrize("continued_by", ["program", "recorder"])
def test_kill_stop_of_the_program_stops_the_recording(programs, tmp_path, continued_by):
    """kill -STOP PID of the program stops the job; kill -CONT continues both, whether
    it names the program (a watcher continues the stopped recorder) or the recorder
    (which continues the program, as `kill -CONT` of the job natively would)."""
    trace = tmp_path / "t"
    recording, program = record_in_background(programs.jobctl, trace)
    try:
        os.kill(program, signal.SIGSTOP)
        _, status = os.waitpid(recording.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP
        assert state(program) == "t"
        os.kill(program if continued_by == "program" else recording.pid, signal.SIGCONT)
        _, status = os.waitpid(recording.pid, os.WCONTINUED)
        assert os.WIFCONTINUED(status)
        out, err = recording.communicate(timeout=DEADLINE)
    finally:
        if recording.poll() is None:
            recording.kill()
            recording.wait()
    assert recording.returncode == 0, err
    assert out == b"continued: SIGCONT handled 1 time(s)\n"
    assert replayed_output(trace) == b"ready\n" + out
    assert signals_in(trace) == [signal.SIGSTOP, signal.SIGCONT]


def test_a_program_killed_while_stopped_ends_the_recording(programs, tmp_path):
    trace = tmp_path / "t"
    recording, program = record_in_background(programs.jobctl, trace)
    try:
        os.kill(program, signal.SIGSTOP)
        _, status = os.waitpid(recording.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        os.kill(program, signal.SIGKILL)
        _, err = recording.communicate(timeout=DEADLINE)
    finally:
        if recording.poll() is None:
            recording.kill()
            recording.wait()
    assert recording.returncode == 128 + signal.SIGKILL
    assert err.startswith(b"retrograde: jobctl terminated by signal SIGKILL")
    with TraceReader(trace) as reader:
        assert reader.complete and reader.metadata["exit_signal"] == signal.SIGKILL
