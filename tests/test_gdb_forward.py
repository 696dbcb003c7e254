"""Forward debugging of recorded programs from real gdb, against the real server:
`retrograde replay -s 0 TRACE` in its own process, gdb 13 on the MI with the
shipped command file, traces recorded by the test. Every value gdb shows is
checked against what the program printed, or the trace holds, when it was
recorded.
"""

from __future__ import annotations

import errno
import re
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from gdb_driver import (
    Debugging,
    GdbError,
    GdbSession,
    Stopped,
    outliving,
    source_line,
)
from runner import RETROGRADE, record

from retrograde.gdbstub.codec import PACKET_SIZE, Packet, Role, RspCodec
from retrograde.trace.events import SignalEvent
from retrograde.trace.format import TraceReader

@dataclass(frozen=True)
class Recording:
    trace: Path
    stdout: str
    status: int


Recordings = dict[str, Recording]


@pytest.fixture(scope="module")
def recordings(programs, tmp_path_factory) -> Recordings:
    """watch, hello, signals, sigstep and fatal, each recorded once for the whole file."""
    root = tmp_path_factory.mktemp("traces")
    recorded = {}
    for name in ("watch", "hello", "signals", "sigstep", "fatal"):
        result = record([programs[name]], out=root / name)
        recorded[name] = Recording(root / name, result.stdout.decode(), result.returncode)
    assert recorded["watch"].status == 22 and recorded["hello"].status == 3
    assert recorded["signals"].status == 16 and recorded["fatal"].status == 128 + signal.SIGSEGV
    assert recorded["sigstep"].status == 23
    return recorded


def printed(recording: Recording, pattern: str) -> dict[str, str]:
    """The named groups of ``pattern`` in what the program printed when recorded."""
    match = re.search(pattern, recording.stdout)
    assert match, f"{pattern!r} not in {recording.stdout!r}"
    return match.groupdict()


def signal_names(recording: Recording) -> list[str]:
    """The recorded signals, named as gdb names them (SIG35 for SIGRTMIN+1)."""
    with TraceReader(recording.trace) as reader:
        numbers = [event.signo for event in reader if isinstance(event, SignalEvent)]
    return [signal.Signals(n).name if n < signal.SIGRTMIN else f"SIG{n}" for n in numbers]


def continue_to_the_end(gdb: GdbSession) -> list[Stopped]:
    """Continue until the program exits; every stop on the way."""
    stops = [gdb.stop("continue")]
    while not stops[-1].reason.startswith("exited"):
        assert len(stops) < 50, [stop.reason for stop in stops]
        stops.append(gdb.stop("continue"))
    return stops


def register(gdb: GdbSession, name: str) -> int:
    """A register's value as `info registers` shows it."""
    fields = gdb.cmd(f"info registers {name}").split()
    assert fields[0] == name, fields
    return int(fields[1], 16)


# Breakpoints, stepping and looking at the program.


def test_break_at_a_function_and_at_a_line_and_print_globals_locals_and_the_heap(
    recordings: Recordings, debug: Debugging
) -> None:
    gdb, _ = debug.start(recordings["watch"].trace)
    total_line = source_line("watch", "// write: total")
    assert "Breakpoint 1 at" in gdb.cmd("break main")
    gdb.cmd(f"break watch.c:{total_line}")
    at_main = gdb.stop("continue")
    assert (at_main.reason, at_main.frame["func"], at_main.record["bkptno"]) == (
        "breakpoint-hit", "main", "1")  # fmt: skip
    assert gdb.value("g_value") == "1"
    assert register(gdb, "rip") == gdb.pc()

    at_total = gdb.stop("continue")
    assert (at_total.reason, at_total.frame["func"], at_total.line) == (
        "breakpoint-hit", "record_hit", total_line)  # fmt: skip
    assert "Breakpoint 2, record_hit (c=0x" in at_total.console
    # the first call, i = 1: the hit is counted, the total not yet
    assert gdb.value("amount") == "10"
    assert gdb.value("c->hits") == "1" and gdb.value("c->total") == "0"
    assert gdb.value("g_value") == "100"
    assert "hits = 1, total = 0" in gdb.value("*c")
    c = gdb.value("c")
    gdb.cmd("up")  # step(counter, i)
    assert gdb.value("i") == "1" and gdb.value("c") == c
    gdb.cmd("up")  # main
    assert gdb.value("counter") == c and gdb.value("counter->hits") == "1"
    assert re.fullmatch(r"\s*Id\s+Target Id\s+Frame\s*\n\* 1\s+Thread \d+\.\d+ .*\n",
                        gdb.cmd("info threads"))  # fmt: skip


