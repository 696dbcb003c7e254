"""The recorder: run a program under ptrace and write its trace.

Every syscall stops twice (PTRACE_SYSCALL), except with the syscall buffer
(``syscall_buffer``; tracee/sysbuf.c): the calls its library makes run without a
stop and are read from the thread's buffer at its next stop, and the others stop at
PTRACE_EVENT_SECCOMP and their exit. At the exit stop the recorder keeps
the raw result and the bytes the kernel wrote into the tracee (the syscall
table's output rules), so replay can emulate the call without the kernel.
Non-determinism the kernel does not see as a syscall is turned into events:
vDSO time functions are patched into real syscalls after each exec, rdtsc and
rdtscp fault (PR_TSC_SIGSEGV) and are emulated here, and asynchronous signals
are pinned to a syscall boundary, or, when the program runs on in user code
for too long, to a precise state (registers plus a digest of writable memory).

A syscall the table cannot record is not run: the program is told ENOSYS, as by
an older kernel, with one warning (``strict`` stops the recording there instead).
The program starts with the signal state and timer slack the recorder was given
(``LaunchState``), and reads back its own PR_GET_TSC mode, not the recorder's.
When the program stops (SIGTSTP, SIGSTOP, ...), the recorder stops with it and
continues it when continued (trace/job_control.py). An ioctl, fcntl or prctl request
the table does not model is answered like an unsupported syscall, with the error of a
kernel that lacks it.

Only one task is recorded; a clone, fork or vfork ends the recording with a
one-line error and a trace that is valid up to that event.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import platform
import signal
import stat
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..tracee import cpu, sysbuf
from ..tracee import page as rpage
from ..tracee.maps import (
    KernelMapping,
    memory_digest,
    page_up,
    parse_maps,
    writable_memory,
    writable_memory_digest,
)
from ..tracee.process import (
    DEFAULT_OPTIONS,
    PTRACE_CONT,
    PTRACE_EVENT_CLONE,
    PTRACE_EVENT_EXEC,
    PTRACE_EVENT_FORK,
    PTRACE_EVENT_SECCOMP,
    PTRACE_EVENT_STOP,
    PTRACE_EVENT_VFORK,
    PTRACE_SYSCALL,
    LaunchState,
    PtraceError,
    Stop,
    Tracee,
    TraceeError,
    is_error,
    tgkill,
)
from ..tracee.registers import Registers, registers_to_bytes, signed, syscall_args
from ..tracee.syscalls import (
    MMAP_FAMILY,
    REFUSED_IN_RECORDING,
    UnmodelledRequest,
    UnsupportedSyscall,
    is_supported,
    kernel_may_implement,
    output_regions,
    remote_writes,
    signed32,
    syscall_name,
    syscall_number,
    unmodelled_request,
)
from ..tracee.vdso import patch_vdso
from .events import (
    CloneEvent,
    Event,
    ExecEvent,
    ExitEvent,
    MappingRecord,
    PreemptEvent,
    RandomEvent,
    RdtscEvent,
    SignalEvent,
    SyscallEntryEvent,
    SyscallEvent,
)
from .file_views import FileViews
from .format import TraceWriter
from .job_control import JobControl, continue_pending, task_state
from .output import FROM_ANOTHER_FILE, output_fd, peek_pipe, source
from .scheduler import (
    BLOCK_SECONDS,
    FUTEX_CMD_MASK,
    FUTEX_LOCKS_PI,
    MAX_SLICE,
    NR_FUTEX,
    NR_SCHED_YIELD,
    SLICE,
    RecordedProcess,
    RecordedTask,
    Run,
    Scheduler,
    ThreadBuffer,
    now,
    waits_by_nature,
)

SYNCHRONOUS_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                                 signal.SIGTRAP})
MAP_SHARED, MAP_ANONYMOUS = 0x01, 0x20
# How long an asynchronous signal that arrived in user code may wait for the
# next syscall before it is delivered where the program then is.
HOLD_SECONDS = 0.02
FLUSH_SECONDS = 0.25
BLOCKED_WITHIN = 0.5  # seconds a call being parked may take to block in the kernel

NR_EXECVE = syscall_number("execve")
NR_EXECVEAT = syscall_number("execveat")
NR_EXIT = syscall_number("exit")
NR_EXIT_GROUP = syscall_number("exit_group")
NR_MMAP = syscall_number("mmap")
NR_MREMAP = syscall_number("mremap")
NR_SHMAT = syscall_number("shmat")
NR_SENDFILE = syscall_number("sendfile")
NR_CLONE = syscall_number("clone")
NR_CLONE3 = syscall_number("clone3")
NR_PROCESS_VM_WRITEV = syscall_number("process_vm_writev")
NR_VFORK = syscall_number("vfork")
NR_SECCOMP = syscall_number("seccomp")
NR_PRCTL_NO_NEW_PRIVS = 38  # PR_SET_NO_NEW_PRIVS
TASK_CREATORS = {NR_CLONE, NR_CLONE3, syscall_number("fork"), NR_VFORK}
DEV_ZERO = os.makedev(1, 5)
CLONE_VM, CLONE_VFORK, CLONE_THREAD = 0x100, 0x4000, 0x10000
CLONE_CHILD_SETTID = 0x01000000
WAIT_ALL = 0x40000000  # __WALL
# What a call broken by PTRACE_INTERRUPT returns at its exit stop before the kernel
# enters it again: ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND (include/linux/errno.h).
INTERRUPTED_CALL = frozenset({-512, -513, -514})
NR_PRCTL = syscall_number("prctl")
NR_SCHED_GETAFFINITY = syscall_number("sched_getaffinity")
NR_SCHED_SETAFFINITY = syscall_number("sched_setaffinity")
NR_RT_SIGRETURN = syscall_number("rt_sigreturn")
NR_RESTART_SYSCALL = syscall_number("restart_syscall")
NR_MPROTECT = syscall_number("mprotect")
MAKES_EXECUTABLE = {NR_MMAP, NR_MPROTECT, syscall_number("pkey_mprotect")}
PROT_EXEC = 4
TRAP_HWBKPT = 4  # si_code of a debug-register stop
RESUME_FLAG = 0x10000  # EFLAGS.RF
DEBUG_ADDRESS_REGISTERS = range(4)
ERESTART_RESTARTBLOCK = 516  # include/linux/errno.h; seen by ptrace at the exit stop
PR_GET_TSC, PR_SET_TSC = 25, 26
PR_GET_SECCOMP, PR_SET_SECCOMP = 21, 22
PR_TSC_ENABLE, PR_TSC_SIGSEGV = 1, 2


CPU_MASK_BYTES = 128  # the kernel's largest cpumask (8192 CPUs); longer masks are cut


def cpu_mask(cpus: set[int], size: int) -> bytes:
    """The ``size``-byte cpumask with ``cpus`` set, as sched_getaffinity writes it."""
    mask = bytearray(size)
    for n in cpus:
        if n < size * 8:
            mask[n // 8] |= 1 << (n % 8)
    return bytes(mask)


class RecordingError(Exception):
    """Recording stopped early; the message is one line for the user."""


@dataclass
class RecordingResult:
    trace_dir: Path
    events: int
    exit_status: int | None = None
    exit_signal: int | None = None
    error: str | None = None


@dataclass
class _HeldSignal:
    task: RecordedTask
    signo: int
    siginfo: bytes
    timer: threading.Timer
    raised: bool = False


def _clone_arguments(nr: int, regs: Registers, tracee: Tracee) -> tuple[int, int]:
    """The flags of a clone-family call at its entry, and where it stores the child's
    tid in the child (CLONE_CHILD_SETTID)."""
    if nr == NR_CLONE:
        return regs.rdi, regs.r10  # flags, stack, parent_tid, child_tid, tls
    if nr == NR_CLONE3:
        # struct clone_args { u64 flags, pidfd, child_tid, parent_tid, ... }
        head = tracee.read_partial(regs.rdi, 24).ljust(24, b"\0")
        return int.from_bytes(head[:8], "little"), int.from_bytes(head[16:24], "little")
    if nr == NR_VFORK:
        return CLONE_VM | CLONE_VFORK | signal.SIGCHLD, 0
    return signal.SIGCHLD, 0  # fork


def _object_name(st: os.stat_result) -> str:
    """What MappingRecord.shared calls the file or shmem object ``st`` describes."""
    return f"{st.st_dev}:{st.st_ino}"


def trace_metadata(argv: Sequence[str], cwd: str, env: dict[str, str],
                   launch: LaunchState) -> dict:
    uname = platform.uname()
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "argv": list(argv), "cwd": cwd, "env": env,
        "kernel": f"{uname.system} {uname.release} {uname.version} {uname.machine}",
        "cpu": model, "cpuid": cpu.cpuid_leaves(),
        "start_time": time.time(), "recorder": "retrograde 0.1.0",
        "launch": launch.to_json(),
    }


class Recorder:
    """Records one program, with every thread and process it starts, into one trace
    directory. Owns the tasks (trace/scheduler.py) and the writer.

    ``task`` is the task whose stop is being handled: every method below the driver
    works on it (its tracee, its process's mappings and files).
    """

    writer: TraceWriter
    task: RecordedTask

    def __init__(self, argv: Sequence[str], trace_dir: Path, *, env: dict[str, str] | None = None,
                 cwd: str | None = None, launch: LaunchState | None = None,
                 strict: bool = False, bound_cpu: int | None = None,
                 syscall_buffer: bool | None = None) -> None:
        self.argv = list(argv)
        # The program runs on one CPU, which replay uses too: ld.so keeps the CPU's
        # APIC id (cpuid leaf 1) in memory, so no state matches across CPUs. It is
        # told the CPUs it would run on natively (sched_getaffinity), and what it
        # asks for itself is kept for it without moving it (sched_setaffinity).
        self.program_cpus = os.sched_getaffinity(0)
        self.cpu = max(self.program_cpus) if bound_cpu is None else bound_cpu
        # Taken now, before a caller that constructs us changes its own signals.
        self.launch = LaunchState.of_this_process() if launch is None else launch
        self.strict = strict
        self.trace_dir = trace_dir
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd or os.getcwd()
        self.held_lock = threading.Lock()
        self.random_cpu = cpu.has_random_instructions()
        self.random_sites: set[int] = set()  # every site ever watched: replay traps them
        self._last_flush = time.monotonic()
        self.warned: set[tuple[str, int]] = set()  # the unmodelled requests warned about
        self.jobs = JobControl()
        self.sched = Scheduler()
        self.first = 0  # the program's pid: the recording ends with it
        self.finished = False
        # The syscall buffer (tracee/sysbuf.c): its library, preloaded into the first
        # image; the seccomp filter is installed after the first exec.
        if syscall_buffer is None:  # the test suite runs both ways through this variable
            syscall_buffer = os.environ.get("RETROGRADE_SYSCALL_BUFFER", "") not in ("", "0")
        self.syscall_buffer = syscall_buffer
        self.sysbuf_library = sysbuf.library_path() if syscall_buffer else None

    @property
    def tracee(self) -> Tracee:
        return self.task.tracee

    @property
    def views(self) -> FileViews:
        return self.task.process.views

    # -- driver -------------------------------------------------------------------
    def run(self) -> RecordingResult:
        metadata = trace_metadata(self.argv, self.cwd, self.env, self.launch)
        metadata["bound_cpu"] = self.cpu
        metadata["syscall_buffer"] = self.syscall_buffer
        env = dict(self.env)
        if self.sysbuf_library is not None:
            env["LD_PRELOAD"] = sysbuf.preload_value(self.sysbuf_library, env.get("LD_PRELOAD"))
        self.writer = TraceWriter(self.trace_dir, metadata)
        result = RecordingResult(self.trace_dir, 0)
        # The scheduler sleeps in sigtimedwait for the next stop of any task.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            with self.jobs:
                tracee = Tracee.spawn(self.argv, env=env, cwd=self.cwd,
                                      launch=self.launch, seize=True, cpu=self.cpu)
                process = RecordedProcess(tracee.pid, 0, FileViews(tracee))
                self.task = RecordedTask(tracee.pid, tracee, process)
                self.first = tracee.pid
                self.sched.add(self.task)
                self._loop(result)
        except (RecordingError, TraceeError) as error:
            result.error = str(error)
        except UnsupportedSyscall as error:
            result.error = f"{error} at event {self.writer.event_count}"
        finally:
            self._cancel_held()
            self._end_all()
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            result.events = self.writer.event_count
            self.writer.close(random_sites=sorted(self.random_sites),
                              exit_status=result.exit_status, exit_signal=result.exit_signal,
                              error=result.error)
        return result

    def _end_all(self) -> None:
        """Kill every task still alive and reap them all (a leader's death is reported
        only once its threads are reaped, so they are reaped in any order)."""
        tasks = list(self.sched.tasks.values())
        for tid in [t.tid for t in tasks if t.tracee.alive] + list(self.sched.unclaimed):
            with contextlib.suppress(ProcessLookupError):
                os.kill(tid, signal.SIGKILL)
        by_tid = {t.tid: t for t in tasks}
        while any(t.tracee.alive for t in tasks) or self.sched.unclaimed:
            try:
                pid, status = os.waitpid(-1, WAIT_ALL)
            except ChildProcessError:
                break
            if pid in by_tid:
                by_tid[pid].tracee.decode(status)
            elif os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self.sched.unclaimed.pop(pid, None)
        for t in tasks:
            t.tracee.forget()

    def _append(self, event: Event) -> None:
        self.writer.append(event)
        now = time.monotonic()
        if now - self._last_flush > FLUSH_SECONDS:
            self.writer.flush()
            self._last_flush = now

    def _loop(self, result: RecordingResult) -> None:
        t = self.task
        t.exec_pending = True  # spawn stopped it at PTRACE_EVENT_EXEC of the first exec
        t.in_syscall = True
        t.entry_nr = NR_EXECVE
        while not self.finished:
            task = self.sched.pick()
            if task is None:
                if not self.sched.collect(None):
                    raise RecordingError("every task of the program is gone, but its end "
                                         "was never reported")
                continue
            self._run(task, result)

    def _run(self, task: RecordedTask, result: RecordingResult) -> None:
        """Run ``task`` alone until it blocks, exits, stops or its slice is over."""
        self.task = task
        task.process.views.tracee = task.tracee
        task.slice_start = now()
        while True:
            if task.pending:
                stop = task.pending.popleft()
            else:
                if task.run is Run.STOPPED:
                    self._resume(task)
                got = self._wait(task)
                if got is None:
                    return
                stop = got
            try:
                going_on = self._handle(task, stop, result)
            except (PtraceError, ProcessLookupError) as error:
                if getattr(error, "errno", errno.ESRCH) != errno.ESRCH:
                    raise
                task.run = Run.EXITING  # killed under us (exit_group, SIGKILL): its death comes
                return
            if not going_on or self.finished:
                return
            if (not task.in_syscall and self.sched.others_ready(task)
                    and now() - task.slice_start > task.slice
                    and not task.deliver and not self._in_buffered_call(task)):
                # Not with a signal recorded and not yet delivered: replay delivers it
                # at its event, so the task would be in the handler at a PreemptEvent
                # whose state is from before it.
                self._leave(task)
                return

    def _resume(self, task: RecordedTask) -> None:
        try:
            if task.armed != len(task.process.watched):
                self._arm_watched(task)
            # Under the filter, a traced call stops at PTRACE_EVENT_SECCOMP by itself; only
            # its exit needs PTRACE_SYSCALL.
            request = PTRACE_SYSCALL if task.in_syscall or not task.filtered else PTRACE_CONT
            task.tracee.resume(request, task.deliver)
        except (PtraceError, ProcessLookupError):
            task.run = Run.EXITING
            return
        task.deliver = 0
        task.run = Run.RUNNING
        if task.in_syscall:
            task.entered_at = now()

    def _wait(self, task: RecordedTask) -> Stop | None:
        """The running task's next stop; None once it has been parked in its call."""
        while True:
            if task.pending:
                return task.pending.popleft()
            timeout = None
            if task.run is Run.RUNNING and self.sched.others_ready(task):
                if task.in_syscall:
                    left = 0.0 if task.waits else task.entered_at + BLOCK_SECONDS - now()
                    if left <= 0:
                        self._park(task)
                        return None
                    timeout = left
                elif not task.interrupting:
                    left = task.slice_start + task.slice - now()
                    if left <= 0:
                        with contextlib.suppress(PtraceError, ProcessLookupError):
                            task.tracee.interrupt()
                        task.interrupting = True
                        continue
                    timeout = left
            self.sched.collect(timeout)

    def _park(self, task: RecordedTask) -> None:
        """Leave ``task`` in the call it is blocked in and let the others run."""
        if not task.entry_recorded:
            self._append(SyscallEntryEvent(task=task.tid, nr=task.entry_nr,
                                           args=task.entry_args,
                                           writes=self._stored_as_it_blocked(task)))
            task.entry_recorded = True
        task.run = Run.PARKED
        task.slice = SLICE
        self._announce_child(task)

    def _stored_as_it_blocked(self, task: RecordedTask) -> tuple[tuple[int, bytes], ...]:
        """What a call being parked stored as it blocked: a PI lock's word, in which
        FUTEX_LOCK_PI sets FUTEX_WAITERS for the owner's unlock to see (in user code
        the owner then takes the slow path: FUTEX_UNLOCK_PI). The word is read once
        the thread sleeps in the kernel (or has already left the call)."""
        args = task.entry_args
        if task.entry_nr != NR_FUTEX or (args[1] & FUTEX_CMD_MASK) not in FUTEX_LOCKS_PI:
            return ()
        deadline = now() + BLOCKED_WITHIN
        while task_state(task.tid) not in ("S", "D", "t", "T", "Z", "X", "") and \
                now() < deadline:
            time.sleep(0.0002)
        return ((args[0], task.tracee.read_partial(args[0], 4)),)

    def _leave(self, task: RecordedTask) -> None:
        """Switch away from ``task``, stopped in user code: a PreemptEvent names where,
        unless it is still where its last event left it."""
        t = task.tracee
        regs = registers_to_bytes(t.get_regs())
        if regs != task.last_regs:
            self._append(PreemptEvent(task=task.tid, regs=regs, xstate=t.get_xstate(),
                                      digest=writable_memory_digest(t)))
            task.last_regs = None
        task.run = Run.STOPPED

    def _handle(self, task: RecordedTask, stop: Stop, result: RecordingResult) -> bool:
        """Record what ``stop`` says; whether the task goes on running."""
        if stop.kind in ("exited", "killed"):
            self._died(task, stop, result)
            return False
        if task.run is Run.EXITING:
            return False  # a stop that raced its death: it is killed, not resumed
        task.run = Run.STOPPED
        if task.fresh:
            # Its first stop, in user mode right after the clone: nothing happened yet.
            task.fresh = False
            task.last_regs = registers_to_bytes(task.tracee.get_regs())
            if stop.kind == "signal" and stop.signo not in (signal.SIGSTOP, signal.SIGTRAP):
                task.deliver = self._signal(stop.signo)
            return True
        if task.sysbuf is not None and not (stop.kind == "event" and
                                            stop.event == PTRACE_EVENT_EXEC):
            # At an exec's event the old image, and its buffer, are gone: the caller's
            # records were taken at its execve's entry (another thread's, made since
            # that thread's last stop, are lost with it).
            self._drain_buffer(task)
        if stop.kind == "event" and stop.event == PTRACE_EVENT_SECCOMP and not task.in_syscall:
            stop = Stop("syscall")  # a traced call's entry, under the filter
        if stop.kind == "syscall":
            if task.in_syscall:
                return self._syscall_exit_stop(task)
            going_on = self._syscall_entry_stop(task)
            if task.entry_nr == NR_EXIT and task.tid != task.tracee.tgid:
                self._await_death(task, result)
            return going_on
        if stop.kind == "event":
            return self._event(task, stop)
        if stop.kind == "group-stop":
            self._stop_with_program(stop.signo)
            return False
        if task.restarting is not None:
            # A signal came with our interrupt: the call it broke ended for real.
            nr, args, value = task.restarting
            task.restarting = None
            self._append(SyscallEvent(task=task.tid, nr=nr, args=args, result=value))
            task.entry_recorded = False
        task.deliver = self._signal(stop.signo)
        return True

    def _await_death(self, task: RecordedTask, result: RecordingResult) -> None:
        """A thread that exits dies before another task runs. Its death clears its
        clear-tid word and wakes the futex a join waits on: were the joiner run
        first, the trace would have it see the word cleared before the exit that
        clears it, and its replay would find the word still set."""
        while True:
            stop = self.sched.wait_for(task)
            task.pending.popleft()
            if stop.kind in ("exited", "killed"):
                self._died(task, stop, result)
                return
            # A stop on its way out (a signal that came meanwhile): it dies anyway.
            with contextlib.suppress(PtraceError, ProcessLookupError):
                task.tracee.resume(PTRACE_SYSCALL, 0)

    def _died(self, task: RecordedTask, stop: Stop, result: RecordingResult) -> None:
        if task.tid == task.tracee.tgid:
            # The kernel reports a leader's death only after its other threads', but
            # the scheduler may come to the leader first: theirs are recorded first,
            # as replay reaps them (and the first leader's death ends the recording).
            for other in [o for o in self.sched.tasks.values()
                          if o is not task and o.process is task.process]:
                death = next((s for s in other.pending if s.kind in ("exited", "killed")),
                             None)
                if death is not None:
                    other.pending.clear()
                    self._died(other, death, result)
        if stop.kind == "exited":
            self._append(ExitEvent(task=task.tid, status=stop.status))
        else:
            self._append(ExitEvent(task=task.tid, signo=stop.signo))
        held = task.held
        if isinstance(held, _HeldSignal):
            held.timer.cancel()
        self.sched.remove(task)
        if task.tid == self.first:
            if stop.kind == "exited":
                result.exit_status = stop.status
            else:
                result.exit_signal = stop.signo
            self.finished = True

    def _syscall_entry_stop(self, task: RecordedTask) -> bool:
        if task.restarting is not None:
            task.restarting = None  # the call our interrupt broke, entered again
        self._syscall_entry()
        nr = task.entry_nr
        task.waits = waits_by_nature(nr, task.entry_args)
        if nr in (NR_EXIT, NR_EXIT_GROUP):
            self._resume(task)
            task.run = Run.EXITING
            if nr == NR_EXIT_GROUP:
                for other in self.sched.tasks.values():
                    if other.process is task.process:
                        other.run = Run.EXITING
                        other.pending = collections.deque(
                            s for s in other.pending if s.kind in ("exited", "killed"))
            return False
        return True

    def _syscall_exit_stop(self, task: RecordedTask) -> bool:
        if task.interrupting:
            value = signed(task.tracee.get_regs().rax)
            if value in INTERRUPTED_CALL:
                # Our PTRACE_INTERRUPT broke the call: once the trap is reported the
                # kernel enters it again, so the program never sees this exit.
                task.restarting = (task.entry_nr, task.entry_args, value)
                task.in_syscall = False
                return True
        self._syscall_exit()
        task.entry_recorded = False
        self._announce_child(task)
        # sched_yield gives the others their turn.
        return not (task.entry_nr == NR_SCHED_YIELD and self.sched.others_ready(task))

    def _event(self, task: RecordedTask, stop: Stop) -> bool:
        t = task.tracee
        if stop.event == PTRACE_EVENT_EXEC:
            former = t.geteventmsg()
            if former != task.tid and former in self.sched.tasks:
                self._exec_by_thread(task, self.sched.tasks[former])
                return False
            t.reopen_memory()
            task.exec_pending = True
            return True
        if stop.event in (PTRACE_EVENT_CLONE, PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK):
            return self._cloned(task, t.geteventmsg())
        if stop.event == PTRACE_EVENT_STOP:
            if task.restarting is not None:
                task.interrupting = False  # the trap after the broken call: go on into it
                return True
            if task.interrupting:
                task.interrupting = False
                if self._in_buffered_call(task):
                    return True  # never between a buffered call and its record: again soon
                if self.sched.others_ready(task):
                    task.slice = min(task.slice * 2, MAX_SLICE)
                    self._leave(task)
                    return False
            # Otherwise continued from a group-stop (SIGCONT): go on.
        return True

    def _exec_by_thread(self, leader: RecordedTask, execer: RecordedTask) -> None:
        """A thread other than the leader exec'd: every other thread is gone (the others
        report their deaths, the leader does not) and the thread goes on with the
        leader's tid, which is the pid."""
        self._append(ExitEvent(task=leader.tid, status=0))
        rest = leader.pending
        self.sched.remove(leader)
        leader.tracee.forget()
        tid = leader.tid
        execer.exec_from = execer.tid
        self.sched.rename(execer, tid)
        execer.tracee.pid = tid
        execer.tracee.reopen_memory()
        execer.pending.extend(rest)
        execer.exec_pending = True
        execer.run = Run.STOPPED

    def _cloned(self, parent: RecordedTask, tid: int) -> bool:
        """The parent's clone made task ``tid``: follow it from its first stop on.

        It runs only once its CloneEvent is in the trace, after the parent's call
        (or its SyscallEntryEvent, when the call blocks the parent: vfork)."""
        flags = parent.clone_flags
        tracee = Tracee.attach_new(tid)
        if flags & CLONE_THREAD:
            process = parent.process
        else:
            process = parent.process.fork(tid, tracee)
        child = RecordedTask(tid, tracee, process, announced=False, fresh=True,
                             filtered=parent.filtered)
        if parent.sysbuf is not None and not flags & CLONE_THREAD:
            # A vfork child writes into its parent's buffer (same memory and thread
            # pointer); a forked one into its own copy.
            child.sysbuf = parent.sysbuf if flags & CLONE_VM else \
                ThreadBuffer(parent.sysbuf.addr, parent.sysbuf.size, parent.sysbuf.consumed)
        child.process.tsc_mode = parent.process.tsc_mode
        self.sched.add(child)
        parent.child = tid
        if flags & CLONE_VFORK:
            # The parent's call returns once the child has exec'd or exited.
            self._resume(parent)
            self._park(parent)
            return False
        return True

    def _announce_child(self, parent: RecordedTask) -> None:
        """Append the CloneEvent of the task the parent's clone made, if not yet done."""
        tid, parent.child = parent.child, None
        if tid is None:
            return
        flags = parent.clone_flags
        child = self.sched.tasks.get(tid)
        writes: tuple[tuple[int, bytes], ...] = ()
        if child is not None:
            first = self.sched.wait_for(child)
            if flags & CLONE_CHILD_SETTID and parent.clone_ctid and \
                    first.kind not in ("exited", "killed"):
                writes = ((parent.clone_ctid, child.tracee.read_partial(parent.clone_ctid, 4)),)
            child.announced = True
        process = parent.process.pid if flags & CLONE_THREAD else tid
        self._append(CloneEvent(task=tid, parent=parent.tid, process=process, flags=flags,
                                writes=writes))

    # -- syscalls -------------------------------------------------------------------
    def _syscall_entry(self) -> None:
        t = self.tracee
        regs = t.get_regs()
        nr = regs.orig_rax
        self.task.in_syscall = True
        self.task.entry_nr = nr
        self.task.entry_args = syscall_args(regs)  # execve's are gone at its exit
        event_no = self.writer.event_count
        if nr in TASK_CREATORS:
            self.task.clone_flags, self.task.clone_ctid = _clone_arguments(nr, regs, t)
        if nr == sysbuf.SYSBUF_NR:
            self._sysbuf_request(regs)
            return
        if not is_supported(nr):
            # Never let the kernel run what could not be replayed. Answered ENOSYS
            # the program sees an older kernel (or exactly this one, for a number it
            # does not implement), and the call is recorded like any other.
            if self.strict:
                raise UnsupportedSyscall(nr)
            if kernel_may_implement(nr):
                print(f"retrograde: warning: {syscall_name(nr)} (nr {nr}) at event {event_no} "
                      "is not supported: the program was told ENOSYS (record --strict stops "
                      "instead)", file=sys.stderr, flush=True)
            self._skip(regs, errno.ENOSYS)
        if self.task.held is not None:
            self._raise_held(self.task)
        request = None if self.strict else unmodelled_request(nr, syscall_args(regs))
        if nr in REFUSED_IN_RECORDING:
            # The kernel would write into the program's memory outside any
            # syscall stop (rseq, io_uring): skip the call, and exit sees -errno.
            self._skip(regs, REFUSED_IN_RECORDING[nr])
        elif request is not None:
            self._answer_unmodelled(request, regs)
        elif nr == NR_PRCTL and (regs.rdi & 0xFFFFFFFF) in (PR_GET_TSC, PR_SET_TSC):
            self._tsc_prctl_entry(regs)
        elif nr == NR_RT_SIGRETURN:
            self.task.restart = None  # sigreturn resets the task's restart block
        elif nr == NR_SCHED_SETAFFINITY and self._is_own(regs.rdi):
            self._setaffinity_entry(regs)
        elif nr == NR_PROCESS_VM_WRITEV and self._writes_another_recorded_process(regs.rdi):
            self._skip(regs, errno.ENOSYS)
        elif self._stores_into_retrograde_page(nr):
            self._skip(regs, errno.EIO)
        if nr in (NR_EXIT, NR_EXIT_GROUP):
            self._append(SyscallEvent(task=t.pid, nr=nr, args=syscall_args(regs), result=0))
        self.task.peeked = self._peek_echoed_pipe(nr, self.task.entry_args)

    def _syscall_exit(self) -> None:
        t = self.tracee
        regs = t.get_regs()
        nr = self.task.entry_nr
        self.task.in_syscall = False
        result = signed(regs.rax)
        args = self.task.entry_args
        if self.task.exec_pending and nr in (NR_EXECVE, NR_EXECVEAT) and result == 0:
            self.task.exec_pending = False
            if self.writer.event_count:  # the first exec is the start of the trace, not an event
                # A thread that exec'd made the call under its own tid (exec_from).
                caller = self.task.exec_from or t.pid
                self.task.exec_from = None
                self._append(SyscallEvent(task=caller, nr=nr, args=args, result=0))
            self._after_exec(regs)
            self.task.last_regs = registers_to_bytes(t.get_regs())
            return
        if nr == sysbuf.SYSBUF_NR:
            writes = self.task.sysbuf_writes
            self.task.sysbuf_writes = ()
            self._append(SyscallEvent(task=t.pid, nr=nr, args=args, result=result,
                                      writes=writes))
            self.task.last_regs = registers_to_bytes(regs)
            return
        rule_nr, rule_args = nr, args
        if nr == NR_RESTART_SYSCALL and self.task.restart is not None:
            rule_nr, rule_args = self.task.restart  # it continues that call, and writes what it does
        if nr == NR_PRCTL and not is_error(result) and (args[0] & 0xFFFFFFFF) == PR_GET_TSC:
            # The kernel said PR_TSC_SIGSEGV, which is ours; the program's own mode is this.
            t.write(args[1], self.task.process.tsc_mode.to_bytes(4, "little"))
        if self.task.filtered:
            result = self._hide_filter(nr, args, result, regs)
        if nr == NR_SCHED_GETAFFINITY and result > 0 and self._is_own(args[0]):
            t.write(args[2], cpu_mask(self.program_cpus, result))
        if result == -ERESTART_RESTARTBLOCK:
            self.task.restart = (rule_nr, rule_args)
        writes = tuple((addr, t.read_partial(addr, size))
                       for addr, size in output_regions(rule_nr, rule_args, result, t.read)
                       if size > 0)
        mmap_id = mapping = None
        if nr in MMAP_FAMILY:
            mmap_id = self.task.process.mmap_count
            self.task.process.mmap_count += 1
            if not is_error(result):
                mapping = self._mapping_made(nr, args, result)
        writes += tuple(self.views.changes(nr, args, result))
        if nr == NR_PROCESS_VM_WRITEV and self.views.is_own_process(signed32(args[0])):
            writes += tuple((addr, t.read_partial(addr, size))
                            for addr, size in remote_writes(args, result, t.read) if size > 0)
        echo = self._echo_from_another_file(nr, args, result)
        self.task.process.echoed.follow(nr, args, result)
        self._append(SyscallEvent(task=t.pid, nr=nr, args=args, result=result, writes=writes,
                                  mmap_id=mmap_id, mapping=mapping, echo=echo))
        if nr in MAKES_EXECUTABLE and not is_error(result) and args[2] & PROT_EXEC:
            start = result if nr == NR_MMAP else args[0]
            self._watch_random_instructions(start, start + page_up(args[1]))
        self.task.last_regs = registers_to_bytes(regs)

    # -- the syscall buffer (tracee/sysbuf.c) ------------------------------------------
    def _install_filter(self, pc: int, page: int) -> None:
        """Install the seccomp filter that lets the page's syscall instructions run
        untraced, in the first image before its first instruction; from then on the
        program's traced calls stop at PTRACE_EVENT_SECCOMP (the thread is resumed with
        PTRACE_CONT). Without privileges the filter needs no_new_privs first."""
        t = self.tracee
        program = sysbuf.filter_program(page)
        at = page + rpage.SCRATCH_OFFSET
        fprog = at + len(program)
        t.write(at, program)
        t.write(fprog, (len(program) // 8).to_bytes(8, "little") + at.to_bytes(8, "little"))
        site = page + rpage.SYSCALL_OFFSET
        try:
            if os.geteuid() != 0:
                t.inject_syscall(site, NR_PRCTL, NR_PRCTL_NO_NEW_PRIVS, 1, 0, 0, 0)
            got = t.inject_syscall(site, NR_SECCOMP, sysbuf.SECCOMP_SET_MODE_FILTER, 0, fprog)
        finally:
            t.write(at, bytes(len(program) + 16))
        if got != 0:
            print(f"retrograde: warning: the syscall buffer's seccomp filter was refused "
                  f"({os.strerror(-got)}): every syscall is traced", file=sys.stderr, flush=True)
            return
        t.set_options(DEFAULT_OPTIONS | sysbuf.PTRACE_O_TRACESECCOMP)
        self.task.filtered = True

    def _sysbuf_request(self, regs: Registers) -> None:
        """The library's own traced call: register a thread's buffer, or empty a full
        one (its records were taken at this stop; the recorder sets its end back to 0
        as part of the event, so that replay does the same)."""
        task = self.task
        op = regs.rdi
        if op == sysbuf.REGISTER and task.filtered and task.process.page == rpage.DEFAULT_ADDRESS:
            task.sysbuf = ThreadBuffer(regs.rsi, regs.rdx)
            self._skip(regs, 0)
        elif op == sysbuf.FLUSH and task.sysbuf is not None:
            zero = bytes(8)
            self.tracee.write(task.sysbuf.addr, zero)
            task.sysbuf.consumed = 0
            task.sysbuf_writes = ((task.sysbuf.addr, zero),)
            self._skip(regs, 0)
        else:
            self._skip(regs, errno.ENOSYS)

    def _hide_filter(self, nr: int, args: tuple[int, ...], result: int, regs: Registers) -> int:
        """PR_GET_SECCOMP answers the program's own mode, not our filter's (2): 0 until
        the program installs a filter of its own."""
        process = self.task.process
        if is_error(result):
            return result
        if (nr == NR_SECCOMP and args[0] == sysbuf.SECCOMP_SET_MODE_FILTER) or \
                (nr == NR_PRCTL and (args[0] & 0xFFFFFFFF) == PR_SET_SECCOMP):
            process.own_seccomp = True
        elif nr == NR_PRCTL and (args[0] & 0xFFFFFFFF) == PR_GET_SECCOMP and result == 2 \
                and not process.own_seccomp:
            regs.rax = 0
            self.tracee.set_regs(regs)
            return 0
        return result

    def _in_buffered_call(self, task: RecordedTask) -> bool:
        """Whether the thread is between a buffered call and its record's commit."""
        if task.sysbuf is None:
            return False
        return task.tracee.read_partial(task.sysbuf.addr + 8, 8) not in (bytes(8), b"")

    def _drain_buffer(self, task: RecordedTask) -> None:
        """Write the records the thread committed since its last stop into the trace, as
        the SyscallEvents they would have been had each call stopped."""
        b = task.sysbuf
        if b is None or task.in_syscall:
            return  # in a traced call: nothing was buffered since its entry stop
        t = task.tracee
        try:
            end = int.from_bytes(t.read(b.addr, 8), "little")
            if end == b.consumed:
                return
            if not b.consumed < end <= b.size - sysbuf.HEADER_SIZE:
                raise ValueError(f"its end moved from {b.consumed} to {end}")
            data = t.read(b.addr + sysbuf.HEADER_SIZE + b.consumed, end - b.consumed)
            calls = sysbuf.parse_records(data)
        except (OSError, ValueError) as error:
            raise RecordingError(f"the syscall buffer of thread {task.tid} at event "
                                 f"{self.writer.event_count} is unreadable ({error})") from error
        for call in calls:
            self._append(SyscallEvent(task=task.tid, nr=call.nr, args=call.args,
                                      result=call.result, writes=self._buffered_writes(call)))
        b.consumed = end
        task.last_regs = None

    def _buffered_writes(self, call: sysbuf.BufferedCall) -> tuple[tuple[int, bytes], ...]:
        """A record's output bytes cut into the syscall table's regions."""
        regions = output_regions(call.nr, call.args, call.result, self.tracee.read)
        writes, at = [], 0
        for addr, size in regions:
            writes.append((addr, call.data[at:at + size]))
            at += size
        if at > len(call.data) or len(call.data) - at >= 8:
            raise RecordingError(f"buffered {syscall_name(call.nr)} at event "
                                 f"{self.writer.event_count} stored {len(call.data)} bytes, "
                                 f"the syscall table says {at}")
        return tuple(writes)

    def _skip(self, regs: Registers, error: int) -> None:
        """Make the kernel skip the call at this entry stop; its exit sees -``error``."""
        regs.orig_rax = 0xFFFFFFFFFFFFFFFF
        regs.rax = -error & 0xFFFFFFFFFFFFFFFF
        self.tracee.set_regs(regs)

    def _answer_unmodelled(self, request: UnmodelledRequest, regs: Registers) -> None:
        """Skip an ioctl, fcntl or prctl whose request the table does not model, with the
        answer of a kernel without it; warn once per request, naming the first event."""
        flags = None
        if request.fd is not None:
            try:
                with open(f"/proc/{self.tracee.pid}/fdinfo/{request.fd}") as f:
                    flags = int(next(line for line in f if line.startswith("flags:"))
                                .split()[1], 8)
            except (OSError, StopIteration, ValueError):
                flags = None  # not open: EBADF, whatever the request
        error = request.answer(flags)
        if error != errno.EBADF and (request.call, request.request) not in self.warned:
            self.warned.add((request.call, request.request))
            print(f"retrograde: warning: {request} at event {self.writer.event_count} is "
                  f"not supported: the program was told {errno.errorcode[error]} (record "
                  "--strict stops instead)", file=sys.stderr, flush=True)
        self._skip(regs, error)

    def _tsc_prctl_entry(self, regs: Registers) -> None:
        """PR_SET_TSC and PR_GET_TSC see the program's own mode, not the recorder's.

        The recorder keeps rdtsc faulting (PR_TSC_SIGSEGV) for the whole recording;
        what the program asked for decides whether a fault is emulated or delivered
        to it as the SIGSEGV it would natively get. PR_GET_TSC runs (the kernel checks
        the pointer) and has its answer replaced at the exit; a valid PR_SET_TSC is
        skipped, an invalid one runs for the kernel's own EINVAL.
        """
        if (regs.rdi & 0xFFFFFFFF) == PR_SET_TSC and regs.rsi in (PR_TSC_ENABLE, PR_TSC_SIGSEGV):
            self.task.process.tsc_mode = regs.rsi
            self._skip(regs, 0)

    def _stores_into_retrograde_page(self, nr: int) -> bool:
        """Whether a write to /proc/self/mem would store into the retrograde page,
        which the program alone does not have: it is answered EIO, as a store to
        an address nothing maps is natively (rr's syscall_bp writes an int3 there)."""
        page = self.task.process.page
        target = self.views.memory_store(nr, self.task.entry_args)
        return page != 0 and target is not None and \
            target[0] < page + rpage.SIZE and page < target[1]

    def _writes_another_recorded_process(self, pid: int) -> bool:
        """Whether a process_vm_writev would store into another process of the
        recording, which its replay would not see: the call is answered ENOSYS
        instead, with a warning once."""
        pid = signed32(pid)
        task = self.sched.tasks.get(pid)
        if task is None or task.process is self.task.process:
            return False
        if ("process_vm_writev", -1) not in self.warned:
            self.warned.add(("process_vm_writev", -1))
            print(f"retrograde: warning: process_vm_writev into process {pid} at event "
                  f"{self.writer.event_count} is not supported (the replay of that process "
                  "would not see it): the program was told ENOSYS", file=sys.stderr,
                  flush=True)
        return True

    def _is_own(self, pid: int) -> bool:
        """Whether an affinity call's pid argument names a task of the program."""
        return signed(pid) == 0 or signed(pid) in self.sched.tasks

    def _setaffinity_entry(self, regs: Registers) -> None:
        """Keep the CPUs the program asks for as its own and skip the call, with the
        kernel's answers: EFAULT for an unreadable mask, EINVAL for one without an
        online CPU."""
        try:
            mask = self.tracee.read(regs.rdx, min(regs.rsi, CPU_MASK_BYTES))
        except OSError:
            self._skip(regs, errno.EFAULT)
            return
        online = set(range(os.cpu_count() or 1))
        wanted = {n for n in range(len(mask) * 8) if mask[n // 8] >> (n % 8) & 1} & online
        if not wanted:
            self._skip(regs, errno.EINVAL)
            return
        self.program_cpus = wanted
        self._skip(regs, 0)

    def _mapping_made(self, nr: int, args: tuple[int, ...], result: int) -> MappingRecord | None:
        """The region a successful mmap-family call made that replay cannot make from
        the call alone: a file's, a SysV segment's, or a file mapping grown by mremap
        (a new copy that covers the new end); None for anonymous memory."""
        if nr == NR_MMAP:
            if args[3] & MAP_ANONYMOUS:
                return self._shared_anonymous(result, args) if args[3] & MAP_SHARED else None
            return self._file_mapping(result, args)
        if nr == NR_SHMAT:
            # Replay maps the segment's contents at attach time privately: it never
            # attaches (or changes) a live host segment.
            return self._region_copy(result, 0)
        if nr == NR_MREMAP and args[2] > args[1]:
            return self._region_copy(result, args[2])
        return None

    def _file_mapping(self, addr: int, args: tuple[int, ...]) -> MappingRecord | None:
        length, prot, flags, fd, offset = args[1], args[2], args[3], args[4], args[5]
        fd_path = f"/proc/{self.tracee.pid}/fd/{fd & 0xFFFFFFFF}"
        st = os.stat(fd_path)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == DEV_ZERO:  # anonymous memory
            return self._shared_anonymous(addr, args) if flags & MAP_SHARED else None
        if not stat.S_ISREG(st.st_mode):
            raise RecordingError(f"mmap of {os.readlink(fd_path)} at event "
                                 f"{self.writer.event_count}: only regular files and /dev/zero "
                                 "can be mapped in a recording")
        perms = "".join(c if prot & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))
        perms += "s" if flags & 0x01 else "p"
        changed = self.views.note(fd_path, shared=bool(flags & 0x01))
        # A mapping that reaches pages past the end of its file gets a copy extended by
        # a hole to its end: the file may grow under it (trace/file_views.py).
        extent = offset + page_up(length)
        file_hash = self.writer.add_file(
            fd_path, size=extent if extent > page_up(st.st_size) else None, reuse=not changed)
        return MappingRecord(addr, addr + page_up(length), perms, offset, os.readlink(fd_path),
                             file_hash=file_hash,
                             shared=_object_name(st) if flags & MAP_SHARED else None)

    def _shared_anonymous(self, addr: int, args: tuple[int, ...]) -> MappingRecord | None:
        """MAP_SHARED anonymous memory (or /dev/zero): the shmem object the kernel made
        for it is named, so that a second view of it (mremap) is known as one."""
        m = next((k for k in parse_maps(self.tracee.read_maps()) if k.start == addr), None)
        if m is None:
            return None
        try:
            st = os.stat(f"/proc/{self.tracee.pid}/map_files/{m.start:x}-{m.end:x}")
        except OSError:
            return None
        return MappingRecord(addr, addr + page_up(args[1]), m.perms, 0, m.name,
                             shared=_object_name(st))

    def _region_copy(self, addr: int, length: int) -> MappingRecord | None:
        """The mapping at ``addr`` (``length`` bytes, 0: as the kernel shows it) with a copy
        of what backs it now, if that is a file (regular, shmem or a SysV segment)."""
        m = next((k for k in parse_maps(self.tracee.read_maps()) if k.start == addr), None)
        if m is None or not m.is_file:
            return None
        path = f"/proc/{self.tracee.pid}/map_files/{m.start:x}-{m.end:x}"
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                return None
        except OSError:
            return None
        end = addr + page_up(length) if length else m.end
        shared = m.perms[3] == "s"
        changed = self.views.note(path, shared=shared)
        st = os.stat(path)
        extent = m.offset + end - addr
        file_hash = self.writer.add_file(path, size=extent if extent > page_up(st.st_size) else None,
                                         reuse=not changed)
        return MappingRecord(addr, end, m.perms, m.offset, m.name, file_hash=file_hash,
                             shared=_object_name(st) if shared else None)

    # -- output to the terminal ------------------------------------------------------
    def _peek_echoed_pipe(self, nr: int, args: tuple[int, ...]) -> bytes | None:
        """What the pipe that call ``nr`` is about to drain into stdout or stderr holds.

        Once the call is done, those bytes are gone from the pipe; tee(2) copies
        them out of it now without consuming them. Bytes that arrive while the
        call blocks are not seen (a single process rarely waits on its own pipe).
        """
        if nr not in FROM_ANOTHER_FILE or self.task.process.echoed.stream(output_fd(nr, args)) is None:
            return None
        fd, _ = source(nr, args)
        path = f"/proc/{self.tracee.pid}/fd/{fd}"
        try:
            if not stat.S_ISFIFO(os.stat(path).st_mode):
                return None
            return peek_pipe(path, args[4] if nr != NR_SENDFILE else args[3])
        except OSError:
            return None

    def _echo_from_another_file(self, nr: int, args: tuple[int, ...],
                                result: int) -> bytes | None:
        """The bytes sendfile, splice or copy_file_range moved to stdout or stderr."""
        peeked, self.task.peeked = self.task.peeked, None
        if nr not in FROM_ANOTHER_FILE or result <= 0 or \
                self.task.process.echoed.stream(output_fd(nr, args)) is None:
            return None
        if peeked is not None:
            return peeked[:result]
        fd, offset_at = source(nr, args)
        t = self.tracee
        if offset_at:  # the kernel stored the offset after the copy there
            end = int.from_bytes(t.read_partial(offset_at, 8).ljust(8, b"\0"), "little")
        else:
            end = self.views.position(fd)
        try:
            with open(f"/proc/{t.pid}/fd/{fd}", "rb") as f:
                data = os.pread(f.fileno(), result, end - result)
        except OSError as error:
            raise RecordingError(f"{syscall_name(nr)} at event {self.writer.event_count}: "
                                 f"cannot read the {result} bytes it sent to the terminal "
                                 f"({error.strerror})") from error
        return data

    # -- exec -----------------------------------------------------------------------
    def _after_exec(self, regs: Registers) -> None:
        """Map the retrograde page, patch the vDSO and record the new address space."""
        t = self.tracee
        mappings = parse_maps(t.read_maps())
        page_addr = self._map_retrograde_page(regs.rip, mappings)
        self.task.process.page = page_addr
        self.task.sysbuf = None  # the old image's buffer is gone with it
        if self.task.filtered and page_addr != rpage.DEFAULT_ADDRESS:
            raise RecordingError(f"exec at event {self.writer.event_count}: the retrograde "
                                 f"page could not go to {rpage.DEFAULT_ADDRESS:#x}, where the "
                                 "syscall buffer's filter lets calls through (record without "
                                 "--syscall-buffer)")
        if self.syscall_buffer and not self.task.filtered and page_addr == rpage.DEFAULT_ADDRESS:
            self._install_filter(regs.rip, page_addr)
        mappings = parse_maps(t.read_maps())
        for m in mappings:
            if m.name == "[vdso]":
                patch_vdso(t, m.start, m.end)
        records = [self._mapping_record(m, page_addr) for m in mappings
                   if m.name != "[vsyscall]"]
        self.task.process.watched = []  # execve cleared the debug registers with the old address space
        for m in mappings:
            if "x" in m.perms and m.name not in ("[vdso]", "[vsyscall]") and m.start != page_addr:
                self._watch_random_instructions(m.start, m.end)
        with open(f"/proc/{t.pid}/auxv", "rb") as f:
            auxv = f.read()
        with open(f"/proc/{t.pid}/cmdline", "rb") as f:
            argv = tuple(a.decode(errors="replace") for a in f.read().split(b"\0")[:-1])
        with open(f"/proc/{t.pid}/stat") as f:
            start_brk = int(f.read().rsplit(")", 1)[1].split()[44])  # start_brk, field 47 of proc(5)
        self._append(ExecEvent(task=t.pid, path=os.readlink(f"/proc/{t.pid}/exe"), argv=argv,
                               mappings=records, regs=registers_to_bytes(t.get_regs()),
                               xstate=t.get_xstate(), auxv=auxv, retrograde_page=page_addr,
                               brk=start_brk))

    def _map_retrograde_page(self, pc: int, mappings: list[KernelMapping]) -> int:
        """Map the page with a syscall borrowed at ``pc`` (the new image's entry)."""
        t = self.tracee
        saved = t.read(pc, 3)
        t.write(pc, b"\x0f\x05\xcc")
        try:
            for addr in rpage.CANDIDATE_ADDRESSES:
                if any(m.start < addr + rpage.SIZE and addr < m.end for m in mappings):
                    continue
                # mmap(addr, SIZE, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE)
                got = t.inject_syscall(pc, NR_MMAP, addr, rpage.SIZE, 5, 0x100022, -1, 0)
                if got == addr:
                    t.write(addr, rpage.contents())
                    return addr
            raise RecordingError("cannot place the retrograde page: every candidate address "
                                 "is taken")
        finally:
            t.write(pc, saved)

    def _mapping_record(self, m: KernelMapping, page_addr: int) -> MappingRecord:
        t = self.tracee
        if m.start == page_addr:
            return MappingRecord(m.start, m.end, m.perms, 0, rpage.NAME)
        file_hash = contents = None
        if m.is_file:
            path = f"/proc/{t.pid}/map_files/{m.start:x}-{m.end:x}"
            self.views.note(path)
            file_hash = self.writer.add_file(path)
        if not m.is_pseudo and m.readable and (m.writable or not m.is_file):
            contents = t.read_partial(m.start, m.size)
        return MappingRecord(m.start, m.end, m.perms, m.offset, m.name, file_hash, contents)

    # -- signals --------------------------------------------------------------------
    def _stop_with_program(self, signo: int) -> None:
        """The program is in a group-stop (its stop signal was delivered and recorded):
        leave it stopped, stop the recorder with it, and when the recorder is continued,
        see that the program is too (trace/job_control.py).

        The program's next stop is the kernel's report of its SIGCONT (PTRACE_EVENT_STOP),
        from which the loop resumes it; the SIGCONT itself is then delivered, and
        recorded, like any signal. Nothing is recorded for the stop itself: the program
        cannot tell it from time passing.

        Every thread of every stopped process reports its group-stop and is left in it;
        the recorder stops with the program's first thread, the one it started.
        """
        t = self.tracee
        t.listen()
        self.task.run = Run.LISTENING
        if self.task.tid != self.first:
            return
        self.writer.flush()  # a recording killed while stopped keeps its trace to here
        if self.jobs.stop_with(signo, t.pid) and not continue_pending(t.pid):
            # Continued alone (`kill -CONT` of the recorder): the program with it.
            # A `fg` signals the whole group at once, so its SIGCONT is pending by now.
            with contextlib.suppress(ProcessLookupError):
                os.kill(t.pid, signal.SIGCONT)

    def _signal(self, signo: int) -> int:
        """Handle a signal-delivery-stop; returns the signal to deliver (0: none)."""
        t = self.tracee
        try:
            siginfo = t.get_siginfo()
        except OSError:
            return 0  # a group-stop, not a delivery: just resume
        regs = t.get_regs()
        si_code = int.from_bytes(siginfo[8:12], "little", signed=True)
        if signo == signal.SIGSEGV and si_code > 0 and self.task.process.tsc_mode == PR_TSC_ENABLE:
            insn = cpu.decode_rdtsc(t.read_partial(regs.rip, 3))
            if insn is not None:
                self._emulate_rdtsc(regs, *insn)
                return 0
        if signo == signal.SIGTRAP and si_code == TRAP_HWBKPT and self.task.process.watched:
            dr6 = t.get_debugreg(6)
            slot = (dr6 & 0xF).bit_length() - 1
            if slot >= 0 and slot < len(self.task.process.watched) and self.task.process.watched[slot] == regs.rip:
                t.set_debugreg(6, 0)
                self._emulate_random(regs)
                return 0
        if signo in SYNCHRONOUS_SIGNALS and si_code > 0:
            self._append(SignalEvent(task=t.pid, signo=signo, siginfo=siginfo, where="sync"))
            self.task.last_regs = None
            return signo
        with self.held_lock:
            held = self.task.held
            if held is not None and held.signo == signo:
                held.timer.cancel()
                self.task.held = None
                siginfo = held.siginfo
                t.set_siginfo(siginfo)
        if self.task.held is None and self._in_buffered_call(self.task):
            # Between a buffered call and its record the trace would put the signal
            # before the call: hold it until the thread is out (ptrace(2): a signal
            # suppressed here restarts an interrupted call by itself).
            self._hold(signo, siginfo)
            return 0
        if self.task.last_regs == registers_to_bytes(regs):
            self._append(SignalEvent(task=t.pid, signo=signo, siginfo=siginfo, where="boundary"))
        elif held is None and self.task.held is None:
            self._hold(signo, siginfo)
            return 0
        else:
            memory = writable_memory(t)
            self._append(SignalEvent(task=t.pid, signo=signo, siginfo=siginfo, where="precise",
                                     regs=registers_to_bytes(regs), xstate=t.get_xstate(),
                                     digest=memory_digest(memory, regs.rsp), memory=tuple(memory)))
        self.task.last_regs = None
        return signo

    def _hold(self, signo: int, siginfo: bytes) -> None:
        """Discard the signal now and raise it again at the next syscall or after a while."""
        task = self.task
        timer = threading.Timer(HOLD_SECONDS, self._raise_held, args=(task,))
        timer.daemon = True
        task.held = _HeldSignal(task, signo, siginfo, timer)
        timer.start()

    def _raise_held(self, task: RecordedTask) -> None:
        """Send the held signal again, to the task that was to get it."""
        with self.held_lock:
            held = task.held
            if not isinstance(held, _HeldSignal) or held.raised or not task.tracee.alive:
                return
            held.timer.cancel()
            held.raised = True
            with contextlib.suppress(ProcessLookupError, OSError):
                tgkill(task.process.pid, task.tracee.pid, held.signo)

    def _cancel_held(self) -> None:
        with self.held_lock:
            for task in self.sched.tasks.values():
                if isinstance(task.held, _HeldSignal):
                    task.held.timer.cancel()
                task.held = None

    # -- rdrand and rdseed ------------------------------------------------------------
    def _watch_random_instructions(self, start: int, end: int) -> None:
        """Put execution breakpoints on the rdrand/rdseed in [start, end).

        They cannot be made to fault (no CPUID faulting), and patching code found by
        a byte scan could break an instruction that only looks like one. A debug
        register stops the task only where an instruction really starts, so a false
        candidate costs nothing. There are four: a site once watched stays watched
        until the next exec (replay puts its trap at every recorded site for the
        whole recording), and the sites beyond four run unrecorded, as before: a
        replay that diverges after one names it.
        """
        watched = self.task.process.watched
        if len(watched) >= len(DEBUG_ADDRESS_REGISTERS) or not self.random_cpu:
            return
        code = self.tracee.read_partial(start, end - start)
        for addr, _ in cpu.find_random_instructions(code, start):
            if addr in watched or len(watched) >= len(DEBUG_ADDRESS_REGISTERS):
                continue
            watched.append(addr)
            self.random_sites.add(addr)
        self._arm_watched(self.task)  # the other threads of the process before they run

    def _arm_watched(self, task: RecordedTask) -> None:
        """Debug registers are the thread's own (a clone starts without them): put the
        process's watched sites on ``task``, stopped."""
        watched = task.process.watched
        armed, task.armed = task.armed, len(watched)
        if not watched or armed == len(watched):
            return
        for n, addr in enumerate(watched):
            task.tracee.set_debugreg(n, addr)
        # Ln enables slot n; RW and LEN 00: on execution, one byte.
        task.tracee.set_debugreg(7, sum(1 << 2 * n for n in range(len(watched))))

    def _emulate_random(self, regs: Registers) -> None:
        t = self.tracee
        insn = cpu.decode_random(t.read_partial(regs.rip, 15))
        if insn is None:
            # Other code mapped where an rdrand was: let the instruction run (the
            # resume flag keeps the breakpoint from firing again on it).
            regs.eflags |= RESUME_FLAG
            t.set_regs(regs)
            return
        value, carry = cpu.random_value(insn.mnemonic)
        pc = regs.rip
        cpu.apply_random(regs, insn, value, carry)
        self._append(RandomEvent(task=t.pid, pc=pc, value=value, mnemonic=insn.mnemonic,
                                 carry=carry))
        t.set_regs(regs)
        self.task.last_regs = registers_to_bytes(regs)

    def _emulate_rdtsc(self, regs: Registers, which: str, length: int) -> None:
        t = self.tracee
        if which == "rdtsc":
            value, aux = cpu.rdtsc(), None
        else:
            value, aux = cpu.rdtscp()
            regs.rcx = aux
        regs.rax = value & 0xFFFFFFFF
        regs.rdx = value >> 32
        self._append(RdtscEvent(task=t.pid, pc=regs.rip, value=value, aux=aux))
        regs.rip += length
        t.set_regs(regs)
        self.task.last_regs = registers_to_bytes(regs)
