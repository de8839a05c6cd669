"""Bench helpers: a shipped suite with controller settings overridden, run through ``legadapt perturb``."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import yaml

from legadapt.resources import shipped


def load_suite(name: str) -> dict:
    """The shipped suite ``name`` (configs/suites/<name>.yaml) as a dict."""
    return yaml.safe_load(shipped("configs", f"suites/{name}.yaml").read_text())


def override_suite(base: dict, name: str, section: str, values: dict, scenarios: list[str] | None = None,
                   variants: list[str] | None = None, state_source: str | None = None,
                   seeds: list[int] | None = None) -> dict:
    """``base`` renamed ``name`` with ``values`` over its ``controller.<section>``, only ``scenarios`` (all if None
    or ``['all']``), ``variants`` (the suite's if None), every scenario's state source set to ``state_source`` and
    its seeds to ``seeds`` (the suite's if None: other seeds check a choice made on the suite's)."""
    every = scenarios is None or scenarios == ["all"]
    picked = [s for s in base["scenarios"] if every or s["name"] in scenarios]
    missing = set() if every else set(scenarios) - {s["name"] for s in picked}
    if missing:
        raise SystemExit(f"no scenario {sorted(missing)} in suite {base['name']}")
    if state_source:
        picked = [{**s, "state_source": state_source} for s in picked]
    if seeds:
        picked = [{**s, "seeds": list(seeds)} for s in picked]
    controller = dict(base.get("controller", {}))
    controller[section] = {**controller.get(section, {}), **values}
    return {**base, "name": name, "variants": variants or base["variants"], "scenarios": picked, "controller": controller}


def run_suite(suite: dict, out: Path, workers: int = 2) -> list[dict]:
    """Run ``suite`` with ``legadapt perturb`` into ``out`` (its report and logs there); its results without errors."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    cmd = [sys.executable, "-m", "legadapt.controller.cli", "perturb", "--suite", str(path), "--out", str(out),
           "--workers", str(workers), "--quiet"]
    print(f"{suite['name']}: {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return [r for r in json.loads((out / "results.json").read_text())["results"] if not r.get("error")]


def print_by_scenario(setting: str, results: list[dict], variants: list[str]) -> None:
    """Per scenario and variant: mean cross-track (cm, over the runs' means), the largest of any run (cm), mean task
    score (m); then each variant over all its runs."""
    by = collections.defaultdict(list)
    for r in results:
        by[(r["scenario"], r["variant"])].append(r)
    print(f"== {setting}")
    for (scenario, variant), rs in by.items():
        xt = 100 * sum(r["mean_cross_track"] for r in rs) / len(rs)
        print(f"  {scenario:28s} {variant:9s} xt {xt:5.1f} cm  largest {100 * max(r['max_cross_track'] for r in rs):5.1f} cm  "
              f"score {sum(r['task_score'] for r in rs) / len(rs):.2f} m")
    for v in variants:
        rs = [r for r in results if r["variant"] == v]
        if rs:
            print(f"  all runs {v:9s} xt {100 * sum(r['mean_cross_track'] for r in rs) / len(rs):.2f} cm  "
                  f"score {sum(r['task_score'] for r in rs) / len(rs):.3f} m  ({len(rs)} runs)", flush=True)
