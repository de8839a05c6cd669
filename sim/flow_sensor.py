"""The simulated downward optical-flow sensor (PMW3901 class) and its range finder.

The sensor looks along the body's -z from ``FlowSensorSpec.position``. A floor point straight
below the lens, at ``range`` m along that axis, moves across the image at the apparent rate

    rate_x = -v_x / range + w_y,    rate_y = -v_y / range - w_x        (rad/s)

for the lens velocity v (m/s) and the body rate w (rad/s), both in the body frame (the
floor point's position relative to the lens is (0, 0, -range); differentiate it in the
rotating frame). The chip accumulates ``counts_per_rad * rate`` between reads and reports
whole counts; what is left below one count stays in the accumulator, as on a mouse sensor.
Out of focus (nearer than ``min_range``) or faster than ``max_rate`` the motion is lost:
the reading says squal 0 and the accumulator starts over. The range finder reads the
distance along the axis with its noise, NaN beyond ``max_range`` or when the lens does not
face the floor.
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
    R = quat_to_matrix(base.quat)
    r_world = R @ np.asarray(spec.position)
    lens = base.pos + r_world
    v_lens = R.T @ (base.lin_vel + np.cross(base.ang_vel, r_world))  # m/s, body frame
    w = R.T @ base.ang_vel  # rad/s, body frame
    axis = -R[:, 2]
    facing = float(floor_normal @ axis)
    if facing >= -1e-6:
        return np.zeros(2), float("nan")
    rng = float(floor_normal @ (floor_point - lens)) / facing
    if rng <= 0:
        return np.zeros(2), float("nan")
    return np.array([-v_lens[0] / rng + w[1], -v_lens[1] / rng - w[0]]), rng


class SimFlowSensor:
    """One flow sensor's chip state: the accumulated motion and its noise, seeded."""

    def __init__(self, spec: FlowSensorSpec, seed: int = 0) -> None:
        self.spec = spec
        self.reset(0.0, seed)

    def reset(self, stamp: float, seed: int) -> None:
        """Start over at ``stamp`` (s): nothing accumulated, noise reseeded."""
        self._rng = np.random.default_rng([int(seed), 0xF10])
        self._acc = np.zeros(2)  # counts not yet reported
        self._t = stamp

    def read(self, stamp: float, base: BaseState, floor_point: np.ndarray, floor_normal: np.ndarray) -> FlowReading:
        """The reading at ``stamp`` (s): motion since the previous read, range, squal."""
        s = self.spec
        interval = max(stamp - self._t, 0.0)
        self._t = stamp
        rate, rng = floor_rate(s, base, floor_point, floor_normal)
        tracking = np.isfinite(rng) and rng >= s.min_range and bool(np.all(np.abs(rate) <= s.max_rate))
        if not tracking:
            self._acc[:] = 0.0
            delta, squal = np.zeros(2), 0
        else:
            noisy = rate + s.rate_noise * self._rng.standard_normal(2)
            self._acc += s.counts_per_rad * noisy * interval
            delta = np.clip(np.trunc(self._acc), -INT16, INT16)
            self._acc -= delta
            squal = SQUAL_TRACKING
        measured = rng + s.range_noise * self._rng.standard_normal() if np.isfinite(rng) and rng <= s.max_range else float("nan")
        return FlowReading(stamp=stamp, interval=interval, delta=delta, range=float(measured), squal=squal)
