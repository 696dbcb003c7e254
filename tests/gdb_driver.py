"""Real gdb against a real replay server: the pieces tests use to debug a recorded
program through gdb's own commands.

`ReplayServer` is `retrograde replay -s 0 TRACE` in a process of its own (and its
own session, so that every replay and checkpoint process it makes can be found
and checked gone when it ends). `GdbSession` is gdb 13 driven through its MI,
with the shipped command file loaded, connected to a server; its waits end as
soon as the answer is in, so a test pays for the replay, not for sleeps.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pygdbmi.gdbcontroller import GdbController
from runner import RETROGRADE

import retrograde

GDB = shutil.which("gdb")
GDB_COMMANDS = Path(retrograde.__file__).with_name("retrograde.gdb")
PROGRAMS_DIR = Path(__file__).parent / "programs"


def source_line(program: str, text: str) -> int:
    """The one line of tests/programs/PROGRAM.c that contains ``text``: a marker
    comment ("// write: total") or a statement, never a hard-coded number."""
    lines = (PROGRAMS_DIR / f"{program}.c").read_text().splitlines()
    found = [n for n, line in enumerate(lines, 1) if text in line]
    assert len(found) == 1, f"{program}.c has {len(found)} lines with {text!r}"
    return found[0]


def session_processes(sid: int) -> list[str]:
    """Live (non-zombie) processes of session ``sid``: a server started in a session
    of its own, its replay processes and their checkpoints, whoever their parent is now."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                comm, fields = f.read().split(" (", 1)[1].rsplit(")", 1)
        except OSError:
            continue
        state, _ppid, _pgrp, session = fields.split()[:4]
        if int(session) == sid and state != "Z":
            found.append(f"{entry} ({comm})")
    return found


def outliving(sid: int, timeout: float = 5) -> list[str]:
    """The processes of session ``sid`` still alive after ``timeout``, killed then.

    For after its leader ended: replay processes die with their tracer
    (PTRACE_O_EXITKILL), but a moment later."""
    deadline = time.monotonic() + timeout
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    for line in left:
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


