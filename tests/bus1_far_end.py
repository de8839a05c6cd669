"""The far end of a one-byte-checksum bus (Dynamixel Protocol 1.0, Feetech SCS/STS) for the hostile-reply
tests (``test_bus1_hostile.py``): a thread on a pseudo-terminal's master side that answers every request
with a script (status frames, broken checksums, cut frames, garbage, echoes, pauses), the operations the
tests run through :class:`hardware.bus1.OneByteBus`, and the checks of what reached the wire."""

from __future__ import annotations

import os
import select
import threading
import time
import tty

from legadapt.hardware import protocol1 as P1
from legadapt.hardware.bus1 import OneByteBus
from legadapt.hardware.servo_types import FAMILIES

FAMILY_NAMES = ["dynamixel_ax", "dynamixel_mx", "feetech_sts", "feetech_scs"]
IDS = [1, 2, 3]  # the group reads' servos
UNICAST_ID = 2
ADDRESS, LENGTH = 36, 4  # every read: 4 bytes at 36
PATIENT = 1.0  # s per attempt where a timeout is not what is tested: a busy machine answers late, never wrongly
I = P1.Instruction


# ---------------------------------------------------------------- what the far end sends
# A script is a tuple of parts, resolved against the request it answers:
#   ("answer", err)                 the status of every servo the request asks, the length it asks, error byte err
#   ("status", id, err, params)     a status frame with a valid checksum
#   ("badsum", id, err, params, x)  the same with its checksum XOR x (x != 0)
#   ("cut", id, err, params, k)     the same cut to its first k bytes
#   ("garbage", bytes)              raw bytes
#   ("echo",)                       the request itself, byte for byte
#   ("pause", seconds)


def frame(dxl_id: int, code: int, params: bytes = b"") -> bytes:
    """A frame with a valid checksum (any ID, any code: no builder checks)."""
    body = bytes((dxl_id, len(params) + 2, code)) + bytes(params)
    return P1.HEADER + body + bytes((P1.checksum(body),))


def data_of(dxl_id: int, length: int) -> bytes:
    """What the ``answer`` part reads from servo ``dxl_id``: known bytes, so a test can tell them apart."""
    return bytes((dxl_id * 16 + k) & 0xFF for k in range(length))


def asked(request: P1.Frame) -> list[tuple[int, int]]:
    """(servo ID, data length) of every status the request asks for, in the order they answer."""
    p = request.params
    if request.code == I.READ:
        return [(request.id, p[1])]
    if request.code == I.SYNC_READ:
        return [(i, p[1]) for i in p[2:]]
    if request.code == I.BULK_READ:
        return [(p[k + 1], p[k]) for k in range(1, len(p) - 2, 3)]  # (length, ID, address) per servo
    return [] if request.id == P1.BROADCAST_ID else [(request.id, 0)]


def render(script: tuple, request: P1.Frame) -> list[bytes | float]:
    out: list[bytes | float] = []
    for part in script:
        kind = part[0]
        if kind == "answer":
            out.append(b"".join(frame(i, part[1], data_of(i, n)) for i, n in asked(request)))
        elif kind == "status":
            out.append(frame(*part[1:4]))
        elif kind == "badsum":
            raw = frame(*part[1:4])
            out.append(raw[:-1] + bytes((raw[-1] ^ part[4],)))
        elif kind == "cut":
            out.append(frame(*part[1:4])[:part[4]])
        elif kind == "garbage":
            out.append(part[1])
        elif kind == "echo":
            out.append(request.raw)
        elif kind == "pause":
            out.append(part[1])
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(kind)
    merged: list[bytes | float] = []  # one write between pauses: what a servo sends back to back
    for chunk in out:
        if merged and isinstance(chunk, bytes) and isinstance(merged[-1], bytes):
            merged[-1] += chunk
        else:
            merged.append(chunk)
    return merged


