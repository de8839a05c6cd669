"""ReBAL (Nagabandi et al. 2019): a recurrent encoder of the recent window conditions a Δ-state decoder.

Instead of a gradient step (GrBAL), ReBAL adapts by *reading* the last M transitions: a GRU
encodes the normalised (x, y) pairs of the window into a context vector ``h`` [H], and an
MLP decoder predicts the normalised target from concat(x_norm, h). Meta-training is plain
supervised learning over tasks: encode each task's M past transitions, predict its K future
ones (:func:`rebal_loss`).

Shapes: ``S`` state dim, ``A`` action dim, ``T`` target dim (:mod:`legadapt.features`),
``H`` GRU hidden size, ``M`` window length. ``x`` = concat(state, action) [..., S+A] and
``y`` [..., T] are in physical units outside this module, as in :mod:`dynamics.mlp`.

NaN safety (the reference implementation's loss went NaN): inputs and targets are
z-normalised by buffers fitted like :class:`~dynamics.mlp.DeltaMLP`'s and clamped to
±``input_clip`` (10) standard deviations before entering the GRU or the decoder, so one
wild reading cannot saturate the recurrence; :func:`train_step` clips the gradient norm and
skips (and counts) updates whose loss or gradient is non-finite; :class:`RebalAdapter` falls
back to the empty-window context on a non-finite window or context.

The empty-window context is the GRU's initial state, zeros: ``encode`` of an M = 0 window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from legadapt.dynamics.adaptation import Adapter, Context
from legadapt.dynamics.checkpoint import register_model_class
from legadapt.dynamics.maml import TaskBatch, as_task_batch
from legadapt.dynamics.normalizer import Normalizer
from legadapt.dynamics.rollout_model import RolloutModel
from legadapt.features import FeatureSpec


class RecurrentDynamics(nn.Module):
    """GRU window encoder + MLP decoder: ``(x [..., S+A], h [..., H]) -> y_norm [..., T]``.

    ``in_norm`` (dim S+A) and ``out_norm`` (dim T) are z-normalisers (buffers, saved in the
    state dict); ``out_norm`` also defines the normalised target space of the loss. The GRU
    reads the window as a sequence of concat(x_norm, y_norm) [M, S+A+T]; its last layer's
    final hidden state is the context ``h`` (each entry in (-1, 1)). The decoder is a ReLU
    MLP with no normalisation layers.
    """

    def __init__(self, state_dim: int, action_dim: int, target_dim: int,
                 hidden: Sequence[int] = (512, 512, 512), gru_hidden: int = 128, gru_layers: int = 1,
                 input_clip: float = 10.0) -> None:
        super().__init__()
        if min(state_dim, action_dim, target_dim, gru_hidden, gru_layers) <= 0 or any(int(h) <= 0 for h in hidden):
            raise ValueError(f"RecurrentDynamics: dimensions must be positive (state {state_dim}, action {action_dim}, "
                             f"target {target_dim}, hidden {tuple(hidden)}, gru {gru_hidden}x{gru_layers})")
        if not (input_clip > 0 and math.isfinite(input_clip)):
            raise ValueError(f"RecurrentDynamics: input_clip must be positive and finite, got {input_clip}")
        self.state_dim, self.action_dim, self.target_dim = int(state_dim), int(action_dim), int(target_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.gru_hidden, self.gru_layers, self.input_clip = int(gru_hidden), int(gru_layers), float(input_clip)
        self.in_norm = Normalizer(self.input_dim)
        self.out_norm = Normalizer(self.target_dim)
        self.gru = nn.GRU(self.input_dim + self.target_dim, self.gru_hidden, self.gru_layers, batch_first=True)
        layers: list[nn.Module] = []
        width = self.input_dim + self.gru_hidden
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, self.target_dim))
        self.decoder = nn.Sequential(*layers)
        #: Updates :func:`train_step` skipped because the loss or gradient was non-finite (not saved).
        self.skipped_steps = 0

    @classmethod
    def from_spec(cls, spec: FeatureSpec, hidden: Sequence[int] = (512, 512, 512), gru_hidden: int = 128,
                  gru_layers: int = 1) -> RecurrentDynamics:
        """A model sized for a feature spec (state, action and target dims)."""
        return cls(spec.state_dim, spec.action_dim, spec.target_dim, hidden, gru_hidden, gru_layers)

    @property
    def input_dim(self) -> int:
        return self.state_dim + self.action_dim

    def architecture(self) -> dict:
        """Plain-dict description from which :meth:`from_architecture` rebuilds the module (checkpoints)."""
        return {"class": type(self).__name__, "state_dim": self.state_dim, "action_dim": self.action_dim,
                "target_dim": self.target_dim, "hidden": list(self.hidden), "gru_hidden": self.gru_hidden,
                "gru_layers": self.gru_layers, "input_clip": self.input_clip}

    @classmethod
    def from_architecture(cls, arch: Mapping) -> RecurrentDynamics:
        return cls(int(arch["state_dim"]), int(arch["action_dim"]), int(arch["target_dim"]),
                   tuple(int(h) for h in arch["hidden"]), int(arch["gru_hidden"]), int(arch["gru_layers"]),
                   float(arch["input_clip"]))

    def fit_normalizers(self, x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> RecurrentDynamics:
        """Fit the input normaliser on ``x`` [N, S+A] and the target normaliser on ``y`` [N, T]."""
        self.in_norm.fit(x)
        self.out_norm.fit(y)
        return self

    def _clip(self, z: Tensor) -> Tensor:
        return z.clamp(-self.input_clip, self.input_clip)  # ±inf -> ±clip; NaN stays NaN (caught by the guards)

    def zero_context(self, *lead: int) -> Tensor:
        """The empty-window context: zeros [*lead, H] (the GRU's initial state)."""
        ref = self.in_norm.mean
        return torch.zeros(*lead, self.gru_hidden, dtype=ref.dtype, device=ref.device)

    def encode(self, window_x: Tensor, window_y: Tensor) -> Tensor:
        """Context ``h`` [..., H] from windows ``window_x`` [..., M, S+A], ``window_y`` [..., M, T] (units).

        Leading axes (tasks) are batched through the GRU in one call; M = 0 gives zeros.
        """
        if (window_x.shape[-1] != self.input_dim or window_y.shape[-1] != self.target_dim
                or window_x.shape[:-1] != window_y.shape[:-1] or window_x.ndim < 2):
            raise ValueError(f"RecurrentDynamics.encode: expected window_x [..., M, {self.input_dim}] and window_y "
                             f"[..., M, {self.target_dim}], got {tuple(window_x.shape)} and {tuple(window_y.shape)}")
        lead, m = window_x.shape[:-2], window_x.shape[-2]
        if m == 0:
            return self.zero_context(*lead)
        z = torch.cat([self._clip(self.in_norm.normalize(window_x)), self._clip(self.out_norm.normalize(window_y))], -1)
        _, h_n = self.gru(z.reshape(-1, m, z.shape[-1]))  # h_n [layers, N, H]
        return h_n[-1].reshape(*lead, self.gru_hidden)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        """``x`` [..., S+A] unnormalised and context ``h`` [..., H] (broadcast) -> normalised target [..., T]."""
        lead = torch.broadcast_shapes(x.shape[:-1], h.shape[:-1])
        z = self._clip(self.in_norm.normalize(x)).expand(*lead, self.input_dim)
        return self.decoder(torch.cat([z, h.expand(*lead, self.gru_hidden)], dim=-1))

    def predict(self, x: Tensor, h: Tensor) -> Tensor:
        """Like :meth:`forward`, in units: target ``y`` [..., T]."""
        return self.out_norm.denormalize(self(x, h))

    def loss(self, y_pred_norm: Tensor, y: Tensor) -> Tensor:
        """Mean squared error (scalar) between a normalised prediction [..., T] and a target ``y`` [..., T] in units."""
        return torch.mean((y_pred_norm - self.out_norm.normalize(y)) ** 2)


register_model_class("RecurrentDynamics", RecurrentDynamics.from_architecture)


def rebal_loss(model: RecurrentDynamics, batch: TaskBatch | Mapping | tuple, empty_prob: float = 0.0,
               generator: torch.Generator | None = None) -> Tensor:
    """Mean normalised MSE (scalar) on the K future transitions given the encoded M past, over B tasks.

    One batched GRU call encodes all ``past_x`` [B, M, S+A], ``past_y`` [B, M, T]; the decoder
    predicts ``future_y`` [B, K, T] from ``future_x`` [B, K, S+A]. ``empty_prob`` replaces the
    context of that fraction of tasks (drawn per task) by the empty-window zeros, which trains
    the zero context into a sensible task-average model — the adapter's fallback. 0 (default)
    is the paper's objective.
    """
    b = as_task_batch(batch)
    h = model.encode(b.past_x, b.past_y)  # [B, H]
    if empty_prob > 0:
        keep = torch.rand(h.shape[0], 1, generator=generator, device=h.device) >= empty_prob
        h = h * keep.to(h.dtype)
    return model.loss(model(b.future_x, h[:, None, :]), b.future_y)


@torch.no_grad()
def zero_context_loss(model: RecurrentDynamics, batch: TaskBatch | Mapping | tuple) -> Tensor:
    """Mean future loss (scalar) with the empty-window context, for logging next to :func:`rebal_loss`."""
    b = as_task_batch(batch)
    return model.loss(model(b.future_x, model.zero_context()), b.future_y)


class StepResult(NamedTuple):
    """Outcome of one :func:`train_step`: the batch loss, the pre-clip gradient norm, whether it was skipped."""

    loss: float
    grad_norm: float
    skipped: bool


def train_step(model: RecurrentDynamics, optimizer: torch.optim.Optimizer, batch: TaskBatch | Mapping | tuple,
               clip: float = 1.0, empty_prob: float = 0.0) -> StepResult:
    """One optimiser step on :func:`rebal_loss` with the gradient norm clipped to ``clip``.

    A non-finite loss or gradient norm skips the update (gradients are cleared, parameters
    and optimiser state untouched) and increments ``model.skipped_steps``. ``grad_norm`` is
    NaN when the backward pass was not run.
    """
    if not clip > 0:
        raise ValueError(f"train_step: clip must be positive, got {clip}")
    optimizer.zero_grad(set_to_none=True)
    loss = rebal_loss(model, batch, empty_prob)
    value = float(loss.detach())
    if not math.isfinite(value):
        model.skipped_steps += 1
        return StepResult(value, math.nan, True)
    loss.backward()
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
    if not math.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        model.skipped_steps += 1
        return StepResult(value, norm, True)
    optimizer.step()
    return StepResult(value, norm, False)


class RebalAdapter(Adapter):
    """ReBAL: the context is the encoded window, ``{"h": h [H]}``; no gradient step at run time.

    ``last_loss_before`` is the window loss with the empty-window (zero) context,
    ``last_loss_after`` with the encoded one (both normalised MSE). A non-finite window or
    context, or an encoded loss above ``max_loss_ratio`` times the zero-context loss, gives
    the zero context and sets ``last_fallback``.
    """

    kind = "rebal"

    def __init__(self, model: RecurrentDynamics, max_loss_ratio: float = 10.0) -> None:
        super().__init__()
        self.model = model
        self.max_loss_ratio = float(max_loss_ratio)

    def _record(self, before: float, after: float, fallback: bool) -> None:
        self.last_loss_before, self.last_loss_after, self.last_fallback = before, after, fallback

    @torch.no_grad()
    def adapt(self, window_x: Tensor | np.ndarray, window_y: Tensor | np.ndarray) -> Context:
        m = self.model
        ref = m.in_norm.mean
        x = torch.as_tensor(window_x, dtype=ref.dtype, device=ref.device)
        y = torch.as_tensor(window_y, dtype=ref.dtype, device=ref.device)
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != m.input_dim or y.shape[1] != m.target_dim:
            raise ValueError(f"RebalAdapter.adapt: expected window_x [M, {m.input_dim}] and window_y "
                             f"[M, {m.target_dim}], got {tuple(x.shape)} and {tuple(y.shape)}")
        zero = m.zero_context()
        if x.shape[0] == 0:  # nothing observed yet
            self._record(math.nan, math.nan, False)
            return {"h": zero}
        if not bool(torch.isfinite(x).all() and torch.isfinite(y).all()):
            self._record(math.nan, math.nan, True)
            return {"h": zero}
        h = m.encode(x, y)
        before = float(m.loss(m(x, zero), y))
        after = float(m.loss(m(x, h), y)) if bool(torch.isfinite(h).all()) else math.nan
        ok = math.isfinite(before) and math.isfinite(after) and after <= self.max_loss_ratio * before
        self._record(before, after, not ok)
        return {"h": h if ok else zero}

    def predict(self, ctx: Context, states: Tensor, actions: Tensor) -> Tensor:
        m = self.model
        if states.shape[-1] != m.state_dim or actions.shape[-1] != m.action_dim or states.shape[:-1] != actions.shape[:-1]:
            raise ValueError(f"RebalAdapter.predict: expected states [B, {m.state_dim}] and actions "
                             f"[B, {m.action_dim}], got {tuple(states.shape)} and {tuple(actions.shape)}")
        return m.predict(torch.cat([states, actions], dim=-1), ctx["h"])

    def rollout_model(self, ctx: Context, dtype: torch.dtype = torch.float32, batch: int = 500) -> RolloutModel:
        """The decoder with the context folded into its first layer's bias, ``b1 + W1[:, S+A:] h``, as a
        :class:`~legadapt.dynamics.rollout_model.RolloutModel` (``batch``: the usual one): the planner's rollouts
        run the same matrix path as the MLP adapters' (bf16 where native)."""
        m = self.model
        linears = [mod for mod in m.decoder if isinstance(mod, nn.Linear)]
        w1, d = linears[0].weight.detach(), m.input_dim
        b1 = linears[0].bias.detach() + w1[:, d:] @ ctx["h"].detach().to(w1.dtype)
        weights = [(w1[:, :d].contiguous(), b1)] + [(lin.weight.detach(), lin.bias.detach()) for lin in linears[1:]]
        return RolloutModel(weights, m.in_norm.mean, m.in_norm.std, m.out_norm.mean, m.out_norm.std, m.input_clip, dtype, batch)


class RebalObjective(nn.Module):
    """ReBAL as a training objective for ``dynamics.train`` (one DDP wrapper serves all methods).

    Trains with ``empty_prob`` = 0.1: a tenth of the task contexts are zeroed, so the zero
    context (the adapter's fallback after a bad window) is a trained task-average model
    rather than an untrained input.
    """

    kind = "rebal"

    def __init__(self, model: RecurrentDynamics, empty_prob: float = 0.1) -> None:
        super().__init__()
        self.model, self.empty_prob = model, empty_prob

    def forward(self, *batch: Tensor) -> Tensor:
        return rebal_loss(self.model, TaskBatch(*batch), self.empty_prob)

    def evaluate(self, *batch: Tensor) -> dict[str, float]:
        b = TaskBatch(*batch)
        with torch.no_grad():
            post = rebal_loss(self.model, b).item()
            pre = zero_context_loss(self.model, b).item()
        return {"loss": post, "post_adaptation": post, "pre_adaptation": pre}
