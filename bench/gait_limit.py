"""How far the gait itself can walk a straight line: an upper reference for the planners' progress.

With a limp leg the side that lost it can only stride so far, and the other side must hold
back to keep the heading. This bench asks how far the robot gets in a suite's time when a
controller that knows the truth does only that: the lagging side always at full stride, the
other reduced just enough to steer back onto the line (line-of-sight guidance with a PI
heading loop on the simulator's true pose, at the control rate, no model, no speed target). A grid of steering
gains is run per condition and the farthest run that stays within ``--max-xt`` mean cross-track
is printed beside the best gain overall: if that is short of a goal, no planner on this gait
reaches it either.

Usage: ``python bench/gait_limit.py [--seeds 0 1 2] [--seconds 20] [--conditions all]``
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from legadapt.config import parse_config
from legadapt.controller.open_loop import ramp_to
from legadapt.controller.state_estimator import PrivilegedSource
from legadapt.paths import make_path
from legadapt.sim.hexapod import make_gait
from legadapt.sim.sim_robot import SimRobot

CONDITIONS = {
    "intact": [],
    "limp LF": [{"kind": "limp_leg", "leg": "LF"}],
    "limp LF + uphill 10 deg": [{"kind": "limp_leg", "leg": "LF"}, {"kind": "slope", "pitch_deg": 10}],
    "limp LF + side slope 10 deg": [{"kind": "limp_leg", "leg": "LF"}, {"kind": "slope", "roll_deg": 10}],
}
GAINS = (1.5, 3.0, 6.0)  # turn command per rad of heading error
LOOKAHEADS = (0.15, 0.3, 0.6)  # m, line-of-sight distance ahead on the path
INTEGRAL = (0.0, 0.5, 2.0)  # turn command per rad·s of heading error: the limp side's steady torque


class Steering:
    """Line-of-sight steering with an integral term, for the path y = 0 along +x.

    The heading target points at the line ``lookahead`` m ahead; the turn command is PI on the
    heading error (> 0: turn left); the side on the inside of the turn is reduced by it, the
    outer side stays at full stride."""

    def __init__(self, gain: float, lookahead: float, integral: float, dt: float) -> None:
        self.gain, self.lookahead, self.integral, self.dt = gain, lookahead, integral, dt
        self.sum = 0.0  # rad·s, integrated heading error

    def __call__(self, pose: np.ndarray) -> np.ndarray:
        """Gait action [left, right] for a true pose [x m, y m, yaw rad]."""
        want = -np.arctan2(pose[1], self.lookahead)
        err = float(np.arctan2(np.sin(want - pose[2]), np.cos(want - pose[2])))
        turn = self.gain * err + self.integral * self.sum
        if abs(turn) < 2.0:  # no wind-up while a side is already at its limit
            self.sum += err * self.dt
        return np.clip(np.array([1.0 - max(turn, 0.0), 1.0 - max(-turn, 0.0)]), -1.0, 1.0)


def walk(perturbations: list[dict], seed: int, seconds: float, gain: float, lookahead: float,
         integral: float) -> tuple[float, float]:
    """(progress along the path m, mean |cross-track| m) of one steered walk of ``seconds`` s."""
    cfg = parse_config({"sim": {"seed": seed}, "perturbations": perturbations})
    robot = SimRobot(cfg)
    robot.configure()
    robot.activate()
    path = make_path("straight", 10.0)
    try:
        gait = make_gait(robot.hexapod.desc, cfg.gait)
        period = robot.servo_period
        every = max(1, int(round(1.0 / (cfg.task.control_rate * period))))
        steer = Steering(gain, lookahead, integral, every * period)
        ramp_to(robot, gait.joint_targets(0.0, np.zeros(gait.action_dim)), period)
        truth, phase, action, xts, s = PrivilegedSource(), 0.0, np.zeros(gait.action_dim), [], 0.0
        for k in range(int(round(seconds / period))):
            robot.read()
            if k % every == 0:
                truth.update(robot.state, phase)
                action = steer(truth.pose())
                s, xt, _ = path.project(truth.pose()[:2], s_hint=s)
                xts.append(abs(xt))
            phase = (phase + gait.params.frequency * period) % 1.0
            robot.write(gait.joint_targets(phase, action))
            robot.advance(period)
        robot.read()
        truth.update(robot.state, phase)
        s, _, _ = path.project(truth.pose()[:2], s_hint=s)
    finally:
        robot.shutdown()
    return s, float(np.mean(xts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-xt", type=float, default=0.05, help="m, mean cross-track a run may keep to count")
    ap.add_argument("--conditions", nargs="+", default=["all"], choices=["all", *CONDITIONS])
    args = ap.parse_args()
    names = list(CONDITIONS) if "all" in args.conditions else args.conditions
    print(f"steered walks of {args.seconds:g} s on the truth, seeds {args.seeds}; progress m (mean cross-track cm), "
          f"mean over seeds; gains {GAINS} x lookaheads {LOOKAHEADS} m x integral gains {INTEGRAL}")
    print("| condition | farthest within the cross-track limit | farthest overall |")
    print("|---|---|---|")
    for name in names:
        rows = []
        for gain, look, integral in itertools.product(GAINS, LOOKAHEADS, INTEGRAL):
            runs = np.array([walk(CONDITIONS[name], seed, args.seconds, gain, look, integral) for seed in args.seeds])
            rows.append((runs[:, 0].mean(), runs[:, 1].mean(), gain, look, integral))
        fits = [r for r in rows if r[1] <= args.max_xt]
        cell = lambda r: f"{r[0]:.2f} m ({100 * r[1]:.1f} cm) at gain {r[2]:g}, {r[3]:g} m, integral {r[4]:g}"  # noqa: E731
        best = max(fits, key=lambda r: r[0]) if fits else None
        print(f"| {name} | {cell(best) if best else 'none'} | {cell(max(rows, key=lambda r: r[0]))} |", flush=True)


if __name__ == "__main__":
    main()
