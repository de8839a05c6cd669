"""Bus round trip of one fast cycle and the servo rate it allows: ``legadapt calibrate latency``.

One fast cycle is what ``SerialRobot`` does every servo period: a Sync Write of 18 goal
positions, a (Fast) Sync Read of the state block (current, velocity, position) of the
18 servos, and one READ of the IMU block. :func:`measure_latency` times ``cycles`` of
them back to back on the host's monotonic clock (``time.perf_counter``), each phase
separately. The goals written are the servos' present positions (clipped to their
limits), so nothing moves whether torque is on or off.

The allowed servo rate keeps the bus busy at most ``1 / margin`` of each period at the
99th percentile: ``max_servo_rate = 1 / (margin * p99(cycle))``. The rate written
(``sim.servo_rate``) is the configured one if it fits, else the fastest rate below
``max_servo_rate`` that the config accepts (a whole number of physics steps per period)
and that divides into whole ticks per control period (``task.control_rate``).

What makes a real bus slow (``hardware.bus``): Return Delay Time (``SerialRobot`` sets 0)
and the FTDI latency timer (16 ms by default; 1 ms with ``deploy/99-legadapt-ftdi.rules``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from legadapt.calibration import common as K
from legadapt.calibration.overlay import write_yaml
from legadapt.hardware import registers as R
from legadapt.hardware.servo_bus import ServoBus
from legadapt.hardware.servo_types import XM430_W350, ServoType
from legadapt import config as C

PHASES = ("write", "state_read", "imu_read")
MARGIN = 2.0  # the bus may use at most 1/MARGIN of a servo period (p99)


@dataclass
class PhaseStats:
    """Durations of one phase over all cycles (s); ``min`` is the floor the bus and the servos set, which the
    host's scheduling can only add to."""

    min: float
    median: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray) -> PhaseStats:
        return cls(float(np.min(values)), float(np.median(values)), float(np.percentile(values, 99)),
                   float(np.max(values)))


@dataclass
class LatencyResult:
    """Fast-cycle timing and the servo rate it allows."""

    cycles: int
    cycle: PhaseStats  # s, whole cycle
    phases: dict[str, PhaseStats]  # s, per phase in PHASES
    retries: int  # bus retries during the measurement (timeouts, corrupt replies)
    margin: float
    max_servo_rate: float  # Hz, 1 / (margin * p99 cycle)
    configured_servo_rate: float  # Hz, sim.servo_rate of the config
    servo_rate: float | None  # Hz, what to run at; None if no accepted rate is slow enough

    def overlay(self) -> dict:
        """The config overlay ``sim: {servo_rate}``."""
        if self.servo_rate is None:
            raise K.CalibrationError(f"the bus allows at most {self.max_servo_rate:.1f} Hz, below any servo rate the config "
                                     f"accepts: set Return Delay Time 0 and the FTDI latency timer to 1 ms (hardware.bus)")
        return {"sim": {"servo_rate": float(self.servo_rate)}}

    def write(self, path: str | Path) -> Path:
        """Write the overlay YAML, with the measurements in its comment header, to ``path``."""
        def ms(seconds: float) -> str:
            return f"{1e3 * seconds:.2f} ms"

        return write_yaml(path, self.overlay(), [
            f"legadapt calibrate latency: {self.cycles} fast cycles (sync write + state sync read + IMU read)",
            f"cycle median {ms(self.cycle.median)}, p99 {ms(self.cycle.p99)}, max {ms(self.cycle.max)}",
            *(f"  {name}: median {ms(s.median)}, p99 {ms(s.p99)}" for name, s in self.phases.items()),
            (f"allowed servo rate (bus <= 1/{self.margin:g} of the period at p99): {self.max_servo_rate:.1f} Hz; "
             f"configured {self.configured_servo_rate:g} Hz")])


def measure_cycles(bus: ServoBus, ids: Sequence[int], imu_id: int | None, cycles: int = 200,
                   fast_sync_read: bool = True, servo: ServoType = XM430_W350) -> np.ndarray:
    """Durations [cycles, 3] (s) of the phases ``PHASES`` of ``cycles`` fast cycles, back to back: the
    ``SerialRobot``'s own transactions (its group read of the state block; one READ per servo on AX)."""
    ids = list(ids)
    goal_reg = servo.reg("goal_position")
    lo = K.sync_read_register(bus, ids, servo.reg("min_position_limit"))
    hi = K.sync_read_register(bus, ids, servo.reg("max_position_limit"))
    goals = {i: R.to_bytes(int(v), goal_reg) for i, v in zip(ids, np.clip(K.read_raw_positions(bus, ids, servo), lo, hi))}
    address, length = servo.state_block()
    out = np.zeros((cycles, 3))
    clock = time.perf_counter
    for k in range(cycles):
        t0 = clock()
        bus.sync_write(goal_reg.address, goal_reg.size, goals)
        t1 = clock()
        bus.group_read(address, length, ids, fast=fast_sync_read)
        t2 = clock()
        if imu_id is not None:
            bus.read(imu_id, R.IMU_BLOCK_ADDRESS, R.IMU_BLOCK_LENGTH)
        out[k] = (t1 - t0, t2 - t1, clock() - t2)
    return out


