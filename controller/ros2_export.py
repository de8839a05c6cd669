"""``legadapt export --ros2``: a run's MCAP log as a rosbag2 that ROS 2 tools replay (``ros2 bag play OUT``).

Written with the ``rosbags`` library (pure Python, no ROS install; ``pip install "legadapt[ros2]"``):
a rosbag2 directory with the **MCAP storage plugin** (``OUT/OUT.mcap``, profile ``ros2``, zstd-compressed
chunks) and metadata version 8 (``OUT/metadata.yaml``, ROS 2 Jazzy's format; each topic's offered QoS as
a YAML string, the encoding Humble uses too). ROS 2 Jazzy and later read MCAP bags out of the box,
Humble with ``ros-humble-rosbag2-storage-mcap`` (not tried here: no ROS install). Messages are CDR,
serialised with rosbags' ROS 2 Jazzy typestore; the definitions used are the same from Humble to
Kilted (same RIHS01 hashes).

======================  =================================  =========================================================
topic                   type                               what, when
======================  =================================  =========================================================
``/robot_description``  ``std_msgs/msg/String``            the robot's URDF (:func:`legadapt.sim.urdf.build_urdf`),
                                                           once at run time 0; transient local
``/tf_static``          ``tf2_msgs/msg/TFMessage``         ``base`` -> the URDF's root link (identity: the body),
                                                           ``base`` -> ``imu`` (the IMU's mount offset, m); once at
                                                           run time 0; transient local
``/path_reference``     ``nav_msgs/msg/Path``              the task's reference path in ``world`` (z = 0 m), once
                                                           at run time 0; transient local
``/joint_states``       ``sensor_msgs/msg/JointState``     position rad, velocity rad/s, effort N·m; joint names
                                                           of the robot description; each ``state`` message
``/imu``                ``sensor_msgs/msg/Imu``            orientation x,y,z,w, angular velocity rad/s, linear
                                                           acceleration m/s², frame ``imu``; each ``state`` message
``/tf``                 ``tf2_msgs/msg/TFMessage``         ``world`` -> ``base`` (the controller's pose estimate);
                                                           in simulation also ``world`` -> ``base_true``; each
                                                           planner cycle with a pose
``/pose``               ``geometry_msgs/msg/PoseStamped``  the estimate in ``world``; each planner cycle
``/pose_true``          ``geometry_msgs/msg/PoseStamped``  simulation only: the true pose in ``world``
``/plan``               ``nav_msgs/msg/Path``              the best plan's predicted body poses in ``world``, pose
                                                           k stamped k control periods after its cycle; each cycle
``/path_walked``        ``nav_msgs/msg/Path``              every estimated pose of the run (stamped at its cycle),
                                                           once at the last planner cycle; transient local
======================  =================================  =========================================================

The static ``base`` -> root-link transform lets RViz's RobotModel show the robot on ``base``: run
``robot_state_publisher`` with the URDF of ``/robot_description`` and it poses the legs from
``/joint_states``. ``/path_walked`` is published once (a growing path each cycle would grow the bag
quadratically); ``/pose`` is the live estimate.

Poses: x, y (m) and yaw (rad) from the log, z = the standing height
(:func:`legadapt.sim.mjcf.standing_height`); ``/pose``, ``/pose_true`` and ``/tf`` take roll and pitch
from the IMU orientation of the latest ``state`` message (as the Foxglove view does); ``/plan`` and
``/path_walked`` poses are flat (yaw only). Frames match the log's Foxglove channels
(:mod:`legadapt.controller.foxglove_view`): ``world``, ``base``, ``base_true``.

Times: every header stamp and every bag timestamp is wall-clock time, ns since 1970: the log's
``time_origin_unix_ns`` + t·1e9 (t = run time, s); a log without a time origin (format 1) gets
stamps of run time since 1970. IMU covariances follow ``sensor_msgs/Imu``: all zeros (covariance
unknown), element 0 set to -1 (and the values to 0) where a quantity is absent or not finite.
Non-finite joint values stay NaN. A log cut short by a crash is exported up to its last whole chunk.
"""

