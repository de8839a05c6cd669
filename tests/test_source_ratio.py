"""bench/source_ratio.py: the onboard estimate's closed-loop cross-track against the truth's, paired by scenario
and seed from two runs of the shipped suites, and the flow sensor's noise scaled in a copy of the description."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from legadapt.config import load_suite
from legadapt.robot.description import load_description

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import source_ratio  # noqa: E402


def _run(suite_name: str, xt: dict[tuple[str, str, int], float]) -> dict:
    """A results.json of ``suite_name``'s shipped suite holding the runs named in ``xt`` (m of mean cross-track)."""
    suite = load_suite(REPO / "configs" / "suites" / f"{suite_name}.yaml")
    results = [{"scenario": s, "variant": v, "seed": seed, "mean_cross_track": m, "task_score": 2.0 + m, "error": None}
               for (s, v, seed), m in xt.items()]
    return {"suite": suite.model_dump(mode="json"), "results": results}


def test_pairs_the_same_scenario_and_seeds_and_counts_the_ratio_goal(capsys):
    estimate = _run("held-out-flow", {("limp_LF", "grbal", 0): 0.010, ("limp_LF", "grbal", 1): 0.030,
                                      ("limp_LF", "grbal", 7): 0.500,  # no truth run of seed 7: left out
                                      ("intact_straight", "mb", 0): 0.004})
    truth = _run("held-out-true-state", {("limp_LF", "grbal", 0): 0.020, ("limp_LF", "grbal", 1): 0.020,
                                         ("intact_straight", "mb", 0): 0.001, ("intact_straight", "mb", 2): 0.009})
    pairs = {(p.scenario, p.variant): p for p in source_ratio.pair_ratios(estimate, truth)}
    assert set(pairs) == {("limp_LF", "grbal"), ("intact_straight", "mb")}
    limp = pairs[("limp_LF", "grbal")]
    assert limp.seeds == [0, 1] and limp.ratio == pytest.approx(1.0)
    assert limp.estimate_score == pytest.approx(2.02)
    assert pairs[("intact_straight", "mb")].seeds == [0] and pairs[("intact_straight", "mb")].ratio == pytest.approx(4.0)
    source_ratio.print_ratios(list(pairs.values()), 1.3, "t")
    out = capsys.readouterr().out
    assert "within 1.3x: 1 of 2 pairs; median ratio 2.50x" in out
    assert "variants within 1.3x: 1 of 2" in out


def test_a_variant_is_judged_on_its_mean_over_every_paired_run():
    """Each run counts once: a scenario with more paired seeds weighs more; unpaired runs do not count."""
    estimate = _run("held-out-flow", {("limp_LF", "grbal", 0): 0.012, ("limp_LF", "grbal", 1): 0.018,
                                      ("intact_straight", "grbal", 0): 0.003, ("intact_straight", "grbal", 5): 0.9,
                                      ("limp_LF", "mb", 0): 0.020})
    truth = _run("held-out-true-state", {("limp_LF", "grbal", 0): 0.010, ("limp_LF", "grbal", 1): 0.010,
                                         ("intact_straight", "grbal", 0): 0.001, ("limp_LF", "mb", 0): 0.030})
    variants = {v.variant: v for v in source_ratio.variant_ratios(source_ratio.pair_ratios(estimate, truth))}
    assert variants["grbal"].runs == 3
    assert variants["grbal"].estimate_xt == pytest.approx(0.011) and variants["grbal"].truth_xt == pytest.approx(0.007)
    assert variants["grbal"].ratio == pytest.approx(11 / 7)  # (12 + 18 + 3) / 3 mm against (10 + 10 + 1) / 3 mm
    assert variants["mb"].runs == 1 and variants["mb"].ratio == pytest.approx(2 / 3)


def test_a_scenario_of_the_same_name_under_other_conditions_is_refused(capsys):
    estimate = _run("held-out-flow", {("limp_LF", "grbal", 0): 0.01})
    truth = _run("held-out-true-state", {("limp_LF", "grbal", 0): 0.01})
    truth["suite"]["scenarios"][2]["perturbations"][0]["leg"] = "RH"
    with pytest.raises(SystemExit) as stop:
        source_ratio.pair_ratios(estimate, truth)
    assert stop.value.code == 2 and "'limp_LF' differs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        source_ratio.pair_ratios(_run("held-out-flow", {("limp_LF", "mb", 3): 0.01}),
                                 _run("held-out-true-state", {("limp_LF", "mb", 4): 0.01}))
    assert stop.value.code == 2 and "share no seed" in capsys.readouterr().err


def test_the_flow_noise_is_scaled_in_a_copy_of_the_description_and_nothing_else(tmp_path):
    shipped = load_description("hexapod")
    for factor in (0.0, 2.5):
        copy = load_description(source_ratio.noisy_description("hexapod", factor, tmp_path))
        assert copy.flow.rate_noise == pytest.approx(shipped.flow.rate_noise * factor)
        assert copy.flow.range_noise == pytest.approx(shipped.flow.range_noise * factor)
        assert copy.flow.gyro_noise == pytest.approx(shipped.flow.gyro_noise * factor)
        assert copy.flow.position == shipped.flow.position and copy.flow.counts_per_rad == shipped.flow.counts_per_rad
        assert copy.joint_names == shipped.joint_names and copy.name == shipped.name
    with pytest.raises(SystemExit) as stop:
        source_ratio.noisy_description("quadruped", 0.0, tmp_path)
    assert stop.value.code == 2
