"""A value's history: `last` and `history` in gdb (the shipped command file)
and `retrograde history` on the command line. history.c's loop of 10^5 iterations
without a syscall writes g_last every 100th (1000 writes: -1 -> 0 -> 100 -> ...
-> 99900); hundreds.c's 500 iterations write `hundreds` 5 times (0 -> 1 -> ... -> 5)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gdb_driver import source_line
from runner import recorded, retrograde

WRITE = source_line("hundreds", "// write: hundreds")
SLOW = 300  # seconds for a whole walk (the machine is shared)
EXPECTED = [(str(k - 1), str(k)) for k in range(5, 0, -1)]  # newest first
WRITES = [100 * k for k in range(1000)]
HISTORY = [(str(old), str(new)) for old, new in zip([-1, *WRITES], WRITES)][::-1]


ENTRY = re.compile(r"#(\d+)  (.+)  (\S+):(\d+)  (\S+) -> (\S+)")


def test_the_1000_writes_of_a_global_in_gdb_and_in_retrograde_history_agree(
        programs, trace_root, debug):
    """From the end of the recording, `history g_last` lists all 1000 writes newest
    first, each at the writing line with its old and new value and a position of its
    own; `history g_last 2` is the first two of them, `last` goes to the newest, and
    `retrograde history` prints the very same entries."""
    trace = recorded(programs.history, trace_root)
    write = source_line("history", "// write: g_last")
    gdb, _ = debug.start(trace)
    assert gdb.stop("continue", timeout=SLOW).reason == "no-history"
    here = gdb.cmd("when")

    out = gdb.script("history g_last", timeout=SLOW)
    lines = [line for line in out.splitlines() if line.startswith("#")]
    entries = [ENTRY.fullmatch(line) for line in lines]
    assert len(entries) == 1000 and all(entries), out[-2000:]
    assert [(e[5], e[6]) for e in entries] == HISTORY  # type: ignore[index]
    assert [e[1] for e in entries] == [str(n) for n in range(1, 1001)]  # type: ignore[index]
    assert {(Path(e[3]).name, int(e[4])) for e in entries} == {("history.c", write)}  # type: ignore[index]
    positions = [e[2] for e in entries]  # type: ignore[index]
    assert len(set(positions)) == 1000
    assert gdb.cmd("when") == here  # history came back to where it started
    assert gdb.value("g_last") == "99900"

    only_two = gdb.script("history g_last 2", timeout=SLOW)
    assert [line for line in only_two.splitlines() if line.startswith("#")] == lines[:2]

    last = gdb.script("last g_last", timeout=SLOW)
    assert "g_last: 99800 -> 99900\n  at " in last
    assert positions[0] in last
    assert gdb.value("g_last") == "99800"  # last stays where the write is, before it
    assert gdb.value("i") == "99900"

    cli = retrograde("history", trace, "g_last", timeout=SLOW)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.decode().splitlines() == lines


def test_history_in_json_and_limited_from_gdb_and_the_command_line(programs, trace_root, debug):
    trace = recorded(programs.hundreds, trace_root, "500")
    gdb, _ = debug.start(trace)
    assert gdb.stop("continue", timeout=SLOW).reason == "no-history"
    out = gdb.script("history hundreds", timeout=SLOW)
    lines = [line for line in out.splitlines() if line.startswith("#")]
    entries = [ENTRY.fullmatch(line) for line in lines]
    assert [(e[5], e[6]) for e in entries] == EXPECTED  # type: ignore[index]
    positions = [e[2] for e in entries]  # type: ignore[index]

    cli = retrograde("history", trace, "hundreds", "--json", timeout=SLOW)
    assert cli.returncode == 0, cli.stderr
    changes = json.loads(cli.stdout)
    assert [(c["old"], c["new"]) for c in changes] == EXPECTED
    assert [c["position"] for c in changes] == positions
    assert {c["location"].rsplit(":", 1)[1] for c in changes} == {str(WRITE)}

    text = retrograde("history", trace, "hundreds", "--limit", "3", timeout=SLOW)
    assert text.returncode == 0, text.stderr
    assert text.stdout.decode().splitlines() == lines[:3]


def test_retrograde_history_from_a_location_and_of_a_bad_expression(programs, trace_root):
    trace = recorded(programs.hundreds, trace_root, "500")
    at = retrograde("history", trace, "hundreds", "--json", "--at", f"hundreds.c:{WRITE} if i == 300",
                    timeout=SLOW)
    assert at.returncode == 0, at.stderr
    assert [(c["old"], c["new"]) for c in json.loads(at.stdout)] == EXPECTED[2:]
    bad = retrograde("history", trace, "no_such_variable", timeout=SLOW)
    assert bad.returncode == 1
    assert bad.stderr.decode().count("\n") == 1 and "no_such_variable" in bad.stderr.decode()
