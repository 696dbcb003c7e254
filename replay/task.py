"""A replayed task: one thread of the replay, its ptrace stops and how it runs.

A ``Task`` is the live thread that replays recorded thread ``recorded_tid``
(the trace names tasks by their tids at recording time; the live tid differs).
It knows nothing of events: the session decides what a stop means. Every way
the replay runs a task (to an event, one instruction, to the n-th arrival at
an address, counting arrivals, in time slices) resumes it through
``resume_until``, which holds the one rule for asynchronous signals:

    Asynchronous signals are the trace's to deliver. A stop for a signal the
    caller raised itself (``expect``) is returned, as is every stop that is not
    a signal-delivery stop and every synchronous signal (a fault or a trap the
    task's own instruction caused). The SIGSTOP of an interrupt request is
    returned to an interruptible run, and the SIGSTOP that ends a time slice
    to a sliced one. Any other signal is a stray (a checkpoint's SIGCHLD, a
    SIGSTOP sent after the request was cleared, a kill from outside) and is
    discarded: the task resumes without it.

Invariant between runs: the task is at a ptrace stop from which
``inject_syscall`` is allowed, ``pending_signal`` is the signal its next resume
delivers, and ``reached`` (if set) is the stop of its next event, reached but
not carried out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Self

from retrograde.trace.dump import signal_name
from retrograde.tracee import page as rpage
from retrograde.tracee.maps import memory_digest, writable_memory
from retrograde.tracee.perf import ArrivalCounter, PerfUnavailable, Place
from retrograde.tracee.process import (
    PTRACE_SINGLESTEP,
    PTRACE_SYSEMU,
    PTRACE_SYSEMU_SINGLESTEP,
    Stop,
    Tracee,
    TraceeError,
)
from retrograde.tracee.registers import registers_to_bytes

from .hardware import DebugHardware

if TYPE_CHECKING:
    from .address_space import AddressSpace

TRAP_FLAG = 0x100  # EFLAGS.TF
RESUME_FLAG = 0x10000  # EFLAGS.RF
# Up to this many arrivals, a run to an arrival stops at an int3 each time rather
# than arm an execution breakpoint (Task._run_to_arrival_on_int3).
SOFTWARE_ARRIVALS = 16
SYNCHRONOUS_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                                 signal.SIGTRAP})


class Interruption:
    """Lets another thread stop whichever replay process of a timeline is running.

    ``set`` records the request and sends SIGSTOP to the tasks inside an
    interruptible run (a debugger's Ctrl-C comes from the server's I/O thread,
    which must not use ptrace); the run sees the stop and returns "interrupted"
    or raises KeyboardInterrupt. A SIGSTOP that arrives after the request was
    cleared is a stray signal and is discarded like any other.
    """

    def __init__(self) -> None:
        self._requested = threading.Event()
        self.running: dict[int, Tracee] = {}  # by live tid

    def set(self) -> None:
        self._requested.set()
        for tracee in list(self.running.values()):
            try:
                tracee.stop_thread()
            except ProcessLookupError:
                pass

    def is_set(self) -> bool:
        return self._requested.is_set()

    def clear(self) -> None:
        self._requested.clear()


class _ApartFromTracer:
    """Keeps this thread off the CPU task ``pid`` is bound to while it is entered: a
    task the tracer wakes is otherwise often queued on the tracer's CPU, and a slice
    of its running then lasts as long as the scheduler pleases. The task itself
    stays where it is (the recording's CPU, see tracee.cpu.replay_cpu), and so do
    the clones it makes."""

    def __init__(self, pid: int) -> None:
        self.mine = os.sched_getaffinity(0)
        self.elsewhere = self.mine - os.sched_getaffinity(pid)

    def __enter__(self) -> Self:
        if self.elsewhere and self.elsewhere != self.mine:
            os.sched_setaffinity(0, self.elsewhere)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.elsewhere and self.elsewhere != self.mine:
            os.sched_setaffinity(0, self.mine)


# STRAY_TRAP: a run to the n-th arrival on a perf counter may see a SIGTRAP before
# the counter has made its count (seen once in a full suite: 51,062 of 77,300,
# an internal error). It is not the program's: the program's own traps are events
# of the trace, and none lies inside the interval such a run crosses; so the run
# goes on, suppressing it, and still ends at the counter's trap or at the next
# event's stop (an error then).

# TEMPORARY_MASK: rt_sigsuspend, ppoll, pselect6 and epoll_pwait block with a mask of
# their own; a signal that interrupts one is delivered under that mask, and its frame
# saves the thread's mask from before the call, which sigreturn puts back. Replay
# emulates the calls, so the session sets the temporary mask for that delivery
# (PTRACE_SETSIGMASK) and the task writes the mask from before into the frame.
UC_SIGMASK = 296  # offsetof(struct ucontext, uc_sigmask) on x86-64

OFF_T_LIMIT = 1 << 63  # /proc/PID/mem offsets are off_t: no address above is readable

class Task:
    """One replayed thread; ``kill`` ends its process."""

    def __init__(self, tracee: Tracee, recorded_tid: int, space: AddressSpace | None = None,
                 interruption: Interruption | None = None, recorded_pid: int | None = None
                 ) -> None:
        self.tracee = tracee
        self.recorded_tid = recorded_tid
        self.recorded_pid = recorded_pid if recorded_pid is not None else recorded_tid
        self.space = space  # shared with the other tasks of its process; None before exec
        self.interruption = interruption  # shared with the other sessions of a timeline
        self.hardware = DebugHardware(tracee)
        self.pending_signal = 0
        self.pending_siginfo = b""
        self._siginfo: tuple[Stop, bytes] | None = None  # of the latest stop looked at
        self.delivered = 0  # the signal the last resume delivered
        self.raised = -1  # the event whose signal is raised and pending in the task (a fork
        #                   clone does not inherit it)
        self.reached: Stop | None = None  # next event's stop, reached but not carried out
        self.gone: Stop | None = None  # how the live thread ended, once it has
        # Per-thread kernel state a fork or an injected clone does not carry over, which
        # a copy of the task is given again: the word cleared and woken at exit
        # (set_tid_address, CLONE_CHILD_CLEARTID) and the robust futex list (head, size).
        self.clear_tid = 0
        self.robust_list: tuple[int, int] | None = None
        # The mask to put in the frame of the signal the next resume delivers, when it
        # is delivered under the temporary mask of the call it interrupted (TEMPORARY_MASK).
        self.frame_mask: int | None = None
        # The thread's name (comm) as the recording had it: the replay emulates
        # prctl(PR_SET_NAME), so the live thread's own comm is not it.
        self.name = ""

    @property
    def tid(self) -> int:
        """The live thread id."""
        return self.tracee.pid

    @property
    def quiet(self) -> bool:
        """Nothing pending: no event's stop reached, no signal to deliver."""
        return self.reached is None and not self.pending_signal

    @property
    def is_leader(self) -> bool:
        """Whether this is its live process's first thread, which the kernel reports
        dead only after every other thread of the group has been reaped."""
        return self.tracee.pid == self.tracee.tgid

    def kill(self) -> None:
        self.tracee.kill()

    def copy_state(self, other: Task) -> None:
        """Take ``other``'s pending signal, reached stop and the per-thread kernel
        state it keeps (for a clone of it)."""
        self.pending_signal, self.pending_siginfo = other.pending_signal, other.pending_siginfo
        self.reached = other.reached
        self.gone = other.gone
        self.clear_tid, self.robust_list = other.clear_tid, other.robust_list
        self.recorded_pid = other.recorded_pid
        self.frame_mask = other.frame_mask
        self.name = other.name

    def trade_places(self, clone: Task) -> None:
        """Become ``clone`` (a fork clone of this task taken earlier in the same event
        interval, nothing pending in either) and make ``clone`` what this task was:
        the caller keeps its Task and ends the other. This task's enabled debug
        registers (the caller's watchpoints), which a fork does not copy, come along."""
        assert self.quiet and clone.quiet
        self.hardware.carry_to(clone.hardware)
        self.swap_processes(clone)

    def swap_processes(self, clone: Task) -> None:
        """``trade_places`` for a task of the same process that stands still meanwhile
        (its pending state is the same in both)."""
        self.tracee, clone.tracee = clone.tracee, self.tracee
        self.space, clone.space = clone.space, self.space
        self.hardware, clone.hardware = clone.hardware, self.hardware
        self.delivered, clone.delivered = clone.delivered, self.delivered
        self.raised, clone.raised = clone.raised, self.raised

    @contextlib.contextmanager
    def breakpoints_armed(self, breakpoints: frozenset[int]) -> Iterator[None]:
        """An int3 at each of ``breakpoints`` while entered. An address nothing is
        mapped at yet (`break *ADDR` in code a JIT or dlopen brings later, a
        debugger's guess) is armed from the first resume after an event maps it:
        mappings change only at events, and every resume toward one arms afresh."""
        t = self.tracee
        saved = {addr: byte for addr in breakpoints
                 if addr < OFF_T_LIMIT and (byte := t.read_partial(addr, 1))}
        for addr in saved:
            t.write(addr, b"\xcc")
        try:
            yield
        finally:
            if t.alive:
                for addr, byte in saved.items():
                    # Code the program wrote over an int3 (a JIT filling a page)
                    # is the program's: put back only what is still ours.
                    if t.read_partial(addr, 1) == b"\xcc":
                        t.write(addr, byte)

    # -- the one resume loop ----------------------------------------------------------------
    def resume_until(self, request: int = PTRACE_SYSEMU, *, expect: int = 0,
                     interruptible: bool = False,
                     slice_seconds: float | None = None) -> Stop:
        """Resume with ``request`` (delivering any pending signal) until a stop the
        caller cares about, by the module's rule for stray signals, and the debug
        hardware's for perf traps (replay/hardware.py, PERF_TRAP)."""
        t = self.tracee
        if interruptible and not expect and self.interrupt_requested():
            # A step is too short for `Interruption.set` to stop: look before each.
            return Stop("signal", signo=signal.SIGSTOP)
        signo, self.pending_signal = self.pending_signal, 0
        self.delivered = signo
        if signo:
            t.set_siginfo(self.pending_siginfo)
        if signo and self.frame_mask is not None:
            stop = self._enter_handler(signo)
            if request in (PTRACE_SINGLESTEP, PTRACE_SYSEMU_SINGLESTEP) or \
                    stop.kind != "signal" or stop.signo != signal.SIGTRAP:
                return stop  # a step into the handler, or the end the signal brought
            signo = 0
        while True:
            t.resume(request, signo)
            stop = t.wait() if slice_seconds is None else t.wait_for(slice_seconds)
            if stop.kind == "signal" and stop.signo == signal.SIGTRAP and \
                    not self.hardware.is_ours(self.siginfo_of(stop)):
                signo = 0
                continue  # a perf trap of no counter open on this task (PERF_TRAP)
            if stop.kind != "signal" or stop.signo in SYNCHRONOUS_SIGNALS or stop.signo == expect:
                return stop
            if stop.signo == signal.SIGSTOP and (
                    (interruptible and self.interrupt_requested()) or slice_seconds is not None):
                return stop
            signo = 0

    def _enter_handler(self, signo: int) -> Stop:
        """Deliver ``signo`` and stop at its handler's first instruction, with
        ``frame_mask`` in the frame's uc_sigmask (TEMPORARY_MASK)."""
        t = self.tracee
        mask, self.frame_mask = self.frame_mask, None
        assert mask is not None
        t.resume(PTRACE_SINGLESTEP, signo)
        stop = t.wait()
        if stop.kind == "signal" and stop.signo == signal.SIGTRAP:
            # rdx holds &frame->uc at a handler's entry, SA_SIGINFO or not.
            uc = t.get_regs().rdx
            t.write(uc + UC_SIGMASK, mask.to_bytes(8, "little"))
        return stop

    def siginfo_of(self, stop: Stop) -> bytes:
        """The siginfo of signal stop ``stop``, the task's latest: read once however
        many look at it (a single step's trap is looked at twice)."""
        if self._siginfo is None or self._siginfo[0] is not stop:
            self._siginfo = (stop, self.tracee.get_siginfo())
        return self._siginfo[1]

    def interrupt_requested(self) -> bool:
        return self.interruption is not None and self.interruption.is_set()

    def is_interrupt(self, stop: Stop) -> bool:
        """Whether ``stop`` is the SIGSTOP of an interrupt request."""
        return stop.kind == "signal" and stop.signo == signal.SIGSTOP and \
            self.interrupt_requested()

    def check_interrupt(self) -> None:
        if self.interrupt_requested():
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """While entered, an interrupt request stops this task (SIGSTOP). The task is
        registered before the caller checks the request, so a request made at any
        moment is either seen by that check or sent as a SIGSTOP."""
        interruption = self.interruption
        if interruption is None:
            yield
            return
        pid = self.tid
        interruption.running[pid] = self.tracee
        try:
            yield
        finally:
            interruption.running.pop(pid, None)

    def next_trap(self, request: int, where: str) -> Stop:
        """Resume with ``request`` until the next SIGTRAP, for callers that know no
        event comes: an interrupt raises KeyboardInterrupt, anything but a trap
        is an error."""
        stop = self.resume_until(request, interruptible=True)
        if self.is_interrupt(stop):
            raise KeyboardInterrupt
        if stop.kind == "signal" and stop.signo == signal.SIGTRAP:
            return stop
        raise TraceeError(f"an event came {where} ({self.describe(stop)})")

    # -- state ------------------------------------------------------------------------------
    def inject(self, nr: int, *args: int) -> int:
        """Run syscall ``nr`` in the task, at its address space's retrograde page."""
        assert self.space is not None
        return self.tracee.inject_syscall(self.space.page + rpage.SYSCALL_OFFSET, nr, *args)

    def state_digest(self, *, resume_flag: bool = True) -> bytes:
        """Registers, extended state and writable memory: equal digests, equal states.

        The XSAVE header's XSTATE_BV (bytes 512-519) is left out: it says which
        register groups the CPU considers in their initial state, which a fork
        may change without changing any register. Without ``resume_flag``,
        EFLAGS.RF is left out too: the CPU sets it in the state a fault stops
        at, and a single step onto the same instruction leaves it clear.
        """
        t = self.tracee
        xstate = t.get_xstate()
        xstate = xstate[:512] + bytes(8) + xstate[520:]
        regs = t.get_regs()
        if not resume_flag:
            regs.eflags &= ~RESUME_FLAG
        return memory_digest([(0, registers_to_bytes(regs)), (1, xstate), *writable_memory(t)])

    def describe(self, stop: Stop) -> str:
        if stop.kind == "signal":
            t = self.tracee
            pc = t.get_regs().rip
            if stop.signo != signal.SIGTRAP:
                return f"signal {signal_name(stop.signo)} at pc {pc:#x}"
            # Which trap: si_code (1 int3 or ptrace, 2 single step, 4 debug
            # register, 6 perf counter, 0x80 kernel) and the debug status.
            si_code = int.from_bytes(self.siginfo_of(stop)[8:12], "little", signed=True)
            return (f"signal SIGTRAP at pc {pc:#x} (si_code {si_code:#x}, "
                    f"dr6 {t.get_debugreg(6):#x}, dr7 {t.get_debugreg(7):#x})")
        if stop.kind == "exited":
            return f"exit with status {stop.status}"
        if stop.kind == "killed":
            return f"death by {signal_name(stop.signo)}"
        return f"{stop.kind} stop"

    # -- runs inside an event interval ------------------------------------------------------
    def single_steps(self, limit: int, stop_at: int | None = None) -> tuple[int, bool]:
        """Single-step up to ``limit`` instructions of the program's own code, the
        fast way; with ``stop_at``, stop after the step that arrives there.

        Returns (instructions done, arrived at ``stop_at``). The caller knows that
        no event comes within those instructions (a mark's segment never crosses
        one) and that nothing is pending (``quiet``).
        """
        if not self.quiet:
            raise TraceeError("single_steps needs a task with nothing pending")
        t = self.tracee
        for done in range(1, limit + 1):
            self.next_trap(PTRACE_SYSEMU_SINGLESTEP, "while stepping inside an interval")
            if stop_at is not None and t.get_regs().rip == stop_at:
                return done, True
        return limit, False

    def run_to_arrival(self, addr: int, count: int) -> None:
        """Run to the ``count``-th arrival at ``addr``: for a few arrivals
        (SOFTWARE_ARRIVALS), on an int3 there; for more, on a hardware execution
        breakpoint: a perf counter that stops the task at that arrival (one stop,
        however many arrivals; tracee/perf.py), or, where the kernel offers no
        counter, debug register 0 with one stop an arrival.

        The kernel sets the resume flag on such a stop, so the next resume
        executes the instruction; it is cleared here at the end, so the state is
        the one a software breakpoint gives. Same preconditions as
        ``single_steps``, and no watchpoint may be armed.
        """
        self.leave_for(addr)
        where = f"on the way to {addr:#x}"
        if count <= SOFTWARE_ARRIVALS and self._run_to_arrival_on_int3(addr, count, where):
            return
        try:
            counter = self.hardware.arrivals(addr, stop_at=count) if count > 1 else None
        except PerfUnavailable:
            counter = None
        with self.interruptible():
            self.check_interrupt()
            if counter is not None:
                with counter:
                    self.next_trap(PTRACE_SYSEMU, where)
                    while counter.count < count:  # a trap not the counter's (STRAY_TRAP)
                        self.next_trap(PTRACE_SYSEMU, where)
                    if counter.count != count:
                        raise TraceeError(f"stopped after {counter.count} of {count} arrivals "
                                          f"{where}")
            else:
                with self.hardware.execution_breakpoint(addr):
                    for _ in range(count):
                        self.next_trap(PTRACE_SYSEMU, where)
        self.arrived_at(addr)

    def _run_to_arrival_on_int3(self, addr: int, count: int, where: str) -> bool:
        """``run_to_arrival`` on an int3 written at ``addr`` only while the task
        runs toward it: one stop an arrival, and a single step off it between
        arrivals. False, having done nothing, where no code is mapped there (or
        the program's own int3 is), so that the caller arms the hardware.

        An armed execution breakpoint is not free on every CPU: on AMD EPYC a
        debug register or perf exec counter near a hot loop makes the loop about
        three times slower, so a few arrivals cost less as int3 stops."""
        t = self.tracee
        original = t.read_partial(addr, 1) if addr < OFF_T_LIMIT else b""
        if not original or original == b"\xcc":
            return False
        with self.interruptible():
            self.check_interrupt()
            # Steps off ``addr`` keep the resume flag set (leave_for sets it where the
            # task stands): a counter open on ``addr`` (a reverse search counting
            # hits there) counted the arrival already.
            if t.get_regs().rip == addr:  # an arrival where the task stands does not count
                self.next_trap(PTRACE_SYSEMU_SINGLESTEP, where)
            for arrival in range(1, count + 1):
                with self.breakpoints_armed(frozenset({addr})):
                    self.next_trap(PTRACE_SYSEMU, where)
                regs = t.get_regs()
                if regs.rip != addr + 1:
                    raise TraceeError(f"stopped at {regs.rip:#x} {where}")
                regs.rip = addr
                if arrival < count:
                    regs.eflags |= RESUME_FLAG
                    t.set_regs(regs)
                    self.next_trap(PTRACE_SYSEMU_SINGLESTEP, where)
                else:
                    regs.eflags &= ~RESUME_FLAG
                    t.set_regs(regs)
        return True

    def deliver_pending(self) -> None:
        """Deliver the signal the next resume would, and stop at once: at its handler's
        first instruction before it runs (the kernel reports the step there), or one
        instruction on where it has none. A run to arrivals starts from a task with
        nothing pending, and a signal recorded at a precise state may come right
        after one delivered at the boundary before it (inside that handler)."""
        if not self.pending_signal:
            return
        signo = self.pending_signal
        stop = self.resume_until(PTRACE_SYSEMU_SINGLESTEP)
        if stop.kind != "signal" or stop.signo != signal.SIGTRAP:
            raise TraceeError(f"delivering {signal_name(signo)} before a precise state: "
                              f"{self.describe(stop)}")

    def leave_for(self, addr: int | None) -> None:
        """Prepare a run to arrivals at ``addr`` on debug registers: nothing may be
        pending, and an arrival where the task stands does not count."""
        if not self.quiet:
            raise TraceeError("a run to an arrival needs a task with nothing pending")
        t = self.tracee
        regs = t.get_regs()
        if addr is not None and regs.rip == addr:
            regs.eflags |= RESUME_FLAG
            t.set_regs(regs)

    def arrived_at(self, addr: int | None) -> None:
        """Check that a run to ``addr`` stopped there, and clear the resume flag the
        debug trap set: the state is then the one a software breakpoint gives."""
        if addr is None:
            return  # at an event's stop, left undone: the caller discards this task
        t = self.tracee
        regs = t.get_regs()
        if regs.rip != addr:
            raise TraceeError(f"stopped at {regs.rip:#x} on the way to {addr:#x}")
        regs.eflags &= ~RESUME_FLAG
        t.set_regs(regs)

    def _unexpected(self, stop: Stop, goal: str) -> TraceeError:
        return TraceeError(f"an event came on the way to {goal} ({self.describe(stop)})")

    def run_to_arrival_in_slices(self, addr: int | None, count: int, seconds: float,
                                 pause: Callable[[int], None]) -> None:
        """``run_to_arrival`` on a perf counter (``addr`` None: to the next event's
        stop, left undone), stopping the task (SIGSTOP) after every ``seconds``
        of running to call ``pause(arrivals made so far)``; the timeline clones
        it there. Raises PerfUnavailable without a counter."""
        self.leave_for(addr)
        with contextlib.ExitStack() as stack:
            goal = stack.enter_context(self.hardware.arrivals(addr, stop_at=count)) \
                if addr is not None else None
            stack.enter_context(_ApartFromTracer(self.tid))
            stack.enter_context(self.interruptible())
            self.check_interrupt()
            while True:
                stop = self.resume_until(PTRACE_SYSEMU, interruptible=True,
                                         slice_seconds=seconds)
                if _is_goal(stop, goal):
                    if goal is None or goal.count >= count:
                        break
                    continue  # a trap not the counter's (STRAY_TRAP)
                if self.is_interrupt(stop):
                    raise KeyboardInterrupt
                if stop.kind == "signal" and stop.signo == signal.SIGSTOP:  # a slice's end
                    pause(goal.count if goal is not None else 0)
                    continue
                raise self._unexpected(stop, _goal_name(addr))
            if goal is not None and goal.count != count:
                raise TraceeError(f"stopped after {goal.count} of {count} arrivals on the "
                                  f"way to {_goal_name(addr)}")
        self.arrived_at(addr)

    def run_to_arrival_counting(self, addr: int | None, count: int, counted: list[int],
                                every: int, pause: Callable[[int, int], None]
                                ) -> dict[int, int]:
        """``run_to_arrival`` (``addr`` None: to the next event's stop, left
        undone), counting on the way the arrivals at each of ``counted`` (the
        task's own position included, if it is one) and stopping at every
        ``every``-th of them to call ``pause(address, arrivals there)``. Returns
        the counts. Raises PerfUnavailable without counters."""
        self.leave_for(addr)
        with contextlib.ExitStack() as stack:
            goal = stack.enter_context(self.hardware.arrivals(addr, stop_at=count)) \
                if addr is not None else None
            counters = [stack.enter_context(self.hardware.arrivals(a, stop_at=every))
                        for a in counted]
            stack.enter_context(self.interruptible())
            self.check_interrupt()
            while True:
                stop = self.resume_until(PTRACE_SYSEMU, interruptible=True)
                if _is_goal(stop, goal) and (goal is None or goal.count == count):
                    break
                if self.is_interrupt(stop):
                    raise KeyboardInterrupt
                trapped = stop.kind == "signal" and stop.signo == signal.SIGTRAP
                if not trapped:
                    raise self._unexpected(stop, _goal_name(addr))
                rip = self.tracee.get_regs().rip
                for counter in [c for c in counters if c.addr == rip and c.count % every == 0]:
                    pause(counter.addr, counter.count)
            counts = {c.addr: c.count for c in counters}
        self.arrived_at(addr)
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
        t = self.tracee
        self.leave_for(goal.addr if goal.executes else None)
        regs = t.get_regs()
        if any(p.executes and p.addr == regs.rip for p in [*counted, *pauses]):
            regs.eflags |= RESUME_FLAG
            t.set_regs(regs)
        with contextlib.ExitStack() as stack:
            target = stack.enter_context(self.hardware.counter(goal, stop_at=count))
            counters = {p: stack.enter_context(self.hardware.counter(p)) for p in counted}
            periodic = [(stack.enter_context(self.hardware.counter(p, stop_at=n)), n)
                        for p, n in pauses.items()]
            stack.enter_context(self.interruptible())
            self.check_interrupt()
            paused = {id(c): 0 for c, _ in periodic}
            while True:
                stop = self.resume_until(PTRACE_SYSEMU, interruptible=True)
                if self.is_interrupt(stop):
                    raise KeyboardInterrupt
                if stop.kind != "signal" or stop.signo != signal.SIGTRAP:
                    raise self._unexpected(stop, f"access {target.count + 1} of {count} at "
                                                 f"{goal.addr:#x}")
                if target.count >= count:
                    break
                for counter, every in periodic:
                    made = counter.count
                    if made % every == 0 and made > paused[id(counter)]:
                        paused[id(counter)] = made
                        if pause is not None:
                            pause(counter.place, made)
            if target.count != count:
                raise TraceeError(f"stopped after {target.count} of {count} arrivals at "
                                  f"{goal.addr:#x}")
            counts = {p: c.count for p, c in counters.items()}
        if goal.executes:
            self.arrived_at(goal.addr)
        return counts


def _is_goal(stop: Stop, goal: ArrivalCounter | None) -> bool:
    """Whether ``stop`` ends a run to ``goal``'s arrival, or (None) to an event."""
    if goal is not None:
        return stop.kind == "signal" and stop.signo == signal.SIGTRAP
    return stop.kind == "syscall" or (stop.kind == "signal" and
                                      stop.signo in SYNCHRONOUS_SIGNALS - {signal.SIGTRAP})


def _goal_name(addr: int | None) -> str:
    return f"{addr:#x}" if addr is not None else "the next event"
