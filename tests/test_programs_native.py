"""Every test program run natively, with no retrograde involved.

These pin down what each program prints and how it exits, so that a recording
or replay test that fails is known to fail because of retrograde. Lines whose
values change from run to run (times, random bytes, TSC reads, spin counts) are
checked for shape and sense here; recording tests compare them with the trace.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile


def run(binary: Path, *args: object, timeout: float = 10, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def values(stdout: str) -> dict[str, str]:
    """The "name: value" lines of a program's output."""
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


@pytest.mark.parametrize("name", ["hello", "hello_static"])
def test_hello_writes_one_line_and_exits_3(programs, name):
    result = run(programs[name])
    assert (result.stdout, result.returncode) == ("hello, world\n", 3)


def test_hello_static_has_no_interpreter(programs):
    with open(programs.hello_static, "rb") as f:
        segments = [segment["p_type"] for segment in ELFFile(f).iter_segments()]
    assert "PT_INTERP" not in segments


def test_files_reads_back_what_it_wrote_and_cleans_up(programs, tmp_path):
    result = run(programs.files, tmp_path)
    assert result.stdout == (
        "mkdir sub: ok\n"
        "read 20 bytes: The quick brown fox\n"
        "lseek to 4, read 5: quick\n"
        "pread at 16: fox\n"
        "lseek SEEK_END: 20\n"
        "fstat: size 20, regular 1, mode 644\n"
        "stat sub: directory 1, mode 755\n"
        "statx: size 20, mode 644, nlink 1\n"
        "listing: a.txt b.txt c.txt (3 entries)\n"
        "rename: old name gone 1, new size 20\n"
        "after rename: b.txt c.txt renamed.txt (3 entries)\n"
        "after unlink: (0 entries)\n"
        "after rmdir: (0 entries)\n"
    )
    assert result.returncode == 10
    assert list(tmp_path.iterdir()) == []


def test_pipes(programs):
    result = run(programs.pipes)
    assert result.stdout == (
        "empty pipe: none\n"
        "after write: POLLIN\n"
        "read 4: ping\n"
        "dup2 -> 42, read 6: via 42\n"
        "stdout redirected, read 14: captured line\n"
        "writer closed: POLLHUP\n"
        "read at EOF: 0\n"
    )
    assert result.returncode == 11


def test_timecalls_reads_the_current_time(programs):
    before = time.time()
    result = run(programs.timecalls)
    after = time.time()
    clocks = values(result.stdout)
    assert before - 1 <= float(clocks["realtime"]) <= after + 1
    assert before - 1 <= float(clocks["gettimeofday"]) <= after + 1
    assert before - 2 <= int(clocks["time"]) <= after + 1
    assert float(clocks["monotonic first"]) <= float(clocks["monotonic last"])
    assert int(clocks["cpu"]) >= 0
    assert result.stdout.endswith(
        "deterministic: clocks agree yes, 1000 monotonic reads nondecreasing yes\n")
    assert result.returncode == 12


def test_random_differs_between_runs(programs):
    first, second = run(programs.random), run(programs.random)
    for result in first, second:
        assert re.fullmatch(r"getrandom returned 16\nrandom: [0-9a-f]{32}\n", result.stdout)
        assert result.returncode == 13
    assert first.stdout != second.stdout


def test_rdtsc_values_increase(programs):
    result = run(programs.rdtsc)
    reads = values(result.stdout)
    tsc = [int(reads[f"rdtsc {i}"]) for i in range(5)]
    tsc += [int(reads[f"rdtscp {i}"].split(" aux ")[0]) for i in range(5)]
    assert tsc == sorted(tsc) and tsc[0] > 0
    assert result.stdout.endswith("deterministic: 10 reads, increasing yes\n")
    assert result.returncode == 14


