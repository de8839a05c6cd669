"""Is a stance foot slipping? The state estimator's own consistency check (no extra sensor).

Leg odometry assumes planted feet: each stance foot ``i`` implies the body velocity
``v_i = -(ω × r_i + ṙ_i)`` (body frame). While every stance foot holds, the implied velocities
agree up to encoder and servo noise; a foot that slides -- a limp leg dragged along, a foot
on a slippery patch, a leg that no longer carries its share -- implies another one, and the
estimate (their mean) drifts from the truth without noticing. :class:`SlipMonitor` keeps the
RMS horizontal spread of the implied velocities around their mean, low-passed over ``tau`` s,
and raises a suspicion when it stays above ``threshold`` for ``hold`` s. It cannot see every
slip: when all stance feet slide together (uniform ice) they still agree.
"""

from __future__ import annotations

import math

import numpy as np


class SlipMonitor:
    """Low-passed stance-leg disagreement (m/s) with a hysteresis on a threshold (m/s)."""

    def __init__(self, threshold: float, tau: float = 1.0, hold: float = 1.0, clear_ratio: float = 0.7) -> None:
        self.threshold = threshold  # m/s, RMS spread above which a slip is suspected
        self.tau = tau  # s, low-pass time constant
        self.hold = hold  # s the spread must stay beyond the threshold (or below clear_ratio × it) to switch
        self.clear_ratio = clear_ratio
        self.reset()

    def reset(self) -> None:
        self._mean_sq = 0.0  # (m/s)², low-passed squared spread: starts from agreement (a start-up transient fades in)
        self._since = 0.0  # s the spread has been on the other side of the switching level
        self.suspected = False

    @property
    def spread(self) -> float:
        """Low-passed RMS disagreement of the stance legs about the body velocity, m/s."""
        return math.sqrt(self._mean_sq)

    def update(self, implied: np.ndarray, dt: float) -> None:
        """``implied``: [n, 3] body velocities (m/s, body frame) the n stance legs imply; ``dt`` s since the last."""
        if implied.shape[0] < 2 or not np.all(np.isfinite(implied)):
            return
        dev = implied[:, :2] - implied[:, :2].mean(axis=0)
        sq = float((dev ** 2).sum(axis=1).mean())
        a = min(1.0, dt / self.tau)
        self._mean_sq = (1 - a) * self._mean_sq + a * sq
        level = self.threshold * (self.clear_ratio if self.suspected else 1.0)
        crossing = self.spread < level if self.suspected else self.spread > level
        self._since = self._since + dt if crossing else 0.0
        if self._since >= self.hold:
            self.suspected, self._since = not self.suspected, 0.0
