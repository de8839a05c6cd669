"""Calibration procedures against the emulated robot on a real pty and the MuJoCo hexapod:
servo mounting, IMU bias, bus latency, system identification; their YAML overlays."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from legadapt.calibration import cli
from legadapt.calibration.common import CalibrationError, bus_for, servo_type_of
from legadapt.calibration.excitation import excitation_commands, record_excitation
from legadapt.calibration.imu import ImuBias, calibrate_imu, estimate_bias
from legadapt.calibration.latency import measure_latency, summarize
from legadapt.calibration.overlay import apply_overlay, apply_overlay_files, merge, read_overlay
from legadapt.calibration.replay import load_run
from legadapt.calibration.servos import EmulatorWitness, calibrate_servos, random_mounting
from legadapt.calibration.sysid import identify
from legadapt.hardware.bus import DynamixelBus
from legadapt.hardware.interface import CallbackReturn, ReturnType
from legadapt.hardware.serial_robot import SerialRobot
from legadapt.sim.sim_robot import SimRobot
from legadapt.config import parse_config
from conftest import JOINT_NAMES
from legadapt.sim.fake_robot import FakeRobot
from legadapt.sim.hexapod import make_description
from legadapt.sim.rotations import quat_from_rpy

IMU_ID = 100
LEGADAPT = shutil.which("legadapt", path=str(Path(sys.executable).parent)) or "legadapt"


def serve(cfg, **kwargs) -> FakeRobot:
    return FakeRobot(cfg, **kwargs).start()


# ---------------------------------------------------------------- servos
def _settled(fake, timeout: float = 3.0) -> None:
    """Wait until the unpowered legs have come to rest (no joint moves 1e-4 rad in 0.1 s), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = fake.joint_state()[0].copy()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = fake.joint_state()[0].copy()
        if np.abs(now - last).max() < 1e-4:
            return
        last = now


@pytest.mark.parametrize("robot", ["hexapod", "phantomx", "sts_hexapod"])  # Dynamixel 2.0, 1.0 (AX), Feetech
def test_servo_calibration_recovers_a_wrong_mounting(tmp_path, robot):
    cfg = parse_config({"robot": {"description": robot}})  # the config believes: every direction +1, every offset 0
    desc = cfg.robot_description
    directions, offsets = random_mounting(seed=7, n_joints=len(cfg.serial.servo_ids), max_offset=0.3, flip_prob=0.3,
                                          fit=(desc.lower_limits(), desc.upper_limits(), servo_type_of(cfg)))
    assert (directions < 0).sum() >= 3 and np.abs(offsets).max() > 0.25, "a real test: flipped signs and large offsets"
    fake = serve(cfg, directions=directions, zero_offsets=offsets)
    try:
        with bus_for(cfg, fake.path) as bus:
            result = calibrate_servos(bus, cfg.serial.servo_ids, EmulatorWitness(fake), cfg.robot_description.joint_names,
                                      servo=servo_type_of(cfg))
        np.testing.assert_array_equal(result.directions, directions)
        err = np.abs(result.zero_offsets - offsets)
        print(f"servo offsets: max error {err.max():.5f} rad, mean {err.mean():.5f} rad")
        assert err.max() < 0.01
        assert not fake.torque_enabled().any(), "torque off at the end"

        path = result.write(tmp_path / "servos.yaml")
        overlay = read_overlay(path)
        assert set(overlay) == {"serial"} and set(overlay["serial"]["directions"]) == set(JOINT_NAMES)
        plain = parse_config({"robot": {"description": robot}, "serial": {"port": fake.path}})
        calibrated = apply_overlay_files(plain, [path])
        for c, expect_ok in ((plain, False), (calibrated, True)):
            robot = SerialRobot(c)
            try:
                assert robot.configure() is CallbackReturn.SUCCESS
                _settled(fake)  # a servo's position register is sampled at the servo rate (20 Hz on the PhantomX)
                # the unpowered legs settle under gravity while the bus is read: compare with the true
                # angles bracketing the read (distance to the interval between them)
                before = fake.joint_state()[0].copy()
                assert robot.read() is ReturnType.OK
                after = fake.joint_state()[0]
                lo, hi = np.minimum(before, after), np.maximum(before, after)
                q_err = np.maximum(np.maximum(lo - robot.state.q, robot.state.q - hi), 0.0).max()
            finally:
                robot.shutdown()
            assert bool(q_err < 0.01) == expect_ok, f"SerialRobot reads joint angles off by {q_err:.3f} rad (calibrated: {expect_ok})"
    finally:
        fake.stop()


