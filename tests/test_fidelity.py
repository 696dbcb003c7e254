"""A recorded program behaves exactly as it does natively, and its replay as its recording.

Each test runs a real program three ways, from the same parent: natively, under
`retrograde record`, and under `retrograde replay -a`, and compares what it printed
and how it ended.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from gdb_driver import Debugging
from runner import RETROGRADE, children_of

from retrograde.trace.events import RandomEvent, SignalEvent, SyscallEvent
from retrograde.trace.format import TraceReader, _metadata_checksum
from retrograde.tracee.cpu import cpuid_differences, find_random_instructions
from retrograde.tracee.syscalls import syscall_number


def three_ways(argv: list, trace: Path, parent: Callable[[], None] | None = None
               ) -> tuple[subprocess.CompletedProcess, ...]:
    """Native, recorded and replayed runs of ``argv``, each started by a child that ran
    ``parent`` first (as a shell's `trap` or a supervisor would set the signals)."""
    argv = [str(a) for a in argv]
    runs = []
    for command in (argv, [*RETROGRADE, "record", "-o", str(trace), "--", *argv],
                    [*RETROGRADE, "replay", "-a", str(trace)]):
        runs.append(subprocess.run(command, capture_output=True, timeout=120,
                                   preexec_fn=parent or clean_slate, stdin=subprocess.DEVNULL))
    return tuple(runs)


def rewrite_metadata(trace: Path, change: Callable[[dict], None]) -> dict:
    """Change a trace's metadata.json as another recorder would have written it
    (checksum included), and return the new metadata."""
    metadata = json.loads((trace / "metadata.json").read_text())
    change(metadata)
    metadata["crc32"] = _metadata_checksum(metadata)
    (trace / "metadata.json").write_text(json.dumps(metadata))
    return metadata


def messages(stderr: bytes) -> bytes:
    """What `record` said besides where the trace went."""
    return b"".join(line for line in stderr.splitlines(keepends=True)
                    if not line.startswith(b"retrograde: trace in "))


def signal_lines(output: bytes) -> dict[str, str]:
    return dict(re.findall(r"^(\w+):\t([0-9a-f]+)$", output.decode(), re.MULTILINE))


def clean_slate() -> None:
    """Every signal at SIG_DFL, none blocked: whatever pytest's own process was given
    (a `make` or CI runner may pass on ignored ones), the children start from this."""
    libc = ctypes.CDLL(None, use_errno=True)
    default = (ctypes.c_ulong * 4)()  # handler SIG_DFL, flags, restorer, mask
    for signo in range(1, 65):
        if signo not in (signal.SIGKILL, signal.SIGSTOP):
            libc.syscall(13, signo, ctypes.byref(default), None, 8)  # rt_sigaction
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def ignore_and_block() -> None:
    clean_slate()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGTERM, signal.SIGRTMIN})


def ignore_ctrl_c() -> None:
    clean_slate()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def bits(*signals: int) -> str:
    return f"{sum(1 << (s - 1) for s in signals):016x}"


# --- signal dispositions and mask -------------------------------------------------------------

@pytest.mark.parametrize("parent", [clean_slate, ignore_and_block], ids=["default", "ignoring"])
def test_the_program_starts_with_its_parents_signal_state(programs, tmp_path, parent):
    native, recorded, replayed = three_ways([programs.sigstate], tmp_path / "t", parent)
    assert native.returncode == recorded.returncode == replayed.returncode == 0
    assert recorded.stdout == replayed.stdout == native.stdout
    state = signal_lines(native.stdout)
    if parent is clean_slate:
        assert state["SigIgn"] == state["SigBlk"] == bits()
    else:
        assert state["SigIgn"] == bits(signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1)
        assert state["SigBlk"] == bits(signal.SIGUSR2, signal.SIGTERM, signal.SIGRTMIN)
    assert state["SigCgt"] == bits()


