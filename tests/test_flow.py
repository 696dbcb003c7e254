"""The candidates for the previous instruction's address (replay/flow.py), on
machine code whose layout is known byte for byte."""

from __future__ import annotations

import struct

from retrograde.replay.flow import predecessors

BASE = 0x401000


def memory(code: bytes, base: int = BASE):
    def read(addr: int, size: int) -> bytes:
        if addr < base or addr + size > base + len(code):
            raise OSError(5, "unmapped")
        return code[addr - base:addr - base + size]
    return read


# mov rcx, 16; loop: nop; nop; dec rcx; jnz loop; after: (roll.c's loop)
PROLOGUE = bytes.fromhex("4883ec08 48c7c110000000")
LOOP = bytes.fromhex("90 90 48ffc9 75f9")


def test_the_instruction_that_falls_through_to_pc_comes_first():
    code = PROLOGUE + LOOP + bytes.fromhex("90")
    after = BASE + len(PROLOGUE) + len(LOOP)
    jnz = after - 2
    # 0xf9 alone (stc) also ends at `after`: a candidate, but not the likeliest
    assert predecessors(memory(code), after, 0)[0] == jnz
    dec = BASE + len(PROLOGUE) + 2
    assert predecessors(memory(code), jnz, 0)[0] == dec


def test_a_jump_or_return_never_falls_through():
    code = bytes.fromhex("4883ec08 c3")  # sub rsp, 8; ret
    assert BASE + 4 not in predecessors(memory(code), BASE + 5, 0)
    code = bytes.fromhex("4883ec08 ebfe")  # sub rsp, 8; jmp .
    assert BASE + 4 not in predecessors(memory(code), BASE + 6, 0)


def test_at_a_call_target_the_call_is_a_candidate():
    callee = BASE + 0x100
    call_at = BASE + 8
    rel = callee - (call_at + 5)
    code = bytes.fromhex("4883ec08 4889c7 90") + b"\xe8" + struct.pack("<i", rel) + \
        bytes(0x100 - 13) + bytes.fromhex("55 4889e5")
    assert call_at in predecessors(memory(code), callee, call_at + 5)


def test_unreadable_code_gives_no_candidates():
    assert predecessors(memory(b""), BASE + 0x10, BASE + 0x20) == []
