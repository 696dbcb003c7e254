"""One traced Linux process: spawn, wait, resume, registers, memory, injection.

Memory goes through /proc/PID/mem in bulk (seed 003): one pread/pwrite per
range instead of a PEEKDATA per word, and writes land even in read-only pages
(the kernel uses FOLL_FORCE for a ptracer), which is how breakpoints and the
patched vDSO are written.

Invariant of ``inject_syscall``: the tracee is in a stop from which PTRACE_CONT
does not execute a syscall of the program's own. That holds at a syscall-exit
stop, at a signal-delivery or event stop other than PTRACE_EVENT_EXEC (the
kernel stores execve's result after that stop), and at a PTRACE_SYSEMU entry
stop (the kernel decided to skip the call before stopping).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ptrace.binding.func import ptrace as _ptrace
from ptrace.binding.func import ptrace_getregs, ptrace_setregs
from ptrace.error import PtraceError

from .cpu import xsave_size
from .perf import perf_trap_token
from .registers import Registers, signed

PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_SINGLESTEP = 9
PTRACE_SYSCALL = 24
PTRACE_SYSEMU = 31
PTRACE_SYSEMU_SINGLESTEP = 32
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_SETSIGINFO = 0x4203
PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_GETSIGMASK = 0x420A
PTRACE_SETSIGMASK = 0x420B
PTRACE_POKEUSER = 6
PTRACE_PEEKUSER = 3
NT_X86_XSTATE = 0x202

PTRACE_O_TRACESYSGOOD = 0x01
PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACEVFORK = 0x04
PTRACE_O_TRACECLONE = 0x08
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_EXITKILL = 0x100000

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128
# The signals whose default action is a group-stop (signal(7)).
STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})

DEFAULT_OPTIONS = (PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_TRACEFORK
                   | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL)

PR_SET_TSC = 26
PR_TSC_SIGSEGV = 2
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.personality.argtypes = [ctypes.c_ulong]

USER_DEBUGREG_OFFSET = 848  # offsetof(struct user, u_debugreg) on x86-64


NR_RT_SIGACTION = 13
NR_RT_SIGPROCMASK = 14
SIG_SETMASK = 2
PR_SET_TIMERSLACK = 29
PR_GET_TIMERSLACK = 30
# CPython ignores these itself at startup (Python/pylifecycle.c) and keeps no note of
# what it was given, so "ignored" in this process says nothing about its parent.
_IGNORED_BY_PYTHON = frozenset({signal.SIGPIPE, signal.SIGXFSZ})
_UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int


@dataclass(frozen=True)
class LaunchState:
    """What a program inherits from its parent besides argv, environment and fds.

    execve keeps ignored signals ignored, resets handled ones to SIG_DFL and keeps
    the blocked mask and the timer slack; the program can read all of it back
    (``grep ^Sig /proc/self/status``, sigaction, PR_GET_TIMERSLACK) and its behaviour
    depends on it (Ctrl-C, death by SIGPIPE). A recording starts the program with the
    state its recorder was given, not the recorder's own, and the trace keeps it so
    that a replay starts the same way.
    """

    ignored: frozenset[int] = frozenset()
    blocked: frozenset[int] = frozenset()
    timer_slack: int = 0  # nanoseconds; 0: whatever the spawner has

    @classmethod
    def of_this_process(cls) -> LaunchState:
        """What this process's parent gave it, as far as it can still be known.

        Read before the caller changes anything itself (the CLI ignores Ctrl-C
        while it records). SIGPIPE and SIGXFSZ are taken as SIG_DFL, which is what
        shells and Python's subprocess give: CPython ignores both before any of our
        code runs and the kernel keeps no trace of the earlier disposition, so a
        parent that ignored them on purpose (``trap '' PIPE``) is not seen.
        """
        with open("/proc/thread-self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)

        def signals(field: str) -> frozenset[int]:
            bits = int(fields[field], 16)
            return frozenset(n for n in range(1, 65) if bits >> (n - 1) & 1)

        return cls(ignored=signals("SigIgn") - _IGNORED_BY_PYTHON - _UNCATCHABLE,
                   blocked=signals("SigBlk") - _UNCATCHABLE, timer_slack=_launch_timer_slack())

    def to_json(self) -> dict[str, object]:
        return {"ignored": sorted(self.ignored), "blocked": sorted(self.blocked),
                "timer_slack": self.timer_slack}

    @classmethod
    def from_json(cls, value: object) -> LaunchState:
        """The state a trace's metadata holds; a malformed one is a ValueError."""
        fields = value if isinstance(value, dict) else {}
        ignored, blocked = fields.get("ignored"), fields.get("blocked")
        slack = fields.get("timer_slack", 0)
        if not (isinstance(ignored, list) and isinstance(blocked, list)
                and all(isinstance(n, int) and 1 <= n <= 64 for n in (*ignored, *blocked))
                and isinstance(slack, int) and slack >= 0):
            raise ValueError(f"bad launch state {value!r}")
        return cls(frozenset(ignored) - _UNCATCHABLE, frozenset(blocked) - _UNCATCHABLE, slack)

    def apply_to_this_process(self) -> None:
        """Set it in a forked child before its execve (raw syscalls: no Python state)."""
        action = (ctypes.c_ulong * 4)()  # handler, flags, restorer, mask
        for signo in range(1, 65):
            if signo in _UNCATCHABLE:
                continue
            action[0] = 1 if signo in self.ignored else 0  # SIG_IGN, SIG_DFL
            # 32 and 33 belong to glibc's threads; a kernel without them says EINVAL.
            _libc.syscall(NR_RT_SIGACTION, signo, ctypes.byref(action), None, 8)
        if self.timer_slack:
            _libc.prctl(PR_SET_TIMERSLACK, self.timer_slack, 0, 0, 0)
        mask = ctypes.c_ulong(sum(1 << (n - 1) for n in self.blocked))
        _libc.syscall(NR_RT_SIGPROCMASK, SIG_SETMASK, ctypes.byref(mask), None, 8)


