"""Reverse execution from real gdb against the real server: reverse-continue,
reverse-step/next/finish, reverse watchpoints, reverse-roll N, signals."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

from gdb_driver import GdbSession, Stopped, source_line, step_back_across_a_restored_signal
from runner import RETROGRADE, record, recorded

from retrograde.gdbstub.codec import PACKET_SIZE, Packet, Role, RspCodec
from retrograde.replay.precise import LIMIT_VARIABLE
from retrograde.trace.events import ExitEvent, SignalEvent
from retrograde.trace.format import TraceReader

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SLOW = 180  # seconds for a command that counts instructions over a long stretch


def buggy_line(text: str) -> int:
    """The line of examples/buggy.c (the demo program) that contains ``text``."""
    lines = (EXAMPLES / "buggy.c").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def hit(stop: Stopped) -> tuple[str, str]:
    """(function, first argument's value) at a breakpoint stop."""
    args = stop.frame.get("args", [])
    return stop.frame.get("func", "?"), args[0]["value"] if args else ""


def where(stop: Stopped) -> tuple[str, int]:
    return stop.frame.get("func", "?"), stop.line or 0


def registers(gdb: GdbSession) -> dict[str, str]:
    out = gdb.cmd("info registers rip rsp rbp rax rbx rcx rdx rsi rdi eflags")
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}


def test_breakpoints_backwards_in_reverse_order_then_forwards_again(programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.watch, trace_root))
    gdb.cmd("break set_global")
    gdb.cmd("break add_to_global")
    forwards = []
    while (stop := gdb.stop("continue")).reason != "no-history":
        forwards.append(hit(stop))
    assert forwards == [("set_global", "100"), ("add_to_global", "2"), ("add_to_global", "4"),
                        ("set_global", "212")]
    backwards = []
    while (stop := gdb.stop("reverse-continue")).reason != "no-history":
        backwards.append(hit(stop))
    assert backwards == forwards[::-1]
    assert hit(gdb.stop("continue")) == forwards[0]
    assert gdb.value("g_value") == "1"  # set_global has not run yet


def test_reverse_next_and_finish_restore_the_machine_state(programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.watch, trace_root))
    gdb.cmd("break record_hit")
    for _ in range(3):
        stop = gdb.stop("continue")
    assert where(stop) == ("record_hit", source_line("watch", "// write: hits"))

    def state() -> tuple:
        return (registers(gdb), gdb.value("c->hits"), gdb.value("c->total"),
                gdb.value("g_value"), gdb.value("amount"), gdb.value("$xmm0.uint128"))

    before = state()
    gdb.stop("next")
    gdb.stop("next")
    assert gdb.value("c->hits") == str(int(before[1]) + 1)
    assert gdb.value("c->total") == str(int(before[2]) + 30)
    # gcc splits lines 32 and 33 into two line-table rows each, and going backwards
    # gdb stops at the start of a row: the breakpoint's pc is reached within four.
    for _ in range(4):
        stop = gdb.stop("reverse-next")
        if registers(gdb)["rip"] == before[0]["rip"]:
            break
    assert where(stop) == ("record_hit", source_line("watch", "// write: hits"))
    assert state() == before
    gdb.cmd("delete")
    assert where(gdb.stop("finish"))[0] == "step"
    # back to the call of step(counter, 3) in main
    assert where(gdb.stop("reverse-finish"))[0] == "main"
    for _ in range(3):  # back over the loop header, into the end of step(counter, 2)
        stop = gdb.stop("reverse-step")
        if where(stop)[0] != "main":
            break
    # As gdb's own `record full` does natively: the closing brace of step(counter, 2).
    assert where(stop)[0] == "step" and gdb.value("i") == "2"
    assert gdb.value("g_value") == "102"  # add_to_global(2) has run, add_to_global(4) not


