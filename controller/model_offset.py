"""Offset-free MPC: the model's steady error on the window, added to every prediction the planner makes.

A model that is right on average but biased in the current conditions (a limp leg it knows, a
floor that pushes the body sideways) leaves the MPC with a steady error: the plan corrects
for what the model predicts, the robot does what it does, and the gap stays. The textbook
remedy (an integrating disturbance model; Pannocchia and Rawlings, AIChE J. 2003) estimates
that bias from what was measured and adds it to the model, so the plan's equilibrium is the
robot's. Here the estimate is the mean one-step residual over the adaptation window, after
adaptation (what the adapted model still misses), on the chosen target groups only:

    offset[j] = gain · mean_i (y_i[j] − f(s_i, a_i)[j])    for j in the groups, 0 elsewhere

with f the planner's own predictor for this cycle. ``gain`` 0 is off; the rollout adds a zero.

While a model that adapts plans, its step or context already answers the window, but not all of
it: after GrBAL's step on a limp front leg (a condition it never saw) the planner's first step
predicted 0.035 m/s forward where the robot walked 0.118 m/s (uphill; 0.058 against 0.142 on the
flat). ``adaptive_offset: forward`` corrects that miss only (off by default: the robot then walks
slower, README 'The adapted model's forward miss'); one on the sideways displacement and yaw as
well fought the adapted model on a turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from legadapt.features import FeatureSpec, target_groups

#: Target sets the offset may correct (``controller.adaptation.offset_targets``, ``adaptive_offset``).
OFFSET_TARGETS = ("off", "forward", "displacement", "body")


def offset_index(spec: FeatureSpec, targets: str) -> Tensor:
    """Target indices the offset corrects: 'off' (none), 'forward' (dx m), 'displacement' (dx m, dy m,
    dyaw rad) or 'body' (attitude, velocities and the displacement: what the planner integrates)."""
    d = spec.displacement_slice
    if targets == "off":
        return torch.arange(0)
    if targets == "forward":
        return torch.arange(d.start, d.start + 1)
    if targets == "displacement":
        return torch.arange(d.start, d.stop)
    if targets == "body":
        return torch.as_tensor(target_groups(spec)["body"])
    raise ValueError(f"offset targets {targets!r}: allowed {', '.join(OFFSET_TARGETS)}")


def window_offset(predict: Callable[[Tensor, Tensor], Tensor], window_x: Sequence[np.ndarray] | np.ndarray,
                  window_y: Sequence[np.ndarray] | np.ndarray, state_dim: int, index: Tensor, gain: float) -> Tensor:
    """The offset [T] (target units) from the window ``x`` [M, S+A], ``y`` [M, T] and this cycle's predictor
    ``predict(states [M, S], actions [M, A]) -> [M, T]``; zeros where the window holds a non-finite value."""
    x = torch.as_tensor(np.asarray(window_x), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(window_y), dtype=torch.float32)
    out = torch.zeros(y.shape[1])
    with torch.no_grad():
        residual = (y - predict(x[:, :state_dim], x[:, state_dim:]))[:, index].mean(0)
    if bool(torch.isfinite(residual).all()):
        out[index] = gain * residual
    return out


__all__ = ["OFFSET_TARGETS", "offset_index", "window_offset"]
