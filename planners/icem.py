"""iCEM: the improved cross-entropy method (Pinneri et al., CoRL 2020) over action sequences.

CEM (:mod:`planners.cem`) with the changes that let it plan with far fewer samples:

* **coloured noise**: samples are ``mean + std * ε`` with ε correlated along the horizon,
  power spectrum 1/f^β (:func:`planners.colored_noise.colored_noise`; β = 0 is CEM's white noise);
* **elites kept**: a fraction ``keep_elites`` of each iteration's elites joins the next
  iteration's population, and the previous plan's elites, shifted one step (the executed step
  dropped, the last repeated), join the first;
* **shrinking population**: iteration i samples ``max(N · decay^-i, 2 K)`` sequences;
* **the mean itself** is evaluated in the last iteration (sample 0 of every iteration here, as
  in our CEM), and the best sequence ever evaluated is returned (iCEM's choice; ``return_best``).

Means, standard deviations and the warm start follow CEM: ``alpha`` blends the refit with the
previous distribution, ``min_std`` floors the spread, the base class shifts the mean.
"""

from __future__ import annotations

import torch

from .base import Cost, Dynamics, PlanInfo, Planner, TensorLike
from .colored_noise import colored_noise


class ICEM(Planner):
    """iCEM planner.

    Args:
        dynamics, cost, horizon, action_low, action_high, seed, **kwargs: see :class:`~planners.base.Planner`.
        num_samples: N, sequences in the first iteration (>= 2).
        num_elites: K, lowest-cost sequences refit to (2 <= K <= N).
        iterations: refits per plan.
        beta: noise colour exponent (0 white, 2 the paper's choice for locomotion).
        keep_elites: fraction of the elites carried to the next iteration (and, shifted, to the next plan).
        decay: population decay factor γ >= 1 (iteration i samples N γ^-i, at least 2 K).
        alpha, init_std, min_std: as in :class:`~planners.cem.CEM`.
        return_best: return the lowest-cost sequence evaluated (True, iCEM) or the final mean.
    """

    def __init__(self, dynamics: Dynamics, cost: Cost, horizon: int, action_low: TensorLike, action_high: TensorLike,
                 num_samples: int = 200, num_elites: int = 20, iterations: int = 3, beta: float = 2.0,
                 keep_elites: float = 0.3, decay: float = 1.25, alpha: float = 0.1, init_std: TensorLike | None = None,
                 min_std: TensorLike = 0.01, return_best: bool = True, seed: int = 0, **kwargs) -> None:
        super().__init__(dynamics, cost, horizon, action_low, action_high, seed=seed, **kwargs)
        if num_samples < 2 or not 2 <= num_elites <= num_samples:
            raise ValueError(f"need num_samples >= 2 and 2 <= num_elites <= num_samples, got {num_samples}, {num_elites}")
        if iterations < 1 or beta < 0 or not 0.0 <= keep_elites <= 1.0 or decay < 1.0 or not 0.0 <= alpha < 1.0:
            raise ValueError(f"iCEM: need iterations >= 1, beta >= 0, keep_elites in [0, 1], decay >= 1, alpha in [0, 1); "
                             f"got {iterations}, {beta}, {keep_elites}, {decay}, {alpha}")
        self.num_samples, self.num_elites, self.iterations = int(num_samples), int(num_elites), int(iterations)
        self.beta, self.keep_elites, self.decay, self.alpha = float(beta), float(keep_elites), float(decay), float(alpha)
        std = 0.25 * (self.action_high - self.action_low) if init_std is None else init_std
        self.init_std = self._per_dim(std, "init_std")  # [A]
        self.min_std = self._per_dim(min_std, "min_std")  # [A]
        self.return_best = bool(return_best)
        self._kept: torch.Tensor | None = None  # [k, H, A], the last plan's kept elites

    def reset(self) -> None:
        super().reset()
        self._kept = None

    def population(self, iteration: int) -> int:
        """Samples drawn in ``iteration`` (0-based): N γ^-i, at least 2 K."""
        return max(int(round(self.num_samples * self.decay ** -iteration)), 2 * self.num_elites)

    def _optimize(self, state: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, PlanInfo]:
        """Run ``iterations`` iCEM refits from ``mean`` [H, A]; return the solution [H, A]."""
        h, a = self.horizon, self.action_dim
        std = self.init_std.expand(h, a)
        kept = self._shifted_kept()
        best_cost = torch.tensor(float("inf"), dtype=self.dtype, device=self.device)
        best_seq, costs = mean, best_cost
        n_keep = int(round(self.keep_elites * self.num_elites))
        for i in range(self.iterations):
            n = self.population(i)
            noise = colored_noise(self.beta, (n, h, a), self.generator, self.dtype, self.device)
            noise[0] = 0.0  # the mean itself is a sample
            samples = self.clamp(mean + std * noise)
            if kept is not None:
                samples = torch.cat([samples, kept], dim=0)
            _, costs = self.rollout(state, samples)
            elite_costs, idx = torch.topk(costs, self.num_elites, largest=False, sorted=True)
            elites = samples[idx]  # [K, H, A]
            mean = self.alpha * mean + (1.0 - self.alpha) * elites.mean(dim=0)
            std = torch.maximum(self.alpha * std + (1.0 - self.alpha) * elites.std(dim=0, unbiased=False), self.min_std)
            best_seq = torch.where(elite_costs[0] < best_cost, elites[0], best_seq)
            best_cost = torch.minimum(elite_costs[0], best_cost)
            kept = elites[:n_keep] if n_keep else None
        self._kept = kept
        info = PlanInfo(best_cost=float(best_cost), mean_cost=float(costs.mean()), iterations=self.iterations,
                        samples=self.population(0))
        return (best_seq if self.return_best else mean), info

    def _shifted_kept(self) -> torch.Tensor | None:
        """The last plan's kept elites, one step later (the executed step dropped, the last step repeated)."""
        if self._kept is None:
            return None
        return torch.cat([self._kept[:, 1:], self._kept[:, -1:]], dim=1)


__all__ = ["ICEM"]
