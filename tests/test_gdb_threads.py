"""A program of four threads (tests/programs/workers.c) debugged from real gdb: every
thread listed with its name, its registers and its backtrace; breakpoints and
watchpoints hit in workers report the worker; reverse-continue and reverse-stepi
cross the slices of the other threads; the program runs to its end."""

from __future__ import annotations

from typing import Any

from gdb_driver import GdbSession, Stopped, source_line
from runner import recorded

SLOW = 120  # a reverse search from the breakpoint stops at every hit on the way


def threads(gdb: GdbSession) -> list[dict[str, Any]]:
    """gdb's threads (-thread-info): id, target-id, name, frame."""
    return gdb.mi("-thread-info")["threads"]


def by_name(gdb: GdbSession) -> dict[str, str]:
    """gdb's thread number of each thread, by the thread's name."""
    return {thread["name"]: thread["id"] for thread in threads(gdb)}


def at_report(gdb: GdbSession) -> dict[str, str]:
    """Run to the reporter's call of report(), where all four threads live; their
    gdb numbers by name."""
    gdb.cmd("break report")
    stop = gdb.stop("continue")
    assert stop.reason == "breakpoint-hit" and stop.frame["func"] == "report"
    names = by_name(gdb)
    assert stop.record["thread-id"] == names["reporter"]
    return names


def thread_of(stop: Stopped) -> str:
    return stop.record["thread-id"]


def tids(gdb: GdbSession) -> dict[str, str]:
    """Each thread's target id ("Thread PID.TID") by its gdb number: a thread gdb
    saw go (going back to before it was made) gets a new number when it comes back."""
    return {thread["id"]: thread["target-id"] for thread in threads(gdb)}


def test_every_thread_shows_its_name_registers_and_backtrace(programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.workers, trace_root))
    names = at_report(gdb)
    assert sorted(names) == ["reporter", "workers", "writer-1", "writer-2"]
    listing = gdb.cmd("info threads")
    assert all(f'"{name}"' in listing for name in names)
    backtraces = gdb.cmd("thread apply all bt")
    assert "report (value=2)" in backtraces
    assert "writer (arg=0x1)" in backtraces and "writer (arg=0x2)" in backtraces
    assert "main ()" in backtraces
    pcs = {}
    for name, number in names.items():
        gdb.cmd(f"thread {number}")
        assert gdb.value("$_thread") == number
        pcs[name] = gdb.pc()
        frames = gdb.cmd("bt")
        assert {"reporter": "reporter (arg=", "writer-1": "writer (arg=0x1)",
                "writer-2": "writer (arg=0x2)", "workers": "main ()"}[name] in frames
    assert len(set(pcs.values())) >= 3  # the writers may wait at one pc, in one call
    gdb.cmd(f"thread {names['reporter']}")
    assert gdb.cmd("info symbol $pc").startswith("report + ")
    # Memory is one address space: every thread reads the same global.
    for number in names.values():
        gdb.cmd(f"thread {number}")
        assert gdb.value("g_seen") == "2"


def test_reverse_continue_stops_at_a_breakpoint_in_another_thread(programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.workers, trace_root))
    names = at_report(gdb)
    target_ids = tids(gdb)
    writers = [target_ids[names["writer-1"]], target_ids[names["writer-2"]]]
    gdb.cmd("break writer")
    stop = gdb.stop("reverse-continue", timeout=SLOW)
    assert stop.frame["func"] == "writer" and thread_of(stop) == names["writer-2"]
    assert gdb.value("arg") == "0x2"
    stop = gdb.stop("reverse-continue", timeout=SLOW)
    assert stop.frame["func"] == "writer" and thread_of(stop) == names["writer-1"]
    assert gdb.value("arg") == "0x1"
    assert gdb.stop("reverse-continue", timeout=SLOW).reason == "no-history"
    # Forwards again from the start, each arrival in its own thread (the same
    # threads, under new gdb numbers), then the reporter's call.
    for writer in writers:
        stop = gdb.stop("continue")
        assert stop.frame["func"] == "writer" and tids(gdb)[thread_of(stop)] == writer
    stop = gdb.stop("continue")
    assert stop.frame["func"] == "report" and by_name(gdb)["reporter"] == thread_of(stop)


