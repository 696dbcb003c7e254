"""A Python client for retrograde replays: scripts that go back in time without gdb.

Open a trace (the replay server is started for you, in a process of its own or in
this one) or connect to a server already serving one, then move through the
recorded execution and look at it::

    from retrograde import client

    with client.open("traces/corrupt-0") as replay:    # examples/corrupt.c, recorded
        replay.cont()                                  # to the end of the recording
        replay.watch("sensor.calibration")             # a global, a member, an element
        stop = replay.reverse_cont()                   # back to the last write to it
        print(stop.location, stop.value_before, "->", stop.value_after)
        replay.delete(stop.breakpoint)
        replay.break_at("store_reading", condition=lambda r: r.value("next_slot") == 4)
        print(replay.reverse_cont(), replay.when())    # hits where it is false are passed

What there is:

- Opening: `open(trace)` starts ``retrograde replay -s 0`` on a free port and ends
  it on `Replay.close` (the context manager does that); ``in_process=True`` runs
  the replay engine on a thread of this process instead; `connect("HOST:PORT")`
  talks to a server started elsewhere and leaves it running, with nothing of this
  client's left inserted.
- Symbols (`Replay.symbols`): functions, globals with their C types and the DWARF
  line table of the program's executable, read from the trace's own copy of it
  (served over the protocol, so a rebuilt or deleted binary does not matter) and
  placed at the load address the recorded auxv gives a PIE; `Replay.libraries`:
  the symbol tables of the shared objects loaded at the current position.
- Breakpoints (`break_at`) and watchpoints (`watch`: "write", "read" or "access",
  on a global or on ADDRESS, LENGTH), each with an optional condition: a Python
  callable, given the `Replay`, evaluated here at each hit; a hit where it is false
  is passed and the program goes on in the same direction.
- Motion: `cont`, `reverse_cont`, `stepi`, `reverse_stepi` (N > 1 in one seek),
  `step` and `reverse_step` (one source line, from the line table, over functions
  that have none), `checkpoint` and `seek` (back or forward to a checkpoint),
  `when`. Each move returns a `Stop` saying why it ended.
- State: `registers`, `register("rip")`, `read_memory`, `read_int`, `value`
  (a global, decoded from its DWARF type: integers, characters, booleans,
  floating point, pointers, enums and arrays of them), `location`.

Every failure (no server, a refused packet, an unknown symbol, memory that cannot
be read) raises `ClientError` with a one-line message.

The client speaks the GDB remote protocol (gdb manual, appendix "GDB Remote Serial
Protocol") over the same codec as the server, so it sees exactly what gdb sees:
registers from the target description, stops from stop replies (``swbreak``,
``watch``, ``replaylog:begin``/``end``), moves in time from ``bc``/``bs`` and the
server's monitor commands (``when``, ``reverse-roll``, ``checkpoint``, ``restart``).
"""

from __future__ import annotations

import bisect
import io
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Self
from xml.etree import ElementTree

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from elftools.common.exceptions import ELFError
from elftools.dwarf.die import DIE
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from elftools.elf.segments import InterpSegment

from retrograde.gdbstub.codec import (
    PACKET_SIZE,
    Packet,
    ProtocolError,
    Role,
    RspCodec,
    console_text,
    unescape,
)
from retrograde.gdbstub.signals import from_gdb

__all__ = [
    "Breakpoint",
    "CType",
    "Checkpoint",
    "ClientError",
    "Function",
    "Global",
    "LineRow",
    "Location",
    "Position",
    "Replay",
    "Stop",
    "Symbols",
    "connect",
    "open",
]  # fmt: skip

Condition = Callable[["Replay"], object]

AT_BASE, AT_ENTRY = 7, 9  # auxv: the interpreter's load address, the program's entry
WATCH_KINDS = {"write": 2, "read": 3, "access": 4}
_WATCH_REPLY_KINDS = {b"watch": "write", b"rwatch": "read", b"awatch": "access"}
_STARTUP_TIMEOUT = 60.0  # seconds for a server to open its trace and listen
_PR_SET_PDEATHSIG = 1
_DECODER = Cs(CS_ARCH_X86, CS_MODE_64)


class ClientError(Exception):
    """Anything that went wrong talking to the replay: the message is one line for the user."""


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """A code address and what the symbols say about it (None where they say nothing)."""

    address: int
    function: str | None = None
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.function or '??'}"
        if self.file is not None:
            where += f" at {os.path.basename(self.file)}:{self.line}"
        return f"{where} ({self.address:#x})"


@dataclass(frozen=True)
class Position:
    """A moment of the recording, as the server's ``monitor when`` names it.

    ``event`` is the number of recorded events completed; ``text`` the server's
    whole description (the place inside the event interval too)."""

    event: int | None
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Checkpoint:
    """A position the server keeps, by name, so that `Replay.seek` can return to it."""

    name: str
    position: Position


@dataclass(frozen=True)
class Stop:
    """Why a move ended.

    reason: "breakpoint", "watchpoint", "step", "signal", "exited", "terminated",
    "history-begin" (going backwards, the start of the recording), "history-end"
    (going forwards, the end of what was recorded) or "interrupted".

    For a watchpoint, ``value_before`` and ``value_after`` are the watched value
    before and after the access in program order, whichever way the replay went
    (going backwards the replay stops before the write, as gdb does, so then the
    current memory holds ``value_before``): decoded for a watched variable, bytes
    for an address. They are None where the memory could not be read."""

    reason: str
    location: Location | None = None
    signal: int | None = None  # Linux's number
    exit_status: int | None = None
    breakpoint: Breakpoint | None = None
    watch_address: int | None = None
    value_before: Any = None
    value_after: Any = None

    @property
    def pc(self) -> int | None:
        return self.location.address if self.location is not None else None

    def __str__(self) -> str:
        text = self.reason
        if self.breakpoint is not None:
            text += f" ({self.breakpoint.kind} {self.breakpoint.spec})"
        if self.signal is not None:
            text += f" {signal.Signals(self.signal).name}" \
                if self.signal in signal.Signals._value2member_map_ else f" signal {self.signal}"
        if self.exit_status is not None:
            text += f" with status {self.exit_status}"
        if self.location is not None:
            text += f" in {self.location}"
        return text


@dataclass(eq=False)
class Breakpoint:
    """A breakpoint (kind "break") or watchpoint ("write", "read", "access") the
    client inserted; ``spec`` is what it was asked for ("main", "prog.c:12", a global)."""

    kind: str
    address: int
    length: int
    spec: str
    condition: Condition | None = None
    hits: int = 0  # stops where the condition held (or there was none)
    ctype: CType | None = None  # a watched variable's type: stops decode its values
    _last_value: bytes | None = field(default=None, repr=False)

    def decode(self, data: bytes | None) -> Any:
        if data is None or self.ctype is None:
            return data
        return self.ctype.decode(data)

    @property
    def z_type(self) -> int:
        return 0 if self.kind == "break" else WATCH_KINDS[self.kind]


