"""The perturbation report: Markdown tables and PNG plots from a suite's results.

Per scenario, every variant's figures over seeds, then the goals the mission is judged by
(:mod:`controller.verdicts`), stated as measured, including when they fall short.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from legadapt.controller.perturb import LABEL, RunResult  # noqa: E402
from legadapt.controller.verdicts import goals, intact_speed  # noqa: E402
from legadapt import config as C  # noqa: E402
from legadapt.mcap_read import read_log  # noqa: E402
from legadapt.paths import make_path, task_path, track  # noqa: E402


def _mean(values: list[float]) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def _max(values: list[float]) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.max(v)) if v else math.nan


def aggregate(results: list[RunResult]) -> dict[str, dict[str, dict]]:
    """scenario -> variant -> figures over seeds: means, except ``max_xt`` (the largest of any run) and the
    slowest recovery and highest peak after a mid-run onset of any run (``recovery_worst``, ``peak_worst``)."""
    groups: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    for r in results:
        groups[(r.scenario, r.variant)].append(r)
    table: dict[str, dict[str, dict]] = defaultdict(dict)
    for (sc, v), rs in groups.items():
        ok = [r for r in rs if not r.error]
        rec = [r.recovery_time for r in ok if r.recovery_time is not None]
        peaks = [r.peak_after_onset for r in ok if r.peak_after_onset is not None]
        table[sc][v] = {
            "runs": len(rs), "errors": len(rs) - len(ok), "stopped": sum(1 for r in ok if r.stop_reason),
            "stop_reasons": sorted({r.stop_reason for r in ok if r.stop_reason}),
            "mean_xt": _mean([r.mean_cross_track for r in ok]), "max_xt": _max([r.max_cross_track for r in ok]),
            "progress": _mean([r.progress for r in ok]), "score": _mean([r.task_score for r in ok]),
            "falls": sum(r.fell for r in ok),
            "recovery": _mean(rec) if rec else None, "never_recovered": sum(r.never_recovered for r in ok),
            "peak_after_onset": _mean(peaks) if peaks else None,
            "recovery_worst": max(rec) if rec else None, "peak_worst": max(peaks) if peaks else None,
            "cycle_ms": _mean([r.cycle_ms for r in ok]),
        }
    return table


def _fmt(x: float | None, scale: float = 1.0, digits: int = 1) -> str:
    if x is None:
        return "–"
    return "n/a" if not math.isfinite(x) else f"{x * scale:.{digits}f}"


def markdown(suite: C.SuiteConfig, results: list[RunResult], wall_time: float | None = None) -> str:
    table = aggregate(results)
    lines = [f"# Perturbation report: {suite.name}", "", suite.description, "",
             "Scored against the simulator's true pose, projected onto the path near its own progress. "
             "Cross-track errors in cm: the mean over seeds of each run's mean, and the largest of any run; "
             "progress along the path (m); task score = distance made good along the path while within the "
             "scenario's corridor (m; standing still scores 0); "
             "recovery = s from the mid-run onset until back within the scenario's band for good (0 = never left it), "
             "with the peak error after the onset. A run that stopped before its end (a fall, a fault) is counted "
             f"as failed. {len(results)} runs" + (f" in {wall_time / 60:.1f} min." if wall_time else "."), ""]
    lines += summary_table(suite, table)
    lines += state_source_table(suite, table)
    for sc in suite.scenarios:
        lines += scenario_table(suite, sc, table.get(sc.name, {}))
    lines += verdicts(suite, table)
    return "\n".join(lines) + "\n"


def scenario_table(suite: C.SuiteConfig, sc: C.ScenarioConfig, rows: dict) -> list[str]:
    """One scenario's figures per variant, and its plot."""
    perts = ", ".join(f"{p.kind}@{p.start:g}s" for p in sc.perturbations) or "none"
    lines = [f"## {sc.name}", f"{sc.path}, {sc.duration:g} s, {sc.backend}, state {sc.state_source}, seeds "
             f"{list(sc.seeds)}, corridor ±{100 * sc.corridor:g} cm; perturbations: {perts}", "",
             "| variant | mean xt (cm) | largest xt (cm) | progress (m) | task score (m) | stopped | recovery (s) | adapt+plan (ms) |",
             "|---|---|---|---|---|---|---|---|"]
    for v in suite.variants:
        if v not in rows:
            continue
        r = rows[v]
        rec = _fmt(r["recovery"]) + (f" ({r['never_recovered']} never)" if r["never_recovered"] else "")
        if r["peak_after_onset"] is not None:
            rec += f", peak {_fmt(r['peak_after_onset'], 100)} cm"
        err = f" ({r['errors']} failed)" if r["errors"] else ""
        stopped = f"{r['stopped']}/{r['runs']}" + (f": {'; '.join(r['stop_reasons'])}" if r["stop_reasons"] else "")
        lines.append(f"| {LABEL[v]}{err} | {_fmt(r['mean_xt'], 100)} | {_fmt(r['max_xt'], 100)} | {_fmt(r['progress'], 1, 2)} "
                     f"| {_fmt(r['score'], 1, 2)} | {stopped} | {rec} | {_fmt(r['cycle_ms'])} |")
    return lines + ["", f"![{sc.name}]({sc.name}.png)", ""]


