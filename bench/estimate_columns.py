"""What part of an onboard estimate costs a model trained on it: GrBAL on estimate-fused logs with chosen
body-state columns taken from paired truth logs.

The random-action collection draws the same actions and the same physics for an episode whatever the
state source (``configs/collect/train.yaml`` and ``train_flow.yaml`` differ only in it), so the two
collections pair up episode by episode: the actions and joint angles agree to the bit, and only the
estimated body state differs. This script pairs the trajectories (same file name, condition, length and
actions; anything else is refused), prints how far the estimate's velocity is from the truth's, swaps
what ``--take`` names, trains with the training config, and records the shipped default's run-time
pairing (behind the plain MB model, step x 0.3) in the checkpoint, with ``mb.pt`` copied beside it:

* ``none``: the estimate as logged (what ``legadapt train`` on the estimate's logs does);
* ``velocity``: the truth's body velocity (vx, vy, vz), as inputs and in the targets;
* ``vz``: the truth's vertical velocity alone;
* ``targets``: the estimate's states as inputs, the truth's velocity changes and displacement as targets;
* ``inputs``: the truth's velocity as inputs, the estimate's velocity changes and displacement as targets.

Evaluate each with ``legadapt perturb --suite held-out-flow --variants grbal --model grbal=OUT``.
Usage: ``python bench/estimate_columns.py --estimate runs/data/train_flow --truth runs/data/train
--take velocity --seed 0 --out runs/models/est_velocity_s0.pt``
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from legadapt.config import load_config
from legadapt.dynamics.checkpoint import set_runtime
from legadapt.dynamics.datasets import Trajectory, load_trajectories
from legadapt.dynamics.train import train
from legadapt.features import SLICE_VEL, spec_of
from legadapt.resources import find_shipped

TAKES = ("none", "velocity", "vz", "targets", "inputs")
SHIPPED_RUNTIME = {"plain_model": "mb.pt", "lr_scale": 0.3}  # as models/default.pt runs


def pair(estimate: list[Trajectory], truth: list[Trajectory]) -> list[tuple[Trajectory, Trajectory]]:
    """Each estimate trajectory with its truth twin; ValueError where the two collections do not pair."""
    def key(t: Trajectory) -> tuple:
        return Path(t.source.split(":")[0]).name, t.condition, len(t)

    twins: dict[tuple, list[Trajectory]] = {}
    for t in truth:
        twins.setdefault(key(t), []).append(t)
    pairs = []
    for t in estimate:
        candidates = twins.get(key(t))
        if not candidates:
            raise ValueError(f"{t.source}: no truth trajectory of the same episode file, condition and length")
        u = candidates.pop(0)
        if not np.array_equal(t.actions, u.actions):
            raise ValueError(f"{t.source} and {u.source} differ in their actions: not the same collection")
        pairs.append((t, u))
    return pairs


def swap(est: Trajectory, truth: Trajectory, take: str) -> None:
    """Put ``truth``'s columns named by ``take`` into ``est`` (in place)."""
    v = SLICE_VEL
    if take in ("velocity", "vz"):
        cols = v if take == "velocity" else slice(4, 5)
        est.states[:, cols], est.next_states[:, cols] = truth.states[:, cols], truth.next_states[:, cols]
    elif take == "targets":
        est.next_states[:, v] = est.states[:, v] + (truth.next_states[:, v] - truth.states[:, v])
        est.displacements = truth.displacements.copy()
    elif take == "inputs":
        change = est.next_states[:, v] - est.states[:, v]
        est.states[:, v] = truth.states[:, v]
        est.next_states[:, v] = truth.states[:, v] + change


def velocity_error(pairs: list[tuple[Trajectory, Trajectory]]) -> tuple[np.ndarray, np.ndarray]:
    """The estimate's body velocity minus the truth's over every transition: (mean [3], RMS [3]) in m/s."""
    err = np.concatenate([t.states[:, SLICE_VEL] - u.states[:, SLICE_VEL] for t, u in pairs])
    return err.mean(axis=0), np.sqrt((err**2).mean(axis=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--estimate", required=True, help="logs collected with collect.state_source: estimated+flow")
    ap.add_argument("--truth", required=True, help="the same collection with state_source: privileged")
    ap.add_argument("--take", choices=TAKES, required=True)
    ap.add_argument("--seed", type=int, default=0, help="train.seed")
    ap.add_argument("--config", default="configs/train/default.yaml")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cfg = load_config(args.config)
    tc = cfg.train.model_copy(update={"seed": args.seed})
    spec = spec_of(cfg)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def load(logs, spec):
        estimate, report = load_trajectories(args.estimate, spec)
        truth, _ = load_trajectories(args.truth, spec)
        pairs = pair(estimate, truth)
        mean, rms = velocity_error(pairs)
        print(f"{len(pairs)} trajectories paired; estimate - truth, vx vy vz: mean {np.round(mean, 4)} m/s, "
              f"RMS {np.round(rms, 4)} m/s; taking {args.take} from the truth", flush=True)
        for est, tru in pairs:
            swap(est, tru, args.take)
        return estimate, report

    summary = train([Path(args.estimate)], spec, tc, args.out, progress=False, load=load)
    print(summary.text())
    shutil.copy(find_shipped("models", "mb.pt"), args.out.with_name("mb.pt"))
    set_runtime(args.out, SHIPPED_RUNTIME)


if __name__ == "__main__":
    main()
