"""Dynamixel Protocol 2.0 codec: e-manual example packets byte for byte, stuffing, the
streaming parser, and a fuzz test of the parser (LEGADAPT_FUZZ_EXAMPLES raises its size)."""

from __future__ import annotations

import os
import random

import pytest
from dynamixel_sdk.protocol2_packet_handler import Protocol2PacketHandler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legadapt.hardware import protocol as P

FUZZ_EXAMPLES = int(os.environ.get("LEGADAPT_FUZZ_EXAMPLES", "2000"))
SDK = Protocol2PacketHandler()


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


# ROBOTIS e-manual, Protocol 2.0 examples (instruction, then the status from an XM430)
PING_1 = hx("FF FF FD 00 01 03 00 01 19 4E")
PING_1_STATUS = hx("FF FF FD 00 01 07 00 55 00 06 04 26 65 5D")  # model 1030, firmware 0x26
READ_1_POS = hx("FF FF FD 00 01 07 00 02 84 00 04 00 1D 15")  # 4 bytes at 132
READ_1_STATUS = hx("FF FF FD 00 01 08 00 55 00 A6 00 00 00 8C C0")  # 166
WRITE_1_GOAL = hx("FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89")  # 512 at 116
WRITE_1_STATUS = hx("FF FF FD 00 01 04 00 55 00 A1 0C")
SYNC_READ_1_2 = hx("FF FF FD 00 FE 09 00 82 84 00 04 00 01 02 CE FA")
SYNC_READ_STATUS_2 = hx("FF FF FD 00 02 08 00 55 00 1F 08 00 00 BA BE")  # 2079
SYNC_WRITE_1_2 = hx("FF FF FD 00 FE 11 00 83 74 00 04 00 01 96 00 00 00 02 AA 00 00 00 82 87")  # 150, 170
REBOOT_1 = hx("FF FF FD 00 01 03 00 08 2F 4E")


def u32(v: int) -> bytes:
    return v.to_bytes(4, "little")


def test_crc_matches_robotis_sdk_table():
    rng = random.Random(0)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        assert P.crc16(data) == SDK.updateCRC(0, list(data), len(data))


def test_builders_reproduce_emanual_examples_byte_for_byte():
    assert P.ping_packet(1) == PING_1
    assert P.read_packet(1, 132, 4) == READ_1_POS
    assert P.write_packet(1, 116, u32(512)) == WRITE_1_GOAL
    assert P.sync_read_packet(132, 4, [1, 2]) == SYNC_READ_1_2
    assert P.sync_write_packet(116, 4, {1: u32(150), 2: u32(170)}) == SYNC_WRITE_1_2
    assert P.reboot_packet(1) == REBOOT_1
    assert P.status_packet(1, 0, hx("06 04 26")) == PING_1_STATUS
    assert P.status_packet(1, 0, u32(166)) == READ_1_STATUS
    assert P.status_packet(1) == WRITE_1_STATUS
    assert P.fast_sync_read_packet(132, 4, [1, 2])[7] == P.Instruction.FAST_SYNC_READ


def test_decode_emanual_status_packets():
    ping = P.parse_status(P.decode_packet(PING_1_STATUS))
    assert (ping.id, ping.ok, ping.alert) == (1, True, False)
    assert int.from_bytes(ping.data[:2], "little") == 1030 and ping.data[2] == 0x26
    assert int.from_bytes(P.parse_status(P.decode_packet(READ_1_STATUS)).data, "little") == 166
    s2 = P.parse_status(P.decode_packet(SYNC_READ_STATUS_2))
    assert s2.id == 2 and int.from_bytes(s2.data, "little") == 2079
    sw = P.decode_packet(SYNC_WRITE_1_2)
    assert sw.id == P.BROADCAST_ID and sw.instruction == P.Instruction.SYNC_WRITE
    assert sw.params == hx("74 00 04 00 01 96 00 00 00 02 AA 00 00 00")


def test_status_error_byte():
    for number in P.ErrorNumber:
        s = P.parse_status(P.decode_packet(P.status_packet(3, int(number))))
        assert s.error_number == number and not s.alert and s.ok == (number == 0)
    s = P.parse_status(P.decode_packet(P.status_packet(3, P.ALERT_BIT | P.ErrorNumber.DATA_LIMIT)))
    assert s.alert and s.error_number == P.ErrorNumber.DATA_LIMIT and "hardware alert" in s.error_text
    alert_only = P.parse_status(P.decode_packet(P.status_packet(3, P.ALERT_BIT, u32(7))))
    assert alert_only.ok and alert_only.alert, "an alert alone does not stop the instruction"


def test_stuffing_inside_parameters_matches_sdk_and_round_trips():
    params = hx("74 00 FF FF FD 00 FF FF FD FD FF FF")
    pkt = P.write_packet(7, 116, params[2:])
    assert hx("FF FF FD FD 00 FF FF FD FD FD") in pkt, "each FF FF FD of the body gets one FD"
    assert pkt[5] | pkt[6] << 8 == 1 + len(params) + 2 + 2, "LEN counts the stuffed bytes"
    assert pkt.count(P.HEADER) == 1, "no header inside a stuffed packet"
    assert P.decode_packet(pkt).params == params
    tx = [0xFF, 0xFF, 0xFD, 0, 7, len(params) + 3, 0, 0x03, *params, 0, 0]
    tx = SDK.addStuffing(tx)
    n = (tx[5] | tx[6] << 8) + 7
    crc = SDK.updateCRC(0, tx, n - 2)
    assert bytes(tx[:n - 2]) + bytes((crc & 0xFF, crc >> 8)) == pkt, "same bytes as ROBOTIS's SDK"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0xFF, 0xFD, 0x00, 0x55]) | st.integers(0, 255), max_size=40).map(bytes))
