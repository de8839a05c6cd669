"""The one config schema of legadapt, and its YAML loader.

Every option is defined and documented here, once (the ``description`` of each field);
``legadapt config-doc`` prints them all. A config file is validated on load into these
typed, frozen objects; anything unknown, mistyped or out of range is refused with
:class:`ConfigError` naming the field and the allowed values, before anything runs.

Units are in the field names or descriptions: m, kg, s, Hz, rad, deg, N·m.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

LegName = Literal["LF", "LM", "LH", "RF", "RM", "RH"]
JointName = Literal[
    "LF_coxa", "LF_femur", "LF_tibia", "LM_coxa", "LM_femur", "LM_tibia", "LH_coxa", "LH_femur", "LH_tibia",
    "RF_coxa", "RF_femur", "RF_tibia", "RM_coxa", "RM_femur", "RM_tibia", "RH_coxa", "RH_femur", "RH_tibia",
]
Vec3 = tuple[float, float, float]
PathName = Literal["straight", "left_turn", "right_turn", "zigzag", "figure8"]


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field and what to do."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- robot and simulation
class ServoConfig(_Section):
    """Servo model (XM430-W350 class), identical on every backend."""

    kp: float = Field(20.0, gt=0, le=500, description="Position gain at the joint, N·m/rad.")
    kv: float = Field(0.35, ge=0, le=10, description="Velocity gain (damping) at the joint, N·m·s/rad.")
    stall_torque: float = Field(4.1, gt=0, le=20, description="Torque limit, N·m.")
    max_speed: float = Field(4.8, gt=0, le=20, description="Goal rate limit (profile velocity), rad/s.")


class RobotConfig(_Section):
    """Physical robot parameters that differ between units of the same hexapod design."""

    body_mass: float = Field(1.25, gt=0.2, le=10, description="Torso mass without legs, kg.")
    foot_friction: float = Field(1.0, gt=0, le=3, description="Coulomb friction coefficient of the feet.")
    servo: ServoConfig = Field(default_factory=ServoConfig, description="Servo model.")


class GaitConfig(_Section):
    """Tripod gait shape and the action space the planner controls."""

    action_mode: Literal["per_side", "per_leg"] = Field(
        "per_side", description="Gait action layout: 'per_side' = [left, right] stride modulation, 'per_leg' = 6 values.")
    frequency: float = Field(2.0, gt=0.2, le=4.0, description="Gait cycles per second, Hz.")
    stride_length: float = Field(0.06, gt=0, le=0.12, description="Foot travel in stance at |action| = 1, m.")
    lift_height: float = Field(0.04, gt=0, le=0.08, description="Swing-foot clearance, m.")
    stance_radius: float = Field(0.13, ge=0.08, le=0.18, description="Horizontal hip-to-foot distance at neutral, m.")
    body_height: float = Field(0.10, ge=0.05, le=0.16, description="Foot depth below the hip plane, m.")


class SimConfig(_Section):
    """Simulated robot settings."""

    backend: Literal["mujoco", "pybullet"] = Field("mujoco", description="Physics backend.")
    timestep: float = Field(0.002, ge=0.0005, le=0.005, description="Physics step, s.")
    servo_rate: float = Field(50.0, ge=10, le=500, description="Fast-loop (servo command) rate, Hz.")
    seed: int = Field(0, ge=0, description="Seed of sensor noise and any randomness in the simulation.")

    @model_validator(mode="after")
    def _servo_rate_divides(self) -> "SimConfig":
        steps = 1.0 / (self.servo_rate * self.timestep)
        if abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
            raise ValueError(f"servo_rate {self.servo_rate} Hz must be a whole fraction of 1/timestep = {1 / self.timestep:g} Hz")
        return self


# ---------------------------------------------------------------- perturbations
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


# ---------------------------------------------------------------- task
class TaskConfig(_Section):
    """The path-following task."""

    path: PathName = Field("straight", description="Path shape.")
    duration: float = Field(10.0, gt=0, le=3600, description="Run length, s.")
    target_speed: float = Field(0.2, gt=0, le=0.5, description="Desired speed along the path, m/s.")
    control_rate: float = Field(10.0, ge=1, le=50, description="Slow-loop (gait action) rate, Hz.")


class ConditionSpec(_Section):
    """One condition of the collection distribution: a named set of perturbations."""

    name: str = Field(min_length=1, description="Label of the condition (used in logs and reports).")
    weight: float = Field(1.0, gt=0, description="Relative probability of drawing this condition for an episode.")
    perturbations: list[Perturbation] = Field(default_factory=list, description="Perturbations, each with its start time.")


class RandomPolicyConfig(_Section):
    """Random gait actions for the first round of data collection."""

    change_prob: float = Field(0.3, ge=0, le=1, description="Probability per control period of drawing a new target action.")
    smoothing: float = Field(0.5, ge=0, lt=1, description="Low-pass factor towards the target action per control period.")


class CollectConfig(_Section):
    """``legadapt collect``: simulated experience across a distribution of conditions."""

    @model_validator(mode="after")
    def _mpc_needs_a_model(self) -> "CollectConfig":
        if self.policy == "mpc" and not self.model:
            raise ValueError("policy 'mpc' plans with a model: set collect.model to a checkpoint")
        return self

    episodes: int = Field(64, ge=1, le=100000, description="Episodes in the whole collection (all shards together).")
    episode_duration: float = Field(15.0, gt=1, le=600, description="Length of one episode, s (cut short by a fall).")
    workers: int = Field(2, ge=1, le=256, description="Parallel worker processes per shard.")
    seed: int = Field(0, ge=0, description="Seed of the episode list; episode i is reproducible on any shard layout.")
    state_source: Literal["privileged", "estimated"] = Field(
        "privileged", description="Model state from the simulator's true state or from onboard-sensor estimation.")
    policy: Literal["random", "mpc"] = Field(
        "random", description="random gait actions (first round), or the adaptive MPC on a model (data aggregation).")
    model: str | None = Field(None, description="Checkpoint the mpc policy plans with (required for policy: mpc).")
    paths: list[PathName] = Field(
        default_factory=lambda: ["straight", "left_turn", "right_turn", "zigzag", "figure8"], min_length=1,
        description="Paths the mpc policy follows, one drawn per episode.")
    random_policy: RandomPolicyConfig = Field(default_factory=RandomPolicyConfig, description="Random action policy.")
    conditions: list[ConditionSpec] = Field(
        default_factory=lambda: [ConditionSpec(name="intact")], min_length=1, description="Conditions drawn per episode.")


class TrainConfig(_Section):
    """``legadapt train``: offline (meta-)training of the dynamics model from logs."""

    method: Literal["grbal", "mb", "rebal"] = Field(
        "grbal", description="grbal = MAML meta-training; mb = plain supervised (also the MB+DE model); rebal = recurrent.")
    hidden: list[Annotated[int, Field(ge=4, le=4096)]] = Field(
        default_factory=lambda: [512, 512, 512], min_length=1, max_length=8, description="Hidden layer widths of the MLP.")
    M: int = Field(16, ge=1, le=512, description="Past transitions adapted on (the online window).")
    K: int = Field(16, ge=1, le=512, description="Future transitions the adapted model is scored on.")
    inner_lr: float = Field(0.01, gt=0, le=1, description="Inner (online) gradient step size on the normalised loss.")
    inner_steps: int = Field(1, ge=1, le=10, description="Inner gradient steps.")
    first_order: bool = Field(False, description="First-order MAML (drop second-order terms).")
    learn_inner_lr: bool = Field(False, description="Learn a per-parameter inner learning rate (Meta-SGD).")
    meta_batch: int = Field(10, ge=1, le=1024, description="Tasks per meta-step (per process under torchrun).")
    batch_size: int = Field(256, ge=1, le=65536, description="Transitions per step for mb training.")
    lr: float = Field(1e-3, gt=0, le=1, description="Adam learning rate.")
    max_steps: int = Field(3000, ge=1, le=10_000_000, description="Upper bound on optimiser steps.")
    eval_every: int = Field(100, ge=1, description="Steps between validation evaluations (and resume checkpoints).")
    patience: int = Field(8, ge=1, description="Evaluations without validation improvement before early stopping.")
    val_fraction: float = Field(0.15, gt=0, lt=0.9, description="Share of trajectories held out for validation.")
    val_tasks: int = Field(200, ge=10, le=100000, description="Fixed validation tasks drawn once.")
    grad_clip: float = Field(10.0, gt=0, description="Gradient-norm clip of every update.")
    rebal_hidden: int = Field(128, ge=4, le=4096, description="ReBAL GRU context size.")
    seed: int = Field(0, ge=0, description="Seed of initialisation and task draws.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train: auto = cuda if available.")


class PlannerConfig(_Section):
    """The sampling MPC planner over the adapted model."""

    kind: Literal["mppi", "cem", "random_shooting"] = Field("mppi", description="Planner.")
    samples: int = Field(500, ge=4, le=100000, description="Candidate action sequences per iteration.")
    horizon: int = Field(10, ge=1, le=200, description="Planning horizon, control periods.")
    iterations: int = Field(1, ge=1, le=50, description="Optimiser iterations per cycle (CEM refits, MPPI updates).")
    temperature: float = Field(0.3, gt=0, description="MPPI temperature, in cost units.")
    noise: float = Field(0.4, gt=0, le=2, description="MPPI noise standard deviation, action units.")
    smoothing_window: int = Field(3, ge=1, le=50, description="MPPI update smoothing over the horizon, steps.")
    elites: int = Field(50, ge=1, description="CEM elites per iteration.")
    alpha: float = Field(0.1, ge=0, lt=1, description="CEM weight kept on the previous mean/std.")
    seed: int = Field(0, ge=0, description="Planner noise seed (deterministic runs).")


class CostConfig(_Section):
    """Path-following cost: weighted squared residuals summed over the horizon."""

    cross_track: float = Field(100.0, ge=0, description="Weight per m² of cross-track error.")
    heading: float = Field(20.0, ge=0, description="Weight per rad² of heading error to the path tangent.")
    speed: float = Field(100.0, ge=0, description="Weight per (m/s)² of speed error along the path.")
    smoothness: float = Field(1.0, ge=0, description="Weight per unit² of action change between steps.")
    terminal: float = Field(5.0, ge=0, description="Extra factor on the last step's residuals.")


class SafetyConfig(_Section):
    """Safety filter and safe stop."""

    max_tilt_deg: float = Field(45.0, gt=5, le=90, description="|roll| or |pitch| beyond this -> safe stop, deg.")
    stale_plan: float = Field(0.5, gt=0, le=10, description="Plan age beyond which the robot safe-stops, s.")
    joint_margin: float = Field(0.02, ge=0, le=0.3, description="Joint targets stay this far inside the limits, rad.")
    max_joint_speed: float = Field(6.0, gt=0, le=50, description="Joint target rate limit, rad/s.")
    ramp_time: float = Field(1.0, ge=0.1, le=10, description="Start-up ramp from the measured pose to standing, s.")
    stop_time: float = Field(0.4, ge=0.05, le=5, description="Safe stop: time to lower the body before torque off, s.")
    crouch_height: float = Field(0.06, ge=0.03, le=0.15, description="Foot depth below the hips in the safe low pose, m.")


class ControllerConfig(_Section):
    """``legadapt run``: the adaptive controller daemon."""

    model: str = Field("models/default.pt", description="Checkpoint of the dynamics model (relative to the repo or absolute).")
    adapter: Literal["auto", "grbal", "mb", "mbde", "rebal"] = Field(
        "auto", description="Online adaptation: auto = the checkpoint's own kind; mbde = MB model + online step.")
    state_source: Literal["privileged", "estimated"] = Field(
        "estimated", description="Model state from onboard sensors (always on hardware) or the simulator's truth.")
    mode: Literal["lockstep", "realtime"] = Field("lockstep", description="Simulated time as fast as the CPU allows, or wall-clock deadlines.")
    planner: PlannerConfig = Field(default_factory=PlannerConfig, description="MPC planner.")
    cost: CostConfig = Field(default_factory=CostConfig, description="Path cost weights.")
    safety: SafetyConfig = Field(default_factory=SafetyConfig, description="Safety filter and stop.")
    log_dir: str = Field("runs/logs", description="Where the MCAP run logs go.")
    status_interval: float = Field(1.0, gt=0, le=60, description="Seconds between live status lines.")
    threads: int = Field(0, ge=0, le=256, description="torch CPU threads for adapt+plan (0 = torch default).")


class SerialConfig(_Section):
    """The servo bus of a real robot (``SerialRobot``) and of its emulator (``legadapt fake-robot``)."""

    port: str = Field("/dev/legadapt", description="Serial device or pyserial URL (/dev/serial/by-id/..., a pty path, socket://host:port).")
    baudrate: int = Field(1_000_000, ge=9600, le=4_500_000, description="Bus speed, bit/s; every device's Baud Rate register must match.")
    timeout: float = Field(0.02, gt=0, le=1, description="Reply timeout of one transaction attempt, s.")
    retries: int = Field(2, ge=0, le=10, description="Retries of a transaction after a timeout or a corrupt reply.")
    fast_sync_read: bool = Field(True, description="Read the servos with Fast Sync Read (one reply packet) instead of Sync Read.")
    servo_ids: list[Annotated[int, Field(ge=0, le=252)]] = Field(
        default_factory=lambda: list(range(1, 19)), min_length=18, max_length=18,
        description="Bus ID of each joint's servo, in joint order LF_coxa .. RH_tibia.")
    imu_id: int | None = Field(100, ge=0, le=252, description="Bus ID of the IMU device (register map in hardware.registers); null = no IMU.")
    directions: dict[JointName, Literal[-1, 1]] = Field(
        default_factory=dict, description="Sign from servo angle to joint angle per joint; unlisted joints +1.")
    zero_offsets: dict[JointName, Annotated[float, Field(ge=-3.14, le=3.14)]] = Field(
        default_factory=dict, description="Servo angle at which the joint is at 0, rad from the horn centre (raw 2048), servo sense; unlisted 0.")

    @model_validator(mode="after")
    def _distinct_ids(self) -> "SerialConfig":
        ids = [*self.servo_ids, *([] if self.imu_id is None else [self.imu_id])]
        if len(set(ids)) != len(ids):
            raise ValueError(f"servo_ids and imu_id must all differ, got servo_ids={self.servo_ids}, imu_id={self.imu_id}")
        return self


Variant = Literal["grbal", "rebal", "mb", "mbde", "oracle_mb"]


class ScenarioConfig(_Section):
    """One sim-to-real perturbation test: a path, a duration, perturbations, backend, seeds."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Scenario name (letters, digits, _ . -).")
    path: PathName = Field("straight", description="Path to follow.")
    duration: float = Field(20.0, gt=1, le=600, description="Run length, s.")
    target_speed: float = Field(0.2, gt=0, le=0.5, description="Desired speed along the path, m/s.")
    backend: Literal["mujoco", "pybullet"] = Field("mujoco", description="Simulator behind the robot interface.")
    state_source: Literal["privileged", "estimated"] = Field(
        "estimated", description="What the controller sees: onboard-sensor estimate or the simulator's truth.")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1, description="Seeds, one run each.")
    perturbations: list[Perturbation] = Field(default_factory=list, description="Perturbations, each with its start time.")
    recover_band: float = Field(0.05, gt=0, le=1, description="Back within this cross-track error (m) for 1 s = recovered.")
    oracle_model: str | None = Field(None, description="MB checkpoint trained on this very condition (the oracle variant).")


