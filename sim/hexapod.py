"""The simulated hexapod: one physics backend plus its scheduled perturbations.

This is what :class:`sim.sim_robot.SimRobot` and the gymnasium environment drive. It runs
in lockstep: nothing moves until :meth:`SimulatedHexapod.advance` is called, so a run
is deterministic for a seed and as fast as the CPU allows.
"""

from __future__ import annotations

import numpy as np

from legadapt import config as C
from legadapt.robot_state import RobotState
from legadapt.sim.backend import PhysicsBackend
from legadapt.robot.description import RobotDescription
from legadapt.sim.flow_sensor import SimFlowSensor
from legadapt.sim.gait import GaitParams, PhaseGait
from legadapt.sim.perturbations import ActionLatencyEffect, Effect, SlopeEffect, make_effect

_RAMP_CHUNK = 0.01  # s, resolution of floor-tilt ramps


def make_description(cfg: C.LegadaptConfig) -> RobotDescription:
    """The robot a config names, with its per-unit physical parameters applied."""
    return cfg.robot_description


def make_backend(name: str, desc: RobotDescription, timestep: float) -> PhysicsBackend:
    """Construct the physics backend ``name`` ('mujoco' | 'pybullet')."""
    if name == "mujoco":
        from legadapt.sim.mujoco_backend import MujocoBackend

        return MujocoBackend(desc, timestep)
    if name == "pybullet":
        from legadapt.sim.pybullet_backend import PybulletBackend

        return PybulletBackend(desc, timestep)
    raise ValueError(f"unknown backend {name!r}; allowed: mujoco, pybullet")


def make_gait(desc: RobotDescription, gait: C.GaitConfig) -> PhaseGait:
    """The gait of a config (the robot's own shape where the config sets none)."""
    params = GaitParams(frequency=gait.frequency, stride_length=gait.stride_length, lift_height=gait.lift_height,
                        stance_radius=gait.stance_radius, body_height=gait.body_height)
    return PhaseGait(desc, params, gait.action_mode)


def _effect_order(e: Effect) -> int:
    # physical order on the command path: the wire (latency) before the servo (calibration)
    return 0 if isinstance(e, ActionLatencyEffect) else 1


