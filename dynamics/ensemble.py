"""An ensemble of adapters: several trainings of one recipe, each adapted on the same window, their predictions averaged.

Two trainings of the same data and configuration (different seeds, or code that changed between
them) walk a limp leg differently by about ±1 cm of cross-track and ±0.1–0.2 m of progress in 20 s
(README, "the spread of one recipe"). Averaging the members' predictions is the plain remedy for
that spread (a deep ensemble; Lakshminarayanan et al., NeurIPS 2017): every member adapts on the
window as it would alone, and the planner integrates their mean::

    predict(ctx, s, a) = (1/K) Σ_k f_k(ctx_k, s, a)          [B, T] target units

The context is one dict: member ``k``'s tensors under ``"<k>/<name>"``. The cost is K adaptation
steps and K rollouts per plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from legadapt.dynamics.adaptation import Adapter, Context


class EnsembleAdapter(Adapter):
    """The mean of ``members`` (at least 2 adapters of one kind), each adapted on the same window."""

    def __init__(self, members: Sequence[Adapter]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        kinds = {m.kind for m in members}
        if len(kinds) != 1:
            raise ValueError(f"ensemble members must be of one adapter kind, got {sorted(kinds)}")
        self.members = list(members)
        self.kind = members[0].kind

    def reset(self) -> None:
        for m in self.members:
            m.reset()

    def adapt(self, window_x: Tensor | np.ndarray, window_y: Tensor | np.ndarray) -> Context:
        """Every member's context from the window [M, S+A], [M, T]; the losses logged are the members' means."""
        ctx: Context = {}
        before, after = [], []
        for k, m in enumerate(self.members):
            ctx.update({f"{k}/{name}": v for name, v in m.adapt(window_x, window_y).items()})
            before.append(m.last_loss_before)
            after.append(m.last_loss_after)
        self.last_loss_before, self.last_loss_after = _mean(before), _mean(after)
        self.last_fallback = any(m.last_fallback for m in self.members)
        return ctx

    def split(self, ctx: Context) -> list[Context]:
        """Member ``k``'s context from the ensemble's ``ctx``: [K] dicts."""
        out: list[Context] = [{} for _ in self.members]
        for key, v in ctx.items():
            k, _, name = key.partition("/")
            out[int(k)][name] = v
        return out

    def predict(self, ctx: Context, states: Tensor, actions: Tensor) -> Tensor:
        """The members' mean prediction [B, T] for states [B, S], actions [B, A]."""
        preds = [m.predict(c, states, actions) for m, c in zip(self.members, self.split(ctx))]
        return torch.stack(preds).mean(0)

    def rollout_model(self, ctx: Context, dtype: torch.dtype = torch.float32,
                      batch: int = 500) -> Callable[[Tensor, Tensor], Tensor] | None:
        """The members' fast predictors (or their plain ``predict``), averaged: a fresh [B, T] tensor per call."""
        fs = [m.rollout_model(c, dtype, batch) or m.dynamics(c) for m, c in zip(self.members, self.split(ctx))]
        scale = 1.0 / len(fs)

        def mean(states: Tensor, actions: Tensor) -> Tensor:
            out = fs[0](states, actions)
            for f in fs[1:]:
                out.add_(f(states, actions))
            return out.mul_(scale)
        return mean


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


__all__ = ["EnsembleAdapter"]