class SuiteConfig(_Section):
    """A suite of scenarios run for every controller variant (``configs/suites/*.yaml``)."""

    name: str = Field(min_length=1, description="Suite name.")
    description: str = Field("", description="What the suite tests.")
    variants: list[Variant] = Field(default_factory=lambda: ["grbal", "rebal", "mb", "mbde", "oracle_mb"], min_length=1,
                                    description="Controller variants compared (oracle_mb only where a scenario names its oracle).")
    models: dict[Literal["grbal", "rebal", "mb"], str] = Field(
        default_factory=lambda: {"grbal": "models/default.pt", "rebal": "models/rebal.pt", "mb": "models/mb.pt"},
        description="Checkpoint per model kind; mbde uses the mb model with GrBAL's online step.")
    scenarios: list[ScenarioConfig] = Field(min_length=1, description="The scenarios.")


class LegadaptConfig(_Section):
    """A whole robot config file (``configs/*.yaml``)."""

    robot: RobotConfig = Field(default_factory=RobotConfig, description="Robot physical parameters.")
    gait: GaitConfig = Field(default_factory=GaitConfig, description="Gait and action space.")
    sim: SimConfig = Field(default_factory=SimConfig, description="Simulation settings.")
    perturbations: list[Perturbation] = Field(default_factory=list, description="Perturbations, each with its start time.")
    task: TaskConfig = Field(default_factory=TaskConfig, description="Path-following task.")
    collect: CollectConfig = Field(default_factory=CollectConfig, description="Data collection for meta-training.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Offline training of the dynamics model.")
    controller: ControllerConfig = Field(default_factory=ControllerConfig, description="The adaptive controller daemon.")
    serial: SerialConfig = Field(default_factory=SerialConfig, description="Servo bus of a real or emulated serial robot.")