def test_printed_values_are_the_recorded_ones_at_the_printf(
    recordings: Recordings, debug: Debugging
) -> None:
    recording = recordings["watch"]
    want = printed(recording, r"g_value (?P<g_value>\d+), hits (?P<hits>\d+), total (?P<total>\d+)")
    gdb, server = debug.start(recording.trace)
    printf_line = source_line("watch", 'printf("watch:')
    gdb.cmd(f"break {printf_line}")
    assert gdb.stop("continue").line == printf_line
    assert gdb.value("g_value") == want["g_value"] == "212"
    assert gdb.value("counter->hits") == want["hits"]
    assert gdb.value("counter->total") == want["total"]
    assert gdb.value("counter->label") == '"\\000\\000\\000\\000\\000\\000\\000"'
    assert server.output == ""  # printf has not run yet


def test_a_breakpoint_in_libc_backtraces_to_main_and_finish_returns_its_value(
    recordings: Recordings, debug: Debugging
) -> None:
    gdb, _ = debug.start(recordings["hello"].trace)
    gdb.cmd("break write")
    hit = gdb.stop("continue")
    assert hit.reason == "breakpoint-hit" and "write" in hit.frame["func"]
    frames = gdb.cmd("bt").splitlines()
    assert "write" in frames[0] and "fd=1" in frames[0] and "nbytes=13" in frames[0]
    call = source_line("hello", "write(STDOUT_FILENO")
    assert re.fullmatch(rf"#1 +0x[0-9a-f]+ in main \(\) at \S*hello\.c:{call}", frames[1])
    libraries = gdb.cmd("info sharedlibrary")
    assert re.search(
        r"^0x[0-9a-f]+ +0x[0-9a-f]+ +Yes +target:\S*/libc\.so\.6$", libraries, re.MULTILINE
    )
    assert gdb.cmd("x/s buf").split(":", 1)[1].strip() == r'"hello, world\n"'
    assert gdb.value("*(char *)buf@nbytes") == r'"hello, world\n"'
    finished = gdb.stop("finish")
    assert finished.reason == "function-finished" and finished.frame["func"] == "main"
    assert finished.record["return-value"] == "13" == str(len(recordings["hello"].stdout))
    assert "Value returned is $1 = 13" in finished.console


def test_next_step_stepi_finish_and_until(recordings: Recordings, debug: Debugging) -> None:
    gdb, _ = debug.start(recordings["watch"].trace)
    gdb.cmd("break main")
    assert gdb.stop("continue").line == source_line("watch", "= calloc(")
    nexted = gdb.stop("next")
    assert (nexted.reason, nexted.line) == (
        "end-stepping-range",
        source_line("watch", "set_global(100)"),
    )
    assert gdb.value("counter->hits") == "0"  # calloc ran
    stepped = gdb.stop("step")
    assert (stepped.frame["func"], stepped.line) == (
        "set_global",
        source_line("watch", "// write: set_global"),
    )
    assert gdb.value("value") == "100"
    # stepi moves one instruction: to the one after this one
    following = int(gdb.cmd("x/2i $pc").splitlines()[1].split()[0].rstrip(":"), 16)
    assert gdb.stop("stepi").reason == "end-stepping-range"
    assert gdb.pc() == following
    finished = gdb.stop("finish")
    assert (finished.frame["func"], finished.line) == (
        "main",
        source_line("watch", "for (int i = 1;"),
    )
    assert gdb.value("g_value") == "100"
    printf_line = source_line("watch", 'printf("watch:')
    until = gdb.stop(f"until {printf_line}")
    assert (until.reason, until.frame["func"], until.line) == (
        "location-reached",
        "main",
        printf_line,
    )
    assert gdb.value("g_value") == "212"


