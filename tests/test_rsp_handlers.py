"""The RSP session against a fake target, the register layout against gdb, and
one conversation with real gdb over a socket."""

from __future__ import annotations

import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pygdbmi.gdbcontroller import GdbController

from retrograde.gdbstub import registers
from retrograde.gdbstub.agent import Condition
from retrograde.gdbstub.codec import PACKET_SIZE, Packet, Role, RspCodec, unescape
from retrograde.gdbstub.server import (
    REFUSED,
    USER_SPACE_END,
    Reply,
    RspSession,
    ServerError,
    Then,
    serve,
)
from retrograde.gdbstub.target import MemoryRegion, Stop, Thread

CODE = 0x401000
STACK = 0x7FFE0000
PID, TID = 0x1092, 0x1093
THREAD = b"p1092.1093"
GDB = shutil.which("gdb")
needs_gdb = pytest.mark.skipif(GDB is None, reason="needs gdb")


def lldb_description(text: str) -> bytes:
    """The `description:` a stop reply carries for lldb (hex text), which gdb skips."""
    return b"description:%s;" % text.encode().hex().encode()


def user_regs(**values: int) -> bytes:
    """A user_regs_struct where every slot holds a value naming it (0x1000 + slot)
    unless given."""
    slots = [
        values.get(name, 0x1000 + slot) for slot, name in enumerate(registers.USER_REGS_FIELDS)
    ]
    return struct.pack("<27Q", *slots)


def xsave_area() -> bytes:
    """An XSAVE area with recognisable contents: two values on the x87 stack
    (st0 = 1.0, st1 = 0.0, TOP = 6), xmmN = N repeated, ymmNh = 0x80 + N repeated."""
    area = bytearray(registers.XSTATE_SIZE)
    struct.pack_into("<HHBxH", area, 0, 0x037F, 6 << 11, 0b1100_0000, 0x07FF | 0xF800)
    struct.pack_into("<QQI", area, 8, 0x1122334455667788, 0x99AABBCCDDEEFF00, 0x1F80)
    struct.pack_into("<QH", area, 32, 1 << 63, 0x3FFF)  # st0: 1.0
    for n in range(16):
        area[160 + 16 * n : 176 + 16 * n] = bytes([n]) * 16
        area[576 + 16 * n : 592 + 16 * n] = bytes([0x80 + n]) * 16
    return bytes(area)


class FakeTarget:
    """A recorded program of 32 one-byte instructions at CODE, and a stack.

    Its position is the index of the next instruction. Stepping moves one
    instruction either way; continuing runs to the next breakpoint in that
    direction, backwards to the start of history, and forwards, with no
    breakpoint ahead, until interrupted (the program loops).
    """

    pid, tid = PID, TID

    def __init__(self) -> None:
        self.position = 0
        self.memory = {CODE: bytes(range(0x90, 0xB0)), STACK: bytes(range(64))}
        self.breakpoints: set[tuple[int, int, int]] = set()
        self.conditions: dict[tuple[int, int], Condition | None] = {}
        self.resumes: list[tuple[bool, bool, int]] = []
        self.passed_signals: set[int] = set()
        self.killed = False
        self.files = {"/usr/bin/prog": b"\x7fELF" + bytes(range(256)) * 8}
        self.reads: list[tuple[int, int]] = []
        self._interrupted = threading.Event()

    @property
    def pc(self) -> int:
        return CODE + self.position

    def threads(self) -> list[Thread]:
        return [Thread(TID, "prog")]

    def registers(self, thread: int = 0) -> tuple[bytes, bytes]:
        return user_regs(rip=self.pc, rsp=STACK, eflags=0x246, cs=0x33, ss=0x2B), xsave_area()

    def read_memory(self, addr: int, length: int) -> bytes:
        self.reads.append((addr, length))
        for base, data in self.memory.items():
            if base <= addr < base + len(data):
                return data[addr - base : addr - base + length]
        raise OSError(14, "Bad address")

    def resume(self, step: bool, reverse: bool, signal: int = 0, thread: int = 0,
               others: bool = True) -> Stop:
        self.resumes.append((step, reverse, signal))
        if step and reverse:
            if self.position == 0:
                return Stop("history-begin")
            self.position -= 1
            return Stop("step")
        if step:
            if self.position == 31:
                return Stop("exited", exit_status=3)
            self.position += 1
            return Stop("step")
        stops = sorted(addr - CODE for kind, addr, _ in self.breakpoints if kind in (0, 1))
        if reverse:
            before = [position for position in stops if position < self.position]
            if not before:
                self.position = 0
                return Stop("history-begin")
            self.position = before[-1]
        else:
            after = [position for position in stops if position > self.position]
            if not after:
                self._interrupted.wait(10)
                self._interrupted.clear()
                return Stop("interrupted", signo=2)
            self.position = after[0]
        hardware = (1, self.pc, 1) in self.breakpoints
        return Stop("breakpoint", hw=hardware)

    def interrupt(self) -> None:
        self._interrupted.set()

    def insert_breakpoint(self, kind: int, addr: int, length: int,
                          condition: Condition | None = None) -> bool:
        if kind == 1 and sum(k == 1 for k, _, _ in self.breakpoints) == 4:
            return False  # four debug registers
        self.breakpoints.add((kind, addr, length))
        self.conditions[kind, addr] = condition
        return True

    def remove_breakpoint(self, kind: int, addr: int, length: int) -> bool:
        if (kind, addr, length) not in self.breakpoints:
            return False
        self.breakpoints.remove((kind, addr, length))
        return True

    def auxv(self) -> bytes:
        return struct.pack("<6Q", 6, 4096, 9, CODE, 0, 0)  # AT_PAGESZ, AT_ENTRY, AT_NULL

    def exec_file(self) -> str:
        return "/usr/bin/prog"

    def libraries_svr4(self) -> str:
        return '<library-list-svr4 version="1.0" main-lm="0x0"/>'

    def siginfo(self) -> bytes:
        return struct.pack("<3i", signal.SIGSEGV, 0, 1).ljust(128, b"\0")

    def open_file(self, path: str) -> bytes | None:
        return self.files.get(path)

    def memory_regions(self) -> list[MemoryRegion]:
        return [MemoryRegion(base, base + len(data), "r-xp" if base == CODE else "rw-p")
                for base, data in sorted(self.memory.items())]

    def r_debug_slot(self) -> int | None:
        return None  # a static program: no dynamic section

    def monitor(self, command: str) -> str:
        if command == "when":
            return "event 7\n"
        if command == "dump":
            return "x" * 20000
        raise ValueError(f"unknown monitor command: {command}")

    def kill(self) -> None:
        self.killed = True

    def pass_signals(self, signals: set[int]) -> None:
        self.passed_signals = signals


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget()