def test_a_watchpoint_on_a_global_two_threads_write_finds_the_last_writer_then_the_one_before(
        programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.workers, trace_root))
    names = at_report(gdb)
    gdb.cmd("delete")
    gdb.cmd("watch g_shared")
    write = source_line("workers", "/* write: g_shared */")
    stop = gdb.stop("reverse-continue", timeout=SLOW)
    assert stop.reason == "watchpoint-trigger" and thread_of(stop) == names["writer-2"]
    assert (stop.frame["func"], stop.line) == ("writer", write)
    assert gdb.value("g_shared") == "1"  # before writer-2's write: writer-1's value
    stop = gdb.stop("reverse-continue", timeout=SLOW)
    assert stop.reason == "watchpoint-trigger" and thread_of(stop) == names["writer-1"]
    assert (stop.frame["func"], stop.line) == ("writer", write)
    assert gdb.value("g_shared") == "0"
    # Forwards, the watchpoint triggers after each write, in the thread that wrote.
    stop = gdb.stop("continue")
    assert stop.reason == "watchpoint-trigger" and thread_of(stop) == names["writer-1"]
    assert gdb.value("g_shared") == "1"
    stop = gdb.stop("continue")
    assert stop.reason == "watchpoint-trigger" and thread_of(stop) == names["writer-2"]
    assert gdb.value("g_shared") == "2"


def test_a_watchpoint_set_before_the_threads_exist_triggers_in_each_writer(
        programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.workers, trace_root))
    gdb.cmd("watch g_shared")
    for value in ("1", "2"):
        stop = gdb.stop("continue")
        assert stop.reason == "watchpoint-trigger" and stop.frame["func"] == "writer"
        assert gdb.value("g_shared") == value
        assert by_name(gdb)[f"writer-{value}"] == thread_of(stop)


def test_reverse_stepi_in_a_worker_crosses_the_other_threads_slices(programs, trace_root, debug):
    """writer-2 last ran before the reporter's slice that wrote g_seen: its previous
    instruction lies before that slice, and stepping it forwards again comes back."""
    gdb, _ = debug.start(recorded(programs.workers, trace_root))
    names = at_report(gdb)
    gdb.cmd("delete")
    gdb.cmd(f"thread {names['writer-2']}")
    here = gdb.pc()
    stop = gdb.stop("reverse-stepi")
    assert thread_of(stop) == names["writer-2"]
    assert gdb.value("$_thread") == names["writer-2"]
    assert gdb.value("g_seen") == "0"  # the reporter's copy is undone
    previous = gdb.pc()
    assert next_instruction(gdb) == here  # one instruction of writer-2 back
    stop = gdb.stop("reverse-stepi")
    assert thread_of(stop) == names["writer-2"]
    assert next_instruction(gdb) == previous
    stop = gdb.stop("stepi")
    assert thread_of(stop) == names["writer-2"] and gdb.pc() == previous
    stop = gdb.stop("stepi")  # the others run their slices as needed meanwhile
    assert thread_of(stop) == names["writer-2"] and gdb.pc() == here


def next_instruction(gdb: GdbSession) -> int:
    """The address of the instruction after the one at the pc."""
    second = gdb.cmd("x/2i $pc").splitlines()[1]
    return int(second.split()[0].rstrip(":"), 16)


def test_stepping_a_thread_at_a_breakpoint_reports_that_thread(programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.workers, trace_root))
    names = at_report(gdb)
    body = gdb.pc()
    stop = gdb.stop("next")
    assert thread_of(stop) == names["reporter"] and stop.frame["func"] == "report"
    assert gdb.value("g_reports") == "2"
    stop = gdb.stop("reverse-next")
    assert thread_of(stop) == names["reporter"] and gdb.pc() == body
    assert gdb.value("g_reports") == "0"
    assert "now at" in gdb.cmd("monitor reverse-roll 2")
    assert gdb.value("g_reports") == "0"


def test_the_threads_run_to_the_programs_end(programs, trace_root, debug):
    gdb, server = debug.start(recorded(programs.workers, trace_root))
    at_report(gdb)
    gdb.cmd("delete")
    assert gdb.stop("continue").reason == "no-history"  # the exit_group, not carried out
    stop = gdb.stop("continue")
    assert stop.reason == "exited" and stop.record.get("exit-code") == "07"
    assert "workers: g_shared 2, reports 2" in server.output
