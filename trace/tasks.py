"""The tasks and processes of a trace, as its events tell them.

The first ExecEvent's task is the first process. A CloneEvent adds a task: a
thread of its parent's process (CLONE_THREAD) or the first task of a new
process whose parent is the parent task's process. An ExecEvent gives its
process a new command; an ExitEvent ends its task, and the process ends with
its leader (the task whose tid is the process id, which the kernel reports last
of its thread group). `retrograde ps` lists them; `replay -p` chooses one to debug
(``debuggee``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from retrograde.trace.events import CloneEvent, Event, ExecEvent, ExitEvent

CLONE_THREAD = 0x10000


@dataclass
class ProcessInfo:
    """One recorded process: its id, its parent's (0 for the first), its command
    (the argv of its last exec; a fork that never execs has its parent's), its
    threads by tid, and how it ended (None while the trace has not said).

    ``created`` is the number of the event that made it (its CloneEvent; 0, the
    first exec, for the first process), ``execs`` its ExecEvents by number, and
    ``exit_event`` the number of its leader's ExitEvent (None while the trace
    has not said)."""

    pid: int
    parent: int
    argv: tuple[str, ...]
    tasks: list[int] = field(default_factory=list)
    exit_status: int | None = None
    exit_signal: int | None = None
    created: int = 0
    execs: dict[int, ExecEvent] = field(default_factory=dict)
    exit_event: int | None = None

    @property
    def ended(self) -> bool:
        return self.exit_status is not None or self.exit_signal is not None


def process_tree(events: Iterable[Event]) -> list[ProcessInfo]:
    """The processes of ``events`` in the order they were created."""
    processes: dict[int, ProcessInfo] = {}
    process_of: dict[int, int] = {}  # tid -> pid
    for n, event in enumerate(events):
        if isinstance(event, ExecEvent):
            pid = process_of.get(event.task)
            if pid is None:  # the first exec: the start of the trace
                pid = event.task
                processes[pid] = ProcessInfo(pid, 0, event.argv, [pid], created=n)
                process_of[pid] = pid
            processes[pid].argv = event.argv
            processes[pid].execs[n] = event
        elif isinstance(event, CloneEvent):
            parent_pid = process_of.get(event.parent, event.parent)
            process_of[event.task] = event.process
            if event.flags & CLONE_THREAD and event.process in processes:
                processes[event.process].tasks.append(event.task)
            else:
                argv = processes[parent_pid].argv if parent_pid in processes else ()
                processes[event.process] = ProcessInfo(event.process, parent_pid, argv,
                                                       [event.task], created=n)
        elif isinstance(event, ExitEvent):
            pid = process_of.get(event.task)
            if pid is not None and pid == event.task and pid in processes:
                processes[pid].exit_status = event.status
                processes[pid].exit_signal = event.signo
                processes[pid].exit_event = n
    return list(processes.values())


@dataclass(frozen=True)
class Debuggee:
    """The process a debugger is shown, and the event boundary its history starts
    at: rr's convention, the first instruction after its creation for a pid,
    the first after the exec for a command (for the first process, after the
    first exec either way). ``exit_event`` is the number of its leader's exit
    event (None: the trace does not say), the end of its history."""

    pid: int
    start: int
    exit_event: int | None = None


class NoSuchProcess(ValueError):
    """A choice of process (-p) that names none of the trace's; the message lists them."""


def debuggee_of(processes: list[ProcessInfo], choice: str | None) -> Debuggee:
    """The process ``choice`` names: a pid, or a command, the first process whose
    exec'd file's name or argv[0] (or its file name) is that command; None: the
    first process."""
    first = processes[0]
    if choice is None:
        return Debuggee(first.pid, first.created + 1, first.exit_event)
    if choice.isdigit():
        for process in processes:
            if process.pid == int(choice):
                return Debuggee(process.pid, process.created + 1, process.exit_event)
    else:
        execs = sorted((n, process.pid, event) for process in processes
                       for n, event in process.execs.items())
        by_pid = {process.pid: process for process in processes}
        for n, pid, event in execs:
            argv0 = event.argv[0] if event.argv else ""
            if choice in (os.path.basename(event.path), argv0, os.path.basename(argv0)):
                return Debuggee(pid, n + 1, by_pid[pid].exit_event)
    # What `retrograde ps` lists, on one line.
    shown = ", ".join(f"{p.pid} ({' '.join(p.argv)})".replace("\n", "\\n") for p in processes)
    what = "process" if choice.isdigit() else "process that ran"
    raise NoSuchProcess(f"no {what} {choice} in the trace; its processes: {shown}")


def task_count(events: Iterable[Event]) -> int:
    """How many tasks ``events`` hold: 1 for a program that never cloned."""
    return 1 + sum(1 for event in events if isinstance(event, CloneEvent))
