"""Asynchronous signals delivered inside long stretches of user code: replay reaches
the recorded state by execution (replay/precise.py), so the loop before the signal
is history gdb can step through; only beyond the bound is the state restored, and
that is said."""

from __future__ import annotations

import os
import re
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from gdb_driver import Debugging, GdbSession, step_back_across_a_restored_signal
from runner import RETROGRADE, record

from retrograde.replay.precise import LIMIT_VARIABLE
from retrograde.trace.events import SignalEvent
from retrograde.trace.format import TraceReader
from retrograde.tracee.maps import RED_ZONE, memory_digest
from retrograde.tracee.registers import registers_from_bytes

SLOW = 180  # seconds for a command that runs through the whole loop on perf counters
LOOKED_AT = ("rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r12", "eflags")


@pytest.fixture
def debug() -> Iterator[Debugging]:
    with Debugging() as debugging:
        yield debugging


def recorded_signal(trace: Path) -> tuple[int, dict[str, int]]:
    """The first signal of ``trace`` (which must be delivered inside user code) and
    the registers it was recorded with."""
    with TraceReader(trace) as reader:
        n = next(n for n, e in enumerate(reader) if isinstance(e, SignalEvent))
        event = reader[n]
        assert event.where == "precise" and event.regs is not None
        regs = registers_from_bytes(event.regs)
    return n, {name: getattr(regs, name) for name in LOOKED_AT}


def registers(gdb: GdbSession) -> dict[str, int]:
    out = gdb.cmd("info registers " + " ".join(LOOKED_AT))
    return {line.split()[0]: int(line.split()[1], 16) for line in out.splitlines() if line.strip()}


def passes(stdout: str) -> int:
    at_alarm = re.search(r"SIGALRM at pass (\d+) of", stdout)
    assert at_alarm, stdout
    return int(at_alarm[1])


def test_a_signal_after_a_long_cpu_loop_is_reached_by_execution(programs, trace_root):
    """cpualarm spins in mix() for 10^5 passes or more until a CPU-time timer's
    SIGALRM: replay -a delivers it at the recorded pass, with the recorded state
    (the handler prints both), and restores nothing."""
    trace = trace_root / "cpualarm"
    recording = record([programs.cpualarm], out=trace)
    assert recording.returncode == 29
    assert passes(recording.stdout.decode()) >= 100_000
    recorded_signal(trace)
    replayed = subprocess.run([*RETROGRADE, "replay", "-a", str(trace)], check=False,
                              capture_output=True, text=True, timeout=SLOW)
    assert (replayed.returncode, replayed.stderr) == (29, "")
    assert replayed.stdout == recording.stdout.decode()


def test_the_loop_before_a_signal_is_history_gdb_steps_through(programs, trace_root,
                                                               debug):
    """At the SIGALRM stop inside the loop the registers are the recorded ones;
    stepi enters the handler, reverse-stepi comes back to the interrupted
    instruction, once more to the one before it (the loop is history, not a
    jump back to the timer's syscall), and stepi from there is one instruction
    onto the recorded state again, where the signal comes."""
    trace = trace_root / "cpualarm"
    recording = record([programs.cpualarm], out=trace)
    at_alarm = passes(recording.stdout.decode())
    assert at_alarm >= 100_000
    _, recorded = recorded_signal(trace)

    gdb, server = debug.start(trace)
    gdb.cmd("handle SIGALRM stop print")
    stop = gdb.stop("continue", timeout=SLOW)
    assert stop.record.get("signal-name") == "SIGALRM"
    assert "restoring" not in stop.console
    assert registers(gdb) == recorded
    assert int(gdb.value("i")) == at_alarm
    assert gdb.stop("stepi").frame["func"] == "on_alarm"
    assert gdb.pc() == int(gdb.value("(long) &on_alarm"))

    gdb.stop("reverse-stepi", timeout=SLOW)
    assert registers(gdb) == recorded and int(gdb.value("i")) == at_alarm
    back = gdb.stop("reverse-stepi", timeout=SLOW)
    before = gdb.pc()
    assert back.frame["func"] in ("mix", "main") and before != recorded["rip"]
    assert int(gdb.value("i")) in range(at_alarm - 1, at_alarm + 1)
    gdb.stop("stepi", timeout=SLOW)
    assert registers(gdb) == recorded and int(gdb.value("i")) == at_alarm
    # As natively when a signal comes during stepi: gdb reports it before the
    # instruction runs, and the next stepi enters the handler.
    assert gdb.stop("stepi").record.get("signal-name") == "SIGALRM"
    assert registers(gdb) == recorded
    assert gdb.stop("stepi").frame["func"] == "on_alarm"

    gdb.cmd("handle SIGALRM nostop noprint pass")
    assert gdb.stop("continue").reason == "no-history"
    assert server.output == recording.stdout.decode()
    assert "restoring" not in server.stderr


