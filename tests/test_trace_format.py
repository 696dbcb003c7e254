"""The on-disk trace: round trips, random access, crash tolerance, corruption.

The corruption and truncation tests find chunks by parsing the layout that
trace/format.py documents (16-byte file header, 40-byte chunk headers whose
payload size is at byte 24), so they also check that the documentation is true.
"""

from __future__ import annotations

import inspect
import json
import mmap
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrograde.trace import dump
from retrograde.trace.dump import format_event, parse_range
from retrograde.trace.events import (
    Event,
    ExecEvent,
    ExitEvent,
    MappingRecord,
    RdtscEvent,
    SignalEvent,
    SyscallEvent,
)
from retrograde.trace.format import (
    FORMAT_VERSION,
    TraceError,
    TraceReader,
    TraceWriter,
    trace_directories,
)

METADATA = {
    "argv": ["/usr/bin/cat", "notes.txt"],
    "cwd": "/home/ada",
    "environment": {"HOME": "/home/ada", "LANG": "C.UTF-8"},
    "kernel": {"sysname": "Linux", "release": "6.8.0", "machine": "x86_64"},
    "cpu": {"model": "Intel(R) Xeon(R)", "cpuid": {"0x0": [13, 1970169159, 1818588270,
                                                           1231384169]}},
}


