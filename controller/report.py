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
        table[sc][v] = {
            "runs": len(rs), "errors": len(rs) - len(ok),
            "mean_xt": _mean([r.mean_cross_track for r in ok]), "max_xt": _mean([r.max_cross_track for r in ok]),
            "progress": _mean([r.progress for r in ok]), "falls": sum(r.fell for r in ok),
            "recovery": _mean(rec) if rec else None, "never_recovered": sum(1 for x in rec if not math.isfinite(x)),
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
             "recovery = s from the mid-run onset until back within the scenario's band for 1 s; "
             f"means over seeds. {len(results)} runs" + (f" in {wall_time / 60:.1f} min." if wall_time else "."), ""]
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
            err = f" ({r['errors']} failed)" if r["errors"] else ""
            lines.append(f"| {LABEL[v]}{err} | {_fmt(r['mean_xt'], 100)} | {_fmt(r['max_xt'], 100)} | {_fmt(r['progress'], 1, 2)} "
                         f"| {r['falls']}/{r['runs']} | {rec} | {_fmt(r['cycle_ms'])} |")
        lines += ["", f"![{sc.name}]({sc.name}.png)", ""]
    lines += verdicts(suite, table)
    return "\n".join(lines) + "\n"


def verdicts(suite: C.SuiteConfig, table: dict) -> list[str]:
    """The mission's criteria, as measured (yes/no per scenario)."""
    out = ["## Verdicts", ""]
    for sc in suite.scenarios:
        rows = table.get(sc.name, {})
        if "grbal" not in rows:
            continue
        g = rows["grbal"]["mean_xt"]
        kinds = {p.kind for p in sc.perturbations}
        parts = []
        if "mb" in rows and (kinds & set(DAMAGE_KINDS) or "slope" in kinds):
            ratio = g / rows["mb"]["mean_xt"] if rows["mb"]["mean_xt"] > 0 else math.nan
            parts.append(f"GrBAL/MB mean cross-track {ratio:.2f} ({'meets' if ratio <= 0.5 else 'does NOT meet'} ≤ 0.5)")
        if "mbde" in rows:
            better = g < rows["mbde"]["mean_xt"]
            parts.append(f"GrBAL {'beats' if better else 'does NOT beat'} MB+DE ({100 * g:.1f} vs {100 * rows['mbde']['mean_xt']:.1f} cm)")
        if rows["grbal"]["recovery"] is not None:
            parts.append(f"GrBAL recovers in {_fmt(rows['grbal']['recovery'])} s")
        if parts:
            out.append(f"- **{sc.name}**: " + "; ".join(parts))
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
