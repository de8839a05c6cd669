"""Open-loop walking: drive a robot with the tripod gait at a fixed gait action.

The main job until the adaptive controller exists, and the measuring stick of the gait
(forward speed, turn rate, slope walking). Works on any :class:`hardware.Robot`; it
advances simulated time itself when the robot is a lockstep simulation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from legadapt.hardware.interface import LifecycleState, ReturnType, Robot
from legadapt.sim.gait import PhaseGait
from legadapt.sim.rotations import rpy_from_quat

RAMP_TIME = 1.0  # s, from the measured pose to the standing pose


@dataclass
class WalkResult:
    """What an open-loop walk did, measured on the privileged (true) state where available."""

    duration: float  # s of robot time walked
    start_xy: np.ndarray  # [2] m
    end_xy: np.ndarray  # [2] m
    yaw_change: float  # rad, unwrapped
    max_tilt: float  # rad, largest |roll| or |pitch| seen
    fell: bool
    wall_time: float  # s
    trace: list[tuple[float, float, float, float]] = field(default_factory=list)  # (t s, x m, y m, yaw rad)

    @property
    def displacement(self) -> np.ndarray:
        return self.end_xy - self.start_xy

    @property
    def speed(self) -> float:
        """Mean speed over ground (m/s)."""
        return float(np.linalg.norm(self.displacement) / self.duration)

    @property
    def turn_rate(self) -> float:
        """Mean yaw rate (rad/s), positive counter-clockwise."""
        return self.yaw_change / self.duration


def _step(robot: Robot, q: np.ndarray, period: float) -> None:
    if robot.write(q) is not ReturnType.OK:
        raise RuntimeError(f"{robot.name}: write failed: {robot.last_error}")
    advance = getattr(robot, "advance", None)
    if advance is not None:
        advance(period)
    else:
        time.sleep(period)
    if robot.read() is not ReturnType.OK:
        raise RuntimeError(f"{robot.name}: read failed: {robot.last_error}")


def ramp_to(robot: Robot, q_target: np.ndarray, period: float, duration: float = RAMP_TIME) -> None:
    """Move linearly from the measured joint pose to ``q_target`` [joints] (rad) over ``duration`` s."""
    robot.read()
    q_start = robot.state.q.copy()
    n = max(1, int(round(duration / period)))
    for k in range(1, n + 1):
        _step(robot, q_start + (q_target - q_start) * k / n, period)


def walk_open_loop(robot: Robot, gait: PhaseGait, action: np.ndarray, duration: float, period: float,
                   fall_tilt: float = np.radians(60)) -> WalkResult:
    """Ramp in, then walk with a constant gait ``action`` for ``duration`` s at servo ``period`` s.

    The robot must be ACTIVE. Ends early if it falls (|roll| or |pitch| > ``fall_tilt`` rad).
    """
    if robot.lifecycle is not LifecycleState.ACTIVE:
        raise RuntimeError(f"{robot.name} must be active to walk (it is {robot.lifecycle.value})")
    wall0 = time.perf_counter()
    ramp_to(robot, gait.joint_targets(0.0, np.zeros(gait.action_dim)), period)
    mark = getattr(robot, "mark_run_start", None)
    if mark is not None:
        mark()
    s0 = robot.state
    start_xy, yaw_prev = _pose(s0)
    yaw_total, max_tilt, fell, t0 = 0.0, 0.0, False, s0.stamp
    trace = [(0.0, *start_xy, yaw_prev)]
    phase = 0.0
    for _ in range(int(round(duration / period))):
        phase = (phase + gait.params.frequency * period) % 1.0
        _step(robot, gait.joint_targets(phase, action), period)
        s = robot.state
        xy, yaw = _pose(s)
        yaw_total += (yaw - yaw_prev + np.pi) % (2 * np.pi) - np.pi
        yaw_prev = yaw
        roll, pitch, _ = rpy_from_quat(s.imu.quat)
        max_tilt = max(max_tilt, abs(roll), abs(pitch))
        trace.append((s.stamp - t0, *xy, yaw_total))
        if max_tilt > fall_tilt:
            fell = True
            break
    end = robot.state
    return WalkResult(duration=end.stamp - t0, start_xy=start_xy, end_xy=_pose(end)[0], yaw_change=yaw_total,
                      max_tilt=max_tilt, fell=fell, wall_time=time.perf_counter() - wall0, trace=trace)


def _pose(state) -> tuple[np.ndarray, float]:
    """Planar position [2] (m) and yaw (rad): true pose if privileged, else IMU yaw at origin."""
    if state.privileged is not None:
        return state.privileged.pos[:2].copy(), float(rpy_from_quat(state.privileged.quat)[2])
    return np.zeros(2), float(rpy_from_quat(state.imu.quat)[2])
