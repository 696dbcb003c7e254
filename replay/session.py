"""A replay session: the tasks of one replay, advanced event by event through a trace.

The trace is a serial schedule: each event names the task it happened in, and
the session carries out each event in that task, in trace order. A ``Task``
(replay/task.py) is one live thread and knows how to run; syscall emulation
(replay/syscalls.py) and exec emulation (replay/exec.py) are their own units;
the debug registers and perf counters of a task have one owner
(replay/hardware.py). The session owns the tasks, by recorded tid, and what
spans them: the position in the trace, the end, the echo of output, and
``clone`` for checkpoints.

Invariant between events: every task is stopped at a ptrace stop from which
``inject_syscall`` is allowed, and its ``pending_signal`` is the signal its
next resume must deliver (the task is then at that signal's delivery stop).

The debugger sees one process (``debugged``): only its tasks ever hold the
caller's int3s or debug registers, and only their signals are reported. The
others run their recorded slices bare.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from retrograde.trace.dump import signal_name
from retrograde.trace.events import (
    CloneEvent,
    Event,
    ExecEvent,
    ExitEvent,
    PreemptEvent,
    RandomEvent,
    RdtscEvent,
    SignalEvent,
    SyscallEntryEvent,
    SyscallEvent,
)
from retrograde.trace.format import TraceError, TraceReader
from retrograde.trace.output import EchoedFds
from retrograde.tracee import page as rpage
from retrograde.tracee.cpu import apply_random, cpuid_warning, decode_rdtsc, replay_cpu
from retrograde.tracee.maps import has_memory_digest
from retrograde.tracee.process import (
    PTRACE_CONT,
    PTRACE_SYSCALL,
    PTRACE_SYSEMU,
    PTRACE_SYSEMU_SINGLESTEP,
    STOP_SIGNALS,
    LaunchState,
    Stop,
    Tracee,
    TraceeError,
    fork_clone,
    is_error,
    tgkill,
    thread_clone,
)
from retrograde.tracee.registers import registers_from_bytes, registers_to_bytes
from retrograde.tracee.syscalls import syscall_number

from .address_space import AddressSpace
from .errors import Divergence, TraceEnds
from .exec import finish_stub_exec, random_instructions_note
from .hardware import Watch
from .precise import (
    PreciseEvent,
    PreciseStates,
    RecordedState,
    arrival_stop,
    describe_event,
    in_state,
    is_precise,
)
from .stub import write_stub
from .syscalls import (
    SyscallReplay,
    check_syscall,
    echo_output,
    format_call,
    rebacked,
    temporary_mask,
    write_output,
)
from .task import RESUME_FLAG, SYNCHRONOUS_SIGNALS, TRAP_FLAG, Interruption, Task

__all__ = ["ALL_SIGNALS", "RESUME_FLAG", "SYNCHRONOUS_SIGNALS", "TRAP_FLAG", "Divergence",
           "EchoFrontier", "Interruption", "PreciseStates", "ReplayEnd", "ReplaySession",
           "RunStop", "StopReason", "TraceEnds", "replay_autopilot"]

NR_EXIT, NR_EXIT_GROUP = syscall_number("exit"), syscall_number("exit_group")
NR_CLONE, NR_CLONE3 = syscall_number("clone"), syscall_number("clone3")
TASK_CREATORS = frozenset({NR_CLONE, NR_CLONE3, syscall_number("fork"), syscall_number("vfork")})
NR_SET_TID_ADDRESS, NR_SET_ROBUST_LIST, NR_RT_SIGPROCMASK, NR_PRCTL = (
    syscall_number(name) for name in ("set_tid_address", "set_robust_list", "rt_sigprocmask",
                                      "prctl"))
PR_SET_NAME = 15
TASK_COMM_LEN = 16  # the kernel's comm, its NUL included
CLONE_VM, CLONE_VFORK, CLONE_THREAD = 0x100, 0x4000, 0x10000
CLONE_CHILD_CLEARTID = 0x200000
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET; CLONE_NEWTIME is
# clone3's only (in clone's flags that bit is part of the exit signal).
NAMESPACE_FLAGS = 0x20000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | \
    0x20000000 | 0x40000000
CLONE_NEWTIME = 0x80
PTRACE_CREATION_EVENTS = frozenset({1, 2, 3})  # PTRACE_EVENT_FORK, _VFORK, _CLONE
SIG_SETMASK = 2
TRAP_TRACE = 2  # si_code of a single-step trap
# si_code of the trap a single step that delivered a signal reports at the first
# instruction of its handler, which has not run yet: the kernel's signal_delivered
# calls ptrace_notify(SIGTRAP), whose siginfo carries the exit code SIGTRAP.
HANDLER_ENTRY_TRAP = signal.SIGTRAP
ALL_SIGNALS = frozenset(range(1, 65))


@dataclass
class EchoFrontier:
    """The first event whose output no session sharing this frontier has echoed: a
    timeline's sessions echo output once, as the replay first gets there, however
    often they go back over it."""

    event: int = 0


class StopReason(enum.StrEnum):
    """Why a run stopped: the session's runs and the timeline's moves alike."""

    BREAKPOINT = "breakpoint"  # an int3 of the debugger's; the pc is left at its address
    STEP = "step"  # one instruction done (or a signal delivered into its handler)
    WATCH = "watch"  # a debug register's watchpoint trapped, after the access
    SIGNAL = "signal"  # a recorded signal taken
    EVENT = "event"  # an event carried out (``until_event``)
    END = "end"  # the end reached, not carried out: exit_group or a fatal signal next
    EXITED = "exited"  # the program is gone
    REACHED = "reached"  # the next event's stop reached, not carried out
    INTERRUPTED = "interrupted"  # an interrupt request stopped the run
    HISTORY_BEGIN = "history-begin"  # going backwards, the start of the recording


@dataclass(frozen=True)
class RunStop:
    """Why ``ReplaySession.run`` returned."""

    reason: StopReason
    addr: int = 0  # the breakpoint's address
    signo: int = 0
    watch: int = -1  # the debug register (0-3) that triggered


@dataclass(frozen=True)
class ReplayEnd:
    exit_status: int | None
    exit_signal: int | None


class ReplaySession:
    """Owns the tasks of one replay; ``close`` (or the context manager) kills them.

    ``tasks`` maps each task's recorded tid to its live Task; ``task`` is the one
    the replay is in: the task of the next event once it has run, else the last
    one that ran.
    """

    def __init__(self, reader: TraceReader, *, echo: bool = False,
                 check_maps: bool = False) -> None:
        self.reader = reader
        self.echo = echo
        self.check_maps = check_maps
        self.tasks: dict[int, Task] = {}
        self._current: Task | None = None
        self.next_event = 0
        self.end: ReplayEnd | None = None
        self.root = 0  # the recorded tid of the first task: its end is the replay's
        self._lingering: set[int] = set()  # leaders gone but not reaped: others still run
        self._parked: dict[int, SyscallEntryEvent] = {}  # the call each parked task is in
        # Tasks whose creation call made its child at the CloneEvent: True if the
        # task then sleeps in the kernel (vfork) rather than standing at the exit.
        self._creating: dict[int, bool] = {}
        self._interruption: Interruption | None = None  # shared with a timeline's sessions
        # The debugger's watchpoints while a run has them armed: in every task of the
        # debugged process, since any thread may write, and in each task made in it
        # meanwhile (a clone of a thread does not inherit its debug registers).
        self.armed: list[Watch] = []
        # The recorded pid of the process the debugger sees (None: every process).
        self.debugged: int | None = None
        self.precise = PreciseStates()
        self.frontier: EchoFrontier | None = None  # None: echo every time
        # Which fds are the terminal's, per recorded process (fd tables are per process).
        self.echoed: dict[int, EchoedFds] = {}
        # The recording's emulated rdrand/rdseed sites (each address space traps them).
        self.random_sites = _random_sites(reader)
        self.syscalls = SyscallReplay(reader, self.random_sites, check_maps, self._reached_end,
                                      self._echo_once)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def task(self) -> Task:
        """The task the replay is in; TraceeError if the session has none (not started)."""
        if self._current is None:
            raise TraceeError("the replay has not been started")
        return self._current

    @property
    def started(self) -> bool:
        return self._current is not None

    @property
    def process(self) -> Tracee:
        """The live process of the current task."""
        return self.task.tracee

    @property
    def space(self) -> AddressSpace | None:
        """The recorded address space of the current task, known from its first exec."""
        return self._current.space if self._current is not None else None

    @property
    def interruption(self) -> Interruption | None:
        return self._interruption

    @interruption.setter
    def interruption(self, interruption: Interruption | None) -> None:
        self._interruption = interruption
        for task in self.tasks.values():
            task.interruption = interruption

    def _add_task(self, task: Task) -> Task:
        task.interruption = self._interruption
        self.tasks[task.recorded_tid] = task
        if self.armed and self.is_debugged(task):
            task.hardware.arm(self.armed)
        if self._current is None:
            self._current = task
        return task

    def close(self) -> None:
        # SIGKILL to every thread first, then reap them leaders last: the kernel
        # reports a group's leader dead only once its other threads are reaped.
        live = [task for task in self.tasks.values() if task.tracee.alive]
        for task in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(task.tid, signal.SIGKILL)
        for task in sorted(live, key=lambda task: task.is_leader):
            task.kill()

    def live_tasks(self) -> list[Task]:
        """The tasks whose thread has not ended, in creation order."""
        return [task for task in self.tasks.values() if task.gone is None]

    def is_debugged(self, task: Task) -> bool:
        """Whether ``task`` belongs to the process the debugger sees."""
        return self.debugged is None or task.recorded_pid == self.debugged

    def arm(self, watches: list[Watch]) -> None:
        """Make the debug registers of every live task of the debugged process hold
        ``watches`` (none: disarm)."""
        self.armed = list(watches)
        for task in self.live_tasks():
            if self.is_debugged(task):
                task.hardware.arm(watches)

    @property
    def can_clone(self) -> bool:
        """Whether ``clone`` can copy the replay here (see _copy_processes)."""
        return self.end is None and self._current is not None and bool(self.live_tasks()) \
            and not any(self._creating.values()) and not self._lingering

    def waits_in_kernel(self, tid: int) -> bool:
        """Whether task ``tid`` stands in a call that another task's events must
        complete (parked at its entry, a futex wait say) rather than in user code."""
        task = self.tasks.get(tid)
        return task is not None and task is not self._current and task.reached is not None

    def hardware_idle(self) -> bool:
        """No debug register armed in any task."""
        return all(task.hardware.idle for task in self.live_tasks())

    # -- checkpoints --------------------------------------------------------------------
    def clone(self) -> ReplaySession:
        """A copy of this replay at the same position: a checkpoint, or a restore of one.

        The copy is a fork of the replay process (injected at the retrograde
        page) plus the session's own state. A checkpoint is a clone that is
        kept stopped and never run; restoring it is cloning it again and
        running the new copy, so one checkpoint serves any number of restores.
        """
        if self.end is not None or self._current is None or not self.live_tasks():
            raise TraceeError("cannot checkpoint a replay whose program has ended")
        copy = ReplaySession(self.reader, echo=self.echo, check_maps=self.check_maps)
        copy.next_event = self.next_event
        copy.root = self.root
        copy.debugged = self.debugged
        copy._parked = dict(self._parked)
        copy._creating = dict(self._creating)
        copy.precise = self.precise
        copy.frontier = self.frontier
        copy.echoed = {pid: fds.copy() for pid, fds in self.echoed.items()}
        copy.random_sites = self.random_sites
        try:
            twins = self._copy_processes(copy)
        except BaseException:
            copy.close()
            raise
        copy.tasks = {tid: twins[tid] for tid in self.tasks}  # the creation order
        copy._current = twins[self._current.recorded_tid]
        copy.interruption = self.interruption
        return copy

    def _copy_processes(self, copy: ReplaySession) -> dict[int, Task]:
        """Copy every live process into ``copy``: a fork of one of its threads, and
        each other thread made again in the fork by an injected clone, with its
        registers, extended state, signal mask, clear-tid word and robust list. A
        task that has ended is copied as it is, dead."""
        twins: dict[int, Task] = {}
        groups: dict[int, list[Task]] = {}
        if any(self._creating.values()):
            raise TraceeError("cannot checkpoint a replay while a vfork's parent sleeps "
                              "in the kernel")
        if self._lingering:
            raise TraceeError("cannot checkpoint a replay in which a process's first thread "
                              "has ended before its others")
        for task in self.tasks.values():
            if task.gone is not None or not task.tracee.alive:
                twin = Task(task.tracee, task.recorded_tid, task.space)
                twin.copy_state(task)
                twins[task.recorded_tid] = twin
            else:
                groups.setdefault(task.tracee.tgid, []).append(task)
        for members in groups.values():
            # The leader forks when it can: the copy's thread ids keep their roles.
            first = min(members, key=lambda task: not task.is_leader)
            assert first.space is not None
            space = first.space.copy()
            page = first.space.page + rpage.SYSCALL_OFFSET
            forked = fork_clone(first.tracee, page)
            lead = copy._add_task(Task(forked, first.recorded_tid, space))
            lead.copy_state(first)
            twins[first.recorded_tid] = lead
            for task in members:
                if task is not first:
                    twin = copy._add_task(Task(thread_clone(forked, page), task.recorded_tid,
                                               space))
                    twin.copy_state(task)
                    _copy_thread_state(task, twin)
                    twins[task.recorded_tid] = twin
            for task in members:
                _restore_thread_kernel_state(twins[task.recorded_tid], task)
            rebacked(lead)  # its own pages: see SyscallReplay._mmap_family
        return twins

    def adopt(self, clone: ReplaySession) -> None:
        """Go back to where ``clone`` (of this session, in the same event interval) was
        taken: take over its tasks' processes and end ours (Task.trade_places; the
        other tasks stood still in both)."""
        assert clone.next_event == self.next_event
        current = self.task
        current.trade_places(clone.task)
        for tid, task in self.tasks.items():
            twin = clone.tasks.get(tid)
            if task is not current and twin is not None and task.gone is None:
                task.swap_processes(twin)
                if self.armed and self.is_debugged(task):
                    task.hardware.arm(self.armed)  # the clone's threads had none armed
        clone.close()

    def state_digest(self, *, resume_flag: bool = True) -> bytes:
        """The current task's state digest (Task.state_digest)."""
        return self.task.state_digest(resume_flag=resume_flag)

    # -- driving ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the replay process and rebuild the state after the first exec."""
        first = self._event(0)
        if not isinstance(first, ExecEvent):
            raise Divergence(0, f"the trace starts with {first.kind}, not an exec")
        stub = write_stub(first.retrograde_page)
        launch = None  # a trace from before the launch state was kept
        if "launch" in self.reader.metadata:
            try:
                launch = LaunchState.from_json(self.reader.metadata["launch"])
            except ValueError as error:
                raise TraceError(f"{self.reader.directory}/metadata.json: {error}") from None
        cpu, cpu_warning = replay_cpu(self.reader.metadata.get("bound_cpu"))
        tracee = Tracee.spawn([str(stub)], env={}, isolate=True, launch=launch, cpu=cpu)
        task = self._add_task(Task(tracee, first.task))
        self.root = first.task
        for warning in (cpu_warning, cpuid_warning(self.reader.metadata.get("cpuid"))):
            if warning:
                print(f"retrograde: {warning}", file=sys.stderr, flush=True)
        finish_stub_exec(task, self.reader, first, self.random_sites)
        self.syscalls.check(task, 0)
        self.next_event = 1

    def run_to_end(self) -> ReplayEnd:
        while self.end is None:
            self.step_event()
        return self.end

    def _event(self, n: int) -> Event:
        try:
            return self.reader[n]
        except IndexError:
            raise TraceEnds(n) from None

    def _task_of(self, n: int, event: Event) -> Task:
        """The task event ``n`` happens in."""
        task = self.tasks.get(event.task)
        if task is None:
            raise Divergence(n, f"{event.kind} event of task {event.task}, which the replay "
                                "has not created")
        return task

    def step_event(self) -> None:
        """Replay exactly the next event of the trace (an exec with its execve)."""
        self.run(until_event=True, report_signals=frozenset(), stop_at_end=False)

    def run(self, *, step: bool = False, breakpoints: frozenset[int] = frozenset(),
            until_event: bool = False, report_signals: frozenset[int] = ALL_SIGNALS,
            stop_at_end: bool = True, stop_before_event: bool = False) -> RunStop:
        """Run the program forward, completing events as they come, until one of:

        a breakpoint (int3s are in memory only while running, so a stopped replay
        and every checkpoint are clean; the pc is left at the breakpoint), a
        completed single step, a watchpoint trap (the debug registers are the
        caller's to set), a delivered signal in ``report_signals``, the end about
        to happen (``stop_at_end``: exit_group or a fatal signal reached but not
        carried out), the process gone, with ``until_event`` any event done, with
        ``stop_before_event`` any event's stop reached ("reached"; the next run
        carries it out). Breakpoints and reported signals are the debugged
        process's only (``debugged``).
        """
        try:
            with self.task.interruptible():
                if self.task.interrupt_requested():
                    return RunStop(StopReason.INTERRUPTED)
                return self._run(step, breakpoints, until_event, report_signals, stop_at_end,
                                 stop_before_event)
        except Divergence as divergence:
            note = random_instructions_note(self._current)
            if note:
                raise Divergence(divergence.event_no, f"{divergence.detail}; {note}") from None
            raise

    def _run(self, step: bool, breakpoints: frozenset[int], until_event: bool,
             report_signals: frozenset[int], stop_at_end: bool,
             stop_before_event: bool) -> RunStop:
        task = self.task
        step_over = (not step and task.reached is None and bool(breakpoints)
                     and task.gone is None and self.is_debugged(task) and task.tracee.get_regs().rip in breakpoints)
        while True:
            if self.end is not None:
                return RunStop(StopReason.EXITED)
            n = self.next_event
            if stop_at_end and n >= len(self.reader) and task.reached is None:
                return RunStop(StopReason.END)  # a cut-short trace: nothing recorded goes further
            event = self._event(n)
            if isinstance(event, CloneEvent) and event.task not in self.tasks:
                self._create_from_parked(n, event)
                self.next_event = n + 1
                if until_event:
                    return RunStop(StopReason.EVENT)
                continue
            task = self._current = self._task_of(n, event)
            stop, task.reached = task.reached, None
            # Another process than the debugged one runs bare: no int3 of the
            # debugger's is ever in its memory, no stop of its is the debugger's.
            armed = breakpoints if self.is_debugged(task) else frozenset()
            if stop is None:
                single = step or step_over
                stop = self._reach(n, event, single, frozenset() if single else armed)
                if task.is_interrupt(stop) and not (
                        isinstance(event, SignalEvent) and event.signo == signal.SIGSTOP):
                    return RunStop(StopReason.INTERRUPTED)
                trap = self._classify_trap(stop, frozenset() if single else armed, single)
                if trap is not None:
                    if step_over and trap.reason == StopReason.STEP:
                        step_over = False
                        continue
                    return trap
                if stop_at_end and self._is_final(n, event):
                    task.reached = stop
                    return RunStop(StopReason.END, signo=getattr(event, "signo", 0))
                if stop_before_event:
                    task.reached = stop
                    return RunStop(StopReason.REACHED)
            self.next_event = n + self._complete(task, n, event, stop)
            self._follow_schedule()
            self._judge_next()
            step_over = False
            if self.end is not None:
                return RunStop(StopReason.EXITED)
            if isinstance(event, SignalEvent):
                if event.signo in report_signals and self.is_debugged(task):
                    return RunStop(StopReason.SIGNAL, signo=event.signo)
            elif step:
                return RunStop(StopReason.STEP)  # the syscall or rdtsc instruction is done
            if until_event:
                return RunStop(StopReason.EVENT)

    def _follow_schedule(self) -> None:
        """Make the task of the next event the current one: the instructions before
        that event are its own (one task runs at a time, in the trace's order)."""
        n = self.next_event
        if self.end is None and n < len(self.reader):
            task = self.tasks.get(self.reader[n].task)
            if task is not None and task.gone is None:
                self._current = task

    def _judge_next(self) -> None:
        """At a boundary before a signal recorded at a precise state, judge it now,
        while the session stands where its judgement starts (PreciseStates)."""
        n = self.next_event
        if self.end is None and n < len(self.reader) and n not in self.precise.verdicts:
            event = self.reader[n]
            if is_precise(event) and event.task == self.task.recorded_tid:
                self.task.deliver_pending()
                self.precise.judge(n, self)

    def _is_final(self, n: int, event: Event) -> bool:
        """Whether carrying out event ``n`` ends the program: an exit, exit_group or
        fatal signal after which the trace holds only the ends of tasks."""
        if isinstance(event, SyscallEvent):
            ends = event.nr in (NR_EXIT, NR_EXIT_GROUP)
        elif isinstance(event, SignalEvent) and n + 1 < len(self.reader):
            after = self.reader[n + 1]
            ends = isinstance(after, ExitEvent) and after.signo == event.signo
        elif isinstance(event, ExitEvent):
            task = self.tasks.get(event.task)
            ends = task is not None and task.gone is None
        else:
            ends = False
        if not ends:
            return False
        for later in range(n + 1, len(self.reader)):
            if not isinstance(self.reader[later], ExitEvent):
                return False
        return True

    def _reach(self, n: int, event: Event, single: bool, breakpoints: frozenset[int]) -> Stop:
        """Resume the current task toward event ``n``; return its stop, or a trap
        that came first."""
        task = self.task
        t = task.tracee
        expect = 0
        if task.recorded_tid in self._creating:
            return Stop("syscall")  # made its child at the CloneEvent (_create_from_parked)
        if isinstance(event, ExitEvent) and (task.gone is not None or
                                             len(self._group_of(task)) > 1):
            return self._reach_death(task)
        if is_precise(event):
            assert isinstance(event, PreciseEvent)
            task.deliver_pending()
            return self._reach_precise_state(n, event, single, breakpoints)
        if isinstance(event, SignalEvent) and event.where == "boundary":
            # Raised once: a step that delivered the signal before it into its
            # handler stops before this one is taken, and a real-time signal
            # raised twice would be queued twice.
            if task.raised != n:
                self._under_temporary_mask(task, n, event)
                tgkill(t.tgid, t.pid, event.signo)
                task.raised = n
            expect = event.signo
        with task.breakpoints_armed(breakpoints):
            return task.resume_until(PTRACE_SYSEMU_SINGLESTEP if single else PTRACE_SYSEMU,
                                     expect=expect, interruptible=True)

    def _under_temporary_mask(self, task: Task, n: int, event: SignalEvent) -> None:
        """Before signal event ``n`` is raised in ``task``: if it interrupted a call
        that blocked with a temporary mask (the event before, of the same task),
        block that mask for its delivery, and have the task put its mask from
        before the call in the frame (TEMPORARY_MASK in replay/task.py)."""
        call = self.reader[n - 1] if n else None
        if not isinstance(call, SyscallEvent) or call.task != task.recorded_tid:
            return
        mask = temporary_mask(task, call)
        if mask is None:
            return
        signo = event.signo
        blocked = task.tracee.get_sigmask()
        # Only a signal the thread's own mask blocks needs the call's: any other is
        # delivered as it is (stop signals, which have no frame, among them).
        if blocked & (1 << (signo - 1)) and signo not in STOP_SIGNALS:
            task.frame_mask = blocked
            task.tracee.set_sigmask(mask)

    def _classify_trap(self, stop: Stop, breakpoints: frozenset[int],
                       single: bool) -> RunStop | None:
        """A SIGTRAP of ours (breakpoint, single step, watchpoint), or None."""
        if stop.kind != "signal" or stop.signo != signal.SIGTRAP:
            return None
        task = self.task
        t = task.tracee
        regs = t.get_regs()
        if regs.rip - 1 in breakpoints:
            regs.rip -= 1
            t.set_regs(regs)
            return RunStop(StopReason.BREAKPOINT, addr=regs.rip)
        # A write that a single step executed traps for both reasons (si_code
        # says TRAP_TRACE then): the debug status register tells a watchpoint.
        slot = task.hardware.take_trigger()
        if slot is not None:
            return RunStop(StopReason.WATCH, watch=slot)
        si_code = int.from_bytes(task.siginfo_of(stop)[8:12], "little", signed=True)
        if single and (si_code == TRAP_TRACE or
                       (task.delivered and si_code == HANDLER_ENTRY_TRAP)):
            return RunStop(StopReason.STEP)  # one instruction, or a signal delivered into its handler
        return None  # the program's own int3: a recorded signal

    def _complete(self, task: Task, n: int, event: Event, stop: Stop) -> int:
        """Carry out event ``n`` in ``task`` from its stop; returns how many events
        that consumed."""
        if isinstance(event, SyscallEvent):
            if event.nr in TASK_CREATORS and task.recorded_tid in self._creating:
                return self._finish_parked_creation(task, n, event)
            if event.nr in TASK_CREATORS:
                return self._replay_clone(task, n, event, stop)
            if event.nr in (NR_EXIT, NR_EXIT_GROUP):
                return self._replay_exit(task, n, event, stop)
            if event.nr == NR_SET_TID_ADDRESS:
                task.clear_tid = event.args[0]
            elif event.nr == NR_SET_ROBUST_LIST and event.result == 0:
                task.robust_list = (event.args[0], event.args[1])
            elif event.nr == NR_PRCTL and event.args[0] == PR_SET_NAME and event.result == 0:
                # The name is read before the call is emulated: the program's buffer
                # is as the recorded call read it.
                name = task.tracee.read_partial(event.args[1], TASK_COMM_LEN - 1)
                task.name = name.split(b"\0", 1)[0].decode(errors="replace")
            return self.syscalls.replay(task, n, event, stop)
        if isinstance(event, SyscallEntryEvent):
            # Parked at the entry until its SyscallEvent: the stop is kept as reached.
            check_syscall(task, n, SyscallEvent(event.task, nr=event.nr, args=event.args),
                          stop)
            for addr, data in event.writes:  # what the kernel stored as the call blocked
                write_output(task, addr, data)
            task.reached = stop
            self._parked[task.recorded_tid] = event
            return 1
        if isinstance(event, PreemptEvent):
            if stop != arrival_stop(event):
                raise Divergence(n, f"recorded a preemption of task {event.task}, replay "
                                    f"{task.describe(stop)}")
            return 1
        if isinstance(event, SignalEvent):
            if stop.kind != "signal" or stop.signo != event.signo:
                raise Divergence(n, f"recorded signal {signal_name(event.signo)}, "
                                    f"replay {task.describe(stop)}")
            task.pending_signal, task.pending_siginfo = event.signo, event.siginfo
        elif isinstance(event, RdtscEvent):
            self._replay_rdtsc(task, n, event, stop)
        elif isinstance(event, ExitEvent):
            if stop.kind not in ("exited", "killed"):
                raise Divergence(n, f"recorded the end of the program, replay "
                                    f"{task.describe(stop)}")
            task.gone = stop
            if self.live_tasks() or self._lingering:
                self._check_exit(n, event, stop)
            else:
                self._reached_end(n, stop)
        else:
            raise Divergence(n, f"unexpected {event.kind} event")
        return 1

    def _resume(self, request: int = PTRACE_SYSEMU, expect: int = 0,
                interruptible: bool = False) -> Stop:
        """The current task's ``resume_until`` (the precise-state search's way to run)."""
        return self.task.resume_until(request, expect=expect, interruptible=interruptible)

    def _next_trap(self, request: int, where: str) -> None:
        """The current task's ``next_trap``."""
        self.task.next_trap(request, where)

    def _describe(self, stop: Stop) -> str:
        return self.task.describe(stop)

    def _reached_end(self, n: int, stop: Stop) -> None:
        """The last task ended; event ``n`` must say the same. The replay's end is
        the first task's."""
        self._check_exit(n, self._event(n), stop)
        root = self.tasks.get(self.root)
        last = root.gone if root is not None and root.gone is not None else stop
        self.end = ReplayEnd(*_end_of(last))

    def _check_exit(self, n: int, recorded_event: Event, stop: Stop) -> None:
        recorded = ((recorded_event.status, recorded_event.signo)
                    if isinstance(recorded_event, ExitEvent) else None)
        actual = _end_of(stop)
        if recorded != actual:
            raise Divergence(n, f"recorded {recorded_event.kind} {recorded}, replay ended with "
                                f"{actual}")

    # -- tasks: creation and death -----------------------------------------------------
    def _group_of(self, task: Task) -> list[Task]:
        """The live tasks of ``task``'s live process."""
        tgid = task.tracee.tgid
        return [other for other in self.live_tasks() if other.tracee.tgid == tgid]

    def _run_call_natively(self, task: Task, n: int, event: SyscallEvent,
                           stop: Stop) -> Stop:
        """Back ``task`` up from the emulated entry of event ``n`` to its syscall
        instruction and let the kernel run it for real: returns the first stop after
        the real entry (the caller resumes it from there)."""
        regs = check_syscall(task, n, event, stop)
        after = regs.rip
        regs.rip -= 2
        regs.rax = regs.orig_rax
        task.tracee.set_regs(regs)
        # From an emulated entry, the first stop is the exit of the skipped call (at
        # the instruction still), then the entry of the real one (after it); from the
        # first stop of a copy, only the entry.
        while True:
            stop = task.resume_until(PTRACE_SYSCALL)
            if stop.kind != "syscall":
                raise Divergence(n, f"{format_call(event.nr, event.args)} ended in "
                                    f"{task.describe(stop)}")
            if task.tracee.get_regs().rip == after:
                return stop

    def _replay_clone(self, task: Task, n: int, event: SyscallEvent, stop: Stop) -> int:
        """Run a clone, clone3, fork or vfork for real, with the recorded flags and
        arguments, and make the new task the recorded one: its tid where the program
        stored it is the recorded tid (the recorded writes on both sides)."""
        after = self.reader[n + 1] if n + 1 < len(self.reader) else None
        if is_error(event.result):
            check_syscall(task, n, event, stop)
            regs = task.tracee.get_regs()
            regs.rax = event.result & 0xFFFFFFFFFFFFFFFF
            regs.r11 &= ~TRAP_FLAG
            task.tracee.set_regs(regs)
            return 1
        if not isinstance(after, CloneEvent) or after.parent != task.recorded_tid:
            raise Divergence(n + 1, f"{format_call(event.nr, event.args)} without its clone "
                                    "event")
        child = self._create(task, n, event, stop, after)
        self._finish_call(task, n, event)
        self._adopt_child(task, event, after, child)
        return 2

    def _create(self, task: Task, n: int, call: SyscallEvent, stop: Stop,
                clone: CloneEvent) -> Tracee:
        """Run creation call ``call`` of ``task`` natively from its entry ``stop`` to
        the PTRACE_EVENT stop of the new task; returns the new task, attached."""
        t = task.tracee
        self._run_call_natively(task, n, call, stop)
        put_back = _without_namespaces(t, call)
        created = task.resume_until(PTRACE_SYSCALL)
        if created.kind != "event" or created.event not in PTRACE_CREATION_EVENTS:
            raise Divergence(n, f"{format_call(call.nr, call.args)} created no task in "
                                f"replay ({task.describe(created)})")
        child_tid = t.geteventmsg()
        child = Tracee.attached(child_tid, t.tgid if clone.flags & CLONE_THREAD else child_tid)
        for side in (t, child):
            put_back(side)
        return child

    def _finish_call(self, task: Task, n: int, call: SyscallEvent) -> None:
        """Run ``task`` to the exit of its creation call and give it the recorded result
        and writes."""
        t = task.tracee
        done = task.resume_until(PTRACE_SYSCALL)
        if done.kind != "syscall":
            raise Divergence(n, f"{format_call(call.nr, call.args)} did not return in "
                                f"replay ({task.describe(done)})")
        regs = t.get_regs()
        regs.rax = call.result & 0xFFFFFFFFFFFFFFFF
        regs.r11 &= ~TRAP_FLAG
        t.set_regs(regs)
        for addr, data in call.writes:
            write_output(task, addr, data)

    def _adopt_child(self, task: Task, call: SyscallEvent,
                     after: CloneEvent, child: Tracee) -> Task:
        """Make ``child`` the recorded task ``after`` names."""
        flags = after.flags
        assert task.space is not None
        space = task.space if flags & CLONE_VM else task.space.copy()
        new = self._add_task(Task(child, after.task, space, recorded_pid=after.process))
        new.interruption = self._interruption
        new.name = task.name  # a clone's comm is its creator's
        if flags & CLONE_CHILD_CLEARTID:
            new.clear_tid = _child_tid_pointer(task.tracee, call)
        if not flags & CLONE_VM:
            rebacked(new)  # its own pages: see SyscallReplay._mmap_family
        if after.process != task.recorded_pid:
            self.echoed[after.process] = self._echoed_in(task.recorded_pid).copy()
        for addr, data in after.writes:
            write_output(new, addr, data)
        return new

    def _create_from_parked(self, n: int, clone: CloneEvent) -> None:
        """A CloneEvent whose parent is parked at the entry of the call (vfork, and
        posix_spawn's clone3 with CLONE_VFORK, sleep in the kernel until the child
        execs or exits: the recorder parked them). The child is made now; a parent
        that sleeps is resumed and left to wake, and its SyscallEvent, later,
        finds it at the call's exit."""
        parent = self.tasks.get(clone.parent)
        entry = self._parked.get(clone.parent)
        if parent is None or entry is None or parent.reached is None:
            raise Divergence(n, f"a clone event of task {clone.task}, whose parent "
                                f"{clone.parent} is in no creation call")
        stop, parent.reached = parent.reached, None
        call = SyscallEvent(entry.task, nr=entry.nr, args=entry.args)
        child = self._create(parent, n, call, stop, clone)
        self._creating[clone.parent] = bool(clone.flags & CLONE_VFORK)
        if clone.flags & CLONE_VFORK:
            parent.tracee.resume(PTRACE_SYSCALL)
        self._adopt_child(parent, call, clone, child)

    def _finish_parked_creation(self, task: Task, n: int, event: SyscallEvent) -> int:
        """The SyscallEvent of a creation call whose child was made at its CloneEvent."""
        asleep = self._creating.pop(task.recorded_tid)
        self._parked.pop(task.recorded_tid, None)
        if asleep:  # resumed at the child's creation: its next stop is the call's exit
            while (stop := task.tracee.wait()).kind == "signal":
                task.tracee.resume(PTRACE_SYSCALL)  # a stray (the child's SIGCHLD)
            if stop.kind != "syscall":
                raise Divergence(n, f"{format_call(event.nr, event.args)} did not return "
                                    f"in replay ({task.describe(stop)})")
            regs = task.tracee.get_regs()
            regs.rax = event.result & 0xFFFFFFFFFFFFFFFF
            regs.r11 &= ~TRAP_FLAG
            task.tracee.set_regs(regs)
            for addr, data in event.writes:
                write_output(task, addr, data)
        else:
            self._finish_call(task, n, event)
        return 1

    def _replay_exit(self, task: Task, n: int, event: SyscallEvent, stop: Stop) -> int:
        """Run exit or exit_group for real and reap the tasks it ends; their
        ExitEvents, which follow, compare how each ended."""
        # A thread's exit is complete before the next event (the kernel has cleared
        # its CLONE_CHILD_CLEARTID word, which a join reads in user code): the
        # recorder reaps it before another task runs (TASKS_CONTRACT).
        dying = self._group_of(task) if event.nr == NR_EXIT_GROUP else [task]
        self._run_call_natively(task, n, event, stop)
        task.tracee.resume(PTRACE_CONT)
        self._reap(dying)
        if n + 1 < len(self.reader) and isinstance(self.reader[n + 1], ExitEvent) \
                and self.reader[n + 1].task == task.recorded_tid and not self.live_tasks() \
                and not self._lingering:
            # The program's end: its ExitEvent is carried out with the call.
            assert task.gone is not None
            self._reached_end(n + 1, task.gone)
            return 2
        return 1

    def _reach_death(self, task: Task) -> Stop:
        """The stop an ExitEvent of ``task`` finds: how it ended, when a group exit
        already reaped it, or else (a fatal signal, a kill) after resuming it to
        its death and reaping its whole process."""
        if task.gone is None and task.recorded_tid not in self._lingering:
            # A fatal signal kills the whole group from the thread it is pending on,
            # which need not be this one (a worker that never ran, killed by the
            # main thread's abort): that thread is resumed into it too.
            group = self._group_of(task)
            for dying in [task, *(other for other in group
                                  if other is not task and other.pending_signal)]:
                signo, dying.pending_signal = dying.pending_signal, 0
                if signo:
                    dying.tracee.set_siginfo(dying.pending_siginfo)
                dying.tracee.resume(PTRACE_CONT, signo)
            self._reap(group)
        elif task.gone is None:
            self._reap([task])
        if task.gone is None:
            raise TraceeError(f"task {task.recorded_tid} did not end")
        return task.gone

    def _reap(self, dying: list[Task]) -> None:
        """Wait for each of ``dying`` (resumed into their end) to be gone. A leader
        whose other threads go on is reaped once they are gone too."""
        for task in sorted(dying, key=lambda task: task.is_leader):
            if task.is_leader and any(other.tracee.tgid == task.tracee.tgid
                                      and other not in dying and other is not task
                                      for other in self.live_tasks()):
                self._lingering.add(task.recorded_tid)
                continue
            task.gone = _wait_for_death(task)
            task.reached = None  # a parked call's stop, which its death ended
            self._lingering.discard(task.recorded_tid)
        for tid in list(self._lingering):
            leader = self.tasks[tid]
            if len(self._group_of(leader)) == 1:
                leader.gone = _wait_for_death(leader)
                leader.reached = None
                self._lingering.discard(tid)

    def _echo_once(self, n: int, event: SyscallEvent, task: Task) -> None:
        """Echo event ``n``'s output if it lies beyond the frontier (see EchoFrontier)."""
        frontier = self.frontier
        echo = self.echo
        if frontier is not None:
            echo = echo and n >= frontier.event
            frontier.event = max(frontier.event, n + 1)
        echo_output(event, self._echoed_in(task.recorded_pid), echo, task)

    def _echoed_in(self, pid: int) -> EchoedFds:
        return self.echoed.setdefault(pid, EchoedFds())

    @property
    def present(self) -> Task:
        """The task the replay is in, or when that thread has just ended (its exit
        event is next) or belongs to another process than the debugged one, the
        first live one of the debugged process (of its own, when every process
        is): what a debugger looks at."""
        task = self.task
        if task.gone is None and self.is_debugged(task):
            return task
        pid = task.recorded_pid if self.debugged is None else self.debugged
        return next((t for t in self.live_tasks() if t.recorded_pid == pid), task)

    def debugged_alive(self) -> bool:
        """Whether a task of the debugged process lives."""
        return any(self.is_debugged(task) for task in self.live_tasks())

    def read_memory(self, addr: int, length: int) -> bytes:
        """The program's memory as the recording saw it (as much as is readable):
        the traps on recorded rdrand/rdseed sites show as the instructions."""
        task = self.present
        data = task.tracee.read_partial(addr, length)
        traps = task.space.random_traps if task.space is not None else {}
        for pc, (_, original) in traps.items():
            if addr - len(original) < pc < addr + len(data):
                patched = bytearray(data)
                for i, byte in enumerate(original):
                    if 0 <= pc + i - addr < len(data):
                        patched[pc + i - addr] = byte
                data = bytes(patched)
        return data

    # -- signals and rdtsc ------------------------------------------------------------------
    def _at_precise_state(self, event: PreciseEvent) -> bool:
        """Whether the task stands in the recorded state of ``event`` (an asynchronous
        signal's, a preemption's)."""
        return in_state(self.process, RecordedState.of_event(event))

    def _reach_precise_state(self, n: int, event: PreciseEvent, single: bool,
                             breakpoints: frozenset[int]) -> Stop:
        """``_reach`` for a signal recorded at a precise state: its delivery stop when
        the task is in that state, else one step (``single``) or a run that stops at
        the state or at a trap that comes first (replay/precise.py)."""
        if not event.regs or not event.digest:
            raise TraceError(f"event {n}: an event in user code without its recorded state")
        if self._at_precise_state(event):
            return arrival_stop(event)
        if self.precise.verdict(n, self).arrivals is None:
            return self._restore_precise_state(n, event, event.regs)
        if single:
            return self._resume(PTRACE_SYSEMU_SINGLESTEP, interruptible=True)
        found = self.precise.reach(n, self, RecordedState.of_event(event), breakpoints)
        if found is None:  # judged reachable from its boundary, so from here too
            raise Divergence(n, f"the recorded state of {describe_event(event)} at pc "
                                f"{registers_from_bytes(event.regs).rip:#x} was not reached")
        return found

    def _run_to_precise_state(self, n: int, event: PreciseEvent, breakpoints: frozenset[int],
                              limit: int) -> Stop | None:
        """Break at the recorded pc until registers and memory match the recording;
        None after ``limit`` passes. A trap at another of ``breakpoints``, a
        watchpoint or any other stop on the way is returned as it came.

        A loop that spins until the signal comes passes the pc once per
        iteration, and nothing tells which pass is the recorded one but
        comparing states: between two events only the program's own
        instructions change registers and writable memory, so the first pass
        in the recorded state is the recorded delivery, with the recorded future.
        """
        assert event.regs is not None
        t = self.process
        pc = registers_from_bytes(event.regs).rip
        armed = breakpoints | {pc}
        for _ in range(limit):
            saved = {addr: t.read(addr, 1) for addr in armed}
            for addr in saved:
                t.write(addr, b"\xcc")
            try:
                stop = self._resume(interruptible=True)
            finally:
                if t.alive:
                    for addr, byte in saved.items():
                        t.write(addr, byte)
            if stop.kind != "signal" or stop.signo != signal.SIGTRAP:
                return stop
            regs = t.get_regs()
            if regs.rip - 1 != pc:
                return stop  # a user breakpoint, a watchpoint, the program's own int3
            regs.rip = pc
            if registers_to_bytes(regs) == event.regs:
                t.set_regs(regs)
                if has_memory_digest(t, event.digest):
                    # This SIGTRAP stop becomes the recorded signal's delivery.
                    return arrival_stop(event)
            if pc in breakpoints:
                return stop  # the user's breakpoint there, in another state
            t.set_regs(regs)
            self._next_trap(PTRACE_SYSEMU_SINGLESTEP, f"stepping over pc {pc:#x} for the state "
                                                      f"of event {n}")
            if t.get_debugreg(6) & 0xF:
                return t.last_stop  # the instruction triggered a watchpoint: the caller's
        return None

    def _restore_precise_state(self, n: int, event: PreciseEvent, recorded_regs: bytes) -> Stop:
        """Write the recorded state of event ``n`` into the task and deliver its signal
        there: the last resort when execution does not reach it (see PreciseStates)."""
        t = self.process
        for addr, data in RecordedState.of_event(event).memory:
            t.write(addr, data)
        t.set_regs(registers_from_bytes(recorded_regs))
        if event.xstate:
            t.set_xstate(event.xstate)
        if not has_memory_digest(t, event.digest):
            raise Divergence(n, f"the recorded state of {describe_event(event)} cannot be "
                                "restored")
        if not isinstance(event, SignalEvent):
            return arrival_stop(event)
        tgkill(t.tgid, t.pid, event.signo)
        return self._resume(expect=event.signo)


    def _replay_random(self, task: Task, n: int, event: RandomEvent, stop: Stop) -> None:
        t = task.tracee
        regs = t.get_regs()
        trap = task.space.random_traps.get(regs.rip) if task.space is not None else None
        if stop.kind != "signal" or stop.signo != signal.SIGILL or trap is None \
                or regs.rip != event.pc:
            raise Divergence(n, f"recorded {event.mnemonic} at {event.pc:#x}, replay "
                                f"{task.describe(stop)}")
        apply_random(regs, trap[0], event.value, event.carry)
        t.set_regs(regs)

    def _replay_rdtsc(self, task: Task, n: int, event: RdtscEvent, stop: Stop) -> None:
        if isinstance(event, RandomEvent):
            self._replay_random(task, n, event, stop)
            return
        t = task.tracee
        regs = t.get_regs()
        insn = decode_rdtsc(t.read_partial(regs.rip, 3)) if stop.kind == "signal" else None
        if stop.signo != signal.SIGSEGV or insn is None or regs.rip != event.pc:
            raise Divergence(n, f"recorded rdtsc at {event.pc:#x}, replay {task.describe(stop)}")
        regs.rax = event.value & 0xFFFFFFFF
        regs.rdx = event.value >> 32
        if event.aux is not None:
            regs.rcx = event.aux
        regs.rip += insn[1]
        t.set_regs(regs)


