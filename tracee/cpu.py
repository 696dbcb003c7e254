"""Instructions Python cannot execute itself: rdtsc, rdtscp, cpuid; and rdrand, rdseed.

The recorder needs the real time-stamp counter to emulate a trapped rdtsc
(PR_TSC_SIGSEGV) and the CPUID leaves to store in the trace metadata (this CPU
cannot fault cpuid, so replay can only warn when they differ). Each is a few
bytes of machine code in an executable anonymous mapping, called via ctypes.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import re
from dataclasses import dataclass
from typing import Any

import capstone

_CODE = {
    # rdtsc; shl rdx, 32; or rax, rdx; ret
    "rdtsc": bytes.fromhex("0f31 48c1e220 4809d0 c3"),
    # rdtscp; mov [rdi], ecx; shl rdx, 32; or rax, rdx; ret
    "rdtscp": bytes.fromhex("0f01f9 890f 48c1e220 4809d0 c3"),
    # push rbx; mov eax, edi; mov ecx, esi; mov r8, rdx; cpuid;
    # mov [r8], eax; mov [r8+4], ebx; mov [r8+8], ecx; mov [r8+12], edx; pop rbx; ret
    "cpuid": bytes.fromhex("53 89f8 89f1 4989d0 0fa2 418900 41895804 41894808 4189500c 5b c3"),
    # rdrand rax; setc [rdi]; ret  (and the same with rdseed)
    "rdrand": bytes.fromhex("480fc7f0 0f9207 c3"),
    "rdseed": bytes.fromhex("480fc7f8 0f9207 c3"),
}

_page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
_addresses: dict[str, int] = {}
_offset = 0
for _name, _code in _CODE.items():
    _page[_offset:_offset + len(_code)] = _code
    _addresses[_name] = ctypes.addressof(ctypes.c_char.from_buffer(_page, _offset))
    _offset += 64

_rdtsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(_addresses["rdtsc"])
_rdtscp = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint32))(_addresses["rdtscp"])
_cpuid = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32,
                          ctypes.POINTER(ctypes.c_uint32 * 4))(_addresses["cpuid"])


_random = {name: ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint8))(
    _addresses[name]) for name in ("rdrand", "rdseed")}


def rdtsc() -> int:
    return _rdtsc()


def rdtscp() -> tuple[int, int]:
    """(TSC, TSC_AUX)."""
    aux = ctypes.c_uint32()
    value = _rdtscp(ctypes.byref(aux))
    return value, aux.value


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    out = (ctypes.c_uint32 * 4)()
    _cpuid(leaf, subleaf, ctypes.byref(out))
    return tuple(out)  # type: ignore[return-value]


@functools.cache
def xsave_size() -> int:
    """The size of the XSAVE area for every state component this CPU supports
    (CPUID.0DH.0:ECX), which bounds what PTRACE_GETREGSET gives for NT_X86_XSTATE."""
    return max(cpuid(0xD, 0)[2], 4096)


@functools.cache
def xsave_components() -> tuple[tuple[int, int, int], ...]:
    """(bit, offset, size) of each user state component past x87 and SSE in the
    standard XSAVE layout a signal frame uses (CPUID.0DH.i: EAX size, EBX offset;
    ECX bit 0 marks supervisor components, which a frame never holds)."""
    supported = cpuid(0xD, 0)[0] | cpuid(0xD, 0)[3] << 32
    components = []
    for bit in range(2, 64):
        if supported & (1 << bit):
            size, offset, flags, _ = cpuid(0xD, bit)
            if size and not flags & 1:
                components.append((bit, offset, size))
    return tuple(components)


def cpuid_leaves() -> dict[str, list[int]]:
    """The leaves that describe features a program may test, keyed "leaf.subleaf"."""
    leaves: dict[str, list[int]] = {}
    max_basic = cpuid(0)[0]
    for leaf, subleaves in ((0, 1), (1, 1), (7, 2), (0xD, 2), (0x14, 1), (0x19, 1)):
        if leaf <= max_basic:
            for sub in range(subleaves):
                leaves[f"{leaf:#x}.{sub}"] = list(cpuid(leaf, sub))
    max_ext = cpuid(0x80000000)[0]
    for leaf in (0x80000000, 0x80000001, 0x80000007, 0x80000008):
        if leaf <= max_ext:
            leaves[f"{leaf:#x}.0"] = list(cpuid(leaf))
    return leaves


# Bits that name the CPU the process happens to run on, not what it can do: leaf 1's
# EBX[31:24] is the initial APIC id, different on every core of one machine.
_PER_CORE_BITS = {"0x1.0": (0, 0xFF00_0000, 0, 0)}
_REGISTERS = ("eax", "ebx", "ecx", "edx")


def cpuid_differences(recorded: dict[str, list[int]],
                      here: dict[str, list[int]] | None = None) -> list[str]:
    """The leaves in which this CPU (or ``here``) differs from the recorded ones.

    Each as "LEAF REG here VALUE, recorded VALUE". A leaf one side lacks is a
    difference too; a leaf the recording did not keep is not compared.
    """
    here = cpuid_leaves() if here is None else here
    out = []
    for leaf, values in recorded.items():
        mask = _PER_CORE_BITS.get(leaf, (0, 0, 0, 0))
        mine = here.get(leaf)
        if mine is None:
            out.append(f"{leaf} missing here")
            continue
        for reg, old, new, ignored in zip(_REGISTERS, values, mine, mask):
            if (old ^ new) & ~ignored:
                out.append(f"{leaf} {reg} here {new:#x}, recorded {old:#x}")
    return out


def cpuid_warning(recorded: object) -> str | None:
    """One line for the user when the replay's CPU is not the recording's, else None.

    cpuid cannot be trapped here, so a program (glibc's ifuncs above all) that reads
    it picks code paths by what this CPU has, and may take other ones than recorded.
    """
    if not isinstance(recorded, dict) or not all(
            isinstance(v, list) and len(v) == 4 and all(isinstance(x, int) for x in v)
            for v in recorded.values()):
        return None
    differences = cpuid_differences(recorded)
    if not differences:
        return None
    more = f" and {len(differences) - 1} more" if len(differences) > 1 else ""
    return (f"warning: this CPU is not the recording's (CPUID {differences[0]}{more}): a "
            "program that chooses code by CPU features may diverge")


def replay_cpu(recorded: object) -> tuple[int, str | None]:
    """The CPU to replay on, the one the trace was recorded on where this process may
    use it, and one line for the user when it may not (else None).

    ld.so keeps the CPU's APIC id (cpuid leaf 1, EBX) in memory, and cpuid cannot be
    trapped here: on another CPU the memory differs, so no state of the recording is
    ever matched, and signals inside long loops are reached by restoring the state.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if recorded in allowed or not isinstance(recorded, int):
        return (recorded if isinstance(recorded, int) else allowed[-1]), None
    return allowed[-1], (f"warning: the trace was recorded on CPU {recorded}, which this "
                         f"replay may not use (it may use {','.join(map(str, allowed))}): "
                         "signals inside long loops will be reached by restoring their "
                         f"state; replay where CPU {recorded} is free to use")


# rdrand and rdseed are 0F C7 with a register ModRM (mod 11) and reg 6 or 7, after
# optional operand-size (66) and REX prefixes. Without CPUID faulting they cannot be
# trapped, so their results are not in a trace; finding them in the code is how a
# divergence they caused can at least be named.
_RANDOM_CANDIDATE = re.compile(rb"\x0f\xc7[\xf0-\xff]")
_decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def has_random_instructions() -> bool:
    """Whether this CPU has rdrand or rdseed (CPUID.1:ECX[30], CPUID.7.0:EBX[18])."""
    if cpuid(1)[2] >> 30 & 1:
        return True
    return cpuid(0)[0] >= 7 and bool(cpuid(7)[1] >> 18 & 1)


def find_random_instructions(code: bytes, base: int) -> list[tuple[int, str]]:
    """(address, "rdrand"/"rdseed") of each place in ``code`` (loaded at ``base``)
    that decodes as one, prefixes included. Bytes inside another instruction or in
    data can look the same: these are candidates, not proof that one ran."""
    found = []
    for match in _RANDOM_CANDIDATE.finditer(code):
        at = match.start()
        while at > 0 and match.start() - at < 2 and (code[at - 1] == 0x66
                                                     or 0x40 <= code[at - 1] <= 0x4F):
            at -= 1
        insn = next(_decoder.disasm(code[at:match.end()], base + at, 1), None)
        if insn is not None and insn.mnemonic in ("rdrand", "rdseed") \
                and insn.size == match.end() - at:
            found.append((base + at, insn.mnemonic))
    return found


def random_value(mnemonic: str) -> tuple[int, bool]:
    """(value, carry) of one rdrand or rdseed here: carry clear means none was ready."""
    carry = ctypes.c_uint8()
    value = _random[mnemonic](ctypes.byref(carry))
    return value, bool(carry.value)


@dataclass(frozen=True)
class RandomInstruction:
    """One decoded rdrand/rdseed: which, into which register, how wide, how long."""

    mnemonic: str
    register: str  # the 64-bit register: "rax", "r8", ...
    bits: int  # 16, 32 or 64
    length: int


_GENERAL = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp")
_WIDTHS = {**{r: (r, 64) for r in _GENERAL}, **{"e" + r[1:]: (r, 32) for r in _GENERAL},
           **{r[1:]: (r, 16) for r in _GENERAL}}
for _n in range(8, 16):
    _WIDTHS |= {f"r{_n}": (f"r{_n}", 64), f"r{_n}d": (f"r{_n}", 32), f"r{_n}w": (f"r{_n}", 16)}
# OF, SF, ZF, AF, PF, CF: rdrand and rdseed clear all but CF, which says success.
_ARITHMETIC_FLAGS = 0x800 | 0x80 | 0x40 | 0x10 | 0x4 | 0x1


def decode_random(code: bytes) -> RandomInstruction | None:
    """The rdrand/rdseed ``code`` starts with, or None."""
    insn = next(_decoder.disasm(code[:15], 0, 1), None)
    if insn is None or insn.mnemonic not in ("rdrand", "rdseed") or insn.op_str not in _WIDTHS:
        return None
    register, bits = _WIDTHS[insn.op_str]
    return RandomInstruction(insn.mnemonic, register, bits, insn.size)


def apply_random(regs: Any, insn: RandomInstruction, value: int, carry: bool) -> None:
    """Put what ``insn`` produced into ``regs`` as the CPU would, and step past it.

    A 32-bit destination clears the upper half, a 16-bit one keeps it (as every
    x86-64 instruction does); with carry clear the destination is zero.
    """
    value = value if carry else 0
    old = getattr(regs, insn.register)
    if insn.bits == 64:
        new = value & 0xFFFF_FFFF_FFFF_FFFF
    elif insn.bits == 32:
        new = value & 0xFFFF_FFFF
    else:
        new = old & ~0xFFFF | value & 0xFFFF
    setattr(regs, insn.register, new)
    regs.eflags = regs.eflags & ~_ARITHMETIC_FLAGS | (1 if carry else 0)
    regs.rip += insn.length


def decode_rdtsc(code: bytes) -> tuple[str, int] | None:
    """('rdtsc', 2) or ('rdtscp', 3) when ``code`` starts with one of them."""
    if code[:2] == b"\x0f\x31":
        return "rdtsc", 2
    if code[:3] == b"\x0f\x01\xf9":
        return "rdtscp", 3
    return None
