"""The robot's geometry as simple shapes posed by its joint angles, for drawing it.

The shapes are the generated model's own geoms (:func:`legadapt.sim.mjcf.build_mjcf` of the
robot description, the same geometry as its URDF): the body box, each link's capsule and each
foot's sphere. :class:`RobotShapes` poses them with MuJoCo's forward kinematics for given
joint angles, in the body (torso) frame; the Foxglove scene
(:mod:`legadapt.controller.foxglove_view`) and the pictures of a log draw them. A capsule is
given as a cylinder plus a sphere at each end (neither Foxglove nor matplotlib has capsules).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from legadapt.robot.description import RobotDescription
from legadapt.sim.mjcf import TORSO_BODY, build_mjcf

_BOX, _CAPSULE, _SPHERE = (int(k) for k in (mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_SPHERE))


@dataclass(frozen=True)
class Shape:
    """One primitive in the body frame.

    kind: ``"cube"``, ``"cylinder"`` (axis along its local z) or ``"sphere"``; pos [3] m;
    quat [4] x,y,z,w; size [3] m (the primitive's bounding box: full lengths); rgba [4] 0-1; cap: a sphere
    that closes one end of a capsule.
    """

    kind: str
    pos: np.ndarray
    quat: np.ndarray
    size: np.ndarray
    rgba: np.ndarray
    cap: bool = False


class RobotShapes:
    """Forward kinematics of the robot's geoms: joint angles [J] rad -> shapes in the body frame.

    Two views of the same geometry: :meth:`shapes` poses every shape in the body (torso) frame;
    :meth:`link_shapes` gives each link's shapes in the link's own frame (constant) and
    :meth:`link_frames` each link frame in the body frame (what a transform tree needs, as a URDF
    viewer draws a robot: fixed geometry per link, moving frames).
    """

    def __init__(self, desc: RobotDescription) -> None:
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(desc))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.joint_names = desc.joint_names
        self._qpos_adr = np.array([m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in desc.joint_names])
        torso = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, TORSO_BODY)
        self._root_adr = m.jnt_qposadr[m.body_jntadr[torso]]
        self._geoms = [g for g in range(m.ngeom) if _under(m, m.geom_bodyid[g], torso)
                       and int(m.geom_type[g]) in (_BOX, _CAPSULE, _SPHERE)]
        self._links = sorted({int(m.geom_bodyid[g]) for g in self._geoms} - {torso})
        self.torso_name = TORSO_BODY
        self.link_names = tuple(m.body(b).name for b in self._links)

    def _pose_joints(self, q: np.ndarray) -> None:
        d, m = self.data, self.model
        d.qpos[:] = m.qpos0
        d.qpos[self._root_adr:self._root_adr + 7] = (0, 0, 0, 1, 0, 0, 0)
        d.qpos[self._qpos_adr] = np.nan_to_num(np.asarray(q, dtype=float))
        mujoco.mj_kinematics(m, d)

    def link_frames(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each link's frame in the body frame for joint angles ``q`` [J] rad: positions [L, 3] m, quaternions [L, 4] x,y,z,w
        (links in the order of ``link_names``)."""
        self._pose_joints(q)
        wxyz = self.data.xquat[self._links]
        return self.data.xpos[self._links].copy(), np.concatenate([wxyz[:, 1:], wxyz[:, :1]], axis=1)

    def link_shapes(self) -> dict[str, list[Shape]]:
        """Each link's shapes in its own frame (constant; the torso's under ``torso_name``)."""
        m = self.model
        out: dict[str, list[Shape]] = {}
        for gi in self._geoms:
            mat = np.zeros(9)
            mujoco.mju_quat2Mat(mat, m.geom_quat[gi])
            mat = mat.reshape(3, 3)
            out.setdefault(m.body(int(m.geom_bodyid[gi])).name, []).extend(self._geom_shapes(
                int(m.geom_type[gi]), m.geom_pos[gi].copy(), mat[:, 2], _quats_xyzw(mat[None])[0], m.geom_size[gi], m.geom_rgba[gi]))
        return out

    def shapes(self, q: np.ndarray) -> list[Shape]:
        """The shapes for joint angles ``q`` [J] (rad, the description's joint order), torso at the origin."""
        d, m, g = self.data, self.model, self._geoms
        self._pose_joints(q)
        pos, mats = d.geom_xpos[g], d.geom_xmat[g].reshape(-1, 3, 3)
        quats = _quats_xyzw(mats)
        out: list[Shape] = []
        for i, gi in enumerate(g):
            out.extend(self._geom_shapes(int(m.geom_type[gi]), pos[i], mats[i, :, 2], quats[i], m.geom_size[gi], m.geom_rgba[gi]))
        return out

    @staticmethod
    def _geom_shapes(kind: int, pos: np.ndarray, axis: np.ndarray, quat: np.ndarray, size: np.ndarray,
                     rgba: np.ndarray) -> list[Shape]:
        if kind == _BOX:
            return [Shape("cube", pos, quat, 2.0 * size, rgba)]
        if kind == _SPHERE:
            return [Shape("sphere", pos, quat, np.full(3, 2.0 * size[0]), rgba)]
        r, half = size[0], size[1]
        ball = np.full(3, 2.0 * r)
        return [Shape("cylinder", pos, quat, np.array([2.0 * r, 2.0 * r, 2.0 * half]), rgba),
                Shape("sphere", pos + half * axis, quat, ball, rgba, cap=True),
                Shape("sphere", pos - half * axis, quat, ball, rgba, cap=True)]


def _under(m: mujoco.MjModel, body: int, root: int) -> bool:
    """True if ``body`` is ``root`` or one of its descendants."""
    while body > 0:
        if body == root:
            return True
        body = m.body_parentid[body]
    return False


def _quats_xyzw(mats: np.ndarray) -> np.ndarray:
    """Rotation matrices [N, 3, 3] -> unit quaternions [N, 4] x,y,z,w (Shepperd's method, the stable branch per row)."""
    m = mats
    tr = np.trace(m, axis1=1, axis2=2)
    diag = np.stack([m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1)
    cand = np.stack([tr, diag[:, 0], diag[:, 1], diag[:, 2]], axis=1)
    k = np.argmax(cand, axis=1)
    q = np.empty((len(m), 4))  # w, x, y, z
    for branch in range(4):
        i = k == branch
        if not i.any():
            continue
        r = m[i]
        if branch == 0:
            s = 2.0 * np.sqrt(1.0 + tr[i])
            q[i] = np.stack([0.25 * s, (r[:, 2, 1] - r[:, 1, 2]) / s, (r[:, 0, 2] - r[:, 2, 0]) / s, (r[:, 1, 0] - r[:, 0, 1]) / s], 1)
        else:
            a, b, c = branch - 1, branch % 3, (branch + 1) % 3
            s = 2.0 * np.sqrt(1.0 + r[:, a, a] - r[:, b, b] - r[:, c, c])
            out = np.empty((len(r), 4))
            out[:, 0] = (r[:, c, b] - r[:, b, c]) / s
            out[:, 1 + a] = 0.25 * s
            out[:, 1 + b] = (r[:, a, b] + r[:, b, a]) / s
            out[:, 1 + c] = (r[:, a, c] + r[:, c, a]) / s
            q[i] = out
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.concatenate([q[:, 1:], q[:, :1]], axis=1)
