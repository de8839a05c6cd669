"""The optical-flow sensor: its simulated model, its bus device, and the EKF that fuses it (against the truth)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import HEXAPOD, make_config
from legadapt.controller.flow_velocity import flow_velocity
from legadapt.controller.fusion import FusedEstimator, FusionNoise
from legadapt.controller.estimator_walk import walk_beside_truth
from legadapt.controller.state_estimator import StateEstimator
from legadapt.hardware import registers as R
from legadapt.robot_state import BaseState, FlowReading, ImuReading, RobotState
from legadapt.sim.flow_sensor import SimFlowSensor, floor_rate
from legadapt.sim.hexapod import make_gait
from legadapt.sim.rotations import quat_from_rpy, quat_rotate_inv
from legadapt.sim.servo_emulator import FlowTable

SPEC = HEXAPOD.flow
FLAT = (np.zeros(3), np.array([0.0, 0.0, 1.0]))  # floor point, normal


def _reading() -> RobotState:
    """A level, still robot at time 0 (the accelerometer reads gravity only)."""
    return RobotState(stamp=0.0, q=np.zeros(18), qd=np.zeros(18), effort=np.zeros(18),
                      imu=ImuReading(np.array([1.0, 0, 0, 0]), np.zeros(3), np.array([0.0, 0.0, 9.81])))


def _base(pos=(0, 0, 0.11), rpy=(0, 0, 0), vel=(0, 0, 0), omega=(0, 0, 0)) -> BaseState:
    return BaseState(pos=np.array(pos, float), quat=quat_from_rpy(*rpy), lin_vel=np.array(vel, float),
                     ang_vel=np.array(omega, float))


def test_the_default_hexapod_carries_a_flow_sensor_on_its_bus():
    assert SPEC is not None and SPEC.model == "PMW3901" and HEXAPOD.flow_id == 101
    assert SPEC.min_range < 0.11 < SPEC.max_range, "the lens is in focus at the walking height"


def test_floor_rate_is_the_motion_of_the_floor_point_below():
    rate, rng = floor_rate(SPEC, _base(vel=(0.2, -0.1, 0)), *FLAT)
    assert rng == pytest.approx(0.11 + SPEC.position[2])
    assert rate == pytest.approx([-0.2 / rng, 0.1 / rng])
    # turning about the body's y axis in place: the floor point below moves at +w_y in the image
    rate, _ = floor_rate(SPEC, _base(omega=(0, 0.5, 0)), *FLAT)
    assert rate == pytest.approx([0.5, 0.0], abs=1e-9)
    # tilted 20 deg about x: the axis meets the floor farther away
    _, rng = floor_rate(SPEC, _base(rpy=(np.radians(20), 0, 0)), *FLAT)
    assert rng == pytest.approx(0.11 / np.cos(np.radians(20)))
    # upside down: no floor ahead
    _, rng = floor_rate(SPEC, _base(rpy=(np.pi, 0, 0)), *FLAT)
    assert np.isnan(rng)


def test_flow_velocity_inverts_the_sensor_model():
    rng_ = np.random.default_rng(3)
    for _ in range(50):
        vel, omega = rng_.normal(0, 0.2, 3), rng_.normal(0, 0.5, 3)
        base = _base(pos=(0, 0, rng_.uniform(0.09, 0.3)), rpy=rng_.normal(0, 0.1, 3), vel=vel, omega=omega)
        rate, rng = floor_rate(SPEC, base, *FLAT)
        reading = FlowReading(stamp=0.0, interval=0.02, delta=rate * SPEC.counts_per_rad * 0.02, range=rng, squal=100)
        w_body, base_body = quat_rotate_inv(base.quat, base.ang_vel), quat_rotate_inv(base.quat, base.lin_vel)
        v, sd = flow_velocity(SPEC, reading, w_body)
        assert v == pytest.approx(base_body[:2], abs=1e-9)
        assert 0 < sd < 0.05


def test_the_chip_keeps_what_is_below_one_count_and_loses_motion_out_of_focus():
    sensor = SimFlowSensor(SPEC, seed=0)
    sensor.spec = type(SPEC)(**{**SPEC.__dict__, "rate_noise": 0.0})
    moving = _base(vel=(0.05, 0, 0))
    total = sum(sensor.read(0.002 * k, moving, *FLAT).delta[0] for k in range(1, 501))  # 1 s of 2 ms reads
    rate, _ = floor_rate(SPEC, moving, *FLAT)
    assert abs(total - rate[0] * SPEC.counts_per_rad) <= 1.0, "sub-count motion accumulates, not truncated away"
    close = sensor.read(1.1, _base(pos=(0, 0, 0.05), vel=(0.05, 0, 0)), *FLAT)
    assert close.squal == 0 and np.all(close.delta == 0) and close.range == pytest.approx(0.05, abs=0.01)


def test_the_bus_device_clears_its_motion_when_read():
    dev = FlowTable(101)
    dev.add_motion(10_000, np.array([5.0, -3.0]), 0.11, 120, np.array([0.01, -0.02, 0.003]))
    dev.add_motion(30_000, np.array([2.0, 1.0]), 0.112, 120, np.array([0.005, 0.01, 0.001]))
    _, block = dev.read(R.FLOW_BLOCK_ADDRESS, R.FLOW_BLOCK_LENGTH)
    stamp, interval, delta, rng, squal, rotation = R.unpack_flow(block)
    assert (stamp, interval, squal) == (30_000, pytest.approx(0.02), 120)
    assert delta.tolist() == [7.0, -2.0] and rng == pytest.approx(0.112)
    assert rotation == pytest.approx([0.015, -0.01, 0.004], abs=1e-7), "the gyro's rotation adds up like the motion"
    _, block = dev.read(R.FLOW_BLOCK_ADDRESS, R.FLOW_BLOCK_LENGTH)
    assert R.unpack_flow(block)[2].tolist() == [0.0, 0.0], "a second read sees no motion twice"
    assert R.unpack_flow(block)[5].tolist() == [0.0, 0.0, 0.0], "nor the rotation"
    dev.add_motion(40_000, np.array([1.0, 1.0]), float("nan"), 0, np.array([0.0, 0.0, 0.01]))
    _, interval, delta, rng, squal, rotation = R.unpack_flow(dev.read(R.FLOW_BLOCK_ADDRESS, R.FLOW_BLOCK_LENGTH)[1])
    assert squal == 0 and np.isnan(rng) and delta.tolist() == [0.0, 0.0] and interval == pytest.approx(0.01)
    assert rotation == pytest.approx([0.0, 0.0, 0.01]), "the gyro turns on when the chip loses the floor"
    board = FlowTable(102)  # a board without a gyro says so: NaN on the bus, None read back
    board.add_motion(10_000, np.array([1.0, 0.0]), 0.11, 120)
    assert R.unpack_flow(board.read(R.FLOW_BLOCK_ADDRESS, R.FLOW_BLOCK_LENGTH)[1])[5] is None


def test_the_bus_device_reports_the_range_over_the_interval_it_reports_motion_for():
    """Several chip samples between two block reads: the range read is their time-weighted mean (the interval the
    motion was accumulated over), and a block read starts the next interval's mean afresh."""
    dev = FlowTable(101)
    for stamp_us, rng in ((0, 0.2), (10_000, 0.100), (20_000, 0.120), (40_000, 0.105)):
        dev.add_motion(stamp_us, np.array([1.0, 0.0]), rng, 120)
    rng = R.unpack_flow(dev.read(R.FLOW_BLOCK_ADDRESS, R.FLOW_BLOCK_LENGTH)[1])[3]
    assert rng == pytest.approx((0.100 * 10 + 0.120 * 10 + 0.105 * 20) / 40, abs=0.001)  # 108 mm, not the last 105
    dev.add_motion(50_000, np.array([1.0, 0.0]), 0.130, 120)
    dev.add_motion(60_000, np.array([1.0, 0.0]), float("nan"), 120)  # a sample beyond the ranger's reach
    assert R.unpack_flow(dev.read(R.FLOW_BLOCK_ADDRESS, R.FLOW_BLOCK_LENGTH)[1])[3] == pytest.approx(0.130)
    at_read = FlowTable(101, range_over_interval=False)  # a ranger read at the read: the last sample's range
    for stamp_us, rng in ((0, 0.2), (10_000, 0.100), (20_000, 0.120)):
        at_read.add_motion(stamp_us, np.array([1.0, 0.0]), rng, 120)
    assert R.unpack_flow(at_read.read(R.FLOW_BLOCK_ADDRESS, R.FLOW_BLOCK_LENGTH)[1])[3] == pytest.approx(0.120)