def test_reverse_watch_finds_the_write_that_corrupted_a_heap_field(trace_root, debug, tmp_path):
    binary = tmp_path / "buggy"
    subprocess.run(["gcc", "-g", "-O0", "-o", str(binary), str(EXAMPLES / "buggy.c")],
                   check=True)
    gdb, _ = debug.start(recorded(binary, trace_root))
    detect = buggy_line("printf(\"audit:")
    gdb.cmd(f"break {detect}")
    assert where(gdb.stop("continue"))[1] == detect
    assert gdb.value("acct->balance") == "28257"
    gdb.cmd("watch -l acct->balance")
    stop = gdb.stop("reverse-continue")
    assert "Old value = 28257" in stop.console and "New value = 865" in stop.console
    assert where(stop) == ("copy_name", buggy_line("dst[i] = src[i];"))
    assert gdb.value("i") == "9"
    stop = gdb.stop("reverse-continue")  # the byte before it
    assert "Old value = 865" in stop.console
    assert gdb.value("i") == "8"


def test_reverse_continue_across_a_signal_handler(programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.signals, trace_root))
    gdb.cmd("handle SIGSEGV SIGFPE SIGALRM SIGUSR1 nostop noprint pass")
    gdb.cmd("break on_fault")
    gdb.cmd("break on_alarm")
    seen = [hit(gdb.stop("continue")) for _ in range(5)]
    assert [f for f, _ in seen] == ["on_fault"] * 4 + ["on_alarm"]  # 3 SIGSEGV, 1 SIGFPE
    assert hit(gdb.stop("reverse-continue")) == seen[3]
    assert hit(gdb.stop("reverse-continue")) == seen[2]
    gdb.stop("continue")
    assert hit(gdb.stop("continue")) == seen[4]


def test_reverse_roll_goes_back_exactly_n_instructions(programs, trace_root, debug):
    """roll.c runs a 4-instruction loop (nop; nop; dec rcx; jnz) 30000 times: from the
    loop's end, N instructions back is a place known from rcx and the pc."""
    gdb, _ = debug.start(recorded(programs.roll, trace_root))
    gdb.cmd("break *after_loop")
    gdb.stop("continue")
    assert gdb.value("$rcx") == "0"
    head = int(gdb.value("(long)loop_head"))
    gdb.cmd("reverse-roll 100000", timeout=SLOW)
    assert (gdb.value("$rcx"), int(gdb.value("(long)$pc"))) == ("25000", head)
    gdb.cmd("reverse-roll 1000", timeout=SLOW)
    assert (gdb.value("$rcx"), int(gdb.value("(long)$pc"))) == ("25250", head)
    # reverse-roll N is N reverse-stepi, in one seek
    for n in (1, 7):
        start = registers(gdb)
        for _ in range(n):
            gdb.stop("reverse-stepi")
        stepped = registers(gdb)
        for _ in range(n):
            gdb.stop("stepi")
        assert registers(gdb) == start
        gdb.cmd(f"reverse-roll {n}")
        assert registers(gdb) == stepped
    # and forwards again from there is the same execution
    gdb.stop("stepi 1000", timeout=SLOW)
    assert gdb.value("$rcx") == str(25252 - 250)


