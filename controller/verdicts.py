"""The mission's goals, judged on a suite's averaged figures (one place for the summary and the verdicts).

Scenarios fall in two classes:

* **crippled leg** (a limp leg or a locked joint): adaptation must pay. The shipped adaptive
  controller (variant ``grbal``: ``models/default.pt`` with its own adapter) must score at
  least 2× MB's task score, and keep at most ½ MB's mean cross-track where MB walks at least
  half as far; the best adaptive variant must stay within 5 cm mean cross-track while
  walking at least 60 % of what the intact robot walks in the same time; GrBAL must beat
  MB+DE (task score).
* **everything else** (slopes, payloads, weak motors, miscalibration, intact paths): MB
  already walks, so adaptation must not hurt: the adaptive controller's mean cross-track
  at most 1.1× MB's.

Mid-run damage: back inside the recovery band within 2 s of the onset, peak under 6 cm, in every run
(the slowest recovery and the highest peak of the seeds are judged, not their means).
Runs that stopped before their end (a fall, a fault) fail every goal they take part in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from legadapt import config as C

PRIMARY = "grbal"  # the shipped adaptive controller
ADAPTIVE = ("grbal", "grbal_ensemble", "rebal", "pearl", "attention")
CRIPPLED_KINDS = ("limp_leg", "locked_joint")
SCORE_RATIO = 2.0  # crippled: adaptive task score >= 2x MB's
XT_RATIO_CRIPPLED = 0.5  # crippled: adaptive mean cross-track <= 0.5x MB's (where MB walks >= half as far)
XT_RATIO_NORMAL = 1.1  # elsewhere: adaptive mean cross-track <= 1.1x MB's
BEST_XT = 0.05  # m, crippled: best adaptive mean cross-track
BEST_PROGRESS = 0.6  # crippled: best adaptive progress >= this share of the intact robot's
RECOVER_WITHIN = 2.0  # s after a mid-run onset
PEAK_BELOW = 0.06  # m after a mid-run onset


@dataclass
class Goal:
    """One goal on one scenario: its name, whether it is met, and the figures behind it."""

    name: str
    met: bool
    detail: str


def crippled(sc: C.ScenarioConfig) -> bool:
    return any(p.kind in CRIPPLED_KINDS for p in sc.perturbations)


def intact_speed(suite: C.SuiteConfig, table: dict) -> float | None:
    """m/s the intact robot makes along the path: the mean over the suite's unperturbed scenarios
    and all their variants (None if the suite has none)."""
    speeds = [row["progress"] / sc.duration for sc in suite.scenarios if not sc.perturbations
              for row in table.get(sc.name, {}).values() if math.isfinite(row["progress"])]
    return sum(speeds) / len(speeds) if speeds else None


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (math.inf if a > 0 else 1.0)


def goals(sc: C.ScenarioConfig, rows: dict, v_intact: float | None) -> list[Goal]:
    """Every goal that applies to scenario ``sc`` given its averaged ``rows`` (variant -> figures)."""
    g, mb = rows.get(PRIMARY), rows.get("mb")
    out: list[Goal] = []
    ok = lambda *rs: all(r["stopped"] == 0 and r["errors"] == 0 for r in rs)  # noqa: E731
    if g is not None and mb is not None:
        xt = _ratio(g["mean_xt"], mb["mean_xt"])
        if crippled(sc):
            sr = _ratio(g["score"], mb["score"])
            out.append(Goal("score ≥ 2× MB", ok(g) and sr >= SCORE_RATIO,
                            f"task score {g['score']:.2f} vs MB {mb['score']:.2f} m ({sr:.1f}×)"))
            if mb["progress"] >= 0.5 * g["progress"]:
                out.append(Goal("xt ≤ ½ MB", ok(g) and xt <= XT_RATIO_CRIPPLED,
                                f"mean cross-track {100 * g['mean_xt']:.1f} vs MB {100 * mb['mean_xt']:.1f} cm ({xt:.2f}×)"))
        else:
            out.append(Goal("xt ≤ 1.1× MB", ok(g) and xt <= XT_RATIO_NORMAL,
                            f"mean cross-track {100 * g['mean_xt']:.1f} vs MB {100 * mb['mean_xt']:.1f} cm ({xt:.2f}×)"))
    if crippled(sc):
        out += _crippled_goals(sc, rows, v_intact, ok)
    if g is not None and (g["recovery"] is not None or g["never_recovered"]):
        worst_peak = g["peak_worst"] or 0
        met = ok(g) and not g["never_recovered"] and g["recovery_worst"] <= RECOVER_WITHIN and worst_peak < PEAK_BELOW
        rec = (f"{g['never_recovered']} of {g['runs']} runs never (end outside the band)" if g["never_recovered"]
               else f"slowest run {g['recovery_worst']:.1f} s")
        out.append(Goal("recovers ≤ 2 s, peak < 6 cm", met, f"recovery {rec}, highest peak {100 * worst_peak:.1f} cm (every run)"))
    return out


def _crippled_goals(sc: C.ScenarioConfig, rows: dict, v_intact: float | None, ok) -> list[Goal]:
    out: list[Goal] = []
    adaptive = {v: rows[v] for v in ADAPTIVE if v in rows}
    if adaptive and v_intact:
        need = BEST_PROGRESS * v_intact * sc.duration
        fits = {v: r for v, r in adaptive.items() if ok(r) and r["progress"] >= need}
        best = min(fits, key=lambda v: fits[v]["mean_xt"]) if fits else None
        met = best is not None and fits[best]["mean_xt"] <= BEST_XT
        detail = (f"best {best}: {100 * fits[best]['mean_xt']:.1f} cm at {fits[best]['progress']:.2f} m" if best
                  else "no adaptive variant walks far enough") + f" (needs ≥ {need:.2f} m)"
        out.append(Goal("best ≤ 5 cm at ≥ 60 % intact", met, detail))
    g, de = rows.get(PRIMARY), rows.get("mbde")
    if g is not None and de is not None:
        out.append(Goal("GrBAL beats MB+DE", ok(g) and g["score"] > de["score"],
                        f"task score {g['score']:.2f} vs {de['score']:.2f} m"))
    return out