class TraceeError(Exception):
    """The traced process could not be started or controlled."""


@dataclass(frozen=True)
class Stop:
    """What waitpid reported.

    kind: "syscall" (a syscall-entry or -exit stop; TRACESYSGOOD), "event"
    (PTRACE_EVENT_*; ``event``), "signal" (signal-delivery-stop; ``signo``),
    "group-stop" (a seized tracee stopped by a stop signal; ``signo``, the signal),
    "exited" (``status``), "killed" (``signo``). A tracee spawned without ``seize``
    reports a group-stop as a "signal" stop whose siginfo cannot be read.
    """

    kind: str
    signo: int = 0
    event: int = 0
    status: int = 0


class Tracee:
    """A process this tool traces. Owns its /proc/PID/mem handle; ``kill`` ends it."""

    def __init__(self, pid: int, tgid: int | None = None) -> None:
        self.pid = pid
        self._tgid = tgid
        self._mem = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        self.alive = True
        self.last_stop = Stop("event")

    @property
    def tgid(self) -> int:
        """The id of the process (thread group) this thread is in."""
        if self._tgid is None:
            self._tgid = thread_group_of(self.pid)
        return self._tgid

    def stop_thread(self) -> None:
        """Send SIGSTOP to this thread alone (a kill(2) would go to its whole group)."""
        tgkill(self.tgid, self.pid, signal.SIGSTOP)

    def reopen_memory(self) -> None:
        """After an exec: a /proc/PID/mem handle stays bound to the old address space."""
        os.close(self._mem)
        self._mem = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)

    # -- life cycle --------------------------------------------------------------
    @classmethod
    def spawn(cls, argv: Sequence[str], *, env: dict[str, str] | None = None,
              cwd: str | None = None, trap_tsc: bool = True,
              options: int = DEFAULT_OPTIONS, isolate: bool = False,
              launch: LaunchState | None = None, seize: bool = False,
              cpu: int | None = None) -> Tracee:
        """Fork and exec ``argv`` under ptrace; return it stopped at PTRACE_EVENT_EXEC.

        The child stops itself before exec so that the options (EXITKILL above
        all: the tracee never outlives us) are set before its first instruction.
        An exec failure comes back through a close-on-exec pipe. ``isolate``
        (for replay) puts the child in its own process group, away from the
        terminal's Ctrl-C, and without core dumps. ``launch`` is the signal
        state and timer slack the program starts with (default: what a fork
        of this process would pass on, which is Python's, not its parent's).

        ``seize`` attaches with PTRACE_SEIZE instead of PTRACE_TRACEME: group-stops
        are then told apart from signal deliveries ("group-stop") and the tracee can
        be left stopped with PTRACE_LISTEN (ptrace(2), "Group-stop"). The child then
        waits for the attach on a pipe rather than stopping itself, which would leave
        its process group stopped as far as job control is concerned.

        ``cpu`` binds the program, and every task it will make, to that one CPU.
        """
        path = argv[0]
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        attached, go = os.pipe2(os.O_CLOEXEC) if seize else (-1, -1)
        pid = os.fork()
        if pid == 0:  # child: only simple calls until execve
            try:
                os.close(read_end)
                if isolate:
                    os.setpgid(0, 0)
                    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                # Until the tracer has set EXITKILL, the parent-death signal ends us
                # if the tracer dies first.
                _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if seize:
                    os.close(go)
                    if os.read(attached, 1) != b"+":
                        os._exit(127)  # the tracer gave up
                else:
                    _ptrace(PTRACE_TRACEME)
                    os.kill(os.getpid(), signal.SIGSTOP)
                # EXITKILL holds from here on. The parent-death signal would survive
                # execve, and the program would read it back (PR_GET_PDEATHSIG).
                _libc.prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
                if cwd:
                    os.chdir(cwd)
                if cpu is not None:
                    os.sched_setaffinity(0, {cpu})
                environment = env if env is not None else dict(os.environ)
                if launch is not None:
                    launch.apply_to_this_process()
                # Last before execve: from here on the clock reads of this very
                # Python process (a profiler's, say) would fault too.
                if trap_tsc:
                    _libc.prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0)
                os.execve(path, list(argv), environment)
            except BaseException as error:  # noqa: BLE001 - report anything to the parent
                os.write(write_end, f"{getattr(error, 'strerror', None) or error}".encode())
            finally:
                os._exit(127)
        os.close(write_end)
        try:
            if seize:
                os.close(attached)
                _ptrace(PTRACE_SEIZE, pid, 0, options)
            else:
                _, status = os.waitpid(pid, 0)
                if not os.WIFSTOPPED(status):
                    raise TraceeError(f"cannot start {path}: the child ended before exec")
            # Opened while the child waits: once it goes on, a failed exec may end it
            # at once, and a dead process's memory can no longer be opened.
            tracee = cls(pid, pid)
        except BaseException:
            os.close(read_end)
            if seize:
                os.close(go)
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            raise
        try:
            if seize:
                os.write(go, b"+")
                os.close(go)
            else:
                _ptrace(PTRACE_SETOPTIONS, pid, 0, options)
                _ptrace(PTRACE_CONT, pid, 0, 0)
            while True:
                stop = tracee.wait()
                if stop.kind == "event" and stop.event == PTRACE_EVENT_EXEC:
                    tracee.reopen_memory()
                    return tracee
                if stop.kind in ("exited", "killed"):
                    # The child reported why before it exited; the pipe is closed now.
                    message = os.read(read_end, 4096).decode(errors="replace")
                    raise TraceeError(f"cannot run {path}: {message or stop}")
                # A signal before exec (the child is still us): deliver it as is.
                tracee.resume(PTRACE_CONT, stop.signo if stop.kind == "signal" else 0)
        except BaseException:
            tracee.kill()
            raise
        finally:
            os.close(read_end)

    @classmethod
    def attached(cls, tid: int, tgid: int) -> Tracee:
        """A task PTRACE_O_TRACECLONE (or _FORK, _VFORK) attached, at its first stop
        (a SIGSTOP signal-delivery-stop: its next resume must not deliver it)."""
        _, status = os.waitpid(tid, 0x40000000)  # __WALL
        tracee = cls(tid, tgid)
        tracee.last_stop = tracee._decode(status)
        return tracee

    def wait(self) -> Stop:
        _, status = os.waitpid(self.pid, 0x40000000)  # __WALL
        self.last_stop = self._decode(status)
        return self.last_stop

    def wait_for(self, seconds: float) -> Stop:
        """The next stop if it comes within ``seconds``; otherwise the task is
        stopped with SIGSTOP and that stop returned (its signo says which).

        The tracer sleeps meanwhile rather than polling: a task the tracer has
        just woken is often queued on the tracer's own CPU, and runs only once
        the tracer gives the CPU up. A stop that races the SIGSTOP leaves the
        SIGSTOP pending: the caller's next resume reports it at once, a stray
        like any other."""
        _fine_timer_slack()
        time.sleep(seconds)
        pid, status = os.waitpid(self.pid, os.WNOHANG | 0x40000000)
        if pid:
            self.last_stop = self._decode(status)
            return self.last_stop
        self.stop_thread()
        return self.wait()

    def _decode(self, status: int) -> Stop:
        stop = self.decode_status(status)
        if stop.kind in ("exited", "killed"):
            self._gone()
        return stop

    def decode(self, status: int) -> Stop:
        """What a waitpid status of this task (collected by someone else) says."""
        self.last_stop = self._decode(status)
        return self.last_stop

    @staticmethod
    def decode_status(status: int) -> Stop:
        if os.WIFEXITED(status):
            return Stop("exited", status=os.WEXITSTATUS(status))
        if os.WIFSIGNALED(status):
            return Stop("killed", signo=os.WTERMSIG(status))
        sig = os.WSTOPSIG(status)
        if sig == signal.SIGTRAP | 0x80:
            return Stop("syscall")
        event = status >> 16
        if event == PTRACE_EVENT_STOP and sig in STOP_SIGNALS:
            return Stop("group-stop", signo=sig)
        if sig == signal.SIGTRAP and event:
            return Stop("event", signo=sig, event=event)
        return Stop("signal", signo=sig)

    @classmethod
    def attach_new(cls, tid: int) -> Tracee:
        """A task the kernel attached to us (PTRACE_O_TRACECLONE and friends); one that
        is already gone is returned dead."""
        try:
            return cls(tid)
        except OSError:
            tracee = cls.__new__(cls)
            tracee.pid, tracee.alive, tracee.last_stop = tid, False, Stop("exited")
            return tracee

    def interrupt(self) -> None:
        """Stop the running task where it is (PTRACE_EVENT_STOP with SIGTRAP); seized
        tasks only."""
        _ptrace(PTRACE_INTERRUPT, self.pid, 0, 0)

    def forget(self) -> None:
        """Stop following this task (it is dead, or someone else reaps it)."""
        self._gone()

    def _gone(self) -> None:
        if self.alive:
            self.alive = False
            os.close(self._mem)

    def kill(self) -> None:
        """End the process and reap it; safe to call twice."""
        if not self.alive:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
            while True:
                _, status = os.waitpid(self.pid, 0x40000000)
                if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                    break
        except (ProcessLookupError, ChildProcessError):
            pass
        self._gone()

    # -- resuming -----------------------------------------------------------------
    def resume(self, request: int = PTRACE_SYSCALL, signo: int = 0) -> None:
        _ptrace(request, self.pid, 0, signo)

    def listen(self) -> None:
        """Leave a seized tracee in its group-stop, not running, until a SIGCONT (or
        SIGKILL) ends it; that is its next stop: PTRACE_EVENT_STOP with SIGTRAP."""
        _ptrace(PTRACE_LISTEN, self.pid, 0, 0)

    def set_options(self, options: int) -> None:
        _ptrace(PTRACE_SETOPTIONS, self.pid, 0, options)

    def geteventmsg(self) -> int:
        value = ctypes.c_ulong()
        _ptrace(PTRACE_GETEVENTMSG, self.pid, 0, ctypes.addressof(value))
        return value.value

    # -- registers ------------------------------------------------------------------
    def get_regs(self) -> Registers:
        return ptrace_getregs(self.pid)

    def set_regs(self, regs: Registers) -> None:
        ptrace_setregs(self.pid, regs)

    def get_xstate(self) -> bytes:
        """The XSAVE area, as large as this CPU's (over 8 KiB with AMX tiles)."""
        size = xsave_size()
        buf = ctypes.create_string_buffer(size)
        iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), size)
        _ptrace(PTRACE_GETREGSET, self.pid, NT_X86_XSTATE, ctypes.addressof(iov))
        return buf.raw[: iov[1]]

    def set_xstate(self, data: bytes) -> None:
        """Set the XSAVE area. The kernel takes only an area of its own full size: a
        shorter one (from a CPU with fewer state components) is padded with zeros,
        which its header marks as the components' initial state."""
        size = max(len(data), xsave_size())
        buf = ctypes.create_string_buffer(data, size)
        iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), size)
        _ptrace(PTRACE_SETREGSET, self.pid, NT_X86_XSTATE, ctypes.addressof(iov))

    def get_siginfo(self) -> bytes:
        buf = ctypes.create_string_buffer(128)
        _ptrace(PTRACE_GETSIGINFO, self.pid, 0, ctypes.addressof(buf))
        return buf.raw

    def set_siginfo(self, data: bytes) -> None:
        buf = ctypes.create_string_buffer(data, 128)
        _ptrace(PTRACE_SETSIGINFO, self.pid, 0, ctypes.addressof(buf))

    def get_sigmask(self) -> int:
        """The thread's blocked signals (bit signo - 1)."""
        buf = ctypes.create_string_buffer(8)
        _ptrace(PTRACE_GETSIGMASK, self.pid, 8, ctypes.addressof(buf))
        return int.from_bytes(buf.raw, "little")

    def set_sigmask(self, mask: int) -> None:
        """Block exactly ``mask`` (the kernel leaves SIGKILL and SIGSTOP out)."""
        buf = ctypes.create_string_buffer(mask.to_bytes(8, "little"), 8)
        _ptrace(PTRACE_SETSIGMASK, self.pid, 8, ctypes.addressof(buf))

    def set_debugreg(self, n: int, value: int) -> None:
        _ptrace(PTRACE_POKEUSER, self.pid, USER_DEBUGREG_OFFSET + 8 * n, value)

    def get_debugreg(self, n: int) -> int:
        return _ptrace(PTRACE_PEEKUSER, self.pid, USER_DEBUGREG_OFFSET + 8 * n, 0,
                       check_errno=True)

    # -- memory ---------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        """Read ``size`` bytes; raises OSError when the range is not all mapped."""
        data = os.pread(self._mem, size, addr)
        if len(data) != size:
            raise OSError(5, f"short read at {addr:#x} ({len(data)} of {size} bytes)")
        return data

    def read_partial(self, addr: int, size: int) -> bytes:
        """As many bytes as are readable from ``addr`` (up to ``size``)."""
        try:
            return os.pread(self._mem, size, addr)
        except OSError:
            out = bytearray()
            page = 4096
            while len(out) < size:
                chunk = min(size - len(out), page - (addr + len(out)) % page)
                try:
                    out += os.pread(self._mem, chunk, addr + len(out))
                except OSError:
                    break
            return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        written = os.pwrite(self._mem, data, addr)
        if written != len(data):
            raise OSError(5, f"short write at {addr:#x}")

    def read_maps(self) -> str:
        with open(f"/proc/{self.pid}/maps") as f:
            return f.read()

    # -- syscall injection ----------------------------------------------------------
    def inject_syscall(self, syscall_insn: int, nr: int, *args: int) -> int:
        """Run syscall ``nr`` in the tracee at ``syscall_insn`` (``syscall; int3``).

        Registers are restored afterwards. See the module invariant for when
        this is allowed. Returns the raw (signed) result.
        """
        saved = self.get_regs()
        regs = self.get_regs()
        regs.rip = syscall_insn
        regs.rax = nr
        regs.orig_rax = 0xFFFFFFFFFFFFFFFF
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
            setattr(regs, name, value & 0xFFFFFFFFFFFFFFFF)
        self.set_regs(regs)
        # Other signals arriving now are discarded: replay delivers the recorded
        # ones itself. An exec event is the caller's to handle.
        stop = _continue_past_strays(self)
        if stop.kind in ("exited", "killed"):
            raise TraceeError(f"process {self.pid} died during an injected syscall {nr}")
        after = self.get_regs()
        if stop.kind != "event":
            # The call may have moved the segment bases (arch_prctl): those stay.
            saved.fs_base, saved.gs_base = after.fs_base, after.gs_base
            self.set_regs(saved)
        return signed(after.rax)


