"""A replay session: one replay process, advanced event by event through a trace.

Syscalls are emulated under PTRACE_SYSEMU: the kernel stops at each syscall
entry and skips the call; the session checks the number and arguments against
the trace, stores the recorded result in rax and writes the recorded output
bytes. Calls whose effect lives in the task's own kernel state (the mmap
family, signal dispositions and masks, sigreturn, exit) are carried out for
real, the mmap family at the recorded addresses and from the trace's copies of
files. Every exec, the first included, is emulated (seed 001): the session
execs its own stub, unmaps everything but the retrograde page and rebuilds the
recorded address space, so the recorded executable need not exist.

Invariant between events: the task is stopped at a ptrace stop from which
``inject_syscall`` is allowed, and ``pending_signal`` is the signal the next
resume must deliver (the task is then at that signal's delivery stop).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from retrograde.trace.dump import signal_name
from retrograde.trace.events import (
    Event,
    ExecEvent,
    ExitEvent,
    MappingRecord,
    RandomEvent,
    RdtscEvent,
    SignalEvent,
    SyscallEvent,
)
from retrograde.trace.format import TraceError, TraceReader, data_ranges
from retrograde.trace.output import (
    FROM_MEMORY,
    EchoedFds,
    file_offset,
    output_fd,
    written_from_memory,
)
from retrograde.tracee import page as rpage
from retrograde.tracee.cpu import (
    RandomInstruction,
    apply_random,
    cpuid_warning,
    decode_random,
    decode_rdtsc,
    find_random_instructions,
    has_random_instructions,
)
from retrograde.tracee.maps import (
    memory_digest,
    page_up,
    parse_maps,
    writable_memory,
    writable_memory_digest,
)
from retrograde.tracee.perf import ArrivalCounter, PerfUnavailable, Place, counter_for
from retrograde.tracee.process import (
    PTRACE_CONT,
    PTRACE_SYSCALL,
    PTRACE_SYSEMU,
    PTRACE_SYSEMU_SINGLESTEP,
    LaunchState,
    Stop,
    Tracee,
    TraceeError,
    fork_clone,
)
from retrograde.tracee.registers import (
    Registers,
    registers_from_bytes,
    registers_to_bytes,
    syscall_args,
)
from retrograde.tracee.syscalls import EXECUTED_IN_REPLAY, MMAP_FAMILY, syscall_name, syscall_number

from .address_space import AddressSpace, Mapping, prot_perms
from .stub import write_stub

NR = {name: syscall_number(name) for name in (
    "mmap", "munmap", "mprotect", "mremap", "brk", "madvise", "openat", "close", "execve",
    "execveat", "exit", "exit_group", "rt_sigreturn", "shmat", "shmdt", "memfd_create",
    "ftruncate")}
NATIVE = {NR["rt_sigreturn"], NR["exit"], NR["exit_group"]}  # must run from the program's own pc
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_GROWSDOWN = 0x1, 0x2, 0x10, 0x20, 0x100
MAP_KEPT_FLAGS = MAP_ANONYMOUS | MAP_GROWSDOWN | 0x4000 | 0x8000 | 0x20000  # NORESERVE POPULATE STACK
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4
AT_FDCWD = -100
PRECISE_SEARCH_LIMIT = 200
TRAP_TRACE = 2  # si_code of a single-step trap
# si_code of the trap a single step that delivered a signal reports at the first
# instruction of its handler, which has not run yet: the kernel's signal_delivered
# calls ptrace_notify(SIGTRAP), whose siginfo carries the exit code SIGTRAP.
HANDLER_ENTRY_TRAP = signal.SIGTRAP
TRAP_FLAG = 0x100  # EFLAGS.TF
RESUME_FLAG = 0x10000  # EFLAGS.RF
_OFF_T_LIMIT = 1 << 63  # /proc/PID/mem offsets are off_t: no address above is readable
UD2 = b"\x0f\x0b"  # faults with SIGILL: the trap on a recorded rdrand/rdseed
ALL_SIGNALS = frozenset(range(1, 65))
SYNCHRONOUS_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                                 signal.SIGTRAP})


class Divergence(Exception):
    """The replay no longer follows the recording; the message names the event."""

    def __init__(self, event_no: int, message: str) -> None:
        super().__init__(f"replay diverged at event {event_no}: {message}")
        self.event_no = event_no
        self.detail = message


class Interruption:
    """Lets another thread stop whichever replay process of a timeline is running.

    ``set`` records the request and sends SIGSTOP to the processes inside
    ``ReplaySession.run`` (a debugger's Ctrl-C comes from the server's I/O
    thread, which must not use ptrace); the session sees the stop and returns
    "interrupted". A SIGSTOP that arrives after the request was cleared is a
    stray signal and is discarded like any other.
    """

    def __init__(self) -> None:
        self._requested = threading.Event()
        self.running: set[int] = set()

    def set(self) -> None:
        self._requested.set()
        for pid in list(self.running):
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass

    def is_set(self) -> bool:
        return self._requested.is_set()

    def clear(self) -> None:
        self._requested.clear()


@dataclass
class EchoFrontier:
    """The first event whose output no session sharing this frontier has echoed: a
    timeline's sessions echo output once, as the replay first gets there, however
    often they go back over it."""

    event: int = 0


class PreciseStates:
    """Which asynchronous signals recorded at a precise state a replay reaches by
    execution, shared by every session of one replay (clones included).

    Each is judged once, from a clone at the boundary before it: the recorded
    state reached within PRECISE_SEARCH_LIMIT passes of its pc, or not. When
    not, every session restores the recorded state at that boundary, before
    any instruction of the interval runs, so all paths through the interval
    are the same history: the instructions the recording ran there are not in
    it. ``notes`` says so, one line each, and ``announce`` is called with each.
    """

    def __init__(self) -> None:
        self.verdicts: dict[int, bool] = {}
        self.notes: list[str] = []
        self.announce: Callable[[str], None] | None = None

    def reachable(self, n: int, session: ReplaySession) -> bool:
        if n not in self.verdicts:
            self.judge(n, session)
        return self.verdicts[n]

    def judge(self, n: int, session: ReplaySession) -> None:
        """Judge event ``n`` from ``session``, which stands at the boundary before it."""
        event = session.reader[n]
        assert isinstance(event, SignalEvent) and event.regs is not None
        with session.clone() as trial:
            trial.interruption = None
            stop = trial._run_to_precise_state(n, event, frozenset(), PRECISE_SEARCH_LIMIT)
        # Any stop but the search's end is the replay's to report, by execution.
        self.verdicts[n] = stop is not None
        if stop is None:
            pc = registers_from_bytes(event.regs).rip
            note = (f"event {n}: {signal_name(event.signo)} was delivered by restoring its "
                    f"recorded state: execution did not reach it within "
                    f"{PRECISE_SEARCH_LIMIT} passes of pc {pc:#x}, and the instructions "
                    f"the recording ran there after event {n - 1} are not in the history")
            self.notes.append(note)
            if self.announce is not None:
                self.announce(note)


@dataclass(frozen=True)
class RunStop:
    """Why ``ReplaySession.run`` returned."""

    reason: str  # "breakpoint" | "step" | "watch" | "signal" | "event" | "end" | "exited" |
    #              "reached" | "interrupted"
    addr: int = 0  # the breakpoint's address
    signo: int = 0
    watch: int = -1  # the debug register (0-3) that triggered


class TraceEnds(Exception):
    """The trace stops before the program did: the recorder was killed or stopped early."""

    def __init__(self, event_no: int) -> None:
        super().__init__(f"the trace ends at event {event_no}, before the program did (the "
                         "recording was cut short)")
        self.event_no = event_no


@dataclass(frozen=True)
class ReplayEnd:
    exit_status: int | None
    exit_signal: int | None


class _ApartFromTracer:
    """Keeps task ``pid`` and this thread on different CPUs while it is entered:
    a task the tracer wakes is otherwise often queued on the tracer's CPU, and
    a slice of its running then lasts as long as the scheduler pleases."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpus = sorted(os.sched_getaffinity(0))

    def __enter__(self) -> Self:
        if len(self.cpus) > 1:
            os.sched_setaffinity(self.pid, self.cpus[-1:])
            os.sched_setaffinity(0, self.cpus[:-1])
        return self

    def __exit__(self, *exc: object) -> None:
        if len(self.cpus) > 1:
            os.sched_setaffinity(0, self.cpus)
            with contextlib.suppress(ProcessLookupError):  # the task may be gone
                os.sched_setaffinity(self.pid, self.cpus)

    @contextlib.contextmanager
    def relaxed(self) -> Iterator[None]:
        """Every CPU for the task meanwhile: clones it makes now inherit that."""
        if len(self.cpus) > 1:
            os.sched_setaffinity(self.pid, self.cpus)
        try:
            yield
        finally:
            if len(self.cpus) > 1:
                os.sched_setaffinity(self.pid, self.cpus[-1:])


