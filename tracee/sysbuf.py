"""The syscall buffer's tracee side: the preload library, the seccomp filter that
lets its calls run untraced, and the records it leaves in the thread's buffer.

The library (``sysbuf.c``, next to this file) is built from source with the
system's gcc at first use, into a cache directory keyed by a digest of the source
and the page address, never shipped as a binary. See sysbuf.c for the protocol.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import page as rpage

SOURCE = Path(__file__).with_name("sysbuf.c")
LIBRARY_NAME = "retrograde-sysbuf"
SYSBUF_NR = 0x7E7
REGISTER, FLUSH = 1, 2
SITE = rpage.DEFAULT_ADDRESS + rpage.SYSBUF_OFFSET
HEADER_SIZE = 64
RECORD_HEADER = struct.Struct("<II6qq")  # size, nr, args, result: 64 bytes
assert RECORD_HEADER.size == 64

PTRACE_O_TRACESECCOMP = 0x80
PTRACE_EVENT_SECCOMP = 7


class SysbufError(Exception):
    """The library could not be built; the message is one line for the user."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "retrograde"


def library_path() -> Path:
    """The built library, compiled now if this source has not been built yet."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + f"{SITE:#x}".encode()).hexdigest()[:16]
    target = cache_dir() / f"lib{LIBRARY_NAME}-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, suffix=".so")
    os.close(fd)
    try:
        run = subprocess.run(
            ["gcc", "-O2", "-shared", "-fPIC", "-mno-red-zone", "-fno-stack-protector",
             "-Wall", f"-DSYSBUF_SITE={SITE:#x}", "-o", temporary, str(SOURCE)],
            check=False, capture_output=True, text=True)
    except FileNotFoundError as error:
        os.unlink(temporary)
        raise SysbufError("record --syscall-buffer needs gcc to build its library") from error
    if run.returncode != 0:
        os.unlink(temporary)
        first = (run.stderr.strip().splitlines() or ["gcc failed"])[0]
        raise SysbufError(f"cannot build the syscall buffer library: {first}")
    os.replace(temporary, target)
    return target


def preload_value(library: Path, user_value: str | None) -> str:
    """LD_PRELOAD with the library first; its constructor takes it out again."""
    return f"{library} {user_value}" if user_value else str(library)


# -- the seccomp filter ---------------------------------------------------------------
# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
# The instruction pointer the filter sees is the address after the syscall instruction.
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x15, 0x06
_AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_SET_MODE_FILTER = 1


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def filter_program(page: int) -> bytes:
    """A filter that allows the page's two syscall instructions (the injection site and
    the buffer's) and traces every other call; a foreign ABI is traced too."""
    allowed = [page + rpage.SYSCALL_OFFSET + 2, page + rpage.SYSBUF_OFFSET + 2]
    assert all(a >> 32 == 0 for a in allowed)
    code = [
        _insn(_BPF_LD_W_ABS, 0, 0, 4),  # arch
        _insn(_BPF_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        _insn(_BPF_RET_K, 0, 0, SECCOMP_RET_TRACE),
        _insn(_BPF_LD_W_ABS, 0, 0, 12),  # instruction_pointer, high half
        _insn(_BPF_JEQ_K, 1, 0, 0),
        _insn(_BPF_RET_K, 0, 0, SECCOMP_RET_TRACE),
        _insn(_BPF_LD_W_ABS, 0, 0, 8),  # low half
        _insn(_BPF_JEQ_K, 2, 0, allowed[0]),
        _insn(_BPF_JEQ_K, 1, 0, allowed[1]),
        _insn(_BPF_RET_K, 0, 0, SECCOMP_RET_TRACE),
        _insn(_BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return b"".join(code)


# -- records --------------------------------------------------------------------------
@dataclass(frozen=True)
class BufferedCall:
    """One record of a thread's buffer: a call the library made untraced."""

    nr: int
    args: tuple[int, ...]
    result: int
    data: bytes  # what the kernel stored, the syscall table's regions in order


def parse_records(data: bytes) -> list[BufferedCall]:
    """The records in ``data`` (the committed part of a buffer after its header)."""
    calls = []
    at = 0
    while at + RECORD_HEADER.size <= len(data):
        size, nr, *rest = RECORD_HEADER.unpack_from(data, at)
        if size < RECORD_HEADER.size or at + size > len(data):
            raise ValueError(f"bad syscall buffer record at offset {at}")
        args, result = tuple(a & 0xFFFFFFFFFFFFFFFF for a in rest[:6]), rest[6]
        calls.append(BufferedCall(nr, args, result, data[at + RECORD_HEADER.size:at + size]))
        at += size
    return calls

