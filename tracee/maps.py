"""/proc/PID/maps as values, and the digest of a task's writable memory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .process import Tracee

PAGE_SIZE = 4096


def page_up(value: int) -> int:
    return (value + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


@dataclass(frozen=True)
class KernelMapping:
    """Exactly what the kernel reports for one mapping (one /proc/PID/maps line)."""

    start: int
    end: int
    perms: str
    offset: int
    inode: int
    name: str

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def readable(self) -> bool:
        return self.perms[0] == "r"

    @property
    def writable(self) -> bool:
        return self.perms[1] == "w"

    @property
    def is_file(self) -> bool:
        return self.inode != 0

    @property
    def is_pseudo(self) -> bool:
        """[vvar], [vsyscall] and friends: not ordinary memory."""
        return self.name.startswith("[v") and self.name != "[vdso]"


def parse_maps(text: str) -> list[KernelMapping]:
    mappings = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in parts[0].split("-"))
        name = parts[5] if len(parts) > 5 else ""
        mappings.append(KernelMapping(start, end, parts[1], int(parts[2], 16), int(parts[4]),
                                      name))
    return mappings


def writable_memory(tracee: Tracee) -> list[tuple[int, bytes]]:
    """The contents of every writable region, as (address, bytes)."""
    return [(m.start, tracee.read_partial(m.start, m.size))
            for m in parse_maps(tracee.read_maps()) if m.writable and not m.is_pseudo]


def memory_digest(regions: list[tuple[int, bytes]]) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for start, data in regions:
        digest.update(start.to_bytes(8, "little"))
        digest.update(data)
    return digest.digest()


def writable_memory_digest(tracee: Tracee) -> bytes:
    """A digest of every writable region (addresses and contents).

    Two stops with equal registers and equal digests are the same program
    state, which is how a precise asynchronous signal is found again in replay.
    """
    return memory_digest(writable_memory(tracee))