def test_servo_calibration_refuses_a_joint_that_does_not_move():
    cfg = parse_config({"perturbations": [{"kind": "locked_joint", "joint": "LM_femur"}]})
    fake = serve(cfg)
    try:
        with DynamixelBus(fake.path) as bus, pytest.raises(CalibrationError, match="LM_femur did not follow"):
            calibrate_servos(bus, cfg.serial.servo_ids, EmulatorWitness(fake), cfg.robot_description.joint_names)
    finally:
        fake.stop()


# ---------------------------------------------------------------- IMU
def test_imu_bias_from_a_still_period(tmp_path):
    gyro_bias, acc_bias = np.array([0.05, -0.03, 0.02]), np.array([0.3, -0.2, 0.15])
    cfg = parse_config({"perturbations": [{"kind": "imu_error", "gyro_bias": gyro_bias.tolist(), "acc_bias": acc_bias.tolist(),
                                           "gyro_noise": 0.01, "acc_noise": 0.05}]})
    fake = serve(cfg)
    try:
        with DynamixelBus(fake.path) as bus:
            result = calibrate_imu(bus, IMU_ID, duration=1.5, rate=200)
        still = fake.hexapod.read()
        overlay = result.write(tmp_path / "imu.yaml")
        robot = SerialRobot(apply_overlay_files(parse_config({"serial": {"port": fake.path}}), [overlay]))
        try:  # the overlay applied: SerialRobot subtracts the biases
            assert robot.configure() is CallbackReturn.SUCCESS, robot.last_error
            assert robot.read() is ReturnType.OK
            assert np.abs(robot.state.imu.gyro).max() < 0.05 and abs(np.linalg.norm(robot.state.imu.acc) - 9.81) < 0.2
        finally:
            robot.shutdown()
    finally:
        fake.stop()
    gyro_err, acc_err = np.abs(result.gyro_bias - gyro_bias), np.linalg.norm(result.acc_bias - acc_bias)
    print(f"IMU: gyro bias error {gyro_err.max():.4f} rad/s, acc bias error {acc_err:.4f} m/s² "
          f"({100 * acc_err / np.linalg.norm(acc_bias):.1f} %), {result.samples} samples")
    assert gyro_err.max() < 0.02 and acc_err < 0.1 * np.linalg.norm(acc_bias)
    assert result.samples > 150 and 0.005 < result.gyro_std.mean() < 0.02, "the noise is seen, not averaged into the bias"
    loaded = ImuBias.read(overlay)
    np.testing.assert_allclose(loaded.gyro_bias, result.gyro_bias, atol=1e-6)
    corrected = loaded.correct(still.imu)
    assert np.abs(corrected.gyro).max() < 0.05 and abs(np.linalg.norm(corrected.acc) - 9.81) < 0.2


def test_imu_calibration_refuses_a_robot_that_moves():
    n = 200
    quats = np.array([quat_from_rpy(0.0, 0.0, yaw) for yaw in np.linspace(0.0, 0.2, n)])  # turning 11° in the period
    still = np.tile([0.0, 0.0, 9.81], (n, 1))
    with pytest.raises(CalibrationError, match="rotated"):
        estimate_bias(quats, np.zeros((n, 3)), still, duration=1.0)
    result = estimate_bias(np.tile(quats[0], (n, 1)), np.zeros((n, 3)), still + [0.1, 0.0, 0.0], duration=1.0)
    np.testing.assert_allclose(result.acc_bias, [0.1, 0.0, 0.0], atol=1e-9)


