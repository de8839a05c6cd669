"""The one-byte-checksum servo protocol: ROBOTIS Dynamixel Protocol 1.0 and Feetech SCS/STS. Pure functions over bytes.

Both families frame every packet alike (ROBOTIS e-manual "DYNAMIXEL Protocol 1.0"; Feetech's SCS
protocol manual)::

    instruction: FF FF | ID | LEN | INST | PARAM ...  | CHK
    status:      FF FF | ID | LEN | ERR  | PARAM ...  | CHK

* ``LEN`` counts the bytes after it: INST (or ERR), the parameters and CHK.
* ``CHK = ~(ID + LEN + INST + PARAM...) & 0xFF``. No byte stuffing: a parser resynchronises on
  the header and the checksum.
* Status and instruction packets look the same on the wire; which one a frame is follows from who
  sent it (the host sends instructions, devices answer with status).
* Instruction sets differ by family (:data:`FAMILY_INSTRUCTIONS`): every one has PING, READ,
  WRITE, REG_WRITE, ACTION and SYNC_WRITE; Feetech STS adds SYNC_READ (0x82); Dynamixel MX in
  Protocol 1.0 adds BULK_READ (0x92) and REBOOT (0x08); AX servos have neither, so their
  positions are read one servo at a time.
* Multi-byte register values are little-endian on Dynamixel and Feetech STS, big-endian on the
  older Feetech SCS (that is the control table's business, not the frame's).

Errors are :mod:`hardware.framing`'s, as for Protocol 2.0 (:class:`~hardware.framing.PacketBuildError`,
:class:`~hardware.framing.MalformedPacketError`, :class:`~hardware.framing.CrcError` for a failed
checksum). :class:`FrameParser` never raises: it resynchronises and counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from legadapt.hardware import protocol as P2
from legadapt.hardware.framing import CrcError, MalformedPacketError, PacketBuildError, StreamBuffer
from legadapt.hardware.protocol import check_id

HEADER = b"\xff\xff"
BROADCAST_ID = 0xFE
MAX_ID = 0xFD  # 253: highest unicast ID
MIN_LENGTH = 2  # LEN of the shortest packet: INST (or ERR) + CHK
MAX_LENGTH = 250  # the SDKs' packet buffer (Feetech: 250; ROBOTIS: 250 for Protocol 1.0)


#: The instruction bytes are Protocol 2.0's (the same codes); which family has which: FAMILY_INSTRUCTIONS.
Instruction = P2.Instruction


_COMMON = frozenset({Instruction.PING, Instruction.READ, Instruction.WRITE, Instruction.REG_WRITE,
                     Instruction.ACTION, Instruction.FACTORY_RESET, Instruction.SYNC_WRITE})
FAMILY_INSTRUCTIONS: dict[str, frozenset[Instruction]] = {
    "dynamixel_ax": _COMMON,
    "dynamixel_mx": _COMMON | {Instruction.REBOOT, Instruction.BULK_READ},
    "feetech_scs": _COMMON,
    "feetech_sts": _COMMON | {Instruction.SYNC_READ},
}

#: Status error bits, Dynamixel Protocol 1.0 (ROBOTIS e-manual).
ERROR_BITS: dict[int, str] = {0x01: "input voltage", 0x02: "angle limit", 0x04: "overheating", 0x08: "range",
                              0x10: "checksum", 0x20: "overload", 0x40: "instruction"}
#: Status error bits, Feetech SCS/STS (the SDK's ERRBIT_*): all report the servo's condition.
FEETECH_ERROR_BITS: dict[int, str] = {0x01: "input voltage", 0x02: "angle sensor", 0x04: "overheating",
                                      0x08: "over-current", 0x20: "overload"}
#: The bits that report a hardware condition (it persists, and may have cut the torque), by maker; the
#: other Dynamixel bits say the instruction was refused (angle limit, range, checksum, instruction).
HARDWARE_BITS: dict[str, int] = {"ROBOTIS": 0x25, "Feetech": 0x2F}
CHECKSUM_BIT = 0x10  # Dynamixel: our instruction arrived damaged (retry it)


def describe_error(error: int, maker: str = "ROBOTIS") -> str:
    """Text of a status error byte, e.g. ``'overheating + overload (0x24)'``; ``'none'`` for 0."""
    if not error:
        return "none"
    bits = FEETECH_ERROR_BITS if maker == "Feetech" else ERROR_BITS
    names = [text for bit, text in bits.items() if error & bit] or ["unknown"]
    return f"{' + '.join(names)} (0x{error:02X})"


# ---------------------------------------------------------------- building
def checksum(body: bytes | bytearray | memoryview) -> int:
    """``~sum(body) & 0xFF`` over ID, LEN, INST/ERR and the parameters."""
    return ~sum(body) & 0xFF


def _check_id(dxl_id: int, broadcast_ok: bool) -> None:
    check_id(dxl_id, broadcast_ok, MAX_ID)


def _byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise PacketBuildError(f"{what} {value} does not fit one byte (0..255)")
    return value


def encode_packet(dxl_id: int, code: int, params: bytes = b"") -> bytes:
    """A complete frame: ``code`` is the instruction (host) or the error byte (status)."""
    _check_id(dxl_id, broadcast_ok=True)
    length = len(params) + 2
    if length > MAX_LENGTH:
        raise PacketBuildError(f"packet length {length} exceeds {MAX_LENGTH}")
    body = bytes((dxl_id, length, _byte(code, "instruction/error"))) + bytes(params)
    return HEADER + body + bytes((checksum(body),))


def ping_packet(dxl_id: int) -> bytes:
    return encode_packet(dxl_id, Instruction.PING)


def read_packet(dxl_id: int, address: int, length: int) -> bytes:
    _check_id(dxl_id, broadcast_ok=False)
    return encode_packet(dxl_id, Instruction.READ, bytes((_byte(address, "address"), _byte(length, "length"))))


def write_packet(dxl_id: int, address: int, data: bytes) -> bytes:
    if not data:
        raise PacketBuildError("WRITE needs at least one data byte")
    return encode_packet(dxl_id, Instruction.WRITE, bytes((_byte(address, "address"),)) + bytes(data))


def reboot_packet(dxl_id: int) -> bytes:
    return encode_packet(dxl_id, Instruction.REBOOT)


def sync_write_packet(address: int, length: int, data: Mapping[int, bytes]) -> bytes:
    """One SYNC_WRITE of ``length`` bytes at ``address`` to every ID in ``data`` (broadcast, no reply)."""
    params = bytearray((_byte(address, "address"), _byte(length, "length")))
    for dxl_id, chunk in data.items():
        _check_id(dxl_id, broadcast_ok=False)
        if len(chunk) != length:
            raise PacketBuildError(f"SYNC_WRITE: ID {dxl_id} has {len(chunk)} bytes, expected {length}")
        params += bytes((dxl_id,)) + bytes(chunk)
    return encode_packet(BROADCAST_ID, Instruction.SYNC_WRITE, bytes(params))


def sync_read_packet(address: int, length: int, ids: Iterable[int]) -> bytes:
    """Feetech STS SYNC_READ: every listed servo answers with its own status packet, in order."""
    ids = list(ids)
    for dxl_id in ids:
        _check_id(dxl_id, broadcast_ok=False)
    return encode_packet(BROADCAST_ID, Instruction.SYNC_READ, bytes((_byte(address, "address"), _byte(length, "length"), *ids)))


def bulk_read_packet(reads: Iterable[tuple[int, int, int]]) -> bytes:
    """Dynamixel MX (Protocol 1.0) BULK_READ of (ID, address, length) per servo; each answers in order."""
    params = bytearray((0x00,))
    for dxl_id, address, length in reads:
        _check_id(dxl_id, broadcast_ok=False)
        params += bytes((_byte(length, "length"), dxl_id, _byte(address, "address")))
    return encode_packet(BROADCAST_ID, Instruction.BULK_READ, bytes(params))


def status_packet(dxl_id: int, error: int = 0, data: bytes = b"") -> bytes:
    """A device's answer: its error byte and the data read (none for PING, WRITE)."""
    _check_id(dxl_id, broadcast_ok=False)
    return encode_packet(dxl_id, error, data)