def test_a_conditional_breakpoint_stops_only_where_its_condition_holds(
    recordings: Recordings, debug: Debugging
) -> None:
    gdb, _ = debug.start(recordings["watch"].trace)
    gdb.cmd("break add_to_global if delta == 4")
    hit = gdb.stop("continue")
    assert (hit.reason, hit.frame["func"]) == ("breakpoint-hit", "add_to_global")
    assert gdb.value("delta") == "4"
    assert gdb.value("g_value") == "102"  # 100 + 2, the call with delta 2 passed by
    assert "breakpoint already hit 1 time" in gdb.cmd("info breakpoints")
    assert gdb.stop("continue").reason == "no-history"  # no third call


# Watchpoints.


def test_a_hardware_watchpoint_on_a_global_shows_every_write(
    recordings: Recordings, debug: Debugging
) -> None:
    gdb, _ = debug.start(recordings["watch"].trace)
    gdb.cmd("break main")
    gdb.stop("continue")
    assert gdb.cmd("watch g_value") == "Hardware watchpoint 2: g_value\n"
    writes = []
    for _ in range(4):
        hit = gdb.stop("continue")
        assert hit.reason == "watchpoint-trigger", hit
        old, new = hit.record["value"]["old"], hit.record["value"]["new"]
        assert f"Old value = {old}\nNew value = {new}\n" in hit.console
        writes.append((hit.frame["func"], old, new))
        # gdb reports the write once it is done: on the line after it
        assert hit.line == source_line("watch", f"// write: {hit.frame['func']}") + 1
    assert writes == [("set_global", "1", "100"), ("add_to_global", "100", "102"),
                      ("add_to_global", "102", "106"), ("set_global", "106", "212")]  # fmt: skip


def test_a_watchpoint_on_a_heap_field(recordings: Recordings, debug: Debugging) -> None:
    gdb, _ = debug.start(recordings["watch"].trace)
    gdb.cmd("break main")
    gdb.stop("continue")
    gdb.stop("next")  # counter = calloc(...)
    assert "Hardware watchpoint 2: -location counter->total" in gdb.cmd("watch -l counter->total")
    totals = []
    for i in range(1, 5):
        hit = gdb.stop("continue")
        assert (hit.reason, hit.frame["func"]) == ("watchpoint-trigger", "record_hit")
        assert gdb.value("amount") == str(10 * i)
        totals.append(hit.record["value"]["new"])
    assert totals == ["10", "30", "60", "100"]
    assert totals[-1] == printed(recordings["watch"], r"total (?P<total>\d+)")["total"]


def test_a_read_watchpoint_stops_where_the_field_is_read(
    recordings: Recordings, debug: Debugging
) -> None:
    gdb, _ = debug.start(recordings["watch"].trace)
    gdb.cmd("break main")
    gdb.stop("continue")
    gdb.stop("next")
    assert "Hardware read watchpoint 2: -location counter->hits" in gdb.cmd(
        "rwatch -l counter->hits"
    )
    read = gdb.stop("continue")
    assert read.reason == "read-watchpoint-trigger"
    assert (read.frame["func"], read.line) == ("record_hit", source_line("watch", "// write: hits"))
    assert read.record["value"]["value"] == "0" and "Value = 0" in read.console


# Signals.


def test_a_recorded_sigsegv_stops_gdb_and_continuing_runs_the_recorded_handler(
    recordings: Recordings, debug: Debugging
) -> None:
    gdb, _ = debug.start(recordings["signals"].trace)
    fault_line = source_line("signals", "*null_pointer = i;")
    for i in range(3):
        fault = gdb.stop("continue")
        assert (fault.reason, fault.record.get("signal-name")) == ("signal-received", "SIGSEGV")
        assert "Program received signal SIGSEGV, Segmentation fault." in fault.console
        assert (fault.frame["func"], fault.line) == ("main", fault_line)
        assert gdb.value("$_siginfo.si_signo") == str(signal.SIGSEGV)
        assert gdb.value("$_siginfo._sifields._sigfault.si_addr") == "0x0"
        # on_fault counted the earlier ones and jumped back into the loop
        assert gdb.value("i") == str(i) and gdb.value("segvs") == str(i)
    division = gdb.stop("continue")
    assert (division.record.get("signal-name"), gdb.value("segvs"), gdb.value("fpes")) == (
        "SIGFPE", "3", "0")  # fmt: skip


