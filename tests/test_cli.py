"""The command line as a new user meets it: --version and --help, what `record`
says and leaves behind when it cannot start, `ls` over good and broken traces,
and `dump` read side by side with strace's view of the same program."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from runner import RETROGRADE, latest, record, retrograde

import retrograde as package
from retrograde.trace import format as trace_format


def test_version():
    got = retrograde("--version")
    assert (got.returncode, got.stdout.decode()) == (0, f"retrograde {package.__version__}\n")


def test_replay_help_shows_how_to_pass_arguments_to_gdb():
    got = retrograde("replay", "-h")
    assert got.returncode == 0
    assert got.stdout.decode().startswith(
        "usage: retrograde replay [options] [TRACE] [-- GDB-ARGS...]\n")
    assert "Everything after -- goes to gdb" in got.stdout.decode()


def test_record_says_where_the_trace_went(programs, trace_root):
    got = record([programs.hello])
    assert got.returncode == 3
    assert got.stderr.decode() == f"retrograde: trace in {trace_root / 'hello-0'}\n"
    assert latest(trace_root) == trace_root / "hello-0"


@pytest.mark.parametrize("what", ["directory", "missing", "not-executable", "not-a-program"])
def test_a_record_that_cannot_start_leaves_no_trace(programs, trace_root, tmp_path, what):
    assert record([programs.hello]).returncode == 3  # the trace latest-trace must keep naming
    target = tmp_path / what
    expected = {"directory": (126, "it is a directory"), "missing": (127, "no such program"),
                "not-executable": (126, "not executable"),
                "not-a-program": (1, "cannot run")}[what]
    if what == "directory":
        target.mkdir()
    elif what == "not-executable":
        target.write_text("echo hi\n")
    elif what == "not-a-program":
        target.write_bytes(b"\x7fELF, but not really")  # found executable, refused by execve
        target.chmod(0o755)
    got = record([target])
    err = got.stderr.decode()
    assert got.returncode == expected[0] and err.count("\n") == 1 and expected[1] in err, err
    assert sorted(p.name for p in trace_root.iterdir()) == ["hello-0", "latest-trace"]
    assert latest(trace_root) == trace_root / "hello-0"
    out = tmp_path / "given"
    out.mkdir()
    got = record([target], out=out)
    assert got.returncode == expected[0]
    assert list(out.iterdir()) == []  # the directory the user gave stays, empty


def test_record_into_a_file_is_one_line(programs, trace_root, tmp_path):
    (tmp_path / "taken").write_text("mine")
    got = record([programs.hello], out=tmp_path / "taken")
    assert got.returncode == 1
    assert got.stderr.decode() == (f"retrograde: cannot record into {tmp_path / 'taken'}: it "
                                   "exists and is not an empty directory\n")
    assert (tmp_path / "taken").read_text() == "mine"


def _rewrite_metadata(trace, change) -> None:
    """Change the metadata as a writer would have written it (checksum included)."""
    path = trace / "metadata.json"
    meta = json.loads(path.read_text())
    change(meta)
    meta["crc32"] = trace_format._metadata_checksum(meta)
    path.write_text(json.dumps(meta))


def test_ls_lists_the_healthy_traces_and_names_each_broken_one(programs, trace_root):
    for _ in range(4):
        record([programs.hello])
    record([programs.fatal])
    (trace_root / "hello-1" / "metadata.json").write_text('{"format_version": 2, "argv": [')
    _rewrite_metadata(trace_root / "hello-2", lambda meta: meta.update(exit_status=0))
    _rewrite_metadata(trace_root / "hello-3", lambda meta: meta.update(start_time="noon"))
    got = retrograde("ls")
    rows = [line.split() for line in got.stdout.decode().splitlines()]
    assert rows[0] == ["NAME", "COMMAND", "DATE", "EVENTS", "SIZE", "EXIT"]
    assert [(row[0], row[-1]) for row in rows[1:]] == [
        ("fatal-0", "SIGSEGV"), ("hello-0", "3"), ("hello-1", "broken"), ("hello-2", "broken"),
        ("hello-3", "broken")]
    # The command, as the exec event has it: a long path keeps its end.
    shown = rows[2][1]
    assert shown == str(programs.hello) or (
        shown.startswith("…") and len(shown) == 40 and str(programs.hello).endswith(shown[1:]))
    assert got.returncode == 1
    assert got.stderr.decode().splitlines() == [
        (f"retrograde: hello-1 is broken: {trace_root}/hello-1/metadata.json is corrupt "
         "(Expecting value: line 1 column 32 (char 31))"),
        ("retrograde: hello-2 is broken: metadata.json and the last event (39: 3) disagree on "
         "how the program ended"),
        "retrograde: hello-3 is broken: metadata.json has a start_time of 'noon'",
    ]


def test_ls_counts_the_events_that_are_there(programs, trace_root):
    record([programs.hello])
    _rewrite_metadata(trace_root / "hello-0", lambda meta: meta.update(event_count=400))
    got = retrograde("ls")
    assert got.returncode == 1
    assert got.stderr.decode() == (f"retrograde: hello-0 is broken: {trace_root}/hello-0/events: "
                                   "holds 40 events but the recording ended with 400 (events "
                                   "are missing)\n")


STRACE = shutil.which("strace")


@pytest.mark.skipif(STRACE is None, reason="strace is not installed (make test installs it)")
def test_dump_shows_the_calls_as_strace_shows_them(programs, trace_root, tmp_path):
    assert record([programs.hello]).returncode == 3
    dump = retrograde("dump")
    assert dump.returncode == 0
    ours = [m[1] for line in dump.stdout.decode().splitlines()
            if (m := re.search(r"\] syscall  (.*?\)) = ", line))]
    traced = tmp_path / "strace.out"
    subprocess.run([STRACE, "-o", str(traced), str(programs.hello)], capture_output=True,
                   check=False, timeout=60)
    theirs = [line.split(") ", 1)[0] + ")" if ") " in line else line
              for line in traced.read_text().splitlines()]
    # The calls whose arguments hold no address (those differ run to run) must read
    # exactly as strace's, in the same order.
    comparable = [call for call in ours if "0x" not in call]
    position = 0
    for call in comparable:
        assert call in theirs[position:], f"{call!r} is not in strace's {theirs[position:]}"
        position = theirs.index(call, position) + 1
    for call in ['access("/etc/ld.so.preload", R_OK)',
                 'openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC)',
                 "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)",
                 'write(1, "hello, world\\n", 13)', "exit_group(3)"]:
        assert call in comparable


def test_dump_of_a_trace_that_is_not_there_is_one_line(trace_root):
    got = subprocess.run([*RETROGRADE, "dump"], capture_output=True, timeout=60,
                         check=False)
    assert got.returncode == 1
    assert got.stderr.decode() == (f"retrograde: no trace to use: {trace_root}/latest-trace "
                                   "does not exist (record one first)\n")
