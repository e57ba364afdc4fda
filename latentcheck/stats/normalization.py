"""Check a claimed latent normalisation against the data and name the known mistakes.

Latent diffusion pipelines normalise latents as ``(z − shift) * scale`` (Stable Diffusion uses
``z * scaling_factor``, i.e. shift 0). Given the pooled mean and standard deviation of the
data (and optionally per-dimension ones) and the constants a user claims, this module gives
the exact moments of the normalised latents, their distance from N(0, 1) in nats, the
constants the data needs, and a diagnosis among named, commonly made mistakes: an inverted
factor, a missing shift, another VAE's published constant, latents that were normalised
already, and a spread across channels that one global constant cannot fix.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import DegenerateDimensionWarning, InputError, SmallSampleWarning
from ..validation import check_int, check_positive
from .scale import degenerate_dims

__all__ = [
    "KNOWN_CONSTANTS",
    "MISTAKES",
    "KnownConstant",
    "NormalizationCheck",
    "check_normalization",
]

F64 = NDArray[np.float64]

#: The normalised std must lie in [1 − STD_TOL, 1 + STD_TOL] ("ok"), and so must
#: assume_scale · needed_scale for an "inverted factor".
STD_TOL = 0.1
#: The normalised mean must satisfy |mean| < MEAN_TOL ("ok"); |mean| / std ≥ MEAN_TOL with no
#: shift is a "missing shift".
MEAN_TOL = 0.1
#: assume_scale equals a published constant c when |assume_scale − c| ≤ MATCH_TOL · max(1, c).
MATCH_TOL = 1e-4
#: Per-channel normalisation is needed when per-dimension stds differ by more than this factor…
CHANNEL_STD_RATIO = 2.0
#: …or a dimension's mean is more than this many of its stds from the pooled mean.
CHANNEL_MEAN_OFFSET = 0.5

#: Names of the mistakes :func:`check_normalization` recognises, in the order reported.
MISTAKES = (
    "inverted_factor",
    "missing_shift",
    "other_vae_constant",
    "already_normalized",
    "per_channel_needed",
)


@dataclass(frozen=True, slots=True)
class KnownConstant:
    """A published latent normalisation constant, used as ``(z − shift) * scale``.

    Attributes
    ----------
    model : str
        The model (family) whose VAE uses it.
    scale, shift : float
        The constants (``scaling_factor`` / ``scale_factor`` and ``shift_factor``).
    source : str
        Where the value is published.
    """

    model: str
    scale: float
    shift: float
    source: str


KNOWN_CONSTANTS: tuple[KnownConstant, ...] = (
    KnownConstant(
        "Stable Diffusion 1.x/2.x",
        0.18215,
        0.0,
        "CompVis/stable-diffusion configs/stable-diffusion/v1-inference.yaml (scale_factor); "
        "Stability-AI/stablediffusion v2 configs; default of diffusers AutoencoderKL",
    ),
    KnownConstant(
        "SDXL",
        0.13025,
        0.0,
        "Stability-AI/generative-models configs/inference/sd_xl_base.yaml (scale_factor)",
    ),
    KnownConstant(
        "Stable Diffusion 3/3.5",
        1.5305,
        0.0609,
        "huggingface/diffusers scripts/convert_sd3_to_diffusers.py (scaling_factor, shift_factor)",
    ),
    KnownConstant(
        "FLUX.1",
        0.3611,
        0.1159,
        "black-forest-labs/flux src/flux/util.py (scale_factor, shift_factor)",
    ),
    KnownConstant(
        "CogVideoX",
        1.15258426,
        0.0,
        "huggingface/diffusers AutoencoderKLCogVideoX default scaling_factor",
    ),
    KnownConstant(
        "HunyuanVideo",
        0.476986,
        0.0,
        "huggingface/diffusers AutoencoderKLHunyuanVideo default scaling_factor",
    ),
)


@dataclass(frozen=True, slots=True)
class NormalizationCheck:
    """The claimed normalisation ``(z − assume_shift) * assume_scale`` checked on the data.

    Attributes
    ----------
    assume_scale, assume_shift : float
        The claimed constants.
    n_rows : int
        Rows the data moments come from.
    data_mean, data_std : float
        Pooled mean and standard deviation (ddof=0) of all values of the raw latents.
    normalized_mean, normalized_std : float
        Mean ``(data_mean − assume_shift) · assume_scale`` and std ``data_std · assume_scale``
        of the normalised latents (exact). ``normalized_std`` is also the ratio
        ``assume_scale / needed_scale``.
    normalized_rms : float
        Root mean square of the normalised latents, sqrt(mean² + std²).
    kl_gauss : float
        KL(N(m', s'²) ‖ N(0, 1)) = ½(m'² + s'² − 1 − ln s'²) of the normalised latents (nats).
    needed_scale, needed_shift : float
        ``1 / data_std`` and ``data_mean``: the constants that give mean 0 and std 1.
    needed_scale_given_shift : float
        ``1 / sqrt(data_std² + (data_mean − assume_shift)²)``: the scale that gives unit
        second moment with the claimed shift kept.
    within_tolerance : bool
        |normalized_std − 1| ≤ 0.1 and |normalized_mean| < 0.1.
    known_constant : str or None
        The model whose published scale `assume_scale` equals, if any.
    fitting_constants : tuple of str
        Models whose published (scale, shift) would be within tolerance on this data.
    per_dim_std_ratio : float or None
        Largest over smallest per-dimension std (non-degenerate dimensions).
    per_dim_mean_offset : float or None
        max_j |mean_j − data_mean| / std_j over non-degenerate dimensions.
    kl_gauss_dims : float or None
        Mean over non-degenerate dimensions of KL(N(m'_j, s'_j²) ‖ N(0, 1)) after the claimed
        normalisation (nats per dimension).
    kl_gauss_dims_best_global : float or None
        The same after the best global normalisation (needed_shift, needed_scale): what
        per-channel normalisation would remove (nats per dimension).
    verdict : str
        "ok" (within tolerance, no mistake), "mistake" (one or more recognised), "off"
        (outside tolerance, no known mistake recognised) or "unknown" (degenerate data).
    mistakes : tuple of str
        Names from :data:`MISTAKES`.
    messages : tuple of str
        One sentence per mistake (or one summary when there is none), with the numbers.
    """

    assume_scale: float
    assume_shift: float
    n_rows: int
    data_mean: float
    data_std: float
    normalized_mean: float
    normalized_std: float
    normalized_rms: float
    kl_gauss: float
    needed_scale: float
    needed_shift: float
    needed_scale_given_shift: float
    within_tolerance: bool
    known_constant: str | None
    fitting_constants: tuple[str, ...]
    per_dim_std_ratio: float | None
    per_dim_mean_offset: float | None
    kl_gauss_dims: float | None
    kl_gauss_dims_best_global: float | None
    verdict: str
    mistakes: tuple[str, ...]
    messages: tuple[str, ...]


def _check_real(value: object, name: str) -> float:
    """Return `value` as a finite float, or raise InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"`{name}` must be a finite number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise InputError(f"`{name}` must be a finite number, got {out}")
    return out


def _check_per_dim(
    per_dim_mean: ArrayLike | None, per_dim_std: ArrayLike | None
) -> tuple[F64 | None, F64 | None]:
    """Return the per-dimension moments as float64 vectors (both or neither)."""
    if per_dim_mean is None and per_dim_std is None:
        return None, None
    if per_dim_mean is None or per_dim_std is None:
        raise InputError("Give both `per_dim_mean` and `per_dim_std`, or neither")
    m = np.asarray(per_dim_mean, dtype=np.float64)
    s = np.asarray(per_dim_std, dtype=np.float64)
    if m.ndim != 1 or m.shape != s.shape or m.size == 0:
        raise InputError(
            "`per_dim_mean` and `per_dim_std` must be 1-D of the same non-zero length, got "
            f"shapes {m.shape} and {s.shape}"
        )
    if not (np.isfinite(m).all() and np.isfinite(s).all()) or (s < 0).any():
        raise InputError("`per_dim_mean` must be finite and `per_dim_std` finite and >= 0")
    return m, s


def _kl_gauss(mean: F64 | float, std: F64 | float) -> F64:
    """Return ½(m² + s² − 1 − ln s²) elementwise (KL(N(m, s²) ‖ N(0, 1)), nats)."""
    m = np.asarray(mean, dtype=np.float64)
    s2 = np.asarray(std, dtype=np.float64) ** 2
    with np.errstate(divide="ignore"):
        return np.asarray(0.5 * (m * m + s2 - 1.0 - np.log(s2)), dtype=np.float64)


def _fits(mean: float, std: float, scale: float, shift: float) -> bool:
    """Return True when (z − shift)·scale has std within STD_TOL of 1 and |mean| < MEAN_TOL."""
    return abs(std * scale - 1.0) <= STD_TOL and abs((mean - shift) * scale) < MEAN_TOL


def check_normalization(
    n: int,
    mean: float,
    std: float,
    *,
    assume_scale: float,
    assume_shift: float = 0.0,
    per_dim_mean: ArrayLike | None = None,
    per_dim_std: ArrayLike | None = None,
) -> NormalizationCheck:
    """Check the normalisation ``(z − assume_shift) * assume_scale`` against the data.

    Parameters
    ----------
    n : int
        Number of rows the moments come from.
    mean, std : float
        Pooled mean and standard deviation (ddof=0) over all values of all dimensions of
        the raw latents, e.g. ``Normalization.shift`` and ``1 / Normalization.scale``.
    assume_scale : float
        Claimed scale (``scaling_factor``), > 0.
    assume_shift : float, default=0.0
        Claimed shift (``shift_factor``); 0 for the Stable Diffusion 1.x/2.x/XL convention.
    per_dim_mean, per_dim_std : ndarray of shape (n_dims,) or None, default=None
        Per-dimension mean and std (ddof=0), for the per-channel check.

    Returns
    -------
    NormalizationCheck

    Raises
    ------
    InputError
        For a non-positive or non-finite `assume_scale`, non-finite moments, or per-dimension
        moments of different shapes.

    Warns
    -----
    SmallSampleWarning
        When `n` < 2 (the verdict is then "unknown").
    DegenerateDimensionWarning
        When `std` is 0 (the verdict is then "unknown").

    Notes
    -----
    Normalising is affine, so the moments of z' = (z − a)·b are exact:
    mean' = (mean − a)·b and std' = std·b; the Gaussian part of the distance to N(0, 1) is
    KL = ½(mean'² + std'² − 1 − ln std'²). The data needs b* = 1/std and a* = mean.

    The rules, with tolerance 0.1 throughout:

    - ok: |std' − 1| ≤ 0.1, |mean'| < 0.1 and no mistake below.
    - inverted_factor: |b · b* − 1| ≤ 0.1 but |std' − 1| > 0.1. The claimed scale is about
      1/b* (the pipeline divides where it should multiply, or stores 1/factor); then
      std' = std² instead of 1.
    - missing_shift: a = 0 while |mean| / std ≥ 0.1.
    - other_vae_constant: b equals a published constant of :data:`KNOWN_CONSTANTS` (within
      1e-4 · max(1, c)) and |std' − 1| > 0.1; the model is named, with the published
      constants that would fit. Not reported with already_normalized.
    - already_normalized: the raw data already has |std − 1| ≤ 0.1 and |mean| < 0.1 but the
      claimed normalisation moves it out of tolerance (the factor is applied twice).
    - per_channel_needed: with per-dimension moments, max_j s_j / min_j s_j > 2 or
      max_j |m_j − mean| / s_j > 0.5 over non-degenerate dimensions; one global constant
      cannot normalise such dimensions (use per-channel ``latents_mean``/``latents_std``).

    References
    ----------
    .. [1] R. Rombach, A. Blattmann, D. Lorenz, P. Esser and B. Ommer, "High-resolution
       image synthesis with latent diffusion models", CVPR 2022, sec. 4.3.2 and D.1
       (the scaling factor). https://arxiv.org/abs/2112.10752
    .. [2] P. Esser et al., "Scaling rectified flow transformers for high-resolution image
       synthesis", ICML 2024 (SD3; shift and scale). https://arxiv.org/abs/2403.03206

    Examples
    --------
    >>> from latentcheck.stats.normalization import check_normalization
    >>> res = check_normalization(10_000, 0.0, 5.49, assume_scale=5.49)
    >>> res.mistakes
    ('inverted_factor',)
    """
    n = check_int(n, "n", minimum=0)
    mean = _check_real(mean, "mean")
    std = check_positive(std, "std")
    scale = _check_real(assume_scale, "assume_scale")
    if scale <= 0:
        raise InputError(f"`assume_scale` must be a positive number, got {scale}")
    shift = _check_real(assume_shift, "assume_shift")
    dim_mean, dim_std = _check_per_dim(per_dim_mean, per_dim_std)

    known = next(
        (k for k in KNOWN_CONSTANTS if abs(scale - k.scale) <= MATCH_TOL * max(1.0, k.scale)),
        None,
    )
    if n < 2 or std == 0:
        return _unknown(n, mean, std, scale, shift, known)

    m1 = (mean - shift) * scale
    s1 = std * scale
    kl = float(_kl_gauss(m1, s1))
    needed = 1.0 / std
    rms_raw = math.hypot(mean - shift, std)
    within = abs(s1 - 1.0) <= STD_TOL and abs(m1) < MEAN_TOL
    fitting = tuple(k.model for k in KNOWN_CONSTANTS if _fits(mean, std, k.scale, k.shift))
    found = _global_mistakes(mean, std, scale, shift, known, fitting)
    ratio, offset, kl_dims, kl_best = _per_channel(
        dim_mean, dim_std, mean, std, scale, shift, found
    )

    mistakes = tuple(name for name in MISTAKES if name in found)
    if mistakes:
        verdict = "mistake"
        messages = tuple(found[name] for name in mistakes)
    else:
        verdict = "ok" if within else "off"
        summary = (
            f"Normalised latents have mean {m1:.3g} and std {s1:.3g} (KL to N(0, 1) {kl:.3g} nats)"
        )
        if within:
            messages = (f"{summary}: within tolerance",)
        else:
            messages = (f"{summary}: the data needs shift {mean:.6g} and scale {needed:.6g}",)
    return NormalizationCheck(
        assume_scale=scale,
        assume_shift=shift,
        n_rows=n,
        data_mean=mean,
        data_std=std,
        normalized_mean=m1,
        normalized_std=s1,
        normalized_rms=rms_raw * scale,
        kl_gauss=kl,
        needed_scale=needed,
        needed_shift=mean,
        needed_scale_given_shift=1.0 / rms_raw,
        within_tolerance=within,
        known_constant=None if known is None else known.model,
        fitting_constants=fitting,
        per_dim_std_ratio=ratio,
        per_dim_mean_offset=offset,
        kl_gauss_dims=kl_dims,
        kl_gauss_dims_best_global=kl_best,
        verdict=verdict,
        mistakes=mistakes,
        messages=messages,
    )


def _unknown(
    n: int, mean: float, std: float, scale: float, shift: float, known: KnownConstant | None
) -> NormalizationCheck:
    """Warn (at the caller's caller) and return the "unknown" check of too few or constant rows."""
    if n < 2:
        warnings.warn(
            f"The normalisation check needs at least 2 rows, got {n}; verdict unknown",
            SmallSampleWarning,
            stacklevel=3,
        )
    else:
        warnings.warn(
            f"The latents have zero standard deviation (mean {mean:.6g}); no scale can "
            "normalise them; verdict unknown",
            DegenerateDimensionWarning,
            stacklevel=3,
        )
    return NormalizationCheck(
        assume_scale=scale,
        assume_shift=shift,
        n_rows=n,
        data_mean=mean,
        data_std=std,
        normalized_mean=(mean - shift) * scale,
        normalized_std=std * scale,
        normalized_rms=math.hypot(mean - shift, std) * scale,
        kl_gauss=math.nan,
        needed_scale=math.nan,
        needed_shift=mean,
        needed_scale_given_shift=math.nan,
        within_tolerance=False,
        known_constant=None if known is None else known.model,
        fitting_constants=(),
        per_dim_std_ratio=None,
        per_dim_mean_offset=None,
        kl_gauss_dims=None,
        kl_gauss_dims_best_global=None,
        verdict="unknown",
        mistakes=(),
        messages=("Not enough varying data to check the normalisation",),
    )


def _global_mistakes(
    mean: float,
    std: float,
    scale: float,
    shift: float,
    known: KnownConstant | None,
    fitting: tuple[str, ...],
) -> dict[str, str]:
    """Return {mistake: message} for the mistakes that the pooled moments show.

    These are inverted_factor, missing_shift, already_normalized and other_vae_constant (the
    last two exclusive); the rules are those of :func:`check_normalization`'s Notes.
    """
    s1 = std * scale
    m1 = (mean - shift) * scale
    needed = 1.0 / std
    within = abs(s1 - 1.0) <= STD_TOL and abs(m1) < MEAN_TOL
    found: dict[str, str] = {}
    if abs(scale * needed - 1.0) <= STD_TOL and abs(s1 - 1.0) > STD_TOL:
        found["inverted_factor"] = (
            f"`assume_scale`={scale:.6g} is close to 1/{needed:.6g}, the inverse of the scale "
            f"this data needs (std {std:.4g}): the normalised std is {s1:.4g} ≈ std² instead "
            "of 1; the pipeline probably divides by the factor where it should multiply, or "
            "stores 1/factor"
        )
    if shift == 0.0 and abs(mean) / std >= MEAN_TOL:
        found["missing_shift"] = (
            f"The data mean {mean:.4g} is {abs(mean) / std:.3g} std from 0 and no shift is "
            f"applied (normalised mean {m1:.4g}); use shift = {mean:.6g}, i.e. (z - shift) * scale"
        )
    raw_normalised = abs(std - 1.0) <= STD_TOL and abs(mean) < MEAN_TOL
    if raw_normalised and not within:
        found["already_normalized"] = (
            f"The latents already have mean {mean:.3g} and std {std:.3g}: they look "
            f"normalised, and applying `assume_scale`={scale:.6g} again gives std {s1:.3g}"
        )
    elif known is not None and abs(s1 - 1.0) > STD_TOL:
        fits = f"; published constants that fit: {', '.join(fitting)}" if fitting else ""
        found["other_vae_constant"] = (
            f"`assume_scale`={scale:.6g} is the published constant of {known.model}; "
            f"this data has std {std:.4g} and needs scale {needed:.6g} (normalised std now "
            f"{s1:.4g}){fits}"
        )
    return found


def _per_channel(
    dim_mean: F64 | None,
    dim_std: F64 | None,
    mean: float,
    std: float,
    scale: float,
    shift: float,
    found: dict[str, str],
) -> tuple[float | None, float | None, float | None, float | None]:
    """Return (std ratio, mean offset, KL per dim, KL per dim with the best global constants).

    All None without per-dimension moments or with every dimension degenerate; records
    per_channel_needed in ``found`` when the ratio or the offset is over its threshold.
    """
    if dim_mean is None or dim_std is None:
        return None, None, None, None
    used = ~degenerate_dims(dim_std, dim_mean)
    if not used.any():
        return None, None, None, None
    needed = 1.0 / std
    sm, ss = dim_mean[used], dim_std[used]
    ratio = float(ss.max() / ss.min())
    offset = float(np.max(np.abs(sm - mean) / ss))
    kl_dims = float(np.mean(_kl_gauss((sm - shift) * scale, ss * scale)))
    kl_best = float(np.mean(_kl_gauss((sm - mean) * needed, ss * needed)))
    if ratio > CHANNEL_STD_RATIO or offset > CHANNEL_MEAN_OFFSET:
        found["per_channel_needed"] = (
            f"Per-dimension stds differ by a factor of {ratio:.3g} and means sit up "
            f"to {offset:.3g} std from the pooled mean: even the best global "
            f"constants leave {kl_best:.3g} nats per dimension; normalise per "
            "channel (latents_mean / latents_std)"
        )
    return ratio, offset, kl_dims, kl_best
