"""Planner base class: bounds, horizon, seeded sampling, warm start, batched rollouts.

A planner sees only two callables (design.md, "The house"):

* ``dynamics(state [B, D], action [B, A]) -> next_state [B, D]``, batched over B;
* ``cost(states [N, H+1, D], actions [N, H, A]) -> costs [N]``, vectorised over the whole
  trajectory (any terminal term lives inside it; ``states[:, 0]`` is the current state).

Subclasses implement :meth:`Planner._optimize`, which refines an initial mean action
sequence ``[H, A]`` and returns the solution. The base class owns the warm start: after each
plan the solution is shifted one step (the vacated last step repeated, or filled with the
default mean), and the next plan starts from it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

Dynamics = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Cost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TensorLike = torch.Tensor | float | Sequence[float]

# Costs that are NaN or infinite (a diverging model) become this finite value, so that
# softmax weights and elite ranking stay well defined without a branch.
COST_CEILING = 1e30


@dataclass
class PlanInfo:
    """Diagnostics of the last call to :meth:`Planner.plan`.

    Attributes:
        best_cost: lowest cost of any evaluated sample (cost units).
        mean_cost: mean cost over the samples of the last iteration (cost units).
        iterations: optimiser iterations run.
        samples: action sequences evaluated per iteration (N).
        wall_time_s: wall-clock time of the whole plan (s).
    """

    best_cost: float = float("nan")
    mean_cost: float = float("nan")
    iterations: int = 0
    samples: int = 0
    wall_time_s: float = 0.0


class Planner(ABC):
    """Sampling-based planner over a batched dynamics callable and a trajectory cost.

    Args:
        dynamics: ``f(state [B, D], action [B, A]) -> next_state [B, D]``.
        cost: ``cost(states [N, H+1, D], actions [N, H, A]) -> [N]``.
        horizon: planning horizon H (steps).
        action_low, action_high: action bounds [A] (or scalars with ``action_dim``); every
            returned and every evaluated action lies within them.
        seed: seed of the planner's own ``torch.Generator``; same seed, same plans.
        default_mean: action used to initialise the plan and to fill the last step after
            a shift when ``shift_fill="default"`` (scalar or [A]); default: mid-bounds.
        shift_fill: ``"last"`` repeats the last step of the previous solution after a
            shift, ``"default"`` fills it with ``default_mean``.
        action_dim: A, when the bounds are given as scalars; default: their length.
        dtype, device: tensor type and device of the planner's tensors.
    """

    def __init__(self, dynamics: Dynamics, cost: Cost, horizon: int,
                 action_low: TensorLike, action_high: TensorLike, seed: int = 0,
                 default_mean: TensorLike | None = None, shift_fill: str = "last",
                 action_dim: int | None = None, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu") -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if shift_fill not in ("last", "default"):
            raise ValueError(f"shift_fill must be 'last' or 'default', got {shift_fill!r}")
        low = torch.as_tensor(action_low, dtype=dtype, device=device).reshape(-1)
        high = torch.as_tensor(action_high, dtype=dtype, device=device).reshape(-1)
        low, high = torch.broadcast_tensors(low, high)
        if action_dim is not None:
            if low.numel() not in (1, action_dim):
                raise ValueError(f"bounds of length {low.numel()} do not match action_dim={action_dim}")
            low, high = low.expand(action_dim), high.expand(action_dim)
        if not bool(torch.all(high > low)):
            raise ValueError(f"action_high must exceed action_low everywhere: low={low}, high={high}")
        self.dynamics = dynamics
        self.cost = cost
        self.horizon = int(horizon)
        self.action_low = low.clone()  # [A]
        self.action_high = high.clone()  # [A]
        self.action_dim = int(low.numel())
        self.dtype, self.device = dtype, torch.device(device)
        mean = 0.5 * (low + high) if default_mean is None else torch.as_tensor(default_mean, dtype=dtype, device=device)
        self.default_mean = torch.clamp(torch.broadcast_to(mean.reshape(-1), low.shape), low, high).clone()  # [A]
        self.shift_fill = shift_fill
        self.seed = int(seed)
        self.generator = torch.Generator(device=self.device)
        self.last_info = PlanInfo()
        self.last_rollout: tuple[torch.Tensor, torch.Tensor] | None = None
        self._solution: torch.Tensor | None = None  # [H, A], the last plan
        self.reset()

    # ----------------------------------------------------------------- public API
    def reset(self) -> None:
        """Forget the warm start and re-seed the generator (a reset planner repeats itself)."""
        self.generator.manual_seed(self.seed)
        self._solution = None
        self.last_info = PlanInfo()

    def initial_mean(self) -> torch.Tensor:
        """The sequence the next plan starts from: [H, A].

        The previous solution shifted one step earlier (its first action was executed), with
        the last step repeated (``shift_fill="last"``) or set to ``default_mean``; before the
        first plan, or after :meth:`reset`, ``default_mean`` repeated over the horizon.
        """
        if self._solution is None:
            return self.default_mean.expand(self.horizon, -1).clone()
        fill = self._solution[-1:] if self.shift_fill == "last" else self.default_mean[None]
        return torch.cat([self._solution[1:], fill], dim=0)

    def shift(self) -> None:
        """Advance the stored solution one step without planning.

        For a control period that ran on the old plan (a missed planning deadline): the
        next :meth:`plan` then starts from the action due after it. No-op before a plan.
        """
        if self._solution is not None:
            self._solution = self.initial_mean()

    def plan(self, state: torch.Tensor) -> torch.Tensor:
        """Optimise an action sequence from ``state`` [D]; returns it, [H, A], within bounds."""
        t0 = time.perf_counter()
        state = torch.as_tensor(state, dtype=self.dtype, device=self.device).reshape(-1)
        with torch.no_grad():
            solution, info = self._optimize(state, self.initial_mean())
        solution = self.clamp(solution)
        self._solution = solution
        info.wall_time_s = time.perf_counter() - t0
        self.last_info = info
        return solution.clone()

    def act(self, state: torch.Tensor) -> torch.Tensor:
        """Plan from ``state`` [D] and return the first action [A]."""
        return self.plan(state)[0]

    def rollout(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Roll ``actions`` [N, H, A] out from ``state`` [D] and cost them.

        Loops over the horizon only: H calls of ``dynamics`` with batch N.

        Returns:
            ``(states [N, H+1, D], costs [N])``; ``states[:, 0] == state``; non-finite costs
            are replaced by ``COST_CEILING``. The last pair is kept in ``last_rollout`` (not
            copied) for whoever wants to see the candidates of the last iteration.
        """
        n, h, _ = actions.shape
        x = state.reshape(1, -1).expand(n, -1)
        states = [x]
        for t in range(h):
            x = self.dynamics(x, actions[:, t])
            states.append(x)
        traj = torch.stack(states, dim=1)  # [N, H+1, D]
        costs = self.cost(traj, actions).reshape(n)
        costs = torch.nan_to_num(costs, nan=COST_CEILING, posinf=COST_CEILING, neginf=-COST_CEILING)
        self.last_rollout = (traj, costs)
        return traj, costs

    def clamp(self, actions: torch.Tensor) -> torch.Tensor:
        """Clamp actions [..., A] to the bounds."""
        return torch.clamp(actions, self.action_low, self.action_high)

    # ----------------------------------------------------------------- subclasses
    @abstractmethod
    def _optimize(self, state: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, PlanInfo]:
        """Refine ``mean`` [H, A] from ``state`` [D]; return the solution [H, A] and its info."""

    def _randn(self, *shape: int) -> torch.Tensor:
        """Standard normal samples from the planner's generator."""
        return torch.randn(*shape, generator=self.generator, dtype=self.dtype, device=self.device)

    def _rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) samples from the planner's generator."""
        return torch.rand(*shape, generator=self.generator, dtype=self.dtype, device=self.device)

    def _per_dim(self, value: TensorLike, name: str) -> torch.Tensor:
        """A positive scalar or [A] setting as an [A] tensor."""
        v = torch.broadcast_to(torch.as_tensor(value, dtype=self.dtype, device=self.device).reshape(-1),
                               (self.action_dim,)).clone()
        if not bool(torch.all(v > 0)):
            raise ValueError(f"{name} must be positive, got {v.tolist()}")
        return v


__all__ = ["COST_CEILING", "Cost", "Dynamics", "PlanInfo", "Planner"]
