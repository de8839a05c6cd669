"""The one-byte-checksum protocol (Dynamixel Protocol 1.0, Feetech SCS/STS): the manual's packets byte for byte,
ROBOTIS's and Feetech's own SDKs as the judges over a pty, and a fuzzed stream parser that never raises."""

from __future__ import annotations

import os
import select
import threading
import tty

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legadapt.hardware import protocol1 as P1
from legadapt.hardware.protocol import CrcError, MalformedPacketError, PacketBuildError


# ---------------------------------------------------------------- the manual's packets
@pytest.mark.parametrize("built, manual", [
    # ROBOTIS e-manual, Protocol 1.0 examples
    (P1.ping_packet(1), "FF FF 01 02 01 FB"),
    (P1.status_packet(1), "FF FF 01 02 00 FC"),  # the answer to that ping
    (P1.read_packet(1, 0x2B, 1), "FF FF 01 04 02 2B 01 CC"),  # read Present Temperature
    (P1.status_packet(1, 0, bytes((0x20,))), "FF FF 01 03 00 20 DB"),  # 32 °C
    (P1.write_packet(1, 0x19, bytes((1,))), "FF FF 01 04 03 19 01 DD"),  # LED on
    # SYNC WRITE of goal position and moving speed to IDs 0..3 (AX-12 manual)
    (P1.sync_write_packet(0x1E, 4, {0: bytes.fromhex("10005001"), 1: bytes.fromhex("20026003"),
                                   2: bytes.fromhex("30007001"), 3: bytes.fromhex("20028003")}),
     "FF FF FE 18 83 1E 04 00 10 00 50 01 01 20 02 60 03 02 30 00 70 01 03 20 02 80 03 12"),
], ids=["ping", "ping-status", "read", "read-status", "write", "sync-write"])
def test_packets_match_the_manual_byte_for_byte(built, manual):
    assert built == bytes.fromhex(manual)
    frame = P1.decode_frame(built)
    assert frame.raw == built and P1.checksum(built[2:-1]) == built[-1]


def test_bad_frames_and_arguments_are_named():
    with pytest.raises(CrcError, match="checksum 0xFC, expected 0xFB"):
        P1.decode_frame(bytes.fromhex("FF FF 01 02 01 FC"))
    with pytest.raises(MalformedPacketError, match="LEN"):
        P1.decode_frame(bytes.fromhex("FF FF 01 05 01 FB"))
    with pytest.raises(PacketBuildError, match="ID 254 not allowed"):
        P1.read_packet(P1.BROADCAST_ID, 0, 2)
    with pytest.raises(PacketBuildError, match="expected 2"):
        P1.sync_write_packet(30, 2, {1: b"\x00"})
    assert P1.describe_error(0x24) == "overheating + overload (0x24)"
    assert "SYNC_READ" not in {i.name for i in P1.FAMILY_INSTRUCTIONS["dynamixel_ax"]}
    assert P1.Instruction.SYNC_READ in P1.FAMILY_INSTRUCTIONS["feetech_sts"]


# ---------------------------------------------------------------- the SDKs as judges
class Servos:
    """Devices answering on a pty with this codec: memory per ID, PING / READ / WRITE / SYNC_WRITE / SYNC_READ.
    Every instruction frame received is kept (``frames``) so a test can compare it with the codec's own."""

    def __init__(self, ids: dict[int, int], sync_read: bool, model_address: int = 0) -> None:
        """``ids``: ID -> model number, stored little-endian at ``model_address`` (Dynamixel 0, Feetech STS 3)."""
        self.mem = {i: bytearray(256) for i in ids}
        for i, model in ids.items():
            self.mem[i][model_address:model_address + 2] = model.to_bytes(2, "little")
        self.sync_read = sync_read
        self.frames: list[P1.Frame] = []
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self._slave)

    def _serve(self) -> None:
        parser = P1.FrameParser()
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.02)[0]:
                continue
            for frame in parser.feed(os.read(self.master, 1024)):
                self.frames.append(frame)
                for reply in self._answer(frame):
                    os.write(self.master, reply)

    def _answer(self, f: P1.Frame) -> list[bytes]:
        I, p = P1.Instruction, f.params
        if f.code == I.SYNC_WRITE:
            addr, n = p[0], p[1]
            for k in range(2, len(p), n + 1):
                if p[k] in self.mem:
                    self.mem[p[k]][addr:addr + n] = p[k + 1:k + 1 + n]
            return []
        if f.code == I.SYNC_READ and self.sync_read:
            return [P1.status_packet(i, 0, bytes(self.mem[i][p[0]:p[0] + p[1]])) for i in p[2:] if i in self.mem]
        if f.id not in self.mem:
            return []
        if f.code == I.PING:
            return [P1.status_packet(f.id)]
        if f.code == I.READ:
            return [P1.status_packet(f.id, 0, bytes(self.mem[f.id][p[0]:p[0] + p[1]]))]
        if f.code == I.WRITE:
            self.mem[f.id][p[0]:p[0] + len(p) - 1] = p[1:]
            return [P1.status_packet(f.id)]
        return [P1.status_packet(f.id, 0x40)]  # instruction error


