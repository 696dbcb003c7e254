"""The recorder's tasks and the order they run in: one task in user code at a time.

Every thread of every process of the recorded tree is a ``RecordedTask``; the
state a thread group shares (its mmap-family count, the files it maps, its
watched rdrand sites, its fds that lead to the terminal) is its
``RecordedProcess``. The ``Scheduler`` collects every ptrace stop of every task
(one waitpid for all of them) and chooses which task runs next; the recorder
runs that one alone, records its events, and gives up the CPU when

* the task enters a syscall that blocks: a call known to wait (a futex wait,
  wait4, poll, nanosleep, ...) at once, any other once it has not returned
  within ``BLOCK_SECONDS``. It is recorded as a SyscallEntryEvent and left
  parked in the kernel; its exit stop is collected whenever it comes, and the
  SyscallEvent is recorded when the task is chosen again;
* the task has run in user code for its time slice while another task is
  ready: PTRACE_INTERRUPT stops it where it is (a PreemptEvent). A task whose
  slices end this way gets a longer slice each time (up to ``MAX_SLICE``), so
  that CPU-bound workers pay for few switches; one that blocks starts again
  from ``SLICE``;
* the task exits, or stops with its process group (job control).

Tasks whose stops have come in and not been handled (a parked call that
returned, a thread that died in exit_group) are ready; the scheduler takes
them round robin, so that no ready task waits for more than one turn of the
others.
"""

from __future__ import annotations

import collections
import enum
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from ..tracee.process import Stop, Tracee
from ..tracee.syscalls import syscall_number
from .file_views import FileViews
from .output import EchoedFds

BLOCK_SECONDS = 0.002  # a call that has not returned by then lets the others run
SLICE = 0.01  # seconds of user code before a task that others wait for is preempted
MAX_SLICE = 0.32
WAIT_ALL = 0x40000000  # __WALL: threads too

_NR = {name: syscall_number(name) for name in (
    "futex", "wait4", "waitid", "nanosleep", "clock_nanosleep", "pause", "rt_sigsuspend",
    "rt_sigtimedwait", "poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait",
    "epoll_pwait2", "accept", "accept4", "msgrcv", "semop", "semtimedop", "sched_yield")}
WAITING_CALLS = frozenset(_NR[name] for name in (
    "wait4", "waitid", "nanosleep", "clock_nanosleep", "pause", "rt_sigsuspend",
    "rt_sigtimedwait", "poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait",
    "epoll_pwait2", "accept", "accept4", "msgrcv", "semop", "semtimedop"))
"""Calls that wait for another task (or for time) by their nature: parked at entry."""
NR_FUTEX = _NR["futex"]
NR_SCHED_YIELD = _NR["sched_yield"]
# FUTEX_WAIT, FUTEX_LOCK_PI, FUTEX_WAIT_BITSET, FUTEX_WAIT_REQUEUE_PI, FUTEX_LOCK_PI2
_FUTEX_WAITS = frozenset({0, 6, 9, 11, 13})
FUTEX_LOCKS_PI = frozenset({6, 13})  # FUTEX_LOCK_PI, FUTEX_LOCK_PI2
FUTEX_CMD_MASK = 0x7F  # without FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME


def waits_by_nature(nr: int, args: tuple[int, ...]) -> bool:
    """Whether call ``nr`` waits for something another task (or time) does."""
    if nr == NR_FUTEX:
        return (args[1] & FUTEX_CMD_MASK) in _FUTEX_WAITS
    return nr in WAITING_CALLS


class Run(enum.Enum):
    """Where a task is, as far as the scheduler is concerned."""

    STOPPED = "stopped"  # in a ptrace stop that has been handled: resume it to go on
    RUNNING = "running"  # resumed: in user code, or in a call that has not blocked yet
    PARKED = "parked"  # in the kernel, in a call recorded as a SyscallEntryEvent
    LISTENING = "listening"  # in a group-stop, left to the kernel (PTRACE_LISTEN)
    EXITING = "exiting"  # resumed into exit or exit_group: its death is all that can come


@dataclass
class ThreadBuffer:
    """Where a thread's syscall buffer is and how much of it is in the trace. A vfork
    child shares its parent's (same memory, same thread pointer), and so this object."""

    addr: int
    size: int
    consumed: int = 0


@dataclass
class RecordedProcess:
    """What the threads of one process share in a recording."""

    pid: int
    parent: int
    views: FileViews
    mmap_count: int = 0
    tsc_mode: int = 1  # the program's own PR_SET_TSC mode (PR_TSC_ENABLE)
    watched: list[int] = field(default_factory=list)  # rdrand/rdseed on debug registers
    echoed: EchoedFds = field(default_factory=EchoedFds)
    page: int = 0  # the retrograde page's address in this process
    own_seccomp: bool = False  # the program installed a filter besides the syscall buffer's

    def fork(self, pid: int, tracee: Tracee) -> RecordedProcess:
        """The state of a child process made by fork (or clone without CLONE_THREAD)."""
        views = FileViews(tracee)
        views.sizes = dict(self.views.sizes)
        views.written = set(self.views.written)
        return RecordedProcess(pid, self.pid, views, self.mmap_count, self.tsc_mode,
                               list(self.watched), self.echoed.copy(), self.page)


