"""Recording real programs: same output and exit status as natively, and the trace holds
what happened (results, output bytes, mappings, signals, rdtsc values)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from runner import (
    REAL_PROGRAMS,
    RETROGRADE,
    descendants_alive,
    latest,
    native,
    record,
    replay,
    retrograde,
)

from retrograde.trace.events import ExecEvent, ExitEvent, RdtscEvent, SignalEvent, SyscallEvent
from retrograde.trace.format import TraceReader
from retrograde.tracee.cpu import cpuid, xsave_size
from retrograde.tracee.process import Tracee
from retrograde.tracee.syscalls import syscall_number

DETERMINISTIC = ["hello", "hello_static", "pipes", "mmaps", "execself", "watch"]


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_recording_keeps_output_and_status(programs, trace_root, name):
    want = native([programs[name]])
    got = record([programs[name]])
    assert got.stdout == want.stdout
    assert got.returncode == want.returncode
    with TraceReader(latest(trace_root)) as trace:
        assert isinstance(trace[0], ExecEvent)
        assert isinstance(trace[len(trace) - 1], ExitEvent)
        assert trace[len(trace) - 1].status == want.returncode
        assert trace.complete


def test_files_program_and_the_bytes_read_are_in_the_trace(programs, trace_root, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    want = native([programs.files, tmp_path / "a"])
    got = record([programs.files, tmp_path / "b"])
    assert got.returncode == want.returncode == 10
    assert got.stdout == want.stdout
    with TraceReader(latest(trace_root)) as trace:
        reads = [e for e in trace if isinstance(e, SyscallEvent) and e.nr == syscall_number("read")
                 and e.result == 20]
        assert any(data == b"The quick brown fox\n" for e in reads for _, data in e.writes)
        statx = [e for e in trace if isinstance(e, SyscallEvent) and e.nr == syscall_number("statx")]
        assert statx and all(len(e.writes[0][1]) == 256 for e in statx if e.result == 0)


def test_time_and_random_values_are_recorded(programs, trace_root):
    got = record([programs.timecalls])
    assert got.returncode == 12
    assert b"deterministic: clocks agree yes" in got.stdout
    with TraceReader(latest(trace_root)) as trace:
        gettime = [e for e in trace if isinstance(e, SyscallEvent)
                   and e.nr == syscall_number("clock_gettime")]
    # The vDSO was patched: the program's 1000+ clock reads became recorded syscalls.
    assert len(gettime) > 1000
    got = record([programs.random])
    hexline = re.search(rb"random: ([0-9a-f]{32})", got.stdout).group(1)
    with TraceReader(latest(trace_root)) as trace:
        grand = [e for e in trace if isinstance(e, SyscallEvent)
                 and e.nr == syscall_number("getrandom") and e.result == 16]
    assert any(data.hex().encode() == hexline for e in grand for _, data in e.writes)


def test_rdtsc_values_are_trapped_and_recorded(programs, trace_root):
    got = record([programs.rdtsc])
    assert got.returncode == 14
    printed = [int(v) for v in re.findall(rb"rdtscp? \d+: (\d+)", got.stdout)]
    with TraceReader(latest(trace_root)) as trace:
        values = [e.value for e in trace if isinstance(e, RdtscEvent)]
    assert printed and all(v in values for v in printed)


def test_mmap_family_ids_count_the_calls(programs, trace_root):
    record([programs.mmaps])
    with TraceReader(latest(trace_root)) as trace:
        ids = [e.mmap_id for e in trace if isinstance(e, SyscallEvent) and e.mmap_id is not None]
        files = [e.mapping for e in trace if isinstance(e, SyscallEvent) and e.mapping]
        assert ids == list(range(len(ids))) and len(ids) > 10
        # every mapped file is inside the trace
        assert files and all(trace.file_path(m.file_hash).exists() for m in files)


def test_signals_are_recorded_and_delivered(programs, trace_root):
    want = native([programs.signals])
    got = record([programs.signals])
    assert got.returncode == want.returncode == 16
    assert got.stdout == want.stdout
    with TraceReader(latest(trace_root)) as trace:
        sigs = [(e.signo, e.where) for e in trace if isinstance(e, SignalEvent)]
    assert (signal.SIGSEGV, "sync") in sigs
    assert any(s == signal.SIGALRM for s, _ in sigs)


def test_busy_loop_waiting_for_a_signal_does_not_hang(programs, trace_root):
    got = record([programs.busyloop], timeout=30)
    assert got.returncode == 17
    assert b"yes" in got.stdout
    with TraceReader(latest(trace_root)) as trace:
        precise = [e for e in trace if isinstance(e, SignalEvent) and e.where == "precise"]
    assert precise and precise[0].regs and precise[0].digest


def test_exec_of_another_binary(programs, trace_root):
    got = record([programs.execother, programs.hello])
    assert got.stdout == b"execother: exec hello\nhello, world\n"
    assert got.returncode == 3
    with TraceReader(latest(trace_root)) as trace:
        execs = [e for e in trace if isinstance(e, ExecEvent)]
    assert [os.path.basename(e.path) for e in execs] == ["execother", "hello"]


def test_death_by_signal_is_reported(programs, trace_root):
    got = record([programs.fatal])
    assert got.returncode == 128 + signal.SIGSEGV
    assert got.stderr.decode() == (f"retrograde: fatal terminated by signal SIGSEGV; "
                                   f"trace in {latest(trace_root)}\n")
    with TraceReader(latest(trace_root)) as trace:
        assert trace[len(trace) - 1].signo == signal.SIGSEGV


def test_unsupported_syscall_is_answered_enosys_with_one_warning(programs, trace_root):
    got = record([programs.unsupported])
    assert got.returncode == 21
    assert got.stdout == (b"unsupported: calling io_uring_setup\n"
                          b"unsupported: io_uring_setup returned -1\n")
    message = "".join(line for line in got.stderr.decode().splitlines(keepends=True)
                      if not line.startswith("retrograde: trace in "))
    assert message.count("\n") == 1
    event = int(re.fullmatch(r"retrograde: warning: io_uring_setup \(nr 425\) at event (\d+) is "
                             r"not supported: the program was told ENOSYS \(record --strict "
                             r"stops instead\)\n", message).group(1))
    with TraceReader(latest(trace_root)) as trace:
        call = trace[event]
        assert isinstance(call, SyscallEvent) and call.nr == 425 and call.result == -38
    got = replay()
    assert got.returncode == 21 and b"returned -1" in got.stdout


def test_strict_recording_stops_at_an_unsupported_syscall(programs, trace_root):
    got = record([programs.unsupported], strict=True)
    message = got.stderr.decode().strip()
    assert got.returncode == 1
    assert re.match(r"retrograde: unsupported syscall io_uring_setup \(nr 425\) at event \d+",
                    message), message
    assert b"calling io_uring_setup" in got.stdout
    assert b"returned" not in got.stdout
    dump = retrograde("dump")
    assert dump.returncode == 0 and b"write" in dump.stdout


def test_missing_program_is_one_line(trace_root, tmp_path):
    got = record([tmp_path / "nope"])
    assert got.returncode == 127
    assert got.stderr.decode().count("\n") == 1 and "no such program" in got.stderr.decode()


def test_recorder_killed_leaves_a_readable_trace(programs, trace_root):
    proc = subprocess.Popen([*RETROGRADE, "record", "--",
                             str(programs.syscall_heavy), "2000000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    proc.kill()
    proc.wait()
    time.sleep(0.2)
    assert not descendants_alive(str(programs.syscall_heavy))
    with TraceReader(latest(trace_root)) as trace:
        assert not trace.complete
        assert len(trace) > 100
        events = list(trace)  # every chunk read, checked and decoded
    assert isinstance(events[0], ExecEvent) and events[0].path == str(programs.syscall_heavy)
    reads = [e for e in events if isinstance(e, SyscallEvent) and e.nr == syscall_number("read")
             and e.result == 64]
    # the program's loop: 64 bytes of /dev/zero a time, each read's bytes recorded
    assert len(reads) > 40 and all(e.writes == ((e.args[1], bytes(64)),) for e in reads)
    listing = retrograde("ls")
    assert b"syscall_heavy" in listing.stdout and b"incomplete" in listing.stdout


def test_corrupt_and_truncated_traces_give_one_line(programs, trace_root):
    record([programs.syscall_heavy, "3000"])
    trace = latest(trace_root)
    events = trace / "events"
    data = bytearray(events.read_bytes())
    data[len(data) // 2] ^= 0x40
    events.write_bytes(bytes(data))
    got = retrograde("dump", trace)
    assert got.returncode == 1
    err = got.stderr.decode()
    assert err.count("\n") == 1 and "corrupt" in err and "event" in err
    events.write_bytes(bytes(data[: len(data) // 3]))
    got = retrograde("dump", trace)
    err = got.stderr.decode()
    # A closed trace cut short: an error naming the events file, on one line.
    assert got.returncode == 1 and err.count("\n") == 1, err
    assert err.startswith(f"retrograde: trace {events}: ") and "Traceback" not in err


@pytest.mark.parametrize("argv", REAL_PROGRAMS)
def test_real_programs_record_with_unchanged_output(trace_root, argv):
    want = native(argv)
    got = record(argv)
    assert got.returncode == want.returncode, got.stderr
    assert got.stdout == want.stdout


def test_an_executable_that_cannot_be_executed_is_one_line(trace_root, tmp_path):
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"\x7fELF but not really")
    bogus.chmod(0o755)
    got = record([bogus])
    err = got.stderr.decode()
    assert got.returncode == 1
    assert err.count("\n") == 1 and "cannot run" in err and "Exec format error" in err


def test_the_xsave_area_is_read_whole_and_a_shorter_one_is_taken():
    """The XSAVE area is as large as the CPU makes it (CPUID.0DH:ECX: 11008 bytes
    with AMX tiles, more than a fixed buffer held; 2440 on an EPYC without
    AVX-512), and setting it back works; an area from a CPU with fewer components
    (the legacy region and header only) is taken too."""
    tracee = Tracee.spawn(["/bin/true"])
    try:
        area = tracee.get_xstate()
        assert len(area) == cpuid(0xD, 0)[2] <= xsave_size()
        assert len(area) >= 576
        tracee.set_xstate(area)
        assert tracee.get_xstate() == area
        tracee.set_xstate(area[:576])
        assert tracee.get_xstate()[:160] == area[:160]  # control words and x87 state
    finally:
        tracee.kill()
