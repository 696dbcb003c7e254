"""The recorder: run a program under ptrace and write its trace.

Every syscall stops twice (PTRACE_SYSCALL). At the exit stop the recorder keeps
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

Only one task is recorded; a clone, fork or vfork ends the recording with a
one-line error and a trace that is valid up to that event.
"""

from __future__ import annotations

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

from ..tracee import cpu
from ..tracee import page as rpage
from ..tracee.maps import KernelMapping, memory_digest, page_up, parse_maps, writable_memory
from ..tracee.process import (
    PTRACE_EVENT_EXEC,
    PTRACE_SYSCALL,
    LaunchState,
    Tracee,
    TraceeError,
    is_error,
)
from ..tracee.registers import Registers, registers_to_bytes, signed, syscall_args
from ..tracee.syscalls import (
    MMAP_FAMILY,
    REFUSED_IN_RECORDING,
    UnsupportedSyscall,
    is_supported,
    kernel_may_implement,
    output_regions,
    syscall_name,
    syscall_number,
)
from ..tracee.vdso import patch_vdso
from .events import (
    Event,
    ExecEvent,
    ExitEvent,
    MappingRecord,
    RandomEvent,
    RdtscEvent,
    SignalEvent,
    SyscallEvent,
)
from .file_views import FileViews
from .format import TraceWriter
from .output import FROM_ANOTHER_FILE, EchoedFds, output_fd, peek_pipe, source