# -- symbols -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CType:
    """A C type as far as decoding a value needs it.

    kind: "signed", "unsigned", "char" and "uchar" (numbers, as in C), "bool",
    "float", "pointer" (the address), "enum" (the number), "array" (``element``,
    ``count``: a list, or bytes for an array of characters), "struct" or "union"
    (``members``: name, offset, type; a dict) or "other" (its bytes are the value)."""

    name: str
    size: int
    kind: str
    element: CType | None = None
    count: int = 0
    members: tuple[tuple[str, int, CType], ...] = ()

    def member(self, name: str) -> tuple[int, CType] | None:
        return next(((offset, ctype) for member, offset, ctype in self.members
                     if member == name), None)

    def decode(self, data: bytes) -> Any:
        if self.kind in ("struct", "union"):
            return {name: ctype.decode(data[offset:offset + ctype.size])
                    for name, offset, ctype in self.members}
        if self.kind == "array" and self.element is not None:
            if self.element.kind in ("char", "uchar"):
                return data
            size = self.element.size
            return [self.element.decode(data[i * size:(i + 1) * size]) for i in range(self.count)]
        if self.kind == "float" and self.size in (4, 8):
            return struct.unpack("<f" if self.size == 4 else "<d", data)[0]
        if self.kind in ("signed", "enum", "char"):
            return int.from_bytes(data, "little", signed=True)
        if self.kind in ("unsigned", "pointer", "uchar"):
            return int.from_bytes(data, "little")
        if self.kind == "bool":
            return data != bytes(len(data))
        return data


@dataclass(frozen=True)
class Function:
    name: str
    address: int  # the entry, load bias applied
    size: int

    def __contains__(self, address: int) -> bool:
        return self.address <= address < self.address + max(self.size, 1)


@dataclass(frozen=True)
class Global:
    name: str
    address: int
    size: int
    type: CType | None  # None: the symbol table knows it, DWARF does not


@dataclass(frozen=True)
class LineRow:
    """A row of the DWARF line table: the code from ``address`` up to the next row's
    address belongs to ``file``:``line``. ``is_stmt``: a recommended breakpoint place."""

    address: int
    file: str
    line: int
    is_stmt: bool


class Symbols:
    """What one ELF file says about the program, at the address it was loaded.

    Built from the file's bytes (pyelftools): the functions and objects of its
    symbol table, the types of its globals and its line table from DWARF.
    ``bias`` is added to every address in the file (a PIE's load address)."""

    def __init__(self, elf_file: BinaryIO | bytes, bias: int = 0, name: str = "") -> None:
        self.name = name
        self.bias = bias
        try:
            elf = ELFFile(io.BytesIO(elf_file) if isinstance(elf_file, bytes) else elf_file)
            self.functions: dict[str, Function] = {}
            self.globals: dict[str, Global] = {}
            self._read_symbol_table(elf)
            interp = next((segment for segment in elf.iter_segments()
                           if isinstance(segment, InterpSegment)), None)
            self.interpreter: str | None = interp.get_interp_name() if interp else None
            self._extent = [(segment["p_vaddr"] + bias, segment["p_vaddr"] + segment["p_memsz"]
                             + bias) for segment in elf.iter_segments()
                            if segment["p_type"] == "PT_LOAD"]
            self.rows: list[LineRow] = []  # sorted by address; end-of-sequence rows as line 0
            if elf.has_dwarf_info():
                self._read_dwarf(elf)
        except (ELFError, struct.error, KeyError, ValueError) as error:
            raise ClientError(f"cannot read the symbols of {name or 'the program'}: {error}") \
                from None
        self._by_address = sorted(self.functions.values(), key=lambda f: f.address)
        self._starts = [f.address for f in self._by_address]
        self._row_addresses = [row.address for row in self.rows]

    @staticmethod
    def entry_of(elf_file: BinaryIO) -> tuple[int, bool]:
        """(e_entry, whether the file is position-independent: ET_DYN)."""
        elf = ELFFile(elf_file)
        return elf.header["e_entry"], elf.header["e_type"] == "ET_DYN"

    def _read_symbol_table(self, elf: ELFFile) -> None:
        table = elf.get_section_by_name(".symtab") or elf.get_section_by_name(".dynsym")
        if not isinstance(table, SymbolTableSection):
            return
        for symbol in table.iter_symbols():
            kind, value = symbol["st_info"]["type"], symbol["st_value"]
            if not symbol.name or not value or symbol["st_shndx"] == "SHN_UNDEF":
                continue
            if kind == "STT_FUNC":
                self.functions.setdefault(symbol.name,
                                          Function(symbol.name, value + self.bias,
                                                   symbol["st_size"]))
            elif kind == "STT_OBJECT":
                self.globals.setdefault(symbol.name, Global(symbol.name, value + self.bias,
                                                            symbol["st_size"], None))

    def _read_dwarf(self, elf: ELFFile) -> None:
        dwarf = elf.get_dwarf_info()
        rows: list[LineRow] = []
        for unit in dwarf.iter_CUs():
            program = dwarf.line_program_for_CU(unit)
            if program is not None:
                rows += self._line_rows(program)
            for die in unit.get_top_DIE().iter_children():
                if die.tag == "DW_TAG_variable":
                    self._read_global(die)
        rows.sort(key=lambda row: (row.address, row.line == 0))
        self.rows = rows

    def _line_rows(self, program: Any) -> list[LineRow]:
        header = program.header
        # DWARF 5 numbers files from 0 (entry 0 is the unit's own file), older
        # versions from 1.
        base = 0 if header["version"] >= 5 else 1
        directories = [d.decode(errors="replace") if isinstance(d, bytes) else str(d)
                       for d in header["include_directory"]]
        files = []
        for entry in header["file_entry"]:
            name = entry.name.decode(errors="replace")
            directory_index = entry.dir_index - (0 if base == 0 else 1)
            if not name.startswith("/") and 0 <= directory_index < len(directories):
                name = os.path.join(directories[directory_index], name)
            files.append(name)
        rows = []
        for entry in program.get_entries():
            state = entry.state
            if state is None:
                continue
            if state.end_sequence:
                rows.append(LineRow(state.address + self.bias, "", 0, False))
                continue
            index = state.file - base
            name = files[index] if 0 <= index < len(files) else "??"
            rows.append(LineRow(state.address + self.bias, name, state.line, bool(state.is_stmt)))
        return rows

    def _read_global(self, die: DIE) -> None:
        location = die.attributes.get("DW_AT_location")
        if location is None or location.form not in ("DW_FORM_exprloc", "DW_FORM_block1"):
            return
        expression = bytes(location.value)
        if len(expression) != 9 or expression[0] != 0x03:  # DW_OP_addr ADDRESS, nothing else
            return
        named = die
        if "DW_AT_specification" in die.attributes:
            named = die.get_DIE_from_attribute("DW_AT_specification")
        name_attribute = named.attributes.get("DW_AT_name")
        if name_attribute is None:
            return
        name = name_attribute.value.decode(errors="replace")
        ctype = _ctype(named if "DW_AT_type" in named.attributes else die)
        address = struct.unpack("<Q", expression[1:])[0] + self.bias
        size = ctype.size if ctype is not None else self.globals.get(name, Global("", 0, 0, None)).size
        self.globals[name] = Global(name, address, size, ctype)

    # -- lookups ----------------------------------------------------------------------------------
    def covers(self, address: int) -> bool:
        """Whether ``address`` is inside one of the file's loaded segments."""
        return any(start <= address < end for start, end in self._extent)

    def function_at(self, address: int) -> Function | None:
        i = bisect.bisect_right(self._starts, address) - 1
        while i >= 0:
            function = self._by_address[i]
            if address in function:
                return function
            if function.address + function.size <= address and function.size:
                return None
            i -= 1
        return None

    def row_at(self, address: int) -> LineRow | None:
        """The line-table row whose code holds ``address`` (None: no line information)."""
        i = bisect.bisect_right(self._row_addresses, address) - 1
        if i < 0:
            return None
        row = self.rows[i]
        if row.line == 0:
            return None
        # Rows at one address: the last one describes the code there.
        return row

    def is_line_start(self, address: int) -> bool:
        """Whether ``address`` begins a statement in the line table (where a step stops)."""
        i = bisect.bisect_left(self._row_addresses, address)
        while i < len(self.rows) and self.rows[i].address == address:
            if self.rows[i].is_stmt and self.rows[i].line:
                return True
            i += 1
        return False

    def location(self, address: int) -> Location:
        function = self.function_at(address)
        row = self.row_at(address)
        return Location(address, function.name if function else None,
                        row.file if row else None, row.line if row else None)

    def line_addresses(self, file: str, line: int) -> list[int]:
        """Where the statements of ``file``:``line`` begin: the first is_stmt row of each
        run of rows for it (a line whose code is split, like a `for` header, has several)."""
        addresses = []
        previous: LineRow | None = None
        for row in self.rows:
            ours = row.line == line and _same_file(row.file, file)
            continues = previous is not None and previous.line == line \
                and _same_file(previous.file, file)
            if ours and row.is_stmt and not continues:
                addresses.append(row.address)
            previous = row
        return addresses

    def after_prologue(self, function: Function) -> int:
        """The first statement of ``function``'s body: its second line in the line table
        (gdb's way of skipping a prologue when it has nothing better)."""
        entry_row = self.row_at(function.address)
        for row in self.rows[bisect.bisect_left(self._row_addresses, function.address):]:
            if row.address not in function or row.line == 0:
                break
            if row.is_stmt and entry_row is not None and row.line != entry_row.line:
                return row.address
        return function.address


