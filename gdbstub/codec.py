"""Framing of the GDB Remote Serial Protocol, with no I/O (in the manner of h11).

Bytes go in through `RspCodec.receive_data`, events come out; replies go out
through `RspCodec.packet`. The rules, from the gdb manual's appendix "GDB Remote
Serial Protocol":

- Overview: a packet is `$packet-data#checksum`, the checksum being "the
  modulo 256 sum of all characters between the leading `$` and the trailing
  `#`", as two hex digits.
- Overview, binary data: "The bytes 0x23 (`#`), 0x24 (`$`), and 0x7d (`}`)
  must always be escaped. Responses sent by the stub must also escape 0x2a
  (`*`)". An escaped byte is `}` followed by the byte XOR 0x20.
- Overview, run-length encoding: "Response data can be run-length encoded". A
  run is the character, `*`, and a count character worth n+29 for n further
  repeats; "The printable characters `#` and `$` or with a numeric value
  greater than 126 must not be used", so n is at most 97, and runs of 6 or 7
  repeats are sent as 5 plus literal characters.
- Interrupts: a bare 0x03 byte outside a packet asks the running target to stop.
- Packet Acknowledgment: the receiver of a packet answers `+`, or `-` to ask
  for it again, until `QStartNoAckMode`; after that "neither the stub nor GDB
  shall send or expect `+`/`-`", and "the checksum may be ignored by the
  receiver" (we ignore it: TCP already guarantees integrity).

A `-` costs the stub a retransmission, so it must not cost more than that: the
NAKs that arrive before the retransmission has gone out ask for it once, and a
packet asked for more than MAX_RETRANSMISSIONS times ends the connection (over
TCP nothing corrupts a packet; such a peer is broken or hostile).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import NoReturn

# The PacketSize we advertise in qSupported: "The remote stub can accept packets
# up to at least bytes in length ... a limit on the data characters in the
# packet, not including the frame and checksum."
PACKET_SIZE = 0x4000

# The last count character the manual allows is '~' (126 = 97 + 29).
_MAX_REPEAT = 97
_FORBIDDEN_REPEATS = (ord("#") - 29, ord("$") - 29)  # 6 and 7
# "run-length encoding starts to win for counts 3 or more": a character and 3 to 97 repeats.
_RUN = re.compile(rb"(.)\1{3,%d}" % _MAX_REPEAT, re.DOTALL)
_ESCAPED = re.compile(rb"[#$}*]")
_ESCAPE_PAIR = re.compile(rb"}(.)", re.DOTALL)
_INTERRUPT = 0x03
MAX_RETRANSMISSIONS = 8


class Role(enum.Enum):
    """Which end of the connection a codec serves; only run-length encoding differs."""

    STUB = "stub"  # answers gdb: run-length encodes what it sends
    CLIENT = "client"  # talks to a stub (tests, scripts): expands runs in what it receives


@dataclass(frozen=True)
class Packet:
    """A packet with a good checksum. The payload is as sent: a stub receives no
    runs, and the `}` escapes of binary data are the handler's to undo (`unescape`),
    since only the handler knows which part of a packet is binary."""

    payload: bytes


@dataclass(frozen=True)
class Interrupt:
    """A 0x03 byte between packets: gdb asks the running target to stop."""


@dataclass(frozen=True)
class Ack:
    """`+`: the peer received our last packet."""


@dataclass(frozen=True)
class Nak:
    """`-`: the peer asks for our last packet again (the codec queues it)."""


Event = Packet | Interrupt | Ack | Nak


class ProtocolError(Exception):
    """The peer broke the framing rules (a packet over PacketSize, a bad run).

    The stream cannot be trusted after that: the codec refuses further data and
    the connection should be closed."""


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    """Escape `#`, `$`, `}` and `*` as `}` + (byte ^ 0x20)."""
    return _ESCAPED.sub(lambda match: bytes((0x7D, match[0][0] ^ 0x20)), data)


def unescape(data: bytes) -> bytes:
    """Undo `escape` (for binary data in `X`, `vFile:pwrite`, and replies to `x`/qXfer)."""
    # Pairs are read left to right, so a trailing run of `}` pairs up from its
    # start: an odd run leaves the last `}` without the byte it escapes.
    trailing = len(data) - len(data.rstrip(b"}"))
    if trailing % 2:
        raise ProtocolError("binary data ends in the middle of an escape")
    return _ESCAPE_PAIR.sub(lambda match: bytes((match[1][0] ^ 0x20,)), data)


# Console output ("Stop Reply Packets": `O XX...`, the hex of the text): what the
# stub has to say before a stop reply or a qRcmd's OK.
_CONSOLE = re.compile(rb"O(?:[0-9a-fA-F]{2})+")


def console_packets(text: str, packet_size: int) -> list[bytes]:
    """``text`` as `O` packets, each within ``packet_size`` data characters."""
    data = text.encode()
    step = (packet_size - 1) // 2
    return [b"O" + data[i : i + step].hex().encode() for i in range(0, len(data), step)]


def console_text(payload: bytes) -> str | None:
    """The text of an `O` packet; None for any other payload (`OK` among them)."""
    if not _CONSOLE.fullmatch(payload):
        return None
    return bytes.fromhex(payload[1:].decode()).decode(errors="replace")


def run_length_encode(data: bytes) -> bytes:
    """Encode runs of 4 or more equal characters as `c*N` (see the module comment)."""

    def encode(run: re.Match[bytes]) -> bytes:
        byte, repeats = run[1], len(run[0]) - 1
        if repeats in _FORBIDDEN_REPEATS:
            # "Runs of six repeats (`#`) or seven repeats (`$`) can be expanded
            # using a repeat count of only five (`"`)."
            return byte + b'*"' + byte * (repeats - 5)
        return byte + b"*" + bytes((repeats + 29,))

    return _RUN.sub(encode, data)


def run_length_decode(data: bytes) -> bytes:
    """Expand `c*N` runs in a stub's packet."""
    out = bytearray()
    position = 0
    while position < len(data):
        byte = data[position]
        if byte != ord("*"):
            out.append(byte)
            position += 1
            continue
        if not out or position + 1 >= len(data) or data[position + 1] - 29 < 1:
            raise ProtocolError(f"malformed run-length encoding in {data[:64]!r}")
        out += out[-1:] * (data[position + 1] - 29)
        position += 2
    return bytes(out)