@pytest.fixture
def ax_servos():
    servos = Servos({1: 12, 2: 12, 3: 12}, sync_read=False)  # AX-12A: model number 12
    yield servos
    servos.close()


def test_robotis_sdk_speaks_protocol_1_to_the_codec(ax_servos):
    import dynamixel_sdk as sdk

    port, ph = sdk.PortHandler(ax_servos.path), sdk.PacketHandler(1.0)
    assert port.openPort() and port.setBaudRate(1_000_000)
    try:
        model, result, error = ph.ping(port, 2)
        assert (model, result, error) == (12, sdk.COMM_SUCCESS, 0)
        assert ph.write2ByteTxRx(port, 3, 30, 0x0200)[0] == sdk.COMM_SUCCESS  # goal position 512
        value, result, _ = ph.read2ByteTxRx(port, 3, 30)
        assert (value, result) == (0x0200, sdk.COMM_SUCCESS)
        group = sdk.GroupSyncWrite(port, ph, 30, 2)
        for i, goal in ((1, 100), (2, 200), (3, 300)):
            group.addParam(i, list(goal.to_bytes(2, "little")))
        assert group.txPacket() == sdk.COMM_SUCCESS
        assert ph.read2ByteTxRx(port, 1, 30)[0] == 100  # the sync write arrived (and is ordered before this read)
    finally:
        port.closePort()
    sent = [f.raw for f in ax_servos.frames]
    assert sent[:2] == [P1.ping_packet(2), P1.read_packet(2, 0, 2)], "Protocol 1.0 ping: the model number is read after"
    assert sent[2] == P1.write_packet(3, 30, (0x0200).to_bytes(2, "little")) and sent[3] == P1.read_packet(3, 30, 2)
    assert sent[4] == P1.sync_write_packet(30, 2, {1: b"\x64\x00", 2: b"\xc8\x00", 3: b"\x2c\x01"})
    assert [ax_servos.mem[i][30] | ax_servos.mem[i][31] << 8 for i in (1, 2, 3)] == [100, 200, 300]


def test_feetech_sdk_speaks_sts_to_the_codec_sync_read_included():
    import scservo_sdk as scs

    servos = Servos({1: 777, 2: 777}, sync_read=True, model_address=3)  # STS3215
    port, ph = scs.PortHandler(servos.path), scs.PacketHandler(0)  # 0: little-endian (STS)
    try:
        assert port.openPort() and port.setBaudRate(1_000_000)
        model, result, error = ph.ping(port, 1)
        assert (model, result, error) == (777, scs.COMM_SUCCESS, 0)
        for i, pos in ((1, 2048), (2, 1000)):
            assert ph.write2ByteTxRx(port, i, 56, pos)[0] == scs.COMM_SUCCESS  # Present Position, as the servo sets it
        group = scs.GroupSyncRead(port, ph, 56, 2)
        group.addParam(1)
        group.addParam(2)
        assert group.txRxPacket() == scs.COMM_SUCCESS
        assert (group.getData(1, 56, 2), group.getData(2, 56, 2)) == (2048, 1000)
    finally:
        port.closePort()
        servos.close()
    assert servos.frames[-1].raw == P1.sync_read_packet(56, 2, [1, 2])


# ---------------------------------------------------------------- the stream parser
frames = st.builds(lambda i, c, p: P1.encode_packet(i, c, p), st.integers(0, P1.MAX_ID), st.integers(0, 255),
                   st.binary(max_size=40))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=12), frames), min_size=1, max_size=8), st.integers(1, 64))
def test_the_parser_finds_every_frame_among_garbage_and_never_raises(chunks, split):
    """Valid frames separated by random garbage, fed in arbitrary pieces: each frame comes out (a garbage run can
    at most add a frame that happens to check, 1 in 256), the order is kept, nothing raises."""
    stream = b"".join(garbage + frame for garbage, frame in chunks)
    parser = P1.FrameParser()
    got = []
    for k in range(0, len(stream), split):
        got += [f.raw for f in parser.feed(stream[k:k + split])]
    want = [frame for _, frame in chunks]
    it = iter(got)
    missing = [w for w in want if not any(g == w for g in it)]  # want is a subsequence of got
    assert len(missing) <= sum(1 for g, _ in chunks if g), (missing, got)  # garbage can swallow at most its frame


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_the_parser_survives_any_bytes(data):
    parser = P1.FrameParser()
    for frame in parser.feed(data):
        assert P1.checksum(frame.raw[2:-1]) == frame.raw[-1]
    assert parser.pending <= len(data)