def _type_name(die: DIE) -> str:
    """The C name of the type ``die``'s DW_AT_type names, without looking inside it."""
    if "DW_AT_type" not in die.attributes:
        return "void"
    target = die.get_DIE_from_attribute("DW_AT_type")
    if "DW_AT_name" in target.attributes:
        name = target.attributes["DW_AT_name"].value.decode()
        prefix = {"DW_TAG_structure_type": "struct ", "DW_TAG_union_type": "union ",
                  "DW_TAG_enumeration_type": "enum "}.get(str(target.tag), "")
        return prefix + name
    if target.tag == "DW_TAG_pointer_type":
        return _type_name(target) + " *"
    return _type_name(target)


def _uleb128(data: bytes) -> int:
    value = 0
    for shift, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * shift)
        if not byte & 0x80:
            break
    return value


def _same_file(recorded: str, asked: str) -> bool:
    """"prog.c" names /build/dir/prog.c; "dir/prog.c" too; a full path only itself."""
    return recorded == asked or recorded.endswith("/" + asked.lstrip("/"))


# DW_ATE_*: address 1, boolean 2, float 4, signed 5, signed_char 6, unsigned 7,
# unsigned_char 8, UTF 0x10 (char8_t, char16_t...).
_ENCODINGS = {0x05: "signed", 0x06: "char", 0x08: "uchar", 0x07: "unsigned",
              0x02: "bool", 0x04: "float", 0x01: "unsigned", 0x10: "unsigned"}


def _ctype(die: DIE, depth: int = 0) -> CType | None:
    """The type ``die``'s DW_AT_type names, through typedefs and qualifiers."""
    if "DW_AT_type" not in die.attributes or depth > 16:
        return None
    target = die.get_DIE_from_attribute("DW_AT_type")
    name = target.attributes["DW_AT_name"].value.decode() if "DW_AT_name" in target.attributes else ""
    size = target.attributes["DW_AT_byte_size"].value \
        if "DW_AT_byte_size" in target.attributes else 0
    tag = str(target.tag)
    if tag in ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
               "DW_TAG_restrict_type", "DW_TAG_atomic_type"):
        inner = _ctype(target, depth + 1)
        if inner is not None and tag == "DW_TAG_typedef":
            return CType(name, inner.size, inner.kind, inner.element, inner.count)
        return inner
    if tag == "DW_TAG_base_type":
        encoding = target.attributes["DW_AT_encoding"].value
        return CType(name, size, _ENCODINGS.get(encoding, "other"))
    if tag == "DW_TAG_pointer_type":
        return CType(f"{_type_name(target)} *", size or 8, "pointer")
    if tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
        members = []
        for member in target.iter_children():
            offset = member.attributes.get("DW_AT_data_member_location")
            member_type = _ctype(member, depth + 1)
            if member.tag != "DW_TAG_member" or member_type is None or \
                    "DW_AT_name" not in member.attributes or "DW_AT_bit_size" in member.attributes:
                continue
            value = offset.value if offset is not None else 0
            if isinstance(value, list):  # an old-style location: DW_OP_plus_uconst N
                value = _uleb128(bytes(value[1:])) if value[:1] == [0x23] else 0
            members.append((member.attributes["DW_AT_name"].value.decode(), value, member_type))
        kind = "struct" if tag == "DW_TAG_structure_type" else "union"
        return CType(f"{kind} {name}".strip(), size, kind, members=tuple(members))
    if tag == "DW_TAG_enumeration_type":
        return CType(name or "enum", size, "enum")
    if tag == "DW_TAG_array_type":
        element = _ctype(target, depth + 1)
        count = 1
        for subrange in target.iter_children():
            if subrange.tag != "DW_TAG_subrange_type":
                continue
            if "DW_AT_count" in subrange.attributes:
                count *= subrange.attributes["DW_AT_count"].value
            elif "DW_AT_upper_bound" in subrange.attributes:
                count *= subrange.attributes["DW_AT_upper_bound"].value + 1
        if element is None:
            return CType(name, 0, "other")
        return CType(f"{element.name}[{count}]", element.size * count, "array", element, count)
    return CType(name or tag.removeprefix("DW_TAG_"), size, "other")


# -- the connection ----------------------------------------------------------------------------


def _hex_int(field: bytes) -> int:
    return int(field, 16)