def test_a_writer_into_a_closed_pipe_dies_by_sigpipe(programs, tmp_path):
    native, recorded, replayed = three_ways([programs.sigstate, "pipe"], tmp_path / "t")
    assert native.returncode == -signal.SIGPIPE
    assert recorded.returncode == replayed.returncode == 128 + signal.SIGPIPE
    assert native.stdout == recorded.stdout == replayed.stdout == \
        b"sigstate: writing into a closed pipe\n"
    assert recorded.stderr.startswith(b"retrograde: sigstate terminated by signal SIGPIPE")
    assert recorded.stderr.count(b"\n") == 1
    with TraceReader(tmp_path / "t") as trace:
        assert trace.metadata["exit_signal"] == signal.SIGPIPE


def own_group() -> None:
    """A parent's clean slate, in a process group of its own: what the program
    signals with kill(0, ...) reaches it and `retrograde record`, not the tests."""
    clean_slate()
    os.setpgid(0, 0)


def test_signals_to_the_programs_whole_group_leave_the_recorder_recording(programs,
                                                                         tmp_path):
    """groupkill handles kill(0, SIGUSR1) and dies by kill(0, SIGABRT); the recorder,
    in that group too, outlives both and writes the whole trace."""
    native, recorded, replayed = three_ways([programs.groupkill], tmp_path / "t", own_group)
    assert native.returncode == -signal.SIGABRT
    assert native.stdout == b"usr1 handled: 10\n"
    assert recorded.returncode == replayed.returncode == 128 + signal.SIGABRT
    assert recorded.stdout == replayed.stdout == native.stdout
    assert messages(recorded.stderr) == (b"retrograde: groupkill terminated by signal "
                                         b"SIGABRT; trace in " + str(tmp_path / "t").encode()
                                         + b"\n")


