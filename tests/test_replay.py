"""Replaying traces with no debugger: identical output and exit status, without the
recorded binaries, and a clear divergence report when the trace was tampered with."""

from __future__ import annotations

import shutil
import signal

import pytest
from runner import REAL_PROGRAMS, latest, record, replay

from retrograde.trace.events import SyscallEvent
from retrograde.trace.format import TraceReader, TraceWriter
from retrograde.tracee.syscalls import syscall_number

PROGRAMS = {  # name -> extra arguments
    "hello": [], "hello_static": [], "pipes": [], "mmaps": [], "execself": [], "watch": [],
    "timecalls": [], "random": [], "rdtsc": [], "signals": [], "busyloop": [],
    "fatal": [], "compute": ["1000000"], "syscall_heavy": ["2000"],
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_replay_without_the_binary_matches_the_recording(programs, trace_root, tmp_path, name):
    binary = tmp_path / name
    shutil.copy(programs[name], binary)
    recorded = record([binary, *PROGRAMS[name]])
    binary.unlink()
    replayed = replay(None, "--check-maps")  # the address-space model agrees with the kernel
    assert replayed.returncode == recorded.returncode, replayed.stderr
    assert replayed.stdout == recorded.stdout


def test_files_replay_after_the_files_are_gone(programs, trace_root, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    recorded = record([programs.files, work])
    shutil.rmtree(work)
    replayed = replay()
    assert (replayed.returncode, replayed.stdout) == (recorded.returncode, recorded.stdout)


def test_exec_of_another_binary_replays(programs, trace_root, tmp_path):
    hello = tmp_path / "hello"
    shutil.copy(programs.hello, hello)
    recorded = record([programs.execother, hello])
    hello.unlink()
    replayed = replay()
    assert replayed.stdout == recorded.stdout == b"execother: exec hello\nhello, world\n"
    assert replayed.returncode == 3


def test_no_echo_and_check_maps(programs, trace_root):
    record([programs.mmaps])
    replayed = replay(None, "--no-echo", "--check-maps")
    assert replayed.returncode == 15, replayed.stderr
    assert replayed.stdout == b""


def test_fatal_signal_status(programs, trace_root):
    record([programs.fatal])
    replayed = replay()
    assert replayed.returncode == 128 + signal.SIGSEGV


@pytest.mark.parametrize("argv", REAL_PROGRAMS)
def test_real_programs_replay_identically(trace_root, argv):
    recorded = record(argv)
    replayed = replay(None, "--check-maps")
    assert replayed.returncode == recorded.returncode, replayed.stderr
    assert replayed.stdout == recorded.stdout


def _rewrite(trace, tmp_path, change):
    """A copy of ``trace`` with ``change(n, event)`` applied to every event."""
    copy = tmp_path / "tampered"
    with TraceReader(trace) as reader, TraceWriter(copy, dict(reader.metadata)) as writer:
        for path in (trace / "files").iterdir():
            writer.add_file(path)
        for n, event in enumerate(reader):
            writer.append(change(n, event))
        writer.close(**{k: reader.metadata.get(k) for k in ("exit_status", "exit_signal")})
    return copy


def test_tampered_argument_is_a_divergence(programs, trace_root, tmp_path):
    record([programs.hello])
    trace = latest(trace_root)
    with TraceReader(trace) as reader:
        target = max(n for n, e in enumerate(reader) if isinstance(e, SyscallEvent)
                     and e.nr == 1)
    tampered = _rewrite(trace, tmp_path, lambda n, e: e if n != target else
                        SyscallEvent(**{**e.__dict__, "args": (2, *e.args[1:])}))
    replayed = replay(tampered)
    assert replayed.returncode == 2
    err = replayed.stderr.decode()
    assert err.startswith(f"retrograde: replay diverged at event {target}: recorded write(0x2")
    assert "replay write(0x1" in err


def test_tampered_result_changes_what_the_program_sees(programs, trace_root, tmp_path):
    record([programs.watch])
    trace = latest(trace_root)
    with TraceReader(trace) as reader:
        target = max(n for n, e in enumerate(reader) if isinstance(e, SyscallEvent)
                     and e.nr == syscall_number("brk") and e.args[0] == 0)
    # malloc asks for the program break and then for more from there: with another
    # answer to the first question, the second call no longer matches the trace.
    tampered = _rewrite(trace, tmp_path, lambda n, e: e if n != target else
                        SyscallEvent(**{**e.__dict__, "result": e.result + 0x10000}))
    replayed = replay(tampered)
    assert replayed.returncode == 2
    err = replayed.stderr.decode()
    assert "replay diverged at event " in err and "recorded brk(" in err and "replay brk(" in err


def test_newer_format_is_refused(programs, trace_root):
    import json
    record([programs.hello])
    meta_path = latest(trace_root) / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = meta.get("format_version", 1) + 100
    meta_path.write_text(json.dumps(meta))
    replayed = replay()
    assert replayed.returncode == 1
    assert "newer retrograde" in replayed.stderr.decode()
