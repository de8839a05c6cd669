"""MAML (GrBAL) meta-gradients: vmap vs loop reference, finite differences, learned rates, a real meta-training run."""

from __future__ import annotations

import pytest
import torch

from legadapt.dynamics.maml import (
    MamlConfig,
    TaskBatch,
    adapt_window,
    adapt_window_with_loss,
    init_log_lrs,
    inner_adapt,
    lrs_from_log,
    meta_loss,
    meta_loss_loop,
)
from legadapt.dynamics.mlp import DeltaMLP, params, window_loss

S, A, T = 3, 2, 4


def small_model(hidden: tuple[int, ...] = (8, 8), seed: int = 0) -> DeltaMLP:
    """A float64 model whose normalisers are fitted to non-trivial statistics."""
    torch.manual_seed(seed)
    m = DeltaMLP(S, A, T, hidden).double()
    x = torch.randn(300, S + A, dtype=torch.float64) * torch.linspace(0.5, 3.0, S + A) + 1.0
    y = torch.randn(300, T, dtype=torch.float64) * torch.linspace(0.01, 0.2, T) - 0.05
    return m.fit_normalizers(x, y)


def random_batch(b: int = 3, m: int = 5, k: int = 4, seed: int = 1) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    x = torch.randn(b, m + k, S + A, generator=g, dtype=f64) * 2 + 1
    w = torch.randn(b, S + A, T, generator=g, dtype=f64) * 0.05
    y = x @ w + 0.01 * torch.randn(b, m + k, T, generator=g, dtype=f64)
    return TaskBatch(x[:, :m], y[:, :m], x[:, m:], y[:, m:])


def meta_grads(fn, model, cfg, batch, log_lrs=None):
    p = params(model)
    lrs = lrs_from_log(log_lrs) if log_lrs is not None else None
    loss = fn(model, p, lrs, batch, cfg)
    leaves = list(p.values()) + (list(log_lrs.values()) if log_lrs is not None else [])
    return loss, torch.autograd.grad(loss, leaves)


def varied_log_lrs(model: DeltaMLP, lr: float, seed: int = 3) -> dict[str, torch.Tensor]:
    log = init_log_lrs(params(model), lr)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for v in log.values():
            v.add_(0.3 * torch.randn(v.shape, generator=g, dtype=v.dtype))
    return log


@pytest.mark.parametrize("learned", [False, True], ids=["scalar-lr", "learned-lr"])
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
def test_vmap_meta_gradient_matches_loop(first_order: bool, steps: int, learned: bool) -> None:
    model = small_model()
    cfg = MamlConfig(inner_lr=0.05, inner_steps=steps, first_order=first_order)
    batch = random_batch()
    log = varied_log_lrs(model, 0.05) if learned else None
    loss_v, g_v = meta_grads(meta_loss, model, cfg, batch, log)
    loss_l, g_l = meta_grads(meta_loss_loop, model, cfg, batch, log)
    torch.testing.assert_close(loss_v, loss_l, rtol=1e-10, atol=1e-12)
    assert len(g_v) == len(g_l)
    for a, b in zip(g_v, g_l):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


def test_second_order_meta_gradient_matches_finite_differences() -> None:
    model = small_model(hidden=(2,), seed=4)
    cfg = MamlConfig(inner_lr=0.3, inner_steps=1)
    batch = random_batch(b=2, m=6, k=5, seed=5)
    log = varied_log_lrs(model, 0.3)
    _, grads = meta_grads(meta_loss, model, cfg, batch, log)
    _, grads_fo = meta_grads(meta_loss, model, MamlConfig(inner_lr=0.3, first_order=True), batch, log)
    leaves = list(params(model).values()) + list(log.values())
    eps = 1e-6
    fo_off = 0
    for leaf, g, g_fo in zip(leaves, grads, grads_fo):
        for idx in [0, leaf.numel() - 1]:
            flat = leaf.data.view(-1)
            orig = flat[idx].item()
            with torch.no_grad():
                flat[idx] = orig + eps
                up = meta_loss(model, params(model), lrs_from_log(log), batch, cfg).item()
                flat[idx] = orig - eps
                down = meta_loss(model, params(model), lrs_from_log(log), batch, cfg).item()
                flat[idx] = orig
            fd = (up - down) / (2 * eps)
            analytic = g.view(-1)[idx].item()
            assert abs(analytic - fd) <= 1e-4 * abs(fd) + 1e-9, (leaf.shape, idx, analytic, fd)
            fo_off += abs(g_fo.view(-1)[idx].item() - fd) > 1e-3 * abs(fd) + 1e-9
    assert fo_off > 0, "first-order gradient matched finite differences everywhere: no second-order terms tested"


