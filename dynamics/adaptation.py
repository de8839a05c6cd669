"""The one adaptation interface the controller calls, and its MLP implementations (GrBAL, MB, MB+DE).

Every control cycle the controller hands the adapter the last M transitions and gets back a
*context*; the planner then calls :meth:`Adapter.predict` with that context on batches of
candidate states and actions. A context is a plain ``dict[str, Tensor]``: for the MLP
adapters it is the (adapted) parameters by name, run through ``functional_call`` — no
module copies; a recurrent adapter (ReBAL) may carry a hidden state in it as well.

Shapes: window ``x`` [M, S+A] (concat(state, action), units), window ``y`` [M, T] (units);
``predict`` takes states [B, S] and actions [B, A] and returns targets [B, T] in units
(any leading batch shape works, as long as states and actions agree).

Safety: an adapter never returns worse than θ*. If the window or the adapted parameters
are non-finite, or the adapted loss on the window exceeds ``max_loss_ratio`` (10) times the
loss before, it returns θ* and sets ``last_fallback``. ``last_loss_before`` /
``last_loss_after`` are window MSEs in normalised target space (what the adaptation log
channel records); after a fallback ``last_loss_after`` is the rejected candidate's loss.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from legadapt.dynamics.maml import InnerLR, restrict_rates
from legadapt.dynamics.online_step import mlp_online_step
from legadapt.dynamics.mlp import DeltaMLP, detached_params, params, predict, window_loss
from legadapt.dynamics.rollout_model import RolloutModel

#: What :meth:`Adapter.adapt` returns and :meth:`Adapter.predict` consumes: tensors by name.
Context = dict[str, Tensor]


@dataclass(frozen=True)
class Gate:
    """Take the online step only where it generalises: fitted without the window's last ``holdout``
    transitions, it must lower their error by at least the share ``min_gain`` (0 = off)."""

    holdout: int = 0
    min_gain: float = 0.0
#: Adapter kinds as stored in checkpoints and configs.
ADAPTER_KINDS = ("grbal", "mb", "mbde", "rebal", "pearl", "attention")


class Adapter(ABC):
    """Online adaptation: ``adapt(window) -> context``, ``predict(context, s, a) -> targets``."""

    kind: str = ""

    def __init__(self) -> None:
        self.last_loss_before: float = math.nan
        self.last_loss_after: float = math.nan
        self.last_fallback: bool = False

    @abstractmethod
    def adapt(self, window_x: Tensor | np.ndarray, window_y: Tensor | np.ndarray) -> Context:
        """Context for the current conditions from the last transitions ``window_x`` [M, S+A], ``window_y`` [M, T]."""

    @abstractmethod
    def predict(self, ctx: Context, states: Tensor, actions: Tensor) -> Tensor:
        """Targets [B, T] (units: Δstate + body displacement) for states [B, S] and actions [B, A]."""

    @property
    def plans_plainly(self) -> bool:
        """True when the context this adapter hands out is a plainly trained model's, untouched by the window (no step,
        no context): what the controller's offset may correct (controller/model_offset.py)."""
        return False

    def reset(self) -> None:
        """Forget per-episode state (a new run starts). Stateless adapters do nothing."""

    def rollout_model(self, ctx: Context, dtype: torch.dtype = torch.float32,
                      batch: int = 500) -> Callable[[Tensor, Tensor], Tensor] | None:
        """A fast predictor for the planner's rollouts with ``ctx`` (matrices in ``dtype``), or None where this
        adapter has none (the planner then calls :meth:`predict`)."""
        return None

    def dynamics(self, ctx: Context) -> Callable[[Tensor, Tensor], Tensor]:
        """``ctx`` bound: the batched callable ``f(states [B, S], actions [B, A]) -> targets [B, T]``."""
        return lambda states, actions: self.predict(ctx, states, actions)


