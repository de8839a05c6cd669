"""System identification: simulator parameters fitted to a recorded log (``legadapt calibrate sysid``).

Parameters (:data:`PARAMS`), what each means in the config it is written to:

* ``kp_scale`` — servo position gain relative to the base config's ``robot.servo.kp``
  (worn gears, low battery) -> ``robot.servo.kp`` (N·m/rad);
* ``kv`` — servo damping -> ``robot.servo.kv`` (N·m·s/rad);
* ``floor_friction`` — foot/floor Coulomb coefficient -> a ``floor_friction``
  perturbation from t = 0 (in MuJoCo the floor's friction is the one that counts);
* ``payload_mass`` — extra mass on the torso (kg) -> a ``payload`` perturbation from
  t = 0 at the base config's payload offset (default 3 cm above the body centre); omitted
  below 1 g.

Method (:func:`identify`): the log's joint commands are replayed in MuJoCo
(:func:`calibration.replay.simulate_run`) on the base config with a candidate overlay,
and the residuals are the simulated minus logged joint angles (every joint, every state
sample after the first ``skip`` s, where the replay's contacts settle into the logged
ones) over ``sigma_q`` (rad), plus a weak prior pulling each parameter towards its
nominal value (``PRIOR_SIGMA``) so that a parameter the log does not excite stays put.
A coarse grid over ``kp_scale`` x ``payload_mass`` (the pair that trades off in the
stance-leg sag) picks the start; ``scipy.optimize.minimize(method="Powell")`` (bounded,
derivative-free) refines all four. Replaying a log is not smooth in the parameters at
small scales (contact events flip), which stalls gradient methods: finite-difference
``least_squares`` stopped in the kp-payload valley (0.85 / 0.47 kg for a true 0.8 /
0.3 kg) where Powell reached 0.81 / 0.34 kg. IMU residuals were tried and made the fit
worse (walking makes the accelerometer trace chaotic); they are not used.

The base config is the one given (defaults without ``--config``), never the log's own.
The result is the overlay the simulator applies (:mod:`calibration.overlay`).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from legadapt.calibration import common as K
from legadapt.calibration.overlay import apply_overlay, write_yaml
from legadapt.calibration.replay import LoggedRun, load_run, simulate_run
from legadapt import config as C

PARAMS = ("kp_scale", "kv", "floor_friction", "payload_mass")
LOWER = np.array([0.2, 0.01, 0.05, 0.0])
UPPER = np.array([2.5, 3.0, 2.0, 3.0])
PRIOR_SIGMA = np.array([1.0, 0.5, 1.0, 2.0])  # weak: 8000 joint residuals outweigh it wherever the log informs
GRID_KP = (0.4, 0.55, 0.7, 0.85, 1.0, 1.25)
GRID_PAYLOAD = (0.0, 0.5, 1.0, 1.5)  # kg
SKIP = 1.0  # s replayed but not scored: the contacts of the start are unknown (the excitation re-steps in them)
NOMINAL_FLOOR_FRICTION = 1.0  # the simulator's floor without a floor_friction perturbation


@dataclass
class SysIdResult:
    """Fitted parameters (``PARAMS`` order) and how well the simulation matches the log."""

    params: np.ndarray  # [4] kp_scale, kv (N·m·s/rad), floor_friction, payload_mass (kg)
    nominal: np.ndarray  # [4] the base config's values
    base_kp: float  # N·m/rad, robot.servo.kp of the base config
    payload_offset: tuple[float, float, float]  # m, body frame
    rms_nominal: float  # rad, joint RMS error simulating with the nominal parameters
    rms_fit: float  # rad, with the fitted ones
    evaluations: int
    wall_time: float  # s
    history: list[tuple[float, ...]] = field(default_factory=list)  # (rms rad, *params) per evaluation

    def named(self) -> dict[str, float]:
        return {n: float(v) for n, v in zip(PARAMS, self.params)}

    def overlay(self) -> dict:
        """The config overlay of the fitted parameters."""
        return params_overlay(self.params, self.base_kp, self.payload_offset)

    def write(self, path: str | Path) -> Path:
        p = self.named()
        return write_yaml(path, self.overlay(), [
            (f"legadapt calibrate sysid: kp_scale {p['kp_scale']:.3f}, kv {p['kv']:.3f} N·m·s/rad, floor friction "
             f"{p['floor_friction']:.3f}, payload {p['payload_mass']:.3f} kg"),
            (f"joint RMS error simulated vs logged: {self.rms_nominal:.4f} rad nominal -> {self.rms_fit:.4f} rad fitted "
             f"({self.evaluations} simulations, {self.wall_time:.1f} s)")])


def params_overlay(x: np.ndarray, base_kp: float, payload_offset=(0.0, 0.0, 0.03)) -> dict:
    """Config overlay for parameters ``x`` [4] (``PARAMS`` order)."""
    kp_scale, kv, mu, mass = (float(v) for v in x)
    perturbations: list[dict] = [{"kind": "floor_friction", "mu": round(mu, 5)}]
    if mass >= 1e-3:
        perturbations.append({"kind": "payload", "mass": round(mass, 5), "offset": [float(o) for o in payload_offset]})
    return {"robot": {"servo": {"kp": round(base_kp * kp_scale, 5), "kv": round(kv, 5)}}, "perturbations": perturbations}


def nominal_params(cfg: C.LegadaptConfig) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The base config's parameter values [4] and payload offset (m)."""
    mu, mass, offset = NOMINAL_FLOOR_FRICTION, 0.0, (0.0, 0.0, 0.03)
    for p in cfg.perturbations:
        if p.kind == "floor_friction" and p.start == 0:
            mu = p.mu
        elif p.kind == "payload" and p.start == 0:
            mass, offset = p.mass, tuple(p.offset)
    return np.array([1.0, cfg.robot.servo.kv, mu, mass]), offset


