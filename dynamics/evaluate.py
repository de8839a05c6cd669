"""Prediction error on held-out logs, as the controller would see it online.

For every transition ``t`` of every held-out trajectory with at least M transitions
before it, each variant adapts on the M transitions before ``t`` (exactly what the
controller does each cycle), then

* predicts transition ``t``: the squared error per target feature divided by that feature's
  variance over the held-out data (one common scale for every model), averaged over all
  targets and over each group (body motion, joint angles): 1.0 = no better than predicting
  the mean change;
* rolls the adapted model out open-loop over the logged actions of the next H steps (the
  planner's horizon) and integrates the body pose from its predicted displacements, as the
  planner does: the position (m) and heading (deg) error against the logged motion.

Variants: GrBAL before and after its step, MB, MB+DE (the MB model with the same online
step), and the context adapters (ReBAL, PEARL, attention).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from legadapt.dynamics.adaptation import Adapter, Gate, make_adapter
from legadapt.dynamics.checkpoint import LoadedCheckpoint, load_checkpoint
from legadapt.dynamics.datasets import LoadReport, Trajectory, load_trajectories
from legadapt.features import FeatureSpec, integrate_pose, target_groups, wrap_angle


#: Figures per (condition, variant): one-step error over all targets and per group, and the
#: pose error of an open-loop rollout over the planner's horizon.
METRICS = {
    "one_step": "one-step error, all targets (normalised)",
    "body": "one-step error, body motion (normalised: attitude, velocities, dx/dy/dyaw)",
    "joints": "one-step error, joint angles (normalised)",
    "pos_h": "position error after the horizon (cm)",
    "yaw_h": "heading error after the horizon (deg)",
}


@dataclass
class EvalResult:
    """Per metric (:data:`METRICS`): the mean per variant, overall and per condition."""

    overall: dict[str, dict[str, float]]  # metric -> variant -> mean
    per_condition: dict[str, dict[str, dict[str, float]]]  # metric -> condition -> variant -> mean
    transitions: int
    horizon: int = 10
    report: LoadReport | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def markdown(self, metrics: tuple[str, ...] = tuple(METRICS)) -> str:
        blocks = []
        for metric in metrics:
            names = list(self.overall[metric])
            scale = 100.0 if metric == "pos_h" else 1.0
            title = METRICS[metric].replace("the horizon", f"the horizon ({self.horizon} steps, logged actions)")
            lines = [f"**{title}**", "", "| condition | transitions | " + " | ".join(names) + " |",
                     "|---|---|" + "---|" * len(names)]
            for cond, row in sorted(self.per_condition[metric].items()):
                lines.append(f"| {cond} | {self.counts.get(cond, 0)} | " + " | ".join(f"{scale * row[n]:.3f}" for n in names) + " |")
            lines.append(f"| **all held-out** | {self.transitions} | "
                         + " | ".join(f"**{scale * self.overall[metric][n]:.3f}**" for n in names) + " |")
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    def lowest(self, metric: str) -> tuple[str, float]:
        """The variant with the lowest overall ``metric`` and its value (pose errors in m and deg)."""
        name = min(self.overall[metric], key=self.overall[metric].get)
        return name, self.overall[metric][name]


#: The column of each method's checkpoint after its online step ('MB+DE': the MB model with GrBAL's step).
ADAPTED = {"grbal": "GrBAL", "mb": "MB+DE", "rebal": "ReBAL", "pearl": "PEARL", "attention": "attention"}


def adapted_column(method: str, name: str = "") -> str:
    """The table column of ``method``'s checkpoint (labelled ``name``, if any) after its online step."""
    return ADAPTED[method] + (f" {name}" if name else "")


def variants_from_checkpoints(paths: dict[str, Path] | list[tuple[str, Path, str]], spec: FeatureSpec,
                              gate: Gate | None = None) -> dict[str, Adapter]:
    """Adapters to compare from checkpoints keyed by method: 'grbal', 'mb' (gives MB and MB+DE), 'rebal',
    'pearl', 'attention'; or (method, path, name) triples, whose non-empty ``name`` labels that checkpoint's
    columns ('GrBAL s1 (before step)'), so that several trainings of one method compare in one table. With an
    active ``gate``, GrBAL also runs gated ('GrBAL+gate')."""
    items = [(m, p, "") for m, p in paths.items()] if isinstance(paths, dict) else list(paths)
    out: dict[str, Adapter] = {}
    for method, path, name in items:
        ck: LoadedCheckpoint = load_checkpoint(path, spec)
        steps = ck.maml.inner_steps if ck.maml else 1
        lr = ck.lrs if ck.lrs is not None else (ck.maml.inner_lr if ck.maml else 1e-2)
        layers = ck.maml.adapt_layers if ck.maml else 0
        if method not in ADAPTED:
            raise ValueError(f"unknown method {method!r} for {path}; allowed: grbal, mb, rebal, pearl, attention")
        column = adapted_column(method, name)
        if method == "grbal":
            out[f"{column} (before step)"] = make_adapter("mb", ck.model)
            out[column] = make_adapter("grbal", ck.model, lr, steps, adapt_layers=layers)
            if gate is not None and gate.holdout > 0:
                out[f"{column}+gate"] = make_adapter("grbal", ck.model, lr, steps, gate=gate, adapt_layers=layers)
        elif method == "mb":
            out["MB" + (f" {name}" if name else "")] = make_adapter("mb", ck.model)
            out[column] = make_adapter("mbde", ck.model, lr, steps, adapt_layers=layers)
        else:
            out[column] = make_adapter(method, ck.model)
    return out


