"""The retrograde page: one page at a fixed address, mapped in recording and replay.

It holds the few instructions the tool itself executes inside the tracee, so
that injected syscalls and checkpoint forks never depend on where the
program's own code is:

    +0x00  syscall; int3      injected syscalls return into the int3
    +0x08  int3               a place to park a task
    +0x10  syscall; ret       the syscall buffer's untraced call (tracee/sysbuf.c):
                              the seccomp filter lets calls from here run without a stop
    +0x100 scratch            strings passed to injected syscalls (paths)
"""

from __future__ import annotations

DEFAULT_ADDRESS = 0x70000000
CANDIDATE_ADDRESSES = (DEFAULT_ADDRESS, 0x71000000, 0x72000000, 0x6F000000, 0x10000000)
SIZE = 4096
SYSCALL_OFFSET = 0x0
TRAP_OFFSET = 0x8
SYSBUF_OFFSET = 0x10
SCRATCH_OFFSET = 0x100
SCRATCH_SIZE = SIZE - SCRATCH_OFFSET
NAME = "[retrograde]"


def contents() -> bytes:
    code = bytearray(b"\xcc" * SCRATCH_OFFSET)
    code[SYSCALL_OFFSET:SYSCALL_OFFSET + 3] = b"\x0f\x05\xcc"
    code[SYSBUF_OFFSET:SYSBUF_OFFSET + 3] = b"\x0f\x05\xc3"
    return bytes(code) + bytes(SCRATCH_SIZE)