def test_mmaps(programs):
    result = run(programs.mmaps)
    assert result.stdout == (
        "anon 4 pages: 15da00b166572325\n"
        "munmap page 1: 0\n"
        "page 1 unmapped: yes, pages 2-3 kept: 0eea955c553ca325\n"
        "mprotect page 0 read-only: 0\n"
        "mprotect page 0 read-write: 0\n"
        "page 0 read-only: 765914c4c4af6325, after a write: 86a8da99f25893da\n"
        "MAP_FIXED at page 3: same address yes, zeroed yes\n"
        "exe mapped: ELF magic yes, 64-bit yes\n"
        "exe private write: XELF\n"
        "mremap 1 -> 4 pages: moved yes, contents kept yes, new pages zero yes\n"
        "mremap last page written: 0cf9691f32215325\n"
        "sbrk 16 pages: from old break yes, checksum 70aa34cf84e02325, shrunk back yes\n"
        "before MADV_DONTNEED: da25f6dbc2392325\n"
        "madvise: 0, zeros afterwards: yes\n"
    )
    assert result.returncode == 15


def test_signals(programs):
    result = run(programs.signals)
    assert result.stdout == (
        "SIGSEGV recoveries from a NULL write: 3\n"
        "SIGFPE recoveries from a division by zero: 1\n"
        "alarm(1) + pause: 1 SIGALRM, pause returned -1 EINTR\n"
        "setitimer 10 ms: 5 ticks in a pause loop\n"
        "sigqueue SIGRTMIN+1 x3 while blocked: pending yes, delivered before unblock 0, "
        "after: 3 with values 14 28 42, all SI_QUEUE yes\n"
        "sigaltstack: handler's local on the alternate stack yes, SS_ONSTACK yes\n"
    )
    assert result.returncode == 16


def test_busyloop_is_interrupted_within_a_second(programs):
    start = time.monotonic()
    result = run(programs.busyloop)
    assert time.monotonic() - start < 1
    assert result.stdout.startswith("got SIGALRM from setitimer 50 ms after spinning: yes\n")
    assert int(values(result.stdout)["spins"]) > 0
    assert result.returncode == 17


def test_execself_runs_twice(programs):
    result = run(programs.execself)
    assert result.stdout == "execself generation 0, argc 1\nexecself generation 1, argc 2\n"
    assert result.returncode == 18


@pytest.mark.parametrize("explicit", [False, True], ids=["sibling", "argv1"])
def test_execother_becomes_hello(programs, explicit):
    result = run(programs.execother, *([programs.hello] if explicit else []))
    assert result.stdout == "execother: exec hello\nhello, world\n"
    assert result.returncode == 3


def test_forker_waits_for_its_child(programs):
    result = run(programs.forker)
    assert result.stdout == (
        "forker: before fork\nforker: in the child\nforker: child exited with 7\n")
    assert result.returncode == 19


def test_threads_join(programs):
    result = run(programs.threads)
    assert result.stdout == "threads: starting 2\nthreads: sums 499500 + 1499500 = 1999000\n"
    assert result.returncode == 20


def test_unsupported_survives_its_syscall_natively(programs):
    result = run(programs.unsupported)
    assert result.stdout == (
        "unsupported: calling io_uring_setup\nunsupported: io_uring_setup returned -1\n")
    assert result.returncode == 21


def test_watch(programs):
    result = run(programs.watch)
    assert result.stdout == "watch: g_value 212, hits 4, total 100\n"
    assert result.returncode == 22


def test_fatal_dies_of_sigsegv(programs, tmp_path):
    result = run(programs.fatal, cwd=tmp_path)  # where a core file would go
    assert result.stdout == "fatal: about to write through NULL\n"
    assert result.returncode == -signal.SIGSEGV


def xorshift64(iterations: int) -> int:
    x, mask = 0x9E3779B97F4A7C15, (1 << 64) - 1
    for _ in range(iterations):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
    return x


@pytest.mark.parametrize("iterations", [0, 1, 1000])
def test_compute_matches_python(programs, iterations):
    result = run(programs.compute, iterations)
    assert result.stdout == f"compute: {iterations} iterations -> {xorshift64(iterations):016x}\n"
    assert result.returncode == 23


def test_syscall_heavy(programs):
    result = run(programs.syscall_heavy, 1000)
    assert result.stdout == (
        "syscall_heavy: 1000 reads, 64000 bytes, 0 nonzero, clock nondecreasing yes\n")
    assert result.returncode == 24

