"""PEARL-style and attention context adapters: order-invariant, learn the task from the window,
load from checkpoints, run behind the Adapter interface, train through `legadapt train`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from legadapt.dynamics.adaptation import make_adapter
from legadapt.dynamics.checkpoint import load_checkpoint, save_checkpoint
from legadapt.dynamics.context import ContextDynamics, ContextObjective
from legadapt.dynamics.rebal import rebal_loss, zero_context_loss
from legadapt.features import make_spec
from conftest import HEXAPOD, STATE_DIM, TARGET_DIM
from tests.test_rebal import A, S, T, LinearTasks

SPEC = make_spec("per_side", 0.1, HEXAPOD)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("kind", ["pearl", "attention"])
def test_context_is_order_invariant_and_empty_window_gives_zero(kind):
    torch.manual_seed(0)
    m = ContextDynamics(STATE_DIM, 2, TARGET_DIM, kind, (32,), 16)
    x, y = torch.randn(3, 16, STATE_DIM + 2), torch.randn(3, 16, TARGET_DIM)
    perm = torch.randperm(16)
    assert torch.allclose(m.encode(x, y), m.encode(x[:, perm], y[:, perm]), atol=1e-5)
    assert torch.allclose(m.encode(x[1], y[1]), m.encode(x, y)[1], atol=1e-5), "batched == per task"
    assert torch.equal(m.encode(x[:, :0], y[:, :0]), torch.zeros(3, 16))
    assert ContextDynamics.from_architecture(m.architecture()).architecture() == m.architecture()


@pytest.mark.parametrize("kind", ["pearl", "attention"])
def test_context_learns_the_task_from_the_window(kind):
    tasks = LinearTasks(0)
    torch.manual_seed(0)
    m = ContextDynamics(S, A, T, kind, (64, 64), 16)
    b0 = tasks.sample(64)
    m.fit_normalizers(b0.past_x.reshape(-1, S + A), b0.past_y.reshape(-1, T))
    obj = ContextObjective(m, kl_weight=0.01)
    opt = torch.optim.Adam(obj.parameters(), 2e-3)
    for _ in range(400):
        loss = obj(*tasks.sample(32))
        opt.zero_grad()
        loss.backward()
        opt.step()
    b = tasks.sample(256)
    with torch.no_grad():
        own = float(rebal_loss(m, b))
        other = float(m.loss(m(b.future_x, m.encode(b.past_x, b.past_y).roll(1, 0)[:, None]), b.future_y))
        zero = float(zero_context_loss(m, b))
    assert own < 0.5 * other and own < 0.5 * zero, (own, other, zero)


@pytest.mark.parametrize("kind", ["pearl", "attention"])
def test_checkpoint_round_trip_and_adapter(tmp_path, kind):
    torch.manual_seed(1)
    m = ContextDynamics(STATE_DIM, 2, TARGET_DIM, kind, (32,), 16)
    m.fit_normalizers(torch.randn(100, STATE_DIM + 2), torch.randn(100, TARGET_DIM))
    save_checkpoint(tmp_path / "c.pt", m, {"feature_spec": SPEC, "adapter": kind})
    ck = load_checkpoint(tmp_path / "c.pt", SPEC)
    assert ck.adapter_kind == kind and ck.model.architecture() == m.architecture()
    ad = make_adapter(kind, ck.model)
    wx, wy = torch.randn(16, STATE_DIM + 2), torch.randn(16, TARGET_DIM)
    ctx = ad.adapt(wx, wy)
    out = ad.predict(ctx, torch.randn(50, STATE_DIM), torch.randn(50, 2))
    assert out.shape == (50, TARGET_DIM) and torch.isfinite(out).all()
    with torch.no_grad():
        assert torch.allclose(ad.predict(ctx, wx[:5, :STATE_DIM], wx[:5, STATE_DIM:]), m.predict(wx[:5], m.encode(wx, wy)),
                              atol=1e-5)
    other = "attention" if kind == "pearl" else "pearl"
    with pytest.raises(ValueError, match=other):
        make_adapter(other, ck.model)
