"""The server under a fuzzer: random and malformed packets of every kind the
server handles, and garbage between and inside them (bad and missing
checksums, truncated and oversized packets, escapes, runs, binary junk, huge
numbers, interrupts, acknowledgment floods), sent over a real socket to a real
`retrograde replay -s 0` serving a real recording.

After each example a new connection asks `?` and `g`: the server must answer,
and with the stop reply and registers it gave before, unless the example moved
the replay (a resume, a seek by monitor command); then it must still answer
validly, and the replay is taken back to the start for the next example. The
examples are derandomized, so every run sends the same bytes.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from gdb_driver import ReplayServer
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st
from rsp_client import RspClient, ServerHungUp
from runner import record

from retrograde.gdbstub.codec import PACKET_SIZE, checksum, escape

SENTINEL = "fuzz-sentinel"  # a monitor command whose (error) reply names it: nothing else does
START = "fuzz-start"  # the checkpoint each example that moved the replay goes back to
PC, SP = b"@PC@", b"@SP@"  # in generated packets: the program's pc and stack pointer, in hex


# -- what is sent --------------------------------------------------------------------------------

hex_digits = st.text("0123456789abcdefABCDEF", min_size=1, max_size=24).map(str.encode)
edges = st.sampled_from([b"%x" % n for n in (2**47 - 4096, 2**47, 2**48, 2**63, 2**64 - 1,
                                             0xFFFFFFFFFF600000, 0xFFFF800000000000)]
                        + [b"f" * 5000, b"0" * 300 + b"1", b"1" + b"0" * 16])
numbers = st.one_of(
    edges,  # the values that broke the server once
    st.integers(0, 0x40).map(lambda n: b"%x" % n),
    st.integers(0, 2**64 - 1).map(lambda n: b"%x" % n),
    st.sampled_from([b"-1", b"", b"zz", b"1,2"]),
    hex_digits,
)  # fmt: skip
addresses = st.one_of(
    numbers,
    st.tuples(st.sampled_from([PC, SP]), st.integers(-64, 64)).map(
        lambda base_offset: base_offset[0] + (b"%+d" % base_offset[1] if base_offset[1] else b"")
    ),
)
junk = st.binary(max_size=48)
hex_junk = st.binary(max_size=24).map(lambda data: data.hex().encode())
threads = st.sampled_from([b"-1", b"0", b"p0.0", b"p-1.-1", b"1", b"p1.1", b"pzz", b""]) | numbers
names = st.sampled_from(["a", "b", "c", "x y", "", "\x00", "é" * 3, "9" * 40])


def hex_text(text: str) -> bytes:
    return text.encode(errors="surrogateescape").hex().encode()


monitor_queries = st.one_of(
    st.sampled_from(["when", "when now", "help", "info checkpoints", "info", "checkpoint",
                     "reverse-roll abc", "reverse-roll 0", "reverse-roll -3", "reverse-roll 1 2",
                     "reverse-roll " + "9" * 5000, "restart", "delete", "delete checkpoint",
                     "frobnicate", ""]),
    names.map(lambda name: f"checkpoint {name}"),
    names.map(lambda name: f"delete checkpoint {name}"),
    st.text(max_size=30).filter(lambda text: "fuzz" not in text and not text.startswith(
        ("restart", "reverse-roll"))),
).map(lambda command: b"qRcmd," + hex_text(command))  # fmt: skip

queries = st.one_of(
    st.sampled_from([b"?", b"g", b"qC", b"qfThreadInfo", b"qsThreadInfo", b"qAttached",
                     b"qOffsets", b"qSymbol::", b"qTStatus", b"QStartNoAckMode", b"vCont?",
                     b"vMustReplyEmpty", b"qSupported", b"!", b"", b"qXfer", b"vFile"]),
    st.builds(lambda n: b"p" + n, numbers),
    st.builds(lambda a, n: b"m" + a + b"," + n, addresses, numbers),
    st.builds(lambda a, n: b"x" + a + b"," + n, addresses, numbers),
    st.builds(lambda data: b"G" + data, hex_junk),
    st.builds(lambda n, data: b"P" + n + b"=" + data, numbers, hex_junk),
    st.builds(lambda a, n, data: b"M" + a + b"," + n + b":" + data, addresses, numbers, hex_junk),
    st.builds(lambda a, n, data: b"X" + a + b"," + n + b":" + escape(data), addresses, numbers,
              junk),
    st.builds(lambda z, kind, a, n, tail: z + kind + b"," + a + b"," + n + tail,
              st.sampled_from([b"Z", b"z"]), st.sampled_from([b"0", b"1", b"2", b"3", b"4", b"5"])
              | numbers, addresses, numbers, st.sampled_from([b"", b";X2,0a", b";cmds:", b";"])),
    st.builds(lambda op, t: b"H" + op + t, st.sampled_from([b"g", b"c", b"", b"x"]), threads),
    st.builds(lambda t: b"T" + t, threads),
    st.builds(lambda t: b"qAttached:" + t, threads),
    st.builds(lambda features: b"qSupported:" + b";".join(features),
              st.lists(st.sampled_from([b"multiprocess+", b"swbreak+", b"hwbreak+", b"qRelocInsn+",
                                        b"xmlRegisters=i386", b"vContSupported+", b"-", b""]),
                       max_size=6)),
    st.builds(lambda sigs: b"QPassSignals:" + b";".join(sigs), st.lists(numbers, max_size=6)),
    st.builds(lambda obj, op, annex, off, n: b"qXfer:%s:%s:%s:%s,%s" % (obj, op, annex, off, n),
              st.sampled_from([b"features", b"auxv", b"exec-file", b"libraries-svr4", b"siginfo",
                               b"threads", b"memory-map", b""]),
              st.sampled_from([b"read", b"write", b""]),
              st.sampled_from([b"target.xml", b"", b"1", b"../../etc/passwd"]), numbers, numbers),
    st.builds(lambda path, flags, mode: b"vFile:open:" + path + b"," + flags + b"," + mode,
              st.sampled_from(["/lib64/ld-linux-x86-64.so.2", "/etc/passwd", "", "/proc/1/maps",
                               "/a\x00b", "x" * 3000]).map(hex_text) | hex_junk | junk,
              numbers, numbers),
    st.builds(lambda op, args: b"vFile:" + op + b":" + b",".join(args),
              st.sampled_from([b"pread", b"fstat", b"close", b"setfs", b"unlink", b"readlink",
                               b"pwrite", b""]), st.lists(numbers, max_size=4)),
    monitor_queries,
    st.builds(lambda letters, data: letters + data,
              st.text("abcdefghijklmnopqrstuvwxyzQ", min_size=1, max_size=12).map(str.encode)
              .filter(lambda name: not name.startswith((b"k", b"vKill"))), junk),
    junk.filter(lambda data: not data.startswith((b"k", b"vKill"))),
)  # fmt: skip

moves = st.one_of(
    st.sampled_from([b"c", b"s", b"bc", b"bs", b"vCont;c", b"vCont;s", b"vCont;c:p-1.-1",
                     b"vCont;s:p1.1;c", b"vCont;t", b"vCont;", b"c401000", b"S05;401000"]),
    st.builds(lambda letter, sig: letter + sig, st.sampled_from([b"C", b"S"]), numbers),
    st.builds(lambda action, sig: b"vCont;" + action + sig, st.sampled_from([b"C", b"S"]),
              numbers),
    st.sampled_from(["reverse-roll", "reverse-roll 1", "reverse-roll 1000", f"restart {START}",
                     "restart a"]).map(lambda command: b"qRcmd," + hex_text(command)),
)  # fmt: skip


@st.composite
def framed(draw: st.DrawFn, payloads: st.SearchStrategy[bytes]) -> bytes:
    """A payload as a packet: well framed, or with its checksum wrong or missing,
    cut short, escaped or run-length encoded where it should not be."""
    payload = draw(payloads)
    way = draw(st.sampled_from(["good"] * 6 + ["escaped", "bad checksum", "no checksum",
                                              "truncated", "run", "hash inside"]))
    if way == "escaped":
        payload = escape(payload)
    elif way == "run":
        payload += b"*" + bytes([draw(st.integers(0, 255))])
    elif way == "hash inside":
        payload = payload[:3] + b"#" + payload[3:]
    frame = b"$%s#%02x" % (payload, checksum(payload))
    if way == "bad checksum":
        frame = frame[:-2] + b"%02x" % ((checksum(payload) + 1) & 0xFF)
    elif way == "no checksum":
        frame = frame[:-3]
    elif way == "truncated":
        frame = frame[: draw(st.integers(1, len(frame)))]
    return frame


garbage = st.one_of(
    junk,
    st.sampled_from([b"\x03", b"+", b"-", b"$", b"#", b"}", b"*", b"$#", b"#00", b"\x03" * 5,
                     b"-" * 20, b"+" * 20, b"\xff" * 30,
                     b"$" + b"A" * (PACKET_SIZE + 1)]),  # over PacketSize: the connection ends
)  # fmt: skip


@dataclass(frozen=True)
class Example:
    parts: tuple[bytes, ...]
    moved: bool  # it holds a resume or a seek

    def data(self, pc: int, sp: int) -> bytes:
        data = b"".join(self.parts)
        return data.replace(PC, b"%x" % pc).replace(SP, b"%x" % sp)


def kills(data: bytes) -> bool:
    """Whether some stretch of the bytes could be taken as `k` or `vKill`: those end
    the server, which is right, and not what this test is about."""
    return b"$k" in data or b"$vKill" in data


@st.composite
def examples(draw: st.DrawFn) -> Example:
    parts = draw(st.lists(st.one_of(framed(queries), framed(queries), framed(queries), garbage),
                          min_size=1, max_size=10))
    moved = draw(st.booleans())
    if moved:  # one move at most: from the start, every move ends somewhere it can come back from
        parts.insert(draw(st.integers(0, len(parts))), draw(framed(moves)))
    example = Example(tuple(parts), moved)
    hex_sentinel = SENTINEL.encode().hex().encode()
    data = example.data(0, 0)
    assume(not kills(data) and hex_sentinel not in data.lower())
    return example


# -- the server --------------------------------------------------------------------------------


@dataclass
class FuzzedServer:
    server: ReplayServer
    start_registers: bytes = b""  # at the checkpoint START
    stop_reply: bytes = b""  # what `?` and `g` answer before an example
    registers: bytes = b""

    @property
    def port(self) -> int:
        return self.server.port

    def take_bearings(self) -> None:
        with RspClient(self.port) as client:
            self.stop_reply, self.registers = client.ask(b"?"), client.ask(b"g")

    @property
    def pc_sp(self) -> tuple[int, int]:
        regs = bytes.fromhex(self.registers.decode())
        (sp,) = struct.unpack_from("<Q", regs, 7 * 8)
        (pc,) = struct.unpack_from("<Q", regs, 16 * 8)
        return pc, sp


@pytest.fixture(scope="module")
def fuzzed(programs, tmp_path_factory) -> Iterator[FuzzedServer]:
    trace = tmp_path_factory.mktemp("traces") / "hello"
    assert record([programs.hello], out=trace).returncode == 3
    with ReplayServer(trace, "--no-echo") as server:
        with RspClient(server.port) as client:
            assert client.monitor(f"checkpoint {START}").startswith(f"checkpoint {START} at ")
        state = FuzzedServer(server)
        state.take_bearings()
        state.start_registers = state.registers
        yield state
    assert "internal error" not in server.stderr, server.stderr
    assert "Traceback" not in server.stderr, server.stderr


def send_and_wait(port: int, data: bytes) -> bool:
    """Send ``data`` on a connection of its own, then two sentinels (the bytes before
    may swallow the first as their checksum); read every reply until the second
    sentinel's. False if the server ended the connection first."""
    client = RspClient(port)
    sentinels = b"".join(client.codec.packet(b"qRcmd," + hex_text(f"{SENTINEL}-{n}"))
                         for n in (1, 2))  # fmt: skip

    def send() -> None:  # on its own thread: the replies must be read while it sends
        try:
            client.send_raw(data + sentinels)
        except OSError:
            pass  # closed by the server: the replies tell

    sender = threading.Thread(target=send)
    sender.start()
    answered = False
    try:
        while not answered:
            client.reply()
            answered = f"{SENTINEL}-2" in client.console
    except (ServerHungUp, ConnectionError):
        pass
    finally:
        sender.join()
        client.hang_up()
    return answered


