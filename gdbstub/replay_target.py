"""The replay as a debug target: what gdb sees of a timeline.

gdb is shown the recorded execution: the registers and memory of the live
replay process (which are the recorded ones), the recorded auxv and
executable, and the trace's copies of the files that were mapped, so symbols
match the code that ran even when the files on disk changed or are gone.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import struct
from collections.abc import Callable
from xml.sax.saxutils import quoteattr

from retrograde.replay.timeline import (
    Arrival,
    Mark,
    SampledArrival,
    StoppedAt,
    StopReason,
    Timeline,
    Watch,
)
from retrograde.trace.events import ExecEvent, ExitEvent, SignalEvent, SyscallEvent
from retrograde.trace.format import TraceReader
from retrograde.trace.tasks import ProcessInfo, process_tree

from .agent import CannotEvaluate, Condition
from .registers import REGISTERS, is_general
from .target import MemoryRegion, Stop, Thread

WATCH_KINDS = {2: "watch", 3: "rwatch", 4: "awatch"}
DEBUG_REGISTERS = 4
# Each named checkpoint is a stopped process: a bound keeps a script that names
# checkpoints in a loop from filling the machine with them.
MAX_NAMED_CHECKPOINTS = 32
AT_PHDR, AT_PHNUM = 3, 5
PT_DYNAMIC, PT_PHDR = 2, 6
DT_NULL, DT_DEBUG = 0, 21

MONITOR_HELP = f"""\
retrograde monitor commands:
  when                     the current position: event number, then the instruction (or
                           the arrival at the pc) since it
  reverse-roll [N]         step back N instructions (default 1) in one seek
  checkpoint [NAME]        remember this position as NAME (at most {MAX_NAMED_CHECKPOINTS})
  restart NAME             go back (or forward) to checkpoint NAME
  delete checkpoint NAME   forget checkpoint NAME
  info checkpoints         list the named checkpoints and count the automatic ones
  help                     this text
