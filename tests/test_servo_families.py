"""Every servo family on the emulated robot, judged by the makers' own SDKs over real ptys: ROBOTIS's
``dynamixel_sdk`` (Protocol 1.0) against the PhantomX (AX-18A) and an MX-28 variant, Feetech's
``scservo_sdk`` against the STS3215 hexapod; hardware errors and their clearing per family; every wire
fault on every family; and the one-byte-checksum emulator's answers without a pty."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import dynamixel_sdk as dxl
import numpy as np
import pytest
import scservo_sdk as scs
import serial
import yaml

from legadapt.config import parse_config
from legadapt.hardware import protocol1 as P1
from legadapt.hardware import registers as R
from legadapt.hardware.servo_bus import PORT_ERRORS
from legadapt.hardware.servo_types import AX_18A, FAMILIES, MX_28, STS3215
from legadapt.resources import shipped
from legadapt.sim.fake_faults import parse_fault
from legadapt.sim.fake_robot import ECHO_WINDOW, FakeRobot, FaultConfig
from legadapt.sim.hexapod import standing_pose
from legadapt.sim.servo_emulator import ImuTable, ServoTable
from legadapt.sim.servo_emulator1 import OneByteBusEmulator

SLACK_MS = 400.0  # added to every SDK packet timeout: a busy machine may answer late, never wrongly
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERLOAD = 0x20


def patient(port_class: type) -> type:
    """The SDK's own PortHandler with :data:`SLACK_MS` more patience per packet."""

    class Patient(port_class):
        def setPacketTimeout(self, packet_length):  # noqa: N802 (the SDK's name)
            super().setPacketTimeout(packet_length)
            self.packet_timeout += SLACK_MS

    return Patient


def mx28_description(tmp_path) -> str:
    """The PhantomX with MX-28 servos (a description file in ``tmp_path``)."""
    data = yaml.safe_load(shipped("configs", "robots/phantomx.yaml").read_text())
    data["name"] = "phantomx_mx28"
    data["servo"].update(model="MX-28", stall_torque=2.5, max_speed=5.8)
    path = tmp_path / "phantomx_mx28.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def open_fake(description: str, faults: FaultConfig | None = None) -> FakeRobot:
    return FakeRobot(parse_config({"robot": {"description": description}}), faults).start()


def connect(fake: FakeRobot):
    """(port, packet handler) of the maker's SDK for the fake robot's family, port open."""
    if fake.family.maker == "Feetech":
        port, ph = patient(scs.PortHandler)(fake.path), scs.PacketHandler(0)  # 0: little-endian (STS)
    else:
        port, ph = patient(dxl.PortHandler)(fake.path), dxl.PacketHandler(1.0)
    assert port.openPort() and port.setBaudRate(1_000_000)
    return port, ph


@pytest.fixture
def phantomx():
    fake = open_fake("phantomx")
    port, ph = connect(fake)
    yield fake, port, ph
    port.closePort()
    fake.stop()


@pytest.fixture
def sts():
    fake = open_fake("sts_hexapod")
    port, ph = connect(fake)
    yield fake, port, ph
    port.closePort()
    fake.stop()


def standing_raw(fake: FakeRobot) -> np.ndarray:
    q, _ = standing_pose(fake.hexapod.desc, fake.cfg.gait)
    return fake.mapping.raw_from_q(q)


def raw_instruction(port, ph, dxl_id: int, code: int) -> int:
    """Send instruction ``code`` (no parameters) with the SDK's own transport; the status error byte."""
    _, result, error = ph.txRxPacket(port, [0xFF, 0xFF, dxl_id, 2, code, 0])
    assert result == dxl.COMM_SUCCESS
    return error


def coxa_goal(fake: FakeRobot) -> tuple[int, int]:
    """(servo ID, raw goal) that turns the first coxa by 0.5 rad: no load, well inside its limits."""
    servo = fake.servos[0]
    mid = (servo.get("min_position_limit") + servo.get("max_position_limit")) // 2
    return servo.id, mid + round(0.5 / servo.servo.units.rad_per_position)


