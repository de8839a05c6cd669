"""Planning time of MPPI and CEM on an MLP dynamics model, against pytorch-mppi and the FLOP bound.

Model: the anchor's Δ-state MLP shape (design.md): 3 hidden ReLU layers of width 256 or 512,
state 31, action 2, ``next = s + mlp([s, a])``; cost: squared state norm summed over the
horizon (cheap, so the model dominates). Three figures per width, in one run:

* ours: ``planners.MPPI`` (1 iteration) and ``planners.CEM`` (``--cem-iterations``), ms per
  plan, median of ``--repeats`` plans after two warm-up plans;
* theirs: ``pytorch_mppi.MPPI.command`` on the same model, samples, horizon and one
  iteration, under ``torch.no_grad`` like ours; the ratio ours / theirs;
* the FLOP bound: ``samples × horizon × 2 × weights`` per iteration divided by the GEMM
  throughput measured now (median ``torch.matmul`` of W×W by W×5000, W the width).

Usage: ``python bench/planner_speed.py [--repeats 10] [--samples 500] [--horizon 10]``.
pytorch-mppi is optional (``pip install pytorch-mppi``); without it only ours and the bound
are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn


from legadapt.planners.cem import CEM  # noqa: E402
from legadapt.planners.mppi import MPPI  # noqa: E402

STATE_DIM, ACTION_DIM = 31, 2


def make_model(width: int, seed: int = 0) -> nn.Sequential:
    """3-hidden-layer ReLU MLP [S + A] -> [S]."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(STATE_DIM + ACTION_DIM, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, STATE_DIM)).eval()


def weight_count(model: nn.Module) -> int:
    """Multiply-accumulate weights (matrices only, biases excluded)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Wall times (ms) of each of ``fns``, one per round, over ``repeats`` rounds.

    Each round calls every function once, so load from other processes on this shared
    machine falls on all of them alike and the ratios stay meaningful.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(1e3 * (time.perf_counter() - t))
    return times


def interleaved_ms(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median wall time (ms) of each of ``fns`` over ``repeats`` interleaved rounds (see :func:`interleaved_times`)."""
    return {k: statistics.median(v) for k, v in interleaved_times(fns, repeats, warmup).items()}


def gemm_fn(width: int, cols: int = 5000, dtype: torch.dtype = torch.float32) -> tuple[Callable[[], torch.Tensor], float]:
    """A GEMM [W, W] @ [W, cols] in ``dtype`` (fp32; bf16 on the CPU's matrix units) and its FLOP count."""
    a, b = torch.randn(width, width, dtype=dtype), torch.randn(width, cols, dtype=dtype)
    return (lambda: torch.matmul(a, b)), 2.0 * width * width * cols


def sq_cost(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The bench's cheap trajectory cost: squared state norm over steps 1..H, states [N, H+1, D] -> [N]."""
    return states[:, 1:].square().sum((1, 2))


def theirs_fn(dynamics: Callable, samples: int, horizon: int, state: torch.Tensor | None = None,
              action_dim: int = ACTION_DIM) -> Callable[[], torch.Tensor] | None:
    """One ``pytorch_mppi.MPPI.command`` (one iteration) from ``state`` [D] (default zeros [STATE_DIM]) as a
    callable, with the per-step form of :func:`sq_cost`; or None if pytorch-mppi is not installed."""
    try:
        from pytorch_mppi import MPPI as TheirMPPI
    except ImportError:
        return None
    state = torch.zeros(STATE_DIM) if state is None else state
    ctrl = TheirMPPI(dynamics, lambda s, a: s.square().sum(-1), state.shape[-1],
                     noise_sigma=torch.eye(action_dim) * 0.25, num_samples=samples, horizon=horizon,
                     lambda_=1.0, u_min=-torch.ones(action_dim), u_max=torch.ones(action_dim))

    def command() -> torch.Tensor:
        with torch.no_grad():
            return ctrl.command(state)

    return command


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--cem-iterations", type=int, default=3)
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 512])
    args = ap.parse_args()
    if args.repeats < 10:
        ap.error("--repeats must be >= 10")
    n, h = args.samples, args.horizon
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; N={n} samples, H={h}, "
          f"state {STATE_DIM}, action {ACTION_DIM}; median of {args.repeats} plans")
    cost = sq_cost
    state = torch.zeros(STATE_DIM)
    for width in args.widths:
        model = make_model(width)

        def dynamics(s: torch.Tensor, a: torch.Tensor, _m: nn.Module = model) -> torch.Tensor:
            return s + _m(torch.cat([s, a], dim=-1))

        w = weight_count(model)
        mppi = MPPI(dynamics, cost, h, -torch.ones(ACTION_DIM), torch.ones(ACTION_DIM), num_samples=n)
        cem = CEM(dynamics, cost, h, -torch.ones(ACTION_DIM), torch.ones(ACTION_DIM), num_samples=n,
                  num_elites=max(2, n // 10), iterations=args.cem_iterations)
        gemm, gemm_flop = gemm_fn(width)
        fns = {"gemm": gemm, "mppi": lambda: mppi.plan(state), "cem": lambda: cem.plan(state)}
        theirs_cmd = theirs_fn(dynamics, n, h)
        if theirs_cmd is not None:
            fns["theirs"] = theirs_cmd
        ms = interleaved_ms(fns, args.repeats)
        gflops = gemm_flop / (ms["gemm"] * 1e-3) / 1e9
        bound_ms = 1e3 * n * h * 2 * w / (gflops * 1e9)  # one iteration
        ours_mppi, ours_cem, theirs = ms["mppi"], ms["cem"], ms.get("theirs")
        print(f"\n3x{width} MLP: {w / 1e3:.0f}k weights, {n * h * 2 * w / 1e9:.2f} GFLOP per iteration; "
              f"GEMM {width}x{width} @ {width}x5000: {gflops:.0f} GFLOP/s")
        print(f"  FLOP bound, 1 iteration          {bound_ms:8.2f} ms")
        print(f"  ours MPPI (1 iteration)          {ours_mppi:8.2f} ms   ({ours_mppi / bound_ms:.2f}x bound)")
        print(f"  ours CEM ({args.cem_iterations} iterations)         {ours_cem:8.2f} ms   "
              f"({ours_cem / (args.cem_iterations * bound_ms):.2f}x bound)")
        if theirs is None:
            print("  pytorch-mppi: not installed (pip install pytorch-mppi); no comparison")
        else:
            print(f"  pytorch-mppi MPPI (1 iteration)  {theirs:8.2f} ms   ({theirs / bound_ms:.2f}x bound)")
            print(f"  ratio ours / theirs (MPPI)       {ours_mppi / theirs:8.2f}")


if __name__ == "__main__":
    main()