# ---------------------------------------------------------------- loading
def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config ({err.error_count()} problem{'s' if err.error_count() > 1 else ''}):"]
    for e in err.errors():
        loc = ""
        for part in e["loc"]:
            if isinstance(part, str) and part in PERTURBATION_KINDS:
                continue  # the discriminator tag pydantic inserts, not a user-visible key
            loc += f"[{part}]" if isinstance(part, int) else f".{part}" if loc else str(part)
        msg = e["msg"]
        if e["type"] == "union_tag_invalid":
            got = e.get("ctx", {}).get("tag")
            msg = f"unknown perturbation {got!r}; allowed: {', '.join(PERTURBATION_KINDS)}"
        elif e["type"] == "extra_forbidden":
            msg = "unknown option; check the spelling (legadapt config-doc lists every option)"
        lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_config(data: object, source: str = "<config>") -> LegadaptConfig:
    """Validate already-parsed YAML/JSON data into a :class:`LegadaptConfig`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (robot, gait, sim, perturbations, task), got {type(data).__name__}")
    try:
        return LegadaptConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def _read_yaml(path: str | Path) -> object:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}{where}: malformed YAML: {problem}; fix the syntax at that line") from None
    return data


def load_config(path: str | Path) -> LegadaptConfig:
    """Read and validate a YAML config file; raise :class:`ConfigError` on any problem."""
    return parse_config(_read_yaml(path), str(path))


def load_suite(path: str | Path) -> SuiteConfig:
    """Read and validate a suite file (``configs/suites/*.yaml``)."""
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite file must be a mapping (name, variants, models, scenarios)")
    try:
        return SuiteConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, str(path))) from None


def load_scenario(path: str | Path, variants: list[str] | None = None) -> SuiteConfig:
    """A single scenario file as a one-scenario suite."""
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a scenario file must be a mapping (name, path, duration, perturbations, ...)")
    suite = {"name": str(data.get("name", Path(path).stem)), "scenarios": [data]}
    if variants:
        suite["variants"] = variants
    try:
        return SuiteConfig.model_validate(suite)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, str(path))) from None


def config_doc() -> str:
    """Every option with its type, default and description, as Markdown."""
    out: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            key = f"{prefix}{name}"
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                out.append(f"\n### `{key}` — {field.description}\n")
                walk(ann, key + ".")
            elif name == "perturbations":
                out.append(f"\n### `{key}` — {field.description}\n")
                for cls in (LimpLeg, LockedJoint, WeakMotor, Payload, FloorFriction, Slope, CalibrationError, ImuError, ActionLatency):
                    out.append(f"\n#### `kind: {cls.model_fields['kind'].annotation.__args__[0]}` — {cls.__doc__}\n")
                    walk_fields(cls, "  ")
            elif name == "conditions":
                out.append(f"- `{key}`: {field.description} Each item:")
                walk_fields(ConditionSpec, "  ")
            else:
                out.append(f"- `{key}` (default `{field.get_default(call_default_factory=True)!r}`): {field.description}")

    def walk_fields(model: type[BaseModel], indent: str) -> None:
        for name, field in model.model_fields.items():
            if name != "kind":
                default = "required" if field.is_required() else f"default `{field.get_default(call_default_factory=True)!r}`"
                out.append(f"{indent}- `{name}` ({default}): {field.description}")

    walk(LegadaptConfig, "")
    return "# legadapt config options\n" + "\n".join(out) + "\n"
