"""Replaying traces with no debugger: identical output and exit status, without the
recorded binaries, and a clear divergence report when the trace was tampered with."""

from __future__ import annotations

import shutil
import signal

import pytest
from runner import REAL_PROGRAMS, latest, native, record, replay

from retrograde.trace.events import SyscallEvent
from retrograde.trace.format import TraceReader, TraceWriter
from retrograde.tracee.syscalls import syscall_name, syscall_number

PROGRAMS = {  # name -> extra arguments
    "hello": [], "hello_static": [], "pipes": [], "mmaps": [], "execself": [], "watch": [],
    "timecalls": [], "random": [], "rdtsc": [], "signals": [], "busyloop": [],
    "fatal": [], "compute": ["1000000"], "syscall_heavy": ["2000"],
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_replay_without_the_binary_matches_the_recording(programs, trace_root, tmp_path, name):
    binary = tmp_path / name
    shutil.copy(programs[name], binary)
    recorded = record([binary, *PROGRAMS[name]])
    binary.unlink()
    replayed = replay(None, "--check-maps")  # the address-space model agrees with the kernel
    assert replayed.returncode == recorded.returncode, replayed.stderr
    assert replayed.stdout == recorded.stdout


def test_files_replay_after_the_files_are_gone(programs, trace_root, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    recorded = record([programs.files, work])
    shutil.rmtree(work)
    replayed = replay()
    assert (replayed.returncode, replayed.stdout) == (recorded.returncode, recorded.stdout)


def test_exec_of_another_binary_replays(programs, trace_root, tmp_path):
    hello = tmp_path / "hello"
    shutil.copy(programs.hello, hello)
    recorded = record([programs.execother, hello])
    hello.unlink()
    replayed = replay()
    assert replayed.stdout == recorded.stdout == b"execother: exec hello\nhello, world\n"
    assert replayed.returncode == 3


def test_no_echo_and_check_maps(programs, trace_root):
    record([programs.mmaps])
    replayed = replay(None, "--no-echo", "--check-maps")
    assert replayed.returncode == 15, replayed.stderr
    assert replayed.stdout == b""


def test_fatal_signal_status(programs, trace_root):
    record([programs.fatal])
    replayed = replay()
    assert replayed.returncode == 128 + signal.SIGSEGV


@pytest.mark.parametrize("argv", REAL_PROGRAMS)
def test_real_programs_replay_identically(trace_root, argv):
    recorded = record(argv)
    replayed = replay(None, "--check-maps")
    assert replayed.returncode == recorded.returncode, replayed.stderr
    assert replayed.stdout == recorded.stdout


def _rewrite(trace, tmp_path, change):
    """A copy of ``trace`` with ``change(n, event)`` applied to every event."""
    copy = tmp_path / "tampered"
    with TraceReader(trace) as reader, TraceWriter(copy, dict(reader.metadata)) as writer:
        for path in (trace / "files").iterdir():
            writer.add_file(path)
        for n, event in enumerate(reader):
            writer.append(change(n, event))
        writer.close(**{k: reader.metadata.get(k) for k in ("exit_status", "exit_signal")})
    return copy


def test_tampered_argument_is_a_divergence(programs, trace_root, tmp_path):
    record([programs.hello])
    trace = latest(trace_root)
    with TraceReader(trace) as reader:
        target = max(n for n, e in enumerate(reader) if isinstance(e, SyscallEvent)
                     and e.nr == 1)
    tampered = _rewrite(trace, tmp_path, lambda n, e: e if n != target else
                        SyscallEvent(**{**e.__dict__, "args": (2, *e.args[1:])}))
    replayed = replay(tampered)
    assert replayed.returncode == 2
    err = replayed.stderr.decode()
    assert err.startswith(f"retrograde: replay diverged at event {target}: recorded write(0x2")
    assert "replay write(0x1" in err


def test_tampered_result_changes_what_the_program_sees(programs, trace_root, tmp_path):
    record([programs.watch])
    trace = latest(trace_root)
    with TraceReader(trace) as reader:
        target = max(n for n, e in enumerate(reader) if isinstance(e, SyscallEvent)
                     and e.nr == syscall_number("brk") and e.args[0] == 0)
    # malloc asks for the program break and then for more from there: with another
    # answer to the first question, the second call no longer matches the trace.
    tampered = _rewrite(trace, tmp_path, lambda n, e: e if n != target else
                        SyscallEvent(**{**e.__dict__, "result": e.result + 0x10000}))
    replayed = replay(tampered)
    assert replayed.returncode == 2
    err = replayed.stderr.decode()
    assert "replay diverged at event " in err and "recorded brk(" in err and "replay brk(" in err


def test_newer_format_is_refused(programs, trace_root):
    import json
    record([programs.hello])
    meta_path = latest(trace_root) / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = meta.get("format_version", 1) + 100
    meta_path.write_text(json.dumps(meta))
    replayed = replay()
    assert replayed.returncode == 1
    assert "newer retrograde" in replayed.stderr.decode()


def test_stores_into_its_own_memory_through_the_kernel_replay(programs, trace_root):
    """procmem.c writes code into a read-only executable page with pwrite and with
    lseek + write on /proc/self/mem, rewrites a read-only constant with writev on
    /proc/thread-self/mem and sets a global with process_vm_writev to its own pid,
    then runs the code: the kernel's stores are kept as outputs of those calls, so
    the replay runs the same code and prints the same values."""
    assert native([programs.procmem]).stdout == b"procmem: 42 43 7 99\n"
    recorded = record([programs.procmem])
    assert (recorded.returncode, recorded.stdout) == (0, b"procmem: 42 43 7 99\n")
    replayed = replay(None, "--check-maps")
    assert (replayed.returncode, replayed.stdout, replayed.stderr) == (0, recorded.stdout, b"")
    with TraceReader(latest(trace_root)) as trace:
        stores = [e for e in trace if isinstance(e, SyscallEvent) and e.nr in
                  {syscall_number(n) for n in ("pwrite64", "write", "writev",
                                               "process_vm_writev")} and e.writes]
    assert [(syscall_name(e.nr), [len(data) for _, data in e.writes]) for e in stores] == \
        [("pwrite64", [4]), ("write", [4]), ("writev", [4]), ("process_vm_writev", [4])]


def test_a_store_into_another_recorded_process_is_refused_with_a_warning(programs, trace_root):
    """A child's process_vm_writev into its parent would change memory the parent's
    replay never sees: the child is told ENOSYS, with one warning line, and the
    recording replays as it ran."""
    assert native([programs.procmem, "parent"]).stdout == b"child: 0\nparent: 99\n"
    recorded = record([programs.procmem, "parent"])
    assert recorded.stdout == b"child: Function not implemented\nparent: 1\n"
    warnings = [line for line in recorded.stderr.decode().splitlines() if "warning" in line]
    assert len(warnings) == 1 and "process_vm_writev into process" in warnings[0]
    replayed = replay()
    assert (replayed.returncode, replayed.stdout) == (0, recorded.stdout)


@pytest.mark.parametrize("how", ["suspend", "ppoll", "pselect"])
def test_a_signal_is_delivered_under_the_temporary_mask_of_the_call_it_interrupts(
        programs, trace_root, how):
    """suspend.c waits with a mask that unblocks a pending SIGUSR1 (sigsuspend, ppoll,
    pselect): replay emulates the wait, so it must deliver the signal under that
    mask, save the mask from before the wait in the frame (the handler prints it)
    and have it back after the handler (a SIGINT raised then is delivered)."""
    expected = (b"usr1 handled; its frame saves usr1 blocked, int unblocked\n"
                b"%s returned -1; int delivered\n" % how.encode())
    assert native([programs.suspend, how]).stdout == expected
    recorded = record([programs.suspend, how])
    assert (recorded.returncode, recorded.stdout) == (0, expected)
    replayed = replay()
    assert (replayed.returncode, replayed.stdout, replayed.stderr) == (0, expected, b"")


def test_a_store_into_the_retrograde_page_fails_as_natively(programs, trace_root):
    """procmem.c stores an int3 through /proc/self/mem at 0x70000000, where nothing
    is mapped natively (EIO) and the retrograde page lies under recording: the
    program gets EIO as natively, and replay's own use of the page still works."""
    expected = b"page: Input/output error\n"
    assert native([programs.procmem, "page"]).stdout == expected
    recorded = record([programs.procmem, "page"])
    assert (recorded.returncode, recorded.stdout) == (0, expected)
    replayed = replay()
    assert (replayed.returncode, replayed.stdout, replayed.stderr) == (0, expected, b"")
