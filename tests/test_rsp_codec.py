"""The RSP codec on its own: framing, escapes, runs, acknowledgments, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrograde.gdbstub.codec import (
    MAX_RETRANSMISSIONS,
    PACKET_SIZE,
    Ack,
    Interrupt,
    Nak,
    Packet,
    ProtocolError,
    Role,
    RspCodec,
    checksum,
    console_packets,
    console_text,
    escape,
    run_length_decode,
    run_length_encode,
    unescape,
)

# Payloads up to a few hundred bytes, biased towards the bytes the protocol cares about.
special_bytes = st.sampled_from(b"#$}*+-\x03\x00 0")
payloads = st.lists(st.one_of(special_bytes, st.integers(0, 255)), max_size=300).map(bytes)


def frame(payload: bytes) -> bytes:
    """A packet as gdb would send it, with no escaping of its own."""
    return b"$%s#%02x" % (payload, checksum(payload))


def test_a_packet_is_acknowledged_and_delivered() -> None:
    stub = RspCodec()
    assert stub.receive_data(b"$qC#b4") == [Packet(b"qC")]
    assert stub.data_to_send() == b"+"
    assert stub.data_to_send() == b""


def test_a_bad_checksum_is_refused_with_a_nak_and_the_resend_accepted() -> None:
    stub = RspCodec()
    assert stub.receive_data(b"$qC#00") == []
    assert stub.data_to_send() == b"-"
    assert stub.receive_data(b"$qC#B4") == [Packet(b"qC")]  # hex digits in either case
    assert stub.data_to_send() == b"+"


def test_a_checksum_that_is_not_hex_is_a_bad_checksum() -> None:
    stub = RspCodec()
    assert stub.receive_data(b"$g#zz") == []
    assert stub.data_to_send() == b"-"


def test_the_reply_is_sent_again_when_gdb_naks_it_until_it_acks() -> None:
    stub = RspCodec()
    reply = stub.packet(b"OK")
    assert reply == b"$OK#9a"
    assert stub.receive_data(b"-") == [Nak()]
    assert stub.data_to_send() == reply
    assert stub.receive_data(b"+") == [Ack()]
    assert stub.receive_data(b"-") == [Nak()]
    assert stub.data_to_send() == b""  # acknowledged: nothing left to resend


def test_a_flood_of_naks_costs_one_retransmission_until_it_has_gone_out() -> None:
    stub = RspCodec()
    reply = stub.packet(b"x" * PACKET_SIZE)
    events = stub.receive_data(b"-" * 100_000)
    assert events == [Nak()] * 100_000
    assert stub.data_to_send() == reply  # one copy, not 100 000
    stub.receive_data(b"--")
    assert stub.data_to_send() == reply


def test_a_packet_refused_too_often_ends_the_connection() -> None:
    stub = RspCodec()
    reply = stub.packet(b"OK")
    for _ in range(MAX_RETRANSMISSIONS):
        stub.receive_data(b"-")
        assert stub.data_to_send() == reply
    with pytest.raises(ProtocolError, match="refused the same packet 9 times"):
        stub.receive_data(b"-")
    with pytest.raises(ProtocolError):
        stub.receive_data(b"+")  # and nothing more is read from that peer
    fresh = RspCodec()
    fresh.packet(b"OK")
    for _ in range(3 * MAX_RETRANSMISSIONS):  # each new reply starts a new count
        fresh.receive_data(b"-")
        assert fresh.data_to_send() == b"$OK#9a"
        fresh.packet(b"OK")


def test_no_ack_mode_sends_no_acks_and_ignores_checksums() -> None:
    stub = RspCodec()
    assert stub.receive_data(b"$QStartNoAckMode#b0") == [Packet(b"QStartNoAckMode")]
    stub.packet(b"OK")
    stub.start_no_ack_mode()
    assert stub.data_to_send() == b"+"  # the QStartNoAckMode packet itself was acknowledged
    # gdb's last `+` (for our OK) still arrives; a Nak no longer resends anything.
    assert stub.receive_data(b"+-$g#00") == [Ack(), Nak(), Packet(b"g")]
    assert stub.data_to_send() == b""


def test_interrupt_between_packets_but_data_inside_one() -> None:
    stub = RspCodec()
    assert stub.receive_data(b"\x03") == [Interrupt()]
    assert stub.receive_data(frame(b"X0,1:\x03")) == [Packet(b"X0,1:\x03")]


def test_garbage_between_packets_is_skipped() -> None:
    stub = RspCodec()
    events = stub.receive_data(b"hello\r\n" + frame(b"g") + b"\xff\x00" + frame(b"?"))
    assert events == [Packet(b"g"), Packet(b"?")]


def test_a_dollar_inside_a_packet_starts_a_new_one() -> None:
    stub = RspCodec()
    assert stub.receive_data(b"$qSupp" + frame(b"qC")) == [Packet(b"qC")]
    assert stub.data_to_send() == b"+"


def test_a_packet_of_packet_size_is_accepted_and_a_longer_one_is_an_error() -> None:
    stub = RspCodec()
    assert stub.receive_data(frame(b"a" * PACKET_SIZE)) == [Packet(b"a" * PACKET_SIZE)]
    with pytest.raises(ProtocolError, match="PacketSize"):
        stub.receive_data(b"$" + b"a" * PACKET_SIZE + b"a")  # detected before the end arrives
    with pytest.raises(ProtocolError):
        stub.receive_data(frame(b"g"))  # the stream lost its framing: the connection is over


def test_run_length_encoding_follows_the_manuals_examples() -> None:
    # "`0* ` is a run-length encoding of "0000"", and "`00000000` can be encoded
    # as `0*"00`" (six and seven repeats would be `#` and `$`).
    assert run_length_encode(b"0000") == b"0* "
    assert run_length_encode(b"000") == b"000"
    assert run_length_encode(b"00000000") == b'0*"00'
    assert run_length_encode(b"0" * 99) == b"0*~0"  # 97 repeats at most: `~` is 126
    assert run_length_decode(b'0* x0*"00') == b"0000x00000000"


def test_a_stub_run_length_encodes_its_replies() -> None:
    reply = RspCodec().packet(b"0" * 32)
    assert reply == b"$0*<#%02x" % checksum(b"0*<")  # one 0 and 31 more: 31 + 29 is `<`


def test_a_run_without_a_character_before_it_is_an_error() -> None:
    with pytest.raises(ProtocolError):
        run_length_decode(b"*#")
    with pytest.raises(ProtocolError):
        RspCodec(Role.CLIENT).receive_data(frame(b"*!"))


def test_binary_data_ending_inside_an_escape_is_an_error() -> None:
    assert unescape(b"a}]") == b"a}"
    with pytest.raises(ProtocolError):
        unescape(b"a}")


@given(payloads)
def test_escaping_round_trips_and_leaves_no_framing_byte(data: bytes) -> None:
    escaped = escape(data)
    assert unescape(escaped) == data
    assert not set(escaped) & set(b"#$*")


@given(payloads)
def test_run_length_encoding_round_trips_on_escaped_data(data: bytes) -> None:
    escaped = escape(data)
    encoded = run_length_encode(escaped)
    assert run_length_decode(encoded) == escaped
    assert b"#" not in encoded and b"$" not in encoded
    assert len(encoded) <= len(escaped)


@given(payloads)
def test_any_reply_reaches_a_client_intact(data: bytes) -> None:
    stub, client = RspCodec(), RspCodec(Role.CLIENT)
    [event] = client.receive_data(stub.packet(data))
    assert isinstance(event, Packet)
    assert unescape(event.payload) == data
    assert client.data_to_send() == b"+"


@given(payloads)
def test_any_command_reaches_the_stub_intact(data: bytes) -> None:
    stub, client = RspCodec(), RspCodec(Role.CLIENT)
    [event] = stub.receive_data(client.packet(data))
    assert isinstance(event, Packet)
    assert unescape(event.payload) == data


@given(st.lists(payloads, min_size=1, max_size=5), st.data())
def test_chunking_does_not_change_what_is_received(
    packets: list[bytes], data: st.DataObject
) -> None:
    client = RspCodec(Role.CLIENT)
    stream = b"+\x03".join(client.packet(payload) for payload in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    chunks = [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)])]

    whole, pieces = RspCodec(), RspCodec()
    expected = whole.receive_data(stream)
    received = [event for chunk in chunks for event in pieces.receive_data(chunk)]
    assert received == expected
    assert [unescape(e.payload) for e in received if isinstance(e, Packet)] == packets
    assert pieces.data_to_send() == whole.data_to_send() == b"+" * len(packets)


@given(st.binary(max_size=2000), st.sampled_from(Role))
def test_garbage_never_raises_anything_but_a_protocol_error(garbage: bytes, role: Role) -> None:
    codec = RspCodec(role, packet_size=64)
    try:
        events = codec.receive_data(garbage)
    except ProtocolError:
        return
    assert all(isinstance(event, Packet | Interrupt | Ack | Nak) for event in events)
    codec.data_to_send()


@given(st.binary(max_size=200).filter(lambda garbage: b"$" not in garbage))
def test_a_packet_after_garbage_still_arrives(garbage: bytes) -> None:
    stub = RspCodec()
    events = stub.receive_data(garbage + frame(b"vCont?"))
    assert events[-1] == Packet(b"vCont?")


@given(st.text(max_size=300), st.integers(min_value=3, max_value=64))
def test_console_text_survives_its_packets(text: str, packet_size: int) -> None:
    packets = console_packets(text, packet_size)
    assert all(len(packet) <= packet_size for packet in packets)
    data = b"".join(bytes.fromhex(packet[1:].decode()) for packet in packets)
    assert data.decode() == text
    assert all(console_text(packet) is not None for packet in packets)


def test_only_o_and_hex_is_console_output() -> None:
    assert console_text(b"O" + b"retrograde: took 1.5 s\n".hex().encode()) == \
        "retrograde: took 1.5 s\n"
    assert [console_text(p) for p in (b"OK", b"O", b"O4", b"O4g", b"T05", b"E01")] == [None] * 6
