"""The packets lldb sends that gdb does not, answered from the recording.

lldb's `gdb-remote` speaks the gdb protocol plus extensions of its own, which
its stub (lldb-server) answers; they are described in lldb's
docs/resources/lldbgdbremote.md. lldb works without most of them (it falls
back to gdb's packets when a reply is empty), but not without knowing where
ld.so keeps its list of loaded objects: lacking qShlibInfoAddr it takes
qXfer:libraries-svr4's `main-lm` (the main program's link_map, to gdb) for
that place and plants a breakpoint at a garbage address.

Replies are `key:value;` lists; strings in them are hex-encoded.
"""

from __future__ import annotations

import socket
import struct

from .registers import USER_REGS_FIELDS
from .target import MemoryRegion

TRIPLE = "x86_64-pc-linux-gnu"
_ADDRESS_LIMIT = 1 << 64
# lldb's LLDB_INVALID_ADDRESS ends the region past the last mapping, as lldb-server's does.
_INVALID_ADDRESS = _ADDRESS_LIMIT - 1
# x86-64 has four debug address registers (DR0-DR3).
WATCHPOINT_REGISTERS = 4
_RIP_OFFSET = 8 * USER_REGS_FIELDS.index("rip")


def _pairs(**fields: str | int) -> bytes:
    return "".join(f"{key.replace('_', '-')}:{value};" for key, value in fields.items()).encode()


def _hex_string(text: str) -> str:
    return text.encode().hex()


def host_info() -> bytes:
    """qHostInfo: the machine the replay runs on. x86 debug registers trap after
    the access, so a watchpoint stop comes after the write (as ours do)."""
    return _pairs(triple=_hex_string(TRIPLE), ptrsize=8, endian="little", ostype="linux",
                  vendor="pc", hostname=_hex_string(socket.gethostname()),
                  watchpoint_exceptions_received="after")


def process_info(pid: int) -> bytes:
    """qProcessInfo: the recorded process, as the recording knows it."""
    return _pairs(pid=f"{pid:x}", triple=_hex_string(TRIPLE), ostype="linux", vendor="pc",
                  endian="little", ptrsize=8)


def watchpoint_support_info() -> bytes:
    return _pairs(num=WATCHPOINT_REGISTERS)


def memory_region_info(regions: list[MemoryRegion], address: int) -> bytes:
    """qMemoryRegionInfo:ADDR: the mapping that holds ADDR, or the unmapped gap
    around it (a region without permissions, as lldb-server describes one)."""
    if address >= _ADDRESS_LIMIT:
        return b"E01"
    gap_start = 0
    for region in regions:
        if region.end <= address:
            gap_start = region.end
            continue
        if region.start <= address:
            perms = "".join(p for p in region.perms[:3] if p != "-")
            reply = _pairs(start=f"{region.start:x}", size=f"{region.end - region.start:x}",
                           permissions=perms)
            if region.name:
                reply += _pairs(name=_hex_string(region.name))
            return reply
        return _pairs(start=f"{gap_start:x}", size=f"{region.start - gap_start:x}")
    return _pairs(start=f"{gap_start:x}", size=f"{_INVALID_ADDRESS - gap_start:x}")


def stop_reply_threads(tid: int, user_regs: bytes) -> bytes:
    """What QListThreadsInStopReply adds to a stop reply: every thread (there is
    one) and its pc, so lldb needs no qfThreadInfo and `p` after each stop."""
    (pc,) = struct.unpack_from("<Q", user_regs, _RIP_OFFSET)
    return b"threads:%x;thread-pcs:%x;" % (tid, pc)


def stop_description(text: str) -> bytes:
    """A stop reply's `description:`, which lldb shows as the stop reason (gdb
    skips keys it does not know). lldb 16 knows no history boundary, so without
    it a replaylog stop would read as a SIGTRAP the program never received."""
    return _pairs(description=_hex_string(text))