def test_reverse_stepi_far_inside_a_long_native_run(programs, trace_root, debug):
    """roll.c with 25 million iterations: 10^8 instructions and no event between
    the start of the loop and after_loop. gdb's continue reaches after_loop
    natively; stepping back from there cannot single-step the stretch (hours at
    ~50 µs a step), so the replay closes in on it: waypoint clones, then the
    last arrival at the previous instruction, counted on a perf counter."""
    gdb, _ = debug.start(recorded(programs.roll, trace_root, "25000000"))
    gdb.cmd("break *after_loop")
    gdb.stop("continue", timeout=SLOW)
    at_end = registers(gdb)
    assert at_end["rcx"] == "0x0"
    gdb.cmd("delete")
    head = int(gdb.value("(long)loop_head"))
    # nop; nop; dec rcx; jnz loop_head: backwards from after_loop
    for pc, rcx in ((head + 5, "0"), (head + 2, "1"), (head + 1, "1"), (head, "1"),
                    (head + 5, "1")):
        gdb.stop("reverse-stepi", timeout=SLOW)
        assert (int(gdb.value("(long)$pc")), gdb.value("$rcx")) == (pc, rcx)
    gdb.cmd("reverse-roll 1000", timeout=SLOW)  # 250 iterations further back
    assert (int(gdb.value("(long)$pc")), gdb.value("$rcx")) == (head + 5, "251")
    gdb.stop("stepi 1005", timeout=SLOW)
    assert registers(gdb) == at_end
    # A breakpoint hit before the loop, from a place named after a waypoint.
    before_loop = head - 3
    assert "%rcx" in gdb.cmd(f"x/i {before_loop}")  # the asm's mov into rcx
    gdb.cmd(f"break *{before_loop}")
    gdb.stop("reverse-continue", timeout=SLOW)
    assert int(gdb.value("(long)$pc")) == before_loop
    gdb.cmd("delete")
    gdb.cmd("break *after_loop")
    gdb.stop("continue", timeout=SLOW)
    assert registers(gdb) == at_end


def test_reverse_stepi_from_a_crash_after_a_long_native_run(programs, trace_root, debug):
    """The usual session: run to the crash, then step back. roll.c crashes right
    after 10^8 instructions of its loop with no event in between."""
    gdb, _ = debug.start(recorded(programs.roll, trace_root, "25000000", "crash"))
    stop = gdb.stop("continue", timeout=SLOW)
    assert stop.reason == "signal-received" and stop.record.get("signal-name") == "SIGSEGV"
    crash = registers(gdb)
    after_loop = int(gdb.value("(long)after_loop"))
    gdb.stop("reverse-stepi", timeout=SLOW)
    before = int(gdb.value("(long)$pc"))
    assert after_loop <= before < int(crash["rip"], 16)
    assert gdb.value("$rcx") == "0"
    gdb.stop("reverse-stepi", timeout=SLOW)
    gdb.stop("stepi", timeout=SLOW)
    assert int(gdb.value("(long)$pc")) == before
    gdb.stop("stepi", timeout=SLOW)
    # The CPU sets the resume flag (0x10000) in the state a fault stops at; a step
    # onto the faulting instruction leaves it clear. Nothing else may differ.
    stepped = registers(gdb)
    assert int(stepped.pop("eflags"), 16) == int(crash.pop("eflags"), 16) & ~0x10000
    assert stepped == crash


def test_reverse_from_the_end_of_the_recording(programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.watch, trace_root))
    assert gdb.stop("continue").reason == "no-history"
    assert "_exit" in gdb.cmd("bt")
    gdb.cmd("break add_to_global")
    assert hit(gdb.stop("reverse-continue")) == ("add_to_global", "4")
    gdb.cmd("delete")
    assert gdb.stop("reverse-continue").reason == "no-history"
    assert gdb.value("g_value") == "1"


def test_monitor_when_and_named_checkpoints(programs, trace_root, debug):
    gdb, _ = debug.start(recorded(programs.watch, trace_root))
    gdb.cmd("break add_to_global")
    gdb.stop("continue")
    here = gdb.cmd("when")
    assert re.search(r"event \d+", here)
    gdb.cmd("monitor checkpoint first")
    listing = gdb.cmd("monitor info checkpoints")
    assert "first: event" in listing
    assert re.search(r"automatic: \d+ at event boundaries .*, \d+ near recent stops", listing)
    assert hit(gdb.stop("continue")) == ("add_to_global", "4")
    gdb.cmd("monitor restart first")
    gdb.cmd("maintenance flush register-cache")
    gdb.cmd("maintenance flush dcache")
    assert gdb.value("delta") == "2"
    assert gdb.cmd("when") == here


