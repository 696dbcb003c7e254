"""Register blocks of an x86-64 task.

General registers are python-ptrace's ``user_regs_struct`` (the kernel's
PTRACE_GETREGS layout); the extended state is the raw XSAVE area that
PTRACE_GETREGSET(NT_X86_XSTATE) returns. Both are kept as the kernel's bytes in
traces, so that a value recorded once is handed back to the kernel unchanged.
"""

from __future__ import annotations

from typing import TypeAlias

from ptrace.binding.linux_struct import user_regs_struct

Registers: TypeAlias = user_regs_struct

# The order of user_regs_struct, as in <sys/user.h>.
REGISTER_NAMES: tuple[str, ...] = tuple(name for name, _ in user_regs_struct._fields_)
SYSCALL_ARG_REGISTERS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")


def registers_from_bytes(raw: bytes) -> Registers:
    return user_regs_struct.from_buffer_copy(raw)


def registers_to_bytes(regs: Registers) -> bytes:
    return bytes(regs)


def syscall_args(regs: Registers) -> tuple[int, ...]:
    return tuple(getattr(regs, name) for name in SYSCALL_ARG_REGISTERS)


def signed(value: int) -> int:
    """A 64-bit register value as the signed integer the kernel meant."""
    return value - (1 << 64) if value & (1 << 63) else value


def describe_difference(a: Registers, b: Registers) -> str:
    diffs = [f"{n}={getattr(a, n):#x}/{getattr(b, n):#x}" for n in REGISTER_NAMES
             if getattr(a, n) != getattr(b, n)]
    return ", ".join(diffs) or "identical"