# ---------------------------------------------------------------- Dynamixel Protocol 1.0: AX-18A
def test_ax_ping_read_write_moves_the_joint(phantomx):
    fake, port, ph = phantomx
    ids = fake.cfg.serial.servo_ids
    for dxl_id in ids:
        assert ph.ping(port, dxl_id) == (AX_18A.model_number, dxl.COMM_SUCCESS, 0)
    assert ph.ping(port, 100)[1] == dxl.COMM_SUCCESS
    assert ph.read2ByteTxRx(port, 100, 0) == (R.IMU_MODEL_NUMBER, dxl.COMM_SUCCESS, 0), "IMU model number at 0"
    assert ph.ping(port, 42)[1] == dxl.COMM_RX_TIMEOUT, "nobody has ID 42"
    dxl_id, goal = coxa_goal(fake)
    assert ph.read1ByteTxRx(port, dxl_id, 24) == (0, dxl.COMM_SUCCESS, 0), "torque off at power-up"
    assert ph.write1ByteTxRx(port, dxl_id, 24, 1) == (dxl.COMM_SUCCESS, 0)
    assert ph.write2ByteTxRx(port, dxl_id, 30, goal) == (dxl.COMM_SUCCESS, 0)
    assert ph.read2ByteTxRx(port, dxl_id, 30) == (goal, dxl.COMM_SUCCESS, 0)
    time.sleep(1.0)
    present = ph.read2ByteTxRx(port, dxl_id, 36)[0]
    assert abs(present - goal) < 15, f"the simulated coxa follows its goal: {present} vs {goal}"
    assert abs(fake.mapping.q_from_raw([present] + [0] * (len(ids) - 1))[0] - fake.joint_state()[0][0]) < 0.05
    # refusals: Dynamixel answers with its error bits and changes nothing
    assert ph.write1ByteTxRx(port, dxl_id, 5, 0) == (dxl.COMM_SUCCESS, 0x08), "EEPROM with torque on: range error"
    assert ph.write2ByteTxRx(port, dxl_id, 30, 1023) == (dxl.COMM_SUCCESS, 0x02), "beyond the CCW angle limit"
    assert ph.write2ByteTxRx(port, dxl_id, 36, 0) == (dxl.COMM_SUCCESS, 0x08), "Present Position is read-only"
    assert ph.read2ByteTxRx(port, dxl_id, 30)[0] == goal
    assert raw_instruction(port, ph, dxl_id, P1.Instruction.REBOOT) == 0x40, "AX has no REBOOT: instruction error"


def test_ax_sync_write_stands_the_robot_and_group_reads_fail(phantomx):
    fake, port, ph = phantomx
    ids = fake.cfg.serial.servo_ids
    target = standing_raw(fake)
    torque, goals = dxl.GroupSyncWrite(port, ph, 24, 1), dxl.GroupSyncWrite(port, ph, 30, 2)
    for dxl_id, raw in zip(ids, target):
        assert goals.addParam(dxl_id, list(int(raw).to_bytes(2, "little"))) and torque.addParam(dxl_id, [1])
    assert goals.txPacket() == dxl.COMM_SUCCESS and torque.txPacket() == dxl.COMM_SUCCESS
    assert ph.ping(port, ids[0])[1] == dxl.COMM_SUCCESS  # a round trip: the sync writes before it are applied
    assert fake.torque_enabled().all()
    np.testing.assert_array_equal(np.round(fake.mapping.raw_from_q(fake.joint_state()[1])), target)
    time.sleep(1.5)
    present = np.array([ph.read2ByteTxRx(port, i, 36)[0] for i in ids])
    assert np.abs(present - target).max() * AX_18A.units.rad_per_position < 0.15, present - target
    assert fake.hexapod.read().privileged.pos[2] > 0.06, "torso lifted"
    # AX has neither Sync Read nor Bulk Read: the SDK refuses the first, the servos ignore the second
    reader = dxl.GroupSyncRead(port, ph, 36, 2)
    assert not reader.addParam(ids[0]) and reader.txRxPacket() == dxl.COMM_NOT_AVAILABLE
    bulk = dxl.GroupBulkRead(port, ph)
    for dxl_id in ids[:3]:
        bulk.addParam(dxl_id, 36, 2)
    assert bulk_read(port, ph, bulk) == dxl.COMM_RX_TIMEOUT
    assert fake.bus.stats.by_instruction[P1.Instruction.BULK_READ] == 1 and fake.bus.stats.unknown_instructions == 1
    port.ser.write(P1.sync_read_packet(36, 2, ids[:3]))  # a Sync Read frame anyway: no answer either
    port.setPacketTimeout(6)
    assert ph.rxPacket(port)[1] == dxl.COMM_RX_TIMEOUT