def _end_of(stop: Stop) -> tuple[int | None, int | None]:
    """(exit status, killing signal) of a task's last stop."""
    return (stop.status, None) if stop.kind == "exited" else (None, stop.signo)


def _wait_for_death(task: Task) -> Stop:
    """The stop that reports ``task``'s end; any other stop on the way (a signal
    about to be delivered to a thread the group's exit is killing) is resumed."""
    while True:
        stop = task.tracee.wait()
        if stop.kind in ("exited", "killed"):
            return stop
        with contextlib.suppress(OSError):
            task.tracee.resume(PTRACE_CONT)


def _without_namespaces(t: Tracee, call: SyscallEvent) -> Callable[[Tracee], None]:
    """Take the namespace flags out of creation call ``call``, stopped at its real
    entry in ``t``; returns what puts the program's own flags back in a task of
    the call (the parent, and the child, which the kernel made from the changed
    registers or memory).

    Replay answers every call of the child from the trace, so it needs none of
    the namespaces; and a child in a user namespace of its own may not open the
    replayer's trace files (/proc/PID/fd of the replayer: EACCES), which
    rebuilding its mappings does."""
    if call.nr == NR_CLONE:
        regs = t.get_regs()
        flags = regs.rdi
        if not flags & NAMESPACE_FLAGS:
            return lambda side: None
        regs.rdi = flags & ~NAMESPACE_FLAGS
        t.set_regs(regs)

        def put_back(side: Tracee) -> None:
            side_regs = side.get_regs()
            side_regs.rdi = flags
            side.set_regs(side_regs)
        return put_back
    if call.nr == NR_CLONE3:
        where = t.get_regs().rdi  # struct clone_args, its flags first
        original = t.read(where, 8)
        flags = int.from_bytes(original, "little")
        if not flags & (NAMESPACE_FLAGS | CLONE_NEWTIME):
            return lambda side: None
        t.write(where, (flags & ~(NAMESPACE_FLAGS | CLONE_NEWTIME)).to_bytes(8, "little"))
        return lambda side: side.write(where, original)
    return lambda side: None


