"""The emulated serial robot on a real pty: ROBOTIS's own dynamixel_sdk as an independent
client, our DynamixelBus, and injected faults (drops, corrupt bytes, alerts, unplug)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import serial
from dynamixel_sdk import (
    COMM_RX_TIMEOUT,
    COMM_SUCCESS,
    GroupSyncRead,
    GroupSyncWrite,
    PacketHandler,
    PortHandler,
)

from legadapt.hardware import protocol as P
from legadapt.hardware import registers as R
from legadapt.hardware.bus import BusError, BusTimeout, DynamixelBus, ServoError
from legadapt.hardware.interface import CallbackReturn
from legadapt.config import parse_config
from legadapt.sim.fake_robot import FakeRobot, FaultConfig
from legadapt.sim.hexapod import standing_pose

IDS = list(range(1, 19))
IMU_ID = 100


@pytest.fixture
def fake():
    robot = FakeRobot(parse_config({})).start()
    yield robot
    robot.stop()


@pytest.fixture
def sdk(fake):
    port = PortHandler(fake.path)
    assert port.openPort() and port.setBaudRate(1_000_000)
    yield port, PacketHandler(2.0)
    port.closePort()


@pytest.fixture
def bus(fake):
    b = DynamixelBus(fake.path, timeout=0.02, retries=2)
    yield b
    b.close()


def standing_raw(fake: FakeRobot) -> np.ndarray:
    q, _ = standing_pose(fake.hexapod.desc, fake.cfg.gait)
    return fake.mapping.raw_from_q(q)


def u32(v: int) -> bytes:
    return int(v).to_bytes(4, "little", signed=True)


# ---------------------------------------------------------------- dynamixel_sdk as the client
def test_sdk_ping_read_write(sdk):
    port, ph = sdk
    for dxl_id in IDS:
        model, result, error = ph.ping(port, dxl_id)
        assert (model, result, error) == (R.XM430_MODEL_NUMBER, COMM_SUCCESS, 0)
    assert ph.ping(port, IMU_ID)[0] == R.IMU_MODEL_NUMBER
    assert ph.ping(port, 42)[1] == COMM_RX_TIMEOUT, "nobody has ID 42"
    assert ph.read1ByteTxRx(port, 2, 64) == (0, COMM_SUCCESS, 0), "servos power up with torque off"
    assert ph.write1ByteTxRx(port, 2, 64, 1) == (COMM_SUCCESS, 0)
    assert ph.read1ByteTxRx(port, 2, 64) == (1, COMM_SUCCESS, 0)
    goal = int(ph.read4ByteTxRx(port, 2, 132)[0]) - 300  # femur: lift the leg by ~0.46 rad
    assert ph.write4ByteTxRx(port, 2, 116, goal) == (COMM_SUCCESS, 0)
    assert ph.read4ByteTxRx(port, 2, 116) == (goal, COMM_SUCCESS, 0)
    assert ph.write1ByteTxRx(port, 2, 9, 0) == (COMM_SUCCESS, P.ErrorNumber.ACCESS), "EEPROM is locked with torque on"
    assert ph.write4ByteTxRx(port, 2, 116, 4095)[1] == P.ErrorNumber.DATA_LIMIT, "beyond the position limit"
    time.sleep(0.4)
    present = ph.read4ByteTxRx(port, 2, 132)[0]
    assert abs(present - goal) < 40, f"the simulated femur follows its goal: {present} vs {goal}"


def test_sdk_group_sync_write_and_read_18_servos(fake, sdk):
    port, ph = sdk
    torque = GroupSyncWrite(port, ph, 64, 1)
    goals = GroupSyncWrite(port, ph, 116, 4)
    reader = GroupSyncRead(port, ph, 132, 4)
    for dxl_id in IDS:
        assert reader.addParam(dxl_id)
    assert reader.txRxPacket() == COMM_SUCCESS
    start = np.array([reader.getData(i, 132, 4) for i in IDS])
    target = standing_raw(fake)
    for dxl_id, raw in zip(IDS, target):
        goals.addParam(dxl_id, list(u32(raw)))
        torque.addParam(dxl_id, [1])
    assert goals.txPacket() == COMM_SUCCESS and torque.txPacket() == COMM_SUCCESS
    assert ph.ping(port, 1)[1] == COMM_SUCCESS  # a round trip: the sync writes before it are applied
    assert fake.torque_enabled().all()
    np.testing.assert_array_equal(np.round(fake.mapping.raw_from_q(fake.joint_state()[1])), target)
    time.sleep(1.0)
    assert reader.fastSyncRead() == COMM_SUCCESS
    fast = np.array([reader.getData(i, 132, 4) for i in IDS])
    assert reader.txRxPacket() == COMM_SUCCESS
    slow = np.array([reader.getData(i, 132, 4) for i in IDS])
    assert np.abs(fast - slow).max() < 15, "fast and plain sync read agree"
    err0, err = np.abs(start - target), np.abs(slow - target)
    assert err.max() * R.RAD_PER_POSITION < 0.12, f"joints reach their goals: {err}"
    assert err.sum() < 0.2 * err0.sum(), "the robot stood up"
    assert fake.hexapod.read().privileged.pos[2] > 0.09, "torso lifted to standing height"


# ---------------------------------------------------------------- our bus as the client
@pytest.fixture
def patient_bus(fake):
    """A bus that waits 0.1 s for a reply: beside a CPU hog the emulator's thread can be late by more than the
    default fixture's 20 ms (one timeout seen once in a full run), and this test counts every timeout as a fault."""
    b = DynamixelBus(fake.path, timeout=0.1, retries=2)
    yield b
    b.close()