class ReplayServer:
    """``retrograde replay -s 0 [OPTIONS] TRACE``, started and listening.

    Its first lines of output name the port and tell how to connect gdb with
    retrograde's commands (``gdb_commands``: the two lines to type in gdb);
    the rest (the replayed program's own output) is kept in ``output``.
    ``close`` ends it (SIGTERM unwinds the replay like Ctrl-C) unless a client
    killed it already, and fails if any process of its session outlives it.
    """

    HEADER_LINES = 3  # listening on HOST:PORT / in gdb: source FILE / target remote HOST:PORT

    def __init__(self, trace: Path, *options: str, timeout: float = 30) -> None:
        self.process = subprocess.Popen(
            [*RETROGRADE, "replay", "-s", "0", *options, str(trace)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._output: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        header = []
        try:
            while len(header) < self.HEADER_LINES and (line := self._lines.get(timeout=timeout)):
                header.append(line)
        except queue.Empty:
            pass
        match = re.fullmatch(r"listening on (\S+):(\d+)\n"
                             r"in gdb: (source \S.*)\n"
                             r" +(target remote \S+)\n", "".join(header))
        if match is None:
            self.close()
            raise RuntimeError(f"the server did not start: {header!r}, stderr {self.stderr!r}")
        self.host, self.port = match[1], int(match[2])
        self.gdb_commands = [match[3], match[4]]

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for n, line in enumerate(self.process.stdout):
            if n < self.HEADER_LINES:
                self._lines.put(line)
            else:
                self._output.append(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def output(self) -> str:
        """What the replayed program has written so far (the server echoes it)."""
        return "".join(self._output)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait(self, timeout: float = 10) -> int:
        return self.process.wait(timeout)

    def close(self, timeout: float = 10) -> int:
        """End the server; its exit status. Raises if a replay process outlives it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        left = outliving(self.process.pid)
        assert not left, f"replay processes outlived the server: {left}"
        return self.process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GdbError(Exception):
    """gdb answered a command with ^error; the message is gdb's."""


@dataclass(frozen=True)
class Stopped:
    """How a command that resumed the program ended: the MI ``*stopped`` record,
    the console text gdb printed on the way ("Old value = ...") and its log
    stream (where `set debug remote 1` shows the packets)."""

    record: dict[str, Any]
    console: str = ""
    log: str = ""

    @property
    def reason(self) -> str:
        """The MI reason. gdb 13 leaves it out of the ``*stopped`` record when
        the target ran out of history (sourceware bug 29260, fixed in gdb 14):
        then it is "no-history" if gdb said so on the console."""
        if "reason" in self.record:
            return self.record["reason"]
        return "no-history" if "No more reverse-execution history." in self.console else ""

    @property
    def frame(self) -> dict[str, Any]:
        return self.record.get("frame", {})

    @property
    def line(self) -> int | None:
        line = self.frame.get("line")
        return int(line) if line is not None else None


@dataclass
class _Answer:
    records: list[dict[str, Any]] = field(default_factory=list)

    def result(self, token: int) -> dict[str, Any] | None:
        return next((r for r in self.records
                     if r["type"] == "result" and r["token"] == token), None)  # fmt: skip

    def stopped(self) -> dict[str, Any] | None:
        return next((r["payload"] for r in self.records
                     if r["type"] == "notify" and r["message"] == "stopped"), None)  # fmt: skip

    def text(self, *streams: str) -> str:
        return "".join(r["payload"] for r in self.records
                       if r["type"] in streams and r["payload"])  # fmt: skip

    def console(self) -> str:
        return self.text("console", "target")


def _mi_string(text: str) -> str:
    """``text`` as an MI c-string parameter."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class GdbSession:
    """gdb 13 on the MI, with retrograde's command file loaded (``commands=None``:
    without it, as a gdb the user started).

    ``cmd`` runs a CLI command and returns what it printed; ``stop`` runs one
    that resumes the program and returns how it stopped; ``value`` is the value
    of an expression as gdb prints it. A command gdb rejects raises GdbError.
    Commands that resume wait for the ``*stopped`` record, so the next command
    sees the program where it stopped.
    """

    def __init__(self, timeout: float = 20, *, commands: Path | None = GDB_COMMANDS) -> None:
        assert GDB is not None, "needs gdb"
        self.timeout = timeout
        command_file = ["-x", str(commands)] if commands is not None else []
        self.controller = GdbController(
            command=[GDB, "--interpreter=mi3", "-q", "-nx", *command_file],
            time_to_check_for_additional_output_sec=0.05,
        )
        self._token = 100
        self._unread: list[dict[str, Any]] = []  # read while the program ran, for the next answer
        self.mi("-gdb-set confirm off")
        self.mi("-gdb-set pagination off")
        self.mi("-gdb-set width 0")
        # Or gdb reads no command (-exec-interrupt) while the program runs.
        self.mi("-gdb-set mi-async on")

    # -- the MI conversation ----------------------------------------------------------------------
    def _send(
        self, command: str, *, until_stopped: bool | None = None, timeout: float | None = None
    ) -> _Answer:
        """Send an MI command; its records up to its result and, when it resumed
        the program (``^running``) or ``until_stopped``, up to the ``*stopped``."""
        self._token += 1
        token = self._token
        self.controller.write(f"{token}{command}", read_response=False)
        answer = self._answer()
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            self._read(answer)
            result = answer.result(token)
            if any(r["type"] == "log" and "Remote connection closed" in r["payload"]
                   for r in answer.records):  # fmt: skip
                raise GdbError(answer.text("log", "console", "target"))  # the server is gone
            if result is None:
                continue
            if result["message"] == "error":
                # The log stream holds the warnings that explain some errors
                # ("Remote failure reply: ...").
                text = answer.text("log", "console", "target")
                raise GdbError(text + result["payload"].get("msg", ""))
            wait = until_stopped if until_stopped is not None else result["message"] == "running"
            if not wait or answer.stopped() is not None:
                return answer
        raise TimeoutError(f"gdb did not finish {command!r} in time: {answer.records}")

    def _answer(self) -> _Answer:
        """A new answer, with the records read ahead of it."""
        answer = _Answer(self._unread)
        self._unread = []
        return answer

    def _read(self, answer: _Answer) -> None:
        answer.records += self.controller.get_gdb_response(
            timeout_sec=0.05, raise_error_on_timeout=False
        )

    def mi(self, command: str, *, timeout: float | None = None) -> dict[str, Any]:
        """An MI command's result payload."""
        answer = self._send(command, timeout=timeout)
        result = answer.result(self._token)
        assert result is not None
        return result["payload"] or {}

    def cmd(self, command: str, *, timeout: float | None = None) -> str:
        """A CLI command's output (console and target streams)."""
        return self._send(
            f"-interpreter-exec console {_mi_string(command)}", timeout=timeout
        ).console()

    def script(self, command: str, *, timeout: float | None = None) -> str:
        """A CLI command that resumes the program many times on its own (a Python
        command of the command file): its output once it is done. MI answers
        such a command with ^running alone, so a second command, answered only
        after the first ends, marks its end."""
        answer = self._send(f"-interpreter-exec console {_mi_string(command)}",
                            until_stopped=False, timeout=timeout)
        marker = self._send("-data-evaluate-expression 1", until_stopped=False, timeout=timeout)
        return answer.console() + marker.console()

    def stop(self, command: str, *, timeout: float | None = None) -> Stopped:
        """Run a CLI (or ``-exec-...`` MI) command that resumes the program; how it stopped."""
        if not command.startswith("-"):
            command = f"-interpreter-exec console {_mi_string(command)}"
        answer = self._send(command, until_stopped=True, timeout=timeout)
        stopped = answer.stopped()
        assert stopped is not None
        return Stopped(stopped, answer.console(), answer.text("log"))

    def start(self, command: str) -> None:
        """Resume the program and return at once (``^running``): for an interrupt
        (`stop("-exec-interrupt")`) or a wait (`printed`, `stopped`) to follow."""
        self._send(command, until_stopped=False)

    def printed(self, text: str, *, timeout: float | None = None) -> str:
        """After `start`, while the program runs: wait until gdb prints a line with
        ``text`` (console or target stream: the server's `O` packets); that line.
        Fails if the program stops first. What was read stays for the next answer."""
        answer = self._answer()
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while time.monotonic() < deadline:
                self._read(answer)
                for record in answer.records:
                    if record["type"] == "notify" and record["message"] == "stopped":
                        raise AssertionError(f"the program stopped before gdb printed {text!r}: "
                                             f"{answer.console()!r}")
                    if record["type"] in ("console", "target") and text in (record["payload"]
                                                                            or ""):
                        return record["payload"]
        finally:
            self._unread = answer.records
        raise TimeoutError(f"gdb did not print {text!r} in time: {answer.console()!r}")

    def stopped(self, *, timeout: float | None = None) -> Stopped:
        """After `start`: how the program stopped, once it has."""
        answer = self._answer()
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            self._read(answer)
            stopped = answer.stopped()
            if stopped is not None:
                return Stopped(stopped, answer.console(), answer.text("log"))
        self._unread = answer.records
        raise TimeoutError(f"the program did not stop in time: {answer.console()[-2000:]!r}")

    def python(self, code: str, *, timeout: float | None = None) -> list[Stopped]:
        """Run ``code`` in gdb's Python, which may resume the program many times
        (gdb.execute("reverse-continue")); how each resume stopped, in order. The
        MI answers the command with ^running at its first resume, so the end is
        a marker line the script prints."""
        marker = f"-- end of script {self._token + 1} --"
        script = f"{code}\nprint({marker!r})\n"
        self._token += 1
        self.controller.write(f"{self._token}-interpreter-exec console "
                              f"{_mi_string(f'python exec({script!r})')}", read_response=False)
        answer = self._answer()
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            self._read(answer)
            result = answer.result(self._token)
            if result is not None and result["message"] == "error":
                raise GdbError(answer.text("log", "console", "target") +
                               result["payload"].get("msg", ""))
            if marker in answer.text("console"):
                return [Stopped(r["payload"]) for r in answer.records
                        if r["type"] == "notify" and r["message"] == "stopped"]
        raise TimeoutError(f"gdb did not finish a script in time: {answer.records[-20:]}")

    def value(self, expression: str) -> str:
        """``expression``'s value as gdb prints it (-data-evaluate-expression)."""
        return self.mi(f"-data-evaluate-expression {_mi_string(expression)}")["value"]

    def pc(self) -> int:
        return int(self.value("$pc").split()[0], 16)

    # -- the target -------------------------------------------------------------------------------
    def connect(self, address: str) -> str:
        """``target remote ADDRESS``; what gdb printed (the reads of the symbol files)."""
        return self.cmd(f"target remote {address}")

    def close(self) -> None:
        self.controller.exit()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Debugging:
    """The servers and gdbs of one test, all ended with it (in reverse order).

    ``start(trace)`` is a new server on ``trace`` and a gdb connected to it,
    ``serve(trace)`` the server alone;
    ``gdb()`` one more gdb, not connected (a second client, a reconnection;
    ``commands=None``: one without retrograde's command file).
    A server's end checks that no replay process outlives it; what it wrote
    on stderr is printed then, so a failing test shows why a server ended.
    """

    def __init__(self) -> None:
        self._stack = ExitStack()

    def start(self, trace: Path, *options: str) -> tuple[GdbSession, ReplayServer]:
        server = self.serve(trace, *options)
        gdb = self.gdb()
        gdb.connect(server.address)
        return gdb, server

    def serve(self, trace: Path, *options: str) -> ReplayServer:
        """A server on ``trace``, no gdb."""
        server = self._stack.enter_context(ReplayServer(trace, *options))
        self._stack.callback(lambda: server.stderr and print(f"server stderr:\n{server.stderr}"))
        return server

    def gdb(self, *, commands: Path | None = GDB_COMMANDS) -> GdbSession:
        return self._stack.enter_context(GdbSession(commands=commands))

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def step_back_across_a_restored_signal(gdb: GdbSession) -> None:
    """From the instruction a restored signal interrupted: reverse-stepi lands on
    the syscall of the event before (the loop between them is not in the history),
    stepi crosses that syscall in one instruction and stepi again meets the signal."""
    gdb.stop("reverse-stepi")
    assert gdb.cmd("x/i $pc").split("\t")[-1].strip() == "syscall"
    before = gdb.pc()
    gdb.stop("stepi")
    assert gdb.pc() == before + 2  # one instruction: the syscall
    assert gdb.stop("stepi").record.get("signal-name") == "SIGALRM"
