"""Smoothed Gaussian fields: exactly N(0, 1) conv latents with spatial correlation.

White noise convolved with a Gaussian kernel of width `sigma` (periodically on a grid
padded by 5 sigma, then cropped to (H, W), so opposite edges are not neighbours),
normalised by the kernel's L2 norm, is a stationary Gaussian field with unit marginal
variance and correlation exp(−lag² / (4 sigma²)) (continuous-kernel limit; the discrete
kernel's exact lag-1 correlation is returned by :func:`lag1_correlation`). Items are
independent, channels too.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def _kernel_fft(shape: tuple[int, int], sigma: float) -> NDArray[np.complex128]:
    """Return the FFT of a periodic Gaussian kernel of unit L2 norm on the grid."""
    h, w = shape
    dy = np.minimum(np.arange(h), h - np.arange(h))
    dx = np.minimum(np.arange(w), w - np.arange(w))
    k = np.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2.0 * sigma**2)) if sigma > 0 else None
    if k is None:
        k = np.zeros((h, w))
        k[0, 0] = 1.0
    k = k / math.sqrt(float(np.sum(k * k)))
    return np.fft.rfft2(k)


def lag1_correlation(shape: tuple[int, int], sigma: float) -> float:
    """Return the exact lag-1 correlation (along H) of the discrete periodic field."""
    kf = _kernel_fft(shape, sigma)
    acf = np.fft.irfft2(np.abs(kf) ** 2, s=shape)
    return float(acf[1, 0] / acf[0, 0])


def sigma_for_rho(rho: float) -> float:
    """Return the kernel width whose continuous-limit lag-1 correlation is `rho`."""
    return math.sqrt(-1.0 / (4.0 * math.log(rho))) if rho > 0 else 0.0


def smoothed_fields(
    rng: np.random.Generator,
    n_items: int,
    n_channels: int,
    shape: tuple[int, int] = (16, 16),
    sigma: float = 1.5,
    *,
    noise: str = "normal",
) -> NDArray[np.float64]:
    """Return (n_items, n_channels, H, W) fields with unit marginal variance.

    `noise` "normal" gives exact N(0, 1) values; "t5" smooths nothing and draws Student
    t(5) values scaled to unit variance, then imposes the same correlation by smoothing
    Gaussian fields and mapping them through the t(5) quantile function (a copula), so the
    marginals are t(5) (a real departure) with the same dependence pattern.
    """
    # periodic smoothing on a grid padded by 5 sigma, then cropped: no wrap-around, so
    # opposite edges of the field are as far apart as their distance says
    pad = math.ceil(5 * sigma)
    big = (shape[0] + 2 * pad, shape[1] + 2 * pad)
    kf = _kernel_fft(big, sigma)
    white = rng.standard_normal((n_items, n_channels, *big))
    x = np.fft.irfft2(np.fft.rfft2(white) * kf, s=big)
    x = x[..., pad : pad + shape[0], pad : pad + shape[1]]
    if noise == "normal":
        return np.asarray(x)
    if noise == "t5":
        from scipy import stats

        u = stats.norm.cdf(x)
        return np.asarray(stats.t.ppf(u, 5) / math.sqrt(5.0 / 3.0))
    raise ValueError(noise)
