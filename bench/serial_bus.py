"""The fast cycle on each servo bus family: measured over a pty, and the wire arithmetic at the baud rate.

For each family (the robot description that uses it: ``hexapod`` XM430-W350 on Protocol 2.0,
``phantomx`` AX-18A on Protocol 1.0, ``sts_hexapod`` STS3215 on Feetech SCS), 18 servos + the IMU:

* **pty, ours**: ``SerialRobot.write`` + ``read`` against the emulated robot — one Sync Write of
  the goals, the group read of every servo's state block (Fast Sync Read / Sync Read, or one READ
  per servo on AX), one IMU read: what the fast loop does every cycle. Median and p99 (ms).
* **pty, peer**: the manufacturer's SDK reading the same state blocks from the same emulator
  (``dynamixel_sdk`` GroupSyncRead.fastSyncRead; ``dynamixel_sdk`` Protocol 1.0 ``readTxRx`` servo by
  servo; Feetech ``scservo_sdk`` GroupSyncRead), against our group read alone: the ratio says
  whether our Python end costs more than theirs.
* **wire**: the bytes of that cycle at the baud rate (the requests as our codecs build them, the
  replies by the protocol's layout) plus one USB turnaround per round trip (:data:`USB_TURNAROUND`,
  an FTDI adapter with its latency timer at 1 ms; Return Delay Time 0). The highest servo rate
  it allows is what ``legadapt calibrate latency`` would allow on that bus: the bus may use at most
  1/``MARGIN`` of the servo period; the rate the daemon runs is the fastest the config accepts
  under it (``sim.servo_rate``; the latency calibration writes it).

A pty moves bytes at memory speed: the pty figures are the two Python ends (this client and the
emulator thread sharing the machine), not the wire. Usage: ``python bench/serial_bus.py [--cycles 300]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from legadapt.calibration.latency import MARGIN, accepted_servo_rates
from legadapt.config import parse_config
from legadapt.hardware import protocol as P2
from legadapt.hardware import protocol1 as P1
from legadapt.hardware import registers as R
from legadapt.hardware.serial_robot import SerialRobot
from legadapt.hardware.servo_types import ServoType, bus_servo_types
from legadapt.sim.fake_robot import FakeRobot

ROBOTS = ("hexapod", "phantomx", "sts_hexapod")
USB_TURNAROUND = 1.0e-3  # s per request/reply round trip through an FTDI adapter, latency timer 1 ms
BITS_PER_BYTE = 10


def timed(fn: Callable[[], object], cycles: int) -> tuple[float, float]:
    """Median and 99th percentile (ms) of ``fn``."""
    t = []
    for _ in range(cycles):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t) * 1e3, float(np.percentile(t, 99)) * 1e3


def wire_cycle(servo: ServoType, ids: list[int], imu_id: int | None) -> tuple[int, int]:
    """(bytes on the wire, round trips) of one fast cycle: goals written, states read, the IMU read."""
    address, length = servo.state_block()
    goal = servo.reg("goal_position")
    goals = {i: bytes(goal.size) for i in ids}
    n, kind = len(ids), servo.family.group_read_kind()
    if servo.family.protocol == 2:
        tx = len(P2.sync_write_packet(goal.address, goal.size, goals)) + len(P2.fast_sync_read_packet(address, length, ids))
        rx = (length + 4) * n + 10 if kind == "fast_sync_read" else (length + 11) * n
        imu = len(P2.read_packet(imu_id, R.IMU_BLOCK_ADDRESS, R.IMU_BLOCK_LENGTH)) + 11 + R.IMU_BLOCK_LENGTH
        trips = 1
    else:
        tx = len(P1.sync_write_packet(goal.address, goal.size, goals))
        if kind == "sequential":
            tx += n * len(P1.read_packet(ids[0], address, length))
        elif kind == "bulk_read":
            tx += len(P1.bulk_read_packet([(i, address, length) for i in ids]))
        else:
            tx += len(P1.sync_read_packet(address, length, ids))
        rx = (length + 6) * n
        imu = len(P1.read_packet(imu_id, R.IMU_BLOCK_ADDRESS, R.IMU_BLOCK_LENGTH)) + 6 + R.IMU_BLOCK_LENGTH
        trips = n if kind == "sequential" else 1
    return tx + rx + (imu if imu_id is not None else 0), trips + (imu_id is not None)


def peer_reader(servo: ServoType, path: str, ids: list[int]) -> tuple[str, Callable[[], None], Callable[[], None]]:
    """(name, read all state blocks, close) with the manufacturer's SDK."""
    address, length = servo.state_block()
    if servo.family.maker == "Feetech":
        import scservo_sdk as scs
        port, ph = patient(scs.PortHandler)(path), scs.PacketHandler(0)
        port.openPort(), port.setBaudRate(1_000_000)
        group = scs.GroupSyncRead(port, ph, address, length)
        for i in ids:
            group.addParam(i)
        return "scservo_sdk GroupSyncRead", lambda: _ok(group.txRxPacket(), scs.COMM_SUCCESS), port.closePort
    import dynamixel_sdk as dxl
    port = patient(dxl.PortHandler)(path)
    port.openPort(), port.setBaudRate(1_000_000)
    if servo.family.protocol == 2:
        ph = dxl.PacketHandler(2.0)
        group = dxl.GroupSyncRead(port, ph, address, length)
        for i in ids:
            group.addParam(i)
        return "dynamixel_sdk fastSyncRead", lambda: _ok(group.fastSyncRead(), dxl.COMM_SUCCESS), port.closePort
    ph = dxl.PacketHandler(1.0)

    def one_by_one() -> None:
        for i in ids:
            _ok(ph.readTxRx(port, i, address, length)[1], dxl.COMM_SUCCESS)
    return "dynamixel_sdk 1.0 readTxRx x 18", one_by_one, port.closePort