def test_a_signal_beyond_the_bound_is_restored_and_says_so(programs, trace_root, debug,
                                                            monkeypatch):
    """With the bound lowered to 1000 arrivals, cpualarm's loop is too long to run
    through: the replay writes the recorded state at the loop's start and says so
    once (replay -a's stderr, gdb's console). The history around it is consistent:
    into the handler and back, back over the restore to the timer's syscall, then
    forwards one instruction at a time to the signal again."""
    monkeypatch.setenv(LIMIT_VARIABLE, "1000")
    trace = trace_root / "cpualarm"
    recording = record([programs.cpualarm], out=trace)
    at_alarm = passes(recording.stdout.decode())
    event, recorded = recorded_signal(trace)
    replayed = subprocess.run([*RETROGRADE, "replay", "-a", str(trace)], check=False,
                              capture_output=True, text=True, timeout=120)
    note = f"retrograde: event {event}: SIGALRM was delivered by restoring its recorded state"
    assert replayed.returncode == 29 and replayed.stdout == recording.stdout.decode()
    assert replayed.stderr.count("\n") == 1 and replayed.stderr.startswith(note)
    assert "within 1000 arrivals at pc" in replayed.stderr

    gdb, server = debug.start(trace)
    gdb.cmd("handle SIGALRM stop print")
    stop = gdb.stop("continue")
    assert stop.record.get("signal-name") == "SIGALRM" and note in stop.console
    assert registers(gdb) == recorded and int(gdb.value("i")) == at_alarm
    assert gdb.stop("stepi").frame["func"] == "on_alarm"
    gdb.stop("reverse-stepi")
    assert registers(gdb) == recorded
    step_back_across_a_restored_signal(gdb)  # to the timer's syscall (timer_settime)
    assert registers(gdb) == recorded and int(gdb.value("i")) == at_alarm
    gdb.cmd("handle SIGALRM nostop noprint pass")
    assert gdb.stop("continue").reason == "no-history"
    assert server.output == recording.stdout.decode()


