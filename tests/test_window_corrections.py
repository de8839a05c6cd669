"""What the adaptation window tells the planner beyond the model: the model's steady error on it, added to its
predictions (offset-free MPC, controller/model_offset.py: the plain model's on the displacement, an adapted model's on
the forward displacement), and the crab angle the body moves at, taken off the heading target (planners/costs.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from legadapt import config as C
from legadapt.controller.model_offset import offset_index, window_offset
from legadapt.controller.mpc import MAX_CRAB
from legadapt.controller.preflight import build_controller
from legadapt.dynamics.switching import SwitchingAdapter
from legadapt.features import make_spec, target_groups
from conftest import HEXAPOD, STATE_DIM, TARGET_DIM

SPEC = make_spec("per_side", 0.1, HEXAPOD)
REPO = Path(__file__).resolve().parents[1]


def _linear_predictor(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = 0.01 * torch.randn(STATE_DIM + 2, TARGET_DIM, generator=g)
    return lambda s, a: torch.cat([s, a], -1) @ w


def test_the_offset_is_the_mean_residual_on_the_chosen_targets_and_zero_elsewhere():
    f = _linear_predictor()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, STATE_DIM + 2, generator=g)
    bias = torch.randn(TARGET_DIM, generator=g)
    noise = 0.1 * torch.randn(16, TARGET_DIM, generator=g)
    y = f(x[:, :STATE_DIM], x[:, STATE_DIM:]) + bias + noise - noise.mean(0)  # residual mean exactly `bias`
    for targets in ("forward", "displacement", "body"):
        idx = offset_index(SPEC, targets)
        off = window_offset(f, x.numpy(), y.numpy(), STATE_DIM, idx, 0.5)
        rest = torch.ones(TARGET_DIM, dtype=torch.bool)
        rest[idx] = False
        torch.testing.assert_close(off[idx], 0.5 * bias[idx], atol=1e-5, rtol=1e-5)
        assert torch.all(off[rest] == 0), f"{targets}: only the chosen targets are corrected"
    assert offset_index(SPEC, "displacement").tolist() == [STATE_DIM, STATE_DIM + 1, STATE_DIM + 2]
    assert offset_index(SPEC, "forward").tolist() == [STATE_DIM] and offset_index(SPEC, "off").numel() == 0
    assert set(offset_index(SPEC, "body").tolist()) == set(target_groups(SPEC)["body"])
    y[3, -2] = math.nan
    assert torch.all(window_offset(f, x.numpy(), y.numpy(), STATE_DIM, offset_index(SPEC, "body"), 1.0) == 0), \
        "a window with a sensor fault in it corrects nothing"


def _controller(**adaptation):
    cfg = C.parse_config({"controller": {"planner": {"samples": 16, "horizon": 3}, "adaptation": adaptation}})
    mpc, _, window = build_controller(cfg, REPO / "models" / "default.pt")
    return mpc, window


def _feed(mpc, window: int, dy_bias: float, sigmas: float = 0.0, seed: int = 0) -> None:
    """``window`` transitions from the planner's own predictor (the plain model), the displacement's dy moved by
    ``dy_bias`` m and every target by ``sigmas`` of the plain model's target spread (3: a normalised MSE of 9)."""
    spread = mpc.adapter.plain.model.out_norm.std.numpy().astype(float)
    rng = np.random.default_rng(seed)
    S = STATE_DIM
    for _ in range(window):
        s = np.zeros(S)
        s[9] = 1.0
        s[2] = 0.2 + 0.02 * rng.standard_normal()
        a = rng.uniform(0.5, 1.0, 2)
        with torch.no_grad():
            d = mpc.predict(torch.as_tensor(s, dtype=torch.float32)[None], torch.as_tensor(a, dtype=torch.float32)[None])[0].numpy()
        d = d.astype(float)
        d[S + 1] += dy_bias
        d += sigmas * spread
        mpc.observe(s, a, s + d[:S], d[S:])