def every_kind_of_event(n: int) -> Event:
    """Event n of a recording that has every kind, big and small, in turn."""
    task = 4242 + n % 3
    match n % 7:
        case 0:
            return SyscallEvent(task=task, nr=0, args=(3, 0x7FFC3E10, 832, 0, 0, 0), result=n,
                                writes=((0x7FFC3E10, bytes([n % 256]) * (n % 50)),))
        case 1:
            region = MappingRecord(0x7F3A1000 + n * 0x1000, 0x7F3A3000 + n * 0x1000, "r-xp",
                                   0x1000, "/usr/lib/libc.so.6", file_hash="ab" * 32)
            return SyscallEvent(task=task, nr=9, args=(0, 8192, 5, 2, 3, 0x1000),
                                result=region.start, mmap_id=n // 7, mapping=region)
        case 2:
            return SyscallEvent(task=task, nr=257, args=(2**64 - 100, 0x4000, 0, 0, 0, 0),
                                result=-2)
        case 3:
            return SignalEvent(task=task, signo=14, siginfo=b"\x0e" + b"\0" * 127,
                               where="precise", regs=bytes(range(216)), xstate=b"\1" * 832,
                               digest=b"\xab" * 32)
        case 4:
            return RdtscEvent(task=task, pc=0x401136, value=2**63 + n, aux=n % 4 or None)
        case 5:
            stack = MappingRecord(0x7FFC0000, 0x7FFE1000, "rw-p", 0, "[stack]",
                                  contents=random.Random(n).randbytes(3000))
            return ExecEvent(task=task, path="/usr/bin/cat", argv=("cat", "notes.txt"),
                             mappings=[stack], regs=b"r" * 216, xstate=b"x" * 832,
                             retrograde_page=0x70000000)
        case _:
            return ExitEvent(task=task, status=n % 256) if n % 2 else ExitEvent(task=task,
                                                                                 signo=9)


def write_trace(directory: Path, events: list[Event], close: bool = True,
                **options: int) -> Path:
    writer = TraceWriter(directory, METADATA, **options)
    for event in events:
        writer.append(event)
    if close:
        writer.close(exit_status=0)
    else:
        writer.flush()  # what the recorder had written when it was killed
    return directory


def chunk_offsets(events_file: Path) -> list[tuple[int, int]]:
    """(start, end) byte offsets of each chunk frame, from the documented layout."""
    data = events_file.read_bytes()
    frames, offset = [], 16
    while offset + 40 <= len(data):
        (payload_size,) = struct.unpack_from("<Q", data, offset + 24)
        frames.append((offset, offset + 40 + payload_size))
        offset += 40 + payload_size
    return frames


def flip_bit(path: Path, offset: int, bit: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def read_all(directory: Path) -> list[Event]:
    with TraceReader(directory) as reader:
        return list(reader)


# -- round trips ----------------------------------------------------------------------

def test_events_of_every_kind_come_back_equal_across_many_chunks(tmp_path):
    events = [every_kind_of_event(n) for n in range(3000)]
    write_trace(tmp_path / "t", events, chunk_events=100)
    assert len(chunk_offsets(tmp_path / "t" / "events")) == 30
    with TraceReader(tmp_path / "t") as reader:
        assert len(reader) == 3000
        assert list(reader) == events
        assert reader.complete


def test_a_chunk_is_also_cut_by_size(tmp_path):
    big = SyscallEvent(task=1, nr=0, args=(0, 0x1000, 10_000), result=10_000,
                       writes=((0x1000, random.Random(1).randbytes(10_000)),))
    write_trace(tmp_path / "t", [big] * 10, chunk_events=512, chunk_bytes=25_000)
    # 3 events pass 25,000 bytes: chunks of 3, 3, 3, then 1 at close.
    assert len(chunk_offsets(tmp_path / "t" / "events")) == 4
    assert read_all(tmp_path / "t") == [big] * 10


def test_metadata_holds_what_the_recorder_gave_and_how_it_ended(tmp_path):
    before = time.time()
    with TraceWriter(tmp_path / "t", METADATA) as writer:
        assert writer.append(every_kind_of_event(0)) == 0
        assert writer.append(every_kind_of_event(1)) == 1
        assert writer.event_count == 2
        writer.close(exit_status=3, exit_signal=None)
        writer.close(exit_status=99)  # idempotent: the first close wins
    with TraceReader(tmp_path / "t") as reader:
        meta = reader.metadata
    assert {k: meta[k] for k in METADATA} == METADATA
    assert meta["format_version"] == FORMAT_VERSION
    assert before <= meta["start_time"] <= meta["end_time"] <= time.time()
    assert meta["exit_status"] == 3 and meta["exit_signal"] is None
    assert meta["complete"] is True
    assert meta["event_count"] == 2 and meta["chunk_count"] == 1


def test_a_copy_of_a_finished_traces_metadata_starts_a_new_incomplete_trace(tmp_path):
    write_trace(tmp_path / "old", [every_kind_of_event(0)])
    with TraceReader(tmp_path / "old") as old:
        copied = dict(old.metadata)
    copied["format_version"] = 0
    writer = TraceWriter(tmp_path / "new", copied)
    with TraceReader(tmp_path / "new") as new:
        assert not new.complete and len(new) == 0
        assert new.metadata["format_version"] == FORMAT_VERSION
        assert new.metadata["start_time"] == copied["start_time"]
        assert "event_count" not in new.metadata and "end_time" not in new.metadata
    writer.close()


def test_a_recorder_that_raises_still_leaves_a_complete_trace_saying_why(tmp_path):
    with pytest.raises(RuntimeError), TraceWriter(tmp_path / "t", METADATA) as writer:
        writer.append(every_kind_of_event(0))
        raise RuntimeError("tracee vanished")
    with TraceReader(tmp_path / "t") as reader:
        assert reader.complete and len(reader) == 1
        assert reader.metadata["error"] == "RuntimeError: tracee vanished"


class DiskFullAfter:
    """Stands in for the events file: takes `room` bytes, then fails like a full disk."""

    def __init__(self, real, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.real.write(data[:self.room])
            self.real.flush()
            self.room = 0
            raise OSError(28, "No space left on device")
        self.room -= len(data)
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_failed_write_leaves_a_readable_incomplete_trace(tmp_path):
    events = [every_kind_of_event(n) for n in range(25)]
    writer = TraceWriter(tmp_path / "t", METADATA, chunk_events=10)
    for event in events[:20]:
        writer.append(event)
    writer._events = DiskFullAfter(writer._events, room=100)
    for event in events[20:24]:
        writer.append(event)
    with pytest.raises(TraceError) as e:
        writer.flush()
    assert str(e.value) == f"cannot write trace {tmp_path}/t/events: No space left on device"
    with pytest.raises(TraceError):
        writer.append(events[24])  # nothing goes after a torn frame
    writer.close(exit_status=0)  # already reported: closes quietly
    with TraceReader(tmp_path / "t") as reader:
        assert not reader.complete
        assert list(reader) == events[:20]


def test_a_path_that_is_not_utf8_survives(tmp_path):
    path = os.fsdecode(b"/tmp/caf\xe9")  # Latin-1 name: a lone surrogate in Python
    event = ExecEvent(task=1, path=path, argv=(path,))
    write_trace(tmp_path / "t", [event])
    assert read_all(tmp_path / "t") == [event]


def test_an_event_msgpack_cannot_encode_is_refused_and_the_chunk_stays_intact(tmp_path):
    with TraceWriter(tmp_path / "t", METADATA) as writer:
        writer.append(every_kind_of_event(0))
        with pytest.raises(OverflowError):
            writer.append(RdtscEvent(task=1, value=2**64))
        writer.append(every_kind_of_event(1))
    assert read_all(tmp_path / "t") == [every_kind_of_event(0), every_kind_of_event(1)]


# -- random access --------------------------------------------------------------------

def test_random_access_by_event_number(tmp_path):
    events = [every_kind_of_event(n) for n in range(2500)]
    write_trace(tmp_path / "t", events, chunk_events=64)
    order = list(range(2500))
    random.Random(7).shuffle(order)
    with TraceReader(tmp_path / "t") as reader:
        for n in order:
            assert reader[n] == events[n]
        assert reader[-1] == events[2499]
        assert list(reader.events(1000, 1130)) == events[1000:1130]  # crosses two chunks
        assert list(reader.events(2490)) == events[2490:]
        assert list(reader.events(10, 10)) == []
        assert list(reader.events(-5)) == events[-5:]  # as a slice: what led to the end
        with pytest.raises(IndexError):
            reader[2500]


def test_an_empty_trace_has_no_events(tmp_path):
    write_trace(tmp_path / "t", [])
    with TraceReader(tmp_path / "t") as reader:
        assert len(reader) == 0 and list(reader) == [] and reader.complete


# -- files ----------------------------------------------------------------------------

def test_files_are_stored_once_by_content_and_can_be_mapped(tmp_path):
    lib = tmp_path / "libfoo.so"
    lib.write_bytes(b"\x7fELF" + bytes(range(256)) * 100)
    same = tmp_path / "libfoo-copy.so"
    shutil.copy(lib, same)
    with TraceWriter(tmp_path / "t", METADATA) as writer:
        digest = writer.add_file(lib)
        assert writer.add_file(str(lib)) == digest
        assert writer.add_file(same) == digest
        assert writer.add_bytes(lib.read_bytes()) == digest
        other = writer.add_bytes(b"[vdso image]")
    assert sorted(p.name for p in (tmp_path / "t" / "files").iterdir()) == sorted([digest, other])
    with TraceReader(tmp_path / "t") as reader:
        path = reader.file_path(digest)
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
            assert mapped[:] == lib.read_bytes()
        assert reader.file_path(other).read_bytes() == b"[vdso image]"
        # read-only for everyone (root ignores the mode, so the mode is what to check)
        assert (tmp_path / "t" / "files" / digest).stat().st_mode & 0o222 == 0
        assert path.stat().st_mode & 0o222 == 0
        reader.verify()


def test_a_missing_file_or_a_bad_digest_is_a_trace_error(tmp_path):
    write_trace(tmp_path / "t", [])
    with TraceReader(tmp_path / "t") as reader:
        with pytest.raises(TraceError, match=f"trace {tmp_path}/t has no file {'0' * 64}"):
            reader.file_path("0" * 64)
        with pytest.raises(TraceError):
            reader.file_path("../metadata.json")


def test_a_link_in_files_is_never_followed_even_to_the_same_contents(tmp_path):
    host_lib = tmp_path / "libhost.so"
    host_lib.write_bytes(b"\x7fELF host library")
    with TraceWriter(tmp_path / "t", METADATA) as writer:
        digest = writer.add_file(host_lib)
    stored = tmp_path / "t" / "files" / digest
    stored.unlink()
    stored.symlink_to(host_lib)  # what the trace recorded, but the host's file
    with TraceReader(tmp_path / "t") as reader:
        with pytest.raises(TraceError, match=f"trace {stored} is a symbolic link: "):
            reader.file_fd(digest)
        with pytest.raises(TraceError, match="symbolic link"):
            reader.check()
    (tmp_path / "t" / "files").rename(tmp_path / "elsewhere")
    (tmp_path / "t" / "files").symlink_to(tmp_path / "elsewhere")
    stored = tmp_path / "elsewhere" / digest
    stored.unlink()
    shutil.copy(host_lib, stored)
    with TraceReader(tmp_path / "t") as reader, pytest.raises(
            TraceError, match=f"trace {tmp_path}/t/files is a symbolic link"):
        reader.file_fd(digest)


def test_a_copy_is_checked_before_use_and_the_checked_file_is_what_is_read(tmp_path):
    with TraceWriter(tmp_path / "t", METADATA) as writer:
        digest = writer.add_bytes(b"libc" * 1000)
    stored = tmp_path / "t" / "files" / digest
    stored.chmod(0o644)
    with open(stored, "r+b") as f:
        f.truncate(100)
    with TraceReader(tmp_path / "t") as reader, pytest.raises(TraceError) as e:
        reader.file_fd(digest)
    assert str(e.value) == (f"trace {stored} is truncated (100 bytes, recorded 4000); "
                            "the trace cannot be replayed")
    stored.write_bytes(b"libc" * 1000)
    with TraceReader(tmp_path / "t") as reader:
        path = reader.file_path(digest)
        stored.unlink()  # a name swapped after the check does not change what is read
        stored.write_bytes(b"LIBC" * 1000)
        assert path.read_bytes() == reader.read_file(digest) == b"libc" * 1000
        assert reader.read_file(digest, 4, 4) == b"libc"


def test_special_files_are_refused_without_being_opened(tmp_path):
    write_trace(tmp_path / "t", [every_kind_of_event(0)])
    events = tmp_path / "t" / "events"
    events.unlink()
    os.mkfifo(events)  # opening it for reading would block until a writer came
    with pytest.raises(TraceError) as e:
        TraceReader(tmp_path / "t")
    assert str(e.value) == (f"trace {events} is a FIFO, not a regular file (was the trace "
                            "tampered with?)")


def test_metadata_whose_values_changed_is_corrupt(tmp_path):
    write_trace(tmp_path / "t", [every_kind_of_event(0)])
    meta_path = tmp_path / "t" / "metadata.json"
    text = meta_path.read_text()
    assert '"event_count": 1,' in text
    meta_path.write_text(text.replace('"event_count": 1,', '"event_count": 3,'))
    with pytest.raises(TraceError, match=r"metadata.json is corrupt \(checksum mismatch\)"):
        TraceReader(tmp_path / "t")
    # Spacing is not content: the same values in another layout read as before.
    meta_path.write_text(json.dumps(json.loads(text)))
    with TraceReader(tmp_path / "t") as reader:
        assert len(reader) == 1 and reader.complete


def test_a_trace_of_format_1_still_reads(tmp_path):
    events = [every_kind_of_event(n) for n in range(20)]
    write_trace(tmp_path / "t", events, chunk_events=8)
    # Format 1: the same files, but metadata without "crc32" and "files".
    for name in ("events", "events.index"):
        with open(tmp_path / "t" / name, "r+b") as f:
            f.seek(8)
            f.write(struct.pack("<I", 1))
    meta_path = tmp_path / "t" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    del meta["crc32"], meta["files"]
    meta_path.write_text(json.dumps({**meta, "format_version": 1}))
    with TraceReader(tmp_path / "t") as reader:
        assert list(reader) == events and reader.complete and reader.recorded_files == {}


def test_a_metadata_file_too_big_to_be_ours_is_not_read_whole(tmp_path):
    write_trace(tmp_path / "t", [])
    with open(tmp_path / "t" / "metadata.json", "r+b") as f:
        f.truncate(1 << 30)  # sparse: costs no disk
    with pytest.raises(TraceError, match=r"metadata.json is corrupt \(over 1048576 bytes\)"):
        TraceReader(tmp_path / "t")


def test_verify_finds_a_stored_file_whose_contents_changed(tmp_path):
    with TraceWriter(tmp_path / "t", METADATA) as writer:
        digest = writer.add_bytes(b"libc")
    stored = tmp_path / "t" / "files" / digest
    stored.chmod(0o644)
    stored.write_bytes(b"libC")
    with TraceReader(tmp_path / "t") as reader, pytest.raises(
            TraceError, match=f"trace {stored} is corrupt"):
        reader.verify()


def test_add_file_refuses_what_is_not_a_regular_file(tmp_path):
    with TraceWriter(tmp_path / "t", METADATA) as writer:
        with pytest.raises(ValueError, match="not a regular file"):
            writer.add_file("/dev/zero")
        with pytest.raises(FileNotFoundError):
            writer.add_file(tmp_path / "gone.so")


def test_size_bytes_counts_every_file_of_the_trace(tmp_path):
    with TraceWriter(tmp_path / "t", METADATA) as writer:
        writer.add_bytes(b"x" * 5000)
        writer.append(every_kind_of_event(5))
    with TraceReader(tmp_path / "t") as reader:
        expected = sum(p.stat().st_size for p in (tmp_path / "t").rglob("*") if p.is_file())
        assert reader.size_bytes() == expected > 5000


# -- what is and is not a trace ---------------------------------------------------------

def test_a_directory_without_metadata_is_not_a_trace(tmp_path):
    with pytest.raises(TraceError) as e:
        TraceReader(tmp_path)
    assert str(e.value) == f"{tmp_path} is not a retrograde trace (no metadata.json)"
    with pytest.raises(TraceError, match="no such directory"):
        TraceReader(tmp_path / "nowhere")


def test_a_newer_format_is_refused(tmp_path):
    write_trace(tmp_path / "t", [every_kind_of_event(0)])
    meta_path = tmp_path / "t" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(TraceError) as e:
        TraceReader(tmp_path / "t")
    assert str(e.value) == (f"trace {tmp_path}/t was written by a newer retrograde "
                            f"(format {FORMAT_VERSION + 1}; this one reads up to "
                            f"{FORMAT_VERSION})")


def test_garbled_metadata_is_a_one_line_error(tmp_path):
    write_trace(tmp_path / "t", [])
    (tmp_path / "t" / "metadata.json").write_text('{"format_version": 1, "argv": [')
    with pytest.raises(TraceError, match=r"metadata.json is corrupt \(") as e:
        TraceReader(tmp_path / "t")
    assert "\n" not in str(e.value)


def test_the_writer_does_not_record_over_something(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes").write_text("mine")
    with pytest.raises(TraceError, match="exists and is not an empty directory"):
        TraceWriter(tmp_path / "old", METADATA)
    (tmp_path / "empty").mkdir()
    TraceWriter(tmp_path / "empty", METADATA).close()
    with pytest.raises(TypeError):
        TraceWriter(tmp_path / "b", {"cpuid": b"raw"})


def test_trace_directories_lists_what_may_be_a_trace_under_a_root(tmp_path):
    write_trace(tmp_path / "ls-1", [])
    write_trace(tmp_path / "cat-0", [], close=False)
    (tmp_path / "lost-2").mkdir()  # its metadata deleted: `ls` shows it broken
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "latest-trace").symlink_to(tmp_path / "ls-1")
    assert trace_directories(tmp_path) == [tmp_path / "cat-0", tmp_path / "lost-2",
                                           tmp_path / "ls-1"]
    assert trace_directories(tmp_path / "nowhere") == []


# -- crash tolerance ------------------------------------------------------------------

def looped_event(n: int) -> SyscallEvent:
    """Event n of the recorder in test_sigkill_...: big and incompressible, so that
    frames take a while to write and the kill often lands inside one."""
    data = random.Random(n).randbytes(2000 + n % 3000)
    return SyscallEvent(task=7, nr=0, args=(3, 0x1000, len(data)), result=len(data),
                        writes=((0x1000, data),))


RECORDER = """
import random
import sys
from pathlib import Path
from retrograde.trace.events import SyscallEvent
from retrograde.trace.format import TraceWriter
{source}
writer = TraceWriter(Path(sys.argv[1]), {{"argv": ["loop"]}}, chunk_events=50)
n = 0
while True:
    writer.append(looped_event(n))
    n += 1
    if n == 50:
        print("first chunk written", flush=True)
"""


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_at_a_random_moment_leaves_every_complete_chunk_readable(tmp_path, seed):
    script = RECORDER.format(source=inspect.getsource(looped_event))
    trace = tmp_path / "t"
    recorder = subprocess.Popen([sys.executable, "-c", script, str(trace)],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert recorder.stdout is not None
        assert recorder.stdout.readline() == "first chunk written\n"
        time.sleep(random.Random(seed).uniform(0, 0.3))
    finally:
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=10)
    assert recorder.returncode == -signal.SIGKILL
    frames = chunk_offsets(trace / "events")
    with TraceReader(trace) as reader:
        assert not reader.complete
        assert len(reader) >= 50 and len(reader) % 50 == 0
        # Every whole frame is listed; a torn one at the end is not.
        whole = [f for f in frames if f[1] <= (trace / "events").stat().st_size]
        assert len(reader) == 50 * len(whole)
        for n, event in enumerate(reader):
            assert event == looped_event(n)


def test_a_trace_cut_inside_its_last_chunk_opens_incomplete_at_every_cut(tmp_path):
    events = [every_kind_of_event(n) for n in range(30)]
    trace = write_trace(tmp_path / "t", events, close=False, chunk_events=10)
    events_file = trace / "events"
    whole = events_file.read_bytes()
    (last_start, last_end) = chunk_offsets(events_file)[-1]
    assert last_end == len(whole)
    for cut in range(last_start + 1, last_end):
        events_file.write_bytes(whole[:cut])
        with TraceReader(trace) as reader:
            assert not reader.complete
            assert list(reader) == events[:20], f"cut at byte {cut}"
    for cut in range(17):  # even inside the file header: a trace with no events
        events_file.write_bytes(whole[:cut])
        assert read_all(trace) == []


def test_a_closed_trace_that_was_cut_is_an_error_naming_the_chunk(tmp_path):
    trace = write_trace(tmp_path / "t", [every_kind_of_event(n) for n in range(30)],
                        chunk_events=10)
    events_file = trace / "events"
    start, end = chunk_offsets(events_file)[2]
    os.truncate(events_file, end - 5)
    with pytest.raises(TraceError) as e:
        TraceReader(trace)
    assert str(e.value) == (f"trace {events_file}: chunk 2 (events 20-29) is truncated "
                            f"(the file ends at byte {end - 5})")
    os.truncate(events_file, start)  # cut exactly between chunks: the count tells
    with pytest.raises(TraceError) as e:
        TraceReader(trace)
    assert str(e.value) == (f"trace {events_file}: holds 20 events but the recording ended "
                            "with 30 (events are missing)")


# -- corruption -----------------------------------------------------------------------

def test_a_flipped_bit_in_a_chunk_names_the_chunk_and_its_events(tmp_path):
    events = [every_kind_of_event(n) for n in range(2500)]
    trace = write_trace(tmp_path / "t", events)  # 512 events a chunk
    events_file = trace / "events"
    start, end = chunk_offsets(events_file)[3]
    flip_bit(events_file, (start + 40 + end) // 2)
    expected = f"trace {events_file}: chunk 3 (events 1536-2047) is corrupt (checksum mismatch)"
    with TraceReader(trace) as reader:
        assert len(reader) == 2500
        assert reader[1535] == events[1535] and reader[2048] == events[2048]
        with pytest.raises(TraceError) as e:
            reader[1600]
        assert str(e.value) == expected
        with pytest.raises(TraceError) as e:
            list(reader)
        assert str(e.value) == expected


def test_a_flipped_bit_in_a_chunk_header_is_found_on_opening(tmp_path):
    trace = write_trace(tmp_path / "t", [every_kind_of_event(n) for n in range(2500)])
    events_file = trace / "events"
    start, _ = chunk_offsets(events_file)[3]
    flip_bit(events_file, start + 10)  # in the event count
    (trace / "events.index").unlink()  # else the index's copy is used until chunk 3 is read
    with pytest.raises(TraceError) as e:
        TraceReader(trace)
    assert str(e.value) == (f"trace {events_file}: chunk 3 (events from 1536, at byte "
                            f"{start}) is corrupt (bad header)")


@pytest.mark.parametrize("with_index", [True, False])
def test_any_flipped_bit_in_the_events_file_is_a_trace_error(tmp_path, with_index):
    events = [every_kind_of_event(n) for n in range(12)]
    trace = write_trace(tmp_path / "t", events, chunk_events=5)
    if not with_index:
        (trace / "events.index").unlink()
    events_file = trace / "events"
    whole = events_file.read_bytes()
    for offset in range(len(whole)):
        damaged = bytearray(whole)
        damaged[offset] ^= 1 << offset % 8
        events_file.write_bytes(bytes(damaged))
        with pytest.raises(TraceError) as e:
            read_all(trace)
        assert str(e.value).startswith(f"trace {events_file}"), f"byte {offset}"


def test_a_damaged_missing_or_lagging_index_only_costs_a_scan(tmp_path):
    events = [every_kind_of_event(n) for n in range(40)]
    trace = write_trace(tmp_path / "t", events, chunk_events=5)
    index = trace / "events.index"
    whole = index.read_bytes()
    assert len(whole) == 16 + 8 * 48  # a header and an entry per chunk
    for offset in range(len(whole)):
        damaged = bytearray(whole)
        damaged[offset] ^= 1 << offset % 8
        index.write_bytes(bytes(damaged))
        assert read_all(trace) == events, f"index byte {offset}"
    for cut in (0, 16, 16 + 3 * 48, 16 + 3 * 48 + 20, len(whole) - 1):  # recorder killed
        index.write_bytes(whole[:cut])
        assert read_all(trace) == events
    index.unlink()
    assert read_all(trace) == events


def test_an_index_from_another_trace_is_not_believed(tmp_path):
    events = [every_kind_of_event(n) for n in range(40)]
    write_trace(tmp_path / "a", events, chunk_events=5)
    write_trace(tmp_path / "b", events[::-1], chunk_events=7)
    shutil.copy(tmp_path / "b" / "events.index", tmp_path / "a" / "events.index")
    assert read_all(tmp_path / "a") == events


# -- hypothesis: whatever is written is what is read ----------------------------------

u64 = st.integers(0, 2**64 - 1)
register = st.integers(-(2**63), 2**64 - 1)  # a raw register or its signed reading
mappings = st.builds(MappingRecord, start=u64, end=u64, perms=st.sampled_from(["r-xp", "rw-p"]),
                     offset=u64, name=st.text(max_size=20),
                     file_hash=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
                     contents=st.none() | st.binary(max_size=64))
events_strategy = st.one_of(
    st.builds(SyscallEvent, task=st.integers(1, 2**22), nr=st.integers(0, 500),
              args=st.lists(register, max_size=6).map(tuple), result=register,
              writes=st.lists(st.tuples(u64, st.binary(max_size=100)), max_size=3).map(tuple),
              mmap_id=st.none() | st.integers(0, 2**32), mapping=st.none() | mappings),
    st.builds(SignalEvent, task=st.integers(1, 2**22), signo=st.integers(1, 64),
              siginfo=st.binary(max_size=128),
              where=st.sampled_from(["sync", "boundary", "precise"]),
              regs=st.none() | st.binary(max_size=216), xstate=st.none() | st.binary(max_size=64),
              digest=st.none() | st.binary(min_size=32, max_size=32)),
    st.builds(RdtscEvent, task=st.integers(1, 2**22), pc=u64, value=u64,
              aux=st.none() | st.integers(0, 2**32 - 1)),
    st.builds(ExecEvent, task=st.integers(1, 2**22), path=st.text(max_size=30),
              argv=st.lists(st.text(max_size=10), max_size=4).map(tuple),
              mappings=st.lists(mappings, max_size=4), regs=st.binary(max_size=216),
              xstate=st.binary(max_size=64), retrograde_page=u64),
    st.builds(ExitEvent, task=st.integers(1, 2**22), status=st.none() | st.integers(0, 255),
              signo=st.none() | st.integers(1, 64)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(events_strategy, max_size=40), chunk_events=st.integers(1, 12),
       chunk_bytes=st.integers(1, 4000), close=st.booleans())
def test_any_events_written_are_read_back_equal(events, chunk_events, chunk_bytes, close):
    with tempfile.TemporaryDirectory() as root:
        trace = write_trace(Path(root) / "t", events, close=close, chunk_events=chunk_events,
                            chunk_bytes=chunk_bytes)
        with TraceReader(trace) as reader:
            assert reader.complete == close
            assert len(reader) == len(events)
            assert list(reader) == events
            assert [reader[n] for n in reversed(range(len(events)))] == events[::-1]


# -- dump -----------------------------------------------------------------------------

@pytest.fixture
def syscall_names(monkeypatch):
    # The syscall table is tracee/'s; these tests are about the layout of a line.
    names = {0: "read", 1: "write", 9: "mmap", 10: "mprotect", 11: "munmap", 257: "openat",
             231: "exit_group", 21: "access", 262: "newfstatat"}
    monkeypatch.setattr(dump, "_syscall_name", lambda nr: names.get(nr, f"syscall_{nr}"))


def test_dump_shows_a_syscall_its_result_and_what_it_wrote(syscall_names):
    assert format_event(14, every_kind_of_event(14)) == (
        '        14  [4244] syscall  read(3, "\\16\\16\\16\\16\\16\\16\\16\\16\\16\\16\\16\\16\\16\\16", '
        '832) = 14  wrote 14 bytes at 0x7ffc3e10')
    assert format_event(16, every_kind_of_event(2)) == (
        "        16  [4244] syscall  openat(AT_FDCWD, 0x4000, O_RDONLY) = -ENOENT")
    restart = SyscallEvent(task=1, nr=0, args=(0,), result=2**64 - 512)
    assert format_event(3, restart).endswith("read(0, NULL, 0) = -ERESTARTSYS")


def test_dump_decodes_arguments_as_strace_does(syscall_names):
    def line(nr, *args, result=0, writes=()):
        return format_event(0, SyscallEvent(task=1, nr=nr, args=args, result=result,
                                            writes=writes)).split("syscall  ", 1)[1]

    minus_one = 2**64 - 1
    assert line(9, 0, 8192, 3, 0x22, 0xFFFFFFFF, 0, result=0x7F0000) == (
        "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000")
    assert line(9, 0x7F0000, 4096, 0, 0x100011, 3, 0x3000, result=0x7F0000) == (
        "mmap(0x7f0000, 4096, PROT_NONE, MAP_SHARED|MAP_FIXED|MAP_FIXED_NOREPLACE, 3, 0x3000)"
        " = 0x7f0000")
    assert line(257, 2**64 - 100, 0x1000, 0o2101 | 0o2000000, 0o644, result=3).startswith(
        "openat(AT_FDCWD, 0x1000, O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC, 0644) = 3")
    assert line(257, 5, 0x1000, 0o200000, result=minus_one - 1) == (
        "openat(5, 0x1000, O_RDONLY|O_DIRECTORY) = -ENOENT")
    assert line(262, 3, 0x1000, 0x2000, 0x1100, result=0) == (
        "newfstatat(3, 0x1000, 0x2000, AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH) = 0")
    assert line(10, 0x7F0000, 4096, 0x1000005) == (
        "mprotect(0x7f0000, 4096, PROT_READ|PROT_EXEC|PROT_GROWSDOWN) = 0")
    assert line(21, 0x1000, 0) == "access(0x1000, F_OK) = 0"
    assert line(231, 2**32 - 1) == "exit_group(-1) = 0"
    assert line(1, 1, 0x5000, 3, result=minus_one - 8) == "write(1, 0x5000, 3) = -EBADF"
    assert line(0, 0, 0x5000, 100, result=5, writes=((0x5000, b'a"\\\n\x00'),)) == (
        'read(0, "a\\"\\\\\\n\\0", 100) = 5  wrote 5 bytes at 0x5000')
    assert line(0, 0, 0x5000, 100, result=2, writes=((0x5000, b"\x01" + b"2"),)).startswith(
        'read(0, "\\0012", 100) = 2')  # \1 then "2" would read as \12


def test_dump_reads_strings_from_never_written_file_mappings(syscall_names, tmp_path):
    rodata = b"\0" * 0x10 + b"/etc/ld.so.cache\0hello, world\n" + b"\0" * 4000
    with TraceWriter(tmp_path / "t", METADATA) as writer:
        digest = writer.add_bytes(rodata)
        mapped = MappingRecord(0x400000, 0x401000, "r--p", 0, "/lib/ld.so", file_hash=digest)
        data = MappingRecord(0x500000, 0x501000, "rw-p", 0, "/lib/ld.so", file_hash=digest)
        events = [
            ExecEvent(task=1, path="/bin/p", argv=("p",), mappings=[mapped, data]),
            SyscallEvent(task=1, nr=257, args=(2**64 - 100, 0x400010, 0), result=3),
            SyscallEvent(task=1, nr=257, args=(2**64 - 100, 0x500010, 0), result=3),
            SyscallEvent(task=1, nr=1, args=(1, 0x400021, 13), result=13),
            SyscallEvent(task=1, nr=10, args=(0x400000, 4096, 3), result=0),
            SyscallEvent(task=1, nr=257, args=(2**64 - 100, 0x400010, 0), result=3),
        ]
        for event in events:
            writer.append(event)
    with TraceReader(tmp_path / "t") as reader:
        memory = dump.RecordedMemory(reader.read_file)
        lines = []
        for n, event in enumerate(reader):
            lines.append(format_event(n, event, memory=memory).split("syscall  ", 1)[-1])
            memory.follow(event)
    assert lines[1] == 'openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY) = 3'
    # A writable mapping may have been written since it was mapped: not shown.
    assert lines[2] == "openat(AT_FDCWD, 0x500010, O_RDONLY) = 3"
    assert lines[3] == 'write(1, "hello, world\\n", 13) = 13'
    # Made writable by mprotect: its bytes are no longer known.
    assert lines[5] == "openat(AT_FDCWD, 0x400010, O_RDONLY) = 3"


def test_dump_shows_an_mmap_with_its_id_and_mapping(syscall_names):
    assert format_event(1, every_kind_of_event(1)) == (
        "         1  [4243] syscall  mmap(NULL, 8192, PROT_READ|PROT_EXEC, MAP_PRIVATE, 3, 0x1000)"
        " = 0x7f3a2000  mmap#0 7f3a2000-7f3a4000 r-xp /usr/lib/libc.so.6 @0x1000"
        " (file abababababab)")


def test_dump_shows_signals_rdtsc_exec_and_exit():
    assert format_event(3, every_kind_of_event(3)) == (
        "         3  [4242] signal   SIGALRM inside user code (precise)")
    assert format_event(4, SignalEvent(task=9, signo=35, where="boundary")) == (
        "         4  [9] signal   SIGRTMIN+1 at the syscall boundary")
    assert format_event(4, every_kind_of_event(4)) == (
        "         4  [4243] rdtsc    rdtsc at 0x401136 = 0x8000000000000004")
    assert format_event(11, every_kind_of_event(11)) == (
        "        11  [4244] rdtsc    rdtscp at 0x401136 = 0x800000000000000b aux 0x3")
    assert format_event(5, every_kind_of_event(5)) == (
        "         5  [4244] exec     /usr/bin/cat ['cat', 'notes.txt']  1 mappings,"
        " retrograde page 0x70000000")
    assert format_event(6, every_kind_of_event(6)) == "         6  [4242] exit     killed by SIGKILL"
    assert format_event(13, every_kind_of_event(13)) == "        13  [4243] exit     status 13"


def test_dump_verbose_lists_the_mappings_of_an_exec():
    lines = format_event(5, every_kind_of_event(5), verbose=True).splitlines()
    assert len(lines) == 2
    assert lines[1].strip() == "7ffc0000-7ffe1000 rw-p [stack] (3000 bytes recorded)"


def test_dump_names_a_syscall_the_table_does_not_know(monkeypatch):
    monkeypatch.setattr(dump, "_syscall_table", lambda: None)
    assert "syscall_0(3, " in format_event(0, every_kind_of_event(0))


@pytest.mark.parametrize("text, expected", [
    ("10", (10, 11)), ("10-20", (10, 21)), ("10-", (10, None)), ("-20", (-20, None)),
    (" 7 ", (7, 8)), ("0-0", (0, 1)), ("-0", (0, 0)),
])
def test_parse_range(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["", "-", "x", "20-10", "1-2-3", "-5-", "1.5"])
def test_parse_range_refuses_what_is_not_a_range(text):
    with pytest.raises(ValueError, match="^(expected N, N-M, N- or -N|it ends before it starts)"):
        parse_range(text)


def test_a_parsed_range_selects_those_events(tmp_path):
    events = [every_kind_of_event(n) for n in range(30)]
    with TraceReader(write_trace(tmp_path / "t", events, chunk_events=8)) as reader:
        assert list(reader.events(*parse_range("12"))) == events[12:13]
        assert list(reader.events(*parse_range("5-20"))) == events[5:21]
        assert list(reader.events(*parse_range("25-"))) == events[25:]
        assert list(reader.events(*parse_range("-3"))) == events[27:]
        assert list(reader.events(*parse_range("-300"))) == events
