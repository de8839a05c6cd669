"""One timeline for every message of a run, across stand-ups and reconnections.

* **Realtime**: run time is the wall clock (``time.perf_counter``) since the first stand-up
  began -- the first thing the daemon commands -- so the stand-up ramp, the walk, a
  reconnection's outage and ramp and the safe stop all lie on one monotonic timeline from 0.
  The walk itself starts at :attr:`RunClock.run_start` (about ``safety.ramp_time`` s).
* **Lockstep**: run time is simulated time since the end of the first stand-up, where the
  simulator's perturbation schedule starts (``run_start`` = 0); the first stand-up lies
  before the timeline and is not logged tick by tick. A reconnection (rare in simulation)
  carries on from where the run was, plus the wall time the robot was away.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RunClock:
    """Run time in s. ``connect`` each robot before its stand-up; ``mark_run_start`` after the first."""

    def __init__(self, realtime: bool) -> None:
        self.realtime = realtime
        self._origin: float | None = None  # realtime: perf_counter() at the first stand-up, s
        self._robot_time: Callable[[], float] | None = None  # lockstep: the connected robot's simulated time
        self._robot_t0 = math.inf  # lockstep: its simulated time at run time ``_offset``
        self._offset = 0.0  # lockstep: run time at ``_robot_t0``, s
        self._away: tuple[float, float] | None = None  # (run time, time.monotonic()) when the robot went away
        self.run_start: float | None = None  # run time at which the walk started, s
        self.origin_unix_ns: int | None = None  # wall-clock instant of run time 0, ns since 1970 (the log's time origin)

    def now(self) -> float:
        """Run time (s); negative only in lockstep before the run starts."""
        if self.realtime:
            return time.perf_counter() - self._origin if self._origin is not None else 0.0
        if self._away is not None:
            return self._away[0] + time.monotonic() - self._away[1]
        if self._robot_time is None:
            return -math.inf
        return self._offset + self._robot_time() - self._robot_t0

    def connect(self, robot_time: Callable[[], float]) -> None:
        """A robot is about to stand up; ``robot_time()`` is its clock (s, simulated in lockstep)."""
        if self.realtime:
            if self._origin is None:
                self._origin, self.origin_unix_ns = time.perf_counter(), time.time_ns()
            return
        if self._away is not None:  # a reconnection: carry on from the fault plus the time away
            self._offset, self._robot_t0 = self.now(), robot_time()
            self._away = None
        self._robot_time = robot_time

    def mark_run_start(self) -> float:
        """The first stand-up is done: the walk starts now. Returns ``run_start`` (s)."""
        if self.run_start is None:
            if not self.realtime and self._robot_time is not None:
                self._offset, self._robot_t0 = 0.0, self._robot_time()
            self.run_start = self.now()
            if self.origin_unix_ns is None:  # lockstep: run time 0 is now
                self.origin_unix_ns = time.time_ns()
        return self.run_start

    def robot_lost(self) -> None:
        """The robot went away (a fault): run time goes on with the wall clock until ``connect``."""
        if not self.realtime:
            self._away = (self.now(), time.monotonic())
