"""/proc/PID/maps as values, and the digest of a task's writable memory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cpu import xsave_components

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


RED_ZONE = 128  # the bytes below the stack pointer a leaf function may use (x86-64 ABI)
# A signal frame (arch/x86/include/uapi/asm/sigcontext.h): the XSAVE area ("fpstate",
# 64-byte aligned) has FP_XSTATE_MAGIC1 in its software-reserved bytes, and the
# frame's sigcontext points to it; err, trapno and cr2 lie just before that pointer.
FP_XSTATE_MAGIC1 = (0x46505853).to_bytes(4, "little")
MAGIC1_OFFSET = 464  # in the fpstate
XSTATE_BV_OFFSET = 512  # the XSAVE header's first word, in the fpstate
XSAVE_HEADER_END = 576  # the legacy area and the header, which every frame has whole
LEGACY_RESERVED = range(416, 464)  # the legacy area's reserved bytes, which XSAVE leaves alone
HISTORY_BEFORE_POINTER = 32  # err, trapno, oldmask, cr2: the 32 bytes before fpstate
OLDMASK_BEFORE_POINTER = 16


def frame_history(data: bytes, start: int) -> list[tuple[int, int]]:
    """The bytes of the signal frames in ``data`` (memory at ``start``) that say what
    the thread went through rather than what it holds, as (offset, end) ranges:
    err, trapno and cr2 (the last exception the thread took: replay's own traps,
    the int3 after an injected syscall and single steps, are not the
    recording's), the XSAVE header's XSTATE_BV (which components the CPU had in
    use, which a fork clone or a restored state changes) and the bytes of the
    XSAVE area that XSAVE did not write: the legacy area's reserved bytes (AMD
    leaves them as the stack held them), the areas of components not in use
    and the gaps between areas."""
    ranges = []
    at = data.find(FP_XSTATE_MAGIC1)
    while at >= 0:
        fpstate = start + at - MAGIC1_OFFSET
        pointer = data.rfind(fpstate.to_bytes(8, "little"), 0, max(0, at - MAGIC1_OFFSET))
        if fpstate % 64 == 0 and pointer >= HISTORY_BEFORE_POINTER and \
                (start + pointer) % 8 == 0:
            oldmask = pointer - OLDMASK_BEFORE_POINTER
            base = at - MAGIC1_OFFSET
            bv = base + XSTATE_BV_OFFSET
            ranges += [(pointer - HISTORY_BEFORE_POINTER, oldmask), (oldmask + 8, pointer),
                       (base + LEGACY_RESERVED.start, base + LEGACY_RESERVED.stop),
                       (bv, bv + 8)]
            # XSAVE writes the components in use only: the others' areas and the
            # gaps between them hold whatever the stack held before the frame
            # (sigreturn gives a component not in use its initial values).
            in_use = int.from_bytes(data[bv:bv + 8], "little")
            extended = int.from_bytes(data[at + 4:at + 8], "little")  # the whole area
            written = sorted((base + offset, base + offset + size)
                             for bit, offset, size in xsave_components() if in_use & (1 << bit))
            gap = base + XSAVE_HEADER_END
            for begin, end in [*written, (base + extended - 4, base + extended)]:
                if begin > gap:
                    ranges.append((gap, min(begin, len(data))))
                gap = max(gap, end)
        at = data.find(FP_XSTATE_MAGIC1, at + 4)
    return ranges


def _without_frame_history(data: bytes, start: int) -> bytes:
    """``data`` with its ``frame_history`` zeroed."""
    ranges = frame_history(data, start)
    if not ranges:
        return data
    out = bytearray(data)
    for begin, end in ranges:
        out[begin:end] = bytes(end - begin)
    return bytes(out)


def live_stack_before_history(regions: Iterable[tuple[int, bytes]], sp: int, length: int
                              ) -> bytes | None:
    """Up to ``length`` bytes of ``regions`` at ``sp``, ending before the first byte of
    frame history among them (``frame_history``); None if no region holds them."""
    for start, data in regions:
        if start <= sp and sp + length <= start + len(data):
            live = max(start, sp - RED_ZONE)
            cut = sp + length
            for begin, _ in frame_history(data[live - start:], live):
                if sp <= live + begin < cut:
                    cut = live + begin
            return data[sp - start:cut - start]
    return None


def memory_digest(regions: list[tuple[int, bytes]], sp: int | None = None, *,
                  frames: bool = True) -> bytes:
    """A digest of ``regions`` (addresses and contents). With ``sp``, the dead part
    of the stack it points into (below the red zone) is left out, where old
    signal frames lie, and in the live part the frames' bytes of history are
    (``_without_frame_history``): a frame records, besides the registers, what
    the CPU and kernel went through, which differs between a recording and its
    replay. ``frames=False`` is the rule of traces recorded before that (live
    frames digested whole)."""
    digest = hashlib.blake2b(digest_size=16)
    live = None if sp is None else sp - RED_ZONE
    for start, data in regions:
        digest.update(start.to_bytes(8, "little"))
        if live is not None and start <= live < start + len(data):
            digest.update((live - start).to_bytes(8, "little"))
            data = data[live - start:]
            if frames:
                data = _without_frame_history(data, live)
        digest.update(data)
    return digest.digest()


def writable_memory_digest(tracee: Tracee) -> bytes:
    """A digest of every writable region but the dead stack below the task's stack
    pointer (``memory_digest``).

    Two stops with equal registers and equal digests are the same program
    state, which is how a precise asynchronous signal is found again in replay.
    """
    return memory_digest(writable_memory(tracee), tracee.get_regs().rsp)


def has_memory_digest(tracee: Tracee, digest: bytes | None) -> bool:
    """Whether the tracee's writable memory has the recorded ``digest``
    (``writable_memory_digest``), by today's rule or by the rule of traces
    recorded before live signal frames' history was left out."""
    if digest is None:
        return False
    memory = writable_memory(tracee)
    sp = tracee.get_regs().rsp
    return memory_digest(memory, sp) == digest or \
        memory_digest(memory, sp, frames=False) == digest