from __future__ import annotations

import shlex
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from legadapt.config import ConfigError, parse_config
from legadapt.controller.foxglove_view import BASE, BASE_TRUE, WORLD, body_rotation
from legadapt.mcap_log import LogError
from legadapt.mcap_read import LogContents, read_log
from legadapt.paths import task_path
from legadapt.robot.description import RobotDescription, load_description
from legadapt.sim.mjcf import standing_height
from legadapt.sim.urdf import build_urdf

IMU_FRAME = "imu"
STORAGE = "mcap"
BAG_VERSION = 8
#: topic -> ROS 2 message type (a topic without messages, e.g. /pose_true on hardware, is left out).
TOPICS: dict[str, str] = {
    "/robot_description": "std_msgs/msg/String", "/tf_static": "tf2_msgs/msg/TFMessage",
    "/path_reference": "nav_msgs/msg/Path", "/joint_states": "sensor_msgs/msg/JointState",
    "/imu": "sensor_msgs/msg/Imu", "/tf": "tf2_msgs/msg/TFMessage", "/pose": "geometry_msgs/msg/PoseStamped",
    "/pose_true": "geometry_msgs/msg/PoseStamped", "/plan": "nav_msgs/msg/Path", "/path_walked": "nav_msgs/msg/Path",
}
#: Topics published once, offered with transient-local durability (late subscribers get them); the others
#: are offered reliable, volatile, keep last 10.
LATCHED = frozenset({"/robot_description", "/tf_static", "/path_reference", "/path_walked"})
NS = 1_000_000_000


class ExportError(Exception):
    """The export cannot be done as asked: output directory in the way, rosbags missing."""


@dataclass
class Ros2ExportSummary:
    """What :func:`export_ros2` wrote: ``counts`` (topic -> messages), times in ns since 1970."""

    out_dir: Path
    storage: str
    counts: dict[str, int]
    start_ns: int
    end_ns: int
    log_note: str = ""  # why the log was read only in part ("" when whole)

    def text(self) -> str:
        """One line: the bag, its storage and span (s), each topic's count, and the replay command."""
        topics = ", ".join(f"{t} {n}" for t, n in self.counts.items())
        span = (self.end_ns - self.start_ns) / NS
        return f"rosbag2 {self.out_dir} ({self.storage}, {span:.1f} s): {topics}; replay: ros2 bag play {shlex.quote(str(self.out_dir))}"


@dataclass
class _Run:
    """What the export needs from a log besides its messages."""

    desc: RobotDescription
    origin_ns: int  # wall-clock ns of run time 0
    height: float  # m, body height of every pose
    period: float  # s, between a plan's predicted poses
    urdf: str
    reference: np.ndarray | None  # [P, 2] m, world xy of the task's path
    root_link: str = field(init=False)

    def __post_init__(self) -> None:
        self.root_link = _urdf_root(self.urdf)

    def ns(self, t: float) -> int:
        """Wall-clock ns of run time ``t`` s."""
        return self.origin_ns + int(round(float(t) * 1e9))


def _urdf_root(urdf: str) -> str:
    """The URDF's root link: the one link no joint has as its child."""
    robot = ET.fromstring(urdf)
    children = {j.find("child").get("link") for j in robot.iter("joint")}
    return next(link.get("name") for link in robot.iter("link") if link.get("name") not in children)


def _run_of(log: LogContents) -> _Run:
    """Robot description, time origin, heights and the reference path of ``log`` (LogError if unusable)."""
    if not log.metadata:
        raise LogError(f"{log.path}: no legadapt metadata (not a legadapt log, or cut before its metadata)")
    reference, period = None, log.spec.control_period if log.spec is not None else 0.1
    try:
        if log.config is not None:
            cfg = parse_config(log.config, f"{log.path} (its config)")
            desc, reference = cfg.robot_description, task_path(cfg.task).points
            period = 1.0 / cfg.task.control_rate
        else:
            desc = load_description(log.spec.robot if log.spec is not None else "hexapod")
    except ConfigError as e:
        raise LogError(f"{log.path}: the log's robot cannot be rebuilt here: {e}") from None
    origin = int(log.metadata.get("time_origin_unix_ns", 0))
    return _Run(desc, origin, standing_height(desc), period, build_urdf(desc),
                None if reference is None else np.asarray(reference, dtype=float)[:, :2])


