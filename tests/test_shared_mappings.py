"""Shared and special mappings: recorded and replayed as the program saw them, from
the trace alone, never touching a host file or a SysV segment in replay."""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
from pathlib import Path

import pytest
from runner import latest, native, record, replay, retrograde

from retrograde.replay.address_space import AddressSpace
from retrograde.replay.session import ReplaySession
from retrograde.trace.events import MappingRecord, SyscallEvent
from retrograde.trace.format import TraceReader, TraceWriter
from retrograde.tracee.syscalls import syscall_number

GiB = 1 << 30
IPC_RMID = 0


def test_shared_file_dev_zero_and_memfd_mappings_replay_identically(programs, trace_root,
                                                                     tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    ran = native([programs.shared_maps, work])
    assert ran.returncode == 0, ran.stderr
    assert b"mapping sees pwrite: by pwrite\n" in ran.stdout
    assert b"memfd mremap 3 -> 5 pages: moved yes, kept from the fd|from the mapping, " \
           b"tail tail\n" in ran.stdout
    assert b"shared page 0 after MADV_DONTNEED: 0, kept\n" in ran.stdout
    assert b"memfd mapped again: TAIL, " in ran.stdout
    recorded = record([programs.shared_maps, work])
    assert (recorded.returncode, recorded.stdout) == (0, ran.stdout), recorded.stderr
    # The file the program made and removed is not needed either.
    assert list(work.iterdir()) == []
    work.rmdir()
    replayed = replay(None, "--check-maps")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == ran.stdout


def test_file_mappings_the_kernel_merged_grow_and_move_as_one(programs, trace_root, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    ran = native([programs.coalesced_files, work])
    assert ran.stdout == (b"shared coalesced mremap: done zero ONE two\nmoved: done ONE\n"
                          b"private coalesced mremap: done zero uno two\nmoved: done uno\n")
    recorded = record([programs.coalesced_files, work])
    assert recorded.stdout == ran.stdout
    replayed = replay(None, "--check-maps")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == ran.stdout


def test_replay_never_writes_into_the_trace_copies_of_shared_files(programs, trace_root,
                                                                    tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    record([programs.shared_maps, work])
    files = latest(trace_root) / "files"
    before = {p.name: p.read_bytes() for p in files.iterdir()}
    replay(None)
    assert {p.name: p.read_bytes() for p in files.iterdir()} == before
    with TraceReader(latest(trace_root)) as reader:
        reader.verify()


# -- two views of the same pages ----------------------------------------------------------------

def test_stores_through_one_view_show_through_the_other(programs, trace_root, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    ran = native([programs.alias, work])
    assert ran.returncode == 0, ran.stderr
    for line in (b"memfd step 11: 36\n", b"file, first view: through the second view\n",
                 b"anonymous, original view: through the dup\n", b"ring: ed around|wrapp\n",
                 b"ring step 11: 12\n"):
        assert line in ran.stdout
    recorded = record([programs.alias, work])
    assert recorded.stdout == ran.stdout
    replayed = replay(None, "--check-maps")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == ran.stdout


def test_a_checkpoint_keeps_its_own_shared_pages(programs, trace_root, tmp_path, capfd):
    """A checkpoint is a fork: its views of a shared memfd must not see the stores
    the replay makes after it was taken, or a restore would count on from there."""
    work = tmp_path / "work"
    work.mkdir()
    ran = native([programs.alias, work])
    record([programs.alias, work])
    with TraceReader(latest(trace_root)) as reader:
        steps = [n for n, e in enumerate(reader) if isinstance(e, SyscallEvent)
                 and e.nr == syscall_number("write") and e.args[0] == 1]
        middle = steps[-6]  # inside the ring's counting loop: 6 more steps to go
        with ReplaySession(reader, echo=True) as first:
            first.start()
            while first.next_event < middle:
                first.step_event()
            capfd.readouterr()
            checkpoint = first.clone()
            assert first.run_to_end().exit_status == 0
            rest = capfd.readouterr().out
            assert rest.startswith("ring step 6: 7\n") and ran.stdout.decode().endswith(rest)
            with checkpoint, checkpoint.clone() as again:
                assert again.run_to_end().exit_status == 0
                assert capfd.readouterr().out == rest


# -- SysV shared memory ------------------------------------------------------------------------

def _segment_line(shmid: int) -> str | None:
    """The segment's line of /proc/sysvipc/shm: attach count, last attach and detach times
    and pids, size and resident pages; None once it is gone."""
    with open("/proc/sysvipc/shm") as f:
        for line in f:
            fields = line.split()
            if fields[1] == str(shmid):
                return line
    return None


def _recorded_shmid(stderr: bytes) -> int:
    line = next(x for x in stderr.decode().splitlines() if x.startswith("shmid "))
    return int(line.split()[1])


def _remove_segment(shmid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.shmctl(shmid, IPC_RMID, None) == 0, os.strerror(ctypes.get_errno())


def test_shmat_replays_from_the_trace_without_touching_the_segment(programs, trace_root):
    recorded = record([programs.sysv_shm])
    assert recorded.returncode == 0, recorded.stderr
    assert b"attached again, read-only: written through shmat\n" in recorded.stdout
    shmid = _recorded_shmid(recorded.stderr)
    try:
        before = _segment_line(shmid)
        assert before is not None
        replayed = replay(None, "--check-maps")
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout == recorded.stdout
        # No attach or detach happened: the times, pids and counts are as they were.
        assert _segment_line(shmid) == before
    finally:
        _remove_segment(shmid)


def test_shmat_replays_after_the_segment_is_removed(programs, trace_root):
    recorded = record([programs.sysv_shm])
    _remove_segment(_recorded_shmid(recorded.stderr))
    replayed = replay(None, "--check-maps")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout


def test_shmdt_detaches_every_piece_of_a_segment_mprotect_split() -> None:
    segment = MappingRecord(0x10000, 0x14000, "rw-s", 0, "/SYSV00000000 (deleted)", "5e9")
    neighbour = MappingRecord(0x14000, 0x15000, "rw-p", 0, "")
    space = AddressSpace([segment, neighbour])
    space.protect(0x10000, 0x1000, 1)
    space.unmap(0x12000, 0x1000)
    assert space.attached(0x10000) == [(0x10000, 0x11000), (0x11000, 0x12000),
                                       (0x13000, 0x14000)]
    assert space.attached(0x11000) == []  # not where it was attached
    space.unmap(0x10000, 0x1000)  # the first page gone, shmdt still finds the rest
    assert space.attached(0x10000) == [(0x11000, 0x12000), (0x13000, 0x14000)]
    assert space.attached(0x14000) == []  # not a segment


# -- sparse files ----------------------------------------------------------------------------

def _sparse_file(path: Path) -> dict[int, bytes]:
    data = {0: b"the first bytes!", 5 * GiB + 123: b"five gibibytes..",
            77 * GiB: b"x" * (3 << 20), 100 * GiB - 4096: b"near the end...."}
    with open(path, "wb") as f:
        f.truncate(100 * GiB)
        for offset, chunk in data.items():
            f.seek(offset)
            f.write(chunk)
    return data


def test_a_mapped_100_gib_sparse_file_is_stored_by_its_data(programs, trace_root, tmp_path):
    sparse = tmp_path / "sparse.img"
    data = _sparse_file(sparse)
    offsets = [str(o) for o in data if o + 100001 < 100 * GiB] + [str(40 * GiB)]
    ran = native([programs.sparse_map, sparse, *offsets])
    assert ran.returncode == 0, ran.stderr
    assert b"at 5368709243: five gibibytes..|five gibibytes..|0\n" in ran.stdout
    recorded = record([programs.sparse_map, sparse, *offsets])
    assert (recorded.returncode, recorded.stdout) == (0, ran.stdout), recorded.stderr
    sparse.unlink()
    trace = latest(trace_root)
    with TraceReader(trace) as reader:
        assert reader.size_bytes() < 64 << 20
        reader.verify()
    copies = [p for p in (trace / "files").iterdir() if p.stat().st_size == 100 * GiB]
    assert copies and all(p.stat().st_blocks * 512 < 64 << 20 for p in copies)
    replayed = replay(None, "--check-maps")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == ran.stdout


def test_a_writable_shared_view_of_a_100_gib_sparse_file_replays(programs, trace_root,
                                                                  tmp_path):
    """rr's large_hole: the whole file mapped shared and writable, a line stored
    through it and read back with pread. Replay's private copy of that view must
    not ask the kernel to reserve 100 GiB (it refused with ENOMEM)."""
    sparse = tmp_path / "sparse.img"
    _sparse_file(sparse)
    args = ["-w", sparse, str(90 * GiB), "0"]
    ran = native([programs.sparse_map, *args])
    assert ran.returncode == 0, ran.stderr
    assert b"pread: written through the map\n" in ran.stdout
    _sparse_file(sparse)  # as it was before the run
    recorded = record([programs.sparse_map, *args])
    assert (recorded.returncode, recorded.stdout) == (0, ran.stdout), recorded.stderr
    sparse.unlink()
    replayed = replay(None, "--check-maps")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == ran.stdout


def test_sparse_copies_are_named_by_content_not_by_where_the_holes_are(tmp_path):
    holes = tmp_path / "holes"
    with open(holes, "wb") as f:
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(b"data")
    # The same bytes with the first 2 MiB of zeros written out, not a hole.
    written = tmp_path / "written"
    with open(written, "wb") as f:
        f.write(bytes(2 << 20))
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(b"data")
    dense = tmp_path / "dense"
    dense.write_bytes(holes.read_bytes())
    with TraceWriter(tmp_path / "trace", {}) as writer:
        digest = writer.add_file(holes)
        assert writer.add_file(written) == digest
        assert writer.add_file(dense) == hashlib.sha256(dense.read_bytes()).hexdigest()
        padded = writer.add_file(written, size=16 << 20)
        tail = writer.add_file(dense, size=(8 << 20) + 100)  # the extension is not a hole
    assert len({digest, padded, tail}) == 3
    with TraceReader(tmp_path / "trace") as reader:
        reader.verify()
        copy, extended = reader.file_path(digest), reader.file_path(padded)
        assert copy.read_bytes() == holes.read_bytes()
        assert extended.read_bytes() == holes.read_bytes() + bytes(8 << 20)
        assert reader.file_path(tail).read_bytes() == holes.read_bytes() + bytes(100)
        assert copy.stat().st_blocks * 512 < 2 << 20


def test_a_corrupt_sparse_copy_fails_verification(tmp_path):
    holes = tmp_path / "holes"
    with open(holes, "wb") as f:
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(b"data")
    with TraceWriter(tmp_path / "trace", {}) as writer:
        digest = writer.add_file(holes)
    copy = tmp_path / "trace" / "files" / digest
    copy.chmod(0o644)
    with open(copy, "r+b") as f:
        f.seek(6 << 20)
        f.write(b"\1")
    with TraceReader(tmp_path / "trace") as reader, pytest.raises(Exception, match="corrupt"):
        reader.verify()


def test_ls_shows_what_a_sparse_trace_takes_on_disk(programs, trace_root, tmp_path):
    sparse = tmp_path / "sparse.img"
    _sparse_file(sparse)
    record([programs.sparse_map, sparse, "0"])
    line = next(x for x in retrograde("ls").stdout.decode().splitlines() if "sparse_map" in x)
    sizes = re.findall(r"\s(\d+)([BKMGT])(?=\s|$)", line)
    assert len(sizes) == 1 and sizes[0][1] in "BKM", line
