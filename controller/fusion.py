"""One onboard estimator for whatever the robot has: an extended Kalman filter over IMU, legs, flow, mocap.

The IMU's own attitude is taken as given (roll and pitch feed the model; its yaw, which
drifts, is corrected by a yaw offset state). The filter state, 8 numbers::

    x = [p_x, p_y,  v_x, v_y, v_z,  yaw_off,                      b_x, b_y]
         world m    body m/s        rad: world yaw - IMU yaw      m/s: the legs' planar velocity error

The legs' error ``b`` is a random walk (``FusionNoise.legs_bias``): stance feet that slip the same way at
every step (back, on a slope with a limp leg) or miscalibrated joints make the legs read a velocity off by a
steady amount, which flow or mocap make observable; with neither, ``b`` is held at 0.

Prediction every fast tick from the accelerometer and gyro (``v' = v + (a - g_body - w x v) dt``). After the
tick's corrections the pose moves with the velocity they leave, the mean over the read interval, rotated by the
attitude halfway through it: ``p' = p + (Rz(yaw_off) R_mid (I - n nᵀ) v)_xy dt``. (A step before the corrections
would move by the previous interval's velocity and, with the attitude at the tick's end, turn each step half a
tick too far into a turn: a pose a tick of travel behind and off to the inside of every turn.)
The pose moves along the floor: ``n`` is the floor's
normal in the body frame. On a slope it is the plane of the stance feet, so the vertical velocity, which
only the legs and the accelerometer see and with a bias, does not leak into the planar pose through the
slope's tilt. Each set of stance legs (a tripod) keeps its own low-passed plane and how much its legs
disagree on the body's velocity; the planes are averaged with weights 1 / (disagreement² + (0.02 m/s)²): a
limp leg's foot, dragged and not carrying, tilts its tripod's plane 15-20° and disagrees with its
neighbours by 0.17-0.22 m/s RMS, against 0.01-0.07 m/s for a tripod that stands. Where the plane is level
within 2° (blended up to 4°), ``n`` is the IMU's up direction, which makes the step the plain ``(R_imu v)_xy``.
Corrections, each switched on by the state source:

* **legs** (always): the stance legs' body velocity (:class:`controller.leg_odometry.LegOdometry`), read as
  ``v + (b_x, b_y, 0)``.
  A sliding or unloaded foot breaks its assumption, so it is a robust measurement: where its
  normalised innovation exceeds the gate, its noise is inflated by the excess (Huber-like) instead of
  trusted or dropped outright.
* **flow**: the optical-flow sensor's planar body velocity (:mod:`controller.flow_velocity`),
  with its own noise model; unusable readings (no tracking, out of range) are skipped and counted.
* **mocap**: a world pose x, y, yaw from a motion-capture system (:mod:`controller.mocap`), arriving
  late: its innovation is formed against the filter's pose at the frame's time (kept in a short
  history) and the correction applied now.

With the flow, the pose step's motion along the floor's normal is the range finder's on a level floor
(:mod:`controller.range_height`): the filter's vertical velocity misses the body's bob, which the tilt turns into
planar motion. With the flow, the model sees the planar velocity at the read: the flow gives its mean over the read interval, and
half the IMU's predicted change over the tick carries the filter's velocity forward to the read (``_carry_forward``).

Slip indicators: the legs' low-passed normalised innovation (``leg_nis``; with flow, measured
0.005-0.06 walking intact, 0.17-0.25 with a limp leg) and, with flow, the speed at which the legs
disagree with the flow (``slip_speed``: 0.01-0.025 m/s intact, on ice included, 0.034-0.046 m/s
with a limp leg). The legs-only consistency check of :class:`controller.slip.SlipMonitor` runs as
in the plain estimator.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from legadapt.controller.flow_velocity import flow_velocity
from legadapt.controller.leg_odometry import LegOdometry
from legadapt.controller.mocap import MocapFix
from legadapt.controller.range_height import RangeHeightStep
from legadapt.controller.slip import SlipMonitor
from legadapt.controller.state_estimator import GRAVITY, SLIP_THRESHOLD, StateSource
from legadapt.features import state_vector
from legadapt.robot.description import FlowSensorSpec
from legadapt.robot_state import RobotState
from legadapt.sim.gait import PhaseGait
from legadapt.sim.rotations import quat_rotate_inv, quat_to_matrix, rpy_from_quat

P, V, YAW, B = slice(0, 2), slice(2, 5), 5, slice(6, 8)
N_STATE = 8
LEGS_H = np.hstack([np.zeros((3, 2)), np.eye(3), np.zeros((3, 1)), np.eye(3)[:, :2]])  # legs read v + (b_x, b_y, 0)
FLOW_H = np.eye(N_STATE)[[2, 3]]  # the flow reads v_x, v_y
MOCAP_H = np.eye(N_STATE)[[0, 1, YAW]]  # mocap reads p_x, p_y and the yaw (through the offset)
LEG_GATE = 7.8  # chi-square, 3 degrees of freedom, 95 %: beyond it the legs' noise is inflated
HISTORY = 2.0  # s of filter poses kept to place late mocap frames
FLOOR_TAU = 0.5  # s, time constant of each stance set's plane normal and disagreement low-pass
FLOOR_AGREE = 0.02  # m/s: a stance set's legs disagreeing by this much on the body velocity halve its weight
FLOOR_STALE = 4 * FLOOR_TAU  # s: a stance set's plane not seen for this long drops out (a gait whose sets vary)
AHEAD_TAU = 0.3  # s: low-pass of the prediction's velocity change, its steady part (see _carry_forward)
LEVEL_BELOW, SLOPE_ABOVE = np.radians(2.0), np.radians(4.0)  # feet's plane tilt: level below, a slope above, blended


class PoseStep(NamedTuple):
    """What the tick's pose step needs from its prediction (see ``FusedEstimator._move_along_floor``)."""

    stamp: float  # s, the tick's end
    dt: float  # s
    along_floor: np.ndarray  # [2, 3]: body velocity -> planar velocity in the IMU's yaw frame, along the floor


