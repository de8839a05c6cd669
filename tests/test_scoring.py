"""Scoring closed-loop runs honestly: the truth tracked on its own, a task score that standing still
cannot win, strict JSON results, and stopped runs reported as failures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from legadapt.controller.perturb import RunResult, _write_results, score, task_score
from legadapt.controller.report import markdown
from legadapt import config as C
from legadapt.paths import ProgressTracker, make_path, track


def scenario(**kw) -> C.ScenarioConfig:
    return C.ScenarioConfig(name=kw.pop("name", "s"), **kw)


def planner_msgs(true_xy: np.ndarray, est_progress: np.ndarray, dt: float = 0.1) -> list[dict]:
    """Planner-channel messages as the daemon logs them (the estimate's projection logged beside the truth)."""
    return [{"t": i * dt, "pose": [float(p), 0.0, 0.0], "cross_track": 0.0, "progress": float(p),
             "true_pose": [float(x), float(y), 0.0]} for i, ((x, y), p) in enumerate(zip(true_xy, est_progress))]


def test_truth_is_projected_near_its_own_progress_not_the_estimate():
    # A figure-8 crosses itself: the truth walks on, while the estimate's progress stays at 0
    # (it under-reads the distance walked). Projected near the estimate's progress, the truth
    # lands on the wrong stretch of the path; tracked on its own it stays on it.
    path = make_path("figure8", 6.0)
    s_true = np.linspace(0.0, 4.0, 200)
    xy = path.point(s_true) + 0.01 * np.stack([-np.sin(path.heading(s_true)), np.cos(path.heading(s_true))], axis=1)
    s, e = track(path, xy)
    assert np.allclose(s, s_true, atol=0.02)
    assert np.allclose(e, 0.01, atol=0.002)
    _, wrong, _ = path.project(xy, np.zeros(len(xy)), 1.0)  # the old scoring: the estimate's hint
    assert np.abs(wrong).mean() > 0.2, "the estimate's hint must mislead the old projection on this path"


def test_score_uses_the_true_pose_tracked_on_its_own():
    sc = scenario(path="straight", duration=20.0)
    x = np.linspace(0.0, 3.0, 201)
    xy = np.stack([x, np.full_like(x, 0.02)], axis=1)
    res = RunResult("s", "grbal", 0)
    score(res, planner_msgs(xy, np.zeros_like(x)), sc)
    assert res.mean_cross_track == pytest.approx(0.02, abs=1e-3)
    assert res.progress == pytest.approx(3.0, abs=0.01)
    assert res.task_score == pytest.approx(3.0, abs=0.01)


def test_task_score_standing_still_or_outside_the_corridor_scores_nothing():
    s_walk = np.linspace(0.0, 2.0, 101)
    assert task_score(s_walk, np.full(101, 0.02), 0.1) == pytest.approx(2.0)
    assert task_score(np.zeros(101), np.full(101, 0.0), 0.1) == 0.0, "standing still on the path"
    assert task_score(s_walk, np.full(101, 0.15), 0.1) == 0.0, "walking outside the corridor"
    half = np.where(np.arange(101) < 50, 0.02, 0.3)
    assert task_score(s_walk, half, 0.1) == pytest.approx(0.98, abs=0.03)
    assert task_score(s_walk[::-1], np.zeros(101), 0.1) == pytest.approx(-2.0), "walking back scores negative"


def test_tracker_follows_a_self_crossing_path():
    path = make_path("figure8", 8.0)
    tr = ProgressTracker(path)
    for s in np.linspace(0, 7.5, 300):
        got, cross = tr.project(path.point(s))
        assert got == pytest.approx(s, abs=0.02) and abs(cross) < 1e-6


def test_results_json_is_strict_and_rescorable(tmp_path):
    suite = C.SuiteConfig(name="x", scenarios=[scenario()])
    r = RunResult("s", "grbal", 0, cycle_ms=math.nan, recovery_time=None, never_recovered=True)
    _write_results(tmp_path, suite, [r], math.inf)
    text = (tmp_path / "results.json").read_text()

    def refuse(name):
        raise ValueError(f"non-JSON constant {name}")

    data = json.loads(text, parse_constant=refuse)
    assert data["wall_time"] is None and data["results"][0]["cycle_ms"] is None
    assert data["results"][0]["never_recovered"] is True


def test_a_run_that_stopped_is_a_failure_in_the_report():
    sc = scenario(name="limp", perturbations=[{"kind": "limp_leg", "leg": "LF"}])
    suite = C.SuiteConfig(name="x", variants=["grbal", "mb"], scenarios=[sc])
    good_mb = RunResult("limp", "mb", 0, mean_cross_track=0.05, max_cross_track=0.1, progress=0.5, task_score=0.4)
    # GrBAL "looks perfect": 0 cm, because it fell at once
    fell = RunResult("limp", "grbal", 0, mean_cross_track=0.0, max_cross_track=0.0, progress=0.0, task_score=0.0,
                     fell=True, stop_reason="tilt 50 deg > 45 deg")
    text = markdown(suite, [fell, good_mb])
    assert "tilt 50 deg" in text and "⚠" in text
    assert "xt ≤ ½ MB: met" not in text and "score ≥ 2× MB: NOT met" in text
    assert fell.failed and not good_mb.failed
