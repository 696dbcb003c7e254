"""The command line: record, replay, ls, ps, dump.

Every error a user can cause ends in one line on stderr and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrograde.trace.format import TraceReader
    from retrograde.trace.recorder import Recorder
    from retrograde.trace.tasks import Debuggee

EXIT_USAGE = 2


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 1 or ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def trace_root() -> Path:
    root = os.environ.get("RETROGRADE_DIR")
    return Path(root) if root else Path.home() / ".local" / "share" / "retrograde"


def new_trace_dir(root: Path, prog: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    base = Path(prog).name or "trace"
    n = 0
    while True:
        candidate = root / f"{base}-{n}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1


def resolve_trace(name: str | None) -> Path:
    """A trace named on the command line: a path, a name under the trace root, or latest."""
    root = trace_root()
    if name is None:
        latest = root / "latest-trace"
        if not latest.exists():
            raise UserError(f"no trace to use: {latest} does not exist (record one first)")
        return latest.resolve()
    for candidate in (Path(name), root / name):
        if candidate.is_dir():
            return candidate.resolve()
    raise UserError(f"no such trace: {name} (looked in . and {root})")


def cmd_record(args: argparse.Namespace) -> int:
    from retrograde.trace.recorder import Recorder
    from retrograde.tracee.sysbuf import SysbufError

    if not args.command:
        raise UserError("nothing to record: give a program, e.g. retrograde record ./prog",
                        EXIT_USAGE)
    prog = args.command[0]
    path = prog if "/" in prog else shutil.which(prog)
    if path is None or not os.path.exists(path):
        raise UserError(f"cannot record {prog}: no such program", 127)
    if os.path.isdir(path):
        raise UserError(f"cannot record {prog}: it is a directory", 126)
    allowed = sorted(os.sched_getaffinity(0))
    if args.bind_to_cpu is not None and args.bind_to_cpu not in allowed:
        raise UserError(f"cannot bind the recording to CPU {args.bind_to_cpu}: this process "
                        f"may run on CPUs {_cpu_list(allowed)} only", EXIT_USAGE)
    if not os.access(path, os.X_OK):
        raise UserError(f"cannot record {prog}: not executable", 126)
    made_dir = True
    if args.output:
        trace_dir = Path(args.output)
        if trace_dir.exists() or trace_dir.is_symlink():
            if not trace_dir.is_dir() or any(trace_dir.iterdir()):
                raise UserError(f"cannot record into {trace_dir}: it exists and is not an "
                                "empty directory")
            made_dir = False
        previous_latest = None
    else:
        trace_dir = new_trace_dir(trace_root(), prog)
        previous_latest = _latest_target(trace_dir.parent)
        _point_latest_at(trace_dir, trace_dir.name)
    # Before the signals change below: the program starts with what we were given.
    try:
        recorder = Recorder([path, *args.command[1:]], trace_dir, strict=args.strict,
                            bound_cpu=args.bind_to_cpu, syscall_buffer=args.syscall_buffer)
    except SysbufError as error:
        raise UserError(str(error)) from error
    try:
        return _record(recorder, prog, trace_dir)
    finally:
        # A program that never started (exec failed, interrupted at once) leaves no
        # trace behind, and latest-trace goes back to what it named.
        writer = getattr(recorder, "writer", None)
        if writer is None or writer.event_count == 0:
            _discard(trace_dir, keep_directory=not made_dir)
            # Unless another recording has taken the link since.
            if not args.output and _latest_target(trace_dir.parent) == trace_dir.name:
                _point_latest_at(trace_dir, previous_latest)


# Signals whose default action ends a process, but SIGTERM (it ends a recording
# with a valid trace), the uncatchable SIGKILL, and the faults a process raises
# itself (SIGSEGV and friends), which must not be ignored.
GROUP_SIGNALS = [signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGABRT, signal.SIGUSR1,
                 signal.SIGUSR2, signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO,
                 signal.SIGPWR, signal.SIGSTKFLT, signal.SIGXCPU,
                 *range(signal.SIGRTMIN, signal.SIGRTMAX + 1)]


def _cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(str(n) for n in cpus)


def _record(recorder: Recorder, prog: str, trace_dir: Path) -> int:
    # Ctrl-C and Ctrl-\ reach the program (same process group) and are recorded as
    # its signals; the recorder stays to write them down. SIGTERM ends the recording
    # with a valid trace.
    # A program may signal its whole process group (kill(0, SIGABRT)), which holds
    # the recorder too: the signals that would end the recorder by default are
    # ignored while it records (the program starts with its own dispositions).
    old = {signo: signal.signal(signo, signal.SIG_IGN) for signo in GROUP_SIGNALS}
    old[signal.SIGTERM] = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = recorder.run()
    finally:
        for signo, handler in old.items():
            signal.signal(signo, handler)
    if result.error:
        where = f" (trace up to there in {trace_dir})" if result.events else ""
        print(f"retrograde: {result.error}{where}", file=sys.stderr)
        return 1
    if result.exit_signal is not None:
        from retrograde.trace.dump import signal_name

        name = signal_name(result.exit_signal)
        print(f"retrograde: {Path(prog).name} terminated by signal {name}; "
              f"trace in {trace_dir}", file=sys.stderr)
        return 128 + result.exit_signal
    print(f"retrograde: trace in {trace_dir}", file=sys.stderr)
    return result.exit_status or 0


def _latest_target(root: Path) -> str | None:
    try:
        return os.readlink(root / "latest-trace")
    except OSError:
        return None


def _point_latest_at(trace_dir: Path, target: str | None) -> None:
    """Make the latest-trace link name `target` (None: no link), atomically: a rename,
    never a moment without a link."""
    link = trace_dir.parent / "latest-trace"
    if target is None:
        link.unlink(missing_ok=True)
        return
    tmp = link.with_name(f".latest-trace.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


class Terminated(SystemExit):
    """A signal asked us to end: raised by the handler, it unwinds like Ctrl-C
    (every tracee and checkpoint is reaped on the way), then main says so in one line."""

    def __init__(self, signo: int) -> None:
        super().__init__(128 + signo)
        self.signo = signo


def _discard(trace_dir: Path, *, keep_directory: bool) -> None:
    """Remove what a recording that never started wrote, and its directory unless
    the user gave it (empty, as it was)."""
    if not keep_directory:
        shutil.rmtree(trace_dir, ignore_errors=True)
        return
    for entry in trace_dir.iterdir() if trace_dir.is_dir() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _terminate(signo: int, frame: object) -> None:
    raise Terminated(signo)


def cmd_ls(args: argparse.Namespace) -> int:
    from retrograde.trace.format import trace_directories

    root = trace_root()
    rows, broken = [], []
    for d in trace_directories(root):
        try:
            rows.append((d.name, *_listing(d)))
        except _Broken as error:
            rows.append((d.name, "", "", "", "", "broken"))
            broken.append(f"retrograde: {d.name} is broken: {error}")
    if not rows:
        print(f"no traces in {root}")
        return 0
    header = ("NAME", "COMMAND", "DATE", "EVENTS", "SIZE", "EXIT")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(col.ljust(w) for col, w in zip(row, widths)).rstrip())
    sys.stdout.flush()
    for line in broken:
        print(line, file=sys.stderr)
    return 1 if broken else 0


class _Broken(Exception):
    """Why `ls` cannot vouch for a trace (one line)."""


def _listing(directory: Path) -> tuple[str, str, str, str, str]:
    """COMMAND, DATE, EVENTS, SIZE and EXIT of a trace, each checked against the
    events: the command is the first exec's, the exit the last event's, and the
    metadata must agree with them. _Broken if anything does not hold."""
    from retrograde.trace.dump import signal_name
    from retrograde.trace.events import ExecEvent, ExitEvent
    from retrograde.trace.format import TraceError, TraceReader

    try:
        with TraceReader(directory) as reader:
            reader.check()
            meta = reader.metadata
            count = len(reader)
            first = reader[0] if count else None
            last = reader[count - 1] if count else None
            size = reader.size_bytes()
            complete = reader.complete
    except TraceError as error:
        raise _Broken(str(error).removeprefix("trace ")) from None
    start = meta.get("start_time", 0)
    if not isinstance(start, (int, float)) or isinstance(start, bool) or not 0 <= start < 1 << 40:
        raise _Broken(f"metadata.json has a start_time of {start!r}")
    command = " ".join(first.argv) if isinstance(first, ExecEvent) else ""
    if not complete:
        status = "incomplete"
    elif meta.get("error"):
        status = "error"
    elif isinstance(last, ExitEvent):
        if last.signo is not None:
            status, agrees = signal_name(last.signo), meta.get("exit_signal") == last.signo
        else:
            status = str(last.status)
            agrees = meta.get("exit_signal") is None and meta.get("exit_status") == last.status
        if not agrees:
            raise _Broken(f"metadata.json and the last event ({count - 1}: {status}) disagree "
                          "on how the program ended")
    else:
        raise _Broken(f"the recording ended without an error, but its last event ({count - 1}) "
                      "is not the program's exit")
    date = time.strftime("%Y-%m-%d %H:%M", time.localtime(start))
    # A long command keeps its end, where the program's name and last arguments are.
    shown = command if len(command) <= 40 else "…" + command[-39:]
    return shown, date, str(count), _size(size), status


def _size(n: int) -> str:
    size: float = n
    for unit in ("B", "K", "M", "G"):
        if size < 1024:
            return f"{size:.0f}{unit}"
        size /= 1024
    return f"{size:.0f}T"


def cmd_dump(args: argparse.Namespace) -> int:
    from retrograde.trace.dump import RecordedMemory, format_event, parse_range
    from retrograde.trace.format import TraceReader

    path = resolve_trace(args.trace)
    with TraceReader(path) as reader:
        try:
            start, stop = parse_range(args.range) if args.range else (0, None)
        except ValueError as error:
            raise UserError(f"bad event range {args.range!r}: {error}", EXIT_USAGE) from None
        if start < 0:
            start = max(0, len(reader) + start)
        # The memory the trace knows at an event depends on every mapping before it.
        memory = RecordedMemory(reader.read_file)
        for n, event in enumerate(reader.events(0, stop)):
            if n >= start:
                print(format_event(n, event, memory=memory))
            memory.follow(event)
        if not reader.complete:
            print(f"(trace incomplete: the recorder did not finish; {len(reader)} events readable)")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from retrograde.trace.pack import pack_trace

    path = resolve_trace(args.trace)
    result = pack_trace(path)
    copied = len(result.links_replaced) + len(result.links_broken)
    removed = (f", {len(result.temporaries_removed)} temporary files removed"
               if result.temporaries_removed else "")
    print(f"retrograde: packed {path}: {copied} links made copies of their own{removed}; "
          f"{result.copies} files, all checked", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from retrograde.replay.session import replay_autopilot

    path = resolve_trace(args.trace)
    # SIGTERM unwinds like Ctrl-C, so every replay and checkpoint process is reaped.
    signal.signal(signal.SIGTERM, _terminate)
    if args.autopilot:
        if args.process is not None:
            raise UserError("replay -a replays every process; -p chooses the one to debug",
                            EXIT_USAGE)
        return replay_autopilot(path, echo=not args.no_echo, verbose=args.verbose,
                                check_maps=args.check_maps)
    return serve_replay(path, args)


def _debuggee(reader: TraceReader, choice: str | None) -> Debuggee:
    """The process ``replay -p`` chose (None: the first), and where its debugging starts."""
    from retrograde.trace.tasks import NoSuchProcess, debuggee_of, process_tree

    try:
        return debuggee_of(process_tree(reader.events()), choice)
    except NoSuchProcess as error:
        raise UserError(str(error)) from None


def cmd_ps(args: argparse.Namespace) -> int:
    """The processes of a trace: pid, parent, exit status and command, in creation order."""
    from retrograde.trace.dump import signal_name
    from retrograde.trace.format import TraceReader
    from retrograde.trace.tasks import process_tree

    path = resolve_trace(args.trace)
    with TraceReader(path) as reader:
        processes = process_tree(reader.events())
    rows = [("PID", "PPID", "EXIT", "CMD")]
    for p in processes:
        if p.exit_signal is not None:
            status = signal_name(p.exit_signal)
        elif p.exit_status is not None:
            status = str(p.exit_status)
        else:
            status = "-"
        # One line per process: a newline inside an argument is shown as \n.
        rows.append((str(p.pid), str(p.parent), status,
                     " ".join(p.argv).replace("\n", "\\n")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(col.ljust(w) for col, w in zip(row[:3], widths)) + "  " + row[3])
    return 0


GDB_COMMANDS = Path(__file__).with_name("retrograde.gdb")


def serve_replay(path: Path, args: argparse.Namespace) -> int:
    """Serve the trace to gdb: only serve (-s PORT), or start gdb on it like `rr replay`."""
    import subprocess
    import threading

    from retrograde.gdbstub import ServerError, serve
    from retrograde.gdbstub.replay_target import ReplayTarget
    from retrograde.replay.session import Divergence
    from retrograde.replay.timeline import Timeline
    from retrograde.trace.format import TraceReader

    if not _is_loopback(args.host):
        print(f"retrograde: warning: serving on {args.host}: anyone who can reach the port "
              "can read the recorded program's memory and files", file=sys.stderr)
    debugger = args.debugger or shutil.which("gdb")
    if args.server_port is None and not debugger:
        raise UserError("no gdb to start: install gdb, or serve with -s PORT")
    with TraceReader(path) as reader:
        debuggee = _debuggee(reader, args.process)
        try:
            timeline = Timeline(reader, echo=not args.no_echo, debuggee=debuggee)
        except Divergence as error:
            raise UserError(str(error), 2) from None
        with timeline:
            target = ReplayTarget(timeline)
            gdb: list[subprocess.Popen] = []

            def listening(host: str, port: int) -> None:
                # Without -s PORT there is always a debugger (checked above).
                if args.server_port is not None or not debugger:
                    # For a debugger we do not start: how to give gdb our commands.
                    print(f"listening on {host}:{port}\n"
                          f"in gdb: source {GDB_COMMANDS}\n"
                          f"        target remote {host}:{port}", flush=True)
                    return
                argv = [debugger, "-q", "-x", str(GDB_COMMANDS),
                        "-ex", f"target remote {host}:{port}"]
                for command_file in args.x or []:
                    argv += ["-x", command_file]
                gdb.append(subprocess.Popen(argv + list(args.gdb_args)))
                threading.Thread(target=_end_server_with, args=(gdb[0], host, port),
                                 daemon=True).start()

            port = args.server_port if args.server_port is not None else 0
            try:
                serve(target, args.host, port, reverse=True, on_listening=listening)
            except ServerError as error:
                raise UserError(str(error)) from None
            except Divergence as error:
                raise UserError(str(error), 2) from None
            finally:
                for process in gdb:
                    if process.poll() is None:
                        process.terminate()
                    process.wait()
    return 0


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _end_server_with(gdb_process, host: str, port: int) -> None:
    """When our gdb goes away without killing the target, end the server ourselves."""
    import socket

    gdb_process.wait()
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(b"$k#6b")
            conn.recv(16)
    except OSError:
        pass


def cmd_history(args: argparse.Namespace) -> int:
    """A value's history without an interactive session: a server on a free port
    and gdb in batch mode running the command file's `history`."""
    import json
    import subprocess
    import tempfile
    import threading

    path = resolve_trace(args.trace)
    gdb_path = shutil.which("gdb")
    if gdb_path is None:
        raise UserError("retrograde history needs gdb: install it (apt-get install gdb)")

    # The server's stderr goes to a file, not a pipe: a long walk's progress lines
    # would fill a pipe nobody reads and stop the server mid-write. Its stdout
    # (one line, then nothing) is drained by a thread for the same reason.
    with tempfile.TemporaryFile(mode="w+") as errors:
        server = subprocess.Popen([sys.executable, "-m", "retrograde", "replay", "-s", "0",
                                   "--no-echo", str(path)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            assert server.stdout is not None
            first = server.stdout.readline()
            if not first.startswith("listening on "):
                server.wait()
                errors.seek(0)
                error = errors.read().strip().splitlines()
                raise UserError((error[-1] if error else f"cannot replay {path}")
                                .removeprefix("retrograde: "))
            threading.Thread(target=server.stdout.read, daemon=True).start()
            address = first.split()[-1]
            to_start = (["-ex", f"break {args.at}", "-ex", "continue", "-ex", "delete"]
                        if args.at else ["-ex", "continue"])  # no breakpoint: to the end
            limit = f" {args.limit}" if args.limit else ""
            gdb = subprocess.run(
                [gdb_path, "-batch", "-nx", "-x", str(GDB_COMMANDS),
                 "-ex", f"target remote {address}", *to_start,
                 "-ex", f"history --json {args.expression}{limit}"],
                check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        finally:
            if server.poll() is None:
                server.terminate()
            server.wait()
    lists = [line for line in gdb.stdout.splitlines() if line.startswith("[{") or line == "[]"]
    if not lists:
        why = (gdb.stderr.strip().splitlines() or ["gdb gave no history"])[-1]
        raise UserError(f"no history of {args.expression}: {why}")
    changes = json.loads(lists[-1])
    if args.json:
        print(json.dumps(changes, indent=1))
    else:
        for n, change in enumerate(changes, 1):
            print(f"#{n}  {change['position']}  {change['location']}  "
                  f"{change['old']} -> {change['new']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrograde",
                                     description="record and replay Linux programs, "
                                                 "then debug them forwards and backwards")
    from retrograde import __version__

    parser.add_argument("--version", action="version", version=f"retrograde {__version__}")
    sub = parser.add_subparsers(dest="subcommand", required=True)
    p = sub.add_parser("record", help="run a program and record it")
    p.add_argument("-o", "--output", help="trace directory (default: a new one under "
                                          "$RETROGRADE_DIR or ~/.local/share/retrograde)")
    p.add_argument("--strict", action="store_true",
                   help="stop at a syscall retrograde cannot record, instead of answering "
                        "it ENOSYS with a warning")
    p.add_argument("--bind-to-cpu", type=int, metavar="CPU",
                   help="the one CPU the program runs on, and replay with it (default: the "
                        "highest-numbered CPU this process may use)")
    p.add_argument("--syscall-buffer", action=argparse.BooleanOptionalAction, default=None,
                   help="make the common syscalls (read, fstat, clock_gettime, ...) in the "
                        "program through a preloaded library, without a ptrace stop each "
                        "(default: off, or $RETROGRADE_SYSCALL_BUFFER=1)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="PROG [ARGS...]")
    p.set_defaults(func=cmd_record)
    p = sub.add_parser(
        "replay", help="replay a trace",
        usage="%(prog)s [options] [TRACE] [-- GDB-ARGS...]",
        description="Replay TRACE (default: latest-trace): start gdb on it, only serve it "
                    "(-s PORT), or run it to the end (-a). gdb debugs one process of a "
                    "process tree (-p).",
        epilog="Everything after -- goes to gdb, e.g. "
               "retrograde replay -- -ex 'break main' -ex continue")
    p.add_argument("-a", "--autopilot", action="store_true", help="replay to the end, no debugger")
    p.add_argument("-p", "--process", metavar="PID|COMMAND",
                   help="debug that process (default: the first; `retrograde ps` lists them): "
                        "from its creation for a PID, from its exec for a COMMAND (the first "
                        "process that ran it); the others are replayed alongside")
    p.add_argument("--no-echo", action="store_true", help="do not echo the program's output")
    p.add_argument("--check-maps", action="store_true",
                   help="compare the address-space model with /proc/PID/maps after each change")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-s", "--server", dest="server_port", type=int, metavar="PORT",
                   help="only serve the GDB remote protocol on PORT (0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("-x", action="append", metavar="FILE", help="a gdb command file to run")
    p.add_argument("--debugger", metavar="PATH", help="the gdb to start (default: gdb on PATH)")
    p.add_argument("trace", nargs="?", help="the trace (default: latest-trace); "
                                              "after --: more arguments for gdb")
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("history", help="the changes of a value, newest first (through gdb)")
    p.add_argument("words", nargs="+", metavar="[TRACE] EXPR")
    p.add_argument("--at", metavar="LOCATION",
                   help="look back from the first stop at this gdb location (default: the end)")
    p.add_argument("--limit", type=int, metavar="N", help="only the last N changes")
    p.add_argument("--json", action="store_true", help="print the changes as JSON")
    p.set_defaults(func=cmd_history)
    p = sub.add_parser("ls", help="list recorded traces")
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("pack", help="make a trace self-contained, to move or copy it",
                       description="Replace every link out of TRACE (default: latest-trace) "
                                   "by a checked copy of its own, so that the directory can "
                                   "be moved and replayed after the originals are gone.")
    p.add_argument("trace", nargs="?")
    p.set_defaults(func=cmd_pack)
    p = sub.add_parser("ps", help="list the processes of a trace",
                       description="PID, parent PID, exit status and command of every "
                                   "process TRACE (default: latest-trace) recorded.")
    p.add_argument("trace", nargs="?")
    p.set_defaults(func=cmd_ps)
    p = sub.add_parser("dump", help="print a trace's events")
    p.add_argument("trace", nargs="?")
    p.add_argument("range", nargs="?", help="N, N-M, N- or -K (the last K)")
    p.set_defaults(func=cmd_dump)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    gdb_args: list[str] = []
    if argv[:1] == ["replay"] and "--" in argv:
        cut = argv.index("--")
        argv, gdb_args = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    args.gdb_args = gdb_args
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    from retrograde.trace.format import TraceError

    if args.subcommand == "history":
        # TRACE is optional before EXPR: a first word that names a trace is one.
        first = args.words[0]
        names_trace = len(args.words) > 1 and (Path(first).is_dir()
                                               or (trace_root() / first).is_dir())
        args.trace = first if names_trace else None
        args.expression = " ".join(args.words[1:] if names_trace else args.words)
    try:
        return args.func(args)
    except UserError as error:
        print(f"retrograde: {error}", file=sys.stderr)
        return error.status
    except TraceError as error:
        print(f"retrograde: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("retrograde: interrupted", file=sys.stderr)
        return 130
    except Terminated as ended:
        print(f"retrograde: ended by {signal.Signals(ended.signo).name}", file=sys.stderr)
        return 128 + ended.signo
    except BrokenPipeError:  # `retrograde dump | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # a bug of ours: still one line, unless asked for the trace
        if os.environ.get("RETROGRADE_DEBUG"):
            raise
        print(f"retrograde: internal error: {type(error).__name__}: {error} "
              "(run with RETROGRADE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 70
