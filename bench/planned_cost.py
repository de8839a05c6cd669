"""Quality per millisecond on logged states: what each planner's plan costs from the states of a real run.

The closed-loop bench (``bench/planner_quality.py``) scores planners by where the robot ends up, which takes
minutes of simulation per contender and mixes the planner with everything else. This one replays a run's log
instead: for every control cycle it gives each contender the cycle's logged state, pose, previous action and
adaptation window (the last M transitions), in order, so the warm start and the path progress evolve as in
the run, lets it plan (timed), and costs the returned plan under the same fp32 adapted model with the same
path cost. A reference planner with 16× the compute (MPPI, coloured noise, 2000 samples × 4 iterations,
fp32) gives the near-best cost of each cycle; a contender's figure is its plan's cost relative to the
reference's, cycle by cycle (1.00 = as good as 16× the compute), against its median planning time.

Usage: ``python bench/planned_cost.py [--log RUN.mcap] [--contenders ...]``. Without ``--log`` it makes one:
the main job (``configs/sim_limp_leg.yaml``, the front-left leg goes limp at 6 s), 14 s, lockstep.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from planner_quality import CONTENDERS  # noqa: E402

from legadapt import config as C  # noqa: E402
from legadapt.controller.preflight import build_controller, resolve_model  # noqa: E402
from legadapt.mcap_read import read_log  # noqa: E402

#: Every sample at the full noise, as the reference has been since it was made (the fine contenders may beat it).
REFERENCE = {"kind": "mppi", "samples": 2000, "iterations": 4, "precision": "fp32", "noise_beta": 2.0, "fine_share": 0.0}


def make_log(tmp: Path) -> Path:
    log = tmp / "main_job.mcap"
    subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "run", "--config", str(REPO / "configs" / "sim_limp_leg.yaml"),
                    "--duration", "14", "--log", str(log)], check=True, capture_output=True)
    return log


def cycles_of(log) -> list[dict]:
    """Per control cycle (in order): state [S], pose [3], previous action [A] and the transitions up to it."""
    transitions = log.messages["transition"]
    planner = {round(m["t"], 6): m for m in log.messages["planner"] if m.get("pose") is not None}
    out = []
    for i, tr in enumerate(transitions):
        cyc = planner.get(round(tr["t"], 6))
        if cyc is not None:
            out.append({"t": tr["t"], "state": np.asarray(tr["next_state"], float), "pose": np.asarray(cyc["pose"], float),
                        "prev_action": np.asarray(tr["action"], float), "window": transitions[:i + 1]})
    return out


def load_window(mpc, cycle: dict, window: int) -> None:
    """Give ``mpc`` the adaptation window of a logged ``cycle``: its last ``window`` transitions, in order."""
    mpc.window_x.clear()
    mpc.window_y.clear()
    for tr in cycle["window"][-window:]:
        mpc.observe(*(np.asarray(tr[k], float) for k in ("state", "action", "next_state", "displacement")))


def replay(cfg: C.LegadaptConfig, planner: dict, cycles: list[dict]) -> tuple[np.ndarray, float]:
    """The fp32 cost of each cycle's plan [cycles] and the median planning time (ms) of ``planner``."""
    cfg = cfg.model_copy(update={"controller": cfg.controller.model_copy(update={
        "planner": cfg.controller.planner.model_copy(update=planner)})})
    mpc, _, window = build_controller(cfg, resolve_model(cfg.controller.model))
    costs, times = [], []
    for c in cycles:
        load_window(mpc, c, window)
        t0 = time.perf_counter()
        plan = mpc.step(c["state"], c["pose"], c["prev_action"])
        times.append(time.perf_counter() - t0 - mpc.stats.adapt_time)
        mpc.predict = mpc.adapter.dynamics(mpc.ctx)  # the fp32 model for the scoring rollout
        z0 = torch.as_tensor(np.concatenate([c["pose"], c["state"]]), dtype=torch.float32)
        with torch.no_grad():
            _, cost = mpc.planner.rollout(z0, torch.as_tensor(plan, dtype=torch.float32)[None])
        costs.append(float(cost[0]))
    return np.array(costs), 1e3 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--log", type=Path, help="a run's MCAP log (default: make one of the main job)")
    ap.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        log = read_log(args.log or make_log(Path(tmp)))
    cfg = C.parse_config(log.config, "the log's config")
    cycles = cycles_of(log)
    ref, ref_ms = replay(cfg, REFERENCE, cycles)
    print(f"{len(cycles)} logged cycles; reference (MPPI 2000 x 4, fp32): plan {ref_ms:.1f} ms, mean cost {ref.mean():.3f}")
    print(f"{'contender':15s} {'plan ms':>8s} {'mean cost':>10s} {'cost / ref (median, mean)':>27s} {'cycles <= 1.05 ref':>19s}")
    for name in args.contenders:
        costs, ms = replay(cfg, CONTENDERS[name], cycles)
        ratio = costs / ref
        print(f"{name:15s} {ms:8.1f} {costs.mean():10.3f} {np.median(ratio):13.3f} {ratio.mean():12.3f} "
              f"{100 * np.mean(ratio <= 1.05):17.0f} %")


if __name__ == "__main__":
    main()
