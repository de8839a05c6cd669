"""The small-computer profile's slow cycle: adapt + plan on one thread, fp32, against the 10 Hz period.

``configs/small_computer.yaml`` is meant for an onboard computer with half this machine's per-core speed and
no bf16 matrix units. This bench builds its controller (the shipped default model, the profile's planner, in
fp32 whatever this CPU has) and the default controller (bf16 where the CPU has it, as it ships), runs
``--cycles`` interleaved cycles of each on one thread, and prints the medians and p99s, and the profile's
median doubled (its cycle on a core half as fast) against the control period.

Usage: ``python bench/small_computer.py [--cycles 60]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from control_cycle import Setup  # noqa: E402

from legadapt import config as C  # noqa: E402
from legadapt.controller.preflight import build_controller  # noqa: E402
from legadapt.dynamics.mlp import DeltaMLP  # noqa: E402
from legadapt.resources import shipped  # noqa: E402
from planner_speed import weight_count  # noqa: E402


def setup(name: str, cfg: C.LegadaptConfig, seed: int) -> Setup:
    mpc, spec, window = build_controller(cfg, shipped("models", "default.pt"))
    model: DeltaMLP = mpc.adapter.model
    s = Setup(name, cfg, mpc, spec, window, weight_count(model), max(model.hidden), np.random.default_rng(seed))
    s.fill_window()
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=60)
    ap.add_argument("--block", type=int, default=10, help="consecutive timed cycles per contender and round, as the "
                    "daemon runs them (1: alternate every cycle)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    profile = C.load_config(shipped("configs", "small_computer.yaml"))
    planner = profile.controller.planner.model_copy(update={"precision": "fp32"})
    profile = profile.model_copy(update={"controller": profile.controller.model_copy(update={"planner": planner})})
    setups = [setup("small_computer (fp32)", profile, 1), setup("default", C.LegadaptConfig(), 2)]
    times: dict[str, list[float]] = {s.name: [] for s in setups}
    for s in setups:
        for _ in range(5):
            s.cycle()
    for _ in range(math.ceil(args.cycles / args.block)):
        for s in setups:
            s.cycle()  # untimed: the first cycle of a block
            for _ in range(args.block):
                s.cycle()
                times[s.name].append(1e3 * (s.mpc.stats.adapt_time + s.mpc.stats.plan_time))
    period = 1e3 / profile.task.control_rate
    print(f"adapt + plan on 1 thread, {args.cycles} cycles interleaved in blocks of {args.block}, shipped default model; "
          f"period {period:.0f} ms")
    for s in setups:
        t = times[s.name]
        p = s.planner
        print(f"  {s.name:24s} {p.kind} {p.samples} x H{p.horizon}, {str(s.mpc.rollout_dtype).split('.')[-1]:9s} "
              f"median {statistics.median(t):6.1f} ms  p99 {np.percentile(t, 99):6.1f} ms")
    half = 2 * statistics.median(times[setups[0].name])
    print(f"small_computer at half this per-core speed: ~{half:.0f} ms median, {half / period:.0%} of the period")


if __name__ == "__main__":
    main()
