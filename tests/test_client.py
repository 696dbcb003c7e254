"""retrograde.client against real servers on real recorded programs: symbols from
the trace's copy of the executable, breakpoints and watchpoints with Python
conditions, every kind of move forwards and backwards, checkpoints, registers,
memory and typed globals, the three ways of reaching a server, errors, nothing
left behind; gdb on the same traces as the independent judge of where
breakpoints go and where source steps stop; and examples/find_corruption.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gdb_driver import ReplayServer, outliving, session_processes, source_line
from runner import children_of, recorded

from retrograde import client

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def watch_trace(programs, trace_root) -> Path:
    return recorded(programs.watch, trace_root)


def where(stop: client.Stop) -> tuple[str | None, int | None]:
    assert stop.location is not None
    return stop.location.function, stop.location.line


def written(stop: client.Stop) -> tuple[object, object, str | None, int | None]:
    return (stop.value_before, stop.value_after, *where(stop))


# -- symbols ----------------------------------------------------------------------------------


def test_symbols_come_from_the_traces_copy_at_the_pies_load_address(programs, trace_root,
                                                                      tmp_path):
    binary = tmp_path / "watch"
    shutil.copy(programs.watch, binary)
    trace = recorded(binary, trace_root)
    binary.unlink()  # the client reads the trace's copy, over the protocol
    with client.open(trace) as replay:
        symbols = replay.symbols
        assert symbols.name == str(binary)
        assert symbols.bias != 0 and symbols.bias % 4096 == 0  # a PIE, placed by the kernel
        g_value = symbols.globals["g_value"]
        assert (g_value.size, g_value.type.name, g_value.type.kind) == (8, "long int", "signed")
        assert {"main", "set_global", "add_to_global", "record_hit"} <= set(symbols.functions)
        # The recorded mappings hold the executable where the bias puts its code.
        maps = replay.read_file("/proc/0/maps").decode()
        main = symbols.functions["main"].address
        assert any(int(line.split("-")[0], 16) <= main < int(line.split()[0].split("-")[1], 16)
                   and line.endswith(str(binary)) for line in maps.splitlines())
        assert replay.value("g_value") == 1
        line = source_line("watch", "// write: set_global")
        [address] = symbols.line_addresses("watch.c", line)
        assert symbols.location(address).function == "set_global"
        assert symbols.location(address).line == line


def test_breakpoints_go_where_gdb_puts_them(watch_trace, debug):
    specs = ["main", "set_global", "record_hit",
             f"watch.c:{source_line('watch', '// write: total')}",
             f"watch.c:{source_line('watch', 'for (int i = 1;')}"]
    gdb, _ = debug.start(watch_trace)
    expected = []
    for spec in specs:
        out = gdb.cmd(f"break {spec}")
        expected.append(int(out.split(" at ")[1].split(":")[0], 16))
    with client.open(watch_trace) as replay:
        assert [replay.break_at(spec).address for spec in specs] == expected


def test_shared_objects_name_their_functions_once_loaded(watch_trace):
    with client.open(watch_trace) as replay:
        assert [os.path.basename(lib.name) for lib in replay.libraries()] == [
            "ld-linux-x86-64.so.2"]  # from the auxv: the loader has listed nothing yet
        replay.break_at("main")
        replay.cont()
        names = [os.path.basename(lib.name) for lib in replay.libraries()]
        assert "libc.so.6" in names
        write = replay.break_at("write")  # printf's: a function of libc, at its entry
        stop = replay.cont()
        assert (stop.breakpoint, stop.location.function) == (write, "write")
        assert stop.location.file is None  # libc's lines are in a debug package, not here
        assert replay.read_int(replay.register("rsi"), 6, signed=False) == int.from_bytes(
            b"watch:", "little")  # the buffer printf writes: "watch: g_value 212, ..."


# -- breakpoints, watchpoints and conditions --------------------------------------------------


def test_breakpoints_by_function_line_and_address_forwards_then_backwards(watch_trace):
    with client.open(watch_trace) as replay:
        replay.break_at("set_global")
        replay.break_at(f"watch.c:{source_line('watch', '// write: add_to_global')}")
        record_hit = replay.break_at(f"*{replay.symbols.functions['record_hit'].address:#x}")
        forwards = []
        while (stop := replay.cont()).reason == "breakpoint":
            forwards.append((where(stop)[0], stop.breakpoint.spec if stop.breakpoint else None))
        assert stop.reason == "history-end"
        hits = [("set_global", "set_global")] + [("record_hit", record_hit.spec)] * 4
        hits[3:3] = [("add_to_global", f"watch.c:{source_line('watch', '// write: add_to_global')}")]
        hits += [("add_to_global", hits[3][1]), ("set_global", "set_global")]
        assert forwards == hits
        assert replay.value("g_value") == 212
        backwards = []
        while (stop := replay.reverse_cont()).reason == "breakpoint":
            backwards.append((where(stop)[0], stop.breakpoint.spec if stop.breakpoint else None))
        assert stop.reason == "history-begin"
        assert backwards == forwards[::-1]
        assert record_hit.hits == 8


def test_watchpoint_stops_at_every_write_forwards_and_backwards_with_its_values(watch_trace):
    set_line = source_line("watch", "// write: set_global")
    add_line = source_line("watch", "// write: add_to_global")
    with client.open(watch_trace) as replay:
        watch = replay.watch("g_value")
        assert (watch.kind, watch.length) == ("write", 8)
        forwards = []
        while (stop := replay.cont()).reason == "watchpoint":
            assert stop.breakpoint is watch and stop.watch_address == watch.address
            forwards.append(stop)
        assert [(s.value_before, s.value_after) for s in forwards] == [
            (1, 100), (100, 102), (102, 106), (106, 212)]
        # Forwards the program stops after the write; backwards before it, on its line.
        backwards = _walk_back(replay)
        assert backwards == [(106, 212, "set_global", set_line), (102, 106, "add_to_global", add_line),
                             (100, 102, "add_to_global", add_line), (1, 100, "set_global", set_line)]


def _walk_back(replay: client.Replay) -> list[tuple]:
    found = []
    while (stop := replay.reverse_cont()).reason == "watchpoint":
        found.append(written(stop))
    assert stop.reason == "history-begin"
    return found


def test_read_and_access_watchpoints_on_an_address(watch_trace):
    add_line = source_line("watch", "// write: add_to_global")
    with client.open(watch_trace) as replay:
        address = replay.symbols.globals["g_value"].address
        reads = replay.watch(address, 8, kind="read")
        stop = replay.cont()
        # The first read of g_value is add_to_global's `g_value += delta` (set_global's
        # write before it is passed), then main's `g_value * 2`.
        assert (stop.reason, stop.breakpoint, where(stop)) == ("watchpoint", reads,
                                                               ("add_to_global", add_line))
        assert stop.value_before == stop.value_after == (100).to_bytes(8, "little")
        assert replay.cont().reason == "watchpoint"
        main_read = where(replay.cont())
        assert main_read[0] == "main"
        # Backwards, that read first (the replay stops before it), then the one before.
        assert where(replay.reverse_cont()) == main_read
        assert where(replay.reverse_cont()) == ("add_to_global", add_line)
    with client.open(watch_trace) as replay:
        accesses = replay.watch(address, 8, kind="access")
        stop = replay.cont()
        assert (stop.breakpoint, stop.value_before, stop.value_after) == (
            accesses, (1).to_bytes(8, "little"), (100).to_bytes(8, "little"))
        assert where(replay.cont()) == ("add_to_global", add_line)  # the read: no change
        stop = replay.reverse_cont()  # back over that read, to set_global's write
        assert where(stop) == ("add_to_global", add_line)
        stop = replay.reverse_cont()
        assert where(stop) == ("set_global", source_line("watch", "// write: set_global"))
        assert replay.value("g_value") == 1


def test_conditions_are_python_callables_evaluated_at_each_hit_both_ways(watch_trace):
    asked: list[int] = []

    def delta_is_4(replay: client.Replay) -> bool:
        asked.append(replay.register("rdi"))
        return replay.register("rdi") == 4

    with client.open(watch_trace) as replay:
        replay.break_at("add_to_global", condition=delta_is_4)
        stop = replay.cont()
        assert where(stop)[0] == "add_to_global" and asked == [2, 4]
        assert replay.value("g_value") == 102  # the second call has not added yet
        assert replay.cont().reason == "history-end"
        asked.clear()
        stop = replay.reverse_cont()
        assert where(stop)[0] == "add_to_global" and asked == [4]
        assert replay.value("g_value") == 102
        # A watchpoint's condition sees the values of the write it stopped at.
        replay.watch("g_value", condition=lambda r: r.stop.value_after == 100)
        stop = replay.reverse_cont()
        assert written(stop) == (1, 100, "set_global", source_line("watch", "// write: set_global"))
        assert replay.reverse_cont().reason == "history-begin"


# -- moves ------------------------------------------------------------------------------------


def test_stepi_and_reverse_stepi_come_back_to_the_same_state(watch_trace):
    with client.open(watch_trace) as replay:
        replay.break_at("record_hit")
        replay.cont()
        start, position = replay.registers(), replay.when()
        path = [replay.pc]
        for _ in range(6):
            assert replay.stepi().reason == "step"
            path.append(replay.pc)
        assert len(set(path)) > 3
        for pc in reversed(path[:-1]):
            assert replay.reverse_stepi().reason == "step"
            assert replay.pc == pc
        assert replay.registers() == start and replay.when() == position
        for _ in range(6):
            replay.stepi()
        assert replay.reverse_stepi(6).reason == "step"  # one seek: the server's reverse-roll
        assert replay.registers() == start and replay.when() == position


def test_step_stops_where_gdb_steps_and_reverse_step_retraces_it(watch_trace, debug):
    """From main, 24 source steps as gdb's `step` makes them on the same trace (into
    functions with lines, after their prologue; over calloc and printf; out of a
    function to the next line start), then 24 reverse steps back over the same line
    starts to main's breakpoint, and from there out of the recorded lines.

    (gdb 13 is no judge backwards: its reverse-step stops again at each further
    address range of a line, fixed in gdb 14, and here skips the `for` line after
    the loop's first iteration.)"""
    server, gdb = debug.serve(watch_trace), debug.gdb()
    # Only the executable's own lines, as the client knows them: not libc's from
    # a debug package.
    gdb.cmd("set debug-file-directory /nonexistent")
    gdb.connect(server.address)
    gdb.cmd("break main")
    gdb.stop("continue")
    gdb_forwards = []
    for _ in range(24):
        stop = gdb.stop("step")
        assert stop.reason == "end-stepping-range"
        gdb_forwards.append((stop.frame.get("func"), stop.line, int(stop.frame["addr"], 16)))
    with client.open(watch_trace) as replay:
        replay.break_at("main")
        start = (*where(replay.cont()), replay.pc)
        forwards = [(*where(replay.step()), replay.pc) for _ in range(24)]
        assert forwards == gdb_forwards
        backwards = [(*where(replay.reverse_step()), replay.pc) for _ in range(24)]
        assert backwards == [start, *forwards[:-1]][::-1]
        assert replay.reverse_step().reason == "history-begin"


def test_checkpoints_and_seek_go_back_and_forth(watch_trace):
    with client.open(watch_trace) as replay:
        replay.break_at("add_to_global")
        replay.cont()
        first = replay.checkpoint("first")
        registers = replay.registers()
        assert first.position == replay.when() and first.position.event is not None
        assert replay.cont().reason == "breakpoint"
        later = replay.checkpoint()
        assert replay.cont().reason == "history-end"
        replay.seek(first)
        assert replay.registers() == registers and replay.value("g_value") == 100
        assert replay.when() == first.position
        replay.seek(later.name)
        assert replay.value("g_value") == 102
        with pytest.raises(client.ClientError, match="no checkpoint named nowhere"):
            replay.seek("nowhere")


def test_interrupt_stops_a_long_continue(programs, trace_root):
    """compute spins seconds in user code with no syscall: nothing else ends the move."""
    with client.open(recorded(programs.compute, trace_root, "1500000000")) as replay:
        moves: list[client.Stop] = []
        mover = threading.Thread(target=lambda: moves.append(replay.cont()))
        mover.start()
        time.sleep(0.5)
        replay.interrupt()
        mover.join(60)
        assert [stop.reason for stop in moves] == ["interrupted"]
        assert moves[0].signal == signal.SIGINT
        here = replay.pc
        replay.stepi()
        replay.reverse_stepi()
        assert replay.pc == here  # the position it stopped at is a real one


# -- state ------------------------------------------------------------------------------------


def test_registers_memory_and_typed_globals(programs, trace_root):
    with client.open(recorded(programs.typed, trace_root)) as replay:
        replay.break_at(f"typed.c:{source_line('typed', '// change: g_point')}")
        stop = replay.cont()
        registers = replay.registers()
        assert {"rip", "rsp", "rax", "eflags", "fs_base", "xmm0"} <= set(registers)
        assert registers["rip"] == stop.pc == replay.pc
        assert replay.read_int(registers["rsp"], 8) == int.from_bytes(
            replay.read_memory(registers["rsp"], 8), "little", signed=True)
        values = {name: replay.value(name) for name in (
            "g_int", "g_byte", "g_letter", "g_ratio", "g_half", "g_flag", "g_counter",
            "g_colour", "g_table", "g_point")}
        assert values == {
            "g_int": -42, "g_byte": 200, "g_letter": ord("q"), "g_ratio": 0.25, "g_half": 0.5,
            "g_flag": True, "g_counter": 1 << 40, "g_colour": 6, "g_table": [1, 1, 2, 30, 5],
            "g_point": {"x": -7, "y": 70000, "weight": 1.5}}
        assert replay.value("g_point.y") == 70000 and replay.value("g_table[3]") == 30
        name = replay.value("g_name")
        assert replay.read_memory(name, 6) == b"typed\0"
        assert replay.value("g_pointer") == replay.address_of("g_table[2]")[0]
        # More than a packet holds, ending on the page of the stack pointer.
        below = (registers["rsp"] & ~0xFFF) - 8192
        assert len(replay.read_memory(below, 3 * 4096)) == 3 * 4096


def test_errors_are_one_line_client_errors(watch_trace, trace_root, tmp_path):
    with pytest.raises(client.ClientError, match="no such trace"):
        client.open(tmp_path / "nowhere")
    with pytest.raises(client.ClientError, match="cannot connect"):
        client.connect("127.0.0.1:1")
    with pytest.raises(client.ClientError, match="not an address"):
        client.connect("localhost")
    with client.open(watch_trace) as replay:
        errors = []
        for attempt in (lambda: replay.break_at("no_such_function"),
                        lambda: replay.break_at("watch.c:1"),
                        lambda: replay.value("no_such_global"),
                        lambda: replay.value("g_value.member"),
                        lambda: replay.register("no_such_register"),
                        lambda: replay.read_memory(8, 4),
                        lambda: replay.watch(0x1000),
                        lambda: replay.monitor("no-such-command")):
            with pytest.raises(client.ClientError) as error:
                attempt()
            errors.append(str(error.value))
        assert all(message and "\n" not in message for message in errors)
        for _ in range(4):
            replay.watch("g_value")
        with pytest.raises(client.ClientError, match="debug registers"):
            replay.watch("g_value")
        assert replay.cont().reason == "watchpoint"  # the session goes on
    with pytest.raises(client.ClientError, match="closed"):
        replay.cont()


# -- servers ----------------------------------------------------------------------------------


def test_a_server_it_starts_ends_with_it_and_leaves_no_process(watch_trace):
    replay = client.open(watch_trace)
    server = replay.server_pid
    assert server is not None
    replay.watch("g_value")
    replay.cont()
    assert session_processes(server)  # the server and its replay processes
    replay.close()
    assert not outliving(server)


def test_a_killed_script_takes_its_server_with_it(watch_trace):
    script = ("import sys\nfrom retrograde import client\n"
              "replay = client.open(sys.argv[1])\nreplay.cont()\n"
              "print(replay.server_pid, flush=True)\nsys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(watch_trace)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    server = int(child.stdout.readline())
    child.kill()
    child.wait()
    assert not outliving(server, timeout=30)


def test_in_process_server_runs_on_a_thread_of_ours_and_leaves_no_child(watch_trace):
    before = set(children_of(os.getpid()))
    with client.open(watch_trace, in_process=True) as replay:
        assert set(children_of(os.getpid())) - before  # the replay processes are ours
        replay.watch("g_value")
        assert [replay.cont().value_after for _ in range(4)] == [100, 102, 106, 212]
        # Backwards from a forward stop at a write: that write first.
        stop = replay.reverse_cont()
        assert written(stop) == (106, 212, "set_global", source_line("watch", "// write: set_global"))
        assert written(replay.reverse_cont())[:2] == (102, 106)
    deadline = time.monotonic() + 10
    while set(children_of(os.getpid())) - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not set(children_of(os.getpid())) - before
    assert not [t for t in threading.enumerate() if t.name == "retrograde-replay"]


def test_connecting_to_a_running_server_detaches_and_leaves_it_serving(watch_trace):
    with ReplayServer(watch_trace) as server:
        with client.connect(server.address) as replay:
            replay.break_at("set_global")
            assert where(replay.cont())[0] == "set_global"
            position = replay.when()
        # The server serves on, where the client left it, without the client's breakpoint.
        with client.connect(server.address) as again:
            assert again.when() == position
            assert again.cont().reason == "history-end"
            assert again.value("g_value") == 212
        assert server.process.poll() is None


# -- the example ------------------------------------------------------------------------------


def test_find_corruption_example_names_the_corrupting_line(trace_root):
    run = subprocess.run([sys.executable, str(EXAMPLES / "find_corruption.py")],
                         check=False, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = (EXAMPLES / "corrupt.c").read_text().splitlines()
    culprit = next(n for n, line in enumerate(lines, 1) if "// the corrupting write" in line)
    out = run.stdout.splitlines()
    assert out[0].startswith("at the end of the recording") and "calibration = 28" in out[0]
    assert out[1].startswith(f"last write: store_reading at corrupt.c:{culprit}, 26 -> 28,")
    assert "reading 9" in out[1]
    assert out[2].startswith(f"first bad write: store_reading at corrupt.c:{culprit}, 1000 -> 26,")
    assert "reading 4" in out[2]
