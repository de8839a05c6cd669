"""Is a stance foot slipping? The state estimator's own consistency check (no extra sensor).

Leg odometry assumes planted feet: then the stance feet, seen from the body, move as one rigid
constellation, turning at minus the body's yaw rate -- which the gyro measures on its own. A
foot that slides (a limp leg dragged along, a leg that no longer carries its share, a foot on
a slippery patch) breaks that: the constellation turns at another rate than the gyro says,
and the estimate -- which trusts the feet -- drifts from the truth without noticing.

:class:`SlipMonitor` fits the constellation's rotation rate relative to the gyro's every
velocity update (least squares over the stance feet, rad/s). It is averaged over each stance
(the quantised encoders' noise cancels along it), and the RMS of those stance means is kept
over ``tau`` s. A slip is suspected when it stays above ``threshold`` (rad/s) for ``hold`` s.

Turning fast on the spot, the intact robot's stance feet scuff: they turn up to about a fifth
less than the body (a stance mean of -0.13 to -0.16 rad/s at 0.76-0.89 rad/s of yaw, MuJoCo, the
default model steering onto a path 0.2 m to its left), near the threshold over a few stances.
That is no slip that carries the body off, so a stance's mean counts only beyond ``turn_scuff``
× the part of the stance's mean yaw rate above ``turn_free``. Walking, a limp leg's yaw stays
under about 0.25 rad/s, where nothing is taken off.

Measured (MuJoCo, default model, onboard estimate; tau 2 s; the held-out suite, GrBAL and MB,
seeds 0-2 for the limp leg, the figure-8 and the miscalibrated legs, 0-1 for the rest): intact
on a straight path and a figure-8, a weak leg, slopes to 15 deg, payloads: <= 0.031 rad/s; the
miscalibrated legs with 0.08 s of latency 0.059; the serial realtime run that starts with a turn
on the spot 0.015-0.019. A limp front leg (straight, left turn, 10 deg up and across a slope),
from 5 s: at least 0.061, median 0.075-0.215, suspected 1-5 s in and held, while the truth
drifts from the estimate (0.2-0.6 m in 15 s). Uniform ice is not seen (all feet slide together)
-- and there the estimate did not drift more than intact.
"""

from __future__ import annotations

import math

import numpy as np


class SlipMonitor:
    """Stance feet's rotation against the gyro's, per stance, low-passed, with a hysteresis (rad/s)."""

    def __init__(self, threshold: float, tau: float = 2.0, hold: float = 0.5, clear_ratio: float = 0.7,
                 turn_free: float = 0.3, turn_scuff: float = 0.3) -> None:
        self.threshold = threshold  # rad/s: RMS mismatch above which a slip is suspected
        self.turn_free = turn_free  # rad/s of yaw under which the stance feet are taken to turn with the body
        self.turn_scuff = turn_scuff  # share of the yaw rate beyond turn_free the feet may lag (or lead) by
        self.tau = tau  # s, low-pass time constant
        self.hold = hold  # s the mismatch must stay beyond the threshold (or below clear_ratio × it) to switch
        self.clear_ratio = clear_ratio
        self.reset()

    def reset(self) -> None:
        self._mismatch_sq = 0.0  # (rad/s)², low-passed: starts from agreement, a start-up transient fades in
        self._legs: tuple[int, ...] = ()  # the stance legs of the stance being averaged
        self._sum = self._time = 0.0  # rad, s: integral of the mismatch over it, and its length
        self._turned = 0.0  # rad: the gyro's yaw over it
        self._since = 0.0  # s the mismatch has been on the other side of the switching level
        self.suspected = False

    @property
    def mismatch(self) -> float:
        """RMS over the recent stances of the stance feet's yaw rate minus the gyro's, beyond the turning scuff, rad/s."""
        return math.sqrt(self._mismatch_sq)

    def update(self, stance: np.ndarray, implied: np.ndarray, feet: np.ndarray, yaw_rate: float, dt: float) -> None:
        """One velocity update: ``stance`` [legs] bool, the legs in stance; ``implied`` [n, 3] the body
        velocities (m/s) they imply and ``feet`` [n, 3] their positions (m, body frame); ``yaw_rate`` the
        gyro's about the body's z axis (rad/s); ``dt`` s."""
        legs = tuple(np.flatnonzero(stance))
        if legs != self._legs:
            self._close_stance()
            self._legs = legs
        if len(legs) < 2 or not np.all(np.isfinite(implied)):
            return
        dev = implied[:, :2] - implied[:, :2].mean(axis=0)  # what a common body velocity does not explain
        p = feet[:, :2] - feet[:, :2].mean(axis=0)
        perp = np.stack([-p[:, 1], p[:, 0]], axis=1)  # velocity pattern of a rotation about the centroid, per rad/s
        norm = float((perp ** 2).sum())
        if norm > 0:
            self._sum += float((dev * perp).sum()) / norm * dt  # rad: the feet turned this much more than the gyro says
            self._time += dt
            self._turned += yaw_rate * dt

    def _close_stance(self) -> None:
        if self._time <= 0:
            return
        mean = self._sum / self._time  # rad/s over this stance
        scuff = self.turn_scuff * max(0.0, abs(self._turned) / self._time - self.turn_free)  # rad/s
        mean = math.copysign(max(0.0, abs(mean) - scuff), mean)
        a = min(1.0, self._time / self.tau)
        self._mismatch_sq += a * (mean ** 2 - self._mismatch_sq)
        level = self.threshold * (self.clear_ratio if self.suspected else 1.0)
        crossing = self.mismatch < level if self.suspected else self.mismatch > level
        self._since = self._since + self._time if crossing else 0.0
        if self._since >= self.hold:
            self.suspected, self._since = not self.suspected, 0.0
        self._sum = self._time = self._turned = 0.0
