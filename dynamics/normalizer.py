"""Z-score normaliser whose statistics are module buffers (saved in the state dict, moved by ``.to``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class Normalizer(nn.Module):
    """Per-feature z-normalisation ``(x - mean) / std`` over the last axis.

    Buffers ``mean`` [D] and ``std`` [D] (units of the feature) start as 0 and 1 (identity)
    and are set by :meth:`fit`. ``std`` is floored at ``min_std`` (default 1e-3, in the
    feature's own units: rad, m/s, m) so that a feature that was nearly constant in the
    training data (a joint of a leg that never failed) does not turn small run-time changes
    into huge z-scores.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, dim: int, min_std: float = 1e-3) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"Normalizer needs a positive feature dimension, got {dim}")
        self.dim = int(dim)
        self.min_std = float(min_std)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, data: Tensor | np.ndarray) -> Normalizer:
        """Set mean/std from ``data`` [N, D] (or [..., D], flattened); returns self.

        Raises ValueError on a wrong feature dimension, an empty array or non-finite values:
        statistics polluted by a NaN would silently poison every later prediction.
        """
        x = torch.as_tensor(data).to(dtype=self.mean.dtype, device=self.mean.device)
        if x.shape[-1] != self.dim:
            raise ValueError(f"Normalizer.fit: expected last dimension {self.dim}, got shape {tuple(x.shape)}")
        x = x.reshape(-1, self.dim)
        if x.shape[0] == 0:
            raise ValueError("Normalizer.fit: no data rows")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("Normalizer.fit: data contains NaN or inf; clean the dataset first")
        self.mean.copy_(x.mean(dim=0))
        self.std.copy_(x.std(dim=0, unbiased=False).clamp_min(self.min_std))
        return self

    def normalize(self, x: Tensor) -> Tensor:
        """``x`` [..., D] in feature units -> [..., D] z-scores."""
        return (x - self.mean) / self.std

    def denormalize(self, z: Tensor) -> Tensor:
        """``z`` [..., D] z-scores -> [..., D] in feature units."""
        return z * self.std + self.mean

    def extra_repr(self) -> str:
        return f"dim={self.dim}, min_std={self.min_std:g}"