QUIET = type(SPEC)(**{**SPEC.__dict__, "rate_noise": 0.0, "range_noise": 0.0, "gyro_noise": 0.0})  # noise-free


def _quiet_reads(motion, seconds: float, spec=QUIET):
    """(body, reading) of a noise-free sensor (``spec``) over ``motion(t) -> BaseState``: integrated every 2 ms
    physics step, read every 20 ms, for ``seconds`` s."""
    sensor, dt = SimFlowSensor(spec, seed=0), 0.002
    for k in range(1, int(round(seconds / dt)) + 1):
        t = k * dt
        sensor.integrate(dt, motion(t), *FLAT)
        if k % 10 == 0:
            yield motion(t), sensor.read(t, motion(t), *FLAT)


def _rocking(t: float) -> BaseState:
    """The body rocking about x at 6 Hz (0.05 rad) over the lens, which does not move."""
    roll, rate = 0.05 * np.sin(2 * np.pi * 6 * t), 0.05 * 2 * np.pi * 6 * np.cos(2 * np.pi * 6 * t)
    return _base(pos=(0, 0, 0.11), rpy=(roll, 0, 0), omega=(rate, 0, 0))


def test_the_chip_integrates_between_reads_and_the_board_gyro_takes_out_the_same_rotation():
    """A rocking body that does not travel: the image motion over each 20 ms read is the integral of the
    rocking. Taken out with the board gyro's rotation over the same interval, the velocity reads zero; with
    the rate sampled at the read (a 50 Hz IMU), the rocking that falls between reads reads as velocity."""
    board, sampled = [], []
    for b, reading in _quiet_reads(_rocking, 4.0):
        assert reading.squal and reading.rotation is not None
        w_at_read = quat_rotate_inv(b.quat, b.ang_vel)
        board.append(flow_velocity(QUIET, reading, w_at_read)[0])
        sampled.append(flow_velocity(QUIET, FlowReading(**{**reading.__dict__, "rotation": None}), w_at_read)[0])
    board_y, sampled_y = np.array(board)[:, 1], np.array(sampled)[:, 1]
    rms = lambda v: float(np.sqrt(np.mean(v**2)))  # noqa: E731
    print(f"sideways velocity read from rocking alone, RMS (mean): {1000 * rms(board_y):.1f} ({1000 * board_y.mean():.2f}) "
          f"mm/s with the board gyro, {1000 * rms(sampled_y):.1f} ({1000 * sampled_y.mean():.2f}) mm/s with the rate at the read")
    one_count = 0.11 / np.cos(0.05) / (QUIET.counts_per_rad * 0.02)  # m/s: one count over a read at the longest range
    # what is left below one count carries over with its sign (truncation): a read may be off by up to two counts
    assert np.abs(board_y).max() <= 2 * one_count, "with the board gyro only the whole-count quantisation is left"
    assert abs(board_y.mean()) < 0.001, "and it averages out"
    assert rms(sampled_y) > 3 * rms(board_y)