def summary_table(suite: C.SuiteConfig, table: dict) -> list[str]:
    """One row per scenario: each variant's mean cross-track (cm) and task score (m), then the goals."""
    variants = [v for v in suite.variants if any(v in table.get(sc.name, {}) for sc in suite.scenarios)]
    v_intact = intact_speed(suite, table)
    head = "| scenario | " + " | ".join(f"{LABEL[v]} xt cm (score m)" for v in variants) + " | goals |"
    lines = ["## Summary", "", "Mean cross-track error in cm (task score in m); the goals that apply, ✓ met / ✗ not "
             "(see Verdicts).", "", head, "|" + "---|" * (len(variants) + 2)]
    for sc in suite.scenarios:
        rows = table.get(sc.name, {})
        cells = [f"{_fmt(rows[v]['mean_xt'], 100)} ({_fmt(rows[v]['score'], 1, 2)})" + (" ⚠" if rows[v]["stopped"] else "")
                 if v in rows else "–" for v in variants]
        marks = ", ".join(f"{g.name} {'✓' if g.met else '✗'}" for g in goals(sc, rows, v_intact)) or "–"
        lines.append(f"| {sc.name} | " + " | ".join(cells) + f" | {marks} |")
    return lines + ["", "⚠ = at least one run stopped before its end.", ""]


SOURCE_ORDER = ("privileged", "estimated", "estimated+flow", "estimated+mocap", "estimated+flow+mocap")


def state_source_table(suite: C.SuiteConfig, table: dict) -> list[str]:
    """Where the same condition (path, duration, backend, perturbations) runs on several state sources: one row
    per condition, one column per source, each variant's mean cross-track (cm) and task score (m). Empty if none."""
    conditions: dict[str, dict[str, C.ScenarioConfig]] = defaultdict(dict)
    for sc in suite.scenarios:
        key = repr((sc.path, sc.duration, sc.backend, [p.model_dump(mode="json") for p in sc.perturbations]))
        conditions[key][sc.state_source] = sc
    compared = [by_source for by_source in conditions.values() if len(by_source) > 1]
    if not compared:
        return []
    sources = [s for s in SOURCE_ORDER if any(s in c for c in compared)]
    lines = ["## By state source", "", "The same condition seen through each state source: mean cross-track on the "
             "truth in cm (task score in m) per variant.", "",
             "| condition | " + " | ".join(sources) + " |", "|" + "---|" * (len(sources) + 1)]
    for by_source in compared:
        first = next(iter(by_source.values()))
        cells = []
        for src in sources:
            rows = table.get(by_source[src].name, {}) if src in by_source else {}
            cells.append(" · ".join(f"{LABEL[v]} {_fmt(rows[v]['mean_xt'], 100)} ({_fmt(rows[v]['score'], 1, 2)})"
                                    for v in suite.variants if v in rows) or "–")
        lines.append(f"| {first.name.split('.')[0]} | " + " | ".join(cells) + " |")
    return lines + [""]


