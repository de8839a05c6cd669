"""``ServoBus``: the one servo-bus interface ``SerialRobot`` and calibration use, whatever the servos speak.

A bus master on one serial port, for one :class:`hardware.servo_types.BusFamily`:
:class:`hardware.bus.DynamixelBus` (Protocol 2.0, X series) and :class:`hardware.bus1.OneByteBus`
(Dynamixel Protocol 1.0 on AX/MX, Feetech SCS/STS). Every bus offers

* ``ping(id)`` (model number and firmware where the protocol's PING returns them, else None),
  ``read``, ``write``, ``read_int``, ``write_int`` (in the family's byte order),
* ``sync_write(address, length, {id: bytes})`` (every family has SYNC WRITE),
* ``group_read(address, length, ids)``: one read of every listed servo, natively where the family
  can (Fast Sync Read / Sync Read / Bulk Read), else a sequence of single reads
  (:meth:`BusFamily.group_read_kind` says which),
* ``reboot(id)`` where the family has REBOOT (:attr:`BusFamily.reboot`; else :class:`BusError`),

and shares the port handling here: opened through ``serial.serial_for_url`` (a device path, a
pty, ``loop://``, ``socket://``) non-blocking, every wait a deadline on ``time.monotonic``, the
retries and counters (:class:`BusStats`), and the errors. Every failure is a :class:`BusError`
(with the servo ID where one is known): :class:`PortUnavailable` when the port cannot be opened,
:class:`BusTimeout` when no valid reply came within the retries, :class:`ServoError` when a servo
answered with an error (or, if ``raise_on_alert``, a hardware alert). A lost port (USB unplug, a
closed pty) raises ``BusError`` from pyserial's ``SerialException``; anything unforeseen inside a
transaction closes the port and is raised as a ``BusError`` naming it. Whoever owns the bus closes
it on error, so the exclusive lock on the port never outlives a failure.
"""

from __future__ import annotations

import select
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Self

import serial

from legadapt.hardware import protocol as P
from legadapt.hardware.servo_types import BusFamily

BITS_PER_BYTE = 10  # start + 8 data + stop
BROADCAST_ID = 0xFE  # every family's broadcast ID

try:  # POSIX ports raise termios.error (not an OSError) from tcflush on a lost device
    import termios

    PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # pragma: no cover - Windows
    PORT_ERRORS = (serial.SerialException, OSError)


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
    """A servo answered with an error and/or a hardware alert.

    ``error_number``: the refused instruction's error (Protocol 2.0's number, the Protocol 1.0
    instruction bits), 0 if none; ``alert``: a hardware condition; ``hardware_error``: its bits where
    the status byte carries them (Protocol 1.0, Feetech; None on Protocol 2.0: read Hardware Error
    Status). ``data`` holds what the transaction did read (per ID), so a group read with one
    alerting servo still delivers the other servos' values.
    """

    def __init__(self, servo_id: int, error_number: int, alert: bool, data: dict[int, bytes] | None = None,
                 text: str | None = None, hardware_error: int | None = None) -> None:
        if text is None:
            text = P.describe_error(error_number | (P.ALERT_BIT if alert else 0))
        super().__init__(f"servo {servo_id}: {text}", servo_id)
        self.error_number = error_number
        self.alert = alert
        self.hardware_error = hardware_error
        self.data = data or {}


class Retry(Exception):
    """An attempt failed in a way worth retrying; ``final`` is raised if no retry is left."""

    def __init__(self, final: BusError) -> None:
        self.final = final


@dataclass
class BusStats:
    """Counters since the bus was opened."""

    transactions: int = 0  # requests sent (retries not counted)
    retries: int = 0  # extra attempts after a timeout or corrupt reply
    timeouts: int = 0  # attempts that ended without the expected replies
    crc_errors: int = 0  # replies whose CRC / checksum failed
    malformed: int = 0  # checksum-valid status packets that are not well formed (no error byte, wrong length)
    alerts: int = 0  # status packets with a hardware alert
    servo_errors: int = 0  # status packets with an instruction error
    garbage_bytes: int = 0  # received bytes that belonged to no valid packet