class Responder:
    """The far end of a pseudo-terminal: answers the n-th instruction with ``scripts[n]`` (the last one repeats).

    ``requests``: every instruction frame received; ``sent``: the bytes written in answer to each."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._lock = threading.Lock()
        self.play(())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def play(self, *scripts: tuple) -> None:
        """Answer the next requests with ``scripts`` (call only while the far end is idle: see :meth:`settle`)."""
        with self._lock:
            self.scripts = list(scripts) or [()]
            self.requests: list[bytes] = []
            self.sent: list[bytes] = []
            self.handled = 0

    def _serve(self) -> None:
        parser = P1.FrameParser()
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.01)[0]:
                continue
            for request in parser.feed(os.read(self.master, 4096)):
                with self._lock:
                    script = self.scripts[min(len(self.requests), len(self.scripts) - 1)]
                    self.requests.append(request.raw)
                sent = b""
                for chunk in render(script, request):
                    if isinstance(chunk, float):
                        time.sleep(chunk)
                    elif chunk:
                        os.write(self.master, chunk)
                        sent += chunk
                with self._lock:
                    self.sent.append(sent)
                    self.handled += 1

    def settle(self, requests: int, patience: float = 5.0) -> int:
        """Wait until ``requests`` instructions have been answered (the bus wrote them before it returned; the
        far end may lag on a busy machine); then a moment for any unexpected extra one. Returns the count."""
        end = time.monotonic() + patience
        while self.handled < requests and time.monotonic() < end:
            time.sleep(0.001)
        time.sleep(0.002)
        return self.handled

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        os.close(self.master)
        os.close(self.slave)


# ---------------------------------------------------------------- the operations
OPS = ["ping", "read", "write", "broadcast_write", "sync_write", "group_read", "reboot"]


def run_op(bus: OneByteBus, op: str):
    """One operation on servo 2 (a group read: 1-3); checks the shape of what it returns."""
    if op == "ping":
        assert bus.ping(UNICAST_ID) is None
        return None
    if op == "read":
        data = bus.read(UNICAST_ID, ADDRESS, LENGTH)
        assert isinstance(data, bytes) and len(data) == LENGTH
        return {UNICAST_ID: data}
    if op == "write":
        return bus.write(UNICAST_ID, 30, b"\x00\x02")
    if op == "broadcast_write":
        return bus.write(P1.BROADCAST_ID, 25, b"\x01")
    if op == "sync_write":
        return bus.sync_write(30, 2, {i: b"\x00\x02" for i in IDS})
    if op == "group_read":
        data = bus.group_read(ADDRESS, LENGTH, IDS)
        assert sorted(data) == IDS and all(len(v) == LENGTH for v in data.values())
        return data
    assert op == "reboot"
    return bus.reboot(UNICAST_ID)


def op_ids(op: str) -> list[int]:
    return IDS if op == "group_read" else [UNICAST_ID]


def op_length(op: str) -> int:
    return LENGTH if op in ("read", "group_read") else 0


def sequential(family: str, op: str) -> bool:
    return op == "group_read" and FAMILIES[family].group_read_kind() == "sequential"


def send_only(family: str, op: str) -> bool:
    return op in ("broadcast_write", "sync_write")


def no_reboot(family: str, op: str) -> bool:
    return op == "reboot" and not FAMILIES[family].reboot


def split(family: str, code: int) -> tuple[int, int]:
    """(refusal bits, hardware bits) of an error byte, as the family's manual splits them."""
    hardware = code & P1.HARDWARE_BITS[FAMILIES[family].maker]
    return code & 0x7F & ~hardware, hardware


def wire_frames(responder: Responder) -> list[P1.Frame]:
    """Every valid frame the far end sent: per reply, and in the stream of all of them (a frame cut short in one
    reply may be completed by the next)."""
    out: list[P1.Frame] = []
    for chunk in [*responder.sent, b"".join(responder.sent)]:
        out += P1.FrameParser().feed(chunk)
    return out


def check_counters(bus: OneByteBus, responder: Responder, family: str, op: str) -> None:
    """The counters agree with the operation and with the requests the far end saw."""
    s = bus.stats
    if no_reboot(family, op):
        assert s.transactions == 0
    elif sequential(family, op):
        assert 1 <= s.transactions <= len(IDS)
    else:
        assert s.transactions == 1
    if send_only(family, op):
        assert s.retries == 0 and s.timeouts == 0
    assert s.retries <= bus.retries * s.transactions, "at most `retries` retries per transaction"
    assert s.timeouts <= s.transactions + s.retries
    assert min(s.crc_errors, s.malformed, s.alerts, s.servo_errors, s.garbage_bytes) >= 0
    assert responder.settle(s.transactions + s.retries) == s.transactions + s.retries, \
        "one request on the wire per attempt"
    for raw in responder.requests:
        request = P1.decode_frame(raw)
        assert request.code in P1.FAMILY_INSTRUCTIONS[family], f"{family} has no instruction 0x{request.code:02X}"


def reconnects(responder: Responder, family: str) -> None:
    OneByteBus(responder.path, FAMILIES[family]).close()  # the exclusive lock went with the port