def verdicts(suite: C.SuiteConfig, table: dict) -> list[str]:
    """The mission's goals per scenario, as measured, and how many are met overall."""
    out = ["## Verdicts", ""]
    v_intact = intact_speed(suite, table)
    out.append(f"Intact robot: {v_intact:.3f} m/s along the path (the suite's unperturbed scenarios)." if v_intact
               else "No unperturbed scenario in this suite: the 60 %-of-intact goal is not judged.")
    out.append("")
    met: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for sc in suite.scenarios:
        gs = goals(sc, table.get(sc.name, {}), v_intact)
        for g in gs:
            met[g.name][0] += g.met
            met[g.name][1] += 1
        if gs:
            out.append(f"- **{sc.name}**: " + "; ".join(f"{g.name}: {'met' if g.met else 'NOT met'} ({g.detail})" for g in gs))
    if met:
        out += ["", "Overall: " + "; ".join(f"{name} on {m} of {n}" for name, (m, n) in met.items()) + "."]
    return out + [""]


def plot_scenario(sc: C.ScenarioConfig, results: list[RunResult], out: Path) -> Path:
    """Trajectories vs the path, cross-track over time, GrBAL's adaptation loss (first seed of each variant)."""
    fig, (ax_xy, ax_ct, ax_loss) = plt.subplots(1, 3, figsize=(15, 4.6))
    seed = sc.seeds[0]
    longest = 2.0
    for i, r in enumerate(r for r in results if r.scenario == sc.name and r.seed == seed and not r.error):
        msgs = read_log(r.log, channels={"planner", "adaptation"}).messages
        pl = [m for m in msgs["planner"] if "true_pose" in m]
        if not pl:
            continue
        pose = np.array([m["true_pose"] for m in pl])
        t = np.array([m["t"] for m in pl])
        s, e = track(task_path(C.TaskConfig(path=sc.path, duration=sc.duration, target_speed=sc.target_speed)), pose[:, :2])
        longest = max(longest, float(s[-1]) + 0.5)
        ax_xy.plot(pose[:, 0], pose[:, 1], color=f"C{i}", label=LABEL[r.variant])
        ax_ct.plot(t, 100 * e, color=f"C{i}", label=LABEL[r.variant])
        if r.variant == "grbal":
            ad = [m for m in msgs["adaptation"] if m["loss_before"] is not None]
            ta = [m["t"] for m in ad]
            ax_loss.semilogy(ta, [m["loss_before"] for m in ad], color="C1", label="before the step (θ*)")
            ax_loss.semilogy(ta, [m["loss_after"] for m in ad], color="C2", label="after the step")
    path = make_path(sc.path, longest)
    ax_xy.plot(path.points[:, 0], path.points[:, 1], "--", color="0.5", label="path")
    for p in sc.perturbations:
        if p.start > 0:
            for ax in (ax_ct, ax_loss):
                ax.axvline(p.start, color="C3", ls=":", lw=1)
    ax_ct.axhspan(-100 * sc.recover_band, 100 * sc.recover_band, color="0.9", zorder=0)
    ax_xy.set(xlabel="x (m)", ylabel="y (m)", title="true trajectory")
    ax_xy.set_aspect("equal", adjustable="datalim")
    ax_ct.set(xlabel="time (s)", ylabel="cross-track error (cm, + = left)", title="cross-track (band shaded)")
    ax_loss.set(xlabel="time (s)", ylabel="window loss (normalised MSE)", title="GrBAL online adaptation")
    for ax in (ax_xy, ax_ct):
        ax.legend(fontsize=8, loc="best")
    if ax_loss.lines:
        ax_loss.legend(fontsize=8, loc="best")
    fig.suptitle(f"{sc.name}: " + (", ".join(f"{p.kind}@{p.start:g}s" for p in sc.perturbations) or "intact"), fontsize=10)
    fig.tight_layout()
    path_png = out / f"{sc.name}.png"
    fig.savefig(path_png, dpi=100)
    plt.close(fig)
    return path_png


def write_report(suite: C.SuiteConfig, results: list[RunResult], out: Path, wall_time: float | None = None) -> Path:
    for sc in suite.scenarios:
        plot_scenario(sc, results, out)
    report = out / "report.md"
    report.write_text(markdown(suite, results, wall_time))
    return report