def _bobbing(t: float) -> BaseState:
    """The body bobbing 1 cm at 2 Hz, the stride, and surging 5 cm/s with it: fastest while it rises (as with a
    limp leg, whose stride lifts and throws the body forward at the same time)."""
    w = 2 * np.pi * 2.0
    return _base(pos=(0.1 * t + 0.05 * np.sin(w * t) / w, 0, 0.11 + 0.01 * np.sin(w * t)),
                 vel=(0.1 + 0.05 * np.cos(w * t), 0, 0.01 * w * np.cos(w * t)))


def test_the_range_is_taken_over_the_read_interval_like_the_motion():
    """The chip's image motion is the integral of ``-v_x / range`` over a read, so the range that turns it back
    into a speed is the range over that read: the range finder reports its mean over the interval (a ToF ranger
    ranging over its timing budget). Taken at the read instead, a range that changes in step with the speed
    biases the speed read: here by 0.24 mm/s, 1 cm every 40 s (0.02 mm/s over the read)."""
    over_read, at_read = [], []
    for b, reading in _quiet_reads(_bobbing, 10.0):
        _, range_now = floor_rate(QUIET, b, *FLAT)
        over_read.append(flow_velocity(QUIET, reading, np.zeros(3))[0][0])
        at_read.append(flow_velocity(QUIET, FlowReading(**{**reading.__dict__, "range": range_now}), np.zeros(3))[0][0])
    truth = 0.1  # m/s: the mean forward speed over whole strides
    bias_over, bias_at = np.mean(over_read) - truth, np.mean(at_read) - truth
    print(f"forward speed bias: {1000 * bias_over:+.3f} mm/s with the range over the read, {1000 * bias_at:+.3f} at the read")
    assert abs(bias_over) < 0.05e-3
    assert abs(bias_at) > 0.2e-3 and abs(bias_at) > 5 * abs(bias_over)


