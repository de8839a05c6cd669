"""The path cost (planners/costs.py) and the path projection (planners/paths_torch.py): residuals, signs,
wrapping, guidance, crab angle, projection windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from legadapt.planners.costs import PathCost
from legadapt.planners.paths_torch import Polyline, wrap_angle

DT = 0.1  # s


def straight_rollout(y: float = 0.0, yaw: float = 0.0, speed: float = 0.2, steps: int = 5) -> torch.Tensor:
    """[1, steps+1, 3] poses moving along +x at ``speed`` m/s, offset ``y`` m."""
    x = speed * DT * torch.arange(steps + 1, dtype=torch.float32)
    return torch.stack([x, torch.full_like(x, y), torch.full_like(x, yaw)], dim=-1)[None]


def test_path_cost_zero_on_path_at_target_speed() -> None:
    cost = PathCost(torch.tensor([[0.0, 0.0], [1.0, 0.0], [4.0, 0.0]]), target_speed=0.2, dt=DT)
    states = straight_rollout()
    r = cost.residuals(states, torch.zeros(1, 5, 2))
    for k in ("cross_track", "heading", "speed"):
        assert r[k].abs().max() < 1e-6, (k, r[k])
    assert float(cost(states, torch.zeros(1, 5, 2))[0]) < 1e-9


def test_path_cost_cross_track_sign_and_magnitude() -> None:
    cost = PathCost(torch.tensor([[0.0, 0.0], [4.0, 0.0]]), target_speed=0.2, dt=DT,
                    weights={"cross_track": 2.0, "heading": 0.0, "speed": 0.0, "smoothness": 0.0})
    left, right = cost.residuals(straight_rollout(0.1), torch.zeros(1, 5, 2)), cost.residuals(straight_rollout(-0.1), torch.zeros(1, 5, 2))
    assert torch.allclose(left["cross_track"], torch.full((1, 5), 0.1), atol=1e-6)
    assert torch.allclose(right["cross_track"], torch.full((1, 5), -0.1), atol=1e-6)
    assert float(cost(straight_rollout(0.1), torch.zeros(1, 5, 2))[0]) == pytest.approx(2.0 * 5 * 0.01, rel=1e-5)


def test_path_cost_heading_wraps() -> None:
    cost = PathCost(torch.tensor([[0.0, 0.0], [4.0, 0.0]]), dt=DT)
    near_pi = straight_rollout(yaw=2 * math.pi + 0.1)
    assert torch.allclose(cost.residuals(near_pi, torch.zeros(1, 5, 2))["heading"], torch.full((1, 5), 0.1), atol=1e-5)
    assert torch.allclose(wrap_angle(torch.tensor([3.0 * math.pi / 2, -3.0 * math.pi / 2])),
                          torch.tensor([-math.pi / 2, math.pi / 2]), atol=1e-6)
    # a path heading +170 deg and a robot at -170 deg: 20 deg apart, not 340
    back = PathCost(torch.tensor([[0.0, 0.0], [math.cos(math.radians(170)), math.sin(math.radians(170))]]), dt=DT)
    err = back.residuals(torch.tensor([[[0.0, 0.0, math.radians(-170)]] * 2]), torch.zeros(1, 1, 2))["heading"]
    assert float(err[0, 0]) == pytest.approx(math.radians(20), abs=1e-5)


def test_heading_target_turns_towards_the_path_with_the_approach_gain() -> None:
    """Off the path, the heading target leads back to it (atan(gain · cross-track)), so the
    heading and cross-track terms no longer hold a robot parallel to the path."""
    path = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    plain, guided = PathCost(path, dt=DT), PathCost(path, dt=DT, approach_gain=3.0)
    parallel = straight_rollout(0.1)  # 10 cm left of the path, heading along it
    converging = straight_rollout(0.1, yaw=-math.atan(0.3))  # heading back at the guidance angle
    h = lambda c, r: c.residuals(r, torch.zeros(1, 5, 2))["heading"][0, 0]  # noqa: E731
    assert float(h(plain, parallel)) == pytest.approx(0.0, abs=1e-6)
    assert float(h(guided, parallel)) == pytest.approx(math.atan(0.3), abs=1e-5)
    assert float(h(guided, converging)) == pytest.approx(0.0, abs=1e-5)
    right = straight_rollout(-0.1, yaw=math.atan(0.3))  # right of the path: the target turns left
    assert float(h(guided, right)) == pytest.approx(0.0, abs=1e-5)


def test_course_residual_lets_the_body_crab_but_not_drift() -> None:
    """The course term judges where the body goes over the ground, not where it points: a robot
    yawed 20 deg while moving along the path costs nothing (it may need that crab angle on a
    cross-slope); one pointing along the path but sliding sideways does."""
    path = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    cost = PathCost(path, target_speed=0.2, dt=DT, approach_gain=3.0,
                    weights={"cross_track": 0.0, "heading": 0.0, "course": 1.0, "speed": 0.0, "smoothness": 0.0})
    crabbing = straight_rollout(yaw=math.radians(20))
    r = cost.residuals(crabbing, torch.zeros(1, 5, 2))
    assert r["course"].abs().max() < 1e-6 and float(cost(crabbing, torch.zeros(1, 5, 2))[0]) < 1e-9
    assert r["heading"].abs().min() > 0.3, "the heading term would have fought it"
    sliding = straight_rollout()
    sliding[0, :, 1] = -0.02 * torch.arange(6)  # 2 cm per step to the right while pointing along the path
    course = cost.residuals(sliding, torch.zeros(1, 5, 2))["course"][0]
    g = math.atan(3.0 * 0.02)  # 2 cm right of the path after the first step: the guidance turns left by this
    expected = (math.cos(g) * -0.02 - math.sin(g) * 0.02) / 0.02
    assert float(course[0]) == pytest.approx(expected, abs=1e-4), "2 cm sideways per 2 cm nominal step, plus the guidance"
    assert float(course[-1]) < float(course[0]), "further off, the guidance asks for more: a larger residual"
    standing = straight_rollout(speed=0.0)
    assert cost.residuals(standing, torch.zeros(1, 5, 2))["course"].abs().max() < 1e-6, "standing is the speed term's business"


def test_a_measured_crab_angle_moves_the_heading_target_so_heading_and_course_agree() -> None:
    """A body that moves 20 deg right of where it points (a crab of -20 deg, measured) holds its line yawed 20 deg
    left: with the crab taken off the heading target that yaw costs nothing, without it the heading term fights it."""
    cost = PathCost(torch.tensor([[0.0, 0.0], [4.0, 0.0]]), dt=DT, approach_gain=3.0)
    crabbing = straight_rollout(yaw=math.radians(20))  # moves along the path, points 20 deg left of it
    h = lambda: cost.residuals(crabbing, torch.zeros(1, 5, 2))["heading"]  # noqa: E731
    assert float(h().abs().min()) == pytest.approx(math.radians(20), abs=1e-5)
    cost.crab = math.radians(-20)
    assert float(h().abs().max()) < 1e-5
    cost.crab = math.radians(20)  # the opposite crab: now the yaw is 40 deg off what holds the line
    assert float(h().abs().min()) == pytest.approx(math.radians(40), abs=1e-5)


def test_path_cost_speed_residual_and_smoothness() -> None:
    cost = PathCost(torch.tensor([[0.0, 0.0], [4.0, 0.0]]), target_speed=0.2, dt=DT)
    slow = cost.residuals(straight_rollout(speed=0.15), torch.zeros(1, 5, 2))["speed"]
    assert torch.allclose(slow, torch.full((1, 5), -0.05), atol=1e-5)
    actions = torch.tensor([[[0.1, 0.0], [0.3, 0.0], [0.3, -0.2]]])
    sm = cost.residuals(straight_rollout(steps=3), actions)["smoothness"]
    assert torch.allclose(sm[0], torch.tensor([[0.0, 0.0], [0.2, 0.0], [0.0, -0.2]]))
    cost.prev_action = torch.tensor([0.5, 0.5])
    assert torch.allclose(cost.residuals(straight_rollout(steps=3), actions)["smoothness"][0, 0], torch.tensor([-0.4, -0.5]))


def test_path_cost_pose_slice_and_unknown_weight() -> None:
    cost = PathCost(torch.tensor([[0.0, 0.0], [4.0, 0.0]]), dt=DT, pose_slice=[3, 1, 0])  # (x, y, yaw) at 3, 1, 0
    s = torch.zeros(1, 3, 4)
    s[..., 3], s[..., 1] = 1.0, -0.1
    assert torch.allclose(cost.residuals(s, torch.zeros(1, 2, 2))["cross_track"], torch.full((1, 2), -0.1))
    with pytest.raises(ValueError, match="unknown residual"):
        PathCost(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), weights={"crosstrack": 1.0})


def test_polyline_projection_matches_numpy_paths_and_chunks() -> None:
    from legadapt.paths import make_path

    path = make_path("left_turn", 3.0)
    poly = Polyline(torch.as_tensor(path.points), dtype=torch.float64)
    rng = np.random.default_rng(0)
    q = path.point(rng.uniform(0.1, 2.9, 200)) + rng.uniform(-0.05, 0.05, (200, 2))
    s_ref, c_ref, h_ref = path.project(q)
    s, c, h = poly.project(torch.as_tensor(q).reshape(10, 20, 2), chunk_pairs=997)
    assert s.shape == (10, 20)
    assert np.allclose(s.reshape(-1).numpy(), s_ref, atol=1e-9)
    assert np.allclose(c.reshape(-1).numpy(), c_ref, atol=2e-3)  # distance vs perpendicular offset at vertices
    assert np.allclose(h.reshape(-1).numpy(), h_ref, atol=1e-9)
    sw, cw, _ = poly.project(torch.as_tensor(q), s_hint=1.5, window=5.0)  # window covering all: same answer
    assert torch.allclose(sw, s.reshape(-1)) and torch.allclose(cw, c.reshape(-1))


def test_s_hint_keeps_projection_on_the_right_branch() -> None:
    # A path out along +x and back along y = 0.02: a point at (1, 0.01) is ambiguous without a hint.
    pts = torch.tensor([[0.0, 0.0], [2.0, 0.0], [2.0, 0.02], [0.0, 0.02]])
    cost = PathCost(pts, dt=DT, window=0.5)
    cost.s_hint = 1.0
    assert cost.advance(torch.tensor([1.0, 0.012])) == pytest.approx(1.0, abs=1e-5)
    cost.s_hint = 3.0
    assert cost.advance(torch.tensor([1.0, 0.012])) == pytest.approx(3.02, abs=1e-5)
