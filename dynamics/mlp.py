"""The Δ-state MLP: z-normalised (state, action) in, z-normalised target (Δstate + body displacement) out.

Shapes: ``S`` state dim (28 on the hexapod), ``A`` action dim (2, or one per leg), ``T`` target dim (S + 3); see
:mod:`legadapt.features`. Inputs ``x`` = concat(state, action) [..., S+A] and targets ``y``
[..., T] are in physical units everywhere outside this module; the normalisers are
submodules whose statistics are buffers, so they travel in the state dict and checkpoint.

The model is used functionally by MAML and the adapters: :func:`params` gives the trainable
parameters as a dict of tensors, and :func:`predict` / :func:`predict_norm` run the model
with any such dict through :func:`torch.func.functional_call` (no deep copies).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from legadapt.dynamics.normalizer import Normalizer
from legadapt.features import FeatureSpec

Params = dict[str, Tensor]


class DeltaMLP(nn.Module):
    """MLP ``x [..., S+A] -> y_norm [..., T]`` with ReLU hidden layers and no normalisation layers.

    ``in_norm`` (dim S+A) normalises the input, ``out_norm`` (dim T) defines the normalised
    target space in which the network predicts and the loss is measured.

    Normalised inputs are clamped to ±``input_clip`` standard deviations: a condition never
    seen in training (a leg that never failed, hanging at an angle 16 σ from anything in
    the data) would otherwise drive the ReLU net far into extrapolation, and one gradient
    step on such a window makes the prediction worse, not better. Measured on the held-out
    limp front leg: one-step error 1.36 -> 3.69 after adaptation unclamped, 0.42 -> 0.20
    at ±5 σ, 0.26 -> 0.18 at ±3 σ.
    """

    def __init__(self, state_dim: int, action_dim: int, target_dim: int,
                 hidden: Sequence[int] = (512, 512, 512), input_clip: float = 4.0,
                 target_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if min(state_dim, action_dim, target_dim) <= 0 or any(int(h) <= 0 for h in hidden):
            raise ValueError(f"DeltaMLP: dimensions must be positive (state {state_dim}, action {action_dim}, "
                             f"target {target_dim}, hidden {tuple(hidden)})")
        self.state_dim, self.action_dim, self.target_dim = int(state_dim), int(action_dim), int(target_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.input_clip = float(input_clip)
        self.in_norm = Normalizer(self.input_dim)
        self.out_norm = Normalizer(self.target_dim)
        layers: list[nn.Module] = []
        width = self.input_dim
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, self.target_dim))
        self.net = nn.Sequential(*layers)
        self.target_weights = loss_weights(target_weights, self.target_dim)
        if self.target_weights is not None:  # part of the architecture, not of the state dict
            self.register_buffer("target_w", torch.tensor(self.target_weights, dtype=torch.float32), persistent=False)

    @classmethod
    def from_spec(cls, spec: FeatureSpec, hidden: Sequence[int] = (512, 512, 512),
                  target_weights: Sequence[float] | None = None) -> DeltaMLP:
        """A model sized for a feature spec (state, action and target dims)."""
        return cls(spec.state_dim, spec.action_dim, spec.target_dim, hidden, target_weights=target_weights)

    @property
    def input_dim(self) -> int:
        return self.state_dim + self.action_dim

    def architecture(self) -> dict:
        """Plain-dict description from which :meth:`from_architecture` rebuilds the module (checkpoints)."""
        arch = {"class": type(self).__name__, "state_dim": self.state_dim, "action_dim": self.action_dim,
                "target_dim": self.target_dim, "hidden": list(self.hidden), "input_clip": self.input_clip}
        if self.target_weights is not None:
            arch["target_weights"] = list(self.target_weights)
        return arch

    @classmethod
    def from_architecture(cls, arch: dict) -> DeltaMLP:
        return cls(int(arch["state_dim"]), int(arch["action_dim"]), int(arch["target_dim"]),
                   tuple(int(h) for h in arch["hidden"]), float(arch.get("input_clip", 4.0)), arch.get("target_weights"))

    def fit_normalizers(self, x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> DeltaMLP:
        """Fit the input normaliser on ``x`` [N, S+A] and the target normaliser on ``y`` [N, T]."""
        self.in_norm.fit(x)
        self.out_norm.fit(y)
        return self

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [..., S+A] unnormalised -> predicted normalised target [..., T]."""
        return self.net(self.in_norm.normalize(x).clamp(-self.input_clip, self.input_clip))

    def loss(self, y_pred_norm: Tensor, y: Tensor) -> Tensor:
        """Mean squared error (scalar) between a normalised prediction [..., T] and a target ``y`` [..., T] in units,
        each target weighted by ``target_weights`` (mean 1) where the model has them."""
        return torch.mean(self._weighted_sq(y_pred_norm, y))

    def errors(self, y_pred_norm: Tensor, y: Tensor) -> Tensor:
        """The same per transition: [...] (the mean over the targets), whose mean is :meth:`loss`."""
        return self._weighted_sq(y_pred_norm, y).mean(-1)

    def _weighted_sq(self, y_pred_norm: Tensor, y: Tensor) -> Tensor:
        sq = (y_pred_norm - self.out_norm.normalize(y)) ** 2
        return sq * self.target_w if self.target_weights is not None else sq


def loss_weights(weights: Sequence[float] | None, target_dim: int) -> tuple[float, ...] | None:
    """Per-target loss weights [T] scaled to mean 1 (so losses stay comparable), or None for equal weights."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float)
    if w.shape != (target_dim,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"target weights must be {target_dim} finite non-negative numbers, not all 0; got {list(w)}")
    w = w * (target_dim / w.sum())
    return None if np.allclose(w, 1.0) else tuple(float(x) for x in w)


def params(model: nn.Module) -> Params:
    """The trainable parameters of ``model`` by name (the live tensors: gradients reach the module)."""
    return {k: p for k, p in model.named_parameters() if p.requires_grad}


def detached_params(model: nn.Module) -> Params:
    """The trainable parameters, detached (shared storage, no autograd): the θ* an adapter resets to."""
    return {k: p.detach() for k, p in params(model).items()}


def buffers(model: nn.Module) -> dict[str, Tensor]:
    """The module's buffers (normaliser statistics) by name."""
    return dict(model.named_buffers())


def predict_norm(model: nn.Module, p: Params, x: Tensor) -> Tensor:
    """Run ``model`` with parameters ``p``: ``x`` [..., S+A] -> normalised target [..., T]."""
    return functional_call(model, (p, buffers(model)), (x,))


def predict(model: DeltaMLP, p: Params, x: Tensor) -> Tensor:
    """Run ``model`` with parameters ``p``: ``x`` [..., S+A] unnormalised -> target ``y`` [..., T] in units."""
    return model.out_norm.denormalize(predict_norm(model, p, x))


def window_loss(model: DeltaMLP, p: Params, x: Tensor, y: Tensor) -> Tensor:
    """Normalised-space MSE (scalar) of parameters ``p`` on transitions ``x`` [..., S+A], ``y`` [..., T]."""
    return model.loss(predict_norm(model, p, x), y)
