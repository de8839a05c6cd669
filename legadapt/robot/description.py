"""The one description of the hexapod: geometry, masses, joint limits, servo model.

Both simulator models (MuJoCo MJCF in :mod:`sim.mjcf`, PyBullet URDF in :mod:`sim.urdf`)
and the leg kinematics of the gait (:mod:`sim.kinematics`) are generated from this, so
every backend simulates the same robot.

Conventions (SI units throughout: m, kg, rad, N·m, s):

* Body frame: x forward, y left, z up; origin at the body box centre.
* Legs are ordered ``LF, LM, LH, RF, RM, RH`` (left/right × front/middle/hind); joints
  are ordered leg-major ``[coxa, femur, tibia]`` per leg, 18 in all.
* Each leg has a hip at ``hip_xy`` on the body side, mounted at yaw ``mount_yaw``.
  In the leg frame (x radial outward, z up):

  - coxa rotates about +z; 0 = leg points along its mount yaw.
  - femur rotates about -y of the coxa frame, so a positive angle lifts the leg;
    0 = femur horizontal.
  - tibia rotates about the same axis; 0 = tibia straight in line with the femur,
    negative bends the foot down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

LEG_NAMES: tuple[str, ...] = ("LF", "LM", "LH", "RF", "RM", "RH")
JOINT_KINDS: tuple[str, ...] = ("coxa", "femur", "tibia")
JOINT_NAMES: tuple[str, ...] = tuple(f"{leg}_{kind}" for leg in LEG_NAMES for kind in JOINT_KINDS)
N_LEGS = 6
N_JOINTS = 18
#: Tripod groups: legs that swing together (indices into LEG_NAMES).
TRIPOD_A: tuple[int, ...] = (0, 2, 4)  # LF, LH, RM
TRIPOD_B: tuple[int, ...] = (1, 3, 5)  # LM, RF, RH


@dataclass(frozen=True)
class ServoModel:
    """A position servo of the Dynamixel XM430-W350 class.

    ``kp`` and ``kv`` are the position and velocity gains of the servo's internal
    controller as seen at the joint; the output torque is clipped to ``stall_torque``
    and the commanded goal is rate-limited to ``max_speed`` (the servo's profile
    velocity).
    """

    kp: float = 20.0  # N·m/rad
    kv: float = 0.35  # N·m·s/rad
    stall_torque: float = 4.1  # N·m
    max_speed: float = 4.8  # rad/s (46 rev/min no-load)
    armature: float = 0.004  # kg·m², reflected rotor inertia
    friction_loss: float = 0.02  # N·m, dry friction of the gear train


@dataclass(frozen=True)
class LinkSpec:
    """A leg link modelled as a capsule of ``length`` (m) and ``radius`` (m)."""

    length: float
    radius: float
    mass: float  # kg


@dataclass(frozen=True)
class HexapodDescription:
    """Geometry and mass properties of the servo hexapod (about 2.5 kg)."""

    body_size: tuple[float, float, float] = (0.24, 0.20, 0.05)  # m, full extents x, y, z
    body_mass: float = 1.25  # kg, frame + battery + electronics + coxa servos
    coxa: LinkSpec = LinkSpec(length=0.045, radius=0.018, mass=0.09)
    femur: LinkSpec = LinkSpec(length=0.08, radius=0.015, mass=0.09)
    tibia: LinkSpec = LinkSpec(length=0.12, radius=0.008, mass=0.03)
    foot_radius: float = 0.012  # m
    #: Hip positions in the body frame (m), in LEG_NAMES order.
    hip_xy: tuple[tuple[float, float], ...] = (
        (0.11, 0.07), (0.0, 0.10), (-0.11, 0.07),
        (0.11, -0.07), (0.0, -0.10), (-0.11, -0.07),
    )
    #: Mount yaw of each leg (rad), in LEG_NAMES order.
    mount_yaw: tuple[float, ...] = (
        math.radians(45), math.radians(90), math.radians(135),
        math.radians(-45), math.radians(-90), math.radians(-135),
    )
    #: Joint limits (rad) per joint kind: (lower, upper).
    joint_limits: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "coxa": (-0.9, 0.9),
            "femur": (-1.4, 1.6),
            "tibia": (-2.6, 0.4),
        }
    )
    servo: ServoModel = ServoModel()
    foot_friction: float = 1.0  # Coulomb coefficient of the rubber feet
    imu_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # m, IMU site in body frame

    # ---------------------------------------------------------------- derived
    @property
    def total_mass(self) -> float:
        """Mass of the whole robot (kg)."""
        return self.body_mass + N_LEGS * (self.coxa.mass + self.femur.mass + self.tibia.mass)

    def lower_limits(self) -> np.ndarray:
        """Joint lower limits, shape [18] (rad)."""
        return np.array([self.joint_limits[k][0] for _ in LEG_NAMES for k in JOINT_KINDS])

    def upper_limits(self) -> np.ndarray:
        """Joint upper limits, shape [18] (rad)."""
        return np.array([self.joint_limits[k][1] for _ in LEG_NAMES for k in JOINT_KINDS])

    def hip_position(self, leg: int) -> np.ndarray:
        """Hip (coxa axis) position of ``leg`` in the body frame, shape [3] (m)."""
        x, y = self.hip_xy[leg]
        return np.array([x, y, 0.0])


def leg_side(leg: int) -> int:
    """+1 for a left leg, -1 for a right leg."""
    return 1 if LEG_NAMES[leg].startswith("L") else -1


def joint_index(leg: int, kind: str) -> int:
    """Index into the 18-joint vector of ``kind`` ('coxa'|'femur'|'tibia') of ``leg``."""
    return 3 * leg + JOINT_KINDS.index(kind)


def inertia_capsule_x(mass: float, length: float, radius: float) -> tuple[float, float, float]:
    """Principal inertia (kg·m²) of a solid cylinder of ``length`` along x about its centre."""
    ixx = 0.5 * mass * radius**2
    iyy = mass * (3 * radius**2 + length**2) / 12.0
    return ixx, iyy, iyy


def inertia_box(mass: float, size: tuple[float, float, float]) -> tuple[float, float, float]:
    """Principal inertia (kg·m²) of a solid box with full extents ``size`` (m)."""
    x, y, z = size
    return (mass * (y * y + z * z) / 12.0, mass * (x * x + z * z) / 12.0, mass * (x * x + y * y) / 12.0)
