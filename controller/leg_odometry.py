"""Body velocity from the legs in stance: a planted foot is still, so the body moves opposite to it.

Which legs are planted comes from the commanded gait phase, shifted back by the command latency
the legs show: of a few lags, the one at which the stance legs agree best on the body's velocity
(low-passed), where it agrees clearly better than no lag (:meth:`LegOdometry._stance`).

Shared by the onboard estimators (:mod:`controller.state_estimator`, :mod:`controller.fusion`).
"""

from __future__ import annotations

import numpy as np

from legadapt.controller.slip import SlipMonitor
from legadapt.robot_state import RobotState
from legadapt.sim.gait import PhaseGait

STANCE_WINDOW = (0.1, 0.45)  # leg phase interval trusted as planted (stance is [0, 0.5))
LAGS = np.arange(0.0, 0.25, 0.05)  # fraction of a cycle the legs may trail the commanded phase
LAG_TAU = 2.0  # s, low-pass of each lag's stance-leg disagreement
LAG_EVIDENCE = 0.5  # a lag is taken only where its disagreement is below this share of no lag's


class LegOdometry:
    """Differences the stance feet's positions (forward kinematics of the joint readings).

    ``min_baseline`` (s): shortest interval the foot velocity is differenced over. A reading
    that comes sooner than that after the last one used (a late fast-loop tick followed by an
    on-time one) gives no velocity: differencing quantised joint angles (1.5 mrad per encoder
    count, ~0.2 mm at the foot) over a few ms would multiply their noise by the shortened interval.
    """

    def __init__(self, gait: PhaseGait, slip: SlipMonitor, min_baseline: float = 0.01) -> None:
        self.gait = gait
        self.kin = gait.kin
        self.slip = slip
        self.min_baseline = min_baseline

    def reset(self, reading: RobotState) -> None:
        self._feet = self.kin.forward(reading.q)  # [legs, 3] m, body frame
        self.stance_feet = np.zeros((0, 3))  # [n, 3] m, body frame: the feet used at the last update
        self.stance_implied = np.zeros((0, 3))  # [n, 3] m/s, body frame: the body velocity each of them implies
        self.stance_legs: tuple[int, ...] = ()  # which legs those are
        self._spread = np.zeros(len(LAGS))  # (m/s)², low-passed disagreement of the stance legs under each lag
        self.lag = 0.0  # fraction of a cycle, the lag in use
        self._t = reading.stamp
        self.slip.reset()

    def update(self, reading: RobotState, phase: float) -> tuple[np.ndarray | None, float]:
        """(body velocity [3] m/s in the body frame, or None; the interval it spans, s).

        None where the reading is too soon after the last one used, or no leg is well inside stance."""
        dt = reading.stamp - self._t
        if dt < self.min_baseline:
            return None, dt
        feet = self.kin.forward(reading.q)
        foot_vel = (feet - self._feet) / dt  # [legs, 3] foot velocity relative to the body, body frame
        # a planted foot is still: 0 = v + omega x r + r_dot  ->  v = -(omega x r + r_dot)
        every = -(np.cross(reading.imu.gyro, feet) + foot_vel)  # [legs, 3] the body velocity each leg implies
        stance = self._stance(every, phase, dt)
        implied = every[stance]  # [n, 3] one velocity per stance leg
        self.slip.update(stance, implied, feet[stance], float(reading.imu.gyro[2]), dt)
        self._feet, self._t, self.stance_feet = feet, reading.stamp, feet[stance]
        self.stance_implied, self.stance_legs = implied, tuple(int(i) for i in np.flatnonzero(stance))
        return (implied.mean(axis=0) if stance.any() else None), dt

    def _stance(self, every: np.ndarray, phase: float, dt: float) -> np.ndarray:
        """The legs [legs] (bool) well inside stance, by the commanded ``phase`` shifted back by the lag at which the
        legs' implied velocities ``every`` [legs, 3] (m/s) have agreed best of late: command latency makes the
        planted feet trail the commanded phase, and a window that takes in a swinging foot reads its motion.

        A lag is taken only on strong evidence (its low-passed disagreement below ``LAG_EVIDENCE`` of no lag's)."""
        s = np.mod(phase + self.gait.leg_phase_offset - LAGS[:, None], 1.0)  # [lags, legs]
        # legs well inside stance: the servos lag their goals, so the phase edges are unreliable
        masks = (s > STANCE_WINDOW[0]) & (s < STANCE_WINDOW[1])
        n = masks.sum(axis=1)
        mean = (masks[..., None] * every).sum(axis=1) / np.maximum(n, 1)[:, None]  # [lags, 3]
        spread = (masks * ((every[None] - mean[:, None]) ** 2).sum(axis=2)).sum(axis=1) / np.maximum(n, 1)
        self._spread += min(1.0, dt / LAG_TAU) * (spread - self._spread)
        k = int(np.argmin(self._spread))
        k = k if self._spread[k] < LAG_EVIDENCE * self._spread[0] else 0
        self.lag = float(LAGS[k])
        return masks[k]
