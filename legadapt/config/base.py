"""Shared pieces of the config schema: the error type, the strict base model, name types."""

from __future__ import annotations

import importlib.util
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

#: A leg or joint name; that the robot has it is checked against its description (legadapt.config.robot_fit).
LegName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9]{0,15}$")]
JointName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9]{0,15}_(coxa|femur|tibia)$")]
Vec3 = tuple[float, float, float]
PathName = Literal["straight", "left_turn", "right_turn", "zigzag", "figure8"]
#: What the controller's model state comes from: the simulator's truth, or the onboard estimate from the IMU
#: and the legs, fused (controller.fusion) with the optical-flow sensor of the robot description and a
#: motion-capture system (the mocap section) where named.
StateSourceName = Literal["privileged", "estimated", "estimated+flow", "estimated+mocap", "estimated+flow+mocap"]
SEED_MAX = 2**32 - 1  # largest seed: numpy and torch both take it (torch refuses 2**64 and beyond)


def _engine_installed(name: str) -> str:
    """``name`` if its physics engine can be imported here; else ValueError naming what to install."""
    if name == "pybullet" and importlib.util.find_spec("pybullet") is None:
        raise ValueError("the pybullet backend needs the pybullet package, which is not installed (it is an extra): "
                         "pip install 'legadapt[pybullet]', or choose mujoco")
    return name


#: A physics engine (``sim.backend``, a scenario's ``backend``); pybullet is the optional extra.
SimBackend = Annotated[Literal["mujoco", "pybullet"], AfterValidator(_engine_installed)]


class ConfigError(ValueError):
    """A config that cannot be used; the message names the field and what to do."""


class _Section(BaseModel):
    """Strict base of every section: unknown keys are errors, and every number must be finite
    (``.inf`` and ``.nan`` are refused everywhere, inside vectors and mappings too)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