def test_handle_decides_which_recorded_signals_stop_gdb(
    recordings: Recordings, debug: Debugging
) -> None:
    recording = recordings["signals"]
    recorded = signal_names(recording)
    first_alarm = recorded.index("SIGALRM")
    gdb, server = debug.start(recording.trace)
    gdb.cmd("handle SIGALRM stop print")  # gdb's default is nostop noprint pass
    stops = [gdb.stop("continue") for _ in range(first_alarm + 1)]
    assert [stop.record.get("signal-name") for stop in stops] == recorded[: first_alarm + 1]
    assert gdb.value("alarms") == "0"  # its handler has not run yet
    assert re.search(
        r"^SIGALRM\s+No\tNo\tYes\t", gdb.cmd("handle SIGALRM nostop noprint pass"), re.MULTILINE
    )
    rest = continue_to_the_end(gdb)
    names = [stop.record.get("signal-name") for stop in rest[:-2]]
    assert names == [name for name in recorded[first_alarm + 1 :] if name != "SIGALRM"]
    assert [stop.reason for stop in rest[-2:]] == ["no-history", "exited"]
    assert int(rest[-1].record["exit-code"], 8) == recording.status
    # passed to the program as recorded: every handler ran, the output is the recorded one
    assert "1 SIGALRM" in server.output and "5 ticks" in server.output
    assert server.output == recording.stdout


def test_stepping_out_of_a_signal_handler_returns_into_the_interrupted_call(
    recordings: Recordings, debug: Debugging
) -> None:
    # A step that completes rt_sigreturn leaves a checkpoint right after it: the
    # checkpoint's fork must not undo the sigreturn in the replay it was taken from.
    recording = recordings["signals"]
    gdb, server = debug.start(recording.trace)
    gdb.cmd("handle SIGSEGV SIGFPE nostop noprint pass")
    gdb.cmd("break on_alarm")
    assert gdb.stop("continue").frame["func"] == "on_alarm"
    assert gdb.stop("finish").frame["func"] == "<signal handler called>"
    assert "syscall" in gdb.cmd("x/2i $pc").splitlines()[1]  # __restore_rt: mov $15, %rax; syscall
    gdb.stop("stepi")
    back = gdb.stop("stepi")
    assert "pause" in back.frame["func"]
    assert gdb.value("$rax") == str(-errno.EINTR)  # what pause(2) returns to the program
    assert re.search(rf"in main \(\) at .*signals\.c:{source_line('signals', '= pause();')}\n",
                     gdb.cmd("bt"))  # fmt: skip
    gdb.cmd("delete")
    assert continue_to_the_end(gdb)[-1].record["exit-code"] == "020"  # 16
    assert server.output == recording.stdout


def address_of(gdb: GdbSession, function: str) -> int:
    return int(gdb.value(f"(long) &{function}"))


def test_stepping_at_a_signal_stop_enters_the_handler_and_reverse_stepi_leaves_it(
    recordings: Recordings, debug: Debugging
) -> None:
    """At the stop for raise(SIGUSR1) (delivered at the kill's syscall boundary), as
    natively: stepi lands on the handler's first instruction, step and next (gdb 13
    enters a handler from a signal stop for both) stop at its first line; reverse-stepi
    from the handler's first instruction is the signal stop again."""
    recording = recordings["sigstep"]
    gdb, server = debug.start(recording.trace)
    at_signal = gdb.stop("continue")
    assert at_signal.record.get("signal-name") == "SIGUSR1"
    signal_pc, signal_sp = gdb.pc(), register(gdb, "rsp")
    handler = address_of(gdb, "on_usr1")
    entered = gdb.stop("stepi")
    assert entered.frame["func"] == "on_usr1" and gdb.pc() == handler
    assert register(gdb, "rsp") < signal_sp  # on the signal frame below the interrupted code
    assert gdb.value("usr1s") == "0"
    gdb.stop("reverse-stepi")
    assert (gdb.pc(), register(gdb, "rsp")) == (signal_pc, signal_sp)
    for command in ("step", "next"):
        stop = gdb.stop(command)
        assert (stop.frame["func"], stop.line) == ("on_usr1",
                                                   source_line("sigstep", "// enter: usr1"))
        gdb.stop("reverse-stepi")
        assert gdb.pc() == signal_pc
    assert gdb.stop("stepi").frame["func"] == "on_usr1"
    assert gdb.stop("finish").frame["func"] == "<signal handler called>"
    assert gdb.value("usr1s") == str(signal.SIGUSR1)  # the handler ran, once
    gdb.cmd("handle SIGUSR1 nostop noprint pass")
    assert continue_to_the_end(gdb)[-1].record["exit-code"] == "027"  # 23
    assert server.output == recording.stdout


