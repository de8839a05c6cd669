"""Slow-loop cycle time (adapt + plan) of the adaptive MPC, against the FLOP bound and pytorch-mppi.

What the daemon does every control period (``controller.mpc.AdaptiveMPC.step``): one GrBAL
gradient step from θ* on the last M transitions, then MPPI over the adapted model with the
path cost. Two configurations, in one run:

* anchor (design.md, "Anchors and their numbers"): 3×512 ReLU MLP, M = 16, MPPI 500 samples,
  horizon 10, 1 iteration, at the default rollout precision (``planner.precision: auto``: bf16
  matrices where the CPU has AMX / AVX-512 BF16), and the same with ``precision: fp32``;
* default: ``legadapt/config.py`` defaults with the train section of
  ``configs/train/default.yaml`` (hidden sizes, M, inner rate), read from the config objects;
* MB plans: the default as the shipped controller runs it while nothing surprises its plain model
  (``dynamics/switching.py``): the plain model's error on the window (one forward), no step, and θ*'s
  unpacked weights reused from cycle to cycle (fresh models here, ``--model`` aside).

Each is built like ``controller.daemon.build_controller`` (feature spec, path, AdaptiveMPC)
around a freshly initialised ``DeltaMLP`` (normalisers fitted on random data) in a
``GrBALAdapter``, or around ``--model PATH`` (then both use that checkpoint, with each
configuration's planner). The window is full (M transitions); every cycle observes a new
random transition and plans from a new state and pose.

Printed, each measured in interleaved rounds (every round runs each contender, so background load
falls on all alike). In a round each contender runs ``--block`` timed cycles after an untimed one, as the
daemon runs its own cycles back to back; ``--block 1`` alternates every cycle (measured: no difference beyond
this VM's hour-to-hour swings, which move every figure 2-3x; the ratios to the bound measured in the same
run are what to compare):

1. cycle = ``stats.adapt_time + stats.plan_time`` (what the daemon logs), median and p99 over
   ``--cycles`` cycles after warm-up, with the adapt / plan medians;
2. the FLOP-bound limit = (3 × M × 2 × weights  [inner step: forward + backward ≈ 3 forwards]
   + iterations × samples × horizon × 2 × weights) / GEMM throughput measured in the same
   rounds (``bench/planner_speed.py``'s W×W @ W×5000 GEMM, W the widest hidden layer, in the
   rollout's dtype for the planning part; the adaptation step is fp32); ours / limit;
3. planning alone against ``pytorch_mppi.MPPI.command`` on the same adapted model (called as a
   PyTorch function, fp32, as one would plug it into pytorch-mppi), samples and horizon, one
   iteration, with planner_speed's cheap squared-norm cost on both sides (the controller's own
   planner with the path cost is timed in the same rounds).

Usage: ``python bench/control_cycle.py [--cycles 100] [--plan-repeats 20] [--model PATH]``.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from planner_speed import gemm_fn, interleaved_times, sq_cost, theirs_fn, weight_count

from legadapt.controller.mpc import AdaptiveMPC, make_adapter_from, make_planner
from legadapt.dynamics.adaptation import Adapter, GrBALAdapter, MBAdapter
from legadapt.dynamics.checkpoint import load_checkpoint
from legadapt.dynamics.mlp import DeltaMLP
from legadapt.dynamics.switching import Surprise, SwitchingAdapter
from legadapt import config as C
from legadapt.features import FeatureSpec, spec_of
from legadapt.paths import task_path

DEFAULT_TRAIN_CONFIG = REPO / "configs" / "train" / "default.yaml"


def anchor_config(precision: str = "auto") -> C.LegadaptConfig:
    """design.md's anchor: 3×512, M = K = 16, inner lr 1e-3; MPPI 500 samples, horizon 10, 1 iteration."""
    base = C.LegadaptConfig()
    train = base.train.model_copy(update={"method": "grbal", "hidden": [512, 512, 512], "M": 16, "K": 16,
                                          "inner_lr": 1e-3, "inner_steps": 1})
    planner = base.controller.planner.model_copy(update={"kind": "mppi", "samples": 500, "horizon": 10,
                                                         "iterations": 1, "precision": precision})
    controller = base.controller.model_copy(update={"planner": planner, "adapter": "grbal"})
    return base.model_copy(update={"train": train, "controller": controller})


