"""Where MPPI's nominal settles against the floor of its own cost, on logged states of the intact robot.

MPPI's update is the softmax-weighted mean of its samples' offsets. Iterated from one state, it settles where the
cost *smoothed by the sampling noise* is least, which is not where the cost is least when the noise is wide against
the cost's valley. This bench walks the intact robot on the flat (``configs/hexapod_sim.yaml`` on the simulator's true
state, 13 s, lockstep, the shipped model: MB plans) and, at the cycles of 6-12 s, gives each contender the logged
state, pose, previous action and window, then lets it plan ``--iterations`` times over (warm-started from its own
plan, as in closed loop). Printed per contender, as medians over the cycles: the plan's predicted speed along the
path (m/s; the task asks 0.2), its cost, and that cost over the cost of the best constant stride (the same stride on
both sides, searched on a grid: a floor the optimiser should reach or beat).

Usage: ``python bench/planner_bias.py [--iterations 20] [--contenders ...]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from planned_cost import cycles_of, load_window  # noqa: E402

from legadapt import config as C  # noqa: E402
from legadapt.controller.preflight import build_controller, resolve_model  # noqa: E402
from legadapt.mcap_read import read_log  # noqa: E402

#: Planner settings compared (over the log's own planner config): name -> overrides.
CONTENDERS: dict[str, dict] = {
    "noise 0.4 (until 2026-12-06)": {"fine_share": 0.0},
    "noise 0.4, 4096 samples": {"fine_share": 0.0, "samples": 4096},
    "noise 0.4, temperature 0.03": {"fine_share": 0.0, "temperature": 0.03},
    "noise 0.1": {"fine_share": 0.0, "noise": 0.1},
    "half at 0.1 (the default)": {"fine_share": 0.5},
}
STRIDES = np.linspace(0.5, 1.0, 51)  # the constant strides searched for the floor (action units)


def make_log(tmp: Path) -> Path:
    """13 s of the intact robot on the flat, controller on the true state (MB plans)."""
    cfg = yaml.safe_load((REPO / "configs" / "hexapod_sim.yaml").read_text())
    cfg.setdefault("controller", {})["state_source"] = "privileged"
    path = tmp / "intact.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = tmp / "intact.mcap"
    subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "run", "--config", str(path), "--duration", "13",
                    "--log", str(log)], check=True, capture_output=True)
    return log


def _speed_and_cost(mpc, z0: torch.Tensor, plans: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Predicted mean speed along the path (m/s) [K] and cost [K] of ``plans`` [K, H, A] from ``z0``."""
    with torch.no_grad():
        traj, cost = mpc.planner.rollout(z0, plans)
        speed = mpc.cost.residuals(traj, plans)["speed"].mean(1) + mpc.cost.target_speed
    return speed.numpy(), cost.numpy()


def settle(cfg: C.LegadaptConfig, planner: dict, cycles: list[dict], iterations: int) -> list[tuple[float, float, float]]:
    """Per cycle: (plan speed m/s, plan cost, plan cost / best constant stride's cost) after ``iterations`` plans."""
    cfg = cfg.model_copy(update={"controller": cfg.controller.model_copy(update={
        "planner": cfg.controller.planner.model_copy(update=planner)})})
    mpc, _, window = build_controller(cfg, resolve_model(cfg.controller.model))
    out = []
    for c in cycles:
        load_window(mpc, c, window)
        for _ in range(iterations):
            plan = mpc.step(c["state"], c["pose"], c["prev_action"])
        mpc.predict = mpc.adapter.dynamics(mpc.ctx)  # the fp32 model for scoring
        z0 = torch.as_tensor(np.concatenate([c["pose"], c["state"]]), dtype=torch.float32)
        h, a = plan.shape
        const = torch.as_tensor(STRIDES, dtype=torch.float32)[:, None, None].expand(len(STRIDES), h, a).contiguous()
        _, const_cost = _speed_and_cost(mpc, z0, const)
        speed, cost = _speed_and_cost(mpc, z0, torch.as_tensor(plan, dtype=torch.float32)[None])
        out.append((float(speed[0]), float(cost[0]), float(cost[0] / const_cost.min())))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=20, help="plans per logged cycle (each one MPPI update)")
    ap.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        log = read_log(make_log(Path(tmp)))
    cfg = C.parse_config(log.config, "the log's config")
    cycles = [c for c in cycles_of(log) if 6.0 <= c["t"] <= 12.0][::5]
    print(f"{len(cycles)} logged cycles of the intact robot (6-12 s, every 5th), {args.iterations} plans each; "
          f"the task asks {cfg.task.target_speed} m/s")
    print(f"{'contender':32s} {'speed m/s':>10s} {'cost':>7s} {'cost / best constant stride':>28s}")
    for name in args.contenders:
        rows = settle(cfg, CONTENDERS[name], cycles, args.iterations)
        med = [statistics.median(r[i] for r in rows) for i in range(3)]
        print(f"{name:32s} {med[0]:10.4f} {med[1]:7.3f} {med[2]:28.2f}")


if __name__ == "__main__":
    main()
