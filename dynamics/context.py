"""Context adapters that read the window instead of stepping on it: PEARL-style and attention.

Both infer a context vector ``h`` [D] from the last M transitions and condition a Δ-state
decoder on it, like ReBAL (:mod:`dynamics.rebal`), and both are invariant to the order of
the window's transitions (a set, not a sequence):

* **PEARL-style probabilistic context** (Rakelly et al. 2019): every transition
  (x_norm, y_norm) is mapped to a Gaussian factor N(μ_i, σ_i²) over a latent task variable
  z [D]; the posterior is their product (precision-weighted), so more evidence narrows it.
  Training samples z from the posterior (reparameterised) and adds ``kl_weight`` × KL
  (posterior ‖ N(0, I)); at run time the context is the posterior mean. No evidence gives
  the prior, whose mean is the zero context.
* **Attention over the window** (SNAIL / Set Transformer style): the transitions are
  embedded as tokens, mixed by two self-attention layers (no positional encoding), and
  pooled by attention from a learned query into h [D].

Shapes: ``x`` = concat(state, action) [..., S+A] and ``y`` [..., T] in physical units, as in
:mod:`dynamics.mlp`; windows [..., M, S+A] and [..., M, T]. Inputs and targets are
z-normalised and clamped to ±``input_clip`` σ before any network sees them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from legadapt.dynamics.checkpoint import register_model_class
from legadapt.dynamics.maml import TaskBatch
from legadapt.dynamics.normalizer import Normalizer
from legadapt.dynamics.rebal import RebalAdapter, rebal_loss, zero_context_loss
from legadapt.config import TrainConfig

#: PEARL's KL weight when none is given: the config's default (one place defines it).
DEFAULT_KL_WEIGHT: float = TrainConfig.model_fields["kl_weight"].default

ENCODERS = ("pearl", "attention")
TOKEN_WIDTH = 256  # hidden width of the per-transition token network
HEADS = 4  # attention heads (the context width must be a multiple)
MIN_VAR = 1e-4  # floor on a PEARL factor's variance (latent units²)


def _mlp(width_in: int, hidden: Sequence[int], width_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width_in, h), nn.ReLU()]
        width_in = h
    return nn.Sequential(*layers, nn.Linear(width_in, width_out))


class ContextDynamics(nn.Module):
    """Window encoder (``encoder`` 'pearl' | 'attention') + MLP decoder ``(x, h) -> y_norm [..., T]``.

    Same interface as :class:`dynamics.rebal.RecurrentDynamics` (``encode``, ``zero_context``,
    ``forward``, ``predict``, ``loss``), so :class:`ContextAdapter` and the training loss are shared.
    """

    def __init__(self, state_dim: int, action_dim: int, target_dim: int, encoder: str = "pearl",
                 hidden: Sequence[int] = (512, 512, 512), context_dim: int = 32, input_clip: float = 10.0) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"ContextDynamics: unknown encoder {encoder!r}; allowed: {', '.join(ENCODERS)}")
        if encoder == "attention" and context_dim % HEADS:
            raise ValueError(f"ContextDynamics: the attention context width must be a multiple of {HEADS}, got {context_dim}")
        self.state_dim, self.action_dim, self.target_dim = int(state_dim), int(action_dim), int(target_dim)
        self.encoder_kind, self.hidden, self.context_dim = encoder, tuple(int(h) for h in hidden), int(context_dim)
        self.gru_hidden = self.context_dim  # the name the shared ReBAL code reads
        self.input_clip = float(input_clip)
        self.in_norm = Normalizer(self.input_dim)
        self.out_norm = Normalizer(self.target_dim)
        token_in = self.input_dim + self.target_dim
        if encoder == "pearl":
            self.tokens = _mlp(token_in, (TOKEN_WIDTH, TOKEN_WIDTH), 2 * self.context_dim)
        else:
            self.tokens = _mlp(token_in, (TOKEN_WIDTH,), self.context_dim)
            layer = nn.TransformerEncoderLayer(self.context_dim, HEADS, dim_feedforward=2 * TOKEN_WIDTH, dropout=0.0,
                                               batch_first=True)
            self.mixer = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
            self.query = nn.Parameter(torch.zeros(1, 1, self.context_dim))
            self.pool = nn.MultiheadAttention(self.context_dim, HEADS, batch_first=True)
        self.decoder = _mlp(self.input_dim + self.context_dim, self.hidden, self.target_dim)
        self.skipped_steps = 0

    @property
    def input_dim(self) -> int:
        return self.state_dim + self.action_dim

    def architecture(self) -> dict:
        """Plain-dict description from which :meth:`from_architecture` rebuilds the module (checkpoints)."""
        return {"class": type(self).__name__, "encoder": self.encoder_kind, "state_dim": self.state_dim,
                "action_dim": self.action_dim, "target_dim": self.target_dim, "hidden": list(self.hidden),
                "context_dim": self.context_dim, "input_clip": self.input_clip}

    @classmethod
    def from_architecture(cls, arch: Mapping) -> ContextDynamics:
        return cls(int(arch["state_dim"]), int(arch["action_dim"]), int(arch["target_dim"]), str(arch["encoder"]),
                   tuple(int(h) for h in arch["hidden"]), int(arch["context_dim"]), float(arch["input_clip"]))

    def fit_normalizers(self, x: Tensor, y: Tensor) -> ContextDynamics:
        """Fit the input normaliser on ``x`` [N, S+A] and the target normaliser on ``y`` [N, T]."""
        self.in_norm.fit(x)
        self.out_norm.fit(y)
        return self

    def _clip(self, z: Tensor) -> Tensor:
        return z.clamp(-self.input_clip, self.input_clip)

    def zero_context(self, *lead: int) -> Tensor:
        """The no-evidence context: zeros [*lead, D] (PEARL: the prior's mean)."""
        ref = self.in_norm.mean
        return torch.zeros(*lead, self.context_dim, dtype=ref.dtype, device=ref.device)

    def _token_input(self, window_x: Tensor, window_y: Tensor) -> Tensor:
        if (window_x.shape[-1] != self.input_dim or window_y.shape[-1] != self.target_dim
                or window_x.shape[:-1] != window_y.shape[:-1] or window_x.ndim < 2):
            raise ValueError(f"ContextDynamics.encode: expected window_x [..., M, {self.input_dim}] and window_y "
                             f"[..., M, {self.target_dim}], got {tuple(window_x.shape)} and {tuple(window_y.shape)}")
        return torch.cat([self._clip(self.in_norm.normalize(window_x)), self._clip(self.out_norm.normalize(window_y))], -1)

    def posterior(self, window_x: Tensor, window_y: Tensor) -> tuple[Tensor, Tensor]:
        """PEARL: mean and variance [..., D] of the product of the transitions' Gaussian factors."""
        f = self.tokens(self._token_input(window_x, window_y))  # [..., M, 2D]
        mu, var = f[..., :self.context_dim], nn.functional.softplus(f[..., self.context_dim:]) + MIN_VAR
        precision = (1.0 / var).sum(-2)
        return (mu / var).sum(-2) / precision, 1.0 / precision

    def encode(self, window_x: Tensor, window_y: Tensor) -> Tensor:
        """Context ``h`` [..., D] from windows [..., M, S+A] and [..., M, T] (units); M = 0 gives zeros."""
        lead, m = window_x.shape[:-2], window_x.shape[-2]
        if m == 0:
            return self.zero_context(*lead)
        if self.encoder_kind == "pearl":
            return self.posterior(window_x, window_y)[0]
        tok = self.tokens(self._token_input(window_x, window_y)).reshape(-1, m, self.context_dim)
        mixed = self.mixer(tok)
        pooled, _ = self.pool(self.query.expand(mixed.shape[0], 1, self.context_dim), mixed, mixed, need_weights=False)
        return pooled[:, 0].reshape(*lead, self.context_dim)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        """``x`` [..., S+A] unnormalised and context ``h`` [..., D] (broadcast) -> normalised target [..., T]."""
        lead = torch.broadcast_shapes(x.shape[:-1], h.shape[:-1])
        z = self._clip(self.in_norm.normalize(x)).expand(*lead, self.input_dim)
        return self.decoder(torch.cat([z, h.expand(*lead, self.context_dim)], dim=-1))

    def predict(self, x: Tensor, h: Tensor) -> Tensor:
        """Like :meth:`forward`, in units: target ``y`` [..., T]."""
        return self.out_norm.denormalize(self(x, h))

    def loss(self, y_pred_norm: Tensor, y: Tensor) -> Tensor:
        """Mean squared error (scalar) between a normalised prediction [..., T] and a target ``y`` [..., T] in units."""
        return torch.mean((y_pred_norm - self.out_norm.normalize(y)) ** 2)


register_model_class("ContextDynamics", ContextDynamics.from_architecture)


def pearl_loss(model: ContextDynamics, b: TaskBatch, kl_weight: float, empty_prob: float = 0.1) -> Tensor:
    """PEARL objective (scalar): future MSE with z drawn from the posterior of the past window, plus
    ``kl_weight`` × the mean KL(posterior ‖ N(0, I)) per task; ``empty_prob`` of the tasks see the prior."""
    mu, var = model.posterior(b.past_x, b.past_y)  # [B, D]
    z = mu + var.sqrt() * torch.randn_like(mu)
    keep = (torch.rand(z.shape[0], 1, device=z.device) >= empty_prob).to(z.dtype)
    z = z * keep + torch.randn_like(z) * (1 - keep)  # no evidence: a draw from the prior
    kl = 0.5 * (var + mu**2 - 1.0 - var.log()).sum(-1).mean()
    return model.loss(model(b.future_x, z[:, None, :]), b.future_y) + kl_weight * kl


class ContextObjective(nn.Module):
    """PEARL or attention as a training objective for ``dynamics.train`` (see :class:`dynamics.rebal.RebalObjective`)."""

    def __init__(self, model: ContextDynamics, kl_weight: float = DEFAULT_KL_WEIGHT, empty_prob: float = 0.1) -> None:
        super().__init__()
        self.model, self.kl_weight, self.empty_prob = model, float(kl_weight), float(empty_prob)
        self.kind = model.encoder_kind

    def forward(self, *batch: Tensor) -> Tensor:
        b = TaskBatch(*batch)
        if self.model.encoder_kind == "pearl":
            return pearl_loss(self.model, b, self.kl_weight, self.empty_prob)
        return rebal_loss(self.model, b, self.empty_prob)

    def evaluate(self, *batch: Tensor) -> dict[str, float]:
        b = TaskBatch(*batch)
        with torch.no_grad():
            post = rebal_loss(self.model, b).item()  # the posterior mean / pooled context, as at run time
            pre = zero_context_loss(self.model, b).item()
        return {"loss": post if math.isfinite(post) else math.inf, "post_adaptation": post, "pre_adaptation": pre}


class ContextAdapter(RebalAdapter):
    """The run-time adapter of a :class:`ContextDynamics`: context = the encoded window, ``{"h": h [D]}``."""

    def __init__(self, model: ContextDynamics, max_loss_ratio: float = 10.0) -> None:
        super().__init__(model, max_loss_ratio)  # type: ignore[arg-type]
        self.kind = model.encoder_kind