def test_a_ranger_read_at_the_read_is_taken_over_the_interval_from_the_two_reads_around_it():
    """A range finder triggered by the read (``range_timing: read``) reports the range at the read, the simulator
    as well; the estimator then takes the mean of the ranges at the interval's two ends, which removes most of the
    bias a range at the read leaves on the same bobbing body (test above)."""
    at_read_spec = type(SPEC)(**{**QUIET.__dict__, "range_timing": "read"})
    ends, at_read, previous = [], [], float("nan")
    for b, reading in _quiet_reads(_bobbing, 10.0, at_read_spec):
        assert reading.range == pytest.approx(floor_rate(QUIET, b, *FLAT)[1]), "the range at the read"
        ends.append(flow_velocity(at_read_spec, reading, np.zeros(3), previous_range=previous)[0][0])
        at_read.append(flow_velocity(at_read_spec, reading, np.zeros(3))[0][0])
        previous = reading.range
    truth = (_bobbing(10.0).pos[0] - _bobbing(0.02).pos[0]) / (10.0 - 0.02)  # m/s over the reads after the first
    bias_ends, bias_at = np.mean(ends[1:]) - truth, np.mean(at_read[1:]) - truth
    print(f"forward speed bias: {1000 * bias_ends:+.3f} mm/s with the two reads' mean, {1000 * bias_at:+.3f} at the read")
    assert abs(bias_ends) < 0.05e-3 and abs(bias_at) > 0.2e-3


def test_the_legs_steady_error_is_estimated_against_the_flow():
    """Uphill on a limp leg (the robot put down on the slope) the stance feet slip back at every step: the legs
    read the body about 6 cm/s faster than it goes, steadily. With the flow that error is observable, and the
    filter estimates it as a bias of the legs' velocity: the drift is 1.2 % of the distance, against 4.7 % when
    the legs are taken as unbiased. On legs alone the bias is not observable and stays 0."""
    cfg = make_config("mujoco", [{"kind": "limp_leg", "leg": "LF"}, {"kind": "slope", "pitch_deg": 10, "ramp_time": 0}])
    out = walk_beside_truth(cfg, {
        "bias": lambda gait: FusedEstimator(gait, flow=SPEC),
        "unbiased": lambda gait: FusedEstimator(gait, flow=SPEC, noise=FusionNoise(legs_bias=0.0, legs_bias0=0.0)),
        "legs": lambda gait: FusedEstimator(gait)})
    bias, unbiased = out["bias"], out["unbiased"]
    print(f"drift {bias.drift_percent:.1f} % with the legs' bias estimated ({bias.source.stats.legs_bias} m/s), "
          f"{unbiased.drift_percent:.1f} % without, of {bias.walked:.2f} m")
    assert bias.source.stats.legs_bias[0] > 0.04, "the legs over-read the forward velocity"
    assert bias.drift_percent < 2.5 and unbiased.drift_percent > 2 * bias.drift_percent
    assert out["legs"].source.stats.legs_bias == (0.0, 0.0)


class _VelocityAtMidInterval(FusedEstimator):
    """The filter as it is, its velocity given to the model without carrying it forward to the read."""

    def _carry_forward(self, dv, dt):
        self._ahead = np.zeros(2)


