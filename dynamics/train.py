"""``legadapt train``: (meta-)train a dynamics model from logs, alone or under torchrun.

The loop: load trajectories (bad files skipped and counted), split whole trajectories
into train/validation, fit the normalisers on training transitions, then Adam on the
method's objective (GrBAL meta-loss, MB one-step loss, ReBAL recurrent loss) with
gradient clipping, validation every ``eval_every`` steps on a fixed set of tasks, early
stopping after ``patience`` evaluations without improvement. The best model goes to
``out``; ``out`` + ``.resume`` holds everything to continue an interrupted run
(``--resume``). Task draws are seeded by (seed, rank, step), so a resumed run draws
what the uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from legadapt.dynamics import distributed as D
from legadapt.dynamics.checkpoint import save_checkpoint
from legadapt.dynamics.datasets import LoadReport, TaskSampler, load_trajectories
from legadapt.dynamics.maml import MamlConfig
from legadapt.dynamics.mlp import DeltaMLP
from legadapt.dynamics.objectives import make_objective
from legadapt import __version__
from legadapt.config import TrainConfig
from legadapt.features import FeatureSpec, target_groups


@dataclass
class TrainSummary:
    method: str
    steps: int
    best_step: int
    best_val: float  # normalised MSE of the selection metric
    val: dict[str, float]  # validation figures at the best step
    stopped_early: bool
    skipped_updates: int  # non-finite losses or gradients
    train_transitions: int
    val_transitions: int
    wall_time: float  # s
    world_size: int
    out: Path
    data_report: LoadReport | None = None
    history: list[dict] = field(default_factory=list)

    def text(self) -> str:
        v = ", ".join(f"{k} {x:.4f}" for k, x in self.val.items())
        return (f"{self.method}: best validation {self.best_val:.4f} at step {self.best_step} of {self.steps} "
                f"({'early stop' if self.stopped_early else 'step limit'}); {v}\n"
                f"data: {self.train_transitions} training / {self.val_transitions} validation transitions; "
                f"{self.skipped_updates} non-finite updates skipped; {self.world_size} process(es); "
                f"{self.wall_time:.1f} s -> {self.out}")


def maml_config(tc: TrainConfig) -> MamlConfig:
    """The adaptation settings stored with the model (also used by MB+DE at run time)."""
    return MamlConfig(M=tc.M, K=tc.K, inner_lr=tc.inner_lr, inner_steps=tc.inner_steps, first_order=tc.first_order,
                      learn_inner_lr=tc.learn_inner_lr and tc.method == "grbal", meta_batch=tc.meta_batch, outer_lr=tc.lr,
                      adapt_layers=tc.adapt_layers)


def build_model(tc: TrainConfig, spec: FeatureSpec) -> torch.nn.Module:
    if tc.method == "rebal":
        from legadapt.dynamics.rebal import RecurrentDynamics

        return RecurrentDynamics(spec.state_dim, spec.action_dim, spec.target_dim, hidden=tuple(tc.hidden),
                                 gru_hidden=tc.rebal_hidden)
    if tc.method in ("pearl", "attention"):
        from legadapt.dynamics.context import ContextDynamics

        return ContextDynamics(spec.state_dim, spec.action_dim, spec.target_dim, encoder=tc.method,
                               hidden=tuple(tc.hidden), context_dim=tc.rebal_hidden)
    return DeltaMLP.from_spec(spec, tuple(tc.hidden), target_weights=target_weights(spec, tc))


def target_weights(spec: FeatureSpec, tc: TrainConfig) -> list[float]:
    """Per-target loss weights [T] from the config's group weights (DeltaMLP scales them to mean 1)."""
    w = [0.0] * spec.target_dim
    for group, idx in target_groups(spec).items():
        for i in idx:
            w[i] = float(getattr(tc.target_weights, group))
    return w


def _resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume")


def _tasks_per_step(tc: TrainConfig) -> int:
    return max(1, math.ceil(tc.batch_size / (tc.M + tc.K))) if tc.method == "mb" else tc.meta_batch


def train(logs: list[Path], spec: FeatureSpec, tc: TrainConfig, out: Path, resume: bool = False,
          progress: bool = True, log=print, load=load_trajectories) -> TrainSummary:
    """Train per ``tc`` on the transitions in ``logs``; writes ``out`` (best) and its resume file.
    ``load(logs, spec) -> (trajectories, LoadReport)`` reads them (``bench/estimate_columns.py`` swaps columns)."""
    t_start = time.perf_counter()
    info = D.setup(tc.device)
    try:
        summary = _train(logs, spec, tc, Path(out), resume, progress and info.is_main, info, t_start,
                         log if info.is_main else (lambda *a, **k: None), load)
        if info.is_main:
            write_report(summary, tc, logs)
        return summary
    finally:
        D.teardown(info)


