"""`retrograde pack`: make a trace self-contained, so that it can be moved or copied
to another machine and replayed there after the originals are gone.

A trace is written self-contained (every mapped file is copied into files/, named
by its sha256, so identical contents are stored once), but what was done to the
directory since may have tied it to the outside: a deduplicating tool
(`hardlink`, `rdfind -makesymlinks`) or a copy made with `cp -s` / `cp -l` turns
copies into symbolic links out of the trace or hard links shared with other
files, which the reader refuses (links) or which change under the trace (a hard
link's other name rewritten in place). Packing replaces each of those by a copy
of its own, once its contents are checked against the name it stands for,
removes the temporary files of a killed recorder, and then verifies the whole
trace (every chunk read, every copy hashed). Copies keep holes as holes: a
sparse file stays sparse.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from retrograde.trace.events import ExecEvent, SyscallEvent
from retrograde.trace.format import (
    EVENTS_NAME,
    FILES_NAME,
    INDEX_NAME,
    METADATA_NAME,
    TraceError,
    TraceReader,
    _file_digests,
)

_BLOCK = 1 << 20
_ZEROS = bytes(_BLOCK)


@dataclass
class PackResult:
    """What packing changed: the names (relative to the trace) made copies of their own."""

    links_replaced: list[str] = field(default_factory=list)  # symbolic links out of the trace
    links_broken: list[str] = field(default_factory=list)  # hard links shared with other files
    temporaries_removed: list[str] = field(default_factory=list)
    copies: int = 0  # files in files/ after packing, one per content


def pack_trace(directory: Path) -> PackResult:
    """Make the trace at `directory` self-contained (see the module comment);
    TraceError, naming the file, if something it needs cannot be made so."""
    directory = Path(directory).resolve()
    result = PackResult()
    if not (directory / METADATA_NAME).exists() and not (directory / METADATA_NAME).is_symlink():
        raise TraceError(f"{directory} is not a retrograde trace (no {METADATA_NAME})")
    for name in (METADATA_NAME, EVENTS_NAME, INDEX_NAME):
        _own(directory, name, result, digest=None)
    files = directory / FILES_NAME
    if files.is_symlink():
        raise TraceError(f"trace {files} is a symbolic link: copy the directory it names "
                         "into the trace first")
    for entry in sorted(files.iterdir()) if files.is_dir() else []:
        if entry.name.startswith(".tmp-"):
            entry.unlink()
            result.temporaries_removed.append(f"{FILES_NAME}/{entry.name}")
        else:
            _own(directory, f"{FILES_NAME}/{entry.name}", result, digest=entry.name)
    with TraceReader(directory) as reader:
        for digest in sorted(_referenced_copies(reader)):
            reader.file_fd(digest)  # there, regular, of its recorded size and digest
        reader.verify()
        result.copies = len([n for n in os.listdir(files) if not n.startswith(".")])
    return result


def _referenced_copies(reader: TraceReader) -> set[str]:
    digests: set[str] = set()
    for event in reader:
        records = (event.mappings if isinstance(event, ExecEvent)
                   else [event.mapping] if isinstance(event, SyscallEvent) and event.mapping
                   else [])
        digests.update(m.file_hash for m in records if m.file_hash)
    return digests


def _own(directory: Path, name: str, result: PackResult, digest: str | None) -> None:
    """Give the trace a copy of its own of `name`, if it is a link (symbolic, or hard
    with other names); a copy in files/ must hash to its name (`digest`)."""
    path = directory / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return  # missing: the reader says whether that matters
    if stat.S_ISLNK(st.st_mode):
        try:
            source_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            raise TraceError(f"trace {path} is a symbolic link to {os.readlink(path)}, "
                             f"which cannot be read ({e.strerror or e})") from e
        kind = result.links_replaced
    elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        source_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        kind = result.links_broken
    elif stat.S_ISREG(st.st_mode):
        return
    else:
        raise TraceError(f"trace {path} is not a regular file (a trace holds only its own "
                         "files; was it tampered with?)")
    try:
        if not stat.S_ISREG(os.fstat(source_fd).st_mode):
            raise TraceError(f"trace {path} is a symbolic link to {os.readlink(path)}, "
                             "which is not a regular file")
        if digest is not None and digest not in _file_digests(source_fd):
            raise TraceError(f"trace {path} links to a file whose contents are not the "
                             f"recorded ones (they do not hash to {digest})")
        _replace_with_copy(path, source_fd, read_only=digest is not None)
    finally:
        os.close(source_fd)
    kind.append(name)


def _replace_with_copy(path: Path, source_fd: int, *, read_only: bool) -> None:
    """Copy the open file into a temporary name next to `path`, then rename it over
    `path`: a crash leaves the link or the copy, never half a file."""
    tmp = path.with_name(f".tmp-pack-{os.getpid()}")
    size = os.fstat(source_fd).st_size
    with open(tmp, "wb") as out:
        offset = 0
        while offset < size:
            block = os.pread(source_fd, _BLOCK, offset)
            if not block:
                break
            if block == _ZEROS[:len(block)]:
                out.seek(len(block), os.SEEK_CUR)  # a hole stays a hole
            else:
                out.write(block)
            offset += len(block)
        out.truncate(offset)
    if read_only:
        tmp.chmod(0o444)  # as the writer leaves a content-addressed copy
    os.replace(tmp, path)