def test_bus_operations_agree_with_the_simulation(fake, patient_bus):
    bus = patient_bus
    assert bus.ping(1) == (R.XM430_MODEL_NUMBER, R.XM430_FIRMWARE)
    assert bus.ping(IMU_ID)[0] == R.IMU_MODEL_NUMBER
    bus.write_int(5, 64, 1, 1)
    assert bus.read_int(5, 64, 1) == 1
    bus.sync_write(64, 1, {i: b"\x01" for i in IDS})
    target = standing_raw(fake)
    bus.sync_write(116, 4, {i: u32(r) for i, r in zip(IDS, target)})
    assert [bus.read_int(i, 116, 4, signed=True) for i in IDS] == list(target)
    time.sleep(1.0)
    block = bus.fast_sync_read(R.STATE_BLOCK_ADDRESS, R.STATE_BLOCK_LENGTH, IDS)
    assert list(block) == IDS
    pos = np.array([int.from_bytes(block[i][6:10], "little", signed=True) for i in IDS])
    plain = bus.sync_read(132, 4, IDS)
    assert np.abs(pos - [int.from_bytes(plain[i], "little", signed=True) for i in IDS]).max() < 15
    assert np.abs(pos - target).max() * R.RAD_PER_POSITION < 0.12
    q_true = fake.joint_state()[0]
    assert np.abs(fake.mapping.q_from_raw(pos) - q_true).max() < 0.05, "raw positions are the simulated joints"
    stamp, quat, gyro, acc = R.unpack_imu(bus.read(IMU_ID, R.IMU_BLOCK_ADDRESS, R.IMU_BLOCK_LENGTH))
    assert np.linalg.norm(quat) == pytest.approx(1.0, abs=1e-5) and stamp > 0
    assert acc[2] == pytest.approx(9.81, abs=0.5) and np.abs(gyro).max() < 0.5, "standing still"
    assert bus.stats.timeouts == bus.stats.crc_errors == bus.stats.retries == 0


def test_bus_over_a_url_without_file_descriptor():
    with DynamixelBus("loop://", timeout=0.01, retries=1) as bus:  # hears its own instruction, which is no reply
        with pytest.raises(BusTimeout):
            bus.ping(1)
        assert bus.stats.timeouts == 2 and bus.stats.retries == 1


def test_servo_errors_are_decoded(bus):
    bus.write_int(4, 64, 1, 1)
    with pytest.raises(ServoError) as info:
        bus.write_int(4, 11, 1, 3)  # operating mode is EEPROM
    assert info.value.servo_id == 4 and info.value.error_number == P.ErrorNumber.ACCESS and not info.value.alert
    with pytest.raises(ServoError, match="data range"):
        bus.write_int(4, 64, 1, 2)
    assert bus.stats.servo_errors == 2 and bus.stats.retries == 0, "a servo's error answer is not retried"


# ---------------------------------------------------------------- faults
def test_dropped_reply_times_out_and_is_retried(fake, bus):
    fake.drop_next(1)
    assert bus.read_int(1, 132, 4) > 0
    assert (bus.stats.timeouts, bus.stats.retries) == (1, 1)
    fake.faults.drop_prob = 1.0
    t0 = time.monotonic()
    with pytest.raises(BusTimeout) as info:
        bus.read(7, 132, 4)
    assert info.value.servo_id == 7 and time.monotonic() - t0 >= 3 * 0.02
    assert (bus.stats.timeouts, bus.stats.retries) == (4, 3), "1 + 2 retries, each timed out"
    fake.faults.drop_prob = 0.0
    fake.drop_next(1)  # one servo of a sync read stays silent once
    assert len(bus.sync_read(132, 4, IDS)) == 18 and bus.stats.retries == 4


def test_corrupt_reply_counts_a_crc_error_and_recovers(fake, bus):
    expected = bus.read(3, 132, 4)
    fake.corrupt_next(1)
    assert abs(int.from_bytes(bus.read(3, 132, 4), "little") - int.from_bytes(expected, "little")) < 20
    assert bus.stats.crc_errors == 1 and bus.stats.retries == 1
    fake.corrupt_next(1)
    assert list(bus.fast_sync_read(132, 4, IDS)) == IDS
    assert bus.stats.crc_errors == 2 and bus.stats.retries == 2
    fake.faults.corrupt_prob = 1.0
    with pytest.raises(BusError, match="corrupt"):
        bus.read(3, 132, 4)