def errors_along(adapter: Adapter, traj: Trajectory, M: int, scale: np.ndarray, groups: dict[str, list[int]],
                 horizon: int) -> dict[str, list[float]]:
    """Per transition t >= M: adapt on the M before it, then the one-step errors (normalised
    squared error, all targets and per group) of predicting t, and, where t + ``horizon`` fits
    in the trajectory, the position (m) and heading (deg) error after rolling the adapted model
    out open-loop over the logged actions a_t .. a_{t+H-1} (the planner's use of the model)."""
    x = torch.from_numpy(traj.inputs)
    y = torch.from_numpy(traj.targets.astype(np.float32))
    s_dim = traj.states.shape[1]
    out: dict[str, list[float]] = {k: [] for k in METRICS}
    for t in range(M, len(traj)):
        ctx = adapter.adapt(x[t - M:t], y[t - M:t])
        with torch.no_grad():
            pred = adapter.predict(ctx, x[t:t + 1, :s_dim], x[t:t + 1, s_dim:])[0].numpy()
        e = (pred - traj.targets[t]) ** 2 / scale
        out["one_step"].append(float(e.mean()))
        out["body"].append(float(e[groups["body"]].mean()))
        out["joints"].append(float(e[groups["joints"]].mean()))
        if t + horizon <= len(traj):
            pos, yaw = rollout_pose_error(adapter, ctx, traj, t, horizon, s_dim)
            out["pos_h"].append(pos)
            out["yaw_h"].append(yaw)
    return out


@torch.no_grad()
def rollout_pose_error(adapter: Adapter, ctx, traj: Trajectory, t: int, horizon: int, s_dim: int) -> tuple[float, float]:
    """Position error (m) and |heading error| (deg) after ``horizon`` open-loop steps from transition t."""
    state = torch.from_numpy(traj.states[t:t + 1].astype(np.float32))
    actions = torch.from_numpy(traj.actions[t:t + horizon].astype(np.float32))
    pose_pred, pose_true = np.zeros(3), np.zeros(3)
    for k in range(horizon):
        d = adapter.predict(ctx, state, actions[k:k + 1])
        state = state + d[:, :s_dim]
        pose_pred = integrate_pose(pose_pred, d[0, s_dim:s_dim + 3].numpy().astype(float))
        pose_true = integrate_pose(pose_true, traj.targets[t + k, s_dim:s_dim + 3].astype(float))
    return float(np.linalg.norm(pose_pred[:2] - pose_true[:2])), float(np.degrees(abs(wrap_angle(pose_pred[2] - pose_true[2]))))


def evaluate(logs: list[Path], spec: FeatureSpec, adapters: dict[str, Adapter], M: int, horizon: int = 10) -> EvalResult:
    """Compare ``adapters`` on the held-out ``logs`` (see the module docstring)."""
    trajectories, report = load_trajectories(logs, spec)
    usable = [t for t in trajectories if len(t) > M]
    if not usable:
        raise ValueError(f"no held-out trajectory is longer than the window M = {M}")
    scale = np.maximum(np.concatenate([t.targets for t in usable]).var(axis=0), 1e-12)
    groups = target_groups(spec)
    values: dict[str, dict[str, dict[str, list[float]]]] = {m: defaultdict(lambda: defaultdict(list)) for m in METRICS}
    counts: dict[str, int] = defaultdict(int)
    for traj in usable:
        name, _, active = traj.condition.partition(":")
        cond = name if active != "intact" or name == "intact" else f"{name}, before onset"
        counts[cond] += len(traj) - M
        for vname, adapter in adapters.items():
            adapter.reset()
            for metric, errs in errors_along(adapter, traj, M, scale, groups, horizon).items():
                values[metric][cond][vname].extend(errs)
    per_condition = {m: {c: {v: float(np.mean(e)) if e else float("nan") for v, e in row.items()} for c, row in rows.items()}
                     for m, rows in values.items()}
    overall = {m: {v: float(np.mean([x for row in rows.values() for x in row[v]])) for v in adapters}
               for m, rows in values.items()}
    return EvalResult(overall=overall, per_condition=per_condition, transitions=sum(counts.values()), horizon=horizon,
                      report=report, counts=dict(counts))
