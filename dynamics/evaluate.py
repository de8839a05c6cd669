"""One-step prediction error on held-out logs, as the controller would see it online.

For every transition ``t`` of every held-out trajectory with at least M transitions
before it, each variant adapts on the M transitions before ``t`` (exactly what the
controller does each cycle) and predicts transition ``t``. The error is the squared
error per target feature divided by that feature's variance over the held-out data
(one common scale for every model), averaged over features: 1.0 = no better than
predicting the mean change. Variants: GrBAL before and after its step, MB, MB+DE (the
MB model with the same online step), ReBAL.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dynamics.adaptation import Adapter, make_adapter
from dynamics.checkpoint import LoadedCheckpoint, load_checkpoint
from dynamics.datasets import LoadReport, Trajectory, load_trajectories
from legadapt.features import FeatureSpec


@dataclass
class EvalResult:
    """Mean normalised one-step error per variant, overall and per condition."""

    overall: dict[str, float]
    per_condition: dict[str, dict[str, float]]
    transitions: int
    report: LoadReport | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def markdown(self) -> str:
        names = list(self.overall)
        lines = ["| condition | transitions | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for cond, row in sorted(self.per_condition.items()):
            lines.append(f"| {cond} | {self.counts.get(cond, 0)} | " + " | ".join(f"{row[n]:.3f}" for n in names) + " |")
        lines.append(f"| **all held-out** | {self.transitions} | " + " | ".join(f"**{self.overall[n]:.3f}**" for n in names) + " |")
        return "\n".join(lines)


def variants_from_checkpoints(paths: dict[str, Path], spec: FeatureSpec) -> dict[str, Adapter]:
    """Adapters to compare from checkpoints keyed by method: 'grbal', 'mb' (gives MB and MB+DE), 'rebal'."""
    out: dict[str, Adapter] = {}
    for method, path in paths.items():
        ck: LoadedCheckpoint = load_checkpoint(path, spec)
        steps = ck.maml.inner_steps if ck.maml else 1
        lr = ck.lrs if ck.lrs is not None else (ck.maml.inner_lr if ck.maml else 1e-2)
        if method == "grbal":
            out["GrBAL (before step)"] = make_adapter("mb", ck.model)
            out["GrBAL"] = make_adapter("grbal", ck.model, lr, steps)
        elif method == "mb":
            out["MB"] = make_adapter("mb", ck.model)
            out["MB+DE"] = make_adapter("mbde", ck.model, lr, steps)
        elif method == "rebal":
            out["ReBAL"] = make_adapter("rebal", ck.model)
        else:
            raise ValueError(f"unknown method {method!r} for {path}; allowed: grbal, mb, rebal")
    return out


def one_step_errors(adapter: Adapter, traj: Trajectory, M: int, scale: np.ndarray) -> np.ndarray:
    """Normalised squared error [N-M] of predicting each transition after adapting on the M before it."""
    x = torch.from_numpy(traj.inputs)
    y = torch.from_numpy(traj.targets.astype(np.float32))
    s_dim = traj.states.shape[1]
    errs = np.empty(len(traj) - M)
    for i, t in enumerate(range(M, len(traj))):
        ctx = adapter.adapt(x[t - M:t], y[t - M:t])
        with torch.no_grad():
            pred = adapter.predict(ctx, x[t:t + 1, :s_dim], x[t:t + 1, s_dim:])[0].numpy()
        errs[i] = float(np.mean((pred - traj.targets[t]) ** 2 / scale))
    return errs


def evaluate(logs: list[Path], spec: FeatureSpec, adapters: dict[str, Adapter], M: int) -> EvalResult:
    """Compare ``adapters`` on the held-out ``logs`` (see the module docstring)."""
    trajectories, report = load_trajectories(logs, spec)
    usable = [t for t in trajectories if len(t) > M]
    if not usable:
        raise ValueError(f"no held-out trajectory is longer than the window M = {M}")
    scale = np.maximum(np.concatenate([t.targets for t in usable]).var(axis=0), 1e-12)
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, int] = defaultdict(int)
    total = {name: 0.0 for name in adapters}
    n_total = 0
    for traj in usable:
        name, _, active = traj.condition.partition(":")
        cond = name if active != "intact" or name == "intact" else f"{name}, before onset"
        n = len(traj) - M
        counts[cond] += n
        n_total += n
        for name, adapter in adapters.items():
            e = one_step_errors(adapter, traj, M, scale).sum()
            sums[cond][name] += e
            total[name] += e
    per_condition = {c: {k: v / counts[c] for k, v in row.items()} for c, row in sums.items()}
    return EvalResult(overall={k: v / n_total for k, v in total.items()}, per_condition=per_condition,
                      transitions=n_total, report=report, counts=dict(counts))