class _Connection:
    """One RSP connection to a server: framing by the shared codec, a packet and its
    reply at a time. Console output (`O` packets) that comes before a reply is kept
    in ``console``."""

    def __init__(self, host: str, port: int, timeout: float | None) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=30)
        except OSError as error:
            raise ClientError(f"cannot connect to a replay server at {host}:{port}: "
                              f"{error.strerror or error}") from None
        self.sock.settimeout(timeout)
        self.address = f"{host}:{port}"
        # What we accept: a reply of PacketSize characters, each possibly escaped.
        self.codec = RspCodec(Role.CLIENT, packet_size=4 * PACKET_SIZE)
        self.console = ""
        self._replies: list[bytes] = []
        self._send_lock = threading.Lock()

    def request(self, payload: bytes) -> bytes:
        with self._send_lock:
            try:
                self.sock.sendall(self.codec.packet(payload))
            except OSError as error:
                raise ClientError(f"lost the replay server at {self.address}: "
                                  f"{error.strerror or error}") from None
        return self.reply()

    def reply(self) -> bytes:
        while True:
            while self._replies:
                payload = unescape(self._replies.pop(0))
                text = console_text(payload)
                if text is None:
                    return payload
                self.console += text
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise ClientError(f"the replay server at {self.address} did not answer "
                                  "in time") from None
            except OSError as error:
                raise ClientError(f"lost the replay server at {self.address}: "
                                  f"{error.strerror or error}") from None
            if not data:
                raise ClientError(f"the replay server at {self.address} closed the connection")
            try:
                events = self.codec.receive_data(data)
            except ProtocolError as error:
                raise ClientError(f"the replay server at {self.address} broke the protocol: "
                                  f"{error}") from None
            acknowledgments = self.codec.data_to_send()
            if acknowledgments:
                with self._send_lock:
                    self.sock.sendall(acknowledgments)
            self._replies += [event.payload for event in events if isinstance(event, Packet)]

    def interrupt(self) -> None:
        """A 0x03: the server stops the move it is making (from any thread)."""
        with self._send_lock:
            try:
                self.sock.sendall(b"\x03")
            except OSError:
                pass

    def send_only(self, payload: bytes) -> None:
        with self._send_lock:
            try:
                self.sock.sendall(self.codec.packet(payload))
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass



class _ServedFile(io.RawIOBase):
    """A file the server serves (vFile:open/pread/close), read on demand in blocks
    and kept: pyelftools reads the headers, tables and debug sections it parses,
    not the whole of a 2 MB libc."""

    def __init__(self, request: Callable[[bytes], bytes], path: str, block: int) -> None:
        super().__init__()
        self._request, self.path, self._block = request, path, block
        self._number = -1
        reply = request(b"vFile:open:%s,0,0" % path.encode().hex().encode())
        if not reply.startswith(b"F") or reply.startswith(b"F-"):
            raise ClientError(f"the server has no copy of {path}")
        self._number = _hex_int(reply[1:])
        self._blocks: dict[int, bytes] = {}
        self._position = 0
        # The File-I/O struct stat: seven 4-byte fields, then st_size (8, big-endian).
        head, _, stat = request(b"vFile:fstat:%x" % self._number).partition(b";")
        if head.startswith(b"F-") or len(stat) < 36:
            self.close()
            raise ClientError(f"cannot read the size of the server's copy of {path}")
        self.size = struct.unpack_from(">Q", stat, 28)[0]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view):
            index, skip = divmod(self._position, self._block)
            data = self._read_block(index)[skip:skip + len(view) - done]
            if not data:
                break
            view[done:done + len(data)] = data
            done += len(data)
            self._position += len(data)
        return done

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(self._block):
            chunks.append(chunk)
        return b"".join(chunks)

    def _read_block(self, index: int) -> bytes:
        if index not in self._blocks:
            reply = self._request(b"vFile:pread:%x,%x,%x" % (self._number, self._block,
                                                              index * self._block))
            head, _, data = reply.partition(b";")
            if head.startswith(b"F-") or not head.startswith(b"F"):
                raise ClientError(f"cannot read the server's copy of {self.path}")
            self._blocks[index] = data
        return self._blocks[index]

    def close(self) -> None:
        if not self.closed and self._number >= 0:
            self._request(b"vFile:close:%x" % self._number)
        super().close()


# -- servers -----------------------------------------------------------------------------------


# Run first in the server's process: SIGTERM to it when the client's thread that
# started it dies (prctl PR_SET_PDEATHSIG survives the exec), so that a client
# killed without closing leaves no server listening; then the server itself.
# SIGTERM unwinds the replay like Ctrl-C, so every replay process is reaped.
_SERVER_LAUNCHER = f"""
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, signal.SIGTERM, 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)  # the client is gone already
os.execv(sys.executable, [sys.executable, "-m", "retrograde", *sys.argv[2:]])
"""


class _ServerProcess:
    """``retrograde replay -s 0 TRACE`` in a session of its own, started and listening."""

    def __init__(self, trace: Path, echo: bool) -> None:
        argv = [sys.executable, "-c", _SERVER_LAUNCHER, str(os.getpid()),
                "replay", "-s", "0", *([] if echo else ["--no-echo"]), str(trace)]
        # A session of its own: the terminal's Ctrl-C is the client's to handle.
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self._header: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._echo = echo
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        try:
            line = self._header.get(timeout=_STARTUP_TIMEOUT)
        except queue.Empty:
            line = None
        match = re.match(r"listening on (\S+):(\d+)$", line.strip()) if line else None
        if match is None:
            self.close()
            raise ClientError(self.failure() or f"the replay server for {trace} did not start")
        self.host, self.port = match[1], int(match[2])

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for n, line in enumerate(self.process.stdout):
            if n == 0:
                self._header.put(line.decode(errors="replace"))
            elif n > 2 and self._echo:  # after the lines that tell how to connect gdb
                sys.stdout.write(line.decode(errors="replace"))
                sys.stdout.flush()
        self._header.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line.decode(errors="replace"))

    def failure(self) -> str:
        """The server's own one-line error, if it printed one (waiting a little for a
        server that is going away to say why)."""
        try:
            self.process.wait(2)
            self._stderr_reader.join(2)
        except subprocess.TimeoutExpired:
            pass
        lines = [line.strip() for line in self._stderr if line.strip()]
        return lines[-1].removeprefix("retrograde: ") if lines else ""

    def close(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            try:
                self.process.wait(timeout)  # after vKill the server ends by itself
            except subprocess.TimeoutExpired:
                # SIGTERM unwinds the replay like Ctrl-C, so every replay process is reaped.
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class _ServerThread:
    """The replay engine and its server on a thread of this process.

    That thread is the tracer of every replay process (ptrace takes requests for a
    tracee only from the thread that attached it), so the timeline is made, served
    and closed there."""

    def __init__(self, trace: Path, echo: bool) -> None:
        self._listening: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, args=(trace, echo),
                                        name="retrograde-replay", daemon=True)
        self._thread.start()
        address = self._listening.get()
        if address is None:
            self._thread.join()
            raise ClientError(_engine_error(self._failure, trace))
        self.host, self.port = address

    def _serve(self, trace: Path, echo: bool) -> None:
        from retrograde.gdbstub import serve
        from retrograde.gdbstub.replay_target import ReplayTarget
        from retrograde.replay.timeline import Timeline
        from retrograde.trace.format import TraceReader

        try:
            with TraceReader(trace) as reader, Timeline(reader, echo=echo) as timeline:
                serve(ReplayTarget(timeline), "127.0.0.1", 0,
                      on_listening=lambda host, port: self._listening.put((host, port)))
        except BaseException as error:  # noqa: BLE001 - reported to the client's thread
            self._failure = error
        finally:
            self._listening.put(None)

    def failure(self) -> str:
        return _engine_error(self._failure, None) if self._failure is not None else ""

    def close(self, timeout: float = 30) -> None:
        self._thread.join(timeout)


