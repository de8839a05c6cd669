"""The physics-backend interface that MuJoCo and PyBullet implement alike.

A backend simulates the hexapod of one :class:`RobotDescription`. It knows nothing
of gaits, tasks or controllers: it takes servo goal positions and returns sensor-level
physical quantities. Perturbations (:mod:`sim.perturbations`) change the robot and the
world only through the ``set_*`` methods here, so every perturbation means the same
thing on both backends.

The servo model shared by both backends: the goal written by the controller is
rate-limited to the servo's ``max_speed`` (its profile velocity) every physics step,
then tracked by the backend's position controller with torque clipped to
``stall_torque`` times the joint's force scale. When a servo's torque comes on the
profile starts at the joint's present position.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from legadapt.robot_state import BaseState, ImuReading
from legadapt.sim.rotations import quat_from_rpy, quat_rotate
from legadapt.robot.description import RobotDescription


class PhysicsBackend(ABC):
    """One simulated hexapod in one world. Subclasses: MuJoCo, PyBullet."""

    name: str = "abstract"

    def __init__(self, desc: RobotDescription, timestep: float) -> None:
        self.desc = desc
        self.timestep = float(timestep)  # s
        self.time = 0.0  # s of simulated time since reset
        n = desc.n_joints
        self._target = np.zeros(n)  # rad, last goal written
        self._goal = np.zeros(n)  # rad, rate-limited goal the servos track
        self.kp_scale = np.ones(n)
        self.force_scale = np.ones(n)
        self._max_step = desc.servo_values("max_speed") * self.timestep  # [joints] rad per physics step
        self._lower, self._upper = desc.lower_limits(), desc.upper_limits()
        self.floor_point = np.zeros(3)  # m, a point of the floor plane, world frame
        self.floor_normal = np.array([0.0, 0.0, 1.0])  # its upward unit normal

    # ------------------------------------------------------------ lifecycle
    def reset(self, q_joints: np.ndarray, base_height: float, base_xy: tuple[float, float] = (0.0, 0.0), yaw: float = 0.0) -> None:
        """Place the robot at rest with joints ``q_joints`` [joints] (rad), torso at ``base_height`` (m)."""
        q = np.asarray(q_joints, dtype=float).copy()
        self._target[:] = q
        self._goal[:] = q
        self.time = 0.0
        self._reset(q, base_height, base_xy, yaw)

    def set_targets(self, q_target: np.ndarray) -> None:
        """Write servo goal positions [joints] (rad), clipped to the servos' angle limits.

        Applied from the next physics step.
        """
        self._target[:] = np.clip(q_target, self._lower, self._upper)

    def step(self, n: int = 1) -> None:
        """Advance ``n`` physics steps (``n * timestep`` s)."""
        for _ in range(n):
            self._goal += np.clip(self._target - self._goal, -self._max_step, self._max_step)
            self._apply_goal(self._goal)
            self._step_once()
            self.time += self.timestep

    # ------------------------------------------------------------ perturbation hooks
    def set_motor_scales(self, kp_scale: np.ndarray, force_scale: np.ndarray) -> None:
        """Scale each servo's position gain and torque limit, shapes [joints]; 0 force = limp.

        A servo whose torque comes back on starts its profile where its joint is now, as a
        servo's trajectory generator does, not at a goal from before its torque went off.
        """
        force_scale = np.asarray(force_scale, dtype=float).copy()
        waking = (self.force_scale == 0) & (force_scale > 0)
        if waking.any():
            self._goal[waking] = self.joint_state()[0][waking]
        self.kp_scale = np.asarray(kp_scale, dtype=float).copy()
        self.force_scale = force_scale
        self._apply_motor_scales()

    @abstractmethod
    def lock_joint(self, joint: int, angle: float | None) -> None:
        """Jam ``joint`` mechanically at ``angle`` (rad); ``None`` frees it again."""

    @abstractmethod
    def set_payload(self, mass: float, offset: np.ndarray) -> None:
        """Strap a point ``mass`` (kg) at ``offset`` [3] (m, body frame) to the torso."""

    @abstractmethod
    def set_floor_friction(self, mu: float) -> None:
        """Set the Coulomb friction coefficient between feet and floor."""

    def set_floor_tilt(self, roll: float, pitch: float, pivot: np.ndarray) -> None:
        """Tilt the floor plane by ``roll``/``pitch`` (rad) about world point ``pivot`` [3] (m)."""
        self.floor_point = np.asarray(pivot, dtype=float).copy()
        self.floor_normal = quat_rotate(quat_from_rpy(roll, pitch, 0.0), np.array([0.0, 0.0, 1.0]))
        self._tilt_floor(roll, pitch, self.floor_point)

    @abstractmethod
    def _tilt_floor(self, roll: float, pitch: float, pivot: np.ndarray) -> None:
        """Move the floor geometry: tilted by ``roll``/``pitch`` (rad), passing through ``pivot`` [3] (m)."""

    # ------------------------------------------------------------ measurements
    @abstractmethod
    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Physical joint positions (rad), velocities (rad/s), actuator torques (N·m), each [joints]."""

    @abstractmethod
    def imu(self) -> ImuReading:
        """Noise-free IMU reading at the torso IMU site."""

    @abstractmethod
    def base_state(self) -> BaseState:
        """True torso pose and velocity (privileged)."""

    @abstractmethod
    def floor_normal_force(self) -> float:
        """Sum of normal contact forces between robot and floor (N)."""

    @abstractmethod
    def floor_slide(self) -> tuple[np.ndarray, float]:
        """How the robot's floor contacts slide: (their material velocity [3] (m/s, world frame) at the contact
        points, weighted by each contact's normal force; the total normal force, N). A planted foot that only
        rolls reads 0; a foot that skids reads its skid. Zero velocity and 0 N with nothing on the floor."""

    # ------------------------------------------------------------ backend specifics
    @abstractmethod
    def _reset(self, q: np.ndarray, base_height: float, base_xy: tuple[float, float], yaw: float) -> None: ...

    @abstractmethod
    def _apply_goal(self, goal: np.ndarray) -> None: ...

    @abstractmethod
    def _step_once(self) -> None: ...

    @abstractmethod
    def _apply_motor_scales(self) -> None: ...

    def close(self) -> None:
        """Release backend resources."""
