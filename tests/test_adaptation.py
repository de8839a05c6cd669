"""Online adapters (GrBAL, MB, MB+DE): loss reduction, θ* untouched, fallbacks, batched prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from legadapt.dynamics.adaptation import GrBALAdapter, MBAdapter, MBDEAdapter, make_adapter
from legadapt.dynamics.maml import init_log_lrs, lrs_from_log
from legadapt.dynamics.mlp import DeltaMLP, params, predict
from conftest import STATE_DIM, TARGET_DIM

A = 2


@pytest.fixture(scope="module")
def model() -> DeltaMLP:
    torch.manual_seed(0)
    m = DeltaMLP(STATE_DIM, A, TARGET_DIM, (64, 64))
    x = torch.randn(500, STATE_DIM + A) * 0.5
    return m.fit_normalizers(x, torch.randn(500, TARGET_DIM) * 0.02)


def window(m_rows: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m_rows, STATE_DIM + A, generator=g) * 0.5
    y = torch.randn(m_rows, TARGET_DIM, generator=g) * 0.02 + 0.01
    return x, y


def snapshot(m: DeltaMLP) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def assert_is_theta_star(ctx: dict[str, torch.Tensor], m: DeltaMLP) -> None:
    own = params(m)
    assert set(ctx) == set(own)
    for k, v in own.items():
        assert torch.equal(ctx[k], v.detach())


def test_grbal_adapt_reduces_window_loss(model: DeltaMLP) -> None:
    ad = GrBALAdapter(model, 1e-2, steps=1)
    ctx = ad.adapt(*window())
    assert ad.last_loss_after < ad.last_loss_before
    assert not ad.last_fallback
    assert all(not v.requires_grad for v in ctx.values())
    two = GrBALAdapter(model, 1e-2, steps=2)
    two.adapt(*window())
    assert two.last_loss_after < ad.last_loss_after


def test_learned_rates_and_numpy_windows(model: DeltaMLP) -> None:
    lrs = lrs_from_log(init_log_lrs(params(model), 1e-2))
    ad = make_adapter("grbal", model, lrs, steps=1)
    x, y = window()
    ad.adapt(x.numpy(), y.numpy().astype(np.float64))
    assert ad.last_loss_after < ad.last_loss_before and not ad.last_fallback


def test_mb_returns_theta_star(model: DeltaMLP) -> None:
    ad = MBAdapter(model)
    ctx = ad.adapt(*window())
    assert_is_theta_star(ctx, model)
    assert ad.last_loss_before == ad.last_loss_after and math.isfinite(ad.last_loss_before)
    assert not ad.last_fallback


def test_mbde_adapts_like_an_online_step(model: DeltaMLP) -> None:
    ad = MBDEAdapter(model, lr=1e-2)
    ad.adapt(*window())
    assert ad.last_loss_after < ad.last_loss_before and not ad.last_fallback


@pytest.mark.parametrize("make", [lambda m: GrBALAdapter(m, 1e-2), lambda m: MBDEAdapter(m, 1e-2)])
def test_fallback_on_nan_window(model: DeltaMLP, make) -> None:
    ad = make(model)
    x, y = window()
    x[3, 5] = float("nan")
    ctx = ad.adapt(x, y)
    assert ad.last_fallback
    assert_is_theta_star(ctx, model)
    s, a = torch.zeros(4, STATE_DIM), torch.zeros(4, A)
    assert torch.isfinite(ad.predict(ctx, s, a)).all()
    ad.adapt(*window())  # recovers on the next clean window
    assert not ad.last_fallback


@pytest.mark.parametrize("lr", [1e4, 1e30])
def test_fallback_on_exploding_inner_lr(model: DeltaMLP, lr: float) -> None:
    ad = GrBALAdapter(model, lr)
    ctx = ad.adapt(*window())
    assert ad.last_fallback
    assert not (ad.last_loss_after <= 10 * ad.last_loss_before)  # huge or non-finite
    assert_is_theta_star(ctx, model)


def test_predict_is_batched(model: DeltaMLP) -> None:
    ad = GrBALAdapter(model, 1e-2)
    ctx = ad.adapt(*window())
    g = torch.Generator().manual_seed(2)
    s, a = torch.randn(500, STATE_DIM, generator=g), torch.rand(500, A, generator=g) * 2 - 1
    out = ad.predict(ctx, s, a)
    assert out.shape == (500, TARGET_DIM)
    torch.testing.assert_close(out[17], predict(model, ctx, torch.cat([s[17], a[17]])), rtol=1e-5, atol=1e-7)
    assert ad.dynamics(ctx)(s[:3], a[:3]).shape == (3, TARGET_DIM)
    with pytest.raises(ValueError, match="expected states"):
        ad.predict(ctx, s, torch.zeros(500, 6))


def test_adapt_never_mutates_the_model(model: DeltaMLP) -> None:
    before = snapshot(model)
    adapters = [GrBALAdapter(model, 1e-2, steps=2), MBDEAdapter(model, 1e-2), MBAdapter(model), GrBALAdapter(model, 1e4)]
    for i in range(25):
        for ad in adapters:
            ctx = ad.adapt(*window(seed=i))
            ad.predict(ctx, torch.zeros(2, STATE_DIM), torch.zeros(2, A))
    after = snapshot(model)
    for k in before:
        assert torch.equal(before[k], after[k]), k
    # every cycle restarts from θ*: the same window gives the same context
    ad = GrBALAdapter(model, 1e-2)
    c1, c2 = ad.adapt(*window(seed=7)), ad.adapt(*window(seed=7))
    assert all(torch.equal(c1[k], c2[k]) for k in c1)


def test_empty_window_and_bad_shapes(model: DeltaMLP) -> None:
    ad = GrBALAdapter(model, 1e-2)
    ctx = ad.adapt(torch.zeros(0, STATE_DIM + A), torch.zeros(0, TARGET_DIM))
    assert_is_theta_star(ctx, model)
    assert math.isnan(ad.last_loss_before) and not ad.last_fallback
    with pytest.raises(ValueError, match="expected window_x"):
        ad.adapt(torch.zeros(16, STATE_DIM), torch.zeros(16, TARGET_DIM))
    with pytest.raises(ValueError, match="unknown adapter kind"):
        make_adapter("magic", model)
