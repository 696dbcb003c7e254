"""The amd64 register set gdb sees: its target description and its values.

gdb learns the registers from the XML target description we serve
(qXfer:features:read:target.xml). It finds registers by feature and name
(org.gnu.gdb.i386.core must hold rax..fop, .sse the xmm registers and mxcsr,
.linux orig_rax, .segments fs_base/gs_base, .avx the upper halves ymm0h..ymm15h,
from which it builds ymm0..15 itself), and numbers them in document order.
Those numbers are what `p` asks for and the order of the `g` reply, so this
module derives the XML, `g` and `p` from one table, `REGISTERS`.

Values come from two raw kernel blocks:
- user_regs_struct (PTRACE_GETREGS, arch/x86/include/asm/user_64.h): 27 longs,
  r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs
  eflags rsp ss fs_base gs_base ds es fs gs.
- the XSAVE area (PTRACE_GETREGSET NT_X86_XSTATE) in the standard (uncompacted)
  format: the FXSAVE64 region at 0 (Intel SDM vol. 1, 10.5.1, table 10-2), the
  XSAVE header at 512, the YMM upper halves at 576. The kernel fills components
  in their initial state with initial values, so every field can be read as is.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

# struct user_regs_struct: 27 unsigned longs, in this order.
USER_REGS_FIELDS = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
    "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base",
    "ds", "es", "fs", "gs",
]  # fmt: skip
USER_REGS_SIZE = 8 * len(USER_REGS_FIELDS)
_YMMH_OFFSET = 576
XSTATE_SIZE = _YMMH_OFFSET + 16 * 16  # legacy region, header, AVX

Extract = Callable[[bytes, bytes], bytes]


@dataclass(frozen=True)
class Register:
    name: str
    bitsize: int
    type: str
    feature: str
    extract: Extract  # (user_regs_struct, xsave area) -> little-endian value
    group: str | None = None


def _user(name: str, size: int = 8) -> Extract:
    """A user_regs_struct slot; segment selectors and eflags are longs there but
    32-bit registers for gdb, so keep their low bytes."""
    offset = USER_REGS_FIELDS.index(name) * 8

    def extract(regs: bytes, xstate: bytes) -> bytes:
        return regs[offset : offset + size]

    extract.general = True  # type: ignore[attr-defined]
    return extract


def is_general(register: Register) -> bool:
    """Whether ``register`` is read from user_regs_struct alone (no XSAVE area)."""
    return getattr(register.extract, "general", False)


def _xsave(offset: int, size: int) -> Extract:
    return lambda regs, xstate: xstate[offset : offset + size]


def _xsave_u16(offset: int, mask: int = 0xFFFF) -> Extract:
    """A 16-bit FXSAVE field widened to gdb's 32-bit x87 control registers."""
    return lambda regs, xstate: struct.pack(
        "<I", struct.unpack_from("<H", xstate, offset)[0] & mask
    )


def _full_tag_word(regs: bytes, xstate: bytes) -> bytes:
    """gdb's ftag is the x87 tag word (2 bits per physical register: 0 valid,
    1 zero, 2 special, 3 empty); FXSAVE keeps only the abridged form (1 bit per
    register: not empty), so classify each non-empty register by its contents,
    as FSAVE would (Intel SDM vol. 1, 8.1.7). The stack slots st0..st7 hold
    physical registers TOP, TOP+1, ..., with TOP in bits 11-13 of the status word.
    """
    status, abridged = struct.unpack_from("<HB", xstate, 2)
    top = (status >> 11) & 7
    tags = 0
    for physical in range(8):
        if not abridged & (1 << physical):
            tag = 3
        else:
            mantissa, exponent = struct.unpack_from("<QH", xstate, 32 + 16 * ((physical - top) & 7))
            exponent &= 0x7FFF
            if exponent == 0x7FFF:
                tag = 2  # infinity or NaN
            elif exponent == 0:
                tag = 1 if mantissa == 0 else 2  # zero, or denormal
            else:
                tag = 0 if mantissa >> 63 else 2  # normal, or unnormal
        tags |= tag << (2 * physical)
    return struct.pack("<I", tags)


_CORE = "org.gnu.gdb.i386.core"
_SSE = "org.gnu.gdb.i386.sse"
_LINUX = "org.gnu.gdb.i386.linux"
_SEGMENTS = "org.gnu.gdb.i386.segments"
_AVX = "org.gnu.gdb.i386.avx"

_GENERAL = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp"] + [
    f"r{n}" for n in range(8, 16)
]
_POINTERS = {"rbp": "data_ptr", "rsp": "data_ptr"}
_SEGMENT_SELECTORS = ["cs", "ss", "ds", "es", "fs", "gs"]