def good(payload: bytes) -> bytes:
    return b"$%s#%02x" % (payload, checksum(payload))


# Packets that once killed or hung the server, always among the examples.
KILLERS = [b"m8000000000000000,4", b"x8000000000000000,4", b"Z0,8000000000000000,1",
           b"Z2,800000000000,8", b"Z2,1000,1000000000000", b"p" + b"f" * 5000,
           b"vFile:open:%s,0,0" % hex_text("/lib64/ld-linux-x86-64.so.2\0x")]  # fmt: skip


# The server is one, shared by every example: shrinking a failure would replay
# examples against a server the failure changed, so there is none.
@settings(max_examples=200, derandomize=True, database=None, deadline=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@example(sent=Example(tuple(good(packet) for packet in KILLERS), moved=False))
@example(sent=Example((good(b"Z0,8000000000000000,1"), good(b"c")), moved=True))
@given(sent=examples())
def test_no_packet_breaks_the_server(fuzzed: FuzzedServer, sent: Example) -> None:
    pc, sp = fuzzed.pc_sp
    send_and_wait(fuzzed.port, sent.data(pc, sp))
    with RspClient(fuzzed.port) as client:
        stop_reply, registers = client.ask(b"?"), client.ask(b"g")
        if not sent.moved:
            assert (stop_reply, registers) == (fuzzed.stop_reply, fuzzed.registers)
            return
        assert stop_reply[:1] in (b"T", b"W", b"X"), stop_reply
        assert len(registers) == len(fuzzed.registers), registers[:40]
        assert client.monitor(f"restart {START}").startswith("now at ")
    fuzzed.take_bearings()
    assert fuzzed.registers == fuzzed.start_registers
