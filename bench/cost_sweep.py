"""Path-cost weights compared in closed loop: each setting overrides ``controller.cost`` in a suite and runs it.

Every setting (``course=30`` or ``course=30,heading=5``: weights of ``controller.cost``, see
``legadapt/config/runtime.py`` ``CostConfig``) runs the same scenarios, seeds and variants through
``legadapt perturb``; printed per scenario and variant: the mean cross-track (cm, over the seeds'
per-run means), the largest cross-track of any run (cm) and the mean task score (m), then the
means over all runs of each variant. ``--state-source`` overrides every scenario's state source
(e.g. ``privileged`` to take state estimation out of a suite that runs on the estimate).
``--section adaptation`` makes the names those of ``controller.adaptation`` (or ``planner``); a name written
``section.name`` (``adaptation.offset_gain=0,crab_compensation=0``) overrides that section whatever ``--section`` says.

Usage: ``python bench/cost_sweep.py course=0 course=30 [--suite training-like] [--scenarios limp_LF ...]
[--variants grbal mb] [--state-source privileged] [--seeds 3 4 5] [--out runs/bench/cost_sweep] [--workers 2]``.
A setting's runs are kept in ``--out/<setting>`` with its report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite_runs import load_suite, override_suite, print_by_scenario, run_suite  # noqa: E402


def parse_setting(text: str) -> dict[str, float | str]:
    """``'course=30,heading=5'`` -> {'course': 30.0, 'heading': 5.0}; a value that is not a number stays a string."""
    try:
        pairs = [kv.split("=") for kv in text.split(",")]
        return {k.strip(): _value(v.strip()) for k, v in pairs}
    except ValueError:
        raise SystemExit(f"bad setting {text!r}: give name=value pairs separated by commas, e.g. course=30,heading=5")


def _value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def by_section(values: dict, default: str) -> dict[str, dict]:
    """``{'adaptation.offset_gain': 0, 'course': 30}`` -> ``{'adaptation': {'offset_gain': 0}, default: {'course': 30}}``."""
    out: dict[str, dict] = {}
    for key, value in values.items():
        section, _, name = key.rpartition(".")
        out.setdefault(section or default, {})[name] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("settings", nargs="+", help=("name=value[,name=value] of controller.<section>, one per setting; "
                                                 "section.name=value for another section"))
    ap.add_argument("--section", default="cost", help="the controller section the settings override (cost, adaptation, planner)")
    ap.add_argument("--suite", default="held-out-true-state")
    ap.add_argument("--scenarios", nargs="+")
    ap.add_argument("--variants", nargs="+", default=["grbal", "mb"])
    ap.add_argument("--state-source")
    ap.add_argument("--seeds", nargs="+", type=int, help="instead of the suite's seeds")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/cost_sweep"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    base = load_suite(args.suite)
    for setting in args.settings:
        tag = setting.replace("=", "").replace(",", "_")
        suite = base
        for section, values in by_section(parse_setting(setting), args.section).items():
            suite = override_suite(suite, f"{args.suite}-{tag}", section, values, args.scenarios, args.variants,
                                   args.state_source, args.seeds)
        print_by_scenario(setting, run_suite(suite, args.out / tag, args.workers), args.variants)


if __name__ == "__main__":
    main()
