"""A value's history: `last` and `history` in gdb (the shipped command file)
and `retrograde history` on the command line, on a loop that writes a global
every 100th iteration (500 iterations: 5 writes, 0 -> 1 -> ... -> 5)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from gdb_driver import Debugging, source_line
from runner import record, retrograde

WRITE = source_line("hundreds", "// write: hundreds")
SLOW = 300  # seconds: each reverse hop over the loop counts instructions today
EXPECTED = [(str(k - 1), str(k)) for k in range(5, 0, -1)]  # newest first


@pytest.fixture
def debug() -> Iterator[Debugging]:
    with Debugging() as debugging:
        yield debugging


def recorded(program: Path, trace_root: Path, *args: str) -> Path:
    out = trace_root / program.name
    assert record([program, *args], out=out).returncode == 0
    return out


ENTRY = re.compile(r"#(\d+)  (.+)  (\S+):(\d+)  (\S+) -> (\S+)")


def test_history_and_last_in_gdb_and_retrograde_history_agree(programs, trace_root, debug):
    trace = recorded(programs.hundreds, trace_root, "500")
    gdb, _ = debug.start(trace)
    assert gdb.stop("continue", timeout=SLOW).reason == "no-history"
    here = gdb.cmd("when")

    out = gdb.script("history hundreds", timeout=SLOW)
    entries = [ENTRY.fullmatch(line) for line in out.splitlines() if line.startswith("#")]
    assert entries and all(entries), out
    assert [(e[5], e[6]) for e in entries] == EXPECTED  # type: ignore[index]
    assert [e[1] for e in entries] == ["1", "2", "3", "4", "5"]  # type: ignore[index]
    assert {(Path(e[3]).name, int(e[4])) for e in entries} == {("hundreds.c", WRITE)}  # type: ignore[index]
    positions = [e[2] for e in entries]  # type: ignore[index]
    assert len(set(positions)) == 5
    assert gdb.cmd("when") == here  # history came back to where it started
    assert gdb.value("hundreds") == "5"

    only_two = gdb.script("history hundreds 2", timeout=SLOW)
    assert [line for line in only_two.splitlines() if line.startswith("#")] == \
        [line for line in out.splitlines() if line.startswith("#")][:2]

    last = gdb.script("last hundreds", timeout=SLOW)
    assert "hundreds: 4 -> 5\n  at " in last
    assert positions[0] in last
    assert gdb.value("hundreds") == "4"  # last stays where the write is, before it
    assert gdb.value("i") == "400"

    cli = retrograde("history", trace, "hundreds", "--json", timeout=SLOW)
    assert cli.returncode == 0, cli.stderr
    changes = json.loads(cli.stdout)
    assert [(c["old"], c["new"]) for c in changes] == EXPECTED
    assert [c["position"] for c in changes] == positions
    assert {c["location"].rsplit(":", 1)[1] for c in changes} == {str(WRITE)}

    text = retrograde("history", trace, "hundreds", "--limit", "3", timeout=SLOW)
    assert text.returncode == 0, text.stderr
    assert text.stdout.decode().splitlines() == \
        [line for line in out.splitlines() if line.startswith("#")][:3]


def test_retrograde_history_from_a_location_and_of_a_bad_expression(programs, trace_root):
    trace = recorded(programs.hundreds, trace_root, "500")
    at = retrograde("history", trace, "hundreds", "--json", "--at", f"hundreds.c:{WRITE} if i == 300",
                    timeout=SLOW)
    assert at.returncode == 0, at.stderr
    assert [(c["old"], c["new"]) for c in json.loads(at.stdout)] == EXPECTED[2:]
    bad = retrograde("history", trace, "no_such_variable", timeout=SLOW)
    assert bad.returncode == 1
    assert bad.stderr.decode().count("\n") == 1 and "no_such_variable" in bad.stderr.decode()
