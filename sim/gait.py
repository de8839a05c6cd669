"""The gait: a gait action and a gait phase -> joint targets for every leg.

The gait action is what the planner controls (design.md, "State, action, model"):
a stride modulation in [-1, 1] per leg (one value per leg, the description's leg order)
or per side (2-D: ``[left, right]``). +1 is a full forward stride, -1 a full reverse
stride and 0 stepping in place. Differential action turns the robot.

The gait runs at a fixed frequency. Every leg follows the same foot path, shifted by its
``gait_phase`` from the robot description (two groups half a cycle apart: a tripod on
the hexapod, a trot on the quadruped), with duty factor 0.5: in stance a foot moves
backwards in a straight line along the body x axis at constant speed; in swing it
returns along a smooth arc lifted by ``lift_height``. Joint targets come from the
inverse kinematics of :class:`legadapt.sim.kinematics.LegKinematics`.

The gait lives with the robot description because it is pure leg geometry; it is used
by the controller's fast loop and by the gymnasium environment alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from legadapt.robot.description import RobotDescription
from legadapt.sim.kinematics import LegKinematics

ACTION_MODES: tuple[str, ...] = ("per_side", "per_leg")


@dataclass(frozen=True)
class GaitParams:
    """Shape of the gait (SI units); :meth:`of` gives a robot's own (its description's ``gait``)."""

    frequency: float  # Hz, full gait cycles per second
    stride_length: float  # m, foot travel along x during stance at |action| = 1 (body speed = stride / stance time)
    lift_height: float  # m, swing-foot clearance
    stance_radius: float  # m, horizontal hip-to-foot distance at neutral
    body_height: float  # m, foot-centre depth below the hip plane

    @classmethod
    def of(cls, desc: RobotDescription) -> GaitParams:
        g = desc.gait
        return cls(g.frequency, g.stride_length, g.lift_height, g.stance_radius, g.body_height)


def action_dim(mode: str, n_legs: int) -> int:
    """Dimension of the gait action for ``mode`` ('per_side' -> 2, 'per_leg' -> one per leg)."""
    if mode not in ACTION_MODES:
        raise ValueError(f"unknown action mode {mode!r}; allowed: {', '.join(ACTION_MODES)}")
    return 2 if mode == "per_side" else n_legs


class PhaseGait:
    """Maps (gait action, phase) to joint targets for one robot description.

    ``mode`` selects the action layout: 'per_side' ([2]: left, right) or
    'per_leg' ([legs], the description's leg order). Actions are clipped to [-1, 1].
    ``params`` default to the description's own gait.
    """

    def __init__(self, desc: RobotDescription, params: GaitParams | None = None, mode: str = "per_side") -> None:
        params = params or GaitParams.of(desc)
        self.desc = desc
        self.params = params
        self.mode = mode
        self.action_dim = action_dim(mode, desc.n_legs)
        self.kin = LegKinematics(desc)
        yaw = np.asarray(desc.mount_yaw)
        hips = self.kin.hips
        self.neutral_feet = hips + np.stack(
            [params.stance_radius * np.cos(yaw), params.stance_radius * np.sin(yaw), np.full(desc.n_legs, -params.body_height)],
            axis=1,
        )  # [legs, 3] m
        self.leg_phase_offset = np.asarray(desc.gait_phase, dtype=float)  # [legs], fraction of a cycle
        self._side = np.array([desc.leg_side(i) for i in range(desc.n_legs)])

    @property
    def period(self) -> float:
        """Gait cycle duration (s)."""
        return 1.0 / self.params.frequency

    def leg_modulation(self, action: np.ndarray) -> np.ndarray:
        """Per-leg stride modulation [legs] in [-1, 1] from a gait action [action_dim]."""
        a = np.clip(np.asarray(action, dtype=float).reshape(-1), -1.0, 1.0)
        if a.shape[0] != self.action_dim:
            raise ValueError(f"gait action has {a.shape[0]} values, expected {self.action_dim} for mode {self.mode!r}")
        if self.mode == "per_side":
            return np.where(self._side > 0, a[0], a[1])
        return a

    def foot_targets(self, phase: float, action: np.ndarray) -> np.ndarray:
        """Foot targets [legs, 3] (m, body frame) at gait ``phase`` in [0, 1)."""
        m = self.leg_modulation(action)
        s = np.mod(phase + self.leg_phase_offset, 1.0)  # per-leg phase
        half = 0.5 * self.params.stride_length * m
        stance = s < 0.5
        u_st = s / 0.5  # 0 -> 1 over stance
        u_sw = (s - 0.5) / 0.5  # 0 -> 1 over swing
        smooth = 0.5 - 0.5 * np.cos(np.pi * u_sw)  # eased swing return
        dx = np.where(stance, half * (1.0 - 2.0 * u_st), half * (-1.0 + 2.0 * smooth))
        dz = np.where(stance, 0.0, self.params.lift_height * np.sin(np.pi * u_sw))
        feet = self.neutral_feet.copy()
        feet[:, 0] += dx
        feet[:, 2] += dz
        return feet

    def joint_targets(self, phase: float, action: np.ndarray) -> np.ndarray:
        """Joint targets [joints] (rad) at gait ``phase`` in [0, 1) for gait ``action``."""
        return self.kin.inverse(self.foot_targets(phase, action))

    def standing_pose(self) -> np.ndarray:
        """Joint angles [joints] (rad) with every foot at its neutral point."""
        return self.kin.inverse(self.neutral_feet)
