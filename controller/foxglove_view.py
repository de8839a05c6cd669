"""The run as Foxglove sees it: well-known Foxglove channels derived from the log's JSON messages.

A :class:`FoxgloveView` is the log writer's :class:`~legadapt.mcap_log.LogView`: on the
writer thread (never the control threads) it turns each ``state`` and ``planner`` message
into messages of Foxglove's own schemas, encoded by the ``foxglove-sdk`` package (protobuf):

=================  ============================  ===========================================
topic              schema                        what, when
=================  ============================  ===========================================
``/tf``            ``foxglove.FrameTransforms``  world -> ``base`` (the controller's pose
                                                 estimate x, y, yaw at the standing height,
                                                 roll and pitch from the IMU); in
                                                 simulation also world -> ``base_true``;
                                                 each planner cycle; in the same message
                                                 ``base`` -> each link (``LF_coxa``, ...)
                                                 from the latest joint angles (Foxglove
                                                 interpolates transforms between cycles)
``/pose``          ``foxglove.PoseInFrame``      the pose estimate, each planner cycle
``/pose_true``     ``foxglove.PoseInFrame``      simulation only: the true pose
``/joint_states``  ``foxglove.JointStates``      joint angles, speeds, efforts, each fast tick
``/scene/robot``   ``foxglove.SceneUpdate``      the robot's geometry, one entity per link in
                                                 the link's frame (fixed; the transforms move
                                                 it; :mod:`legadapt.sim.robot_shapes`), at the
                                                 first cycle and every ``PATH_REPEAT`` s
``/scene/path``    ``foxglove.SceneUpdate``      the reference path as a line, in ``world``,
                                                 at the first cycle and every
                                                 ``PATH_REPEAT`` s (for live viewers who join)
``/scene/plan``    ``foxglove.SceneUpdate``      the best candidate's predicted body path and
                                                 a sample of others, in ``world``, each cycle
=================  ============================  ===========================================

The robot's URDF (:func:`legadapt.sim.urdf.build_urdf`) is attached to the file as
``robot.urdf``. The layout ``deploy/foxglove_layout.json`` opens these together with the
cross-track and adaptation-loss plots.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from foxglove import messages as fm

from legadapt.mcap_log import ChannelDef
from legadapt.robot.description import RobotDescription
from legadapt.sim.mjcf import standing_height
from legadapt.sim.robot_shapes import RobotShapes, Shape
from legadapt.sim.urdf import build_urdf

WORLD, BASE, BASE_TRUE = "world", "base", "base_true"
PATH_REPEAT = 2.0  # s of run time between repeats of the path
PLAN_COLOR = (0.1, 0.75, 0.2, 1.0)
CANDIDATE_COLOR = (0.55, 0.55, 0.6, 0.5)
PATH_COLOR = (0.95, 0.6, 0.1, 1.0)

#: topic -> the foxglove-sdk message type written on it.
TOPICS: dict[str, type] = {
    "/tf": fm.FrameTransforms, "/pose": fm.PoseInFrame, "/pose_true": fm.PoseInFrame, "/joint_states": fm.JointStates,
    "/scene/robot": fm.SceneUpdate, "/scene/path": fm.SceneUpdate, "/scene/plan": fm.SceneUpdate,
}


def _channel(topic: str, kind: type) -> ChannelDef:
    schema = kind.get_schema()
    return ChannelDef(topic, schema.name, schema.encoding, bytes(schema.data), "protobuf")


def stamp(ns: int) -> fm.Timestamp:
    """A Foxglove timestamp from ns since 1970."""
    return fm.Timestamp(sec=int(ns // 1_000_000_000), nsec=int(ns % 1_000_000_000))


def _color(rgba) -> fm.Color:
    r, g, b, a = (float(v) for v in rgba)
    return fm.Color(r=r, g=g, b=b, a=a)


def _pose(pos, quat_xyzw) -> fm.Pose:
    x, y, z = (float(v) for v in pos)
    qx, qy, qz, qw = (float(v) for v in quat_xyzw)
    return fm.Pose(position=fm.Vector3(x=x, y=y, z=z), orientation=fm.Quaternion(x=qx, y=qy, z=qz, w=qw))


def _frame(ts: fm.Timestamp, parent: str, child: str, pos, quat_xyzw) -> fm.FrameTransform:
    """parent -> child: translation [3] m, rotation x,y,z,w."""
    x, y, z = (float(v) for v in pos)
    qx, qy, qz, qw = (float(v) for v in quat_xyzw)
    return fm.FrameTransform(timestamp=ts, parent_frame_id=parent, child_frame_id=child,
                             translation=fm.Vector3(x=x, y=y, z=z), rotation=fm.Quaternion(x=qx, y=qy, z=qz, w=qw))


def _line(points: np.ndarray, z: float, rgba, thickness: float) -> fm.LinePrimitive:
    """A line strip through world points [P, 2+] (x, y m) at height ``z`` m; ``thickness`` in px."""
    pts = [fm.Point3(x=float(p[0]), y=float(p[1]), z=z) for p in points]
    return fm.LinePrimitive(type=fm.LinePrimitiveLineType.LineStrip, pose=_pose((0, 0, 0), (0, 0, 0, 1)),
                            thickness=thickness, scale_invariant=True, points=pts, color=_color(rgba))


def body_rotation(yaw: float, imu_quat_xyzw: np.ndarray | None) -> np.ndarray:
    """The body's orientation x,y,z,w: ``yaw`` rad (the pose), roll and pitch from the IMU when known (Z-Y-X Euler angles)."""
    roll = pitch = 0.0
    if imu_quat_xyzw is not None and np.all(np.isfinite(imu_quat_xyzw)):
        x, y, z, w = (float(v) for v in imu_quat_xyzw)
        pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
        roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    cy, sy = math.cos(0.5 * yaw), math.sin(0.5 * yaw)
    cp, sp = math.cos(0.5 * pitch), math.sin(0.5 * pitch)
    cr, sr = math.cos(0.5 * roll), math.sin(0.5 * roll)
    return np.array([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy])


