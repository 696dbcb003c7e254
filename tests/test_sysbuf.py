"""record --syscall-buffer: the common syscalls made through the preloaded library,
without a ptrace stop each (tracee/sysbuf.c), replayed from the same trace events."""

from __future__ import annotations

from pathlib import Path

from runner import RETROGRADE, replay, run

from retrograde.trace.events import ExecEvent, SyscallEvent
from retrograde.trace.format import TraceReader
from retrograde.tracee.syscalls import syscall_number

NR_READ, NR_FSTAT = syscall_number("read"), syscall_number("fstat")


def buffered_recording(argv: list, out: Path):
    return run(RETROGRADE + ["record", "--syscall-buffer", "-o", str(out), "--",
                             *[str(a) for a in argv]], timeout=180)


def events(trace: Path) -> list:
    with TraceReader(trace) as reader:
        return [reader[n] for n in range(len(reader))]


def test_the_library_is_loaded_and_each_read_of_a_file_is_buffered_after_its_fstat(
        programs, tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"ABCDEFGHIJKLMNOP")
    trace = tmp_path / "t"
    got = buffered_recording([programs.sysbuf_reads, data], trace)
    assert got.returncode == 0 and got.stdout == b"ABCDEFGH|IJKLMNOP\n", got.stderr
    seen = events(trace)
    names = [m.name for e in seen if isinstance(e, SyscallEvent) and e.mapping
             for m in [e.mapping]]
    assert any("libretrograde-sysbuf" in name for name in names)
    calls = [e for e in seen if isinstance(e, SyscallEvent)]
    # ld.so's reads of the libraries come first, through its own code.
    reads = [n for n, e in enumerate(calls) if e.nr == NR_READ and e.args[0] == 3][-2:]
    # The library asks what the descriptor is before each read (a pipe would be traced).
    assert all(calls[n - 1].nr == NR_FSTAT and calls[n - 1].args[0] == 3 for n in reads)
    assert [w[1] for n in reads for w in calls[n].writes] == [b"ABCDEFGH", b"IJKLMNOP"]
    replayed = replay(trace)
    assert replayed.returncode == 0 and replayed.stdout == got.stdout


def test_buffered_and_traced_calls_with_signals_a_blocked_thread_and_an_exec_replay_alike(
        programs, tmp_path):
    trace = tmp_path / "t"
    got = buffered_recording([programs.sysbuf_mix, "/etc/services", 20000], trace)
    assert got.returncode == 42, got.stderr
    out = got.stdout.decode()
    # The thread blocked in a traced read of a pipe got main's write; the child that
    # exec'd, and the program itself, saw no LD_PRELOAD.
    assert "thread 'half way'" in out and "child LD_PRELOAD=[]" in out
    assert out.rstrip().endswith("own LD_PRELOAD []")
    alarms = int(out.split(" alarms ")[1].split()[0])
    assert alarms > 0
    assert any(isinstance(e, ExecEvent) for e in events(trace)[1:])  # the child's sh
    replayed = replay(trace)
    assert replayed.returncode == 42 and replayed.stdout == got.stdout, replayed.stderr


def test_gdb_between_two_buffered_reads_and_back_across_one(programs, tmp_path, debug):
    data = tmp_path / "data"
    data.write_bytes(b"ABCDEFGHIJKLMNOP")
    trace = tmp_path / "t"
    assert buffered_recording([programs.sysbuf_reads, data], trace).returncode == 0
    gdb, _ = debug.start(trace)
    gdb.cmd("break between")
    gdb.cmd("break after_both")
    assert gdb.stop("continue").frame.get("func") == "between"
    assert gdb.value("first") == '"ABCDEFGH"'
    assert gdb.value("second[0]") == "0 '\\000'"
    assert gdb.stop("continue").frame.get("func") == "after_both"
    assert gdb.value("second") == '"IJKLMNOP"'
    # Back over the second read, which the library made from the retrograde page.
    assert gdb.stop("reverse-continue").frame.get("func") == "between"
    assert gdb.value("second[0]") == "0 '\\000'"
    # Over the read once more, forwards with next and back with reverse-next.
    gdb.stop("finish")
    stop = gdb.stop("next")
    assert gdb.value("second") == '"IJKLMNOP"', stop
    gdb.stop("reverse-next")
    assert gdb.value("second[0]") == "0 '\\000'"
    gdb.stop("next")
    assert gdb.value("second") == '"IJKLMNOP"'
