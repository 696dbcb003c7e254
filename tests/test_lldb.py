"""lldb as a client: Debian's lldb-16, default settings, `gdb-remote` to
`retrograde replay -s 0 TRACE`. Every value lldb shows is checked against the
program's source, what it printed when recorded, or the trace.
"""

from __future__ import annotations

import re
import socket
import struct
from pathlib import Path

import pytest
from gdb_driver import ReplayServer, source_line
from lldb_driver import Said, lldb_batch, needs_lldb
from runner import record

from retrograde.gdbstub import lldb
from retrograde.gdbstub.codec import Packet, Role, RspCodec
from retrograde.gdbstub.target import MemoryRegion
from retrograde.trace.events import ExecEvent
from retrograde.trace.format import TraceReader

JIT_ADDRESS = 0x6A1700000000  # tests/programs/jit.c
NEVER_MAPPED = 0x1000  # below vm.mmap_min_addr


@pytest.fixture(scope="module")
def traces(programs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("traces")
    statuses = {"watch": 22, "jit": 42, "signals": 16}
    for name, status in statuses.items():
        assert record([programs[name]], out=root / name).returncode == status
    return {name: root / name for name in statuses}


def recorded_pid(trace: Path) -> int:
    with TraceReader(trace) as reader:
        return next(event.task for event in reader if isinstance(event, ExecEvent))


def stopped_at(said: Said) -> tuple[str, str]:
    """(stop reason, frame #0's text) of a command that resumed the program."""
    reason = re.search(r"^\* thread #1, stop reason = (.*)$", said.output, re.MULTILINE)
    frame = re.search(r"^ +frame #0: (.*)$", said.output, re.MULTILINE)
    assert reason and frame, said
    return reason[1], frame[1]


def register(said: Said, name: str) -> int:
    match = re.search(rf"^ +{name} = (0x[0-9a-f]+)", said.output, re.MULTILINE)
    assert match, said
    return int(match[1], 16)


def exited(said: Said, pid: int, status: int) -> bool:
    return f"Process {pid} exited with status = {status} " in said.output


@needs_lldb
def test_lldb_breaks_shows_frames_variables_registers_and_continues_to_the_exit(
    traces: dict[str, Path], programs
) -> None:
    trace = traces["watch"]
    pid = recorded_pid(trace)
    add_line = source_line("watch", "// write: add_to_global")
    with ReplayServer(trace, "--no-echo") as server:
        (connected, breakpoint, at_add, variables, frames, rip, value_before, nexted,
         value_after, removed, at_end, exit_) = lldb_batch(server, programs.watch, [
            "breakpoint set --name add_to_global", "continue", "frame variable", "bt",
            "register read rip", "print g_value", "next", "print g_value",
            "breakpoint delete --force", "continue",
        ], after_stop=["continue"])
    assert f"Process {pid} stopped" in connected.output
    address = int(re.search(r"address = (0x[0-9a-f]+)", breakpoint.output)[1], 16)
    # the first call, from step(counter, 2), after set_global(100)
    reason, frame = stopped_at(at_add)
    assert reason == "breakpoint 1.1"
    assert re.fullmatch(rf"{address:#018x} watch`add_to_global\(delta=2\) at watch.c:{add_line}:\d+",
                        frame)
    assert variables.output == "(long) delta = 2\n"
    assert re.match(rf"\* thread #1, stop reason = breakpoint 1.1\n"
                    rf"  \* frame #0: {address:#018x} watch`add_to_global\(delta=2\) at watch.c:{add_line}:\d+\n"
                    rf"    frame #1: 0x[0-9a-f]+ watch`step\(c=0x[0-9a-f]+, i=2\) at watch.c:"
                    rf"{source_line('watch', 'add_to_global(i);')}:\d+\n"
                    rf"    frame #2: 0x[0-9a-f]+ watch`main at watch.c:"
                    rf"{source_line('watch', 'step(counter, i);')}:\d+\n",
                    frames.output), frames.output  # fmt: skip
    assert register(rip, "rip") == address
    assert value_before.output == "(long) $0 = 100\n" and value_after.output == "(long) $1 = 102\n"
    assert stopped_at(nexted)[0] == "step over"
    assert f"at watch.c:{add_line + 1}:" in stopped_at(nexted)[1]
    assert stopped_at(at_end)[0] == "end of the recorded history"
    assert "_exit(status=22)" in stopped_at(at_end)[1]
    assert exited(exit_, pid, 22)
    assert removed.output.startswith("All breakpoints removed.")


@needs_lldb
def test_lldb_steps_in_over_and_by_instruction(traces: dict[str, Path], programs) -> None:
    call = source_line("watch", "set_global(100);")
    write = source_line("watch", "// write: set_global")
    with ReplayServer(traces["watch"], "--no-echo") as server:
        (_, _, at_main, nexted, stepped_in, frames, instructions, rip_before, stepped, rip_after,
         variables) = lldb_batch(server, programs.watch, [
            "breakpoint set --name main", "continue", "next", "thread step-in", "bt",
            "disassemble --pc --count 2", "register read rip", "si", "register read rip",
            "frame variable",
        ])
    assert stopped_at(at_main)[0] == "breakpoint 1.1"
    assert stopped_at(nexted)[0] == "step over" and f"watch.c:{call}:" in stopped_at(nexted)[1]
    reason, frame = stopped_at(stepped_in)
    assert reason == "step in" and f"watch`set_global(value=100) at watch.c:{write}:" in frame
    assert "frame #1: 0x" in frames.output and f"watch`main at watch.c:{call}:" in frames.output
    # si goes to the next instruction, the second one `disassemble` listed
    pcs = [int(pc, 16) for pc in re.findall(r"^(?:->)? +(0x[0-9a-f]+) <", instructions.output,
                                            re.MULTILINE)]
    assert len(pcs) == 2 and pcs[0] == register(rip_before, "rip"), instructions.output
    assert stopped_at(stepped)[0] == "instruction step into"
    assert register(rip_after, "rip") == pcs[1]
    assert variables.output == "(long) value = 100\n"


@needs_lldb
def test_lldb_sees_the_recorded_memory_map(traces: dict[str, Path], programs) -> None:
    """`memory region` (qMemoryRegionInfo) shows the recorded mappings: the
    stack with its permissions and name, and the JIT page first unmapped
    (before its mmap), then readable and executable (after its mprotect)."""
    jit_line = source_line("jit", "// call: first")
    with ReplayServer(traces["jit"], "--no-echo") as server:
        (_, stack, before, _, _, after) = lldb_batch(server, programs.jit, [
            "memory region $rsp", f"memory region {JIT_ADDRESS:#x}",
            f"breakpoint set --line {jit_line}", "continue", f"memory region {JIT_ADDRESS:#x}",
        ])
    assert re.fullmatch(r"\[0x[0-9a-f]+-0x[0-9a-f]+\) rw- \[stack\]\n", stack.output), stack
    unmapped = re.fullmatch(r"\[(0x[0-9a-f]+)-(0x[0-9a-f]+)\) ---\n", before.output)
    assert unmapped and int(unmapped[1], 16) <= JIT_ADDRESS < int(unmapped[2], 16), before
    assert after.output == f"[{JIT_ADDRESS:#018x}-{JIT_ADDRESS + 4096:#018x}) r-x\n", after


@needs_lldb
def test_lldb_breakpoint_at_an_address_mapped_later_stops_there(
    traces: dict[str, Path], programs
) -> None:
    """A breakpoint planted before anything is mapped at its address (lldb plants
    its own early, at connection) takes effect once the program maps it."""
    trace = traces["jit"]
    with ReplayServer(trace, "--no-echo") as server:
        (_, planted, _, first, first_argument, frames, second, second_argument, at_end,
         exit_) = lldb_batch(server, programs.jit, [
            f"breakpoint set --address {JIT_ADDRESS:#x}",
            f"breakpoint set --address {NEVER_MAPPED:#x}", "continue", "register read rdi",
            "bt", "continue", "register read rdi", "continue",
        ], after_stop=["continue"])
    assert f"address = {JIT_ADDRESS:#018x}" in planted.output
    for stop, argument, value in ((first, first_argument, 2), (second, second_argument, 3)):
        reason, frame = stopped_at(stop)
        assert (reason, frame) == ("breakpoint 1.1", f"{JIT_ADDRESS:#018x}")
        assert "leal   0x28(%rdi), %eax" in stop.output  # the code the program wrote
        assert register(argument, "rdi") == value
    assert f"frame #0: {JIT_ADDRESS:#018x}\n" in frames.output
    assert stopped_at(at_end)[0] == "end of the recorded history"
    assert exited(exit_, recorded_pid(trace), 42)


@needs_lldb
def test_lldb_watchpoint_reports_old_and_new_values(traces: dict[str, Path], programs) -> None:
    with ReplayServer(traces["watch"], "--no-echo") as server:
        _, _, _, watched, first, second = lldb_batch(server, programs.watch, [
            "breakpoint set --name main", "continue", "watchpoint set variable g_value",
            "continue", "continue",
        ])
    assert "Watchpoint created: Watchpoint 1: addr = 0x" in watched.output
    assert "size = 8 state = enabled type = w" in watched.output
    for said, old, new, function in ((first, 1, 100, "set_global"),
                                     (second, 100, 102, "add_to_global")):
        assert f"Watchpoint 1 hit:\nold value: {old}\nnew value: {new}\n" in said.output
        reason, frame = stopped_at(said)
        assert reason == "watchpoint 1" and f"watch`{function}(" in frame


@needs_lldb
def test_lldb_stops_at_the_recorded_signals_by_their_names(
    traces: dict[str, Path], programs
) -> None:
    """The wire carries gdb's signal numbers (SIGUSR1 is 30 there, SIGPWR on
    Linux), and lldb reads them so."""
    with ReplayServer(traces["signals"], "--no-echo") as server:
        _, _, at_usr1, frames, at_end = lldb_batch(server, programs.signals, [
            "process handle --stop false SIGSEGV SIGFPE SIGALRM", "continue",
        ], after_stop=["bt", "continue"])
    passed = re.findall(r"thread 1 received signal: (\w+)", at_usr1.output)
    assert passed == ["SIGSEGV"] * 3 + ["SIGFPE"]
    assert stopped_at(at_usr1)[0] == "signal SIGUSR1"
    raise_line = source_line("signals", "raise(SIGUSR1);")
    assert re.search(rf"frame #\d+: 0x[0-9a-f]+ signals`main at signals.c:{raise_line}:",
                     frames.output), frames.output
    assert stopped_at(at_end)[0] == "end of the recorded history"


# The replies themselves, for what lldb does not show.


def ask(client: socket.socket, codec: RspCodec, payload: bytes) -> bytes:
    client.sendall(codec.packet(payload))
    while True:
        data = client.recv(65536)
        assert data, "the server hung up"
        replies = [e.payload for e in codec.receive_data(data) if isinstance(e, Packet)]
        client.sendall(codec.data_to_send())
        if replies:
            return replies[0]


def fields(reply: bytes) -> dict[str, str]:
    assert reply.endswith(b";"), reply
    return dict(pair.split(":", 1) for pair in reply.decode()[:-1].split(";"))


def test_the_process_and_loader_queries_answer_from_the_recording(
    traces: dict[str, Path],
) -> None:
    """qProcessInfo names the recorded process; qShlibInfoAddr is the slot of
    DT_DEBUG in the executable's dynamic section (still 0: ld.so has not run);
    with QListThreadsInStopReply a stop names the thread and its pc."""
    trace = traces["watch"]
    with ReplayServer(trace, "--no-echo") as server, \
            socket.create_connection((server.host, server.port), timeout=30) as client:
        codec = RspCodec(Role.CLIENT)
        process = fields(ask(client, codec, b"qProcessInfo"))
        assert int(process["pid"], 16) == recorded_pid(trace)
        assert bytes.fromhex(process["triple"]) == b"x86_64-pc-linux-gnu"
        assert (process["ostype"], process["endian"], process["ptrsize"]) == \
            ("linux", "little", "8")
        assert bytes.fromhex(fields(ask(client, codec, b"qHostInfo"))["triple"]) == \
            b"x86_64-pc-linux-gnu"
        slot = int(ask(client, codec, b"qShlibInfoAddr"), 16)
        dynamic_entry = bytes.fromhex(ask(client, codec, b"m%x,10" % (slot - 8)).decode())
        assert struct.unpack("<qQ", dynamic_entry) == (21, 0)  # DT_DEBUG, not yet filled in
        assert ask(client, codec, b"qWatchpointSupportInfo:") == b"num:4;"
        assert ask(client, codec, b"QListThreadsInStopReply") == b"OK"
        stop = ask(client, codec, b"?")
        rip = int.from_bytes(bytes.fromhex(ask(client, codec, b"p10").decode()), "little")
        tid = recorded_pid(trace)
        assert stop == b"T05thread:%x;threads:%x;thread-pcs:%x;" % (tid, tid, rip)

REGIONS = [MemoryRegion(0x10000, 0x12000, "r-xp", "/bin/prog"),
           MemoryRegion(0x12000, 0x13000, "rw-p"),
           MemoryRegion(0x20000, 0x21000, "---p", "[guard]")]


@pytest.mark.parametrize(("address", "expected"), [
    (0x0, {"start": "0", "size": "10000"}),
    (0x10000, {"start": "10000", "size": "2000", "permissions": "rx",
               "name": b"/bin/prog".hex()}),
    (0x11FFF, {"start": "10000", "size": "2000", "permissions": "rx",
               "name": b"/bin/prog".hex()}),
    (0x12000, {"start": "12000", "size": "1000", "permissions": "rw"}),
    (0x13000, {"start": "13000", "size": "d000"}),
    (0x20800, {"start": "20000", "size": "1000", "permissions": "", "name": b"[guard]".hex()}),
    (0x21000, {"start": "21000", "size": f"{(1 << 64) - 1 - 0x21000:x}"}),
])  # fmt: skip
def test_memory_region_info_names_the_mapping_or_the_gap_around_an_address(
    address: int, expected: dict[str, str]
) -> None:
    assert fields(lldb.memory_region_info(REGIONS, address)) == expected


def test_memory_region_info_refuses_an_address_beyond_64_bits() -> None:
    assert lldb.memory_region_info(REGIONS, 1 << 64) == b"E01"


def test_stop_reply_threads_name_the_thread_and_its_pc() -> None:
    regs = bytearray(27 * 8)
    regs[16 * 8:17 * 8] = (0x401000).to_bytes(8, "little")  # rip: user_regs_struct slot 16
    assert lldb.stop_reply_threads(0x1093, bytes(regs)) == b"threads:1093;thread-pcs:401000;"
