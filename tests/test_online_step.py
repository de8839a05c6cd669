"""The hand-backpropagated online step equals the autograd one (dynamics/online_step.py against dynamics/maml.py)."""

from __future__ import annotations

import math

import pytest
import torch

from legadapt.dynamics.maml import adapt_window_with_loss, restrict_rates
from legadapt.dynamics.mlp import DeltaMLP, detached_params, window_loss
from legadapt.dynamics.online_step import mlp_online_step


def _model(weights: bool, seed: int = 0) -> DeltaMLP:
    torch.manual_seed(seed)
    m = DeltaMLP(7, 2, 10, hidden=(32, 24, 16), input_clip=3.0,
                 target_weights=[1, 2, 3, 1, 1, 0.5, 1, 1, 4, 1] if weights else None)
    g = torch.Generator().manual_seed(seed)
    m.fit_normalizers(torch.randn(200, 9, generator=g) * 2 + 1, torch.randn(200, 10, generator=g) * 0.3 - 0.2)
    return m


def _window(m: DeltaMLP, seed: int, spread: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 100)
    x = m.in_norm.mean + spread * m.in_norm.std * torch.randn(16, m.input_dim, generator=g)
    y = m.out_norm.mean + m.out_norm.std * torch.randn(16, m.target_dim, generator=g)
    return x, y


def _rates(m: DeltaMLP, kind: str):
    theta = detached_params(m)
    if kind == "scalar":
        return 0.05
    if kind == "tensor":
        return torch.tensor(0.03)
    g = torch.Generator().manual_seed(7)
    per_entry = {k: 0.01 + 0.05 * torch.rand(v.shape, generator=g) for k, v in theta.items()}
    return restrict_rates(theta, per_entry, 2) if kind == "last-two-layers" else per_entry


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("rates", ["scalar", "tensor", "per-entry", "last-two-layers"])
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("spread", [1.0, 6.0])  # 6 σ: the input clip is active
def test_the_hand_step_is_the_autograd_step(weights, rates, steps, spread) -> None:
    m = _model(weights)
    theta, lrs = detached_params(m), _rates(m, rates)
    x, y = _window(m, steps, spread)
    ref, ref_before = adapt_window_with_loss(m, theta, lrs, x, y, steps)
    with torch.no_grad():
        ref_after = float(window_loss(m, ref, x, y))
    got, before, after = mlp_online_step(m, theta, lrs, x, y, steps)
    assert list(got) == list(ref)
    for k in ref:
        assert torch.allclose(got[k], ref[k], rtol=1e-5, atol=1e-7), k
    moved = max(float((ref[k] - theta[k]).abs().max()) for k in ref)
    assert moved > 1e-4, "the step moves the parameters (else the comparison proves nothing)"
    assert before == pytest.approx(ref_before, rel=1e-5) and after == pytest.approx(ref_after, rel=1e-5)
    assert after < before
    if rates == "last-two-layers":
        assert all(torch.equal(got[k], theta[k]) for k in list(theta)[:-4]), "a rate of 0 holds a parameter"


def test_theta_is_not_written() -> None:
    m = _model(False)
    theta = detached_params(m)
    kept = {k: v.clone() for k, v in theta.items()}
    mlp_online_step(m, theta, 0.1, *_window(m, 3), steps=2)
    assert all(torch.equal(theta[k], kept[k]) for k in kept)


def test_a_non_finite_window_gives_non_finite_losses_not_an_exception() -> None:
    m = _model(False)
    x, y = _window(m, 4)
    y[3, 2] = math.inf
    _, before, after = mlp_online_step(m, detached_params(m), 0.1, x, y)
    assert not math.isfinite(before) and not math.isfinite(after)