def _require_rosbags() -> Any:
    """The ROS 2 typestore of rosbags; ExportError naming the extra to install if rosbags is missing."""
    try:
        from rosbags.rosbag2 import Writer  # noqa: F401
        from rosbags.typesys import Stores, get_typestore
    except ImportError as e:
        raise ExportError(f"legadapt export --ros2 needs the rosbags library ({e}): pip install \"legadapt[ros2]\"") from None
    store = getattr(Stores, "ROS2_JAZZY", None) or Stores.ROS2_HUMBLE
    return get_typestore(store)


def _prepare_out(out_dir: str | Path) -> Path:
    """``out_dir`` ready for the writer (which creates it and its parents): absent, or an empty directory (removed here)."""
    out = Path(out_dir)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    elif out.exists():
        what = "directory is not empty" if out.is_dir() else "is a file"
        raise ExportError(f"{out} already exists and {what}: a rosbag2 is a new directory; remove it or give another OUT")
    return out


class _Msgs:
    """Builds ROS 2 messages of the typestore ``ts``."""

    def __init__(self, ts: Any, run: _Run) -> None:
        self.T, self.run = ts.types, run

    def header(self, ns: int, frame: str) -> Any:
        stamp = self.T["builtin_interfaces/msg/Time"](sec=ns // NS, nanosec=ns % NS)
        return self.T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame)

    def vec(self, xyz: Any) -> Any:
        x, y, z = (float(v) for v in xyz)
        return self.T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z)

    def quat(self, xyzw: Any) -> Any:
        x, y, z, w = (float(v) for v in xyzw)
        return self.T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)

    def pose(self, ns: int, xyz: Any, xyzw: Any, frame: str = WORLD) -> Any:
        """A PoseStamped: position m, orientation x,y,z,w."""
        x, y, z = (float(v) for v in xyz)
        pose = self.T["geometry_msgs/msg/Pose"](position=self.T["geometry_msgs/msg/Point"](x=x, y=y, z=z),
                                                orientation=self.quat(xyzw))
        return self.T["geometry_msgs/msg/PoseStamped"](header=self.header(ns, frame), pose=pose)

    def transform(self, ns: int, parent: str, child: str, xyz: Any, xyzw: Any) -> Any:
        """A TransformStamped: translation m, rotation x,y,z,w."""
        tf = self.T["geometry_msgs/msg/Transform"](translation=self.vec(xyz), rotation=self.quat(xyzw))
        return self.T["geometry_msgs/msg/TransformStamped"](header=self.header(ns, parent), child_frame_id=child, transform=tf)

    def tf(self, transforms: list) -> Any:
        return self.T["tf2_msgs/msg/TFMessage"](transforms=transforms)

    def path(self, ns: int, xy_yaw: list[tuple[int, np.ndarray]], z: float) -> Any:
        """A Path in ``world`` of (stamp ns, [x m, y m, yaw rad]) poses at height ``z`` m, flat (yaw only)."""
        poses = [self.pose(pns, (p[0], p[1], z), _yaw_quat(p[2] if len(p) > 2 else 0.0)) for pns, p in xy_yaw]
        return self.T["nav_msgs/msg/Path"](header=self.header(ns, WORLD), poses=poses)

    def string(self, text: str) -> Any:
        return self.T["std_msgs/msg/String"](data=text)


def _yaw_quat(yaw: float) -> np.ndarray:
    """x,y,z,w of a rotation by ``yaw`` rad about z."""
    return np.array([0.0, 0.0, np.sin(yaw / 2.0), np.cos(yaw / 2.0)])


