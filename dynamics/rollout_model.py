"""The planner's view of an adapted model: its weights unpacked once per plan, in fp32 or bfloat16.

A planner calls the dynamics H times per plan with a batch of N samples (500 × 10 at the
anchor). Through :func:`dynamics.mlp.predict` every call goes through ``functional_call``, the
normalisers and a dict of parameters: per-op overhead that, once the matrix products are fast,
dominates. :class:`RolloutModel` takes the adapted parameters once (``Adapter.rollout_model``),
keeps each layer as a pre-transposed weight and a bias in the rollout dtype, and runs

    x = clamp((concat(s, a) - μ_in) / σ_in, ±clip)           fp32
    h = relu(x W1 + b1) ... y_n = h W_L + b_L                 rollout dtype (fp32 or bf16)
    y = y_n σ_out + μ_out                                     fp32

so the normalisation, the output and everything the planner does with it (pose integration,
costs) stay fp32 and only the matrix products use bfloat16 where the CPU multiplies it natively
(AMX / AVX-512 BF16: :func:`bf16_native`). bfloat16 keeps fp32's range with an 8-bit mantissa:
a normalised prediction to about 3 significant digits.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bfloat16 matrix arithmetic


@lru_cache(maxsize=1)
def bf16_native() -> bool:
    """True where the CPU multiplies bfloat16 matrices natively (Linux /proc/cpuinfo flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in BF16_FLAGS)


def rollout_dtype(precision: str) -> torch.dtype:
    """The matrix dtype of ``precision`` ('fp32', 'bf16', or 'auto': bf16 where native, else fp32)."""
    if precision == "auto":
        return torch.bfloat16 if bf16_native() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]


class RolloutModel:
    """``(states [B, S], actions [B, A]) -> targets [B, T]`` in units, fp32 in and out (see the module docstring)."""

    def __init__(self, weights: list[tuple[Tensor, Tensor]], in_mean: Tensor, in_std: Tensor, out_mean: Tensor,
                 out_std: Tensor, input_clip: float, dtype: torch.dtype = torch.float32, batch: int = 500) -> None:
        """``weights``: (W [out, in], b [out]) per linear layer, as nn.Linear stores them; ReLU between them.
        ``batch``: the usual batch (the planner's samples), for the packed bf16 weights' layout."""
        self.dtype = dtype
        self.layers = [(w.detach().to(dtype), b.detach().to(dtype)) for w, b in weights]
        self.in_mean, self.in_inv_std = in_mean.detach().float(), 1.0 / in_std.detach().float()
        self.out_mean, self.out_std = out_mean.detach().float(), out_std.detach().float()
        self.clip = float(input_clip)
        self._linear = self._addmm_layers
        if dtype == torch.bfloat16 and _ONEDNN:  # oneDNN's packed weights and the ReLU fused: about 20 % per layer
            self.packed = [(torch.ops.mkldnn._reorder_linear_weight(w, batch), b) for w, b in self.layers]
            self._linear = self._onednn_layers

    def __call__(self, states: Tensor, actions: Tensor) -> Tensor:
        x = torch.cat([states, actions], dim=-1).sub_(self.in_mean).mul_(self.in_inv_std).clamp_(-self.clip, self.clip)
        return torch.addcmul(self.out_mean, self._linear(x.to(self.dtype)).float(), self.out_std)

    def _addmm_layers(self, h: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            h = torch.addmm(b, h, w.T)
            if i < last:
                h = h.relu_()
        return h

    def _onednn_layers(self, h: Tensor) -> Tensor:
        last = len(self.packed) - 1
        for i, (w, b) in enumerate(self.packed):
            h = torch.ops.mkldnn._linear_pointwise(h, w, b, "relu" if i < last else "none", [None], "")
        return h


def _onednn_linear() -> bool:
    """oneDNN's packed linear (what torch.compile's freezing uses on CPU) is there and agrees with addmm."""
    try:
        x, w, b = torch.randn(4, 8, dtype=torch.bfloat16), torch.randn(6, 8, dtype=torch.bfloat16), torch.zeros(6, dtype=torch.bfloat16)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 4)
        y = torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [None], "")
        return bool(torch.allclose(y.float(), (x @ w.T).float(), rtol=0.05, atol=0.05))
    except (AttributeError, RuntimeError):
        return False


_ONEDNN = torch.backends.mkldnn.is_available() and _onednn_linear()


__all__ = ["BF16_FLAGS", "RolloutModel", "bf16_native", "rollout_dtype"]