def default_config() -> C.LegadaptConfig:
    """The config.py defaults, with the training section (hidden sizes, M, ...) of configs/train/default.yaml."""
    return C.load_config(DEFAULT_TRAIN_CONFIG)


def fresh_adapter(cfg: C.LegadaptConfig, spec: FeatureSpec, seed: int = 0) -> tuple[GrBALAdapter, int]:
    """A freshly initialised DeltaMLP of the config's size (normalisers fitted on random data) in a GrBAL adapter."""
    torch.manual_seed(seed)
    model = DeltaMLP.from_spec(spec, cfg.train.hidden).eval()
    rng = np.random.default_rng(seed)
    model.fit_normalizers(rng.normal(size=(4096, model.input_dim)).astype(np.float32),
                          rng.normal(scale=0.1, size=(4096, model.target_dim)).astype(np.float32))
    return GrBALAdapter(model, cfg.train.inner_lr, cfg.train.inner_steps), cfg.train.M


def build_mpc(cfg: C.LegadaptConfig, model_path: Path | None,
              plain: bool = False) -> tuple[AdaptiveMPC, FeatureSpec, int]:
    """The adaptive MPC for ``cfg``'s task, put together as ``controller.daemon.build_controller`` does. ``plain``: the
    shipped pairing on a cycle where nothing surprises the plain model (MB plans, no step; never engaged here)."""
    spec = spec_of(cfg)
    if plain:
        adaptive, window = fresh_adapter(cfg, spec, seed=1)
        mb, _ = fresh_adapter(cfg, spec, seed=3)
        adapter = SwitchingAdapter(MBAdapter(mb.model), adaptive, Surprise(threshold=math.inf))
    elif model_path is None:
        adapter, window = fresh_adapter(cfg, spec)
    else:
        ck = load_checkpoint(model_path, spec)
        adapter: Adapter = make_adapter_from(ck, cfg.controller.adapter)
        window = ck.maml.M if ck.maml else cfg.train.M
    task = cfg.task
    path = task_path(task)
    return AdaptiveMPC(adapter, spec, path, cfg.controller, task.target_speed, window), spec, window


@dataclass
class Setup:
    """One configuration under test: its controller and the numbers the FLOP bound needs."""

    name: str
    cfg: C.LegadaptConfig
    mpc: AdaptiveMPC
    spec: FeatureSpec
    M: int
    weights: int
    width: int
    rng: np.random.Generator
    i: int = 0
    prev_action: np.ndarray | None = None
    fallbacks: int = 0

    @property
    def steps(self) -> bool:
        """Whether the cycle takes the adaptation step (not behind a plain model that plans)."""
        return not isinstance(self.mpc.adapter, SwitchingAdapter) or self.mpc.adapter.engaged

    @property
    def planner(self) -> C.PlannerConfig:
        return self.cfg.controller.planner

    def label(self) -> str:
        p, hidden = self.planner, "x".join(map(str, _model(self.mpc.adapter).hidden))
        return (f"{self.name}: MLP {hidden} ({self.weights / 1e3:.0f}k weights), M={self.M}, {p.kind} {p.samples} "
                f"samples x H{p.horizon} x {p.iterations} it")

    def transition(self) -> None:
        """Observe one new random transition (the period that just ended)."""
        S, A = self.spec.state_dim, self.spec.action_dim
        s = self.rng.normal(size=S)
        self.mpc.observe(s, self.rng.uniform(-1, 1, A), s + self.rng.normal(scale=0.1, size=S),
                         self.rng.normal(scale=0.01, size=3))

    def fill_window(self) -> None:
        for _ in range(self.M):
            self.transition()

    def cycle(self) -> None:
        """One slow-loop cycle on a new state and pose: observe, adapt, plan."""
        self.transition()
        self.i += 1
        state = self.rng.normal(size=self.spec.state_dim)
        pose = np.array([1.0 + 0.5 * math.sin(self.i / 7.0), self.rng.normal(scale=0.05),
                         self.rng.normal(scale=0.1)])
        plan = self.mpc.step(state, pose, self.prev_action)
        self.prev_action = plan[0]
        self.fallbacks += self.mpc.stats.fallback

    def flops(self) -> tuple[float, float]:
        """(inner-step FLOPs on M transitions -- one forward without a step --, planning FLOPs) of one cycle at the bound."""
        p = self.planner
        return ((3.0 if self.steps else 1.0) * self.M * 2 * self.weights,
                float(p.iterations * p.samples * p.horizon * 2 * self.weights))


