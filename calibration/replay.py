"""Replaying a recorded log's joint commands in simulation.

A log (``legadapt.mcap_log``) is usable for system identification when its ``command``
channel carries the joint targets written to the servos (rad, ``q`` [18]) and its
``state`` channel the measured joint angles (``q`` [18]) — :mod:`calibration.excitation`
records such logs on any robot. (The controller daemon's ``command`` channel carries
the *measured* joint angles at the control rate, not the targets: replaying it would
fit nonsense.)

:func:`simulate_run` builds the simulated hexapod of a config, puts it standing in the
log's first commanded pose (torso height from the leg kinematics), lets it settle
holding that pose, then writes every command at its log time (relative to the first
command) and samples the simulated joint angles at every state time. Deterministic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from legadapt import config as C
from legadapt.mcap_read import read_log
from legadapt.sim.hexapod import SimulatedHexapod
from legadapt.sim.kinematics import LegKinematics

SETTLE = 0.5  # s holding the first command before the replay starts


@dataclass
class LoggedRun:
    """Joint commands and measured joint angles of one log, times in s from the first command."""

    t_cmd: np.ndarray  # [K] s
    q_cmd: np.ndarray  # [K, 18] rad
    t_state: np.ndarray  # [N] s, each >= 0
    q: np.ndarray  # [N, 18] rad
    source: str = ""

    @property
    def duration(self) -> float:
        """s from the first command to the last state sample."""
        return float(self.t_state[-1]) if len(self.t_state) else 0.0


def load_run(path: str | os.PathLike) -> LoggedRun:
    """The commands and joint readings of an MCAP log; ValueError if it has too few."""
    log = read_log(path, channels=["state", "command"])
    cmds = [m for m in log.messages.get("command", []) if m.get("q") is not None]
    states = [m for m in log.messages.get("state", []) if m.get("q") is not None]
    if len(cmds) < 10 or len(states) < 10:
        raise ValueError(f"{path}: {len(cmds)} command and {len(states)} state messages; sysid needs at least 10 of each")
    t_cmd = np.array([m["t"] for m in cmds], dtype=float)
    t_state = np.array([m["t"] for m in states], dtype=float)
    q_cmd = np.array([m["q"] for m in cmds], dtype=float)
    q = np.array([m["q"] for m in states], dtype=float)
    order_c, order_s = np.argsort(t_cmd, kind="stable"), np.argsort(t_state, kind="stable")
    t0 = t_cmd[order_c[0]]
    keep = t_state[order_s] >= t0
    run = LoggedRun(t_cmd[order_c] - t0, q_cmd[order_c], t_state[order_s][keep] - t0, q[order_s][keep], str(path))
    if not (np.isfinite(run.q_cmd).all() and np.isfinite(run.q).all()):
        raise ValueError(f"{path}: non-finite joint commands or readings")
    return run


def standing_height(desc, q: np.ndarray) -> float:
    """Torso height (m) at which the lowest foot of pose ``q`` [18] just touches a flat floor."""
    lowest = float(LegKinematics(desc).forward(q)[:, 2].min())
    return max(-lowest + desc.foot_radius, 0.5 * desc.body_size[2]) + 0.002


def simulate_run(cfg: C.LegadaptConfig, run: LoggedRun, settle: float = SETTLE) -> np.ndarray:
    """Simulated joint angles [N, 18] (rad) at ``run.t_state`` when ``run.q_cmd`` is replayed on ``cfg``'s robot."""
    hx = SimulatedHexapod.from_config(cfg)
    try:
        q0, height = run.q_cmd[0], standing_height(hx.desc, run.q_cmd[0])
        hx.reset(q0, height)
        # again, physics only: a payload starting at reset re-runs mj_setConst, which moves MuJoCo's data to the
        # model's qpos0 (legs straight out); the model changes (masses, gains, friction) stay
        hx.backend.reset(q0, height)
        hx.write(q0)
        hx.advance(settle)
        dt = hx.backend.timestep
        done = 0  # physics steps since the first command
        k, out = 0, np.empty_like(run.q)
        for i, t in enumerate(run.t_state):
            while k < len(run.t_cmd) and run.t_cmd[k] <= t + 1e-9:
                done = _advance_to(hx, done, run.t_cmd[k], dt)
                hx.write(run.q_cmd[k])
                k += 1
            done = _advance_to(hx, done, t, dt)
            out[i] = hx.read().q
        return out
    finally:
        hx.backend.close()


def _advance_to(hx: SimulatedHexapod, done: int, t: float, dt: float) -> int:
    """Step the physics up to time ``t`` (s from the first command); returns the steps done so far."""
    target = round(float(t) / dt)
    if target > done:
        hx.advance((target - done) * dt)
        return target
    return done


__all__ = ["LoggedRun", "load_run", "simulate_run", "standing_height"]
