"""The onboard state estimate against the simulator's truth, on both backends."""

from __future__ import annotations

import dataclasses

import numpy as np

from conftest import make_config
from legadapt.controller.open_loop import ramp_to
from legadapt.controller.state_estimator import PrivilegedSource, StateEstimator
from legadapt.controller.state_sources import make_state_source
from legadapt.sim.sim_robot import SimRobot
from legadapt.features import SLICE_GYRO, SLICE_VEL
from conftest import HEXAPOD_SPEC, STATE_DIM
SLICE_JOINTS = HEXAPOD_SPEC.joint_slice
from legadapt.sim.hexapod import make_gait


def _walk_both(backend: str, perturbations=None, early_reading: bool = False, slip: list | None = None):
    """Walk 8 s open-loop (curving right, then left) with the estimator beside the truth.

    ``slip``: if given, gets (s, slip mismatch rad/s, suspected, |estimate - truth| m) every tick."""
    cfg = make_config(backend, perturbations)
    robot = SimRobot(cfg)
    robot.configure()
    robot.activate()
    gait = make_gait(robot.hexapod.desc, cfg.gait)
    ramp_to(robot, gait.joint_targets(0.0, np.zeros(2)), 0.02)
    robot.read()
    true, est = PrivilegedSource(), StateEstimator(gait)
    true.reset(robot.state)
    est.reset(robot.state)
    phase, vel_err, start = 0.0, [], true.pose().copy()
    for k in range(400):  # 8 s: curve right, then left
        action = np.array([1.0, 0.4]) if k < 200 else np.array([0.3, 1.0])
        phase = (phase + gait.params.frequency * 0.02) % 1.0
        robot.write(gait.joint_targets(phase, action))
        robot.advance(0.02)
        robot.read()
        true.update(robot.state, phase)
        if early_reading:  # a late tick's reading 2 ms before this one, one encoder count (1.5 mrad) off
            off = np.where(np.arange(18) % 2 == k % 2, 2 * np.pi / 4096, 0.0)
            est.update(dataclasses.replace(robot.state, stamp=robot.state.stamp - 0.002, q=robot.state.q + off), phase)
        est.update(robot.state, phase)
        if k >= 25:
            vel_err.append(est.model_state()[SLICE_VEL] - true.model_state()[SLICE_VEL])
        if slip is not None:
            check = est.slip()
            slip.append((0.02 * (k + 1), check.mismatch, check.suspected, float(np.linalg.norm(est.pose()[:2] - true.pose()[:2]))))
    robot.shutdown()
    return true, est, np.array(vel_err), start


def test_estimate_tracks_the_true_state(backend):
    true, est, vel_err, start = _walk_both(backend)
    rmse = np.sqrt((vel_err**2).mean(axis=0))
    assert np.all(rmse < 0.05), f"velocity RMSE {rmse} m/s"
    travelled = np.linalg.norm(true.pose()[:2] - start[:2])
    assert travelled > 1.0
    assert np.linalg.norm(est.pose()[:2] - true.pose()[:2]) < 0.1 * travelled, "pose drift under 10 % of the distance"
    assert abs(est.pose()[2] - true.pose()[2]) < np.radians(3)
    s_est, s_true = est.model_state(), true.model_state()
    assert s_est.shape == (STATE_DIM,)
    assert np.allclose(s_est[SLICE_JOINTS], s_true[SLICE_JOINTS]) and np.allclose(s_est[SLICE_GYRO], s_true[SLICE_GYRO], atol=0.05)  # gyro is sampled one physics step earlier


def test_readings_closer_than_the_baseline_do_not_amplify_encoder_noise():
    """Fast-loop jitter (a reading 2 ms after the previous one) with encoder quantisation:
    differencing over 2 ms would turn one count into ~0.1 m/s of velocity noise."""
    _, _, vel_err, _ = _walk_both("mujoco", early_reading=True)
    rmse = np.sqrt((vel_err**2).mean(axis=0))
    assert np.all(rmse < 0.05), f"velocity RMSE {rmse} m/s"


