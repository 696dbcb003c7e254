"""The on-disk trace: a directory that the recorder appends to and the replayer reads.

Layout (format 3)::

    TRACE/
      metadata.json     one JSON object: what ran, where, on what machine (the
                        recorder's keys), "format_version" and "start_time"; at
                        close, how it ended (close()'s keywords) and "complete":
                        true, "end_time", "event_count", "chunk_count", and
                        "files", the size of every copy in files/ by digest.
                        Without "complete" the recorder was killed or crashed.
                        "crc32" covers the rest (its canonical JSON).
      events            16-byte file header, then chunk frames, append-only.
      events.index      16-byte file header, then one 48-byte entry per chunk:
                        its offset in `events` and a copy of its header. A hint.
      files/<sha256>    content-addressed copies of mapped files, uncompressed so
                        that the replayer can mmap them; read-only, written once.

The file headers are a magic (b"RGEVENTS", b"RGINDEX\\0"), the format version
(u32) and four zero bytes. A chunk frame is a 40-byte header and a payload, a
zstd frame holding one msgpack array of the chunk's events (Event.to_wire())::

    b"RGCK" | first event u64 | event count u32 | raw size u64 | payload size u64
            | crc32(payload) u32 | crc32(the 36 header bytes before it) u32

(little-endian). Every byte of `events` is covered by a magic or a checksum, so a
bit flip is an error that names the chunk, never a wrong event. Format 1 is
format 2 without "crc32" and "files" in the metadata; format 3 is format 2 with
the events of several tasks (CloneEvent, SyscallEntryEvent, PreemptEvent).
All three are read.

Why a recorder killed by SIGKILL leaves a trace that opens: a frame is written
and flushed in one piece once its chunk is complete, so `events` is always whole
frames followed by at most a prefix of one more, which the reader ignores (a
truncated tail is an error only when the metadata says the trace was closed, and
then its "event_count" must match too). metadata.json is replaced by
rename, at start and at close, so it is never torn. `events.index` is written
after its chunk, so it can lag behind `events` (or be missing, or belong to
another trace): the reader takes it only when it agrees with itself and with the
last chunk header it names, scans the rest, and rescans everything otherwise.
Files are copied to a temporary name and renamed, so files/<hash> is whole.

What the reader trusts: only regular files of the trace's own. Everything inside
the directory is opened relative to it without following symbolic links (a link
in files/ could otherwise serve a host file as the recorded one), and a FIFO or
device is refused before it is read. A copy in files/ is checked against its
recorded size and its digest when first used; the replayer maps the checked
file itself (file_fd(), file_proc_path()), never a path looked up again.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import json
import os
import stat
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import msgpack
import zstandard

from retrograde.trace.events import Event

FORMAT_VERSION = 3  # 3: events of several tasks (clone, syscall-entry, preempt)
OLDEST_FORMAT_VERSION = 1  # without "crc32" and "files" in the metadata

METADATA_NAME = "metadata.json"
EVENTS_NAME = "events"
INDEX_NAME = "events.index"
FILES_NAME = "files"

_FILE_HEADER = struct.Struct("<8sII")  # magic, format version, reserved (zero)
_EVENTS_MAGIC = b"RGEVENTS"
_INDEX_MAGIC = b"RGINDEX\0"
_CHUNK_HEADER = struct.Struct("<4sQIQQII")
_CHUNK_MAGIC = b"RGCK"
_INDEX_ENTRY = struct.Struct("<Q")  # the chunk's offset, followed by its header
_INDEX_ENTRY_SIZE = _INDEX_ENTRY.size + _CHUNK_HEADER.size

DEFAULT_CHUNK_EVENTS = 512
DEFAULT_CHUNK_BYTES = 1 << 20  # uncompressed
_COPY_BLOCK = 1 << 20
# Paths are str made by os.fsdecode(): a name that is not UTF-8 holds lone
# surrogates, which msgpack can carry only with the same error handler.
_UNICODE_ERRORS = "surrogateescape"
_DECODED_CHUNKS_KEPT = 4
# Metadata the writer sets at close; given to the constructor (a copy of another
# trace's metadata), they would describe a recording that has not ended yet.
_END_KEYS = ("complete", "end_time", "event_count", "chunk_count", "files", "crc32")
# Bigger than any metadata the recorder writes (a few KiB with the CPUID leaves):
# a metadata.json past it is not ours, and is not read whole.
_METADATA_LIMIT = 1 << 20


class TraceError(Exception):
    """A trace that cannot be written or read as it should; str() is one line for the user."""


@dataclass(frozen=True, slots=True)
class _Chunk:
    offset: int  # of the chunk header in the events file
    header: bytes
    first: int
    count: int
    raw_size: int
    payload_size: int
    payload_crc: int

    @property
    def end(self) -> int:
        return self.offset + _CHUNK_HEADER.size + self.payload_size

    def describe(self, number: int) -> str:
        if self.count == 1:
            return f"chunk {number} (event {self.first})"
        return f"chunk {number} (events {self.first}-{self.first + self.count - 1})"


def _pack_chunk_header(first: int, count: int, raw_size: int, payload: bytes) -> bytes:
    body = _CHUNK_HEADER.pack(_CHUNK_MAGIC, first, count, raw_size, len(payload),
                              zlib.crc32(payload), 0)[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def _parse_chunk_header(offset: int, header: bytes) -> _Chunk | None:
    """The chunk a header describes, or None if the header is not intact."""
    magic, first, count, raw_size, payload_size, payload_crc, header_crc = (
        _CHUNK_HEADER.unpack(header))
    if magic != _CHUNK_MAGIC or header_crc != zlib.crc32(header[:-4]):
        return None
    return _Chunk(offset, header, first, count, raw_size, payload_size, payload_crc)


def _file_header(magic: bytes) -> bytes:
    return _FILE_HEADER.pack(magic, FORMAT_VERSION, 0)


def _metadata_checksum(metadata: dict[str, Any]) -> int:
    """crc32 of the canonical JSON of everything but "crc32": what the values are,
    whatever the spacing of the file."""
    rest = {key: value for key, value in metadata.items() if key != "crc32"}
    return zlib.crc32(json.dumps(rest, sort_keys=True, ensure_ascii=True,
                                 separators=(",", ":")).encode())


def _write_metadata(path: Path, metadata: dict[str, Any]) -> None:
    # ensure_ascii: environment strings may carry lone surrogates (os.fsdecode's
    # surrogateescape), which UTF-8 cannot encode but \u escapes can.
    value = {**metadata, "crc32": _metadata_checksum(metadata)}
    text = json.dumps(value, indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


# -- the digests of file copies -------------------------------------------------------------
#
# A file without holes is named by the sha256 of its contents. A file with holes
# (or one extended by a hole) is named by the sha256 of its sparse form: a tag, the
# size, then each aligned block of _SPARSE_BLOCK bytes that holds a non-zero byte,
# after its index. Holes are known zeros and never read, so naming a 100 GiB sparse
# file costs what reading its data costs; and the name does not depend on where the
# file system happens to keep holes (a block of written zeros counts as a hole), so
# the copy, whose holes may fall elsewhere, hashes to the same name.
_SPARSE_BLOCK = 1 << 20
_SPARSE_TAG = b"retrograde sparse file\0"
_ZERO_BLOCK = bytes(_SPARSE_BLOCK)


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The (start, end) ranges of ``fd`` that are not holes (lseek(2) SEEK_DATA/SEEK_HOLE;
    a file system without them reports the whole file as data)."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole is left
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if start >= end:
            return
        yield start, end
        offset = end


def _has_holes(fd: int, size: int) -> bool:
    return size > 0 and next(data_ranges(fd, size), None) != (0, size)


def _sparse_blocks(fd: int, size: int) -> Iterator[tuple[int, bytes]]:
    """(index, bytes) of each aligned block of ``fd`` that holds a non-zero byte."""
    last = -1
    for start, end in data_ranges(fd, size):
        for index in range(max(start // _SPARSE_BLOCK, last + 1), (end - 1) // _SPARSE_BLOCK + 1):
            last = index
            block = os.pread(fd, _SPARSE_BLOCK, index * _SPARSE_BLOCK)
            if block != _ZERO_BLOCK[:len(block)]:
                yield index, block


def _sparse_digest(size: int, blocks: Iterator[tuple[int, bytes]]) -> str:
    sha = hashlib.sha256(_SPARSE_TAG + size.to_bytes(8, "little"))
    for index, block in blocks:
        sha.update(index.to_bytes(8, "little"))
        sha.update(block)
    return sha.hexdigest()


def _copy_contents(src: int, dst: int, size: int, length: int) -> str:
    """Copy ``size`` bytes of ``src`` into ``dst``, extended to ``length``; the copy's digest."""
    if length == size and not _has_holes(src, size):
        sha = hashlib.sha256()
        offset = 0
        while block := os.pread(src, _COPY_BLOCK, offset):
            sha.update(block)
            os.write(dst, block)
            offset += len(block)
        return sha.hexdigest()

    def copied() -> Iterator[tuple[int, bytes]]:
        for index, block in _sparse_blocks(src, size):
            os.pwrite(dst, block, index * _SPARSE_BLOCK)
            # The copy's block, which the extension may have made longer with zeros.
            yield index, block.ljust(min(_SPARSE_BLOCK, length - index * _SPARSE_BLOCK), b"\0")

    digest = _sparse_digest(length, copied())
    os.ftruncate(dst, length)  # the holes up to the end
    return digest


