"""``DynamixelBus``: transactions on a Dynamixel Protocol 2.0 bus over pyserial.

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

Errors: every failure is a :class:`BusError` (with the servo ID where one is known), and
nothing else ever leaves a transaction: :class:`PortUnavailable` when the port cannot be
opened, :class:`BusTimeout` when no (valid) reply came within the retries, :class:`ServoError`
when a servo answered with an error number or (if ``raise_on_alert``) the hardware
alert bit. A lost port (USB unplug, a closed pty) raises ``BusError`` from pyserial's
``SerialException``. Timeouts, corrupt replies (CRC) and malformed ones (a CRC-valid status
without its error byte) are retried ``retries`` times; a servo's error answer is not (except
its CRC error: the instruction was damaged). Should anything unforeseen go wrong inside a
transaction, the port is closed and the error raised as a ``BusError`` naming it. Whoever
owns the bus closes it on error (``SerialRobot.on_error``, the calibration's ``bus_for``), so
the exclusive lock on the port never outlives a failure.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Self

import serial

from legadapt.hardware import protocol as P

_BITS_PER_BYTE = 10  # start + 8 data + stop

try:  # POSIX ports raise termios.error (not an OSError) from tcflush on a lost device
    import termios

    _PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # pragma: no cover - Windows
    _PORT_ERRORS = (serial.SerialException, OSError)


class BusError(Exception):
    """Any failure of a bus transaction; ``servo_id`` names the servo where one is known."""

    def __init__(self, message: str, servo_id: int | None = None) -> None:
        super().__init__(message)
        self.servo_id = servo_id


class PortUnavailable(BusError):
    """The port cannot be opened (no such device, no permission, held by another process): bad input."""


class BusTimeout(BusError):
    """No valid reply within the timeout, after every retry."""


class ServoError(BusError):
    """A servo answered with an error number and/or the hardware alert bit.

    ``data`` holds what the transaction did read (per ID), so a sync read with one alerting
    servo still delivers the other servos' values.
    """

    def __init__(self, servo_id: int, error_number: int, alert: bool, data: dict[int, bytes] | None = None) -> None:
        text = P.describe_error(error_number | (P.ALERT_BIT if alert else 0))
        super().__init__(f"servo {servo_id}: {text}", servo_id)
        self.error_number = error_number
        self.alert = alert
        self.data = data or {}


class _Retry(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(self, final: BusError) -> None:
        self.final = final


@dataclass
class BusStats:
    """Counters since the bus was opened."""

    transactions: int = 0  # requests sent (retries not counted)
    retries: int = 0  # extra attempts after a timeout or corrupt reply
    timeouts: int = 0  # attempts that ended without the expected replies
    crc_errors: int = 0  # replies whose CRC failed (packet or fast-read segment)
    malformed: int = 0  # CRC-valid status packets that are not well formed (e.g. no error byte)
    alerts: int = 0  # status packets with the hardware alert bit
    servo_errors: int = 0  # status packets with an error number
    garbage_bytes: int = 0  # received bytes that belonged to no valid packet


class DynamixelBus:
    """A Protocol 2.0 bus master on one serial port."""

    def __init__(self, url: str, baudrate: int = 1_000_000, timeout: float = 0.02, retries: int = 2,
                 raise_on_alert: bool = True) -> None:
        """Open ``url`` at ``baudrate`` bit/s; ``timeout`` (s) per attempt on top of the wire time."""
        self.url = url
        self.baudrate = int(baudrate)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.raise_on_alert = raise_on_alert
        self.stats = BusStats()
        self._parser = P.PacketParser()
        device_path = "://" not in url
        try:
            self._ser = serial.serial_for_url(url, baudrate=self.baudrate, timeout=0, write_timeout=1.0,
                                              **({"exclusive": True} if device_path else {}))
        except (serial.SerialException, OSError, ValueError) as exc:
            held = "lock" in str(exc).lower()
            raise PortUnavailable(
                f"cannot open serial port {url}: {exc}; " + ("another process (or a connection not closed) holds it"
                if held else "check serial.port (or --port), that the adapter is plugged in (ls /dev/serial/by-id/) "
                "and that this user may open it (group dialout)")) from exc
        try:
            self._fd: int | None = self._ser.fileno()
        except (AttributeError, *_PORT_ERRORS):
            self._fd = None  # loop://, socket://: poll instead of select

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the port (idempotent)."""
        try:
            self._ser.close()
        except _PORT_ERRORS:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ operations
    def ping(self, dxl_id: int) -> tuple[int, int]:
        """Model number and firmware version of ``dxl_id``."""
        data = self._unicast(P.ping_packet(dxl_id), dxl_id, 3)
        return data[0] | data[1] << 8, data[2]

    def read(self, dxl_id: int, address: int, length: int) -> bytes:
        """``length`` bytes at ``address`` of ``dxl_id``."""
        return self._unicast(P.read_packet(dxl_id, address, length), dxl_id, length)

    def write(self, dxl_id: int, address: int, data: bytes) -> None:
        """Write ``data`` at ``address``; waits for the status (none for broadcast ID 254)."""
        tx = P.write_packet(dxl_id, address, data)
        if dxl_id == P.BROADCAST_ID:
            self._send_only(tx)
        else:
            self._unicast(tx, dxl_id, 0)

    def read_int(self, dxl_id: int, address: int, size: int, signed: bool = False) -> int:
        """A little-endian integer register of ``size`` bytes."""
        return int.from_bytes(self.read(dxl_id, address, size), "little", signed=signed)

    def write_int(self, dxl_id: int, address: int, size: int, value: int) -> None:
        """Write a little-endian integer register of ``size`` bytes (two's complement if negative)."""
        self.write(dxl_id, address, int(value).to_bytes(size, "little", signed=value < 0))

    def reboot(self, dxl_id: int) -> None:
        """Reboot a device (clears its hardware error; torque comes back off)."""
        self._unicast(P.reboot_packet(dxl_id), dxl_id, 0)

    def sync_write(self, address: int, length: int, data: Mapping[int, bytes]) -> None:
        """One SYNC WRITE of ``length`` bytes at ``address`` to every servo in ``{id: bytes}``."""
        self._send_only(P.sync_write_packet(address, length, data))

    def sync_read(self, address: int, length: int, ids: Iterable[int]) -> dict[int, bytes]:
        """One SYNC READ: ``{id: bytes}``; every servo answers with its own status packet."""
        ids = list(ids)
        return self._transact(P.sync_read_packet(address, length, ids), ids, length, fast=False)

    def fast_sync_read(self, address: int, length: int, ids: Iterable[int]) -> dict[int, bytes]:
        """One FAST SYNC READ: ``{id: bytes}`` from a single reply packet."""
        ids = list(ids)
        return self._transact(P.fast_sync_read_packet(address, length, ids), ids, length, fast=True)

    # ------------------------------------------------------------ transactions
    def _unicast(self, tx: bytes, dxl_id: int, length: int) -> bytes:
        return self._transact(tx, [dxl_id], length, fast=False)[dxl_id]

    def _send_only(self, tx: bytes) -> None:
        self.stats.transactions += 1
        self._discard_input()
        self._send(tx)

    def _transact(self, tx: bytes, ids: list[int], length: int, fast: bool) -> dict[int, bytes]:
        """One request and its replies, with retries. Raises only :class:`BusError`: anything else going wrong
        inside (a reply no check foresaw) closes the port and is raised as a BusError naming it."""
        try:
            return self._transact_retrying(tx, ids, length, fast)
        except BusError:
            raise
        except Exception as exc:  # noqa: BLE001 - the bus state is unknown: close the port, name the error
            self.close()
            raise BusError(f"{self.url}: transaction with servo(s) {_ranges(ids)} failed unexpectedly "
                           f"({type(exc).__name__}: {exc}); port closed") from exc

    def _transact_retrying(self, tx: bytes, ids: list[int], length: int, fast: bool) -> dict[int, bytes]:
        self.stats.transactions += 1
        reply_bytes = (length + 4) * len(ids) + 9 if fast else (length + 11) * len(ids)
        budget = self.timeout + (len(tx) + reply_bytes) * _BITS_PER_BYTE / self.baudrate
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            try:
                statuses = self._attempt(tx, ids, length, fast, budget)
            except _Retry as r:
                final = r.final
                continue
            return self._check(statuses)
        raise final

    def _attempt(self, tx: bytes, ids: list[int], length: int, fast: bool, budget: float) -> dict[int, P.Status]:
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
                        raise _Retry(BusError(f"servo {s.id} received a corrupt instruction", s.id))
                return got
            replies_expected = 1 if fast else len(ids)
            if (corrupt or malformed) and len(got) + corrupt + malformed >= replies_expected:
                self.stats.crc_errors += corrupt
                self.stats.malformed += malformed
                what = ("corrupt reply (CRC)" if not malformed else "corrupt and malformed replies" if corrupt
                        else "malformed reply (a status packet without its error byte)")
                raise _Retry(BusError(f"{what} from servo(s) {_ranges(sorted(set(ids) - set(got)))}",
                                      _first_missing(ids, got) if got or len(ids) == 1 else None))
            if time.monotonic() >= deadline:
                self.stats.crc_errors += corrupt
                self.stats.malformed += malformed
                self.stats.timeouts += 1
                missing = [i for i in ids if i not in got]
                noise = self._parser.garbage_bytes - garbage_before
                hint = (f"; {noise} bytes of garbage instead (noise on the line, or a device at another baud rate)"
                        if noise else (f"; {corrupt} corrupt packet(s) (CRC)" if corrupt else ""))
                hint += f"; {malformed} malformed status packet(s) (no error byte)" if malformed else ""
                if fast and not got:
                    missing, hint = self._fast_chain_break(ids, length, missing, hint)
                culprit = missing[0] if len(missing) < len(ids) or len(ids) == 1 else None  # all silent: no one to blame
                raise _Retry(BusTimeout(f"no reply from servo(s) {_ranges(missing)} within {budget * 1e3:.1f} ms{hint}", culprit))

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

    # ------------------------------------------------------------ port I/O
    def _send(self, tx: bytes) -> None:
        try:
            self._ser.write(tx)
        except _PORT_ERRORS as exc:
            raise BusError(f"{self.url}: write failed (port lost?): {exc}") from _serial_exception(exc)

    def _receive(self, deadline: float) -> list[P.Packet]:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            if self._fd is not None:
                select.select([self._fd], [], [], remaining)
            data = self._ser.read(4096)
            if not data and self._fd is None:
                time.sleep(min(remaining, 0.0002))
        except _PORT_ERRORS as exc:
            raise BusError(f"{self.url}: read failed (port lost?): {exc}") from _serial_exception(exc)
        if not data:
            return []
        garbage = self._parser.garbage_bytes
        packets = self._parser.feed(data)
        self.stats.garbage_bytes += self._parser.garbage_bytes - garbage
        return packets

    def _discard_input(self) -> None:
        try:
            self._ser.reset_input_buffer()
        except _PORT_ERRORS as exc:
            raise BusError(f"{self.url}: port lost: {exc}") from _serial_exception(exc)
        self._parser.reset()


def _serial_exception(exc: BaseException) -> serial.SerialException:
    """A lost port as pyserial's SerialException, whichever call noticed it first (``tcflush`` raises
    ``termios.error``, a read ``OSError``): a USB unplug and a closed pty then look the same to the caller."""
    if isinstance(exc, serial.SerialException):
        return exc
    lost = serial.SerialException(f"{type(exc).__name__}: {exc}")
    lost.__cause__ = exc
    return lost


def _ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``'1-3, 5'`` (IDs in a message)."""
    out: list[str] = []
    for i in ids:
        if out and out[-1].split("-")[-1].isdigit() and int(out[-1].split("-")[-1]) == i - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ", ".join(out)


def _first_missing(ids: list[int], got: Mapping[int, object]) -> int | None:
    return next((i for i in ids if i not in got), None)
