"""Reverse search on perf counters, from real gdb: a watchpoint's whole history walked
backwards through a loop with no syscall in it, and a search interrupted; a long
search's progress, in gdb and on the server's console."""

from __future__ import annotations

import re

from gdb_driver import GdbSession, source_line
from runner import recorded

WRITES = 1000  # history.c writes g_last every 100th of its 10^5 iterations
PATIENCE = 120  # seconds for a command that goes far (the machine is shared)


def at_the_end_of_the_loop(gdb: GdbSession) -> None:
    after_loop = source_line("history", '"history: last')
    gdb.cmd(f"break {after_loop}")
    gdb.stop("continue", timeout=PATIENCE)
    gdb.cmd("delete")


def registers(gdb: GdbSession) -> str:
    return gdb.cmd("info registers rip rsp rbp rax rbx rcx rdx rsi rdi r8 r9 eflags")


# gdb's own loop (one MI round trip a hop costs more than the hop): reverse-continue
# until a stop is no watchpoint's (the start of the history).
WALK = """
stops = []
gdb.events.stop.connect(stops.append)
while not stops or isinstance(stops[-1], gdb.BreakpointEvent):
    gdb.execute("reverse-continue")
"""


def test_reverse_continue_walks_every_write_of_a_watched_global(programs, trace_root, debug):
    """From after the loop, watch g_last and reverse-continue until history runs out:
    1000 stops, newest write first, each at the writing line before the write, with
    gdb's Old (the value after the write) and New (the value before)."""
    server = debug.serve(recorded(programs.history, trace_root))
    gdb = debug.gdb()
    gdb.mi("-gdb-set mi-async off")  # the script's resumes finish before it goes on
    gdb.connect(server.address)
    at_the_end_of_the_loop(gdb)
    assert gdb.value("g_last") == "99900"
    gdb.cmd("watch g_last")
    write = source_line("history", "// write: g_last")
    *writes, last = gdb.python(WALK, timeout=PATIENCE)
    assert last.reason == "no-history" or "reason" not in last.record  # gdb 13: see Stopped
    i = [100 * k for k in range(WRITES)]
    assert [(s.reason, s.record["value"]["old"], s.record["value"]["new"], s.line)
            for s in writes] == [("watchpoint-trigger", str(old), str(new), write)
                                 for old, new in zip(i[::-1], [*i[-2::-1], -1], strict=True)]
    assert gdb.value("g_last") == "-1"
    # Forwards again from the start of the history: the first write.
    stop = gdb.stop("continue", timeout=PATIENCE)
    assert "Old value = -1\nNew value = 0\n" in stop.console


def test_reverse_continue_to_a_breakpoint_in_the_loop_then_back_again(programs, trace_root,
                                                                      debug):
    """A breakpoint on the writing line, hit 1000 times in one event interval: each
    reverse-continue stops at the previous hit, i one hundred less."""
    gdb, _ = debug.start(recorded(programs.history, trace_root))
    at_the_end_of_the_loop(gdb)
    gdb.cmd(f"break {source_line('history', '// write: g_last')}")
    for i in (99900, 99800, 99700):
        gdb.stop("reverse-continue", timeout=PATIENCE)
        assert gdb.value("i") == str(i)
    stop = gdb.stop("continue", timeout=PATIENCE)
    assert gdb.value("i") == "99800" and stop.reason == "breakpoint-hit"


def test_an_interrupt_stops_a_long_reverse_search_where_it_began(programs, trace_root, debug):
    """history.c with 3*10^8 iterations: a reverse search for a write of g_never (none
    in the loop) counts through the whole loop. 0x03 (-exec-interrupt) stops it:
    gdb is told SIGINT, and the replay is where the search began."""
    gdb, _ = debug.start(recorded(programs.history, trace_root, "300000000"))
    at_the_end_of_the_loop(gdb)
    before = registers(gdb), gdb.value("g_last"), gdb.value("sum")
    gdb.cmd("watch g_never")
    gdb.start("-exec-continue --reverse")
    stop = gdb.stop("-exec-interrupt", timeout=10)
    assert stop.record.get("signal-name") == "SIGINT"
    assert (registers(gdb), gdb.value("g_last"), gdb.value("sum")) == before


# hundreds.c's loop body, arrived at once an iteration. A breakpoint there with a
# condition the server evaluates is searched backwards with a ptrace stop at every
# arrival (counters count arrivals, not where a condition holds): 10^5 arrivals
# take seconds on any machine (tens of microseconds each), so a search over them is
# sure to pass PROGRESS_AFTER, the second after which it reports.
BODY = source_line("hundreds", "// loop: body")
PROGRESS = re.compile(r"retrograde: reverse search: .* \(\d+ s\)")
TOOK = re.compile(r"retrograde: reverse search (took|interrupted after) \d+\.\d s")


def progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if PROGRESS.fullmatch(line) or TOOK.fullmatch(line)]


def at_the_end_with_a_condition(gdb: GdbSession, condition: str) -> None:
    gdb.cmd("set breakpoint condition-evaluation target")
    assert gdb.stop("continue", timeout=PATIENCE).reason == "no-history"
    gdb.cmd(f"break hundreds.c:{BODY} if {condition}")


def test_a_long_reverse_search_shows_its_progress_in_gdb_and_on_the_servers_console(
        programs, trace_root, debug):
    """reverse-continue to i == 100 over 10^5 arrivals: while it runs, gdb prints what
    it is doing (`O` packets before the stop reply), then how long it took; the
    server's console has the same lines."""
    gdb, server = debug.start(recorded(programs.hundreds, trace_root, "100000"))
    at_the_end_with_a_condition(gdb, "i == 100")
    gdb.start("-exec-continue --reverse")
    first = gdb.printed("retrograde: reverse search: ", timeout=PATIENCE)
    assert PROGRESS.fullmatch(first.rstrip("\n")), first
    stop = gdb.stopped(timeout=4 * PATIENCE)
    assert (stop.reason, stop.line, gdb.value("i")) == ("breakpoint-hit", BODY, "100")
    shown = progress_lines(stop.console)
    assert shown[0] == first.rstrip("\n") and TOOK.fullmatch(shown[-1]), stop.console
    assert shown[-1].split()[3] == "took"
    assert all(PROGRESS.fullmatch(line) for line in shown[:-1])
    assert progress_lines(server.stderr) == shown


def test_an_interrupt_ends_a_search_that_has_run_for_a_while_where_it_began(
        programs, trace_root, debug):
    """A reverse search over 10^6 arrivals for a condition that never holds, interrupted
    once gdb has shown that it is under way: SIGINT, the replay where the search began,
    and the search's last line says after how long it was interrupted."""
    gdb, server = debug.start(recorded(programs.hundreds, trace_root, "1000000"))
    at_the_end_with_a_condition(gdb, "i == -1")
    before = registers(gdb), gdb.value("sum"), gdb.value("hundreds")
    gdb.start("-exec-continue --reverse")
    gdb.printed("retrograde: reverse search: ", timeout=PATIENCE)
    stop = gdb.stop("-exec-interrupt", timeout=PATIENCE)
    assert stop.record.get("signal-name") == "SIGINT"
    assert (registers(gdb), gdb.value("sum"), gdb.value("hundreds")) == before
    shown = progress_lines(stop.console)
    assert shown[-1].split()[3:5] == ["interrupted", "after"], stop.console
    assert progress_lines(server.stderr) == shown