def patient(port_class: type) -> type:
    """The SDK's PortHandler with 200 ms more patience per packet: the emulator shares this process and its
    physics catch-up can hold a reply past the SDK's 34 ms (a timed-out median would measure the timeout)."""
    class Patient(port_class):
        def setPacketTimeout(self, packet_length):  # noqa: N802 (the SDK's name)
            super().setPacketTimeout(packet_length)
            self.packet_timeout += 200.0
    return Patient


def _ok(result: int, success: int) -> None:
    if result != success:
        raise RuntimeError(f"SDK transaction failed: {result}")


def bench_robot(robot: str, cycles: int) -> dict:
    """The figures of one family (see the module docstring)."""
    cfg = parse_config({"robot": {"description": robot}})
    servo = bus_servo_types([s.model for s in cfg.robot_description.joint_servos])[0]
    ids, imu_id = list(cfg.serial.servo_ids), cfg.serial.imu_id
    address, length = servo.state_block()
    with FakeRobot(cfg) as fake:
        time.sleep(0.5)  # the emulator's first physics catch-up
        peer, peer_read, close = peer_reader(servo, fake.path, ids)
        timed(peer_read, 5)  # warm up
        peer_ms = timed(peer_read, cycles)
        close()
        robot_ = SerialRobot(parse_config({"robot": {"description": robot}, "serial": {"port": fake.path}}))
        robot_.configure()
        robot_.activate()
        q = robot_.state.q.copy()
        ours_read = timed(lambda: robot_.bus.group_read(address, length, ids), cycles)
        cycle = timed(lambda: (robot_.write(q), robot_.read()), cycles)
        robot_.shutdown()
    nbytes, trips = wire_cycle(servo, ids, imu_id)
    wire = nbytes * BITS_PER_BYTE / cfg.serial.baudrate + trips * USB_TURNAROUND
    max_rate = 1.0 / (MARGIN * wire)
    fitting = [r for r in accepted_servo_rates(cfg) if r <= max_rate]
    return dict(robot=robot, servo=servo.name, family=servo.family.name, read=servo.family.group_read_kind(),
                cycle=cycle, ours_read=ours_read, peer=peer, peer_read=peer_ms, bytes=nbytes, trips=trips, wire=wire,
                max_rate=max_rate, servo_rate=fitting[0] if fitting else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=300)
    ap.add_argument("--robots", nargs="+", default=list(ROBOTS), choices=ROBOTS)
    args = ap.parse_args()
    rows = [bench_robot(r, args.cycles) for r in args.robots]
    print(f"Fast cycle (write 18 goals + read 18 states + IMU), {args.cycles} cycles; pty figures median / p99 ms")
    print(f"{'robot':12s} {'servo':11s} {'group read':15s} {'pty cycle':>14s} {'pty read ours':>14s} "
          f"{'peer read':>14s} {'ours/peer':>9s}   peer")
    for r in rows:
        print(f"{r['robot']:12s} {r['servo']:11s} {r['read']:15s} {r['cycle'][0]:6.2f} / {r['cycle'][1]:5.2f} "
              f"{r['ours_read'][0]:6.2f} / {r['ours_read'][1]:5.2f} {r['peer_read'][0]:6.2f} / {r['peer_read'][1]:5.2f} "
              f"{r['ours_read'][0] / r['peer_read'][0]:9.2f}   {r['peer']}")
    print(f"\nWire at 1 Mbps, +{USB_TURNAROUND * 1e3:g} ms USB turnaround per round trip; bus <= 1/{MARGIN:g} of the servo period")
    print(f"{'robot':12s} {'bytes':>6s} {'round trips':>11s} {'wire ms':>8s} {'max rate Hz':>11s} {'servo_rate Hz':>13s}")
    for r in rows:
        rate = f"{r['servo_rate']:g}" if r["servo_rate"] else "none fits"
        print(f"{r['robot']:12s} {r['bytes']:6d} {r['trips']:11d} {r['wire'] * 1e3:8.2f} {r['max_rate']:11.1f} {rate:>13s}")


if __name__ == "__main__":
    main()
