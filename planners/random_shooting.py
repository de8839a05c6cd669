"""Random shooting: N sequences uniform within the action bounds, keep the cheapest.

Sample 0 is the warm-start sequence (the previous best, shifted), so consecutive plans
never lose a good sequence they already found.
"""

from __future__ import annotations

import torch

from .base import Cost, Dynamics, PlanInfo, Planner, TensorLike


class RandomShooting(Planner):
    """Random-shooting planner.

    Args:
        dynamics, cost, horizon, action_low, action_high, seed, **kwargs: see
            :class:`~planners.base.Planner`.
        num_samples: N, sequences evaluated per plan (>= 2), in one batch.
    """

    def __init__(self, dynamics: Dynamics, cost: Cost, horizon: int, action_low: TensorLike,
                 action_high: TensorLike, num_samples: int = 500, seed: int = 0, **kwargs) -> None:
        super().__init__(dynamics, cost, horizon, action_low, action_high, seed=seed, **kwargs)
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        self.num_samples = int(num_samples)
        self._span = self.action_high - self.action_low  # [A]

    def _optimize(self, state: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, PlanInfo]:
        """Evaluate ``mean`` [H, A] and N-1 uniform sequences; return the cheapest [H, A]."""
        n, h, a = self.num_samples, self.horizon, self.action_dim
        uniform = self.action_low + self._span * self._rand(n - 1, h, a)
        samples = torch.cat([self.clamp(mean)[None], uniform], dim=0)  # [N, H, A]
        _, costs = self.rollout(state, samples)
        best = torch.argmin(costs)
        info = PlanInfo(best_cost=float(costs[best]), mean_cost=float(costs.mean()), iterations=1, samples=n)
        return samples[best], info


__all__ = ["RandomShooting"]