def test_alert_bit_raises_servo_error_and_counts(fake, bus):
    fake.raise_alert(9, R.HW_OVERHEATING)
    with pytest.raises(ServoError) as info:
        bus.read(9, 132, 4)
    assert info.value.alert and info.value.servo_id == 9 and bus.stats.alerts == 1
    with pytest.raises(ServoError) as info:
        bus.fast_sync_read(132, 4, IDS)
    assert info.value.servo_id == 9 and len(info.value.data) == 18, "the other values still arrive"
    bus.raise_on_alert = False
    assert bus.read_int(9, 70, 1) == R.HW_OVERHEATING and bus.stats.alerts == 3
    with pytest.raises(ServoError, match="result fail"):
        bus.write_int(9, 64, 1, 1)  # no torque while the hardware error stands
    bus.reboot(9)
    bus.raise_on_alert = True
    assert bus.read_int(9, 70, 1) == 0
    bus.write_int(9, 64, 1, 1)


def test_silent_servo_and_slow_replies(fake, bus):
    fake.silence(12)
    with pytest.raises(BusTimeout) as info:
        bus.sync_read(132, 4, IDS)
    assert info.value.servo_id == 12
    with pytest.raises(BusTimeout):
        bus.fast_sync_read(132, 4, IDS)
    fake.silence(12, False)
    fake.faults.reply_delay = 0.1  # longer than 3 attempts of 20 ms
    with pytest.raises(BusTimeout):
        bus.ping(1)
    time.sleep(0.2)  # the late replies arrive and are flushed by the next request
    bus.timeout = 0.3
    t0 = time.monotonic()
    assert bus.ping(1)[0] == R.XM430_MODEL_NUMBER
    assert time.monotonic() - t0 >= 0.1


def test_closed_pty_master_is_a_usb_unplug(fake, bus):
    assert bus.ping(1)
    fake.disconnect()
    with pytest.raises(BusError) as info:
        bus.read(1, 132, 4)
    assert isinstance(info.value.__cause__, serial.SerialException)


def test_disconnect_after_configured_time():
    fake = FakeRobot(parse_config({}), FaultConfig(disconnect_after=0.3)).start()
    try:
        with DynamixelBus(fake.path) as bus:
            assert bus.ping(1)
            time.sleep(0.4)
            with pytest.raises(BusError):
                bus.ping(1)
    finally:
        fake.stop()


def test_console_entry_serves_until_sigterm(tmp_path):
    link = tmp_path / "robot"
    proc = subprocess.Popen([sys.executable, "-m", "legadapt.sim.fake_robot_cli", "--link", str(link)], stdout=subprocess.PIPE,
                            text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        proc.stdout.readline()
        path = proc.stdout.readline().strip()
        assert os.path.realpath(link) == path
        with DynamixelBus(str(link)) as bus:
            assert bus.ping(18)[0] == R.XM430_MODEL_NUMBER
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not link.exists()
    finally:
        proc.kill()


def test_fault_schedule_parses_and_refuses_bad_entries():
    from legadapt.sim.fake_faults import ScheduledFault, parse_fault

    assert parse_fault("3:silent:5:1.5") == ScheduledFault(3.0, "silent", target=5, duration=1.5)
    assert parse_fault("0.5:alert:7").count == R.HW_OVERLOAD
    assert parse_fault("2:corrupt:40").count == 40
    for bad in ("3:explode", "x:drop:1", "3:drop", "-1:disconnect", "3:garbage"):
        with pytest.raises(ValueError, match="T:KIND"):
            parse_fault(bad)
    proc = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "fake-robot", "--fault", "3:explode"],
                          capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 2 and "garbage, corrupt, drop, silent, alert, disconnect" in proc.stderr


def test_scheduled_faults_count_from_the_first_torque_enable():
    from legadapt.hardware.serial_robot import SerialRobot
    from legadapt.sim.fake_faults import parse_fault

    lines: list[str] = []
    fake = FakeRobot(parse_config({}), FaultConfig(schedule=(parse_fault("0.3:silent:3:0.6"),)), report=lines.append).start()
    robot = SerialRobot(parse_config({"serial": {"port": fake.path}}))
    try:
        time.sleep(0.5)
        assert robot.configure() is CallbackReturn.SUCCESS and not fake.bus.device(3).silent, "not yet: torque still off"
        assert robot.activate() is CallbackReturn.SUCCESS
        time.sleep(0.3)  # activate took >= 0.2 s: now >= 0.5 s after torque on
        assert fake.bus.device(3).silent
        time.sleep(0.6)
        assert not fake.bus.device(3).silent, "over after its duration"
        assert [line.split(" ", 1)[1] for line in lines] == [
            "torque on (18 of 18 servos on)", "fault: ID 3 silent for 0.6 s", "fault over: ID 3 silent for 0.6 s"]
    finally:
        robot.shutdown()
        fake.stop()