def bulk_read(port, ph, group) -> int:
    """``group.txRxPacket()`` in Protocol 1.0, from the SDK's own parts (dynamixel-sdk 4.1's GroupBulkRead passes
    Protocol 2.0's extra argument to Protocol 1.0's bulkReadTx)."""
    group.makeParam()
    result = ph.bulkReadTx(port, group.param, len(group.data_dict) * 3)
    return result if result != dxl.COMM_SUCCESS else group.rxPacket()


# ---------------------------------------------------------------- Dynamixel Protocol 1.0: MX-28
def test_mx28_bulk_read_and_reboot_clears_an_overload(tmp_path):
    fake = open_fake(mx28_description(tmp_path))
    port, ph = connect(fake)
    try:
        ids = fake.cfg.serial.servo_ids
        assert ph.ping(port, ids[0]) == (MX_28.model_number, dxl.COMM_SUCCESS, 0)
        bulk = dxl.GroupBulkRead(port, ph)
        for dxl_id in ids:
            assert bulk.addParam(dxl_id, 36, 2)
        assert bulk_read(port, ph, bulk) == dxl.COMM_SUCCESS
        raw = np.array([bulk.getData(i, 36, 2) for i in ids])
        assert np.abs(fake.mapping.q_from_raw(raw) - fake.joint_state()[0]).max() < 0.05, "the simulated joints"
        dxl_id = ids[4]
        assert ph.write1ByteTxRx(port, dxl_id, 24, 1) == (dxl.COMM_SUCCESS, 0)
        fake.raise_alert(dxl_id)
        assert ph.read2ByteTxRx(port, dxl_id, 36)[2] == OVERLOAD and not fake.torque_enabled()[4]
        assert ph.write1ByteTxRx(port, dxl_id, 24, 1) == (dxl.COMM_SUCCESS, OVERLOAD), "no torque until REBOOT"
        assert not fake.torque_enabled()[4]
        assert raw_instruction(port, ph, dxl_id, P1.Instruction.REBOOT) == 0, "cleared by REBOOT (the reply follows it)"
        assert ph.ping(port, dxl_id) == (MX_28.model_number, dxl.COMM_SUCCESS, 0)
        assert ph.write1ByteTxRx(port, dxl_id, 24, 1) == (dxl.COMM_SUCCESS, 0) and fake.torque_enabled()[4]
    finally:
        port.closePort()
        fake.stop()


