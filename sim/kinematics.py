"""Leg kinematics of a legged robot: forward and inverse, all legs at once.

Positions are foot-sphere centres in the body frame (m); joint vectors are shape [joints]
in the description's joint order (rad). See :mod:`legadapt.robot.description`
for the joint conventions.
"""

from __future__ import annotations

import numpy as np

from legadapt.robot.description import RobotDescription
from legadapt.robot.schema import JOINT_KINDS


class LegKinematics:
    """Forward/inverse kinematics of all legs of one :class:`RobotDescription`."""

    def __init__(self, desc: RobotDescription) -> None:
        self.desc = desc
        self.hips = np.array([desc.hip_position(i) for i in range(desc.n_legs)])  # [legs, 3] m
        self.mount = np.asarray(desc.mount_yaw, dtype=float)  # [legs] rad
        self.lc = desc.coxa.length
        self.l1 = desc.femur.length
        self.l2 = desc.tibia.length
        self.lower = desc.lower_limits()
        self.upper = desc.upper_limits()

    def forward(self, q: np.ndarray) -> np.ndarray:
        """Foot positions for joint angles ``q`` [joints] (rad) -> [legs, 3] (m, body frame)."""
        q = np.asarray(q, dtype=float).reshape(len(self.hips), len(JOINT_KINDS))
        q0, q1, q2 = q[:, 0], q[:, 1], q[:, 2]
        r = self.lc + self.l1 * np.cos(q1) + self.l2 * np.cos(q1 + q2)
        z = self.l1 * np.sin(q1) + self.l2 * np.sin(q1 + q2)
        yaw = self.mount + q0
        return self.hips + np.stack([r * np.cos(yaw), r * np.sin(yaw), z], axis=1)

    def inverse(self, feet: np.ndarray) -> np.ndarray:
        """Joint angles [joints] (rad) that put the feet at ``feet`` [legs, 3] (m, body frame).

        Unreachable targets are projected onto the workspace boundary and the result
        is clipped to the joint limits, so the output is always a valid command.
        """
        d = np.asarray(feet, dtype=float) - self.hips
        c, s = np.cos(-self.mount), np.sin(-self.mount)
        lx = c * d[:, 0] - s * d[:, 1]
        ly = s * d[:, 0] + c * d[:, 1]
        q0 = np.arctan2(ly, lx)
        rho = np.hypot(lx, ly) - self.lc
        z = d[:, 2]
        reach = np.hypot(rho, z)
        lo, hi = abs(self.l1 - self.l2) + 1e-6, self.l1 + self.l2 - 1e-6
        scale = np.clip(reach, lo, hi) / np.maximum(reach, 1e-9)
        rho, z = rho * scale, z * scale
        cos_q2 = (rho**2 + z**2 - self.l1**2 - self.l2**2) / (2 * self.l1 * self.l2)
        q2 = -np.arccos(np.clip(cos_q2, -1.0, 1.0))  # knee up, foot bent down
        q1 = np.arctan2(z, rho) - np.arctan2(self.l2 * np.sin(q2), self.l1 + self.l2 * np.cos(q2))
        q = np.stack([q0, q1, q2], axis=1).reshape(-1)
        return np.clip(q, self.lower, self.upper)