def _engine_error(error: BaseException | None, trace: Path | None) -> str:
    if error is None:
        return f"the replay of {trace} ended before it served"
    return str(error) or type(error).__name__


def open(trace: str | os.PathLike[str] | None = None, *, in_process: bool = False,
         echo: bool = False, timeout: float | None = None) -> Replay:
    """Start a replay server on ``trace`` (a trace directory, a trace's name under
    $RETROGRADE_DIR, or None for the latest) and connect to it.

    The server is ``retrograde replay -s 0`` in a process of its own, or, with
    ``in_process``, the replay engine on a thread of this one. ``echo``: the
    replayed program's output goes to this process's stdout as it is replayed.
    ``timeout``: seconds to wait for any one answer (None: as long as a move takes).
    Closing the `Replay` ends the server and every replay process it made."""
    path = _trace_path(trace)
    server: _ServerProcess | _ServerThread
    server = _ServerThread(path, echo) if in_process else _ServerProcess(path, echo)
    try:
        return Replay(server.host, server.port, timeout=timeout, server=server)
    except BaseException:
        server.close(timeout=5)
        raise


def connect(address: str, *, timeout: float | None = None) -> Replay:
    """Connect to a replay server already listening at ``HOST:PORT`` (``retrograde
    replay -s PORT``). Closing the `Replay` detaches: the server keeps serving."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ClientError(f"not an address: {address!r} (expected HOST:PORT)")
    return Replay(host or "127.0.0.1", int(port), timeout=timeout)


def _trace_path(trace: str | os.PathLike[str] | None) -> Path:
    from retrograde.cli import UserError, resolve_trace

    try:
        return resolve_trace(None if trace is None else os.fspath(trace))
    except UserError as error:
        raise ClientError(str(error)) from None


# -- the replay --------------------------------------------------------------------------------


class Replay:
    """A connection to a replay server: the program, stopped at some moment of its
    recording, that this object moves forwards and backwards and reads.

    One move at a time, from one thread; `interrupt` may come from any thread.
    A context manager: leaving it closes the connection, and the server too if
    `open` started it."""

    def __init__(self, host: str, port: int, *, timeout: float | None = None,
                 server: _ServerProcess | _ServerThread | None = None) -> None:
        self._server = server
        self._connection = _Connection(host, port, timeout)
        self._closed = False
        self.breakpoints: list[Breakpoint] = []
        self._registers: dict[str, int] | None = None
        self._interrupt_sent = False
        self._moving_backwards = False
        self.stop: Stop | None = None  # how the last move ended
        try:
            self._negotiate()
            self._register_layout = self._read_target_description()
            self.symbols = self._load_symbols()
            self._libraries: dict[tuple[str, int], Symbols | None] = {}
            self._libraries_seen_at = -1  # the move after which the list was last read
            self._loaded: set[tuple[str, int]] = set()
            self._moves = 0
            self.stop = self._stop_from(self._request(b"?"), moved=None)
        except BaseException:
            self.close()
            raise

    # -- lifetime ---------------------------------------------------------------------------------
    @property
    def server_pid(self) -> int | None:
        """The server process `open` started (None: in this process, or `connect`ed)."""
        return self._server.process.pid if isinstance(self._server, _ServerProcess) else None

    def close(self) -> None:
        """Detach (a server we connected to keeps serving, with nothing of ours inserted)
        or, for a server `open` started, end it and wait until every replay process is gone."""
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        if self._server is None:
            connection.send_only(b"D")
            try:
                connection.sock.settimeout(10)
                connection.reply()
            except ClientError:
                pass
        else:
            connection.send_only(b"vKill")
        connection.close()
        if self._server is not None:
            self._server.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- protocol ---------------------------------------------------------------------------------
    def _request(self, payload: bytes) -> bytes:
        if self._closed:
            raise ClientError("the replay is closed")
        try:
            return self._connection.request(payload)
        except ClientError as error:
            reason = self._server.failure() if self._server is not None else ""
            raise ClientError(f"{error}: {reason}" if reason else str(error)) from None

    def _checked(self, payload: bytes, what: str) -> bytes:
        reply = self._request(payload)
        if reply.startswith(b"E"):
            detail = reply[2:].decode(errors="replace") if reply.startswith(b"E.") else \
                f"error {reply[1:].decode(errors='replace')}"
            raise ClientError(f"{what}: the server refused ({detail})")
        if not reply and payload[:1] not in (b"D",):
            raise ClientError(f"{what}: the server does not support {payload[:16]!r}")
        return reply

    def _negotiate(self) -> None:
        features = self._checked(b"qSupported:swbreak+;hwbreak+", "negotiating")
        size = re.search(rb"PacketSize=([0-9a-fA-F]+)", features)
        self._packet_size = int(size[1], 16) if size else 4000
        self._reverse = b"ReverseContinue+" in features
        if b"QStartNoAckMode+" in features:
            self._checked(b"QStartNoAckMode", "negotiating")
            self._connection.codec.start_no_ack_mode()

    def _transfer(self, object_name: str, annex: str = "") -> bytes:
        """A whole qXfer object, read window by window."""
        data = b""
        chunk = self._packet_size // 2 - 16  # room for escapes
        while True:
            reply = self._checked(b"qXfer:%s:read:%s:%x,%x" % (
                object_name.encode(), annex.encode(), len(data), chunk),
                f"reading {object_name}")
            data += reply[1:]
            if reply[:1] == b"l" or len(reply) == 1:
                return data

    def _read_target_description(self) -> list[tuple[str, int]]:
        """(name, size in bytes) of each register, in the order of the `g` reply."""
        try:
            root = ElementTree.fromstring(self._transfer("features", "target.xml"))
        except ElementTree.ParseError as error:
            raise ClientError(f"the server's target description does not parse: {error}") \
                from None
        registers = [(reg.get("name", ""), int(reg.get("regnum", n)), int(reg.get("bitsize", 0)))
                     for n, reg in enumerate(root.iter("reg"))]
        return [(name, bits // 8) for name, _, bits in sorted(registers, key=lambda r: r[1])]

    def read_file(self, path: str) -> bytes:
        """The contents of ``path`` as the server serves it: the trace's copy of a file
        the program mapped; ``/proc/PID/maps`` is the recorded address space."""
        with self._served(path) as file:
            return file.read()

    def _served(self, path: str) -> io.BufferedReader:
        block = self._packet_size // 2
        return io.BufferedReader(_ServedFile(self._request, path, block), buffer_size=block)

    def _load_symbols(self) -> Symbols:
        path = self._transfer("exec-file").decode(errors="replace")
        with self._served(path) as elf:
            try:
                entry, position_independent = Symbols.entry_of(elf)
            except (ELFError, struct.error) as error:
                raise ClientError(f"{path} is not an ELF file the client can read: {error}") \
                    from None
            auxv = self._transfer("auxv")
            values = dict(struct.iter_unpack("<QQ", auxv[: len(auxv) // 16 * 16]))
            bias = values.get(AT_ENTRY, entry) - entry if position_independent else 0
            symbols = Symbols(elf, bias, path)
        self._interpreter = (symbols.interpreter, values[AT_BASE]) \
            if symbols.interpreter and values.get(AT_BASE) else None
        return symbols

    def libraries(self) -> list[Symbols]:
        """The symbols of the shared objects mapped now: the dynamic loader (from the
        auxv's AT_BASE) and those in its list of loaded objects (qXfer:libraries-svr4),
        each from the trace's copy, at its load address. Their symbol tables only:
        functions and objects, no lines (their DWARF is in separate debug files)."""
        if self._libraries_seen_at != self._moves:
            self._libraries_seen_at = self._moves
            loaded = [self._interpreter] if self._interpreter else []
            try:
                listing = ElementTree.fromstring(self._transfer("libraries-svr4"))
                loaded += [(library.get("name", ""), int(library.get("l_addr", "0"), 16))
                           for library in listing.iter("library")]
            except (ClientError, ElementTree.ParseError, ValueError):
                pass  # no list yet: the loader has not made it
            for name, base in loaded:
                if name and (name, base) not in self._libraries:
                    try:
                        with self._served(name) as elf:
                            self._libraries[(name, base)] = Symbols(elf, base, name)
                    except ClientError:
                        self._libraries[(name, base)] = None  # no copy, or not ELF
            self._loaded = set(loaded)
        return [symbols for key, symbols in self._libraries.items()
                if symbols is not None and key in self._loaded]

    # -- where -------------------------------------------------------------------------------
    def when(self) -> Position:
        """The current position in the recording."""
        text = self.monitor("when").strip()
        event = re.search(r"event (\d+)", text)
        return Position(int(event[1]) if event else None, text)

    def location(self, address: int | None = None) -> Location:
        """The function and source line of ``address`` (default: the pc), from the
        executable or, for the function only, from a shared object it loaded."""
        address = self.pc if address is None else address
        location = self.symbols.location(address)
        if location.function is None and not self.symbols.covers(address):
            for library in self.libraries():
                function = library.function_at(address)
                if function is not None:
                    return Location(address, function.name)
        return location

    @property
    def pc(self) -> int:
        return self.register("rip")

    def monitor(self, command: str) -> str:
        """A monitor command's output (``help`` lists them). Commands that move the
        replay (``restart``, ``reverse-roll``) are better made through `seek` and
        `reverse_stepi`, which keep this object's view of the registers right."""
        connection = self._connection
        connection.console = ""
        reply = self._request(b"qRcmd," + command.encode().hex().encode())
        output, connection.console = connection.console, ""
        self._registers = None  # the command may have moved the replay
        self._moves += 1
        # The server answers a command it cannot carry out with OK and its reason as
        # the last console line, "retrograde: ..." (gdb shows an error reply to qRcmd
        # only as "Protocol error"); a command's own output never starts that way.
        lines = output.strip().splitlines()
        if reply != b"OK" or (lines and lines[-1].startswith("retrograde: ")):
            reason = lines[-1].removeprefix("retrograde: ") if lines else reply.decode()
            raise ClientError(f"monitor {command}: {reason}")
        return output

    # -- state -----------------------------------------------------------------------------------
    def registers(self) -> dict[str, int]:
        """Every register the target describes, by gdb's names (rip, rax, eflags, xmm0...)."""
        if self._registers is None:
            data = bytes.fromhex(self._checked(b"g", "reading registers").decode())
            values, offset = {}, 0
            for name, size in self._register_layout:
                values[name] = int.from_bytes(data[offset:offset + size], "little")
                offset += size
            self._registers = values
        return dict(self._registers)

    def register(self, name: str) -> int:
        registers = self.registers() if self._registers is None else self._registers
        if name not in registers:
            raise ClientError(f"no register named {name!r}")
        return registers[name]

    def read_memory(self, address: int, length: int) -> bytes:
        """``length`` bytes of the program's memory at ``address``, as recorded."""
        data = bytearray()
        chunk = self._packet_size // 2 - 16
        while len(data) < length:
            at = address + len(data)
            reply = self._request(b"m%x,%x" % (at, min(chunk, length - len(data))))
            if reply.startswith(b"E") or not reply:
                raise ClientError(f"cannot read {length} bytes of memory at {address:#x} "
                                  f"(nothing readable at {at:#x})")
            data += bytes.fromhex(reply.decode())
        return bytes(data)

    def read_int(self, address: int, size: int = 8, *, signed: bool = True) -> int:
        return int.from_bytes(self.read_memory(address, size), "little", signed=signed)

    def value(self, expression: str) -> Any:
        """The value of a global, or of a member or element of one ("sensor.calibration",
        "table[3]"), decoded from its DWARF type (see `CType.decode`)."""
        address, size, ctype = self.address_of(expression)
        data = self.read_memory(address, size)
        return ctype.decode(data) if ctype is not None else data

    def address_of(self, expression: str) -> tuple[int, int, CType | None]:
        """(address, size, type) of a global, or of a member or element of one."""
        name, *path = re.split(r"(?=[.\[])", expression.replace(" ", ""))
        variable = self.symbols.globals.get(name)
        if variable is None:
            raise ClientError(f"no global variable named {name!r} in {self.symbols.name}")
        address, size, ctype = variable.address, variable.size, variable.type
        for part in path:
            if ctype is None:
                raise ClientError(f"{expression}: the type of {name} is unknown (no DWARF)")
            if part.startswith("."):
                member = ctype.member(part[1:])
                if member is None:
                    raise ClientError(f"{expression}: {ctype.name} has no member {part[1:]!r}")
                offset, ctype = member
                address, size = address + offset, ctype.size
            elif re.fullmatch(r"\[\d+\]", part) and ctype.kind == "array" and ctype.element:
                index = int(part[1:-1])
                if index >= ctype.count:
                    raise ClientError(f"{expression}: {ctype.name} has {ctype.count} elements")
                ctype = ctype.element
                address, size = address + index * ctype.size, ctype.size
            else:
                raise ClientError(f"{expression}: cannot take {part!r} of {ctype.name} "
                                  "(a global, .member and [index] only)")
        return address, size, ctype

    # -- breakpoints and watchpoints -----------------------------------------------------------------
    def break_at(self, where: str | int, *, condition: Condition | None = None) -> Breakpoint:
        """A breakpoint at a function (after its prologue, as gdb puts it), at
        ``file:line`` (the first statement of the line), at ``*ADDRESS`` or an address."""
        address, spec = self._code_address(where)
        return self._insert(Breakpoint("break", address, 1, spec, condition))

    def watch(self, what: str | int, length: int | None = None, *, kind: str = "write",
              condition: Condition | None = None) -> Breakpoint:
        """A watchpoint on a global (by name) or on ``length`` bytes at an address;
        ``kind`` is "write", "read" (stops at reads: an access that leaves the value
        as it was, as gdb tells them on x86) or "access" (both)."""
        if kind not in WATCH_KINDS:
            raise ClientError(f"no watchpoint kind {kind!r} (write, read or access)")
        ctype = None
        if isinstance(what, str):
            address, size, ctype = self.address_of(what)
            size, spec = length or size, what
        else:
            if not length:
                raise ClientError(f"watching {what:#x} needs a length in bytes")
            address, size, spec = what, length, f"{what:#x},{length}"
        if size <= 0:
            raise ClientError(f"cannot watch {spec}: its size is unknown (give a length)")
        watchpoint = Breakpoint(kind, address, size, spec, condition,
                                ctype=ctype if ctype is not None and ctype.size == size else None)
        watchpoint._last_value = self._peek(address, size)
        return self._insert(watchpoint)

    def delete(self, breakpoint: Breakpoint) -> None:
        if breakpoint in self.breakpoints:
            self.breakpoints.remove(breakpoint)
            self._request(b"z%x,%x,%x" % (breakpoint.z_type, breakpoint.address,
                                          breakpoint.length))

    def _insert(self, breakpoint: Breakpoint) -> Breakpoint:
        what = "watchpoint" if breakpoint.kind != "break" else "breakpoint"
        self._checked(b"Z%x,%x,%x" % (breakpoint.z_type, breakpoint.address, breakpoint.length),
                      f"cannot set a {what} at {breakpoint.spec} (the x86 debug registers hold "
                      "4 aligned pieces of up to 8 bytes)" if breakpoint.kind != "break"
                      else f"cannot set a breakpoint at {breakpoint.spec}")
        self.breakpoints.append(breakpoint)
        return breakpoint

    def _code_address(self, where: str | int) -> tuple[int, str]:
        if isinstance(where, int):
            return where, f"{where:#x}"
        text = where.strip()
        if text.startswith("*"):
            try:
                return int(text[1:], 0), text
            except ValueError:
                raise ClientError(f"not an address: {text}") from None
        file, sep, line = text.rpartition(":")
        if sep and line.isdigit():
            addresses = self.symbols.line_addresses(file, int(line))
            if not addresses:
                raise ClientError(f"no code at {text} in {self.symbols.name}")
            return addresses[0], text
        function = self.symbols.functions.get(text)
        if function is not None:
            return self.symbols.after_prologue(function), text
        # A function of a shared object (write, malloc...): its entry; they have no lines.
        for library in self.libraries():
            if text in library.functions:
                return library.functions[text].address, text
        raise ClientError(f"no function named {text!r} in {self.symbols.name} "
                          "or the shared objects loaded now")

    # -- motion -------------------------------------------------------------------------------
    def cont(self) -> Stop:
        """Run forwards to the next breakpoint or watchpoint whose condition holds,
        or to the end of the recording ("history-end"), an exit or a signal."""
        return self._run(reverse=False)

    def reverse_cont(self) -> Stop:
        """Run backwards to the last hit before now whose condition holds, or to the
        start of the recording ("history-begin")."""
        return self._run(reverse=True)

    def stepi(self) -> Stop:
        """One instruction forwards."""
        return self._move(b"vCont;s", step=True)

    def reverse_stepi(self, count: int = 1) -> Stop:
        """``count`` instructions backwards, in one seek."""
        if count < 1:
            raise ClientError("reverse_stepi takes a positive number of instructions")
        self._require_reverse()
        if count == 1:
            return self._move(b"bs", step=True)
        output = self.monitor(f"reverse-roll {count}")
        reason = "history-begin" if "start of the recording" in output else "step"
        return self._settle(Stop(reason, self.location()))

    def step(self) -> Stop:
        """Forwards to the start of the next source line, into functions that have line
        information, over those that have none (gdb's `step`)."""
        start = self.symbols.row_at(self.pc)
        if start is None:
            return self.stepi()
        while True:
            before = self.registers()
            stop = self.stepi()
            if stop.reason != "step":
                return stop
            pc = self.pc
            row = self.symbols.row_at(pc)
            if row is None:
                back = self._return_address_after_call(before)
                if back is None:
                    return self.cont()  # left through a return into code without lines
                stop = self._run_to(back, reverse=False)
                if stop.reason != "breakpoint" or stop.breakpoint is not None:
                    return stop
                continue
            if not self.symbols.is_line_start(pc) or _same_line(row, start):
                continue
            function = self.symbols.function_at(pc)
            if function is not None and pc == function.address:
                body = self.symbols.after_prologue(function)
                if body != pc:
                    stop = self._run_to(body, reverse=False)
                    if stop.reason != "breakpoint" or stop.breakpoint is not None:
                        return stop
            return self._settle(Stop("step", self.location()))

    def reverse_step(self) -> Stop:
        """Backwards to the start of the previous source line that ran (gdb's
        `reverse-step`): into the last line of a function with line information
        that returned, over calls to code without, and out of a function through
        its prologue to the line that called it."""
        self._require_reverse()
        start = self.symbols.row_at(self.pc)
        start_function = self.symbols.function_at(self.pc)
        target: LineRow | None = None  # the line being walked back to its start
        target_function: Function | None = None
        while True:
            after = self.pc
            stop = self._move(b"bs", step=True)
            if stop.reason != "step":
                return stop
            pc = self.pc
            row, function = self.symbols.row_at(pc), self.symbols.function_at(pc)
            if self._instruction_at(pc) == "ret":
                # Back into a function that returned. From the start of the line being
                # walked, that line is done; from elsewhere the callee's last line is
                # the previous one, unless it has no lines: then back over its call.
                if target is not None and self.symbols.is_line_start(after):
                    return self._move(b"vCont;s", step=True)
                if row is not None:
                    target, target_function = row, function
                    continue
                call = self._call_ending_at(after)
                if call is None:
                    return self.reverse_cont()
                stop = self._run_to(call, reverse=True)
                if stop.reason != "breakpoint" or stop.breakpoint is not None:
                    return stop
                pc = self.pc
                row, function = self.symbols.row_at(pc), self.symbols.function_at(pc)
            elif row is None or (function is not None and
                                 pc < self.symbols.after_prologue(function)):
                # Out of the line through a function's entry (its prologue first).
                if target is not None:
                    return self._move(b"vCont;s", step=True)
                if row is None:
                    return self.reverse_cont()  # into code without lines: like gdb, run on
                continue
            if row is None:
                continue
            if target is None:
                if start is not None and _same_line(row, start) and function == start_function:
                    continue
                target, target_function = row, function
                continue
            if _same_line(row, target) and function == target_function:
                continue
            # One instruction before the line began: the next one forwards is its start.
            return self._move(b"vCont;s", step=True)

    def checkpoint(self, name: str | None = None) -> Checkpoint:
        """Keep the current position on the server, by ``name`` (default: a new one)."""
        name = name or f"client-{len(self._checkpoint_names()) + 1}"
        if not re.fullmatch(r"\S+", name):
            raise ClientError(f"a checkpoint name is one word, not {name!r}")
        position = self.when()
        self.monitor(f"checkpoint {name}")
        return Checkpoint(name, position)

    def _checkpoint_names(self) -> list[str]:
        listing = self.monitor("info checkpoints")
        return [line.split(":", 1)[0] for line in listing.splitlines()
                if ":" in line and not line.startswith("automatic")]

    def seek(self, checkpoint: Checkpoint | str) -> Stop:
        """Go back (or forwards) to a checkpoint."""
        name = checkpoint.name if isinstance(checkpoint, Checkpoint) else checkpoint
        self.monitor(f"restart {name}")
        return self._settle(Stop("step", self.location()))

    def interrupt(self) -> None:
        """Stop the move in progress (from another thread); it returns "interrupted"."""
        self._interrupt_sent = True
        self._connection.interrupt()

    # -- how moves are made ------------------------------------------------------------------------
    def _require_reverse(self) -> None:
        if not self._reverse:
            raise ClientError("this server cannot run backwards")

    def _run(self, *, reverse: bool, extra: Breakpoint | None = None) -> Stop:
        """Continue until a stop that is not a hit whose condition is false."""
        if reverse:
            self._require_reverse()
        while True:
            if not reverse:
                self._step_off_breakpoint()
            stop = self._move(b"bc" if reverse else b"vCont;c", step=False, extra=extra)
            hit = stop.breakpoint
            if hit is None or hit is extra:
                return stop
            if hit.kind == "read" and stop.value_before != stop.value_after:
                # x86 debug registers watch reads only together with writes (DR7's
                # RW bits: 11 is read or write, there is no read-only); gdb too
                # takes a trigger that changed the value for a write, and passes it.
                continue
            if hit.condition is None or hit.condition(self):
                hit.hits += 1
                return stop

    def _step_off_breakpoint(self) -> None:
        """gdb's way over a breakpoint at the pc: out, one step, back in. A resume with
        it inserted would stop there again without moving."""
        pc = self.pc
        here = [b for b in self.breakpoints if b.kind == "break" and b.address == pc]
        if not here:
            return
        self._request(b"z0,%x,1" % pc)
        try:
            self._move(b"vCont;s", step=True)
        finally:
            self._request(b"Z0,%x,1" % pc)

    def _run_to(self, address: int, *, reverse: bool) -> Stop:
        """Run to ``address`` on a breakpoint of the client's own (its stop has
        ``breakpoint`` None); a user's breakpoint met first stops there instead."""
        own = Breakpoint("break", address, 1, f"{address:#x}")
        inserted = not any(b.kind == "break" and b.address == address for b in self.breakpoints)
        if inserted:
            self._checked(b"Z0,%x,1" % address, f"cannot set a breakpoint at {address:#x}")
        try:
            stop = self._run(reverse=reverse, extra=own)
        finally:
            if inserted:
                self._request(b"z0,%x,1" % address)
        if stop.reason == "breakpoint" and stop.pc == address:
            return Stop("breakpoint", stop.location)  # reached, whosever breakpoint it is
        return stop

    def _move(self, packet: bytes, *, step: bool, extra: Breakpoint | None = None) -> Stop:
        self._interrupt_sent = False
        self._moving_backwards = packet in (b"bc", b"bs")
        try:
            reply = self._request(packet)
        except KeyboardInterrupt:
            # Ctrl-C in the script: stop the server's move too, then let it propagate.
            self._connection.interrupt()
            self._connection.reply()
            self._registers = None
            raise
        return self._settle(self._stop_from(reply, moved=step, extra=extra))

    def _stop_from(self, reply: bytes, *, moved: bool | None,
                   extra: Breakpoint | None = None) -> Stop:
        self._registers = None
        self._moves += 1
        if reply[:1] == b"W":
            return Stop("exited", exit_status=_hex_int(reply[1:3]))
        if reply[:1] == b"X":
            return Stop("terminated", signal=from_gdb(_hex_int(reply[1:3])))
        if reply[:1] not in (b"T", b"S") or len(reply) < 3:
            raise ClientError(f"unexpected stop reply from the server: {reply[:64]!r}")
        signo = from_gdb(_hex_int(reply[1:3]))
        fields = dict(part.partition(b":")[::2] for part in reply[3:].split(b";") if part)
        location = self.location()
        if fields.get(b"replaylog") == b"begin":
            return Stop("history-begin", location)
        if fields.get(b"replaylog") == b"end":
            return Stop("history-end", location)
        for key, kind in _WATCH_REPLY_KINDS.items():
            if key in fields:
                address = _hex_int(fields[key])
                watch = next((b for b in self.breakpoints if b.kind == kind
                              and b.address <= address < b.address + b.length), None)
                return Stop("watchpoint", location, watch_address=address, breakpoint=watch)
        if signo == signal.SIGTRAP:
            breakpoints = self.breakpoints + ([extra] if extra is not None else [])
            hit = next((b for b in breakpoints if b.kind == "break"
                        and b.address == location.address), None)
            if b"swbreak" in fields or b"hwbreak" in fields or (hit is not None and not moved):
                return Stop("breakpoint", location, breakpoint=hit)
            return Stop("step", location)
        if signo == signal.SIGINT and self._interrupt_sent:
            return Stop("interrupted", location, signal=signo)
        return Stop("signal", location, signal=signo)

    def _settle(self, stop: Stop) -> Stop:
        """Fill in a watchpoint stop's values and note the watched values here."""
        reverse_watch = stop.reason == "watchpoint" and self._moving_backwards
        watch = stop.breakpoint if stop.reason == "watchpoint" else None
        for watchpoint in (b for b in self.breakpoints if b.kind != "break"):
            now = self._peek(watchpoint.address, watchpoint.length)
            if watchpoint is watch:
                earlier = watchpoint._last_value
                before, after = (now, earlier) if reverse_watch else (earlier, now)
                stop = Stop(stop.reason, stop.location, stop.signal, stop.exit_status,
                            stop.breakpoint, stop.watch_address,
                            watchpoint.decode(before), watchpoint.decode(after))
            watchpoint._last_value = now
        self.stop = stop
        return stop

    def _peek(self, address: int, length: int) -> bytes | None:
        try:
            return self.read_memory(address, length)
        except ClientError:
            return None

    def _return_address_after_call(self, before: dict[str, int]) -> int | None:
        """When the last step was a call into code without line information: where it
        returns to (the word it pushed), if that is just after the call."""
        rsp = self.register("rsp")
        if rsp != before["rsp"] - 8:
            return None
        back = self.read_int(rsp, 8, signed=False)
        return back if 0 < back - before["rip"] <= 15 and self._call_ending_at(back) else None

    def _instruction_at(self, address: int) -> str | None:
        """The mnemonic of the instruction at ``address``."""
        try:
            code = self.read_memory(address, 15)
        except ClientError:
            return None
        instruction = next(_DECODER.disasm(code, address, 1), None)
        return instruction.mnemonic if instruction is not None else None

    def _call_ending_at(self, address: int) -> int | None:
        """The address of the call instruction that ends at ``address`` (a return
        address), found by decoding the bytes before it; None if none does."""
        try:
            code = self.read_memory(address - 15, 15)
        except ClientError:
            return None
        for length in (5, 6, 2, 3, 7, 4):  # call rel32, call *m(%rip), call *%reg, ...
            instructions = list(_DECODER.disasm(code[15 - length:], address - length, 1))
            if instructions and instructions[0].size == length and \
                    instructions[0].mnemonic == "call":
                return address - length
        return None


def _same_line(row: LineRow, other: LineRow) -> bool:
    return row.line == other.line and row.file == other.file

