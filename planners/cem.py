"""Cross-entropy method (CEM) over action sequences, as in mbrl-lib's ``CEMOptimizer``.

Each iteration samples N sequences from a diagonal Gaussian ``N(mean [H, A], std [H, A])``,
clamped to the action bounds, rolls them out in one batch, refits mean and std to the
lowest-cost ``num_elites``, and blends the refit with the previous distribution
(``alpha`` = weight kept on the previous one). Sample 0 of every iteration is the current
mean itself, so a plan never scores worse than the warm start it began from.
"""

from __future__ import annotations

import torch

from .base import Cost, Dynamics, PlanInfo, Planner, TensorLike


class CEM(Planner):
    """CEM planner.

    Args:
        dynamics, cost, horizon, action_low, action_high, seed, **kwargs: see
            :class:`~planners.base.Planner`.
        num_samples: N, sequences per iteration (>= 2).
        num_elites: lowest-cost sequences the distribution is refit to (2 <= elites <= N).
        iterations: refits per plan.
        alpha: smoothing/momentum in [0, 1): ``new = alpha * old + (1 - alpha) * refit``
            for mean and std.
        init_std: initial standard deviation per action dim (action units, scalar or [A]);
            default a quarter of the bound range. Reset at every plan (the mean is warm
            started, the spread is not).
        min_std: floor on the standard deviation (action units, scalar or [A]), so the
            search never collapses completely.
        return_best: return the lowest-cost sequence ever evaluated instead of the final
            mean (the mean is smoother; the best is greedier).
    """

    def __init__(self, dynamics: Dynamics, cost: Cost, horizon: int, action_low: TensorLike,
                 action_high: TensorLike, num_samples: int = 500, num_elites: int = 50,
                 iterations: int = 5, alpha: float = 0.1, init_std: TensorLike | None = None,
                 min_std: TensorLike = 0.01, return_best: bool = False, seed: int = 0,
                 **kwargs) -> None:
        super().__init__(dynamics, cost, horizon, action_low, action_high, seed=seed, **kwargs)
        if num_samples < 2 or not 2 <= num_elites <= num_samples:
            raise ValueError(f"need num_samples >= 2 and 2 <= num_elites <= num_samples, got {num_samples}, {num_elites}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.num_samples = int(num_samples)
        self.num_elites = int(num_elites)
        self.iterations = int(iterations)
        self.alpha = float(alpha)
        std = 0.25 * (self.action_high - self.action_low) if init_std is None else init_std
        self.init_std = self._per_dim(std, "init_std")  # [A]
        self.min_std = self._per_dim(min_std, "min_std")  # [A]
        self.return_best = bool(return_best)
        # Multiplies the noise: row 0 (the current mean) gets none.
        self._noise_mask = torch.ones(self.num_samples, 1, 1, dtype=self.dtype, device=self.device)
        self._noise_mask[0] = 0.0

    def _optimize(self, state: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, PlanInfo]:
        """Run ``iterations`` CEM refits from ``mean`` [H, A]; return the solution [H, A]."""
        n, h, a = self.num_samples, self.horizon, self.action_dim
        std = self.init_std.expand(h, a)
        best_cost = torch.tensor(float("inf"), dtype=self.dtype, device=self.device)
        best_seq = mean
        costs = best_cost
        for _ in range(self.iterations):
            samples = self.clamp(mean + std * self._randn(n, h, a) * self._noise_mask)  # [N, H, A]
            _, costs = self.rollout(state, samples)
            elite_costs, idx = torch.topk(costs, self.num_elites, largest=False, sorted=True)
            elites = samples[idx]  # [K, H, A]
            mean = self.alpha * mean + (1.0 - self.alpha) * elites.mean(dim=0)
            std = torch.maximum(self.alpha * std + (1.0 - self.alpha) * elites.std(dim=0, unbiased=False),
                                self.min_std)
            improved = elite_costs[0] < best_cost
            best_seq = torch.where(improved, samples[idx[0]], best_seq)
            best_cost = torch.minimum(elite_costs[0], best_cost)
        solution = best_seq if self.return_best else mean
        info = PlanInfo(best_cost=float(best_cost), mean_cost=float(costs.mean()),
                        iterations=self.iterations, samples=n)
        return solution, info


__all__ = ["CEM"]
