"""One lockstep episode on the simulated robot, through the controller's own two-rate loop.

Used by ``legadapt collect``: a fresh SimRobot, stand-up ramp, then ``duration`` s of the
loop with a slow-loop policy (random gait actions, or the adaptive MPC for the paper's
iterative data aggregation); every control period's transition goes to ``on_transition``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from legadapt.controller.loop import Boundary, SlowPolicy, TwoRateLoop
from legadapt.controller.state_sources import make_state_source
from legadapt.hardware.interface import CallbackReturn
from legadapt.sim.sim_robot import SimRobot
from legadapt import config as C
from legadapt.sim.hexapod import make_gait


@dataclass
class Transition:
    """One control period: the model-state transition and the body displacement."""

    t: float  # s since the run started, at the start of the period
    condition: str
    state: np.ndarray  # [S]
    action: np.ndarray  # [A]
    next_state: np.ndarray  # [S]
    displacement: np.ndarray  # [3] dx m, dy m, dyaw rad (body frame at the start)


@dataclass
class EpisodeResult:
    transitions: int = 0
    fell: bool = False
    duration: float = 0.0  # s walked
    final_pose: np.ndarray = field(default_factory=lambda: np.zeros(3))
    stop_reason: str | None = None
    error: str | None = None


class RandomGaitPolicy(SlowPolicy):
    """Random gait actions: a new uniform target with probability ``change_prob`` per
    period, approached by a low-pass filter, so that strides vary both smoothly and abruptly."""

    def __init__(self, cfg: C.RandomPolicyConfig, action_dim: int, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.target = rng.uniform(-1, 1, action_dim)
        self.action = self.target.copy()

    def plan(self, state: np.ndarray, pose: np.ndarray, t: float, prev_action: np.ndarray | None) -> np.ndarray:
        if self.rng.random() < self.cfg.change_prob:
            self.target = self.rng.uniform(-1, 1, self.target.shape[0])
        self.action = self.cfg.smoothing * self.action + (1 - self.cfg.smoothing) * self.target
        return np.clip(self.action, -1, 1)[None, :]


def condition_label(perturbations: list[C.PerturbationBase], t: float) -> str:
    """Label of the perturbations active at run time ``t`` (s): 'intact' if none."""
    active = [p for p in perturbations if p.start <= t + 1e-9]
    if not active:
        return "intact"
    parts = []
    for p in active:
        args = p.model_dump(exclude={"kind", "start"})
        parts.append(f"{p.kind}(" + ",".join(f"{k}={v}" for k, v in sorted(args.items()) if v not in ({}, None)) + ")")
    return "+".join(sorted(parts))


def run_episode(cfg: C.LegadaptConfig, policy: SlowPolicy, duration: float, state_source: str,
                on_transition: Callable[[Transition], None]) -> EpisodeResult:
    """Stand up, then ``duration`` s of the lockstep loop on a fresh SimRobot (always ends safe)."""
    robot = SimRobot(cfg)
    result = EpisodeResult()
    try:
        if robot.configure() is not CallbackReturn.SUCCESS or robot.activate() is not CallbackReturn.SUCCESS:
            result.error = f"could not start the simulated robot: {robot.last_error}"
            return result
        gait = make_gait(robot.hexapod.desc, cfg.gait)
        control_period = 1.0 / cfg.task.control_rate
        safety = cfg.controller.safety

        def on_cycle(b: Boundary) -> None:
            if b.transition is not None:
                s0, a0, s1, disp = b.transition
                label = condition_label(cfg.perturbations, b.t)
                on_transition(Transition(b.t - control_period, label, s0, a0, s1, disp))
                result.transitions += 1

        loop = TwoRateLoop(robot, gait, make_state_source(state_source, gait, mocap=cfg.mocap, seed=cfg.sim.seed), policy, safety,
                           robot.servo_period, control_period, "lockstep", on_cycle=on_cycle)
        loop.start()
        stats = loop.run(duration + control_period)  # one more boundary closes the last period
        result.stop_reason = stats.stop_reason
        result.fell = bool(stats.stop_reason and stats.stop_reason.startswith("tilt"))
        result.duration = robot.time - loop.t0
        result.final_pose = loop.source.pose().copy()
        return result
    finally:
        robot.shutdown()