@dataclass
class FusionNoise:
    """Noise densities and measurement noise (SI units); the defaults were tuned on the simulator."""

    accel: float = 1.0  # m/s² per sqrt(Hz): accelerometer, foot impacts and unmodelled body motion
    # accel, legs: tried 0.5-2 m/s²/sqrt(Hz) x 0.05-0.2 m/s with flow (bench/estimator_drift.py): legs 0.05 drifts
    # least with a limp leg (1.6 % against 2.6 % at 0.2), 0.2 least on a side slope (2.7 % against 3.1 %)
    position: float = 0.002  # m per sqrt(s): pose random walk beyond the integrated velocity
    yaw: float = 0.002  # rad per sqrt(s): IMU heading drift
    legs: float = 0.05  # m/s RMS of the stance legs' velocity
    legs_bias: float = 0.01  # m/s per sqrt(s): random walk of the legs' planar velocity bias (with flow or mocap)
    legs_bias0: float = 0.03  # m/s RMS: that bias at the start
    mocap_pos: float = 0.002  # m RMS of a mocap position
    mocap_yaw: float = 0.01  # rad RMS of a mocap heading


@dataclass
class FusionStats:
    """Counters and slip indicators, logged by the daemon."""

    flow_used: int = 0
    flow_skipped: int = 0
    mocap_used: int = 0
    mocap_stale: int = 0
    leg_nis: float = 0.0  # low-passed normalised innovation squared of the legs' velocity
    slip_speed: float = 0.0  # m/s, |legs - flow| low-passed (0 without flow)
    legs_bias: tuple[float, float] = (0.0, 0.0)  # m/s, body x, y: the legs' steady velocity error (the filter's b)
    sources: list[str] = field(default_factory=list)


