"""Model predictive path integral control (MPPI), as in pytorch_mppi / Williams et al. 2017.

Each iteration perturbs the nominal sequence ``U [H, A]`` with Gaussian noise of per-dim
standard deviation ``noise_sigma``, clamps to the bounds, rolls all N samples out in one
batch and moves ``U`` by the softmax-weighted mean perturbation::

    w_i = exp(-(J_i - min J) / λ) / Σ_j exp(-(J_j - min J) / λ)
    ΔU  = Σ_i w_i (V_i - U)            # update="clamped" (default): V_i the clamped sample (pytorch_mppi)
    ΔU  = Σ_i w_i ε_i                  # update="noise": the noise as drawn (Williams et al.)
    U  <- clamp(U + smooth(ΔU))

The two differ only near a bound. With ``clamped`` every sample lies on the inner side of a nominal
that sits at a bound, so the update can only pull it back in: where the best action is the bound (a
limp leg's side striding in full, uphill) the nominal hovers below it. With ``noise`` a sample drawn
beyond the bound is executed at the bound but counts as drawn, so a nominal at a bound that costs least
stays there, and one near a bound leans on it: the robot strides in full where the speed target asks
for less (README, *The planner at its bounds*).

Sample 0 is the nominal itself (zero noise). With ``fine_share`` > 0 the last ``fine_share · N`` samples
are drawn with ``fine_scale`` times the noise: one batch, one update, the same compute. The update's
fixed point is where the cost *smoothed by the sampling noise* is least, not where the cost is: with a
noise much wider than the cost's valley the nominal settles off its floor, whatever the number of
samples or iterations (README, *The planner's own bias*). Near the floor the fine samples are the best
ones and carry the update onto it; the wide ones still find a new floor when the robot changes.
``smooth`` is a centred moving average over the
horizon of width ``smoothing_window`` (edge values repeated), which removes the
step-to-step jitter the noise puts into the update; a constant update passes unchanged.
The control-cost term λ uᵀΣ⁻¹ε of the original derivation is omitted (as in mbrl-lib's
MPPI): with clamped samples and a smoothness residual in the cost it only adds bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Cost, Dynamics, PlanInfo, Planner, TensorLike
from .colored_noise import colored_noise

UPDATES = ("noise", "clamped")  # what moves the nominal (see the module)


class MPPI(Planner):
    """MPPI planner.

    Args:
        dynamics, cost, horizon, action_low, action_high, seed, **kwargs: see
            :class:`~planners.base.Planner`.
        num_samples: N, sequences per iteration including the nominal (>= 2).
        temperature: λ > 0 (cost units); smaller is greedier.
        noise_sigma: exploration standard deviation per action dim (action units, scalar
            or [A]); default a quarter of the bound range.
        iterations: MPPI updates per plan (pytorch_mppi does 1 per control step).
        smoothing_window: odd width (steps) of the moving average applied to each update
            over the horizon; 1 disables it.
        noise_beta: colour of the exploration noise along the horizon, PSD 1/f^β
            (:mod:`planners.colored_noise`): 0 white (the classic MPPI), 2 smooth strokes.
        update: what moves the nominal, ``"noise"`` (the weighted noise as drawn) or ``"clamped"``
            (the weighted offsets of the clamped samples); see the module.
        fine_share: share of the samples (0 <= share < 1) drawn with ``fine_scale`` times the noise.
        fine_scale: the fine samples' noise relative to ``noise_sigma`` (0 < scale <= 1).
    """

    def __init__(self, dynamics: Dynamics, cost: Cost, horizon: int, action_low: TensorLike,
                 action_high: TensorLike, num_samples: int = 500, temperature: float = 1.0,
                 noise_sigma: TensorLike | None = None, iterations: int = 1,
                 smoothing_window: int = 3, noise_beta: float = 0.0, update: str = "clamped", fine_share: float = 0.0,
                 fine_scale: float = 0.25, seed: int = 0,
                 **kwargs) -> None:
        super().__init__(dynamics, cost, horizon, action_low, action_high, seed=seed, **kwargs)
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if smoothing_window < 1 or smoothing_window % 2 == 0:
            raise ValueError(f"smoothing_window must be a positive odd integer, got {smoothing_window}")
        self.num_samples = int(num_samples)
        self.temperature = float(temperature)
        sigma = 0.25 * (self.action_high - self.action_low) if noise_sigma is None else noise_sigma
        self.noise_sigma = self._per_dim(sigma, "noise_sigma")  # [A]
        self.iterations = int(iterations)
        self.smoothing_window = int(smoothing_window)
        if noise_beta < 0:
            raise ValueError(f"noise_beta must be >= 0, got {noise_beta}")
        self.noise_beta = float(noise_beta)
        if update not in UPDATES:
            raise ValueError(f"update must be one of {', '.join(UPDATES)}, got {update!r}")
        self._by_noise = update == "noise"
        if not 0.0 <= fine_share < 1.0 or not 0.0 < fine_scale <= 1.0:
            raise ValueError(f"fine_share must be in [0, 1) and fine_scale in (0, 1], got {fine_share}, {fine_scale}")
        # Per-sample noise scale [N, 1, 1]: row 0 zeroed (the nominal is always one of the samples), the fine rows last.
        self._noise_mask = torch.ones(self.num_samples, 1, 1, dtype=self.dtype, device=self.device)
        fine = int(round(fine_share * self.num_samples))
        if fine:
            self._noise_mask[-fine:] = fine_scale
        self._noise_mask[0] = 0.0
        w = self.smoothing_window
        self._kernel = torch.full((self.action_dim, 1, w), 1.0 / w, dtype=self.dtype, device=self.device)

    def smooth(self, delta: torch.Tensor) -> torch.Tensor:
        """Centred moving average of ``delta`` [H, A] over the horizon (edges repeated): [H, A]."""
        pad = self.smoothing_window // 2
        x = F.pad(delta.T[None], (pad, pad), mode="replicate")  # [1, A, H + 2 pad]
        return F.conv1d(x, self._kernel, groups=self.action_dim)[0].T

    def _optimize(self, state: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, PlanInfo]:
        """Run ``iterations`` MPPI updates of the nominal ``mean`` [H, A]; return it [H, A]."""
        n, h, a = self.num_samples, self.horizon, self.action_dim
        best_cost = torch.tensor(float("inf"), dtype=self.dtype, device=self.device)
        costs = best_cost
        for _ in range(self.iterations):
            noise = colored_noise(self.noise_beta, (n, h, a), self.generator, self.dtype, self.device)
            noise = noise * self.noise_sigma * self._noise_mask
            samples = self.clamp(mean + noise)  # [N, H, A]
            _, costs = self.rollout(state, samples)
            weights = torch.softmax(-(costs - costs.min()) / self.temperature, dim=0)  # [N]
            offsets = noise if self._by_noise else samples - mean  # [N, H, A]
            delta = torch.einsum("n,nha->ha", weights, offsets)
            mean = self.clamp(mean + self.smooth(delta))
            best_cost = torch.minimum(costs.min(), best_cost)
        info = PlanInfo(best_cost=float(best_cost), mean_cost=float(costs.mean()),
                        iterations=self.iterations, samples=n)
        return mean, info


__all__ = ["MPPI"]
