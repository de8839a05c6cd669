"""The daemon with the shipped default model follows the paths, and recovers a leg going limp mid-run.

Lockstep simulation (deterministic for the seed), the real MuJoCo hexapod, the onboard
state estimate (not the simulator's truth), the default controller config.
"""

from __future__ import annotations

import numpy as np
import pytest

from legadapt.controller.daemon import run
from legadapt.config import parse_config
from legadapt.mcap_read import read_log


def _run(tmp_path, path: str, duration: float = 12.0, perturbations=None, controller=None, name=None, **task):
    """One lockstep run (``controller``: settings over the shipped default model's); its summary and its log."""
    cfg = parse_config({"task": {"path": path, "duration": duration, **task}, "perturbations": perturbations or [],
                        "controller": {"model": "models/default.pt", "status_interval": 60, **(controller or {})}})
    log = tmp_path / f"{name or path}.mcap"
    summary = run(cfg, log_path=log, status=lambda line: None)
    return summary, read_log(log)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["straight", "left_turn", "right_turn"])
def test_follows_the_path_on_the_intact_robot(tmp_path, path):
    s, log = _run(tmp_path, path)
    assert s.stop_reason is None and s.safe
    assert s.progress > 1.6, f"{s.progress:.2f} m along the path in 12 s (target 0.2 m/s)"
    assert s.mean_cross_track < 0.06 and s.max_cross_track < 0.15, (s.mean_cross_track, s.max_cross_track)
    if path != "straight":
        yaw = np.array([m["pose"][2] for m in log.messages["planner"]])
        assert abs(np.degrees(yaw[-1])) > 60, "it really turned"


@pytest.mark.slow
def test_starting_off_the_path_it_steers_onto_it(tmp_path):
    """20 cm to the side of a straight path: the heading target leads back (approach gain),
    so it does not settle parallel to the path (it did at 9 cm with the tangent alone)."""
    s, log = _run(tmp_path, "straight", 12.0, path_offset=0.2)
    planner = log.messages["planner"]
    late = [abs(m["cross_track"]) for m in planner if m["t"] > 8.0]
    assert max(late) < 0.04, f"within 4 cm of the path after 8 s: max {max(late):.3f} m"
    assert s.progress > 1.6


@pytest.mark.slow
def test_the_course_term_and_the_crab_angle_let_it_crab_along_a_cross_slope(tmp_path):
    """On a 12° cross-slope the feet creep downhill and the robot steers only by its two sides' strides:
    to hold the line it must yaw uphill. The heading term alone fights that yaw and leaves it walking
    below the line; the course term judges where the body goes over the ground, and the crab angle measured
    over the window moves the heading target itself (both on by default, with the plain model's offset).
    The simulator's truth once settled (after 6 s: the first seconds are the slide while it stands up and
    starts), the plain MB model (no adaptation in the comparison), the same seed. Measured with the guidance's
    approach gain of 6 /m: heading alone 0.96 cm, with the course term 0.31, as shipped 0.23 (with 3 /m: 1.8, 0.7
    and 0.3)."""
    def settled_xt(name: str, cost: dict, adaptation: dict) -> float:
        s, log = _run(tmp_path, "straight", 12.0, [{"kind": "slope", "roll_deg": 12}],
                      controller={"model": "models/mb.pt", "adapter": "mb", "state_source": "privileged", "cost": cost,
                                  "adaptation": adaptation}, name=name)
        assert s.stop_reason is None and s.safe and s.progress > 1.6, (s.stop_reason, s.progress)
        return float(np.mean([abs(m["true_cross_track"]) for m in log.messages["planner"] if m["t"] > 6.0]))

    off = {"crab_compensation": 0.0}
    heading_only = settled_xt("heading_only", {**off, "course": 0.0}, {"offset_gain": 0.0})
    course = settled_xt("course", off, {"offset_gain": 0.0})
    shipped = settled_xt("shipped", {}, {})
    assert course < 0.6 * heading_only, f"settled cross-track {100 * course:.1f} cm with the course term, {100 * heading_only:.1f} cm without"
    assert shipped < 0.8 * course, f"as shipped {100 * shipped:.1f} cm, the course term alone {100 * course:.1f} cm"


@pytest.mark.slow
def test_grbal_recovers_the_path_when_a_leg_goes_limp_mid_run(tmp_path):
    onset = 4.0
    s, log = _run(tmp_path, "straight", 15.0, [{"kind": "limp_leg", "leg": "LF", "start": onset}])
    assert s.stop_reason is None and s.safe
    planner = log.messages["planner"]
    late = [abs(m["cross_track"]) for m in planner if m["t"] > onset + 5.0]
    assert max(late) < 0.08, f"back on the path 5 s after the onset: max {max(late):.3f} m"
    assert planner[-1]["progress"] > 2.0
    after = [m for m in log.messages["adaptation"] if m["t"] > onset + 1.0 and m["loss_before"] is not None]
    before_loss = np.mean([m["loss_before"] for m in after])
    after_loss = np.mean([m["loss_after"] for m in after])
    assert after_loss < before_loss, f"the adaptation step lowers the window loss: {before_loss:.3f} -> {after_loss:.3f}"


