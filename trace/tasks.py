"""The tasks and processes of a trace, as its events tell them.

The first ExecEvent's task is the first process. A CloneEvent adds a task: a
thread of its parent's process (CLONE_THREAD) or the first task of a new
process whose parent is the parent task's process. An ExecEvent gives its
process a new command; an ExitEvent ends its task, and the process ends with
its leader (the task whose tid is the process id, which the kernel reports last
of its thread group). `retrograde ps` lists them; replay asks whether a trace
has more than one task.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from retrograde.trace.events import CloneEvent, Event, ExecEvent, ExitEvent

CLONE_THREAD = 0x10000


@dataclass
class ProcessInfo:
    """One recorded process: its id, its parent's (0 for the first), its command
    (the argv of its last exec; a fork that never execs has its parent's), its
    threads by tid, and how it ended (None while the trace has not said)."""

    pid: int
    parent: int
    argv: tuple[str, ...]
    tasks: list[int] = field(default_factory=list)
    exit_status: int | None = None
    exit_signal: int | None = None

    @property
    def ended(self) -> bool:
        return self.exit_status is not None or self.exit_signal is not None


def process_tree(events: Iterable[Event]) -> list[ProcessInfo]:
    """The processes of ``events`` in the order they were created."""
    processes: dict[int, ProcessInfo] = {}
    process_of: dict[int, int] = {}  # tid -> pid
    for event in events:
        if isinstance(event, ExecEvent):
            pid = process_of.get(event.task)
            if pid is None:  # the first exec: the start of the trace
                pid = event.task
                processes[pid] = ProcessInfo(pid, 0, event.argv, [pid])
                process_of[pid] = pid
            processes[pid].argv = event.argv
        elif isinstance(event, CloneEvent):
            parent_pid = process_of.get(event.parent, event.parent)
            process_of[event.task] = event.process
            if event.flags & CLONE_THREAD and event.process in processes:
                processes[event.process].tasks.append(event.task)
            else:
                argv = processes[parent_pid].argv if parent_pid in processes else ()
                processes[event.process] = ProcessInfo(event.process, parent_pid, argv,
                                                       [event.task])
        elif isinstance(event, ExitEvent):
            pid = process_of.get(event.task)
            if pid is not None and pid == event.task and pid in processes:
                processes[pid].exit_status = event.status
                processes[pid].exit_signal = event.signo
    return list(processes.values())


def task_count(events: Iterable[Event]) -> int:
    """How many tasks ``events`` hold: 1 for a program that never cloned."""
    return 1 + sum(1 for event in events if isinstance(event, CloneEvent))
