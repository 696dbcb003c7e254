"""The address-space model of a replayed task (seed 001).

Each ``Mapping`` holds what the region was during recording (the
``MappingRecord`` from the trace) and what the replay made of it (a file
mapping of the trace's copy, an anonymous region filled with recorded bytes,
the emulated heap), plus what it is for. The model follows every mmap-family
event; ``check`` compares it with the kernel's /proc/PID/maps so that a replay
that built something different stops at the event that did it.

Invariant: mappings never overlap and are kept sorted by start address.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

from retrograde.trace.events import MappingRecord
from retrograde.tracee.cpu import RandomInstruction
from retrograde.tracee.maps import KernelMapping, page_up

STACK_SLACK = 8 << 20  # [stack] grows down on its own in both runs


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    kind: str  # "file" | "shm" | "anonymous" | "heap" | "stack" | "vdso" | "vvar" | "retrograde"
    recorded: MappingRecord
    offset: int = 0  # of ``start`` in the file or shared object, as the kernel keeps it

    def at(self, start: int, end: int) -> Mapping:
        """The part [start, end) of this mapping, or (moved) the same pages at ``start``."""
        return replace(self, start=start, end=end)

    def piece(self, start: int, end: int) -> Mapping:
        """The part [start, end) of this mapping, with its own offset."""
        return replace(self, start=start, end=end, offset=self.offset + start - self.start)


def kind_of(record: MappingRecord) -> str:
    name = record.name
    if name == "[stack]":
        return "stack"
    if name == "[heap]":
        return "heap"
    if name == "[vdso]":
        return "vdso"
    if name.startswith("[vvar"):
        return "vvar"
    if name == "[retrograde]":
        return "retrograde"
    if name.startswith("/SYSV"):  # the kernel's name for a SysV segment: /SYSV<key> (deleted)
        return "shm"
    return "file" if record.file_hash else "anonymous"


def prot_perms(prot: int, shared: bool = False) -> str:
    return ("r" if prot & 1 else "-") + ("w" if prot & 2 else "-") + \
        ("x" if prot & 4 else "-") + ("s" if shared else "p")


class AddressSpace:
    """The memory of one replayed process, shared by its tasks (threads).

    Besides the mappings, it keeps what replay itself made in that memory: the
    retrograde page's address, the emulated program break, the memfds behind
    shared objects with several views (name: (fd, size)), the ud2 traps on
    recorded rdrand/rdseed sites (pc: (instruction, original bytes)), and how
    many mmap-family calls it has seen (Lizard's id(X) counts per process).
    """

    def __init__(self, records: list[MappingRecord], *, page: int = 0, brk: int = 0) -> None:
        self.mappings: list[Mapping] = sorted(
            (Mapping(r.start, r.end, r.perms, kind_of(r), r, r.offset) for r in records),
            key=lambda m: m.start)
        self.page = page
        self.brk = brk
        self.shared_objects: dict[str, tuple[int, int]] = {}
        self.random_traps: dict[int, tuple[RandomInstruction, bytes]] = {}
        self.mmap_calls = 0

    def copy(self) -> AddressSpace:
        """The model of a fork of this process (its memfds are its parent's until the
        caller backs them anew)."""
        clone = AddressSpace([], page=self.page, brk=self.brk)
        clone.mappings = list(self.mappings)
        clone.shared_objects = dict(self.shared_objects)
        clone.random_traps = dict(self.random_traps)
        clone.mmap_calls = self.mmap_calls
        return clone

    def _cut(self, start: int, end: int) -> tuple[list[Mapping], list[Mapping]]:
        """Split mappings at ``start`` and ``end``; return (inside, outside)."""
        inside: list[Mapping] = []
        outside: list[Mapping] = []
        if end <= start:  # an empty range: mprotect(addr, 0, prot) succeeds and does nothing
            return inside, list(self.mappings)
        for m in self.mappings:
            if m.end <= start or m.start >= end:
                outside.append(m)
                continue
            if m.start < start:
                outside.append(m.piece(m.start, start))
            if m.end > end:
                outside.append(m.piece(end, m.end))
            inside.append(m.piece(max(m.start, start), min(m.end, end)))
        return inside, outside

    def map(self, record: MappingRecord, kind: str | None = None) -> None:
        _, outside = self._cut(record.start, record.end)
        new = Mapping(record.start, record.end, record.perms, kind or kind_of(record), record,
                      record.offset)
        outside.insert(bisect.bisect([m.start for m in outside], new.start), new)
        self.mappings = outside

    def unmap(self, start: int, length: int) -> None:
        _, self.mappings = self._cut(start, start + page_up(length))

    def protect(self, start: int, length: int, prot: int) -> None:
        """mprotect(2), and what a failed one leaves behind.

        The kernel changes the mappings from ``start`` on, one after the other, and
        stops with ENOMEM at the first unmapped page, keeping the changes made before
        it (do_mprotect_pkey in mm/mprotect.c); a range that starts unmapped changes
        nothing. So only the mapped run from ``start`` changes.
        """
        end, reach = start + page_up(length), start
        for m in self.mappings:
            if m.end <= reach:
                continue
            if m.start > reach or reach >= end:
                break
            reach = m.end
        inside, outside = self._cut(start, min(end, reach))
        for m in inside:
            outside.append(replace(m, perms=prot_perms(prot, m.perms[3] == "s")))
        self.mappings = sorted(outside, key=lambda m: m.start)

    def remap(self, old: int, old_size: int, new: int, new_size: int,
              dontunmap: bool = False) -> None:
        """mremap(2) that returned ``new``.

        Each piece of the old range keeps its offset from ``old`` and replaces only
        what it lands on: since Linux 6.17 an MREMAP_FIXED move that does not resize
        may span several mappings and holes, and the holes' destinations stay as they
        were. An ``old_size`` of 0 maps the same shared pages a second time;
        MREMAP_DONTUNMAP (``dontunmap``) leaves the old range mapped, emptied.
        """
        if old_size == 0:
            source = self.find(old)
            if source is not None:
                _, self.mappings = self._cut(new, new + page_up(new_size))
                self.mappings.append(replace(source, start=new, end=new + page_up(new_size),
                                             offset=source.offset + old - source.start))
                self.mappings.sort(key=lambda m: m.start)
            return
        inside, outside = self._cut(old, old + page_up(old_size))
        if dontunmap:
            outside = list(self.mappings)
        moved = []
        for m in inside:
            offset = m.start - old
            moved.append(m.at(new + offset, new + offset + (m.end - m.start)))
        if moved and new_size > old_size:
            last = moved[-1]
            moved[-1] = last.at(last.start, new + page_up(new_size))
        elif new_size < old_size:
            moved = [m.at(m.start, min(m.end, new + page_up(new_size))) for m in moved
                     if m.start < new + page_up(new_size)]
        self.mappings = outside
        for m in moved:
            _, self.mappings = self._cut(m.start, m.end)
            self.mappings.append(m)
        self.mappings.sort(key=lambda m: m.start)

    def attached(self, addr: int) -> list[tuple[int, int]]:
        """The ranges shmdt(2) at ``addr`` detaches, or none (EINVAL).

        As ksys_shmdt in ipc/shm.c: the first piece of a segment at or after
        ``addr`` that sits at its own offset from ``addr`` (so: of a segment attached
        at ``addr``, even if munmap took its first pages), then every later piece of
        that segment up to ``addr`` plus the segment's size, stopping at the first
        mapping that ends past it. Pieces moved or grown by mremap are taken to be at
        their attach offsets, which they no longer are (not modelled).
        """
        after = [m for m in self.mappings if m.end > addr]
        first = next((i for i, m in enumerate(after) if m.kind == "shm" and m.start >= addr
                      and m.recorded.start == addr), None)
        if first is None:
            return []
        segment = after[first].recorded
        ranges = [(after[first].start, after[first].end)]
        for m in after[first + 1:]:
            if m.end - addr > segment.end - segment.start:
                break
            if m.kind == "shm" and m.recorded == segment:
                ranges.append((m.start, m.end))
        return ranges

    def find(self, addr: int) -> Mapping | None:
        i = bisect.bisect([m.start for m in self.mappings], addr) - 1
        if i >= 0 and self.mappings[i].end > addr:
            return self.mappings[i]
        return None

    # -- validation against the kernel ---------------------------------------------------
    def _comparable(self, ranges: list[tuple[int, int, str]],
                    stack: Mapping | None) -> list[tuple[int, int, str]]:
        """Merge adjacent ranges with equal permissions; leave out the stack's growth."""
        merged: list[tuple[int, int, str]] = []
        for start, end, perms in sorted(ranges):
            if stack is not None and start < stack.end and end > stack.start - STACK_SLACK:
                continue
            if merged and merged[-1][1] == start and merged[-1][2] == perms:
                merged[-1] = (merged[-1][0], end, perms)
            else:
                merged.append((start, end, perms))
        return merged

    def check(self, live: list[KernelMapping]) -> str | None:
        """None when the kernel agrees with the model, else both views, one line each."""
        stack = next((m for m in self.mappings if m.kind == "stack"), None)
        model = self._comparable([(m.start, m.end, m.perms[:3]) for m in self.mappings], stack)
        kernel = self._comparable([(k.start, k.end, k.perms[:3]) for k in live
                                   if k.name != "[vsyscall]"], stack)
        if model == kernel:
            return None
        only_model = [r for r in model if r not in kernel]
        only_kernel = [r for r in kernel if r not in model]
        fmt = lambda rs: ", ".join(f"{a:x}-{b:x} {p}" for a, b, p in rs) or "nothing"
        return f"model has {fmt(only_model)}; kernel has {fmt(only_kernel)}"
