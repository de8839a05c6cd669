"""``legadapt collect``: simulated experience across a distribution of conditions, as MCAP logs.

The episode list is drawn once from ``collect.seed``: episode ``i`` has its condition and
seed fixed whatever the shard layout, so ``--shard i/n`` on n machines produces exactly
the files one machine would. Each episode is one MCAP file, written under a temporary
name and renamed when finished, so a re-run skips finished episodes and a crash never
leaves a file that looks complete.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from legadapt.controller import stop_request
from legadapt.controller.episode import RandomGaitPolicy, run_episode
from legadapt import config as C
from legadapt.config.vary import draw_perturbations
from legadapt.features import spec_of
from legadapt.mcap_log import LogWriter


@dataclass(frozen=True)
class EpisodePlan:
    index: int
    condition: C.ConditionSpec
    seed: int

    @property
    def filename(self) -> str:
        return f"episode{self.index:05d}.mcap"


@dataclass
class CollectSummary:
    planned: int
    skipped_existing: int
    written: int
    transitions: int
    falls: int
    errors: list[str]
    wall_time: float  # s
    out_dir: Path


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


def plan_episodes(cc: C.CollectConfig) -> list[EpisodePlan]:
    """The whole collection's episodes, deterministic from ``cc.seed``."""
    rng = np.random.default_rng(cc.seed)
    weights = np.array([c.weight for c in cc.conditions])
    picks = rng.choice(len(cc.conditions), size=cc.episodes, p=weights / weights.sum())
    seeds = rng.integers(0, 2**31 - 1, size=cc.episodes)
    return [EpisodePlan(i, drawn(cc.conditions[int(k)], int(s)), int(s)) for i, (k, s) in enumerate(zip(picks, seeds))]


def drawn(cond: C.ConditionSpec, seed: int) -> C.ConditionSpec:
    """``cond`` with its ``vary`` fields drawn for the episode seeded by ``seed`` (itself if nothing varies)."""
    if not cond.vary:
        return cond
    rng = np.random.default_rng([seed, 7])
    return cond.model_copy(update={"perturbations": draw_perturbations(cond.perturbations, cond.vary, rng), "vary": {}})


def _episode_config(cfg: C.LegadaptConfig, plan: EpisodePlan) -> C.LegadaptConfig:
    return cfg.model_copy(update={"perturbations": list(plan.condition.perturbations),
                                  "sim": cfg.sim.model_copy(update={"seed": plan.seed})})


def collect_episode(cfg: C.LegadaptConfig, plan: EpisodePlan, out_dir: Path) -> dict:
    """Run one planned episode and write its log; returns a small result record."""
    ecfg = _episode_config(cfg, plan)
    cc = cfg.collect
    spec = spec_of(cfg)
    final = out_dir / plan.filename
    tmp = out_dir / (plan.filename + ".part")
    rng = np.random.default_rng(plan.seed)
    policy, path = make_policy(ecfg, spec, rng)
    info = {"episode": plan.index, "condition": plan.condition.name, "seed": plan.seed, "policy": cc.policy, "path": path,
            "model": cc.model, "backend": cfg.sim.backend, "state_source": cc.state_source}
    writer = LogWriter(tmp, spec, config=ecfg.model_dump(mode="json"), info=info)
    try:
        writer.write("events", {"t": 0.0, "kind": "episode_start", "message": plan.condition.name,
                                "data": {"episode": plan.index, "perturbations": [p.model_dump(mode="json") for p in plan.condition.perturbations]}}, 0.0)

        def emit(tr) -> None:
            writer.write("transition", {"t": tr.t, "episode": plan.index, "condition": f"{plan.condition.name}:{tr.condition}",
                                        "state": tr.state, "action": tr.action, "next_state": tr.next_state,
                                        "displacement": tr.displacement}, tr.t)

        res = run_episode(ecfg, policy, cc.episode_duration, cc.state_source, emit)
        writer.write("events", {"t": res.duration, "kind": "episode_end", "message": "fell" if res.fell else "done",
                                "data": {"transitions": res.transitions, "fell": res.fell, "error": res.error}}, res.duration)
    finally:
        writer.finish()
    os.replace(tmp, final)
    return {"index": plan.index, "transitions": res.transitions, "fell": res.fell, "error": res.error}


def make_policy(cfg: C.LegadaptConfig, spec, rng: np.random.Generator):
    """The episode's slow-loop policy and its path name (None for random actions)."""
    cc = cfg.collect
    if cc.policy == "random":
        return RandomGaitPolicy(cc.random_policy, spec.action_dim, rng), None
    from legadapt.controller.daemon import build_controller, resolve_model

    path = str(rng.choice(cc.paths))
    pcfg = cfg.model_copy(update={
        "task": cfg.task.model_copy(update={"path": path, "duration": cc.episode_duration}),
        "controller": cfg.controller.model_copy(update={
            "planner": cfg.controller.planner.model_copy(update={"seed": int(rng.integers(0, 2**31 - 1))})})})
    mpc, _, _ = build_controller(pcfg, resolve_model(cc.model))
    return mpc, path


def _worker(args: tuple[C.LegadaptConfig, EpisodePlan, Path]) -> dict:
    cfg, plan, out_dir = args
    if mp.current_process().name != "MainProcess":
        import torch

        torch.set_num_threads(1)  # workers share the cores: one BLAS thread each
    try:
        return collect_episode(cfg, plan, out_dir)
    except Exception as exc:  # noqa: BLE001 - one bad episode must not end the collection
        return {"index": plan.index, "transitions": 0, "fell": False, "error": f"{type(exc).__name__}: {exc}"}


def collect(cfg: C.LegadaptConfig, out_dir: Path, shard: tuple[int, int] = (0, 1), workers: int | None = None,
            progress: bool = True) -> CollectSummary:
    """Run this shard's episodes in ``workers`` processes, writing ``out_dir/episodeNNNNN.mcap``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plans = plan_episodes(cfg.collect)[shard[0]::shard[1]]
    todo = [p for p in plans if not (out_dir / p.filename).exists()]
    workers = workers or cfg.collect.workers
    t0 = time.perf_counter()
    results: list[dict] = []
    jobs = [(cfg, p, out_dir) for p in todo]
    bar = tqdm(total=len(jobs), desc=f"collect shard {shard[0]}/{shard[1]}", unit="ep", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(_worker(job))
            bar.update()
    else:
        try:
            with stop_request.sigterm_as_interrupt(), \
                    mp.get_context("fork").Pool(min(workers, len(jobs)), initializer=stop_request.ignore_interrupts) as pool:
                for r in pool.imap_unordered(_worker, jobs):
                    results.append(r)
                    bar.update()
        except KeyboardInterrupt:  # the pool's exit terminated the workers: their episodes stay unwritten
            bar.close()
            for job in jobs:
                (out_dir / (job[1].filename + ".part")).unlink(missing_ok=True)
            written = sum(not r["error"] for r in results)
            raise KeyboardInterrupt(f"{written} of {len(jobs)} episodes written to {out_dir}; the same command "
                                    "collects the rest") from None
    bar.close()
    errors = [f"episode {r['index']}: {r['error']}" for r in results if r["error"]]
    return CollectSummary(planned=len(plans), skipped_existing=len(plans) - len(todo), written=len(results) - len(errors),
                          transitions=sum(r["transitions"] for r in results), falls=sum(r["fell"] for r in results),
                          errors=errors, wall_time=time.perf_counter() - t0, out_dir=out_dir)