def fork_clone(tracee: Tracee, syscall_insn: int) -> Tracee:
    """A stopped copy of ``tracee`` made by an injected fork (PTRACE_O_TRACEFORK attaches it).

    Both are left stopped with the registers ``tracee`` had: the copy in its
    first stop (a SIGSTOP signal-delivery-stop, resumed with no signal), the
    original at the trap after the injected syscall. Memory is shared
    copy-on-write, so a copy costs little until either side writes.

    The fork is clone(CLONE_PARENT | SIGCHLD): the copy is a child of the
    tracer, like the first replay process, so the tracer's wait reaps it. A
    child of the checkpoint would stay a zombie for as long as the checkpoint
    (which never runs, so never waits) lives, and thousands of restores of one
    checkpoint would use up the process table.
    """
    saved = tracee.get_regs()
    child_pid = _injected_clone(tracee, syscall_insn, CLONE_PARENT | signal.SIGCHLD,
                                PTRACE_EVENT_FORK, "fork")
    _, status = os.waitpid(child_pid, 0x40000000)
    child = Tracee(child_pid, child_pid)
    child.last_stop = child._decode(status)
    child.set_regs(saved)
    return child


NR_CLONE = 56
CLONE_PARENT = 0x8000
# A thread as pthread_create makes one (CLONE_VM | CLONE_FS | CLONE_FILES |
# CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM), without the tid words and TLS,
# which the caller sets itself.
THREAD_FLAGS = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000


