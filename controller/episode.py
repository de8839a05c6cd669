"""One lockstep episode on the simulated robot: the two-rate loop that produces transitions.

Fast loop at the servo rate: gait phase -> joint targets -> write -> physics -> read ->
state source. Slow loop at the control rate: the policy picks the next gait action and
the transition of the period just ended is emitted. Used by ``legadapt collect`` (with
random or model-based policies) and as the reference for the controller's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from controller.open_loop import ramp_to
from controller.state_estimator import make_state_source
from hardware.interface import CallbackReturn, ReturnType
from hardware.sim_robot import SimRobot
from legadapt import config as C
from legadapt.features import body_displacement
from sim.hexapod import make_gait

FALL_TILT = np.radians(60)  # rad
#: policy(model state [S], pose [3], time s) -> gait action [A]
Policy = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


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
    error: str | None = None


class RandomGaitPolicy:
    """Random gait actions: a new uniform target with probability ``change_prob`` per
    period, approached by a low-pass filter, so that strides vary smoothly and abruptly."""

    def __init__(self, cfg: C.RandomPolicyConfig, action_dim: int, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.target = rng.uniform(-1, 1, action_dim)
        self.action = self.target.copy()

    def __call__(self, state: np.ndarray, pose: np.ndarray, t: float) -> np.ndarray:
        if self.rng.random() < self.cfg.change_prob:
            self.target = self.rng.uniform(-1, 1, self.target.shape[0])
        self.action = self.cfg.smoothing * self.action + (1 - self.cfg.smoothing) * self.target
        return np.clip(self.action, -1, 1)


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


def run_episode(cfg: C.LegadaptConfig, policy: Policy, duration: float, state_source: str,
                on_transition: Callable[[Transition], None]) -> EpisodeResult:
    """Stand up, then run ``duration`` s of the two-rate loop on a fresh SimRobot.

    ``cfg.perturbations`` start times count from the end of the stand-up.
    """
    robot = SimRobot(cfg)
    result = EpisodeResult()
    try:
        if robot.configure() is not CallbackReturn.SUCCESS or robot.activate() is not CallbackReturn.SUCCESS:
            result.error = f"could not start the simulated robot: {robot.last_error}"
            return result
        gait = make_gait(robot.hexapod.desc, cfg.gait)
        servo_dt = robot.servo_period
        ticks = max(1, int(round(1.0 / (cfg.task.control_rate * servo_dt))))
        ramp_to(robot, gait.joint_targets(0.0, np.zeros(gait.action_dim)), servo_dt)
        robot.mark_run_start()
        t0 = robot.time
        source = make_state_source(state_source, gait)
        source.reset(robot.state)
        phase = 0.0
        for _ in range(int(round(duration * cfg.task.control_rate))):
            t = robot.time - t0
            s0, pose0 = source.model_state().copy(), source.pose().copy()
            action = np.asarray(policy(s0, pose0, t), dtype=float)
            for _ in range(ticks):
                phase = (phase + gait.params.frequency * servo_dt) % 1.0
                if robot.write(gait.joint_targets(phase, action)) is not ReturnType.OK:
                    result.error = robot.last_error
                    return result
                robot.advance(servo_dt)
                if robot.read() is not ReturnType.OK:
                    result.error = robot.last_error
                    return result
                source.update(robot.state, phase)
            s1, pose1 = source.model_state().copy(), source.pose().copy()
            label = condition_label(cfg.perturbations, robot.time - t0)
            on_transition(Transition(t, label, s0, action, s1, body_displacement(pose0[:2], pose0[2], pose1[:2], pose1[2])))
            result.transitions += 1
            if max(abs(s1[0]), abs(s1[1])) > FALL_TILT:
                result.fell = True
                break
        result.duration = robot.time - t0
        result.final_pose = source.pose().copy()
        return result
    finally:
        robot.shutdown()
