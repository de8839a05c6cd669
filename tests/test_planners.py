"""Sampling planners (planners/): optimality, determinism, bounds, warm start, batching (the path cost: test_path_cost.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from legadapt.planners.base import Planner
from legadapt.planners.cem import CEM
from legadapt.planners.colored_noise import colored_noise
from legadapt.planners.icem import ICEM
from legadapt.planners.costs import PathCost
from legadapt.planners.mppi import MPPI
from legadapt.planners.random_shooting import RandomShooting

DT = 0.1  # s
PLANNERS = {"cem": CEM, "icem": ICEM, "mppi": MPPI, "mppi_colored": MPPI, "random_shooting": RandomShooting}
FAST = {"cem": {"num_samples": 200, "num_elites": 20, "iterations": 3},
        "icem": {"num_samples": 200, "num_elites": 20, "iterations": 3},
        "mppi": {"num_samples": 200, "temperature": 0.3, "iterations": 3},
        "mppi_colored": {"num_samples": 200, "temperature": 0.3, "iterations": 3, "noise_beta": 2.0},
        "random_shooting": {"num_samples": 400}}


def point_dynamics(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """2-D point: next = state + dt * action (state [B, 2] m, action [B, 2] m/s)."""
    return state + DT * action


def unicycle(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Unicycle pose (x, y, yaw) [B, 3]; action (v / 0.3 m/s, omega / 1 rad/s) [B, 2] in [-1, 1]."""
    x, y, yaw = state.unbind(-1)
    v, w = 0.3 * action[:, 0], action[:, 1]
    return torch.stack([x + DT * v * torch.cos(yaw), y + DT * v * torch.sin(yaw), yaw + DT * w], dim=-1)


def goal_cost(goal: torch.Tensor):
    """Σ_t |x_t - goal|² over t = 1..H: [N]."""
    return lambda states, actions: (states[:, 1:] - goal).square().sum((1, 2))


def make(name: str, dynamics, cost, horizon: int = 10, low=-1.0, high=1.0, seed: int = 0, action_dim: int = 2,
         **kw) -> Planner:
    return PLANNERS[name](dynamics, cost, horizon, low, high, seed=seed, action_dim=action_dim, **{**FAST[name], **kw})