def _file_digests(fd: int) -> tuple[str, ...]:
    """The names a trace's copy may have: its sparse digest, and for a copy without
    holes also the sha256 of its contents (see above)."""
    size = os.fstat(fd).st_size
    if _has_holes(fd, size):
        return (_sparse_digest(size, _sparse_blocks(fd, size)),)
    sha = hashlib.sha256()
    sparse = hashlib.sha256(_SPARSE_TAG + size.to_bytes(8, "little"))
    for index, offset in enumerate(range(0, size, _SPARSE_BLOCK)):
        block = os.pread(fd, _SPARSE_BLOCK, offset)
        sha.update(block)
        if block != _ZERO_BLOCK[:len(block)]:
            sparse.update(index.to_bytes(8, "little"))
            sparse.update(block)
    return (sha.hexdigest(), sparse.hexdigest())


class TraceWriter:
    """Appends events to a new trace directory while a program is being recorded.

    Events are msgpack-packed into an in-memory chunk as they come (append is
    cheap); the chunk is compressed and written as one frame when it holds
    `chunk_events` events or `chunk_bytes` uncompressed bytes, or on flush().
    Everything appended before the last flush() survives the recorder being
    killed. Not thread-safe: call flush() from the thread that appends (e.g. when
    the recorder's wait for the tracee times out).
    """

    def __init__(self, directory: Path, metadata: dict[str, Any], *,
                 chunk_events: int = DEFAULT_CHUNK_EVENTS,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 compression_level: int = 3) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and (not self.directory.is_dir()
                                        or any(self.directory.iterdir())):
            raise TraceError(f"cannot record into {self.directory}: it exists and is not an "
                             "empty directory")
        self._metadata: dict[str, Any] = {
            "start_time": time.time(), **metadata,
            "format": "retrograde trace", "format_version": FORMAT_VERSION}
        for key in _END_KEYS:
            self._metadata.pop(key, None)
        json.dumps(self._metadata)  # not JSON (bytes, sets)? fail now, not at close
        self._chunk_events = chunk_events
        self._chunk_bytes = chunk_bytes
        self._compressor = zstandard.ZstdCompressor(level=compression_level,
                                                    write_checksum=True)
        self._packer = msgpack.Packer(use_bin_type=True, unicode_errors=_UNICODE_ERRORS)
        self._pending = bytearray()  # msgpack of the events not yet in a frame
        self._pending_count = 0
        self._event_count = 0
        self._chunk_count = 0
        self._files = self.directory / FILES_NAME
        self._known_files: set[str] = set()
        self._digest_by_inode: dict[tuple[int, ...], str] = {}
        self._closed = False
        self._write_error: TraceError | None = None
        try:
            self._files.mkdir(parents=True, exist_ok=True)
            # Owned by the writer until close(), not a with-block.
            self._events = open(self.directory / EVENTS_NAME, "xb")  # noqa: SIM115
            self._index = open(self.directory / INDEX_NAME, "xb")  # noqa: SIM115
            self._events.write(_file_header(_EVENTS_MAGIC))
            self._events.flush()
            self._index.write(_file_header(_INDEX_MAGIC))
            self._index.flush()
            self._offset = _FILE_HEADER.size
            # Last: once metadata.json exists, the directory is an (empty) trace.
            _write_metadata(self.directory / METADATA_NAME, self._metadata)
        except OSError as e:
            raise TraceError(f"cannot create trace {self.directory}: {e.strerror or e}") from e

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and not self._closed:
            self.close(error=f"{type(exc).__name__}: {exc}")
        else:
            self.close()

    @property
    def event_count(self) -> int:
        return self._event_count

    def append(self, event: Event) -> int:
        """Add an event; return its number (its position in the trace)."""
        if self._closed:
            raise ValueError(f"trace {self.directory} is closed")
        if self._write_error is not None:
            raise self._write_error
        # pack() before touching the chunk: an event msgpack cannot encode leaves it as it was.
        self._pending += self._packer.pack(event.to_wire())
        self._pending_count += 1
        number = self._event_count
        self._event_count += 1
        if self._pending_count >= self._chunk_events or len(self._pending) >= self._chunk_bytes:
            self._write_chunk()
        return number

    def flush(self) -> None:
        """Write the events appended so far as a chunk (nothing if there are none)."""
        if self._write_error is not None:
            raise self._write_error
        if self._pending_count:
            self._write_chunk()

    def _write_chunk(self) -> None:
        # One msgpack array per chunk, so that the reader decodes it in one call.
        raw = self._packer.pack_array_header(self._pending_count) + self._pending
        payload = self._compressor.compress(raw)
        first = self._event_count - self._pending_count
        header = _pack_chunk_header(first, self._pending_count, len(raw), payload)
        try:
            self._events.write(header)
            self._events.write(payload)
            self._events.flush()
            # After the chunk, so that the index never names a chunk not written yet.
            self._index.write(_INDEX_ENTRY.pack(self._offset) + header)
            self._index.flush()
        except OSError as e:
            # Part of a frame may be on disk: anything after it would be unreadable.
            self._write_error = TraceError(f"cannot write trace {self.directory / EVENTS_NAME}: "
                                           f"{e.strerror or e}")
            raise self._write_error from e
        self._offset += len(header) + len(payload)
        self._chunk_count += 1
        self._pending = bytearray()
        self._pending_count = 0

    def add_file(self, path: str | Path, size: int | None = None, *, reuse: bool = True) -> str:
        """Copy a regular file into files/ (once per content); return its digest (hex).

        With ``size`` larger than the file, the copy is extended to ``size`` bytes by
        a hole: the image of a mapping that reaches past the end of its file (a
        shared mapping the file may grow under). A file with holes is copied as one:
        only its data ranges are read and written (SEEK_DATA/SEEK_HOLE), so a sparse
        file of 100 GiB costs what its data costs. With ``reuse`` false the file is
        read again even if its inode, size and times say it was copied already (a
        store through a shared mapping need not change them). OSError if it cannot
        be read; ValueError if it is not a regular file.
        """
        with open(path, "rb") as src:
            st = os.fstat(src.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"cannot copy {path} into the trace: not a regular file")
            length = max(st.st_size, size or 0)
            # The same library is mapped by every process of a recording: hash it once.
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, length)
            digest = self._digest_by_inode.get(key) if reuse else None
            if digest is not None:
                return digest
            tmp = self._temporary_file_path()
            with open(tmp, "wb") as dst:
                digest = _copy_contents(src.fileno(), dst.fileno(), st.st_size, length)
        self._store_file(tmp, digest)
        self._digest_by_inode[key] = digest
        return digest

    def add_bytes(self, data: bytes) -> str:
        """Store bytes in files/ (once per content); return their sha256 (hex)."""
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self._known_files and not (self._files / digest).exists():
            tmp = self._temporary_file_path()
            tmp.write_bytes(data)
            self._store_file(tmp, digest)
        self._known_files.add(digest)
        return digest

    def _temporary_file_path(self) -> Path:
        return self._files / f".tmp-{os.getpid()}"

    def _store_file(self, tmp: Path, digest: str) -> None:
        final = self._files / digest
        if digest in self._known_files or final.exists():
            tmp.unlink()
        else:
            tmp.chmod(0o444)  # content-addressed: changing it would lie about its name
            os.replace(tmp, final)
        self._known_files.add(digest)

    def close(self, **final: Any) -> None:
        """Flush, then add how the recording ended (exit_status=, exit_signal=,
        error=, ...) to metadata.json and mark the trace complete. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._write_error is None:
                self.flush()
        finally:
            for f in (self._events, self._index):
                with contextlib.suppress(OSError):  # only after a write failed, reported then
                    f.close()
        if self._write_error is not None:
            return  # a torn frame may end the events: leave the trace incomplete, readable
        self._metadata.update(final)
        self._metadata.update(complete=True, end_time=time.time(),
                              event_count=self._event_count, chunk_count=self._chunk_count)
        try:
            # Sizes let a reader find a truncated or missing copy without hashing it.
            self._metadata["files"] = {digest: os.stat(self._files / digest).st_size
                                       for digest in sorted(self._known_files)}
        except OSError as e:
            raise TraceError(f"cannot read back trace {self._files}: {e.strerror or e}") from e
        try:
            _write_metadata(self.directory / METADATA_NAME, self._metadata)
        except OSError as e:
            raise TraceError(f"cannot write trace {self.directory / METADATA_NAME}: "
                             f"{e.strerror or e}") from e


_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a symbolic link"}


def _open_inside(dir_fd: int, name: str, shown: Path, *, directory: bool = False) -> int:
    """Open `name` in the directory `dir_fd` for reading, only if it is a regular file
    (or a directory) of its own: never through a symbolic link, never a FIFO or device.

    The O_PATH open touches nothing (opening a FIFO would block, a device could act);
    the check is on the inode it pins, and the reopen through /proc/self/fd is of
    that same inode, so nothing can be swapped in between.
    """
    try:
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise  # the caller says what a missing file means
    except OSError as e:
        raise TraceError(f"cannot open trace {shown}: {e.strerror or e}") from e
    try:
        mode = os.fstat(handle).st_mode
        wanted = stat.S_IFDIR if directory else stat.S_IFREG
        if stat.S_IFMT(mode) != wanted:
            raise _not_its_own(shown, mode, "a directory" if directory else "a regular file")
        flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
        try:
            return os.open(f"/proc/self/fd/{handle}", flags)
        except OSError as e:
            raise TraceError(f"cannot open trace {shown}: {e.strerror or e}") from e
    finally:
        os.close(handle)


def _not_its_own(shown: Path, mode: int, wanted: str = "a regular file") -> TraceError:
    found = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    if stat.S_ISLNK(mode):
        return TraceError(f"trace {shown} is a symbolic link: a trace is read only from "
                          "files of its own (retrograde pack replaces links by copies)")
    return TraceError(f"trace {shown} is {found}, not {wanted} (was the trace tampered with?)")


class TraceReader:
    """Random and sequential access to the events of a trace, by event number.

    Opening reads metadata.json and the chunk headers (through the index when it
    is sound), not the events: a chunk is read, checked and decoded when one of
    its events is asked for, and the last few decoded chunks are kept. The
    reader holds the trace directory, the events file and every copy in files/
    it has checked open until close(): what it checked is what is used.
    """

    metadata: dict[str, Any]
    complete: bool  # the recorder closed the trace; False after a crash or kill

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._events_path = self.directory / EVENTS_NAME
        self._decompressor = zstandard.ZstdDecompressor()
        self._decoded: OrderedDict[int, _DecodedChunk] = OrderedDict()
        self._dir_fd = self._files_fd = self._fd = -1
        self._file_fds: dict[str, int] = {}
        self._chunks: list[_Chunk] = []
        self._firsts: list[int] = []
        try:
            self._dir_fd = self._open_directory()
            self.metadata = self._read_metadata()
            self.complete = self.metadata.get("complete") is True
            self.recorded_files = self._recorded_file_sizes()
            try:
                self._fd = _open_inside(self._dir_fd, EVENTS_NAME, self._events_path)
            except FileNotFoundError:
                if self.complete:
                    raise TraceError(f"trace {self.directory} has no events file") from None
            if self._fd >= 0:
                self._load_chunks()
            self._length = (self._chunks[-1].first + self._chunks[-1].count
                            if self._chunks else 0)
            if self.complete:
                recorded = self.metadata.get("event_count")
                if recorded != self._length:
                    raise self._error(f"holds {self._length} events but the recording ended "
                                      f"with {recorded} (events are missing)")
        except BaseException:
            self.close()
            raise

    def _open_directory(self) -> int:
        # The directory itself is the user's to name, through links too (latest-trace).
        try:
            return os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            reason = "no such directory"
        except NotADirectoryError:
            reason = "not a directory"
        except OSError as e:
            raise TraceError(f"cannot open trace {self.directory}: {e.strerror or e}") from e
        raise TraceError(f"{self.directory} is not a retrograde trace ({reason})")

    def _read_metadata(self) -> dict[str, Any]:
        path = self.directory / METADATA_NAME
        try:
            fd = _open_inside(self._dir_fd, METADATA_NAME, path)
        except FileNotFoundError:
            raise TraceError(f"{self.directory} is not a retrograde trace "
                             f"(no {METADATA_NAME})") from None
        try:
            data = os.pread(fd, _METADATA_LIMIT + 1, 0)
        except OSError as e:
            raise TraceError(f"cannot read trace {path}: {e.strerror or e}") from e
        finally:
            os.close(fd)
        if len(data) > _METADATA_LIMIT:
            raise TraceError(f"trace {path} is corrupt (over {_METADATA_LIMIT} bytes)")
        try:
            metadata = json.loads(data.decode())
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise TraceError(f"trace {path} is corrupt ({e})") from e
        if not isinstance(metadata, dict) or "format_version" not in metadata:
            raise TraceError(f"{self.directory} is not a retrograde trace "
                             f"({METADATA_NAME} has no format_version)")
        version = metadata["format_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise TraceError(f"trace {path} is corrupt (format_version {version!r})")
        if version > FORMAT_VERSION:
            raise TraceError(f"trace {self.directory} was written by a newer retrograde "
                             f"(format {version}; this one reads up to {FORMAT_VERSION})")
        if version >= 2 and metadata.get("crc32") != _metadata_checksum(metadata):
            raise TraceError(f"trace {path} is corrupt (checksum mismatch)")
        return metadata

    def _recorded_file_sizes(self) -> dict[str, int]:
        """The copies in files/ the recorder finished with, and their sizes (a closed
        trace of format 2); empty otherwise: then only the digests vouch for them."""
        files = self.metadata.get("files", {})
        if not (isinstance(files, dict) and all(
                _is_digest(digest) and type(size) is int and size >= 0
                for digest, size in files.items())):
            raise TraceError(f"trace {self.directory / METADATA_NAME} is corrupt "
                             "(its \"files\" are not digests and sizes)")
        return files

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in [self._fd, self._files_fd, self._dir_fd, *self._file_fds.values()]:
            if fd >= 0:
                os.close(fd)
        self._fd = self._files_fd = self._dir_fd = -1
        self._file_fds.clear()

    def _error(self, what: str) -> TraceError:
        return TraceError(f"trace {self._events_path}: {what}")

    def _read(self, offset: int, size: int) -> bytes:
        try:
            return os.pread(self._fd, size, offset)
        except OSError as e:
            raise self._error(f"cannot read: {e.strerror or e}") from e

    # -- the chunk list ---------------------------------------------------------------

    def _load_chunks(self) -> None:
        size = os.fstat(self._fd).st_size
        header = self._read(0, _FILE_HEADER.size)
        if len(header) < _FILE_HEADER.size and not self.complete:
            return  # cut before its first chunk, like any torn tail: no events
        self._check_file_header(header, _EVENTS_MAGIC, self._events_path)
        chunks = self._chunks_from_index(size)
        try:
            self._chunks = self._scan(chunks, size)
        except TraceError:
            if not chunks:
                raise
            self._chunks = self._scan([], size)  # the index led astray: trust only the events
        self._firsts = [c.first for c in self._chunks]

    def _check_file_header(self, header: bytes, magic: bytes, path: Path) -> None:
        if len(header) == _FILE_HEADER.size:
            found_magic, version, reserved = _FILE_HEADER.unpack(header)
            if found_magic == magic and reserved == 0:
                if version == self.metadata["format_version"]:
                    return
                raise TraceError(f"trace {path}: format {version}, but {METADATA_NAME} "
                                 f"says {self.metadata['format_version']}")
        raise TraceError(f"trace {path} is corrupt (bad file header)")

    def _chunks_from_index(self, events_size: int) -> list[_Chunk]:
        """The chunks the index names, if it agrees with itself and with the events
        file; else none (the caller scans). A torn last entry is ignored."""
        path = self.directory / INDEX_NAME
        try:
            fd = _open_inside(self._dir_fd, INDEX_NAME, path)
        except FileNotFoundError:
            return []
        # One entry per chunk, and a chunk takes at least a header in the events file.
        limit = _FILE_HEADER.size + _INDEX_ENTRY_SIZE * (events_size // _CHUNK_HEADER.size + 1)
        try:
            data = os.pread(fd, limit + 1, 0)
            self._check_file_header(data[:_FILE_HEADER.size], _INDEX_MAGIC, path)
        except (OSError, TraceError):
            return []
        finally:
            os.close(fd)
        if len(data) > limit:
            return []
        chunks: list[_Chunk] = []
        expected_offset, expected_first = _FILE_HEADER.size, 0
        for pos in range(_FILE_HEADER.size, len(data) - _INDEX_ENTRY_SIZE + 1, _INDEX_ENTRY_SIZE):
            (offset,) = _INDEX_ENTRY.unpack_from(data, pos)
            chunk = _parse_chunk_header(offset, data[pos + _INDEX_ENTRY.size:
                                                     pos + _INDEX_ENTRY_SIZE])
            if chunk is None or offset != expected_offset or chunk.first != expected_first:
                return []
            chunks.append(chunk)
            expected_offset, expected_first = chunk.end, chunk.first + chunk.count
        if chunks and (chunks[-1].end > events_size
                       or self._read(chunks[-1].offset, _CHUNK_HEADER.size) != chunks[-1].header):
            return []
        return chunks

    def _scan(self, known: list[_Chunk], size: int) -> list[_Chunk]:
        """Extend `known` with the chunk headers after it, up to the end of the file."""
        chunks = list(known)
        offset = chunks[-1].end if chunks else _FILE_HEADER.size
        first = chunks[-1].first + chunks[-1].count if chunks else 0
        while offset < size:
            number = len(chunks)
            header = self._read(offset, _CHUNK_HEADER.size)
            chunk = (_parse_chunk_header(offset, header)
                     if len(header) == _CHUNK_HEADER.size else None)
            if len(header) < _CHUNK_HEADER.size or (chunk is not None and chunk.end > size):
                # A frame cut short: the recorder was killed while writing it.
                if self.complete:
                    what = (chunk.describe(number) if chunk is not None
                            else f"chunk {number} (events from {first})")
                    raise self._error(f"{what} is truncated (the file ends at byte {size})")
                break
            if chunk is None:
                raise self._error(f"chunk {number} (events from {first}, at byte {offset}) "
                                  "is corrupt (bad header)")
            if chunk.first != first:
                raise self._error(f"chunk {number} (at byte {offset}) is corrupt (starts at "
                                  f"event {chunk.first}, expected {first})")
            if chunk.count:
                chunks.append(chunk)
            offset, first = chunk.end, first + chunk.count
        return chunks

    # -- events ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, n: int) -> Event:
        if not isinstance(n, int):
            raise TypeError(f"event numbers are int, not {type(n).__name__}")
        if n < 0:
            n += self._length
        if not 0 <= n < self._length:
            raise IndexError(f"event {n} is not in the trace (it has {self._length})")
        number = bisect.bisect_right(self._firsts, n) - 1
        return self._decoded_chunk(number).event(n)

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def events(self, start: int = 0, stop: int | None = None) -> Iterator[Event]:
        """Events start, start+1, ... stop-1 in order; the bounds work as in a slice
        (negative counts from the end, clamped to the trace)."""
        n, stop, _ = slice(start, stop).indices(self._length)
        while n < stop:
            chunk = self._decoded_chunk(bisect.bisect_right(self._firsts, n) - 1)
            end = min(stop, chunk.first + len(chunk.wires))
            for number in range(n, end):
                yield chunk.event(number)
            n = end

    def _decoded_chunk(self, number: int) -> _DecodedChunk:
        decoded = self._decoded.get(number)
        if decoded is not None:
            self._decoded.move_to_end(number)
            return decoded
        decoded = self._decode_chunk(number)
        self._decoded[number] = decoded
        if len(self._decoded) > _DECODED_CHUNKS_KEPT:
            self._decoded.popitem(last=False)
        return decoded

    def _corrupt(self, number: int, why: str) -> TraceError:
        return self._error(f"{self._chunks[number].describe(number)} is corrupt ({why})")

    def _checked_payload(self, number: int) -> bytes:
        """Chunk `number`'s payload, read and matched against its checksum."""
        chunk = self._chunks[number]
        frame = self._read(chunk.offset, _CHUNK_HEADER.size + chunk.payload_size)
        if len(frame) < _CHUNK_HEADER.size + chunk.payload_size:
            raise self._error(f"{chunk.describe(number)} is truncated (the file ends at byte "
                              f"{chunk.offset + len(frame)})")
        if frame[:_CHUNK_HEADER.size] != chunk.header:
            # The header came from the index, which agreed with the last chunk only.
            intact = _parse_chunk_header(chunk.offset, frame[:_CHUNK_HEADER.size]) is not None
            raise self._corrupt(number, f"its header does not match {INDEX_NAME}"
                                if intact else "bad header")
        payload = frame[_CHUNK_HEADER.size:]
        if zlib.crc32(payload) != chunk.payload_crc:
            raise self._corrupt(number, "checksum mismatch")
        return payload

    def _decode_chunk(self, number: int) -> _DecodedChunk:
        chunk = self._chunks[number]
        payload = self._checked_payload(number)
        try:
            raw = self._decompressor.decompress(payload, max_output_size=chunk.raw_size)
            wires = msgpack.unpackb(raw, raw=False, unicode_errors=_UNICODE_ERRORS)
        except (zstandard.ZstdError, ValueError) as e:  # msgpack's errors are ValueErrors
            raise self._corrupt(number, f"cannot decode: {e}") from e
        if len(raw) != chunk.raw_size or not isinstance(wires, list) or len(wires) != chunk.count:
            raise self._corrupt(number, "its contents do not match its header")
        return _DecodedChunk(self, number, chunk.first, wires)

    # -- files ----------------------------------------------------------------------

    def file_fd(self, digest: str) -> int:
        """An open descriptor of the trace's copy of a file, by the sha256 that
        add_file()/add_bytes() returned, checked (a regular file of the trace's own,
        of its recorded size and digest) on first use. Owned by the reader."""
        fd = self._file_fds.get(digest)
        if fd is not None:
            return fd
        path = self.directory / FILES_NAME / digest
        missing = TraceError(f"trace {self.directory} has no file {digest} "
                             f"(missing from {FILES_NAME}/)")
        if not _is_digest(digest) or (self.recorded_files and digest not in self.recorded_files):
            raise missing
        try:
            fd = _open_inside(self._files_directory(), digest, path)
        except FileNotFoundError:
            raise missing from None
        try:
            size = os.fstat(fd).st_size
            recorded = self.recorded_files.get(digest)
            if recorded is not None and size != recorded:
                how = "truncated" if size < recorded else "corrupt"
                raise TraceError(f"trace {path} is {how} ({size} bytes, recorded {recorded}); "
                                 "the trace cannot be replayed")
            try:
                found = _file_digests(fd)
            except OSError as e:
                raise TraceError(f"cannot read trace {path}: {e.strerror or e}") from e
            if digest not in found:
                raise TraceError(f"trace {path} is corrupt (its contents hash to {found[0]}); "
                                 "the trace cannot be replayed")
        except BaseException:
            os.close(fd)
            raise
        self._file_fds[digest] = fd
        return fd

    def file_path(self, digest: str) -> Path:
        """A path to the checked copy (see file_fd) that any process of ours can open
        while the reader is open: the descriptor's /proc link, which opens the
        checked file itself, not whatever the name in files/ holds by then."""
        return Path(f"/proc/{os.getpid()}/fd/{self.file_fd(digest)}")

    def read_file(self, digest: str, offset: int = 0, size: int | None = None) -> bytes:
        """Bytes of the checked copy: `size` from `offset`, or all from there."""
        fd = self.file_fd(digest)
        if size is None:
            size = max(0, os.fstat(fd).st_size - offset)
        try:
            return os.pread(fd, size, offset)
        except OSError as e:
            raise TraceError(f"cannot read trace {self.directory / FILES_NAME / digest}: "
                             f"{e.strerror or e}") from e

    def _files_directory(self) -> int:
        if self._files_fd < 0:
            try:
                self._files_fd = _open_inside(self._dir_fd, FILES_NAME,
                                              self.directory / FILES_NAME, directory=True)
            except FileNotFoundError:
                raise TraceError(f"trace {self.directory} has no {FILES_NAME}/ "
                                 "directory") from None
        return self._files_fd

    def _stored_names(self) -> list[str]:
        """The copies in files/; a live recorder's temporary file is not one."""
        try:
            names = os.listdir(self._files_directory())
        except OSError as e:
            raise TraceError(f"cannot list trace {self.directory / FILES_NAME}: "
                             f"{e.strerror or e}") from e
        return sorted(name for name in names if not name.startswith(".tmp-"))

    def size_bytes(self) -> int:
        """What the trace takes on disk (a sparse file's holes take nothing)."""
        total = 0
        for root, _dirs, names in os.walk(self.directory):
            for name in names:
                try:
                    st = os.lstat(os.path.join(root, name))
                    total += min(st.st_size, st.st_blocks * 512)
                except OSError:
                    pass  # a temporary file renamed away by a live recorder
        return total

    def check(self) -> None:
        """What `retrograde ls` vouches for, without decoding every event or hashing
        every copy: every chunk's checksum, and in files/ only regular files, each
        recorded copy there with its recorded size. TraceError on the first fault."""
        for number in range(len(self._chunks)):
            self._checked_payload(number)
        names = self._stored_names()
        for name in names:
            path = self.directory / FILES_NAME / name
            try:
                st = os.stat(name, dir_fd=self._files_directory(), follow_symlinks=False)
            except OSError as e:
                raise TraceError(f"cannot read trace {path}: {e.strerror or e}") from e
            if not stat.S_ISREG(st.st_mode):
                raise _not_its_own(path, st.st_mode)
            recorded = self.recorded_files.get(name)
            if recorded is not None and st.st_size != recorded:
                how = "truncated" if st.st_size < recorded else "corrupt"
                raise TraceError(f"trace {path} is {how} ({st.st_size} bytes, "
                                 f"recorded {recorded})")
        for digest in self.recorded_files.keys() - set(names):
            raise TraceError(f"trace {self.directory} has no file {digest} "
                             f"(missing from {FILES_NAME}/)")

    def verify(self) -> None:
        """Read every chunk and hash every file; TraceError on the first fault found."""
        self.check()
        for _ in self.events():
            pass
        for name in self._stored_names():
            if not _is_digest(name):
                raise TraceError(f"trace {self.directory / FILES_NAME / name} is not a copy "
                                 "the recorder made (its name is not a sha256)")
            self.file_fd(name)