@pytest.mark.slow
def test_a_right_middle_leg_going_limp_mid_run_stays_inside_the_5cm_band(tmp_path):
    """The right-middle leg is limp in the training data, so the plain model predicts it and plans (nothing
    surprises it). The robot then makes 0.04-0.06 m/s of the 0.2 commanded, and with the guidance's approach gain
    at 3 /m its plans traded the line for speed: the truth peaked at 5.2 cm, out of the band for about 8 s (seed 0).
    With the default 6 /m it peaks at 3.3 cm. The simulator's true state, the suite's scenario, seed 0."""
    onset = 5.0
    s, log = _run(tmp_path, "straight", 20.0, [{"kind": "limp_leg", "leg": "RM", "start": onset}],
                  controller={"state_source": "privileged"}, name="limp_rm")
    assert s.stop_reason is None and s.safe and s.progress > 1.8, (s.stop_reason, s.progress)
    after = [abs(m["true_cross_track"]) for m in log.messages["planner"] if m["t"] >= onset]
    assert max(after) < 0.05, f"the truth peaks at {100 * max(after):.1f} cm after the onset (band 5 cm)"
    assert not any(m["adapted"] for m in log.messages["adaptation"]), "the plain model plans throughout"


@pytest.mark.slow
def test_the_truth_is_scored_along_its_own_progress_when_the_estimate_under_reads(tmp_path):
    """Onboard estimate, slippery floor and 0.15 s of action latency (more than the legs' stance window
    follows: 0.3 of a gait cycle): leg odometry under-reads the distance walked. The daemon must project
    the simulator's true pose near the truth's own progress: projected near the estimate's, it was scored
    against the wrong stretch of path (26-31 cm reported where the robot was 0.5-2.3 cm off)."""
    from legadapt.paths import task_path, track

    s, log = _run(tmp_path, "straight", 14.0, [{"kind": "floor_friction", "mu": 0.35},
                                                {"kind": "action_latency", "delay": 0.15}])
    planner = log.messages["planner"]
    true_xy = np.array([m["true_pose"][:2] for m in planner])
    est_s = np.array([m["progress"] for m in planner])
    true_s, true_e = track(task_path(parse_config({"task": {"path": "straight", "duration": 14.0}}).task), true_xy)
    assert np.allclose([m["true_cross_track"] for m in planner], true_e, atol=1e-4)
    assert np.allclose([m["true_progress"] for m in planner], true_s, atol=1e-4)
    print(f"estimate's progress {est_s[-1]:.2f} m, true {true_s[-1]:.2f} m; true mean |xt| {np.abs(true_e).mean():.3f} m")
    assert true_s[-1] - est_s[-1] > 0.5, "the case this test is about: the estimate under-reads by more than half the search window"
    assert s.true_xt.mean == pytest.approx(np.abs(true_e).mean(), abs=1e-4)


@pytest.mark.slow
def test_the_main_job_keeps_the_truth_within_6_cm_after_the_leg_goes_limp(tmp_path):
    """`legadapt run --config configs/sim_limp_leg.yaml` as shipped (flow-fused estimate, the leg limp at 6 s):
    the simulator's truth stays within 6 cm of the path after the onset, and the printed estimate's cross-track
    within 2 cm of the truth's all run (issue 13's goals for the main job; GrBAL alone with its full step read
    6.8-9.5 cm on seeds 0-2)."""
    from legadapt.config import load_config

    log = tmp_path / "main.mcap"
    cfg = load_config("configs/sim_limp_leg.yaml")
    summary = run(cfg.model_copy(update={"controller": cfg.controller.model_copy(update={"status_interval": 60})}),
                  log_path=log, status=lambda line: None)
    assert summary.stop_reason is None and summary.safe
    msgs = read_log(log, channels={"planner", "events"}).messages
    planner = msgs["planner"]
    after = [abs(m["true_cross_track"]) for m in planner if m["t"] >= 6.0]
    gap = [abs(m["cross_track"] - m["true_cross_track"]) for m in planner]
    print(f"truth after the onset: max {100 * max(after):.1f} cm; estimate vs truth: max {100 * max(gap):.1f} cm; "
          f"progress {planner[-1]['true_progress']:.2f} m")
    assert max(after) <= 0.06 and max(gap) <= 0.02
    # 1.2 m in the 6 s before the onset at the commanded 0.2 m/s, then 14 s on the limp leg: 2.7 m is 0.11 m/s, 55 % of
    # the commanded pace (seeds 0-2 walk 0.117-0.122 m/s after it; 2.8 m before the planner stopped over-speeding)
    assert planner[-1]["true_progress"] > 2.7
    engaged = [e["t"] for e in msgs["events"] if e["kind"] == "adaptation_engaged"]
    assert len(engaged) == 1 and 6.0 < engaged[0] < 7.0, "GrBAL takes over once, within a second of the onset"