def test_ctrl_c_interrupts_a_long_continue_and_a_long_reverse_continue(programs, trace_root,
                                                                        debug):
    """compute spins about 3 s in user code with no syscall: no event to stop at."""
    gdb, _ = debug.start(recorded(programs.compute, trace_root, "1500000000"))
    gdb.start("-exec-continue")
    time.sleep(0.5)
    began = time.monotonic()
    stop = gdb.stop("-exec-interrupt")
    assert time.monotonic() - began < 1.5
    assert (stop.reason, stop.record.get("signal-name")) == ("signal-received", "SIGINT")
    assert "state at" in gdb.cmd("when")  # a place inside the loop, named by its state
    here = gdb.pc()
    gdb.stop("stepi")
    gdb.stop("reverse-stepi")
    assert gdb.pc() == here
    assert gdb.stop("continue", timeout=SLOW).reason == "no-history"
    end = gdb.pc()
    gdb.cmd("break main")  # hit long before: the scan back has to cross the whole loop
    gdb.start("-exec-continue --reverse")
    time.sleep(0.5)
    stop = gdb.stop("-exec-interrupt")
    assert stop.record.get("signal-name") == "SIGINT"
    assert gdb.pc() == end  # an interrupted reverse-continue leaves the replay where it was
    assert where(gdb.stop("reverse-continue", timeout=SLOW))[0] == "main"


def test_dense_breakpoint_hits_are_scanned_in_linear_time(programs, trace_root, debug):
    """A breakpoint in compute.c's loop is hit 2000 times between two events (each
    hit is named by its count, not by the chain of hits before it): reverse-continue
    from the printf lands on the last iteration, then on the one before."""
    gdb, _ = debug.start(recorded(programs.compute, trace_root, "2000"))
    gdb.cmd(f"break {source_line('compute', 'printf(')}")
    gdb.stop("continue")
    gdb.cmd("delete")
    gdb.cmd(f"break {source_line('compute', 'x ^= x << 13;')}")
    gdb.stop("reverse-continue", timeout=SLOW)
    assert gdb.value("i") == "1999"
    gdb.stop("reverse-continue", timeout=SLOW)
    assert gdb.value("i") == "1998"
    gdb.cmd("delete")
    assert where(gdb.stop("reverse-step", timeout=SLOW)) == ("main", source_line("compute", "for ("))
    # At the start of the loop header's first row, the increment, which has not run:
    # where gdb's own `record full` stops natively.
    assert gdb.value("i") == "1997"