def test_a_signal_that_interrupts_sigsuspend_steps_into_its_handler_under_the_wait_mask(
    programs, trace_root: Path, debug: Debugging
) -> None:
    """suspend.c's pending SIGUSR1, delivered when sigsuspend unblocks it: stepi at
    its stop enters the handler with the frame saving the mask from before the
    wait, reverse-stepi comes back to the stop, and the rest (a SIGINT delivered
    once the old mask is back) runs as recorded."""
    trace = trace_root / "suspend"
    recording = record([programs.suspend], out=trace)
    assert recording.returncode == 0
    gdb, server = debug.start(trace)
    at_signal = gdb.stop("continue")
    assert at_signal.record.get("signal-name") == "SIGUSR1"
    signal_pc = gdb.pc()
    entered = gdb.stop("stepi")
    assert entered.frame["func"] == "on_signal"
    assert gdb.value("((ucontext_t *)$rdx)->uc_sigmask.__val[0]") == \
        str(1 << (signal.SIGUSR1 - 1))  # SIGUSR1 blocked, SIGINT not: the mask before
    gdb.stop("reverse-stepi")
    assert gdb.pc() == signal_pc
    assert gdb.stop("stepi").frame["func"] == "on_signal"
    gdb.cmd("handle SIGUSR1 SIGINT nostop noprint pass")
    assert continue_to_the_end(gdb)[-1].reason == "exited-normally"
    assert server.output == recording.stdout.decode()


def test_next_over_a_line_that_raises_a_signal_runs_the_handler(
    recordings: Recordings, debug: Debugging
) -> None:
    gdb, _ = debug.start(recordings["sigstep"].trace)
    gdb.cmd("handle SIGUSR1 nostop noprint pass")
    gdb.cmd("break sigstep.c:{}".format(source_line("sigstep", "raise(SIGUSR1);")))
    gdb.stop("continue")
    stop = gdb.stop("next")
    assert (stop.frame["func"], stop.line) == ("main", source_line("sigstep", "// after: raise"))
    assert gdb.value("usr1s") == str(signal.SIGUSR1)
    gdb.stop("next")
    assert gdb.value("usr1s") == str(signal.SIGUSR1 + 100)


def test_stepping_at_a_signal_delivered_inside_a_spin_loop(
    recordings: Recordings, debug: Debugging
) -> None:
    """SIGALRM comes while main spins in user code (a precise state, not a syscall):
    stepi enters on_alarm, reverse-stepi comes back to the loop, step enters again."""
    recording = recordings["sigstep"]
    gdb, server = debug.start(recording.trace)
    gdb.cmd("handle SIGUSR1 nostop noprint pass")
    gdb.cmd("handle SIGALRM stop print")
    at_signal = gdb.stop("continue")
    assert at_signal.record.get("signal-name") == "SIGALRM"
    assert (at_signal.frame["func"], at_signal.line) == ("main", source_line("sigstep", "// spin"))
    signal_pc, spins = gdb.pc(), gdb.value("spins")
    assert gdb.stop("stepi").frame["func"] == "on_alarm"
    assert gdb.pc() == address_of(gdb, "on_alarm")
    gdb.stop("reverse-stepi")
    assert (gdb.pc(), gdb.value("spins")) == (signal_pc, spins)
    stop = gdb.stop("step")
    assert (stop.frame["func"], stop.line) == ("on_alarm", source_line("sigstep", "// enter: alarm"))
    gdb.stop("next")
    gdb.stop("next")
    assert gdb.value("spins_at_alarm") == spins
    assert continue_to_the_end(gdb)[-1].record["exit-code"] == "027"
    assert server.output == recording.stdout