def thread_clone(tracee: Tracee, syscall_insn: int) -> Tracee:
    """A new thread in ``tracee``'s process, made by an injected clone and left at
    its first stop (a SIGSTOP signal-delivery-stop, PTRACE_O_TRACECLONE attached
    it) before it ran an instruction: the caller gives it its registers. It
    shares ``tracee``'s stack until then, which it never touches."""
    child_tid = _injected_clone(tracee, syscall_insn, THREAD_FLAGS, PTRACE_EVENT_CLONE,
                                "a thread clone")
    return Tracee.attached(child_tid, tracee.tgid)


def _injected_clone(tracee: Tracee, syscall_insn: int, flags: int, event: int,
                    what: str) -> int:
    """Run clone(``flags``) in ``tracee`` from the syscall instruction at
    ``syscall_insn``, expecting ptrace ``event``; put its registers back and return
    the new task's id."""
    saved = tracee.get_regs()
    regs = tracee.get_regs()
    regs.rip, regs.rax, regs.orig_rax = syscall_insn, NR_CLONE, 0xFFFFFFFFFFFFFFFF
    regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8 = flags, 0, 0, 0, 0
    tracee.set_regs(regs)
    stop = _continue_past_strays(tracee)
    if stop.kind != "event" or stop.event != event:
        raise TraceeError(f"{what} in process {tracee.pid} failed ({_stop_details(tracee, stop)})")
    new_id = tracee.geteventmsg()
    stop = _continue_past_strays(tracee)
    if stop.kind != "signal" or stop.signo != signal.SIGTRAP:
        raise TraceeError(f"process {tracee.pid} did not return from {what} ({stop})")
    tracee.set_regs(saved)
    return new_id


