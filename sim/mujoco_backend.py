"""MuJoCo backend (primary): the generated MJCF, ``implicitfast``, servos as position actuators."""

from __future__ import annotations

import mujoco
import numpy as np

from legadapt.robot_state import BaseState, ImuReading
from legadapt.sim.backend import PhysicsBackend
from legadapt.robot.description import RobotDescription
from legadapt.sim.mjcf import FLOOR_BODY, MJ_TIMESTEP, PAYLOAD_BODY, TORSO_BODY, build_mjcf
from legadapt.sim.rotations import quat_from_rpy, quat_rotate


class MujocoBackend(PhysicsBackend):
    """The hexapod simulated by MuJoCo (``mujoco>=4``)."""

    name = "mujoco"

    def __init__(self, desc: RobotDescription, timestep: float = MJ_TIMESTEP) -> None:
        super().__init__(desc, timestep)
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(desc, timestep))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._qadr = np.array([m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)] for n in desc.joint_names])
        self._dadr = np.array([m.jnt_dofadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)] for n in desc.joint_names])
        self._jid = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in desc.joint_names])
        self._act = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in desc.joint_names])
        self._torso = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, TORSO_BODY)
        self._payload = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, PAYLOAD_BODY)
        floor_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, FLOOR_BODY)
        self._floor_mocap = m.body_mocapid[floor_body]
        self._floor_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "floor")
        self._kp0 = m.actuator_gainprm[self._act, 0].copy()
        self._kv0 = -m.actuator_biasprm[self._act, 2].copy()
        self._force0 = m.actuator_forcerange[self._act].copy()
        self._range0 = m.jnt_range[self._jid].copy()
        self._sens = {n: (m.sensor_adr[i], m.sensor_dim[i]) for n in ("imu_quat", "imu_gyro", "imu_acc") for i in [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SENSOR, n)]}
        self._force_buf = np.zeros(6)
        self._vel_buf = np.zeros(6)

    # ------------------------------------------------------------ lifecycle
    def _reset(self, q: np.ndarray, base_height: float, base_xy: tuple[float, float], yaw: float) -> None:
        mujoco.mj_resetData(self.model, self.data)
        d = self.data
        d.qpos[0:3] = [base_xy[0], base_xy[1], base_height]
        d.qpos[3:7] = quat_from_rpy(0.0, 0.0, yaw)
        d.qpos[self._qadr] = q
        d.ctrl[self._act] = q
        mujoco.mj_forward(self.model, d)

    def _apply_goal(self, goal: np.ndarray) -> None:
        self.data.ctrl[self._act] = goal

    def _step_once(self) -> None:
        mujoco.mj_step(self.model, self.data)

    # ------------------------------------------------------------ perturbation hooks
    def _apply_motor_scales(self) -> None:
        m, a = self.model, self._act
        kp = self._kp0 * self.kp_scale
        m.actuator_gainprm[a, 0] = kp
        m.actuator_biasprm[a, 1] = -kp
        m.actuator_biasprm[a, 2] = -self._kv0 * (self.force_scale > 0)
        m.actuator_forcerange[a] = self._force0 * self.force_scale[:, None]

    def lock_joint(self, joint: int, angle: float | None) -> None:
        j = self._jid[joint]
        if angle is None:
            self.model.jnt_range[j] = self._range0[joint]
        else:
            self.model.jnt_range[j] = [angle - 1e-3, angle + 1e-3]

    def set_payload(self, mass: float, offset: np.ndarray) -> None:
        m = self.model
        m.body_mass[self._payload] = max(mass, 1e-9)
        m.body_pos[self._payload] = offset
        m.body_inertia[self._payload] = 1e-12
        # mj_setConst recomputes derived constants (subtree masses) by running the model from
        # qpos0 on the data it is given: give it scratch data, never the live simulation
        mujoco.mj_setConst(m, mujoco.MjData(m))
        mujoco.mj_forward(m, self.data)

    def set_floor_friction(self, mu: float) -> None:
        self.model.geom_friction[self._floor_geom, 0] = mu

    def _tilt_floor(self, roll: float, pitch: float, pivot: np.ndarray) -> None:
        q = quat_from_rpy(roll, pitch, 0.0)
        pivot = np.asarray(pivot, dtype=float)
        # the plane passes through ``pivot``: its origin is the pivot itself
        self.data.mocap_pos[self._floor_mocap] = pivot
        self.data.mocap_quat[self._floor_mocap] = q

    # ------------------------------------------------------------ measurements
    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self.data
        return d.qpos[self._qadr].copy(), d.qvel[self._dadr].copy(), d.actuator_force[self._act].copy()

    def _sensor(self, name: str) -> np.ndarray:
        adr, dim = self._sens[name]
        return self.data.sensordata[adr : adr + dim].copy()

    def imu(self) -> ImuReading:
        return ImuReading(quat=self._sensor("imu_quat"), gyro=self._sensor("imu_gyro"), acc=self._sensor("imu_acc"))

    def base_state(self) -> BaseState:
        d = self.data
        quat = d.qpos[3:7].copy()
        # free-joint qvel: linear velocity in world frame, angular velocity in body frame
        return BaseState(pos=d.qpos[0:3].copy(), quat=quat, lin_vel=d.qvel[0:3].copy(), ang_vel=quat_rotate(quat, d.qvel[3:6]))

    def floor_normal_force(self) -> float:
        d, total = self.data, 0.0
        for i in range(d.ncon):
            c = d.contact[i]
            if self._floor_geom in (c.geom1, c.geom2):
                mujoco.mj_contactForce(self.model, d, i, self._force_buf)
                total += self._force_buf[0]
        return float(total)

    def floor_slide(self) -> tuple[np.ndarray, float]:
        m, d = self.model, self.data
        moved, total = np.zeros(3), 0.0
        for i in range(d.ncon):
            c = d.contact[i]
            if self._floor_geom not in (c.geom1, c.geom2):
                continue
            mujoco.mj_contactForce(m, d, i, self._force_buf)
            force = abs(float(self._force_buf[0]))
            geom = c.geom2 if c.geom1 == self._floor_geom else c.geom1
            mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_GEOM, geom, self._vel_buf, 0)  # [angular, linear], world
            moved += force * (self._vel_buf[3:] + np.cross(self._vel_buf[:3], c.pos - d.geom_xpos[geom]))
            total += force
        return (moved / total if total > 0 else moved), total


__all__ = ["MujocoBackend"]
