"""Coloured (power-law) Gaussian noise along the planning horizon, as iCEM samples it.

Noise whose power spectral density falls as 1/f^β: β = 0 is white (every step independent), β = 1
pink, β = 2 red/Brownian-like (slow, smooth excursions). Action sequences perturbed with β ≈ 2
explore in smooth strokes that a legged gait can follow, where white noise mostly jitters
(Pinneri et al., "Sample-efficient cross-entropy method for real-time planning", CoRL 2020).

Generated in the frequency domain (the method of Timmer & König 1995, as the ``colorednoise``
package does it): complex Gaussian amplitudes scaled by f^(-β/2), an inverse real FFT over the
horizon, normalised to unit variance, so a sampler multiplies it by its standard deviation
exactly as it would white noise (the ensemble variance of every step is 1, the DC term included).
"""

from __future__ import annotations

import math

import torch


def colored_noise(beta: float, shape: tuple[int, int, int], generator: torch.Generator,
                  dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Unit-variance 1/f^β noise of ``shape`` = (N, H, A), correlated along H (dim 1): [N, H, A]."""
    n, h, a = shape
    if beta == 0.0 or h < 2:
        return torch.randn(n, h, a, generator=generator, dtype=dtype, device=device)
    f = torch.fft.rfftfreq(h, dtype=torch.float64)  # [F], cycles per step
    f = torch.clamp(f, min=1.0 / h)  # the lowest resolvable frequency stands in for DC
    scale = f ** (-beta / 2.0)  # amplitude, [F]
    # variance of each step: DC (real, x sqrt 2) 2 s0²; every other term 4 s_k², the Nyquist term of an even
    # horizon (real, x sqrt 2) 2 s²; all over h²
    terms = 4.0 * scale ** 2
    terms[0] = 2.0 * scale[0] ** 2
    if h % 2 == 0:
        terms[-1] = 2.0 * scale[-1] ** 2
    sigma = math.sqrt(float(terms.sum())) / h  # the process's standard deviation
    real = torch.randn(n, a, f.numel(), generator=generator, dtype=torch.float64, device=device) * scale
    imag = torch.randn(n, a, f.numel(), generator=generator, dtype=torch.float64, device=device) * scale
    imag[..., 0] = 0.0
    real[..., 0] *= math.sqrt(2.0)
    if h % 2 == 0:
        imag[..., -1] = 0.0
        real[..., -1] *= math.sqrt(2.0)
    y = torch.fft.irfft(torch.complex(real, imag), n=h) / sigma  # [N, A, H]
    return y.transpose(1, 2).to(dtype).contiguous()


__all__ = ["colored_noise"]
