"""Adapt only when surprised: the plain model plans until its error on the window leaves its range,
the adaptive model while it is out, and the plain model again after it has predicted well for a while."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from legadapt import config as C
from legadapt.controller.preflight import PreflightError, build_controller
from legadapt.dynamics.adaptation import GrBALAdapter, MBAdapter
from legadapt.dynamics.checkpoint import load_checkpoint, set_runtime
from legadapt.dynamics.mlp import DeltaMLP, predict
from legadapt.dynamics.switching import ADAPTED_KEY, Surprise, SwitchingAdapter
from legadapt.features import make_spec
from legadapt.mcap_read import read_log
from conftest import HEXAPOD, STATE_DIM, TARGET_DIM

SPEC = make_spec("per_side", 0.1, HEXAPOD)
A = 2
REPO = Path(__file__).resolve().parents[1]


def _model(seed: int) -> DeltaMLP:
    torch.manual_seed(seed)
    m = DeltaMLP.from_spec(SPEC, (32,))
    m.fit_normalizers(torch.randn(256, STATE_DIM + A), torch.randn(256, TARGET_DIM))
    return m.eval()


def _window(plain: DeltaMLP, offset_sigmas: float, n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """n transitions whose targets are the plain model's own predictions, moved by ``offset_sigmas`` of its target
    spread: 0 = the plain model is exactly right; 3 = a normalised MSE of 9."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, STATE_DIM + A, generator=g)
    with torch.no_grad():
        y = predict(plain, dict(plain.named_parameters()), x) + offset_sigmas * plain.out_norm.std
    return x, y


@pytest.fixture()
def switch():
    plain, adaptive = _model(0), _model(1)
    ad = SwitchingAdapter(MBAdapter(plain), GrBALAdapter(adaptive, 1e-3), Surprise(threshold=1.0, recent=4, release=0.5, hold=3))
    return ad, plain, adaptive


def test_the_plain_model_plans_while_it_predicts_the_window(switch):
    ad, plain, _ = switch
    x, y = _window(plain, 0.0)
    ctx = ad.adapt(x, y)
    assert not ad.engaged and ADAPTED_KEY not in ctx and ad.last_plain_loss < 1e-9
    s, a = torch.randn(7, STATE_DIM), torch.randn(7, A)
    expect = predict(plain, dict(plain.named_parameters()), torch.cat([s, a], -1))
    torch.testing.assert_close(ad.predict(ctx, s, a), expect)
    torch.testing.assert_close(ad.rollout_model(ctx)(s, a), expect, atol=1e-4, rtol=1e-4)
    assert ad.last_loss_before == ad.last_loss_after, "the plain model takes no step"


def test_surprise_engages_the_adaptive_model_and_calm_hands_back_after_hold_cycles(switch):
    ad, plain, adaptive = switch
    calm, wrong = _window(plain, 0.0), _window(plain, 3.0)
    # Only the 4 newest transitions wrong: the recent error (9) engages at once, though the window mean is 2.25.
    x = torch.cat([calm[0][:12], wrong[0][:4]]); y = torch.cat([calm[1][:12], wrong[1][:4]])
    ctx = ad.adapt(x, y)
    assert ad.engaged and ADAPTED_KEY in ctx and ad.switches == 1
    assert ad.last_recent_loss == pytest.approx(9.0, rel=1e-3) and ad.last_plain_loss == pytest.approx(2.25, rel=1e-3)
    inner = {k: v for k, v in ctx.items() if k != ADAPTED_KEY}
    assert set(inner) == set(dict(adaptive.named_parameters())), "the adaptive model's adapted parameters"
    assert ad.last_loss_after < ad.last_loss_before, "GrBAL's step lowered its window loss"
    s, a = torch.randn(5, STATE_DIM), torch.randn(5, A)
    torch.testing.assert_close(ad.predict(ctx, s, a), predict(adaptive, inner, torch.cat([s, a], -1)))
    torch.testing.assert_close(ad.rollout_model(ctx)(s, a), ad.predict(ctx, s, a), atol=1e-4, rtol=1e-4)
    for cycle in range(1, 4):  # hold = 3 calm cycles in a row
        assert ad.engaged, f"released too early, after {cycle - 1} calm cycles"
        ctx = ad.adapt(*calm)
    assert not ad.engaged and ADAPTED_KEY not in ctx and ad.switches == 2
    ad.adapt(*_window(plain, 0.8))  # error 0.64: not calm (>= 0.5) and not a surprise (<= 1)
    assert not ad.engaged


def test_a_moderate_error_stays_with_the_plain_model_and_calm_must_be_unbroken(switch):
    ad, plain, _ = switch
    ad.adapt(*_window(plain, 0.9))  # 0.81 <= 1.0
    assert not ad.engaged
    ad.adapt(*_window(plain, 2.0))
    assert ad.engaged
    ad.adapt(*_window(plain, 0.0)); ad.adapt(*_window(plain, 0.0))
    ad.adapt(*_window(plain, 0.8))  # not calm: the count starts again
    ad.adapt(*_window(plain, 0.0)); ad.adapt(*_window(plain, 0.0))
    assert ad.engaged
    ad.adapt(*_window(plain, 0.0))
    assert not ad.engaged


def test_a_non_finite_window_changes_nothing_and_each_side_keeps_its_theta_star(switch):
    ad, plain, adaptive = switch
    x, y = _window(plain, 0.0)
    y[14, 0] = float("nan")
    ctx = ad.adapt(x, y)
    assert not ad.engaged and ad.last_fallback and ADAPTED_KEY not in ctx, "a sensor fault is not a surprise"
    ad.adapt(*_window(plain, 3.0))
    assert ad.engaged
    for _ in range(5):  # faulty windows are not calm either
        ctx = ad.adapt(x, y)
    assert ad.engaged and ad.last_fallback
    inner = {k: v for k, v in ctx.items() if k != ADAPTED_KEY}
    for k, v in adaptive.named_parameters():
        torch.testing.assert_close(inner[k], v.detach())
    ad.reset()
    assert not ad.engaged and ad.switches == 0


def test_surprise_settings_are_checked():
    with pytest.raises(ValueError, match="release <= threshold"):
        Surprise(threshold=0.5, release=0.8)
    with pytest.raises(ValueError, match="must not take online steps"):
        SwitchingAdapter(GrBALAdapter(_model(0), 1e-3), MBAdapter(_model(1)))


# ------------------------------------------------------------------ the shipped models and the config

def _cfg(**adaptation) -> C.LegadaptConfig:
    return C.parse_config({"controller": {"planner": {"samples": 16, "horizon": 3}, "adaptation": adaptation}})


def test_the_shipped_grbal_runs_behind_its_plain_model_with_its_measured_step():
    mpc, _, _ = build_controller(_cfg(), REPO / "models" / "default.pt")
    ad = mpc.adapter
    assert isinstance(ad, SwitchingAdapter) and isinstance(ad.adaptive, GrBALAdapter) and ad.surprise.hold == 20
    assert ad.surprise.early and ad.surprise.judge_from == 16
    ck, mb = load_checkpoint(REPO / "models" / "default.pt"), load_checkpoint(REPO / "models" / "mb.pt")
    assert ad.adaptive.lrs == pytest.approx(0.3 * ck.maml.inner_lr), "the checkpoint's run-time lr_scale"
    for k, v in mb.model.state_dict().items():
        torch.testing.assert_close(ad.plain.model.state_dict()[k], v)
    mpc, _, _ = build_controller(_cfg(plain_model="none", lr_scale=1.0), REPO / "models" / "default.pt")
    assert isinstance(mpc.adapter, GrBALAdapter) and mpc.adapter.lrs == pytest.approx(ck.maml.inner_lr)
    mpc, _, _ = build_controller(C.parse_config({"controller": {"adapter": "mb"}}), REPO / "models" / "default.pt")
    assert isinstance(mpc.adapter, MBAdapter), "the plain side alone needs no switch"


def test_a_plain_model_for_another_robot_is_refused_naming_the_setting():
    with pytest.raises(PreflightError, match="plain_model.*feature spec mismatch"):
        build_controller(_cfg(plain_model=str(REPO / "models" / "quadruped_mb.pt")), REPO / "models" / "default.pt")
    with pytest.raises(PreflightError, match="plain_model.*not found"):
        build_controller(_cfg(plain_model="no_such_model.pt"), REPO / "models" / "default.pt")


def test_run_time_settings_round_trip_and_pair_models_in_their_own_folder(tmp_path):
    for name in ("default.pt", "mb.pt"):
        shutil.copy(REPO / "models" / name, tmp_path / name)
    set_runtime(tmp_path / "default.pt", {"lr_scale": 0.5})
    before, after = load_checkpoint(REPO / "models" / "default.pt"), load_checkpoint(tmp_path / "default.pt")
    for k, v in before.model.state_dict().items():
        torch.testing.assert_close(after.model.state_dict()[k], v)
    assert after.meta["adaptation"]["runtime"] == {"lr_scale": 0.5} and after.maml == before.maml
    mpc, _, _ = build_controller(_cfg(), tmp_path / "default.pt")
    assert isinstance(mpc.adapter, GrBALAdapter) and mpc.adapter.lrs == pytest.approx(0.5 * before.maml.inner_lr)
    set_runtime(tmp_path / "default.pt", {"lr_scale": 0.5, "plain_model": "mb.pt"})
    (tmp_path / "mb.pt").unlink()
    with pytest.raises(PreflightError, match="mb.pt"):
        build_controller(_cfg(), tmp_path / "default.pt")