# ---------------------------------------------------------------- Feetech STS3215
def test_sts_ping_read_write_sync_write_and_sync_read(sts):
    fake, port, ph = sts
    ids = fake.cfg.serial.servo_ids
    assert ids == list(range(1, len(ids) + 1))
    for dxl_id in ids:
        assert ph.ping(port, dxl_id) == (STS3215.model_number, scs.COMM_SUCCESS, 0)
    assert ph.read2ByteTxRx(port, 100, 0) == (R.IMU_MODEL_NUMBER, scs.COMM_SUCCESS, 0), "IMU model number at 0"
    dxl_id, goal = coxa_goal(fake)
    assert ph.write1ByteTxRx(port, dxl_id, 40, 1) == (scs.COMM_SUCCESS, 0)
    assert ph.write2ByteTxRx(port, dxl_id, 42, goal) == (scs.COMM_SUCCESS, 0)
    assert ph.read2ByteTxRx(port, dxl_id, 42) == (goal, scs.COMM_SUCCESS, 0)
    # Feetech ignores a refused write without an error bit
    assert ph.write2ByteTxRx(port, dxl_id, 42, 4095) == (scs.COMM_SUCCESS, 0), "beyond the position limit"
    assert ph.write1ByteTxRx(port, dxl_id, 7, 9) == (scs.COMM_SUCCESS, 0), "EEPROM with torque on"
    assert ph.read2ByteTxRx(port, dxl_id, 42)[0] == goal and ph.read1ByteTxRx(port, dxl_id, 7)[0] == 0
    target = standing_raw(fake)
    torque, goals = scs.GroupSyncWrite(port, ph, 40, 1), scs.GroupSyncWrite(port, ph, 42, 2)
    for i, raw in zip(ids, target):
        assert goals.addParam(i, list(int(raw).to_bytes(2, "little"))) and torque.addParam(i, [1])
    assert goals.txPacket() == scs.COMM_SUCCESS and torque.txPacket() == scs.COMM_SUCCESS
    time.sleep(1.5)
    assert fake.torque_enabled().all()
    reader = scs.GroupSyncRead(port, ph, 56, 2)
    for i in ids:
        assert reader.addParam(i)
    assert reader.txRxPacket() == scs.COMM_SUCCESS
    present = np.array([reader.getData(i, 56, 2) for i in ids])
    assert np.abs(present - target).max() * STS3215.units.rad_per_position < 0.15, present - target
    assert np.abs(fake.mapping.q_from_raw(present) - fake.joint_state()[0]).max() < 0.05
    assert fake.hexapod.read().privileged.pos[2] > 0.06, "torso lifted"


# ---------------------------------------------------------------- hardware errors, per family
@pytest.mark.parametrize("description", ["phantomx", "sts_hexapod"])
def test_an_alert_shows_in_every_status_and_a_torque_enable_write_clears_it(description):
    """AX and STS have no REBOOT: the overload bit rides on every status until the host writes Torque Enable."""
    fake = open_fake(description)
    port, ph = connect(fake)
    try:
        dxl_id, torque = fake.cfg.serial.servo_ids[2], {"phantomx": 24, "sts_hexapod": 40}[description]
        assert ph.write1ByteTxRx(port, dxl_id, torque, 1)[1] == 0 and fake.torque_enabled()[2]
        fake.raise_alert(dxl_id)
        assert not fake.torque_enabled()[2], "the overload cut the torque"
        model = ph.ping(port, dxl_id)
        assert model[1:] == (0, OVERLOAD), model
        assert ph.read1ByteTxRx(port, dxl_id, torque) == (0, 0, OVERLOAD)
        if description == "sts_hexapod":
            assert ph.read1ByteTxRx(port, dxl_id, 65)[0] == OVERLOAD, "STS status register"
        assert ph.read1ByteTxRx(port, fake.cfg.serial.servo_ids[3], torque)[2] == 0, "the other servos are fine"
        assert ph.write1ByteTxRx(port, dxl_id, torque, 1) == (0, 0), "re-armed"
        assert fake.torque_enabled()[2] and ph.ping(port, dxl_id)[2] == 0
    finally:
        port.closePort()
        fake.stop()


# ---------------------------------------------------------------- wire faults, per family
def failed(port, result: int) -> bool:
    """Whether an SDK call failed; whatever it left unread goes (Feetech's clearPort keeps input)."""
    time.sleep(0.05)
    port.ser.reset_input_buffer()
    return result != 0


