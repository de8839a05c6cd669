"""Safety: every joint command passes the filter; tilt and a stale plan lead to a safe stop.

* :class:`SafetyFilter` clamps joint targets inside the joint limits (by ``joint_margin``)
  and limits their rate (``max_joint_speed``), whatever the gait or a planner asks for.
* :class:`SafetyMonitor` raises a stop reason when |roll| or |pitch| exceeds
  ``max_tilt_deg`` or the plan in use is older than ``stale_plan`` s.
* :func:`safe_stop` lowers the body to a crouch over ``stop_time`` s through the filter,
  then deactivates the robot (hold, then torque off) -- walk-these-ways/unitree style.
* :func:`torque_off_now` is what a stop request (SIGTERM/SIGINT) gets: torque off in the
  same fast-loop cycle, no crouch and no hold.
"""

from __future__ import annotations

import numpy as np

from legadapt.hardware.interface import LifecycleState, Robot
from legadapt import config as C
from legadapt.features import IDX_PITCH, IDX_ROLL
from legadapt.sim.gait import PhaseGait


class SafetyFilter:
    """Clamp joint targets [joints] (rad) to limits and rate; remembers the last command."""

    def __init__(self, lower: np.ndarray, upper: np.ndarray, cfg: C.SafetyConfig, period: float) -> None:
        self.lower = np.asarray(lower) + cfg.joint_margin
        self.upper = np.asarray(upper) - cfg.joint_margin
        self.max_step = cfg.max_joint_speed * period  # rad per fast-loop tick
        self.last: np.ndarray | None = None
        self.clamped = 0  # ticks where anything was changed

    def reset(self, q_measured: np.ndarray) -> None:
        """Start from the measured pose (no jump on the first command)."""
        self.last = np.clip(np.asarray(q_measured, dtype=float), self.lower, self.upper)

    def __call__(self, q_target: np.ndarray) -> np.ndarray:
        q = np.clip(np.asarray(q_target, dtype=float), self.lower, self.upper)
        if not np.all(np.isfinite(q)):
            q = self.last.copy() if self.last is not None else np.clip(np.zeros_like(q), self.lower, self.upper)
        if self.last is not None:
            q = self.last + np.clip(q - self.last, -self.max_step, self.max_step)
        self.clamped += int(not np.allclose(q, q_target))
        self.last = q
        return q


class SafetyMonitor:
    """Decides when to stop: tilt beyond the limit, or a plan too old to trust."""

    def __init__(self, cfg: C.SafetyConfig) -> None:
        self.max_tilt = np.radians(cfg.max_tilt_deg)
        self.stale = cfg.stale_plan

    def check(self, model_state: np.ndarray, plan_age: float) -> str | None:
        """A stop reason, or None. ``plan_age`` in s."""
        roll, pitch = model_state[IDX_ROLL], model_state[IDX_PITCH]
        if not (np.isfinite(roll) and np.isfinite(pitch)):
            return "orientation estimate is not finite"
        if max(abs(roll), abs(pitch)) > self.max_tilt:
            return f"tilt limit: roll {np.degrees(roll):+.1f} deg, pitch {np.degrees(pitch):+.1f} deg beyond ±{np.degrees(self.max_tilt):.0f}"
        if plan_age > self.stale:
            return f"stale plan: {plan_age:.2f} s old (limit {self.stale:.2f} s)"
        return None


def crouch_pose(gait: PhaseGait, depth: float) -> np.ndarray:
    """Joint angles [joints] (rad) with the feet at their neutral xy, ``depth`` m below the hips."""
    feet = gait.neutral_feet.copy()
    feet[:, 2] = -depth
    return gait.kin.inverse(feet)


def safe_stop(robot: Robot, gait: PhaseGait, flt: SafetyFilter, cfg: C.SafetyConfig, period: float, tick) -> None:
    """Lower the body over ``cfg.stop_time`` s, then deactivate (hold + torque off).

    ``tick(q)`` writes one filtered command and waits one fast-loop period (lockstep or
    realtime: the caller's clock). Never raises: a failing robot goes straight to torque off.
    """
    try:
        if robot.lifecycle is LifecycleState.ACTIVE and robot.state is not None:
            start = robot.state.q.copy()
            target = crouch_pose(gait, cfg.crouch_height)
            n = max(1, int(round(cfg.stop_time / period)))
            for k in range(1, n + 1):
                tick(flt(start + (target - start) * k / n))
    finally:
        if robot.lifecycle is LifecycleState.ACTIVE:
            robot.deactivate()


def torque_off_now(robot: Robot) -> None:
    """Torque off at once (a stop request): the interface's make-safe path, never raises.

    ``handle_error`` runs the robot's ``on_error``: one broadcast Torque Enable = 0 on the
    serial bus (no reply awaited, then the port is closed), torque off in simulation. The
    robot is left unconfigured (or finalized), never active.
    """
    if robot.lifecycle is LifecycleState.ACTIVE:
        robot.handle_error()
