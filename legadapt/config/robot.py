"""Robot, gait, simulation, task and serial-bus sections (units in each description)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from legadapt.config.base import SEED_MAX, JointName, PathName, SimBackend, _Section

class ServoConfig(_Section):
    """Servo model (XM430-W350 class), identical on every backend."""

    kp: float = Field(20.0, gt=0, le=500, description="Position gain at the joint, N·m/rad.")
    kv: float = Field(0.35, ge=0, le=10, description="Velocity gain (damping) at the joint, N·m·s/rad.")
    stall_torque: float = Field(4.1, gt=0, le=20, description="Torque limit, N·m.")
    max_speed: float = Field(4.8, gt=0, le=20, description="Goal rate limit (profile velocity), rad/s.")


class RobotConfig(_Section):
    """Which robot the daemon drives, and the physical parameters that differ between units of the same design
    (unset: the robot description's own)."""

    description: str = Field(
        "hexapod", min_length=1, max_length=4096,
        description="The robot: a shipped description (hexapod, phantomx, sts_hexapod, quadruped) or the path of a description YAML "
        "(configs/robots/*.yaml; README, 'Describe your own robot'). Legs, joints, geometry, servos and bus IDs come from it.")

    backend: Literal["sim", "serial"] = Field(
        "sim", description="The robot `legadapt run` drives: sim = the simulated robot (sim section), serial = the "
        "servo bus of a real or emulated robot (serial section; needs controller.mode: realtime). --backend overrides it.")
    body_mass: float = Field(1.25, gt=0.2, le=10, description="Torso mass without legs, kg.")
    foot_friction: float = Field(1.0, gt=0, le=3, description="Coulomb friction coefficient of the foot/floor contact (both backends; a floor_friction perturbation overrides it while active).")
    servo: ServoConfig = Field(default_factory=ServoConfig, description="Servo model.")


class GaitConfig(_Section):
    """Gait shape and the action space the planner controls; unset values are the robot description's own."""

    action_mode: Literal["per_side", "per_leg"] = Field(
        "per_side", description="Gait action layout: 'per_side' = [left, right] stride modulation, 'per_leg' = one value per leg.")
    frequency: float = Field(2.0, gt=0.2, le=4.0, description="Gait cycles per second, Hz.")
    stride_length: float = Field(0.06, gt=0, le=0.25, description="Foot travel in stance at |action| = 1, m.")
    lift_height: float = Field(0.04, gt=0, le=0.15, description="Swing-foot clearance, m.")
    stance_radius: float = Field(0.13, ge=0.03, le=0.5, description="Horizontal hip-to-foot distance at neutral, m.")
    body_height: float = Field(0.10, ge=0.03, le=0.5, description="Foot depth below the hip plane, m.")


class SimConfig(_Section):
    """Simulated robot settings."""

    backend: SimBackend = Field("mujoco", description="Physics backend.")
    timestep: float = Field(0.002, ge=0.0005, le=0.005, description="Physics step, s.")
    servo_rate: float = Field(50.0, ge=10, le=500, description="Fast-loop (servo command) rate, Hz.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of sensor noise and any randomness in the simulation.")

    @model_validator(mode="after")
    def _servo_rate_divides(self) -> "SimConfig":
        steps = 1.0 / (self.servo_rate * self.timestep)
        if abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
            raise ValueError(f"servo_rate {self.servo_rate} Hz must be a whole fraction of 1/timestep = {1 / self.timestep:g} Hz")
        return self


# ---------------------------------------------------------------- perturbations


class TaskConfig(_Section):
    """The path-following task."""

    path: PathName = Field("straight", description="Path shape.")
    duration: float = Field(10.0, gt=0, le=3600, description="Run length, s.")
    target_speed: float = Field(0.2, gt=0, le=0.5, description="Desired speed along the path, m/s.")
    path_offset: float = Field(0.0, ge=-1.0, le=1.0, description="Path moved sideways (+y, to the robot's left) from the robot's start, m: the run begins off the path and must converge to it.")
    control_rate: float = Field(10.0, ge=1, le=50, description="Slow-loop (gait action) rate, Hz.")


class SerialConfig(_Section):
    """The servo bus of a real robot (``SerialRobot``) and of its emulator (``legadapt fake-robot``)."""

    port: str = Field("/dev/legadapt", description="Serial device or pyserial URL (/dev/serial/by-id/..., a pty path, socket://host:port).")
    baudrate: int = Field(1_000_000, ge=9600, le=4_500_000, description="Bus speed, bit/s; every device's Baud Rate register must match.")
    timeout: float = Field(0.02, gt=0, le=1, description="Reply timeout of one transaction attempt, s.")
    retries: int = Field(2, ge=0, le=10, description="Retries of a transaction after a timeout or a corrupt reply.")
    fast_sync_read: bool = Field(True, description="Read the servos with Fast Sync Read (one reply packet) instead of Sync Read.")
    servo_ids: list[Annotated[int, Field(ge=0, le=252)]] = Field(
        default_factory=list, max_length=64,
        description="Bus ID of each joint's servo, in joint order; unset: the robot description's bus.servo_ids.")
    imu_gyro_bias: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="Gyro bias subtracted from every IMU reading, rad/s, sensor frame (legadapt calibrate imu writes it).")
    imu_acc_bias: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="Accelerometer bias subtracted from every IMU reading, m/s², sensor frame (legadapt calibrate imu writes it).")
    reboot_on_alert: bool = Field(True, description="At configure (start, and every reconnection after a fault), REBOOT servos that report a hardware error (overload, overheating, voltage...) to clear it; their torque stays off until activate ramps it in. false: refuse to start and name the servo and the error.")
    imu_id: int | None = Field(100, ge=0, le=252, description="Bus ID of the IMU device (register map in hardware.registers); null = no IMU.")
    flow_id: int | None = Field(None, ge=0, le=252, description="Bus ID of the optical-flow device (register map in hardware.registers); unset: the robot description's bus.flow_id; null = none.")
    flow_scale: float = Field(1.0, gt=0.2, lt=5.0, description="Multiplies the flow sensor's counts_per_rad (legadapt calibrate flow writes it).")
    flow_position: tuple[float, float, float] | None = Field(None, description="The flow sensor's lens position, body frame, m, in place of the robot description's (legadapt calibrate flow writes it).")
    directions: dict[JointName, Literal[-1, 1]] = Field(
        default_factory=dict, description="Sign from servo angle to joint angle per joint; unlisted joints +1.")
    zero_offsets: dict[JointName, Annotated[float, Field(ge=-3.14, le=3.14)]] = Field(
        default_factory=dict, description="Servo angle at which the joint is at 0, rad from the horn centre (raw 2048), servo sense; unlisted 0.")

    @model_validator(mode="after")
    def _distinct_ids(self) -> "SerialConfig":
        ids = [*self.servo_ids, *(i for i in (self.imu_id, self.flow_id) if i is not None)]
        if len(set(ids)) != len(ids):
            raise ValueError(f"servo_ids, imu_id and flow_id must all differ, got servo_ids={self.servo_ids}, "
                             f"imu_id={self.imu_id}, flow_id={self.flow_id}")
        return self
