"""The perturbations: what can change under the robot, each with its start time and limits."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from legadapt.config.base import JointName, LegName, Vec3, _Section

class PerturbationBase(_Section):
    """Fields every perturbation has."""

    start: float = Field(0.0, ge=0, description="When it begins, s after the run starts walking (after stand-up); 0 = from power-on.")


class LimpLeg(PerturbationBase):
    """All three servos of a leg lose torque (actuator gear 0): the leg hangs passively."""

    kind: Literal["limp_leg"]
    leg: LegName = Field(description="Leg that goes limp.")


class LockedJoint(PerturbationBase):
    """A joint jams mechanically (stripped gear, seized bearing) at a fixed angle."""

    kind: Literal["locked_joint"]
    joint: JointName = Field(description="Joint that locks.")
    angle: float | None = Field(None, ge=-2.6, le=1.6, description="Angle it locks at, rad; default: where it is at start.")


class WeakMotor(PerturbationBase):
    """Servos lose strength (worn gears, low battery): scaled position gain and torque limit."""

    kind: Literal["weak_motor"]
    joints: list[JointName] = Field(min_length=1, description="Affected joints.")
    kp_scale: float = Field(0.5, gt=0, le=1, description="Factor on the position gain.")
    force_scale: float = Field(0.5, gt=0, le=1, description="Factor on the torque limit.")


class Payload(PerturbationBase):
    """A point mass strapped to the torso."""

    kind: Literal["payload"]
    mass: float = Field(gt=0, le=3.0, description="Payload mass, kg (up to 3 kg: more than the robot).")
    offset: Vec3 = Field((0.0, 0.0, 0.03), description="Payload position in the body frame, m; |x|,|y| <= 0.12, 0 <= z <= 0.15.")

    @model_validator(mode="after")
    def _inside_reach(self) -> "Payload":
        x, y, z = self.offset
        if abs(x) > 0.12 or abs(y) > 0.12 or not 0.0 <= z <= 0.15:
            raise ValueError(f"offset {self.offset} m is off the robot; allowed |x| <= 0.12, |y| <= 0.12, 0 <= z <= 0.15")
        return self


class FloorFriction(PerturbationBase):
    """The Coulomb friction coefficient between feet and floor (ice ~0.1, carpet ~0.8)."""

    kind: Literal["floor_friction"]
    mu: float = Field(gt=0.02, le=2.0, description="Friction coefficient.")


class Slope(PerturbationBase):
    """The floor tilts about the point under the robot; the IMU sees the tilt."""

    kind: Literal["slope"]
    pitch_deg: float = Field(0.0, ge=-25, le=25, description="Incline along the world x axis, deg; positive climbs when walking +x.")
    roll_deg: float = Field(0.0, ge=-25, le=25, description="Side slope, deg; positive raises the +y side.")
    ramp_time: float = Field(1.0, ge=0, le=10, description="Time to tilt from flat to full slope, s.")


class CalibrationError(PerturbationBase):
    """Servo zero offsets and gains are wrong: a joint at reading q is physically at gain*q + offset."""

    kind: Literal["calibration_error"]
    offsets: dict[JointName, Annotated[float, Field(ge=-0.5, le=0.5)]] = Field(
        default_factory=dict, description="Zero offset per joint, rad (|offset| <= 0.5).")
    gains: dict[JointName, Annotated[float, Field(ge=0.5, le=1.5)]] = Field(
        default_factory=dict, description="Gain per joint (0.5 to 1.5).")


class ImuError(PerturbationBase):
    """IMU bias and white noise."""

    kind: Literal["imu_error"]
    gyro_bias: Vec3 = Field((0.0, 0.0, 0.0), description="Gyro bias, rad/s.")
    gyro_noise: float = Field(0.0, ge=0, le=1, description="Gyro noise standard deviation, rad/s.")
    acc_bias: Vec3 = Field((0.0, 0.0, 0.0), description="Accelerometer bias, m/s².")
    acc_noise: float = Field(0.0, ge=0, le=5, description="Accelerometer noise standard deviation, m/s².")
    tilt_bias_deg: tuple[float, float] = Field((0.0, 0.0), description="Orientation bias as (roll, pitch), deg.")
    tilt_noise_deg: float = Field(0.0, ge=0, le=10, description="Orientation noise standard deviation, deg.")


class ActionLatency(PerturbationBase):
    """Joint commands reach the servos late."""

    kind: Literal["action_latency"]
    delay: float = Field(gt=0, le=0.5, description="Command delay, s.")


Perturbation = Annotated[
    Union[LimpLeg, LockedJoint, WeakMotor, Payload, FloorFriction, Slope, CalibrationError, ImuError, ActionLatency],
    Field(discriminator="kind"),
]
PERTURBATION_KINDS: tuple[str, ...] = (
    "limp_leg", "locked_joint", "weak_motor", "payload", "floor_friction", "slope", "calibration_error", "imu_error", "action_latency",
)
