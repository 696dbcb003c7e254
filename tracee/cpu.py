"""Instructions Python cannot execute itself: rdtsc, rdtscp, cpuid.

The recorder needs the real time-stamp counter to emulate a trapped rdtsc
(PR_TSC_SIGSEGV) and the CPUID leaves to store in the trace metadata (this CPU
cannot fault cpuid, so replay can only warn when they differ). Each is a few
bytes of machine code in an executable anonymous mapping, called via ctypes.
"""

from __future__ import annotations

import ctypes
import mmap

_CODE = {
    # rdtsc; shl rdx, 32; or rax, rdx; ret
    "rdtsc": bytes.fromhex("0f31 48c1e220 4809d0 c3"),
    # rdtscp; mov [rdi], ecx; shl rdx, 32; or rax, rdx; ret
    "rdtscp": bytes.fromhex("0f01f9 890f 48c1e220 4809d0 c3"),
    # push rbx; mov eax, edi; mov ecx, esi; mov r8, rdx; cpuid;
    # mov [r8], eax; mov [r8+4], ebx; mov [r8+8], ecx; mov [r8+12], edx; pop rbx; ret
    "cpuid": bytes.fromhex("53 89f8 89f1 4989d0 0fa2 418900 41895804 41894808 4189500c 5b c3"),
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


def decode_rdtsc(code: bytes) -> tuple[str, int] | None:
    """('rdtsc', 2) or ('rdtscp', 3) when ``code`` starts with one of them."""
    if code[:2] == b"\x0f\x31":
        return "rdtsc", 2
    if code[:3] == b"\x0f\x01\xf9":
        return "rdtscp", 3
    return None
