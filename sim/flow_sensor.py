"""The simulated downward optical-flow sensor (PMW3901 class), its range finder and its board's gyro.

The sensor looks along the body's -z from ``FlowSensorSpec.position``. A floor point straight
below the lens, at ``range`` m along that axis, moves across the image at the apparent rate

    rate_x = -v_x / range + w_y,    rate_y = -v_y / range - w_x        (rad/s)

for the lens velocity v (m/s) and the body rate w (rad/s), both in the body frame (the
floor point's position relative to the lens is (0, 0, -range); differentiate it in the
rotating frame). The chip integrates that motion continuously: :meth:`SimFlowSensor.integrate`
is called every physics step and adds ``rate * dt`` (and the board's gyro adds ``w * dt``); a
read reports ``counts_per_rad`` times what was integrated since the previous read, in whole
counts; what is left below one count stays in the accumulator, as on a mouse sensor.
Out of focus (nearer than ``min_range``) or faster than ``max_rate`` at any step, the motion of
that read is lost: the reading says squal 0 and the accumulator starts over. The range finder
(a time-of-flight ranger such as the VL53L1X, which builds each range from the returns it
collects over its timing budget, ranging continuously with the budget set to the read period)
reports the mean distance along the axis over the interval since the previous read, with its
noise; NaN where no step of the interval had the floor within ``max_range`` in front of the lens.
The image motion is an integral over the same interval, so the two are taken over the same
stretch of the walk: a range sampled at the read instead is off by the body's bob over half a
read, and with a limp leg that bob follows the stride (README, *Seeing slip*). A ranger that
``FlowSensorSpec.range_timing`` says is read at the read reports the range at the read. A read
with nothing integrated since the previous one (a caller that steps the physics without
:meth:`integrate`) takes the rate and range at the read for the whole interval.
"""

from __future__ import annotations

import numpy as np

from legadapt.robot.description import FlowSensorSpec
from legadapt.robot_state import BaseState, FlowReading
from legadapt.sim.rotations import quat_to_matrix

SQUAL_TRACKING = 120  # surface quality reported while tracking (the Flow deck reads 100-150 on a textured floor)
INT16 = 32767  # counts: the motion registers are 16-bit signed


def floor_rate(spec: FlowSensorSpec, base: BaseState, floor_point: np.ndarray,
               floor_normal: np.ndarray) -> tuple[np.ndarray, float]:
    """True apparent floor rate [2] (rad/s, body x/y) and range along the axis (m; NaN: no floor ahead)."""
    rate, rng, _ = floor_motion(spec, base, floor_point, floor_normal)
    return rate, rng


def floor_motion(spec: FlowSensorSpec, base: BaseState, floor_point: np.ndarray,
                 floor_normal: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """:func:`floor_rate` and the body rate [3] (rad/s, body frame) it was computed with.

    Called at every physics step, so written for speed (no ``np.cross``)."""
    R = quat_to_matrix(base.quat)
    r = np.asarray(spec.position, dtype=float)
    w = R.T @ base.ang_vel  # rad/s, body frame
    v = R.T @ base.lin_vel
    v_lens = (v[0] + w[1] * r[2] - w[2] * r[1], v[1] + w[2] * r[0] - w[0] * r[2])  # m/s, body frame: v + w x r
    facing = -float(floor_normal @ R[:, 2])  # the lens axis is the body's -z
    if facing >= -1e-6:
        return np.zeros(2), float("nan"), w
    rng = float(floor_normal @ (floor_point - base.pos - R @ r)) / facing
    if rng <= 0:
        return np.zeros(2), float("nan"), w
    return np.array([-v_lens[0] / rng + w[1], -v_lens[1] / rng - w[0]]), rng, w


class SimFlowSensor:
    """One flow sensor's chip and board state: the motion and rotation integrated since the last
    read, the counts not yet reported, and its noise, seeded."""

    def __init__(self, spec: FlowSensorSpec, seed: int = 0) -> None:
        self.spec = spec
        self.reset(0.0, seed)

    def reset(self, stamp: float, seed: int) -> None:
        """Start over at ``stamp`` (s): nothing accumulated, noise reseeded."""
        self._rng = np.random.default_rng([int(seed), 0xF10])
        self._acc = np.zeros(2)  # counts not yet reported
        self._t = stamp
        self._clear()

    def _clear(self) -> None:
        self._motion = np.zeros(2)  # rad of apparent floor motion since the last read
        self._turn = np.zeros(3)  # rad, body frame, turned since the last read
        self._span = 0.0  # s integrated since the last read
        self._lost = False  # motion lost (out of focus, too fast) at some step since the last read
        self._ranged = np.zeros(2)  # (m·s of range, s) over the steps since the last read that had the floor in range

    def integrate(self, dt: float, base: BaseState, floor_point: np.ndarray, floor_normal: np.ndarray) -> None:
        """One physics step of ``dt`` s ending in ``base``: the chip's and the gyro's motion over it."""
        rate, rng, w = floor_motion(self.spec, base, floor_point, floor_normal)
        self._lost |= not self._tracking(rate, rng)
        self._motion += rate * dt
        self._turn += w * dt
        self._span += dt
        if rng <= self.spec.max_range:  # NaN: False
            self._ranged += (rng * dt, dt)

    def _tracking(self, rate: np.ndarray, rng: float) -> bool:
        s = self.spec
        return bool(rng >= s.min_range and abs(rate[0]) <= s.max_rate and abs(rate[1]) <= s.max_rate)  # NaN: False

    def read(self, stamp: float, base: BaseState, floor_point: np.ndarray, floor_normal: np.ndarray) -> FlowReading:
        """The reading at ``stamp`` (s): motion since the previous read, range, squal, the gyro's rotation."""
        s = self.spec
        interval = max(stamp - self._t, 0.0)
        self._t = stamp
        rate, rng, w = floor_motion(s, base, floor_point, floor_normal)
        ranged = rng if rng <= s.max_range else float("nan")  # at the read (NaN compares False)
        if self._span > 0.0:
            motion, turn, tracking = self._motion, self._turn, not self._lost and self._tracking(rate, rng)
            if s.range_timing == "interval":
                ranged = self._ranged[0] / self._ranged[1] if self._ranged[1] > 0.0 else float("nan")
        else:
            motion, turn, tracking = rate * interval, w * interval, self._tracking(rate, rng)
        self._clear()
        if not tracking:
            self._acc[:] = 0.0
            delta, squal = np.zeros(2), 0
        else:
            self._acc += s.counts_per_rad * (motion + s.rate_noise * interval * self._rng.standard_normal(2))
            delta = np.clip(np.trunc(self._acc), -INT16, INT16)
            self._acc -= delta
            squal = SQUAL_TRACKING
        measured = ranged + s.range_noise * self._rng.standard_normal() if np.isfinite(ranged) else float("nan")
        rotation = None if s.gyro_noise is None else turn + s.gyro_noise * interval * self._rng.standard_normal(3)
        return FlowReading(stamp=stamp, interval=interval, delta=delta, range=float(measured), squal=squal,
                           rotation=rotation)