class _DecodedChunk:
    """The events of one chunk, unpacked; each is made an Event when first asked
    for (from_wire costs more than unpacking, and random access wants one event)."""

    def __init__(self, reader: TraceReader, number: int, first: int,
                 wires: list[Any]) -> None:
        self.reader = reader
        self.number = number
        self.first = first
        self.wires = wires
        self.events: list[Event | None] = [None] * len(wires)

    def event(self, n: int) -> Event:
        i = n - self.first
        event = self.events[i]
        if event is None:
            try:
                event = self.events[i] = Event.from_wire(self.wires[i])
            except Exception as e:  # any shape of bad data: a one-line error, not a traceback
                chunk = self.reader._chunks[self.number]
                raise self.reader._error(
                    f"event {n} in {chunk.describe(self.number)} cannot be decoded "
                    f"({type(e).__name__}: {e})") from e
        return event


def trace_directories(root: Path) -> list[Path]:
    """The directories directly under `root`, by name (for `retrograde ls`): each is
    a trace or the remains of one, for TraceReader to say which.

    Symbolic links are left out (`latest-trace` points at a trace listed anyway),
    and so are hidden names (a temporary link of the recorder's).
    """
    try:
        entries = list(Path(root).iterdir())
    except OSError:
        return []
    return sorted(p for p in entries
                  if not p.name.startswith(".") and not p.is_symlink() and p.is_dir())
