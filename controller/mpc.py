"""The adaptive MPC step, once per slow-loop cycle.

1. append the last period's transition to the window of the last M;
2. adapt from θ* on that window (GrBAL), update the context (ReBAL), nothing (MB) or the
   plain model's online step (MB+DE) -- all through one :class:`dynamics.adaptation.Adapter`;
3. while the plain model plans, add its mean miss on the window to its predictions (offset-free MPC,
   :mod:`controller.model_offset`; an adapted model's forward miss where ``adaptive_offset`` asks),
   and give the path cost the crab angle the body moved at over the window (its heading target
   gives it up, :class:`planners.costs.PathCost`);
4. plan with the adapted parameters: the planner's rollouts call ``adapter.predict`` on
   the context (parameters passed to ``functional_call``), no module is copied.

The planner sees a state ``z = [x, y, yaw, model state (S)]`` [3+S]: the controller, not
the planner, knows how a predicted target (Δstate, body displacement) moves it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from legadapt.controller.loop import SlowPolicy
from legadapt.controller.model_offset import offset_index, window_offset
from legadapt.dynamics.adaptation import Adapter, Gate, make_adapter
from legadapt.dynamics.checkpoint import LoadedCheckpoint
from legadapt.dynamics.rollout_model import rollout_dtype
from legadapt.dynamics.switching import SwitchingAdapter
from legadapt import config as C
from legadapt.features import FeatureSpec, target_vector
from legadapt.paths import Path, ProgressTracker
from legadapt.planners.base import Planner
from legadapt.planners.cem import CEM
from legadapt.planners.costs import PathCost
from legadapt.planners.icem import ICEM
from legadapt.planners.mppi import MPPI
from legadapt.planners.random_shooting import RandomShooting

MAX_CRAB = 0.5  # rad: the largest crab angle taken off the heading target (a sideways slide is no path to follow)
PATH_POINT_SPACING = 5  # keep every 5th vertex of the 1 cm path for the cost (5 cm chords)


@dataclass
class CycleStats:
    """What one slow-loop cycle did (times in s, losses normalised MSE)."""

    adapt_time: float = 0.0
    plan_time: float = 0.0
    loss_before: float = math.nan
    loss_after: float = math.nan
    fallback: bool = False
    cost: float = math.nan
    window: int = 0
    adapted: bool | None = None  # with a plain model: the adaptive model planned this cycle (None: no plain model)
    plain_loss: float = math.nan  # with a plain model: its window loss (normalised MSE)
    plain_recent_loss: float = math.nan  # the same over the newest transitions (what engages the adaptive model)
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))  # [3] the offset on the displacement (dx m, dy m, dyaw rad per period)
    plan_poses: np.ndarray | None = None  # [H+1, 3] predicted world poses (x m, y m, yaw rad) of the best candidate
    candidate_poses: np.ndarray | None = None  # [K, H+1, 3] the same for K candidates spread over the cost ranking


#: Candidates whose predicted poses are kept each cycle (the log's and the live view's plan lines).
SHOWN_CANDIDATES = 8


def integrate_pose(pose: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """World pose [N, 3] (x m, y m, yaw rad) moved by body-frame displacement [N, 3]."""
    c, s = torch.cos(pose[:, 2]), torch.sin(pose[:, 2])
    x = pose[:, 0] + c * disp[:, 0] - s * disp[:, 1]
    y = pose[:, 1] + s * disp[:, 0] + c * disp[:, 1]
    yaw = torch.remainder(pose[:, 2] + disp[:, 2] + math.pi, 2 * math.pi) - math.pi
    return torch.stack([x, y, yaw], dim=1)


#: Colour of the sampling noise unless the config sets one: 2 (smooth strokes along the horizon). Measured
#: (bench/planner_quality.py, 6 held-out scenarios x 3 seeds, MPPI 500 x 10): task score 3.49 m against 3.29 m
#: with white noise at the same cost per cycle.
DEFAULT_NOISE_BETA = 2.0


def make_planner(cfg: C.PlannerConfig, dynamics, cost, action_dim: int) -> Planner:
    common = dict(horizon=cfg.horizon, action_low=-1.0, action_high=1.0, seed=cfg.seed, action_dim=action_dim)
    if cfg.kind == "mppi":
        return MPPI(dynamics, cost, num_samples=cfg.samples, temperature=cfg.temperature, noise_sigma=cfg.noise,
                    iterations=cfg.iterations, smoothing_window=cfg.smoothing_window, update=cfg.update,
                    fine_share=cfg.fine_share, fine_scale=cfg.fine_scale,
                    noise_beta=DEFAULT_NOISE_BETA if cfg.noise_beta is None else cfg.noise_beta, **common)
    if cfg.kind == "icem":
        return ICEM(dynamics, cost, num_samples=cfg.samples, num_elites=min(cfg.elites, cfg.samples),
                    iterations=cfg.iterations, beta=DEFAULT_NOISE_BETA if cfg.noise_beta is None else cfg.noise_beta,
                    keep_elites=cfg.keep_elites, decay=cfg.population_decay, alpha=cfg.alpha, **common)
    if cfg.kind == "cem":
        return CEM(dynamics, cost, num_samples=cfg.samples, num_elites=min(cfg.elites, cfg.samples),
                   iterations=cfg.iterations, alpha=cfg.alpha, **common)
    return RandomShooting(dynamics, cost, num_samples=cfg.samples, **common)


def runtime_settings(ck: LoadedCheckpoint) -> dict:
    """How the checkpoint is meant to run, as measured when it was shipped (``adaptation.runtime`` in its
    metadata: ``lr_scale``, ``plain_model`` relative to the checkpoint's folder); {} when it says nothing."""
    runtime = (ck.meta.get("adaptation") or {}).get("runtime") or {}
    return dict(runtime) if isinstance(runtime, dict) else {}


def make_adapter_from(ck: LoadedCheckpoint, kind: str, acfg: C.AdaptationConfig | None = None) -> Adapter:
    """The adapter of ``kind`` ('auto' = the checkpoint's own) over a loaded checkpoint, with the
    run-time adaptation settings ``acfg`` (gate, rate scale: unset = the checkpoint's own, else 1)."""
    kind = ck.adapter_kind if kind == "auto" else kind
    steps = ck.maml.inner_steps if ck.maml else 1
    lr = ck.lrs if (ck.lrs is not None and kind == "grbal") else (ck.maml.inner_lr if ck.maml else 1e-2)
    acfg = acfg or C.AdaptationConfig()
    lr_scale = acfg.lr_scale if acfg.lr_scale is not None else float(runtime_settings(ck).get("lr_scale", 1.0))
    return make_adapter(kind, ck.model, lr, steps, gate=Gate(acfg.gate_holdout, acfg.gate_min_gain), lr_scale=lr_scale,
                        adapt_layers=ck.maml.adapt_layers if ck.maml else 0)


class AdaptiveMPC(SlowPolicy):
    """Adapt-then-plan over one adapter, one planner and a path cost (a slow-loop policy)."""

    def __init__(self, adapter: Adapter, spec: FeatureSpec, path: Path, ctrl: C.ControllerConfig,
                 target_speed: float, window: int) -> None:
        self.adapter, self.spec = adapter, spec
        self.S = spec.state_dim
        self.window_x: deque[np.ndarray] = deque(maxlen=window)
        self.window_y: deque[np.ndarray] = deque(maxlen=window)
        pts = torch.as_tensor(path.points[::PATH_POINT_SPACING], dtype=torch.float32)
        w = ctrl.cost
        self.cost = PathCost(pts, {"cross_track": w.cross_track, "heading": w.heading, "course": w.course, "speed": w.speed,
                                   "smoothness": w.smoothness}, target_speed=target_speed, dt=spec.control_period,
                             terminal_weight=w.terminal, approach_gain=w.approach_gain)
        self.planner = make_planner(ctrl.planner, self._step, self.cost, spec.action_dim)
        self.rollout_dtype = rollout_dtype(ctrl.planner.precision)
        self.planner_samples = ctrl.planner.samples
        self._set_context(adapter.adapt(np.zeros((0, self.S + spec.action_dim), np.float32),
                                        np.zeros((0, spec.target_dim), np.float32)))
        self.offset_gain = ctrl.adaptation.offset_gain
        self.crab_compensation, self.target_speed = w.crab_compensation, target_speed
        self.offset_index = offset_index(spec, ctrl.adaptation.offset_targets)  # while the plain model plans
        self.adaptive_offset_index = offset_index(spec, ctrl.adaptation.adaptive_offset)  # while a model that adapts plans
        self.offset = torch.zeros(spec.target_dim)  # [T] target units, added to every prediction (model_offset.py)
        self.stats = CycleStats()
        self.fallbacks = 0
        self.truth = ProgressTracker(path, self.cost.window)  # the simulator's true pose, tracked on its own

    def _set_context(self, ctx) -> None:
        """Adopt the adapted parameters ``ctx``; the planner's rollouts use them unpacked once, in its precision."""
        self.ctx = ctx
        self.predict = (self.adapter.rollout_model(ctx, self.rollout_dtype, self.planner_samples)
                        or self.adapter.dynamics(ctx))

    def _step(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Batched dynamics for the planner: z [N, 3+S], a [N, A] -> z' [N, 3+S]."""
        s = z[:, 3:]
        d = self.predict(s, a).add_(self.offset)  # [N, S+3]; every predictor returns a fresh tensor
        return torch.cat([integrate_pose(z[:, :3], d[:, self.S:self.S + 3]), s + d[:, :self.S]], dim=1)

    def _crab_angle(self, wy: np.ndarray) -> float:
        """rad: the direction of the body's motion over the window ``wy`` [M, T], left of its heading (atan2 of the summed
        body-frame displacements dy, dx); 0 until the window is full (the stand-up and the first steps say nothing of a
        crab) and on a window that made under a quarter of the nominal progress."""
        if len(wy) < self.window_y.maxlen:
            return 0.0
        d = wy[:, self.S:self.S + 2].sum(axis=0)
        nominal = self.target_speed * self.spec.control_period * len(wy)
        return float(np.clip(np.arctan2(d[1], d[0]), -MAX_CRAB, MAX_CRAB)) if d[0] > 0.25 * nominal else 0.0

    def _update_offset(self, wx: np.ndarray, wy: np.ndarray) -> None:
        """The planner's model's steady error on a full window (``wx`` [M, S+A], ``wy`` [M, T]), added to its
        predictions (controller/model_offset.py): on ``offset_targets`` while the plain model plans, on
        ``adaptive_offset`` (default none) while a model that adapts plans; zero before the window is full."""
        index = self.offset_index if self.adapter.plans_plainly else self.adaptive_offset_index
        if self.offset_gain > 0 and len(index) and len(wx) == self.window_x.maxlen:
            self.offset = window_offset(self.predict, wx, wy, self.S, index, self.offset_gain)
        else:
            self.offset.zero_()

    def observe(self, state: np.ndarray, action: np.ndarray, next_state: np.ndarray, displacement: np.ndarray) -> None:
        """Append the transition of the period that just ended."""
        self.window_x.append(np.concatenate([state, action]).astype(np.float32))
        self.window_y.append(target_vector(state, next_state, displacement).astype(np.float32))

    def step(self, state: np.ndarray, pose: np.ndarray, prev_action: np.ndarray | None = None) -> np.ndarray:
        """Adapt on the window, then plan from (pose, state); returns the plan [H, A]."""
        st = CycleStats(window=len(self.window_x))
        t0 = time.perf_counter()
        wx = np.stack(self.window_x) if self.window_x else None
        wy = np.stack(self.window_y) if self.window_y else None
        if wx is not None:
            self._set_context(self.adapter.adapt(wx, wy))
            self._update_offset(wx, wy)
        st.loss_before, st.loss_after = float(self.adapter.last_loss_before), float(self.adapter.last_loss_after)
        st.fallback = bool(self.adapter.last_fallback)
        if isinstance(self.adapter, SwitchingAdapter):
            st.adapted, st.plain_loss = self.adapter.engaged, self.adapter.last_plain_loss
            st.plain_recent_loss = self.adapter.last_recent_loss
        st.offset = self.offset[self.S:self.S + 3].numpy().copy()
        self.fallbacks += st.fallback
        t1 = time.perf_counter()
        self.cost.advance(torch.as_tensor(pose[:2], dtype=torch.float32))
        self.cost.crab = 0.0 if wy is None else self.crab_compensation * self._crab_angle(wy)
        self.cost.prev_action = None if prev_action is None else torch.as_tensor(prev_action, dtype=torch.float32)
        z0 = torch.as_tensor(np.concatenate([pose, state]), dtype=torch.float32)
        with torch.no_grad():
            plan = self.planner.plan(z0)
        st.adapt_time, st.plan_time = t1 - t0, time.perf_counter() - t1
        st.cost = float(self.planner.last_info.best_cost)
        st.plan_poses, st.candidate_poses = _predicted_poses(self.planner.last_rollout)
        self.stats = st
        return plan.numpy().astype(float)

    def plan(self, state: np.ndarray, pose: np.ndarray, t: float, prev_action: np.ndarray | None) -> np.ndarray:
        return self.step(state, pose, prev_action)

    def cross_track(self, pose: np.ndarray) -> float:
        """Signed distance (m) of ``pose`` from the path, + = left."""
        return self.project(pose)[1]

    def project_truth(self, true_pose: np.ndarray) -> tuple[float, float]:
        """(arc length s m, signed cross-track m) of the simulator's true pose, searched near the
        truth's own progress: never near the estimate's, which may under-read the distance walked."""
        return self.truth.project(true_pose[:2])

    def project(self, pose: np.ndarray) -> tuple[float, float]:
        """(arc length s m, signed cross-track m) of ``pose`` near the current (estimated) progress."""
        s, e, _ = self.cost.path.project(torch.as_tensor(pose[:2], dtype=torch.float32).reshape(1, 2),
                                         self.cost.s_hint, self.cost.window)
        return float(s[0]), float(e[0])


def _predicted_poses(rollout: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Predicted poses of the last iteration's best candidate [H+1, 3] and of SHOWN_CANDIDATES
    candidates spread evenly over the cost ranking [K, H+1, 3] (x m, y m, yaw rad)."""
    if rollout is None:
        return None, None
    traj, costs = rollout
    order = torch.argsort(costs)
    picks = order[torch.linspace(1, len(order) - 1, min(SHOWN_CANDIDATES, len(order) - 1)).round().long()]
    poses = traj[..., :3].float()
    return poses[order[0]].numpy().copy(), poses[picks].numpy().copy()
