"""The agent-expression machine (gdbstub/agent.py) against the manual's
"Bytecode Descriptions", without a process: programs are written as gdb's
`maint agent` prints them and assembled here."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrograde.gdbstub.agent import (
    MAX_EXECUTED,
    MAX_STACK,
    CannotEvaluate,
    Condition,
    evaluate,
)

OPCODES = {
    "float": 0x01, "add": 0x02, "sub": 0x03, "mul": 0x04, "div_signed": 0x05,
    "div_unsigned": 0x06, "rem_signed": 0x07, "rem_unsigned": 0x08, "lsh": 0x09,
    "rsh_signed": 0x0A, "rsh_unsigned": 0x0B, "trace": 0x0C, "trace_quick": 0x0D,
    "log_not": 0x0E, "bit_and": 0x0F, "bit_or": 0x10, "bit_xor": 0x11, "bit_not": 0x12,
    "equal": 0x13, "less_signed": 0x14, "less_unsigned": 0x15, "ext": 0x16, "ref8": 0x17,
    "ref16": 0x18, "ref32": 0x19, "ref64": 0x1A, "ref_float": 0x1B, "ref_double": 0x1C,
    "ref_long_double": 0x1D, "l_to_d": 0x1E, "d_to_l": 0x1F, "if_goto": 0x20, "goto": 0x21,
    "const8": 0x22, "const16": 0x23, "const32": 0x24, "const64": 0x25, "reg": 0x26,
    "end": 0x27, "dup": 0x28, "pop": 0x29, "zero_ext": 0x2A, "swap": 0x2B, "getv": 0x2C,
    "setv": 0x2D, "tracev": 0x2E, "tracenz": 0x2F, "trace16": 0x30, "pick": 0x32,
    "rot": 0x33, "printf": 0x34,
}  # fmt: skip
OPERAND_BYTES = {"ext": 1, "zero_ext": 1, "trace_quick": 1, "pick": 1, "const8": 1,
                 "const16": 2, "const32": 4, "const64": 8, "reg": 2, "if_goto": 2, "goto": 2,
                 "getv": 2, "setv": 2, "tracev": 2, "trace16": 2}
MASK = (1 << 64) - 1
GLOBALS = 0x404000


def assemble(program: str) -> bytes:
    """Bytecode from `maint agent` style text: one instruction a line or ';'-separated,
    operands in decimal or hex (big-endian in the stream, as the manual says)."""
    code = b""
    for instruction in program.replace(";", "\n").splitlines():
        words = instruction.split()
        if not words:
            continue
        code += bytes([OPCODES[words[0]]])
        if len(words) > 1:
            code += (int(words[1], 0) & ((1 << 8 * OPERAND_BYTES[words[0]]) - 1)).to_bytes(
                OPERAND_BYTES[words[0]], "big")
    return code


class Machine:
    """Registers by gdb's number and memory of a stopped program, with a count of reads."""

    def __init__(self, registers: dict[int, int] | None = None,
                 memory: dict[int, bytes] | None = None) -> None:
        self.registers = registers or {}
        self.memory = memory or {}
        self.reads: list[tuple[int, int]] = []

    def register(self, number: int) -> int:
        if number not in self.registers:
            raise IndexError(number)
        return self.registers[number]

    def read_memory(self, addr: int, length: int) -> bytes:
        self.reads.append((addr, length))
        for base, data in self.memory.items():
            if base <= addr < base + len(data):
                return data[addr - base: addr - base + length]
        raise OSError(14, "Bad address")


def run(program: str, machine: Machine | None = None, **kw: object) -> int:
    return evaluate(assemble(program), machine or Machine(), **kw)  # type: ignore[arg-type]


def signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


# Integer arithmetic on 64-bit elements.

