"""What every servo-bus framing shares: the codec errors, and the resynchronising receive buffer.

A stream parser (:class:`hardware.protocol.PacketParser` for Dynamixel Protocol 2.0,
:class:`hardware.protocol1.FrameParser` for Protocol 1.0 and Feetech) subclasses
:class:`StreamBuffer` and says only where a header is, how long a frame is, and how to decode it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class ProtocolError(ValueError):
    """Base of every error of the codec."""


class PacketBuildError(ProtocolError):
    """A builder was given an ID, address, length or data it cannot encode."""


class MalformedPacketError(ProtocolError):
    """Bytes that are not a well-formed packet (header, length, stuffing, layout)."""


class CrcError(ProtocolError):
    """A packet whose CRC does not match its contents."""


class StreamBuffer(ABC):
    """A stream parser's receive buffer and its resynchronisation, for any framing with a header and a length.

    Subclasses say where a header is (:meth:`_find_header`), how long the frame starting there is
    (:meth:`_total`, None if its length field is implausible) and how to decode it (:meth:`_decode`,
    raising a :class:`ProtocolError`); :meth:`_parse` frames what is buffered. ``MIN_FRAME`` is the number
    of bytes needed to read the length.
    """

    MIN_FRAME = 1

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buf = bytearray()
        self.crc_errors = 0
        self.garbage_bytes = 0
        self.malformed = 0

    @property
    def pending(self) -> int:
        """Bytes buffered, waiting for the rest of a packet."""
        return len(self._buf)

    def partial(self) -> bytes:
        """The bytes of a packet begun but not finished (for diagnosing a reply cut short)."""
        return bytes(self._buf)

    def reset(self) -> None:
        """Drop buffered bytes (counted as garbage); counters are kept."""
        self.garbage_bytes += len(self._buf)
        self._buf.clear()

    @abstractmethod
    def _find_header(self, start: int) -> int:
        """Index of the first header at or after ``start`` in the buffer, -1 if none."""

    @abstractmethod
    def _keep_tail(self) -> int:
        """Bytes at the end of a header-less buffer that may begin the next header."""

    @abstractmethod
    def _total(self, at: int) -> int | None:
        """Length (bytes) of the frame whose header is at ``at``, from its length field; None if implausible."""

    @abstractmethod
    def _decode(self, raw: bytes):
        """One complete frame decoded; raises a :class:`ProtocolError` if it is not valid."""

    def _parse(self) -> list:
        """Every complete, valid frame in the buffer, in order; garbage before them dropped and counted."""
        buf, out = self._buf, []
        while True:
            h = self._find_header(0)
            if h < 0:
                self._drop(len(buf) - self._keep_tail())
                return out
            self._drop(h)
            if len(buf) < self.MIN_FRAME:
                return out
            total = self._total(0)
            if total is None:
                self._drop(1)
                continue
            if len(buf) < total:
                later = self._later_valid()
                if later is None:
                    return out
                self._drop(later)
                continue
            try:
                item = self._decode(bytes(buf[:total]))
            except CrcError:
                self.crc_errors += 1
                self._drop(1)
                continue
            except ProtocolError:
                self.malformed += 1
                self._drop(1)
                continue
            del buf[:total]
            out.append(item)

    def _later_valid(self) -> int | None:
        """Where a complete valid frame starts after the first byte (an unfinished one may be garbage)."""
        buf = self._buf
        k = self._find_header(1)
        while k >= 0 and len(buf) - k >= self.MIN_FRAME:
            total = self._total(k)
            if total is not None and k + total <= len(buf):
                try:
                    self._decode(bytes(buf[k:k + total]))
                    return k
                except ProtocolError:
                    pass
            k = self._find_header(k + 1)
        return None

    def _drop(self, n: int) -> None:
        if n > 0:
            del self._buf[:n]
            self.garbage_bytes += n
