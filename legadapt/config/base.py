"""Shared pieces of the config schema: the error type, the strict base model, name types."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

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
