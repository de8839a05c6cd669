"""ROBOTIS Dynamixel Protocol 2.0 codec: pure functions over bytes, no I/O.

Packet layout (ROBOTIS e-manual, "DYNAMIXEL Protocol 2.0")::

    instruction: FF FF FD 00 | ID | LEN_L LEN_H | INST | PARAM ...       | CRC_L CRC_H
    status:      FF FF FD 00 | ID | LEN_L LEN_H | 0x55 | ERR | PARAM ... | CRC_L CRC_H

* ``LEN`` counts the bytes after it: INST, the (stuffed) parameters and the 2 CRC bytes.
* The CRC is CRC-16 with polynomial 0x8005, initial value 0, no reflection, over every
  byte from the header to the last parameter, in the stuffed form as sent.
* Byte stuffing: wherever ``FF FF FD`` occurs in INST/ERR/PARAM, an extra ``FD`` is
  sent after it, so the header ``FF FF FD 00`` can never appear inside a packet.
* Fast Sync Read (0x8A) is answered by ONE status packet from the broadcast ID 0xFE that
  the servos build together, each appending ``ERR ID DATA CRC``; each segment's CRC is the
  running CRC of the packet up to there, so the last one is the packet CRC. ROBOTIS's SDK
  does not unstuff that packet, so neither do :func:`encode_fast_status` and the parser.

Every error raised here is a :class:`ProtocolError` (a ``ValueError``): bad arguments
to a builder (:class:`PacketBuildError`), a packet that is not well formed
(:class:`MalformedPacketError`) or whose checksum fails (:class:`CrcError`).
:class:`PacketParser` never raises: it resynchronises and counts.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from legadapt.hardware.framing import (CrcError, MalformedPacketError, PacketBuildError,  # noqa: F401 (the codec's errors,
                                       ProtocolError, StreamBuffer)  # re-exported: P.CrcError, P.ProtocolError)

HEADER = b"\xff\xff\xfd\x00"
_STUFF_PATTERN = b"\xff\xff\xfd"
_STUFFED = b"\xff\xff\xfd\xfd"
BROADCAST_ID = 0xFE
MAX_ID = 0xFC  # 252: highest unicast ID
MIN_LENGTH = 3  # LEN of the shortest packet: INST + CRC
MAX_LENGTH = 1024  # LEN the parser accepts (ROBOTIS SDK buffer size)


class Instruction(enum.IntEnum):
    """Instruction bytes of Protocol 2.0."""

    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    CLEAR = 0x10
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    FAST_SYNC_READ = 0x8A
    BULK_READ = 0x92
    BULK_WRITE = 0x93
    FAST_BULK_READ = 0x9A


class ErrorNumber(enum.IntEnum):
    """Bits 0-6 of a status packet's error byte."""

    NONE = 0
    RESULT_FAIL = 1  # failed to process the instruction
    INSTRUCTION = 2  # undefined instruction, or REG_WRITE missing before ACTION
    CRC = 3  # the instruction packet's CRC did not match
    DATA_RANGE = 4  # data out of range for the address
    DATA_LENGTH = 5  # data shorter than the address needs
    DATA_LIMIT = 6  # data beyond a configured limit
    ACCESS = 7  # address not writable/readable, or EEPROM written with torque on


ALERT_BIT = 0x80  # bit 7: the device has a hardware error (see its Hardware Error Status)

ERROR_TEXT: dict[int, str] = {
    ErrorNumber.NONE: "no error",
    ErrorNumber.RESULT_FAIL: "result fail: the instruction could not be processed",
    ErrorNumber.INSTRUCTION: "instruction error: undefined or misplaced instruction",
    ErrorNumber.CRC: "CRC error: the instruction packet was corrupted",
    ErrorNumber.DATA_RANGE: "data range error: value out of range for the address",
    ErrorNumber.DATA_LENGTH: "data length error: too few bytes for the address",
    ErrorNumber.DATA_LIMIT: "data limit error: value beyond the configured limit",
    ErrorNumber.ACCESS: "access error: address not readable/writable now",
}


# ---------------------------------------------------------------- CRC and stuffing
def _make_crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


CRC_TABLE: tuple[int, ...] = _make_crc_table()  # equals the e-manual's crc_table[256]


