"""Motion-capture poses for the estimator: a Qualisys QTM stream (``qtm-rt``), or the simulator's truth.

Both give :class:`MocapFix` poses in the controller's world frame, stamped on the robot's clock, through
``poll(reading)`` (the frames that arrived since the last poll) -- what :class:`controller.fusion.FusedEstimator`
calls every fast tick -- and say whether the stream is live (``streaming``) with counters (:class:`MocapStats`).

**Why qtm-rt.** It is Qualisys's own client of the QTM RT protocol, pure Python (asyncio), maintained on
the package index, and the protocol it speaks is documented, so the tests run its code against an
emulated QTM server on loopback (:mod:`sim.qtm_server`). ``motioncapture`` (a C++ binding over several
vendors) needs each vendor's SDK wire format (Vicon's DataStream is closed) and ``natnet`` clients on the
index are unmaintained; OptiTrack and Vicon users can add a client behind the same ``poll`` interface.

**Clocks.** QTM stamps a frame with its own capture clock (µs). The client keeps the smallest
``arrival - capture`` seen as the clock offset (plus the least delay, ``mocap.latency``), so a frame's
capture time on the host is ``capture + offset - latency``; ``poll`` then moves it onto the robot's clock
by the host time elapsed since (robot clocks may be simulated or a device's).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from legadapt.config.mocap import MocapConfig
from legadapt.robot_state import RobotState
from legadapt.sim.rotations import rpy_from_quat


@dataclass
class MocapFix:
    """One motion-capture pose in the controller's world frame, stamped on the robot clock (s)."""

    stamp: float
    x: float  # m
    y: float  # m
    yaw: float  # rad


@dataclass
class MocapStats:
    """What the stream did."""

    frames: int = 0  # frames received with the body tracked
    dropped: int = 0  # frames missing from the sequence (frame-number gaps)
    out_of_order: int = 0  # frames older than one already received: ignored
    untracked: int = 0  # frames where the body was not found (NaN pose)
    connects: int = 0  # successful connections (1 + reconnections)
    lost: int = 0  # times the stream went quiet for longer than mocap.timeout


def to_world(cfg: MocapConfig, x: float, y: float, yaw: float) -> tuple[float, float, float]:
    """A pose in the mocap frame (m, m, rad) -> the controller's world frame (``mocap.origin``)."""
    ox, oy, oyaw = cfg.origin[0], cfg.origin[1], math.radians(cfg.origin[2])
    c, s = math.cos(oyaw), math.sin(oyaw)
    return ox + c * x - s * y, oy + s * x + c * y, yaw + oyaw


class SimulatedMocap:
    """The simulator's true pose, captured at ``mocap.rate`` (at most once per reading), delivered
    ``mocap.latency`` s late with ``noise_pos``/``noise_yaw`` and frames lost with ``drop_prob``.
    Simulated time throughout: lockstep suites see the same stream as realtime runs."""

    def __init__(self, cfg: MocapConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.stats = MocapStats(connects=1)
        self._rng = np.random.default_rng([int(seed), 0x30CA])
        self._queue: deque[tuple[float, MocapFix]] = deque()  # (arrival s, fix)
        self._next_capture = -math.inf
        self.streaming = True

    def poll(self, reading: RobotState) -> list[MocapFix]:
        truth, now, c = reading.privileged, reading.stamp, self.cfg
        if truth is None:
            raise ValueError("simulated motion capture needs the simulator's truth: use mocap.system: qualisys on a robot")
        if now >= self._next_capture:
            self._next_capture = max(now, self._next_capture + 1.0 / c.rate)
            if self._rng.random() >= c.drop_prob:
                noise = self._rng.standard_normal(3) * [c.noise_pos, c.noise_pos, c.noise_yaw]
                fix = MocapFix(now, truth.pos[0] + noise[0], truth.pos[1] + noise[1], rpy_from_quat(truth.quat)[2] + noise[2])
                self._queue.append((now + c.latency, fix))
            else:
                self.stats.dropped += 1
        out = []
        while self._queue and self._queue[0][0] <= now + 1e-9:
            out.append(self._queue.popleft()[1])
        self.stats.frames += len(out)
        return out

    def close(self) -> None:
        """Nothing to release."""
