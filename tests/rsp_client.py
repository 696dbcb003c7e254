"""A raw RSP client for tests that talk to a real `retrograde replay -s 0` server
over its socket, packet by packet, including packets no debugger would send."""

from __future__ import annotations

import socket
from typing import Self

from retrograde.gdbstub.codec import Packet, Role, RspCodec, console_text, unescape

# Generous: a bound that only a hung server reaches, never a timing assertion.
HANG = 120


class ServerHungUp(Exception):
    """The server ended the connection before the reply came."""


class RspClient:
    """One connection. ``ask`` sends a packet and returns its reply, with the
    console output (`O` packets) that came before it kept in ``console``."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.socket = socket.create_connection((host, port), timeout=HANG)
        self.codec = RspCodec(Role.CLIENT, packet_size=1 << 20)
        self.console = ""
        self.received = bytearray()  # every byte from the server, acks and resends included
        self._replies: list[bytes] = []

    def send(self, payload: bytes) -> None:
        self.send_raw(self.codec.packet(payload))

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are; the console output of what they ask starts afresh."""
        self.console = ""
        self.socket.sendall(data)

    def reply(self) -> bytes:
        """The next reply that is not console output."""
        while True:
            while self._replies:
                payload = self._replies.pop(0)
                text = console_text(payload)
                if text is None:
                    return payload
                self.console += text
            data = self.socket.recv(1 << 16)
            if not data:
                raise ServerHungUp(f"the server hung up; it sent {bytes(self.received[-200:])!r}")
            self.received += data
            events = self.codec.receive_data(data)
            self.socket.sendall(self.codec.data_to_send())
            self._replies += [unescape(e.payload) for e in events if isinstance(e, Packet)]

    def ask(self, payload: bytes) -> bytes:
        self.send(payload)
        return self.reply()

    def monitor(self, command: str) -> str:
        """A monitor command's console output (its final reply must be OK)."""
        reply = self.ask(b"qRcmd," + command.encode().hex().encode())
        assert reply == b"OK", (command, reply, self.console)
        return self.console

    def hang_up(self) -> None:
        """Close our side and wait for the server to close its own: by then it has
        finished with this connection, and a new one is not refused as a second client."""
        try:
            self.socket.shutdown(socket.SHUT_WR)
            while self.socket.recv(1 << 16):
                pass
        except OSError:
            pass
        self.socket.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.hang_up()