@dataclass
class RecordedTask:
    """One thread of the recorded tree and where its recording stands."""

    tid: int
    tracee: Tracee
    process: RecordedProcess
    run: Run = Run.STOPPED
    pending: collections.deque[Stop] = field(default_factory=collections.deque)
    in_syscall: bool = False
    entry_nr: int = -1
    entry_args: tuple[int, ...] = ()
    entered_at: float = 0.0  # when it was resumed into the call it is in
    waits: bool = False  # the call it is in waits by nature
    exec_pending: bool = False
    last_regs: bytes | None = None  # registers at the last stop it was resumed from
    restart: tuple[int, tuple[int, ...]] | None = None
    peeked: bytes | None = None
    held: Any = None  # the recorder's _HeldSignal
    deliver: int = 0  # the signal to deliver when it is resumed
    slice: float = SLICE
    slice_start: float = 0.0
    entry_recorded: bool = False  # the call it is in has its SyscallEntryEvent
    interrupting: bool = False  # a PTRACE_INTERRUPT has not been reported yet
    # The call our interrupt broke (nr, args, result), whose exit was not recorded:
    # the kernel enters it again once the trap is reported.
    restarting: tuple[int, tuple[int, ...], int] | None = None
    announced: bool = True  # its CloneEvent is in the trace (it may run)
    fresh: bool = False  # made by a clone, its first stop not yet seen
    child: int | None = None  # a task its clone made and the trace has not announced
    clone_flags: int = 0  # of the clone call it is in, and where it stores the child's tid
    clone_ctid: int = 0
    armed: int = 0  # how many of its process's watched sites its debug registers hold
    exec_from: int | None = None  # the tid it had before it exec'd as a non-leader thread
    # Under the syscall buffer's seccomp filter (inherited by its clones): resumed with
    # PTRACE_CONT, its traced calls stop at PTRACE_EVENT_SECCOMP instead of an entry stop.
    filtered: bool = False
    sysbuf: ThreadBuffer | None = None  # its buffer, once the library registered one
    sysbuf_writes: tuple[tuple[int, bytes], ...] = ()  # what the recorder stored for a flush

    @property
    def ready(self) -> bool:
        """Whether it can be run now: stopped, or with stops to handle."""
        if not self.announced:
            return False
        return bool(self.pending) or self.run is Run.STOPPED


class Scheduler:
    """Every task of a recording, their stops, and which one runs next."""

    def __init__(self) -> None:
        self.tasks: dict[int, RecordedTask] = {}
        self.unclaimed: dict[int, list[Stop]] = {}  # stops of tids no clone has named yet
        self.order: collections.deque[int] = collections.deque()  # round robin

    def add(self, task: RecordedTask) -> None:
        self.tasks[task.tid] = task
        self.order.append(task.tid)
        for stop in self.unclaimed.pop(task.tid, []):
            task.pending.append(stop)

    def remove(self, task: RecordedTask) -> None:
        self.tasks.pop(task.tid, None)
        try:
            self.order.remove(task.tid)
        except ValueError:
            pass

    def rename(self, task: RecordedTask, tid: int) -> None:
        """``task`` goes on as ``tid`` (a thread that execs takes its leader's tid)."""
        self.remove(task)
        task.tid = tid
        self.add(task)

    def others_ready(self, task: RecordedTask) -> bool:
        return any(t.ready for t in self.tasks.values() if t is not task)

    def pick(self) -> RecordedTask | None:
        """The next ready task, round robin; None if none is."""
        for _ in range(len(self.order)):
            tid = self.order[0]
            self.order.rotate(-1)
            task = self.tasks.get(tid)
            if task is not None and task.ready:
                return task
        return None

    # -- stops ----------------------------------------------------------------------
    def collect(self, timeout: float | None) -> bool:
        """Take in every stop that has come; wait up to ``timeout`` seconds (None: for
        as long as it takes) if none has. Returns whether any came. SIGCHLD must be
        blocked in the calling thread (Recorder.run does so)."""
        if self._drain():
            return True
        if timeout is not None and timeout <= 0:
            return False
        if timeout is None:
            try:
                pid, status = os.waitpid(-1, WAIT_ALL)
            except ChildProcessError:
                return False
            self._route(pid, status)
            self._drain()
            return True
        signal.sigtimedwait([signal.SIGCHLD], timeout)
        return self._drain()

    def _drain(self) -> bool:
        got = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG | WAIT_ALL)
            except ChildProcessError:
                return got
            if pid == 0:
                return got
            self._route(pid, status)
            got = True

    def _route(self, pid: int, status: int) -> None:
        task = self.tasks.get(pid)
        if task is None:
            # A new task's first stop can come before its parent's clone event.
            self.unclaimed.setdefault(pid, []).append(Tracee.decode_status(status))
            return
        task.pending.append(task.tracee.decode(status))

    def wait_for(self, task: RecordedTask) -> Stop:
        """Block until ``task`` has a stop; return it (it stays pending)."""
        while not task.pending:
            self.collect(None)
        return task.pending[0]


def now() -> float:
    return time.monotonic()
