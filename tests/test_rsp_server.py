"""A real `retrograde replay -s 0` server, replaying real recordings, against
clients that send what no debugger would: every request gets a reply or an
error reply, and the server goes on serving with the replay where it was."""

from __future__ import annotations

import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from gdb_driver import GDB, Debugging, ReplayServer, session_processes
from rsp_client import HANG, RspClient
from runner import record

from retrograde.gdbstub.codec import MAX_RETRANSMISSIONS
from retrograde.gdbstub.replay_target import MAX_NAMED_CHECKPOINTS

needs_gdb = pytest.mark.skipif(GDB is None, reason="needs gdb")


@dataclass(frozen=True)
class Traces:
    hello: Path
    roll: Path  # 3 000 000 iterations of a 4-instruction loop: a long way back from the end
    compute: Path  # one long stretch of user code with no syscall


@pytest.fixture(scope="module")
def traces(programs, tmp_path_factory) -> Traces:
    root = tmp_path_factory.mktemp("traces")
    assert record([programs.hello], out=root / "hello").returncode == 3
    assert record([programs.roll, "3000000"], out=root / "roll").returncode == 25
    assert record([programs.compute], out=root / "compute").returncode == 23
    return Traces(root / "hello", root / "roll", root / "compute")


def stderr_once_it_says(server: ReplayServer, text: str) -> str:
    """What the server wrote on stderr, once ``text`` is in it (read on another
    thread, so it may come a moment after the server's exit)."""
    deadline = time.monotonic() + HANG
    while text not in server.stderr and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.stderr


def where(client: RspClient) -> tuple[bytes, bytes, str]:
    """The stop reply, the registers and the position: what must not change."""
    return client.ask(b"?"), client.ask(b"g"), client.monitor("when")


def test_packets_that_killed_or_hung_the_server_get_error_replies(traces: Traces) -> None:
    with ReplayServer(traces.hello) as server, RspClient(server.port) as client:
        before = where(client)
        nul_path = b"/lib64/ld-linux-x86-64.so.2\0/etc/passwd".hex().encode()
        answers = {
            b"m8000000000000000,4": b"E01",
            b"mffffffffffffffff,100": b"E01",
            b"xffffffffff600000,10": b"E01",  # the vsyscall page: no offset of /proc/PID/mem
            b"Z0,8000000000000000,1": b"E01",
            b"Z1,ffffffffffffffff,1": b"E01",
            b"Z2,800000000000,8": b"E01",  # non-canonical: no debug register takes it
            b"Z2,ffff800000000000,8": b"E01",  # the kernel's half
            b"Z2,1000,1000000000000": b"E01",  # 2^48 bytes: more than four debug registers
            b"Z3,7ffe0000,ffffffffffff": b"E01",
            b"z2,1000,1000000000000": b"E01",
            b"p" + b"f" * 5000: b"E01",
            b"vFile:open:%s,0,0" % nul_path: b"F-1,2",
        }
        for packet, answer in answers.items():
            assert client.ask(packet) == answer, packet[:40]
        assert where(client) == before
        # None of the refused breakpoints is left behind to trip the run.
        assert b";replaylog:end;" in client.ask(b"c")
    assert server.process.returncode == 128 + signal.SIGTERM
    assert "internal error" not in server.stderr


def test_an_interrupt_with_a_long_monitor_command_stops_it_where_it_was(traces: Traces) -> None:
    with ReplayServer(traces.roll, "--no-echo") as server, RspClient(server.port) as client:
        client.ask(b"c")  # to the end: 12 000 000 instructions from the start
        before = where(client)
        # gdb's Ctrl-C right behind the command: it reaches the server while the
        # command is queued or running, and stops it either way.
        client.send_raw(client.codec.packet(b"qRcmd," + b"reverse-roll 100000000".hex().encode())
                        + b"\x03")
        assert client.reply() == b"OK"
        position = before[2].split(" (of ")[0]
        assert client.console == f"interrupted: still at {position}\n"
        assert where(client) == before
        assert client.monitor("reverse-roll 4").startswith("now at ")  # and it serves on
    assert "internal error" not in server.stderr


def test_a_client_that_hangs_up_during_a_long_monitor_command_leaves_the_replay_there(
    traces: Traces,
) -> None:
    with ReplayServer(traces.roll, "--no-echo") as server:
        with RspClient(server.port) as client:
            client.ask(b"c")
            before = where(client)
            client.send(b"qRcmd," + b"reverse-roll 100000000".hex().encode())
        with RspClient(server.port) as client:  # the server took the hang-up as an interrupt
            assert where(client) == before


def test_an_interrupt_right_behind_continue_is_not_lost(traces: Traces) -> None:
    with ReplayServer(traces.compute, "--no-echo") as server, RspClient(server.port) as client:
        # The 0x03 arrives before the run has begun: it is for that run all the same.
        client.send_raw(client.codec.packet(b"c") + b"\x03")
        assert client.reply().startswith(b"T02thread:")  # SIGINT, not the end of the history
        assert client.monitor("when").startswith("event ")
        assert b";replaylog:end;" in client.ask(b"c")  # the rest of the run is there


