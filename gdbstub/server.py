"""The GDB remote protocol server: `RspSession` answers packets, `serve` carries them.

`RspSession` is the protocol logic for one connection: payload in, reply out,
no sockets. `serve` is the shell: an asyncio loop on its own thread owns the
socket and the codec, and hands each packet to the thread that called `serve`,
which runs the session (and so the target) there. That thread is the replay's
ptrace tracer: ptrace(2) accepts requests for a tracee only from the thread
that attached it, so target calls must not wander between worker threads.
While the target runs, the loop keeps reading, and a 0x03 from gdb becomes
`target.interrupt()`.

Packet syntax and replies follow the gdb manual's appendix "GDB Remote Serial
Protocol" (sections Packets, Stop Reply Packets, General Query Packets, Host
I/O Packets); the comments name the rule where the code depends on a detail.
"""

from __future__ import annotations

import asyncio
import binascii
import concurrent.futures
import enum
import functools
import itertools
import logging
import os
import queue
import re
import signal
import string
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

from . import agent, lldb, registers, signals
from .codec import PACKET_SIZE, Interrupt, Packet, ProtocolError, RspCodec, console_packets
from .target import DebugTarget, Stop

log = logging.getLogger(__name__)

# gdb treats "E." followed by text as an error and shows the text where it
# reports the failure itself (register writes); memory writes just fail.
REFUSED = b"E.cannot modify a recorded execution"
_ERROR = b"E01"
_NOT_SUPPORTED = b""  # "An empty response ... indicates that the packet is not supported"

# File-I/O errno values (manual, "Errno Values"), sent in hex in `F` replies.
_ENOENT, _EIO, _EBADF, _EROFS = 2, 5, 9, 30
# File-I/O open flags: O_WRONLY 1, O_RDWR 2.
_WRITE_FLAGS = 0x3
_S_IFREG_READ_ONLY = 0o100444
_LETTERS = string.ascii_letters.encode()
_HEX_NUMBER = re.compile(rb"[0-9a-fA-F]+")
# Every number in a packet fits in 64 bits; more digits are a malformed packet,
# not a reason to convert thousands of them.
_MAX_HEX_DIGITS = 16


