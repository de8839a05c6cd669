"""The online adaptation step of the Δ-state MLP, backpropagated by hand.

Every control cycle the adapter takes one gradient step on the last M (16) transitions. Through
autograd (:func:`legadapt.dynamics.maml.adapt_window_with_loss`) that costs ~6.6 ms on this CPU for a
3×512 MLP, 11× its FLOP count: the graph bookkeeping of a 16-row batch dominates. The network is a
plain chain ``x̂ = clamp((x − μ)/σ, ±c)``, ``h_i = relu(h_{i−1} W_iᵀ + b_i)``, ``ŷ = h_L W_{L+1}ᵀ + b_{L+1}``
with the loss ``mean(w ⊙ (ŷ − (y − μ_y)/σ_y)²)`` over M × T, so its gradient is a handful of matrix
products, written out here:

    g_ŷ = 2 w ⊙ (ŷ − ŷ*) / (M T)             [M, T]
    g_W = g_outᵀ h_in,  g_b = Σ_rows g_out    per layer, last to first
    g_in = (g_out W) ⊙ [h_in > 0]             (not needed below the first layer)

:func:`mlp_online_step` returns the same adapted parameters, loss before and loss after as the
autograd path (``tests/test_online_step.py`` checks it against autograd) without building a graph.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from legadapt.dynamics.maml import InnerLR
from legadapt.dynamics.mlp import DeltaMLP, Params


def linear_names(model: DeltaMLP) -> list[str]:
    """Parameter-name prefixes of the model's linear layers, input to output (``net.0``, ``net.2``, ...)."""
    return [f"net.{name}" for name, mod in model.net.named_children() if isinstance(mod, torch.nn.Linear)]


def _forward(model: DeltaMLP, p: Params, names: list[str], x_hat: Tensor) -> list[Tensor]:
    """Activations [input, hidden..., output] for normalised, clipped inputs ``x_hat`` [M, S+A]."""
    acts = [x_hat]
    h = x_hat
    for i, n in enumerate(names):
        h = torch.addmm(p[f"{n}.bias"], h, p[f"{n}.weight"].t())
        if i + 1 < len(names):
            h = torch.relu(h)
        acts.append(h)
    return acts


def _loss_and_grad(model: DeltaMLP, y_pred: Tensor, y_norm: Tensor) -> tuple[Tensor, Tensor]:
    """(loss, d loss / d y_pred) of the model's weighted normalised MSE."""
    diff = y_pred - y_norm
    scale = 1.0 / diff.numel()
    if model.target_weights is not None:
        wdiff = diff * model.target_w
        return (wdiff * diff).sum() * scale, wdiff * (2.0 * scale)
    return (diff * diff).sum() * scale, diff * (2.0 * scale)


def _rate(lrs: InnerLR, key: str) -> Tensor | float:
    return lrs[key] if isinstance(lrs, Mapping) else lrs


def _step(p: Params, names: list[str], acts: list[Tensor], g_out: Tensor, lrs: InnerLR) -> Params:
    """``p − lr ⊙ ∇`` from the output gradient ``g_out`` [M, T] back through the layers. With one scalar
    rate the weight update is a single GEMM, ``W − lr · g_outᵀ h_in`` (no gradient tensor is made)."""
    new: Params = {}
    for i in range(len(names) - 1, -1, -1):
        n, h_in = names[i], acts[i]
        kw, kb = f"{n}.weight", f"{n}.bias"
        w, rate_w, rate_b = p[kw], _rate(lrs, kw), _rate(lrs, kb)
        g_in = (g_out @ w) * (h_in > 0) if i > 0 else None
        if isinstance(rate_w, Tensor):
            new[kw] = torch.addcmul(w, rate_w, g_out.t() @ h_in, value=-1.0)
        else:
            new[kw] = torch.addmm(w, g_out.t(), h_in, alpha=-float(rate_w))
        g_b = g_out.sum(0)
        new[kb] = torch.addcmul(p[kb], rate_b, g_b, value=-1.0) if isinstance(rate_b, Tensor) else torch.add(p[kb], g_b, alpha=-float(rate_b))
        g_out = g_in
    return {k: new[k] for k in p}


@torch.no_grad()
def mlp_online_step(model: DeltaMLP, theta: Params, lrs: InnerLR, x: Tensor, y: Tensor,
                    steps: int = 1) -> tuple[Params, float, float]:
    """``steps`` gradient steps on the window ``x`` [M, S+A], ``y`` [M, T] (units) from ``theta``.

    Returns (adapted parameters, fresh tensors; window loss before; window loss after), the losses in the
    normalised space (:func:`legadapt.dynamics.mlp.window_loss`). ``lrs``: a rate, or per-entry rates shaped
    like each parameter (a rate of 0 holds a parameter).
    """
    names = linear_names(model)
    x_hat = model.in_norm.normalize(x).clamp(-model.input_clip, model.input_clip)
    y_norm = model.out_norm.normalize(y)
    p, before = dict(theta), float("nan")
    acts = _forward(model, p, names, x_hat)
    for step in range(steps):
        loss, g_out = _loss_and_grad(model, acts[-1], y_norm)
        if step == 0:
            before = float(loss)
        p = _step(p, names, acts, g_out, lrs)
        acts = _forward(model, p, names, x_hat)
    after = float(_loss_and_grad(model, acts[-1], y_norm)[0])
    return p, before, after