def test_a_signal_inside_the_handler_of_one_delivered_at_a_boundary(programs, trace_root,
                                                                     debug):
    """SIGALRM comes while the handler of a raised SIGUSR1 spins: the replay delivers
    SIGUSR1 before it runs toward SIGALRM's state (before, the run refused to start
    with a signal pending: an internal error). That state holds SIGUSR1's live
    frame, whose trapno differs in replay (the int3 after an injected syscall,
    not the recorded rdtsc's #GP): the match leaves the frame's bytes of history
    out (tracee.maps.frame_history), so the state is reached by execution, the
    spin is history, and nothing is restored."""
    trace = trace_root / "handlerspin"
    recording = record([programs.handlerspin], out=trace)
    assert recording.returncode == 0
    with TraceReader(trace) as reader:
        signals = [(n, e.signo, e.where) for n, e in enumerate(reader)
                   if isinstance(e, SignalEvent)]
        alarm = reader[signals[1][0]]
        recorded = registers_from_bytes(alarm.regs)
    (usr1_at, _, _), (alarm_at, _, _) = signals
    assert [s[1:] for s in signals] == [(10, "boundary"), (14, "precise")]
    assert alarm_at == usr1_at + 1
    replayed = subprocess.run([*RETROGRADE, "replay", "-a", str(trace)], check=False,
                              capture_output=True, text=True, timeout=SLOW)
    assert (replayed.returncode, replayed.stderr) == (0, "")
    assert replayed.stdout == recording.stdout.decode()

    gdb, server = debug.start(trace)
    gdb.cmd("handle SIGUSR1 nostop noprint pass")
    gdb.cmd("handle SIGALRM stop print")
    stop = gdb.stop("continue", timeout=SLOW)
    assert stop.record.get("signal-name") == "SIGALRM" and stop.frame["func"] == "on_usr1"
    assert "restoring" not in stop.console
    spins = int(gdb.value("spins"))
    assert gdb.pc() == recorded.rip and spins > 1000
    gdb.stop("reverse-stepi", timeout=SLOW)  # the spin before it is history
    assert gdb.pc() != recorded.rip and int(gdb.value("spins")) in (spins - 1, spins)
    gdb.stop("stepi", timeout=SLOW)
    assert gdb.pc() == recorded.rip and int(gdb.value("spins")) == spins
    assert "restoring" not in server.stderr


def _stack_with_a_frame(trapno: int, xstate_bv: int, gap: int, xmm0: int,
                        reserved: int = 0x5a) -> bytes:
    """4 KiB of live stack at STACK holding a signal frame the way the kernel lays
    it out: sigcontext's err, trapno, oldmask, cr2 and fpstate pointer, then the
    XSAVE area at FPSTATE (64-byte aligned) with FP_XSTATE_MAGIC1 and its size.
    The stack's stale bytes are 0x5a, and ``reserved`` in the legacy area's
    reserved bytes (416-463), which AMD's XSAVE does not write; AVX (bit 2) in
    use or not, its registers are in their initial state."""
    data = bytearray(b"\x5a" * 4096)
    pointer = FPSTATE - 0x200 - STACK  # where sigcontext.fpstate lies
    data[pointer - 32:pointer] = struct.pack("<4Q", 14, trapno, 0x1234, 0xdead)
    data[pointer:pointer + 8] = struct.pack("<Q", FPSTATE)
    fp = FPSTATE - STACK
    data[fp + 160:fp + 168] = struct.pack("<Q", xmm0)  # XMM0, in the legacy area
    data[fp + 416:fp + 464] = bytes([reserved]) * 48
    data[fp + 464:fp + 472] = struct.pack("<II", 0x46505853, 2444)
    data[fp + 576:fp + 2444] = bytes(2444 - 576)  # components past SSE: initial values
    data[fp + 512:fp + 520] = struct.pack("<Q", xstate_bv)
    data[fp + 1800] = gap  # between components here: XSAVE never writes there
    return bytes(data)


STACK, FPSTATE = 0x7FFF0000, 0x7FFF0600


def test_a_live_frames_bytes_of_history_are_left_out_of_the_digest():
    """Two stacks whose frames differ only in what the thread went through (trapno,
    XSTATE_BV, bytes XSAVE did not write: gaps, the legacy area's reserved
    bytes) digest alike; a frame holding another
    register value does not, and by the rule of older traces (frames=False) the
    history counts."""
    sp = STACK + RED_ZONE
    one = _stack_with_a_frame(trapno=13, xstate_bv=0x207, gap=1, xmm0=7)
    other = _stack_with_a_frame(trapno=3, xstate_bv=0x203, gap=2, xmm0=7, reserved=0x33)
    changed = _stack_with_a_frame(trapno=13, xstate_bv=0x207, gap=1, xmm0=8)
    assert memory_digest([(STACK, one)], sp) == memory_digest([(STACK, other)], sp)
    assert memory_digest([(STACK, one)], sp) != memory_digest([(STACK, changed)], sp)
    assert memory_digest([(STACK, one)], sp, frames=False) != \
        memory_digest([(STACK, other)], sp, frames=False)
