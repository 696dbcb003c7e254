"""Damaged traces, through the real command line: every file of a real recording
(`hello`, dynamically linked) bit-flipped, cut in half, replaced by a FIFO, by a
link to /dev/zero, by a link to a host file with the very same contents, or
deleted; and each of `replay -a`, `dump`, `ls` and a `replay -s` server start run
on it. Each either fails with one line on stderr and a non-zero exit, or, where
the damage is to something that command does not read, prints exactly what it
prints for the undamaged trace. Never a traceback, never a hang (every command
has a timeout), never a process left behind (each runs in a session of its own).
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from gdb_driver import outliving
from runner import RETROGRADE

from retrograde.trace.events import ExecEvent, SyscallEvent
from retrograde.trace.format import TraceReader

TIMEOUT = 120  # generous: the machine is loaded; a hang is what this catches
FILES = ["metadata.json", "events", "events.index",
         "files/program", "files/ld.so", "files/libc", "files/ld.so.cache"]
DAMAGE = ["bit-flip", "truncated", "fifo", "dev-zero", "host-file", "deleted"]
COMMANDS = ["replay -a", "dump", "ls", "replay -s"]


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def recording(programs, tmp_path_factory):
    """A recording of hello and, by role, where each copy in files/ came from."""
    root = tmp_path_factory.mktemp("recording")
    trace = root / "hello-0"
    env = {**os.environ, "RETROGRADE_DIR": str(root)}
    recorded = subprocess.run([*RETROGRADE, "record", "-o", str(trace), str(programs.hello)],
                              capture_output=True, env=env, timeout=TIMEOUT, check=False)
    assert recorded.returncode == 3, recorded.stderr
    sources: dict[str, tuple[str, str]] = {}  # role -> (digest, host path)
    with TraceReader(trace) as reader:
        for event in reader:
            records = (event.mappings if isinstance(event, ExecEvent) else
                       [event.mapping] if isinstance(event, SyscallEvent) and event.mapping
                       else [])
            for m in records:
                if m.file_hash:
                    sources[_role(m.name, programs.hello)] = (m.file_hash, m.name)
    assert sorted(sources) == sorted(f.removeprefix("files/") for f in FILES
                                     if f.startswith("files/"))
    return trace, sources


def _role(name: str, program: Path) -> str:
    base = os.path.basename(name)
    if name == str(program):
        return "program"
    if base.startswith("ld-linux"):
        return "ld.so"
    if base.startswith("libc.so"):
        return "libc"
    assert base == "ld.so.cache", name
    return base


@pytest.fixture(scope="module")
def healthy(recording, tmp_path_factory):
    """What each command prints for the undamaged trace (next to an undamaged neighbour)."""
    root = _layout(tmp_path_factory.mktemp("healthy"), recording[0])
    return {command: run(command, root) for command in COMMANDS}


def _layout(root: Path, pristine: Path) -> Path:
    """A trace root holding a copy of the recording and a healthy neighbour, ok-0."""
    for name in ("hello-0", "ok-0"):
        shutil.copytree(pristine, root / name, symlinks=True)
    return root


def damage(trace: Path, file: str, how: str, sources: dict[str, tuple[str, str]]) -> None:
    if file.startswith("files/"):
        digest, host_path = sources[file.removeprefix("files/")]
        target = trace / "files" / digest
    else:
        host_path = str(trace.parent / "ok-0" / file)  # the same bytes, outside this trace
        target = trace / file
    target.chmod(0o644)
    if how == "bit-flip":
        data = bytearray(target.read_bytes())
        offset = random.Random(file).randrange(len(data))
        data[offset] ^= 1 << random.Random(offset).randrange(8)
        target.write_bytes(bytes(data))
        return
    if how == "truncated":
        with open(target, "r+b") as f:
            f.truncate(target.stat().st_size // 2)
        return
    target.unlink()
    if how == "fifo":
        os.mkfifo(target)
    elif how == "dev-zero":
        target.symlink_to("/dev/zero")
    elif how == "host-file":
        target.symlink_to(host_path)


def run(command: str, root: Path) -> Outcome:
    """`retrograde COMMAND [TRACE]` on root/hello-0 (ls: on root), in a session of its own."""
    env = {**os.environ, "RETROGRADE_DIR": str(root)}
    trace = [] if command == "ls" else [str(root / "hello-0")]
    if command == "replay -s":
        return _server_start(trace, env)
    process = subprocess.Popen([*RETROGRADE, *command.split(), *trace], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"retrograde {command} hung")
    left = outliving(process.pid)
    assert not left, f"retrograde {command} left processes behind: {left}"
    return Outcome(process.returncode, stdout, stderr)


def _server_start(trace: list[str], env: dict[str, str]) -> Outcome:
    """Start a server; once it says it listens, end it (SIGTERM): a start that worked
    is reported as returncode 0 and the line it printed."""
    process = subprocess.Popen([*RETROGRADE, "replay", "-s", "0", "--no-echo", *trace], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")  # the end: the server exited (or closed its output)

    threading.Thread(target=read_lines, daemon=True).start()
    listening = "-"
    try:
        while listening and "listening on" not in listening:
            listening = lines.get(timeout=TIMEOUT)
    except queue.Empty:
        pass
    if "listening on" in listening:
        process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("retrograde replay -s hung")
    left = outliving(process.pid)
    assert not left, f"retrograde replay -s left processes behind: {left}"
    if "listening on" in listening:
        return Outcome(0, "listening", stderr)
    return Outcome(process.returncode, "", stderr)


def harmless(file: str, how: str, command: str) -> bool:
    """Whether `command` does not read what the damage touched, and so must work as
    on the undamaged trace."""
    if file == "events.index" and how in ("bit-flip", "truncated", "deleted"):
        return True  # a hint, checked against the events: a bad one costs a scan
    if file.startswith("files/") and command == "dump":
        # dump reads strings from read-only file mappings: for hello, from ld.so
        # ("/etc/ld.so.cache", "/etc/ld.so.preload") and the program ("hello, world")
        return file not in ("files/ld.so", "files/program")
    if file.startswith("files/") and command == "ls":
        return how == "bit-flip"  # ls checks sizes and kinds, and hashes no copy
    return False


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("file", FILES)
def test_a_damaged_trace_file_is_one_line_or_harmless(recording, healthy, tmp_path, file, how):
    pristine, sources = recording
    root = _layout(tmp_path, pristine)
    damage(root / "hello-0", file, how, sources)
    for command in COMMANDS:
        got = run(command, root)
        assert "Traceback" not in got.stderr, (command, got.stderr)
        if harmless(file, how, command):
            want = healthy[command]
            assert (got.returncode, got.stdout) == (want.returncode, want.stdout), (
                command, got.stderr)
            continue
        assert got.returncode != 0, (command, got.stdout)
        if command == "ls":
            # The healthy neighbour is still listed, with what it holds; the damaged
            # trace is named broken, with the reason on one line.
            assert healthy["ls"].stdout.splitlines()[2] in got.stdout.splitlines(), got.stdout
            assert [line.split()[-1] for line in got.stdout.splitlines()[1:]] == ["broken", "3"]
            assert got.stderr.startswith("retrograde: hello-0 is broken: "), got.stderr
        else:
            assert got.stderr.startswith("retrograde: "), (command, got.stderr)
        assert got.stderr.count("\n") == 1, (command, got.stderr)
        if command == "replay -a":
            assert "hello, world" not in got.stdout  # refused before the program ran


def test_the_healthy_outcomes_are_what_a_user_sees(healthy):
    assert healthy["replay -a"].returncode == 3
    assert healthy["replay -a"].stdout == "hello, world\n"
    assert healthy["dump"].returncode == 0
    assert 'write(1, "hello, world\\n", 13) = 13' in healthy["dump"].stdout
    rows = [line.split() for line in healthy["ls"].stdout.splitlines()]
    assert [row[0] for row in rows] == ["NAME", "hello-0", "ok-0"] and rows[1][-1] == "3"
    assert healthy["ls"].returncode == 0 and healthy["ls"].stderr == ""
    assert healthy["replay -s"].returncode == 0