class ServoBus(ABC):
    """A servo-bus master on one serial port (see the module docstring)."""

    family: BusFamily
    codec: ModuleType  # the framing's packet builders: hardware.protocol or hardware.protocol1

    def __init__(self, url: str, baudrate: int = 1_000_000, timeout: float = 0.02, retries: int = 2,
                 raise_on_alert: bool = True) -> None:
        """Open ``url`` at ``baudrate`` bit/s; ``timeout`` (s) per attempt on top of the wire time."""
        self.url = url
        self.baudrate = int(baudrate)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.raise_on_alert = raise_on_alert
        self.stats = BusStats()
        self._parser = self._make_parser()
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
        except (AttributeError, *PORT_ERRORS):
            self._fd = None  # loop://, socket://: poll instead of select

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the port (idempotent)."""
        try:
            self._ser.close()
        except PORT_ERRORS:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ the interface
    @abstractmethod
    def ping(self, dxl_id: int) -> tuple[int, int] | None:
        """(model number, firmware) where PING returns them (Protocol 2.0); None where it only answers."""

    def read(self, dxl_id: int, address: int, length: int) -> bytes:
        """``length`` bytes at ``address`` of ``dxl_id``."""
        return self._unicast(self.codec.read_packet(dxl_id, address, length), dxl_id, length)

    def write(self, dxl_id: int, address: int, data: bytes) -> None:
        """Write ``data`` at ``address``; waits for the status (none for broadcast ID 254)."""
        tx = self.codec.write_packet(dxl_id, address, data)
        if dxl_id == BROADCAST_ID:
            self._send_only(tx)
        else:
            self._unicast(tx, dxl_id, 0)

    def sync_write(self, address: int, length: int, data: Mapping[int, bytes]) -> None:
        """One SYNC WRITE of ``length`` bytes at ``address`` to every servo in ``{id: bytes}`` (no reply)."""
        self._send_only(self.codec.sync_write_packet(address, length, data))

    @abstractmethod
    def group_read(self, address: int, length: int, ids: Iterable[int], fast: bool = True) -> dict[int, bytes]:
        """``{id: bytes}`` of every listed servo, by the family's best means (``fast``: Fast Sync Read where there)."""

    def reboot(self, dxl_id: int) -> None:
        """Reboot a servo (clears its hardware error; torque comes back off). BusError where the family has no REBOOT."""
        raise BusError(f"{self.family.name} servos have no REBOOT instruction: re-write Torque Enable instead", dxl_id)

    def read_int(self, dxl_id: int, address: int, size: int, signed: bool = False) -> int:
        """An integer register of ``size`` bytes, in the family's byte order."""
        return int.from_bytes(self.read(dxl_id, address, size), self.family.byteorder, signed=signed)

    def write_int(self, dxl_id: int, address: int, size: int, value: int) -> None:
        """Write an integer register of ``size`` bytes (two's complement if negative), in the family's byte order."""
        self.write(dxl_id, address, int(value).to_bytes(size, self.family.byteorder, signed=value < 0))

    # ------------------------------------------------------------ transactions
    @abstractmethod
    def _make_parser(self):
        """The stream parser of this framing (a :class:`hardware.framing.StreamBuffer`)."""

    @abstractmethod
    def _attempt(self, tx: bytes, ids: list[int], length: int, budget: float, **kw) -> dict:
        """Send ``tx`` and collect the replies of ``ids`` within ``budget`` s; raises :class:`Retry`."""

    @abstractmethod
    def _check(self, statuses: dict) -> dict[int, bytes]:
        """The data of each reply, or :class:`ServoError` for the first that reports an error."""

    @abstractmethod
    def _reply_bytes(self, ids: list[int], length: int, **kw) -> int:
        """Bytes the replies take on the wire (for the timeout budget)."""

    def _unicast(self, tx: bytes, dxl_id: int, length: int) -> bytes:
        return self._transact(tx, [dxl_id], length)[dxl_id]

    def _transact(self, tx: bytes, ids: list[int], length: int, **kw) -> dict[int, bytes]:
        """One request and its replies, with retries. Raises only :class:`BusError`: anything else going wrong
        inside (a reply no check foresaw) closes the port and is raised as a BusError naming it."""
        try:
            return self._transact_retrying(tx, ids, length, **kw)
        except BusError:
            raise
        except Exception as exc:  # noqa: BLE001 - the bus state is unknown: close the port, name the error
            self.close()
            raise BusError(f"{self.url}: transaction with servo(s) {id_ranges(ids)} failed unexpectedly "
                           f"({type(exc).__name__}: {exc}); port closed") from exc

    def _transact_retrying(self, tx: bytes, ids: list[int], length: int, **kw) -> dict[int, bytes]:
        self.stats.transactions += 1
        budget = self.timeout + (len(tx) + self._reply_bytes(ids, length, **kw)) * BITS_PER_BYTE / self.baudrate
        final: BusError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            try:
                statuses = self._attempt(tx, ids, length, budget, **kw)
            except Retry as r:
                final = r.final
                continue
            return self._check(statuses)
        raise final

    def _send_only(self, tx: bytes) -> None:
        self.stats.transactions += 1
        self._discard_input()
        self._send(tx)

    # ------------------------------------------------------------ port I/O
    def _send(self, tx: bytes) -> None:
        try:
            self._ser.write(tx)
        except PORT_ERRORS as exc:
            raise BusError(f"{self.url}: write failed (port lost?): {exc}") from serial_exception(exc)

    def _receive(self, deadline: float) -> list:
        """The packets completed by what arrives before ``deadline`` (at most one wait)."""
        remaining = max(0.0, deadline - time.monotonic())
        try:
            if self._fd is not None:
                select.select([self._fd], [], [], remaining)
            data = self._ser.read(4096)
            if not data and self._fd is None:
                time.sleep(min(remaining, 0.0002))
        except PORT_ERRORS as exc:
            raise BusError(f"{self.url}: read failed (port lost?): {exc}") from serial_exception(exc)
        if not data:
            return []
        garbage = self._parser.garbage_bytes
        packets = self._parser.feed(data)
        self.stats.garbage_bytes += self._parser.garbage_bytes - garbage
        return packets

    def _discard_input(self) -> None:
        try:
            self._ser.reset_input_buffer()
        except PORT_ERRORS as exc:
            raise BusError(f"{self.url}: port lost: {exc}") from serial_exception(exc)
        self._parser.reset()

    def _timeout_error(self, ids: list[int], got: Mapping[int, object], budget: float, corrupt: int, malformed: int,
                       garbage_before: int, what_malformed: str, explain=None) -> BusTimeout:
        """The timeout of an attempt, naming the silent servos and what came instead; ``explain(missing, hint)``
        may narrow both down (a Fast Sync Read's broken chain)."""
        self.stats.crc_errors += corrupt
        self.stats.malformed += malformed
        self.stats.timeouts += 1
        missing = [i for i in ids if i not in got]
        noise = self._parser.garbage_bytes - garbage_before
        hint = (f"; {noise} bytes of garbage instead (noise on the line, or a device at another baud rate)"
                if noise else (f"; {corrupt} corrupt packet(s) (checksum)" if corrupt else ""))
        hint += f"; {malformed} {what_malformed}" if malformed else ""
        if explain is not None:
            missing, hint = explain(missing, hint)
        culprit = missing[0] if len(missing) < len(ids) or len(ids) == 1 else None  # all silent: no one to blame
        return BusTimeout(f"no reply from servo(s) {id_ranges(missing)} within {budget * 1e3:.1f} ms{hint}", culprit)


