"""An onboard estimate against the simulator's truth, closed loop: each variant's mean cross-track on one suite
divided by the same variant's on the same scenarios and seeds run on the true state (issue 13's 1.3× goal).

Two earlier ``legadapt perturb`` runs are paired by scenario name and seed; a scenario whose path, duration,
backend or perturbations differ between the two is refused, as is a pair with no seed in common. Printed per
scenario and variant: the estimate's and the truth's mean cross-track (cm, the mean over runs of each run's
mean) and task score (m), their ratio, then how many pairs are within ``--within`` and the median ratio; then
per variant, its mean cross-track over every paired run of the suite on each source, their ratio, and whether
every variant is within ``--within``.

``--flow-noise S [S ...]`` runs ``held-out-flow`` (or ``--suite``) first, once per factor, on a copy of the
suite's robot description whose flow sensor's noises (image rate, range, gyro; :class:`FlowSensorFile`)
are multiplied by S, and pairs each with the truth's run: how much of the gap the sensor's own noise makes.

Usage::

    python bench/source_ratio.py runs/perturb/held-out-flow runs/perturb/held-out-true-state
    python bench/source_ratio.py --flow-noise 0 --truth runs/perturb/held-out-true-state \\
        --variants grbal mb mbde --out runs/flow_noise
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite_runs import load_suite, run_suite  # noqa: E402

from legadapt.robot.description import description_path, load_description  # noqa: E402


def fail(message: str) -> NoReturn:
    """Stop with ``message`` on stderr and exit status 2 (bad input)."""
    print(f"source_ratio: {message}", file=sys.stderr)
    raise SystemExit(2)


CONDITION = ("path", "duration", "backend", "perturbations", "target_speed")  # what must match between the two runs


def xt_ratio(estimate_xt: float, truth_xt: float) -> float:
    """The estimate's mean cross-track over the truth's (a truth of 0 read as 1e-9 m)."""
    return estimate_xt / max(truth_xt, 1e-9)


@dataclass
class PairRatio:
    """One scenario × variant on both state sources, over the seeds both ran."""

    scenario: str
    variant: str
    seeds: list[int]
    estimate_xt: float  # m, mean over the seeds of each run's mean cross-track
    truth_xt: float  # m
    estimate_score: float  # m, mean task score
    truth_score: float  # m

    @property
    def ratio(self) -> float:
        return xt_ratio(self.estimate_xt, self.truth_xt)


@dataclass
class VariantRatio:
    """One variant over every run both state sources hold (all paired scenarios and seeds)."""

    variant: str
    runs: int
    estimate_xt: float  # m, mean over the runs of each run's mean cross-track
    truth_xt: float  # m

    @property
    def ratio(self) -> float:
        return xt_ratio(self.estimate_xt, self.truth_xt)


def variant_ratios(pairs: list[PairRatio]) -> list[VariantRatio]:
    """Per variant, the mean cross-track over all its paired runs on each source (each pair weighted by its seeds)."""
    sums: dict[str, tuple[float, float, int]] = {}
    for p in pairs:
        e, t, n = sums.get(p.variant, (0.0, 0.0, 0))
        k = len(p.seeds)
        sums[p.variant] = (e + k * p.estimate_xt, t + k * p.truth_xt, n + k)
    return [VariantRatio(v, n, e / n, t / n) for v, (e, t, n) in sorted(sums.items())]


def read_run(folder: Path) -> dict:
    """A ``legadapt perturb`` output folder's results.json; exit 2 naming the folder if there is none."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        fail(f"no results.json in {folder}: give the --out folder of a finished legadapt perturb run")
    return json.loads(path.read_text())


def _conditions(run: dict) -> dict[str, dict]:
    return {s["name"]: {k: s.get(k) for k in CONDITION} for s in run["suite"]["scenarios"]}


def pair_ratios(estimate: dict, truth: dict) -> list[PairRatio]:
    """Every scenario × variant both runs hold, paired seed by seed (results.json of each); exit 2 where the
    same scenario name means a different condition or the two share no seed."""
    conditions_e, conditions_t = _conditions(estimate), _conditions(truth)
    for name in sorted(set(conditions_e) & set(conditions_t)):
        if conditions_e[name] != conditions_t[name]:
            fail(f"scenario {name!r} differs between the two runs ({conditions_e[name]} against "
                 f"{conditions_t[name]}): pair runs of the same conditions")
    runs_e, runs_t = _by_pair(estimate), _by_pair(truth)
    pairs = []
    for key in sorted(set(runs_e) & set(runs_t)):
        seeds = sorted(set(runs_e[key]) & set(runs_t[key]))
        if not seeds:
            fail(f"{key[0]} / {key[1]}: the two runs share no seed")
        e, t = [runs_e[key][s] for s in seeds], [runs_t[key][s] for s in seeds]
        pairs.append(PairRatio(key[0], key[1], seeds, _mean(e, "mean_cross_track"), _mean(t, "mean_cross_track"),
                               _mean(e, "task_score"), _mean(t, "task_score")))
    return pairs