# ---------------------------------------------------------------- latency
def test_latency_rises_by_the_injected_reply_delay():
    """Each phase rises by the reply delay it waits for. On a busy machine scheduling only adds to a duration
    (the medians rose 0.5-1.2 ms more than injected beside a CPU hog, and the baseline's too), so each phase is
    read from its minimum over the cycles. A phase that waits for a delayed reply takes at least the delay, and at
    most its undelayed time plus the delay and the emulator's lateness (its delay is a deadline its polling thread
    meets a little late). The rise alone may read less than the delay: on a loaded machine the undelayed reply
    already waited ~3 ms for the emulator's thread to run, a wait the delay's sleep now covers (16.5 ms of cycle
    rise for 20 ms injected, beside a suite of two workers)."""
    cfg = parse_config({})
    fake = serve(cfg)
    delay = 0.010
    late = 0.0025  # s: the emulator's wake-up lateness allowed on a busy machine
    try:
        with DynamixelBus(fake.path) as bus:
            base = measure_latency(bus, cfg, cycles=100)
            fake.faults.reply_delay = delay
            slow = measure_latency(bus, cfg, cycles=100)
    finally:
        fake.stop()
    rise = {name: slow.phases[name].min - base.phases[name].min for name in base.phases}
    print(f"latency: cycle min {1e3 * base.cycle.min:.2f} -> {1e3 * slow.cycle.min:.2f} ms; rise per phase (ms) "
          + ", ".join(f"{k} {1e3 * v:.2f}" for k, v in rise.items()))
    for name in ("state_read", "imu_read"):  # one reply each
        slowest = base.phases[name].min + delay + late
        assert delay - 0.0005 < slow.phases[name].min < slowest, \
            f"{name} took {1e3 * slow.phases[name].min:.2f} ms (rose {1e3 * rise[name]:.2f} ms), injected {1e3 * delay:g} ms"
    assert abs(rise["write"]) < 0.0015, "a sync write waits for no reply"
    assert 2 * delay - 0.001 < slow.cycle.min < base.cycle.min + 2 * (delay + late), "two replies per cycle"
    assert base.max_servo_rate > slow.max_servo_rate > 0
    if slow.servo_rate is None:  # the rate comes from the p99 cycle, which a busy machine stretches: then it says so
        with pytest.raises(CalibrationError, match="FTDI"):
            slow.overlay()
    else:
        assert apply_overlay(cfg, slow.overlay()).sim.servo_rate <= slow.max_servo_rate


def test_latency_lowers_the_servo_rate_when_the_bus_is_slow():
    cfg = parse_config({})
    fast = summarize(np.full((100, 3), 0.001), cfg)
    assert fast.servo_rate == cfg.sim.servo_rate, "a rate that fits is kept"
    slow = summarize(np.full((100, 3), 0.005), cfg)  # 15 ms a cycle: at most 33 Hz with margin 2
    assert slow.servo_rate == 20.0 and apply_overlay(cfg, slow.overlay()).sim.servo_rate == 20.0
    with pytest.raises(CalibrationError, match="FTDI"):
        summarize(np.full((100, 3), 0.02), cfg).overlay()


