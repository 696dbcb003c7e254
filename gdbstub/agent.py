"""Breakpoint conditions evaluated in the server: gdb's agent expressions.

With `ConditionalBreakpoints+` in qSupported (and `set breakpoint
condition-evaluation target`, or `auto`), gdb compiles a breakpoint's
condition to agent-expression bytecode and sends it on the Z0/Z1 packet:
"Z0,addr,kind;X len,expr;X len,expr...", each `expr` the hex of `len` bytes
of bytecode (manual, "Packets"). The breakpoint stops the program where any
of its conditions is true; gdb then checks the condition again itself.

The bytecode is the stack machine of the manual's appendix "The GDB Agent
Expression Mechanism" ("Bytecode Descriptions"): 64-bit stack elements,
operands in the bytecode stream most significant byte first, jumps to
offsets from the start of the expression. This module is that machine, pure:
registers and memory come from a `Machine` the caller supplies, so it runs
without a process (and is tested without one).

Whatever the machine cannot evaluate "terminates with an error" (the
manual's words): `CannotEvaluate`. A breakpoint whose condition cannot be
evaluated stops: gdb evaluates the condition of every breakpoint it is told
of again itself, so it goes on where the condition is false and says what went
wrong where it cannot evaluate it either. The server never hides a stop it is
unsure of.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Protocol

WIDTH = 64
MASK = (1 << WIDTH) - 1
SIGN = 1 << (WIDTH - 1)
MAX_STACK = 1024  # elements; gdb's own compiler checks depth against far less
# Jumps may go backwards, so a bytecode can loop: give up after this many
# bytecodes executed (gdb's conditions run a few dozen).
MAX_EXECUTED = 100_000

_CONDITION_LENGTH = re.compile(rb"X([0-9a-fA-F]+),")


class CannotEvaluate(Exception):
    """The condition cannot be evaluated here (the message says why and where)."""


class MalformedCondition(ValueError):
    """A condition list on a Z packet that does not parse."""


class Machine(Protocol):
    """The stopped program a condition looks at."""

    def register(self, number: int) -> int:
        """gdb's register ``number`` (the remote numbering of the target
        description) as an unsigned int; IndexError if there is none."""
        ...

    def read_memory(self, addr: int, length: int) -> bytes:
        """``length`` bytes at ``addr``; OSError (or fewer bytes) where unreadable."""
        ...


def _signed(value: int) -> int:
    return value - (1 << WIDTH) if value & SIGN else value


def _truncated_division(a: int, b: int) -> tuple[int, int]:
    """C's / and % (quotient rounded toward zero), on signed values."""
    quotient = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        quotient = -quotient
    return quotient, a - quotient * b