def test_a_program_killed_by_a_signal_stops_at_the_fault_then_terminates(
    recordings: Recordings, debug: Debugging
) -> None:
    gdb, server = debug.start(recordings["fatal"].trace)
    fault = gdb.stop("continue")
    assert (fault.reason, fault.record.get("signal-name")) == ("signal-received", "SIGSEGV")
    assert (fault.frame["func"], fault.line) == (
        "write_through",
        source_line("fatal", "*p = value;"),
    )
    assert [line.split(" (")[0].split()[-1] for line in gdb.cmd("bt").splitlines()] == [
        "write_through", "crash", "main"]  # fmt: skip
    assert gdb.value("p") == "0x0" and gdb.value("value") == "42"
    assert gdb.value("$_siginfo.si_signo") == str(signal.SIGSEGV)
    died = gdb.stop("continue")
    assert (died.reason, died.record.get("signal-name")) == ("exited-signalled", "SIGSEGV")
    assert "Program terminated with signal SIGSEGV" in died.console
    assert server.output == recordings["fatal"].stdout


# The end of the recording.


def test_the_end_of_the_recording_is_the_end_of_history_then_the_recorded_exit(
    recordings: Recordings, debug: Debugging
) -> None:
    recording = recordings["watch"]
    gdb, server = debug.start(recording.trace)
    end = gdb.stop("continue")
    assert end.reason == "no-history"
    assert "_exit" in end.frame["func"]
    # stopped at exit_group, the syscall instruction about to run: all readable
    assert gdb.cmd("x/2xb $pc").split(":")[1].split() == ["0x0f", "0x05"]
    assert register(gdb, "rip") == gdb.pc()
    assert register(gdb, "rax") == 231 and register(gdb, "rdi") == recording.status
    frames = gdb.cmd("bt")
    assert "__libc_start_call_main" in frames and "status=22" in frames
    assert gdb.value("g_value") == "212"
    assert server.output == recording.stdout  # written at exit, before exit_group
    exited = gdb.stop("continue")
    assert exited.reason == "exited" and int(exited.record["exit-code"], 8) == recording.status
    assert "exited with code 026" in exited.console
    with pytest.raises(GdbError, match="The program is not being run"):
        gdb.cmd("continue")


# What gdb may not do, and the connection.


def test_memory_and_register_writes_are_refused(recordings: Recordings, debug: Debugging) -> None:
    gdb, _ = debug.start(recordings["watch"].trace)
    gdb.cmd("break set_global")
    gdb.stop("continue")
    with pytest.raises(GdbError, match="Cannot access memory at address 0x"):
        gdb.cmd("set var g_value = 5")
    with pytest.raises(GdbError, match="cannot modify a recorded execution"):
        gdb.cmd("set var $rax = 1")
    assert gdb.value("g_value") == "1" and gdb.value("value") == "100"
    # and the recorded future is unchanged
    gdb.cmd("watch g_value")
    assert gdb.stop("continue").record["value"] == {"old": "1", "new": "100"}


def test_detach_and_reconnect_find_the_replay_where_it_was(
    recordings: Recordings, debug: Debugging
) -> None:
    gdb, server = debug.start(recordings["watch"].trace)
    gdb.cmd("break record_hit")
    gdb.stop("continue")
    gdb.stop("continue")
    assert gdb.value("amount") == "20"
    pc = gdb.pc()
    assert "Detaching from program" in gdb.cmd("detach")

    again = debug.gdb()
    again.connect(server.address)
    assert again.pc() == pc
    assert again.value("amount") == "20" and again.value("c->hits") == "1"
    # the first gdb's breakpoint left with it: nothing stops this run before the end
    assert again.stop("continue").reason == "no-history"
    assert again.value("g_value") == "212"
    again.cmd("kill")
    assert server.wait() == 0  # gdb's kill ends the server


