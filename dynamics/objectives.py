"""Training objectives as modules, so one DistributedDataParallel wrapper serves every method.

Each objective owns the model (and, for GrBAL, the learned inner learning rates) and its
``forward(batch)`` returns the scalar training loss; ``evaluate(batch)`` returns the
validation figures (normalised-space MSE, unitless) without touching gradients of the
outer optimiser. Batches are task batches ``(past_x [B,M,S+A], past_y [B,M,T],
future_x [B,K,S+A], future_y [B,K,T])``; the MB objective uses the windows as plain
transitions (past and future together).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from legadapt.dynamics.maml import MamlConfig, TaskBatch, meta_loss, pre_adaptation_loss, restrict_rates
from legadapt.dynamics.mlp import DeltaMLP, params


def _key(name: str) -> str:
    return name.replace(".", "__")


class GrBALObjective(nn.Module):
    """MAML meta-loss: post-adaptation MSE on the K future transitions (second order by default),
    plus ``pre_weight`` × θ*'s own loss on them: a θ* that is itself a good model where nothing
    needs adapting (0 = the paper's objective)."""

    kind = "grbal"

    def __init__(self, model: DeltaMLP, cfg: MamlConfig, pre_weight: float = 0.0) -> None:
        super().__init__()
        self.model, self.cfg, self.pre_weight = model, cfg, float(pre_weight)
        self.log_lrs = nn.ParameterDict(
            {_key(k): nn.Parameter(torch.full_like(p.detach(), math.log(cfg.inner_lr))) for k, p in params(model).items()}
        ) if cfg.learn_inner_lr else None

    def lrs(self) -> dict[str, Tensor] | float:
        """Inner learning rates: per-parameter tensors when learned, else the scalar ``cfg.inner_lr``;
        0 outside the last ``cfg.adapt_layers`` layers when set."""
        rates = self.cfg.inner_lr if self.log_lrs is None else {k: self.log_lrs[_key(k)].exp() for k in params(self.model)}
        return restrict_rates(params(self.model), rates, self.cfg.adapt_layers)

    def forward(self, *batch: Tensor) -> Tensor:
        b = TaskBatch(*batch)
        loss = meta_loss(self.model, params(self.model), self.lrs(), b, self.cfg)
        if self.pre_weight > 0:
            loss = loss + self.pre_weight * self.model.loss(self.model(b.future_x), b.future_y)
        return loss

    def evaluate(self, *batch: Tensor) -> dict[str, float]:
        b = TaskBatch(*batch)
        post = meta_loss(self.model, params(self.model), self.lrs(), b, self.cfg).item()
        pre = pre_adaptation_loss(self.model, params(self.model), b).item()
        return {"loss": post, "post_adaptation": post, "pre_adaptation": pre}


class MBObjective(nn.Module):
    """Plain supervised one-step MSE (MB); MB+DE reuses this model with an online step."""

    kind = "mb"

    def __init__(self, model: DeltaMLP, cfg: MamlConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, *batch: Tensor) -> Tensor:
        b = TaskBatch(*batch)
        x = torch.cat([b.past_x, b.future_x], dim=1)  # every transition of the windows
        y = torch.cat([b.past_y, b.future_y], dim=1)
        return self.model.loss(self.model(x), y)

    def evaluate(self, *batch: Tensor) -> dict[str, float]:
        b = TaskBatch(*batch)
        pre = pre_adaptation_loss(self.model, params(self.model), b).item()
        with_step = meta_loss(self.model, params(self.model), self.cfg.inner_lr, b, self.cfg).item()
        return {"loss": pre, "pre_adaptation": pre, "post_adaptation": with_step}


def make_objective(method: str, model: nn.Module, cfg: MamlConfig, pre_weight: float = 0.0,
                   kl_weight: float | None = None) -> nn.Module:
    """The objective module of ``method`` ('grbal' | 'mb' | 'rebal' | 'pearl' | 'attention');
    ``kl_weight`` None = the config's default (pearl only)."""
    if method == "grbal":
        return GrBALObjective(model, cfg, pre_weight)
    if method == "mb":
        return MBObjective(model, cfg)
    if method == "rebal":
        from legadapt.dynamics.rebal import RebalObjective

        return RebalObjective(model)
    if method in ("pearl", "attention"):
        from legadapt.dynamics.context import DEFAULT_KL_WEIGHT, ContextObjective

        kl = DEFAULT_KL_WEIGHT if kl_weight is None else kl_weight
        return ContextObjective(model, kl if method == "pearl" else 0.0)
    raise ValueError(f"unknown training method {method!r}; allowed: grbal, mb, rebal, pearl, attention")