@pytest.mark.parametrize("description", ["phantomx", "sts_hexapod"])
def test_every_fault_kind_on_the_family(description):
    schedule = (parse_fault("0:garbage:0.8"), parse_fault("0:alert:5"))
    fake = open_fake(description, FaultConfig(schedule=schedule))
    port, ph = connect(fake)
    sdk = scs if fake.family.maker == "Feetech" else dxl
    torque = {"phantomx": 24, "sts_hexapod": 40}[description]
    ids = fake.cfg.serial.servo_ids
    try:
        assert ph.write1ByteTxRx(port, ids[0], torque, 1)[0] == 0  # the first torque enable: the schedule starts
        assert failed(port, ph.read2ByteTxRx(port, ids[0], 0)[1]), "garbage on the line"
        time.sleep(1.0)
        port.ser.reset_input_buffer()
        assert ph.read2ByteTxRx(port, 5, 0)[1:] == (0, OVERLOAD), "the scheduled alert"
        fake.drop_next(1)
        assert ph.read2ByteTxRx(port, ids[1], 0)[1] == sdk.COMM_RX_TIMEOUT
        assert ph.read2ByteTxRx(port, ids[1], 0)[1] == 0
        fake.corrupt_next(1)
        assert failed(port, ph.read2ByteTxRx(port, ids[1], 0)[1]) and fake.stats.replies_corrupted >= 1
        fake.silence(ids[1])
        assert ph.ping(port, ids[1])[1] == sdk.COMM_RX_TIMEOUT
        fake.silence(ids[1], False)
        fake.faults.reply_delay = 0.1
        t0 = time.monotonic()
        assert ph.ping(port, ids[1])[1] == 0 and time.monotonic() - t0 >= 0.1
        fake.faults.reply_delay = 0.0
        fake.disconnect()
        # whichever call notices the hang-up first: a read (SerialException) or the SDK's flush, tcdrain (termios.error,
        # seen beside a CPU hog); the bus takes both as a lost port
        with pytest.raises(PORT_ERRORS):
            ph.read2ByteTxRx(port, ids[1], 0)
    finally:
        port.closePort()
        fake.stop()


def test_a_frame_equal_to_a_reply_just_sent_is_not_an_instruction():
    fake = open_fake("phantomx")
    try:
        with serial.Serial(fake.path, 1_000_000, timeout=2.0) as line:
            dxl_id = fake.cfg.serial.servo_ids[0]
            line.write(P1.ping_packet(dxl_id))
            reply = line.read(6)
            assert reply == P1.status_packet(dxl_id)
            seen = fake.bus.stats.instructions
            line.write(reply)  # heard back at once: an echo
            time.sleep(0.2)
            assert fake.bus.stats.instructions == seen and line.in_waiting == 0
            line.write(reply)  # again: an instruction now (code 0x00, which no family has)
            assert line.read(6) == P1.status_packet(dxl_id, 0x40)
            assert ECHO_WINDOW >= 0.2
    finally:
        fake.stop()