def test_ctrl_c_ends_a_recording_as_it_ends_the_program(programs, tmp_path):
    """The terminal sends SIGINT to the foreground process group: recorder and program."""
    trace = tmp_path / "t"
    recording = subprocess.Popen([*RETROGRADE, "record", "-o", str(trace), "--",
                                  str(programs.sigstate), "wait"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True, preexec_fn=clean_slate)
    try:
        assert recording.stdout.readline() == b"waiting\n"
        os.killpg(recording.pid, signal.SIGINT)
        out, err = recording.communicate(timeout=60)
    finally:
        if recording.poll() is None:
            recording.kill()
            recording.wait()
    assert recording.returncode == 128 + signal.SIGINT
    assert err.startswith(b"retrograde: sigstate terminated by signal SIGINT")
    assert err.count(b"\n") == 1
    with TraceReader(trace) as reader:
        assert reader.complete and reader.metadata["exit_signal"] == signal.SIGINT
        assert any(isinstance(e, SignalEvent) and e.signo == signal.SIGINT for e in reader)
    replayed = subprocess.run([*RETROGRADE, "replay", "-a", str(trace)], capture_output=True,
                              timeout=120)
    assert replayed.returncode == 128 + signal.SIGINT
    assert replayed.stdout == b"waiting\n"


def test_ctrl_c_ignored_by_the_parent_is_ignored_by_the_program(programs, tmp_path):
    trace = tmp_path / "t"
    recording = subprocess.Popen([*RETROGRADE, "record", "-o", str(trace), "--",
                                  str(programs.sigstate), "wait"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True,
                                 preexec_fn=ignore_ctrl_c)
    try:
        assert recording.stdout.readline() == b"waiting\n"
        (program,) = children_of(recording.pid)
        os.killpg(recording.pid, signal.SIGINT)
        # SIGINT is pending (or handled) before SIGUSR2 is sent, and the kernel hands
        # out the lower-numbered pending signal first: SIGUSR2 is what ends the program.
        os.kill(program, signal.SIGUSR2)
        recording.communicate(timeout=60)
    finally:
        if recording.poll() is None:
            recording.kill()
            recording.wait()
    assert recording.returncode == 128 + signal.SIGUSR2
    with TraceReader(trace) as reader:
        assert reader.complete and reader.metadata["exit_signal"] == signal.SIGUSR2
        signals = [e.signo for e in reader if isinstance(e, SignalEvent)]
    # The SIGINT was delivered, ignored as natively, and recorded like any signal.
    assert signals == [signal.SIGINT, signal.SIGUSR2]
    replayed = subprocess.run([*RETROGRADE, "replay", "-a", str(trace)], capture_output=True,
                              timeout=120)
    assert replayed.returncode == 128 + signal.SIGUSR2


# --- syscall numbers, ioctl errors, prctl, restarts -------------------------------------------

def test_numbers_the_kernel_lacks_and_ioctl_errors_replay_as_natively(programs, tmp_path):
    native, recorded, replayed = three_ways([programs.nosys], tmp_path / "t")
    assert native.returncode == recorded.returncode == replayed.returncode == 0
    assert recorded.stdout == replayed.stdout == native.stdout
    # Only the unknown ioctl request is answered without the kernel (once warned about,
    # used twice); every other call is the kernel's own answer.
    assert re.fullmatch(rb"retrograde: warning: ioctl request 0x12345678 at event \d+ is not "
                        rb"supported: the program was told ENOTTY \(record --strict stops "
                        rb"instead\)\n", messages(recorded.stderr))
    lines = native.stdout.decode()
    for call in ("syscall(-1)", "syscall(1000)", "syscall(470)", "tuxcall"):
        assert re.search(rf"^{re.escape(call)} +-1 ENOSYS$", lines, re.MULTILINE), call
    assert re.search(r"^TCGETS on a pipe +-1 ENOTTY$", lines, re.MULTILINE)
    assert re.search(r"^TCGETS on a bad fd +-1 EBADF$", lines, re.MULTILINE)
    assert "queued 3" in lines


def test_a_call_the_kernel_has_and_retrograde_cannot_record_gets_enosys(programs, tmp_path):
    native, recorded, replayed = three_ways([programs.nosys, "unmodelled"], tmp_path / "t")
    assert native.stdout == b"io_setup                 0 \n"
    assert recorded.stdout == replayed.stdout == b"io_setup                 -1 ENOSYS\n"
    assert re.fullmatch(rb"retrograde: warning: io_setup \(nr 206\) at event \d+ is not "
                        rb"supported: the program was told ENOSYS \(record --strict stops "
                        rb"instead\)\n", messages(recorded.stderr))
    assert recorded.returncode == replayed.returncode == 0


def test_unmodelled_requests_get_the_answer_of_a_kernel_without_them(programs, tmp_path):
    """ioctl, fcntl and prctl requests the table lacks are not run: ENOTTY, EINVAL and
    EINVAL, one warning per request (naming it and the event), the same in replay."""
    native, recorded, replayed = three_ways([programs.requests], tmp_path / "t")
    assert native.returncode == recorded.returncode == replayed.returncode == 0
    assert native.stdout.decode().splitlines() == [
        "ioctl RNDGETENTCNT on /dev/urandom   0 ",
        "ioctl RNDGETENTCNT again             0 ",
        "ioctl RNDGETENTCNT on a bad fd       -1 EBADF",
        "fcntl F_GETOWNER_UIDS                0 ",
        "fcntl F_GETOWNER_UIDS on a bad fd    -1 EBADF",
        "prctl PR_SVE_GET_VL                  -1 EINVAL",
    ]
    assert recorded.stdout == replayed.stdout
    assert recorded.stdout.decode().splitlines() == [
        "ioctl RNDGETENTCNT on /dev/urandom   -1 ENOTTY",
        "ioctl RNDGETENTCNT again             -1 ENOTTY",
        "ioctl RNDGETENTCNT on a bad fd       -1 EBADF",  # the descriptor comes first
        "fcntl F_GETOWNER_UIDS                -1 EINVAL",
        "fcntl F_GETOWNER_UIDS on a bad fd    -1 EBADF",
        "prctl PR_SVE_GET_VL                  -1 EINVAL",
    ]
    warnings = messages(recorded.stderr).decode().splitlines()
    ioctl, fcntl, prctl = (syscall_number(name) for name in ("ioctl", "fcntl", "prctl"))
    with TraceReader(tmp_path / "t") as trace:
        calls = [(i, e.nr, e.result) for i, e in enumerate(trace)
                 if isinstance(e, SyscallEvent) and e.nr in (ioctl, fcntl, prctl)]
    first = {nr: next(i for i, n, _ in calls if n == nr) for nr in (ioctl, fcntl, prctl)}
    told = "is not supported: the program was told {} (record --strict stops instead)"
    assert warnings == [
        f"retrograde: warning: ioctl request 0x80045200 (_IOR('R', 0x0, 4)) at event "
        f"{first[ioctl]} " + told.format("ENOTTY"),
        f"retrograde: warning: fcntl command 17 (F_GETOWNER_UIDS) at event {first[fcntl]} "
        + told.format("EINVAL"),
        f"retrograde: warning: prctl option 51 (PR_SVE_GET_VL) at event {first[prctl]} "
        + told.format("EINVAL"),
    ]
    assert [(nr, result) for _, nr, result in calls][-6:] == [
        (ioctl, -errno.ENOTTY), (ioctl, -errno.ENOTTY), (ioctl, -errno.EBADF),
        (fcntl, -errno.EINVAL), (fcntl, -errno.EBADF), (prctl, -errno.EINVAL)]


@pytest.mark.parametrize("call", ["ioctl", "fcntl", "prctl"])
def test_strict_recording_runs_unmodelled_requests_and_refuses_those_that_succeed(
        programs, tmp_path, call):
    trace = tmp_path / "t"
    recorded = subprocess.run([*RETROGRADE, "record", "--strict", "-o", str(trace), "--",
                               str(programs.requests), call], capture_output=True, timeout=120,
                              preexec_fn=clean_slate, stdin=subprocess.DEVNULL)
    if call == "prctl":  # the kernel's own EINVAL: nothing to refuse
        assert recorded.returncode == 0
        assert recorded.stdout == b"prctl PR_SVE_GET_VL                  -1 EINVAL\n"
        assert messages(recorded.stderr) == b""
        replayed = subprocess.run([*RETROGRADE, "replay", "-a", str(trace)],
                                  capture_output=True, timeout=120)
        assert replayed.returncode == 0 and replayed.stdout == recorded.stdout
        return
    request = {"ioctl": "ioctl(0x80045200) (nr 16)", "fcntl": "fcntl(17) (nr 72)"}[call]
    assert recorded.returncode == 1
    assert recorded.stdout == b""
    assert re.fullmatch(rf"retrograde: unsupported syscall {re.escape(request)} at event "
                        rf"\d+ \(trace up to there in {re.escape(str(trace))}\)\n".encode(),
                        recorded.stderr)


def test_prctl_values_read_back_are_the_native_ones(programs, tmp_path):
    native, recorded, replayed = three_ways([programs.prctls], tmp_path / "t")
    assert native.returncode == recorded.returncode == replayed.returncode == 0
    assert recorded.stdout.decode().splitlines() == native.stdout.decode().splitlines()
    assert replayed.stdout == recorded.stdout
    lines = native.stdout.decode()
    # The values the recorder itself sets in its tracee (PR_SET_PDEATHSIG before exec,
    # PR_TSC_SIGSEGV) are not the ones the program sees.
    assert re.search(r"^GET_PDEATHSIG +0  value 0$", lines, re.MULTILINE)
    assert re.search(r"^GET_TSC +0  value 1$", lines, re.MULTILINE)
    assert lines.count("  rdtsc faulted\n") == 1 and lines.count("  rdtsc ran\n") == 1


def test_prctl_timer_slack_is_the_parents(programs, tmp_path):
    def slow_timers() -> None:
        clean_slate()
        ctypes.CDLL(None).prctl(29, 4_000_000, 0, 0, 0)  # PR_SET_TIMERSLACK

    native, recorded, replayed = three_ways([programs.prctls], tmp_path / "t", slow_timers)
    assert re.search(r"^GET_TIMERSLACK +4000000 $", native.stdout.decode(), re.MULTILINE)
    assert recorded.stdout == replayed.stdout == native.stdout


@pytest.mark.parametrize("mode", ["ignored", "handler", "sa_restart"])
def test_sleeps_interrupted_by_a_signal_end_as_natively(programs, tmp_path, mode):
    native, recorded, replayed = three_ways([programs.restart, mode], tmp_path / "t")
    assert native.returncode == recorded.returncode == replayed.returncode == 0
    assert recorded.stdout == replayed.stdout == native.stdout
    expected = {
        "ignored": "nanosleep    0 \npoll         0 \n",
        "handler": "nanosleep    -1 EINTR\n  left in range yes\nread         -1 EINTR\n"
                   "  byte -, alarms 2\n",
        "sa_restart": "nanosleep    -1 EINTR\n  left in range yes\nread         1 \n"
                      "  byte !, alarms 2\n",
    }
    assert native.stdout.decode() == expected[mode]
    with TraceReader(tmp_path / "t") as trace:
        calls = [e for e in trace if isinstance(e, SyscallEvent)]
    restarts = [e for e in calls if e.nr == syscall_number("restart_syscall")]
    if mode == "ignored":
        # Under ptrace an ignored signal still interrupts the sleep; the kernel then
        # continues it with restart_syscall, which is recorded as itself.
        assert len(restarts) == 2 and all(e.result == 0 for e in restarts)
    else:
        assert restarts == []


def test_a_malformed_launch_state_in_a_trace_is_one_line(programs, tmp_path):
    trace = tmp_path / "t"
    assert subprocess.run([*RETROGRADE, "record", "-o", str(trace), str(programs.sigstate)],
                          capture_output=True).returncode == 0
    rewrite_metadata(trace, lambda metadata: metadata.update(launch={"ignored": "all"}))
    got = subprocess.run([*RETROGRADE, "replay", "-a", str(trace)], capture_output=True,
                         timeout=60)
    assert got.returncode == 1
    assert got.stderr == f"retrograde: {trace}/metadata.json: bad launch state " \
                         "{'ignored': 'all'}\n".encode()


# --- instructions the kernel does not see: cpuid, rdrand --------------------------------------

def test_replay_on_another_cpu_warns_in_one_line(programs, tmp_path):
    trace = tmp_path / "t"
    native = subprocess.run([str(programs.sigstate)], capture_output=True)
    assert subprocess.run([*RETROGRADE, "record", "-o", str(trace), str(programs.sigstate)],
                          capture_output=True).returncode == 0
    def elsewhere(metadata: dict) -> None:
        # As if recorded where AVX2 (CPUID.7.0:EBX[5]) was missing, on another core.
        metadata["cpuid"]["0x7.0"][1] ^= 1 << 5
        metadata["cpuid"]["0x1.0"][1] ^= 0x0300_0000  # the APIC id: no difference

    metadata = rewrite_metadata(trace, elsewhere)
    got = subprocess.run([*RETROGRADE, "replay", "-a", str(trace)], capture_output=True,
                         timeout=60)
    assert got.returncode == 0 and got.stdout == native.stdout
    here = metadata["cpuid"]["0x7.0"][1] ^ 1 << 5
    assert got.stderr.decode() == (
        f"retrograde: warning: this CPU is not the recording's (CPUID 0x7.0 ebx here "
        f"{here:#x}, recorded {here ^ 1 << 5:#x}): a program that chooses code by CPU "
        "features may diverge\n")


def test_same_cpu_replays_without_a_warning(programs, tmp_path):
    native, recorded, replayed = three_ways([programs.sigstate], tmp_path / "t")
    assert replayed.returncode == 0 and replayed.stderr == b""


def test_the_program_runs_on_one_cpu_and_sees_the_ones_it_would_natively(programs, tmp_path):
    """record binds the program to one CPU (the highest it may use) and replay to the
    same; sched_getaffinity still names the CPUs a native run would have, and what
    the program binds itself to reads back as natively, refusals included."""
    trace = tmp_path / "t"
    native, recorded, replayed = three_ways([programs.affinity], trace)
    assert native.returncode == recorded.returncode == replayed.returncode == 0
    assert recorded.stdout == native.stdout and replayed.stdout == native.stdout
    assert b"no online cpu: -1 Invalid argument" in native.stdout
    assert b"unmapped mask: -1 Bad address" in native.stdout
    assert replayed.stderr == b""
    bound = max(os.sched_getaffinity(0))
    with TraceReader(trace) as reader:
        assert reader.metadata["bound_cpu"] == bound
    where = subprocess.run([*RETROGRADE, "record", "-o", str(tmp_path / "grep"), "grep",
                            "Cpus_allowed_list", "/proc/self/status"], capture_output=True)
    assert where.stdout.decode().split() == ["Cpus_allowed_list:", str(bound)]


def test_binding_to_a_cpu_this_process_may_not_use_is_one_line(programs, tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    got = subprocess.run([*RETROGRADE, "record", "--bind-to-cpu", "4096", "-o",
                          str(tmp_path / "t"), str(programs.affinity)], capture_output=True)
    assert got.returncode == 2 and got.stdout == b""
    assert got.stderr.decode() == ("retrograde: cannot bind the recording to CPU 4096: this "
                                   f"process may run on CPUs {','.join(map(str, cpus))} only\n")
    assert not (tmp_path / "t").exists()


def test_a_replay_that_cannot_use_the_recorded_cpu_says_so_in_one_line(programs, tmp_path):
    trace = tmp_path / "t"
    native, recorded, _ = three_ways([programs.affinity], trace)
    elsewhere = os.cpu_count() or 1  # one past the last CPU: nowhere this replay may run
    rewrite_metadata(trace, lambda metadata: metadata.update(bound_cpu=elsewhere))
    got = subprocess.run([*RETROGRADE, "replay", "-a", str(trace)], capture_output=True,
                         timeout=60)
    assert got.returncode == 0 and got.stdout == native.stdout
    cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    assert got.stderr.decode() == (
        f"retrograde: warning: the trace was recorded on CPU {elsewhere}, which this replay "
        f"may not use (it may use {cpus}): signals inside long loops will be reached by "
        f"restoring their state; replay where CPU {elsewhere} is free to use\n")


def test_cpuid_differences_leave_out_the_core_the_process_ran_on():
    recorded = {"0x1.0": [0x906A4, 0x0100_0800, 0x7FFA_F3BF, 0xBFEB_FBFF], "0x7.0": [0, 1, 2, 3]}
    other_core = {"0x1.0": [0x906A4, 0x0700_0800, 0x7FFA_F3BF, 0xBFEB_FBFF], "0x7.0": [0, 1, 2, 3]}
    assert cpuid_differences(recorded, other_core) == []
    other_cpu = {"0x1.0": other_core["0x1.0"], "0x7.0": [0, 1, 6, 3]}
    assert cpuid_differences(recorded, other_cpu) == ["0x7.0 ecx here 0x6, recorded 0x2"]
    assert cpuid_differences(recorded, {"0x1.0": recorded["0x1.0"]}) == ["0x7.0 missing here"]


def test_random_instructions_are_found_with_their_prefixes():
    code = bytes.fromhex(
        "90"  # nop
        "480fc7f0"  # rdrand rax
        "0fc7f8"  # rdseed eax
        "660fc7f1"  # rdrand cx
        "0fc708"  # cmpxchg8b [rax]: the same opcode, a memory operand
        "0fc7e0")  # reg 4 of group 9: not a random instruction
    assert find_random_instructions(code, 0x1000) == [
        (0x1001, "rdrand"), (0x1005, "rdseed"), (0x1008, "rdrand")]


def test_a_divergence_after_an_unwatched_rdrand_names_it_and_its_pc(programs, tmp_path):
    # Six sites, four watched; 64 rounds of a branch on the last site's low bit: the
    # replay takes the recorded path every time with probability 2^-64.
    disassembly = subprocess.run(["objdump", "-d", str(programs.rdrand)], capture_output=True,
                                 text=True, check=True).stdout
    sites = re.findall(r"^ +([0-9a-f]+):\t[0-9a-f ]+\t(rdrand|rdseed)", disassembly,
                       re.MULTILINE)
    assert [name for _, name in sites] == ["rdrand", "rdseed", "rdrand", "rdrand", "rdrand",
                                           "rdrand"]
    native, recorded, replayed = three_ways([programs.rdrand, 64, "five"], tmp_path / "t")
    assert recorded.returncode == 0
    assert replayed.returncode == 2
    message = replayed.stderr.decode()
    assert message.count("\n") == 1
    named = re.fullmatch(
        r"retrograde: replay diverged at event \d+: recorded getp?pid\(.*\), replay "
        r"getp?pid\(.*\); the program's code has rdrand at pc 0x([0-9a-f]+) "
        r"\(rdrand\+0x([0-9a-f]+)\), rdrand at pc 0x([0-9a-f]+) \(rdrand\+0x([0-9a-f]+)\), "
        r"which ran unrecorded \(without CPUID faulting only four rdrand/rdseed sites can be "
        r"watched\): the replay may have got other values\n", message)
    assert named, message
    # The two after the first four; the binary is PIE: pcs agree in the page bits.
    assert [named.group(2), named.group(4)] == [offset for offset, _ in sites[4:]]
    for pc, offset in ((named.group(1), named.group(2)), (named.group(3), named.group(4))):
        assert int(pc, 16) % 4096 == int(offset, 16) % 4096


def test_rdrand_values_are_recorded_and_replayed(programs, tmp_path):
    native, recorded, replayed = three_ways([programs.rdrand, 64], tmp_path / "t")
    assert re.fullmatch(rb"rdrand: 64 rounds, \d+ odd\n", recorded.stdout)
    assert replayed.returncode == 0 and replayed.stdout == recorded.stdout
    with TraceReader(tmp_path / "t") as trace:
        drawn = [e for e in trace if isinstance(e, RandomEvent)]
        watched = trace.metadata["random_sites"]
    # The four first of the six sites were watched; only site1 ran. A draw can fail
    # (carry clear) and be retried: 64 succeeded.
    assert len(watched) == 4 and {e.pc for e in drawn} == {min(watched)}
    assert sum(e.carry for e in drawn) == 64
    odd = sum(e.value & 1 for e in drawn if e.carry)
    assert recorded.stdout == f"rdrand: 64 rounds, {odd} odd\n".encode()
    native, recorded, replayed = three_ways([programs.rdrand, 64, "seed"], tmp_path / "s")
    assert replayed.returncode == 0 and replayed.stdout == recorded.stdout


def test_rdrand_in_gdb_steps_to_the_recorded_value_and_back(programs, tmp_path):
    trace = tmp_path / "t"
    subprocess.run([*RETROGRADE, "record", "-o", str(trace), str(programs.rdrand), "3"],
                   capture_output=True, check=True)
    with TraceReader(trace) as reader:
        values = [e.value for e in reader if isinstance(e, RandomEvent) and e.carry]
    with Debugging() as debugging:
        gdb, _ = debugging.start(trace)
        pc = int(re.search(r"^ +([0-9a-f]+):\t[0-9a-f ]+\trdrand", subprocess.run(
            ["objdump", "-d", str(programs.rdrand)], capture_output=True, text=True).stdout,
            re.MULTILINE).group(1), 16)
        gdb.cmd("break site1")
        gdb.stop("continue")
        base = int(gdb.value("(long)&site1")) - int(gdb.value("(long)&site1")) % 4096
        site = base + pc % 4096
        # gdb sees the program's own instruction, not the replay's trap on it.
        assert "rdrand" in gdb.cmd(f"x/i {site}")
        while int(gdb.value("(long)$pc")) != site:
            gdb.stop("stepi")
        gdb.stop("stepi")
        assert int(gdb.value("(unsigned long)$rax")) == values[0]
        gdb.stop("reverse-stepi")
        assert int(gdb.value("(long)$pc")) == site
        gdb.stop("stepi")
        assert int(gdb.value("(unsigned long)$rax")) == values[0]
        gdb.stop("continue")  # to site1 in the second round
        while int(gdb.value("(long)$pc")) != site:
            gdb.stop("stepi")
        gdb.stop("stepi")
        assert int(gdb.value("(unsigned long)$rax")) == values[1]