def write_report(s: TrainSummary, tc: TrainConfig, logs: list[Path]) -> Path:
    """Provenance next to the checkpoint: ``<out>.json`` (config, data, command, figures, time, machine)."""
    path = s.out.with_name(s.out.name + ".json")
    rep = s.data_report
    path.write_text(json.dumps({
        "method": s.method, "steps": s.steps, "best_step": s.best_step, "best_val": s.best_val, "validation": s.val,
        "stopped_early": s.stopped_early, "skipped_updates": s.skipped_updates, "wall_time": s.wall_time,
        "world_size": s.world_size, "train_transitions": s.train_transitions, "val_transitions": s.val_transitions,
        "logs": [str(p) for p in logs], "data": rep.summary() if rep else None, "config": tc.model_dump(mode="json"),
        "command": " ".join(sys.argv), "torch": torch.__version__, "legadapt": __version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "history": s.history,
    }, indent=2))
    return path


def _train(logs, spec, tc, out, resume, progress, info, t_start, log, load) -> TrainSummary:
    trajectories, report = load(logs, spec)
    log(report.summary())
    base = TaskSampler(trajectories, tc.M, tc.K, tc.seed)
    train_s, val_s = base.split(tc.val_fraction, tc.seed)
    torch.manual_seed(tc.seed)
    model = build_model(tc, spec)
    x, y = train_s.all_transitions()
    model.fit_normalizers(x, y)
    cfg = maml_config(tc)
    objective = make_objective(tc.method, model, cfg, pre_weight=tc.pre_adaptation_weight, kl_weight=tc.kl_weight).to(info.device)
    wrapped = DistributedDataParallel(objective) if info.distributed else objective
    opt = torch.optim.Adam(objective.parameters(), lr=tc.lr)
    val_s.reseed([tc.seed, 987654321])
    val_batch = [t.to(info.device) for t in val_s.sample(tc.val_tasks)]

    step, best, best_step, bad, skipped, best_val, history = 0, math.inf, 0, 0, 0, {}, []
    rpath = _resume_path(out)
    if resume and rpath.exists():
        state = torch.load(rpath, weights_only=True, map_location=info.device)
        objective.load_state_dict(state["objective"])
        opt.load_state_dict(state["optimizer"])
        step, best, best_step, bad, skipped = (int(state["step"]), float(state["best"]), int(state["best_step"]),
                                               int(state["bad"]), int(state["skipped"]))
        history = list(state.get("history", []))
        log(f"resumed from {rpath} at step {step} (best validation {best:.4f} at step {best_step})")
    per_step = _tasks_per_step(tc)
    bar = tqdm(total=tc.max_steps, initial=step, desc=f"train {tc.method}", unit="step", disable=not progress)
    stopped = False
    while step < tc.max_steps:
        train_s.reseed([tc.seed, info.rank, step])
        batch = [t.to(info.device) for t in train_s.sample(per_step)]
        loss = wrapped(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(objective.parameters(), tc.grad_clip)
        if torch.isfinite(loss) and torch.isfinite(norm):
            opt.step()
        else:
            skipped += 1
        step += 1
        bar.update()
        if step % tc.eval_every == 0 or step == tc.max_steps:
            figures = objective.evaluate(*val_batch)
            history.append({"step": step, "train_loss": float(loss.item()), **figures})
            bar.set_postfix(train=f"{loss.item():.3f}", val=f"{figures['loss']:.3f}")
            if figures["loss"] < best:
                best, best_step, best_val, bad = figures["loss"], step, figures, 0
                if info.is_main:
                    _save(out, model, spec, cfg, tc, objective, report, best_val, step)
            else:
                bad += 1
            if info.is_main:
                torch.save({"objective": objective.state_dict(), "optimizer": opt.state_dict(), "step": step, "best": best,
                            "best_step": best_step, "bad": bad, "skipped": skipped, "history": history}, rpath)
            if D.all_agree(bad >= tc.patience, info):
                stopped = True
                break
    bar.close()
    if not best_val:  # resumed after the best was saved: recompute the figures of the saved best
        best_val = {"loss": best}
    return TrainSummary(method=tc.method, steps=step, best_step=best_step, best_val=best, val=best_val, stopped_early=stopped,
                        skipped_updates=skipped, train_transitions=train_s.num_transitions,
                        val_transitions=val_s.num_transitions, wall_time=time.perf_counter() - t_start,
                        world_size=info.world_size, out=out, data_report=report, history=history)


def _save(out: Path, model, spec: FeatureSpec, cfg: MamlConfig, tc: TrainConfig, objective, report: LoadReport,
          val: dict, step: int) -> None:
    lrs = objective.lrs() if tc.method == "grbal" and cfg.learn_inner_lr else None
    meta = {"feature_spec": spec, "adapter": tc.method, "maml": cfg,
            "training": {"config": tc.model_dump(mode="json"), "best_step": step, "validation": val,
                         "transitions_used": report.transitions_used, "files_read": report.files_read,
                         "state_source": report.state_source(),
                         "conditions": report.condition_groups()}}
    save_checkpoint(out, model, meta, lrs={k: v.detach() for k, v in lrs.items()} if isinstance(lrs, dict) else None)