class _Objective:
    """Cost of parameter vectors against one logged run; records every evaluation and the best one."""

    def __init__(self, cfg: C.LegadaptConfig, run: LoggedRun, sigma_q: float, skip: float) -> None:
        self.cfg, self.run, self.sigma_q = cfg, run, sigma_q
        self.scored = run.t_state >= skip
        self.nominal, self.offset = nominal_params(cfg)
        self.history: list[tuple[float, ...]] = []  # (joint RMS rad, *params)
        self.best: tuple[float, np.ndarray, float] = (np.inf, self.nominal, np.nan)  # (cost, params, joint RMS rad)

    def joint_error(self, x: np.ndarray) -> np.ndarray:
        """Simulated minus logged joint angles [scored samples, 18] (rad) for parameters ``x`` [4]."""
        sim_cfg = apply_overlay(self.cfg, params_overlay(x, self.cfg.robot.servo.kp, self.offset), "sysid candidate")
        err = (simulate_run(sim_cfg, self.run) - self.run.q)[self.scored]
        self.history.append((float(np.sqrt(np.mean(err**2))), *map(float, x)))
        return err

    def __call__(self, x: np.ndarray) -> float:
        """Sum of squared residuals: joint errors over ``sigma_q`` and the weak prior."""
        x = np.clip(np.asarray(x, dtype=float), LOWER, UPPER)
        cost = float(np.sum((self.joint_error(x) / self.sigma_q) ** 2) + np.sum(((x - self.nominal) / PRIOR_SIGMA) ** 2))
        if cost < self.best[0]:
            self.best = (cost, x.copy(), self.history[-1][0])
        return cost