def test_learned_rates_get_gradient_and_second_order_terms_are_real() -> None:
    model = small_model()
    batch = random_batch()
    log = varied_log_lrs(model, 0.05)
    _, g2 = meta_grads(meta_loss, model, MamlConfig(inner_lr=0.05), batch, log)
    _, g1 = meta_grads(meta_loss, model, MamlConfig(inner_lr=0.05, first_order=True), batch, log)
    n = len(params(model))
    for g in g2[n:]:  # every per-parameter rate tensor moves
        assert g.abs().max() > 0
    diff = sum((a - b).norm() ** 2 for a, b in zip(g2[:n], g1[:n])) ** 0.5
    scale = sum(a.norm() ** 2 for a in g2[:n]) ** 0.5
    assert diff > 1e-3 * scale, f"second-order and first-order meta-gradients agree ({diff:.3g} vs {scale:.3g})"


def test_inner_adapt_lowers_past_loss_and_adapt_window_is_detached() -> None:
    model = small_model()
    b = random_batch(b=1, m=16)
    p = params(model)
    adapted = inner_adapt(model, p, 0.05, b.past_x[0], b.past_y[0])
    assert window_loss(model, adapted, b.past_x[0], b.past_y[0]) < window_loss(model, p, b.past_x[0], b.past_y[0])
    online, before = adapt_window_with_loss(model, p, 0.05, b.past_x[0], b.past_y[0])
    assert before == pytest.approx(window_loss(model, p, b.past_x[0], b.past_y[0]).item())
    for k in p:
        assert not online[k].requires_grad
        torch.testing.assert_close(online[k], adapted[k].detach())
    with torch.inference_mode():  # a controller may call it from inside inference mode
        again = adapt_window(model, p, 0.05, b.past_x[0], b.past_y[0])
    for k in p:
        torch.testing.assert_close(again[k], online[k])


def test_config_round_trip_and_validation() -> None:
    cfg = MamlConfig(M=8, learn_inner_lr=True)
    assert MamlConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        MamlConfig.from_dict({"M": 8, "inner_learning_rate": 0.1})
    with pytest.raises(ValueError):
        MamlConfig(K=0)


# --- a real meta-training run: linear dynamics y = A_task x, A_task on a 2-D family ---------------

def linear_tasks(n: int, g: torch.Generator, mats: tuple[torch.Tensor, ...], m: int = 16, k: int = 16) -> TaskBatch:
    a0, b1, b2 = mats
    coef = torch.rand(n, 2, 1, 1, generator=g) * 2 - 1
    w = a0 + coef[:, 0] * b1 + coef[:, 1] * b2  # [n, S+A, T]
    x = torch.randn(n, m + k, a0.shape[0], generator=g)
    y = x @ w + 0.01 * torch.randn(n, m + k, a0.shape[1], generator=g)
    return TaskBatch(x[:, :m], y[:, :m], x[:, m:], y[:, m:])


def test_meta_training_makes_one_step_adaptation_work() -> None:
    torch.manual_seed(0)
    s, a, t = 3, 1, 3
    mats = tuple(torch.randn(s + a, t) for _ in range(3))
    g = torch.Generator().manual_seed(1)
    pool = linear_tasks(200, g, mats)
    model = DeltaMLP(s, a, t, (32, 32)).fit_normalizers(pool.past_x.reshape(-1, s + a), pool.past_y.reshape(-1, t))
    joint = DeltaMLP(s, a, t, (32, 32))
    joint.load_state_dict(model.state_dict())
    cfg = MamlConfig(inner_lr=0.3, meta_batch=10)
    held_out = linear_tasks(200, torch.Generator().manual_seed(2), mats)

    def pre_post(m: DeltaMLP) -> tuple[float, float]:
        with torch.no_grad():
            pre = window_loss(m, params(m), held_out.future_x, held_out.future_y).item()
        return pre, meta_loss(m, params(m), None, held_out, cfg).item()

    pre0, post0 = pre_post(model)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(300):
        loss = meta_loss(model, params(model), None, linear_tasks(cfg.meta_batch, g, mats), cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    pre1, post1 = pre_post(model)
    opt = torch.optim.Adam(joint.parameters(), 3e-3)  # same budget, plain (non-meta) training
    for _ in range(300):
        b = linear_tasks(cfg.meta_batch, g, mats)
        loss = window_loss(joint, params(joint), b.future_x, b.future_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, post_joint = pre_post(joint)
    assert post0 > 0.85 * pre0, (pre0, post0)  # before meta-training one step does little
    assert post1 < 0.6 * pre1, (pre1, post1)  # after it, one step removes most of the task-specific error
    assert post1 < 0.7 * post_joint, (post1, post_joint)  # and beats a plainly trained model + the same step