@pytest.mark.parametrize(("operation", "a", "b", "result"), [
    ("add", 5, 7, 12), ("add", MASK, 2, 1),  # wraps at 64 bits
    ("sub", 5, 7, -2 & MASK), ("mul", -3 & MASK, 7, -21 & MASK),
    ("div_signed", -7 & MASK, 2, -3 & MASK),  # rounds toward zero, as C does
    ("div_signed", 7, -2 & MASK, -3 & MASK), ("div_unsigned", -8 & MASK, 2, (MASK - 7) // 2),
    ("rem_signed", -7 & MASK, 2, -1 & MASK),  # the sign of the dividend
    ("rem_signed", 7, -2 & MASK, 1), ("rem_unsigned", 17, 5, 2),
    ("div_signed", 1 << 63, -1 & MASK, 1 << 63),  # the one overflow wraps
    ("lsh", 1, 63, 1 << 63), ("lsh", 1, 64, 0), ("lsh", 3, 1 << 40, 0),
    ("rsh_signed", -16 & MASK, 2, -4 & MASK), ("rsh_signed", -1 & MASK, 200, MASK),
    ("rsh_unsigned", -16 & MASK, 60, 15), ("rsh_unsigned", 5, 1 << 62, 0),
    ("bit_and", 0b1100, 0b1010, 0b1000), ("bit_or", 0b1100, 0b1010, 0b1110),
    ("bit_xor", 0b1100, 0b1010, 0b0110),
    ("equal", 31300, 31300, 1), ("equal", 31300, 31301, 0),
    ("less_signed", -1 & MASK, 0, 1), ("less_signed", 0, -1 & MASK, 0),
    ("less_unsigned", -1 & MASK, 0, 0), ("less_unsigned", 0, -1 & MASK, 1),
])  # fmt: skip
def test_binary_operations_take_the_next_to_top_as_left_operand(operation, a, b, result):
    assert run(f"const64 {a}; const64 {b}; {operation}; end") == result


@pytest.mark.parametrize(("operation", "a", "result"), [
    ("log_not", 0, 1), ("log_not", 5, 0), ("bit_not", 0, MASK), ("bit_not", MASK, 0),
    ("ext 8", 0xFF, MASK), ("ext 8", 0x17F, 0x7F), ("ext 32", 0x80000000, 0xFFFFFFFF80000000),
    ("ext 64", 1 << 63, 1 << 63), ("ext 100", 0xFF, 0xFF),  # as wide as the stack: no effect
    ("zero_ext 8", 0x1FF, 0xFF), ("zero_ext 32", MASK, 0xFFFFFFFF), ("zero_ext 64", MASK, MASK),
    ("zero_ext 0", MASK, 0),
])  # fmt: skip
def test_unary_operations(operation, a, result):
    assert run(f"const64 {a}; {operation}; end") == result


@given(st.integers(-(1 << 63), (1 << 63) - 1), st.integers(-(1 << 63), (1 << 63) - 1))
def test_signed_division_is_cs(a: int, b: int) -> None:
    if b == 0:
        return
    quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
    assert signed(run(f"const64 {a}; const64 {b}; div_signed; end")) == signed(quotient & MASK)
    assert signed(run(f"const64 {a}; const64 {b}; rem_signed; end")) == a - quotient * b


def test_constants_are_big_endian_in_the_stream_and_not_sign_extended():
    assert evaluate(bytes.fromhex("22ff27"), Machine()) == 0xFF
    assert evaluate(bytes.fromhex("237a4427"), Machine()) == 31300
    assert evaluate(bytes.fromhex("248000000027"), Machine()) == 0x80000000
    assert evaluate(bytes.fromhex("250102030405060708" "27"), Machine()) == 0x0102030405060708
    assert run("const8 236; ext 8; end") == -20 & MASK  # how gdb writes a small negative


# Stack manipulation.

def test_dup_swap_pop_pick_rot():
    assert run("const8 3; dup; mul; end") == 9
    assert run("const8 10; const8 3; swap; sub; end") == -7 & MASK
    assert run("const8 1; const8 2; pop; end") == 1
    assert run("const8 7; const8 8; const8 9; pick 0; end") == 9
    assert run("const8 7; const8 8; const8 9; pick 2; end") == 7
    # rot: a b c => c a b
    abc = "const8 1; const8 2; const8 3; rot"
    assert [run(f"{abc}; {'pop; ' * n}end") for n in range(3)] == [2, 1, 3]


# Registers and memory.

def test_reg_pushes_a_register_by_gdbs_number():
    machine = Machine({6: 0x7FFE1000, 16: 0x401136})
    assert run("reg 16; zero_ext 64; end", machine) == 0x401136
    with pytest.raises(CannotEvaluate, match="no register 99"):
        run("reg 99; end", machine)


def test_refs_fetch_little_endian_values_at_any_alignment():
    memory = Machine(memory={GLOBALS: bytes.fromhex("feffffff447a0000" "0102030405060708")})
    assert run(f"const32 {GLOBALS}; ref32; ext 32; end", memory) == -2 & MASK
    assert run(f"const32 {GLOBALS + 4}; ref16; end", memory) == 31300
    assert run(f"const32 {GLOBALS + 3}; ref8; end", memory) == 0xFF
    assert run(f"const32 {GLOBALS + 5}; ref64; end", memory) == 0x050403020100007A
    assert memory.reads[-1] == (GLOBALS + 5, 8)


def test_gdbs_code_for_a_local_compared_with_a_constant():
    # `maint agent-eval i == 31300` for `volatile int i` at CFA-20, CFA = rbp+16.
    program = """reg 6; const8 16; add; const8 236; ext 8; add; ref32; ext 32
                 const16 31300; equal; end"""
    frame = 0x7FFE1000
    for value, expected in [(31300, 1), (31299, 0)]:
        stack = Machine({6: frame}, {frame - 4: value.to_bytes(4, "little")})
        assert run(program, stack) == expected


def test_gdbs_code_for_a_pointer_and_a_logical_and():
    # `maint agent-eval total > 5 && *cursor == 1` (long total; int *cursor).
    total, cursor, table = GLOBALS, GLOBALS + 8, GLOBALS + 16
    program = f"""const64 {total}; ref64; ext 64; const8 5; swap; less_signed; if_goto 22
                  goto 49
                  const64 {cursor}; ref64; ref32; ext 32; const8 1; equal; if_goto 44
                  goto 49
                  const8 1; goto 51
                  const8 0
                  end"""
    code = assemble(program)
    assert code[22] == OPCODES["const64"] and code[49] == OPCODES["const8"]

    def state(total_value: int, element: int) -> Machine:
        return Machine(memory={total: total_value.to_bytes(8, "little"),
                               cursor: table.to_bytes(8, "little"),
                               table: element.to_bytes(4, "little")})
    assert evaluate(code, state(6, 1)) == 1
    assert evaluate(code, state(5, 1)) == 0
    assert evaluate(code, state(6, 2)) == 0


# Jumps and the end.

def test_if_goto_jumps_to_an_offset_from_the_start_when_nonzero():
    program = "const8 {cond}; if_goto 8; const8 20; end; const8 30; end"
    code = assemble(program.format(cond=1))
    assert code[8:10] == bytes([OPCODES["const8"], 30])
    assert run(program.format(cond=1)) == 30
    assert run(program.format(cond=0)) == 20
    assert run("goto 6; const8 1; end; const8 2; end") == 2


def test_the_value_is_the_top_of_the_stack_at_end():
    assert run("const8 1; const8 2; end") == 2


# Trace state variables and the trace bytecodes.

def test_getv_and_setv_use_the_trace_state_variables_given():
    variables = {3: 41}
    assert run("getv 3; const8 1; add; setv 3; end", variables=variables) == 42
    assert variables == {3: 42}
    with pytest.raises(CannotEvaluate, match="no trace state variable 4"):
        run("getv 4; end", variables=variables)
    with pytest.raises(CannotEvaluate, match="no trace state variable 4"):
        run("const8 1; setv 4; end", variables=variables)


def test_trace_bytecodes_collect_nothing_and_keep_their_stack_effects():
    machine = Machine()
    assert run(f"const32 {GLOBALS}; const8 8; trace; const8 5; end", machine) == 5
    assert run(f"const32 {GLOBALS}; trace_quick 8; end", machine) == GLOBALS
    assert run(f"const32 {GLOBALS}; trace16 300; end", machine) == GLOBALS
    assert run(f"const8 9; const32 {GLOBALS}; const8 8; tracenz; end", machine) == 9
    assert run("const8 9; tracev 1; end", machine, variables={1: 0}) == 9
    assert machine.reads == []


# What cannot be evaluated.

@pytest.mark.parametrize(("program", "why"), [
    ("const8 1; const8 0; div_signed; end", "division by zero"),
    ("const8 1; const8 0; div_unsigned; end", "division by zero"),
    ("const8 1; const8 0; rem_signed; end", "division by zero"),
    ("const8 1; const8 0; rem_unsigned; end", "division by zero"),
    ("add; end", "stack underflow"),
    ("const8 1; add; end", "stack underflow"),
    ("end", "stack underflow"),
    ("const8 1; pick 1; end", "pick 1 with 1 elements"),
    ("const8 1; const8 2; rot; end", "stack underflow"),
    ("const8 1", "ends without `end`"),
    ("const8 1; ext 0; end", "ext 0"),
    ("goto 200; end", "jump to offset 200"),
    ("const8 1; if_goto 6; end", "jump to offset 6"),
    (f"const32 {GLOBALS + 0x1000}; ref8; end", "cannot read 1 bytes at 0x405000"),
    (f"const32 {GLOBALS + 6}; ref32; end", "cannot read 4 bytes at 0x404006"),  # half mapped
    ("const8 1; float; end", "float"),
    (f"const32 {GLOBALS}; ref_double; end", "ref_double"),
    ("const8 0; const8 0; printf; end", "printf"),
    ("const8 1; l_to_d; end", "l_to_d"),
])  # fmt: skip
def test_errors_terminate_the_evaluation(program, why):
    with pytest.raises(CannotEvaluate, match=why):
        run(program, Machine(memory={GLOBALS: bytes(8)}))


@pytest.mark.parametrize("code", [bytes([0x35]), bytes([0xFF]), bytes([0x00]), bytes([0x31]),
                                  bytes.fromhex("2301"), bytes.fromhex("2600"), b""])
def test_unknown_bytecodes_and_truncated_operands_cannot_be_evaluated(code):
    with pytest.raises(CannotEvaluate):
        evaluate(code, Machine())


def test_the_stack_and_the_running_time_are_bounded():
    with pytest.raises(CannotEvaluate, match="stack overflow"):
        evaluate(assemble("const8 1; dup; goto 2"), Machine())
    with pytest.raises(CannotEvaluate, match=f"after {MAX_EXECUTED} bytecodes"):
        evaluate(assemble("goto 0"), Machine())
    assert run("const8 1; " * (MAX_STACK - 1) + "end") == 1


@given(st.binary(max_size=64))
def test_any_bytes_evaluate_or_cannot_be_evaluated(code: bytes) -> None:
    machine = Machine({n: n * 0x1111 for n in range(24)}, {GLOBALS: bytes(range(64))})
    try:
        value = evaluate(code, machine, variables={0: 1})
    except CannotEvaluate:
        return
    assert 0 <= value <= MASK


# A breakpoint's conditions.

def test_a_breakpoint_stops_where_any_condition_holds_or_one_cannot_be_evaluated():
    is_7, is_9 = assemble("reg 0; const8 7; equal; end"), assemble("reg 0; const8 9; equal; end")
    broken = assemble("reg 0; const8 0; div_signed; end")
    either = Condition((is_7, is_9))
    assert [either.holds(Machine({0: v})) for v in (7, 8, 9)] == [True, False, True]
    assert Condition((broken, is_7)).holds(Machine({0: 7}))
    with pytest.raises(CannotEvaluate, match="division by zero"):  # a stop: gdb will decide
        Condition((is_7, broken)).holds(Machine({0: 8}))
    assert not Condition((assemble("const8 0; end"),)).holds(Machine())