# 64-bit FXSAVE: FIP is the quadword at 8 and FDP the one at 16; gdb's amd64
# fioff/fiseg and fooff/foseg are their low and high halves.
REGISTERS: tuple[Register, ...] = (
    *(Register(name, 64, _POINTERS.get(name, "int64"), _CORE, _user(name)) for name in _GENERAL),
    Register("rip", 64, "code_ptr", _CORE, _user("rip")),
    Register("eflags", 32, "i386_eflags", _CORE, _user("eflags", 4)),
    *(Register(name, 32, "int32", _CORE, _user(name, 4)) for name in _SEGMENT_SELECTORS),
    *(Register(f"st{n}", 80, "i387_ext", _CORE, _xsave(32 + 16 * n, 10)) for n in range(8)),
    Register("fctrl", 32, "int", _CORE, _xsave_u16(0), "float"),
    Register("fstat", 32, "int", _CORE, _xsave_u16(2), "float"),
    Register("ftag", 32, "int", _CORE, _full_tag_word, "float"),
    Register("fiseg", 32, "int", _CORE, _xsave(12, 4), "float"),
    Register("fioff", 32, "int", _CORE, _xsave(8, 4), "float"),
    Register("foseg", 32, "int", _CORE, _xsave(20, 4), "float"),
    Register("fooff", 32, "int", _CORE, _xsave(16, 4), "float"),
    Register("fop", 32, "int", _CORE, _xsave_u16(6, 0x7FF), "float"),  # an 11-bit opcode
    *(Register(f"xmm{n}", 128, "vec128", _SSE, _xsave(160 + 16 * n, 16)) for n in range(16)),
    Register("mxcsr", 32, "i386_mxcsr", _SSE, _xsave(24, 4), "vector"),
    Register("orig_rax", 64, "int", _LINUX, _user("orig_rax")),
    Register("fs_base", 64, "int", _SEGMENTS, _user("fs_base")),
    Register("gs_base", 64, "int", _SEGMENTS, _user("gs_base")),
    *(
        Register(f"ymm{n}h", 128, "uint128", _AVX, _xsave(_YMMH_OFFSET + 16 * n, 16))
        for n in range(16)
    ),
)

REGISTER_NUMBERS = {register.name: number for number, register in enumerate(REGISTERS)}

# Types the registers above refer to, per feature (gdb's predefined types are
# int8..int128, uint*, code_ptr, data_ptr, ieee_single/double, i387_ext).
_FEATURE_TYPES = {
    _CORE: """
    <flags id="i386_eflags" size="4">
      <field name="CF" start="0" end="0"/>
      <field name="" start="1" end="1"/>
      <field name="PF" start="2" end="2"/>
      <field name="AF" start="4" end="4"/>
      <field name="ZF" start="6" end="6"/>
      <field name="SF" start="7" end="7"/>
      <field name="TF" start="8" end="8"/>
      <field name="IF" start="9" end="9"/>
      <field name="DF" start="10" end="10"/>
      <field name="OF" start="11" end="11"/>
      <field name="NT" start="14" end="14"/>
      <field name="RF" start="16" end="16"/>
      <field name="VM" start="17" end="17"/>
      <field name="AC" start="18" end="18"/>
      <field name="VIF" start="19" end="19"/>
      <field name="VIP" start="20" end="20"/>
      <field name="ID" start="21" end="21"/>
    </flags>""",
    _SSE: """
    <vector id="v4f" type="ieee_single" count="4"/>
    <vector id="v2d" type="ieee_double" count="2"/>
    <vector id="v16i8" type="int8" count="16"/>
    <vector id="v8i16" type="int16" count="8"/>
    <vector id="v4i32" type="int32" count="4"/>
    <vector id="v2i64" type="int64" count="2"/>
    <union id="vec128">
      <field name="v4_float" type="v4f"/>
      <field name="v2_double" type="v2d"/>
      <field name="v16_int8" type="v16i8"/>
      <field name="v8_int16" type="v8i16"/>
      <field name="v4_int32" type="v4i32"/>
      <field name="v2_int64" type="v2i64"/>
      <field name="uint128" type="uint128"/>
    </union>
    <flags id="i386_mxcsr" size="4">
      <field name="IE" start="0" end="0"/>
      <field name="DE" start="1" end="1"/>
      <field name="ZE" start="2" end="2"/>
      <field name="OE" start="3" end="3"/>
      <field name="UE" start="4" end="4"/>
      <field name="PE" start="5" end="5"/>
      <field name="DAZ" start="6" end="6"/>
      <field name="IM" start="7" end="7"/>
      <field name="DM" start="8" end="8"/>
      <field name="ZM" start="9" end="9"/>
      <field name="OM" start="10" end="10"/>
      <field name="UM" start="11" end="11"/>
      <field name="PM" start="12" end="12"/>
      <field name="FZ" start="15" end="15"/>
    </flags>""",
}


def _target_xml() -> bytes:
    features = []
    for feature in dict.fromkeys(register.feature for register in REGISTERS):
        lines = [f'  <feature name="{feature}">{_FEATURE_TYPES.get(feature, "")}']
        for number, register in enumerate(REGISTERS):
            if register.feature == feature:
                group = f' group="{register.group}"' if register.group else ""
                lines.append(
                    f'    <reg name="{register.name}" bitsize="{register.bitsize}"'
                    f' type="{register.type}" regnum="{number}"{group}/>'
                )
        lines.append("  </feature>")
        features.append("\n".join(lines))
    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE target SYSTEM "gdb-target.dtd">\n'
        "<target>\n"
        "  <architecture>i386:x86-64</architecture>\n"
        "  <osabi>GNU/Linux</osabi>\n" + "\n".join(features) + "\n</target>\n"
    ).encode()


# The one document served as qXfer:features:read:target.xml.
TARGET_XML = _target_xml()


def register_values(regs: bytes, xstate: bytes) -> list[bytes]:
    """Every register's raw value, in gdb's numbering."""
    if len(regs) != USER_REGS_SIZE:
        raise ValueError(f"user_regs_struct is {USER_REGS_SIZE} bytes, not {len(regs)}")
    # Without AVX (an XSAVE area of 576 bytes) the upper halves read as zero.
    xstate = xstate.ljust(XSTATE_SIZE, b"\0")
    return [register.extract(regs, xstate) for register in REGISTERS]


def g_packet(regs: bytes, xstate: bytes) -> bytes:
    """The reply to `g`: all registers, hex, in number order."""
    return b"".join(register_values(regs, xstate)).hex().encode()


def read_register(number: int, regs: bytes, xstate: bytes) -> bytes:
    """Register `number`'s raw value (the `p` reply is its hex); IndexError if unknown."""
    if not 0 <= number < len(REGISTERS):
        raise IndexError(f"no register number {number}")
    return register_values(regs, xstate)[number]