def test_estimate_sees_imu_bias_but_truth_does_not():
    bias = [{"kind": "imu_error", "tilt_bias_deg": [3.0, 0.0]}]
    true, est, _, _ = _walk_both("mujoco", bias)
    assert abs(np.degrees(est.model_state()[0] - true.model_state()[0]) - 3.0) < 1.0


def test_privileged_source_refuses_a_real_robot_reading():
    import pytest

    from legadapt.robot_state import ImuReading, RobotState

    reading = RobotState(stamp=0.0, q=np.zeros(18), qd=np.zeros(18), effort=np.zeros(18),
                         imu=ImuReading(np.array([1.0, 0, 0, 0]), np.zeros(3), np.zeros(3)), privileged=None)
    with pytest.raises(ValueError, match="privileged"):
        make_state_source("privileged", None).reset(reading)


def test_slip_is_suspected_when_a_leg_goes_limp_and_the_estimate_drifts():
    """A leg going limp 2 s in: the stance feet stop turning with the gyro and the estimate drifts from
    the truth -- the estimator's own check says so within ~2 s; intact, it never does (this walk
    curves right, then left)."""
    from legadapt.controller.state_estimator import SLIP_THRESHOLD

    intact, limp = [], []
    _walk_both("mujoco", slip=intact)
    _walk_both("mujoco", [{"kind": "limp_leg", "leg": "LF", "start": 2.0}], slip=limp)
    intact, limp = np.array(intact, dtype=float), np.array(limp, dtype=float)
    onset = np.flatnonzero(limp[:, 2])
    print(f"stance feet vs gyro: intact max {intact[:, 1].max():.3f} rad/s; limp {np.nanmedian(limp[limp[:, 0] > 4, 1]):.3f} "
          f"(threshold {SLIP_THRESHOLD}), suspected {limp[onset[0], 0] - 2.0:.1f} s after the leg went limp; "
          f"estimate off the truth by {intact[-1, 3]:.3f} m intact, {limp[-1, 3]:.3f} m limp")
    assert not intact[:, 2].any() and intact[:, 1].max() < 0.7 * SLIP_THRESHOLD, "no false alarm on the intact robot"
    assert onset.size and 2.0 < limp[onset[0], 0] < 5.5, "suspected soon after the onset, not before"
    assert limp[-1, 2], "still suspected while the leg is limp"
    assert limp[-1, 3] > 2 * intact[-1, 3], "the truth drifts from the estimate: what the event warns about"


def test_the_legs_stance_window_follows_the_command_latency(monkeypatch):
    """0.08 s between a command and the joints (a slow bus, say): the planted feet trail the commanded gait
    phase by 0.16 of a cycle, and a stance window placed by the commanded phase takes in swinging feet. The
    legs' odometry finds the lag at which the stance legs agree (0.15) and the legs-only estimate drifts
    2.5 % of the distance; held at no lag it drifts 35 %. Without latency it keeps no lag."""
    from legadapt.controller import leg_odometry
    from legadapt.controller.estimator_walk import walk_beside_truth

    late = make_config("mujoco", [{"kind": "action_latency", "delay": 0.08}])
    found = walk_beside_truth(late, {"legs": StateEstimator})["legs"]
    on_time = walk_beside_truth(make_config("mujoco"), {"legs": StateEstimator})["legs"]
    monkeypatch.setattr(leg_odometry, "LAG_EVIDENCE", 0.0)  # never take a lag
    held = walk_beside_truth(late, {"legs": StateEstimator})["legs"]
    print(f"drift {found.drift_percent:.1f} % at lag {found.source.legs.lag:.2f}, {held.drift_percent:.1f} % at no lag; "
          f"on time {on_time.drift_percent:.1f} % at lag {on_time.source.legs.lag:.2f}")
    assert 0.1 <= found.source.legs.lag <= 0.2
    assert found.drift_percent < 6 and held.drift_percent > 4 * found.drift_percent
    assert on_time.source.legs.lag == 0.0 and on_time.drift_percent < 4