def test_the_model_sees_the_velocity_at_the_read_not_at_the_middle_of_the_read_interval():
    """With a limp leg the body's velocity swings within a stride, and the flow gives its mean over each read: the
    filter's velocity is the interval's middle. Carried forward half a tick with the IMU, the velocity the model
    sees is nearer the body's at the read, and the pose, which integrates the filter's own, does not move."""
    cfg = make_config("mujoco", [{"kind": "limp_leg", "leg": "LF"}])
    out = walk_beside_truth(cfg, {"at the read": lambda gait: FusedEstimator(gait, flow=SPEC),
                                  "mid-interval": lambda gait: _VelocityAtMidInterval(gait, flow=SPEC)})
    read, mid = out["at the read"], out["mid-interval"]
    print(f"velocity RMSE x, y: {read.vel_rmse[:2]} m/s at the read, {mid.vel_rmse[:2]} at the interval's middle")
    assert read.vel_rmse[0] < 0.7 * mid.vel_rmse[0] and read.vel_rmse[1] < 0.9 * mid.vel_rmse[1]
    assert read.vel_rmse[2] == mid.vel_rmse[2], "the vertical velocity is left as it is"
    np.testing.assert_array_equal(read.source.pose(), mid.source.pose())


def test_on_a_side_slope_the_pose_moves_along_the_floor_not_with_the_vertical_velocity():
    """On a 10 deg side slope the vertical velocity (seen only by the legs and the accelerometer) carries a
    bias; tilted with the body it became sideways drift (3.4 % of the distance on this seed). The pose now
    moves along the floor that the stance feet define: measured 2.1 %, and 0.8 % since the flow's rotation is
    taken out with the board gyro's rotation over the same read."""
    out = walk_beside_truth(make_config("mujoco", [{"kind": "slope", "roll_deg": 10}]),
                            {"fused": lambda gait: FusedEstimator(gait, flow=SPEC)})
    fused = out["fused"]
    normal = fused.source.floor_normal
    print(f"drift {fused.drift_percent:.1f} % of {fused.walked:.2f} m; floor normal (body frame) {normal.round(3)}")
    assert fused.walked > 0.8
    assert fused.drift_percent < 1.5
    # the body stands parallel to the slope: the stance feet's plane is the body's own x-y plane, within 3 deg
    assert normal[2] > np.cos(np.radians(3))


def _tripod_on(normal: np.ndarray) -> np.ndarray:
    """Three feet [3, 3] m (body frame) on the plane with unit ``normal``, 0.11 m below the body along it."""
    along_x = np.array([1.0, 0.0, 0.0]) - normal[0] * normal
    along_x /= np.linalg.norm(along_x)
    across = np.cross(normal, along_x)
    return np.array([[0.15, 0.1], [-0.15, 0.12], [0.0, -0.13]]) @ np.stack([along_x, across]) - 0.11 * normal


def test_the_floor_normal_follows_the_stance_feet_and_the_pose_ignores_motion_along_it():
    """Feet on a plane tilted 20 deg about the body's x axis (the IMU level): the floor's normal becomes that
    plane's, and a body velocity along it moves the pose by nothing. On a plane tilted 1 deg the floor is
    taken as level (the IMU's up). A second tripod whose legs disagree on the body's velocity by 0.2 m/s (a
    limp leg among them) on a plane 12 deg off barely moves the floor's normal."""
    est = FusedEstimator(make_gait(HEXAPOD, make_config("mujoco", []).gait), flow=SPEC)
    agree = np.zeros((3, 3))
    for tilt_deg, expect_feet in ((20.0, True), (1.0, False)):
        est.reset(_reading())
        n_true = np.array([0.0, -np.sin(np.radians(tilt_deg)), np.cos(np.radians(tilt_deg))])
        for _ in range(500):  # 10 s of 50 Hz updates, 20 time constants
            est._track_floor(_tripod_on(n_true), agree, (0, 2, 4), 0.02)
        assert np.allclose(est.feet_normal, n_true, atol=1e-6)
        est.x[2:5] = 0.1 * n_true
        before = est.x[:2].copy()
        est._predict(_reading(), 0.02)
        est._move_along_floor()  # the tick's pose step, after the corrections
        assert np.allclose(est.floor_normal, n_true if expect_feet else [0.0, 0.0, 1.0], atol=1e-9)
        moved = float(np.linalg.norm(est.x[:2] - before))
        assert moved == pytest.approx(0.0 if expect_feet else 0.1 * np.sin(np.radians(tilt_deg)) * 0.02, abs=1e-9)
    wrong = np.array([0.0, np.sin(np.radians(11.0)), np.cos(np.radians(11.0))])  # 12 deg from the 1 deg plane
    disagree = np.array([[0.2, 0.0, 0.0], [0.0, 0.0, 0.0], [-0.2, 0.0, 0.0]])
    for _ in range(500):
        est._track_floor(_tripod_on(wrong), disagree, (1, 3, 5), 0.02)
    off = np.degrees(np.arccos(np.clip(est.feet_normal @ n_true, -1, 1)))
    assert off < 1.5, f"the disagreeing tripod pulls the floor {off:.1f} deg off"
    est.x[2:5] = [0.1, 0.0, 0.0]
    before = est.x[:2].copy()
    est._predict(_reading(), 0.02)
    est._move_along_floor()
    assert np.linalg.norm(est.x[:2] - before) == pytest.approx(0.1 * 0.02, abs=1e-9)


