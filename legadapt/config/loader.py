"""The whole config file, its YAML loaders, error formatting and the option reference."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

from legadapt.config.base import ConfigError, _Section
from legadapt.config.yaml_file import read_yaml
from legadapt.config.perturbations import (PERTURBATION_KINDS, ActionLatency, CalibrationError, FloorFriction, ImuError,
                                           LimpLeg, LockedJoint, Payload, Perturbation, Slope, WeakMotor)
from legadapt.config.mocap import MocapConfig
from legadapt.config.robot import GaitConfig, RobotConfig, SerialConfig, SimConfig, TaskConfig
from legadapt.config.runtime import CollectConfig, ConditionSpec, ControllerConfig, TrainConfig
from legadapt.config.robot_fit import robot_name_problems, with_robot_defaults
from legadapt.config.suites import SuiteConfig
from legadapt.robot.description import RobotDescription, load_description
from legadapt import resources

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
    mocap: MocapConfig = Field(default_factory=MocapConfig, description="Motion capture (state_source estimated+mocap).")

    @model_validator(mode="before")
    @classmethod
    def _robot_defaults(cls, data: object) -> object:
        return with_robot_defaults(data)

    @model_validator(mode="after")
    def _robot_names(self) -> LegadaptConfig:
        problems = robot_name_problems(self, self.robot_description)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def robot_description(self) -> RobotDescription:
        """The robot ``robot.description`` names, with this config's per-unit values (mass, friction, servo gains)."""
        from dataclasses import replace

        desc = load_description(self.robot.description)
        s = self.robot.servo
        servo = replace(desc.servo, kp=s.kp, kv=s.kv, stall_torque=s.stall_torque, max_speed=s.max_speed)
        return replace(desc, body_mass=self.robot.body_mass, foot_friction=self.robot.foot_friction, servo=servo)


# ---------------------------------------------------------------- loading
def format_errors(err: ValidationError, source: str, what: str = "config") -> str:
    """One line per problem, named by its key (``perturbations[0].leg: ...``), under ``source: invalid <what>``."""
    lines = [f"{source}: invalid {what} ({err.error_count()} problem{'s' if err.error_count() > 1 else ''}):"]
    for e in err.errors():
        loc = ""
        for part in e["loc"]:
            if isinstance(part, str) and part in PERTURBATION_KINDS:
                continue  # the discriminator tag pydantic inserts, not a user-visible key
            loc += f"[{part}]" if isinstance(part, int) else f".{part}" if loc else str(part)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "union_tag_invalid":
            got = e.get("ctx", {}).get("tag")
            msg = f"unknown perturbation {got!r}; allowed: {', '.join(PERTURBATION_KINDS)}"
        elif e["type"] == "extra_forbidden":
            msg = "unknown option; check the spelling" + (" (legadapt config-doc lists every option)" if what == "config"
                                                          else "")
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
        raise ConfigError(format_errors(err, source)) from None


def _read_yaml(path: str | Path) -> object:
    return read_yaml(path, "config file")


def config_path(path: str | Path) -> Path:
    """A config file as given, else the shipped one of that name (``configs/hexapod_sim.yaml``, ``hexapod_sim.yaml``)."""
    return resources.resolve(path, "configs")


def _models_next_to(cfg: LegadaptConfig, config_dir: Path) -> LegadaptConfig:
    """``controller.model``, ``controller.adaptation.plain_model`` and ``collect.model`` found next to the config
    file, made absolute there."""
    def near(model: str | None) -> str | None:
        if model is None or Path(model).expanduser().is_absolute() or not (config_dir / model).exists():
            return model
        return str((config_dir / model).resolve())

    ctrl = cfg.controller
    adaptation = ctrl.adaptation.model_copy(update={"plain_model": near(ctrl.adaptation.plain_model)})
    return cfg.model_copy(update={
        "controller": ctrl.model_copy(update={"model": near(ctrl.model), "adaptation": adaptation}),
        "collect": cfg.collect.model_copy(update={"model": near(cfg.collect.model)})})


def load_config(path: str | Path) -> LegadaptConfig:
    """Read and validate a YAML config file (found by :func:`config_path`); relative model paths in it are looked
    for next to it first (legadapt.resources). Raise :class:`ConfigError` on any problem (an empty file too)."""
    path = config_path(path)
    data = _read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the config file is empty (no settings at all): is it the right file? "
                          "Write {} in it to run with every default")
    if isinstance(data, dict) and ("legs" in data or "urdf" in data) and "robot" not in data:
        raise ConfigError(f"{path} is a robot description, not a config: name it in a config "
                          f"(robot: {{description: {path}}}) and check that config")
    return _models_next_to(parse_config(_description_next_to(data, path.parent), str(path)), path.parent)


def _description_next_to(data: object, config_dir: Path) -> object:
    """A ``robot.description`` YAML path found next to the config file, made absolute there."""
    robot = data.get("robot") if isinstance(data, dict) else None
    desc = robot.get("description") if isinstance(robot, dict) else None
    if not isinstance(desc, str) or Path(desc).is_absolute() or not (config_dir / desc).is_file():
        return data
    return {**data, "robot": {**robot, "description": str((config_dir / desc).resolve())}}


def load_suite(path: str | Path) -> SuiteConfig:
    """Read and validate a suite file (``configs/suites/*.yaml``); its model paths are found as
    :func:`legadapt.resources.resolve` says, next to the suite file first."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite file must be a mapping (name, variants, models, scenarios)")
    try:
        suite = SuiteConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err, str(path))) from None
    return _suite_models_found(suite, path.parent)


def _suite_models_found(suite: SuiteConfig, base_dir: Path) -> SuiteConfig:
    """Model paths found (legadapt.resources), the robot's description too; every scenario's perturbations checked
    against the robot (a leg it does not have is refused before any run)."""
    models = {kind: str(resources.resolve(m, "models", base_dir)) for kind, m in suite.models.items()}
    ensemble = [str(resources.resolve(m, "models", base_dir)) for m in suite.ensemble]
    robot = suite.robot
    if Path(robot).suffix in (".yaml", ".yml") and not Path(robot).is_absolute() and (base_dir / robot).is_file():
        robot = str((base_dir / robot).resolve())
    for sc in suite.scenarios:
        parse_config({"robot": {"description": robot}, "perturbations": [p.model_dump(mode="json") for p in sc.perturbations]},
                     f"suite {suite.name}, scenario {sc.name}")
    return suite.model_copy(update={"models": models, "ensemble": ensemble, "robot": robot})


def load_scenario(path: str | Path, variants: list[str] | None = None) -> SuiteConfig:
    """A single scenario file as a one-scenario suite (a top-level ``robot`` names the robot, as in a suite)."""
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a scenario file must be a mapping (name, path, duration, perturbations, ...)")
    data = dict(data)
    robot = data.pop("robot", None)
    suite = {"name": str(data.get("name", Path(path).stem)), "scenarios": [data], **({"robot": robot} if robot else {})}
    if variants:
        suite["variants"] = variants
    try:
        return _suite_models_found(SuiteConfig.model_validate(suite), Path(path).parent)
    except ValidationError as err:
        raise ConfigError(format_errors(err, str(path))) from None


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
