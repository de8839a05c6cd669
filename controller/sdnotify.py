"""systemd's notify protocol (sd_notify(3)) without a dependency: one datagram per message.

Does nothing when ``NOTIFY_SOCKET`` is unset (not run by systemd with ``Type=notify``).
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends READY=1, WATCHDOG=1, STATUS=..., STOPPING=1 to systemd (if it is listening)."""

    def __init__(self) -> None:
        addr = os.environ.get("NOTIFY_SOCKET")
        if addr and addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace
        self.address = addr
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if addr else None
        if self._sock is not None:
            # never block the control loop on systemd (libsystemd sends with MSG_DONTWAIT too): a full
            # receive queue drops the message instead of stalling the robot
            self._sock.setblocking(False)
        self.dropped = 0
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        ours = not pid or pid == str(os.getpid())  # systemd names the process it watches
        self.watchdog_period = int(usec) / 1e6 if ours and usec and usec.isdigit() and int(usec) > 0 else None  # s
        self.sent: list[str] = []

    def notify(self, message: str) -> None:
        self.sent.append(message)
        if self._sock is None:
            return
        try:
            self._sock.sendto(message.encode(), self.address)
        except OSError:  # queue full (BlockingIOError) or systemd gone: keep controlling the robot
            self.dropped += 1

    def ready(self) -> None:
        self.notify("READY=1")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
