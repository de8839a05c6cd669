"""Simulated steps per second and real-time factor of both backends at the default physics step.

Three layers are timed in the same run, so the overhead of each is a ratio, not a guess:

* raw engine: a bare loop of ``mj_step`` / ``stepSimulation`` writing servo targets
  (MuJoCo) or PD torques (PyBullet) every step: the limit for this machine;
* backend: ``PhysicsBackend.step`` (servo rate limiting, torque law in Python for PyBullet);
* walking robot: ``SimulatedHexapod`` driven by the tripod gait at the 50 Hz servo rate,
  with the perturbation machinery live (what ``legadapt walk`` and the gym env run).

Each figure is the median of ``--repeats`` runs of ``--seconds`` of simulated time.
Usage: ``python bench/sim_speed.py [--seconds 2] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


from legadapt.config import parse_config  # noqa: E402
from legadapt.sim.hexapod import SimulatedHexapod, make_gait, standing_pose  # noqa: E402


def _fresh(backend: str) -> tuple[SimulatedHexapod, np.ndarray, object]:
    cfg = parse_config({"sim": {"backend": backend}})
    hx = SimulatedHexapod.from_config(cfg)
    q0, height = standing_pose(hx.desc, cfg.gait)
    hx.reset(q0, height)
    hx.write(q0)
    hx.advance(0.2)
    return hx, q0, make_gait(hx.desc, cfg.gait)


def raw_engine(backend: str, n: int) -> float:
    """Wall seconds for ``n`` bare engine steps with a control write per step."""
    hx, q0, _ = _fresh(backend)
    b = hx.backend
    if backend == "mujoco":
        import mujoco

        m, d, act = b.model, b.data, b._act
        t = time.perf_counter()
        for _ in range(n):
            d.ctrl[act] = q0
            mujoco.mj_step(m, d)
        return time.perf_counter() - t
    import pybullet

    pb, robot, joints = b.pb, b.robot, b._joints
    kp, kv = b.desc.servo.kp, b.desc.servo.kv
    t = time.perf_counter()
    for _ in range(n):
        st = pb.getJointStates(robot, joints)
        tau = [kp * (g - s[0]) - kv * s[1] for g, s in zip(q0, st)]
        pb.setJointMotorControlArray(robot, joints, pybullet.TORQUE_CONTROL, forces=tau)
        pb.stepSimulation()
    return time.perf_counter() - t


def backend_steps(backend: str, n: int) -> float:
    """Wall seconds for ``n`` steps of our backend layer."""
    hx, q0, _ = _fresh(backend)
    hx.backend.set_targets(q0)
    t = time.perf_counter()
    hx.backend.step(n)
    return time.perf_counter() - t


def walking_robot(backend: str, seconds: float) -> float:
    """Wall seconds to walk ``seconds`` of simulated time with the gait at 50 Hz."""
    hx, _, gait = _fresh(backend)
    period, phase, action = 0.02, 0.0, np.ones(2)
    t = time.perf_counter()
    for _ in range(int(round(seconds / period))):
        phase = (phase + gait.params.frequency * period) % 1.0
        hx.write(gait.joint_targets(phase, action))
        hx.advance(period)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="simulated seconds per measurement")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    dt = 0.002
    n = int(round(args.seconds / dt))
    print(f"physics step {dt * 1e3:g} ms (500 Hz), {args.seconds:g} s simulated per run, median of {args.repeats} runs\n")
    print(f"{'backend':9s} {'layer':15s} {'steps/s':>9s} {'real-time':>10s} {'vs raw':>7s}")
    rows: dict[tuple[str, str], float] = {}
    for backend in ("mujoco", "pybullet"):
        for layer, fn in (("raw engine", lambda: raw_engine(backend, n)),
                          ("backend", lambda: backend_steps(backend, n)),
                          ("walking robot", lambda: walking_robot(backend, args.seconds))):
            wall = statistics.median(fn() for _ in range(args.repeats))
            rows[backend, layer] = wall
            ratio = rows[backend, "raw engine"] / wall
            print(f"{backend:9s} {layer:15s} {n / wall:9.0f} {args.seconds / wall:9.1f}x {ratio:7.2f}")
    mj, pb = rows["mujoco", "walking robot"], rows["pybullet", "walking robot"]
    print(f"\nwalking robot, MuJoCo vs PyBullet: {pb / mj:.1f}x faster")


if __name__ == "__main__":
    main()