@pytest.fixture
def session(target: FakeTarget) -> RspSession:
    """A session whose client negotiated what gdb 13 asks for."""
    session = RspSession(target)
    session.handle(b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386")
    return session


def ask(session: RspSession, payload: bytes) -> bytes:
    """The single reply to a packet that continues the conversation."""
    reply = session.handle(payload)
    assert reply.then is Then.CONVERSE and len(reply.payloads) == 1, reply
    return reply.payloads[0]


# Negotiation.


def test_qsupported_advertises_what_gdb_needs(target: FakeTarget) -> None:
    features = ask(RspSession(target), b"qSupported:multiprocess+;swbreak+").split(b";")
    assert b"PacketSize=4000" in features
    for feature in (
        b"QStartNoAckMode+", b"qXfer:features:read+", b"qXfer:auxv:read+",
        b"qXfer:exec-file:read+", b"qXfer:libraries-svr4:read+", b"qXfer:siginfo:read+",
        b"swbreak+", b"hwbreak+", b"vContSupported+", b"multiprocess+", b"QPassSignals+",
        b"ReverseStep+", b"ReverseContinue+",
    ):  # fmt: skip
        assert feature in features
    forward_only = ask(RspSession(target, reverse=False), b"qSupported").split(b";")
    assert b"ReverseStep+" not in forward_only and b"ReverseContinue+" not in forward_only


def test_no_ack_mode_is_switched_on_after_the_ok(session: RspSession) -> None:
    assert session.handle(b"QStartNoAckMode") == Reply((b"OK",), Then.NO_ACK)


def test_unknown_and_empty_packets_get_the_empty_reply(session: RspSession) -> None:
    for payload in (b"vMustReplyEmpty", b"qThreadExtraInfo,p1092.1093", b"", b"!", b"vRun;00"):
        assert ask(session, payload) == b""


def test_lldbs_queries_are_answered_and_a_malformed_one_is_an_error(
    session: RspSession, target: FakeTarget
) -> None:
    assert ask(session, b"qMemoryRegionInfo:401004") == b"start:401000;size:20;permissions:rx;"
    assert ask(session, b"qMemoryRegionInfo:401020") == b"start:401020;size:7fbdefe0;"
    assert ask(session, b"qMemoryRegionInfo:zz") == b"E01"
    assert ask(session, b"qShlibInfoAddr") == b"E01"  # no dynamic section
    assert ask(session, b"qProcessInfo").startswith(b"pid:1092;")
    assert ask(session, b"QListThreadsInStopReply") == b"OK"
    assert ask(session, b"s") == b"T05thread:p1092.1093;threads:1093;thread-pcs:401001;"


# Threads.


def test_the_initial_stop_names_the_thread_in_multiprocess_syntax(session: RspSession) -> None:
    assert ask(session, b"?") == b"T05thread:p1092.1093;"


def test_a_client_without_multiprocess_gets_plain_thread_ids(target: FakeTarget) -> None:
    session = RspSession(target)
    assert ask(session, b"?") == b"T05thread:1093;"
    assert ask(session, b"qC") == b"QC1093"


def test_thread_queries(session: RspSession) -> None:
    assert ask(session, b"qC") == b"QC" + THREAD
    assert ask(session, b"qfThreadInfo") == b"m" + THREAD
    assert ask(session, b"qsThreadInfo") == b"l"
    assert ask(session, b"qAttached:1092") == b"1"
    assert ask(session, b"qAttached") == b"1"


def test_thread_selection_accepts_our_thread_and_wildcards_only(session: RspSession) -> None:
    for packet in (b"Hgp0.0", b"Hgp1092.1093", b"Hc-1", b"Hcp1092.-1", b"Hg0", b"Hg1093"):
        assert ask(session, packet) == b"OK", packet
    assert ask(session, b"Hgp1.1") == b"E01"
    assert ask(session, b"Hg77") == b"E01"
    assert ask(session, b"Tp1092.1093") == b"OK"
    assert ask(session, b"Tp1092.77") == b"E01"


class ThreeThreads(FakeTarget):
    """FakeTarget with two more threads, each with registers of its own (rip names
    the thread), and the last resume's thread and whether the others ran."""

    OTHERS = (0x1094, 0x1095)

    def __init__(self) -> None:
        super().__init__()
        self.resumed: list[tuple[bool, bool, int, bool]] = []

    def threads(self) -> list[Thread]:
        return [Thread(TID, "prog"), Thread(0x1094, "worker-1"), Thread(0x1095, "w<&>")]

    def registers(self, thread: int = 0) -> tuple[bytes, bytes]:
        if thread in self.OTHERS:
            return user_regs(rip=thread), xsave_area()
        return super().registers(thread)

    def resume(self, step: bool, reverse: bool, signal: int = 0, thread: int = 0,
               others: bool = True) -> Stop:
        self.resumed.append((step, reverse, thread, others))
        return Stop("step" if step else "breakpoint", thread=thread or 0x1095)


@pytest.fixture
def threads() -> tuple[RspSession, ThreeThreads]:
    target = ThreeThreads()
    session = RspSession(target)
    session.handle(b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+")
    return session, target


def test_every_thread_is_listed_with_its_name(threads: tuple[RspSession, ThreeThreads]) -> None:
    session, _ = threads
    assert ask(session, b"qfThreadInfo") == b"mp1092.1093,p1092.1094,p1092.1095"
    assert ask(session, b"qsThreadInfo") == b"l"
    assert ask(session, b"qXfer:threads:read::0,1000") == (
        b'l<?xml version="1.0"?><threads><thread id="p1092.1093" name="prog"/>'
        b'<thread id="p1092.1094" name="worker-1"/>'
        b'<thread id="p1092.1095" name="w&lt;&amp;&gt;"/></threads>')
    assert ask(session, b"Tp1092.1095") == b"OK"
    assert ask(session, b"Tp1092.1096") == b"E01"


def test_hg_chooses_whose_registers_g_and_p_read(threads: tuple[RspSession, ThreeThreads]) -> None:
    session, _ = threads
    rip = registers.REGISTERS.index(next(r for r in registers.REGISTERS if r.name == "rip"))
    assert ask(session, b"Hgp1092.1094") == b"OK"
    assert ask(session, b"p%x" % rip) == struct.pack("<Q", 0x1094).hex().encode()
    assert ask(session, b"Hgp1092.1095") == b"OK"
    assert ask(session, b"g") == registers.g_packet(user_regs(rip=0x1095), xsave_area())
    assert ask(session, b"Hgp1092.1096") == b"E01"  # no such thread: the choice stays
    assert ask(session, b"p%x" % rip) == struct.pack("<Q", 0x1095).hex().encode()


def test_a_stop_names_its_thread_and_makes_it_the_general_one(
    threads: tuple[RspSession, ThreeThreads]
) -> None:
    session, _ = threads
    assert ask(session, b"Hgp1092.1094") == b"OK"
    assert ask(session, b"vCont;c:p1092.-1") == b"T05thread:p1092.1095;swbreak:;"
    assert ask(session, b"qC") == b"QCp1092.1095"
    # gdb now takes 1095 for the general thread and sends no Hg for it.
    assert ask(session, b"g") == registers.g_packet(user_regs(rip=0x1095), xsave_area())


def test_vcont_steps_the_thread_it_names_with_or_without_the_others(
    threads: tuple[RspSession, ThreeThreads]
) -> None:
    session, target = threads
    assert ask(session, b"vCont;s:p1092.1094;c:p1092.-1") == b"T05thread:p1092.1094;"
    assert ask(session, b"vCont;s:p1092.1094") == b"T05thread:p1092.1094;"
    assert ask(session, b"vCont;c:p1092.1094") == b"T05thread:p1092.1094;swbreak:;"
    assert ask(session, b"vCont;c") == b"T05thread:p1092.1095;swbreak:;"
    assert target.resumed == [(True, False, 0x1094, True), (True, False, 0x1094, False),
                              (False, False, 0x1094, False), (False, False, 0, True)]


def test_reverse_steps_are_for_the_hc_thread(threads: tuple[RspSession, ThreeThreads]) -> None:
    session, target = threads
    assert ask(session, b"Hcp1092.1094") == b"OK"
    assert ask(session, b"bs") == b"T05thread:p1092.1094;"
    assert ask(session, b"bc") == b"T05thread:p1092.1094;swbreak:;"
    assert ask(session, b"Hc0") == b"OK"  # any thread: the one the last stop was in
    assert ask(session, b"bs") == b"T05thread:p1092.1094;"
    assert target.resumed == [(True, True, 0x1094, False), (False, True, 0x1094, False),
                              (True, True, 0x1094, True)]


def test_simple_queries(session: RspSession) -> None:
    assert ask(session, b"qOffsets") == b""  # gdb relocates from the auxv instead
    assert ask(session, b"qSymbol::") == b"OK"
    assert ask(session, b"qTStatus") == b""


# Registers and memory.


def test_g_holds_every_register_in_gdbs_numbering(session: RspSession, target: FakeTarget) -> None:
    reply = bytes.fromhex(ask(session, b"g").decode())
    assert len(reply) == sum(register.bitsize // 8 for register in registers.REGISTERS) == 816
    assert reply[:8] == struct.pack("<Q", 0x1000 + 10)  # rax, slot 10 of user_regs_struct
    assert reply[128:136] == struct.pack("<Q", CODE)  # rip
    assert reply[136:140] == struct.pack("<I", 0x246)  # eflags, 32 bits


def test_p_reads_one_register(session: RspSession, target: FakeTarget) -> None:
    target.position = 5
    assert ask(session, b"p10") == struct.pack("<Q", CODE + 5).hex().encode()  # rip is 16
    assert ask(session, b"p29") == (bytes([1]) * 16).hex().encode()  # xmm1 is 41
    assert ask(session, b"p4c") == b"E01"  # 76 registers: 0..75
    assert ask(session, b"pzz") == b"E01"


def test_m_reads_memory_as_hex_and_stops_at_the_end_of_a_region(session: RspSession) -> None:
    assert ask(session, b"m401000,4") == b"90919293"
    assert ask(session, b"m40101e,8") == b"aeaf"  # the last two bytes of the code
    assert ask(session, b"m0,4") == b"E01"
    assert ask(session, b"m401000") == b"E01"


def test_x_reads_memory_as_binary(session: RspSession, target: FakeTarget) -> None:
    assert ask(session, b"x7ffe0020,4") == b"b" + bytes([0x20, 0x21, 0x22, 0x23])
    assert ask(session, b"x10,4") == b"E01"


def test_addresses_past_user_space_are_errors_never_asked_of_the_target(
    session: RspSession, target: FakeTarget
) -> None:
    assert USER_SPACE_END in ((1 << 47) - 4096, (1 << 56) - 4096)
    for packet in (b"m8000000000000000,4", b"mffffffffff600000,8", b"x%x,4" % USER_SPACE_END,
                   b"mffffffffffffffff,10"):  # fmt: skip
        assert ask(session, packet) == b"E01", packet
    assert target.reads == []
    last = USER_SPACE_END - 8
    for packet in (b"Z0,8000000000000000,1", b"Z1,ffffffffffffffff,1",
                   b"Z2,%x,8" % USER_SPACE_END, b"Z2,%x,10" % last,  # crosses the end
                   b"Z3,800000000000,4", b"Z4,ffff800000000000,8"):  # fmt: skip
        assert ask(session, packet) == b"E01", packet
    assert target.breakpoints == set()
    assert ask(session, b"Z2,%x,8" % last) == b"OK"  # the last 8 bytes of user space


def test_numbers_of_more_than_64_bits_are_malformed(session: RspSession) -> None:
    assert ask(session, b"p" + b"f" * 5000) == b"E01"
    assert ask(session, b"p" + b"1" + b"0" * 16) == b"E01"  # 2^64
    assert ask(session, b"m" + b"0" * 40 + b"401000,2") == b"9091"  # leading zeros are no bits
    assert ask(session, b"m401000,1" + b"0" * 4000) == b"E01"
    assert ask(session, b"Z0,401000,1" + b"0" * 17) == b"E01"
    assert ask(session, b"vFile:pread:3,10," + b"f" * 300) == b"E01"


def test_a_query_the_target_fails_is_an_error_reply_and_the_session_goes_on(
    target: FakeTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> bytes:
        raise RuntimeError("auxv unreadable")

    monkeypatch.setattr(target, "auxv", broken)
    session = RspSession(target)
    assert ask(session, b"qXfer:auxv:read::0,100") == b"E01"
    assert ask(session, b"m401000,1") == b"90"

    def diverging(step: bool, reverse: bool, signal: int = 0, thread: int = 0,
                  others: bool = True) -> Stop:
        raise RuntimeError("divergence at event 3")

    monkeypatch.setattr(target, "resume", diverging)
    with pytest.raises(RuntimeError, match="divergence at event 3"):
        session.handle(b"c")  # a move that failed: the replay is nowhere the server knows


@pytest.mark.parametrize(
    "packet", [b"G" + b"00" * 816, b"P0=0100000000000000", b"M401000,1:cc", b"X401000,1:\xcc"]
)
def test_writes_are_refused_with_a_message(session: RspSession, packet: bytes) -> None:
    assert ask(session, packet) == REFUSED == b"E.cannot modify a recorded execution"


# Execution and stop replies.


def test_step_and_continue_report_stops(session: RspSession, target: FakeTarget) -> None:
    assert ask(session, b"s") == b"T05thread:p1092.1093;"
    assert ask(session, b"Z0,401004,1") == b"OK"
    assert ask(session, b"c") == b"T05thread:p1092.1093;swbreak:;"
    assert target.pc == CODE + 4
    assert target.resumes == [(True, False, 0), (False, False, 0)]
    assert ask(session, b"?") == b"T05thread:p1092.1093;swbreak:;"  # the last stop


def test_a_hardware_breakpoint_is_reported_as_hwbreak(
    session: RspSession, target: FakeTarget
) -> None:
    assert ask(session, b"Z1,401008,1") == b"OK"
    assert ask(session, b"vCont;c:p1092.-1") == b"T05thread:p1092.1093;hwbreak:;"


def test_breakpoint_reasons_only_for_a_client_that_asked(target: FakeTarget) -> None:
    session = RspSession(target)
    session.handle(b"qSupported:multiprocess+")
    ask(session, b"Z0,401002,1")
    assert ask(session, b"c") == b"T05thread:p1092.1093;"


def test_signals_are_translated_from_gdbs_numbering(
    session: RspSession, target: FakeTarget
) -> None:
    ask(session, b"Z0,401010,1")
    ask(session, b"C0a")  # gdb's SIGBUS is 10, Linux's 7
    ask(session, b"S1e")  # gdb's SIGUSR1 is 30, Linux's 10
    ask(session, b"vCont;S0b:p1092.1093;c:p1092.-1")  # SIGSEGV is 11 in both
    assert target.resumes == [(False, False, 7), (True, False, 10), (True, False, 11)]


def test_vcont_applies_the_leftmost_action_for_our_thread(
    session: RspSession, target: FakeTarget
) -> None:
    assert ask(session, b"vCont?") == b"vCont;c;C;s;S"
    ask(session, b"vCont;c:p1092.77;s:p1092.1093;c")
    assert target.resumes == [(True, False, 0)]
    assert ask(session, b"vCont;s:p1092.77") == b"E01"
    assert ask(session, b"vCont;t:p1092.1093") == b"E01"
    assert target.resumes == [(True, False, 0)]


def test_resuming_elsewhere_would_change_the_recording(
    session: RspSession, target: FakeTarget
) -> None:
    assert ask(session, b"c401000") == REFUSED
    assert ask(session, b"S05;401000") == REFUSED
    assert target.resumes == []


def test_reverse_execution_reaches_the_start_of_history(
    session: RspSession, target: FakeTarget
) -> None:
    target.position = 3
    ask(session, b"Z0,401001,1")
    assert ask(session, b"bs") == b"T05thread:p1092.1093;"
    assert ask(session, b"bc") == b"T05thread:p1092.1093;swbreak:;"
    assert target.pc == CODE + 1
    assert ask(session, b"bc") == (b"T05thread:p1092.1093;replaylog:begin;"
                                   + lldb_description("start of the recorded history"))
    assert target.resumes == [(True, True, 0), (False, True, 0), (False, True, 0)]


def test_reverse_execution_is_unsupported_when_disabled(target: FakeTarget) -> None:
    session = RspSession(target, reverse=False)
    assert ask(session, b"bc") == b"" and ask(session, b"bs") == b""
    assert target.resumes == []


def test_an_interrupt_is_reported_as_sigint(session: RspSession, target: FakeTarget) -> None:
    threading.Timer(0.05, target.interrupt).start()
    assert ask(session, b"c") == b"T02thread:p1092.1093;"


@pytest.mark.parametrize(
    ("stop", "reply"),
    [
        (Stop("watchpoint", watch_kind="watch", watch_addr=STACK + 16), b"T05thread:p1092.1093;watch:7ffe0010;"),
        (Stop("watchpoint", watch_kind="rwatch", watch_addr=0x10), b"T05thread:p1092.1093;rwatch:10;"),
        (Stop("watchpoint", watch_kind="awatch", watch_addr=0x10), b"T05thread:p1092.1093;awatch:10;"),
        (Stop("history-end"), b"T05thread:p1092.1093;replaylog:end;"
                              + lldb_description("end of the recorded history")),
        (Stop("signal", signo=signal.SIGUSR2, thread=0x1094), b"T1fthread:p1092.1094;"),
        (Stop("signal", signo=signal.SIGRTMIN), b"T2ethread:p1092.1093;"),  # Linux 34 is gdb's 46
        (Stop("exited", exit_status=3), b"W03;process:1092"),
        (Stop("terminated", signo=signal.SIGSEGV), b"X0b;process:1092"),
        (Stop("terminated", signo=signal.SIGUSR1), b"X1e;process:1092"),
    ],
)  # fmt: skip
def test_stop_reply_formats(target: FakeTarget, stop: Stop, reply: bytes) -> None:
    session = RspSession(target, last_stop=stop)
    session.handle(b"qSupported:multiprocess+;swbreak+;hwbreak+")
    assert ask(session, b"?") == reply


def test_stepping_off_the_end_reports_the_exit(session: RspSession, target: FakeTarget) -> None:
    target.position = 31
    assert ask(session, b"vCont;s:p1092.1093") == b"W03;process:1092"
    assert ask(session, b"Tp1092.1093") == b"E01"


# Breakpoints.


def test_breakpoints_and_watchpoints_are_inserted_and_removed(
    session: RspSession, target: FakeTarget
) -> None:
    assert ask(session, b"Z0,401004,1") == b"OK"
    assert ask(session, b"Z2,7ffe0010,8") == b"OK"
    assert ask(session, b"Z3,7ffe0018,4;X2,2227") == b"OK"  # a condition is the target's
    assert ask(session, b"Z4,7ffe0020,1") == b"OK"
    assert target.breakpoints == {
        (0, CODE + 4, 1),
        (2, STACK + 16, 8),
        (3, STACK + 24, 4),
        (4, STACK + 32, 1),
    }
    assert ask(session, b"z2,7ffe0010,8") == b"OK"
    assert ask(session, b"z2,7ffe0010,8") == b"E01"  # not there any more
    assert ask(session, b"Z5,401000,1") == b""  # no such kind
    assert ask(session, b"Z0,401000") == b"E01"


def test_breakpoint_conditions_reach_the_target_and_replace_the_old_ones(
    session: RspSession, target: FakeTarget
) -> None:
    assert b"ConditionalBreakpoints+" in ask(session, b"qSupported:multiprocess+")
    # gdb's `break ... if total == 7 || total == 9`, as two conditions of one location.
    equal_7, equal_9 = bytes.fromhex("22072213" "27"), bytes.fromhex("22092213" "27")
    packet = b"Z0,401004,1;X5,%sX5,%s" % (equal_7.hex().encode(), equal_9.hex().encode())
    assert ask(session, packet) == b"OK"  # gdb writes them one after another
    assert target.conditions[0, CODE + 4] == Condition((equal_7, equal_9))
    packet = b"Z0,401004,1;X5,%s;X5,%s" % (equal_9.hex().encode(), equal_7.hex().encode())
    assert ask(session, packet) == b"OK"  # or a field each
    assert target.conditions[0, CODE + 4] == Condition((equal_9, equal_7))
    assert ask(session, b"Z0,401004,1;X5,%s" % equal_9.hex().encode()) == b"OK"
    assert target.conditions[0, CODE + 4] == Condition((equal_9,))
    assert ask(session, b"Z0,401004,1") == b"OK"  # `condition 1`: no condition any more
    assert target.conditions[0, CODE + 4] is None
    assert ask(session, b"Z1,401008,1;X1,27;cmds:0,X1,27") == b"OK"  # commands end the list
    assert target.conditions[1, CODE + 8] == Condition((b"\x27",))


@pytest.mark.parametrize("conditions", [b";X2,27", b";X1,2", b";Xzz,27", b";X1,zz", b";Y1,27",
                                        b";X1,27;", b";", b";X,", b";X1,27X", b";X1,2727",
                                        b";X1,27Y1,27"])
def test_a_malformed_condition_list_is_an_error(session: RspSession, target: FakeTarget,
                                                conditions: bytes) -> None:
    assert ask(session, b"Z0,401004,1" + conditions) == b"E01"
    assert target.breakpoints == set()


def test_a_breakpoint_the_target_cannot_take_is_an_error(session: RspSession) -> None:
    for n in range(4):
        assert ask(session, b"Z1,40100%x,1" % n) == b"OK"
    assert ask(session, b"Z1,401009,1") == b"E01"


def test_closing_removes_the_breakpoints_a_vanished_client_left(
    session: RspSession, target: FakeTarget
) -> None:
    ask(session, b"Z0,401004,1")
    ask(session, b"Z2,7ffe0010,8")
    ask(session, b"Z0,401008,1")
    ask(session, b"z0,401008,1")
    session.close()
    assert target.breakpoints == set()


# qXfer objects.


def read_object(session: RspSession, name: bytes, annex: bytes = b"", chunk: int = 0x100) -> bytes:
    """Read a qXfer object the way gdb does: chunk by chunk until an `l` reply."""
    data = b""
    while True:
        reply = ask(session, b"qXfer:%s:read:%s:%x,%x" % (name, annex, len(data), chunk))
        assert reply[:1] in (b"m", b"l"), reply
        data += reply[1:]
        if reply[:1] == b"l":
            return data


def test_the_target_description_is_served_in_pieces(session: RspSession) -> None:
    assert read_object(session, b"features", b"target.xml") == registers.TARGET_XML
    first = ask(session, b"qXfer:features:read:target.xml:0,10")
    assert first == b"m" + registers.TARGET_XML[:16]
    past_the_end = ask(session, b"qXfer:features:read:target.xml:%x,10" % len(registers.TARGET_XML))
    assert past_the_end == b"l"
    assert ask(session, b"qXfer:features:read:64bit-core.xml:0,100") == b"E00"


def test_process_objects_are_served(session: RspSession, target: FakeTarget) -> None:
    assert read_object(session, b"auxv", chunk=7) == target.auxv()
    assert read_object(session, b"exec-file", b"1092") == b"/usr/bin/prog"
    assert read_object(session, b"libraries-svr4") == target.libraries_svr4().encode()
    assert read_object(session, b"siginfo") == target.siginfo()


def test_unserved_objects_and_writes_are_unsupported(session: RspSession) -> None:
    assert ask(session, b"qXfer:osdata:read::0,100") == b""
    assert ask(session, b"qXfer:siginfo:write::0:0000") == b""
    assert ask(session, b"qXfer:auxv:read::zz,100") == b"E01"


# Host I/O.


def hex_path(path: str) -> bytes:
    return path.encode().hex().encode()


def test_files_are_served_from_the_target(session: RspSession, target: FakeTarget) -> None:
    contents = target.files["/usr/bin/prog"]
    assert ask(session, b"vFile:setfs:0") == b"F0"
    reply = ask(session, b"vFile:open:%s,0,1c0" % hex_path("/usr/bin/prog"))
    fd = int(reply[1:], 16)
    assert reply == b"F%x" % fd
    assert ask(session, b"vFile:pread:%x,10,0" % fd) == b"F10;" + contents[:16]
    assert ask(session, b"vFile:pread:%x,1000,7f0" % fd) == b"F14;" + contents[0x7F0:]
    assert ask(session, b"vFile:pread:%x,100,4000" % fd) == b"F0;"  # past the end
    stat = ask(session, b"vFile:fstat:%x" % fd)
    assert stat[:4] == b"F40;"
    fields = struct.unpack(">7I3Q3I", stat[4:])
    assert fields[2] == 0o100444 and fields[7] == len(contents)
    assert ask(session, b"vFile:close:%x" % fd) == b"F0"
    assert ask(session, b"vFile:pread:%x,10,0" % fd) == b"F-1,9"  # EBADF
    assert ask(session, b"vFile:close:%x" % fd) == b"F-1,9"


def test_missing_files_and_writes_are_errors(session: RspSession) -> None:
    assert ask(session, b"vFile:open:%s,0,0" % hex_path("/etc/passwd")) == b"F-1,2"  # ENOENT
    # No file has a NUL in its name (open(2) would stop at it).
    assert ask(session, b"vFile:open:%s,0,0" % hex_path("/usr/bin/prog\0/etc")) == b"F-1,2"
    assert ask(session, b"vFile:open:%s,2,0" % hex_path("/usr/bin/prog")) == b"F-1,1e"  # EROFS
    assert ask(session, b"vFile:open:zz,0,0") == b"E01"
    assert ask(session, b"vFile:unlink:%s" % hex_path("/usr/bin/prog")) == b""


# Monitor commands and signals.


def test_monitor_output_comes_as_console_packets_then_ok(session: RspSession) -> None:
    reply = session.handle(b"qRcmd," + b"when".hex().encode())
    assert reply.payloads == (b"O" + b"event 7\n".hex().encode(), b"OK")


def test_long_monitor_output_is_split_to_fit_the_packet_size(session: RspSession) -> None:
    reply = session.handle(b"qRcmd," + b"dump".hex().encode())
    *console, final = reply.payloads
    assert final == b"OK" and len(console) == 3
    assert all(len(packet) <= PACKET_SIZE and packet[:1] == b"O" for packet in console)
    assert b"".join(bytes.fromhex(packet[1:].decode()) for packet in console) == b"x" * 20000


def test_a_failed_monitor_command_says_why_on_the_console_and_ends_in_ok(
    session: RspSession,
) -> None:
    # gdb shows any error reply to qRcmd as "Protocol error with Rcmd" (and gdb 13
    # prints an `E.message` reply as bad hex): the reason is console text.
    reply = session.handle(b"qRcmd," + b"frobnicate".hex().encode())
    assert reply.payloads == (
        b"O" + b"retrograde: unknown monitor command: frobnicate\n".hex().encode(),
        b"OK",
    )
    assert session.handle(b"qRcmd,7") == Reply((b"E01",))  # not even hex: malformed


def test_pass_signals_are_translated_and_unknown_ones_dropped(
    session: RspSession, target: FakeTarget
) -> None:
    # gdb's 0xe SIGALRM (Linux 14), 0x10 SIGURG (23), 0x1e SIGUSR1 (10), 7 SIGEMT (none)
    assert ask(session, b"QPassSignals:7;e;10;1e;") == b"OK"
    assert target.passed_signals == {signal.SIGALRM, signal.SIGURG, signal.SIGUSR1}
    assert ask(session, b"QPassSignals:") == b"OK"
    assert target.passed_signals == set()


# Ending.


def test_detach_keeps_the_target(session: RspSession, target: FakeTarget) -> None:
    assert session.handle(b"D;1092") == Reply((b"OK",), Then.DETACH)
    assert not target.killed


def test_kill_ends_the_server(session: RspSession, target: FakeTarget) -> None:
    assert session.handle(b"vKill;1092") == Reply((b"OK",), Then.KILL)
    assert target.killed
    assert RspSession(FakeTarget()).handle(b"k") == Reply((), Then.KILL)  # `k` has no reply


@given(
    st.sampled_from([b"", b"m", b"x", b"p", b"Z", b"z", b"H", b"T", b"C", b"S", b"vCont;", b"vFile:",
                     b"vFile:open:", b"vFile:pread:", b"qXfer:", b"qXfer:auxv:read::", b"qRcmd,",
                     b"QPassSignals:", b"qSupported:", b"bc", b"D", b"c", b"s"]),
    st.binary(max_size=40),
)  # fmt: skip
def test_malformed_packets_get_an_answer_not_an_exception(prefix: bytes, junk: bytes) -> None:
    target = FakeTarget()
    target.interrupt()  # a `c` that runs returns at once
    reply = RspSession(target).handle(prefix + junk)
    assert isinstance(reply, Reply)


# The register layout, checked against gdb itself.


def test_register_values_come_from_the_right_slots() -> None:
    regs, area = user_regs(), xsave_area()
    values = registers.register_values(regs, area)
    number = registers.REGISTER_NUMBERS
    for slot, name in enumerate(registers.USER_REGS_FIELDS):
        size = 4 if name in ("eflags", "cs", "ss", "ds", "es", "fs", "gs") else 8
        assert values[number[name]] == struct.pack("<Q", 0x1000 + slot)[:size], name
    assert values[number["xmm15"]] == bytes([15]) * 16
    assert values[number["ymm15h"]] == bytes([0x8F]) * 16
    assert values[number["mxcsr"]] == struct.pack("<I", 0x1F80)
    assert values[number["st0"]] == struct.pack("<QH", 1 << 63, 0x3FFF)
    assert values[number["fctrl"]] == struct.pack("<I", 0x037F)
    assert values[number["fop"]] == struct.pack("<I", 0x07FF)  # 11 bits of the 16
    assert values[number["fioff"]] == struct.pack("<I", 0x55667788)
    assert values[number["fiseg"]] == struct.pack("<I", 0x11223344)
    assert values[number["fooff"]] == struct.pack("<I", 0xDDEEFF00)
    assert values[number["foseg"]] == struct.pack("<I", 0x99AABBCC)


def test_the_abridged_tag_word_becomes_the_full_one() -> None:
    # TOP = 6: st0 is physical register 6 (1.0: valid), st1 physical 7 (0.0: zero),
    # the other six are empty (3).
    ftag = registers.REGISTER_NUMBERS["ftag"]
    assert registers.register_values(user_regs(), xsave_area())[ftag] == struct.pack("<I", 0x4FFF)
    area = bytearray(xsave_area())
    struct.pack_into("<QH", area, 48, 1 << 62, 0x7FFF)  # st1 (physical 7): a NaN, special
    area[4] |= 1  # physical 0 (st2) holds a denormal: special too
    struct.pack_into("<QH", area, 64, 1, 0)
    assert registers.register_values(user_regs(), bytes(area))[ftag] == struct.pack("<I", 0x8FFE)


def test_registers_without_avx_read_as_zero_upper_halves() -> None:
    values = registers.register_values(user_regs(), xsave_area()[:576])
    assert values[registers.REGISTER_NUMBERS["ymm0h"]] == bytes(16)


def gdb_remote_layout(tmp_path: Path) -> dict[str, tuple[int, int, int]]:
    """name -> (remote number, offset in the g packet, size), as gdb computes them
    from our target description."""
    assert GDB is not None
    description = tmp_path / "target.xml"
    description.write_bytes(registers.TARGET_XML)
    output = subprocess.run(
        [GDB, "-nx", "-batch", "-ex", f"set tdesc filename {description}",
         "-ex", "maint print remote-registers"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert output.stderr == ""  # a description gdb rejects gets a warning here
    layout = {}
    for line in output.stdout.splitlines():
        fields = line.split()
        # " rax  0  0  0  8 int64_t  0  0": name, number, relative, offset, size, type, remote, g offset
        if len(fields) == 8 and fields[-1].isdigit():
            layout[fields[0]] = (int(fields[6]), int(fields[7]), int(fields[4]))
    return layout


@needs_gdb
def test_gdb_reads_the_g_packet_exactly_as_we_lay_it_out(tmp_path: Path) -> None:
    layout = gdb_remote_layout(tmp_path)
    offset = 0
    ours = {}
    for number, register in enumerate(registers.REGISTERS):
        ours[register.name] = (number, offset, register.bitsize // 8)
        offset += register.bitsize // 8
    assert layout == ours


# Real gdb, over a socket.


class Gdb:
    """gdb driven through its MI, with waits that end as soon as the answer is in."""

    def __init__(self) -> None:
        self.controller = GdbController(
            command=[GDB or "gdb", "--nx", "--quiet", "--interpreter=mi3"],
            time_to_check_for_additional_output_sec=0.05,
        )
        self.token = 100

    def run(
        self, command: str, *, until_stopped: bool = False, timeout: float = 5
    ) -> list[dict[str, Any]]:
        """Send an MI command; return its records up to its result (and, for
        commands that resume, up to the `*stopped` that ends the run)."""
        self.token += 1
        self.controller.write(f"{self.token}{command}", read_response=False)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records += self.controller.get_gdb_response(
                timeout_sec=0.1, raise_error_on_timeout=False
            )
            results = [r for r in records if r["type"] == "result" and r["token"] == self.token]
            stopped = any(r["type"] == "notify" and r["message"] == "stopped" for r in records)
            if results and (stopped or not until_stopped or results[0]["message"] == "error"):
                return records
        raise TimeoutError(f"gdb did not finish {command!r}: {records}")

    def console(self, command: str) -> str:
        """A CLI command's output (console and target streams), or its error message."""
        records = self.run(f'-interpreter-exec console "{command}"')
        errors = [
            r["payload"]["msg"]
            for r in records
            if r["type"] == "result" and r["message"] == "error"
        ]
        text = "".join(r["payload"] for r in records if r["type"] in ("console", "target"))
        return text + "".join(errors)

    def stop_record(self, command: str) -> dict[str, Any]:
        records = self.run(command, until_stopped=True)
        return next(
            r["payload"] for r in records if r["type"] == "notify" and r["message"] == "stopped"
        )

    def close(self) -> None:
        self.controller.exit()


@pytest.fixture
def served() -> Iterator[tuple[FakeTarget, int, threading.Thread]]:
    """A FakeTarget served on a free port, in a thread that plays the tracer."""
    target = FakeTarget()
    ports: queue.Queue[int] = queue.Queue()
    thread = threading.Thread(
        target=serve,
        args=(target,),
        kwargs={"on_listening": lambda host, port: ports.put(port)},
        daemon=True,
    )
    thread.start()
    port = ports.get(timeout=5)
    yield target, port, thread
    if thread.is_alive():  # the test failed before killing it
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"$k#6b")
    thread.join(5)


def test_a_busy_port_is_a_one_line_server_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ServerError, match=rf"^cannot listen on 127.0.0.1:{port}: Address already in use$"
        ):
            serve(FakeTarget(), port=port)


def raw_client(port: int) -> tuple[socket.socket, RspCodec]:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    return client, RspCodec(Role.CLIENT, packet_size=2 * PACKET_SIZE)


def exchange(client: socket.socket, codec: RspCodec, payload: bytes) -> bytes:
    """Send one packet, acknowledge and return the reply."""
    client.sendall(codec.packet(payload))
    while True:
        data = client.recv(65536)
        assert data, "the server hung up"
        events = codec.receive_data(data)
        client.sendall(codec.data_to_send())
        packets = [event.payload for event in events if isinstance(event, Packet)]
        if packets:
            return unescape(packets[0])


def test_a_second_client_is_refused_while_the_first_keeps_working(served: Any) -> None:
    target, port, thread = served
    first, first_codec = raw_client(port)
    assert exchange(first, first_codec, b"m401000,2") == b"9091"
    second, second_codec = raw_client(port)
    refusal = exchange(second, second_codec, b"qSupported:multiprocess+")
    assert refusal.startswith(b"E.retrograde is already serving the debugger at 127.0.0.1:")
    try:
        assert second.recv(100) == b""  # then it ends the connection
    except ConnectionResetError:
        pass  # ended before our ack of its reply arrived: the kernel resets instead
    second.close()
    assert exchange(first, first_codec, b"m401002,2") == b"9293"
    first.sendall(first_codec.packet(b"k"))
    thread.join(5)
    assert not thread.is_alive() and target.killed


def test_garbage_and_oversized_packets_do_not_kill_the_server(served: Any) -> None:
    _, port, thread = served
    client, codec = raw_client(port)
    client.sendall(b"\xff\xfe garbage $no-end-in-sight")
    assert exchange(client, codec, b"qC") == b"QC1093"
    client.sendall(b"$" + b"A" * (PACKET_SIZE + 10))
    assert client.recv(100) == b""  # that connection is over...
    client, codec = raw_client(port)
    assert exchange(client, codec, b"?") == b"T05thread:1093;"  # ...but the server is not
    client.sendall(codec.packet(b"k"))
    thread.join(5)
    assert not thread.is_alive()


def test_a_client_that_vanishes_mid_run_leaves_the_target_stopped_and_clean(served: Any) -> None:
    target, port, thread = served
    client, codec = raw_client(port)
    assert exchange(client, codec, b"Z0,401000,1") == b"OK"  # behind us: never hit
    client.sendall(codec.packet(b"c"))
    time.sleep(0.2)
    client.close()  # gdb crashed while the program ran
    client, codec = raw_client(port)
    assert exchange(client, codec, b"?") == b"T02thread:1093;"
    assert target.breakpoints == set()
    client.sendall(codec.packet(b"k"))
    thread.join(5)


def test_an_interrupt_sent_with_the_resume_still_stops_it(served: Any) -> None:
    target, port, thread = served
    client, codec = raw_client(port)
    client.sendall(codec.packet(b"c") + b"\x03")  # before the server has started the resume
    assert exchange(client, codec, b"?") == b"T02thread:1093;"
    assert target.resumes == [(False, False, 0)]
    client.sendall(codec.packet(b"k"))
    thread.join(5)


def test_what_the_target_says_while_it_runs_reaches_the_client_at_once() -> None:
    """Console lines the target says during a resume (a long search's progress) come
    as `O` packets while the resume still runs, before its stop reply; said during a
    query they are dropped, since the client would take them for its reply."""

    class Talking(FakeTarget):
        def __init__(self) -> None:
            super().__init__()
            self.go_on = threading.Event()

        def resume(self, step: bool, reverse: bool, signal: int = 0, thread: int = 0,
               others: bool = True) -> Stop:
            self.console("searching (1 s)\n")
            assert self.go_on.wait(30)  # a bound only a hung test reaches
            self.console("took 1.5 s\n")
            return Stop("breakpoint")

        def registers(self, thread: int = 0) -> tuple[bytes, bytes]:
            self.console("not now\n")
            return super().registers(thread)

    target = Talking()
    ports: queue.Queue[int] = queue.Queue()
    thread = threading.Thread(target=serve, args=(target,), daemon=True,
                              kwargs={"on_listening": lambda host, port: ports.put(port)})
    thread.start()
    client, codec = raw_client(ports.get(timeout=5))
    client.sendall(codec.packet(b"bc"))
    assert receive(client, codec, 1) == [b"O" + b"searching (1 s)\n".hex().encode()]
    target.go_on.set()  # the resume was still running
    assert receive(client, codec, 2) == [b"O" + b"took 1.5 s\n".hex().encode(),
                                         b"T05thread:1093;"]
    # The registers, with no `O` packet before them.
    assert exchange(client, codec, b"g") == registers.g_packet(*FakeTarget().registers())
    client.sendall(codec.packet(b"k"))
    thread.join(5)
    assert not thread.is_alive()


def receive(client: socket.socket, codec: RspCodec, count: int) -> list[bytes]:
    """The next ``count`` packets from the server, acknowledged."""
    packets: list[bytes] = []
    while len(packets) < count:
        data = client.recv(65536)
        assert data, "the server hung up"
        packets += [e.payload for e in codec.receive_data(data) if isinstance(e, Packet)]
        client.sendall(codec.data_to_send())
    return packets


def test_an_interrupt_with_a_query_is_for_no_resume(served: Any) -> None:
    target, port, thread = served
    client, codec = raw_client(port)
    client.sendall(codec.packet(b"g") + b"\x03")  # gdb's Ctrl-C as a register read is answered
    client.sendall(codec.packet(b"?"))
    replies: list[bytes] = []
    while len(replies) < 2:  # the reply to `?`, so the 0x03 before it has been read
        events = codec.receive_data(client.recv(65536))
        client.sendall(codec.data_to_send())
        replies += [event.payload for event in events if isinstance(event, Packet)]
    assert replies[1] == b"T05thread:1093;"
    assert not target._interrupted.is_set()  # the next continue would have stopped at once
    client.sendall(codec.packet(b"k"))
    thread.join(5)


def test_a_target_failure_ends_the_server_with_that_error() -> None:
    class DivergingTarget(FakeTarget):
        def resume(self, step: bool, reverse: bool, signal: int = 0, thread: int = 0,
               others: bool = True) -> Stop:
            raise RuntimeError("divergence at event 12: write(1, ...) expected, got close(3)")

    ports: queue.Queue[int] = queue.Queue()
    errors: queue.Queue[Exception] = queue.Queue()

    def run() -> None:
        try:
            serve(DivergingTarget(), on_listening=lambda host, port: ports.put(port))
        except RuntimeError as error:
            errors.put(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    client, codec = raw_client(ports.get(timeout=5))
    client.sendall(codec.packet(b"s"))
    thread.join(5)
    assert str(errors.get_nowait()).startswith("divergence at event 12")
    assert client.recv(100) == b"+"  # the packet arrived; no reply came, the server is gone
    assert client.recv(100) == b""


def test_a_server_told_to_exit_mid_packet_ends_without_a_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    class Exiting(FakeTarget):  # as the CLI's SIGTERM handler exits, on the tracer thread
        def resume(self, step: bool, reverse: bool, signal: int = 0, thread: int = 0,
               others: bool = True) -> Stop:
            raise SystemExit(143)

    ports: queue.Queue[int] = queue.Queue()
    exits: queue.Queue[BaseException] = queue.Queue()

    def run() -> None:
        try:
            serve(Exiting(), on_listening=lambda host, port: ports.put(port))
        except SystemExit as error:
            exits.put(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    client, codec = raw_client(ports.get(timeout=5))
    assert exchange(client, codec, b"m401000,1") == b"90"
    client.sendall(codec.packet(b"s"))
    thread.join(5)
    assert not thread.is_alive() and exits.get_nowait().code == 143
    assert client.recv(100) == b"+"
    assert client.recv(100) == b""  # the server cut the connection on its way out
    assert capfd.readouterr().err == ""  # no "Task was destroyed", no CancelledError


@needs_gdb
def test_gdb_debugs_the_served_target_and_reconnects_after_detaching(served: Any) -> None:
    target, port, thread = served
    gdb = Gdb()
    try:
        gdb.run("-gdb-set confirm off")
        gdb.run("-gdb-set mi-async on")  # or gdb reads no command (-exec-interrupt) while it runs
        connected = gdb.run(f"-target-select remote 127.0.0.1:{port}")
        assert any(r["type"] == "result" and r["message"] == "connected" for r in connected)
        assert re.search(r"rip\s+0x401000\s", gdb.console("info registers rip"))
        assert "[ PF ZF IF ]" in gdb.console("info registers eflags")
        assert "0x90\t0x91\t0x92\t0x93" in gdb.console("x/4xb 0x401000")
        # The vector, x87 and Linux registers land where gdb looks for them.
        assert "0x3030303030303030303030303030303" in gdb.console("p/x $xmm3.uint128")
        assert "0x83838383838383838383838383838383" in gdb.console("p/x $ymm3.v2_int128[1]")
        assert "= 1" in gdb.console("p $st0")
        assert "0x4fff" in gdb.console("p/x $ftag")
        assert f"{0x1000 + 15:#x}" in gdb.console("p/x $orig_rax")
        assert f"{0x1000 + 21:#x}" in gdb.console("p/x $fs_base")

        assert gdb.stop_record("-exec-step-instruction")["reason"] == "end-stepping-range"
        assert target.resumes[-1] == (True, False, 0)
        assert "0x401001" in gdb.console("info registers rip")
        assert (
            gdb.stop_record("-exec-step-instruction --reverse")["frame"]["addr"]
            == "0x0000000000401000"
        )
        at_the_start = gdb.run("-exec-step-instruction --reverse", until_stopped=True)
        assert any("No more reverse-execution history." in r["payload"]
                   for r in at_the_start if r["type"] == "console")  # fmt: skip

        gdb.run("-break-insert *0x401004")
        hit = gdb.stop_record("-exec-continue")
        assert hit["reason"] == "breakpoint-hit" and hit["frame"]["addr"] == "0x0000000000401004"
        gdb.run("-break-delete")
        gdb.run("-exec-continue")  # nothing ahead: runs until interrupted
        interrupted = gdb.stop_record("-exec-interrupt")
        assert interrupted["reason"] == "signal-received" and interrupted["signal-name"] == "SIGINT"

        assert "cannot modify a recorded execution" in gdb.console("set var $rax = 1")
        assert "event 7" in gdb.console("monitor when")
        gdb.console("detach")
        assert target.pc == CODE + 4 and not target.killed

        gdb.run(f"-target-select remote 127.0.0.1:{port}")
        assert re.search(r"rip\s+0x401004\s", gdb.console("info registers rip"))
        gdb.console("kill")
        thread.join(5)
        assert not thread.is_alive() and target.killed
    finally:
        gdb.close()
