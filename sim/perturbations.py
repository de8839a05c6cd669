"""What each perturbation does to the simulated robot, on any backend.

A perturbation acts at up to three points, and only from its ``start`` time on:

* the physics, once when it starts (and while it ramps), through the backend's
  ``set_*`` hooks: limp leg, locked joint, weak motor, payload, floor friction, slope;
* the command path from controller to servos: calibration error, action latency;
* the sensor path from robot to controller: calibration error, IMU bias and noise.

They compose: motor scales multiply, command and reading transforms apply in config
order. The config objects (``legadapt.config``) say what each one means and its limits.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from legadapt import config as C
from legadapt.robot_state import ImuReading, RobotState
from legadapt.robot.description import RobotDescription
from legadapt.sim.rotations import quat_from_rpy, quat_mul

if TYPE_CHECKING:
    from legadapt.sim.hexapod import SimulatedHexapod


class Effect:
    """Base: a perturbation that does nothing until overridden."""

    def __init__(self, spec: C.PerturbationBase, desc: RobotDescription) -> None:
        self.spec = spec
        self.desc = desc
        self.start = spec.start  # s
        self.active = False

    def on_start(self, robot: SimulatedHexapod) -> None:
        """Apply the physical change (called once at ``start``)."""

    def on_time(self, robot: SimulatedHexapod, t: float) -> None:
        """Follow time while active (ramps)."""

    def motor_scales(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(kp_scale [joints], force_scale [joints]) this perturbation imposes, or None."""
        return None

    def command(self, q: np.ndarray, t: float) -> np.ndarray:
        """Transform a joint command [joints] (rad) on its way to the servos."""
        return q

    def reading(self, state: RobotState, rng: np.random.Generator) -> RobotState:
        """Transform a reading on its way to the controller."""
        return state


class LimpLegEffect(Effect):
    def motor_scales(self) -> tuple[np.ndarray, np.ndarray]:
        force = np.ones(self.desc.n_joints)
        force[self.desc.leg_joints(self.desc.leg_index(self.spec.leg))] = 0.0
        return np.ones(self.desc.n_joints), force


class WeakMotorEffect(Effect):
    def motor_scales(self) -> tuple[np.ndarray, np.ndarray]:
        idx = [self.desc.joint_names.index(j) for j in self.spec.joints]
        kp, force = np.ones(self.desc.n_joints), np.ones(self.desc.n_joints)
        kp[idx] = self.spec.kp_scale
        force[idx] = self.spec.force_scale
        return kp, force


class LockedJointEffect(Effect):
    def on_start(self, robot: SimulatedHexapod) -> None:
        j = self.desc.joint_names.index(self.spec.joint)
        angle = self.spec.angle if self.spec.angle is not None else float(robot.backend.joint_state()[0][j])
        robot.backend.lock_joint(j, angle)


class PayloadEffect(Effect):
    def on_start(self, robot: SimulatedHexapod) -> None:
        robot.backend.set_payload(self.spec.mass, np.asarray(self.spec.offset))


class FloorFrictionEffect(Effect):
    def on_start(self, robot: SimulatedHexapod) -> None:
        robot.backend.set_floor_friction(self.spec.mu)


class SlopeEffect(Effect):
    """Tilts the floor about the point under the torso, ramping over ``ramp_time``."""

    def on_start(self, robot: SimulatedHexapod) -> None:
        pos = robot.backend.base_state().pos
        self._pivot = np.array([pos[0], pos[1], 0.0])
        self.on_time(robot, self.start)

    def on_time(self, robot: SimulatedHexapod, t: float) -> None:
        ramp = self.spec.ramp_time
        f = 1.0 if ramp <= 0 else min(1.0, (t - self.start) / ramp)
        # positive pitch_deg climbs towards +x: the floor normal tilts back (negative pitch)
        robot.backend.set_floor_tilt(np.radians(self.spec.roll_deg) * f, -np.radians(self.spec.pitch_deg) * f, self._pivot)

    @property
    def ramping(self) -> bool:
        return self.spec.ramp_time > 0


class CalibrationErrorEffect(Effect):
    """A joint reported at q is physically at ``gain * q + offset``."""

    def __init__(self, spec: C.CalibrationError, desc: RobotDescription) -> None:
        super().__init__(spec, desc)
        self.offset = np.zeros(desc.n_joints)
        self.gain = np.ones(desc.n_joints)
        for name, v in spec.offsets.items():
            self.offset[desc.joint_names.index(name)] = v
        for name, v in spec.gains.items():
            self.gain[desc.joint_names.index(name)] = v

    def command(self, q: np.ndarray, t: float) -> np.ndarray:
        return self.gain * q + self.offset

    def reading(self, state: RobotState, rng: np.random.Generator) -> RobotState:
        return replace(state, q=(state.q - self.offset) / self.gain, qd=state.qd / self.gain)


class ImuErrorEffect(Effect):
    def reading(self, state: RobotState, rng: np.random.Generator) -> RobotState:
        s = self.spec
        imu = state.imu
        gyro = imu.gyro + np.asarray(s.gyro_bias) + s.gyro_noise * rng.standard_normal(3)
        acc = imu.acc + np.asarray(s.acc_bias) + s.acc_noise * rng.standard_normal(3)
        tilt = np.radians(np.asarray(s.tilt_bias_deg) + s.tilt_noise_deg * rng.standard_normal(2))
        quat = quat_mul(imu.quat, quat_from_rpy(tilt[0], tilt[1], 0.0))
        return replace(state, imu=ImuReading(quat=quat, gyro=gyro, acc=acc))


class ActionLatencyEffect(Effect):
    """Commands are delivered ``delay`` s after they are written."""

    def __init__(self, spec: C.ActionLatency, desc: RobotDescription) -> None:
        super().__init__(spec, desc)
        self._queue: deque[tuple[float, np.ndarray]] = deque()
        self._delivered: np.ndarray | None = None

    def submit(self, q: np.ndarray, t: float) -> None:
        """Put a command [joints] (rad) written at ``t`` (s) on the wire."""
        self._queue.append((t, q.copy()))

    def command(self, q: np.ndarray, t: float) -> np.ndarray:
        return self.delivered(t, fallback=q)

    def delivered(self, t: float, fallback: np.ndarray) -> np.ndarray:
        """The newest command written at least ``delay`` s before ``t``."""
        while self._queue and self._queue[0][0] <= t - self.spec.delay + 1e-9:
            self._delivered = self._queue.popleft()[1]
        return self._delivered if self._delivered is not None else fallback

    def next_delivery(self) -> float | None:
        """Simulated time (s) at which the next queued command arrives."""
        return self._queue[0][0] + self.spec.delay if self._queue else None


EFFECTS: dict[str, type[Effect]] = {
    "limp_leg": LimpLegEffect,
    "locked_joint": LockedJointEffect,
    "weak_motor": WeakMotorEffect,
    "payload": PayloadEffect,
    "floor_friction": FloorFrictionEffect,
    "slope": SlopeEffect,
    "calibration_error": CalibrationErrorEffect,
    "imu_error": ImuErrorEffect,
    "action_latency": ActionLatencyEffect,
}
assert set(EFFECTS) == set(C.PERTURBATION_KINDS), "every configurable perturbation needs an effect"


def make_effect(spec: C.PerturbationBase, desc: RobotDescription) -> Effect:
    """The runtime effect of one validated perturbation config on the robot ``desc`` describes."""
    return EFFECTS[spec.kind](spec, desc)
