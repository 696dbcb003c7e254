"""Turn the vDSO's time functions into real syscalls.

The vDSO reads the clock from a shared page without entering the kernel, so
ptrace never sees those reads. After every exec the recorder overwrites each
such function's first bytes with ``mov eax, NR; syscall; ret``: the arguments
are already where the syscall ABI wants them (rdi, rsi, rdx for all of these),
and the time reads become recorded, replayable syscalls. Replay maps the
patched copy, so it never needs the clock page.
"""

from __future__ import annotations

import io
import struct
from typing import TYPE_CHECKING

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

if TYPE_CHECKING:
    from .process import Tracee

# vDSO function -> syscall number (x86-64).
PATCHED_FUNCTIONS = {
    "clock_gettime": 228,
    "gettimeofday": 96,
    "time": 201,
    "getcpu": 309,
    "clock_getres": 229,
}


def vdso_function_addresses(image: bytes, base: int) -> dict[str, int]:
    """Addresses of the patchable functions in a vDSO image mapped at ``base``."""
    elf = ELFFile(io.BytesIO(image))
    symtab = elf.get_section_by_name(".dynsym")
    found: dict[str, int] = {}
    if not isinstance(symtab, SymbolTableSection):
        return found
    # The vDSO is linked at address 0 (its symbols are offsets), but be robust to
    # a non-zero link address by going through the first PT_LOAD.
    load = next(seg for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD")
    bias = base - load["p_vaddr"]
    for sym in symtab.iter_symbols():
        name = sym.name.removeprefix("__vdso_")
        if name in PATCHED_FUNCTIONS and sym["st_info"]["type"] == "STT_FUNC":
            found[name] = bias + sym["st_value"]
    return found


def patch_vdso(tracee: Tracee, start: int, end: int) -> dict[str, int]:
    """Patch the vDSO at [start, end) in ``tracee``; returns what was patched."""
    image = tracee.read(start, end - start)
    addresses = vdso_function_addresses(image, start)
    for name, addr in addresses.items():
        tracee.write(addr, b"\xb8" + struct.pack("<I", PATCHED_FUNCTIONS[name]) + b"\x0f\x05\xc3")
    return addresses