class MLPAdapter(Adapter):
    """Common machinery of the Δ-state MLP adapters: θ* reset, gradient steps, guards, prediction.

    ``lrs`` are positive inner rates (scalar, or a dict of elementwise rates shaped like the
    parameters); ``steps`` = 0 means no adaptation. θ* is read from ``model`` on every call
    (detached views, never written), so a model trained further in place is picked up.
    """

    def __init__(self, model: DeltaMLP, lrs: InnerLR = 0.0, steps: int = 0, max_loss_ratio: float = 10.0,
                 gate: Gate | None = None) -> None:
        super().__init__()
        if steps < 0:
            raise ValueError(f"{type(self).__name__}: steps must be >= 0, got {steps}")
        self.gate = gate or Gate()
        self.last_gated = False
        self.model = model
        self.lrs: InnerLR = ({k: v.detach() for k, v in lrs.items()} if isinstance(lrs, Mapping)
                             else lrs.detach() if isinstance(lrs, Tensor) else float(lrs))
        self.steps = int(steps)
        self.max_loss_ratio = float(max_loss_ratio)
        self._theta_rollout: tuple[tuple, RolloutModel] | None = None  # (key, θ* unpacked for the planner)

    @property
    def plans_plainly(self) -> bool:
        return self.steps == 0

    def theta_star(self) -> Context:
        """The model's own parameters, detached (shared storage: treat as read-only)."""
        return detached_params(self.model)

    def _window(self, window_x: Tensor | np.ndarray, window_y: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
        ref = next(iter(self.model.buffers()))
        x = torch.as_tensor(window_x, dtype=ref.dtype, device=ref.device)
        y = torch.as_tensor(window_y, dtype=ref.dtype, device=ref.device)
        m = self.model
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != m.input_dim or y.shape[1] != m.target_dim:
            raise ValueError(f"{type(self).__name__}.adapt: expected window_x [M, {m.input_dim}] and window_y "
                             f"[M, {m.target_dim}], got {tuple(x.shape)} and {tuple(y.shape)}")
        return x, y

    def _record(self, before: float, after: float, fallback: bool) -> None:
        self.last_loss_before, self.last_loss_after, self.last_fallback = before, after, fallback

    def adapt(self, window_x: Tensor | np.ndarray, window_y: Tensor | np.ndarray) -> Context:
        theta = self.theta_star()
        x, y = self._window(window_x, window_y)
        if x.shape[0] == 0:  # nothing observed yet: the prior is all there is
            self._record(math.nan, math.nan, False)
            return theta
        if not bool(torch.isfinite(x).all() and torch.isfinite(y).all()):
            self._record(math.nan, math.nan, True)
            return theta
        self.last_gated = self.steps > 0 and not self._step_generalises(theta, x, y)
        if self.steps == 0 or self.last_gated:
            with torch.no_grad():
                loss = float(window_loss(self.model, theta, x, y))
            self._record(loss, loss, False)
            return theta
        adapted, before, after = mlp_online_step(self.model, theta, self.lrs, x, y, self.steps)
        with torch.no_grad():
            # A sum is non-finite if any entry is (or, conservatively, if it overflows); ~15x
            # cheaper than an elementwise isfinite over the ~0.5 M parameters.
            finite = bool(torch.stack([v.sum() for v in adapted.values()]).isfinite().all())
        ok = finite and math.isfinite(before) and math.isfinite(after) and after <= self.max_loss_ratio * before
        self._record(before, after, not ok)
        return adapted if ok else theta

    def _step_generalises(self, theta: Context, x: Tensor, y: Tensor) -> bool:
        """The gate: a step fitted on the window without its last ``holdout`` transitions lowers the
        error on those (by at least ``min_gain``). True when the gate is off or the window too short."""
        h = self.gate.holdout
        if h <= 0 or x.shape[0] < 2 * h:
            return True
        trial, _, _ = mlp_online_step(self.model, theta, self.lrs, x[:-h], y[:-h], self.steps)
        with torch.no_grad():
            before = float(window_loss(self.model, theta, x[-h:], y[-h:]))
            after = float(window_loss(self.model, trial, x[-h:], y[-h:]))
        return after <= (1.0 - self.gate.min_gain) * before

    def predict(self, ctx: Context, states: Tensor, actions: Tensor) -> Tensor:
        m = self.model
        if states.shape[-1] != m.state_dim or actions.shape[-1] != m.action_dim or states.shape[:-1] != actions.shape[:-1]:
            raise ValueError(f"{type(self).__name__}.predict: expected states [B, {m.state_dim}] and actions "
                             f"[B, {m.action_dim}], got {tuple(states.shape)} and {tuple(actions.shape)}")
        return predict(m, ctx, torch.cat([states, actions], dim=-1))


    def rollout_model(self, ctx: Context, dtype: torch.dtype = torch.float32, batch: int = 500) -> RolloutModel:
        """:class:`dynamics.rollout_model.RolloutModel` of the model with parameters ``ctx`` (``batch``: the usual one).

        θ* itself (the context of a cycle without a step: MB, or a gated or switched-off GrBAL) is unpacked once and
        reused until the model's parameters or normalisers change (their version counters and storage say so)."""
        m = self.model
        theta = dict(m.named_parameters())
        if all(k not in ctx or ctx[k].data_ptr() == p.data_ptr() for k, p in theta.items()):
            key = (dtype, batch, tuple(p._version for p in theta.values()),
                   tuple((b.data_ptr(), b._version) for b in m.buffers()))
            if self._theta_rollout is None or self._theta_rollout[0] != key:
                self._theta_rollout = (key, self._unpack(theta, theta, dtype, batch))
            return self._theta_rollout[1]
        return self._unpack(ctx, theta, dtype, batch)

    def _unpack(self, ctx: Context, theta: Context, dtype: torch.dtype, batch: int) -> RolloutModel:
        m = self.model
        names = [name for name, mod in m.net.named_children() if isinstance(mod, torch.nn.Linear)]
        weights = [(ctx.get(f"net.{n}.weight", theta[f"net.{n}.weight"]), ctx.get(f"net.{n}.bias", theta[f"net.{n}.bias"]))
                   for n in names]
        return RolloutModel(weights, m.in_norm.mean, m.in_norm.std, m.out_norm.mean, m.out_norm.std, m.input_clip, dtype,
                            batch)


class GrBALAdapter(MLPAdapter):
    """GrBAL: reset to the meta-trained θ*, then ``steps`` gradient steps with the meta-trained inner rates."""

    kind = "grbal"

    def __init__(self, model: DeltaMLP, lrs: InnerLR, steps: int = 1, max_loss_ratio: float = 10.0,
                 gate: Gate | None = None) -> None:
        super().__init__(model, lrs, steps, max_loss_ratio, gate)


class MBAdapter(MLPAdapter):
    """MB: no adaptation; the context is θ* (the window loss is still reported)."""

    kind = "mb"

    def __init__(self, model: DeltaMLP) -> None:
        super().__init__(model, 0.0, 0)


class MBDEAdapter(MLPAdapter):
    """MB+DE: a plainly trained model with the same online gradient step (rate ``lr``) as GrBAL."""

    kind = "mbde"

    def __init__(self, model: DeltaMLP, lr: InnerLR = 1e-2, steps: int = 1, max_loss_ratio: float = 10.0,
                 gate: Gate | None = None) -> None:
        super().__init__(model, lr if isinstance(lr, Mapping) else float(lr), steps, max_loss_ratio, gate)


def make_adapter(kind: str, model: DeltaMLP, lrs: InnerLR | None = None, steps: int = 1,
                 default_lr: float = 1e-2, gate: Gate | None = None, lr_scale: float = 1.0,
                 adapt_layers: int = 0) -> Adapter:
    """Build an adapter by kind ('grbal' | 'mb' | 'mbde' on a DeltaMLP, 'rebal' on a RecurrentDynamics,
    'pearl' | 'attention' on a ContextDynamics).

    ``lrs=None`` uses ``default_lr``; ``lr_scale`` multiplies the rate(s); ``adapt_layers`` > 0
    moves only the last N layers; the context adapters ignore all of these.
    """
    rates = scale_rates(default_lr if lrs is None else lrs, lr_scale)
    if kind == "mbde" and isinstance(rates, Mapping):
        raise ValueError("MB+DE takes a scalar learning rate, not learned per-parameter rates")
    if kind in ("grbal", "mbde"):
        rates = restrict_rates(params(model), rates, adapt_layers)
    if kind == "grbal":
        return GrBALAdapter(model, rates, steps, gate=gate)
    if kind == "mb":
        return MBAdapter(model)
    if kind == "mbde":
        return MBDEAdapter(model, rates, steps, gate=gate)
    if kind == "rebal":
        # Imported here: dynamics.rebal imports this module.
        from legadapt.dynamics.rebal import RebalAdapter, RecurrentDynamics

        if not isinstance(model, RecurrentDynamics):
            raise ValueError("adapter 'rebal' needs the recurrent model (dynamics.rebal), not a DeltaMLP")
        return RebalAdapter(model)
    if kind in ("pearl", "attention"):
        from legadapt.dynamics.context import ContextAdapter, ContextDynamics

        if not isinstance(model, ContextDynamics) or model.encoder_kind != kind:
            raise ValueError(f"adapter {kind!r} needs a context model trained with --method {kind}")
        return ContextAdapter(model)
    raise ValueError(f"unknown adapter kind {kind!r}; allowed: {', '.join(ADAPTER_KINDS)}")


def scale_rates(rates: InnerLR, factor: float) -> InnerLR:
    """Inner learning rate(s) times ``factor`` (scalar, tensor or per-parameter dict)."""
    if factor == 1.0:
        return rates
    if isinstance(rates, Mapping):
        return {k: v * factor for k, v in rates.items()}
    return rates * factor
