"""An ensemble of trainings (dynamics/ensemble.py): each member adapts on the window as it would alone, the planner
integrates their mean; built from ``controller.adaptation.ensemble`` behind the plain model's switch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from legadapt import config as C
from legadapt.controller.preflight import PreflightError, build_controller
from legadapt.dynamics.adaptation import GrBALAdapter, MBAdapter, make_adapter
from legadapt.dynamics.ensemble import EnsembleAdapter
from legadapt.dynamics.mlp import DeltaMLP
from legadapt.dynamics.switching import SwitchingAdapter
from conftest import STATE_DIM, TARGET_DIM

A = 2
REPO = Path(__file__).resolve().parents[1]


def _model(seed: int) -> DeltaMLP:
    torch.manual_seed(seed)
    m = DeltaMLP(STATE_DIM, A, TARGET_DIM, (64, 64))
    return m.fit_normalizers(torch.randn(500, STATE_DIM + A) * 0.5, torch.randn(500, TARGET_DIM) * 0.02)


def _window(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, STATE_DIM + A, generator=g) * 0.5, torch.randn(16, TARGET_DIM, generator=g) * 0.02 + 0.01


def test_the_ensemble_predicts_the_mean_of_its_members_each_adapted_on_the_window():
    members = [make_adapter("grbal", _model(s), 0.05, steps=1) for s in (0, 1, 2)]
    alone = [make_adapter("grbal", _model(s), 0.05, steps=1) for s in (0, 1, 2)]
    ens = EnsembleAdapter(members)
    x, y = _window()
    ctx = ens.adapt(x, y)
    s, a = torch.randn(7, STATE_DIM) * 0.5, torch.rand(7, A)
    each = [ad.predict(ad.adapt(x, y), s, a) for ad in alone]
    assert not torch.allclose(each[0], each[1], atol=1e-4), "a real test: the members disagree"
    torch.testing.assert_close(ens.predict(ctx, s, a), torch.stack(each).mean(0))
    fast = ens.rollout_model(ctx, torch.float32, 7)
    torch.testing.assert_close(fast(s, a), ens.predict(ctx, s, a), atol=1e-5, rtol=1e-4)
    fast(s, a).add_(1.0)  # the planner adds its offset in place: a call's result is its own
    torch.testing.assert_close(fast(s, a), ens.predict(ctx, s, a), atol=1e-5, rtol=1e-4)
    assert ens.last_loss_before == pytest.approx(np.mean([m.last_loss_before for m in members]))
    assert ens.last_loss_after < ens.last_loss_before and not ens.last_fallback and not ens.plans_plainly


def test_an_ensemble_takes_members_of_one_kind_and_at_least_two():
    with pytest.raises(ValueError, match="at least 2"):
        EnsembleAdapter([make_adapter("grbal", _model(0), 0.05)])
    with pytest.raises(ValueError, match="one adapter kind"):
        EnsembleAdapter([make_adapter("grbal", _model(0), 0.05), MBAdapter(_model(1))])


def _cfg(ensemble: list[str]) -> C.LegadaptConfig:
    return C.parse_config({"controller": {"planner": {"samples": 16, "horizon": 3}, "adaptation": {"ensemble": ensemble}}})


def test_the_config_builds_the_shipped_ensemble_behind_the_plain_model_and_refuses_a_bad_member():
    mpc, _, _ = build_controller(_cfg(["default_member1.pt", "default_member2.pt"]), REPO / "models" / "default.pt")
    assert isinstance(mpc.adapter, SwitchingAdapter) and isinstance(mpc.adapter.adaptive, EnsembleAdapter)
    members = mpc.adapter.adaptive.members
    assert len(members) == 3 and all(isinstance(m, GrBALAdapter) for m in members)
    assert all(m.lrs == pytest.approx(members[0].lrs) for m in members), "each member's own run-time step (× 0.3)"
    with pytest.raises(PreflightError, match="adaptation.ensemble.*not found"):
        build_controller(_cfg(["no_such_model.pt"]), REPO / "models" / "default.pt")
    with pytest.raises(PreflightError, match="adaptation.ensemble.*feature spec mismatch"):
        build_controller(_cfg([str(REPO / "models" / "quadruped.pt")]), REPO / "models" / "default.pt")
    with pytest.raises(PreflightError, match="adaptation.ensemble.*'rebal'.*'grbal'"):
        build_controller(_cfg(["rebal.pt"]), REPO / "models" / "default.pt")