def accepted_servo_rates(cfg: C.LegadaptConfig) -> list[float]:
    """Servo rates (Hz, fastest first) the config accepts that give whole ticks per control period."""
    rates = []
    for steps in range(1, round(1.0 / (10.0 * cfg.sim.timestep)) + 1):
        rate = 1.0 / (steps * cfg.sim.timestep)
        ticks = rate / cfg.task.control_rate
        if 10.0 <= rate <= 500.0 and abs(ticks - round(ticks)) < 1e-6 and round(ticks) >= 1:
            rates.append(round(rate, 6))
    return rates


def summarize(durations: np.ndarray, cfg: C.LegadaptConfig, retries: int = 0, margin: float = MARGIN) -> LatencyResult:
    """Statistics of phase ``durations`` [N, 3] (s) and the servo rate they allow under ``cfg``."""
    cycle = PhaseStats.of(durations.sum(axis=1))
    max_rate = 1.0 / (margin * cycle.p99)
    configured = cfg.sim.servo_rate
    fitting = [r for r in accepted_servo_rates(cfg) if r <= max_rate]
    chosen = configured if configured <= max_rate else (fitting[0] if fitting else None)
    return LatencyResult(len(durations), cycle, {n: PhaseStats.of(durations[:, i]) for i, n in enumerate(PHASES)}, retries,
                         margin, max_rate, configured, chosen)


def measure_latency(bus: ServoBus, cfg: C.LegadaptConfig, cycles: int = 200, margin: float = MARGIN) -> LatencyResult:
    """Time ``cycles`` fast cycles on ``bus`` for the robot of ``cfg`` and summarise them."""
    sc = cfg.serial
    retries = bus.stats.retries
    durations = measure_cycles(bus, sc.servo_ids, sc.imu_id, cycles, sc.fast_sync_read, K.servo_type_of(cfg))
    return summarize(durations, cfg, bus.stats.retries - retries, margin)


# ---------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """``legadapt calibrate latency``: time the fast cycle, write ``sim.servo_rate``."""
    ap = argparse.ArgumentParser(prog="legadapt calibrate latency", description=__doc__.split("\n\n")[0])
    K.add_bus_arguments(ap, "latency")
    ap.add_argument("--cycles", type=K.bounded(int, 1, 100_000), default=300, help="fast cycles timed (default: %(default)s)")
    ap.add_argument("--margin", type=K.bounded(float, 1, 100), default=MARGIN, help="period / p99 cycle time at least (default: %(default)s)")
    ap.add_argument("--delay", type=K.bounded(float, 0, 1), default=0.0, help="with --emulate: the emulator's reply delay, s")
    return K.run_cli(_main, ap.parse_args(argv))


def _main(args: argparse.Namespace) -> int:
    cfg = K.load_config(args.config)
    if args.emulate:
        from legadapt.sim.fake_robot import FakeRobot, FaultConfig

        with FakeRobot(cfg, FaultConfig(reply_delay=args.delay)) as fake, K.bus_for(cfg, fake.path) as bus:
            result = measure_latency(bus, cfg, args.cycles, args.margin)
    else:
        with K.bus_for(cfg, args.port) as bus:
            result = measure_latency(bus, cfg, args.cycles, args.margin)
    for name, s in [("cycle", result.cycle), *result.phases.items()]:
        print(f"{name:10s} min {1e3 * s.min:6.2f} ms  median {1e3 * s.median:6.2f} ms  p99 {1e3 * s.p99:6.2f} ms  max {1e3 * s.max:6.2f} ms")
    print(f"allowed servo rate {result.max_servo_rate:.1f} Hz (margin {result.margin:g}); configured "
          f"{result.configured_servo_rate:g} Hz; retries {result.retries}")
    print(f"wrote {result.write(args.out)} (servo_rate {result.servo_rate} Hz)")
    return 0


__all__ = ["MARGIN", "PHASES", "LatencyResult", "PhaseStats", "accepted_servo_rates", "main", "measure_cycles",
           "measure_latency", "summarize"]
