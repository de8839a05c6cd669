"""Quality per millisecond: planners and rollout precisions compared by the closed-loop task score.

Each contender is a ``controller.planner`` override, most at about the same compute per cycle (model
evaluations = samples × horizon × iterations ≈ 5000, design.md's anchor): MPPI with white noise in fp32 and
in bf16, MPPI with coloured noise (β = 2), iCEM (coloured noise, kept elites, a shrinking population); then
coloured MPPI with 256 samples (the default) and 128, and the small-computer profile's planner (128 samples,
fp32). Every
contender runs the same scenarios and seeds through ``legadapt perturb`` (GrBAL, the shipped model,
the simulator's true state), and the report gives, over all runs: the median slow-cycle time (ms, as
logged), the mean task score (m made good within the corridor), the mean cross-track (cm), and the
task score per cycle-millisecond.

Usage: ``python bench/planner_quality.py [--scenarios limp_LF intact_figure8 ... | all] [--out runs/bench/planner_quality]
[--contenders mppi_fp32 mppi_bf16 ...] [--suite held-out-true-state] [--workers 2] [--variants grbal mb]
[--seeds 3 4 5] [--by-scenario]``. A contender's runs are
kept in ``--out/<contender>`` (``--rescore`` there re-reads them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite_runs import load_suite, override_suite, print_by_scenario, run_suite  # noqa: E402

CONTENDERS: dict[str, dict] = {
    "mppi_fp32": {"kind": "mppi", "samples": 500, "precision": "fp32", "noise_beta": 0.0, "fine_share": 0.0},  # the default until 2026-12
    "mppi_bf16": {"kind": "mppi", "samples": 500, "precision": "bf16", "noise_beta": 0.0, "fine_share": 0.0},
    "mppi_colored": {"kind": "mppi", "samples": 500, "precision": "bf16", "noise_beta": 2.0, "fine_share": 0.0},  # the default until 2026-12-04
    # fewer samples: what the cycle time buys; 256 is the default since 2026-12-04; until 2026-12-06 every sample at the full noise (README, 'Fewer samples')
    "mppi_colored_256": {"kind": "mppi", "samples": 256, "precision": "bf16", "noise_beta": 2.0, "fine_share": 0.0},
    # the default until 2026-12-06 in fp32: what bf16 rollouts change in closed loop (issue 15: no worse than fp32's)
    "mppi_colored_256_fp32": {"kind": "mppi", "samples": 256, "precision": "fp32", "noise_beta": 2.0, "fine_share": 0.0},
    "mppi_colored_128": {"kind": "mppi", "samples": 128, "precision": "bf16", "noise_beta": 2.0, "fine_share": 0.0},
    # the default since 2026-12-06: half the samples at a quarter of the noise (README, 'The planner's own bias')
    "mppi_fine_256": {"kind": "mppi", "samples": 256, "precision": "bf16", "noise_beta": 2.0, "fine_share": 0.5},
    "mppi_fine_256_fp32": {"kind": "mppi", "samples": 256, "precision": "fp32", "noise_beta": 2.0, "fine_share": 0.5},
    "icem": {"kind": "icem", "samples": 200, "elites": 20, "iterations": 3, "precision": "bf16"},
    # configs/small_computer.yaml's planner, in fp32 as on a computer without bf16 matrix units (not the same compute)
    "small_computer": {"kind": "mppi", "samples": 128, "precision": "fp32", "noise_beta": 2.0},
}
DEFAULT_SCENARIOS = ["intact_straight", "intact_figure8", "limp_LF", "limp_LF_left_turn", "weak_LF", "cross_slope_12"]


def summary(results: list[dict]) -> dict:
    ok = [r for r in results if not r.get("error")]
    score = statistics.mean(r["task_score"] for r in ok)
    cycle = statistics.median(r["cycle_ms"] for r in ok)
    return {"runs": len(ok), "errors": len(results) - len(ok), "cycle_ms": cycle, "score": score,
            "xt_cm": 100 * statistics.mean(r["mean_cross_track"] for r in ok), "score_per_ms": score / cycle}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="held-out-true-state")
    ap.add_argument("--scenarios", nargs="+", default=DEFAULT_SCENARIOS)
    ap.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    ap.add_argument("--out", type=Path, default=Path("runs/bench/planner_quality"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=["grbal"], help="the shipped pairing (grbal) unless told")
    ap.add_argument("--seeds", nargs="+", type=int, help="instead of the suite's seeds")
    ap.add_argument("--by-scenario", action="store_true", help="also print each scenario's figures")
    args = ap.parse_args()
    base = load_suite(args.suite)
    rows = {}
    for name in args.contenders:
        suite = override_suite(base, f"quality-{name}", "planner", CONTENDERS[name], args.scenarios, args.variants,
                               seeds=args.seeds)
        results = run_suite(suite, args.out / name, args.workers)
        if args.by_scenario:
            print_by_scenario(name, results, args.variants)
        rows[name] = summary(results)
    ref = rows[args.contenders[0]]
    print(f"\n{' '.join(args.variants)}, {args.suite}: {', '.join(args.scenarios)}; seeds {args.seeds or 'as the suite has'}; "
          f"ratios against {args.contenders[0]}")
    print(f"{'contender':14s} {'runs':>5s} {'cycle ms':>9s} {'task score m':>13s} {'cross-track cm':>15s} "
          f"{'score / ms':>11s} {'cycle ratio':>12s}")
    for name, r in rows.items():
        print(f"{name:14s} {r['runs']:5d} {r['cycle_ms']:9.1f} {r['score']:13.3f} {r['xt_cm']:15.2f} "
              f"{r['score_per_ms']:11.4f} {r['cycle_ms'] / ref['cycle_ms']:12.2f}")


if __name__ == "__main__":
    main()
