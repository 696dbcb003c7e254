"""Signal numbers on the wire versus Linux's.

The RSP carries gdb's own signal numbers ("the exact meaning of signal number
is defined by the header include/gdb/signals.h in the GDB source code", manual,
Stop Reply Packets), in stop replies, `C`/`S`/`vCont;C` and `QPassSignals`.
They agree with Linux's for 1-6, 8, 9, 11 and 13-15 only. The numbers below
are the positions in gdb's enum, the order in which `info signals` lists them.
"""

from __future__ import annotations

import signal

GDB_SIGNAL_UNKNOWN = 143

_GDB_NUMBERS = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6,
    "SIGFPE": 8, "SIGKILL": 9, "SIGBUS": 10, "SIGSEGV": 11, "SIGSYS": 12, "SIGPIPE": 13,
    "SIGALRM": 14, "SIGTERM": 15, "SIGURG": 16, "SIGSTOP": 17, "SIGTSTP": 18,
    "SIGCONT": 19, "SIGCHLD": 20, "SIGTTIN": 21, "SIGTTOU": 22, "SIGIO": 23, "SIGXCPU": 24,
    "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27, "SIGWINCH": 28, "SIGUSR1": 30,
    "SIGUSR2": 31, "SIGPWR": 32,
}  # fmt: skip

# Linux number -> gdb number. Real-time signals: gdb numbers SIG33..SIG63 45..75,
# then SIG32 77 and SIG64 78 (they were added to gdb's list later).
_TO_GDB = {signal.Signals[name].value: number for name, number in _GDB_NUMBERS.items()}
_TO_GDB.update({linux: 45 + linux - 33 for linux in range(33, 64)})
_TO_GDB.update({32: 77, 64: 78})
_FROM_GDB = {number: linux for linux, number in _TO_GDB.items()}


def to_gdb(linux_signal: int) -> int:
    """gdb's number for a Linux signal (SIGSTKFLT has none: "unknown")."""
    return _TO_GDB.get(linux_signal, GDB_SIGNAL_UNKNOWN)


def from_gdb(gdb_signal: int) -> int | None:
    """The Linux signal for one of gdb's numbers; None for signals Linux lacks (SIGEMT...)."""
    return _FROM_GDB.get(gdb_signal)