def _model(adapter: Adapter) -> DeltaMLP:
    """The model that plans (behind a plain model: the plain one)."""
    return adapter.plain.model if isinstance(adapter, SwitchingAdapter) else adapter.model


def make_setup(name: str, cfg: C.LegadaptConfig, model_path: Path | None, seed: int, plain: bool = False) -> Setup:
    mpc, spec, window = build_mpc(cfg, model_path, plain)
    model = _model(mpc.adapter)
    setup = Setup(name, cfg, mpc, spec, window, weight_count(model), max(model.hidden), np.random.default_rng(seed))
    setup.fill_window()
    return setup


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=100, help="timed cycles per configuration (>= 30)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed cycles per configuration first")
    ap.add_argument("--block", type=int, default=10,
                    help="consecutive timed cycles of a contender per round, after one untimed (1: strict alternation)")
    ap.add_argument("--plan-repeats", type=int, default=20, help="interleaved rounds of the planner comparison")
    ap.add_argument("--model", type=Path, default=None, help="checkpoint to use instead of fresh models")
    args = ap.parse_args()
    if args.cycles < 30:
        ap.error("--cycles must be >= 30")
    t_start = time.perf_counter()
    setups = [make_setup("anchor", anchor_config(), args.model, 1), make_setup("anchor fp32", anchor_config("fp32"), args.model, 1),
              make_setup("default", default_config(), args.model, 2),
              make_setup("MB plans", default_config(), None, 3, plain=True)]
    threads = {s.cfg.controller.threads for s in setups} - {0}
    if len(threads) == 1:
        torch.set_num_threads(threads.pop())  # as the daemon does; 0 = torch's default
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model: "
          f"{args.model or 'fresh DeltaMLP (random init, normalisers fitted on random data)'}; "
          f"{args.cycles} cycles after {args.warmup} warm-up, interleaved in blocks of {args.block}")
    for s in setups:
        print(f"  {s.label()}")
    same = [s.label().split(": ", 1)[1] for s in setups]
    if same[0] == same[2]:
        print("  (the default configuration coincides with the anchor: both are timed, as independent controllers)")

    # 1 + 2: cycles of both configurations and the GEMM throughput, in the same rounds.
    gemms = {(w, d): gemm_fn(w, dtype=d) for w in sorted({s.width for s in setups}) for d in (torch.float32, torch.bfloat16)}
    for s in setups:
        for _ in range(args.warmup):
            s.cycle()
    for g, _ in gemms.values():
        g()
    cyc: dict[str, list[float]] = {s.name: [] for s in setups}
    adapt: dict[str, list[float]] = {s.name: [] for s in setups}
    plan: dict[str, list[float]] = {s.name: [] for s in setups}
    gemm_ms: dict[int, list[float]] = {w: [] for w in gemms}
    for _ in range(math.ceil(args.cycles / args.block)):
        for s in setups:
            s.cycle()  # the first cycle of a block finds the caches holding the other contenders' weights
            for _ in range(args.block):
                s.cycle()
                st = s.mpc.stats
                adapt[s.name].append(1e3 * st.adapt_time)
                plan[s.name].append(1e3 * st.plan_time)
                cyc[s.name].append(1e3 * (st.adapt_time + st.plan_time))
        for w, (g, _) in gemms.items():
            t = time.perf_counter()
            g()
            gemm_ms[w].append(1e3 * (time.perf_counter() - t))
    gflops = {k: gemms[k][1] / (statistics.median(gemm_ms[k]) * 1e-3) / 1e9 for k in gemms}

    # 3: planning alone, ours vs pytorch-mppi on the same adapted model, samples, horizon (1 iteration).
    compare: dict[str, dict[str, float]] = {}
    for s in setups:
        p = s.planner
        z0 = torch.as_tensor(np.concatenate([[1.0, 0.0, 0.0], s.rng.normal(size=s.spec.state_dim)]), dtype=torch.float32)
        ours = make_planner(p.model_copy(update={"iterations": 1}), s.mpc._step, sq_cost, s.spec.action_dim)
        fns = {"ours": lambda o=ours, z=z0: o.plan(z), "ours_path": lambda m=s.mpc, z=z0: m.planner.plan(z)}
        plain = copy.copy(s.mpc)  # the same adapted model as a plain PyTorch function (fp32), for pytorch-mppi
        plain.predict = s.mpc.adapter.dynamics(s.mpc.ctx)
        theirs = theirs_fn(plain._step, p.samples, p.horizon, state=z0, action_dim=s.spec.action_dim)
        if theirs is not None:
            fns["theirs"] = theirs
        compare[s.name] = {k: statistics.median(v) for k, v in interleaved_times(fns, args.plan_repeats).items()}

    # Report.
    print(f"\nGEMM (median of {args.cycles}, same rounds as the cycles): "
          + ", ".join(f"{w}x{w} @ {w}x5000 {str(d).split('.')[-1]} {gflops[(w, d)]:.0f} GFLOP/s" for w, d in gemms))
    hdr = f"{'':22s}" + "".join(f"{s.name:>14s}" for s in setups)
    print(f"\n1-2. slow-loop cycle (adapt + plan), ms\n{hdr}")

    def row(label: str, vals: list[str]) -> None:
        print(f"{label:22s}" + "".join(f"{v:>14s}" for v in vals))

    limits = {}
    for s in setups:
        fa, fp = s.flops()
        limits[s.name] = (1e3 * fa / (gflops[(s.width, torch.float32)] * 1e9),
                          1e3 * fp / (gflops[(s.width, s.mpc.rollout_dtype)] * 1e9))
    row("rollout dtype", [str(s.mpc.rollout_dtype).split(".")[-1] for s in setups])
    row("adapt median", [f"{statistics.median(adapt[s.name]):.2f}" for s in setups])
    row("plan median", [f"{statistics.median(plan[s.name]):.2f}" for s in setups])
    row("cycle median", [f"{statistics.median(cyc[s.name]):.2f}" for s in setups])
    row("cycle p99", [f"{pct(cyc[s.name], 99):.2f}" for s in setups])
    row("cycle max", [f"{max(cyc[s.name]):.2f}" for s in setups])
    row("limit adapt", [f"{limits[s.name][0]:.3f}" for s in setups])
    row("limit plan", [f"{limits[s.name][1]:.2f}" for s in setups])
    row("limit cycle", [f"{sum(limits[s.name]):.2f}" for s in setups])
    row("adapt / limit", [f"{statistics.median(adapt[s.name]) / limits[s.name][0]:.1f}x" for s in setups])
    row("plan / limit", [f"{statistics.median(plan[s.name]) / limits[s.name][1]:.2f}x" for s in setups])
    row("cycle med / limit", [f"{statistics.median(cyc[s.name]) / sum(limits[s.name]):.2f}x" for s in setups])
    row("cycle p99 / limit", [f"{pct(cyc[s.name], 99) / sum(limits[s.name]):.2f}x" for s in setups])
    row("period (ms), p99 use", [f"{1e3 / s.cfg.task.control_rate:.0f}, {pct(cyc[s.name], 99) * s.cfg.task.control_rate / 1e3:.0%}"
                                 for s in setups])
    row("cycles > period", [f"{sum(c > 1e3 / s.cfg.task.control_rate for c in cyc[s.name])}/{len(cyc[s.name])}"
                            for s in setups])
    row("fallbacks to θ*", [f"{s.fallbacks}" for s in setups])

    print(f"\n3. planning alone, 1 iteration, median of {args.plan_repeats} interleaved rounds, ms")
    print(hdr)
    row("ours (sq cost)", [f"{compare[s.name]['ours']:.2f}" for s in setups])
    row("ours (path cost)", [f"{compare[s.name]['ours_path']:.2f}" for s in setups])
    if all("theirs" in compare[s.name] for s in setups):
        row("pytorch-mppi (sq cost)", [f"{compare[s.name]['theirs']:.2f}" for s in setups])
        row("ours / pytorch-mppi", [f"{compare[s.name]['ours'] / compare[s.name]['theirs']:.2f}" for s in setups])
        row("path cost / pt-mppi", [f"{compare[s.name]['ours_path'] / compare[s.name]['theirs']:.2f}" for s in setups])
    else:
        print("pytorch-mppi not installed (pip install pytorch-mppi): no comparison")
    print(f"\ntotal run time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
