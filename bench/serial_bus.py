"""Servo-bus transaction times against the fake robot on a pty (no wire: the software cost).

Timed, each the median and 99th percentile of ``--cycles`` repetitions:

* ``dynamixel_sdk`` (ROBOTIS's client) GroupSyncRead.fastSyncRead of 18 present positions;
* ``DynamixelBus`` one Sync Write of 18 goals + one Sync Read of 18 state blocks (10 bytes);
* the same with Fast Sync Read;
* ``SerialRobot`` write + read: one sync write, one fast sync read, one IMU read —
  what the fast loop does every cycle.

A pty carries bytes at memory speed, so these are the costs of the two Python ends (this
client and the emulator thread). On a real bus add the wire time (1 Mbps, 18 servos:
sync write ≈ 1.1 ms, fast sync read ≈ 0.3 ms + 18 × 14 bytes ≈ 2.8 ms), the servos'
return delay (set 0) and the USB latency timer (set 1 ms).
Usage: ``python bench/serial_bus.py [--cycles 500]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np


from dynamixel_sdk import COMM_SUCCESS, GroupSyncRead, PacketHandler, PortHandler  # noqa: E402

from legadapt.hardware import registers as R  # noqa: E402
from legadapt.hardware.bus import DynamixelBus  # noqa: E402
from legadapt.hardware.serial_robot import SerialRobot  # noqa: E402
from legadapt.config import parse_config  # noqa: E402
from legadapt.sim.fake_robot import FakeRobot  # noqa: E402

IDS = list(range(1, 19))


def timed(fn: Callable[[], object], cycles: int) -> tuple[float, float]:
    """Median and 99th percentile (ms) of ``fn``."""
    t = []
    for _ in range(cycles):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t) * 1e3, float(np.percentile(t, 99)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=500)
    n = ap.parse_args().cycles
    rows = []
    with FakeRobot(parse_config({})) as fake:
        port, ph = PortHandler(fake.path), PacketHandler(2.0)
        port.openPort()
        port.setBaudRate(1_000_000)
        reader = GroupSyncRead(port, ph, 132, 4)
        for i in IDS:
            reader.addParam(i)

        def sdk_fast() -> None:
            assert reader.fastSyncRead() == COMM_SUCCESS

        rows.append(("dynamixel_sdk fast sync read (18 x 4 B)", *timed(sdk_fast, n)))
        port.closePort()

        with DynamixelBus(fake.path) as bus:
            pos = {i: v for i, v in bus.sync_read(132, 4, IDS).items()}
            for name, read in (("sync read", bus.sync_read), ("fast sync read", bus.fast_sync_read)):
                def cycle(read=read) -> None:
                    bus.sync_write(116, 4, pos)
                    read(R.STATE_BLOCK_ADDRESS, R.STATE_BLOCK_LENGTH, IDS)

                rows.append((f"DynamixelBus sync write + {name} (18 x 10 B)", *timed(cycle, n)))

        robot = SerialRobot(parse_config({"serial": {"port": fake.path}}))
        robot.configure()
        robot.activate()
        robot.read()
        q = robot.state.q.copy()

        def robot_cycle() -> None:
            robot.write(q)
            robot.read()

        rows.append(("SerialRobot write + read (+ IMU read)", *timed(robot_cycle, n)))
        robot.shutdown()
    print(f"{'transaction':52s} {'median ms':>10s} {'p99 ms':>8s}   ({n} cycles, pty)")
    for name, med, p99 in rows:
        print(f"{name:52s} {med:10.3f} {p99:8.3f}")


if __name__ == "__main__":
    main()
