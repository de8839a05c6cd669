"""A flow sensor's reading -> the body's planar velocity, the inverse of :mod:`sim.flow_sensor`'s model.

From the image motion over the read interval (counts), the range along the sensor's axis (m)
and the body rate w (rad/s, body frame): the lens velocity is ``v_x = range * (w_y - rate_x)``,
``v_y = -range * (w_x + rate_y)``, and the torso's is that minus ``w x r`` for the lens offset r.
The image motion is an integral over the interval, so w is the board's gyro integrated over the
same interval where the reading carries it (``FlowReading.rotation``); without it, the IMU's
rate at the read. A walking body rocks at every footfall, and a rate sampled once per read
misses most of that rotation, which then reads as velocity (README, *Seeing slip*).
"""

from __future__ import annotations

import numpy as np

from legadapt.robot.description import FlowSensorSpec
from legadapt.robot_state import FlowReading


def flow_velocity(spec: FlowSensorSpec, reading: FlowReading, gyro: np.ndarray,
                  scale: float = 1.0, previous_range: float = float("nan")) -> tuple[np.ndarray, float] | None:
    """(torso velocity x, y [2] in m/s, body frame; its noise, m/s RMS), or None if the reading is unusable.

    ``gyro`` (rad/s, body frame) is the IMU's rate, used where the reading carries no rotation.

    ``scale`` multiplies ``counts_per_rad`` (``legadapt calibrate flow`` finds it). Unusable: no
    tracking (squal 0), no range, out of focus, or a read interval too short to carry motion.
    ``previous_range`` (m): the previous read's range; for a ranger read at the read
    (``spec.range_timing == 'read'``) the interval's range is the mean of it and this read's.
    """
    rng = interval_range(spec, reading.range, previous_range)
    if reading.squal == 0 or not np.isfinite(rng) or rng < spec.min_range or reading.interval < 1e-3:
        return None
    rate = np.asarray(reading.delta, dtype=float) / (spec.counts_per_rad * scale * reading.interval)  # rad/s
    w = np.asarray(gyro if reading.rotation is None else reading.rotation / reading.interval, dtype=float)
    lens = np.array([rng * (w[1] - rate[0]), -rng * (w[0] + rate[1])])
    r = np.asarray(spec.position)
    torso = lens - np.cross(w, r)[:2]
    # noise: the rate noise, one count of quantisation over the interval, and the range noise on the speed
    rate_sd = np.hypot(spec.rate_noise, 1.0 / (spec.counts_per_rad * reading.interval))
    speed = float(np.linalg.norm(lens))
    return torso, float(np.hypot(rng * rate_sd, speed * spec.range_noise / rng))


def interval_range(spec: FlowSensorSpec, range_now: float, previous_range: float) -> float:
    """The range (m) over the read interval: the reading's own where the ranger already gives its mean over the
    interval (``range_timing == 'interval'``), else the mean of the ranges at its two ends where both are known."""
    if spec.range_timing == "read" and np.isfinite(range_now) and np.isfinite(previous_range):
        return 0.5 * (range_now + previous_range)
    return range_now