def perms_prot(perms: str) -> int:
    """The PROT_* bits of a /proc/PID/maps permission string."""
    return sum(bit for c, bit in (("r", 1), ("w", 2), ("x", 4)) if c in perms[:3])


def format_call(nr: int, args: tuple[int, ...]) -> str:
    return f"{syscall_name(nr)}({', '.join(hex(a) for a in args)})"


class ReplaySession:
    """Owns one replay process; ``close`` (or the context manager) kills it."""

    def __init__(self, reader: TraceReader, *, echo: bool = False, check_maps: bool = False,
                 tracee: Tracee | None = None) -> None:
        self.reader = reader
        self.echo = echo
        self.check_maps = check_maps
        self.tracee = tracee
        self.next_event = 0
        self.pending_signal = 0
        self.pending_siginfo = b""
        self.delivered = 0  # the signal the last resume delivered
        self.raised = -1  # the event whose signal is raised and pending in the task (a fork
        #                   clone does not inherit it)
        self.space: AddressSpace | None = None
        self.brk = 0
        self.page = 0
        self.end: ReplayEnd | None = None
        self.reached: Stop | None = None  # next event's stop, reached but not carried out
        self.interruption: Interruption | None = None  # shared with the other sessions of a timeline
        self.precise = PreciseStates()
        self.frontier: EchoFrontier | None = None  # None: echo every time
        self.echoed = EchoedFds()
        # Shared objects with more than one view (MappingRecord.shared), and the memfd
        # in the replay process that backs all their views, with its size.
        self.shared_objects: dict[str, tuple[int, int]] = {}
        # The recording's emulated rdrand/rdseed sites, and those trapped (ud2) here.
        self.random_sites = _random_sites(reader)
        self.random_traps: dict[int, tuple[RandomInstruction, bytes]] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def process(self) -> Tracee:
        """The replay process; TraceeError if the session has none (not started)."""
        if self.tracee is None:
            raise TraceeError("the replay has not been started")
        return self.tracee

    @property
    def _space(self) -> AddressSpace:
        """The recorded address space, known from the replay's first exec on."""
        if self.space is None:
            raise TraceeError("the replay has not been started")
        return self.space

    def close(self) -> None:
        if self.tracee is not None:
            self.tracee.kill()

    # -- checkpoints --------------------------------------------------------------------
    def clone(self) -> ReplaySession:
        """A copy of this replay at the same position: a checkpoint, or a restore of one.

        The copy is a fork of the replay process (injected at the retrograde
        page) plus the session's own state. A checkpoint is a clone that is
        kept stopped and never run; restoring it is cloning it again and
        running the new copy, so one checkpoint serves any number of restores.
        """
        if self.end is not None or self.tracee is None:
            raise TraceeError("cannot checkpoint a replay whose program has ended")
        child = fork_clone(self.tracee, self.page + rpage.SYSCALL_OFFSET)
        copy = ReplaySession(self.reader, echo=self.echo, check_maps=self.check_maps,
                             tracee=child)
        copy.next_event = self.next_event
        copy.pending_signal, copy.pending_siginfo = self.pending_signal, self.pending_siginfo
        copy.space = self.space.copy() if self.space else None
        copy.brk, copy.page = self.brk, self.page
        copy.precise = self.precise
        copy.frontier = self.frontier
        copy.echoed = self.echoed.copy()
        copy.shared_objects = dict(self.shared_objects)
        for name in list(copy.shared_objects):
            if copy._is_aliased(name):
                copy._back_shared_object(name)  # its own pages: see _replay_mmap_family
        copy.random_traps = dict(self.random_traps)
        copy.reached = self.reached
        copy.interruption = self.interruption
        return copy

    def state_digest(self, *, resume_flag: bool = True) -> bytes:
        """Registers, extended state and writable memory: equal digests, equal states.

        The XSAVE header's XSTATE_BV (bytes 512-519) is left out: it says which
        register groups the CPU considers in their initial state, which a fork
        may change without changing any register. Without ``resume_flag``,
        EFLAGS.RF is left out too: the CPU sets it in the state a fault stops
        at, and a single step onto the same instruction leaves it clear.
        """
        t = self.process
        xstate = t.get_xstate()
        xstate = xstate[:512] + bytes(8) + xstate[520:]
        regs = t.get_regs()
        if not resume_flag:
            regs.eflags &= ~RESUME_FLAG
        return memory_digest([(0, registers_to_bytes(regs)), (1, xstate), *writable_memory(t)])

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
        self.tracee = Tracee.spawn([str(stub)], env={}, isolate=True, launch=launch)
        warning = cpuid_warning(self.reader.metadata.get("cpuid"))
        if warning:
            print(f"retrograde: {warning}", file=sys.stderr, flush=True)
        self._finish_stub_exec(first)
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
        carries it out).
        """
        try:
            with self._interruptible():
                if self.interruption is not None and self.interruption.is_set():
                    return RunStop("interrupted")
                return self._run(step, breakpoints, until_event, report_signals, stop_at_end,
                                 stop_before_event)
        except Divergence as divergence:
            note = self._random_instructions_note()
            if note:
                raise Divergence(divergence.event_no, f"{divergence.detail}; {note}") from None
            raise

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        """While entered, an interrupt request stops this session's process (SIGSTOP).
        The process is registered before the caller checks the request, so a request
        made at any moment is either seen by that check or sent as a SIGSTOP."""
        interruption = self.interruption
        if interruption is None:
            yield
            return
        pid = self.process.pid
        interruption.running.add(pid)
        try:
            yield
        finally:
            interruption.running.discard(pid)

    def _check_interrupt(self) -> None:
        if self.interruption is not None and self.interruption.is_set():
            raise KeyboardInterrupt

    def _run(self, step: bool, breakpoints: frozenset[int], until_event: bool,
             report_signals: frozenset[int], stop_at_end: bool,
             stop_before_event: bool) -> RunStop:
        step_over = (not step and self.reached is None and bool(breakpoints)
                     and self.process.get_regs().rip in breakpoints)
        while True:
            if self.end is not None:
                return RunStop("exited")
            n = self.next_event
            if stop_at_end and n >= len(self.reader) and self.reached is None:
                return RunStop("end")  # a cut-short trace: nothing recorded goes further
            event = self._event(n)
            stop, self.reached = self.reached, None
            if stop is None:
                single = step or step_over
                stop = self._reach(n, event, single, frozenset() if single else breakpoints)
                if stop.kind == "signal" and stop.signo == signal.SIGSTOP and not (
                        isinstance(event, SignalEvent) and event.signo == signal.SIGSTOP):
                    return RunStop("interrupted")
                trap = self._classify_trap(stop, frozenset() if single else breakpoints, single)
                if trap is not None:
                    if step_over and trap.reason == "step":
                        step_over = False
                        continue
                    return trap
                if stop_at_end and self._is_final(n, event):
                    self.reached = stop
                    return RunStop("end", signo=getattr(event, "signo", 0))
                if stop_before_event:
                    self.reached = stop
                    return RunStop("reached")
            self.next_event = n + self._complete(n, event, stop)
            self._judge_next()
            step_over = False
            if self.end is not None:
                return RunStop("exited")
            if isinstance(event, SignalEvent):
                if event.signo in report_signals:
                    return RunStop("signal", signo=event.signo)
            elif step:
                return RunStop("step")  # the syscall or rdtsc instruction is done
            if until_event:
                return RunStop("event")

    def _judge_next(self) -> None:
        """At a boundary before a signal recorded at a precise state, judge it now,
        while the session stands where its judgement starts (PreciseStates)."""
        n = self.next_event
        if self.end is None and n < len(self.reader) and n not in self.precise.verdicts:
            event = self.reader[n]
            if isinstance(event, SignalEvent) and event.where == "precise":
                self.precise.judge(n, self)

    def single_steps(self, limit: int, stop_at: int | None = None) -> tuple[int, bool]:
        """Single-step up to ``limit`` instructions of the program's own code, the
        fast way; with ``stop_at``, stop after the step that arrives there.

        Returns (instructions done, arrived at ``stop_at``). The caller knows that
        no event comes within those instructions (a mark's segment never crosses
        one) and that nothing is pending (``reached``, a signal to deliver).
        """
        if self.reached is not None or self.pending_signal:
            raise TraceeError("single_steps needs a task with nothing pending")
        t = self.process
        for done in range(1, limit + 1):
            if done % 64 == 1:
                self._check_interrupt()  # a step is too short for a SIGSTOP to land in
            self._next_trap(PTRACE_SYSEMU_SINGLESTEP, "while stepping inside an interval")
            if stop_at is not None and t.get_regs().rip == stop_at:
                return done, True
        return limit, False

    def _next_trap(self, request: int, where: str) -> None:
        """Resume with ``request`` until the next SIGTRAP, for callers that know no
        event comes: stray signals are discarded (the instruction did not run yet),
        an interrupt raises KeyboardInterrupt, anything else is an error."""
        t = self.process
        while True:
            # A step is too short for `Interruption.set` to stop: look between steps.
            if self.interruption is not None and self.interruption.is_set():
                raise KeyboardInterrupt
            t.resume(request)
            stop = t.wait()
            if stop.kind == "signal" and stop.signo == signal.SIGTRAP:
                return
            if stop.kind == "signal" and stop.signo == signal.SIGSTOP and \
                    self.interruption is not None and self.interruption.is_set():
                raise KeyboardInterrupt
            if stop.kind != "signal" or stop.signo in SYNCHRONOUS_SIGNALS:
                raise TraceeError(f"an event came {where} ({self._describe(stop)})")

    def run_to_arrival(self, addr: int, count: int) -> None:
        """Run to the ``count``-th arrival at ``addr`` on a hardware execution
        breakpoint: a perf counter that stops the task at that arrival (one stop,
        however many arrivals; tracee/perf.py), or, where the kernel offers no
        counter, debug register 0 with one stop an arrival.

        The kernel sets the resume flag on such a stop, so the next resume
        executes the instruction; it is cleared here at the end, so the state is
        the one a software breakpoint gives. Same preconditions as
        ``single_steps``, and no watchpoint may be armed.
        """
        t = self._leave_for(addr)
        where = f"on the way to {addr:#x}"
        try:
            counter = ArrivalCounter(t.pid, addr, stop_at=count) if count > 1 else None
        except PerfUnavailable:
            counter = None
        with self._interruptible():
            self._check_interrupt()
            self._run_to_arrival(t, addr, count, counter, where)
        self._arrived_at(addr)

    def _run_to_arrival(self, t: Tracee, addr: int, count: int, counter: ArrivalCounter | None,
                        where: str) -> None:
        if counter is not None:
            with counter:
                self._next_trap(PTRACE_SYSEMU, where)
                if counter.count != count:
                    raise TraceeError(f"stopped after {counter.count} of {count} arrivals {where}")
        else:
            t.set_debugreg(0, addr)
            t.set_debugreg(7, 1)  # L0, execute, length 1
            try:
                for _ in range(count):
                    self._next_trap(PTRACE_SYSEMU, where)
            finally:
                t.set_debugreg(7, 0)
                t.set_debugreg(6, 0)

    def _leave_for(self, addr: int | None) -> Tracee:
        """Prepare a run to arrivals at ``addr`` on debug registers: nothing may be
        pending, and an arrival where the task stands does not count."""
        if self.reached is not None or self.pending_signal:
            raise TraceeError("a run to an arrival needs a task with nothing pending")
        t = self.process
        regs = t.get_regs()
        if addr is not None and regs.rip == addr:
            regs.eflags |= RESUME_FLAG
            t.set_regs(regs)
        return t

    def _arrived_at(self, addr: int | None) -> None:
        """Check that a run to ``addr`` stopped there, and clear the resume flag the
        debug trap set: the state is then the one a software breakpoint gives."""
        if addr is None:
            return  # at an event's stop, left undone: the caller discards this task
        t = self.process
        regs = t.get_regs()
        if regs.rip != addr:
            raise TraceeError(f"stopped at {regs.rip:#x} on the way to {addr:#x}")
        regs.eflags &= ~RESUME_FLAG
        t.set_regs(regs)

    def run_to_arrival_in_slices(self, addr: int | None, count: int, seconds: float,
                                 pause: Callable[[int], None]) -> None:
        """``run_to_arrival`` on a perf counter (``addr`` None: to the next event's
        stop, left undone), stopping the task (SIGSTOP) after every ``seconds``
        of running to call ``pause(arrivals made so far)``; the timeline clones
        it there. Raises PerfUnavailable without a counter."""
        t = self._leave_for(addr)
        with contextlib.ExitStack() as stack:
            goal = stack.enter_context(ArrivalCounter(t.pid, addr, stop_at=count)) \
                if addr is not None else None
            apart = stack.enter_context(_ApartFromTracer(t.pid))
            stack.enter_context(self._interruptible())
            self._check_interrupt()
            while True:
                t.resume(PTRACE_SYSEMU)
                stop = t.wait_for(seconds)
                if self._is_goal(stop, goal):
                    break
                if stop.kind == "signal" and stop.signo == signal.SIGSTOP:
                    if self.interruption is not None and self.interruption.is_set():
                        raise KeyboardInterrupt
                    with apart.relaxed():
                        pause(goal.count if goal is not None else 0)
                    continue
                if stop.kind != "signal" or stop.signo in SYNCHRONOUS_SIGNALS:
                    raise TraceeError(f"an event came on the way to {self._goal(addr)} "
                                      f"({self._describe(stop)})")
            if goal is not None and goal.count != count:
                raise TraceeError(f"stopped after {goal.count} of {count} arrivals on the "
                                  f"way to {self._goal(addr)}")
        self._arrived_at(addr)

    def run_to_arrival_counting(self, addr: int | None, count: int, counted: list[int],
                                every: int, pause: Callable[[int, int], None]
                                ) -> dict[int, int]:
        """``run_to_arrival`` (``addr`` None: to the next event's stop, left
        undone), counting on the way the arrivals at each of ``counted`` (the
        task's own position included, if it is one) and stopping at every
        ``every``-th of them to call ``pause(address, arrivals there)``. Returns
        the counts. Raises PerfUnavailable without counters."""
        t = self._leave_for(addr)
        with contextlib.ExitStack() as stack:
            goal = stack.enter_context(ArrivalCounter(t.pid, addr, stop_at=count)) \
                if addr is not None else None
            counters = [stack.enter_context(ArrivalCounter(t.pid, a, stop_at=every))
                        for a in counted]
            stack.enter_context(self._interruptible())
            self._check_interrupt()
            while True:
                t.resume(PTRACE_SYSEMU)
                stop = t.wait()
                if self._is_goal(stop, goal) and (goal is None or goal.count == count):
                    break
                if stop.kind == "signal" and stop.signo == signal.SIGSTOP:
                    self._check_interrupt()
                    continue
                trapped = stop.kind == "signal" and stop.signo == signal.SIGTRAP
                rip = t.get_regs().rip if trapped else None
                periodic = [c for c in counters if c.addr == rip and c.count % every == 0]
                for counter in periodic:
                    pause(counter.addr, counter.count)
                if not trapped and (stop.kind != "signal" or stop.signo in SYNCHRONOUS_SIGNALS):
                    raise TraceeError(f"an event came on the way to {self._goal(addr)} "
                                      f"({self._describe(stop)})")
            counts = {c.addr: c.count for c in counters}
        self._arrived_at(addr)
        return counts

    def run_counting(self, goal: Place, count: int, counted: list[Place],
                     pauses: dict[Place, int] | None = None,
                     pause: Callable[[Place, int], None] | None = None) -> dict[Place, int]:
        """Run natively to the ``count``-th arrival at (or access of) ``goal``,
        counting on the way the arrivals and accesses of ``counted``, and stopping
        at every n-th of ``pauses`` (place: n) to call ``pause(place, count)``:
        the timeline clones the task there. One native run on perf counters,
        whatever the counts; returns the counts of ``counted`` at the goal.

        An arrival the task stands at is not counted (the resume flag is set
        for it), and at the end the state is the one a breakpoint or a
        watchpoint gives: at an arrival, before the instruction, resume flag
        clear; after an access, just after the instruction that made it. Same
        preconditions as ``run_to_arrival``; raises PerfUnavailable without
        counters."""
        pauses = pauses or {}
        t = self._leave_for(goal.addr if goal.executes else None)
        regs = t.get_regs()
        if any(p.executes and p.addr == regs.rip for p in [*counted, *pauses]):
            regs.eflags |= RESUME_FLAG
            t.set_regs(regs)
        with contextlib.ExitStack() as stack:
            target = stack.enter_context(counter_for(t.pid, goal, stop_at=count))
            counters = {p: stack.enter_context(counter_for(t.pid, p)) for p in counted}
            periodic = [(stack.enter_context(counter_for(t.pid, p, stop_at=n)), n)
                        for p, n in pauses.items()]
            stack.enter_context(self._interruptible())
            self._check_interrupt()
            paused = {id(c): 0 for c, _ in periodic}
            while True:
                t.resume(PTRACE_SYSEMU)
                stop = t.wait()
                if stop.kind == "signal" and stop.signo == signal.SIGTRAP:
                    if target.count >= count:
                        break
                    for counter, every in periodic:
                        made = counter.count
                        if made % every == 0 and made > paused[id(counter)]:
                            paused[id(counter)] = made
                            if pause is not None:
                                pause(counter.place, made)
                    continue
                if stop.kind == "signal" and stop.signo == signal.SIGSTOP:
                    self._check_interrupt()
                    continue
                if stop.kind != "signal" or stop.signo in SYNCHRONOUS_SIGNALS:
                    raise TraceeError(f"an event came on the way to access {target.count + 1} "
                                      f"of {count} at {goal.addr:#x} ({self._describe(stop)})")
            if target.count != count:
                raise TraceeError(f"stopped after {target.count} of {count} arrivals at "
                                  f"{goal.addr:#x}")
            counts = {p: c.count for p, c in counters.items()}
        if goal.executes:
            self._arrived_at(goal.addr)
        return counts

    @staticmethod
    def _is_goal(stop: Stop, goal: ArrivalCounter | None) -> bool:
        """Whether ``stop`` ends a run to ``goal``'s arrival, or (None) to an event."""
        if goal is not None:
            return stop.kind == "signal" and stop.signo == signal.SIGTRAP
        return stop.kind == "syscall" or (stop.kind == "signal" and
                                          stop.signo in SYNCHRONOUS_SIGNALS - {signal.SIGTRAP})

    @staticmethod
    def _goal(addr: int | None) -> str:
        return f"{addr:#x}" if addr is not None else "the next event"

    def _is_final(self, n: int, event: Event) -> bool:
        """Whether carrying out event ``n`` ends the program."""
        if isinstance(event, SyscallEvent):
            return event.nr in (NR["exit"], NR["exit_group"])
        if isinstance(event, SignalEvent) and n + 1 < len(self.reader):
            after = self.reader[n + 1]
            return isinstance(after, ExitEvent) and after.signo == event.signo
        return isinstance(event, ExitEvent)

    def _reach(self, n: int, event: Event, single: bool, breakpoints: frozenset[int]) -> Stop:
        """Resume toward event ``n``; return its stop, or a trap that came first."""
        t = self.process
        expect = 0
        if isinstance(event, SignalEvent):
            if event.where == "precise":
                return self._reach_precise_state(n, event, single, breakpoints)
            if event.where == "boundary":
                # Raised once: a step that delivered the signal before it into its
                # handler stops before this one is taken, and a real-time signal
                # raised twice would be queued twice.
                if self.raised != n:
                    os.kill(t.pid, event.signo)
                    self.raised = n
                expect = event.signo
        # A breakpoint at an address nothing is mapped at yet (`break *ADDR` in
        # code a JIT or dlopen brings later, a debugger's guess) is armed from the
        # first resume after an event maps it: mappings change only at events,
        # and every resume toward an event arms the breakpoints afresh.
        saved = {addr: byte for addr in breakpoints
                 if addr < _OFF_T_LIMIT and (byte := t.read_partial(addr, 1))}
        for addr in saved:
            t.write(addr, b"\xcc")
        try:
            return self._resume(PTRACE_SYSEMU_SINGLESTEP if single else PTRACE_SYSEMU, expect,
                                interruptible=True)
        finally:
            if t.alive:
                for addr, byte in saved.items():
                    # Code the program wrote over an int3 (a JIT filling a page)
                    # is the program's: put back only what is still ours.
                    if t.read_partial(addr, 1) == b"\xcc":
                        t.write(addr, byte)

    def _classify_trap(self, stop: Stop, breakpoints: frozenset[int],
                       single: bool) -> RunStop | None:
        """A SIGTRAP of ours (breakpoint, single step, watchpoint), or None."""
        if stop.kind != "signal" or stop.signo != signal.SIGTRAP:
            return None
        t = self.process
        regs = t.get_regs()
        if regs.rip - 1 in breakpoints:
            regs.rip -= 1
            t.set_regs(regs)
            return RunStop("breakpoint", addr=regs.rip)
        # A write that a single step executed traps for both reasons (si_code
        # says TRAP_TRACE then): the debug status register tells a watchpoint.
        dr6 = t.get_debugreg(6)
        if dr6 & 0xF:
            t.set_debugreg(6, 0)
            return RunStop("watch", watch=((dr6 & 0xF).bit_length() - 1))
        si_code = int.from_bytes(t.get_siginfo()[8:12], "little", signed=True)
        if single and (si_code == TRAP_TRACE or
                       (self.delivered and si_code == HANDLER_ENTRY_TRAP)):
            return RunStop("step")  # one instruction, or a signal delivered into its handler
        return None  # the program's own int3: a recorded signal

    def _complete(self, n: int, event: Event, stop: Stop) -> int:
        """Carry out event ``n`` from its stop; returns how many events that consumed."""
        if isinstance(event, SyscallEvent):
            return self._replay_syscall(n, event, stop)
        if isinstance(event, SignalEvent):
            if stop.kind != "signal" or stop.signo != event.signo:
                raise Divergence(n, f"recorded signal {signal_name(event.signo)}, "
                                    f"replay {self._describe(stop)}")
            self.pending_signal, self.pending_siginfo = event.signo, event.siginfo
        elif isinstance(event, RdtscEvent):
            self._replay_rdtsc(n, event, stop)
        elif isinstance(event, ExitEvent):
            if stop.kind not in ("exited", "killed"):
                raise Divergence(n, f"recorded the end of the program, replay "
                                    f"{self._describe(stop)}")
            self._reached_end(n, stop)
        else:
            raise Divergence(n, f"unexpected {event.kind} event")
        return 1

    def _resume(self, request: int = PTRACE_SYSEMU, expect: int = 0,
                interruptible: bool = False) -> Stop:
        """Resume (delivering any pending signal) until a stop the replay cares about.

        Asynchronous signals are the trace's to deliver: one the session raised
        itself (``expect``) stops here; any other (a checkpoint's SIGCHLD, a
        kill from outside) is discarded. Faults stop here whatever they are.
        """
        t = self.process
        signo, self.pending_signal = self.pending_signal, 0
        self.delivered = signo
        if signo:
            t.set_siginfo(self.pending_siginfo)
        while True:
            t.resume(request, signo)
            stop = t.wait()
            if stop.kind != "signal" or stop.signo in SYNCHRONOUS_SIGNALS or stop.signo == expect:
                return stop
            if interruptible and stop.signo == signal.SIGSTOP and self.interruption is not None \
                    and self.interruption.is_set():
                return stop
            signo = 0

    # -- syscalls ---------------------------------------------------------------------
    def _check_syscall(self, n: int, event: SyscallEvent, stop: Stop) -> Registers:
        if stop.kind != "syscall":
            raise Divergence(n, f"recorded {format_call(event.nr, event.args)}, replay "
                                f"{self._describe(stop)}")
        regs = self.process.get_regs()
        nr, args = regs.orig_rax, syscall_args(regs)
        if nr != event.nr or args != tuple(event.args):
            raise Divergence(n, f"recorded {format_call(event.nr, event.args)}, replay "
                                f"{format_call(nr, args)}")
        return regs

    def _describe(self, stop: Stop) -> str:
        if stop.kind == "signal":
            pc = self.process.get_regs().rip
            return f"signal {signal_name(stop.signo)} at pc {pc:#x}"
        if stop.kind == "exited":
            return f"exit with status {stop.status}"
        if stop.kind == "killed":
            return f"death by {signal_name(stop.signo)}"
        return f"{stop.kind} stop"

    def _replay_syscall(self, n: int, event: SyscallEvent, stop: Stop) -> int:
        """Replay one syscall from its entry stop; returns how many events it consumed."""
        regs = self._check_syscall(n, event, stop)
        t = self.process
        nr = event.nr
        if nr in (NR["execve"], NR["execveat"]) and event.result == 0:
            exec_event = self._event(n + 1)
            if not isinstance(exec_event, ExecEvent):
                raise Divergence(n + 1, "an execve without its exec event")
            self._emulate_exec(n, exec_event)
            return 2
        if nr in NATIVE:
            return self._run_natively(n, event, regs)
        if nr in MMAP_FAMILY and event.result >= 0 or (nr == NR["brk"]):
            self._replay_mmap_family(n, event)
            self._trap_random_sites()
        elif nr in EXECUTED_IN_REPLAY:
            t.inject_syscall(self.page + rpage.SYSCALL_OFFSET, nr, *event.args)
            regs = t.get_regs()  # the call may have moved fs_base (arch_prctl)
        self._echo_once(n, event)
        regs.rax = event.result & 0xFFFFFFFFFFFFFFFF
        # `syscall` saved the flags in r11, with the trap flag when the debugger
        # single-stepped it; the recorded program never ran with it set.
        regs.r11 &= ~TRAP_FLAG
        t.set_regs(regs)
        for addr, data in event.writes:
            self._write_output(addr, data)
        return 1

    def _run_natively(self, n: int, event: SyscallEvent, regs: Registers) -> int:
        """Back up to the syscall instruction and let the kernel run it for real."""
        t = self.process
        regs.rip -= 2
        regs.rax = regs.orig_rax
        t.set_regs(regs)
        # The first stop is the exit of the emulated (skipped) call: the kernel
        # reports it because PTRACE_SYSCALL is now set; the instruction runs after it.
        stop = self._resume(PTRACE_SYSCALL)
        if stop.kind == "syscall":
            if event.nr == NR["rt_sigreturn"]:
                # Entry, then exit of the real call: the frame is restored only at
                # the exit, and a task left at the entry would lose the sigreturn
                # to the next injected syscall (a checkpoint's fork sets orig_rax).
                for _ in range(2):
                    stop = self._resume(PTRACE_SYSCALL)
                    if stop.kind != "syscall":
                        break
                else:
                    return 1
            else:
                t.resume(PTRACE_CONT)
                stop = t.wait()
        if stop.kind in ("exited", "killed"):
            self._reached_end(n + 1, stop)
            return 2
        raise Divergence(n, f"{syscall_name(event.nr)} ended in {self._describe(stop)}")

    def _reached_end(self, n: int, stop: Stop) -> None:
        """The process ended; event ``n`` must say the same."""
        recorded_event = self._event(n)
        recorded = ((recorded_event.status, recorded_event.signo)
                    if isinstance(recorded_event, ExitEvent) else None)
        actual = (stop.status, None) if stop.kind == "exited" else (None, stop.signo)
        if recorded != actual:
            raise Divergence(n, f"recorded {recorded_event.kind} {recorded}, replay ended with "
                                f"{actual}")
        self.end = ReplayEnd(*actual)

    def _inject(self, nr: int, *args: int) -> int:
        return self.process.inject_syscall(self.page + rpage.SYSCALL_OFFSET, nr, *args)

    def _replay_mmap_family(self, n: int, event: SyscallEvent) -> None:
        """Carry out an mmap-family call at its recorded addresses.

        Every mapping replay makes is private, whatever the recording had: the
        checkpoints are fork clones, and a MAP_SHARED page would be shared by a
        checkpoint and the clones run from it, so running one would change the
        other's past; a shared mapping of the trace's copy of a file would also
        write into the trace. What a shared mapping showed is reproduced instead:
        the program's own stores by execution, and what a syscall changed in the
        file behind it (write, truncate, ...) by the bytes the recorder read through
        the mapping after that call (trace/file_views.py), stored as its output.
        Two views of the same shared pages (a file mapped twice, mremap with
        old_size 0) are the exception: from the second one on, all views of that
        object are MAP_SHARED views of one memfd of the replay process, so that a
        store through one shows through the others; and every clone gets its own
        memfd with a copy of the pages (``clone``), so that a checkpoint never sees
        another clone's future.
        """
        nr, args, result = event.nr, event.args, event.result
        space = self._space
        if nr == NR["brk"]:
            self._emulate_brk(n, result)
        elif nr == NR["mmap"]:
            flags = (args[3] & MAP_KEPT_FLAGS) | MAP_PRIVATE | MAP_FIXED
            record = event.mapping
            if record is not None and self._is_aliased(record.shared):
                got = self._map_shared_view(record, args[2])
            elif record is not None and record.file_hash:
                got = self._map_trace_file(result, args[1], args[2], flags, record.file_hash,
                                           args[5])
            else:  # anonymous memory, or /dev/zero
                got = self._inject(NR["mmap"], result, args[1], args[2], flags | MAP_ANONYMOUS,
                                   -1, 0)
            space.map(record or MappingRecord(result, result + page_up(args[1]),
                                              prot_perms(args[2], bool(args[3] & MAP_SHARED)),
                                              0, ""))
            if got != result:
                raise Divergence(n, f"mmap at {result:#x} gave {got:#x} in replay")
        elif nr == NR["mremap"]:
            self._replay_mremap(n, event)
        elif nr == NR["shmat"]:
            self._replay_shmat(n, event)
        elif nr == NR["shmdt"]:
            for start, end in space.attached(args[0]):
                self._inject(NR["munmap"], start, end - start)
                space.unmap(start, end - start)
        else:
            got = self._inject(nr, *args)
            if got != result:
                raise Divergence(n, f"{format_call(nr, args)} returned {got} in replay, "
                                    f"{result} when recorded")
            if nr == NR["munmap"]:
                space.unmap(args[0], args[1])
            elif nr == NR["mprotect"]:
                space.protect(args[0], args[1], args[2])
        self._check_maps(n)

    def _map_trace_file(self, addr: int, length: int, prot: int, flags: int, digest: str,
                        offset: int) -> int:
        """mmap the trace's copy ``digest`` privately at ``addr`` (MAP_FIXED)."""
        fd = self._open_trace_file(digest)
        got = self._inject(NR["mmap"], addr, length, prot, flags | MAP_PRIVATE | MAP_FIXED, fd,
                           offset)
        self._inject(NR["close"], fd)
        return got

    def _replay_mremap(self, n: int, event: SyscallEvent) -> None:
        args, result = event.args, event.result
        old, old_size, new_size, flags = args[0], args[1], args[2], args[3]
        dontunmap = bool(flags & MREMAP_DONTUNMAP)
        record = event.mapping
        source = self._space.find(old)
        name = source.recorded.shared if source is not None else None
        if name is not None and (old_size == 0 or name in self.shared_objects):
            # A view of an object with several views, or a second one being made:
            # the kernel moves, grows or duplicates the memfd's view as it did the
            # original's.
            assert source is not None
            self._ensure_backed(name, source.offset + old - source.start + new_size)
            moves = (flags & MREMAP_DONTUNMAP) | MREMAP_MAYMOVE | MREMAP_FIXED
            got = self._inject(NR["mremap"], old, old_size, new_size,
                               moves if result != old else 0, result)
            if got == result and record is not None and record.file_hash and old_size:
                # What the file holds past the old end, as the recorder copied it.
                self._write_trace_file(name, record.file_hash, record.offset + page_up(old_size),
                                       page_up(new_size) - page_up(old_size))
            record = None  # the model moves the view, which keeps its object and offset
        elif record is not None and record.file_hash:
            # A file mapping that grew, or a second view of shared pages: the recorder
            # copied what backs it now, up to its new end (the trace's copy the region
            # came from may end before that, and pages past it would raise SIGBUS).
            # Build it from that copy, then put back what the old pages showed (a
            # private mapping's own stores among them).
            kept = self.process.read_partial(old, page_up(old_size)) if old_size else b""
            got = self._map_trace_file(result, new_size, perms_prot(record.perms), 0,
                                       record.file_hash, record.offset)
            if got == result and result != old and old_size and not dontunmap:
                self._inject(NR["munmap"], old, old_size)
            if kept:
                self.process.write(result, kept)
        elif result == old:
            got = self._inject(NR["mremap"], old, old_size, new_size, 0, 0)
        else:
            got = self._inject(NR["mremap"], old, old_size, new_size,
                               (flags & MREMAP_DONTUNMAP) | MREMAP_MAYMOVE | MREMAP_FIXED, result)
        if got != result:
            raise Divergence(n, f"mremap to {result:#x} gave {got:#x} in replay")
        self._space.remap(old, old_size, result, new_size, dontunmap=dontunmap)
        if record is not None and record.file_hash:
            self._space.map(record)

    # -- shared objects with several views ----------------------------------------------
    def _is_aliased(self, name: str | None) -> bool:
        """Whether a new view of shared object ``name`` is not its only one. An object
        whose views are all gone is forgotten: its memfd may hold pages that a later
        mapping of the same file must not show."""
        if name is None:
            return False
        if self._views(name):
            return True
        gone = self.shared_objects.pop(name, None)
        if gone is not None:
            self._inject(NR["close"], gone[0])
        return False

    def _views(self, name: str) -> list[Mapping]:
        return [m for m in self._space.mappings if m.recorded.shared == name]

    def _ensure_backed(self, name: str, size: int) -> None:
        """A memfd backs the views of ``name`` and holds at least ``size`` bytes."""
        known = self.shared_objects.get(name)
        if known is None:
            self._back_shared_object(name, size)
        elif known[1] < size:
            self._inject(NR["ftruncate"], known[0], size)
            self.shared_objects[name] = (known[0], size)

    def _back_shared_object(self, name: str, size: int = 0) -> int:
        """Make one new memfd back every live view of shared object ``name`` (at least
        ``size`` bytes long), with the pages they show now; returns the memfd.

        Called for an object's second view, with the views it has, and for each
        clone, whose views the fork left shared with its parent's."""
        views = self._views(name)
        kept = [(m, self.process.read_partial(m.start, m.end - m.start)) for m in views]
        scratch = self.page + rpage.SCRATCH_OFFSET
        self.process.write(scratch, b"retrograde-shared\0")
        fd = self._inject(NR["memfd_create"], scratch, 1)  # MFD_CLOEXEC
        if fd < 0:
            raise TraceeError(f"cannot make the pages of a shared mapping (error {-fd})")
        size = max([size] + [m.offset + m.end - m.start for m in views])
        self._inject(NR["ftruncate"], fd, size)
        with self._object_file(fd) as pages:
            for m, data in kept:
                os.pwrite(pages.fileno(), data, m.offset)
        for m, _ in kept:
            got = self._inject(NR["mmap"], m.start, m.end - m.start, perms_prot(m.perms),
                               MAP_SHARED | MAP_FIXED, fd, m.offset)
            if got != m.start:
                raise TraceeError(f"cannot map a shared view at {m.start:#x} (error {-got})")
        old = self.shared_objects.get(name)
        if old is not None:
            self._inject(NR["close"], old[0])
        self.shared_objects[name] = (fd, size)
        return fd

    def _object_file(self, fd: int) -> io.FileIO:
        """The replay process's memfd ``fd``, opened by the replayer: stores go into it
        directly, read-only views or not (/proc/PID/mem refuses to write through a
        shared mapping without PROT_WRITE)."""
        return io.FileIO(f"/proc/{self.process.pid}/fd/{fd}", "r+")

    def _write_output(self, addr: int, data: bytes) -> None:
        """Store a recorded output at ``addr``; in a view of a shared object, into its memfd."""
        t = self.process
        if not self.shared_objects:
            t.write(addr, data)
            return
        while data:
            m = self._space.find(addr)
            end = min(addr + len(data), m.end) if m is not None else addr + len(data)
            known = self.shared_objects.get(m.recorded.shared or "") if m is not None else None
            if m is not None and known is not None:
                with self._object_file(known[0]) as pages:
                    os.pwrite(pages.fileno(), data[:end - addr], m.offset + addr - m.start)
            else:
                t.write(addr, data[:end - addr])
            data, addr = data[end - addr:], end

    def _map_shared_view(self, record: MappingRecord, prot: int) -> int:
        """Map another view of a shared object: a MAP_SHARED view of its memfd."""
        assert record.shared is not None
        length = record.end - record.start
        self._ensure_backed(record.shared, record.offset + length)
        fd = self.shared_objects[record.shared][0]
        got = self._inject(NR["mmap"], record.start, length, prot, MAP_SHARED | MAP_FIXED, fd,
                           record.offset)
        if got == record.start and record.file_hash:
            # The file as the recorder copied it at this mmap: what the other views of
            # it show where they overlap, and what this one adds elsewhere.
            self._write_trace_file(record.shared, record.file_hash, record.offset, length)
        return got

    def _write_trace_file(self, name: str, digest: str, offset: int, length: int) -> None:
        """Copy bytes [offset, offset + length) of the trace's copy ``digest`` into the
        memfd of shared object ``name`` at the same offset (the copy's data ranges:
        its holes are the zeros the memfd holds past what was written)."""
        with open(self.reader.file_path(digest), "rb") as f, \
                self._object_file(self.shared_objects[name][0]) as pages:
            size = os.fstat(f.fileno()).st_size
            for start, end in data_ranges(f.fileno(), min(size, offset + length)):
                start = max(start, offset)
                while start < end:
                    block = os.pread(f.fileno(), min(end - start, 1 << 20), start)
                    if not block:
                        break
                    os.pwrite(pages.fileno(), block, start)
                    start += len(block)

    def _replay_shmat(self, n: int, event: SyscallEvent) -> None:
        """A SysV segment, attached as a private mapping of its contents at attach time.

        The segment's id is the recording's and may name nothing (or another
        segment) now: replay never attaches, nor changes, a live host segment.
        """
        record = event.mapping
        if record is None or not record.file_hash:
            raise TraceError(f"event {n}: shmat without a copy of the segment (a trace from "
                             "an older retrograde, which replay cannot use without the live "
                             "segment)")
        if self._is_aliased(record.shared):
            got = self._map_shared_view(record, perms_prot(record.perms))
        else:
            got = self._map_trace_file(record.start, record.end - record.start,
                                       perms_prot(record.perms), 0, record.file_hash,
                                       record.offset)
        if got != record.start:
            raise Divergence(n, f"shmat at {record.start:#x} gave {got:#x} in replay")
        self._space.map(record)

    def _emulate_brk(self, n: int, result: int) -> None:
        """The program break is the stub's, not the program's: emulate it with mmap/munmap."""
        old_end, new_end = page_up(self.brk), page_up(result)
        if new_end > old_end:
            got = self._inject(NR["mmap"], old_end, new_end - old_end, 3,
                               MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0)
            if got != old_end:
                raise Divergence(n, f"cannot grow the heap to {result:#x}")
            self._space.map(MappingRecord(old_end, new_end, "rw-p", 0, "[heap]"))
        elif new_end < old_end:
            self._inject(NR["munmap"], new_end, old_end - new_end)
            self._space.unmap(new_end, old_end - new_end)
        self.brk = result

    def _open_trace_file(self, digest: str) -> int:
        path = str(self.reader.file_path(digest)).encode() + b"\0"
        if len(path) > rpage.SCRATCH_SIZE:
            raise TraceError(f"trace path too long to open in the replay process: {path!r}")
        scratch = self.page + rpage.SCRATCH_OFFSET
        self.process.write(scratch, path)
        fd = self._inject(NR["openat"], AT_FDCWD, scratch, os.O_RDONLY | os.O_CLOEXEC, 0)
        if fd < 0:
            raise TraceError(f"cannot open {path.decode()[:-1]} in the replay process "
                             f"(errno {-fd})")
        return fd

    def _check_maps(self, n: int) -> None:
        if self.check_maps:
            problem = self._space.check(parse_maps(self.process.read_maps()))
            if problem:
                raise Divergence(n, f"address space differs: {problem}")

    def _echo_once(self, n: int, event: SyscallEvent) -> None:
        """``_echo`` event ``n`` if it lies beyond the frontier (see EchoFrontier)."""
        frontier = self.frontier
        if frontier is None:
            self._echo(event)
            return
        echo, self.echo = self.echo, self.echo and n >= frontier.event
        frontier.event = max(frontier.event, n + 1)
        try:
            self._echo(event)
        finally:
            self.echo = echo

    def _echo(self, event: SyscallEvent) -> None:
        """Echo what the call wrote to the program's original stdout or stderr
        (trace/output.py), wherever the program moved them."""
        nr, args, result = event.nr, event.args, event.result
        stream = self.echoed.stream(output_fd(nr, args))
        self.echoed.follow(nr, args, result)
        if not self.echo or result <= 0 or stream is None:
            return
        if event.echo is not None:
            data = event.echo
        elif nr in FROM_MEMORY:
            data = written_from_memory(nr, args, result, self.process.read_partial)
        else:
            return
        out = sys.stdout if stream == 1 else sys.stderr
        out.flush()
        fd = out.fileno()
        offset = file_offset(nr, args)
        if offset is not None:
            with contextlib.suppress(OSError):  # ESPIPE: not a file here
                os.pwrite(fd, data, offset)
                return
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    # -- exec ----------------------------------------------------------------------------
    def _emulate_exec(self, n: int, event: ExecEvent) -> None:
        """Exec the stub for the new image's retrograde page, then rebuild the image."""
        t = self.process
        stub = str(write_stub(event.retrograde_page)).encode() + b"\0"
        scratch = self.page + rpage.SCRATCH_OFFSET
        argv_at = scratch + ((len(stub) + 7) & ~7)
        t.write(scratch, stub)
        t.write(argv_at, scratch.to_bytes(8, "little") + bytes(16))
        result = self._inject(NR["execve"], scratch, argv_at, argv_at + 8)
        if t.last_stop.kind != "event":
            raise Divergence(n, f"the replay stub could not be executed (error {-result})")
        t.reopen_memory()
        self._finish_stub_exec(event)

    def _finish_stub_exec(self, event: ExecEvent) -> None:
        """At the stub's PTRACE_EVENT_EXEC stop: rebuild the recorded address space."""
        t = self.process
        t.resume(PTRACE_SYSCALL)  # to execve's exit stop, where injecting is allowed
        stop = t.wait()
        if stop.kind != "syscall":
            raise TraceeError(f"the replay stub did not start ({stop})")
        self.page = event.retrograde_page
        for m in parse_maps(t.read_maps()):
            if m.start != self.page and m.name != "[vsyscall]":
                self._inject(NR["munmap"], m.start, m.size)
        for record in event.mappings:
            if record.name == rpage.NAME:
                continue
            self._rebuild_mapping(record)
        self.space = AddressSpace(list(event.mappings))
        self.shared_objects = {}  # the exec closed their memfds (MFD_CLOEXEC)
        self.brk = event.brk
        t.set_regs(registers_from_bytes(event.regs))
        t.set_xstate(event.xstate)
        self.random_traps = {}
        self._trap_random_sites()
        self._check_maps(self.next_event)

    def _rebuild_mapping(self, record: MappingRecord) -> None:
        prot = perms_prot(record.perms)
        size = record.end - record.start
        flags = MAP_PRIVATE | MAP_FIXED
        if record.file_hash:
            got = self._map_trace_file(record.start, size, prot, flags, record.file_hash,
                                       record.offset)
        else:
            if record.name == "[stack]":
                flags |= MAP_GROWSDOWN
            got = self._inject(NR["mmap"], record.start, size, prot, flags | MAP_ANONYMOUS, -1, 0)
        if got != record.start:
            raise TraceeError(f"cannot rebuild mapping {record.start:#x}-{record.end:#x} "
                              f"{record.name} (error {-got})")
        if record.contents:
            self.process.write(record.start, record.contents)

    # -- signals and rdtsc ------------------------------------------------------------------
    def _at_precise_state(self, event: SignalEvent) -> bool:
        """Whether the task stands in the recorded state of asynchronous signal ``event``
        (the digest of memory is computed only when the registers match)."""
        t = self.process
        return registers_to_bytes(t.get_regs()) == event.regs and \
            writable_memory_digest(t) == event.digest

    def _reach_precise_state(self, n: int, event: SignalEvent, single: bool,
                             breakpoints: frozenset[int]) -> Stop:
        """``_reach`` for a signal recorded at a precise state: its delivery stop when
        the task is in that state, else one step (``single``) or a run that stops at
        the state or at a trap that comes first."""
        if event.regs is None:
            raise TraceError(f"event {n}: an asynchronous signal without its recorded state")
        if self._at_precise_state(event):
            return Stop("signal", signo=event.signo)
        if not self.precise.reachable(n, self):
            return self._restore_precise_state(n, event, event.regs)
        if single:
            return self._resume(PTRACE_SYSEMU_SINGLESTEP, interruptible=True)
        found = self._run_to_precise_state(n, event, breakpoints, PRECISE_SEARCH_LIMIT)
        if found is None:  # judged reachable from its boundary, so within the limit from here
            raise Divergence(n, f"the recorded state of {signal_name(event.signo)} at pc "
                                f"{registers_from_bytes(event.regs).rip:#x} was not reached")
        return found

    def _run_to_precise_state(self, n: int, event: SignalEvent, breakpoints: frozenset[int],
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
                if writable_memory_digest(t) == event.digest:
                    # This SIGTRAP stop becomes the recorded signal's delivery.
                    return Stop("signal", signo=event.signo)
            if pc in breakpoints:
                return stop  # the user's breakpoint there, in another state
            t.set_regs(regs)
            self._next_trap(PTRACE_SYSEMU_SINGLESTEP, f"stepping over pc {pc:#x} for the state "
                                                      f"of event {n}")
            if t.get_debugreg(6) & 0xF:
                return t.last_stop  # the instruction triggered a watchpoint: the caller's
        return None

    def _restore_precise_state(self, n: int, event: SignalEvent, recorded_regs: bytes) -> Stop:
        """Write the recorded state of event ``n`` into the task and deliver its signal
        there: the last resort when execution does not reach it (see PreciseStates)."""
        t = self.process
        for addr, data in event.memory:
            t.write(addr, data)
        t.set_regs(registers_from_bytes(recorded_regs))
        if event.xstate:
            t.set_xstate(event.xstate)
        if writable_memory_digest(t) != event.digest:
            raise Divergence(n, "the recorded state of an asynchronous signal cannot be restored")
        os.kill(t.pid, event.signo)
        return self._resume(expect=event.signo)

    def _random_instructions_note(self) -> str | None:
        """Where the program's code has rdrand or rdseed the recording did not
        watch, to name in a divergence (the watched ones carry ud2 here).

        Their results are in no trace (this CPU cannot fault them), so a replay
        that executed one got another value than the recording did.
        """
        t = self.tracee
        if t is None or not t.alive or self.space is None or not has_random_instructions():
            return None
        found = []
        for m in self.space.mappings:
            if "x" not in m.perms or m.kind in ("vdso", "vvar", "retrograde"):
                continue
            code = t.read_partial(m.start, m.end - m.start)
            for addr, name in find_random_instructions(code, m.start):
                where = ""
                if m.recorded.name:
                    offset = m.recorded.offset + addr - m.recorded.start
                    where = f" ({os.path.basename(m.recorded.name)}+{offset:#x})"
                found.append(f"{name} at pc {addr:#x}{where}")
        if not found:
            return None
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        return (f"the program's code has {', '.join(found[:3])}{more}, which ran "
                "unrecorded (without CPUID faulting only four rdrand/rdseed sites can be "
                "watched): the replay may have got other values")

    def _trap_random_sites(self) -> None:
        """Put ud2 on every rdrand/rdseed the recording emulated, where it is mapped now.

        The recording stopped on each execution of these (debug registers), so here
        each execution must stop too, as a fault before the instruction, the way
        rdtsc faults in both runs: then the event is reached by ordinary running,
        single steps and arrival counts alike. Sites whose bytes are not (or no
        longer) the instruction are left alone.
        """
        if not self.random_sites:
            return
        t = self.process
        for pc in self.random_sites:
            code = t.read_partial(pc, 15)
            if pc in self.random_traps and code[:2] == UD2:
                continue
            insn = decode_random(code)
            if insn is not None:
                t.write(pc, UD2)
                self.random_traps[pc] = (insn, code[:len(UD2)])

    def read_memory(self, addr: int, length: int) -> bytes:
        """The program's memory as the recording saw it (as much as is readable):
        the traps on recorded rdrand/rdseed sites show as the instructions."""
        data = self.process.read_partial(addr, length)
        for pc, (_, original) in self.random_traps.items():
            if addr - len(original) < pc < addr + len(data):
                patched = bytearray(data)
                for i, byte in enumerate(original):
                    if 0 <= pc + i - addr < len(data):
                        patched[pc + i - addr] = byte
                data = bytes(patched)
        return data

    def _replay_random(self, n: int, event: RandomEvent, stop: Stop) -> None:
        t = self.process
        regs = t.get_regs()
        trap = self.random_traps.get(regs.rip)
        if stop.kind != "signal" or stop.signo != signal.SIGILL or trap is None \
                or regs.rip != event.pc:
            raise Divergence(n, f"recorded {event.mnemonic} at {event.pc:#x}, replay "
                                f"{self._describe(stop)}")
        apply_random(regs, trap[0], event.value, event.carry)
        t.set_regs(regs)

    def _replay_rdtsc(self, n: int, event: RdtscEvent, stop: Stop) -> None:
        if isinstance(event, RandomEvent):
            self._replay_random(n, event, stop)
            return
        t = self.process
        regs = t.get_regs()
        insn = decode_rdtsc(t.read_partial(regs.rip, 3)) if stop.kind == "signal" else None
        if stop.signo != signal.SIGSEGV or insn is None or regs.rip != event.pc:
            raise Divergence(n, f"recorded rdtsc at {event.pc:#x}, replay {self._describe(stop)}")
        regs.rax = event.value & 0xFFFFFFFF
        regs.rdx = event.value >> 32
        if event.aux is not None:
            regs.rcx = event.aux
        regs.rip += insn[1]
        t.set_regs(regs)


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
                                                    check_maps=check_maps) as session:
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