def test_the_plain_model_plans_with_its_offset_and_the_adaptive_model_with_its_forward_miss_only_where_asked():
    mpc, window = _controller(adaptive_offset="forward")  # gain 1: the plain model's on the displacement, the adapted one's on dx
    assert isinstance(mpc.adapter, SwitchingAdapter)
    _feed(mpc, window, dy_bias=0.004)
    mpc.step(mpc.window_x[-1][:STATE_DIM], np.zeros(3))
    assert not mpc.adapter.engaged
    assert abs(float(mpc.offset[STATE_DIM + 1]) - 0.004) < 3e-4, "the plain model's 4 mm sideways miss per period"
    z = torch.zeros(5, 3 + STATE_DIM)
    z[:, 3 + 9] = 1.0
    a = torch.full((5, 2), 0.8)
    plain = mpc.predict(z[:, 3:], a)
    moved = mpc._step(z, a)
    torch.testing.assert_close(moved[:, 1], plain[:, STATE_DIM + 1] + mpc.offset[STATE_DIM + 1], atol=1e-6, rtol=0)
    _feed(mpc, window, dy_bias=0.004, sigmas=3.0, seed=1)
    mpc.step(mpc.window_x[-1][:STATE_DIM], np.zeros(3))
    assert mpc.adapter.engaged, "transitions 3 spreads off surprise the plain model"
    wx, wy = np.stack(mpc.window_x), np.stack(mpc.window_y)
    with torch.no_grad():  # the adapted model (this cycle's step) on the window it stepped on
        pred = mpc.predict(torch.as_tensor(wx[:, :STATE_DIM]), torch.as_tensor(wx[:, STATE_DIM:])).numpy()
    miss = (wy[:, STATE_DIM] - pred[:, STATE_DIM]).mean()
    assert abs(miss) > 1e-3, "a real test: the adapted model still misses the forward displacement"
    assert float(mpc.offset[STATE_DIM]) == pytest.approx(miss, abs=1e-5)
    rest = torch.ones_like(mpc.offset, dtype=torch.bool)
    rest[STATE_DIM] = False
    assert torch.all(mpc.offset[rest] == 0), "sideways and yaw are left to the step (an offset there fought it on a turn)"
    off, window = _controller()  # the default: none while the adaptive model plans
    _feed(off, window, dy_bias=0.004, sigmas=3.0, seed=1)
    off.step(off.window_x[-1][:STATE_DIM], np.zeros(3))
    assert off.adapter.engaged and torch.all(off.offset == 0)


def test_a_gain_of_zero_turns_the_offset_off():
    mpc, window = _controller(offset_gain=0.0)
    _feed(mpc, window, dy_bias=0.004)
    mpc.step(mpc.window_x[-1][:STATE_DIM], np.zeros(3))
    assert torch.all(mpc.offset == 0)


def _walk(mpc, n: int, dx: float, dy: float) -> None:
    """``n`` transitions of a body moving (dx, dy) m per period in its own frame (the states do not matter here)."""
    s = np.zeros(STATE_DIM)
    s[9] = 1.0
    for _ in range(n):
        mpc.observe(s, np.full(2, 0.8), s, np.array([dx, dy, 0.0]))


def test_the_heading_target_gives_up_the_crab_angle_measured_over_a_full_window():
    mpc, window = _controller(offset_gain=0.0)
    crab = math.radians(-10)  # moving 10 deg right of where it points, 2 cm per period
    _walk(mpc, window // 2, 0.02 * math.cos(crab), 0.02 * math.sin(crab))
    mpc.step(mpc.window_x[-1][:STATE_DIM], np.zeros(3))
    assert mpc.cost.crab == 0.0, "half a window (the stand-up, the first steps) says nothing yet"
    _walk(mpc, window, 0.02 * math.cos(crab), 0.02 * math.sin(crab))
    mpc.step(mpc.window_x[-1][:STATE_DIM], np.zeros(3))
    assert mpc.cost.crab == pytest.approx(crab, abs=1e-4)
    _walk(mpc, window, 0.001, 0.02)  # standing and sliding sideways: no crab to hold, a slide
    mpc.step(mpc.window_x[-1][:STATE_DIM], np.zeros(3))
    assert mpc.cost.crab == 0.0
    half = C.parse_config({"controller": {"planner": {"samples": 16, "horizon": 3}, "cost": {"crab_compensation": 0.5}}})
    mpc, _, _ = build_controller(half, REPO / "models" / "default.pt")
    _walk(mpc, window, 0.02, -0.02 * math.tan(math.radians(40)))  # 40 deg: clipped to the largest crab taken
    mpc.step(mpc.window_x[-1][:STATE_DIM], np.zeros(3))
    assert mpc.cost.crab == pytest.approx(-0.5 * MAX_CRAB, abs=1e-6)
