"""The schema of a robot description file (``configs/robots/*.yaml``): what a user writes to describe a robot.

Validated with pydantic like the config files, so a mistake is named by its key. Units: m, kg, rad
(keys ending in ``_deg`` are degrees), N·m, s. :mod:`legadapt.robot.description` turns a valid file
into the :class:`~legadapt.robot.description.RobotDescription` the rest of legadapt reads.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: The joints of a leg, from the body out: the leg model the kinematics and the gait implement.
JOINT_KINDS: tuple[str, ...] = ("coxa", "femur", "tibia")
NAME = r"^[A-Za-z][A-Za-z0-9]{0,15}$"


class _Strict(BaseModel):
    """Like the config's sections: unknown keys and non-finite numbers are refused. (Not imported from
    legadapt.config: the config package imports the robot description, which imports this.)"""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BodyFile(_Strict):
    size: tuple[Positive, Positive, Positive] = Field(description="Torso box full extents x, y, z, m.")
    mass: Positive = Field(description="Torso mass without the legs, kg.")
    imu_offset: tuple[Finite, Finite, Finite] = Field((0.0, 0.0, 0.0), description="IMU position, body frame, m.")


class LinkFile(_Strict):
    length: Positive = Field(description="m")
    radius: Positive = Field(description="m")
    mass: Positive = Field(description="kg")


class FootFile(_Strict):
    radius: Positive = Field(description="Foot sphere radius, m.")
    friction: Positive = Field(1.0, description="Coulomb friction coefficient of the foot/floor contact.")


class LegFile(_Strict):
    name: str = Field(pattern=NAME, description="Leg name (e.g. LF): joints are named <leg>_coxa, <leg>_femur, ...")
    hip: tuple[Finite, Finite] = Field(description="Hip (coxa axis) position x, y in the body frame, m; y > 0 = left.")
    mount_yaw_deg: Annotated[float, Field(ge=-180, le=180)] = Field(description="Leg direction at coxa = 0, deg.")
    gait_phase: Annotated[float, Field(ge=0, lt=1)] = Field(description="Offset in the gait cycle, fraction.")

    @model_validator(mode="after")
    def _a_side(self) -> LegFile:
        if self.hip[1] == 0:
            raise ValueError(f"leg {self.name}: hip y = 0 is on neither side; left legs have y > 0, right legs y < 0")
        return self


class ServoFile(_Strict):
    model: str = Field(description="Servo model: on the serial backend it picks the control table, units and bus "
                                   "protocol (XM430-W350, AX-12A, AX-18A, MX-28, MX-64, STS3215: hardware/servo_types.py).")
    kp: Positive = Field(description="Position gain at the joint, N·m/rad.")
    kv: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(description="Velocity gain, N·m·s/rad.")
    stall_torque: Positive = Field(description="Torque limit, N·m.")
    max_speed: Positive = Field(description="Goal rate limit (profile velocity), rad/s.")
    armature: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(description="Reflected rotor inertia, kg·m².")
    friction_loss: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(description="Gear train dry friction, N·m.")


class ServoOverrideFile(_Strict):
    """Another servo on some joints: the listed fields replace the robot's default ``servo`` there."""

    joints: list[str] = Field(min_length=1, description="Joint names (LF_tibia) or joint kinds (tibia: every leg's).")
    model: str | None = None
    kp: Positive | None = None
    kv: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    stall_torque: Positive | None = None
    max_speed: Positive | None = None
    armature: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    friction_loss: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class BusFile(_Strict):
    servo_ids: list[Annotated[int, Field(ge=0, le=252)]] = Field(description="Bus ID of each joint's servo, joint order.")
    imu_id: Annotated[int, Field(ge=0, le=252)] | None = Field(None, description="Bus ID of the IMU device.")
    flow_id: Annotated[int, Field(ge=0, le=252)] | None = Field(None, description="Bus ID of the ground-velocity (optical flow) device.")
    servo_rate: Annotated[float, Field(ge=10, le=500)] | None = Field(
        None, description="Fast-loop rate this bus allows, Hz (sim.servo_rate unless the config sets one): lower it "
                          "where servos are read one at a time (AX); `legadapt calibrate latency` measures it.")

    def device_ids(self) -> list[int]:
        """Every ID on the bus: servos, then the IMU and the flow sensor where present."""
        return [*self.servo_ids, *(i for i in (self.imu_id, self.flow_id) if i is not None)]


