"""Recording of process trees: fork, vfork, posix_spawn, exec in a child, shells,
make, gcc, python. Each records with the output and exit status of its native run,
and `retrograde ps` lists the processes the trace holds."""

from __future__ import annotations

import shutil
import signal

import pytest

from retrograde.trace.tasks import process_tree
from tests.runner import native, record, retrograde
from tests.test_record_threads import events_of, recorded_like_native


def ps(trace):
    got = retrograde("ps", trace)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.decode().splitlines()
    assert lines[0].split() == ["PID", "PPID", "EXIT", "CMD"]
    return [line.split(None, 3) for line in lines[1:]]


def tree(trace):
    """(parent index or -1, exit, command) per process, by creation order."""
    rows = ps(trace)
    index = {row[0]: n for n, row in enumerate(rows)}
    return [(index.get(row[1], -1), row[2], row[3] if len(row) > 3 else "") for row in rows]


@pytest.mark.parametrize("mode,children", [
    ("forkexec", [("0", "echo hello through a pipe")]),
    ("vfork", [("4", None)]),
    ("spawn", [("0", "true")]),
    ("crash", [("SIGSEGV", None)]),
    ("sigfork", [("9", None)]),
    ("kill", [("SIGTERM", None)]),
])
def test_process_programs_record_as_they_run(programs, tmp_path, mode, children):
    trace, _ = recorded_like_native(programs.procs, tmp_path, mode)
    rows = tree(trace)
    assert rows[0][:2] == (-1, "0")
    assert rows[0][2] == f"{programs.procs} {mode}"
    assert len(rows) == 1 + len(children)
    for (parent, status, command), (want_status, want_command) in zip(rows[1:], children):
        assert parent == 0 and status == want_status
        assert command == (want_command or f"{programs.procs} {mode}")


def test_a_hundred_sequential_forks(programs, tmp_path):
    trace, _ = recorded_like_native(programs.procs, tmp_path, "forks")
    rows = tree(trace)
    assert [status for _, status, _ in rows[1:]] == [str(i % 50) for i in range(100)]


def test_exec_from_a_thread_takes_the_leaders_pid(programs, tmp_path):
    trace, _ = recorded_like_native(programs.procs, tmp_path, "execthread")
    (only,) = tree(trace)
    assert only == (-1, "0", "echo procs: echo from a thread's exec")


def test_shell_pipeline(tmp_path):
    trace, _ = recorded_like_native("/bin/sh", tmp_path, "-c", "ls /usr/bin | sort | head")
    rows = tree(trace)
    assert [(p, s) for p, s, _ in rows] == [(-1, "0"), (0, "0"), (0, "0"), (0, "0")]
    assert [c for _, _, c in rows[1:]] == ["ls /usr/bin", "sort", "head"]


def test_sigpipe_when_the_reader_exits(tmp_path):
    trace, got = recorded_like_native("/bin/sh", tmp_path, "-c", "seq 1 1000000 | head -2")
    assert got.stdout == b"1\n2\n"
    rows = tree(trace)
    assert ("SIGPIPE", "seq 1 1000000") in [(s, c) for _, s, c in rows]


def test_python_threads_and_subprocess(tmp_path):
    python = shutil.which("python3")
    code = ("import threading, subprocess\n"
            "out = []\n"
            "ts = [threading.Thread(target=lambda i=i: out.append(sum(range(i * 1000))))"
            " for i in range(4)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n"
            "r = subprocess.run(['echo', 'child'], capture_output=True, text=True)\n"
            "print(sorted(out), r.returncode, r.stdout.strip())\n")
    trace, got = recorded_like_native(python, tmp_path, "-c", code)
    assert b"child" in got.stdout
    assert any(c == "echo child" for _, _, c in tree(trace))


def test_make_j2(tmp_path):
    (tmp_path / "Makefile").write_text("all: a.txt b.txt\n\tcat a.txt b.txt\n"
                                       "a.txt:\n\techo a > a.txt\nb.txt:\n\techo b > b.txt\n")
    expected = native(["make", "-j2"], cwd=tmp_path)
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).unlink()
    trace = tmp_path / "t"
    got = record(["make", "-j2"], out=trace, cwd=tmp_path, timeout=120)
    assert (got.stdout, got.returncode) == (expected.stdout, expected.returncode)
    commands = [c for _, _, c in tree(trace)]
    assert "cat a.txt b.txt" in commands and len(commands) >= 4


def test_gcc_hello(tmp_path):
    (tmp_path / "hello.c").write_text('#include <stdio.h>\nint main(void)'
                                      '{ puts("hi"); return 0; }\n')
    trace = tmp_path / "t"
    got = record(["gcc", "-o", "hello", "hello.c"], out=trace, cwd=tmp_path, timeout=120)
    assert got.returncode == 0, got.stderr
    assert native([tmp_path / "hello"]).stdout == b"hi\n"
    names = [c.split()[0].rsplit("/", 1)[-1] for _, _, c in tree(trace)]
    assert "as" in names and any(n in ("collect2", "ld") for n in names)


def test_sort_of_a_10_mb_file(tmp_path):
    import random

    rng = random.Random(7)
    lines = [str(n) for n in range(1_500_000)]
    rng.shuffle(lines)
    big = tmp_path / "big.txt"
    big.write_text("\n".join(lines) + "\n")
    assert big.stat().st_size > 10_000_000
    trace, got = recorded_like_native("sort", tmp_path, str(big), timeout=240)
    assert len(got.stdout) == big.stat().st_size
    (process,) = process_tree(events_of(trace))
    assert process.exit_status == 0 and len(process.tasks) > 1  # sort's own threads


def test_killed_child_of_a_recording_is_listed_with_its_signal(programs, tmp_path):
    trace, _ = recorded_like_native(programs.procs, tmp_path, "kill")
    assert tree(trace)[1][1] == signal.Signals(signal.SIGTERM).name