def closed_loop(policy, dynamics, x0: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``policy(state) -> action [A]`` for ``steps``; return states [1, T+1, D], actions [1, T, A]."""
    xs, us = [x0], []
    for _ in range(steps):
        u = policy(xs[-1])
        us.append(u)
        xs.append(dynamics(xs[-1][None], u[None])[0])
    return torch.stack(xs)[None], torch.stack(us)[None]


@pytest.mark.parametrize("name", PLANNERS)
def test_reaches_goal_better_than_zero_and_random(name: str) -> None:
    goal = torch.tensor([1.0, -0.5])
    cost = goal_cost(goal)
    p = make(name, point_dynamics, cost)
    x0 = torch.zeros(2)
    gen = torch.Generator().manual_seed(7)
    runs = {"planner": p.act, "zero": lambda s: torch.zeros(2),
            "random": lambda s: torch.rand(2, generator=gen) * 2 - 1}
    final = {k: float(torch.linalg.norm(closed_loop(f, point_dynamics, x0, 20)[0][0, -1] - goal)) for k, f in runs.items()}
    assert final["planner"] < 0.1, final  # 1.12 m away, 2 s at up to 1.41 m/s
    assert final["planner"] < 0.2 * final["zero"] and final["planner"] < 0.2 * final["random"], final


@pytest.mark.parametrize("name", PLANNERS)
def test_follows_straight_path_better_than_zero_and_random(name: str) -> None:
    cost = PathCost(torch.tensor([[0.0, 0.0], [5.0, 0.0]]), target_speed=0.2, dt=DT,
                    weights={"smoothness": 0.1}, terminal_weight=10.0)
    p = make(name, unicycle, cost, horizon=10)
    x0 = torch.tensor([0.0, 0.15, 0.3])  # 15 cm left of the path, turned further left
    gen = torch.Generator().manual_seed(3)
    runs = {"planner": p.act, "zero": lambda s: torch.zeros(2),
            "random": lambda s: torch.rand(2, generator=gen) * 2 - 1}
    score = {}
    for k, f in runs.items():
        xs, us = closed_loop(f, unicycle, x0, 40)
        score[k] = float(cost(xs, us)[0])
        if k == "planner":  # closer to the path than it started, and moving along it
            assert abs(float(xs[0, -1, 1])) < (0.05 if name != "random_shooting" else 0.1), xs[0, -1]
            assert float(xs[0, -1, 0]) > 0.5, xs[0, -1]
    assert score["planner"] < 0.5 * score["zero"] and score["planner"] < 0.5 * score["random"], score


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_converges_to_known_optimum_1d(name: str) -> None:
    """x_{t+1} = x_t + a_t, cost Σ_t (x_t - 0.3 t)²: the optimum is a_t = 0.3 for every t."""
    dyn = lambda s, a: s + a  # noqa: E731
    ramp = 0.3 * torch.arange(1, 6, dtype=torch.float32)
    cost = lambda states, actions: (states[:, 1:, 0] - ramp).square().sum(1)  # noqa: E731
    kw = {"iterations": 10, "num_samples": 500}
    kw.update({"num_elites": 50} if name == "cem" else {"temperature": 0.01, "noise_sigma": 0.1, "smoothing_window": 1})
    p = make(name, dyn, cost, horizon=5, action_dim=1, **kw)
    plan = p.plan(torch.zeros(1))
    assert plan.shape == (5, 1)
    assert float(plan[0, 0]) == pytest.approx(0.3, abs=0.02)
    assert torch.allclose(plan[:, 0], torch.full((5,), 0.3), atol=0.05)
    assert p.last_info.best_cost < 0.01 and p.last_info.iterations == 10 and p.last_info.wall_time_s > 0


def _steady_first_action(update: str, target: float, temperature: float) -> float:
    """MPPI (256 samples, noise 0.4, β = 2, as shipped) on x' = x + a with cost Σ_t (x_t - target·t)², warm-started
    over 40 cycles: the mean first action of the last 20, over 3 seeds (the best action is ``target`` clamped to 1)."""
    ramp = target * torch.arange(1, 11, dtype=torch.float32)
    cost = lambda states, actions: (states[:, 1:, 0] - ramp).square().sum(1)  # noqa: E731
    firsts = []
    for seed in range(3):
        p = MPPI(lambda s, a: s + a, cost, 10, -1.0, 1.0, num_samples=256, temperature=temperature, noise_sigma=0.4,
                 noise_beta=2.0, update=update, seed=seed, action_dim=1)
        for k in range(40):
            plan = p.plan(torch.zeros(1))
            firsts += [float(plan[0, 0])] if k >= 20 else []
            p.shift()
    return sum(firsts) / len(firsts)


def test_mppi_update_by_the_drawn_noise_keeps_a_nominal_at_the_bound_that_costs_least() -> None:
    """With the clamped samples' offsets every sample lies inside a nominal at the bound and pulls it back in (0.91
    where 1.2 is wanted, clamped to 1); with the noise as drawn a sample beyond the bound counts as drawn and the
    nominal stays there. The price: near a bound the drawn noise leans on it (0.9 wanted, 1.0 planned)."""
    assert _steady_first_action("noise", 1.2, 30.0) > 0.995
    assert _steady_first_action("clamped", 1.2, 30.0) < 0.95
    assert _steady_first_action("clamped", 0.9, 3.0) == pytest.approx(0.9, abs=0.03)
    assert _steady_first_action("noise", 0.9, 3.0) > 0.97
    with pytest.raises(ValueError, match="update must be one of"):
        MPPI(point_dynamics, goal_cost(torch.zeros(2)), 5, -1.0, 1.0, update="mean", action_dim=2)


def _steady_plan_cost(fine_share: float) -> float:
    """MPPI as shipped (256 samples, noise 0.4, β = 2, temperature 0.3) walking a 2-D toy: x advances by the mean of
    the two actions and must follow 0.8 per step, y moves by their difference (a turn) and must stay 0; warm-started
    over 60 cycles. The mean cost of the plans of the last 30 cycles over 3 seeds (0 at the floor, both actions 0.8)."""
    ramp = 0.8 * torch.arange(1, 11, dtype=torch.float32)
    cost = lambda st, ac: (st[:, 1:, 0] - ramp).square().sum(1) + st[:, 1:, 1].square().sum(1)  # noqa: E731
    dyn = lambda s, a: s + torch.stack([a.mean(1), a[:, 0] - a[:, 1]], 1)  # noqa: E731
    costs = []
    for seed in range(3):
        p = MPPI(dyn, cost, 10, -1.0, 1.0, num_samples=256, temperature=0.3, noise_sigma=0.4, noise_beta=2.0,
                 fine_share=fine_share, seed=seed, action_dim=2)
        for k in range(60):
            plan = p.plan(torch.zeros(2))
            costs += [float(p.rollout(torch.zeros(2), plan[None])[1][0])] if k >= 30 else []
            p.shift()
    return sum(costs) / len(costs)


def test_mppi_fine_samples_bring_the_nominal_to_the_floor_of_the_cost() -> None:
    """With noise 0.4 against a narrow valley the update settles where the cost smoothed by the noise is least, off the
    floor; half the samples drawn at a quarter of the noise carry it onto the floor, at the same number of samples."""
    coarse, fine = _steady_plan_cost(0.0), _steady_plan_cost(0.5)
    assert coarse > 0.2 and fine < 0.2 * coarse
    with pytest.raises(ValueError, match="fine_share must be in"):
        MPPI(point_dynamics, goal_cost(torch.zeros(2)), 5, -1.0, 1.0, fine_share=1.0, action_dim=2)


def test_mppi_smoothing_keeps_constants_and_damps_jitter() -> None:
    p = make("mppi", point_dynamics, goal_cost(torch.zeros(2)), horizon=6, smoothing_window=3)
    const = torch.tensor([[0.2, -0.4]]).expand(6, 2)
    assert torch.allclose(p.smooth(const), const)
    jitter = torch.tensor([1.0, -1.0] * 3)[:, None].expand(6, 2)
    assert p.smooth(jitter)[1:-1].abs().max() == pytest.approx(1 / 3)


@pytest.mark.parametrize("name", PLANNERS)
def test_seed_determinism(name: str) -> None:
    cost = goal_cost(torch.tensor([1.0, 1.0]))
    x0 = torch.tensor([0.2, -0.1])
    a, b, c = (make(name, point_dynamics, cost, seed=s) for s in (5, 5, 6))
    pa, pb, pc = a.plan(x0), b.plan(x0), c.plan(x0)
    assert torch.equal(pa, pb) and torch.equal(a.plan(x0), b.plan(x0))
    assert not torch.equal(pa, pc)
    a.reset()  # a reset planner repeats itself
    assert torch.equal(a.plan(x0), pa)


@pytest.mark.parametrize("name", PLANNERS)
def test_actions_always_within_bounds(name: str) -> None:
    low, high = torch.tensor([-0.2, 0.1]), torch.tensor([0.3, 0.5])
    seen: list[torch.Tensor] = []

    def dyn(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        seen.append(a.clone())
        return point_dynamics(s, a)

    p = make(name, dyn, goal_cost(torch.tensor([-50.0, 50.0])), low=low, high=high)  # goal pulls out of bounds
    for _ in range(3):
        plan = p.plan(torch.zeros(2))
        assert torch.all(plan >= low) and torch.all(plan <= high)
    every = torch.cat(seen)
    assert torch.all(every >= low) and torch.all(every <= high)


@pytest.mark.parametrize("name", PLANNERS)
def test_warm_start_shifts_previous_plan(name: str) -> None:
    first_rows: list[torch.Tensor] = []

    def dyn(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        first_rows.append(a[0].clone())
        return point_dynamics(s, a)

    p = make(name, dyn, goal_cost(torch.tensor([0.5, -0.3])), horizon=6)
    assert torch.equal(p.initial_mean(), p.default_mean.expand(6, -1))
    plan = p.plan(torch.zeros(2))
    shifted = p.initial_mean()
    assert torch.equal(shifted, torch.cat([plan[1:], plan[-1:]]))
    first_rows.clear()
    p.plan(torch.zeros(2))
    assert torch.equal(first_rows[0], shifted[0])  # sample 0 of the next plan is the shifted plan
    filled = make(name, point_dynamics, goal_cost(torch.tensor([0.5, -0.3])), horizon=6,
                  shift_fill="default", default_mean=[0.1, -0.1])
    plan = filled.plan(torch.zeros(2))
    assert torch.equal(filled.initial_mean(), torch.cat([plan[1:], torch.tensor([[0.1, -0.1]])]))
    filled.shift()  # a period ran on the old plan: next plan starts two steps on
    assert torch.equal(filled.initial_mean(), torch.cat([plan[2:], torch.tensor([[0.1, -0.1]] * 2)]))
    filled.reset()
    assert torch.equal(filled.initial_mean(), torch.tensor([[0.1, -0.1]]).expand(6, -1))


@pytest.mark.parametrize("name,iterations", [("cem", 3), ("mppi", 2), ("random_shooting", 1)])
def test_dynamics_called_h_times_per_iteration_with_batch_n(name: str, iterations: int) -> None:
    batches: list[int] = []

    def dyn(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        assert s.shape[0] == a.shape[0]
        batches.append(s.shape[0])
        return point_dynamics(s, a)

    kw = {} if name == "random_shooting" else {"iterations": iterations}
    p = make(name, dyn, goal_cost(torch.ones(2)), horizon=7, num_samples=64, **kw)
    p.act(torch.zeros(2))
    assert batches == [64] * (7 * iterations)


@pytest.mark.parametrize("name", PLANNERS)
def test_nan_costs_do_not_poison_the_plan(name: str) -> None:
    def dyn(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:  # diverges where action x > 0.5
        nxt = point_dynamics(s, a)
        return torch.where((a[:, :1] > 0.5), torch.full_like(nxt, float("nan")), nxt)

    plan = make(name, dyn, goal_cost(torch.tensor([1.0, 0.0]))).plan(torch.zeros(2))
    assert torch.isfinite(plan).all() and float(plan.max()) <= 1.0


def test_rollout_shapes_and_first_state() -> None:
    p = make("mppi", point_dynamics, goal_cost(torch.zeros(2)), horizon=4)
    x0 = torch.tensor([0.5, 0.25])
    states, costs = p.rollout(x0, torch.ones(3, 4, 2))
    assert states.shape == (3, 5, 2) and costs.shape == (3,)
    assert torch.equal(states[:, 0], x0.expand(3, 2))
    assert torch.allclose(states[0, -1], x0 + 4 * DT)


# ------------------------------------------------------------------------------ layering
FORBIDDEN = {"legadapt", "sim", "hardware", "controller", "dynamics", "calibration"}
ALLOWED = {"torch", "numpy", "math", "dataclasses", "typing", "__future__", "abc", "time"}


def test_planners_import_nothing_of_the_project() -> None:
    root = Path(__file__).resolve().parents[1] / "planners"
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 6
    for f in files:
        text = f.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [] if node.level else [(node.module or "").split(".")[0]]
            else:
                continue
            assert not set(mods) & FORBIDDEN, f"{f.name} imports {mods}"
            assert set(mods) <= ALLOWED, f"{f.name} imports {mods}; planners may use only {sorted(ALLOWED)}"
        for pkg in FORBIDDEN:  # grep-style: no dynamic imports either
            assert f"import {pkg}" not in text and f"from {pkg}" not in text and f'"{pkg}"' not in text, (f.name, pkg)


# ---------------------------------------------------------------- coloured noise, iCEM
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_colored_noise_has_unit_variance_and_its_power_law(beta: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = colored_noise(beta, (4000, 16, 2), g)  # [N, H, A]
    assert x.shape == (4000, 16, 2) and abs(float(x.var()) - 1.0) < 0.05, float(x.var())
    power = torch.fft.rfft(x.transpose(1, 2).double(), dim=-1).abs().square().mean((0, 1))  # [F]
    slope = np.polyfit(np.log(np.arange(1, power.numel())), np.log(power[1:].numpy()), 1)[0]
    print(f"beta {beta}: spectral slope {slope:.2f}")
    assert abs(slope + beta) < 0.35, "PSD falls as 1/f^beta"
    lag1 = float((x[:, 1:] * x[:, :-1]).mean())
    assert (lag1 > 0.5) if beta == 2.0 else (abs(lag1) < 0.05) if beta == 0.0 else True, lag1


def test_white_colored_noise_is_the_plain_normal_stream() -> None:
    a = colored_noise(0.0, (3, 5, 2), torch.Generator().manual_seed(4))
    b = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b), "MPPI with beta 0 plans exactly as before"


def test_icem_population_shrinks_and_keeps_elites() -> None:
    batches: list[int] = []

    def dyn(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        batches.append(s.shape[0])
        return point_dynamics(s, a)

    p = make("icem", dyn, goal_cost(torch.ones(2)), horizon=4, num_samples=100, num_elites=10, iterations=3,
             keep_elites=0.3, decay=2.0)
    p.act(torch.zeros(2))
    assert batches == [100] * 4 + [50 + 3] * 4 + [25 + 3] * 4, "N γ^-i (at least 2K) + the kept 30 % of K"
    batches.clear()
    p.act(torch.zeros(2))
    assert batches[0] == 100 + 3, "the previous plan's kept elites, shifted, join the first iteration"


def test_icem_needs_fewer_samples_than_cem_on_a_smooth_task() -> None:
    """The paper's claim in miniature: reaching a goal 1 m away through a unicycle, iCEM with 40 samples per
    iteration gets at least as low a cost as CEM with 200."""
    goal = torch.tensor([1.0, 0.5, 0.0])
    cost = lambda st, ac: (st[:, 1:, :2] - goal[:2]).square().sum((1, 2))  # noqa: E731
    results = {}
    for name, n in (("cem", 200), ("icem", 40)):
        costs = []
        for seed in range(5):
            p = make(name, unicycle, cost, horizon=15, seed=seed, num_samples=n, num_elites=min(20, n // 2),
                     iterations=3, action_dim=2)
            p.plan(torch.zeros(3))
            costs.append(p.last_info.best_cost)
        results[name] = float(np.median(costs))
    print(f"median best cost: CEM 200 samples {results['cem']:.3f}, iCEM 40 samples {results['icem']:.3f}")
    assert results["icem"] <= results["cem"] * 1.05