class FlowSensorFile(_Strict):
    """A downward optical-flow sensor with a range finder beside it (PMW3901 + VL53L1X class, as on the
    Bitcraze Flow deck v2): the image motion of the floor, in counts, and the distance to it along its axis."""

    model: str = Field("PMW3901", description="Sensor model (documentation).")
    position: tuple[Finite, Finite, Finite] = Field(description="Lens position in the body frame, m; it looks along -z of the body.")
    counts_per_rad: Positive = Field(477.5, description="Image-motion counts per rad of apparent floor rotation (35 px per 4.2 deg, the Crazyflie flow model).")
    max_rate: Positive = Field(7.4, description="Largest apparent floor rate the sensor tracks, rad/s (datasheet); beyond it the motion reads 0 with squal 0.")
    min_range: Positive = Field(0.08, description="Nearest floor the lens focuses, m (datasheet 80 mm); nearer, the motion is invalid.")
    max_range: Positive = Field(4.0, description="Farthest floor the range finder reads, m.")
    rate_noise: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(0.08, description="Noise of the apparent rate over one read, rad/s RMS.")
    range_noise: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(0.002, description="Range finder noise, m RMS.")
    gyro_noise: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(0.002, description=(
        "The board's own gyro, integrated over each read's interval (as PX4FLOW boards report it, MAVLink "
        "OPTICAL_FLOW_RAD): its noise over one read, rad/s RMS (white noise and what is left of the bias after "
        "the start-up calibration). The image motion's rotation is then taken out with the rotation of the same "
        "interval. null: the board has no gyro, and the IMU's rate at the read is used."))
    range_timing: Literal["interval", "read"] = Field("interval", description=(
        "When the range is taken. 'interval': the range finder's mean over the interval between reads, the "
        "interval the image motion is integrated over (a time-of-flight ranger such as the VL53L1X ranging "
        "continuously with its timing budget at the read period). 'read': the range at the read (a ranger "
        "triggered by the read); the estimator then takes the mean of the ranges at the interval's two ends."))

    @model_validator(mode="after")
    def _ranges(self) -> FlowSensorFile:
        if self.min_range >= self.max_range:
            raise ValueError(f"min_range {self.min_range} m must be below max_range {self.max_range} m")
        return self


class SensorsFile(_Strict):
    """Sensors beyond the IMU and the servos' own encoders."""

    flow: FlowSensorFile | None = Field(None, description="Downward optical-flow ground-velocity sensor.")


class GaitFile(_Strict):
    frequency: Annotated[float, Field(gt=0.2, le=4.0)] = Field(description="Gait cycles per second, Hz.")
    stride_length: Positive = Field(description="Foot travel in stance at |action| = 1, m.")
    lift_height: Positive = Field(description="Swing-foot clearance, m.")
    stance_radius: Positive = Field(description="Horizontal hip-to-foot distance at neutral, m.")
    body_height: Positive = Field(description="Foot depth below the hip plane, m.")


class RobotFile(_Strict):
    """A whole robot description file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    body: BodyFile
    links: dict[str, LinkFile] = Field(description="One link per joint kind: coxa, femur, tibia.")
    foot: FootFile
    joint_limits: dict[str, tuple[Finite, Finite]] = Field(description="(lower, upper) per joint kind, rad.")
    legs: list[LegFile] = Field(min_length=3, max_length=12)
    servo: ServoFile
    servos: list[ServoOverrideFile] = Field(default_factory=list, description="Other servos on some joints.")
    bus: BusFile
    gait: GaitFile
    sensors: SensorsFile = Field(default_factory=SensorsFile, description="Sensors beyond the IMU (optical flow).")

    @model_validator(mode="after")
    def _consistent(self) -> RobotFile:
        kinds = set(JOINT_KINDS)
        for key in ("links", "joint_limits"):
            given = set(getattr(self, key))
            if given != kinds:
                raise ValueError(f"{key} must name exactly the joint kinds {', '.join(JOINT_KINDS)} (the leg model "
                                 f"legadapt implements), got {', '.join(sorted(given)) or 'none'}")
        for kind, (lo, hi) in self.joint_limits.items():
            if not lo < 0 < hi or hi - lo > 2 * math.pi:
                raise ValueError(f"joint_limits.{kind}: need lower < 0 < upper within one turn, got [{lo}, {hi}]")
        names = [leg.name for leg in self.legs]
        if len(set(names)) != len(names):
            raise ValueError(f"legs: names must differ, got {names}")
        if not any(leg.hip[1] > 0 for leg in self.legs) or not any(leg.hip[1] < 0 for leg in self.legs):
            raise ValueError("legs: a robot needs legs on both sides (hip y > 0 and y < 0)")
        joint_names = {joint_name(leg.name, kind) for leg in self.legs for kind in JOINT_KINDS}
        for i, group in enumerate(self.servos):
            unknown = [j for j in group.joints if j not in joint_names and j not in JOINT_KINDS]
            if unknown:
                raise ValueError(f"servos[{i}].joints: {unknown} are neither joints of this robot nor joint kinds")
        n_joints = len(self.legs) * len(JOINT_KINDS)
        if len(self.bus.servo_ids) != n_joints:
            raise ValueError(f"bus.servo_ids: {len(self.bus.servo_ids)} IDs for {n_joints} joints "
                             f"({len(self.legs)} legs x {len(JOINT_KINDS)})")
        ids = self.bus.device_ids()
        if len(set(ids)) != len(ids):
            raise ValueError(f"bus: servo_ids, imu_id and flow_id must all differ, got {ids}")
        if self.bus.flow_id is not None and self.sensors.flow is None:
            raise ValueError("bus.flow_id is set but sensors.flow does not describe the sensor: add sensors.flow "
                             "(its position at least) or remove bus.flow_id")
        return self


def joint_name(leg: str, kind: str) -> str:
    """The name of joint ``kind`` of ``leg`` (``LF``, ``femur`` -> ``LF_femur``)."""
    return f"{leg}_{kind}"


def is_joint_name(name: str) -> bool:
    """Whether ``name`` has the form of a joint name (``<leg>_<kind>``)."""
    return re.fullmatch(rf"[A-Za-z][A-Za-z0-9]*_({'|'.join(JOINT_KINDS)})", name) is not None