class RspCodec:
    """One end of one RSP connection: framing, checksums, acknowledgments.

    Feed what the socket delivers to `receive_data`; frame replies with `packet`;
    after each `receive_data`, send `data_to_send()` (the `+`/`-` acknowledgments
    and retransmissions the received bytes called for) before any reply.

    Bytes between packets other than `+`, `-` and 0x03 are skipped, and a `$`
    inside a packet starts a new one (the earlier one was cut short), so garbage
    costs nothing but itself. The buffer never holds more than one packet of at
    most `packet_size` data characters.
    """

    def __init__(self, role: Role = Role.STUB, packet_size: int = PACKET_SIZE) -> None:
        self.role = role
        self.packet_size = packet_size
        self.ack_mode = True
        self._frame = bytearray()  # empty, or an unfinished packet starting with `$`
        self._outgoing = bytearray()
        self._unacknowledged: bytes | None = None
        self._retransmissions = 0  # of the unacknowledged packet
        self._retransmission_queued = False  # in _outgoing, not yet taken by data_to_send
        self._failure: ProtocolError | None = None

    def receive_data(self, data: bytes) -> list[Event]:
        """Consume bytes from the peer; return the events they complete.

        Raises ProtocolError when a packet outgrows `packet_size` (as soon as
        it does: an endless packet is never buffered), when the peer refuses
        one packet more than MAX_RETRANSMISSIONS times, or, for a client, when
        a packet holds a malformed run; the codec is unusable from then on."""
        if self._failure is not None:
            raise self._failure
        events: list[Event] = []
        self._frame += data
        frame = self._frame
        while frame:
            if frame[0] != ord("$"):
                start = frame.find(b"$")
                outside = len(frame) if start < 0 else start
                events.extend(self._between_packets(frame[:outside]))
                del frame[:outside]
                continue
            hash_at = frame.find(b"#")
            restart = frame.find(b"$", 1, None if hash_at < 0 else hash_at)
            if restart > 0:
                del frame[:restart]
                continue
            if (len(frame) if hash_at < 0 else hash_at) - 1 > self.packet_size:
                self._fail(f"packet longer than the PacketSize of {self.packet_size} bytes")
            if hash_at < 0 or len(frame) < hash_at + 3:
                break
            body, sent_checksum = bytes(frame[1:hash_at]), bytes(frame[hash_at + 1 : hash_at + 3])
            del frame[: hash_at + 3]
            if self.ack_mode:
                if sent_checksum.lower() != b"%02x" % checksum(body):
                    self._outgoing += b"-"
                    continue
                self._outgoing += b"+"
            events.append(Packet(self._decode(body)))
        return events

    def packet(self, payload: bytes) -> bytes:
        """Frame `payload` for sending: escaped, run-length encoded by a stub, checksummed."""
        body = escape(payload)
        if self.role is Role.STUB:
            body = run_length_encode(body)
        frame = b"$%s#%02x" % (body, checksum(body))
        if self.ack_mode:
            self._unacknowledged, self._retransmissions = frame, 0
        return frame

    def data_to_send(self) -> bytes:
        """Acknowledgments and retransmissions owed to the peer; empties the queue."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        self._retransmission_queued = False
        return data

    def start_no_ack_mode(self) -> None:
        """Stop acknowledging: call after sending the `OK` that answers `QStartNoAckMode`
        (that `OK` itself is still acknowledged by gdb with a last `+`)."""
        self.ack_mode = False
        self._unacknowledged = None

    def _between_packets(self, data: bytes | bytearray) -> list[Event]:
        events: list[Event] = []
        for byte in data:
            if byte == ord("+"):
                self._unacknowledged = None
                events.append(Ack())
            elif byte == ord("-"):
                if self.ack_mode and self._unacknowledged is not None \
                        and not self._retransmission_queued:
                    self._retransmissions += 1
                    if self._retransmissions > MAX_RETRANSMISSIONS:
                        self._fail(f"the peer refused the same packet "
                                   f"{self._retransmissions} times")
                    self._outgoing += self._unacknowledged
                    self._retransmission_queued = True
                events.append(Nak())
            elif byte == _INTERRUPT:
                events.append(Interrupt())
        return events

    def _fail(self, reason: str) -> NoReturn:
        self._failure = ProtocolError(reason)
        self._frame.clear()
        raise self._failure

    def _decode(self, body: bytes) -> bytes:
        if self.role is Role.CLIENT:
            return run_length_decode(body)
        return body