class FusedEstimator(StateSource):
    """The EKF: legs and IMU always, flow where ``flow`` is given, mocap where ``mocap`` is given.

    ``mocap`` is any object with ``poll(reading) -> list[MocapFix]`` (frames received since the last
    poll, on the reading's clock) and ``close()``: :class:`controller.qualisys.QualisysMocap` on a robot,
    :class:`controller.mocap.SimulatedMocap` in simulation.
    """

    def __init__(self, gait: PhaseGait, flow: FlowSensorSpec | None = None, mocap=None, flow_scale: float = 1.0,
                 noise: FusionNoise | None = None, slip_threshold: float = SLIP_THRESHOLD, min_baseline: float = 0.01):
        self.gait, self.flow, self.mocap, self.flow_scale = gait, flow, mocap, flow_scale
        self.noise = noise or FusionNoise()
        self._slip = SlipMonitor(slip_threshold)
        self.legs = LegOdometry(gait, self._slip, min_baseline)
        self.stats = FusionStats(sources=["imu", "legs", *(["flow"] if flow else []), *(["mocap"] if mocap else [])])
        self._bias_seen = flow is not None or mocap is not None  # the legs' bias is observable only against another source
        self._height = RangeHeightStep(flow.range_timing) if flow is not None else None

    # ------------------------------------------------------------ StateSource
    def reset(self, reading: RobotState) -> None:
        self.legs.reset(reading)
        yaw_imu = rpy_from_quat(reading.imu.quat)[2]
        truth = reading.privileged
        self.x = np.zeros(N_STATE)
        if truth is not None:  # in simulation the pose starts where the robot is
            self.x[P] = truth.pos[:2]
            self.x[YAW] = rpy_from_quat(truth.quat)[2] - yaw_imu
        b0 = self.noise.legs_bias0 if self._bias_seen else 0.0
        self.cov = np.diag([1e-6, 1e-6, 1e-4, 1e-4, 1e-4, 1e-6, b0**2, b0**2])
        self.feet_normal = np.array([0.0, 0.0, 1.0])  # body frame, unit: the stance sets' planes, weighted
        self.floor_normal = self.feet_normal.copy()  # body frame, unit: what the pose moves along (see the module)
        self._planes: dict[tuple[int, ...], tuple[np.ndarray, float, float]] = {}  # legs -> (normal, m²/s² spread, s seen)
        self._t, self._last, self._phase = reading.stamp, reading, 0.0
        self._history: deque[tuple[float, np.ndarray]] = deque()  # (s, world pose x, y, yaw) per tick, with mocap
        self._last_range = float("nan")  # m, the previous flow reading's range
        self._dv_slow = np.zeros(2)  # m/s per tick: the prediction's steady planar velocity change (see _carry_forward)
        self._ahead = np.zeros(2)  # m/s: what carries the planar velocity from the read interval's middle to its end
        self._tilt = 0.0  # rad: the feet's plane from the IMU's level
        if self._height is not None:
            self._height.reset()
        self.stats = FusionStats(sources=self.stats.sources)

    def resume(self, reading: RobotState) -> None:
        """After a reconnection the pose carries on (see ``StateEstimator.resume``)."""
        if not hasattr(self, "x"):
            return self.reset(reading)
        x, y, yaw = self.pose()
        self.reset(reading)
        self.x[P] = (x, y)
        self.x[YAW] = yaw - rpy_from_quat(reading.imu.quat)[2]

    def update(self, reading: RobotState, phase: float) -> None:
        dt = reading.stamp - self._t
        if dt <= 0:
            return
        self._carry_forward(self._predict(reading, dt), dt)
        self._t, self._last, self._phase = reading.stamp, reading, phase
        v_legs, _ = self.legs.update(reading, phase)
        v_flow = self._flow_velocity(reading)
        if v_legs is not None:
            self._correct_legs(v_legs)
            self._track_floor(self.legs.stance_feet, self.legs.stance_implied, self.legs.stance_legs, dt, reading.stamp)
        if v_flow is not None:
            self._correct(v_flow[0], FLOW_H, np.eye(2) * v_flow[1] ** 2)
            if v_legs is not None:
                self.stats.slip_speed += 0.05 * (float(np.linalg.norm(v_legs[:2] - v_flow[0])) - self.stats.slip_speed)
        self._move_along_floor()
        if self._height is not None:
            if v_flow is not None:
                self._move_by_height(reading)
            else:
                self._height.lost()
        self.stats.legs_bias = (float(self.x[B][0]), float(self.x[B][1]))
        if self.mocap is not None:
            for fix in self.mocap.poll(reading):
                self._correct_mocap(fix)
            self._history.append((reading.stamp, self.pose()))  # where late frames are placed
            while self._history[0][0] < reading.stamp - HISTORY:
                self._history.popleft()

    def model_state(self) -> np.ndarray:
        roll, pitch, _ = rpy_from_quat(self._last.imu.quat)
        v = self.x[V].copy()
        v[:2] += self._ahead
        return state_vector(roll, pitch, v, self._last.imu.gyro, self._phase, self._last.q)

    def pose(self) -> np.ndarray:
        yaw = rpy_from_quat(self._last.imu.quat)[2] + self.x[YAW]
        return np.array([self.x[0], self.x[1], (yaw + np.pi) % (2 * np.pi) - np.pi])

    def slip(self) -> SlipMonitor:
        return self._slip

    def close(self) -> None:
        """Release the mocap client (its thread and connection)."""
        if self.mocap is not None:
            self.mocap.close()

    # ------------------------------------------------------------ filter
    def _predict(self, reading: RobotState, dt: float) -> np.ndarray:
        """The prediction over ``dt`` s from the IMU; returns the velocity change it made [3] (m/s, body frame)."""
        imu, x, n = reading.imu, self.x, self.noise
        R_imu = quat_to_matrix(imu.quat)
        R_mid = quat_to_matrix(_midway(self._last.imu.quat, imu.quat))  # the attitude halfway through the tick
        self.floor_normal = n_ = self._floor_normal(R_imu)
        along_floor = R_mid[:2] @ (np.eye(3) - np.outer(n_, n_))  # body velocity -> IMU-yaw planar, along the floor
        self._step = PoseStep(reading.stamp, dt, along_floor)
        w = imu.gyro
        W = np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])
        F = np.eye(N_STATE)
        F[V, V] = np.eye(3) - W * dt
        dv = (imu.acc - quat_rotate_inv(imu.quat, GRAVITY) - np.cross(w, x[V])) * dt
        x[V] += dv
        walk = n.legs_bias**2 * dt if self._bias_seen else 0.0
        Q = np.diag([n.position**2 * dt] * 2 + [n.accel**2 * dt] * 3 + [n.yaw**2 * dt] + [walk] * 2)
        self.cov = F @ self.cov @ F.T + Q
        return dv

    def _move_along_floor(self) -> None:
        """The tick's pose step ``p' = p + Rz(yaw_off) (R_mid (I - n nᵀ) v)_xy dt``, taken after the tick's corrections
        with the velocity they leave: the mean over the read interval, rotated by the attitude halfway through it.
        A linear map of the corrected state, so the covariance follows it exactly."""
        st, x = self._step, self.x
        c, s = np.cos(x[YAW]), np.sin(x[YAW])
        Rz = np.array([[c, -s], [s, c]])
        u = st.along_floor @ x[V]  # m/s, IMU-yaw frame
        G = np.eye(N_STATE)
        G[P, V] = Rz @ st.along_floor * st.dt
        G[P, YAW] = np.array([[-s, -c], [c, -s]]) @ u * st.dt
        x[P] += Rz @ u * st.dt
        self.cov = G @ self.cov @ G.T
        if self._height is not None:  # the step per m/s along the normal ((I - n nᵀ) e_z / n_z), for the range finder
            n = self.floor_normal
            self._height.tick(st.stamp, st.dt, Rz @ st.along_floor[:, 2] / n[2], float(n @ x[V]), self._tilt)

    def _carry_forward(self, dv: np.ndarray, dt: float) -> None:
        """Half of this tick's predicted velocity change ``dv`` [3] (m/s), less its slow part, as ``_ahead``.

        The flow and the legs' finite differences give the mean velocity over the read interval, so the filter's
        velocity is that of the interval's middle, half a tick late; the model wants it at the read. Half the IMU's
        predicted change over the tick carries it there. The prediction also pushes steadily (the accelerometer's
        bias, gravity through the attitude's error) by an amount the corrections take back every tick: that part,
        low-passed over ``AHEAD_TAU``, is left out. Only the model's velocity moves: the pose integrates the
        filter's own (carried forward in the flow's update, it drifted: README, *Seeing slip*). Without the flow
        the filter's velocity follows the legs', noisier than the IMU's half-tick change is useful: left as it is."""
        if self.flow is None:
            return
        self._dv_slow += min(1.0, dt / AHEAD_TAU) * (dv[:2] - self._dv_slow)
        self._ahead = 0.5 * (dv[:2] - self._dv_slow)

    def _correct(self, z: np.ndarray, H: np.ndarray, R: np.ndarray, innovation: np.ndarray | None = None) -> float:
        """Standard EKF update; returns the normalised innovation squared."""
        y = z - H @ self.x if innovation is None else innovation
        S = H @ self.cov @ H.T + R
        K = np.linalg.solve(S, H @ self.cov).T
        self.x += K @ y
        self.cov = (np.eye(N_STATE) - K @ H) @ self.cov
        self.cov = 0.5 * (self.cov + self.cov.T)
        return float(y @ np.linalg.solve(S, y))

    def _correct_legs(self, v_legs: np.ndarray) -> None:
        H = LEGS_H
        R = np.eye(3) * self.noise.legs**2
        y = v_legs - H @ self.x
        nis = float(y @ np.linalg.solve(H @ self.cov @ H.T + R, y))
        self.stats.leg_nis += 0.05 * (nis - self.stats.leg_nis)
        self._correct(v_legs, H, R * max(1.0, nis / LEG_GATE))

    def _track_floor(self, feet: np.ndarray, implied: np.ndarray, legs: tuple[int, ...], dt: float,
                     now: float = 0.0) -> None:
        """Low-pass stance set ``legs``' plane through its ``feet`` [n, 3] m and its legs' disagreement on the body
        velocity (``implied`` [n, 3] m/s), then weigh the stance sets seen within ``FLOOR_STALE`` of ``now`` (s)
        into ``feet_normal``."""
        if len(feet) < 3:
            return
        _, sv, vt = np.linalg.svd(feet - feet.mean(axis=0))
        if sv[1] < 1e-3:  # feet (nearly) in a line: no plane
            return
        n = vt[2] if vt[2, 2] >= 0 else -vt[2]  # the plane's normal, pointing up through the body
        spread = float(((implied - implied.mean(axis=0)) ** 2).sum(axis=1).mean())
        a = min(1.0, dt / FLOOR_TAU)
        normal, spread_lp, _ = self._planes.get(legs, (n, spread, now))
        normal = normal + a * (n - normal)
        self._planes[legs] = (normal / np.linalg.norm(normal), spread_lp + a * (spread - spread_lp), now)
        total = sum(m / (s + FLOOR_AGREE**2) for m, s, seen in self._planes.values() if now - seen <= FLOOR_STALE)
        self.feet_normal = total / np.linalg.norm(total)

    def _floor_normal(self, R_imu: np.ndarray) -> np.ndarray:
        """The floor's normal in the body frame: the IMU's up where the feet's plane is level, else that plane."""
        up = R_imu[2]  # world z in the body frame
        tilt = float(np.arccos(np.clip(up @ self.feet_normal, -1.0, 1.0)))
        w = float(np.clip((tilt - LEVEL_BELOW) / (SLOPE_ABOVE - LEVEL_BELOW), 0.0, 1.0))
        self._tilt = tilt
        n = (1.0 - w) * up + w * self.feet_normal
        return n / np.linalg.norm(n)

    def _flow_velocity(self, reading: RobotState) -> tuple[np.ndarray, float] | None:
        if self.flow is None or reading.flow is None:
            return None
        out = flow_velocity(self.flow, reading.flow, reading.imu.gyro, self.flow_scale, self._last_range)
        self._last_range = reading.flow.range
        if out is None:
            self.stats.flow_skipped += 1
        else:
            self.stats.flow_used += 1
        return out

    def _move_by_height(self, reading: RobotState) -> None:
        """The pose's move for the motion along the floor's normal that the range finder measured (range_height)."""
        fl = reading.flow
        w = reading.imu.gyro if fl.rotation is None else np.asarray(fl.rotation) / fl.interval
        n = self.floor_normal
        lever = float(n @ np.cross(w, np.asarray(self.flow.position, dtype=float)))
        self.x[P] += self._height.correction(fl.stamp, fl.interval, float(fl.range), float(n[2]), lever)

    def _correct_mocap(self, fix: MocapFix) -> None:
        """A late pose: innovation against the filter's pose at the frame's time, applied now."""
        then = next((pose for t, pose in reversed(self._history) if t <= fix.stamp + 1e-9), None)
        if then is None:  # older than the history: too stale to place
            self.stats.mocap_stale += 1
            return
        y = np.array([fix.x - then[0], fix.y - then[1], _wrap(fix.yaw - then[2])])
        n = self.noise
        self._correct(np.zeros(3), MOCAP_H, np.diag([n.mocap_pos**2] * 2 + [n.mocap_yaw**2]), innovation=y)
        self.stats.mocap_used += 1


def _midway(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation halfway between unit quaternions ``a`` and ``b`` [4] (w, x, y, z): their slerp at 1/2."""
    m = a + b if float(a @ b) >= 0.0 else b - a
    return m / np.linalg.norm(m)


def _wrap(angle: float) -> float:
    """``angle`` (rad) into [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi
