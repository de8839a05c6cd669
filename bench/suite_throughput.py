"""Perturbation-suite throughput: runs per minute of ``legadapt perturb`` on this machine, against another install.

Writes a subset of a suite (``--scenarios``, one seed, ``--variants``) to a temporary file and runs it with
``legadapt perturb --workers 2`` under this checkout's interpreter and, when ``--baseline-python`` names the
interpreter of another install (e.g. a git worktree of an older commit installed in its own virtual
environment), under that one too, alternating the two ``--repeats`` times so that a change in the machine's
load hits both. Prints each pass's wall time and runs per minute, the medians, and their ratio.

Set up a baseline (the commit before the planner work of issue 15, say)::

    git worktree add /tmp/old <commit>
    python3 -m venv /tmp/oldvenv && /tmp/oldvenv/bin/pip install wheel setuptools
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/oldvenv/lib/python3.11/site-packages/deps.pth
    (cd /tmp/old && /tmp/oldvenv/bin/pip install --no-deps --no-build-isolation -e .)

Usage: ``python bench/suite_throughput.py [--baseline-python /tmp/oldvenv/bin/python] [--repeats 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIOS = ["intact_straight", "limp_LF", "cross_slope_12", "payload_15"]


def subset(suite: str, scenarios: list[str], variants: list[str], out: Path) -> int:
    """Write the subset suite to ``out``; returns its number of runs."""
    full = yaml.safe_load((REPO / "configs" / "suites" / f"{suite}.yaml").read_text())
    chosen = [dict(s, seeds=[0]) for s in full["scenarios"] if s["name"] in scenarios]
    missing = set(scenarios) - {s["name"] for s in chosen}
    if missing:
        raise SystemExit(f"{suite} has no scenario {sorted(missing)}")
    data = {**full, "name": f"{suite}-throughput", "variants": variants, "scenarios": chosen}
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return len(chosen) * len(variants)


def one_pass(python: str, suite_file: Path, out: Path) -> float:
    """Wall time (s) of one ``legadapt perturb`` of the subset with ``python``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    run = subprocess.run([python, "-m", "legadapt.controller.cli", "perturb", "--suite", str(suite_file), "--out", str(out),
                          "--workers", "2", "--quiet"], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"{python}: perturb failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    failed = [r for r in results.get("runs", results if isinstance(results, list) else []) if r.get("failed")]
    if failed:
        print(f"  note: {len(failed)} run(s) stopped early under {python}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="held-out")
    ap.add_argument("--scenarios", nargs="+", default=DEFAULT_SCENARIOS)
    ap.add_argument("--variants", nargs="+", default=["grbal", "mb", "pearl"])
    ap.add_argument("--baseline-python", help="interpreter of the install to compare against")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    pythons = {"this checkout": sys.executable}
    if args.baseline_python:
        pythons = {"baseline": args.baseline_python, **pythons}
    walls: dict[str, list[float]] = {k: [] for k in pythons}
    with tempfile.TemporaryDirectory() as tmp:
        suite_file = Path(tmp) / "suite.yaml"
        n = subset(args.suite, args.scenarios, args.variants, suite_file)
        print(f"{args.suite} subset: {len(args.scenarios)} scenarios x 1 seed x {len(args.variants)} variants = {n} runs, 2 workers")
        for r in range(args.repeats):
            for name, python in pythons.items():
                wall = one_pass(python, suite_file, Path(tmp) / f"{name.replace(' ', '_')}-{r}")
                walls[name].append(wall)
                print(f"pass {r + 1}/{args.repeats} {name:13s}: {wall:6.1f} s, {60 * n / wall:5.2f} runs/min", flush=True)
    rate = {k: 60 * n / statistics.median(v) for k, v in walls.items()}
    for name, r in rate.items():
        print(f"{name:13s}: {r:5.2f} runs/min (median of {len(walls[name])})")
    if "baseline" in rate:
        print(f"this checkout / baseline: {rate['this checkout'] / rate['baseline']:.2f}x runs per minute")


if __name__ == "__main__":
    main()
