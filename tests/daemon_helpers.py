"""Helpers of the daemon tests: systemd's notify socket, timestamped output lines, the emulated robot."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class NotifyListener:
    """Plays systemd's side of ``NOTIFY_SOCKET``: a real AF_UNIX datagram socket, always read.

    ``messages`` holds (time.monotonic() s, message) in arrival order.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def times(self, message: str) -> list[float]:
        return [t for t, m in self.messages if m == message]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class Lines:
    """The lines a process writes to a pipe, each with the time.monotonic() (s) it was read."""

    def __init__(self, stream) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, marker: str, proc: subprocess.Popen, timeout: float = 120) -> float:
        """Time the first line containing ``marker`` was read; fails if the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            hit = self.first(marker)
            if hit is not None:
                return hit
            assert proc.poll() is None, f"process ended (rc {proc.returncode}) before {marker!r}: {self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {marker!r} within {timeout} s: {self.text()[-3000:]}"
            time.sleep(0.005)

    def first(self, marker: str, after: float = -1.0) -> float | None:
        return next((t for t, line in self.lines if marker in line and t > after), None)

    def join(self, timeout: float = 10) -> None:
        self._thread.join(timeout)

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def as_deployed() -> None:
    """deploy/legadapt.service's Nice=-10 where allowed (root), for a process the test starts: on a busy machine
    the daemon's normal-priority threads (the planner) get the share they get on the robot, so the SCHED_FIFO
    fast loop does not wait for a GIL held by a planner thread the scheduler has put aside for another process."""
    try:
        os.nice(-10)
    except OSError:
        pass


def start_daemon(*args, env=None, deployed: bool = True) -> tuple[subprocess.Popen, Lines, Lines]:
    """``legadapt run ARGS`` with its stdout and stderr read line by line as they come; ``deployed``: as the unit
    runs it (Nice=-10)."""
    proc = subprocess.Popen([sys.executable, "-m", "legadapt.controller.cli", "run", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_deployed if deployed else None)
    return proc, Lines(proc.stdout), Lines(proc.stderr)


def fake_robot(link: Path, *args: str) -> tuple[subprocess.Popen, Lines]:
    """``legadapt fake-robot`` on a pty linked at ``link``, once the link exists; its report lines. (Not niced: its
    busy physics loop at the daemon's priority slowed the daemon's stop from 7-17 ms to 27-39 ms.)"""
    proc = subprocess.Popen([sys.executable, "-m", "legadapt.controller.cli", "fake-robot", "--link", str(link), *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = Lines(proc.stdout)
    deadline = time.monotonic() + 60
    while not link.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "no pty"
        time.sleep(0.05)
    return proc, lines


def watched_gap(listener: NotifyListener, end: float | None = None) -> tuple[float, float]:
    """(READY=1 -> first WATCHDOG=1, longest stretch without a ping) in s, over the stretch systemd
    watches: from READY=1 until STOPPING=1 or ``end`` (a SIGTERM from systemctl stop, the exit),
    whichever is first -- systemd arms the watchdog in the running state only."""
    ready = listener.times("READY=1")
    assert ready, listener.messages
    stops = listener.times("STOPPING=1") + ([end] if end is not None else [])
    until = min(stops) if stops else max(t for t, _ in listener.messages)
    pings = [t for t in listener.times("WATCHDOG=1") if ready[0] <= t <= until]
    assert pings, "no WATCHDOG=1 after READY=1"
    return pings[0] - ready[0], max_gap([ready[0], *pings, until])


def max_gap(times: list[float]) -> float:
    """Longest interval (s) between successive times."""
    return max((b - a for a, b in zip(times, times[1:])), default=0.0)
