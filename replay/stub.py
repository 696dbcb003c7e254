"""The emulated-execve stub: a tiny static ELF the replayer writes itself.

Replay never execs the recorded program (seed 001): it execs this stub, whose
only segment is the retrograde page at the recorded address, then unmaps
everything else and rebuilds the recorded address space. No compiler is needed
at replay time; the image is assembled here from the ELF64 header layout
(System V gABI) and the page contents.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from retrograde.tracee import page as rpage

ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")
PT_LOAD, PF_X, PF_R = 1, 1, 4
ET_EXEC, EM_X86_64 = 2, 62


def stub_image(page_address: int) -> bytes:
    """An ELF executable mapping the retrograde page at ``page_address``."""
    body_offset = rpage.SIZE  # the page starts at a page-aligned file offset
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, SysV
    header = ELF_HEADER.pack(ident, ET_EXEC, EM_X86_64, 1,
                             page_address + rpage.TRAP_OFFSET,  # entry: an int3, never reached
                             ELF_HEADER.size, 0, 0, ELF_HEADER.size, PROGRAM_HEADER.size, 1,
                             0, 0, 0)
    load = PROGRAM_HEADER.pack(PT_LOAD, PF_R | PF_X, body_offset, page_address, page_address,
                               rpage.SIZE, rpage.SIZE, rpage.SIZE)
    head = header + load
    return head + bytes(body_offset - len(head)) + rpage.contents()


def write_stub(page_address: int, directory: Path | None = None) -> Path:
    """Write the stub for ``page_address`` to an executable file and return its path."""
    target_dir = directory or Path(tempfile.gettempdir())
    path = target_dir / f"retrograde-stub-{page_address:x}"
    if not path.exists() or path.read_bytes() != stub_image(page_address):
        tmp = path.with_suffix(f".{id(path)}.tmp")
        tmp.write_bytes(stub_image(page_address))
        tmp.chmod(0o755)
        tmp.replace(path)
    return path
