"""``OneByteBus``: the :class:`hardware.servo_bus.ServoBus` of Dynamixel Protocol 1.0 (AX, MX) and Feetech SCS/STS.

Both frame packets alike (:mod:`hardware.protocol1`: ``FF FF ID LEN INST/ERR PARAM... CHK``), so
one bus serves them; the :class:`hardware.servo_types.BusFamily` says what the servos can do:

* **group read**: Feetech STS answers a SYNC READ, each servo with its own status packet in
  turn; Dynamixel MX answers a BULK READ the same way; AX servos and the older Feetech SCS have
  neither, so :meth:`OneByteBus.group_read` reads them **one servo at a time** (18 round trips
  for a hexapod: see ``bench/serial_bus.py`` for what rate that leaves).
* **errors** ride in every status packet's error byte. Dynamixel splits them into a refused
  instruction (angle limit, range, checksum, instruction: :class:`ServoError` with that number)
  and the servo's condition (input voltage, overheating, overload: a hardware *alert*, raised
  if ``raise_on_alert``, with the bits in ``ServoError.hardware_error``); every Feetech bit is a
  condition. A Dynamixel checksum error means our instruction arrived damaged: retried.
* **REBOOT** only on MX (Protocol 1.0 firmware 41+); AX and Feetech servos re-arm when Torque
  Enable is written.
* A one-byte checksum lets about 1 frame in 256 of noise through, so a reply counts only if it
  comes from a servo asked, carries the length asked for (a refusal may carry no data: a Dynamixel
  refusing a READ sends its error bits alone), and is not the echo of our own instruction (a
  half-duplex adapter without echo suppression hears itself).

Timeouts, corrupt replies (checksum) and malformed ones (the right servo, the wrong length) are
retried ``retries`` times, with the port handling, counters and errors of :class:`ServoBus`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from legadapt.hardware import protocol1 as P1
from legadapt.hardware.servo_bus import BusError, Retry, ServoBus, ServoError, first_missing, id_ranges
from legadapt.hardware.servo_types import BusFamily

STATUS_OVERHEAD = 6  # bytes of a status frame around its data: FF FF ID LEN ERR ... CHK


class OneByteBus(ServoBus):
    """A Protocol 1.0 / Feetech SCS-STS bus master on one serial port."""

    codec = P1

    def __init__(self, url: str, family: BusFamily, baudrate: int = 1_000_000, timeout: float = 0.02,
                 retries: int = 2, raise_on_alert: bool = True) -> None:
        if family.protocol != 1:
            raise ValueError(f"{family.name} does not speak the one-byte-checksum protocol")
        self.family = family
        self._hardware_bits = P1.HARDWARE_BITS[family.maker]
        self._instructions = P1.FAMILY_INSTRUCTIONS[family.name]
        #: Whether the line echoes our requests (a half-duplex adapter without echo suppression): None until a
        #: transaction shows it. A reply can equal its request byte for byte (PING 2 and servo 2's input-voltage
        #: alert are both FF FF 02 02 01 FA): where the line is known not to echo such a frame is the reply at once;
        #: while unknown, a frame without parameters (PING, REBOOT) is the reply if nothing else comes before the
        #: timeout (a dead servo on an echoing line then reads as an input-voltage alert until the bus has learned).
        self.echoes: bool | None = None
        super().__init__(url, baudrate, timeout, retries, raise_on_alert)

    # ------------------------------------------------------------ operations
    def ping(self, dxl_id: int) -> None:
        """PING ``dxl_id``: it answers (else :class:`BusTimeout`); this protocol's PING returns no model number."""
        self._unicast(P1.ping_packet(dxl_id), dxl_id, 0)

    def reboot(self, dxl_id: int) -> None:
        """REBOOT (Dynamixel MX): clears a hardware error; torque comes back off."""
        if not self.family.reboot:
            super().reboot(dxl_id)
        self._unicast(P1.reboot_packet(dxl_id), dxl_id, 0)

    def group_read(self, address: int, length: int, ids: Iterable[int], fast: bool = True) -> dict[int, bytes]:
        """``{id: bytes}``: one SYNC READ (STS) or BULK READ (MX), else one READ per servo. ``fast`` is ignored
        (no Fast Sync Read in this protocol). A servo's alert does not stop the others' reads: the
        :class:`ServoError` raised at the end carries their data."""
        ids = list(ids)
        kind = self.family.group_read_kind()
        if kind == "sync_read":
            return self._transact(P1.sync_read_packet(address, length, ids), ids, length)
        if kind == "bulk_read":
            return self._transact(P1.bulk_read_packet([(i, address, length) for i in ids]), ids, length)
        return self._sequential_read(address, length, ids)

    def _sequential_read(self, address: int, length: int, ids: list[int]) -> dict[int, bytes]:
        data: dict[int, bytes] = {}
        failed: ServoError | None = None
        for dxl_id in ids:
            try:
                data[dxl_id] = self.read(dxl_id, address, length)
            except ServoError as exc:
                if exc.error_number:  # a refused READ: nothing to carry on with
                    raise
                failed = failed or exc
                data.update(exc.data)
        if failed is not None:
            failed.data = {i: d for i, d in data.items()}
            raise failed
        return data

    # ------------------------------------------------------------ transactions
    def _make_parser(self) -> P1.FrameParser:
        return P1.FrameParser()

    def _reply_bytes(self, ids: list[int], length: int) -> int:
        return (length + STATUS_OVERHEAD) * len(ids)

    def _attempt(self, tx: bytes, ids: list[int], length: int, budget: float) -> dict[int, P1.Frame]:
        self._discard_input()
        self._send(tx)
        deadline = time.monotonic() + budget
        got: dict[int, P1.Frame] = {}
        corrupt = malformed = 0
        echo: P1.Frame | None = None  # a frame equal to our request: its echo, or a reply that happens to equal it
        garbage_before = self._parser.garbage_bytes
        while True:
            before = self._parser.crc_errors
            for frame in self._receive(deadline):
                if frame.raw == tx and echo is None and self.echoes is not False:
                    echo = frame  # the line's echo of our request (see echoes)
                elif frame.id in ids and frame.id not in got:
                    if self._well_formed(frame, length):
                        got[frame.id] = frame
                    else:
                        malformed += 1  # the servo asked, the length not asked for
            corrupt += self._parser.crc_errors - before
            if self.echoes is None and echo is not None and not echo.params and len(got) < len(ids) == 1 \
                    and time.monotonic() >= deadline and self._well_formed(echo, length):
                got[echo.id], echo = echo, None  # nothing else came: it was the reply (a PING's alert), not an echo
            if len(got) == len(ids):
                self.echoes = echo is not None
                for f in got.values():
                    if self.family.maker == "ROBOTIS" and f.code & P1.CHECKSUM_BIT:
                        raise Retry(BusError(f"servo {f.id} received a corrupt instruction", f.id))
                return got
            if (corrupt or malformed) and len(got) + corrupt + malformed >= len(ids):
                self.stats.crc_errors += corrupt
                self.stats.malformed += malformed
                what = "corrupt reply (checksum)" if not malformed else "malformed reply (wrong length)"
                raise Retry(BusError(f"{what} from servo(s) {id_ranges(sorted(set(ids) - set(got)))}",
                                     first_missing(ids, got) if got or len(ids) == 1 else None))
            if time.monotonic() >= deadline:
                raise Retry(self._timeout_error(ids, got, budget, corrupt, malformed, garbage_before,
                                                "status packet(s) of the wrong length", self._chain_break(ids, got)))

    def _well_formed(self, frame: P1.Frame, length: int) -> bool:
        """The length asked for, or a refusal that comes without data."""
        return len(frame.params) == length or (not frame.params and bool(frame.code & ~self._hardware_bits & 0x7F))

    @staticmethod
    def _chain_break(ids: list[int], got: Mapping[int, object]):
        """In a Sync or Bulk Read each servo answers after the one before it: replies that stop after the first k
        servos point at servo ``ids[k]`` (the rest wait for it). None where that is not what happened."""
        k = len(got)
        if len(ids) < 2 or not 0 < k < len(ids) or set(got) != set(ids[:k]):
            return None
        return lambda missing, hint: ([ids[k]], f"{hint} (the replies stopped after ID {ids[k - 1]}: the servos "
                                                f"after it wait for its reply)")

    def _check(self, statuses: dict[int, P1.Frame]) -> dict[int, bytes]:
        data = {i: f.params for i, f in statuses.items()}
        failed: ServoError | None = None
        for f in statuses.values():
            hardware = f.code & self._hardware_bits
            refused = f.code & ~self._hardware_bits & 0x7F
            self.stats.alerts += bool(hardware)
            self.stats.servo_errors += bool(refused)
            if failed is None and (refused or (hardware and self.raise_on_alert)):
                failed = ServoError(f.id, refused, bool(hardware), text=P1.describe_error(f.code, self.family.maker),
                                    hardware_error=hardware or None)
        if failed is not None:
            failed.data = {i: d for i, d in data.items() if not statuses[i].code & ~self._hardware_bits & 0x7F}
            raise failed
        return data
