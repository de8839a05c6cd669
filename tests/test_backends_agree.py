"""MuJoCo and PyBullet simulate the same robot: for the same gait actions they agree."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import walk

AGREEMENT = 0.30  # forward speeds within 30% of each other


@pytest.mark.parametrize("action", [[1.0, 1.0], [0.6, 0.6], [1.0, 0.5], [0.5, 1.0], [-1.0, -1.0]])
def test_forward_speed_agrees(action):
    mj = walk("mujoco", action, duration=6.0)
    pb = walk("pybullet", action, duration=6.0)
    v_mj, v_pb = mj.displacement / mj.duration, pb.displacement / pb.duration
    fwd_mj, fwd_pb = np.linalg.norm(v_mj), np.linalg.norm(v_pb)
    assert abs(fwd_mj - fwd_pb) <= AGREEMENT * max(fwd_mj, fwd_pb), (fwd_mj, fwd_pb)
    if abs(action[0] - action[1]) > 0.3:
        assert np.sign(mj.turn_rate) == np.sign(pb.turn_rate)
        assert abs(mj.turn_rate - pb.turn_rate) <= AGREEMENT * max(abs(mj.turn_rate), abs(pb.turn_rate))


def test_slope_speed_agrees():
    slope = [{"kind": "slope", "pitch_deg": 15.0, "ramp_time": 1.0}]
    mj = walk("mujoco", [1.0, 1.0], duration=6.0, perturbations=slope)
    pb = walk("pybullet", [1.0, 1.0], duration=6.0, perturbations=slope)
    assert abs(mj.speed - pb.speed) <= AGREEMENT * max(mj.speed, pb.speed), (mj.speed, pb.speed)