def test_a_nak_flood_costs_a_few_retransmissions_then_the_connection(traces: Traces) -> None:
    with ReplayServer(traces.hello) as server:
        client = RspClient(server.port)
        registers = client.ask(b"g")
        client.send(b"g")  # again, and this time its reply is never acknowledged
        reply = b""
        while not re.search(rb"#..$", reply):
            reply += client.socket.recv(1 << 16)
        # Refuse the reply over and over: each burst of NAKs read at once costs
        # one retransmission, and there are only so many.
        resent = 0
        for _ in range(10 * MAX_RETRANSMISSIONS):
            try:
                client.send_raw(b"-" * 10_000)
                data = client.socket.recv(1 << 16)
            except ConnectionError:
                break
            if not data:
                break
            resent += data.count(b"$")
        else:
            pytest.fail("the server resent its reply for ever")
        assert 1 <= resent <= MAX_RETRANSMISSIONS
        client.socket.close()
        with RspClient(server.port) as client:
            assert client.ask(b"g") == registers
    assert "the peer refused the same packet 9 times" in stderr_once_it_says(server, "refused")


def test_named_checkpoints_are_bounded(traces: Traces) -> None:
    with ReplayServer(traces.hello) as server, RspClient(server.port) as client:
        for n in range(MAX_NAMED_CHECKPOINTS):
            assert client.monitor(f"checkpoint c{n}").startswith(f"checkpoint c{n} at ")
        processes = len(session_processes(server.process.pid))
        refused = client.monitor("checkpoint one-too-many")
        assert refused == (f"retrograde: checkpoint one-too-many: there are already "
                           f"{MAX_NAMED_CHECKPOINTS} named checkpoints, the most kept: delete "
                           "one first (monitor delete checkpoint NAME)\n")
        assert len(session_processes(server.process.pid)) == processes
        assert client.monitor("checkpoint c0").startswith("checkpoint c0 at ")  # replaced
        assert client.monitor("delete checkpoint c1") == "deleted checkpoint c1\n"
        assert client.monitor("checkpoint one-more").startswith("checkpoint one-more at ")
        assert client.monitor("delete checkpoint c1") == (
            "retrograde: delete checkpoint: no checkpoint named c1 "
            "(monitor info checkpoints lists them)\n")


def test_sigterm_ends_the_server_in_one_line_and_leaves_no_process(traces: Traces) -> None:
    server = ReplayServer(traces.roll, "--no-echo")
    client = RspClient(server.port)
    client.ask(b"c")
    client.monitor("checkpoint end")  # one more process to leave behind
    client.send(b"qRcmd," + b"reverse-roll 100000000".hex().encode())  # and busy
    server.process.send_signal(signal.SIGTERM)
    assert server.wait(HANG) == 128 + signal.SIGTERM
    assert server.close() == 128 + signal.SIGTERM  # which fails if any process outlives it
    assert stderr_once_it_says(server, "\n") == "retrograde: ended by SIGTERM\n"
    client.socket.close()


def test_serving_beyond_loopback_warns_that_the_recording_is_readable(traces: Traces) -> None:
    with ReplayServer(traces.hello, "--host", "0.0.0.0") as server, \
            RspClient(server.port) as client:
        assert client.ask(b"?").startswith(b"T05")
    assert server.stderr.splitlines()[0] == (
        "retrograde: warning: serving on 0.0.0.0: anyone who can reach the port can read "
        "the recorded program's memory and files")
    with ReplayServer(traces.hello, "--host", "127.0.0.2") as server:
        pass
    assert "warning" not in server.stderr


@needs_gdb
def test_malformed_monitor_commands_are_explained_in_gdbs_console(traces: Traces) -> None:
    with Debugging() as debug:
        gdb, _ = debug.start(traces.hello)
        explained = {
            "monitor when now": "retrograde: usage: monitor when",
            "monitor reverse-roll abc": "retrograde: reverse-roll N: N is a number of "
                                        "instructions, 1 or more, not 'abc'",
            "monitor reverse-roll 0": "retrograde: reverse-roll N: N is a number of "
                                      "instructions, 1 or more, not '0'",
            "monitor reverse-roll " + "9" * 5000: "retrograde: reverse-roll N: N is a number",
            "monitor restart": "retrograde: usage: monitor restart NAME",
            "monitor restart nowhere": "retrograde: restart: no checkpoint named nowhere",
            "monitor frobnicate": "retrograde: unknown monitor command: frobnicate",
        }
        for command, text in explained.items():
            output = gdb.cmd(command)
            assert output.startswith(text), (command, output)
            assert "Protocol error" not in output
        assert gdb.cmd("monitor when").startswith("event 1, instruction 0 ")