def _user_space_end() -> int:
    """TASK_SIZE_MAX (arch/x86/include/asm/page_64_types.h): 2^47 less a guard page
    with 4-level paging, 2^56 less one with 5-level paging (the CPU's la57)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            la57 = any("la57" in line.split() for line in cpuinfo if line.startswith("flags"))
    except OSError:
        la57 = False
    return (1 << (56 if la57 else 47)) - 4096


# Nothing of the program lies past the user address space (the kernel half, the
# vsyscall page, which /proc/PID/mem cannot reach at offsets past a signed off_t),
# and the kernel refuses a debug register aimed there (EINVAL): an address at or
# past its end is an error reply, never a request to the target.
USER_SPACE_END = _user_space_end()


class Then(enum.Enum):
    """What the connection does once a reply has been sent."""

    CONVERSE = "converse"
    NO_ACK = "no-ack"  # QStartNoAckMode: no `+`/`-` from the next packet on
    DETACH = "detach"  # D: close the connection; the replay stays where it is
    KILL = "kill"  # k, vKill: close the connection and stop serving


@dataclass(frozen=True)
class Reply:
    """The packets that answer one packet, and what the connection does next."""

    payloads: tuple[bytes, ...]
    then: Then = Then.CONVERSE


class _Malformed(Exception):
    """A packet that does not parse; answered with an error, never fatal."""


def _hex(field: bytes) -> int:
    if not _HEX_NUMBER.fullmatch(field):
        raise _Malformed(f"not a hex number: {field[:32]!r}")
    if len(field.lstrip(b"0")) > _MAX_HEX_DIGITS:
        raise _Malformed(f"a number of more than 64 bits: {field[:32]!r}...")
    return int(field, 16)


def _signed_hex(field: bytes) -> int:
    return -_hex(field[1:]) if field.startswith(b"-") else _hex(field)


def _unhex(field: bytes) -> bytes:
    try:
        return binascii.unhexlify(field)
    except binascii.Error as error:
        raise _Malformed(str(error)) from None


def _fields(args: bytes, separator: bytes, count: int) -> list[bytes]:
    fields = args.split(separator)
    if len(fields) != count:
        raise _Malformed(f"expected {count} fields in {args[:64]!r}")
    return fields


def _address_length(args: bytes) -> tuple[int, int]:
    address, length = _fields(args, b",", 2)
    return _hex(address), _hex(length)


def _parse_thread_id(field: bytes) -> tuple[int | None, int]:
    """`pPID.TID`, `pPID` (all its threads) or `TID` -> (pid or None, tid);
    "-1 to indicate all threads, or 0 to pick any thread"."""
    if field.startswith(b"p"):
        pid, _, tid = field[1:].partition(b".")
        return _signed_hex(pid), _signed_hex(tid) if tid else -1
    return None, _signed_hex(field)


def _split_name(payload: bytes) -> tuple[bytes, bytes]:
    """The packet's name and its arguments. Named packets (q..., Q..., v...) end
    their name at the first non-letter, which is dropped when it is a separator
    (`qXfer:...`, `qRcmd,...`, `vCont;c`) but kept when it is meaningful (`vCont?`);
    the others are one letter, except the two-letter `bc` and `bs`."""
    if payload[:1] in (b"q", b"Q", b"v"):
        args = payload.lstrip(_LETTERS)
        name = payload[: len(payload) - len(args)]
        return name, args[1:] if args[:1] in (b":", b",", b";") else args
    if payload[:1] == b"b":
        return payload[:2], payload[2:]
    return payload[:1], payload[1:]


def _fio_stat(size: int) -> bytes:
    """struct stat in the File-I/O format (manual, "struct stat"): big-endian
    st_dev, st_ino, st_mode, st_nlink, st_uid, st_gid, st_rdev (4 bytes each),
    st_size, st_blksize, st_blocks (8), st_atime, st_mtime, st_ctime (4)."""
    return struct.pack(
        ">7I3Q3I", 0, 0, _S_IFREG_READ_ONLY, 1, 0, 0, 0, size, 4096, -(-size // 512), 0, 0, 0
    )


# The packets that move the replay (or end it). An exception from the target
# while one is handled ends the server; any other packet only reads.
_MOVES = frozenset(
    {b"c", b"s", b"C", b"S", b"bc", b"bs", b"vCont", b"qRcmd", b"k", b"vKill"}
)


def _kills(payload: bytes) -> bool:
    return _split_name(payload)[0] in (b"k", b"vKill")


def _moves(payload: bytes) -> int:
    """1 for a packet that may move the replay (what an interrupt is for), else 0."""
    return int(_split_name(payload)[0] in _MOVES)


def _awaits_console(payload: bytes) -> bool:
    """Whether gdb takes `O` console packets before the reply to ``payload``: those
    of a resume (before the stop reply) and of qRcmd (before its OK)."""
    return bool(_moves(payload)) and not _kills(payload)


# Where a replay starts: stopped, as if by a breakpoint trap, before the first instruction.
AT_START = Stop("signal", signal.SIGTRAP)


class RspSession:
    """The protocol state of one connection to a target: what the client
    negotiated, the breakpoints it inserted, the files it opened, the last stop.

    `handle` answers one packet and may block for as long as the target runs.
    Every packet is answered: unknown ones with the empty reply, malformed ones
    (and queries the target fails to answer) with an error; only an exception
    from the target while it moves escapes.
    The breakpoints a connection leaves inserted are removed by `close`, so a
    client that vanished mid-session leaves nothing behind for the next one.
    """

    def __init__(
        self,
        target: DebugTarget,
        *,
        reverse: bool = True,
        last_stop: Stop = AT_START,
        packet_size: int = PACKET_SIZE,
    ) -> None:
        self.target = target
        self.reverse = reverse
        self.last_stop = last_stop
        self.packet_size = packet_size
        self._client_features: set[bytes] = set()
        self._breakpoints: set[tuple[int, int, int]] = set()
        self._files: dict[int, bytes] = {}
        self._file_numbers = itertools.count(3)
        self._threads_in_stop_reply = False  # QListThreadsInStopReply (lldb)
        # The threads `Hg` and `Hc` chose (0: "any", the one the last stop was in).
        # A stop reply makes its thread the general one: gdb assumes so (remote.c's
        # record_currthread) and sends no Hg for it.
        self._general_thread = 0
        self._continue_thread = 0
        self._handlers: dict[bytes, Callable[[bytes], Reply | bytes]] = {
            b"qSupported": self._supported,
            b"QStartNoAckMode": lambda args: Reply((b"OK",), Then.NO_ACK),
            b"?": lambda args: self._stop_reply(self.last_stop),
            b"g": self._read_registers,
            b"p": self._read_register,
            b"m": self._read_memory_hex,
            b"x": self._read_memory_binary,
            b"G": lambda args: REFUSED,
            b"P": lambda args: REFUSED,
            b"M": lambda args: REFUSED,
            b"X": lambda args: REFUSED,
            b"c": lambda args: self._resume_packet(args, step=False, with_signal=False),
            b"s": lambda args: self._resume_packet(args, step=True, with_signal=False),
            b"C": lambda args: self._resume_packet(args, step=False, with_signal=True),
            b"S": lambda args: self._resume_packet(args, step=True, with_signal=True),
            b"bc": lambda args: self._reverse(step=False),
            b"bs": lambda args: self._reverse(step=True),
            b"vCont": self._vcont,
            b"H": self._select_thread,
            b"T": self._thread_alive,
            b"qC": lambda args: b"QC" + self._thread_id(self._stop_thread),
            b"qfThreadInfo": self._thread_info,
            b"qsThreadInfo": lambda args: b"l",
            b"qAttached": lambda args: b"1",  # so that gdb's `quit` detaches instead of killing
            # gdb relocates a PIE from the auxv's AT_ENTRY (qXfer:auxv); qOffsets
            # would only be a second, conflicting answer, so it stays unsupported.
            b"qOffsets": lambda args: _NOT_SUPPORTED,
            b"qSymbol": lambda args: b"OK",  # we need no symbol values
            b"qTStatus": lambda args: _NOT_SUPPORTED,  # no tracepoints: gdb asks nothing further
            b"qXfer": self._transfer,
            b"vFile": self._host_io,
            b"qRcmd": self._monitor,
            b"QPassSignals": self._pass_signals,
            b"Z": self._insert_breakpoint,
            b"z": self._remove_breakpoint,
            b"D": lambda args: Reply((b"OK",), Then.DETACH),
            b"k": lambda args: self._kill(Reply((), Then.KILL)),  # `k` has no reply
            b"vKill": lambda args: self._kill(Reply((b"OK",), Then.KILL)),
            # lldb's own packets (gdbstub/lldb.py).
            b"qHostInfo": lambda args: lldb.host_info(),
            b"qProcessInfo": lambda args: lldb.process_info(self.target.pid),
            b"qMemoryRegionInfo": lambda args: lldb.memory_region_info(
                self.target.memory_regions(), _hex(args)),
            b"qShlibInfoAddr": self._r_debug_slot,
            b"qWatchpointSupportInfo": lambda args: lldb.watchpoint_support_info(),
            b"QListThreadsInStopReply": self._list_threads_in_stop_reply,
        }

    def handle(self, payload: bytes) -> Reply:
        """The reply to one packet."""
        name, args = _split_name(payload)
        handler = self._handlers.get(name)
        if handler is None:
            return Reply((_NOT_SUPPORTED,))
        try:
            result = handler(args)
        except _Malformed as error:
            log.debug("malformed packet %r: %s", payload[:64], error)
            result = _ERROR
        except Exception as error:
            if name in _MOVES:
                raise  # the replay may be anywhere now: the server cannot go on
            # A query changed nothing: the client gets an error, the server goes on.
            log.warning("internal error answering %r: %s: %s",
                        payload[:64], type(error).__name__, error)
            result = _ERROR
        return result if isinstance(result, Reply) else Reply((result,))

    def close(self) -> None:
        """Remove the breakpoints the client left inserted."""
        for kind, address, length in self._breakpoints:
            self.target.remove_breakpoint(kind, address, length)
        self._breakpoints.clear()

    # Negotiation and threads.

    def _supported(self, args: bytes) -> bytes:
        self._client_features = set(args.split(b";"))
        features = [
            b"PacketSize=%x" % self.packet_size,
            b"QStartNoAckMode+",
            b"qXfer:features:read+",
            b"qXfer:auxv:read+",
            b"qXfer:exec-file:read+",
            b"qXfer:libraries-svr4:read+",
            b"qXfer:siginfo:read+",
            b"qXfer:threads:read+",
            b"swbreak+",
            b"hwbreak+",
            b"vContSupported+",
            b"multiprocess+",
            b"QPassSignals+",
            b"binary-upload+",  # the `x` packet
            b"ConditionalBreakpoints+",  # agent-expression conditions on Z0/Z1 (gdbstub.agent)
        ]
        if self.reverse:
            features += [b"ReverseStep+", b"ReverseContinue+"]
        return b";".join(features)

    @property
    def _multiprocess(self) -> bool:
        return b"multiprocess+" in self._client_features

    def _thread_id(self, tid: int) -> bytes:
        if self._multiprocess:
            return b"p%x.%x" % (self.target.pid, tid)
        return b"%x" % tid

    @property
    def _stop_thread(self) -> int:
        return self.last_stop.thread or self.target.tid

    def _alive_threads(self) -> list[int]:
        if self.last_stop.reason in ("exited", "terminated"):
            return []
        return [thread.tid for thread in self.target.threads()]

    def _thread_of(self, field: bytes) -> int | None:
        """The tid a thread-id names: 0 for "all threads" (-1) or "any thread" (0),
        None for no thread of ours."""
        pid, tid = _parse_thread_id(field)
        if pid not in (None, -1, 0, self.target.pid):
            return None
        if tid in (-1, 0):
            return 0
        return tid if tid in self._alive_threads() else None

    def _thread_info(self, args: bytes) -> bytes:
        # All in the first reply, then `l` for qsThreadInfo: a thread-id is at most
        # 17 bytes, so a packet holds hundreds.
        tids = self._alive_threads()
        if not tids:
            return b"l"
        return b"m" + b",".join(self._thread_id(tid) for tid in tids)

    def _threads_xml(self) -> bytes:
        """qXfer:threads:read, with each thread's name (`info threads` shows it)."""
        items = "".join(
            f"<thread id=\"{self._thread_id(thread.tid).decode()}\""
            + (f" name={quoteattr(thread.name)}" if thread.name else "") + "/>"
            for thread in (self.target.threads() if self._alive_threads() else []))
        return f'<?xml version="1.0"?><threads>{items}</threads>'.encode()

    def _select_thread(self, args: bytes) -> bytes:
        # `Hg` (registers) and `Hc` (the thread a step or a reverse step is for).
        if args[:1] not in (b"g", b"c"):
            raise _Malformed(f"unknown H operation {args[:1]!r}")
        tid = self._thread_of(args[1:])
        if tid is None:
            return _ERROR
        if args[:1] == b"g":
            self._general_thread = tid
        else:
            self._continue_thread = tid
        return b"OK"

    def _thread_alive(self, args: bytes) -> bytes:
        tid = self._thread_of(args)
        return b"OK" if tid is not None and self._alive_threads() else _ERROR

    # Registers and memory.

    def _registers(self) -> tuple[bytes, bytes]:
        """The registers of the Hg thread."""
        return self.target.registers(self._general_thread or self._stop_thread)

    def _read_registers(self, args: bytes) -> bytes:
        return registers.g_packet(*self._registers())

    def _read_register(self, args: bytes) -> bytes:
        try:
            return registers.read_register(_hex(args), *self._registers()).hex().encode()
        except IndexError:
            return _ERROR

    def _read_memory(self, args: bytes, limit: int) -> bytes | None:
        address, length = _address_length(args)
        if address >= USER_SPACE_END:
            return None
        try:
            return self.target.read_memory(address, min(length, limit)) or None
        except OSError:
            return None

    def _read_memory_hex(self, args: bytes) -> bytes:
        data = self._read_memory(args, self.packet_size // 2)
        return _ERROR if data is None else data.hex().encode()

    def _read_memory_binary(self, args: bytes) -> bytes:
        # "x addr,length" -> "b XX..." (the leading b tells data from an E reply).
        data = self._read_memory(args, self.packet_size)
        return _ERROR if data is None else b"b" + data

    # Execution.

    def _resume_packet(self, args: bytes, *, step: bool, with_signal: bool) -> bytes | Reply:
        # c [addr], s [addr], C sig[;addr], S sig[;addr]
        if with_signal:
            signal_field, _, address = args.partition(b";")
            linux_signal = self._linux_signal(signal_field)
        else:
            address, linux_signal = args, 0
        if address:
            return REFUSED  # resuming at another address would rewrite the recorded pc
        return self._resume(step=step, reverse=False, linux_signal=linux_signal,
                            thread=self._step_thread(), others=not self._continue_thread)

    def _step_thread(self) -> int:
        """The thread a step without a thread-id is for: Hc's, else the last stop's
        (gdb's own current thread, unless the user switched since: the shipped
        command file sets scheduler-locking to step, so gdb names it with Hc)."""
        return self._continue_thread or self._stop_thread

    def _reverse(self, *, step: bool) -> bytes | Reply:
        # `bs` and `bc` are for the Hc thread: a particular one when gdb resumes it
        # alone (scheduler-locking), "any" (0) when it resumes every thread.
        if not self.reverse:
            return _NOT_SUPPORTED
        return self._resume(step=step, reverse=True, linux_signal=0,
                            thread=self._step_thread(), others=not self._continue_thread)

    def _vcont(self, args: bytes) -> bytes | Reply:
        if args == b"?":
            return b"vCont;c;C;s;S"
        # "For each inferior thread, the leftmost action with a matching thread-id
        # is applied"; an action without a thread-id matches every thread. The
        # replay runs one thread at a time, as recorded: a thread told to step
        # steps (the others run their slices before it as needed), and every
        # other action is a continue of the whole program.
        step: int | None = None  # the thread told to step
        cont: int | None = None  # the thread told to continue (0: every thread)
        resumed: set[int] = set()  # threads an action applies to (0: every other)
        linux_signal = 0
        for action in args.split(b";"):
            command, _, thread = action.partition(b":")
            kind, argument = command[:1], command[1:]
            if kind not in (b"c", b"s", b"C", b"S") or (kind in (b"c", b"s") and argument):
                raise _Malformed(f"unsupported vCont action {action!r}")
            tid = self._thread_of(thread) if thread else 0
            if tid is None or (tid and tid in resumed):
                continue  # not ours, or a thread a leftmost action has taken
            resumed.add(tid)
            if kind in (b"C", b"S") and not linux_signal:
                linux_signal = self._linux_signal(argument)
            if kind in (b"s", b"S") and step is None:
                step = tid or self._step_thread()
            elif kind in (b"c", b"C") and cont is None:
                cont = tid
        if step is not None:
            others = bool(resumed - {step})
            return self._resume(step=True, reverse=False, linux_signal=linux_signal,
                                thread=step, others=others)
        if cont is None:
            raise _Malformed("no vCont action for our threads")
        return self._resume(step=False, reverse=False, linux_signal=linux_signal,
                            thread=cont, others=cont == 0 or len(resumed) > 1)

    def _linux_signal(self, field: bytes) -> int:
        # A signal Linux lacks (gdb's SIGEMT, say) cannot be delivered: resume without.
        return signals.from_gdb(_hex(field)) or 0

    def _resume(self, *, step: bool, reverse: bool, linux_signal: int,
                thread: int = 0, others: bool = True) -> bytes | Reply:
        self.last_stop = stop = self.target.resume(step, reverse, linux_signal, thread, others)
        # What the target has to say on the way goes first, as `O` console output
        # packets, which the manual allows while the program runs.
        return Reply((*self.console_packets(stop.console), self._stop_reply(stop)))

    def console_packets(self, text: str) -> list[bytes]:
        """``text`` for the debugger's console, in `O` packets this connection takes."""
        return console_packets(text, self.packet_size)

    def _stop_reply(self, stop: Stop) -> bytes:
        process = b";process:%x" % self.target.pid if self._multiprocess else b""
        if stop.reason == "exited":
            return b"W%02x" % ((stop.exit_status or 0) & 0xFF) + process
        if stop.reason == "terminated":
            return b"X%02x" % signals.to_gdb(stop.signo) + process
        reply = b"T%02x" % signals.to_gdb(stop.signo)
        self._general_thread = stop.thread or self.target.tid
        reply += b"thread:%s;" % self._thread_id(self._general_thread)
        if stop.reason == "breakpoint":
            # gdb asked for these reasons in qSupported, or it would not expect them.
            reason = b"hwbreak" if stop.hw else b"swbreak"
            if reason + b"+" in self._client_features:
                reply += reason + b":;"
        elif stop.reason == "watchpoint":
            kind = (stop.watch_kind or "watch").encode()
            reply += b"%s:%x;" % (kind, stop.watch_addr or 0)
        elif stop.reason == "history-begin":
            reply += b"replaylog:begin;" + lldb.stop_description("start of the recorded history")
        elif stop.reason == "history-end":
            reply += b"replaylog:end;" + lldb.stop_description("end of the recorded history")
        if self._threads_in_stop_reply:
            reply += lldb.stop_reply_threads(self.target.tid, self.target.registers()[0])
        return reply

    def _kill(self, reply: Reply) -> Reply:
        self.target.kill()
        self._breakpoints.clear()  # they went with the process
        return reply

    # Breakpoints and watchpoints: "Z type,addr,kind[;cond_list...][;cmds:...]".

    def _breakpoint_args(self, args: bytes) -> tuple[int, int, int]:
        kind, address, length = _fields(args.split(b";")[0], b",", 3)
        return _hex(kind), _hex(address), _hex(length)

    def _insert_breakpoint(self, args: bytes) -> bytes:
        breakpoint = self._breakpoint_args(args)
        kind, address, length = breakpoint
        if kind > 4:
            return _NOT_SUPPORTED
        # For a breakpoint the length is the kind of int3 (1 on x86-64), for a
        # watchpoint the bytes watched: both must lie in user space.
        if address + (length if kind >= 2 else 1) > USER_SPACE_END:
            return _ERROR
        try:
            # Inserting an inserted breakpoint again replaces its conditions.
            condition = agent.parse_conditions(args.split(b";")[1:])
        except agent.MalformedCondition as error:
            raise _Malformed(str(error)) from None
        if not self.target.insert_breakpoint(*breakpoint, condition):
            return _ERROR
        self._breakpoints.add(breakpoint)
        return b"OK"

    def _remove_breakpoint(self, args: bytes) -> bytes:
        breakpoint = self._breakpoint_args(args)
        if breakpoint[0] > 4:
            return _NOT_SUPPORTED
        self._breakpoints.discard(breakpoint)
        return b"OK" if self.target.remove_breakpoint(*breakpoint) else _ERROR

    # Objects, files, monitor commands, signals.

    def _transfer(self, args: bytes) -> bytes:
        # qXfer:object:read:annex:offset,length -> "m data" (more may follow) or
        # "l data" (the end); an empty reply for objects we do not serve.
        parts = args.split(b":", 3)
        if len(parts) != 4 or parts[1] != b"read":
            return _NOT_SUPPORTED
        name, _, annex, window = parts
        offset, length = _address_length(window)
        objects: dict[bytes, Callable[[], bytes | None]] = {
            b"features": lambda: registers.TARGET_XML if annex == b"target.xml" else None,
            b"auxv": self.target.auxv,
            b"exec-file": lambda: os.fsencode(self.target.exec_file()),
            b"libraries-svr4": lambda: self.target.libraries_svr4().encode(),
            b"siginfo": self.target.siginfo,
            b"threads": self._threads_xml,
        }
        if name not in objects:
            return _NOT_SUPPORTED
        data = objects[name]()
        if data is None:
            return b"E00"  # "the request was malformed, or annex was invalid"
        chunk = data[offset : offset + min(length, self.packet_size)]
        return (b"l" if offset + len(chunk) >= len(data) else b"m") + chunk

    def _host_io(self, args: bytes) -> bytes:
        # vFile:operation:parameter,... -> "F result[,errno][;attachment]", in hex.
        operation, _, parameters = args.partition(b":")
        if operation == b"setfs":
            return b"F0"  # there is one filesystem: the trace's
        if operation == b"open":
            path, flags, _mode = _fields(parameters, b",", 3)
            if _hex(flags) & _WRITE_FLAGS:
                return b"F-1,%x" % _EROFS
            name = _unhex(path)
            if b"\0" in name:  # no file has such a name (open(2) would stop at the NUL)
                return b"F-1,%x" % _ENOENT
            try:
                contents = self.target.open_file(os.fsdecode(name))
            except OSError:  # the trace's copy is unreadable
                return b"F-1,%x" % _EIO
            if contents is None:
                return b"F-1,%x" % _ENOENT
            number = next(self._file_numbers)
            self._files[number] = contents
            return b"F%x" % number
        if operation == b"pread":
            number, count, offset = (_hex(field) for field in _fields(parameters, b",", 3))
            if number not in self._files:
                return b"F-1,%x" % _EBADF
            data = self._files[number][offset : offset + min(count, self.packet_size)]
            return b"F%x;" % len(data) + data
        if operation == b"fstat":
            number = _hex(parameters)
            if number not in self._files:
                return b"F-1,%x" % _EBADF
            stat = _fio_stat(len(self._files[number]))
            return b"F%x;" % len(stat) + stat
        if operation == b"close":
            return (
                b"F0" if self._files.pop(_hex(parameters), None) is not None else b"F-1,%x" % _EBADF
            )
        return _NOT_SUPPORTED

    def _monitor(self, args: bytes) -> Reply:
        # qRcmd,hex(command): the output goes back as `O hex(text)` console packets
        # before the final OK. A command that fails says why the same way and still
        # ends in OK: gdb shows any error reply to qRcmd as "Protocol error with
        # Rcmd" after the text (and gdb 13 would print an `E.message` as bad hex).
        command = _unhex(args).decode(errors="replace")
        try:
            output = self.target.monitor(command)
        except ValueError as error:
            output = f"retrograde: {error}\n"
        return Reply((*self.console_packets(output), b"OK"))

    def _r_debug_slot(self, args: bytes) -> bytes:
        slot = self.target.r_debug_slot()
        return _ERROR if slot is None else b"%x" % slot

    def _list_threads_in_stop_reply(self, args: bytes) -> bytes:
        self._threads_in_stop_reply = True
        return b"OK"

    def _pass_signals(self, args: bytes) -> bytes:
        # QPassSignals:signal;signal;... (gdb's numbers, hex); each packet replaces the last.
        numbers = (signals.from_gdb(_hex(field)) for field in args.split(b";") if field)
        self.target.pass_signals({number for number in numbers if number is not None})
        return b"OK"


# The signals retrograde handles (Ctrl-C, SIGTERM, a hang-up): theirs is the main thread.
_MAIN_THREAD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class ServerError(Exception):
    """The server could not start; the message is one line for the user."""


class _Stopped(Exception):
    """The tracer thread has stopped (the server is ending): the call will never run."""


_Call = tuple[concurrent.futures.Future[Any], Callable[[], Any]]
# Packets a client may send ahead of the replies, e.g. while the program runs;
# gdb waits for each reply, so only a broken or hostile client goes past this.
_MAX_QUEUED_PACKETS = 64


class _TracerThread:
    """Runs calls, one at a time, on the thread that called `serve` (see the module comment).

    Every submitted call's future is settled, even when the thread stops: a
    BaseException from a call (SystemExit from the CLI's SIGTERM handler,
    KeyboardInterrupt) ends the loop and goes on up the thread, and that call
    and every one not yet run fail with _Stopped, so the shell never waits for them.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, call: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._stopped:
                future.set_exception(_Stopped())
            else:
                self._calls.put((future, call))
        return future

    def run_until_stopped(self) -> None:
        try:
            while (item := self._calls.get()) is not None:
                future, call = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(call())
                except Exception as error:  # noqa: BLE001 - the caller's to handle, as in an executor
                    future.set_exception(error)
                except BaseException:
                    if not future.done():
                        future.set_exception(_Stopped())
                    raise
        finally:
            with self._lock:
                self._stopped = True
            while True:
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    break
                if item is not None and item[0].set_running_or_notify_cancel():
                    item[0].set_exception(_Stopped())

    def stop(self) -> None:
        self._calls.put(None)


class _Shell:
    """The socket side of `serve`, on the server's own thread: one client at a time,
    a polite refusal for any other, reconnection after a detach or a disconnect.

    When the server ends (a `k`, a target failure, the tracer thread gone), every
    connection is cut and its task waited for before the loop ends, so no task
    is left for asyncio to cancel (and complain about) at exit.
    """

    def __init__(self, target: DebugTarget, reverse: bool, tracer: _TracerThread) -> None:
        self.target = target
        self.reverse = reverse
        self.tracer = tracer
        self.last_stop = AT_START
        self.failure: Exception | None = None  # raised by the target; ends the server
        self._client: str | None = None
        self._client_hung_up = False  # the client is gone; its session is being closed
        self._one_client = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done = asyncio.Event()
        self._stop_requested = threading.Event()
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._killer: asyncio.Task[Any] | None = None  # the connection that sent `k`

    async def run(
        self, host: str, port: int, on_listening: Callable[[str, int], None] | None
    ) -> None:
        self._loop = asyncio.get_running_loop()
        if self._stop_requested.is_set():
            self._done.set()
        try:
            server = await asyncio.start_server(self._accept, host, port)
        except OSError as error:
            # asyncio's message repeats the address; the errno's text is what matters.
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise ServerError(f"cannot listen on {host}:{port}: {reason}") from None
        async with server:
            bound_host, bound_port = server.sockets[0].getsockname()[:2]
            if on_listening is not None:
                on_listening(bound_host, bound_port)
            await self._done.wait()
            server.close()
            for task, writer in list(self._connections.items()):
                if task is not self._killer:  # which ends by itself, its reply sent
                    writer.transport.abort()  # close() would wait for a peer that reads nothing
                    # The server is ending: a conversation waiting for the tracer thread
                    # would wait for ever if a signal ended that thread between a call
                    # and its reply reaching this loop (concurrent.futures posts the
                    # reply through callbacks that a KeyboardInterrupt or SystemExit
                    # cuts short).
                    task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

    def stop_threadsafe(self) -> None:
        self._stop_requested.set()
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._done.set)
            except RuntimeError:  # the loop closed meanwhile
                pass

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        try:
            if self._done.is_set():
                return
            if self._client is not None and not self._client_hung_up:
                await self._refuse(reader, writer, peer, self._client)
                return
            # Claim the target now, so that later arrivals are refused, but wait
            # for a client that just hung up (gdb restarted): its session may
            # still be stopping the target and removing its breakpoints.
            self._client, self._client_hung_up = peer, False
            async with self._one_client:
                log.info("gdb connected from %s", peer)
                try:
                    await self._converse(reader, writer, peer)
                except _Stopped:
                    pass  # the server is ending: nothing more runs
                except Exception as error:  # noqa: BLE001 - the target failed: serve() raises it
                    self.failure = error
                    self._done.set()
                finally:
                    if self._client == peer:
                        self._client = None
                    log.info("gdb at %s disconnected", peer)
        except asyncio.CancelledError:
            # Only run() cancels, as the server ends; ending the task normally keeps
            # asyncio's stream callback from logging the cancellation as an error.
            pass
        finally:
            writer.close()
            del self._connections[task]

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, client: str
    ) -> None:
        # gdb sends qSupported first and shows an error reply to it as a warning
        # ("Remote failure reply: ..."). After it, end our side and let gdb hang up
        # first: closing with its next packets unread would reset the connection,
        # which can discard the message before gdb reads it.
        log.warning("refused a second debugger from %s: %s is connected", peer, client)
        codec = RspCodec()
        message = b"E.retrograde is already serving the debugger at %s" % client.encode()
        refused = False
        try:
            async with asyncio.timeout(5):
                while data := await reader.read(4096):
                    if refused:
                        continue
                    events = codec.receive_data(data)
                    writer.write(codec.data_to_send())
                    if any(isinstance(event, Packet) for event in events):
                        writer.write(codec.packet(message))
                        writer.write_eof()
                        refused = True
                    await writer.drain()
        except (TimeoutError, ProtocolError, ConnectionError):
            pass

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        codec = RspCodec()
        session = RspSession(self.target, reverse=self.reverse, last_stop=self.last_stop)
        packets: asyncio.Queue[bytes | None] = asyncio.Queue()
        # An interrupt is for a move (a resume, a monitor command's seek) queued or
        # being handled on the tracer thread; for nothing else, or it would stop
        # the next move at once.
        moves_queued = 0
        moving = False
        hung_up = False
        # What the target says while it moves (a long search's progress, from any
        # thread) goes out at once as `O` packets, but only while gdb waits for the
        # reply to a packet that allows them: at any other time gdb would take one
        # for the reply to its next packet. Lines from a move go before its reply,
        # since the target's calls reach this loop in the order they were made.
        console_open = False
        loop = asyncio.get_running_loop()

        def send_console(text: str) -> None:
            if console_open and not hung_up:
                for console_payload in session.console_packets(text):
                    writer.write(codec.packet(console_payload))

        def to_console(text: str) -> None:
            try:
                loop.call_soon_threadsafe(send_console, text)
            except RuntimeError:  # the loop has closed: the server is ending
                pass

        self.target.console = to_console

        async def receive() -> None:
            nonlocal moves_queued, hung_up
            try:
                while data := await reader.read(65536):
                    for event in codec.receive_data(data):
                        if isinstance(event, Packet):
                            if packets.qsize() >= _MAX_QUEUED_PACKETS:
                                raise ProtocolError(
                                    f"more than {_MAX_QUEUED_PACKETS} packets sent ahead of "
                                    "their replies")
                            packets.put_nowait(event.payload)
                            moves_queued += _moves(event.payload)
                        elif isinstance(event, Interrupt) and (moving or moves_queued):
                            # gdb interrupts the resume it sent, which may not have started
                            # (the target keeps the request for it).
                            self.target.interrupt()
                    writer.write(codec.data_to_send())
                    # Wait while the peer reads nothing: what we owe it (acks, resent
                    # replies) stays within the transport's buffer limit.
                    await writer.drain()
            except ProtocolError as error:
                log.warning("closing the connection from %s: %s", peer, error)
            except ConnectionError:
                pass
            finally:
                self._client_hung_up = hung_up = True
                packets.put_nowait(None)
                if moving:
                    self.target.interrupt()  # the client is gone: stop where we are

        receiver = asyncio.create_task(receive())
        then = Then.CONVERSE
        try:
            while then in (Then.CONVERSE, Then.NO_ACK):
                payload = await packets.get()
                if payload is None:
                    break
                moves_queued -= _moves(payload)
                if hung_up and not _kills(payload):
                    # Nobody will read the reply: a move would only leave the next
                    # client somewhere else. A kill is still carried out (a client
                    # may send `k` and hang up at once).
                    continue
                moving = bool(_moves(payload))
                console_open = _awaits_console(payload)
                try:
                    call = functools.partial(session.handle, payload)
                    reply = await asyncio.wrap_future(self.tracer.submit(call))
                finally:
                    moving = console_open = False
                then = reply.then
                for reply_payload in reply.payloads:
                    writer.write(codec.packet(reply_payload))
                if then is Then.NO_ACK:
                    codec.start_no_ack_mode()
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
            self.last_stop = session.last_stop
        if then is Then.KILL:
            self._killer = asyncio.current_task()
            self._done.set()
        else:
            await asyncio.wrap_future(self.tracer.submit(session.close))


def serve(
    target: DebugTarget,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    reverse: bool = True,
    on_listening: Callable[[str, int], None] | None = None,
) -> None:
    """Serve `target` to gdb until a client kills it (`k`, gdb's `kill`).

    Blocks. Every target method but `interrupt` runs on the calling thread,
    which should be the one that traces the replay. `on_listening(host, port)`
    is called (from the server's thread) once the socket listens; with port 0
    it tells the port chosen. Raises ServerError when the address cannot be
    bound, and whatever the target raised if a target call failed.
    """
    tracer = _TracerThread()
    shell = _Shell(target, reverse, tracer)
    failures: list[BaseException] = []

    def run_shell() -> None:
        # A signal sent to the process goes to any thread that does not block it, and
        # Python runs its handler only in the main thread, the tracer's: one that
        # landed here would leave the tracer asleep in its queue, the SIGTERM unseen.
        signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_THREAD_SIGNALS)
        try:
            asyncio.run(shell.run(host, port, on_listening))
        except BaseException as error:  # noqa: BLE001 - raised again in the calling thread
            failures.append(error)
        finally:
            tracer.stop()

    thread = threading.Thread(target=run_shell, name="retrograde-gdbstub", daemon=True)
    thread.start()
    try:
        tracer.run_until_stopped()
    finally:
        shell.stop_threadsafe()
        thread.join()
    if failures:
        raise failures[0]
    if shell.failure is not None:
        raise shell.failure