def test_stuff_unstuff_round_trip(body):
    stuffed = P.stuff(body)
    assert P.unstuff(stuffed) == body
    assert stuffed.count(b"\xff\xff\xfd") == stuffed.count(b"\xff\xff\xfd\xfd")


def test_unstuff_rejects_missing_fd_and_decode_rejects_bad_packets():
    with pytest.raises(P.MalformedPacketError):
        P.unstuff(hx("01 FF FF FD 02"))
    bad_crc = bytearray(PING_1)
    bad_crc[-1] ^= 1
    with pytest.raises(P.CrcError):
        P.decode_packet(bytes(bad_crc))
    with pytest.raises(P.MalformedPacketError):
        P.decode_packet(PING_1[:-1])
    with pytest.raises(P.PacketBuildError):
        P.sync_write_packet(116, 4, {1: b"\x00\x00"})
    with pytest.raises(P.PacketBuildError):
        P.read_packet(P.BROADCAST_ID, 0, 2)


def test_fast_status_round_trip_and_segment_crc():
    entries = [(1, 0, u32(2048)), (2, P.ALERT_BIT, u32(1000)), (9, 0, hx("FF FF FD 00"))]
    raw = P.encode_fast_status(entries)
    assert raw[5] | raw[6] << 8 == 1 + 3 * 8
    statuses = P.decode_fast_status(P.decode_packet(raw), 4)
    assert [(s.id, s.alert, s.data) for s in statuses] == [(1, False, u32(2048)), (2, True, u32(1000)), (9, False, hx("FF FF FD 00"))]
    bad = bytearray(raw)
    bad[8 + 6] ^= 0x40  # first segment's CRC, packet CRC still fine
    with pytest.raises(P.CrcError):
        P.decode_fast_status(P.decode_packet(bytes(bad)), 4)
    with pytest.raises(P.MalformedPacketError):
        P.decode_fast_status(P.decode_packet(raw), 3)


def test_parser_streams_byte_by_byte_and_resynchronises():
    stream = b"\x00\xff\x13" + PING_1_STATUS + b"\xff\xff\xfd" + READ_1_STATUS + SYNC_READ_STATUS_2
    parser = P.PacketParser()
    got = [p for b in stream for p in parser.feed(bytes((b,)))]
    assert [p.raw for p in got] == [PING_1_STATUS, READ_1_STATUS, SYNC_READ_STATUS_2]
    assert parser.garbage_bytes == 6 and parser.crc_errors == 0 and parser.pending == 0


def test_parser_counts_crc_errors_and_keeps_the_next_packet():
    bad = bytearray(READ_1_STATUS)
    bad[10] ^= 0x01
    parser = P.PacketParser()
    got = parser.feed(bytes(bad) + WRITE_1_STATUS)
    assert [p.raw for p in got] == [WRITE_1_STATUS]
    assert parser.crc_errors == 1 and parser.garbage_bytes == len(bad)


def test_parser_does_not_wait_on_a_false_header_claiming_a_long_packet():
    false_header = P.HEADER + hx("01 00 02")  # claims 512 more bytes
    parser = P.PacketParser()
    assert [p.raw for p in parser.feed(false_header + PING_1_STATUS)] == [PING_1_STATUS]


# ---------------------------------------------------------------- fuzz
_valid = st.builds(
    lambda i, inst, params: P.encode_packet(i, inst, params),
    st.integers(0, P.MAX_ID), st.sampled_from(list(P.Instruction)),
    st.lists(st.sampled_from([0xFF, 0xFD, 0x00]) | st.integers(0, 255), max_size=60).map(bytes))
_garbage_chunk = st.one_of(
    st.binary(max_size=30),
    st.sampled_from([P.HEADER, b"\xff\xff\xfd", b"\xff", P.HEADER + b"\x01\xff\x03"]),
    _valid.flatmap(lambda p: st.integers(1, len(p) - 1).map(lambda k: p[:k])),  # a cut-off packet
    _valid.flatmap(lambda p: st.integers(7, len(p) - 1).map(lambda k: p[:k] + bytes((p[k] ^ 0x5A,)) + p[k + 1:])),  # corrupted
)
_garbage = st.lists(_garbage_chunk, max_size=5).map(b"".join)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(before=_garbage, packet=_valid, after=_garbage, cuts=st.lists(st.integers(0, 400), max_size=6), noise=st.binary(max_size=200))
def test_fuzz_parser_never_raises_and_never_loses_a_packet_in_garbage(before, packet, after, cuts, noise):
    stream = before + packet + after
    parser = P.PacketParser()
    got: list[P.Packet] = []
    start = 0
    for cut in sorted(c for c in cuts if c < len(stream)) + [len(stream)]:
        got += parser.feed(stream[start:cut])
        start = cut
    if packet not in [p.raw for p in got]:
        # the one ambiguity of any framing: bytes before the packet completed a CRC-valid packet
        # with its first bytes (e.g. a reply cut one byte short, "completed" by the next FF)
        at = len(before)
        assert any(stream.find(p.raw) < at < stream.find(p.raw) + len(p.raw) for p in got), "the valid packet was lost"
    for p in got:
        assert P.decode_packet(p.raw) == p
    assert parser.garbage_bytes + sum(len(p.raw) for p in got) + parser.pending == len(stream)
    for blob in (noise, before, after):  # the one-packet decoder only raises its documented errors
        try:
            P.decode_packet(blob)
        except P.ProtocolError:
            pass
        P.PacketParser().feed(blob)