def test_the_daemon_logs_which_model_planned_and_when_the_adaptive_one_took_over(tmp_path):
    """The shipped controller on the intact robot for 2 s, then the front-left leg goes limp."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "controller": {"model": str(REPO / "models" / "default.pt"), "state_source": "privileged",
                       "planner": {"samples": 64, "horizon": 5}, "foxglove_scene": False},
        "task": {"path": "straight", "duration": 5.0},
        "perturbations": [{"kind": "limp_leg", "leg": "LF", "start": 2.0}]}))
    log = tmp_path / "run.mcap"
    out = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "run", "--config", str(cfg), "--log", str(log)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    msgs = read_log(log, channels={"adaptation", "events"}).messages
    engaged = [e for e in msgs["events"] if e["kind"] == "adaptation_engaged"]
    assert len(engaged) == 1 and 2.0 < engaged[0]["t"] < 3.5, engaged
    assert "adaptation_engaged" in out.stdout
    ad = msgs["adaptation"]
    assert not any(m["adapted"] for m in ad if m["t"] < 2.0), "the intact robot: the plain model plans"
    assert all(m["adapted"] for m in ad if m["t"] > engaged[0]["t"]), "the limp leg stays a surprise"
    assert max(m["plain_loss"] for m in ad if 0.5 < m["t"] < 2.0) < 0.5 < np.median([m["plain_loss"] for m in ad if m["t"] > 4])


def test_a_start_up_window_shorter_than_judge_from_decides_nothing_without_early_judgement():
    """The first cycles hold a few transitions taken while the robot sets off: with ``early`` off, wrong as they may
    be, they do not engage the adaptive model; the first full window does."""
    plain, adaptive = _model(0), _model(1)
    ad = SwitchingAdapter(MBAdapter(plain), GrBALAdapter(adaptive, 1e-3),
                          Surprise(threshold=1.0, recent=4, release=0.5, hold=3, early=False))
    wrong = _window(plain, 3.0)
    for n in range(1, 16):
        ctx = ad.adapt(wrong[0][:n], wrong[1][:n])
        assert not ad.engaged and ADAPTED_KEY not in ctx, f"engaged on {n} transitions"
    assert ad.last_recent_loss == pytest.approx(9.0, rel=1e-3), "measured and logged all the same"
    ad.adapt(wrong[0][:16], wrong[1][:16])
    assert ad.engaged and ad.switches == 1


def test_a_short_start_up_window_engages_only_on_a_surprise_as_large_as_the_window_is_short(switch):
    """Early judgement: on n < 16 transitions the threshold is 1.0 · 16 / n. A robot that starts with a limp leg reads
    3-4 from the first transitions and is taken over within a second; the start-up error that once read 1.01 on a
    6-transition window (the legs-only estimate with latency) is not enough."""
    ad, plain, _ = switch
    huge = _window(plain, 3.0)  # normalised MSE 9: above 16/4 = 4 on the first 4 transitions
    for n in range(1, 4):
        ad.adapt(huge[0][:n], huge[1][:n])
        assert not ad.engaged, f"fewer than `recent` transitions decide nothing (n = {n})"
    ad.adapt(huge[0][:4], huge[1][:4])
    assert ad.engaged and ad.switches == 1
    ad.reset()
    moderate = _window(plain, 1.5)  # 2.25: above 16/n from n = 8 on
    for n in range(4, 8):
        ad.adapt(moderate[0][:n], moderate[1][:n])
        assert not ad.engaged, f"2.25 does not beat 16/{n} = {16 / n:.2f}"
    ad.adapt(moderate[0][:8], moderate[1][:8])
    assert ad.engaged
    ad.reset()
    start_up = _window(plain, 1.005)  # 1.01 on 6 transitions: needs 16/6 = 2.67
    for n in range(4, 16):
        ad.adapt(start_up[0][:n], start_up[1][:n])
    assert not ad.engaged
    calm = _window(plain, 0.0)
    ad.engaged = True
    for n in range(4, 16):
        ad.adapt(calm[0][:n], calm[1][:n])
    assert ad.engaged, "a short window never releases: release waits for the full window and the hold"