class SimulatedHexapod:
    """A hexapod in a physics backend with perturbations scheduled in simulated time."""

    def __init__(self, desc: RobotDescription, backend: PhysicsBackend, perturbations: list[C.PerturbationBase] = (),
                 seed: int = 0, nominal_floor_friction: float | None = None) -> None:
        """``nominal_floor_friction``: the foot/floor contact coefficient before any
        ``floor_friction`` perturbation; default the description's ``foot_friction``."""
        self.desc = desc
        self.backend = backend
        self._specs = list(perturbations)
        self._seed = seed
        self._floor_mu = desc.foot_friction if nominal_floor_friction is None else nominal_floor_friction
        self.effects: list[Effect] = []
        self.flow = SimFlowSensor(desc.flow, seed) if desc.flow is not None else None
        self._raw_cmd = np.zeros(desc.n_joints)
        self.torque_enabled = True

    @classmethod
    def from_config(cls, cfg: C.LegadaptConfig) -> SimulatedHexapod:
        """Build from a validated config (backend, robot, perturbations, seed)."""
        desc = make_description(cfg)
        return cls(desc, make_backend(cfg.sim.backend, desc, cfg.sim.timestep), cfg.perturbations, cfg.sim.seed)

    @property
    def time(self) -> float:
        """Simulated time since reset (s)."""
        return self.backend.time

    # ------------------------------------------------------------ lifecycle
    def reset(self, q_stand: np.ndarray, base_height: float, base_xy: tuple[float, float] = (0.0, 0.0), yaw: float = 0.0,
              seed: int | None = None) -> None:
        """Put the intact robot at rest in ``q_stand`` [joints] (rad) and re-arm all perturbations.

        ``seed`` reseeds the sensor noise (default: the seed given at construction).
        """
        if seed is not None:
            self._seed = int(seed)
        b = self.backend
        n = self.desc.n_joints
        b.set_motor_scales(np.ones(n), np.ones(n))
        for j in range(n):
            b.lock_joint(j, None)
        b.set_payload(0.0, np.zeros(3))
        b.set_floor_friction(self._floor_mu)
        b.set_floor_tilt(0.0, 0.0, np.zeros(3))
        b.reset(q_stand, base_height, base_xy, yaw)
        self.rng = np.random.default_rng(self._seed)
        if self.flow is not None:
            self.flow.reset(b.time, self._seed)
        self.effects = sorted((make_effect(s, self.desc) for s in self._specs), key=_effect_order)
        self._raw_cmd = np.asarray(q_stand, dtype=float).copy()
        self.torque_enabled = True
        self._apply_motor_scales()
        self._activate_due()

    def mark_run_start(self) -> None:
        """The run begins now (after stand-up): perturbations not yet active start
        ``spec.start`` s from this moment; those with start 0 have been on since reset."""
        for e in self.effects:
            if not e.active:
                e.start = self.time + e.spec.start
        self._activate_due()

    def set_torque(self, enabled: bool) -> None:
        """Enable or disable all servo torque (perturbations still apply when enabled)."""
        self.torque_enabled = bool(enabled)
        self._apply_motor_scales()

    def add_perturbation(self, spec: C.PerturbationBase) -> None:
        """Schedule one more perturbation (its ``start`` is in simulated time)."""
        self._specs.append(spec)
        self.effects = sorted([*self.effects, make_effect(spec, self.desc)], key=_effect_order)
        self._activate_due()

    # ------------------------------------------------------------ I/O
    def write(self, q_cmd: np.ndarray) -> None:
        """Send joint goals [joints] (rad) to the servos, through the command-path perturbations."""
        self._raw_cmd = np.asarray(q_cmd, dtype=float).copy()
        for e in self.effects:
            if e.active and isinstance(e, ActionLatencyEffect):
                e.submit(self._raw_cmd, self.time)
        self._push_targets()

    def read(self) -> RobotState:
        """A reading through the sensor-path perturbations; ``privileged`` holds the truth."""
        b = self.backend
        q, qd, tau = b.joint_state()
        base = b.base_state()
        flow = None if self.flow is None else self.flow.read(b.time, base, b.floor_point, b.floor_normal)
        state = RobotState(stamp=b.time, q=q, qd=qd, effort=tau, imu=b.imu(), privileged=base, flow=flow)
        for e in self.effects:
            if e.active:
                state = e.reading(state, self.rng)
        return state

    def _step_physics(self, n: int, dt: float) -> None:
        """``n`` physics steps of ``dt`` s; a flow sensor integrates its motion at every one."""
        if self.flow is None:
            self.backend.step(n)
            return
        b = self.backend
        for _ in range(n):
            b.step(1)
            self.flow.integrate(dt, b.base_state(), b.floor_point, b.floor_normal)

    def advance(self, duration: float) -> None:
        """Run the physics for ``duration`` s; perturbations start at their exact step."""
        dt = self.backend.timestep
        n_total = int(round(duration / dt))
        while n_total > 0:
            n = min(n_total, self._steps_to_next_event())
            self._step_physics(n, dt)
            n_total -= n
            self._activate_due()
            for e in self.effects:
                if e.active:
                    e.on_time(self, self.time)
            self._push_targets()

    # ------------------------------------------------------------ internals
    def _push_targets(self) -> None:
        cmd = self._raw_cmd
        for e in self.effects:
            if e.active:
                cmd = e.command(cmd, self.time)
        self.backend.set_targets(cmd)

    def _activate_due(self) -> None:
        changed = False
        for e in self.effects:
            if not e.active and e.start <= self.time + 1e-9:
                e.active = True
                e.on_start(self)
                changed = True
        if changed:
            self._apply_motor_scales()

    def _apply_motor_scales(self) -> None:
        kp, force = np.ones(self.desc.n_joints), np.ones(self.desc.n_joints) * float(self.torque_enabled)
        for e in self.effects:
            scales = e.motor_scales() if e.active else None
            if scales is not None:
                kp, force = kp * scales[0], force * scales[1]
        self.backend.set_motor_scales(kp, force)

    def _steps_to_next_event(self) -> int:
        t, dt = self.time, self.backend.timestep
        events = [e.start for e in self.effects if not e.active]
        for e in self.effects:
            if e.active and isinstance(e, ActionLatencyEffect) and e.next_delivery() is not None:
                events.append(e.next_delivery())
            if e.active and isinstance(e, SlopeEffect) and t < e.start + e.spec.ramp_time:
                events.append(t + _RAMP_CHUNK)
        future = [ev for ev in events if ev > t + 1e-9]
        if not future:
            return 1 << 30
        return max(1, int(np.ceil((min(future) - t) / dt - 1e-9)))


def standing_pose(desc: RobotDescription, gait: C.GaitConfig) -> tuple[np.ndarray, float]:
    """Joint angles [joints] (rad) and torso height (m) of the robot standing at the gait's neutral."""
    g = make_gait(desc, gait)
    return g.standing_pose(), gait.body_height + desc.foot_radius + 0.002


__all__ = ["SimulatedHexapod", "make_backend", "make_description", "make_gait", "standing_pose"]
