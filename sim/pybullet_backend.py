"""PyBullet backend (second): the generated URDF, servos as explicit PD torque.

PyBullet's own POSITION_CONTROL motor is a velocity constraint that is infinitely stiff
below its force limit, so a weak motor or a payload would not show. Instead every
physics step computes the same servo law MuJoCo's position actuator applies,
``tau = clip(kp * (goal - q) - kv * qd, ±stall_torque)`` with the same per-joint scales,
and applies it with TORQUE_CONTROL. The servo's reflected inertia (MuJoCo's armature)
is in the URDF link inertias, which keeps this explicit law stable at the 2 ms step.
PyBullet has no dry joint friction; MuJoCo has ``friction_loss``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence C-level prints on fds 1 and 2 (PyBullet's 'argv[0]=' and build-time banners)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


with _quiet_stdout():
    import pybullet
    from pybullet_utils.bullet_client import BulletClient

from legadapt.robot_state import BaseState, ImuReading
from legadapt.sim.backend import PhysicsBackend
from legadapt.robot.description import RobotDescription
from legadapt.sim.mjcf import MJ_TIMESTEP
from legadapt.sim.rotations import quat_from_rpy, quat_from_xyzw, quat_rotate_inv, quat_to_xyzw
from legadapt.sim.urdf import build_urdf

GRAVITY = 9.81  # m/s²


class PybulletBackend(PhysicsBackend):
    """The hexapod simulated by PyBullet (DIRECT mode, no GUI)."""

    name = "pybullet"

    def __init__(self, desc: RobotDescription, timestep: float = MJ_TIMESTEP) -> None:
        super().__init__(desc, timestep)
        with _quiet_stdout():
            self.pb = BulletClient(connection_mode=pybullet.DIRECT)
        pb = self.pb
        pb.setGravity(0, 0, -GRAVITY)
        pb.setPhysicsEngineParameter(fixedTimeStep=timestep, numSubSteps=0, numSolverIterations=50)
        fd, path = tempfile.mkstemp(suffix=".urdf", prefix="legadapt_hexapod_")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(build_urdf(desc))
            with _quiet_stdout():
                self.robot = pb.loadURDF(path, flags=pybullet.URDF_USE_INERTIA_FROM_FILE)
        finally:
            os.unlink(path)
        plane = pb.createCollisionShape(pybullet.GEOM_PLANE)
        self.floor = pb.createMultiBody(baseMass=0, baseCollisionShapeIndex=plane)
        names = {pb.getJointInfo(self.robot, j)[1].decode(): j for j in range(pb.getNumJoints(self.robot))}
        self._joints = [names[n] for n in desc.joint_names]
        self._limits0 = [pb.getJointInfo(self.robot, j)[8:10] for j in self._joints]
        for link in range(-1, pb.getNumJoints(self.robot)):
            pb.changeDynamics(self.robot, link, lateralFriction=desc.foot_friction, rollingFriction=0.0, spinningFriction=0.0,
                              linearDamping=0.0, angularDamping=0.0, jointDamping=0.0)
        pb.changeDynamics(self.floor, -1, lateralFriction=1.0)
        # switch off PyBullet's default velocity motors: the servo law is applied as torque
        pb.setJointMotorControlArray(self.robot, self._joints, pybullet.VELOCITY_CONTROL, forces=[0.0] * desc.n_joints)
        self._tau = np.zeros(desc.n_joints)
        self._servo_kp, self._servo_kv = desc.servo_values("kp"), desc.servo_values("kv")  # [joints] N·m/rad, N·m·s/rad
        self._servo_stall = desc.servo_values("stall_torque")  # [joints] N·m
        self._payload_body: int | None = None
        self._payload_constraint: int | None = None
        self._prev_lin_vel = np.zeros(3)
        self._acc_world = np.zeros(3)

    # ------------------------------------------------------------ lifecycle
    def _reset(self, q: np.ndarray, base_height: float, base_xy: tuple[float, float], yaw: float) -> None:
        pb = self.pb
        pb.resetBasePositionAndOrientation(self.robot, [base_xy[0], base_xy[1], base_height], quat_to_xyzw(quat_from_rpy(0, 0, yaw)))
        pb.resetBaseVelocity(self.robot, [0, 0, 0], [0, 0, 0])
        for j, qj in zip(self._joints, q):
            pb.resetJointState(self.robot, j, float(qj), 0.0)
        self._prev_lin_vel = np.zeros(3)
        self._acc_world = np.zeros(3)
        self._apply_goal(q)

    def _apply_goal(self, goal: np.ndarray) -> None:
        kp, kv, stall = self._servo_kp, self._servo_kv, self._servo_stall  # [joints]
        states = self.pb.getJointStates(self.robot, self._joints)
        q = np.fromiter((st[0] for st in states), float, len(self._joints))
        qd = np.fromiter((st[1] for st in states), float, len(self._joints))
        limit = stall * self.force_scale
        tau = np.clip(kp * self.kp_scale * (goal - q) - kv * (self.force_scale > 0) * qd, -limit, limit)
        self._tau = tau
        self.pb.setJointMotorControlArray(self.robot, self._joints, pybullet.TORQUE_CONTROL, forces=tau.tolist())

    def _step_once(self) -> None:
        self.pb.stepSimulation()
        v = np.asarray(self.pb.getBaseVelocity(self.robot)[0])
        self._acc_world = (v - self._prev_lin_vel) / self.timestep
        self._prev_lin_vel = v

    # ------------------------------------------------------------ perturbation hooks
    def _apply_motor_scales(self) -> None:
        """Scales take effect with the next goal written every physics step."""

    def lock_joint(self, joint: int, angle: float | None) -> None:
        lo, hi = self._limits0[joint] if angle is None else (angle - 1e-3, angle + 1e-3)
        self.pb.changeDynamics(self.robot, self._joints[joint], jointLowerLimit=lo, jointUpperLimit=hi)

    def set_payload(self, mass: float, offset: np.ndarray) -> None:
        pb = self.pb
        if self._payload_constraint is not None:
            pb.removeConstraint(self._payload_constraint)
            pb.removeBody(self._payload_body)
            self._payload_body = self._payload_constraint = None
        if mass <= 0:
            return
        pos, orn = pb.getBasePositionAndOrientation(self.robot)
        world = np.asarray(pos) + np.asarray(pb.getMatrixFromQuaternion(orn)).reshape(3, 3) @ np.asarray(offset, dtype=float)
        r = 1e-3  # a near-point mass; inertia ~ 0
        self._payload_body = pb.createMultiBody(baseMass=mass, baseCollisionShapeIndex=-1, basePosition=world.tolist(),
                                                baseOrientation=orn, baseInertialFramePosition=[0, 0, 0])
        pb.changeDynamics(self._payload_body, -1, localInertiaDiagonal=[mass * r * r] * 3)
        lin, ang = pb.getBaseVelocity(self.robot)
        pb.resetBaseVelocity(self._payload_body, lin, ang)
        self._payload_constraint = pb.createConstraint(
            self.robot, -1, self._payload_body, -1, pybullet.JOINT_FIXED, [0, 0, 0], list(map(float, offset)), [0, 0, 0])
        pb.changeConstraint(self._payload_constraint, maxForce=1e4)

    def set_floor_friction(self, mu: float) -> None:
        # PyBullet multiplies the two bodies' coefficients; the feet are at 1.0 nominally
        self.pb.changeDynamics(self.floor, -1, lateralFriction=mu / self.desc.foot_friction)

    def _tilt_floor(self, roll: float, pitch: float, pivot: np.ndarray) -> None:
        self.pb.resetBasePositionAndOrientation(self.floor, list(map(float, pivot)), quat_to_xyzw(quat_from_rpy(roll, pitch, 0.0)))

    # ------------------------------------------------------------ measurements
    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        states = self.pb.getJointStates(self.robot, self._joints)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states]), self._tau.copy()

    def imu(self) -> ImuReading:
        bs = self.base_state()
        gyro = quat_rotate_inv(bs.quat, bs.ang_vel)
        acc = quat_rotate_inv(bs.quat, self._acc_world + np.array([0.0, 0.0, GRAVITY]))
        return ImuReading(quat=bs.quat, gyro=gyro, acc=acc)

    def base_state(self) -> BaseState:
        pos, orn = self.pb.getBasePositionAndOrientation(self.robot)
        lin, ang = self.pb.getBaseVelocity(self.robot)
        return BaseState(pos=np.asarray(pos), quat=quat_from_xyzw(np.asarray(orn)), lin_vel=np.asarray(lin), ang_vel=np.asarray(ang))

    def floor_normal_force(self) -> float:
        return float(sum(c[9] for c in self.pb.getContactPoints(self.robot, self.floor)))

    def floor_slide(self) -> tuple[np.ndarray, float]:
        moved, total = np.zeros(3), 0.0
        for c in self.pb.getContactPoints(self.robot, self.floor):
            link, at, force = c[3], np.asarray(c[5]), float(c[9])
            if link == -1:
                (centre, _), (lin, ang) = self.pb.getBasePositionAndOrientation(self.robot), self.pb.getBaseVelocity(self.robot)
            else:
                state = self.pb.getLinkState(self.robot, link, computeLinkVelocity=1)
                centre, lin, ang = state[0], state[6], state[7]
            moved += force * (np.asarray(lin) + np.cross(np.asarray(ang), at - np.asarray(centre)))
            total += force
        return (moved / total if total > 0 else moved), total

    def close(self) -> None:
        try:
            self.pb.disconnect()
        except pybullet.error:
            pass
