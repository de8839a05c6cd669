"""The tripod gait really walks: speed, turning both ways, reverse, per-leg mode, 15° slopes."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import HEXAPOD, walk

from legadapt.sim.gait import GaitParams, PhaseGait
from legadapt.sim.kinematics import LegKinematics

MIN_SPEED = 0.15  # m/s, required at full action on the intact robot


def test_inverse_kinematics_inverts_forward(rng):
    kin = LegKinematics(HEXAPOD)
    for _ in range(50):
        q = rng.uniform([-0.6, -0.5, -2.2] * 6, [0.6, 1.0, -0.3] * 6)
        assert np.allclose(kin.inverse(kin.forward(q)), q, atol=1e-6)


def test_stance_foot_moves_straight_back_at_constant_speed():
    gait = PhaseGait(HEXAPOD, None, "per_side")
    phases = np.linspace(0.0, 0.49, 50)  # tripod A in stance
    feet = np.array([gait.foot_targets(p, np.ones(2))[0] for p in phases])
    assert np.allclose(feet[:, 2], feet[0, 2]) and np.allclose(feet[:, 1], feet[0, 1])
    assert np.allclose(np.diff(feet[:, 0]), np.diff(feet[:, 0])[0]) and feet[-1, 0] < feet[0, 0]
    # kinematics reproduce the foot path
    q = np.array([gait.joint_targets(p, np.ones(2)) for p in phases])
    assert np.allclose(gait.kin.forward(q[10])[0], feet[10], atol=1e-6)


def test_action_dimension_is_checked():
    gait = PhaseGait(HEXAPOD, None, "per_leg")
    with pytest.raises(ValueError, match="expected 6"):
        gait.joint_targets(0.0, np.ones(2))


def test_intact_robot_walks_straight_at_speed(backend):
    res = walk(backend, [1.0, 1.0])
    assert not res.fell
    assert res.speed >= MIN_SPEED, f"{res.speed:.3f} m/s"
    dx, dy = res.displacement
    assert dx > 0 and abs(dy) < 0.1 * dx
    assert abs(np.degrees(res.yaw_change)) < 10


def test_differential_action_turns_both_ways(backend):
    right = walk(backend, [1.0, 0.2], duration=6.0)
    left = walk(backend, [0.2, 1.0], duration=6.0)
    assert np.degrees(right.turn_rate) < -5.0, "more stride on the left turns right (clockwise)"
    assert np.degrees(left.turn_rate) > 5.0
    assert abs(left.turn_rate) == pytest.approx(abs(right.turn_rate), rel=0.3), "turns are symmetric"
    spin = walk(backend, [-1.0, 1.0], duration=4.0)
    assert np.degrees(spin.turn_rate) > 20.0 and spin.speed < 0.05, "opposite sides spin it in place"


def test_reverse_stride_walks_backwards(backend):
    res = walk(backend, [-1.0, -1.0], duration=5.0)
    assert res.displacement[0] < -MIN_SPEED * 5.0


def test_per_leg_action_mode():
    gait = {"action_mode": "per_leg"}
    straight = walk("mujoco", np.ones(6), duration=5.0, gait=gait)
    assert straight.speed >= MIN_SPEED
    # LF LM LH RF RM RH: left side full, right side slow -> clockwise
    turning = walk("mujoco", [1, 1, 1, 0.2, 0.2, 0.2], duration=5.0, gait=gait)
    assert np.degrees(turning.turn_rate) < -5.0


@pytest.mark.parametrize("slope", [
    {"pitch_deg": 15.0}, {"pitch_deg": -15.0}, {"roll_deg": 15.0}, {"roll_deg": -15.0},
], ids=["uphill", "downhill", "side-left-up", "side-right-up"])
def test_keeps_walking_on_a_15_degree_slope(backend, slope):
    res = walk(backend, [1.0, 1.0], duration=8.0, perturbations=[{"kind": "slope", "ramp_time": 1.0, **slope}])
    assert not res.fell
    assert np.degrees(res.max_tilt) < 25.0
    assert res.speed >= 0.1, f"{res.speed:.3f} m/s on {slope}"
