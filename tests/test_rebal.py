"""ReBAL: shapes, the recurrent context learning the task, NaN safety, adapter, checkpoint round trip."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from legadapt.dynamics.adaptation import make_adapter
from legadapt.dynamics.checkpoint import load_checkpoint, save_checkpoint
from legadapt.dynamics.maml import TaskBatch
from legadapt.dynamics.mlp import DeltaMLP
from legadapt.dynamics.rebal import (
    RebalAdapter,
    RecurrentDynamics,
    rebal_loss,
    train_step,
    zero_context_loss,
)
from legadapt.features import make_spec
from conftest import HEXAPOD, STATE_DIM, TARGET_DIM

SPEC = make_spec("per_side", 0.1, HEXAPOD)
S, A, T = 4, 1, 3  # small synthetic dims for the training tests


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; several threads crawl when other processes load the CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_model(seed: int = 0) -> RecurrentDynamics:
    torch.manual_seed(seed)
    return RecurrentDynamics(S, A, T, hidden=(64, 64), gru_hidden=32)


class LinearTasks:
    """Tasks y = A_task x + noise with A_task = A0 + z1 B1 + z2 B2, z ~ U(-1, 1)^2 per task."""

    def __init__(self, seed: int = 0) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.A0, self.B1, self.B2 = (torch.randn(T, S + A, generator=self.g) for _ in range(3))

    def sample(self, b: int, m: int = 16, k: int = 16) -> TaskBatch:
        z = torch.rand(b, 2, 1, 1, generator=self.g) * 2 - 1
        mats = self.A0 + z[:, 0] * self.B1 + z[:, 1] * self.B2  # [b, T, S+A]
        x = torch.randn(b, m + k, S + A, generator=self.g)
        y = torch.einsum("btd,bnd->bnt", mats, x) + 0.01 * torch.randn(b, m + k, T, generator=self.g)
        return TaskBatch(x[:, :m], y[:, :m], x[:, m:], y[:, m:])


def fitted(model: RecurrentDynamics, tasks: LinearTasks) -> RecurrentDynamics:
    b = tasks.sample(64)
    return model.fit_normalizers(b.past_x.reshape(-1, S + A), b.past_y.reshape(-1, T))


def test_shapes_and_architecture() -> None:
    m = RecurrentDynamics.from_spec(SPEC, hidden=(32, 32), gru_hidden=16)
    x, y = torch.randn(5, 7, STATE_DIM + 2), torch.randn(5, 7, TARGET_DIM)
    h = m.encode(x, y)
    assert h.shape == (5, 16) and m.encode(x[0], y[0]).shape == (16,)
    assert torch.allclose(m.encode(x[0], y[0]), h[0], atol=1e-6)  # batched == per task
    assert torch.equal(m.encode(x[:, :0], y[:, :0]), torch.zeros(5, 16))  # empty window -> zero context
    assert m(torch.randn(5, 9, STATE_DIM + 2), h[:, None]).shape == (5, 9, TARGET_DIM)
    assert m(torch.randn(9, STATE_DIM + 2), h[0]).shape == (9, TARGET_DIM)  # h broadcast over the batch
    b = TaskBatch(x, y, x, y)
    assert rebal_loss(m, b).ndim == 0
    assert torch.allclose(rebal_loss(m, b, empty_prob=1.0), zero_context_loss(m, b))  # every context dropped
    again = RecurrentDynamics.from_architecture(m.architecture())
    assert again.architecture() == m.architecture() and again.hidden == (32, 32)
    with pytest.raises(ValueError, match="encode"):
        m.encode(x, y[..., :5])


def test_context_carries_the_task() -> None:
    tasks = LinearTasks(0)
    m = fitted(small_model(), tasks)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for _ in range(300):
        assert not train_step(m, opt, tasks.sample(32)).skipped
    b = tasks.sample(256)
    with torch.no_grad():
        own = float(rebal_loss(m, b))
        h = m.encode(b.past_x, b.past_y)
        other = float(m.loss(m(b.future_x, h.roll(1, 0)[:, None]), b.future_y))  # another task's context
        zero = float(zero_context_loss(m, b))
    assert own < 0.3 * other and own < 0.3 * zero, (own, other, zero)


def test_extreme_inputs_never_produce_nan_parameters() -> None:
    tasks = LinearTasks(1)
    m = fitted(small_model(), tasks)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    skipped = 0
    for i in range(40):
        b = tasks.sample(8)
        if i % 3 == 0:  # huge but finite values: clamped inputs, clipped gradients
            b = TaskBatch(b.past_x * 1e6, b.past_y * 1e6, b.future_x * 1e6, b.future_y * 1e6)
        if i % 4 == 1:  # inf in a window input: clamped, the step stays finite
            b.past_x[0, 3, 2] = math.inf
        if i % 5 == 2:  # inf / NaN where it reaches the loss: skipped and counted
            b.future_y[1, 0, 0] = math.inf if i % 2 else math.nan
            skipped += 1
        r = train_step(m, opt, b)
        assert r.skipped == (i % 5 == 2)
        assert all(bool(torch.isfinite(p).all()) for p in m.parameters())
    assert m.skipped_steps == skipped == 8
    with torch.no_grad():
        assert math.isfinite(float(rebal_loss(m, tasks.sample(16))))


def test_gradient_clipping_bounds_the_update() -> None:
    tasks = LinearTasks(2)
    m = fitted(small_model(), tasks)
    b = tasks.sample(8)
    b = TaskBatch(b.past_x, b.past_y * 50, b.future_x, b.future_y * 50)  # a large loss and gradient
    before = torch.cat([p.detach().flatten().clone() for p in m.parameters()])
    r = train_step(m, torch.optim.SGD(m.parameters(), lr=1.0), b, clip=0.5)
    after = torch.cat([p.detach().flatten() for p in m.parameters()])
    assert not r.skipped and r.grad_norm > 0.5
    assert float((after - before).norm()) <= 0.5 * (1 + 1e-4)


def real_model(seed: int = 0) -> RecurrentDynamics:
    torch.manual_seed(seed)
    m = RecurrentDynamics.from_spec(SPEC, hidden=(64, 64), gru_hidden=32)
    return m.fit_normalizers(torch.randn(300, m.input_dim) * 0.5, torch.randn(300, m.target_dim) * 0.02)


def window(rows: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, STATE_DIM + 2, generator=g) * 0.5,
            torch.randn(rows, TARGET_DIM, generator=g) * 0.02 + 0.01)


def test_adapter_predict_and_fallback() -> None:
    m = real_model()
    ad = make_adapter("rebal", m)
    assert isinstance(ad, RebalAdapter) and ad.kind == "rebal"
    x, y = window()
    ctx = ad.adapt(x.numpy(), y.numpy())
    assert set(ctx) == {"h"} and ctx["h"].shape == (32,) and not ctx["h"].requires_grad
    assert not ad.last_fallback and math.isfinite(ad.last_loss_before) and math.isfinite(ad.last_loss_after)
    assert torch.allclose(ctx["h"], m.encode(x, y))
    states, actions = torch.randn(500, STATE_DIM), torch.rand(500, 2) * 2 - 1
    out = ad.predict(ctx, states, actions)
    assert out.shape == (500, TARGET_DIM) and bool(torch.isfinite(out).all())
    assert torch.allclose(out[7], ad.dynamics(ctx)(states[7:8], actions[7:8])[0], atol=1e-6)
    x[4, 0] = math.nan
    fb = ad.adapt(x, y)
    assert ad.last_fallback and torch.equal(fb["h"], torch.zeros(32))
    assert bool(torch.isfinite(ad.predict(fb, states, actions)).all())
    empty = ad.adapt(x[:0], y[:0])
    assert not ad.last_fallback and torch.equal(empty["h"], torch.zeros(32))
    with pytest.raises(ValueError, match="DeltaMLP"):
        make_adapter("rebal", DeltaMLP.from_spec(SPEC, hidden=(8,)))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    m = real_model(3)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    x, y = window(16, 5)
    train_step(m, opt, TaskBatch(x[None], y[None], x[None], y[None]))
    path = save_checkpoint(tmp_path / "rebal.pt", m, {"feature_spec": SPEC, "adapter": "rebal",
                                                      "training": {"steps": 1}}, optimizer_state=opt.state_dict())
    raw = torch.load(path, weights_only=True)
    assert raw["architecture"]["class"] == "RecurrentDynamics" and raw["adaptation"]["kind"] == "rebal"
    ck = load_checkpoint(path, expected_spec=make_spec("per_side", 0.1, HEXAPOD))
    assert isinstance(ck.model, RecurrentDynamics) and ck.adapter_kind == "rebal"
    assert ck.model.architecture() == m.architecture()
    m.eval()
    ad_a, ad_b = make_adapter("rebal", m), make_adapter(ck.adapter_kind, ck.model)
    states, actions = torch.randn(500, STATE_DIM), torch.rand(500, 2) * 2 - 1
    pa = ad_a.predict(ad_a.adapt(x, y), states, actions)
    pb = ad_b.predict(ad_b.adapt(x, y), states, actions)
    assert torch.equal(pa, pb)
    assert ad_a.last_loss_after == ad_b.last_loss_after