# ---------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Frame:
    """One framed packet: ``code`` is INST from the host or ERR from a device; ``raw`` as received."""

    id: int
    code: int
    params: bytes
    raw: bytes


def decode_frame(raw: bytes) -> Frame:
    """Decode exactly one complete frame; :class:`MalformedPacketError` or :class:`CrcError`."""
    raw = bytes(raw)
    if len(raw) < 6 or raw[:2] != HEADER:
        raise MalformedPacketError(f"not a frame: {raw[:8].hex(' ')} (needs FF FF, ID, LEN, code, CHK)")
    dxl_id, length = raw[2], raw[3]
    if dxl_id == 0xFF:
        raise MalformedPacketError("ID 0xFF is not an ID (a third header byte)")
    if not MIN_LENGTH <= length <= MAX_LENGTH or len(raw) != 4 + length:
        raise MalformedPacketError(f"LEN {length} does not fit a frame of {len(raw)} bytes")
    if checksum(raw[2:-1]) != raw[-1]:
        raise CrcError(f"checksum 0x{raw[-1]:02X}, expected 0x{checksum(raw[2:-1]):02X} (ID {dxl_id})")
    return Frame(dxl_id, raw[4], raw[5:-1], raw)


class FrameParser(StreamBuffer):
    """Frames packets out of a byte stream, resynchronising after garbage; never raises.

    ``feed(data)`` returns every complete frame with a valid checksum. Bytes that belong to no
    valid frame are dropped and counted in ``garbage_bytes``; ``crc_errors`` counts framed
    packets whose checksum failed. A header whose frame is still incomplete is not waited on
    forever: if a complete valid frame starts later in the buffer, the bytes before it go.
    A one-byte checksum lets about 1 in 256 random frames through: the bus layer checks that
    an answer is the one it asked for (ID, length).
    """

    MIN_FRAME = 4  # header (2), ID, LEN

    def __init__(self, max_length: int = MAX_LENGTH) -> None:
        super().__init__(max_length)
        self.frames = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames they complete, in order."""
        self._buf += data
        out = self._parse()
        self.frames += len(out)
        return out

    def _find_header(self, start: int) -> int:
        buf = self._buf
        h = buf.find(HEADER, start)
        while h >= 0 and h + 2 < len(buf) and buf[h + 2] == 0xFF:  # FF FF FF: the header starts one later
            h += 1
        return h

    def _keep_tail(self) -> int:
        return 1 if self._buf.endswith(b"\xff") else 0

    def _total(self, at: int) -> int | None:
        length = self._buf[at + 3]
        return 4 + length if MIN_LENGTH <= length <= self.max_length else None

    def _decode(self, raw: bytes) -> Frame:
        return decode_frame(raw)
