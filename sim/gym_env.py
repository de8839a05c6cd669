"""Gymnasium environment: the simulated hexapod with its tripod gait, following a path.

For people who bring their own RL (design.md, "Simulation"). Registered as
``legadapt/Hexapod-v0`` by ``import sim`` (see ``sim/__init__.py``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from legadapt.config import LegadaptConfig, parse_config
from legadapt.paths import Path, make_path, wrap_angle
from legadapt.sim.hexapod import SimulatedHexapod, make_gait, standing_pose
from legadapt.sim.rotations import quat_rotate_inv, rpy_from_quat

_BODY_OBS = ("roll", "pitch", "vx", "vy", "vz", "wx", "wy", "wz", "phase_sin", "phase_cos")
_PATH_OBS = ("cross_track", "heading_error", "progress")


def obs_names(joint_names: tuple[str, ...]) -> tuple[str, ...]:
    """Observation names for a robot with these joints (``q_<joint>`` between the body and the path parts)."""
    return (*_BODY_OBS, *(f"q_{j}" for j in joint_names), *_PATH_OBS)


FALL_TILT = np.deg2rad(60.0)  # rad, |roll| or |pitch| beyond this is a fall
FALL_HEIGHT = 0.04  # m, torso height above the start plane below which the robot has fallen
MAX_LIN_VEL = 10.0  # m/s, observation bound of the body velocity
MAX_GYRO = 35.0  # rad/s, observation bound of the gyro (a 2000 °/s IMU's full scale)


class HexapodPathEnv(gym.Env):
    """The simulated hexapod walking a tripod gait along a reference path.

    One step is one control period ``dt = 1 / task.control_rate`` s (0.1 s by default).
    The action is held for the period; at every servo period ``1 / sim.servo_rate`` s the
    gait phase advances by ``gait.frequency / servo_rate``, the joint targets
    ``PhaseGait.joint_targets(phase, action)`` are written and the physics advanced.

    Action: ``Box(-1, 1, (A,), float32)`` -- the gait's stride modulation, A = 2
    (``per_side``: [left, right]) or one per leg (``per_leg``), from ``gait.action_mode``.

    Observation ``Box(float32, (13 + J,))`` for J joints (names in ``self.obs_names``; 31 on the hexapod):

    ======  ===================  =====  =====================================================
    index   name                 unit   source
    ======  ===================  =====  =====================================================
    0, 1    roll, pitch          rad    IMU orientation (with any IMU perturbation)
    2-4     vx, vy, vz           m/s    true torso velocity in the body frame (privileged)
    5-7     wx, wy, wz           rad/s  IMU gyro (body frame)
    8, 9    sin, cos of phase    -      gait phase 2*pi*phase
    10..    q[J]                 rad    joint positions, the robot description's joint order
    10+J    cross_track          m      signed offset from the path, + = left of it
    11+J    heading_error        rad    wrap(yaw - path tangent) in [-pi, pi], + = turned left
    12+J    progress             -      arc length reached / path length, in [0, 1]
    ======  ===================  =====  =====================================================

    Path quantities use the true (privileged) torso position and yaw. Values are clipped
    to the space's bounds: ±10 m/s, ±35 rad/s, ±2 pi rad for joints, ±path length for
    the cross-track error.

    Reward per step: ``Δs - 0.5 * |cross_track| * dt - 0.01 * sum(action²) * dt`` with Δs
    the progress along the path in the step (m).

    ``terminated`` on a fall (true |roll| or |pitch| > 60° or torso height < 0.04 m) or when
    the path end is reached (within ``goal_tolerance`` m). Truncation is left to
    gymnasium's ``TimeLimit`` (``max_episode_steps`` of the registration; ``max_steps``
    gives ``duration * control_rate`` of this env's config).

    Reset puts the robot standing at the path start (heading +x) and lets it settle for
    ``settle_time`` s holding the standing pose; every perturbation's ``start`` counts
    from the end of the settle (the first step), ``start: 0`` ones act from the reset.

    ``info``: ``xy`` [2] (m), ``yaw`` (rad), ``cross_track`` (m), ``s`` (m), ``time`` (s),
    ``fell`` (bool), ``reached_end`` (bool).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: LegadaptConfig | dict | None = None, render_mode: str | None = None,
                 path_length: float | None = None, settle_time: float = 0.5, goal_tolerance: float = 0.05,
                 cross_track_weight: float = 0.5, action_weight: float = 0.01) -> None:
        """Args:
            config: a validated config, a dict (validated by ``parse_config``) or ``None`` (defaults).
            render_mode: ``None`` or ``"rgb_array"`` (MuJoCo backend only; needs an OpenGL
                context, e.g. ``MUJOCO_GL=egl`` set before ``mujoco`` is imported).
            path_length: path length (m); default ``max(2, 2 * target_speed * duration)``.
            settle_time: standing time after reset before the first step (s).
            goal_tolerance: distance before the path end that counts as reached (m).
            cross_track_weight: reward penalty per m of cross-track error per s.
            action_weight: reward penalty per unit squared action per s.
        """
        cfg = config if isinstance(config, LegadaptConfig) else parse_config(config)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unsupported render_mode {render_mode!r}; allowed: None, 'rgb_array'")
        if render_mode is not None and cfg.sim.backend != "mujoco":
            raise ValueError("render_mode 'rgb_array' needs the mujoco backend")
        self.cfg = cfg
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": cfg.task.control_rate}
        self.hexapod = SimulatedHexapod.from_config(cfg)
        self.gait = make_gait(self.hexapod.desc, cfg.gait)
        self.q_stand, self.stand_height = standing_pose(self.hexapod.desc, cfg.gait)
        task = cfg.task
        self.path: Path = make_path(task.path, path_length or max(2.0, 2.0 * task.target_speed * task.duration), offset=task.path_offset)
        self.dt = 1.0 / task.control_rate  # s
        self.servo_dt = 1.0 / cfg.sim.servo_rate  # s
        self.n_servo = max(1, int(round(self.dt / self.servo_dt)))
        self.max_steps = int(round(task.duration * task.control_rate))
        self.settle_time = float(settle_time)
        self.goal_tolerance = float(goal_tolerance)
        self.cross_track_weight = float(cross_track_weight)
        self.action_weight = float(action_weight)

        self.action_space = spaces.Box(-1.0, 1.0, (self.gait.action_dim,), np.float32)
        self.obs_names = obs_names(self.hexapod.desc.joint_names)
        n_q = self.hexapod.desc.n_joints
        self._q = slice(len(_BODY_OBS), len(_BODY_OBS) + n_q)
        self._cross, self._heading, self._progress = self._q.stop, self._q.stop + 1, self._q.stop + 2
        high = np.empty(len(self.obs_names), np.float32)
        high[[0, 1, self._heading]] = np.pi
        high[2:5], high[5:8] = MAX_LIN_VEL, MAX_GYRO
        high[8:10] = 1.0
        high[self._q] = 2 * np.pi
        high[self._cross] = self.path.length
        low = -high
        low[self._progress], high[self._progress] = 0.0, 1.0
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

        self._np_random, self._np_random_seed = seeding.np_random(cfg.sim.seed)  # config seed by default
        self.phase = 0.0
        self.s = 0.0
        self._renderer: Any = None
        self._camera: Any = None

    # ------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Stand the robot at the path start, settle, and return ``(obs [13 + J], info)``."""
        super().reset(seed=seed)
        h = self.hexapod
        # sensor noise follows the env seed
        h.reset(self.q_stand, self.stand_height, (0.0, 0.0), 0.0, seed=int(self.np_random.integers(2**63 - 1)))
        self.phase = 0.0
        h.write(self.q_stand)
        if self.settle_time > 0:
            h.advance(self.settle_time)
        h.mark_run_start()
        self.s = 0.0
        return self._observe(h.read())

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Hold ``action`` [A] for one control period; return gymnasium's 5-tuple."""
        a = np.clip(np.asarray(action, dtype=float).reshape(-1), -1.0, 1.0)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action has shape {a.shape}, expected {self.action_space.shape}")
        h, freq = self.hexapod, self.gait.params.frequency
        for _ in range(self.n_servo):
            self.phase = (self.phase + freq * self.servo_dt) % 1.0
            h.write(self.gait.joint_targets(self.phase, a))
            h.advance(self.servo_dt)
        state = h.read()
        s_prev = self.s
        obs, info = self._observe(state)
        cross = info["cross_track"]
        reward = (self.s - s_prev) - self.cross_track_weight * abs(cross) * self.dt - self.action_weight * float(a @ a) * self.dt
        terminated = bool(info["fell"] or info["reached_end"])
        return obs, float(reward), terminated, False, info

    def render(self) -> np.ndarray | None:
        """An RGB frame [H, W, 3] uint8 following the robot, or ``None`` without a render mode."""
        if self.render_mode is None:
            return None
        import mujoco

        b = self.hexapod.backend
        if self._renderer is None:
            self._renderer = mujoco.Renderer(b.model, 240, 320)
            self._camera = mujoco.MjvCamera()
            self._camera.distance, self._camera.elevation, self._camera.azimuth = 1.2, -30.0, 135.0
        self._camera.lookat[:] = b.data.qpos[0:3]
        self._renderer.update_scene(b.data, self._camera)
        return self._renderer.render().copy()

    def close(self) -> None:
        """Release the renderer and the physics backend."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.hexapod.backend.close()

    # ------------------------------------------------------------ internals
    def _observe(self, state: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Observation [13 + J] (float32) and info from a ``RobotState``; updates ``self.s``."""
        base = state.privileged
        roll, pitch, _ = rpy_from_quat(state.imu.quat)
        yaw = float(rpy_from_quat(base.quat)[2])
        true_roll, true_pitch, _ = rpy_from_quat(base.quat)
        s, cross, path_heading = self.path.project(base.pos[:2], s_hint=self.s)
        self.s = s
        obs = np.empty(len(self.obs_names), dtype=np.float64)
        obs[0], obs[1] = roll, pitch
        obs[2:5] = quat_rotate_inv(base.quat, base.lin_vel)
        obs[5:8] = state.imu.gyro
        obs[8], obs[9] = np.sin(2 * np.pi * self.phase), np.cos(2 * np.pi * self.phase)
        obs[self._q] = state.q
        obs[self._cross] = cross
        obs[self._heading] = wrap_angle(yaw - path_heading)
        obs[self._progress] = s / self.path.length
        obs = np.clip(obs, self.observation_space.low, self.observation_space.high).astype(np.float32)
        fell = bool(abs(true_roll) > FALL_TILT or abs(true_pitch) > FALL_TILT or base.pos[2] < FALL_HEIGHT)
        info = {"xy": base.pos[:2].copy(), "yaw": yaw, "cross_track": float(cross), "s": float(s),
                "time": float(state.stamp), "fell": fell, "reached_end": bool(s >= self.path.length - self.goal_tolerance)}
        return obs, info


__all__ = ["HexapodPathEnv", "obs_names"]
