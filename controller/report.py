"""The perturbation report: Markdown tables and PNG plots from a suite's results.

Per scenario, every variant's figures averaged over seeds, then the verdicts the mission is
judged by (GrBAL vs MB and MB+DE), stated as measured, including when they fall short.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from controller.perturb import LABEL, RunResult  # noqa: E402
from legadapt import config as C  # noqa: E402
from legadapt.mcap_read import read_log  # noqa: E402
from legadapt.paths import make_path  # noqa: E402

DAMAGE_KINDS = ("limp_leg", "locked_joint", "weak_motor")


def _mean(values: list[float]) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def aggregate(results: list[RunResult]) -> dict[str, dict[str, dict]]:
    """scenario -> variant -> averaged figures over seeds."""
    groups: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    for r in results:
        groups[(r.scenario, r.variant)].append(r)
    table: dict[str, dict[str, dict]] = defaultdict(dict)
    for (sc, v), rs in groups.items():
        ok = [r for r in rs if not r.error]
        rec = [r.recovery_time for r in ok if r.recovery_time is not None]
        peaks = [r.peak_after_onset for r in ok if r.peak_after_onset is not None]
        table[sc][v] = {
            "runs": len(rs), "errors": len(rs) - len(ok),
            "mean_xt": _mean([r.mean_cross_track for r in ok]), "max_xt": _mean([r.max_cross_track for r in ok]),
            "progress": _mean([r.progress for r in ok]), "falls": sum(r.fell for r in ok),
            "recovery": _mean(rec) if rec else None, "never_recovered": sum(1 for x in rec if not math.isfinite(x)),
            "peak_after_onset": _mean(peaks) if peaks else None,
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
             "Cross-track errors against the simulator's true pose (cm); progress along the path (m); "
             "recovery = s from the mid-run onset until back within the scenario's band for good (0 = never left it), "
             "with the peak error after the onset; "
             f"means over seeds. {len(results)} runs" + (f" in {wall_time / 60:.1f} min." if wall_time else "."), ""]
    lines += summary_table(suite, table)
    for sc in suite.scenarios:
        rows = table.get(sc.name, {})
        perts = ", ".join(f"{p.kind}@{p.start:g}s" for p in sc.perturbations) or "none"
        lines += [f"## {sc.name}", f"{sc.path}, {sc.duration:g} s, {sc.backend}, state {sc.state_source}, seeds "
                  f"{list(sc.seeds)}; perturbations: {perts}", "",
                  "| variant | mean xt (cm) | max xt (cm) | progress (m) | falls | recovery (s) | adapt+plan (ms) |",
                  "|---|---|---|---|---|---|---|"]
        for v in suite.variants:
            if v not in rows:
                continue
            r = rows[v]
            rec = _fmt(r["recovery"]) + (f" ({r['never_recovered']} never)" if r["never_recovered"] else "")
            if r["peak_after_onset"] is not None:
                rec += f", peak {_fmt(r['peak_after_onset'], 100)} cm"
            err = f" ({r['errors']} failed)" if r["errors"] else ""
            lines.append(f"| {LABEL[v]}{err} | {_fmt(r['mean_xt'], 100)} | {_fmt(r['max_xt'], 100)} | {_fmt(r['progress'], 1, 2)} "
                         f"| {r['falls']}/{r['runs']} | {rec} | {_fmt(r['cycle_ms'])} |")
        lines += ["", f"![{sc.name}]({sc.name}.png)", ""]
    lines += verdicts(suite, table)
    return "\n".join(lines) + "\n"


def _goals(sc: C.ScenarioConfig, rows: dict) -> tuple[float | None, bool, bool | None]:
    """The mission's goals on one scenario's averaged rows: GrBAL/MB mean cross-track ratio
    (None without both; nan if MB's is 0), whether the ½ goal applies (a crippled leg or a
    slope), and whether GrBAL beats MB+DE (None without both)."""
    g = rows.get("grbal")
    if g is None:
        return None, False, None
    ratio = None
    if "mb" in rows:
        ratio = g["mean_xt"] / rows["mb"]["mean_xt"] if rows["mb"]["mean_xt"] > 0 else math.nan
    judged = bool({p.kind for p in sc.perturbations} & {*DAMAGE_KINDS, "slope"})
    better = g["mean_xt"] < rows["mbde"]["mean_xt"] if "mbde" in rows else None
    return ratio, judged, better


def summary_table(suite: C.SuiteConfig, table: dict) -> list[str]:
    """One row per scenario: each variant's mean cross-track (cm) and progress (m), then the
    GrBAL/MB ratio (judged on crippled-leg and slope scenarios) and GrBAL against MB+DE."""
    variants = [v for v in suite.variants if any(v in table.get(sc.name, {}) for sc in suite.scenarios)]
    head = "| scenario | " + " | ".join(f"{LABEL[v]} xt cm (m)" for v in variants) + " | GrBAL/MB | GrBAL < MB+DE |"
    lines = ["## Summary", "", "Mean cross-track error in cm (progress in m); ✓/✗ against the goals "
             "(GrBAL ≤ ½ MB on crippled-leg and slope scenarios; GrBAL below MB+DE).", "", head,
             "|" + "---|" * (len(variants) + 3)]
    for sc in suite.scenarios:
        rows = table.get(sc.name, {})
        cells = [f"{_fmt(rows[v]['mean_xt'], 100)} ({_fmt(rows[v]['progress'], 1, 2)})" if v in rows else "–" for v in variants]
        r, judged, better = _goals(sc, rows)
        ratio = f"{r:.2f}" + ((" ✓" if r <= 0.5 else " ✗") if judged else "") if r is not None and math.isfinite(r) else "–"
        beats = "–" if better is None else ("✓" if better else "✗")
        lines.append(f"| {sc.name} | " + " | ".join(cells) + f" | {ratio} | {beats} |")
    return lines + [""]


def verdicts(suite: C.SuiteConfig, table: dict) -> list[str]:
    """The mission's criteria, as measured (yes/no per scenario)."""
    out = ["## Verdicts", ""]
    half, beats = [0, 0], [0, 0]  # (met, judged)
    for sc in suite.scenarios:
        rows = table.get(sc.name, {})
        if "grbal" not in rows:
            continue
        g = rows["grbal"]["mean_xt"]
        ratio, judged, better = _goals(sc, rows)
        parts = []
        if ratio is not None and judged:
            parts.append(f"GrBAL/MB mean cross-track {ratio:.2f} ({'meets' if ratio <= 0.5 else 'does NOT meet'} ≤ 0.5)")
            half[0] += ratio <= 0.5
            half[1] += 1
        if better is not None:
            parts.append(f"GrBAL {'beats' if better else 'does NOT beat'} MB+DE ({100 * g:.1f} vs {100 * rows['mbde']['mean_xt']:.1f} cm)")
            beats[0] += better
            beats[1] += 1
        g_rec = rows["grbal"]
        if g_rec["recovery"] is not None:
            band = f"{100 * sc.recover_band:g} cm band"
            if g_rec["never_recovered"]:
                parts.append(f"GrBAL does not recover in {g_rec['never_recovered']} of {g_rec['runs']} runs "
                             f"(they end outside the {band}; peak {_fmt(g_rec['peak_after_onset'], 100)} cm)")
            elif g_rec["recovery"] == 0:
                parts.append(f"GrBAL never leaves the {band} after the onset (peak {_fmt(g_rec['peak_after_onset'], 100)} cm)")
            else:
                parts.append(f"GrBAL recovers into the {band} in {_fmt(g_rec['recovery'])} s (peak {_fmt(g_rec['peak_after_onset'], 100)} cm)")
        slow = [f"{LABEL[v]} {rows[v]['progress']:.2f} m" for v in ("mb", "mbde")
                if v in rows and rows[v]["progress"] < 0.5 * rows["grbal"]["progress"]]
        if slow:
            parts.append(f"note: {', '.join(slow)} of progress against GrBAL's {rows['grbal']['progress']:.2f} m "
                         "(a robot that barely walks keeps a small cross-track error)")
        if parts:
            out.append(f"- **{sc.name}**: " + "; ".join(parts))
    if half[1] or beats[1]:
        out += ["", f"Overall: GrBAL ≤ ½ MB on {half[0]} of {half[1]} crippled-leg/slope scenarios; "
                    f"GrBAL beats MB+DE on {beats[0]} of {beats[1]} scenarios."]
    return out + [""]


def plot_scenario(sc: C.ScenarioConfig, results: list[RunResult], out: Path) -> Path:
    """Trajectories vs the path, cross-track over time, GrBAL's adaptation loss (first seed of each variant)."""
    fig, (ax_xy, ax_ct, ax_loss) = plt.subplots(1, 3, figsize=(15, 4.6))
    seed = sc.seeds[0]
    longest = 2.0
    for i, r in enumerate(r for r in results if r.scenario == sc.name and r.seed == seed and not r.error):
        msgs = read_log(r.log).messages
        pl = [m for m in msgs["planner"] if "true_pose" in m]
        if not pl:
            continue
        pose = np.array([m["true_pose"] for m in pl])
        t = np.array([m["t"] for m in pl])
        longest = max(longest, max(m["true_progress"] for m in pl) + 0.5)
        ax_xy.plot(pose[:, 0], pose[:, 1], color=f"C{i}", label=LABEL[r.variant])
        ax_ct.plot(t, 100 * np.array([m["true_cross_track"] for m in pl]), color=f"C{i}", label=LABEL[r.variant])
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
