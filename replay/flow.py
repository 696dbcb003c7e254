"""Where the instruction executed just before a given pc can have been.

Going back one instruction from a place a long native run reached needs the
previous instruction's address, to count its arrivals (replay/timeline.py). x86
code cannot be decoded backwards for certain, so this ranks candidates, and the
timeline keeps the one whose last arrival, stepped once, gives exactly the
state it came from:

- the instruction that ends at ``pc``, when control can fall through it. Linear
  decoding started at each of the WINDOW bytes before ``pc`` resynchronises with
  the real instruction stream within a few instructions; every start that ends
  exactly at ``pc`` votes for the instruction it ends with, and the true one
  gathers nearly all the votes;
- when ``pc`` is a call target, the call that pushed the return address on top
  of the stack.

A jump to ``pc``, or a return to it, is not found here; the timeline then
counts instructions by single-stepping instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

import capstone

WINDOW = 48
_NO_FALL_THROUGH = {"jmp", "ljmp", "ret", "retf", "iret", "iretq", "hlt", "ud2", "int3",
                    "syscall", "sysenter", "call", "lcall"}

_decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def _code_before(read: Callable[[int, int], bytes], end: int) -> tuple[int, bytes]:
    """Up to WINDOW readable bytes that end at ``end``, and where they start."""
    for size in (WINDOW, end % 4096):  # the window may reach into an unmapped page
        if size:
            try:
                return end - size, read(end - size, size)
            except OSError:
                continue
    return end, b""


class Instruction(NamedTuple):
    address: int
    size: int
    mnemonic: str
    op_str: str


def _ending_at(read: Callable[[int, int], bytes], end: int) -> Counter[Instruction]:
    """Instructions that linear decoding from some start before ``end`` ends with
    exactly at ``end``, with how many starts agree on each.

    Each offset is decoded once: linear decoding from a start is the chain of
    the instructions at start, start + size, ... (decoding an instruction needs
    only the bytes from its own address), up to a byte that decodes to nothing
    or an instruction that would run past ``end``; the chains share their tails."""
    base, code = _code_before(read, end)
    decoded: dict[int, Instruction] = {}
    for offset in range(len(code)):
        for address, size, mnemonic, op_str in _decoder.disasm_lite(code[offset:],
                                                                   base + offset, 1):
            decoded[offset] = Instruction(address, size, mnemonic, op_str)
    final_of: dict[int, Instruction] = {}  # start -> the last instruction decoded from it

    def final_from(start: int) -> Instruction | None:
        chain = []
        offset = start
        while offset in decoded and offset not in final_of:
            chain.append(offset)
            offset += decoded[offset].size
        final = final_of[offset] if offset in final_of else \
            (decoded[chain[-1]] if chain else None)
        if final is not None:
            final_of.update(dict.fromkeys(chain, final))
        return final

    votes: Counter[Instruction] = Counter()
    for offset in range(len(code)):
        final = final_from(offset)
        if final is not None and final.address + final.size == end:
            votes[final] += 1
    return votes


def predecessors(read: Callable[[int, int], bytes], pc: int, top_of_stack: int) -> list[int]:
    """Addresses the previous instruction may have had, likeliest first.

    ``read(addr, size)`` reads the program's memory; ``top_of_stack`` is the
    8 bytes at rsp, the return address if ``pc`` was just called.
    """
    falls = [insn.address for insn, _ in _ending_at(read, pc).most_common()
             if insn.mnemonic not in _NO_FALL_THROUGH]
    calls = [insn.address for insn, _ in _ending_at(read, top_of_stack).most_common()
             if insn.mnemonic == "call" and (insn.op_str == hex(pc) or
                                             not insn.op_str.startswith("0x"))]
    return list(dict.fromkeys(falls + calls))
