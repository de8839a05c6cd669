"""The pose step's motion along the floor's normal from the range finder (controller.range_height)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import HEXAPOD, make_config
from legadapt.controller.estimator_walk import walk_beside_truth
from legadapt.controller.fusion import FusedEstimator
from legadapt.controller.range_height import RangeHeightStep

SPEC = HEXAPOD.flow
BOB_HZ, BOB_M, TILT = 4.0, 0.004, 0.05  # a bob of 4 mm at 4 Hz (25 cm/s peak); the step's sensitivity, m per m


def _bob(t: np.ndarray) -> np.ndarray:
    return 0.11 + BOB_M * np.sin(2 * np.pi * BOB_HZ * t)


def _sensitivity(t: float) -> np.ndarray:
    """The body pitching with the bob, a quarter period ahead of the height: in step with its velocity."""
    return np.array([TILT * np.cos(2 * np.pi * BOB_HZ * t), 0.0])


def _run(step: RangeHeightStep, seconds: float, range_noise: float, seed: int = 0, tilt: float = 0.0) -> float:
    """Ticks and reads at 50 Hz over ``seconds``; the filter's normal velocity 0 (it misses the bob). Returns the
    pose's x move from the corrections (m)."""
    rng = np.random.default_rng(seed)
    dt, moved = 0.02, 0.0
    fine = np.linspace(0.0, dt, 41)
    for k in range(1, int(round(seconds / dt)) + 1):
        t = k * dt
        step.tick(t, dt, _sensitivity(t - dt) if k == 1 else _sensitivity(t), 0.0, tilt)
        mean_height = float(np.mean(_bob(t - dt + fine)))  # the ranger's mean over the read interval
        moved += step.correction(t, dt, mean_height + range_noise * rng.standard_normal(), 1.0, 0.0)[0]
    return moved


def test_the_height_change_moves_the_pose_by_what_the_tilt_makes_of_the_bob():
    """The pose's true move from the bob is the integral of sensitivity times normal velocity: with the pitch in
    step with the bob's velocity it does not average out (TILT · BOB_M · π · BOB_HZ m/s). Reads of the ranger's
    mean height recover 90 % of it: the ranger's mean over its 20 ms read and the span's two tick halves each
    average the 4 Hz bob a little. The ranger's 2 mm noise adds no drift of its own: differences of ranges
    telescope."""
    seconds = 4.0
    truth = TILT * BOB_M * np.pi * BOB_HZ * seconds  # m: mean of TILT cos · BOB_M 2π f cos over whole periods
    clean = _run(RangeHeightStep("interval"), seconds, 0.0)
    noisy = [_run(RangeHeightStep("interval"), seconds, 0.002, seed) for seed in range(5)]
    print(f"bob's leak {1000 * truth:.2f} mm; from the ranges {1000 * clean:.2f} mm, with 2 mm noise "
          f"{np.round(1000 * np.array(noisy), 2)} mm")
    assert clean == pytest.approx(truth, rel=0.12)
    assert np.all(np.abs(np.array(noisy) - clean) < 0.15 * truth)


def test_on_a_slope_and_after_a_lost_range_the_pose_is_not_moved():
    """Where the feet's plane is tilted from the IMU's level (a slope: the floor normal is that plane, not
    trusted to a few degrees with a limp leg) nothing moves; a read without a usable range starts a new chain,
    so the height jump across the gap is not taken for motion."""
    assert _run(RangeHeightStep("interval"), 2.0, 0.0, tilt=np.radians(10.0)) == 0.0
    step = RangeHeightStep("interval")
    step.tick(0.02, 0.02, np.array([0.1, 0.0]), 0.0, 0.0)
    assert step.correction(0.02, 0.02, 0.11, 1.0, 0.0)[0] == 0.0  # the first height: nothing to difference
    step.lost()
    step.tick(0.04, 0.02, np.array([0.1, 0.0]), 0.0, 0.0)
    assert step.correction(0.04, 0.02, 0.15, 1.0, 0.0)[0] == 0.0


class _NoHeightStep(FusedEstimator):
    """The filter as it is, its pose stepped with the filter's own normal velocity only."""

    def _move_by_height(self, reading):
        pass


@pytest.mark.parametrize("perturbations", [[{"kind": "limp_leg", "leg": "LF"}]], ids=["limp"])
def test_the_range_finder_takes_the_limp_legs_bob_out_of_the_pose(perturbations):
    """With a limp leg the body bobs and pitches in step at every stride, and the filter misses most of the bob:
    the pose drifted along the track. The range finder's heights move the pose by what the tilt makes of the
    bob, and the drift falls by a quarter or more; the velocity the model sees does not change."""
    out = walk_beside_truth(make_config("mujoco", perturbations),
                            {"height": lambda gait: FusedEstimator(gait, flow=SPEC),
                             "filter": lambda gait: _NoHeightStep(gait, flow=SPEC)})
    height, plain = out["height"], out["filter"]
    print(f"drift {height.drift_percent:.2f} % with the range finder's heights, {plain.drift_percent:.2f} % "
          f"without, of {height.walked:.2f} m")
    assert height.drift_percent < 0.8 * plain.drift_percent
    np.testing.assert_array_equal(height.vel_rmse, plain.vel_rmse)


def test_on_a_slope_the_pose_is_the_filters():
    """Uphill with a limp leg the floor's normal is the feet's plane: the heights leave the pose alone."""
    perturbations = [{"kind": "limp_leg", "leg": "LF"}, {"kind": "slope", "pitch_deg": 10, "ramp_time": 0}]
    out = walk_beside_truth(make_config("mujoco", perturbations),
                            {"height": lambda gait: FusedEstimator(gait, flow=SPEC),
                             "filter": lambda gait: _NoHeightStep(gait, flow=SPEC)}, 4.0)
    np.testing.assert_array_equal(out["height"].source.pose(), out["filter"].source.pose())
