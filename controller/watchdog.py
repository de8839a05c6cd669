"""systemd's watchdog (``WatchdogSec=``): pings that never leave a gap, and stop when the loop hangs.

systemd arms the watchdog at READY=1 and kills the service when no WATCHDOG=1 comes for
``WATCHDOG_USEC``. The pings come from a thread of their own, every quarter of that period,
so no phase of the daemon can leave a gap: not the stand-up ramp, not a reconnection's
back-off waits or bus checks, not the safe stop. They are sent only while the control loop
shows it is alive: the fast loop calls :meth:`Watchdog.beat` every tick (a promise of the
next beat within :attr:`Watchdog.stall` s), and a phase that blocks for longer by design
(configuring a robot over the bus, finishing the log) promises its own bound first
(``beat(expect=...)``). When a promise runs out -- the loop really hangs -- the pings stop
and systemd kills and restarts the daemon. After :meth:`Watchdog.close` the thread pings out
the last promise (the log being finished, the summary printed) and then ends; systemd may
still be watching while the process stops.
"""

from __future__ import annotations

import threading
import time

from legadapt.controller.sdnotify import Notifier


class Watchdog:
    """WATCHDOG=1 every ``period / 4`` s while the control loop keeps its promises.

    ``period`` (s) is systemd's whole watchdog timeout (``WATCHDOG_USEC``); None when
    systemd is not watching: then nothing is sent and no thread runs.
    """

    def __init__(self, notifier: Notifier, period: float | None = None) -> None:
        self.notifier = notifier
        self.period = period if period is not None else notifier.watchdog_period
        self.every = self.period / 4 if self.period else None  # s between pings
        self.stall = max(0.25, self.period / 4) if self.period else 0.0  # s a beat vouches for by default
        self._alive_until = 0.0  # time.monotonic() up to which the loop has vouched for itself
        self._closing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pings = 0

    def start(self) -> Watchdog:
        """Start pinging (the caller should have beaten with its first bound already)."""
        if self.every and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="legadapt-watchdog", daemon=True)
            self._thread.start()
        return self

    def beat(self, expect: float | None = None) -> None:
        """The loop is alive and will beat again within ``expect`` s (default :attr:`stall`)."""
        self._alive_until = time.monotonic() + (self.stall if expect is None else expect)

    def ping_now(self) -> None:
        """One ping at once if the loop is alive (right after READY=1: systemd arms the watchdog there)."""
        if self.every and time.monotonic() <= self._alive_until:
            self.notifier.watchdog()
            self.pings += 1

    def close(self) -> None:
        """No more beats will come: ping out the current promise, then end and close the notifier."""
        self._closing = True
        if self._thread is None:
            self.notifier.close()

    def stop(self) -> None:
        """End now (tests, and processes that outlive a run)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if self._closing and time.monotonic() > self._alive_until:
                break
            self.ping_now()
        self.notifier.close()
