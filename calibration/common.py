"""Pieces every bus calibration shares: the error type, raw servo I/O, the command line.

Raw servo I/O here talks to the servos in their own units (raw positions: 0..4095 at 0.088°
each on an XM430, 0..1023 at 0.29° on an AX: the :class:`hardware.servo_types.ServoType`'s),
never through a :class:`hardware.registers.JointMapping`: calibration finds the mapping, so it
must not depend on one. The bus is the robot description's family (:func:`bus_for`).

Command line: each procedure's ``main(argv)`` takes ``--config`` (robot config YAML;
built-in defaults without it), ``--port`` (overrides ``serial.port``), ``--out`` (the
result YAML) and ``--emulate`` (run against an in-process emulated robot,
:class:`sim.fake_robot.FakeRobot` of the config, instead of the port).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from legadapt.hardware import registers as R
from legadapt.hardware.servo_bus import BusError, PortUnavailable, ServoBus, make_bus
from legadapt.hardware.servo_types import XM430_W350, ServoType, bus_servo_types
from legadapt import config as C
DEFAULT_DIR = Path("runs/calibration")  # where results go unless --out says otherwise


class CalibrationError(RuntimeError):
    """A calibration that cannot give a trustworthy result; the message says why and what to do."""


# ---------------------------------------------------------------- raw servo I/O
def servo_type_of(cfg: C.LegadaptConfig) -> ServoType:
    """The control table of the config's servos (one family per bus; the first joint's model)."""
    return bus_servo_types([s.model for s in cfg.robot_description.joint_servos])[0]


def sync_write_register(bus: ServoBus, ids: Sequence[int], reg: R.Register, values: Sequence[int]) -> None:
    """One Sync Write of ``values`` (register units) to ``reg`` of every servo in ``ids``."""
    bus.sync_write(reg.address, reg.size, {i: R.to_bytes(int(v), reg) for i, v in zip(ids, values)})


def sync_read_register(bus: ServoBus, ids: Sequence[int], reg: R.Register) -> np.ndarray:
    """One group read of ``reg`` from every servo in ``ids`` [len(ids)] (register units, int64)."""
    data = bus.group_read(reg.address, reg.size, ids, fast=False)
    return np.array([R.from_bytes(data[i], reg) for i in ids], dtype=np.int64)


def read_raw_positions(bus: ServoBus, ids: Sequence[int], servo: ServoType = XM430_W350) -> np.ndarray:
    """Present positions [len(ids)] (raw units, ``servo.units.center`` = horn centre)."""
    return sync_read_register(bus, ids, servo.reg("present_position"))


def set_torque(bus: ServoBus, ids: Sequence[int], on: bool, servo: ServoType = XM430_W350) -> None:
    """Torque on or off on every servo in ``ids``; returns once the servos have it (a ping round trip)."""
    sync_write_register(bus, ids, servo.reg("torque_enable"), [int(on)] * len(ids))
    bus.ping(ids[0])


def raw_to_servo_angle(raw: np.ndarray, servo: ServoType = XM430_W350) -> np.ndarray:
    """Servo angle (rad from the horn centre, servo sense) of raw positions."""
    u = servo.units
    return (np.asarray(raw, dtype=float) - u.center) * u.rad_per_position


# ---------------------------------------------------------------- command line
def bounded(cast: type, lo: float, hi: float):
    """An argparse ``type``: ``cast(text)`` within [lo, hi] (finite), else a usage error (exit 2) saying so."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:  # NaN fails both comparisons
            kind = "whole number" if cast is int else "number"
            raise argparse.ArgumentTypeError(f"expected a {kind} in [{lo:g}, {hi:g}], got {text!r}")
        return value
    return parse


def add_bus_arguments(ap: argparse.ArgumentParser, kind: str) -> None:
    """The options every bus procedure takes (see the module docstring)."""
    ap.add_argument("--config", help="robot config YAML (default: built-in defaults)")
    ap.add_argument("--port", help="serial port or pyserial URL (default: serial.port of the config)")
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR / f"{kind}.yaml", help="result YAML (default: %(default)s)")
    ap.add_argument("--emulate", action="store_true", help="run against an in-process emulated robot (MuJoCo behind a pty)")


def load_config(path: str | None) -> C.LegadaptConfig:
    """The config at ``path``, or the built-in defaults."""
    return C.load_config(path) if path else C.parse_config({})


@contextlib.contextmanager
def bus_for(cfg: C.LegadaptConfig, port: str | None = None) -> Iterator[ServoBus]:
    """An open bus of the config's servo family on ``port`` (default ``cfg.serial.port``), closed afterwards."""
    sc = cfg.serial
    bus = make_bus(servo_type_of(cfg).family, port or sc.port, sc.baudrate, sc.timeout, sc.retries)
    try:
        yield bus
    finally:
        bus.close()


EXIT_BAD_INPUT, EXIT_FAULT = 2, 1  # as in controller.cli


def run_cli(body, *args) -> int:
    """Run ``body(*args)``; every failure becomes a message, never a traceback.

    Exit status 2 (bad input; nothing was calibrated): the config, the log, a port that cannot
    be opened, or a robot or log the procedure cannot use (:class:`CalibrationError`).
    Exit status 1: the bus failed during the procedure, or legadapt did (an internal error).
    """
    from legadapt.mcap_log import LogError

    try:
        return body(*args)
    except (CalibrationError, C.ConfigError, LogError, PortUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BusError as exc:
        print(f"error: the servo bus failed during calibration: {exc}", file=sys.stderr)
        return EXIT_FAULT
    except Exception as exc:  # noqa: BLE001 - never a traceback as the user interface
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAULT


__all__ = [
    "DEFAULT_DIR",
    "EXIT_BAD_INPUT",
    "EXIT_FAULT",
    "bounded",
    "CalibrationError",
    "add_bus_arguments",
    "bus_for",
    "load_config",
    "raw_to_servo_angle",
    "read_raw_positions",
    "run_cli",
    "set_torque",
    "sync_read_register",
    "sync_write_register",
]
