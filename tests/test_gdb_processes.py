"""Process trees debugged from real gdb, one process at a time (`replay -p`): a
child of a shell pipeline chosen by its command, a child chosen by its pid that
forks again and is reversed across that fork, an unknown choice refused in one
line, and the first process by default, whose breakpoints and watchpoints
never fire in its children (tests/programs/forktwice.c, numbers.c, tally.c)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gdb_driver import GdbSession, source_line
from runner import record, recorded
from runner import retrograde as run_retrograde

from retrograde.trace.format import TraceReader
from retrograde.trace.tasks import ProcessInfo, process_tree


def processes_of(trace: Path) -> list[ProcessInfo]:
    with TraceReader(trace) as reader:
        return process_tree(reader.events())


def threads(gdb: GdbSession) -> list[dict[str, Any]]:
    return gdb.mi("-thread-info")["threads"]


def test_p_command_debugs_the_reader_of_a_pipeline(programs, trace_root, debug):
    """sh -c 'numbers | tally': gdb is given tally from its exec, alone; its
    breakpoint shows each number read and the total so far, and the program
    runs to its own end while the writer and the shell are replayed alongside."""
    trace = trace_root / "pipeline"
    recording = record(["sh", "-c", f"{programs.numbers} | {programs.tally}"], out=trace)
    assert recording.returncode == 0 and b"tally: 55" in recording.stdout, recording.stderr
    tally = next(p for p in processes_of(trace) if p.argv == (str(programs.tally),))
    gdb, server = debug.start(trace, "-p", "tally")
    (thread,) = threads(gdb)
    assert thread["target-id"] == f"Thread {tally.pid}.{tally.pid}"
    assert thread["name"] == "tally"
    gdb.cmd("break add")
    for n, total in ((1, 0), (2, 1), (3, 3)):
        stop = gdb.stop("continue")
        assert stop.reason == "breakpoint-hit" and stop.frame["func"] == "add"
        assert (gdb.value("n"), gdb.value("total")) == (str(n), str(total))
    stop = gdb.stop("reverse-continue")
    assert stop.reason == "breakpoint-hit" and gdb.value("n") == "2"
    gdb.cmd("delete")
    stop = gdb.stop("continue")
    assert stop.reason == "exited-normally"
    assert "tally: 55" in server.output


def test_p_pid_debugs_the_writer_of_a_pipeline_to_its_exit(programs, trace_root, debug):
    """numbers exits while the reader and the shell go on: gdb sees its exit. Its
    history starts where it was forked, in the shell's code, before its exec."""
    trace = trace_root / "pipeline"
    record(["sh", "-c", f"{programs.numbers} | {programs.tally}"], out=trace)
    numbers = next(p for p in processes_of(trace) if p.argv == (str(programs.numbers),))
    gdb, _ = debug.start(trace, "-p", str(numbers.pid))
    (thread,) = threads(gdb)
    assert thread["target-id"] == f"Thread {numbers.pid}.{numbers.pid}"
    assert gdb.stop("reverse-stepi").reason == "no-history"
    stop = gdb.stop("continue")
    assert stop.reason == "exited-normally"


def forktwice(programs, trace_root) -> tuple[Path, list[ProcessInfo]]:
    trace = recorded(programs.forktwice, trace_root)
    processes = processes_of(trace)
    assert [p.exit_status for p in processes] == [3, 5, 7]
    return trace, processes


def test_reverse_continue_in_a_child_across_the_fork_it_made(programs, trace_root, debug):
    """-p CHILD: from its creation, to after the fork of the grandchild, then back
    across that fork to the breakpoint before it, with the values it had there;
    a watchpoint sees the child's writes only (never the grandchild's 3), both
    ways; and the child's exit is the end, while its parent goes on."""
    trace, (_, child, grandchild) = forktwice(programs, trace_root)
    gdb, server = debug.start(trace, "-p", str(child.pid))
    (thread,) = threads(gdb)
    assert thread["target-id"] == f"Thread {child.pid}.{child.pid}"
    gdb.cmd("break before_fork")
    gdb.cmd("break after_fork")
    stop = gdb.stop("continue")
    assert stop.frame["func"] == "before_fork" and gdb.value("depth") == "2"
    stop = gdb.stop("continue")
    assert stop.frame["func"] == "after_fork"
    assert gdb.value("forked") == str(grandchild.pid)
    assert (gdb.value("g_who"), gdb.value("g_visits")) == ("5", "3")
    stop = gdb.stop("reverse-continue")
    assert stop.reason == "breakpoint-hit" and stop.frame["func"] == "before_fork"
    assert (gdb.value("g_who"), gdb.value("g_visits")) == ("2", "2")
    assert len(threads(gdb)) == 1  # the grandchild is not made yet, and never shown
    stop = gdb.stop("reverse-continue")
    assert stop.reason == "no-history"  # the child's creation: its history's start
    assert gdb.stop("reverse-stepi").reason == "no-history"
    gdb.cmd("delete")
    gdb.cmd("watch g_who")
    write = source_line("forktwice", "/* write: g_who */")
    for value in ("2", "5"):
        stop = gdb.stop("continue")
        assert stop.reason == "watchpoint-trigger" and gdb.value("g_who") == value
    stop = gdb.stop("reverse-continue")
    assert stop.reason == "watchpoint-trigger" and stop.line == write
    assert (gdb.value("g_who"), gdb.value("who")) == ("2", "5")
    gdb.cmd("delete")
    stop = gdb.stop("continue")
    assert stop.reason == "exited" and stop.record.get("exit-code") == "05"
    assert "forktwice: depth 2 forked a child" in server.output