def test_a_cut_short_recording_ends_in_history_end_and_goes_backwards(programs, trace_root,
                                                                      debug):
    recorder = subprocess.Popen([*RETROGRADE, "record", "-o", str(trace_root / "cut"), "--",
                                 str(programs.syscall_heavy), "2000000"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    recorder.kill()
    recorder.wait()
    replayed = subprocess.run([*RETROGRADE, "replay", "-a", "--no-echo", str(trace_root / "cut")],
                              capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 1
    assert replayed.stderr.count("\n") == 1 and "cut short" in replayed.stderr
    gdb, _ = debug.start(trace_root / "cut")
    assert gdb.stop("continue", timeout=SLOW).reason == "no-history"
    end = gdb.pc()
    gdb.stop("reverse-stepi", timeout=SLOW)
    assert gdb.pc() != end
    assert gdb.stop("continue", timeout=SLOW).reason == "no-history"
    assert gdb.pc() == end


class RawClient:
    """A bare RSP client on a socket, for what gdb itself cannot send (gdb closes a
    remote target once the program has exited)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.socket = socket.create_connection(address, timeout=SLOW)
        self.codec = RspCodec(Role.CLIENT, packet_size=2 * PACKET_SIZE)

    def ask(self, payload: bytes) -> list[bytes]:
        """Send ``payload``; the packets of its answer (console `O` packets, then the last)."""
        self.socket.sendall(self.codec.packet(payload))
        replies: list[bytes] = []
        while not replies or (replies[-1].startswith(b"O") and replies[-1] != b"OK"):
            data = self.socket.recv(4096)
            assert data, "the server hung up"
            replies += [e.payload for e in self.codec.receive_data(data) if isinstance(e, Packet)]
            self.socket.sendall(self.codec.data_to_send())
        return replies

    def close(self) -> None:
        self.socket.close()


def test_reverse_stepi_and_reverse_roll_after_the_recorded_exit(programs, trace_root, debug):
    """After the exit (W), `bs` goes back to the exit_group syscall, the last thing the
    program did, and `monitor reverse-roll 2` on to the instruction before it."""
    gdb, server = debug.start(recorded(programs.watch, trace_root))
    gdb.cmd("break _exit")
    gdb.stop("continue")
    at_exit = registers(gdb)
    gdb.cmd("detach")
    client = RawClient((server.host, server.port))
    try:
        assert client.ask(b"c")[-1].startswith(b"T")  # the end of history: the exit_group
        assert client.ask(b"c")[-1] == b"W16"  # exit status 22
        assert client.ask(b"bs")[-1].startswith(b"T05")
        regs = bytes.fromhex(client.ask(b"g")[-1].decode())
        rip = int.from_bytes(regs[16 * 8:17 * 8], "little")
        assert rip > int(at_exit["rip"], 16)
        assert client.ask(b"m%x,2" % rip)[-1] == b"0f05"  # at _exit's syscall instruction
        answer = client.ask(b"qRcmd," + b"reverse-roll 2".hex().encode())
        assert answer[-1] == b"OK"
        regs = bytes.fromhex(client.ask(b"g")[-1].decode())
        assert int(at_exit["rip"], 16) <= int.from_bytes(regs[16 * 8:17 * 8], "little") < rip
        when = b"".join(bytes.fromhex(p[1:].decode()) for p in
                        client.ask(b"qRcmd," + b"when".hex().encode())[:-1])
        assert b"event" in when
    finally:
        client.close()


def test_reverse_continue_from_a_watchpoint_stop_crosses_that_write_first(programs, trace_root,
                                                                           debug):
    """watch.c writes g_value 1 -> 100 -> 102 -> 106 -> 212. Stopped forwards by the
    3rd write (102 -> 106), going backwards first crosses that very write, then the
    2nd; gdb shows each backwards, the value after the write as the old one."""
    gdb, _ = debug.start(recorded(programs.watch, trace_root))
    gdb.cmd("break main")
    gdb.stop("continue")
    gdb.cmd("watch g_value")
    forwards = [gdb.stop("continue").console for _ in range(3)]
    for console, (old, new) in zip(forwards, [(1, 100), (100, 102), (102, 106)], strict=True):
        assert f"Old value = {old}\nNew value = {new}\n" in console
    write = source_line("watch", "// write: add_to_global")
    for old, new, delta in [(106, 102, "4"), (102, 100, "2")]:
        stop = gdb.stop("reverse-continue")
        assert stop.reason == "watchpoint-trigger"
        assert f"Old value = {old}\nNew value = {new}\n" in stop.console
        assert where(stop) == ("add_to_global", write) and gdb.value("delta") == delta
        assert gdb.value("g_value") == str(new)
    stop = gdb.stop("continue")
    assert "Old value = 100\nNew value = 102\n" in stop.console


def position(gdb: GdbSession) -> tuple[int, int]:
    """`when` as (event, instruction): the canonical position, which orders moments."""
    match = re.fullmatch(r"event (\d+), instruction (\d+) \(of \d+ events\)\n", gdb.cmd("when"))
    assert match, gdb.cmd("when")
    return int(match[1]), int(match[2])


def test_when_names_a_moment_the_same_whatever_path_reached_it(programs, trace_root, debug):
    """The 2nd call of add_to_global, reached by a breakpoint count, by reverse-roll
    from a later place, by reverse-continue, and by stepi N from the 1st call: one
    text; an earlier moment's position is less, a later one's greater."""
    gdb, _ = debug.start(recorded(programs.watch, trace_root))
    gdb.cmd("break add_to_global")
    gdb.stop("continue")
    first, first_text = position(gdb), gdb.cmd("when")
    gdb.stop("continue")
    second, second_text, state = position(gdb), gdb.cmd("when"), registers(gdb)
    assert gdb.value("delta") == "4"
    gdb.cmd("delete")
    gdb.cmd("break set_global")
    gdb.stop("continue")  # set_global(212), after the loop
    later = position(gdb)
    assert first < second < later and first[0] == second[0] == later[0]  # no syscall between

    gdb.cmd(f"reverse-roll {later[1] - second[1]}")
    assert gdb.cmd("when") == second_text and registers(gdb) == state
    gdb.stop("continue")
    assert position(gdb) == later
    gdb.cmd("delete")
    gdb.cmd("break add_to_global")
    gdb.stop("reverse-continue")
    assert gdb.cmd("when") == second_text and registers(gdb) == state
    gdb.stop("reverse-continue")
    assert gdb.cmd("when") == first_text
    gdb.cmd("delete")
    gdb.stop(f"stepi {second[1] - first[1]}")
    assert gdb.cmd("when") == second_text and registers(gdb) == state
    gdb.stop("stepi")
    assert position(gdb) == (second[0], second[1] + 1) > second


def test_a_signal_after_a_long_loop_is_restored_and_says_so(programs, trace_root, debug,
                                                             monkeypatch):
    """longloop.c spins 2*10^7 iterations or more, SIGALRM from setitimer landing far
    inside: too far to find the recorded pass by execution, so the replay writes the
    recorded state at the loop's start and says so once (replay -a's stderr, gdb's
    console). The history around it is consistent: stepping into the handler and
    back, and back over the restore to the setitimer, then forwards one instruction
    at a time to the signal again."""
    # Beyond the default bound too (10^6 arrivals); a lower one says so sooner.
    monkeypatch.setenv(LIMIT_VARIABLE, "200")
    trace = trace_root / "longloop"
    recording = record([programs.longloop], out=trace)
    assert recording.returncode == 24
    with TraceReader(trace) as reader:
        event = next(n for n, e in enumerate(reader) if isinstance(e, SignalEvent))
        assert reader[event].where == "precise"
    replayed = subprocess.run([*RETROGRADE, "replay", "-a", str(trace)], check=False,
                              capture_output=True, text=True, timeout=120)
    note = f"retrograde: event {event}: SIGALRM was delivered by restoring its recorded state"
    assert replayed.returncode == 24 and replayed.stdout == recording.stdout.decode()
    assert replayed.stderr.count("\n") == 1 and replayed.stderr.startswith(note)
    at_alarm = re.search(r"SIGALRM at iteration (\d+) of", replayed.stdout)
    assert at_alarm and int(at_alarm[1]) > 200

    gdb, server = debug.start(trace)
    gdb.cmd("handle SIGALRM stop print")
    stop = gdb.stop("continue")
    assert stop.record.get("signal-name") == "SIGALRM" and note in stop.console
    assert where(stop) == ("main", source_line("longloop", "// loop"))
    signal_pc = gdb.pc()
    assert gdb.value("i") == at_alarm[1]
    assert where(gdb.stop("stepi")) == ("on_alarm", source_line("longloop", "// enter: alarm"))
    gdb.stop("reverse-stepi")
    assert (gdb.pc(), gdb.value("i")) == (signal_pc, at_alarm[1])  # back in the loop
    step_back_across_a_restored_signal(gdb)  # to the setitimer
    assert (gdb.pc(), gdb.value("i")) == (signal_pc, at_alarm[1])
    gdb.cmd("handle SIGALRM nostop noprint pass")
    assert gdb.stop("continue").reason == "no-history"
    assert server.output == replayed.stdout