def thread_group_of(tid: int) -> int:
    """The thread group id of live thread ``tid``, from /proc."""
    try:
        with open(f"/proc/{tid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return tid


_original_timer_slack: int | None = None


@functools.cache
def _fine_timer_slack() -> None:
    """Sleeps of tens of microseconds last that long, not the default 50 µs more."""
    global _original_timer_slack
    _original_timer_slack = _libc.prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)
    _libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)


def _launch_timer_slack() -> int:
    """The calling thread's timer slack before ``_fine_timer_slack`` changed it."""
    if _original_timer_slack is not None:
        return _original_timer_slack
    return max(_libc.prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0), 0)


def _stop_details(tracee: Tracee, stop: Stop) -> str:
    """``stop``, and for a SIGTRAP which trap it was: si_code (1 int3, 2 single
    step, 4 debug register, 6 perf counter, 0x80 kernel), the debug status and
    control registers, and the pc."""
    if stop.kind != "signal" or stop.signo != signal.SIGTRAP:
        return str(stop)
    si_code = int.from_bytes(tracee.get_siginfo()[8:12], "little", signed=True)
    return (f"{stop}: SIGTRAP si_code {si_code:#x}, dr6 {tracee.get_debugreg(6):#x}, "
            f"dr7 {tracee.get_debugreg(7):#x}, pc {tracee.get_regs().rip:#x}")


