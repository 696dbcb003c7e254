"""Where the instruction executed just before a given pc can have been.

Going back one instruction from a place a long native run reached needs the
previous instruction's address, to count its arrivals (replay/timeline.py). x86
code cannot be decoded backwards reliably, so this lists candidates and the
timeline keeps the one whose last arrival, stepped once, gives exactly the
state it came from:

- the instruction that ends at ``pc``, when control can fall through it (every
  length from 1 to 15 bytes that decodes to exactly that length);
- when ``pc`` is a call target, the call that pushed the return address on top
  of the stack.

A jump to ``pc``, or a return to it, is not found here; the timeline then
counts instructions by single-stepping instead.
"""

from __future__ import annotations

from collections.abc import Callable

import capstone

MAX_INSN = 15
_NO_FALL_THROUGH = {"jmp", "ljmp", "ret", "retf", "iret", "iretq", "hlt", "ud2", "int3",
                    "syscall", "sysenter", "call", "lcall"}

_decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def _ending_at(read: Callable[[int, int], bytes], end: int) -> list[capstone.CsInsn]:
    """Instructions of every length that decode to end exactly at ``end``."""
    found = []
    for length in range(1, MAX_INSN + 1):
        try:
            code = read(end - length, length)
        except OSError:
            continue
        insn = next(_decoder.disasm(code, end - length, 1), None)
        if insn is not None and insn.size == length:
            found.append(insn)
    return found


def predecessors(read: Callable[[int, int], bytes], pc: int, top_of_stack: int) -> list[int]:
    """Addresses the previous instruction may have had, likeliest first.

    ``read(addr, size)`` reads the program's memory; ``top_of_stack`` is the
    8 bytes at rsp, the return address if ``pc`` was just called.
    """
    falls = [insn.address for insn in _ending_at(read, pc)
             if insn.mnemonic not in _NO_FALL_THROUGH]
    calls = [insn.address for insn in _ending_at(read, top_of_stack)
             if insn.mnemonic == "call" and (insn.op_str == hex(pc) or
                                             not insn.op_str.startswith("0x"))]
    # Shorter encodings first: a 1-byte "instruction" inside a longer one is
    # rarer as a real predecessor than the plain decoding.
    ordered = sorted(falls, key=lambda a: pc - a > 7) + calls
    return list(dict.fromkeys(ordered))
