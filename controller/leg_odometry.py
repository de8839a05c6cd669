"""Body velocity from the legs in stance: a planted foot is still, so the body moves opposite to it.

Shared by the onboard estimators (:mod:`controller.state_estimator`, :mod:`controller.fusion`).
"""

from __future__ import annotations

import numpy as np

from legadapt.controller.slip import SlipMonitor
from legadapt.robot_state import RobotState
from legadapt.sim.gait import PhaseGait

STANCE_WINDOW = (0.1, 0.45)  # leg phase interval trusted as planted (stance is [0, 0.5))


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
        # legs well inside stance: the servos lag their goals, so the phase edges are unreliable
        s = np.mod(phase + self.gait.leg_phase_offset, 1.0)
        stance = (s > STANCE_WINDOW[0]) & (s < STANCE_WINDOW[1])
        # a planted foot is still: 0 = v + omega x r + r_dot  ->  v = -(omega x r + r_dot)
        implied = -(np.cross(reading.imu.gyro, feet[stance]) + foot_vel[stance])  # [n, 3] one velocity per stance leg
        self.slip.update(stance, implied, feet[stance], dt)
        self._feet, self._t, self.stance_feet = feet, reading.stamp, feet[stance]
        self.stance_implied, self.stance_legs = implied, tuple(int(i) for i in np.flatnonzero(stance))
        return (implied.mean(axis=0) if stance.any() else None), dt