SYNCHRONOUS_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                                 signal.SIGTRAP})
MAP_SHARED, MAP_ANONYMOUS = 0x01, 0x20
# How long an asynchronous signal that arrived in user code may wait for the
# next syscall before it is delivered where the program then is.
HOLD_SECONDS = 0.02
FLUSH_SECONDS = 0.25

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
TASK_CREATORS = {NR_CLONE, NR_CLONE3, syscall_number("fork"), syscall_number("vfork")}
DEV_ZERO = os.makedev(1, 5)
CLONE_THREAD = 0x10000
NR_PRCTL = syscall_number("prctl")
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
PR_TSC_ENABLE, PR_TSC_SIGSEGV = 1, 2


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
    signo: int
    siginfo: bytes
    timer: threading.Timer
    raised: bool = False


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
    """Records one program into one trace directory. Owns the tracee and the writer."""

    # Both exist for the whole of ``run`` (the tracee from its spawn on), which is
    # where every other method is called from.
    tracee: Tracee
    writer: TraceWriter
    views: FileViews

    def __init__(self, argv: Sequence[str], trace_dir: Path, *, env: dict[str, str] | None = None,
                 cwd: str | None = None, launch: LaunchState | None = None,
                 strict: bool = False) -> None:
        self.argv = list(argv)
        # Taken now, before a caller that constructs us changes its own signals.
        self.launch = LaunchState.of_this_process() if launch is None else launch
        self.strict = strict
        self.trace_dir = trace_dir
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd or os.getcwd()
        self.mmap_count = 0
        self.in_syscall = False
        self.entry_nr = -1
        self.entry_args: tuple[int, ...] = ()
        self.exec_pending = False
        self.last_regs: bytes | None = None  # registers at the last stop we resumed from
        self.held: _HeldSignal | None = None
        self.held_lock = threading.Lock()
        self.tsc_mode = PR_TSC_ENABLE  # the program's own PR_SET_TSC mode
        # The call that returned -ERESTART_RESTARTBLOCK last: restart_syscall continues it.
        self.restart: tuple[int, tuple[int, ...]] | None = None
        self.random_cpu = cpu.has_random_instructions()
        self.watched: list[int] = []  # the rdrand/rdseed on debug registers 0-3
        self.random_sites: set[int] = set()  # every site ever watched: replay traps them
        self._last_flush = time.monotonic()
        self.echoed = EchoedFds()
        self.peeked: bytes | None = None  # what a pipe held at the entry of the call that drains it

    # -- driver -------------------------------------------------------------------
    def run(self) -> RecordingResult:
        metadata = trace_metadata(self.argv, self.cwd, self.env, self.launch)
        self.writer = TraceWriter(self.trace_dir, metadata)
        result = RecordingResult(self.trace_dir, 0)
        tracee: Tracee | None = None
        try:
            self.tracee = tracee = Tracee.spawn(self.argv, env=self.env, cwd=self.cwd,
                                                launch=self.launch)
            self.views = FileViews(tracee)
            self._loop(result)
        except (RecordingError, TraceeError) as error:
            result.error = str(error)
        except UnsupportedSyscall as error:
            result.error = f"{error} at event {self.writer.event_count}"
        finally:
            self._cancel_held()
            if tracee is not None:
                tracee.kill()
            result.events = self.writer.event_count
            self.writer.close(random_sites=sorted(self.random_sites),
                              exit_status=result.exit_status, exit_signal=result.exit_signal,
                              error=result.error)
        return result

    def _append(self, event: Event) -> None:
        self.writer.append(event)
        now = time.monotonic()
        if now - self._last_flush > FLUSH_SECONDS:
            self.writer.flush()
            self._last_flush = now

    def _loop(self, result: RecordingResult) -> None:
        t = self.tracee
        self.exec_pending = True  # spawn stopped us at PTRACE_EVENT_EXEC of the first exec
        self.in_syscall = True
        self.entry_nr = NR_EXECVE
        deliver = 0
        while True:
            t.resume(PTRACE_SYSCALL, deliver)
            deliver = 0
            stop = t.wait()
            if stop.kind == "exited":
                result.exit_status = stop.status
                self._append(ExitEvent(task=t.pid, status=stop.status))
                return
            if stop.kind == "killed":
                result.exit_signal = stop.signo
                self._append(ExitEvent(task=t.pid, signo=stop.signo))
                return
            if stop.kind == "syscall":
                if self.in_syscall:
                    self._syscall_exit()
                else:
                    self._syscall_entry()
            elif stop.kind == "event":
                if stop.event == PTRACE_EVENT_EXEC:
                    t.reopen_memory()
                    self.exec_pending = True
            else:
                deliver = self._signal(stop.signo)

    # -- syscalls -------------------------------------------------------------------
    def _syscall_entry(self) -> None:
        t = self.tracee
        regs = t.get_regs()
        nr = regs.orig_rax
        self.in_syscall = True
        self.entry_nr = nr
        self.entry_args = syscall_args(regs)  # execve's are gone at its exit
        event_no = self.writer.event_count
        if nr in TASK_CREATORS:
            if nr == NR_CLONE3:
                flags = int.from_bytes(t.read(regs.rdi, 8), "little")
            else:
                flags = regs.rdi if nr == NR_CLONE else 0
            what = "multi-threaded" if flags & CLONE_THREAD else "multi-process"
            raise RecordingError(f"{syscall_name(nr)} at event {event_no}: {what} recording "
                                 "is not supported yet")
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
        if self.held is not None:
            self._raise_held()
        if nr in REFUSED_IN_RECORDING:
            # The kernel would write into the program's memory outside any
            # syscall stop (rseq, io_uring): skip the call, and exit sees -errno.
            self._skip(regs, REFUSED_IN_RECORDING[nr])
        elif nr == NR_PRCTL and (regs.rdi & 0xFFFFFFFF) in (PR_GET_TSC, PR_SET_TSC):
            self._tsc_prctl_entry(regs)
        elif nr == NR_RT_SIGRETURN:
            self.restart = None  # sigreturn resets the task's restart block
        if nr in (NR_EXIT, NR_EXIT_GROUP):
            self._append(SyscallEvent(task=t.pid, nr=nr, args=syscall_args(regs), result=0))
        self.peeked = self._peek_echoed_pipe(nr, self.entry_args)

    def _syscall_exit(self) -> None:
        t = self.tracee
        regs = t.get_regs()
        nr = self.entry_nr
        self.in_syscall = False
        result = signed(regs.rax)
        args = self.entry_args
        if self.exec_pending and nr in (NR_EXECVE, NR_EXECVEAT) and result == 0:
            self.exec_pending = False
            if self.writer.event_count:  # the first exec is the start of the trace, not an event
                self._append(SyscallEvent(task=t.pid, nr=nr, args=args, result=0))
            self._after_exec(regs)
            self.last_regs = registers_to_bytes(t.get_regs())
            return
        rule_nr, rule_args = nr, args
        if nr == NR_RESTART_SYSCALL and self.restart is not None:
            rule_nr, rule_args = self.restart  # it continues that call, and writes what it does
        if nr == NR_PRCTL and not is_error(result) and (args[0] & 0xFFFFFFFF) == PR_GET_TSC:
            # The kernel said PR_TSC_SIGSEGV, which is ours; the program's own mode is this.
            t.write(args[1], self.tsc_mode.to_bytes(4, "little"))
        if result == -ERESTART_RESTARTBLOCK:
            self.restart = (rule_nr, rule_args)
        writes = tuple((addr, t.read_partial(addr, size))
                       for addr, size in output_regions(rule_nr, rule_args, result, t.read)
                       if size > 0)
        mmap_id = mapping = None
        if nr in MMAP_FAMILY:
            mmap_id = self.mmap_count
            self.mmap_count += 1
            if not is_error(result):
                mapping = self._mapping_made(nr, args, result)
        writes += tuple(self.views.changes(nr, args, result))
        echo = self._echo_from_another_file(nr, args, result)
        self.echoed.follow(nr, args, result)
        self._append(SyscallEvent(task=t.pid, nr=nr, args=args, result=result, writes=writes,
                                  mmap_id=mmap_id, mapping=mapping, echo=echo))
        if nr in MAKES_EXECUTABLE and not is_error(result) and args[2] & PROT_EXEC:
            start = result if nr == NR_MMAP else args[0]
            self._watch_random_instructions(start, start + page_up(args[1]))
        self.last_regs = registers_to_bytes(regs)

    def _skip(self, regs: Registers, error: int) -> None:
        """Make the kernel skip the call at this entry stop; its exit sees -``error``."""
        regs.orig_rax = 0xFFFFFFFFFFFFFFFF
        regs.rax = -error & 0xFFFFFFFFFFFFFFFF
        self.tracee.set_regs(regs)

    def _tsc_prctl_entry(self, regs: Registers) -> None:
        """PR_SET_TSC and PR_GET_TSC see the program's own mode, not the recorder's.

        The recorder keeps rdtsc faulting (PR_TSC_SIGSEGV) for the whole recording;
        what the program asked for decides whether a fault is emulated or delivered
        to it as the SIGSEGV it would natively get. PR_GET_TSC runs (the kernel checks
        the pointer) and has its answer replaced at the exit; a valid PR_SET_TSC is
        skipped, an invalid one runs for the kernel's own EINVAL.
        """
        if (regs.rdi & 0xFFFFFFFF) == PR_SET_TSC and regs.rsi in (PR_TSC_ENABLE, PR_TSC_SIGSEGV):
            self.tsc_mode = regs.rsi
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
        if nr not in FROM_ANOTHER_FILE or self.echoed.stream(output_fd(nr, args)) is None:
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
        peeked, self.peeked = self.peeked, None
        if nr not in FROM_ANOTHER_FILE or result <= 0 or \
                self.echoed.stream(output_fd(nr, args)) is None:
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
        mappings = parse_maps(t.read_maps())
        for m in mappings:
            if m.name == "[vdso]":
                patch_vdso(t, m.start, m.end)
        records = [self._mapping_record(m, page_addr) for m in mappings
                   if m.name != "[vsyscall]"]
        self.watched = []  # execve cleared the debug registers with the old address space
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
    def _signal(self, signo: int) -> int:
        """Handle a signal-delivery-stop; returns the signal to deliver (0: none)."""
        t = self.tracee
        try:
            siginfo = t.get_siginfo()
        except OSError:
            return 0  # a group-stop, not a delivery: just resume
        regs = t.get_regs()
        si_code = int.from_bytes(siginfo[8:12], "little", signed=True)
        if signo == signal.SIGSEGV and si_code > 0 and self.tsc_mode == PR_TSC_ENABLE:
            insn = cpu.decode_rdtsc(t.read_partial(regs.rip, 3))
            if insn is not None:
                self._emulate_rdtsc(regs, *insn)
                return 0
        if signo == signal.SIGTRAP and si_code == TRAP_HWBKPT and self.watched:
            dr6 = t.get_debugreg(6)
            slot = (dr6 & 0xF).bit_length() - 1
            if slot >= 0 and slot < len(self.watched) and self.watched[slot] == regs.rip:
                t.set_debugreg(6, 0)
                self._emulate_random(regs)
                return 0
        if signo in SYNCHRONOUS_SIGNALS and si_code > 0:
            self._append(SignalEvent(task=t.pid, signo=signo, siginfo=siginfo, where="sync"))
            self.last_regs = None
            return signo
        with self.held_lock:
            held = self.held
            if held is not None and held.signo == signo:
                held.timer.cancel()
                self.held = None
                siginfo = held.siginfo
                t.set_siginfo(siginfo)
        if self.last_regs == registers_to_bytes(regs):
            self._append(SignalEvent(task=t.pid, signo=signo, siginfo=siginfo, where="boundary"))
        elif held is None and self.held is None:
            self._hold(signo, siginfo)
            return 0
        else:
            memory = writable_memory(t)
            self._append(SignalEvent(task=t.pid, signo=signo, siginfo=siginfo, where="precise",
                                     regs=registers_to_bytes(regs), xstate=t.get_xstate(),
                                     digest=memory_digest(memory), memory=tuple(memory)))
        self.last_regs = None
        return signo

    def _hold(self, signo: int, siginfo: bytes) -> None:
        """Discard the signal now and raise it again at the next syscall or after a while."""
        timer = threading.Timer(HOLD_SECONDS, self._raise_held)
        timer.daemon = True
        self.held = _HeldSignal(signo, siginfo, timer)
        timer.start()

    def _raise_held(self) -> None:
        with self.held_lock:
            held = self.held
            if held is None or held.raised or not self.tracee.alive:
                return
            held.timer.cancel()
            held.raised = True
            os.kill(self.tracee.pid, held.signo)

    def _cancel_held(self) -> None:
        with self.held_lock:
            if self.held is not None:
                self.held.timer.cancel()
                self.held = None

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
        if len(self.watched) >= len(DEBUG_ADDRESS_REGISTERS) or not self.random_cpu:
            return
        code = self.tracee.read_partial(start, end - start)
        for addr, _ in cpu.find_random_instructions(code, start):
            if addr in self.watched or len(self.watched) >= len(DEBUG_ADDRESS_REGISTERS):
                continue
            self.tracee.set_debugreg(len(self.watched), addr)
            self.watched.append(addr)
            self.random_sites.add(addr)
            # Ln enables slot n; RW and LEN 00: on execution, one byte.
            self.tracee.set_debugreg(7, sum(1 << 2 * n for n in range(len(self.watched))))

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
        self.last_regs = registers_to_bytes(regs)

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
        self.last_regs = registers_to_bytes(regs)
