"""Breakpoint conditions evaluated by the server, from real gdb
(`set breakpoint condition-evaluation target`): gdb sends them as agent
expressions on its Z0 packets, and the program stops only where one holds,
forwards and backwards, with one resume packet and one stop reply for the
whole run (`set debug remote 1` shows the packets)."""

from __future__ import annotations

import re

from gdb_driver import GdbSession, ReplayServer, Stopped, source_line
from runner import recorded

BODY = source_line("hundreds", "// loop: body")
SLOW = 180  # seconds for a run that judges tens of thousands of arrivals


def traced(gdb: GdbSession, command: str) -> Stopped:
    """``command`` with gdb's packets in the stop's log."""
    gdb.cmd("set debug remote 1")
    try:
        return gdb.stop(command, timeout=SLOW)
    finally:
        gdb.cmd("set debug remote 0")


def continues(stop: Stopped) -> int:
    """How many times gdb resumed the program with continue or reverse-continue
    packets (its step over a breakpoint it stands at is a single step before)."""
    return len(re.findall(r"Sending packet: \$(vCont;c[^#]*|c|bc)#", stop.log))


def conditions_sent(stop: Stopped, address: int) -> list[str]:
    """The agent expressions (hex) of the last Z0 packet gdb sent for ``address``."""
    packets = re.findall(rf"Sending packet: \$Z0,{address:x},1([^#]*)#", stop.log)
    assert packets, f"no Z0 for {address:#x} in {stop.log[-2000:]!r}"
    conditions, rest = [], packets[-1].removeprefix(";")
    while match := re.match(r"X([0-9a-f]+),", rest):  # one after another, as gdb writes them
        length = 2 * int(match[1], 16)
        conditions.append(rest[match.end():match.end() + length])
        rest = rest[match.end() + length:]
    return conditions


def at_main(gdb: GdbSession) -> None:
    """Run to main: the dynamic loader's own stops (gdb's breakpoint in it, as
    libraries load) are behind."""
    gdb.cmd("tbreak main")
    assert gdb.stop("continue").frame["func"] == "main"


def breakpoint_address(gdb: GdbSession) -> int:
    """Where the last breakpoint set is."""
    out = gdb.cmd("info breakpoints $bpnum")
    return int(re.search(r"0x([0-9a-f]+)", out)[1], 16)  # type: ignore[index]


def test_break_if_stops_where_the_condition_holds_forwards_and_backwards(
        programs, trace_root, debug):
    """The issue's loop: 10^5 iterations with no syscall, a global written every 100th."""
    gdb, _ = debug.start(recorded(programs.hundreds, trace_root, "100000"))
    gdb.cmd("set breakpoint condition-evaluation target")
    at_main(gdb)
    gdb.cmd(f"break hundreds.c:{BODY} if i == 31300")
    address = breakpoint_address(gdb)

    stop = traced(gdb, "continue")
    assert (stop.reason, stop.line, gdb.value("i")) == ("breakpoint-hit", BODY, "31300")
    assert gdb.value("sum") == str(31300 * 31299 // 2)
    assert len(conditions_sent(stop, address)) == 1
    # The 31,300 arrivals before it were judged in the server: gdb resumed once.
    assert continues(stop) == 1

    assert gdb.stop("continue", timeout=SLOW).reason == "no-history"  # never again true
    stop = traced(gdb, "reverse-continue")
    assert (stop.reason, stop.line, gdb.value("i")) == ("breakpoint-hit", BODY, "31300")
    assert gdb.value("sum") == str(31300 * 31299 // 2)
    assert len(conditions_sent(stop, address)) == 1
    assert continues(stop) == 1


# At the start of iteration i: sum is i(i-1)/2, squares[k] the last j*j written
# with j < i and j % 16 == k, slot points at squares[(i-1) % 16], and rax holds
# i (the loop's test loaded it).
CONDITIONS = [
    ("sum == 499500", 1000),  # a global long
    ("squares[5] == 1369", 38),  # an array element: 37 * 37, written at 37
    ("*slot == 2500", 51),  # through a pointer: squares[2] = 50 * 50
    ("$rax == 2222", 2222),  # a register
    ("i - 2000 > 5 && i % 7 == 3", 2012),  # signed arithmetic and logic on a local
    ("(unsigned char)i == 255 && (signed char)i < 0 && i > 256", 511),  # sign extension
]


def test_conditions_on_memory_registers_and_arithmetic(programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.hundreds, trace_root, "3000"))
    gdb.cmd("set breakpoint condition-evaluation target")
    at_main(gdb)
    gdb.cmd("monitor checkpoint start")
    for condition, expected in CONDITIONS:
        gdb.cmd("monitor restart start")
        gdb.cmd("delete")
        gdb.cmd(f"break hundreds.c:{BODY} if {condition}")
        stop = traced(gdb, "continue")
        assert (condition, stop.reason, stop.line) == (condition, "breakpoint-hit", BODY)
        assert gdb.value("i") == str(expected), condition
        assert conditions_sent(stop, breakpoint_address(gdb)), condition
        assert continues(stop) == 1, condition
    # Backwards from the end, the one iteration where *slot is 2500.
    gdb.cmd("delete")
    assert gdb.stop("continue", timeout=SLOW).reason == "no-history"
    gdb.cmd(f"break hundreds.c:{BODY} if *slot == 2500")
    stop = traced(gdb, "reverse-continue")
    assert (stop.line, gdb.value("i")) == (BODY, "51")
    assert continues(stop) == 1


def test_several_conditions_at_one_place_stop_where_any_holds_and_new_ones_replace_them(
        programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.hundreds, trace_root, "3000"))
    gdb.cmd("set breakpoint condition-evaluation target")
    at_main(gdb)
    gdb.cmd(f"break hundreds.c:{BODY} if i == 1200")
    first = gdb.value("$bpnum")
    gdb.cmd(f"break hundreds.c:{BODY} if i == 700")
    second = gdb.value("$bpnum")
    address = breakpoint_address(gdb)
    stop = traced(gdb, "continue")
    assert gdb.value("i") == "700"
    assert len(conditions_sent(stop, address)) == 2  # one Z0, both conditions
    assert gdb.value("i") == "700" and gdb.stop("continue").line == BODY
    assert gdb.value("i") == "1200"

    gdb.cmd(f"condition {first} i == 2500")
    gdb.cmd(f"condition {second} i == 100")
    stop = traced(gdb, "continue")
    assert gdb.value("i") == "2500"
    assert len(conditions_sent(stop, address)) == 2
    assert continues(stop) == 1
    stop = gdb.stop("reverse-continue", timeout=SLOW)
    assert gdb.value("i") == "100"  # 1200 and 700 are no longer conditions
    gdb.cmd(f"condition {second}")  # unconditional now: every arrival stops
    stop = traced(gdb, "continue")
    assert gdb.value("i") == "101"
    assert conditions_sent(stop, address) == []


