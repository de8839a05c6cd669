"""Perturbation scenarios and suites (``configs/suites/*.yaml``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from legadapt.config.base import SEED_MAX, PathName, StateSourceName, SimBackend, _Section
from legadapt.config.perturbations import Perturbation

#: Controller variants a suite compares; grbal_ensemble is GrBAL with the ensemble of trainings (``controller.adaptation.ensemble``).
Variant = Literal["grbal", "grbal_ensemble", "rebal", "pearl", "attention", "mb", "mbde", "oracle_mb"]


class ScenarioConfig(_Section):
    """One sim-to-real perturbation test: a path, a duration, perturbations, backend, seeds."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Scenario name (letters, digits, _ . -).")
    path: PathName = Field("straight", description="Path to follow.")
    duration: float = Field(20.0, gt=1, le=600, description="Run length, s.")
    target_speed: float = Field(0.2, gt=0, le=0.5, description="Desired speed along the path, m/s.")
    backend: SimBackend = Field("mujoco", description="Simulator behind the robot interface.")
    state_source: StateSourceName = Field(
        "estimated", description="What the controller sees: onboard-sensor estimate or the simulator's truth.")
    seeds: list[Annotated[int, Field(ge=0, le=SEED_MAX)]] = Field(default_factory=lambda: [0], min_length=1, description="Seeds, one run each.")
    perturbations: list[Perturbation] = Field(default_factory=list, description="Perturbations, each with its start time.")
    recover_band: float = Field(0.05, gt=0, le=1, description="Recovered = back within this cross-track error (m) for the rest of the run (at least 1 s), m.")
    corridor: float = Field(0.10, gt=0, le=1, description="Task score: distance made good along the path while within this cross-track error, m.")
    oracle_model: str | None = Field(None, description="MB checkpoint trained on this very condition (the oracle variant).")


class SuiteConfig(_Section):
    """A suite of scenarios run for every controller variant (``configs/suites/*.yaml``)."""

    name: str = Field(min_length=1, description="Suite name.")
    description: str = Field("", description="What the suite tests.")
    robot: str = Field("hexapod", min_length=1, max_length=4096, description=(
        "The robot every scenario runs on: a shipped description (hexapod, phantomx, quadruped) or a description YAML."))
    variants: list[Variant] = Field(default_factory=lambda: ["grbal", "rebal", "mb", "mbde", "oracle_mb"], min_length=1,
                                    description="Controller variants compared (oracle_mb only where a scenario names its oracle).")
    models: dict[Literal["grbal", "rebal", "pearl", "attention", "mb"], str] = Field(
        default_factory=lambda: {"grbal": "models/default.pt", "rebal": "models/rebal.pt", "pearl": "models/pearl.pt",
                                 "attention": "models/attention.pt", "mb": "models/mb.pt"},
        description="Checkpoint per model kind; mbde uses the mb model with GrBAL's online step.")
    ensemble: list[str] = Field(
        default_factory=lambda: ["models/default_member1.pt", "models/default_member2.pt"], min_length=1, max_length=7,
        description="The grbal_ensemble variant: GrBAL checkpoints averaged with the grbal model (controller.adaptation.ensemble).")
    scenarios: list[ScenarioConfig] = Field(min_length=1, description="The scenarios.")
    controller: dict[str, Any] = Field(default_factory=dict, description=(
        "Controller options for every run (as in a config's controller section, e.g. {adaptation: {gate_holdout: 4}}); "
        "model, adapter, state_source and the planner seed are set per run."))

    @model_validator(mode="after")
    def _controller_options_valid(self) -> "SuiteConfig":
        from legadapt.config.runtime import ControllerConfig

        ControllerConfig.model_validate(self.controller)
        return self