"""


_MONITOR_USAGE = {
    "help": "help",
    "when": "when",
    "reverse-roll": "reverse-roll [N]",
    "checkpoint": "checkpoint [NAME]",
    "restart": "restart NAME",
    "delete": "delete checkpoint NAME",
    "info": "info checkpoints",
}
# A count of instructions: decimal, at least 1, and few enough digits to be one.
_COUNT = re.compile(r"[1-9][0-9]{0,17}")


def _instruction_count(word: str) -> int:
    if not _COUNT.fullmatch(word):
        raise ValueError(f"reverse-roll N: N is a number of instructions, 1 or more, not {word!r}")
    return int(word)


class ReplayTarget:
    """Implements gdbstub.target.DebugTarget over a Timeline: the process the
    timeline debugs (its ``debuggee``), whose threads alone gdb sees."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        reader = timeline.reader
        self.pid = self.tid = timeline.debuggee.pid
        self.execs = _image_execs(process_tree(reader), self.pid)
        self.files = self._recorded_files(reader)
        self.notes_shown = 0  # of the timeline's notes (a state restored, not reached)
        self._fatal_shown: Mark | None = None  # where gdb was told of the fatal signal reached
        # gdb's conditions by breakpoint address and Z kind (None: unconditional).
        self.conditions: dict[int, dict[int, Condition | None]] = {}
        self.evaluations = 0  # arrivals at a conditional breakpoint judged here
        self.unevaluable: set[tuple[int, Condition]] = set()  # said to be gdb's to judge
        timeline.breakpoint_holds = self._breakpoint_holds
        timeline.has_condition = self._has_condition
        self.console: Callable[[str], None] = lambda text: None
        self._on_server_console = timeline.announce
        timeline.announce = self._announce

    def _announce(self, text: str) -> None:
        """A line of the timeline's (a long search's progress, from its own thread):
        on the server's console, and on the debugger's while it waits for the move."""
        self._on_server_console(text)
        self.console(f"retrograde: {text}\n")

    @staticmethod
    def _recorded_files(reader: TraceReader) -> dict[str, str]:
        """The trace's copies by the path they were mapped from, each checked now
        (reader.file_fd) so that a damaged trace is refused before gdb connects."""
        files: dict[str, str] = {}
        for event in reader:
            records = []
            if isinstance(event, ExecEvent):
                records = event.mappings
            elif isinstance(event, SyscallEvent) and event.mapping is not None:
                records = [event.mapping]
            for m in records:
                if m.file_hash and m.name.startswith("/"):
                    reader.file_fd(m.file_hash)
                    files[m.name] = m.file_hash
        return files

    def _exec_event(self) -> ExecEvent:
        here = self.timeline.mark.event
        return [e for n, e in self.execs if n < max(here, 1)][-1]

    # -- state ------------------------------------------------------------------------------
    def threads(self) -> list[Thread]:
        return [Thread(tid, name) for tid, name in self.timeline.threads()]

    def registers(self, thread: int = 0) -> tuple[bytes, bytes]:
        registers = self.timeline.registers(thread or None)
        if registers is None and thread and self.timeline.threads():
            raise OSError(3, f"thread {thread} is not alive here")
        if registers is None:
            event = self._exec_event()
            return event.regs, event.xstate
        return registers

    def read_memory(self, addr: int, length: int) -> bytes:
        data = self.timeline.read_memory(addr, length)
        if not data and length:
            raise OSError(14, f"cannot read memory at {addr:#x}")
        return data

    # -- motion -------------------------------------------------------------------------------
    def resume(self, step: bool, reverse: bool, signal: int = 0, thread: int = 0,
               others: bool = True) -> Stop:
        # The recorded signals are delivered whatever gdb passes: history is fixed.
        # An interrupt that came before the run began is for this run (gdb's 0x03
        # can overtake it): it is cleared when the run ends, not when it starts.
        timeline = self.timeline
        try:
            if reverse and step:
                arrival = timeline.reverse_step_thread(thread) if thread else \
                    timeline.reverse_step(1)
            elif reverse:
                arrival = timeline.reverse_continue(None if others or not thread else thread)
            else:
                arrival = self._forward(step, thread or None, others or not thread)
        except KeyboardInterrupt:
            return Stop("interrupted", signo=2, thread=self._thread_here())
        finally:
            timeline.interrupted.clear()
        stop = self._stop(arrival)
        # A step is reported in the thread that stepped (the replay may stand in
        # another's interval now, at the boundary after a call); any other stop
        # in the thread it happened in.
        stepped = step and stop.reason == "step" and thread in dict(timeline.threads())
        stop = dataclasses.replace(stop, thread=thread if stepped else self._thread_here())
        notes = self._new_notes()
        return dataclasses.replace(stop, console=notes) if notes else stop

    def _thread_here(self) -> int:
        timeline = self.timeline
        return timeline.thread if timeline.threads() else self.tid

    def _new_notes(self) -> str:
        """The timeline's notes not shown yet (a recorded state restored, not reached)."""
        notes = self.timeline.notes[self.notes_shown:]
        self.notes_shown += len(notes)
        return "".join(f"retrograde: {note}\n" for note in notes)

    def _forward(self, step: bool, thread: int | None = None, others: bool = True) -> Arrival:
        """Forwards, with a program that dies of a signal shown as a native debugger
        shows it.

        The timeline ends its history at the fatal signal, before it is taken:
        gdb is told of the signal there ("Program received signal SIGSEGV"), the
        last place where the program can be looked at or reversed from. The next
        resume goes on to the recorded death ("Program terminated with signal"),
        past the timeline's stops in between (the signal taken, the process gone
        but its exit event not yet carried out), where there is nothing to show.
        A process whose death is not the end of the recording (a child of the
        tree) is shown its fatal signal as it is taken, as any other signal.
        """
        timeline = self.timeline
        shown = timeline.mark == self._fatal_shown  # the signal gdb was told of, reached
        arrival = timeline.forward(step, thread, others=others)
        while (arrival.reason == StopReason.END and self._dies_next()) or (
                arrival.reason == StopReason.SIGNAL and shown and self._dies_next()) or (
                arrival.reason == StopReason.BREAKPOINT and not self._holds_here()):
            arrival = timeline.forward(step, thread, others=others)
        fatal = self._signal_reached()
        if arrival.reason == StopReason.END and fatal is not None:
            self._fatal_shown = arrival.mark
            return Arrival(StopReason.SIGNAL, arrival.mark, signo=fatal.signo)
        return arrival

    def _holds_here(self) -> bool:
        """Whether the breakpoint the replay stopped at stops it."""
        stopped = self.timeline.stopped_at()
        return self._breakpoint_holds(stopped, stopped.pc)

    def _has_condition(self, addr: int) -> bool:
        kinds = self.conditions.get(addr, {})
        return bool(kinds) and None not in kinds.values()

    def _breakpoint_holds(self, stopped: StoppedAt | SampledArrival, addr: int) -> bool:
        """Whether an arrival (``stopped``) at breakpoint ``addr`` is a hit: it has
        no condition, or one of its conditions holds (or cannot be evaluated,
        and then gdb decides). Arrivals where none holds are not reported, in
        either direction: gdb never sees them."""
        if not self._has_condition(addr):
            return True
        self.evaluations += 1
        machine = _StoppedAt(stopped)
        failure: tuple[Condition, CannotEvaluate] | None = None
        for condition in self.conditions[addr].values():
            assert condition is not None  # _has_condition: every kind has one
            try:
                if condition.holds(machine):
                    return True
            except CannotEvaluate as error:
                failure = failure or (condition, error)
        if failure is not None:
            self._cannot_evaluate(addr, *failure)
        return failure is not None

    def _cannot_evaluate(self, addr: int, condition: Condition, error: CannotEvaluate) -> None:
        """Say, once for each condition of a place, that gdb judges it: the arrival
        is reported, and gdb evaluates the condition again itself, at every arrival
        where the server cannot (a round trip each)."""
        if (addr, condition) in self.unevaluable:
            return
        self.unevaluable.add((addr, condition))
        self._announce(f"cannot evaluate the condition at {addr:#x} in the server: {error}; "
                       "each arrival there stops for gdb to evaluate it")

    def _dies_next(self) -> bool:
        """Whether the next event is the program's end (nothing runs before it)."""
        return isinstance(self.timeline.next_event(), ExitEvent)

    def _signal_reached(self) -> SignalEvent | None:
        """The recorded signal the replay has reached and not yet taken, if any."""
        event = self.timeline.reached_event()
        return event if isinstance(event, SignalEvent) else None

    def _stop(self, arrival: Arrival) -> Stop:
        reason = arrival.reason
        if reason == StopReason.BREAKPOINT:
            return Stop("breakpoint", hw=False)
        if reason == StopReason.STEP:
            return Stop("step")
        if reason == StopReason.WATCH and arrival.watch is not None:
            return Stop("watchpoint", watch_kind=arrival.watch.kind, watch_addr=arrival.watch.addr)
        if reason == StopReason.SIGNAL:
            return Stop("signal", signo=arrival.signo)
        if reason == StopReason.END:
            return Stop("history-end")
        if reason == StopReason.HISTORY_BEGIN:
            return Stop("history-begin")
        if reason == StopReason.INTERRUPTED:
            return Stop("interrupted", signo=2)
        end = self.timeline.end
        if end is not None and end.exit_signal is not None:
            return Stop("terminated", signo=end.exit_signal)
        return Stop("exited", exit_status=end.exit_status if end else 0)

    def interrupt(self) -> None:
        self.timeline.interrupted.set()

    def insert_breakpoint(self, kind: int, addr: int, length: int,
                          condition: Condition | None = None) -> bool:
        if kind in (0, 1):
            self.timeline.breakpoints.add(addr)
            self.conditions.setdefault(addr, {})[kind] = condition
            self.timeline.condition_changed(addr)
            return True
        if kind in WATCH_KINDS:
            return self._watch(kind, addr, length, add=True)
        return False

    def remove_breakpoint(self, kind: int, addr: int, length: int) -> bool:
        if kind in (0, 1):
            kinds = self.conditions.get(addr, {})
            kinds.pop(kind, None)
            self.timeline.condition_changed(addr)
            if not kinds:
                self.conditions.pop(addr, None)
                self.timeline.breakpoints.discard(addr)
            return True
        if kind in WATCH_KINDS:
            return self._watch(kind, addr, length, add=False)
        return False

    def _watch(self, kind: int, addr: int, length: int, add: bool) -> bool:
        """A watched range becomes debug registers: aligned pieces of 1, 2, 4 or 8 bytes."""
        pieces: list[Watch] = []
        end = addr + length
        while addr < end:
            if len(pieces) == DEBUG_REGISTERS:
                return False  # a range no four debug registers cover (and never built whole)
            size = next(s for s in (8, 4, 2, 1) if addr % s == 0 and addr + s <= end)
            pieces.append(Watch(addr, size, WATCH_KINDS[kind]))
            addr += size
        timeline = self.timeline
        if add:
            if len(timeline.watches) + len(pieces) > DEBUG_REGISTERS:
                return False
            return all(timeline.add_watch(w) for w in pieces)
        return all(timeline.remove_watch(w) for w in pieces)

    # -- what gdb reads about the program -------------------------------------------------------
    def auxv(self) -> bytes:
        return self._exec_event().auxv

    def exec_file(self) -> str:
        return self._exec_event().path

    def open_file(self, path: str) -> bytes | None:
        """The trace's copy of ``path`` (also under another name for the same file,
        e.g. PT_INTERP's /lib64/ld-linux-x86-64.so.2), or the recorded maps."""
        if path.startswith("/proc/") and path.endswith("/maps"):
            return self._recorded_maps().encode()
        copy = self.files.get(path) or self.files.get(os.path.realpath(path))
        if copy is None:
            same_name = [p for name, p in self.files.items()
                         if os.path.basename(name) == os.path.basename(path)]
            copy = same_name[0] if len(same_name) == 1 else None
        # Read from the reader's checked descriptor: never a host file through a
        # link planted in files/.
        return self.timeline.reader.read_file(copy) if copy is not None else None

    def memory_regions(self) -> list[MemoryRegion]:
        return [MemoryRegion(m.start, m.end, m.perms,
                             m.recorded.name if m.kind != "heap" else "[heap]")
                for m in self.timeline.mappings()]

    def _recorded_maps(self) -> str:
        lines = []
        for m in self.timeline.mappings():
            name = m.recorded.name if m.kind != "heap" else "[heap]"
            lines.append(f"{m.start:x}-{m.end:x} {m.perms} {m.recorded.offset:08x} 00:00 0"
                         f"{' ' * 10}{name}".rstrip())
        return "\n".join(lines) + "\n"

    def siginfo(self) -> bytes:
        pending = self.timeline.pending_siginfo()
        if pending is not None:
            return pending
        reached = self._signal_reached()  # a fatal signal, shown before it is taken
        if reached is not None:
            return reached.siginfo
        here = self.timeline.mark.event
        for n in range(here - 1, max(0, here - 2) - 1, -1):
            event = self.timeline.reader[n]
            if isinstance(event, SignalEvent):
                return event.siginfo
        return bytes(128)

    def libraries_svr4(self) -> str:
        """The dynamic linker's list of loaded objects, read from the program's memory."""
        entries: list[str] = []
        main_lm = 0
        try:
            r_debug = self._r_debug()
            if r_debug:
                lm = struct.unpack("<Q", self.read_memory(r_debug + 8, 8))[0]
                main_lm = lm
                seen = 0
                while lm and seen < 4096:
                    l_addr, l_name, l_ld, l_next = struct.unpack(
                        "<4Q", self.read_memory(lm, 32))
                    name = self._c_string(l_name) if l_name else ""
                    if lm != main_lm:
                        entries.append(f"<library name={quoteattr(name)} lm=\"{lm:#x}\" lmid=\"0x0\" "
                                       f"l_addr=\"{l_addr:#x}\" l_ld=\"{l_ld:#x}\"/>")
                    lm, seen = l_next, seen + 1
        except (OSError, struct.error):
            entries = []
        main = f' main-lm="{main_lm:#x}"' if main_lm else ""
        return f'<library-list-svr4 version="1.0"{main}>' + "".join(entries) + \
            "</library-list-svr4>"

    def _c_string(self, addr: int) -> str:
        data = self.read_memory(addr, 4096)
        return data.split(b"\0", 1)[0].decode(errors="replace")

    def _r_debug(self) -> int:
        """Where ld.so keeps r_debug (0 until it has filled in DT_DEBUG)."""
        slot = self._dt_debug_slot()
        return struct.unpack("<Q", self.read_memory(slot, 8))[0] if slot else 0

    def r_debug_slot(self) -> int | None:
        try:
            return self._dt_debug_slot() or None
        except (OSError, struct.error):
            return None

    def _dt_debug_slot(self) -> int:
        """The address of DT_DEBUG's value in the executable's dynamic section (0: none)."""
        aux = self.auxv()
        values = dict(struct.iter_unpack("<QQ", aux[: len(aux) // 16 * 16]))
        phdr, phnum = values.get(AT_PHDR, 0), values.get(AT_PHNUM, 0)
        if not phdr:
            return 0
        headers = [struct.unpack("<IIQQQQQQ", self.read_memory(phdr + 56 * i, 56))
                   for i in range(phnum)]
        load_bias = next((phdr - h[3] for h in headers if h[0] == PT_PHDR), 0)
        dynamic = next((h[3] + load_bias for h in headers if h[0] == PT_DYNAMIC), 0)
        while dynamic:
            (tag,) = struct.unpack("<q", self.read_memory(dynamic, 8))
            if tag == DT_NULL:
                return 0
            if tag == DT_DEBUG:
                return dynamic + 8
            dynamic += 16
        return 0

    # -- monitor commands ----------------------------------------------------------------------------
    def monitor(self, command: str) -> str:
        """Run a monitor command; ValueError with a one-line reason for one that is
        malformed or cannot be done. An interrupt (gdb's Ctrl-C, or its connection
        gone) abandons a seek; the output then says where the replay stands. Notes on
        recorded states restored on the way come first."""
        words = command.split()
        timeline = self.timeline
        try:
            output = self._monitor(words)
        except KeyboardInterrupt:
            output = f"interrupted: still at {timeline.position()}\n"
        finally:
            timeline.interrupted.clear()  # consumed, or too late for this command
        return self._new_notes() + output

    def _monitor(self, words: list[str]) -> str:
        timeline = self.timeline
        name, args = (words[0], words[1:]) if words else ("help", [])
        if name == "help" and not args:
            return MONITOR_HELP
        if name == "when" and not args:
            return f"{timeline.position()} (of {len(timeline.reader)} events)\n"
        if name == "reverse-roll" and len(args) <= 1:
            count = _instruction_count(args[0]) if args else 1
            arrival = timeline.reverse_step(count)
            note = " (the start of the recording)" \
                if arrival.reason == StopReason.HISTORY_BEGIN else ""
            return f"now at {timeline.mark}{note}\n"
        if name == "checkpoint" and len(args) <= 1:
            label = args[0] if args else next(
                str(n) for n in itertools.count(1) if str(n) not in timeline.named)
            if label not in timeline.named and len(timeline.named) >= MAX_NAMED_CHECKPOINTS:
                raise ValueError(f"checkpoint {label}: there are already "
                                 f"{MAX_NAMED_CHECKPOINTS} named checkpoints, the most kept: "
                                 "delete one first (monitor delete checkpoint NAME)")
            mark = timeline.checkpoint(label)
            return f"checkpoint {label} at {mark}\n"
        if name == "restart" and len(args) == 1:
            if args[0] not in timeline.named:
                raise ValueError(f"restart: no checkpoint named {args[0]} "
                                 "(monitor info checkpoints lists them)")
            timeline.seek(timeline.named[args[0]][0])
            return f"now at {timeline.mark}\n"
        if name == "delete" and len(args) == 2 and args[0] == "checkpoint":
            if not timeline.delete_checkpoint(args[1]):
                raise ValueError(f"delete checkpoint: no checkpoint named {args[1]} "
                                 "(monitor info checkpoints lists them)")
            return f"deleted checkpoint {args[1]}\n"
        if name == "info" and args == ["checkpoints"]:
            named = "".join(f"{label}: {mark}\n" for label, (mark, _) in timeline.named.items())
            boundaries = sorted(timeline.boundary_checkpoints)
            return (named or "no named checkpoints\n") + (
                f"automatic: {len(boundaries)} at event boundaries "
                f"({', '.join(map(str, boundaries[-8:]))}{' ...' if len(boundaries) > 8 else ''})"
                f", {len(timeline.recent)} near recent stops\n")
        usage = _MONITOR_USAGE.get(name)
        if usage is not None:
            raise ValueError(f"usage: monitor {usage}")
        raise ValueError(f"unknown monitor command: {' '.join(words)} (try: monitor help)")

    def kill(self) -> None:
        """Nothing to do here: the server ends, and the CLI closes the timeline,
        which kills the replay and every checkpoint."""

    def pass_signals(self, signals: set[int]) -> None:
        self.timeline.report_signals = frozenset(range(1, 65)) - frozenset(signals)



def _image_execs(processes: list[ProcessInfo], pid: int) -> list[tuple[int, ExecEvent]]:
    """The execs that made process ``pid``'s image, by event number: its parent's
    before it was made (a fork's image is a copy of its parent's), then its own."""
    by_pid = {process.pid: process for process in processes}
    process = by_pid[pid]
    own = sorted(process.execs.items())
    if process.parent not in by_pid:
        return own
    return [(n, event) for n, event in _image_execs(processes, process.parent)
            if n < process.created] + own


class _StoppedAt:
    """A replay stopped at a breakpoint (or an arrival's perf sample), as a
    condition (gdbstub.agent) reads it: registers by gdb's numbers, memory as
    recorded."""

    def __init__(self, stopped: StoppedAt | SampledArrival) -> None:
        self.stopped = stopped
        self._general: bytes | None = None
        self._registers: tuple[bytes, bytes] | None = None

    def register(self, number: int) -> int:
        if not 0 <= number < len(REGISTERS):
            raise IndexError(number)
        register = REGISTERS[number]
        if is_general(register):  # an arrival's perf sample has these alone
            if self._general is None:
                self._general = self.stopped.general_registers()
            return int.from_bytes(register.extract(self._general, b""), "little")
        if self._registers is None:
            self._registers = self.stopped.registers()
        return int.from_bytes(register.extract(*self._registers), "little")

    def read_memory(self, addr: int, length: int) -> bytes:
        return self.stopped.read_memory(addr, length)