def _by_pair(run: dict) -> dict[tuple[str, str], dict[int, dict]]:
    out: dict[tuple[str, str], dict[int, dict]] = {}
    for r in run["results"]:
        if not r.get("error"):
            out.setdefault((r["scenario"], r["variant"]), {})[r["seed"]] = r
    return out


def _mean(results: list[dict], key: str) -> float:
    return sum(r[key] for r in results) / len(results)


def print_ratios(pairs: list[PairRatio], within: float, title: str) -> None:
    """The table, the tally within ``within`` and the median ratio."""
    print(f"== {title}")
    for p in pairs:
        mark = "ok" if p.ratio <= within else "MISS"
        print(f"  {p.scenario:26s} {p.variant:14s} estimate {100 * p.estimate_xt:5.2f} cm ({p.estimate_score:.2f} m)  "
              f"truth {100 * p.truth_xt:5.2f} cm ({p.truth_score:.2f} m)  {p.ratio:5.2f}x {mark}")
    inside = sum(p.ratio <= within for p in pairs)
    median = statistics.median(p.ratio for p in pairs) if pairs else float("nan")
    print(f"  within {within:g}x: {inside} of {len(pairs)} pairs; median ratio {median:.2f}x")
    variants = variant_ratios(pairs)
    print("  per variant, over every paired run:")
    for v in variants:
        mark = "ok" if v.ratio <= within else "MISS"
        print(f"  {v.variant:14s} {v.runs:3d} runs  estimate {100 * v.estimate_xt:5.3f} cm  truth {100 * v.truth_xt:5.3f} cm"
              f"  {v.ratio:5.2f}x {mark}")
    inside = sum(v.ratio <= within for v in variants)
    print(f"  variants within {within:g}x: {inside} of {len(variants)}", flush=True)


def noisy_description(robot: str, factor: float, out: Path) -> Path:
    """A copy of ``robot``'s description with its flow sensor's rate, range and gyro noise × ``factor``."""
    desc = load_description(robot)
    if desc.flow is None:
        fail(f"robot {robot!r} has no flow sensor")
    data = yaml.safe_load(description_path(robot).read_text())
    flow = data["sensors"]["flow"]
    flow["rate_noise"] = desc.flow.rate_noise * factor
    flow["range_noise"] = desc.flow.range_noise * factor
    if desc.flow.gyro_noise is not None:
        flow["gyro_noise"] = desc.flow.gyro_noise * factor
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{desc.name}_flow_noise_{factor:g}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", type=Path, help="ESTIMATE_DIR TRUTH_DIR: two legadapt perturb --out folders")
    ap.add_argument("--within", type=float, default=1.3, help="the goal's ratio (default 1.3)")
    ap.add_argument("--flow-noise", type=float, nargs="+", metavar="S", help="run the suite with the flow noise × S")
    ap.add_argument("--truth", type=Path, help="with --flow-noise: the true-state run to pair with")
    ap.add_argument("--suite", default="held-out-flow", help="with --flow-noise: the shipped suite to run")
    ap.add_argument("--variants", nargs="+", help="with --flow-noise: the variants (the suite's if not given)")
    ap.add_argument("--out", type=Path, default=Path("runs/flow_noise"), help="with --flow-noise: output folder")
    args = ap.parse_args()
    if args.flow_noise is None:
        if len(args.runs) != 2:
            ap.error("give ESTIMATE_DIR TRUTH_DIR, or --flow-noise with --truth")
        print_ratios(pair_ratios(read_run(args.runs[0]), read_run(args.runs[1])), args.within,
                     f"{args.runs[0]} against {args.runs[1]}")
        return
    if args.truth is None or args.runs:
        ap.error("--flow-noise takes --truth TRUTH_DIR and no positional runs")
    truth = read_run(args.truth)
    base = load_suite(args.suite)
    for factor in args.flow_noise:
        folder = args.out / f"noise_{factor:g}"
        robot = noisy_description(base.get("robot", "hexapod"), factor, folder)
        suite = {**base, "name": f"{base['name']}-flow-noise-{factor:g}", "robot": str(robot.resolve()),
                 "variants": args.variants or base["variants"]}
        run_suite(suite, folder)
        print_ratios(pair_ratios(read_run(folder), truth), args.within, f"{suite['name']} against {args.truth}")


if __name__ == "__main__":
    main()