def _finite(msg: dict, key: str, n: int) -> np.ndarray | None:
    """``msg[key]`` as n floats, or None when absent or not all finite."""
    v = msg.get(key)
    if v is None:
        return None
    a = np.asarray([np.nan if x is None else x for x in v], dtype=float)
    return a if a.shape == (n,) and np.all(np.isfinite(a)) else None


def _imu(m: _Msgs, ns: int, msg: dict) -> Any:
    """sensor_msgs/Imu of a state message; an absent quantity: zeros, covariance element 0 = -1."""
    parts = {}
    for key, n in (("imu_quat", 4), ("gyro", 3), ("acc", 3)):
        v = _finite(msg, key, n)
        cov = np.zeros(9)
        if v is None:
            v, cov[0] = np.zeros(n), -1.0
        parts[key] = (v, cov)
    return m.T["sensor_msgs/msg/Imu"](
        header=m.header(ns, IMU_FRAME), orientation=m.quat(parts["imu_quat"][0]), orientation_covariance=parts["imu_quat"][1],
        angular_velocity=m.vec(parts["gyro"][0]), angular_velocity_covariance=parts["gyro"][1],
        linear_acceleration=m.vec(parts["acc"][0]), linear_acceleration_covariance=parts["acc"][1])


def _joints(m: _Msgs, ns: int, msg: dict) -> Any:
    """sensor_msgs/JointState of a state message (rad, rad/s, N·m; non-finite values as NaN)."""
    names = list(m.run.desc.joint_names)
    arrays = [np.asarray([np.nan if x is None else x for x in msg.get(k) or []], dtype=np.float64) for k in ("q", "qd", "effort")]
    if any(a.shape != (len(names),) for a in arrays):
        raise LogError(f"a state message at t = {msg.get('t')} s has {arrays[0].shape[0]} joint positions, "
                       f"but the robot {m.run.desc.name!r} has {len(names)} joints")
    return m.T["sensor_msgs/msg/JointState"](header=m.header(ns, ""), name=names, position=arrays[0],
                                            velocity=arrays[1], effort=arrays[2])


def _planner(m: _Msgs, msg: dict, imu: np.ndarray | None) -> list[tuple[str, Any]]:
    """/tf, /pose, /pose_true and /plan of a planner message with a pose (roll, pitch from ``imu`` x,y,z,w)."""
    ns, h = m.run.ns(msg["t"]), m.run.height
    pose = np.asarray(msg["pose"], dtype=float)
    rot = body_rotation(pose[2], imu)
    transforms = [m.transform(ns, WORLD, BASE, (pose[0], pose[1], h), rot)]
    out = [("/pose", m.pose(ns, (pose[0], pose[1], h), rot))]
    if msg.get("true_pose") is not None:
        tp = np.asarray(msg["true_pose"], dtype=float)
        true_rot = body_rotation(tp[2], imu)
        transforms.append(m.transform(ns, WORLD, BASE_TRUE, (tp[0], tp[1], h), true_rot))
        out.append(("/pose_true", m.pose(ns, (tp[0], tp[1], h), true_rot)))
    out.insert(0, ("/tf", m.tf(transforms)))
    if msg.get("plan_poses"):
        step = int(round(m.run.period * 1e9))
        predicted = [(ns + k * step, np.asarray(p, dtype=float)) for k, p in enumerate(msg["plan_poses"])]
        out.append(("/plan", m.path(ns, predicted, h)))
    return out


def _static(m: _Msgs) -> list[tuple[int, str, Any]]:
    """The topics published once at run time 0: URDF, static transforms, reference path."""
    run, ns = m.run, m.run.origin_ns
    static = [m.transform(ns, BASE, run.root_link, (0, 0, 0), (0, 0, 0, 1)),
              m.transform(ns, BASE, IMU_FRAME, run.desc.imu_offset, (0, 0, 0, 1))]
    out = [(ns, "/robot_description", m.string(run.urdf)), (ns, "/tf_static", m.tf(static))]
    if run.reference is not None:
        out.append((ns, "/path_reference", m.path(ns, [(ns, p) for p in run.reference], 0.0)))
    return out


