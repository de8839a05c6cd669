"""Several trainings of one recipe, and the one to keep, chosen on validation logs.

Trainings of one recipe that differ only in their seed can differ in closed loop by more than recipes do: on
the flow-fused estimate one of three walked a held-out limp leg 15 % less far (README, *Shipped: the onboard
pair*), and their one-step validation loss ranked them the other way round. What the planner integrates is the
pose the adapted model rolls out over its horizon, so each training is scored on ``validation`` logs
(:func:`dynamics.evaluate.evaluate`: after its online step, the position (m) and heading (deg) error after
``horizon`` steps of logged actions) and the one kept is the one whose worse relative miss is smallest:
``max(position / best position, heading / best heading)`` over the trainings (1.0 = best on both).

The validation logs should be of the training conditions, not the held-out ones: choosing on the test is not
choosing (``configs/collect/validation_flow.yaml``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from legadapt.config import TrainConfig
from legadapt.dynamics.evaluate import adapted_column, evaluate, variants_from_checkpoints
from legadapt.dynamics.train import TrainSummary, train
from legadapt.features import FeatureSpec

@dataclass
class Candidate:
    """One training: its seed, checkpoint and pose errors after the horizon on the validation logs."""

    seed: int
    path: Path
    position: float  # m
    heading: float  # deg
    regret: float = float("nan")  # the worse of position / best and heading / best (1.0: best on both)


def seed_path(out: Path, seed: int) -> Path:
    """Where the training with ``seed`` is written beside ``out`` (``model.pt`` -> ``model.seed1.pt``)."""
    return out.with_name(f"{out.stem}.seed{seed}{out.suffix}")


def train_and_select(logs: list[Path], spec: FeatureSpec, tc: TrainConfig, out: Path, seeds: list[int],
                     validation: list[Path], horizon: int, progress: bool = True, log=print
                     ) -> tuple[list[Candidate], Candidate]:
    """Train ``tc`` once per seed (``seed_path``), score each on ``validation`` and copy the kept one, with its
    provenance and the selection added (``<out>.json``), to ``out``. Returns every candidate and the kept one."""
    summaries: list[TrainSummary] = []
    for seed in seeds:
        log(f"training {len(summaries) + 1} of {len(seeds)}: train.seed {seed} -> {seed_path(out, seed)}")
        summaries.append(train(logs, spec, tc.model_copy(update={"seed": seed}), seed_path(out, seed),
                               progress=progress, log=log))
    candidates = score(spec, tc, seeds, [s.out for s in summaries], validation, horizon)
    kept = min(candidates, key=lambda c: (c.regret, c.seed))
    shutil.copyfile(kept.path, out)
    provenance = json.loads(kept.path.with_name(kept.path.name + ".json").read_text())
    provenance["selection"] = selection_record(candidates, kept, validation, horizon)
    out.with_name(out.name + ".json").write_text(json.dumps(provenance, indent=2))
    return candidates, kept


def score(spec: FeatureSpec, tc: TrainConfig, seeds: list[int], paths: list[Path], validation: list[Path],
          horizon: int) -> list[Candidate]:
    """Each training's adapted pose errors after ``horizon`` steps on ``validation``, with its relative regret."""
    adapters = variants_from_checkpoints([(tc.method, p, f"seed{s}") for s, p in zip(seeds, paths)], spec)
    result = evaluate(validation, spec, adapters, tc.M, horizon)
    columns = [adapted_column(tc.method, f"seed{s}") for s in seeds]
    out = [Candidate(s, p, result.overall["pos_h"][c], result.overall["yaw_h"][c]) for s, p, c in zip(seeds, paths, columns)]
    best_pos, best_yaw = min(c.position for c in out), min(c.heading for c in out)
    for c in out:
        c.regret = max(c.position / max(best_pos, 1e-12), c.heading / max(best_yaw, 1e-12))
    return out


def selection_record(candidates: list[Candidate], kept: Candidate, validation: list[Path], horizon: int) -> dict:
    """What ``<out>.json`` says of the choice."""
    return {"rule": "the training whose worse relative pose error after the horizon is smallest: "
                    "max(position / best position, heading / best heading) on the validation logs, after the step",
            "validation_logs": [str(p) for p in validation], "horizon": horizon, "kept_seed": kept.seed,
            "candidates": {f"seed {c.seed}": {"position_cm": round(100 * c.position, 4),
                                              "heading_deg": round(c.heading, 4), "regret": round(c.regret, 4),
                                              "checkpoint": str(c.path)} for c in candidates}}


def table(candidates: list[Candidate], kept: Candidate) -> str:
    """The candidates as printed by ``legadapt train --seeds``."""
    lines = ["| train.seed | position after the horizon (cm) | heading (deg) | worse relative miss | |",
             "|---|---|---|---|---|"]
    for c in candidates:
        lines.append(f"| {c.seed} | {100 * c.position:.3f} | {c.heading:.3f} | {c.regret:.3f} | "
                     f"{'kept' if c is kept else ''} |")
    return "\n".join(lines)