def _continue_past_strays(tracee: Tracee) -> Stop:
    """PTRACE_CONT until a stop other than a stray asynchronous signal.

    A checkpoint's copies are its children: when one ends, the checkpoint gets
    a SIGCHLD nobody recorded. Such signals are discarded here, and so is a perf
    counter's SIGTRAP (replay/hardware.py, PERF_TRAP).
    """
    while True:
        tracee.resume(PTRACE_CONT)
        stop = tracee.wait()
        if stop.kind == "signal" and stop.signo == signal.SIGTRAP and \
                perf_trap_token(tracee.get_siginfo()) is not None:
            continue  # a perf counter's: the injected code is never counted
        if stop.kind == "event" and stop.event == PTRACE_EVENT_SECCOMP:
            continue  # the syscall buffer's filter traces a call injected off the page: run it
        if stop.kind != "signal" or stop.signo == signal.SIGTRAP:
            return stop


NR_TGKILL = 234


def tgkill(tgid: int, tid: int, signo: int) -> None:
    """Send ``signo`` to thread ``tid`` of process ``tgid`` alone."""
    if _libc.syscall(NR_TGKILL, tgid, tid, signo) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def is_error(result: int) -> bool:
    return -4095 <= result < 0


__all__ = ["STOP_SIGNALS", "LaunchState", "PtraceError", "Stop", "Tracee", "TraceeError", "fork_clone",
           "is_error", "tgkill", "thread_clone"]