def identify(run: LoggedRun, cfg: C.LegadaptConfig, sigma_q: float = 0.01, max_evaluations: int = 125,
             grid: bool = True, skip: float = SKIP) -> SysIdResult:
    """Fit ``PARAMS`` so that replaying ``run`` on ``cfg``'s simulated robot reproduces its joint angles.

    ``sigma_q`` (rad) scales the joint residuals; the first ``skip`` s of the log are replayed but not
    scored; at most about ``max_evaluations`` simulations (each ~0.15 s for a 10 s log).
    """
    t0 = time.perf_counter()
    if not np.any(run.t_state >= skip):
        raise K.CalibrationError(f"{run.source}: the log is {run.duration:.1f} s long, nothing left after skipping {skip:g} s")
    f = _Objective(cfg, run, sigma_q, skip)
    start = np.clip(f.nominal, LOWER, UPPER)
    f(start)
    rms_nominal = f.history[-1][0]
    if grid:
        for kp in GRID_KP:
            for mass in GRID_PAYLOAD:
                f(np.array([kp, start[1], start[2], mass]))
    budget = max(1, max_evaluations - len(f.history))
    minimize(f, f.best[1], method="Powell", bounds=list(zip(LOWER, UPPER)), options={"maxfev": budget, "xtol": 1e-3})
    _, x, rms_fit = f.best
    return SysIdResult(x, f.nominal, cfg.robot.servo.kp, f.offset, rms_nominal, rms_fit, len(f.history),
                       time.perf_counter() - t0, f.history)


# ---------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """``legadapt calibrate sysid LOG``: fit the simulator to a log, write the overlay YAML."""
    ap = argparse.ArgumentParser(prog="legadapt calibrate sysid", description=__doc__.split("\n\n")[0])
    ap.add_argument("log", type=Path, nargs="?", help="MCAP log with joint targets on 'command' (calibration.excitation)")
    ap.add_argument("--config", help="base robot config YAML (default: built-in defaults); the log's own config is not used")
    ap.add_argument("--out", type=Path, default=K.DEFAULT_DIR / "sysid.yaml", help="result YAML (default: %(default)s)")
    ap.add_argument("--record", choices=("sim", "serial"),
                    help="first record the excitation into LOG on the serial robot of --config, or on its simulated robot "
                         "(then the fit starts from --config without its perturbations: a self-check)")
    ap.add_argument("--max-evaluations", type=K.bounded(int, 1, 100_000), default=125, help="simulations at most (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.log is None:
        ap.error("give the log to fit (with --record: the log to write)")
    return K.run_cli(_main, args)


def _main(args: argparse.Namespace) -> int:
    cfg = K.load_config(args.config)
    if args.record:
        _record(cfg, args.record, args.log)
        print(f"recorded the excitation into {args.log}")
        cfg = cfg.model_copy(update={"perturbations": []}) if args.record == "sim" else cfg
    try:
        run = load_run(args.log)
    except (ValueError, OSError) as exc:
        raise K.CalibrationError(str(exc)) from exc
    result = identify(run, cfg, max_evaluations=args.max_evaluations)
    for name, value, nominal in zip(PARAMS, result.params, result.nominal):
        print(f"{name:15s} {value:8.4f}   (nominal {nominal:.4f})")
    print(f"joint RMS {result.rms_nominal:.4f} -> {result.rms_fit:.4f} rad, {result.evaluations} simulations, {result.wall_time:.1f} s")
    print(f"wrote {result.write(args.out)}")
    return 0


def _record(cfg: C.LegadaptConfig, kind: str, path: Path) -> None:
    from legadapt.calibration.excitation import excitation_commands, record_excitation
    from legadapt.hardware.interface import CallbackReturn
    from legadapt.hardware.serial_robot import SerialRobot
    from legadapt.sim.sim_robot import SimRobot
    from legadapt.sim.hexapod import make_description

    robot = SimRobot(cfg) if kind == "sim" else SerialRobot(cfg)
    try:
        for step in (robot.configure, robot.activate):
            if step() is not CallbackReturn.SUCCESS:
                raise K.CalibrationError(f"robot {step.__name__} failed: {robot.last_error}")
        commands = excitation_commands(make_description(cfg), cfg.gait, cfg.sim.servo_rate)
        record_excitation(robot, commands, 1.0 / cfg.sim.servo_rate, path)
    finally:
        robot.shutdown()


__all__ = ["PARAMS", "SysIdResult", "identify", "load_run", "main", "nominal_params", "params_overlay"]