@pytest.mark.parametrize("perturbations, limit", [
    ([{"kind": "limp_leg", "leg": "LF"}], 3.0),
    # at the issue's 3 %: 2.9 % mean, 3.0 % at worst over bench/estimator_drift.py's seeds (README)
    ([{"kind": "limp_leg", "leg": "LF"}, {"kind": "slope", "roll_deg": 10}], 3.5),
], ids=["limp", "limp-cross-slope"])
def test_flow_sees_the_slide_that_leg_odometry_cannot(perturbations, limit):
    """A limp leg drags its foot: the legs-only estimate drifts 30-50 % of the distance walked; fused with
    the flow sensor (its noise, quantisation and range noise simulated) it stays within 3-3.5 % (``limit``)."""
    out = walk_beside_truth(make_config("mujoco", perturbations),
                            {"plain": StateEstimator, "fused": lambda gait: FusedEstimator(gait, flow=SPEC)})
    plain, fused = out["plain"], out["fused"]
    stats = fused.source.stats
    print(f"walked {plain.walked:.2f} m; drift legs-only {plain.drift_percent:.1f} %, with flow "
          f"{fused.drift_percent:.1f} %; velocity RMSE {plain.vel_rmse} -> {fused.vel_rmse} m/s; {stats}")
    assert plain.walked > 0.5
    assert plain.drift_percent > 15, "the legs-only estimate should not see the slide (else the test shows nothing)"
    assert fused.drift_percent < limit
    assert np.all(fused.vel_rmse[:2] < 0.5 * plain.vel_rmse[:2])
    assert stats.flow_used > 350 and stats.flow_skipped == 0 and stats.slip_speed > 0.02


def test_the_serial_robot_reads_the_flow_device_of_the_emulated_robot():
    """Over the pty: ROBOTIS's own SDK finds the device by its model number; SerialRobot reads its block
    every cycle (the robot lies on its belly after power-up: the floor is nearer than the lens focuses)."""
    import dynamixel_sdk as sdk

    from legadapt.config import parse_config
    from legadapt.hardware.interface import CallbackReturn, ReturnType
    from legadapt.hardware.serial_robot import SerialRobot
    from legadapt.sim.fake_robot import FakeRobot

    fake = FakeRobot(parse_config({"serial": {"port": "/dev/null"}})).start()
    try:
        port = sdk.PortHandler(fake.path)
        assert port.openPort() and port.setBaudRate(1_000_000)
        model, result, _ = sdk.PacketHandler(2.0).ping(port, HEXAPOD.flow_id)
        port.closePort()
        assert result == sdk.COMM_SUCCESS and model == R.FLOW_MODEL_NUMBER
        cfg = parse_config({"serial": {"port": fake.path}, "controller": {"state_source": "estimated+flow"}})
        robot = SerialRobot(cfg)
        try:
            assert robot.configure() is CallbackReturn.SUCCESS, robot.last_error
            for _ in range(5):
                assert robot.read() is ReturnType.OK
                time.sleep(0.02)
            flow = robot.state.flow
            true_height = fake.hexapod.read().privileged.pos[2] + SPEC.position[2]
            assert flow is not None and 0.005 < flow.interval < 0.2
            assert flow.range == pytest.approx(true_height, abs=0.01) and flow.range < SPEC.min_range
            assert flow.squal == 0 and flow.delta.tolist() == [0.0, 0.0]
        finally:
            robot.shutdown()
        plain = SerialRobot(parse_config({"serial": {"port": fake.path}}))
        assert plain.flow_id is None, "the flow device is read only where the state source fuses it"
    finally:
        fake.stop()


