"""What an ensemble of trainings costs per control cycle: adapt + plan, the shipped GrBAL alone against it with its
two retrains (``controller.adaptation.ensemble``, dynamics/ensemble.py), at 256 and 128 samples per plan.

Each contender is the controller the config builds (the plain model's switch included), fed the transitions of a
main-job log in order (the front-left leg goes limp at 6 s) and timed on the cycles after ``--from`` s, where GrBAL
plans: the median of ``AdaptiveMPC.step`` over those cycles, one torch thread (as the daemon takes on a 2-core
machine), contenders alternated for ``--rounds`` rounds. Printed: each median and its ratio to the single model's at
256 samples (the default), with the share of timed cycles on which GrBAL planned.

Usage: ``OMP_NUM_THREADS=1 python bench/ensemble_cycle.py [--log RUN.mcap] [--from 7] [--cycles 60] [--rounds 2]``.
Without ``--log`` it makes one (the main job, 14 s, lockstep).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from planned_cost import make_log  # noqa: E402

from legadapt import config as C  # noqa: E402
from legadapt.controller.preflight import build_controller  # noqa: E402
from legadapt.mcap_read import read_log  # noqa: E402

ENSEMBLE = {"adaptation": {"ensemble": ["default_member1.pt", "default_member2.pt"]}}
CONTENDERS = {
    "single, 256 samples (default)": {},
    "ensemble of 3, 256 samples": ENSEMBLE,
    "single, 128 samples": {"planner": {"samples": 128}},
    "ensemble of 3, 128 samples": {**ENSEMBLE, "planner": {"samples": 128}},
}


def time_contender(controller: dict, log, start: float, cycles: int) -> tuple[float, float]:
    """Median adapt+plan ms over ``cycles`` cycles from ``start`` s, and the share of them on which GrBAL planned."""
    mpc, _, _ = build_controller(C.parse_config({"controller": controller}), REPO / "models" / "default.pt")
    transitions, planner = log.messages["transition"], log.messages["planner"]
    times, engaged = [], 0
    for i, m in enumerate(transitions):
        mpc.observe(*(np.asarray(m[k]) for k in ("state", "action", "next_state", "displacement")))
        pose = np.asarray(planner[min(i + 1, len(planner) - 1)]["pose"])
        t0 = time.perf_counter()
        mpc.step(np.asarray(m["next_state"]), pose)
        if m["t"] >= start:
            times.append(time.perf_counter() - t0)
            engaged += bool(getattr(mpc.adapter, "engaged", True))
            if len(times) == cycles:
                break
    return 1e3 * statistics.median(times), engaged / max(len(times), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, help="a main-job log (default: make one)")
    ap.add_argument("--from", dest="start", type=float, default=7.0, help="time the cycles after this, s")
    ap.add_argument("--cycles", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        log = read_log(args.log or make_log(Path(tmp)), channels=["transition", "planner"])
    results: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    shares: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, controller in CONTENDERS.items():
            ms, shares[name] = time_contender(controller, log, args.start, args.cycles)
            results[name].append(ms)
    base = statistics.median(results["single, 256 samples (default)"])
    for name, ms in results.items():
        m = statistics.median(ms)
        print(f"{name:32s} adapt+plan median {m:5.1f} ms ({', '.join(f'{x:.1f}' for x in ms)})  "
              f"{m / base:4.2f}x the default  GrBAL planned {shares[name]:.0%} of the timed cycles")


if __name__ == "__main__":
    main()
