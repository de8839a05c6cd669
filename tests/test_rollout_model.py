"""The planner's rollout model: the adapted model's own predictions, unpacked once, in fp32 or bfloat16."""

from __future__ import annotations

import pytest
import torch

from legadapt.dynamics.adaptation import GrBALAdapter
from legadapt.dynamics.mlp import DeltaMLP
from legadapt.dynamics.rollout_model import bf16_native, rollout_dtype

S, A, T = 28, 2, 31


def _adapted(seed: int = 0) -> tuple[GrBALAdapter, dict, torch.Tensor, torch.Tensor]:
    """A GrBAL adapter over a random 3x512 model with fitted normalisers, adapted on a random window."""
    g = torch.Generator().manual_seed(seed)
    model = DeltaMLP(S, A, T, hidden=(512, 512, 512))
    x, y = torch.randn(400, S + A, generator=g) * 3 + 1, torch.randn(400, T, generator=g) * 0.2
    model.fit_normalizers(x, y)
    adapter = GrBALAdapter(model, lrs=0.01, steps=1)
    ctx = adapter.adapt(x[:16].numpy(), y[:16].numpy())
    states, actions = torch.randn(500, S, generator=g) * 3 + 1, torch.rand(500, A, generator=g) * 2 - 1
    return adapter, ctx, states, actions


def test_the_fp32_rollout_model_is_the_adapted_model():
    adapter, ctx, states, actions = _adapted()
    want = adapter.predict(ctx, states, actions)
    got = adapter.rollout_model(ctx, torch.float32)(states, actions)
    assert got.dtype == torch.float32 and got.shape == (500, T)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    base = adapter.rollout_model(adapter.theta_star(), torch.float32)(states, actions)
    assert (base - want).abs().max() > 1e-4, "the adapted parameters are used, not θ*"


def test_the_bf16_rollout_model_keeps_three_digits_in_normalised_units():
    adapter, ctx, states, actions = _adapted(1)
    want = adapter.predict(ctx, states, actions)
    got = adapter.rollout_model(ctx, torch.bfloat16)(states, actions)
    assert got.dtype == torch.float32, "poses and costs stay fp32"
    err = ((got - want) / adapter.model.out_norm.std).abs()  # normalised units (σ of each target)
    print(f"bf16 rollout: max error {float(err.max()):.4f} σ, mean {float(err.mean()):.5f} σ")
    assert float(err.mean()) < 0.01 and float(err.max()) < 0.1


def test_precision_auto_follows_the_cpu():
    assert rollout_dtype("fp32") is torch.float32 and rollout_dtype("bf16") is torch.bfloat16
    assert rollout_dtype("auto") is (torch.bfloat16 if bf16_native() else torch.float32)
    with pytest.raises(KeyError):
        rollout_dtype("fp16")


def _context_adapted(kind: str, seed: int = 0):
    """A ReBAL / PEARL / attention adapter over a random 3x512 decoder with fitted normalisers, adapted on a window."""
    from legadapt.dynamics.context import ContextAdapter, ContextDynamics
    from legadapt.dynamics.rebal import RebalAdapter, RecurrentDynamics

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    if kind == "rebal":
        model = RecurrentDynamics(S, A, T, hidden=(512, 512, 512), gru_hidden=64)
        adapter = RebalAdapter(model)
    else:
        model = ContextDynamics(S, A, T, encoder=kind, hidden=(512, 512, 512), context_dim=32)
        adapter = ContextAdapter(model)
    x, y = torch.randn(400, S + A, generator=g) * 3 + 1, torch.randn(400, T, generator=g) * 0.2
    model.fit_normalizers(x, y)
    model.eval()
    ctx = adapter.adapt(x[:16].numpy(), y[:16].numpy())
    states, actions = torch.randn(500, S, generator=g) * 3 + 1, torch.rand(500, A, generator=g) * 2 - 1
    return adapter, ctx, states, actions


@pytest.mark.parametrize("kind", ["rebal", "pearl", "attention"])
def test_the_context_adapters_roll_out_their_decoder_with_the_context_in_the_first_bias(kind):
    adapter, ctx, states, actions = _context_adapted(kind)
    assert ctx["h"].abs().max() > 1e-3, "a non-trivial context (else folding it proves nothing)"
    want = adapter.predict(ctx, states, actions)
    got = adapter.rollout_model(ctx, torch.float32)(states, actions)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    zero = adapter.rollout_model({"h": torch.zeros_like(ctx["h"])}, torch.float32)(states, actions)
    assert (zero - want).abs().max() > 1e-4, "the context is used"
    scale = adapter.model.out_norm.std
    bf16 = adapter.rollout_model(ctx, torch.bfloat16)(states, actions)
    assert ((bf16 - want) / scale).abs().mean() < 0.01


def test_theta_star_is_unpacked_once_until_the_model_changes():
    """A cycle without a step (MB, a plain model planning) reuses θ*'s unpacked weights; an adapted context never
    does; changing the model in place (training it further) unpacks it again."""
    adapter, ctx, states, actions = _adapted(2)
    first = adapter.rollout_model(adapter.theta_star(), torch.bfloat16)
    assert adapter.rollout_model(adapter.theta_star(), torch.bfloat16) is first
    assert adapter.rollout_model(ctx, torch.bfloat16) is not first
    assert adapter.rollout_model(adapter.theta_star(), torch.float32) is not first, "another dtype, another unpacking"
    with torch.no_grad():
        adapter.model.net[0].bias.add_(1.0)
    again = adapter.rollout_model(adapter.theta_star(), torch.bfloat16)
    assert again is not first
    want = adapter.predict(adapter.theta_star(), states, actions)
    got = again(states, actions)
    assert ((got - want) / adapter.model.out_norm.std).abs().mean() < 0.01, "the changed weights are used"