def test_a_state_source_that_needs_flow_is_refused_on_a_robot_without_one(tmp_path):
    import subprocess
    import sys

    import yaml

    cfg = tmp_path / "phantomx.yaml"
    cfg.write_text(yaml.safe_dump({"robot": {"description": "phantomx"}, "controller": {"state_source": "estimated+flow"}}))
    run = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "run", "--config", str(cfg), "--duration", "2"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "controller.state_source" in run.stderr and "optical-flow" in run.stderr and "Traceback" not in run.stderr


def test_calibration_finds_the_lens_offset_and_scale_of_the_simulated_robot(tmp_path):
    """The simulated robot's real sensor sits 3 cm forward and 2 cm right of where the description says, and reads
    8 % more counts per rad: a turn on the spot and a straight walk find both. Lockstep, so the figures do not depend
    on the machine's load: over the emulated robot's pty in real time the bus jitter moved them by up to 1.6 cm and
    9 % between runs on an idle machine (the bus path of the flow device: the serial-robot test above)."""
    from dataclasses import replace

    from legadapt.calibration.flow import calibrate_flow
    from legadapt.calibration.overlay import read_overlay
    from legadapt.config import parse_config
    from legadapt.hardware.interface import CallbackReturn
    from legadapt.sim.hexapod import make_gait
    from legadapt.sim.sim_robot import SimRobot

    cfg = parse_config({"controller": {"state_source": "estimated+flow"}})
    robot = SimRobot(cfg)
    marks = []

    def truth() -> np.ndarray:
        return robot.hexapod.backend.base_state().pos

    def tape() -> float:  # the user's tape: from the mark made before the walk to where the robot stands
        return float(np.linalg.norm(truth()[:2] - marks[0][:2]))

    def say(text: str) -> None:
        marks.append(truth().copy())

    try:
        assert robot.configure() is CallbackReturn.SUCCESS and robot.activate() is CallbackReturn.SUCCESS, robot.last_error
        true_spec = replace(SPEC, position=(0.03, -0.02, 0.0), counts_per_rad=SPEC.counts_per_rad * 1.08)
        robot.hexapod.flow = SimFlowSensor(true_spec, seed=0)
        gait = make_gait(HEXAPOD, cfg.gait)
        measured = calibrate_flow(robot, gait, SPEC, measured=tape, say=say)
        by_legs = calibrate_flow(robot, gait, SPEC)
    finally:
        robot.shutdown()
    print(measured, by_legs, sep="\n")
    for result in (measured, by_legs):
        assert np.abs(result.position[:2] - [0.03, -0.02]).max() < 0.008, result.position
    assert measured.scale == pytest.approx(1.08, abs=0.035), "with a measured distance"
    assert by_legs.scale == pytest.approx(1.08, abs=0.035), "with the legs' own odometry"
    result = measured
    overlay = read_overlay(result.write(tmp_path / "flow.yaml"))
    assert overlay["serial"]["flow_scale"] == pytest.approx(result.scale, abs=1e-4)


def test_the_pose_steps_with_the_read_intervals_velocity_and_attitude(tmp_path):
    """With a noise-free flow sensor the pose keeps to the truth through the curving walk within a millimetre:
    each tick's step takes the velocity the tick's corrections leave, which is the read interval's mean, and the
    attitude halfway through the interval. A step taken in the prediction instead, with the previous interval's
    velocity and the attitude at the tick's end, ends several millimetres off: a tick of travel behind, and
    turned into the turns (the test fails on it)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from source_ratio import noisy_description

    cfg = make_config("mujoco", [], robot={"description": str(noisy_description("hexapod", 0.0, tmp_path))})
    fused = walk_beside_truth(cfg, {"fused": lambda g: FusedEstimator(g, flow=g.desc.flow)}, 8.0)["fused"]
    print(f"{1000 * fused.drift:.2f} mm off after {fused.walked:.2f} m")
    assert fused.walked > 1.0
    assert fused.drift < 1.0e-3
