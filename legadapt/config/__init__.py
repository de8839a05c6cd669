"""The one config schema of legadapt, and its YAML loader (a package: one module per group of sections).

Every option is defined and documented here, once (the ``description`` of each field);
``legadapt config-doc`` prints them all. A config file is validated on load into these
typed, frozen objects; anything unknown, mistyped or out of range is refused with
:class:`ConfigError` naming the field and the allowed values, before anything runs.

Units are in the field names or descriptions: m, kg, s, Hz, rad, deg, N·m.
"""

from legadapt.config.base import ConfigError, JointName, LegName, PathName, Vec3, _Section
from legadapt.config.loader import LegadaptConfig, config_doc, load_config, load_scenario, load_suite, parse_config
from legadapt.config.mocap import MocapConfig
from legadapt.config.perturbations import (PERTURBATION_KINDS, ActionLatency, CalibrationError, FloorFriction, ImuError,
                                           LimpLeg, LockedJoint, Payload, Perturbation, PerturbationBase, Slope,
                                           WeakMotor)
from legadapt.config.robot import GaitConfig, RobotConfig, SerialConfig, ServoConfig, SimConfig, TaskConfig
from legadapt.config.runtime import (AdaptationConfig, CollectConfig, ConditionSpec, ControllerConfig, CostConfig, LiveViewConfig, PlannerConfig,
                                     RandomPolicyConfig, SafetyConfig, TrainConfig)
from legadapt.config.suites import ScenarioConfig, SuiteConfig, Variant

__all__ = [
    "ActionLatency", "AdaptationConfig", "CalibrationError", "CollectConfig", "ConditionSpec", "ConfigError", "ControllerConfig", "CostConfig",
    "FloorFriction", "GaitConfig", "ImuError", "JointName", "LegName", "LegadaptConfig", "LimpLeg", "LiveViewConfig", "LockedJoint", "MocapConfig",
    "PERTURBATION_KINDS", "PathName", "Payload", "Perturbation", "PerturbationBase", "PlannerConfig",
    "RandomPolicyConfig", "RobotConfig", "SafetyConfig", "ScenarioConfig", "SerialConfig", "ServoConfig", "SimConfig",
    "Slope", "SuiteConfig", "TaskConfig", "TrainConfig", "Variant", "Vec3", "WeakMotor", "_Section", "config_doc",
    "load_config", "load_scenario", "load_suite", "parse_config",
]
