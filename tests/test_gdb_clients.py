"""gdb as the user runs it against `retrograde replay -s 0 TRACE`: monitor
commands that move the replay in time and what gdb shows after them, a gdb
that did not get retrograde's command file, and breakpoints planted where
nothing is mapped yet. Real gdb 13 on the MI against the real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from gdb_driver import GDB_COMMANDS, Debugging, GdbError, GdbSession
from runner import record

JIT_ADDRESS = 0x6A1700000000  # tests/programs/jit.c
NEVER_MAPPED = 0x1000  # below vm.mmap_min_addr


@pytest.fixture(scope="module")
def traces(programs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("traces")
    statuses = {"watch": 22, "jit": 42}
    for name, status in statuses.items():
        assert record([programs[name]], out=root / name).returncode == status
    return {name: root / name for name in statuses}


def moment(gdb: GdbSession) -> dict[str, str]:
    """What gdb shows of the present: the pc, the backtrace, a global and a
    local read through the stack (gdb caches both registers and stack memory)."""
    return {
        "rip": gdb.cmd("info registers rip").split()[1],
        "bt": gdb.cmd("bt"),
        "g_value": gdb.cmd("x/gd &g_value").split(":")[1].strip(),
        "frame pointer's slot": gdb.cmd("x/gx $rbp").split(":")[1].strip(),
    }


def test_monitor_restart_shows_the_restored_registers_frames_and_memory(
    traces: dict[str, Path], debug: Debugging
) -> None:
    gdb, _ = debug.start(traces["watch"], "--no-echo")
    gdb.cmd("break add_to_global")
    gdb.stop("continue")  # the first call: delta 2, g_value still 100
    saved = moment(gdb)
    assert saved["g_value"] == "100" and "add_to_global (delta=2)" in saved["bt"]
    gdb.cmd("monitor checkpoint first")
    gdb.cmd("delete")
    gdb.stop("next")
    gdb.stop("next")  # back in step(), after the write
    moved = moment(gdb)
    assert moved["g_value"] == "102" and moved["rip"] != saved["rip"]
    assert moved["bt"].startswith("#0  step (")
    assert gdb.cmd("monitor restart first").startswith("now at ")
    assert moment(gdb) == saved
    assert gdb.value("delta") == "2"


def test_reverse_roll_shows_the_moment_it_rolled_back_to(
    traces: dict[str, Path], debug: Debugging
) -> None:
    gdb, _ = debug.start(traces["watch"], "--no-echo")
    gdb.cmd("break add_to_global")
    gdb.stop("continue")
    gdb.cmd("delete")
    saved = moment(gdb)
    steps = 0
    while gdb.stop("stepi").frame["func"] != "step":  # past the write, out of the call
        steps += 1
        assert steps < 50
    steps += 1
    assert moment(gdb)["g_value"] == "102"
    rolled = gdb.cmd(f"reverse-roll {steps}")
    assert "add_to_global (delta=2)" in rolled  # it shows where it went, as reverse-stepi does
    assert moment(gdb) == saved
    # The monitor command itself, without the gdb command around it.
    gdb.stop(f"stepi {steps}")
    assert moment(gdb)["g_value"] == "102"
    gdb.cmd(f"monitor reverse-roll {steps}")
    assert moment(gdb) == saved


def test_a_gdb_the_server_did_not_start_gets_the_commands_from_the_lines_it_prints(
    traces: dict[str, Path], debug: Debugging
) -> None:
    server = debug.serve(traces["watch"], "--no-echo")
    assert server.gdb_commands == [f"source {GDB_COMMANDS}", f"target remote {server.address}"]
    gdb = debug.gdb(commands=None)
    gdb.connect(server.address)
    # The protocol carries the monitor commands whatever the client loaded.
    position = gdb.cmd("monitor when")
    assert position.startswith("event ")
    with pytest.raises(GdbError, match='Undefined command: "when"'):
        gdb.cmd("when")
    gdb.cmd(server.gdb_commands[0])
    assert gdb.cmd("when") == position
    gdb.cmd("break add_to_global")
    gdb.stop("continue")
    gdb.cmd("monitor checkpoint first")
    gdb.stop("finish")
    gdb.cmd("monitor restart first")
    assert gdb.value("delta") == "2" and gdb.cmd("bt").startswith("#0  add_to_global (delta=2)")


def test_a_breakpoint_planted_before_its_address_is_mapped_stops_there(
    traces: dict[str, Path], debug: Debugging
) -> None:
    gdb, _ = debug.start(traces["jit"], "--no-echo")
    with pytest.raises(GdbError, match=f"Cannot access memory at address {JIT_ADDRESS:#x}"):
        gdb.cmd(f"x/i {JIT_ADDRESS:#x}")  # nothing there yet
    gdb.cmd(f"break *{JIT_ADDRESS:#x}")
    gdb.cmd(f"break *{NEVER_MAPPED:#x}")
    for argument in (2, 3):
        hit = gdb.stop("continue")
        assert hit.reason == "breakpoint-hit" and gdb.pc() == JIT_ADDRESS
        assert gdb.value("$rdi") == str(argument)
        assert "lea    0x28(%rdi),%eax" in gdb.cmd("x/i $pc")  # the code the program wrote
    # Backwards too: the scans from checkpoints taken before the mapping existed.
    assert gdb.stop("reverse-continue").reason == "breakpoint-hit"
    assert (gdb.pc(), gdb.value("$rdi")) == (JIT_ADDRESS, "2")
    assert gdb.stop("reverse-continue").reason == "no-history"
    gdb.cmd("delete")
    assert gdb.stop("continue").reason == "no-history"
    ended = gdb.stop("continue")
    assert ended.reason == "exited" and ended.record["exit-code"] == "052"
