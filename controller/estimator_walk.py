"""Onboard estimators beside the simulator's truth on one open-loop walk: their velocity error and drift.

The walk is the gait alone (no planner): ``seconds`` of curving right, then left, at full stride,
so that an estimator is judged on the same motion every time. Used by ``bench/estimator_drift.py``
and the estimator tests.

With ``measure_slide`` the walk also integrates, at every physics step, how the feet on the floor
slide (:meth:`sim.backend.PhysicsBackend.floor_slide`: their material velocity at the contact
points, weighted by normal force). A stance foot's slide is motion that leg odometry reads as the
body's own, so its integral is what an estimator on legs and IMU alone cannot help drifting by.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from legadapt import config as C
from legadapt.controller.open_loop import ramp_to
from legadapt.controller.state_estimator import PrivilegedSource, StateSource
from legadapt.features import SLICE_VEL
from legadapt.sim.gait import PhaseGait
from legadapt.sim.hexapod import make_gait
from legadapt.sim.sim_robot import SimRobot

SETTLE_TICKS = 25  # fast ticks (0.5 s) before velocity errors count: the start-up transient


@dataclass
class EstimateError:
    """One estimator on one walk, against the truth."""

    vel_rmse: np.ndarray  # [3] m/s, body-frame velocity RMSE x, y, z
    drift: float  # m, final position error
    walked: float  # m, distance the true robot covered (start to end)
    source: StateSource  # the estimator, for its own counters
    slid: float = float("nan")  # m, how far the loaded feet slid over the walk, integrated (NaN: not measured)

    @property
    def drift_percent(self) -> float:
        """Final position error as % of the distance walked."""
        return 100.0 * self.drift / max(self.walked, 1e-9)

    @property
    def slide_percent(self) -> float:
        """How far the loaded feet slid, as % of the distance walked (NaN: not measured)."""
        return 100.0 * self.slid / max(self.walked, 1e-9)


def walk_beside_truth(cfg: C.LegadaptConfig, sources: dict[str, Callable[[PhaseGait], StateSource]],
                      seconds: float = 8.0, measure_slide: bool = False) -> dict[str, EstimateError]:
    """Walk ``cfg``'s simulated robot with every source built by ``sources`` fed the same readings (and, with
    ``measure_slide``, the feet's slide integrated: see the module)."""
    robot = SimRobot(cfg)
    robot.configure()
    robot.activate()
    try:
        gait = make_gait(robot.hexapod.desc, cfg.gait)
        period = robot.servo_period
        ramp_to(robot, gait.joint_targets(0.0, np.zeros(gait.action_dim)), period)
        robot.read()
        truth, built = PrivilegedSource(), {name: make(gait) for name, make in sources.items()}
        for s in (truth, *built.values()):
            s.reset(robot.state)
        start, phase, n, slid = truth.pose().copy(), 0.0, int(round(seconds / period)), np.zeros(3)
        errors: dict[str, list[np.ndarray]] = {name: [] for name in built}
        for k in range(n):
            phase = (phase + gait.params.frequency * period) % 1.0
            robot.write(gait.joint_targets(phase, np.array([1.0, 0.4]) if k < n // 2 else np.array([0.3, 1.0])))
            if measure_slide:
                slid += _advance_measuring_slide(robot, period)
            else:
                robot.advance(period)
            robot.read()
            for s in (truth, *built.values()):
                s.update(robot.state, phase)
            if k >= SETTLE_TICKS:
                for name, s in built.items():
                    errors[name].append(s.model_state()[SLICE_VEL] - truth.model_state()[SLICE_VEL])
    finally:
        robot.shutdown()
    walked = float(np.linalg.norm(truth.pose()[:2] - start[:2]))
    slide = float(np.linalg.norm(slid)) if measure_slide else float("nan")
    return {name: EstimateError(np.sqrt((np.array(errors[name]) ** 2).mean(axis=0)),
                                float(np.linalg.norm(s.pose()[:2] - truth.pose()[:2])), walked, s, slide)
            for name, s in built.items()}


def _advance_measuring_slide(robot: SimRobot, duration: float) -> np.ndarray:
    """Advance ``duration`` s one physics step at a time; the loaded feet's slide over it [3] (m, world frame)."""
    backend = robot.hexapod.backend
    moved = np.zeros(3)
    for _ in range(int(round(duration / backend.timestep))):
        robot.advance(backend.timestep)
        velocity, _ = backend.floor_slide()
        moved += velocity * backend.timestep
    return moved