def test_a_second_debugger_is_refused_while_the_first_keeps_working(
    recordings: Recordings, debug: Debugging
) -> None:
    gdb, server = debug.start(recordings["watch"].trace)
    gdb.cmd("break set_global")
    gdb.stop("continue")
    refused = (
        r"Remote failure reply: E\.retrograde is already serving the debugger at 127\.0\.0\.1:"
    )
    with pytest.raises(GdbError, match=refused):
        debug.gdb().connect(server.address)
    assert gdb.value("value") == "100"
    assert gdb.stop("finish").frame["func"] == "main"


def test_garbage_on_the_socket_does_not_kill_the_server(
    recordings: Recordings, debug: Debugging
) -> None:
    gdb, server = debug.start(recordings["watch"].trace)
    gdb.cmd("detach")
    with socket.create_connection((server.host, server.port), timeout=5) as junk:
        junk.sendall(b"\xff\xfe garbage $no-end-in-sight#zz\x03")
        junk.sendall(b"$" + b"A" * (PACKET_SIZE + 10))  # too long: the server hangs up
        while junk.recv(4096):
            pass
    with socket.create_connection((server.host, server.port), timeout=5) as client:
        codec = RspCodec(Role.CLIENT, packet_size=2 * PACKET_SIZE)
        client.sendall(codec.packet(b"?"))
        replies: list[bytes] = []
        while not replies:
            data = client.recv(4096)
            assert data, "the server hung up"
            replies = [e.payload for e in codec.receive_data(data) if isinstance(e, Packet)]
            client.sendall(codec.data_to_send())
        assert replies[0].startswith(b"T05")
    again = debug.gdb()
    again.connect(server.address)
    assert again.value("g_value") == "1"
    assert server.process.poll() is None


def test_a_port_in_use_is_one_line_on_stderr(recordings: Recordings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = subprocess.Popen(
            [*RETROGRADE, "replay", "-s", str(port), str(recordings["hello"].trace)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        stdout, stderr = server.communicate(timeout=30)
    assert server.returncode == 1
    assert stderr.splitlines() == [
        f"retrograde: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert stdout == ""
    assert not outliving(server.pid)  # the replay it had started is gone too


def test_replay_starts_gdb_itself_with_the_arguments_after_the_dashes(
    recordings: Recordings,
) -> None:
    replay = subprocess.Popen(
        [*RETROGRADE, "replay", "--no-echo", str(recordings["watch"].trace), "--",
         "-nx", "-batch", "-ex", "break add_to_global if delta == 4", "-ex", "continue",
         "-ex", "p g_value"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = replay.communicate(timeout=30)
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait()
    assert replay.returncode == 0, stderr
    assert re.search(
        r"^Breakpoint 1, add_to_global \(delta=4\) at .*watch\.c:\d+$", stdout, re.MULTILINE
    )
    assert "$1 = 102" in stdout.splitlines()
    assert not outliving(replay.pid)


def test_sse_and_avx_registers_are_the_recorded_ones(programs, tmp_path, debug: Debugging) -> None:
    """vector.c loads the bytes 1..32 into ymm2 before calling checkpoint()."""
    trace = tmp_path / "vector"
    assert record([programs.vector], out=trace).returncode == 26
    gdb, _ = debug.start(trace)
    gdb.cmd("break checkpoint")
    gdb.stop("continue")
    expected = "{" + ", ".join(str(i) for i in range(1, 33)) + "}"
    assert gdb.value("$ymm2.v32_int8") == expected
    assert gdb.value("$xmm2.v16_int8") == "{" + ", ".join(str(i) for i in range(1, 17)) + "}"
    everything = gdb.cmd("info all-registers")
    assert re.search(r"^ymm2\s", everything, re.M) and re.search(r"^mxcsr\s", everything, re.M)
    assert re.search(r"^fs_base\s+0x[0-9a-f]{6,}", gdb.cmd("info registers fs_base"))  # TLS
    gdb.stop("reverse-stepi")
    gdb.stop("stepi")
    assert gdb.value("$ymm2.v32_int8") == expected
