"""``DynamixelBus``: the :class:`hardware.servo_bus.ServoBus` of Dynamixel Protocol 2.0 (X series) over pyserial.

The port is opened with ``serial.serial_for_url``, so a device path
(``/dev/serial/by-id/usb-FTDI_...``, ``/dev/legadapt``), a pseudo-terminal (the fake
robot), ``loop://`` or ``socket://host:port`` all work. It is opened non-blocking
(``timeout=0``) and every wait is a deadline on ``time.monotonic``.

Getting the bus fast on real hardware — both matter more than the baud rate:

* **Return Delay Time** (register 9 of every servo): the default 250 (= 500 µs) is added
  to each reply, 9 ms per 18-servo sync read. Set it to 0 (``SerialRobot`` does at
  configure).
* **FTDI latency timer** (U2D2 and other FTDI adapters): the USB driver holds received
  bytes up to 16 ms by default. Set it to 1 ms with the udev rule in
  ``deploy/99-legadapt-ftdi.rules`` (it also creates the ``/dev/legadapt`` symlink)::

      sudo cp deploy/99-legadapt-ftdi.rules /etc/udev/rules.d/
      sudo udevadm control --reload && sudo udevadm trigger
      cat /sys/bus/usb-serial/devices/ttyUSB0/latency_timer   # -> 1

Errors, port handling and retries are :class:`hardware.servo_bus.ServoBus`'s (re-exported here).
Protocol 2.0 specifics: timeouts, corrupt replies (CRC) and malformed ones (a CRC-valid status
without its error byte) are retried ``retries`` times; a servo's error answer is not (except its
CRC error: the instruction was damaged); a servo's hardware alert bit raises :class:`ServoError`
if ``raise_on_alert``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from legadapt.hardware import protocol as P
from legadapt.hardware.servo_bus import (BusError, BusStats, BusTimeout, PortUnavailable, Retry, ServoBus,  # noqa: F401
                                         ServoError, first_missing, id_ranges)
from legadapt.hardware.servo_types import FAMILIES

__all__ = ["BusError", "BusStats", "BusTimeout", "DynamixelBus", "PortUnavailable", "ServoError"]


class DynamixelBus(ServoBus):
    """A Protocol 2.0 bus master on one serial port."""

    family = FAMILIES["dynamixel_p2"]
    codec = P

    # ------------------------------------------------------------ operations
    def ping(self, dxl_id: int) -> tuple[int, int]:
        """Model number and firmware version of ``dxl_id``."""
        data = self._unicast(P.ping_packet(dxl_id), dxl_id, 3)
        return data[0] | data[1] << 8, data[2]

    def reboot(self, dxl_id: int) -> None:
        """Reboot a device (clears its hardware error; torque comes back off)."""
        self._unicast(P.reboot_packet(dxl_id), dxl_id, 0)

    def sync_read(self, address: int, length: int, ids: Iterable[int]) -> dict[int, bytes]:
        """One SYNC READ: ``{id: bytes}``; every servo answers with its own status packet."""
        ids = list(ids)
        return self._transact(P.sync_read_packet(address, length, ids), ids, length, fast=False)

    def fast_sync_read(self, address: int, length: int, ids: Iterable[int]) -> dict[int, bytes]:
        """One FAST SYNC READ: ``{id: bytes}`` from a single reply packet."""
        ids = list(ids)
        return self._transact(P.fast_sync_read_packet(address, length, ids), ids, length, fast=True)

    def group_read(self, address: int, length: int, ids: Iterable[int], fast: bool = True) -> dict[int, bytes]:
        """Fast Sync Read (``fast``) or Sync Read of every listed servo."""
        return (self.fast_sync_read if fast else self.sync_read)(address, length, ids)

    # ------------------------------------------------------------ transactions
    def _make_parser(self) -> P.PacketParser:
        return P.PacketParser()

    def _reply_bytes(self, ids: list[int], length: int, fast: bool = False) -> int:
        return (length + 4) * len(ids) + 9 if fast else (length + 11) * len(ids)

    def _attempt(self, tx: bytes, ids: list[int], length: int, budget: float, fast: bool = False) -> dict[int, P.Status]:
        self._discard_input()
        self._send(tx)
        deadline = time.monotonic() + budget
        got: dict[int, P.Status] = {}
        corrupt = malformed = 0  # replies with a bad CRC / CRC-valid replies that are no well-formed status
        garbage_before = self._parser.garbage_bytes
        while True:
            before = self._parser.crc_errors + self._parser.malformed
            for pkt in self._receive(deadline):
                if fast and pkt.is_fast_status:
                    try:
                        entries = P.decode_fast_status(pkt, length)
                    except P.ProtocolError:
                        corrupt += 1
                        continue
                    if [s.id for s in entries] == ids:
                        got = {s.id: s for s in entries}
                elif not fast and pkt.is_status and pkt.id in ids and pkt.id not in got:
                    try:
                        status = P.parse_status(pkt)
                    except P.ProtocolError:  # e.g. a status without its error byte
                        malformed += 1
                        continue
                    if status.ok and len(status.data) != length:
                        continue  # a late reply to an earlier, different request
                    got[pkt.id] = status
            corrupt += self._parser.crc_errors + self._parser.malformed - before
            if len(got) == len(ids):
                for s in got.values():
                    if s.error_number == P.ErrorNumber.CRC:  # our instruction arrived damaged
                        raise Retry(BusError(f"servo {s.id} received a corrupt instruction", s.id))
                return got
            replies_expected = 1 if fast else len(ids)
            if (corrupt or malformed) and len(got) + corrupt + malformed >= replies_expected:
                self.stats.crc_errors += corrupt
                self.stats.malformed += malformed
                what = ("corrupt reply (CRC)" if not malformed else "corrupt and malformed replies" if corrupt
                        else "malformed reply (a status packet without its error byte)")
                raise Retry(BusError(f"{what} from servo(s) {id_ranges(sorted(set(ids) - set(got)))}",
                                      first_missing(ids, got) if got or len(ids) == 1 else None))
            if time.monotonic() >= deadline:
                chain = (lambda m, h: self._fast_chain_break(ids, length, m, h)) if fast and not got else None
                raise Retry(self._timeout_error(ids, got, budget, corrupt, malformed, garbage_before,
                                                "malformed status packet(s) (no error byte)", chain))

    def _fast_chain_break(self, ids: list[int], length: int, missing: list[int], hint: str) -> tuple[list[int], str]:
        """In a Fast Sync Read each servo appends its entry after the one before: a reply cut
        short after k whole entries means servo ``ids[k]`` did not answer (the rest waited for it)."""
        part = self._parser.partial()
        if len(part) < 8 or part[:3] != P.HEADER[:3] or part[4] != P.BROADCAST_ID or part[7] != P.Instruction.STATUS:
            return missing, hint
        k = (len(part) - 8) // (length + 4)
        if k >= len(ids):
            return missing, hint
        where = f"after ID {ids[k - 1]}" if k else "before the first ID"
        return [ids[k]], f"{hint} (the Fast Sync Read reply stopped {where}: the servos after it wait for its entry)"

    def _check(self, statuses: dict[int, P.Status]) -> dict[int, bytes]:
        data = {i: s.data for i, s in statuses.items()}
        failed: P.Status | None = None
        for s in statuses.values():
            self.stats.alerts += s.alert
            self.stats.servo_errors += not s.ok
            if failed is None and (not s.ok or (s.alert and self.raise_on_alert)):
                failed = s
        if failed is not None:
            raise ServoError(failed.id, failed.error_number, failed.alert, {i: d for i, d in data.items() if statuses[i].ok})
        return data