def crc16(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-16 (poly 0x8005, init ``crc``, MSB first) of ``data``, as in the e-manual."""
    table = CRC_TABLE
    for b in data:
        crc = ((crc << 8) ^ table[((crc >> 8) ^ b) & 0xFF]) & 0xFFFF
    return crc


def stuff(body: bytes) -> bytes:
    """Insert ``FD`` after every ``FF FF FD`` of an instruction/status body."""
    return body.replace(_STUFF_PATTERN, _STUFFED) if _STUFF_PATTERN in body else bytes(body)


def unstuff(body: bytes) -> bytes:
    """Undo :func:`stuff`; raise :class:`MalformedPacketError` where a ``FF FF FD`` lacks its ``FD``."""
    if _STUFF_PATTERN not in body:
        return bytes(body)
    if body.count(_STUFF_PATTERN) != body.count(_STUFFED):
        raise MalformedPacketError("byte stuffing violated: FF FF FD not followed by FD")
    return body.replace(_STUFFED, _STUFF_PATTERN)


# ---------------------------------------------------------------- building
def check_id(dxl_id: int, broadcast_ok: bool, max_id: int = MAX_ID) -> None:
    """PacketBuildError unless ``dxl_id`` is a unicast ID up to ``max_id`` (or the broadcast ID where allowed)."""
    if not (0 <= dxl_id <= max_id or (broadcast_ok and dxl_id == BROADCAST_ID)):
        allowed = f"0..{max_id}" + (f" or {BROADCAST_ID} (broadcast)" if broadcast_ok else "")
        raise PacketBuildError(f"ID {dxl_id} not allowed here; allowed: {allowed}")



def _u16(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise PacketBuildError(f"{what} {value} does not fit 16 bits")
    return value.to_bytes(2, "little")


def _frame(dxl_id: int, body: bytes) -> bytes:
    length = len(body) + 2
    if length > MAX_LENGTH:
        raise PacketBuildError(f"packet length {length} exceeds {MAX_LENGTH}")
    head = HEADER + bytes((dxl_id,)) + length.to_bytes(2, "little") + body
    return head + crc16(head).to_bytes(2, "little")


def encode_packet(dxl_id: int, instruction: int, params: bytes = b"") -> bytes:
    """A complete packet (stuffed, with CRC) of ``instruction`` and unstuffed ``params``."""
    if not (0 <= dxl_id <= MAX_ID or dxl_id == BROADCAST_ID):
        raise PacketBuildError(f"ID {dxl_id} cannot be sent (0..252, 254 broadcast)")
    return _frame(dxl_id, stuff(bytes((instruction,)) + bytes(params)))


def ping_packet(dxl_id: int) -> bytes:
    """PING ``dxl_id`` (254 = every device answers in ID order)."""
    check_id(dxl_id, broadcast_ok=True)
    return encode_packet(dxl_id, Instruction.PING)


def read_packet(dxl_id: int, address: int, length: int) -> bytes:
    """READ ``length`` bytes at ``address`` of ``dxl_id``."""
    check_id(dxl_id, broadcast_ok=False)
    return encode_packet(dxl_id, Instruction.READ, _u16(address, "address") + _u16(length, "length"))


def write_packet(dxl_id: int, address: int, data: bytes) -> bytes:
    """WRITE ``data`` at ``address`` of ``dxl_id`` (254 = all, without reply)."""
    check_id(dxl_id, broadcast_ok=True)
    if not data:
        raise PacketBuildError("WRITE needs at least one data byte")
    return encode_packet(dxl_id, Instruction.WRITE, _u16(address, "address") + bytes(data))


def reboot_packet(dxl_id: int) -> bytes:
    """REBOOT ``dxl_id`` (clears a hardware error; torque comes back off)."""
    check_id(dxl_id, broadcast_ok=True)
    return encode_packet(dxl_id, Instruction.REBOOT)


def _sync_read(instruction: int, address: int, length: int, ids: Iterable[int]) -> bytes:
    ids = list(ids)
    if not ids or len(set(ids)) != len(ids):
        raise PacketBuildError(f"sync read needs distinct IDs, got {ids}")
    for i in ids:
        check_id(i, broadcast_ok=False)
    return encode_packet(BROADCAST_ID, instruction, _u16(address, "address") + _u16(length, "length") + bytes(ids))


def sync_read_packet(address: int, length: int, ids: Iterable[int]) -> bytes:
    """SYNC READ: every listed servo answers its own status packet, in list order."""
    return _sync_read(Instruction.SYNC_READ, address, length, ids)


def fast_sync_read_packet(address: int, length: int, ids: Iterable[int]) -> bytes:
    """FAST SYNC READ: the listed servos answer together in one status packet."""
    return _sync_read(Instruction.FAST_SYNC_READ, address, length, ids)


def sync_write_packet(address: int, length: int, data: Mapping[int, bytes]) -> bytes:
    """SYNC WRITE ``length`` bytes at ``address`` of each servo (``{id: data}``); no reply."""
    if not data:
        raise PacketBuildError("sync write needs at least one servo")
    params = bytearray(_u16(address, "address") + _u16(length, "length"))
    for dxl_id, chunk in data.items():
        check_id(dxl_id, broadcast_ok=False)
        if len(chunk) != length:
            raise PacketBuildError(f"sync write data of ID {dxl_id} has {len(chunk)} bytes, expected {length}")
        params.append(dxl_id)
        params += chunk
    return encode_packet(BROADCAST_ID, Instruction.SYNC_WRITE, bytes(params))


def status_packet(dxl_id: int, error: int = 0, data: bytes = b"") -> bytes:
    """A device's STATUS reply: error byte (number | alert bit) and data."""
    check_id(dxl_id, broadcast_ok=False)
    if not 0 <= error <= 0xFF:
        raise PacketBuildError(f"error byte {error} does not fit 8 bits")
    return encode_packet(dxl_id, Instruction.STATUS, bytes((error,)) + bytes(data))


def encode_fast_status(entries: Iterable[tuple[int, int, bytes]]) -> bytes:
    """The Fast Sync Read reply of ``(id, error, data)`` servos, in order (unstuffed, see module doc)."""
    entries = list(entries)
    if not entries:
        raise PacketBuildError("fast status needs at least one servo")
    length = 1 + sum(4 + len(d) for _, _, d in entries)
    out = bytearray(HEADER + bytes((BROADCAST_ID,)) + _u16(length, "length") + bytes((Instruction.STATUS,)))
    crc = crc16(out)
    for dxl_id, error, data in entries:
        check_id(dxl_id, broadcast_ok=False)
        segment = bytes((error & 0xFF, dxl_id)) + bytes(data)
        crc = crc16(segment, crc)
        out += segment + crc.to_bytes(2, "little")
        crc = crc16(crc.to_bytes(2, "little"), crc)
    return bytes(out)


# ---------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Packet:
    """One framed packet: ``params`` unstuffed (for a status: error byte first), ``raw`` as received."""

    id: int
    instruction: int
    params: bytes
    raw: bytes

    @property
    def is_status(self) -> bool:
        return self.instruction == Instruction.STATUS

    @property
    def is_fast_status(self) -> bool:
        """A Fast Sync Read reply (status from the broadcast ID)."""
        return self.is_status and self.id == BROADCAST_ID


@dataclass(frozen=True)
class Status:
    """A decoded status: who answered, its error number and alert bit, and the data."""

    id: int
    error_number: int  # ErrorNumber value (bits 0-6)
    alert: bool  # bit 7: hardware error present
    data: bytes

    @property
    def ok(self) -> bool:
        """The instruction was carried out (an alert alone does not prevent that)."""
        return self.error_number == ErrorNumber.NONE

    @property
    def error_text(self) -> str:
        return describe_error(self.error_number | (ALERT_BIT if self.alert else 0))


def describe_error(error: int) -> str:
    """Human text of a status error byte, e.g. ``'data limit error: ...; hardware alert'``."""
    number, alert = error & 0x7F, bool(error & ALERT_BIT)
    text = ERROR_TEXT.get(number, f"unknown error number {number}")
    if alert:
        text = "hardware alert (read Hardware Error Status)" if number == 0 else f"{text}; hardware alert"
    return text


def decode_packet(raw: bytes) -> Packet:
    """Decode exactly one complete packet; raise :class:`MalformedPacketError` or :class:`CrcError`."""
    raw = bytes(raw)
    if len(raw) < 7 + MIN_LENGTH or not raw.startswith(HEADER):
        raise MalformedPacketError(f"not a packet: {raw[:8].hex(' ')}... ({len(raw)} bytes)")
    length = raw[5] | raw[6] << 8
    if length < MIN_LENGTH or 7 + length != len(raw):
        raise MalformedPacketError(f"length field {length} does not match {len(raw)} bytes")
    crc = raw[-2] | raw[-1] << 8
    if crc16(memoryview(raw)[:-2]) != crc:
        raise CrcError(f"CRC {crc:04X} does not match packet from ID {raw[4]}")
    body = raw[7:-2]
    dxl_id, instruction = raw[4], body[0]
    if instruction == Instruction.STATUS and dxl_id == BROADCAST_ID:
        return Packet(dxl_id, instruction, body[1:], raw)  # fast status: sent unstuffed
    body = unstuff(body)
    return Packet(dxl_id, instruction, body[1:], raw)


def parse_status(packet: Packet) -> Status:
    """The :class:`Status` of a (non-fast) status packet."""
    if not packet.is_status or not packet.params:
        raise MalformedPacketError(f"not a status packet: instruction 0x{packet.instruction:02X} from ID {packet.id}")
    error = packet.params[0]
    return Status(packet.id, error & 0x7F, bool(error & ALERT_BIT), packet.params[1:])


def decode_fast_status(packet: Packet, length: int) -> list[Status]:
    """Split a Fast Sync Read reply of ``length``-byte entries; checks every segment CRC."""
    seg = length + 4  # ERR ID DATA CRC
    n, rest = divmod(len(packet.params) + 2, seg)  # the last segment's CRC is the packet CRC
    if not packet.is_fast_status or n == 0 or rest:
        raise MalformedPacketError(f"not a fast sync read reply of {length}-byte entries ({len(packet.params)} parameter bytes)")
    raw = memoryview(packet.raw)
    out: list[Status] = []
    start = 8  # first segment, after INST
    crc = crc16(raw[:start])
    for _ in range(n):
        crc = crc16(raw[start:start + seg - 2], crc)
        got = raw[start + seg - 2] | raw[start + seg - 1] << 8
        if got != crc:
            raise CrcError(f"fast status segment of ID {raw[start + 1]}: CRC {got:04X} != {crc:04X}")
        err = raw[start]
        out.append(Status(raw[start + 1], err & 0x7F, bool(err & ALERT_BIT), bytes(raw[start + 2:start + seg - 2])))
        crc = crc16(raw[start + seg - 2:start + seg], crc)
        start += seg
    return out


class PacketParser(StreamBuffer):
    """Frames packets out of a byte stream, resynchronising after garbage.

    ``feed(data)`` returns every complete, CRC-valid packet so far. Bytes that belong to
    no valid packet are dropped and counted in ``garbage_bytes``; ``crc_errors`` counts
    framed packets whose CRC failed, ``malformed`` CRC-valid packets with broken stuffing.
    A header whose packet is still incomplete is not waited on forever: if a complete
    valid packet starts later in the buffer, the bytes before it are dropped as garbage.
    Never raises. The one loss no framing can avoid: garbage that, with the first bytes of
    the next packet, forms a CRC-valid packet (e.g. a reply cut one byte short whose
    missing CRC byte happens to equal the next header's FF) is delivered instead of it.
    """

    MIN_FRAME = 7  # header (4), ID, LEN (2)

    def __init__(self, max_length: int = MAX_LENGTH) -> None:
        super().__init__(max_length)
        self.packets = 0

    def feed(self, data: bytes) -> list[Packet]:
        """Add received bytes; return the packets they complete, in order."""
        self._buf += data
        out = self._parse()
        self.packets += len(out)
        return out

    def _find_header(self, start: int) -> int:
        return self._buf.find(HEADER, start)

    def _keep_tail(self) -> int:
        buf = self._buf
        return 3 if buf.endswith(b"\xff\xff\xfd") else 2 if buf.endswith(b"\xff\xff") else 1 if buf.endswith(b"\xff") else 0

    def _total(self, at: int) -> int | None:
        length = self._buf[at + 5] | self._buf[at + 6] << 8
        return 7 + length if MIN_LENGTH <= length <= self.max_length else None

    def _decode(self, raw: bytes) -> Packet:
        return decode_packet(raw)
