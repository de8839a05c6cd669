"""IMU gyro and accelerometer bias from a still period: ``legadapt calibrate imu``.

Procedure (:func:`calibrate_imu`): the robot rests still (standing, or lying unpowered
on its belly — any pose) for ``duration`` s while the IMU block is read at ``rate`` Hz
over the bus (repeated device stamps are dropped). Still means zero angular rate and a
specific force of exactly gravity pointing up, so per sample

* ``gyro_bias = mean(gyro)`` (rad/s, sensor frame),
* ``acc_bias = mean(acc - R(quat)^T [0, 0, g])`` (m/s², sensor frame): gravity is removed
  with the IMU's own orientation ``quat`` (world <- sensor), so the pose does not matter.
  An orientation error of the IMU's fusion leaks into ``acc_bias`` (1° ≈ 0.17 m/s²).

It refuses (:class:`calibration.common.CalibrationError`) when the orientation drifted by
more than ``max_rotation_deg`` between the first and second half: the robot moved.

Result: a config overlay setting ``serial.imu_gyro_bias`` and ``serial.imu_acc_bias``
(the noise figures go in its header comment). ``legadapt run --calibration FILE`` applies
it: ``SerialRobot`` subtracts the biases from every reading. ``ImuBias.read(path)``
loads it back, ``ImuBias.correct(reading)`` does the same subtraction.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from legadapt.calibration import common as K
from legadapt.calibration.overlay import write_yaml
from legadapt.hardware import registers as R
from legadapt.hardware.servo_bus import ServoBus
from legadapt.robot_state import ImuReading
from legadapt.sim.rotations import quat_to_matrix

GRAVITY = 9.81  # m/s², what a still, level IMU reads on z (the simulator's gravity)


@dataclass
class ImuBias:
    """Biases of one IMU (sensor frame) and the spread of its readings while still."""

    gyro_bias: np.ndarray  # [3] rad/s
    acc_bias: np.ndarray  # [3] m/s²
    gyro_std: np.ndarray  # [3] rad/s, sample standard deviation (noise)
    acc_std: np.ndarray  # [3] m/s²
    samples: int  # distinct IMU samples used
    duration: float  # s of the still period
    gravity: float = GRAVITY  # m/s² removed from the accelerometer
    imu_id: int | None = None

    def correct(self, reading: ImuReading) -> ImuReading:
        """``reading`` with the biases subtracted (orientation unchanged)."""
        return ImuReading(quat=reading.quat, gyro=reading.gyro - self.gyro_bias, acc=reading.acc - self.acc_bias)

    def to_overlay(self) -> dict:
        """The config overlay: ``serial.imu_gyro_bias`` (rad/s), ``serial.imu_acc_bias`` (m/s²)."""
        return {"serial": {"imu_gyro_bias": _r(self.gyro_bias), "imu_acc_bias": _r(self.acc_bias)}}

    def write(self, path: str | Path) -> Path:
        """Write the overlay (with the measurement in a comment header) to ``path``."""
        return write_yaml(path, self.to_overlay(), [
            f"legadapt calibrate imu (IMU ID {self.imu_id}): biases from {self.samples} samples over {self.duration:.2f} s still,",
            f"gravity {self.gravity} m/s² removed; noise std gyro {_r(self.gyro_std)} rad/s, acc {_r(self.acc_std)} m/s².",
            "Apply with: legadapt run --calibration <this file> (SerialRobot subtracts the biases from every reading)."])

    @classmethod
    def read(cls, path: str | Path) -> ImuBias:
        """The biases of an overlay written by :meth:`write` (noise and counts are not stored: NaN / 0)."""
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        serial = data.get("serial") if isinstance(data, dict) else None
        if not isinstance(serial, dict) or "imu_gyro_bias" not in serial or "imu_acc_bias" not in serial:
            raise K.CalibrationError(f"{path}: no serial.imu_gyro_bias / imu_acc_bias; write it with legadapt calibrate imu")
        nan = np.full(3, np.nan)
        return cls(np.asarray(serial["imu_gyro_bias"], float), np.asarray(serial["imu_acc_bias"], float), nan, nan, 0, 0.0)


def _r(v: np.ndarray) -> list[float]:
    return [round(float(x), 6) for x in v]


def record_still(bus: ServoBus, imu_id: int, duration: float, rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quaternions [N, 4], gyro [N, 3] (rad/s), acc [N, 3] (m/s²) read at ``rate`` Hz for ``duration`` s.

    Deadlines are absolute (no drift); a sample whose device stamp repeats the previous one is dropped.
    """
    period = 1.0 / rate
    quats, gyros, accs, last = [], [], [], None
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < duration:
        stamp, quat, gyro, acc = R.unpack_imu(bus.read(imu_id, R.IMU_BLOCK_ADDRESS, R.IMU_BLOCK_LENGTH))
        if stamp != last:
            quats.append(quat)
            gyros.append(gyro)
            accs.append(acc)
            last = stamp
        k += 1
        time.sleep(max(0.0, t0 + k * period - time.monotonic()))
    return np.array(quats), np.array(gyros), np.array(accs)


