"""The robot description: geometry, masses, joint limits, servo model, bus IDs, gait defaults.

A robot is a data file (``configs/robots/<name>.yaml``, schema in :mod:`legadapt.robot.schema`);
:func:`load_description` reads one into a :class:`RobotDescription`. Both simulator models (MuJoCo
MJCF in :mod:`legadapt.sim.mjcf`, PyBullet URDF in :mod:`legadapt.sim.urdf`), the leg kinematics and
the gait, the model's state features and the servo bus all derive from it, so every part of legadapt
drives the same robot.

Conventions (SI units throughout: m, kg, rad, N·m, s):

* Body frame: x forward, y left, z up; origin at the body box centre.
* Legs are in the file's order; joints are ordered leg-major ``[coxa, femur, tibia]`` per leg
  (``LF_coxa, LF_femur, LF_tibia, LM_coxa, ...`` for the default hexapod).
* Each leg has a hip at ``hip_xy`` on the body side, mounted at yaw ``mount_yaw``.
  In the leg frame (x radial outward, z up):

  - coxa rotates about +z; 0 = leg points along its mount yaw.
  - femur rotates about -y of the coxa frame, so a positive angle lifts the leg;
    0 = femur horizontal.
  - tibia rotates about the same axis; 0 = tibia straight in line with the femur,
    negative bends the foot down.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from legadapt.robot.schema import JOINT_KINDS, RobotFile, joint_name

DEFAULT_ROBOT = "hexapod"  # the shipped description robot.description names unless a config says otherwise


@dataclass(frozen=True)
class ServoModel:
    """A position servo as the simulator models it (values from the robot description's ``servo``).

    ``kp`` and ``kv`` are the position and velocity gains of the servo's internal
    controller as seen at the joint; the output torque is clipped to ``stall_torque``
    and the commanded goal is rate-limited to ``max_speed`` (the servo's profile
    velocity).
    """

    model: str
    kp: float  # N·m/rad
    kv: float  # N·m·s/rad
    stall_torque: float  # N·m
    max_speed: float  # rad/s
    armature: float  # kg·m², reflected rotor inertia
    friction_loss: float  # N·m, dry friction of the gear train


@dataclass(frozen=True)
class LinkSpec:
    """A leg link modelled as a capsule of ``length`` (m) and ``radius`` (m)."""

    length: float
    radius: float
    mass: float  # kg


@dataclass(frozen=True)
class GaitDefaults:
    """The robot's gait shape, the defaults of a config's gait section."""

    frequency: float  # Hz
    stride_length: float  # m, foot travel in stance at |action| = 1
    lift_height: float  # m, swing-foot clearance
    stance_radius: float  # m, hip-to-foot distance at neutral
    body_height: float  # m, foot depth below the hip plane


@dataclass(frozen=True)
class FlowSensorSpec:
    """A downward optical-flow sensor with its range finder (values from the description's ``sensors.flow``).

    It reports the image motion of the floor in counts (``counts_per_rad`` per rad of apparent
    rotation) and the distance to the floor along its axis (m); :mod:`legadapt.sim.flow_sensor`
    simulates it and :mod:`legadapt.controller.flow_velocity` turns it into a body velocity.
    """

    model: str
    position: tuple[float, float, float]  # m, lens in the body frame; it looks along the body's -z
    counts_per_rad: float  # counts per rad of apparent floor rotation
    max_rate: float  # rad/s, fastest apparent floor rotation tracked
    min_range: float  # m, nearest floor in focus
    max_range: float  # m, farthest floor the range finder reads
    rate_noise: float  # rad/s RMS over one read
    range_noise: float  # m RMS
    gyro_noise: float | None = None  # rad/s RMS over one read of the board's integrated gyro (None: no gyro)
    range_timing: str = "interval"  # the range over the read interval ('interval') or at the read ('read')


@dataclass(frozen=True)
class RobotDescription:
    """Geometry, mass properties, servos and bus of one legged robot: built from a description file
    (:func:`load_description`), never written in code."""

    name: str
    leg_names: tuple[str, ...]
    body_size: tuple[float, float, float]  # m, full extents x, y, z
    body_mass: float  # kg, torso without the legs
    coxa: LinkSpec
    femur: LinkSpec
    tibia: LinkSpec
    foot_radius: float  # m
    hip_xy: tuple[tuple[float, float], ...]  # m, hip positions in the body frame, leg order
    mount_yaw: tuple[float, ...]  # rad, leg direction at coxa = 0, leg order
    gait_phase: tuple[float, ...]  # fraction of a gait cycle, leg order
    joint_limits: dict[str, tuple[float, float]]  # rad, (lower, upper) per joint kind
    servo: ServoModel  # the default servo of every joint
    foot_friction: float  # Coulomb coefficient of the feet
    imu_offset: tuple[float, float, float]  # m, IMU site in the body frame
    servo_ids: tuple[int, ...]  # bus ID per joint, joint order
    imu_id: int | None  # bus ID of the IMU device
    gait: GaitDefaults
    #: Joints with another servo than ``servo``: (joint name, its servo), in joint order.
    servo_overrides: tuple[tuple[str, ServoModel], ...] = ()
    flow: FlowSensorSpec | None = None  # the downward optical-flow sensor, if the robot has one
    flow_id: int | None = None  # its bus ID (None: simulated only)
    servo_rate: float | None = None  # Hz, the fast-loop rate its bus allows (None: the config's default)

    # ---------------------------------------------------------------- derived
    @property
    def n_legs(self) -> int:
        return len(self.leg_names)

    @property
    def n_joints(self) -> int:
        return len(self.leg_names) * len(JOINT_KINDS)

    @property
    def joint_names(self) -> tuple[str, ...]:
        """``<leg>_<kind>``, leg-major: the order of every joint vector."""
        return tuple(joint_name(leg, kind) for leg in self.leg_names for kind in JOINT_KINDS)

    @property
    def total_mass(self) -> float:
        """Mass of the whole robot (kg)."""
        return self.body_mass + self.n_legs * (self.coxa.mass + self.femur.mass + self.tibia.mass)

    @property
    def joint_servos(self) -> tuple[ServoModel, ...]:
        """The servo of each joint, joint order (the default ``servo`` unless overridden)."""
        other = dict(self.servo_overrides)
        return tuple(other.get(j, self.servo) for j in self.joint_names)

    def servo_values(self, field: str) -> np.ndarray:
        """One servo field per joint, shape [joints] (e.g. ``"kp"``: N·m/rad)."""
        return np.array([getattr(s, field) for s in self.joint_servos], dtype=float)

    def lower_limits(self) -> np.ndarray:
        """Joint lower limits, shape [n_joints] (rad)."""
        return np.array([self.joint_limits[k][0] for _ in self.leg_names for k in JOINT_KINDS])

    def upper_limits(self) -> np.ndarray:
        """Joint upper limits, shape [n_joints] (rad)."""
        return np.array([self.joint_limits[k][1] for _ in self.leg_names for k in JOINT_KINDS])

    def hip_position(self, leg: int) -> np.ndarray:
        """Hip (coxa axis) position of ``leg`` in the body frame, shape [3] (m)."""
        x, y = self.hip_xy[leg]
        return np.array([x, y, 0.0])

    def leg_side(self, leg: int) -> int:
        """+1 for a left leg (hip y > 0), -1 for a right leg."""
        return 1 if self.hip_xy[leg][1] > 0 else -1

    def leg_index(self, name: str) -> int:
        """Index of leg ``name``; ValueError naming the robot's legs if it has none of that name."""
        if name not in self.leg_names:
            raise ValueError(f"robot {self.name!r} has no leg {name!r}; its legs: {', '.join(self.leg_names)}")
        return self.leg_names.index(name)

    def joint_index(self, leg: int, kind: str) -> int:
        """Index into the joint vector of ``kind`` ('coxa'|'femur'|'tibia') of ``leg``."""
        return len(JOINT_KINDS) * leg + JOINT_KINDS.index(kind)

    def gait_groups(self) -> list[tuple[int, ...]]:
        """Leg indices grouped by gait phase, earliest first (a tripod: two groups of three legs)."""
        phases = sorted(set(self.gait_phase))
        return [tuple(i for i, p in enumerate(self.gait_phase) if p == phase) for phase in phases]

    def leg_joints(self, leg: int) -> list[int]:
        """Joint-vector indices of ``leg``'s joints."""
        return [self.joint_index(leg, kind) for kind in JOINT_KINDS]

    @classmethod
    def from_file(cls, f: RobotFile) -> RobotDescription:
        """The description a validated robot file gives."""
        links = {k: LinkSpec(v.length, v.radius, v.mass) for k, v in f.links.items()}
        return cls(
            name=f.name, leg_names=tuple(leg.name for leg in f.legs), body_size=tuple(f.body.size),
            body_mass=f.body.mass, coxa=links["coxa"], femur=links["femur"], tibia=links["tibia"],
            foot_radius=f.foot.radius, foot_friction=f.foot.friction,
            hip_xy=tuple(tuple(leg.hip) for leg in f.legs),
            mount_yaw=tuple(math.radians(leg.mount_yaw_deg) for leg in f.legs),
            gait_phase=tuple(leg.gait_phase for leg in f.legs),
            joint_limits={k: (float(lo), float(hi)) for k, (lo, hi) in f.joint_limits.items()},
            servo=ServoModel(**f.servo.model_dump()),
            imu_offset=tuple(f.body.imu_offset), servo_ids=tuple(f.bus.servo_ids), imu_id=f.bus.imu_id,
            gait=GaitDefaults(**f.gait.model_dump()), servo_overrides=_servo_overrides(f),
            flow=None if f.sensors.flow is None else FlowSensorSpec(**f.sensors.flow.model_dump()), flow_id=f.bus.flow_id,
            servo_rate=f.bus.servo_rate)


def _servo_overrides(f: RobotFile) -> tuple[tuple[str, ServoModel], ...]:
    """(joint, servo) for every joint a ``servos:`` group names (a kind names that joint of every leg)."""
    default = ServoModel(**f.servo.model_dump())
    out: dict[str, ServoModel] = {}
    for group in f.servos:
        changes = {k: v for k, v in group.model_dump(exclude={"joints"}).items() if v is not None}
        for leg in f.legs:
            for kind in JOINT_KINDS:
                name = joint_name(leg.name, kind)
                if name in group.joints or kind in group.joints:
                    out[name] = replace(out.get(name, default), **changes)
    order = [joint_name(leg.name, kind) for leg in f.legs for kind in JOINT_KINDS]
    return tuple((j, out[j]) for j in order if j in out)


def description_path(robot: str | Path) -> Path:
    """The file of ``robot``: a shipped name (``hexapod``) or a path to a description YAML."""
    from legadapt import resources

    p = Path(robot)
    if p.suffix in (".yaml", ".yml"):
        return resources.resolve(p, "configs")
    return resources.shipped("configs", "robots") / f"{robot}.yaml"


@functools.lru_cache(maxsize=16)
def _load(path: Path, mtime: float) -> RobotDescription:
    from pydantic import ValidationError

    from legadapt.config.base import ConfigError
    from legadapt.config.loader import format_errors
    from legadapt.config.yaml_file import read_yaml

    data = read_yaml(path, "robot description")
    if isinstance(data, dict) and "urdf" in data:  # geometry from the user's URDF (legadapt.robot.urdf_import)
        from legadapt.robot.urdf_import import UrdfError, description_data

        try:
            data = description_data(data, path.parent)
        except UrdfError as err:
            raise ConfigError(f"{path}: {err}") from None
    try:
        return RobotDescription.from_file(RobotFile.model_validate(data))
    except ValidationError as err:
        raise ConfigError(format_errors(err, str(path), "robot description")) from None


def load_description(robot: str | Path = DEFAULT_ROBOT) -> RobotDescription:
    """Read and validate a robot description (a shipped name or a YAML path); ConfigError naming the key."""
    from legadapt import resources
    from legadapt.config.base import ConfigError

    path = description_path(robot)
    if not path.is_file():
        shipped = ", ".join(resources.shipped_names("configs", "robots"))
        raise ConfigError(f"no robot description {str(robot)!r}: give a shipped robot ({shipped}) or the path of a "
                          f"description YAML (see README, 'Describe your own robot')")
    return _load(path.resolve(), path.stat().st_mtime)


def inertia_capsule_x(mass: float, length: float, radius: float) -> tuple[float, float, float]:
    """Principal inertia (kg·m²) of a solid cylinder of ``length`` along x about its centre."""
    ixx = 0.5 * mass * radius**2
    iyy = mass * (3 * radius**2 + length**2) / 12.0
    return ixx, iyy, iyy


def inertia_box(mass: float, size: tuple[float, float, float]) -> tuple[float, float, float]:
    """Principal inertia (kg·m²) of a solid box with full extents ``size`` (m)."""
    x, y, z = size
    return (mass * (y * y + z * z) / 12.0, mass * (x * x + z * z) / 12.0, mass * (x * x + y * y) / 12.0)