def _child_tid_pointer(t: Tracee, event: SyscallEvent) -> int:
    """Where a clone asked the kernel to clear the child's tid at its exit: clone's
    fourth argument, clone3's ``child_tid`` in its struct clone_args."""
    if event.nr == NR_CLONE3:
        return int.from_bytes(t.read(event.args[0] + 16, 8), "little")
    return event.args[3]


def _copy_thread_state(task: Task, twin: Task) -> None:
    """Give ``twin``, a thread just made in a copy of ``task``'s process, what the
    kernel keeps of ``task`` in user-visible registers and its signal mask."""
    t = task.tracee
    twin.tracee.set_regs(t.get_regs())
    twin.tracee.set_xstate(t.get_xstate())
    blocked = _signal_mask(t.pid)
    assert twin.space is not None
    scratch = twin.space.page + rpage.SCRATCH_OFFSET
    twin.tracee.write(scratch, blocked.to_bytes(8, "little"))
    twin.inject(NR_RT_SIGPROCMASK, SIG_SETMASK, scratch, 0, 8)


def _restore_thread_kernel_state(twin: Task, task: Task) -> None:
    """The clear-tid word and robust futex list, which neither fork nor clone copies."""
    if task.clear_tid:
        twin.inject(NR_SET_TID_ADDRESS, task.clear_tid)
    if task.robust_list is not None:
        twin.inject(NR_SET_ROBUST_LIST, *task.robust_list)


