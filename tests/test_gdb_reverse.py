"""Reverse execution from real gdb against the real server: reverse-continue,
reverse-step/next/finish, reverse watchpoints, reverse-roll N, signals."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from pygdbmi.gdbcontroller import GdbController

import retrograde
from runner import RETROGRADE, alive, children_of, record

GDB_COMMANDS = Path(retrograde.__file__).with_name("retrograde.gdb")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Debugger:
    """gdb (MI) connected to `retrograde replay -s 0 TRACE`; both end with ``close``."""

    def __init__(self, trace: Path) -> None:
        self.server = subprocess.Popen([*RETROGRADE, "replay", "-s", "0", "--no-echo", str(trace)],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.server.stdout.readline()
        match = re.match(r"listening on ([\d.]+):(\d+)", line)
        assert match, line + self.server.stderr.read()
        self.gdb = GdbController(["gdb", "--interpreter=mi3", "-q", "-nx", "-x", str(GDB_COMMANDS)],
                                 time_to_check_for_additional_output_sec=0.05)
        self.last_stop: dict = {}
        self.cmd("set pagination off")
        self.cmd("set confirm off")
        self.cmd(f"target remote {match.group(1)}:{match.group(2)}")

    def cmd(self, command: str, timeout: float = 120) -> str:
        """Run a CLI command; wait for its result (and its stop, when it resumes);
        return its console text, with "error: ..." lines for errors."""
        records = self.gdb.write(command, timeout_sec=timeout, raise_error_on_timeout=False)
        deadline = time.monotonic() + timeout

        def done() -> bool:
            results = [r for r in records if r["type"] == "result"]
            if not results:
                return False
            if results[-1]["message"] != "running":
                return True
            return any(r["type"] == "notify" and r["message"] == "stopped" for r in records)

        while not done():
            assert time.monotonic() < deadline, f"{command!r} did not finish"
            records += self.gdb.get_gdb_response(timeout_sec=1, raise_error_on_timeout=False)
        self.last = records
        stops = [r["payload"] for r in records if r["type"] == "notify"
                 and r["message"] == "stopped"]
        if stops:
            self.last_stop = stops[-1]
        errors = [r["payload"]["msg"] for r in records if r["type"] == "result"
                  and r["message"] == "error"]
        text = "".join(r["payload"] for r in records if r["type"] in ("console", "target")
                       and isinstance(r["payload"], str))
        return text + "".join(f"error: {e}\n" for e in errors)

    def stopped(self) -> dict:
        """The *stopped record of the last command that resumed the program."""
        return self.last_stop

    def value(self, expression: str) -> str:
        out = self.cmd(f"output {expression}")
        return out.strip()

    def where(self) -> tuple[str, int]:
        """(function, line) of the current frame."""
        frame = self.stopped().get("frame", {})
        return frame.get("func", "?"), int(frame.get("line", 0))

    def registers(self) -> dict[str, str]:
        out = self.cmd("info registers rip rsp rbp rax rbx rcx rdx rsi rdi eflags")
        return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}

    def close(self) -> None:
        try:
            self.gdb.write("kill", timeout_sec=5, raise_error_on_timeout=False)
        finally:
            self.gdb.exit()
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()


def line_of(source: Path, marker: str) -> int:
    return next(n for n, text in enumerate(source.read_text().splitlines(), 1) if marker in text)


@pytest.fixture
def debug(trace_root):
    sessions: list[Debugger] = []

    def start(trace: Path) -> Debugger:
        sessions.append(Debugger(trace))
        return sessions[-1]

    yield start
    for session in sessions:
        replaying = children_of(session.server.pid)
        session.close()
        time.sleep(0.1)
        assert not [pid for pid in replaying if alive(pid)], "replay processes outlived the server"


def recorded(program: Path, trace_root: Path, *args: str) -> Path:
    out = trace_root / program.name
    record([program, *args], out=out)
    return out


def hit(gdb: Debugger) -> tuple[str, str]:
    """(function, first argument's value) at a breakpoint stop."""
    frame = gdb.stopped()["frame"]
    args = frame.get("args", [])
    return frame["func"], args[0]["value"] if args else ""


def test_breakpoints_backwards_in_reverse_order_then_forwards_again(programs, trace_root, debug):
    gdb = debug(recorded(programs.watch, trace_root))
    gdb.cmd("break set_global")
    gdb.cmd("break add_to_global")
    forwards = []
    while "No more reverse-execution history" not in gdb.cmd("continue"):
        forwards.append(hit(gdb))
    assert forwards == [("set_global", "100"), ("add_to_global", "2"), ("add_to_global", "4"),
                        ("set_global", "212")]
    backwards = []
    while "No more reverse-execution history" not in gdb.cmd("reverse-continue"):
        backwards.append(hit(gdb))
    assert backwards == forwards[::-1]
    gdb.cmd("continue")
    assert hit(gdb) == forwards[0]
    assert gdb.value("g_value") == "1"  # set_global has not run yet


def test_reverse_next_and_finish_restore_the_machine_state(programs, trace_root, debug):
    source = Path(__file__).parent / "programs" / "watch.c"
    gdb = debug(recorded(programs.watch, trace_root))
    gdb.cmd("break record_hit")
    for _ in range(3):
        gdb.cmd("continue")
    assert gdb.where() == ("record_hit", line_of(source, "// write: hits"))
    before = (gdb.registers(), gdb.value("c->hits"), gdb.value("c->total"), gdb.value("g_value"),
              gdb.value("amount"), gdb.value("$xmm0.uint128"))
    gdb.cmd("next")
    gdb.cmd("next")
    assert gdb.value("c->hits") == str(int(before[1]) + 1)
    assert gdb.value("c->total") == str(int(before[2]) + 30)
    # gcc splits lines 32 and 33 into two line-table rows each, and going backwards
    # gdb stops at the start of a row: the breakpoint's pc is reached within four.
    for _ in range(4):
        gdb.cmd("reverse-next")
        if gdb.registers()["rip"] == before[0]["rip"]:
            break
    assert gdb.where() == ("record_hit", line_of(source, "// write: hits"))
    after = (gdb.registers(), gdb.value("c->hits"), gdb.value("c->total"), gdb.value("g_value"),
             gdb.value("amount"), gdb.value("$xmm0.uint128"))
    assert after == before
    gdb.cmd("delete")
    gdb.cmd("finish")
    assert gdb.where()[0] == "step"
    gdb.cmd("reverse-finish")  # back to the call of step(counter, 3) in main
    assert gdb.where()[0] == "main"
    for _ in range(3):  # back over the loop header, into the end of step(counter, 2)
        gdb.cmd("reverse-step")
        if gdb.where()[0] != "main":
            break
    assert gdb.where()[0] in ("step", "add_to_global")
    assert gdb.value("g_value") == "102"  # add_to_global(2) has run, add_to_global(4) not


def test_reverse_watch_finds_the_write_that_corrupted_a_heap_field(trace_root, debug, tmp_path):
    source = EXAMPLES / "buggy.c"
    binary = tmp_path / "buggy"
    subprocess.run(["gcc", "-g", "-O0", "-o", str(binary), str(source)], check=True)
    gdb = debug(recorded(binary, trace_root))
    detect = line_of(source, "printf(\"audit:")
    gdb.cmd(f"break {detect}")
    gdb.cmd("continue")
    assert gdb.where()[1] == detect
    assert gdb.value("acct->balance") == "28257"
    gdb.cmd("watch -l acct->balance")
    out = gdb.cmd("reverse-continue")
    assert "Old value = 28257" in out and "New value = 865" in out
    assert gdb.where() == ("copy_name", line_of(source, "dst[i] = src[i];"))
    assert gdb.value("i") == "9"
    out = gdb.cmd("reverse-continue")  # the byte before it
    assert "Old value = 865" in out
    assert gdb.value("i") == "8"


def test_reverse_continue_across_a_signal_handler(programs, trace_root, debug):
    gdb = debug(recorded(programs.signals, trace_root))
    gdb.cmd("handle SIGSEGV SIGFPE SIGALRM SIGUSR1 nostop noprint pass")
    gdb.cmd("break on_fault")
    gdb.cmd("break on_alarm")
    seen = []
    for _ in range(5):
        gdb.cmd("continue")
        seen.append(hit(gdb))
    assert [f for f, _ in seen] == ["on_fault"] * 4 + ["on_alarm"]  # 3 SIGSEGV, 1 SIGFPE
    gdb.cmd("reverse-continue")
    assert hit(gdb) == seen[3]
    gdb.cmd("reverse-continue")
    assert hit(gdb) == seen[2]
    gdb.cmd("continue")
    gdb.cmd("continue")
    assert hit(gdb) == seen[4]


def test_reverse_roll_goes_back_exactly_n_instructions(programs, trace_root, debug):
    """roll.c runs a 4-instruction loop (nop; nop; dec rcx; jnz) 30000 times: from the
    loop's end, N instructions back is a place known from rcx and the pc."""
    gdb = debug(recorded(programs.roll, trace_root))
    gdb.cmd("break *after_loop")
    gdb.cmd("continue")
    assert gdb.value("$rcx") == "0"
    head = int(gdb.value("(long)loop_head"))
    gdb.cmd("reverse-roll 100000")
    assert (gdb.value("$rcx"), int(gdb.value("(long)$pc"))) == ("25000", head)
    gdb.cmd("reverse-roll 1000")
    assert (gdb.value("$rcx"), int(gdb.value("(long)$pc"))) == ("25250", head)
    # reverse-roll N is N reverse-stepi, in one seek
    for n in (1, 7):
        start = gdb.registers()
        for _ in range(n):
            gdb.cmd("reverse-stepi")
        stepped = gdb.registers()
        for _ in range(n):
            gdb.cmd("stepi")
        assert gdb.registers() == start
        gdb.cmd(f"reverse-roll {n}")
        assert gdb.registers() == stepped
    # and forwards again from there is the same execution
    gdb.cmd("stepi 1000")
    assert gdb.value("$rcx") == str(25252 - 250)


def test_reverse_from_the_end_of_the_recording(programs, trace_root, debug):
    gdb = debug(recorded(programs.watch, trace_root))
    out = gdb.cmd("continue")
    assert "No more reverse-execution history" in out
    assert "_exit" in gdb.cmd("bt")
    gdb.cmd("break add_to_global")
    gdb.cmd("reverse-continue")
    assert hit(gdb) == ("add_to_global", "4")
    gdb.cmd("delete")
    assert "No more reverse-execution history" in gdb.cmd("reverse-continue")
    assert gdb.value("g_value") == "1"


def test_monitor_when_and_named_checkpoints(programs, trace_root, debug):
    gdb = debug(recorded(programs.watch, trace_root))
    gdb.cmd("break add_to_global")
    gdb.cmd("continue")
    here = gdb.cmd("when")
    assert re.search(r"event \d+", here)
    gdb.cmd("monitor checkpoint first")
    assert "first: event" in gdb.cmd("monitor info checkpoints")
    gdb.cmd("continue")
    assert hit(gdb) == ("add_to_global", "4")
    gdb.cmd("monitor restart first")
    gdb.cmd("maintenance flush register-cache")
    gdb.cmd("maintenance flush dcache")
    assert gdb.value("delta") == "2"
    assert gdb.cmd("when") == here