def evaluate(bytecode: bytes, machine: Machine,
             variables: MutableMapping[int, int] | None = None) -> int:
    """The value an agent expression leaves on top of the stack at `end`, unsigned.

    ``variables`` are the trace state variables getv/setv/tracev name; one
    not in it cannot be evaluated (they exist only in a trace experiment,
    which gdb sets up with QTDV).
    """
    known: MutableMapping[int, int] = variables if variables is not None else {}
    stack: list[int] = []
    pc = 0
    executed = 0
    size = len(bytecode)

    def fail(why: str) -> CannotEvaluate:
        return CannotEvaluate(f"{why} (bytecode offset {start})")

    def operand(width: int) -> int:
        nonlocal pc
        if pc + width > size:
            raise fail("the expression ends inside an operand")
        value = int.from_bytes(bytecode[pc:pc + width], "big")
        pc += width
        return value

    def pop() -> int:
        if not stack:
            raise fail("stack underflow")
        return stack.pop()

    def push(value: int) -> None:
        if len(stack) >= MAX_STACK:
            raise fail("stack overflow")
        stack.append(value & MASK)

    def jump(offset: int) -> None:
        nonlocal pc
        if offset >= size:
            raise fail(f"jump to offset {offset}, past the expression's {size} bytes")
        pc = offset

    def variable(number: int) -> int:
        if number not in known:
            raise fail(f"no trace state variable {number}")
        return known[number]

    def fetch(addr: int, length: int) -> int:
        try:
            data = machine.read_memory(addr, length)
        except OSError as error:
            raise fail(f"cannot read {length} bytes at {addr:#x}: {error}") from None
        if len(data) < length:
            raise fail(f"cannot read {length} bytes at {addr:#x}")
        return int.from_bytes(data[:length], "little")

    while True:
        if pc >= size:
            raise CannotEvaluate("the expression ends without `end`")
        executed += 1
        if executed > MAX_EXECUTED:
            raise CannotEvaluate(f"still running after {MAX_EXECUTED} bytecodes (a loop?)")
        start = pc
        op = bytecode[pc]
        pc += 1
        binary = _BINARY.get(op)
        if binary is not None:
            b, a = pop(), pop()
            push(binary(a, b, fail))
        elif op == 0x0E:  # log_not
            push(int(pop() == 0))
        elif op == 0x12:  # bit_not
            push(~pop())
        elif op == 0x16:  # ext n: sign-extend from n bits (n >= 64: no effect)
            bits = operand(1)
            value = pop()
            if bits == 0:
                raise fail("ext 0")
            if bits < WIDTH:
                value &= (1 << bits) - 1
                value -= (value & (1 << (bits - 1))) << 1
            push(value)
        elif op == 0x2A:  # zero_ext n: keep the low n bits
            bits = operand(1)
            push(pop() & ((1 << bits) - 1))
        elif op in _REFERENCES:
            push(fetch(pop(), _REFERENCES[op]))
        elif op == 0x28:  # dup
            value = pop()
            push(value)
            push(value)
        elif op == 0x29:  # pop
            pop()
        elif op == 0x2B:  # swap
            b, a = pop(), pop()
            push(b)
            push(a)
        elif op == 0x32:  # pick n: copy the n-th element below the top
            depth = operand(1)
            if depth >= len(stack):
                raise fail(f"pick {depth} with {len(stack)} elements on the stack")
            push(stack[-1 - depth])
        elif op == 0x33:  # rot: a b c => c a b
            c, b, a = pop(), pop(), pop()
            push(c)
            push(a)
            push(b)
        elif op == 0x20:  # if_goto offset
            offset = operand(2)
            if pop():
                jump(offset)
        elif op == 0x21:  # goto offset
            jump(operand(2))
        elif op in _CONSTANTS:
            push(operand(_CONSTANTS[op]))
        elif op == 0x26:  # reg n
            number = operand(2)
            try:
                push(machine.register(number))
            except IndexError:
                raise fail(f"no register {number}") from None
        elif op == 0x2C:  # getv n
            push(variable(operand(2)))
        elif op == 0x2D:  # setv n: the value stays on the stack
            number = operand(2)
            variable(number)
            value = pop()
            known[number] = value
            push(value)
        # Trace bytecodes record memory for a tracepoint's collection; a
        # condition collects nothing, so they only take their operands.
        elif op == 0x0C:  # trace: addr size =>
            pop()
            pop()
        elif op == 0x0D:  # trace_quick size: addr => addr
            operand(1)
            push(pop())
        elif op == 0x30:  # trace16 size: addr => addr
            operand(2)
            push(pop())
        elif op == 0x2F:  # tracenz: addr size =>
            pop()
            pop()
        elif op == 0x2E:  # tracev n
            variable(operand(2))
        elif op == 0x27:  # end
            return pop()
        elif op in _UNIMPLEMENTED:
            raise fail(f"{_UNIMPLEMENTED[op]} (0x{op:02x}) is not supported")
        else:
            raise fail(f"unknown bytecode 0x{op:02x}")


_Fail = Callable[[str], CannotEvaluate]


def _divide(signed: bool, remainder: bool) -> Callable[[int, int, _Fail], int]:
    def divide(a: int, b: int, fail: _Fail) -> int:
        if b == 0:
            raise fail("division by zero")
        if signed:
            quotient, rest = _truncated_division(_signed(a), _signed(b))
        else:
            quotient, rest = divmod(a, b)
        return rest if remainder else quotient
    return divide