def test_p_of_an_unknown_pid_is_a_one_line_error_listing_the_processes(programs, trace_root):
    trace, processes = forktwice(programs, trace_root)
    refused = run_retrograde("replay", "-p", "4194304", str(trace), timeout=30)
    assert refused.returncode == 1
    (line,) = refused.stderr.decode().strip().splitlines()
    assert "no process 4194304" in line
    assert all(f"{p.pid} ({programs.forktwice})" in line for p in processes)
    refused = run_retrograde("replay", "-p", "nosuchcommand", str(trace), timeout=30)
    (line,) = refused.stderr.decode().strip().splitlines()
    assert refused.returncode == 1 and "nosuchcommand" in line and str(processes[2].pid) in line
    refused = run_retrograde("replay", "-a", "-p", str(processes[1].pid), str(trace), timeout=30)
    (line,) = refused.stderr.decode().strip().splitlines()
    assert refused.returncode == 2 and "-a replays every process" in line


def test_the_first_process_is_debugged_by_default_and_nothing_fires_in_its_children(
        programs, trace_root, debug):
    """visit() runs in all three processes, on the same addresses: the breakpoint on
    it and a watchpoint on g_who stop in the first process only (1, then 4),
    forwards and backwards."""
    trace, (first, _, _) = forktwice(programs, trace_root)
    gdb, server = debug.start(trace)
    (thread,) = threads(gdb)
    assert thread["target-id"] == f"Thread {first.pid}.{first.pid}"
    gdb.cmd("break visit")
    for who in ("1", "4"):
        stop = gdb.stop("continue")
        assert stop.reason == "breakpoint-hit" and gdb.value("who") == who
        assert [t["target-id"] for t in threads(gdb)] == [f"Thread {first.pid}.{first.pid}"]
    stop = gdb.stop("reverse-continue")
    assert stop.reason == "breakpoint-hit" and gdb.value("who") == "1"
    gdb.cmd("delete")
    gdb.cmd("watch g_who")
    for who in ("1", "4"):  # from the arrival at visit(1), before its write
        stop = gdb.stop("continue")
        assert stop.reason == "watchpoint-trigger" and gdb.value("g_who") == who
    assert gdb.value("g_visits") == "1"  # its own copy: the children's visits are theirs
    stop = gdb.stop("reverse-continue")
    assert stop.reason == "watchpoint-trigger" and gdb.value("g_who") == "1"
    stop = gdb.stop("continue")
    assert stop.reason == "watchpoint-trigger" and gdb.value("g_who") == "4"
    assert gdb.stop("continue").reason == "no-history"  # the exit_group, not carried out
    stop = gdb.stop("continue")
    assert stop.reason == "exited" and stop.record.get("exit-code") == "03"
    assert "forktwice: child exited 5, visits 2" in server.output


def test_reverse_stepi_in_a_child_crosses_back_over_the_fork_it_made(programs, trace_root,
                                                                      debug):
    """From the child's first line after its fork of the grandchild, reverse-stepi
    back to the fork's syscall instruction (before it ran: no grandchild yet);
    one stepi over it returns the grandchild's pid, and the grandchild's creation
    between the two is no instruction of this history."""
    trace, (_, child, grandchild) = forktwice(programs, trace_root)
    gdb, _ = debug.start(trace, "-p", str(child.pid))
    gdb.cmd(f"break forktwice.c:{source_line('forktwice', '/* after: the second fork */')}")
    after = gdb.stop("continue")
    assert after.reason == "breakpoint-hit"
    steps = gdb.python("""
for _ in range(400):
    pc = int(gdb.parse_and_eval('$pc'))
    if gdb.selected_frame().architecture().disassemble(pc)[0]['asm'].startswith('syscall'):
        break
    gdb.execute('reverse-stepi', to_string=True)
""", timeout=120)
    assert 10 < len(steps) < 400 and all(s.reason != "no-history" for s in steps)
    assert gdb.value("$rax") == "56"  # clone, about to run
    when = gdb.cmd("monitor when")
    stop = gdb.stop("stepi")
    assert stop.reason == "end-stepping-range"
    assert gdb.value("$rax") == str(grandchild.pid)
    assert gdb.cmd("monitor when") != when
    gdb.cmd("delete")
    assert gdb.stop("continue").record.get("exit-code") == "05"


def test_a_child_that_crashes_shows_its_signal_then_its_death(programs, trace_root, debug):
    """procs crash: the child dereferences NULL. gdb is shown the fault where it
    happened, then the death by SIGSEGV, while the parent goes on to report it."""
    trace = trace_root / "procs-crash"
    record([programs.procs, "crash"], out=trace)
    child = processes_of(trace)[1]
    gdb, server = debug.start(trace, "-p", str(child.pid))
    stop = gdb.stop("continue")
    assert stop.reason == "signal-received" and stop.record["signal-name"] == "SIGSEGV"
    assert stop.line == source_line("procs", "*nothing = 1;")
    stop = gdb.stop("continue")
    assert stop.reason == "exited-signalled" and stop.record["signal-name"] == "SIGSEGV"