def make_bus(family: BusFamily, url: str, baudrate: int = 1_000_000, timeout: float = 0.02, retries: int = 2,
             raise_on_alert: bool = True) -> ServoBus:
    """The bus master for ``family`` on ``url``."""
    if family.protocol == 2:
        from legadapt.hardware.bus import DynamixelBus
        return DynamixelBus(url, baudrate, timeout, retries, raise_on_alert)
    from legadapt.hardware.bus1 import OneByteBus
    return OneByteBus(url, family, baudrate, timeout, retries, raise_on_alert)


def serial_exception(exc: BaseException) -> serial.SerialException:
    """A lost port as pyserial's SerialException, whichever call noticed it first (``tcflush`` raises
    ``termios.error``, a read ``OSError``): a USB unplug and a closed pty then look the same to the caller."""
    if isinstance(exc, serial.SerialException):
        return exc
    lost = serial.SerialException(f"{type(exc).__name__}: {exc}")
    lost.__cause__ = exc
    return lost


def id_ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``'1-3, 5'`` (IDs in a message)."""
    out: list[str] = []
    for i in ids:
        if out and out[-1].split("-")[-1].isdigit() and int(out[-1].split("-")[-1]) == i - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ", ".join(out)


def first_missing(ids: list[int], got: Mapping[int, object]) -> int | None:
    """The first of ``ids`` without a reply in ``got``."""
    return next((i for i in ids if i not in got), None)