def _messages(m: _Msgs, log: LogContents) -> list[tuple[int, str, Any]]:
    """Every (bag time ns, topic, message), in time order (state before planner at equal times)."""
    timeline = sorted([(float(s["t"]), 0, i, s) for i, s in enumerate(log.messages.get("state", []))]
                      + [(float(p["t"]), 1, i, p) for i, p in enumerate(log.messages.get("planner", []))],
                      key=lambda e: e[:3])
    out, imu, walked = _static(m), None, []
    for t, kind, _, msg in timeline:
        ns = m.run.ns(t)
        if kind == 0:
            imu = _finite(msg, "imu_quat", 4)
            out += [(ns, "/joint_states", _joints(m, ns, msg)), (ns, "/imu", _imu(m, ns, msg))]
        elif msg.get("pose") is not None:
            out += [(ns, topic, x) for topic, x in _planner(m, msg, imu)]
            walked.append((ns, np.asarray(msg["pose"], dtype=float)))
    if walked:
        out.append((walked[-1][0], "/path_walked", m.path(walked[-1][0], walked, m.run.height)))
    return out


def _qos(latched: bool) -> Any:
    """The QoS offered on a topic: reliable; latched: transient local, keep last 1, else volatile, keep last 10.

    Every topic gets one (an empty ``offered_qos_profiles`` is not something ``ros2 bag record`` writes).
    """
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)  # unspecified: no deadline, no lifespan, default lease
    durability = QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE
    return Qos(QosHistory.KEEP_LAST, 1 if latched else 10, QosReliability.RELIABLE, durability, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)


def _write_bag(out: Path, ts: Any, items: list[tuple[int, str, Any]]) -> dict[str, int]:
    """Write ``items`` to a new MCAP rosbag2 at ``out``; topic -> count. A failed write leaves no ``out``."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

    writer = Writer(out, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    counts: dict[str, int] = {}
    try:
        writer.open()
        conns = {}
        for topic in TOPICS:
            if any(t == topic for _, t, _ in items):
                conns[topic] = writer.add_connection(topic, TOPICS[topic], typestore=ts,
                                                     offered_qos_profiles=[_qos(topic in LATCHED)])
        for ns, topic, msg in items:
            writer.write(conns[topic], ns, ts.serialize_cdr(msg, TOPICS[topic]))
            counts[topic] = counts.get(topic, 0) + 1
        writer.close()
    except BaseException:
        writer.abort()
        shutil.rmtree(out, ignore_errors=True)
        raise
    return {t: counts[t] for t in TOPICS if t in counts}


def export_ros2(log_path: str | Path, out_dir: str | Path) -> Ros2ExportSummary:
    """Export the log ``log_path`` as a new rosbag2 directory ``out_dir`` (MCAP storage; module docstring).

    Raises :class:`~legadapt.mcap_log.LogError` for a missing, empty, non-MCAP or unusable log (one cut
    short is exported up to its last whole chunk: ``log_note`` says so), and :class:`ExportError` when
    ``out_dir`` exists and is not an empty directory, or rosbags is not installed.
    """
    ts = _require_rosbags()
    log = read_log(log_path, channels=("state", "planner"))
    run = _run_of(log)
    out = _prepare_out(out_dir)
    items = sorted(_messages(_Msgs(ts, run), log), key=lambda e: e[0])  # stable: static topics first
    counts = _write_bag(out, ts, items)
    note = "" if log.recovery.complete else (f"log cut short ({log.recovery.reason}): exported up to its last whole "
                                             f"chunk, {log.recovery.bytes_dropped} of {log.recovery.bytes_total} bytes dropped")
    return Ros2ExportSummary(out, STORAGE, counts, items[0][0], items[-1][0], note)


__all__ = ["ExportError", "LATCHED", "Ros2ExportSummary", "TOPICS", "export_ros2"]