def test_the_cli_serves_the_robot_the_config_describes(tmp_path):
    config = tmp_path / "sts.yaml"
    config.write_text(yaml.safe_dump({"robot": {"description": "sts_hexapod"}}))
    proc = subprocess.Popen([sys.executable, "-m", "legadapt.sim.fake_robot_cli", "--config", str(config)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert "STS3215 servos (feetech_sts bus" in proc.stdout.readline()
        port = patient(scs.PortHandler)(proc.stdout.readline().strip())
        assert port.openPort() and port.setBaudRate(1_000_000)
        assert scs.PacketHandler(0).ping(port, 1)[0] == STS3215.model_number
        port.closePort()
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


# ---------------------------------------------------------------- the emulator without a pty
def frame(raw: bytes) -> P1.Frame:
    return P1.decode_frame(raw)


def test_broadcast_status_return_level_and_refusals_on_dynamixel():
    servos = [ServoTable(i, AX_18A, 200, 800) for i in (3, 1, 2)]
    bus = OneByteBusEmulator([*servos, ImuTable(100)], FAMILIES["dynamixel_ax"])
    assert [i for i, _ in bus.handle(frame(P1.ping_packet(P1.BROADCAST_ID)))] == [1, 2, 3, 100], "ID order"
    assert bus.handle(frame(P1.write_packet(P1.BROADCAST_ID, 25, b"\x01"))) == [] and all(s.get("led") for s in servos)
    assert bus.handle(frame(P1.read_packet(1, 250, 4))) == [(1, P1.status_packet(1, 0x08))], "beyond the table"
    assert bus.handle(frame(P1.write_packet(1, 30, b"\x00"))) == [(1, P1.status_packet(1, 0x08))], "half a register"
    assert bus.handle(frame(P1.write_packet(1, 30, (900).to_bytes(2, "little"))))[0][1] == P1.status_packet(1, 0x02)
    assert bus.handle(frame(P1.encode_packet(1, P1.Instruction.READ, b"\x24"))) == [(1, P1.status_packet(1, 0x08))]
    assert bus.handle(frame(P1.encode_packet(1, P1.Instruction.REG_WRITE, b"\x1e\x58\x02")))[0][1] == P1.status_packet(1)
    assert servos[1].get("goal_position") == 500 and servos[1].get("registered") == 1
    assert bus.handle(frame(P1.encode_packet(P1.BROADCAST_ID, P1.Instruction.ACTION))) == []
    assert servos[1].get("goal_position") == 600 and servos[1].get("registered") == 0
    servos[1].set("status_return_level", 1)  # READ only
    assert bus.handle(frame(P1.write_packet(1, 25, b"\x00"))) == [] and servos[1].get("led") == 0
    assert len(bus.handle(frame(P1.read_packet(1, 25, 1)))) == 1
    servos[1].set("status_return_level", 0)  # PING only
    assert bus.handle(frame(P1.read_packet(1, 25, 1))) == [] and len(bus.handle(frame(P1.ping_packet(1)))) == 1
    servos[2].silent = True
    assert [i for i, _ in bus.handle(frame(P1.ping_packet(P1.BROADCAST_ID)))] == [1, 3, 100]


def test_group_reads_and_silent_refusals_on_feetech_and_mx():
    servos = [ServoTable(i, STS3215) for i in (1, 2, 3)]
    bus = OneByteBusEmulator(servos, FAMILIES["feetech_sts"])
    for s, pos in zip(servos, (100, 200, 300)):
        s.set("present_position", pos)
    replies = bus.handle(frame(P1.sync_read_packet(56, 2, [3, 1, 2])))
    assert [r for _, r in replies] == [P1.status_packet(i, 0, p.to_bytes(2, "little")) for i, p in ((3, 300), (1, 100), (2, 200))]
    servos[0].silent = True
    assert [i for i, _ in bus.handle(frame(P1.sync_read_packet(56, 2, [3, 1, 2])))] == [3], "the chain stops at a silent servo"
    assert bus.handle(frame(P1.reboot_packet(2))) == [], "no REBOOT on STS: no reply"
    assert bus.handle(frame(P1.read_packet(2, 250, 4))) == [], "beyond the table: no reply"
    assert bus.handle(frame(P1.write_packet(2, 56, b"\x00\x00"))) == [(2, P1.status_packet(2))], "ignored, no bit"
    assert servos[1].get("present_position") == 200
    servos[1].set("status_return_level", 0)  # Feetech 0: PING and READ only
    assert bus.handle(frame(P1.write_packet(2, 41, b"\x05"))) == [] and len(bus.handle(frame(P1.read_packet(2, 41, 1)))) == 1
    mx = [ServoTable(i, MX_28) for i in (1, 2)]
    bus = OneByteBusEmulator(mx, FAMILIES["dynamixel_mx"])
    replies = bus.handle(frame(P1.bulk_read_packet([(2, 36, 2), (1, 30, 4)])))
    assert [i for i, _ in replies] == [2, 1] and len(P1.decode_frame(replies[1][1]).params) == 4
    assert bus.handle(frame(P1.sync_read_packet(36, 2, [1, 2]))) == [], "no Sync Read on MX (broadcast: no reply)"
