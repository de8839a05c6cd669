"""Continuous condition distributions: a condition's perturbation fields drawn per episode.

A collection condition may name fields of its perturbations to draw for every episode,
so that the meta-training distribution covers ranges (a leg's strength from limp to
intact, a slope in any direction, a payload anywhere on the torso) instead of a list of
fixed cases::

    - name: weak_leg
      perturbations: [{kind: weak_motor, joints: [LM_coxa, LM_femur, LM_tibia]}]
      vary:
        0.joints: {choice: [[LM_coxa, LM_femur, LM_tibia], [RH_coxa, RH_femur, RH_tibia]]}
        0.kp_scale,0.force_scale: {uniform: [0.05, 1.0]}   # one draw, both fields
        0.offset.1: {uniform: [-0.05, 0.05]}                # one component of a vector

A key is ``<perturbation index>.<field>[.<component>]``; several keys separated by commas
share one draw. A draw is ``{uniform: [lo, hi]}`` or ``{choice: [v, ...]}``. Every drawn
perturbation is validated again, so a draw outside a field's limits is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError, model_validator

from legadapt.config.base import _Section


class Draw(_Section):
    """One random draw: uniform in [lo, hi] or one of a list of values."""

    uniform: tuple[float, float] | None = Field(None, description="Uniform draw in [lo, hi].")
    choice: list[Any] | None = Field(None, min_length=1, description="One of these values, equally likely.")

    @model_validator(mode="after")
    def _one_kind(self) -> "Draw":
        if (self.uniform is None) == (self.choice is None):
            raise ValueError("a draw is either {uniform: [lo, hi]} or {choice: [values]}")
        if self.uniform is not None and not (np.isfinite(self.uniform).all() and self.uniform[0] <= self.uniform[1]):
            raise ValueError(f"uniform range {list(self.uniform)} must be finite with lo <= hi")
        return self

    def extremes(self) -> list[Any]:
        """The values a check must accept: both ends of a range, every choice."""
        return list(self.uniform) if self.uniform is not None else list(self.choice)

    def sample(self, rng: np.random.Generator) -> Any:
        if self.uniform is not None:
            return float(rng.uniform(*self.uniform))
        return self.choice[int(rng.integers(len(self.choice)))]


def parse_key(key: str, n_perturbations: int) -> list[tuple[int, str, int | None]]:
    """``"0.kp_scale,1.offset.2"`` -> [(0, 'kp_scale', None), (1, 'offset', 2)]; raises ValueError."""
    out = []
    for part in key.split(","):
        bits = part.strip().split(".")
        if len(bits) not in (2, 3) or not bits[0].isdigit() or (len(bits) == 3 and not bits[2].isdigit()):
            raise ValueError(f"vary key {part!r}: expected <perturbation index>.<field>[.<component>]")
        index = int(bits[0])
        if index >= n_perturbations:
            raise ValueError(f"vary key {part!r}: the condition has {n_perturbations} perturbation(s)")
        out.append((index, bits[1], int(bits[2]) if len(bits) == 3 else None))
    return out


def draw_perturbations(perturbations: list, vary: Mapping[str, Draw], rng: np.random.Generator) -> list:
    """The condition's perturbations with the ``vary`` fields drawn from ``rng`` (validated again)."""
    return substitute(perturbations, {key: draw.sample(rng) for key, draw in vary.items()})


def check_vary(perturbations: list, vary: Mapping[str, Draw]) -> None:
    """Raise ValueError unless every key names a field and every extreme of every draw is valid."""
    for key, draw in vary.items():
        for value in draw.extremes():
            try:
                substitute(perturbations, {key: value})
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(x) for x in first["loc"][1:])  # loc[0] is the perturbation kind
                raise ValueError(f"vary {key!r} = {value!r}: {where}: {first['msg']}") from None


def substitute(perturbations: list, values: Mapping[str, Any]) -> list:
    """The perturbations with the fields named by each key of ``values`` set to its value (validated)."""
    from legadapt.config.perturbations import Perturbation

    data = [p.model_dump(mode="json") for p in perturbations]
    for key, value in values.items():
        for index, name, component in parse_key(key, len(data)):
            if name not in data[index]:
                raise ValueError(f"vary key {key!r}: perturbation {index} ({data[index]['kind']}) has no field {name!r}")
            if component is None:
                data[index][name] = value
            else:
                vec = list(data[index][name])
                if component >= len(vec):
                    raise ValueError(f"vary key {key!r}: {name} has {len(vec)} components")
                vec[component] = value
                data[index][name] = vec
    adapter = TypeAdapter(Perturbation)
    return [adapter.validate_python(d) for d in data]