def _signal_mask(tid: int) -> int:
    """The blocked-signal mask of live thread ``tid`` (/proc/TID/status, SigBlk)."""
    with open(f"/proc/{tid}/status") as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
    raise TraceeError(f"no signal mask for thread {tid}")


def _random_sites(reader: TraceReader) -> frozenset[int]:
    """Where the recording emulated rdrand/rdseed (none in a trace cut short)."""
    sites = reader.metadata.get("random_sites", [])
    if not isinstance(sites, list) or not all(isinstance(pc, int) and pc > 0 for pc in sites):
        raise TraceError(f"{reader.directory}/metadata.json: bad random_sites {sites!r}")
    return frozenset(sites)


def replay_autopilot(path: Path, *, echo: bool = True, verbose: bool = False,
                     check_maps: bool = False) -> int:
    """Replay a trace to its end with no debugger; returns the recorded exit status."""
    with TraceReader(path) as reader, ReplaySession(reader, echo=echo,
                                                    check_maps=check_maps) as session, \
            contextlib.closing(session.precise):
        session.precise.announce = lambda note: print(f"retrograde: {note}", file=sys.stderr)
        try:
            session.start()
            end = session.run_to_end()
        except Divergence as error:
            print(f"retrograde: {error}", file=sys.stderr)
            return 2
        except TraceEnds as error:
            print(f"retrograde: replayed everything there is: {error}", file=sys.stderr)
            return 1
        if verbose:
            print(f"retrograde: replayed {session.next_event + 1} events", file=sys.stderr)
    if end.exit_signal is not None:
        print(f"retrograde: the program was terminated by signal "
              f"{signal_name(end.exit_signal)}", file=sys.stderr)
        return 128 + end.exit_signal
    return end.exit_status or 0