def cannot_evaluate(stop: Stopped, server: ReplayServer) -> list[str]:
    """The server's lines about conditions it cannot evaluate, as gdb showed them on
    the way to ``stop``; each is on the server's console too."""
    lines = [line for line in stop.console.splitlines()
             if line.startswith("retrograde: cannot evaluate")]
    assert set(lines) <= set(server.stderr.splitlines()), (lines, server.stderr)
    return lines


def test_conditions_gdb_cannot_compile_or_the_server_cannot_evaluate_are_gdbs(
        programs, trace_root, debug):
    gdb, server = debug.start(recorded(programs.hundreds, trace_root, "3000"))
    gdb.cmd("set breakpoint condition-evaluation target")
    at_main(gdb)
    gdb.cmd("monitor checkpoint start")
    # No agent expression for a cast to double: gdb sends the breakpoint bare
    # and judges every arrival itself.
    gdb.cmd(f"break hundreds.c:{BODY} if (double)i == 300.0")
    stop = traced(gdb, "continue")
    assert (stop.line, gdb.value("i")) == (BODY, "300")
    assert conditions_sent(stop, breakpoint_address(gdb)) == []
    assert continues(stop) == 1 * 301

    # Compiled, but address 8 cannot be read once i > 5: the server reports
    # that arrival, as gdb stops where its own evaluation of a condition fails,
    # and says why in one line.
    for evaluation in ("host", "target"):
        gdb.cmd(f"set breakpoint condition-evaluation {evaluation}")
        gdb.cmd("monitor restart start")
        gdb.cmd("delete")
        gdb.cmd(f"break hundreds.c:{BODY} if i > 5 && *(int *)8 == 1")
        stop = traced(gdb, "continue")
        assert (evaluation, stop.line, gdb.value("i")) == (evaluation, BODY, "6")
        assert "Cannot access memory at address 0x8" in stop.log  # gdb's own evaluation
        if evaluation == "target":
            address = breakpoint_address(gdb)
            assert conditions_sent(stop, address)
            assert continues(stop) == 1
            said = cannot_evaluate(stop, server)
            assert len(said) == 1 and re.fullmatch(
                f"retrograde: cannot evaluate the condition at {address:#x} in the server: "
                r"cannot read 4 bytes at 0x8 \(bytecode offset \d+\); each arrival there "
                "stops for gdb to evaluate it", said[0]), said


    # `($calls, i == 300)` compiles to bytecode that reads the trace state variable
    # $calls (getv), which only a tracing experiment has: the server says once that
    # it cannot evaluate it and reports every arrival, and gdb, which evaluates the
    # comma expression itself, goes on until i == 300.
    gdb.cmd("monitor restart start")
    gdb.cmd("delete")
    gdb.cmd("tvariable $calls")
    gdb.cmd(f"break hundreds.c:{BODY} if ($calls, i == 300)")
    stop = traced(gdb, "continue")
    assert (stop.reason, stop.line, gdb.value("i")) == ("breakpoint-hit", BODY, "300")
    address = breakpoint_address(gdb)
    assert conditions_sent(stop, address)  # compiled and sent...
    assert continues(stop) == 301  # ...yet judged by gdb, arrival by arrival
    assert cannot_evaluate(stop, server) == [
        f"retrograde: cannot evaluate the condition at {address:#x} in the server: "
        "no trace state variable 1 (bytecode offset 0); each arrival there stops for gdb "
        "to evaluate it"]
