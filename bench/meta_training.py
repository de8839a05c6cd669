"""Meta-training throughput of the ``vmap`` path against a per-task Python loop, and the time
to train the default model.

1. Meta-steps per second (second-order GrBAL, M = K = 16, meta-batch 10, Adam step
   included) for ``dynamics.maml.meta_loss`` (vmap over tasks) and ``meta_loss_loop``
   (plain autograd, one task at a time), timed in alternating rounds in one run so that
   background load falls on both alike; medians and the ratio.
2. The wall time to train the default model on this machine: ``--train LOGS`` runs
   ``legadapt train --config configs/train/default.yaml`` on LOGS and times it; without
   it, the time recorded in an existing checkpoint's ``.json`` report is printed.

Usage: ``python bench/meta_training.py [--widths 256 512] [--steps 30] [--train runs/data/train]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

from legadapt.dynamics.maml import MamlConfig, meta_loss, meta_loss_loop  # noqa: E402
from legadapt.dynamics.mlp import DeltaMLP, params  # noqa: E402
from legadapt.features import make_spec  # noqa: E402
from legadapt.robot.description import load_description  # noqa: E402

SPEC = make_spec("per_side", 0.1, load_description())  # the default hexapod's model sizes


def _batch(cfg: MamlConfig, s: int = SPEC.state_dim, a: int = SPEC.action_dim,
           t: int = SPEC.target_dim) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    b = cfg.meta_batch
    return (torch.randn(b, cfg.M, s + a, generator=g), torch.randn(b, cfg.M, t, generator=g),
            torch.randn(b, cfg.K, s + a, generator=g), torch.randn(b, cfg.K, t, generator=g))


def _step_time(fn, model: DeltaMLP, opt: torch.optim.Optimizer, batch, cfg: MamlConfig) -> float:
    t = time.perf_counter()
    loss = fn(model, params(model), cfg.inner_lr, batch, cfg)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t


def throughput(width: int, steps: int) -> tuple[float, float]:
    """Median seconds per meta-step: (vmap, loop)."""
    cfg = MamlConfig()
    model = DeltaMLP(SPEC.state_dim, SPEC.action_dim, SPEC.target_dim, hidden=(width,) * 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = _batch(cfg)
    for fn in (meta_loss, meta_loss_loop):  # warm-up
        _step_time(fn, model, opt, batch, cfg)
    vm, lp = [], []
    for _ in range(steps):
        vm.append(_step_time(meta_loss, model, opt, batch, cfg))
        lp.append(_step_time(meta_loss_loop, model, opt, batch, cfg))
    return statistics.median(vm), statistics.median(lp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--steps", type=int, default=30, help="timed meta-steps per path and width")
    ap.add_argument("--train", type=Path, help="logs to train the default model on (timed)")
    ap.add_argument("--report", type=Path, default=REPO / "runs/models/grbal.pt.json", help="training report to read")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; second-order GrBAL, M=K=16, meta-batch 10, "
          f"3 hidden layers; median of {args.steps} alternating steps\n")
    print(f"{'width':>6s} {'vmap ms':>9s} {'loop ms':>9s} {'vmap steps/s':>13s} {'loop steps/s':>13s} {'vmap/loop':>10s}")
    for w in args.widths:
        vm, lp = throughput(w, args.steps)
        print(f"{w:6d} {vm * 1e3:9.1f} {lp * 1e3:9.1f} {1 / vm:13.1f} {1 / lp:13.1f} {lp / vm:9.2f}x")
    if args.train:
        out = REPO / "runs/bench/default_model.pt"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "train", "--logs", str(args.train), "--out", str(out),
                        "--config", str(REPO / "configs/train/default.yaml"), "--quiet"], check=True, cwd=REPO)
        print(f"\ntraining the default model (configs/train/default.yaml) on {args.train}: {time.perf_counter() - t:.0f} s wall")
    elif args.report.exists():
        r = json.loads(args.report.read_text())
        print(f"\ndefault model training, as recorded in {args.report.relative_to(REPO)}: {r['wall_time']:.0f} s wall, "
              f"{r['steps']} steps, on {r.get('machine', 'this machine')}")
    else:
        print(f"\nno training report at {args.report}; pass --train LOGS to time the default model's training")


if __name__ == "__main__":
    main()