# ---------------------------------------------------------------- system identification
def test_sysid_recovers_a_weak_motor_and_a_payload(tmp_path):
    truth = parse_config({"perturbations": [
        {"kind": "weak_motor", "joints": list(JOINT_NAMES), "kp_scale": 0.6, "force_scale": 1.0},
        {"kind": "payload", "mass": 0.8}]})
    robot = SimRobot(truth)
    robot.configure()
    robot.activate()
    try:
        commands = excitation_commands(make_description(truth), truth.gait, truth.sim.servo_rate)
        log = record_excitation(robot, commands, 1.0 / truth.sim.servo_rate, tmp_path / "excitation.mcap")
    finally:
        robot.shutdown()
    run = load_run(log)
    assert run.q.shape == (len(commands), 18) and run.duration == pytest.approx(len(commands) / truth.sim.servo_rate)

    nominal = parse_config({})
    result = identify(run, nominal)
    p = result.named()
    print(f"sysid: kp_scale {p['kp_scale']:.3f} (true 0.6), payload {p['payload_mass']:.3f} kg (true 0.8), kv {p['kv']:.3f}, "
          f"mu {p['floor_friction']:.3f}; RMS {result.rms_nominal:.4f} -> {result.rms_fit:.4f} rad; "
          f"{result.evaluations} simulations in {result.wall_time:.1f} s")
    assert abs(p["kp_scale"] - 0.6) < 0.15 * 0.6
    assert abs(p["payload_mass"] - 0.8) < 0.2
    assert result.rms_fit < 0.2 * result.rms_nominal
    assert result.evaluations <= 125, "bounded work (its wall time depends on what else the machine runs)"

    fitted = apply_overlay_files(nominal, [result.write(tmp_path / "sysid.yaml")])
    assert fitted.robot.servo.kp == pytest.approx(nominal.robot.servo.kp * p["kp_scale"], rel=1e-4)
    assert {q.kind for q in fitted.perturbations} == {"payload", "floor_friction"}


# ---------------------------------------------------------------- overlays and the command line
def test_overlay_merge_rules():
    base = {"serial": {"port": "/dev/x", "directions": {"LF_coxa": -1}},
            "perturbations": [{"kind": "limp_leg", "leg": "LF"}, {"kind": "payload", "mass": 0.2}]}
    out = merge(base, {"serial": {"directions": {"RH_tibia": -1}}, "perturbations": [{"kind": "payload", "mass": 1.0}]})
    assert out["serial"] == {"port": "/dev/x", "directions": {"LF_coxa": -1, "RH_tibia": -1}}
    assert out["perturbations"] == [{"kind": "limp_leg", "leg": "LF"}, {"kind": "payload", "mass": 1.0}]
    assert base["perturbations"][1]["mass"] == 0.2, "the base is not modified"


def test_cli_dispatch_and_latency_on_the_emulator(tmp_path, capsys):
    assert cli.main(["nonsense"]) == 2
    out = tmp_path / "latency.yaml"
    assert cli.main(["latency", "--emulate", "--cycles", "50", "--out", str(out)]) == 0
    assert "allowed servo rate" in capsys.readouterr().out
    data = yaml.safe_load(out.read_text())
    assert apply_overlay(parse_config({}), data).sim.servo_rate == data["sim"]["servo_rate"]


# ---------------------------------------------------------------- bad input: exit 2, a message, no traceback
def _calibrate(*args) -> subprocess.CompletedProcess:
    return subprocess.run([LEGADAPT, "calibrate", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_sysid_refuses_empty_random_and_missing_logs(tmp_path):
    (tmp_path / "empty.mcap").write_bytes(b"")
    (tmp_path / "random.mcap").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "random_body.mcap").write_bytes(b"\x89MCAP0\r\n" + np.random.default_rng(1).bytes(5000))
    (tmp_path / "log.yaml").write_text("task: {duration: 5}\n")
    for name, needle in [("empty.mcap", "empty file"), ("random.mcap", "not an MCAP file"),
                         ("random_body.mcap", "not an MCAP log"), ("missing.mcap", "No such file"),
                         ("log.yaml", "not an MCAP file")]:
        out = _calibrate("sysid", tmp_path / name, "--out", tmp_path / "s.yaml")
        assert out.returncode == 2, (name, out.stderr)
        assert needle in out.stderr and name in out.stderr and "Traceback" not in out.stderr, (name, out.stderr)
    assert not (tmp_path / "s.yaml").exists()


def test_calibration_bad_arguments_config_and_port_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("serial: {imu_gyro_bias: [0, .nan, 0]}\n")
    for args, needle in [(["latency", "--cycles", "0"], "--cycles"), (["imu", "--rate", "nan"], "--rate"),
                         (["latency", "--config", bad], "serial.imu_gyro_bias[1]"),
                         (["latency", "--port", tmp_path / "no-such-port"], "cannot open serial port"),
                         (["sysid", "--max-evaluations", "-3", "x.mcap"], "--max-evaluations")]:
        out = _calibrate(*args)
        assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
