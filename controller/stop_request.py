"""Stop requests (SIGTERM, SIGINT) as a flag, from the first instant of the process.

``legadapt`` installs :func:`install` before its heavy imports (torch, MuJoCo: ~2 s), so a
Ctrl-C or ``systemctl stop`` while loading never prints a KeyboardInterrupt traceback: the
request is only recorded, and ``legadapt run`` sees it before it powers anything. Other
commands get Python's usual handlers back (:func:`release`) once they are parsed.

``legadapt run`` then :meth:`StopRequest.arm` s the latch: until the daemon is about to power the
robot (:meth:`StopRequest.hold`), a request raises :class:`StopBeforeStart` at once -- out of an
import, a checkpoint load or the planner timing -- and the command ends with nothing powered.
From ``hold`` on, the daemon stops the robot itself.

The handler only stores a few attributes -- no lock, so it cannot deadlock against the code it
interrupts. Waiting for a request is done in short sleeps (:func:`sleep_unless`).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

SIGNALS = (signal.SIGTERM, signal.SIGINT)
POLL = 0.005  # s, longest a waiting caller sleeps before looking at the flag again


class StopBeforeStart(BaseException):
    """A stop request while nothing was powered yet: the command just ends (exit 0)."""


class StopRequest:
    """A latch set by a signal (or a caller): ``is_set()``, ``set()``, and when it was first set."""

    def __init__(self) -> None:
        self._set = False
        self._raise = False  # armed: a request raises StopBeforeStart
        self.requested_at: float | None = None  # time.monotonic() of the first request, s
        self.signal: int | None = None

    def set(self) -> None:
        if not self._set:
            self.requested_at = time.monotonic()
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def arm(self) -> None:
        """Until :meth:`hold`, a request raises :class:`StopBeforeStart` (at once if one came already)."""
        self._raise = True
        if self._set:
            self._raise = False
            raise StopBeforeStart

    def hold(self) -> None:
        """From now on a request only sets the flag: the robot is about to be powered, its owner stops it."""
        self._raise = False

    def handler(self, signum: int, frame: object) -> None:
        """Signal handler: record the request; raise only while armed (nothing powered)."""
        if self.signal is None:
            self.signal = signum
        self.set()
        if self._raise:
            self._raise = False
            raise StopBeforeStart


#: The process's stop request (one per process: signals are per process).
REQUEST = StopRequest()


def install() -> StopRequest:
    """From now on SIGTERM and SIGINT set :data:`REQUEST` instead of killing or raising."""
    for sig in SIGNALS:
        signal.signal(sig, REQUEST.handler)
    return REQUEST


def release() -> bool:
    """Python's own handlers again (KeyboardInterrupt on SIGINT, termination on SIGTERM), for a
    command that is not the daemon; True if a stop was requested while loading."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return REQUEST.is_set()


def exit_now(code: int) -> NoReturn:
    """Leave at once after a signalled stop: flush the output, skip the interpreter's teardown.

    Tearing down torch and MuJoCo took 0.5-0.8 s on a loaded 2-core machine, which alone
    would break "gone within 1 s of SIGTERM"; by now the robot is safe and the log finished.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def import_unless_stopped(modules: Sequence[str], stop: StopRequest = REQUEST) -> None:
    """Import ``modules`` in a helper thread while this (main) thread keeps looking at ``stop``.

    A signal handler only runs between bytecodes of the main thread, and a C extension's import
    (torch's took over a second on a loaded 2-core machine) is one long call: importing in the main
    thread, a stop request would wait for it. Here a request raises :class:`StopBeforeStart` within
    :data:`POLL` s; the helper thread dies with the process. An import error is raised here.
    """
    errors: list[BaseException] = []

    def load() -> None:
        try:
            for name in modules:
                importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    loader = threading.Thread(target=load, name="legadapt-imports", daemon=True)
    loader.start()
    while loader.is_alive():
        if stop.is_set():
            raise StopBeforeStart
        loader.join(POLL)
    if errors:
        raise errors[0]


def sleep_unless(stop, seconds: float, beat=None) -> bool:
    """Sleep ``seconds`` (s) unless ``stop.is_set()``; True if stopped. ``beat()`` is called every poll."""
    end = time.monotonic() + seconds
    while not stop.is_set():
        left = end - time.monotonic()
        if left <= 0:
            return False
        if beat is not None:
            beat()
        time.sleep(min(POLL, left))
    return True


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM (``kill``, ``timeout``, a job scheduler) raises KeyboardInterrupt as Ctrl-C does, so
    a command that runs worker processes stops them and keeps what they finished instead of dying alone; outside
    the main thread (where no handler can be set) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def ignore_interrupts() -> None:
    """In a forked worker: Ctrl-C goes to the parent, which stops the workers; SIGTERM ends the worker at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
