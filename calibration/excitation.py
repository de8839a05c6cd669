"""The system-identification excitation: a scripted joint-command sequence and its recorder.

:func:`excitation_commands` builds the script from the robot's own gait geometry; each
segment excites what one parameter changes:

* each gait group (a tripod) in turn lifted 3 cm and set down at its neutral point: the feet stand
  where the commands say whatever the robot did before, so a replay starting from a
  fresh stand has the same contacts as the recording;
* stand, then a slow squat (body height ±3 cm): stance-leg sag ~ load / kp -> payload;
* each gait group lifted 5 cm and waved ±4 cm at 2 Hz while the other carries the robot:
  swinging legs track with lag ~ kv / kp and ring at sqrt(kp / inertia) -> kp, kv;
  three legs carrying everything -> payload again;
* walking forward and turning: feet push and slip on the floor -> friction, and the
  mixture that breaks the kp-payload trade-off.

:func:`record_excitation` plays it on any ACTIVE :class:`hardware.interface.Robot` — the
simulated hexapod (lockstep) or a real one over the bus (absolute deadlines) — after a
ramp from the measured pose and a short hold that are not logged, and writes an MCAP log
(:mod:`legadapt.mcap_log`) whose ``command`` channel carries the joint targets written
(rad) and whose ``state`` channel carries the readings after each servo period. Robot on
flat floor with ~1 m of room ahead.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from legadapt.hardware.interface import LifecycleState, ReturnType, Robot
from legadapt import config as C
from legadapt.features import make_spec
from legadapt.mcap_log import LogWriter, quat_xyzw
from legadapt.robot.description import RobotDescription
from legadapt.sim.hexapod import make_gait

SQUAT = (2.0, 0.03, 1.0)  # s, m amplitude, Hz
LIFT = (1.5, 0.05, 0.04, 2.0, 0.5)  # s per gait group, m lift, m wave amplitude, Hz, s hold after
WALK = ((1.5, (1.0, 1.0)), (1.5, (1.0, -0.6)))  # (s, per-side gait action) segments
STAND = 0.5  # s of standing still after the re-step
RESTEP = (0.5, 0.03)  # s per gait group, m lift: set every foot down at its neutral point first


def excitation_commands(desc: RobotDescription, gait: C.GaitConfig, rate: float) -> np.ndarray:
    """Joint targets [N, joints] (rad), one per servo period of ``1 / rate`` s (about 10.5 s in all)."""
    g = make_gait(desc, gait.model_copy(update={"action_mode": "per_side"}))
    dt = 1.0 / rate
    base = g.neutral_feet  # [legs, 3] m, body frame
    out: list[np.ndarray] = []
    dur, lift = RESTEP
    for group in desc.gait_groups():
        for k in range(round(dur * rate)):
            feet = base.copy()
            feet[list(group), 2] += lift * np.sin(np.pi * min(1.0, k * dt / (0.6 * dur)))
            out.append(g.kin.inverse(feet))
    out += [g.kin.inverse(base)] * round(STAND * rate)
    dur, amp, freq = SQUAT
    for k in range(round(dur * rate)):
        feet = base.copy()
        feet[:, 2] += amp * np.sin(2 * np.pi * freq * k * dt)
        out.append(g.kin.inverse(feet))
    dur, lift, wave, freq, hold = LIFT
    for group in desc.gait_groups():
        legs = list(group)
        for k in range(round(dur * rate)):
            feet, s = base.copy(), min(1.0, k * dt / 0.2)  # 0.2 s to lift
            feet[legs, 2] += lift * s
            feet[legs, 0] += wave * s * np.sin(2 * np.pi * freq * k * dt)
            out.append(g.kin.inverse(feet))
        out += [g.kin.inverse(base)] * round(hold * rate)
    phase = 0.0
    for dur, action in WALK:
        for _ in range(round(dur * rate)):
            phase = (phase + g.params.frequency * dt) % 1.0
            out.append(g.joint_targets(phase, np.array(action)))
    return np.array(out)


def record_excitation(robot: Robot, commands: np.ndarray, period: float, log_path: str | Path, ramp: float = 2.0,
                      hold: float = 0.5) -> Path:
    """Play ``commands`` [N, joints] (rad) every ``period`` s on the ACTIVE ``robot``; log them and the readings.

    First (not logged): ``ramp`` s from the measured pose to ``commands[0]``, ``hold`` s there.
    """
    if robot.lifecycle is not LifecycleState.ACTIVE:
        raise RuntimeError(f"{robot.name} must be active to run the excitation (it is {robot.lifecycle.value})")
    clock = _Clock(robot, period)
    _check(robot, robot.read(), "read")
    start = robot.state.q.copy()
    n_ramp, n_hold = max(1, round(ramp / period)), round(hold / period)
    for k in range(1, n_ramp + n_hold + 1):
        clock.tick(robot, start + (commands[0] - start) * min(1.0, k / n_ramp))
    writer = LogWriter(log_path, make_spec("per_side", 0.1, robot.cfg.robot_description), info={"kind": "sysid_excitation", "period": period,
                                                                   "commands": len(commands)}, overwrite=True)
    try:
        for k, q_cmd in enumerate(commands):
            t = k * period
            clock.tick(robot, q_cmd)
            s = robot.state
            writer.write("command", {"q": q_cmd, "action": []}, t)
            writer.write("state", {"q": s.q, "qd": s.qd, "effort": s.effort, "imu_quat": quat_xyzw(s.imu.quat), "gyro": s.imu.gyro,
                                   "acc": s.imu.acc}, t + period)
    finally:
        writer.finish()
    return Path(log_path)


class _Clock:
    """Write, let one period pass (lockstep: advance the simulation; realtime: absolute deadline), read."""

    def __init__(self, robot: Robot, period: float) -> None:
        self.period = period
        self.advance = getattr(robot, "advance", None)
        self.deadline = time.monotonic()

    def tick(self, robot: Robot, q_cmd: np.ndarray) -> None:
        _check(robot, robot.write(q_cmd), "write")
        if self.advance is not None:
            self.advance(self.period)
        else:
            self.deadline += self.period
            time.sleep(max(0.0, self.deadline - time.monotonic()))
        _check(robot, robot.read(), "read")


def _check(robot: Robot, ret: ReturnType, what: str) -> None:
    if ret is not ReturnType.OK:
        raise RuntimeError(f"{robot.name}: {what} failed: {robot.last_error}")


__all__ = ["excitation_commands", "record_excitation"]