def shape_primitives(shapes: Iterable[Shape]) -> dict[str, list]:
    """SceneEntity primitive lists (cubes, cylinders, spheres) for the robot's shapes."""
    out: dict[str, list] = {"cubes": [], "cylinders": [], "spheres": []}
    for s in shapes:
        pose, size, color = _pose(s.pos, s.quat), fm.Vector3(x=float(s.size[0]), y=float(s.size[1]), z=float(s.size[2])), _color(s.rgba)
        if s.kind == "cube":
            out["cubes"].append(fm.CubePrimitive(pose=pose, size=size, color=color))
        elif s.kind == "cylinder":
            out["cylinders"].append(fm.CylinderPrimitive(pose=pose, size=size, bottom_scale=1.0, top_scale=1.0, color=color))
        else:
            out["spheres"].append(fm.SpherePrimitive(pose=pose, size=size, color=color))
    return out


class FoxgloveView:
    """Derives the Foxglove channels (module docstring) from a run's JSON log messages.

    Args:
        desc: the robot description (joint names, geometry, standing height).
        path_points: the reference path's vertices [P, 2] (m, world xy).
    """

    def __init__(self, desc: RobotDescription, path_points: np.ndarray | None) -> None:
        self.desc = desc
        self.joint_names = desc.joint_names
        self.height = standing_height(desc)
        self.path_points = None if path_points is None else np.asarray(path_points, dtype=float)
        self.shapes = RobotShapes(desc)
        self.channels: tuple[ChannelDef, ...] = tuple(_channel(t, k) for t, k in TOPICS.items())
        self._imu: np.ndarray | None = None
        self._q = np.zeros(len(self.joint_names))
        self._path_sent_at = -np.inf
        links = self.shapes.link_shapes()
        entities = [fm.SceneEntity(frame_id=BASE if name == self.shapes.torso_name else name, id=name, frame_locked=True,
                                   **shape_primitives(shapes)) for name, shapes in links.items()]
        self._robot = fm.SceneUpdate(entities=entities).encode()  # fixed: each link's shapes in its own frame

    def attachments(self) -> Iterable[tuple[str, str, bytes]]:
        yield "robot.urdf", "application/xml", build_urdf(self.desc).encode()

    def derive(self, channel: str, log_time_ns: int, msg: dict) -> Iterable[tuple[str, bytes]]:
        if channel == "state":
            return self._state(log_time_ns, msg)
        if channel == "planner" and msg.get("pose") is not None:
            return self._planner(log_time_ns, msg)
        return ()

    def _state(self, ns: int, msg: dict) -> list[tuple[str, bytes]]:
        q, qd, eff = (np.asarray(msg.get(k), dtype=float) for k in ("q", "qd", "effort"))
        imu = msg.get("imu_quat")
        self._imu = None if imu is None else np.asarray(imu, dtype=float)
        self._q = q
        joints = [fm.JointState(name=n, position=float(q[i]), velocity=float(qd[i]), effort=float(eff[i]))
                  for i, n in enumerate(self.joint_names)]
        return [("/joint_states", fm.JointStates(timestamp=stamp(ns), joints=joints).encode())]

    def _links(self, ts: fm.Timestamp) -> list[fm.FrameTransform]:
        """``base`` -> each link frame for the latest joint angles."""
        pos, quat = self.shapes.link_frames(self._q)
        return [_frame(ts, BASE, name, p, r) for name, p, r in zip(self.shapes.link_names, pos, quat)]

    def _planner(self, ns: int, msg: dict) -> list[tuple[str, bytes]]:
        ts = stamp(ns)
        pose = np.asarray(msg["pose"], dtype=float)
        rot = body_rotation(pose[2], self._imu)
        transforms = [_frame(ts, WORLD, BASE, (*pose[:2], self.height), rot)]
        out = [("/pose", fm.PoseInFrame(timestamp=ts, frame_id=WORLD, pose=_pose((*pose[:2], self.height), rot)).encode())]
        true_pose = msg.get("true_pose")
        if true_pose is not None:
            tp = np.asarray(true_pose, dtype=float)
            true_rot = body_rotation(tp[2], self._imu)
            transforms.append(_frame(ts, WORLD, BASE_TRUE, (*tp[:2], self.height), true_rot))
            out.append(("/pose_true", fm.PoseInFrame(timestamp=ts, frame_id=WORLD, pose=_pose((*tp[:2], self.height), true_rot)).encode()))
        out.insert(0, ("/tf", fm.FrameTransforms(transforms=transforms + self._links(ts)).encode()))
        out.extend(self._plan(ts, msg))
        t = float(msg.get("t", 0.0))
        if t - self._path_sent_at >= PATH_REPEAT:  # the fixed parts, again for live viewers who join later
            self._path_sent_at = t
            out.append(("/scene/robot", self._robot))
            if self.path_points is not None:
                path = fm.SceneEntity(timestamp=ts, frame_id=WORLD, id="path", lines=[_line(self.path_points, 0.0, PATH_COLOR, 3.0)])
                out.append(("/scene/path", fm.SceneUpdate(entities=[path]).encode()))
        return out

    def _plan(self, ts: fm.Timestamp, msg: dict) -> list[tuple[str, bytes]]:
        best, others = msg.get("plan_poses"), msg.get("candidate_poses")
        if best is None:
            return []
        lines = [_line(np.asarray(c, dtype=float), 0.01, CANDIDATE_COLOR, 1.0) for c in ([] if others is None else others)]
        lines.append(_line(np.asarray(best, dtype=float), 0.02, PLAN_COLOR, 4.0))
        plan = fm.SceneEntity(timestamp=ts, frame_id=WORLD, id="plan", lines=lines)
        return [("/scene/plan", fm.SceneUpdate(entities=[plan]).encode())]