def _shift_right_signed(a: int, b: int, fail: _Fail) -> int:
    return _signed(a) >> min(b, WIDTH)


_BINARY: dict[int, Callable[[int, int, _Fail], int]] = {
    0x02: lambda a, b, fail: a + b,  # add
    0x03: lambda a, b, fail: a - b,  # sub
    0x04: lambda a, b, fail: a * b,  # mul
    0x05: _divide(signed=True, remainder=False),  # div_signed
    0x06: _divide(signed=False, remainder=False),  # div_unsigned
    0x07: _divide(signed=True, remainder=True),  # rem_signed
    0x08: _divide(signed=False, remainder=True),  # rem_unsigned
    0x09: lambda a, b, fail: a << b if b < WIDTH else 0,  # lsh
    0x0A: _shift_right_signed,  # rsh_signed
    0x0B: lambda a, b, fail: a >> b,  # rsh_unsigned
    0x0F: lambda a, b, fail: a & b,  # bit_and
    0x10: lambda a, b, fail: a | b,  # bit_or
    0x11: lambda a, b, fail: a ^ b,  # bit_xor
    0x13: lambda a, b, fail: int(a == b),  # equal
    0x14: lambda a, b, fail: int(_signed(a) < _signed(b)),  # less_signed
    0x15: lambda a, b, fail: int(a < b),  # less_unsigned
}
_REFERENCES = {0x17: 1, 0x18: 2, 0x19: 4, 0x1A: 8}  # ref8 .. ref64: bytes fetched
_CONSTANTS = {0x22: 1, 0x23: 2, 0x24: 4, 0x25: 8}  # const8 .. const64: operand bytes
_UNIMPLEMENTED = {
    0x01: "float", 0x1B: "ref_float", 0x1C: "ref_double", 0x1D: "ref_long_double",
    0x1E: "l_to_d", 0x1F: "d_to_l",
    0x34: "printf",  # an action (dprintf), not a condition's business
}  # fmt: skip


@dataclass(frozen=True)
class Condition:
    """The conditions gdb gave one breakpoint: it stops where any of them is
    true, or where one cannot be evaluated (gdb then decides)."""

    expressions: tuple[bytes, ...]

    def holds(self, machine: Machine) -> bool:
        """Whether any of the conditions is true. CannotEvaluate (the first failure)
        when none is and one cannot be evaluated: the breakpoint stops there, for gdb
        to decide."""
        failure: CannotEvaluate | None = None
        for expression in self.expressions:
            try:
                if evaluate(expression, machine):
                    return True
            except CannotEvaluate as error:
                failure = failure or error
        if failure is not None:
            raise failure
        return False


def parse_conditions(fields: list[bytes]) -> Condition | None:
    """The condition of a Z packet's fields after "type,addr,kind" (split at ';').

    Each condition is `X len,expr`; gdb writes them one after another in one
    field (their lengths delimit them), and a field of its own each is read
    too. `cmds:...` (breakpoint commands, which we do not advertise) ends the
    list. None: no condition, stop at every hit."""
    expressions = []
    for field in fields:
        if field.startswith(b"cmds:"):
            break
        if not field:
            raise MalformedCondition("an empty condition")
        at = 0
        while at < len(field):
            match = _CONDITION_LENGTH.match(field, at)
            if match is None:
                raise MalformedCondition(f"not a condition: {field[at:at + 32]!r}")
            length = int(match[1], 16)
            text = field[match.end():match.end() + 2 * length]
            if len(text) != 2 * length:
                raise MalformedCondition(f"a condition of {length} bytes has {len(text)} "
                                         "hex digits")
            try:
                expressions.append(binascii.unhexlify(text))
            except binascii.Error:
                raise MalformedCondition(f"not hex: {text[:32]!r}") from None
            at = match.end() + 2 * length
    return Condition(tuple(expressions)) if expressions else None