def estimate_bias(quats: np.ndarray, gyros: np.ndarray, accs: np.ndarray, duration: float, gravity: float = GRAVITY,
                  max_rotation_deg: float = 1.0) -> ImuBias:
    """Biases from still readings (see the module docstring); refuses if the orientation drifted."""
    n = len(quats)
    if n < 20:
        raise K.CalibrationError(f"only {n} distinct IMU samples in {duration:.1f} s: is the IMU updating? (need 20)")
    half = n // 2
    drift = np.degrees(_angle(_mean_quat(quats[:half]), _mean_quat(quats[half:])))
    if drift > max_rotation_deg:
        raise K.CalibrationError(f"the robot rotated {drift:.1f}° during the still period (limit {max_rotation_deg}°): keep it still")
    up = np.array([0.0, 0.0, gravity])
    expected = np.einsum("nji,j->ni", np.array([quat_to_matrix(q / np.linalg.norm(q)) for q in quats]), up)  # R^T g
    return ImuBias(gyro_bias=gyros.mean(axis=0), acc_bias=(accs - expected).mean(axis=0), gyro_std=gyros.std(axis=0, ddof=1),
                   acc_std=(accs - expected).std(axis=0, ddof=1), samples=n, duration=duration, gravity=gravity)


def _mean_quat(quats: np.ndarray) -> np.ndarray:
    """Sign-aligned normalised mean of unit quaternions [N, 4] (fine for a tight cluster)."""
    q = quats * np.where(quats @ quats[0] < 0, -1.0, 1.0)[:, None]
    m = q.mean(axis=0)
    return m / np.linalg.norm(m)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Rotation angle (rad) between unit quaternions ``a`` and ``b``."""
    return float(2.0 * np.arccos(np.clip(abs(a @ b), 0.0, 1.0)))


def calibrate_imu(bus: ServoBus, imu_id: int, duration: float = 3.0, rate: float = 200.0, gravity: float = GRAVITY,
                  max_rotation_deg: float = 1.0) -> ImuBias:
    """Record a still period of ``duration`` s at ``rate`` Hz and estimate the biases."""
    result = estimate_bias(*record_still(bus, imu_id, duration, rate), duration, gravity, max_rotation_deg)
    result.imu_id = imu_id
    return result


# ---------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """``legadapt calibrate imu``: the robot must rest still for the whole period."""
    ap = argparse.ArgumentParser(prog="legadapt calibrate imu", description=__doc__.split("\n\n")[0])
    K.add_bus_arguments(ap, "imu")
    ap.add_argument("--duration", type=K.bounded(float, 0.1, 600), default=3.0, help="still period, s (default: %(default)s)")
    ap.add_argument("--rate", type=K.bounded(float, 1, 2000), default=200.0, help="IMU reads per second (default: %(default)s)")
    return K.run_cli(_main, ap.parse_args(argv))


def _main(args: argparse.Namespace) -> int:
    cfg = K.load_config(args.config)
    if cfg.serial.imu_id is None:
        raise K.CalibrationError("serial.imu_id is null in the config: there is no IMU to calibrate")
    if args.emulate:
        from legadapt.sim.fake_robot import FakeRobot

        with FakeRobot(cfg) as fake, K.bus_for(cfg, fake.path) as bus:
            result = calibrate_imu(bus, cfg.serial.imu_id, args.duration, args.rate)
    else:
        print(f"keep the robot still for {args.duration:g} s ...", flush=True)
        with K.bus_for(cfg, args.port) as bus:
            result = calibrate_imu(bus, cfg.serial.imu_id, args.duration, args.rate)
    print(f"gyro bias {np.round(result.gyro_bias, 4).tolist()} rad/s (noise {np.round(result.gyro_std, 4).tolist()})")
    print(f"acc bias  {np.round(result.acc_bias, 4).tolist()} m/s² (noise {np.round(result.acc_std, 4).tolist()}), "
          f"{result.samples} samples")
    print(f"wrote {result.write(args.out)}")
    return 0


__all__ = ["GRAVITY", "ImuBias", "calibrate_imu", "estimate_bias", "main", "record_still"]
