"""Typed blocks of the report's ``summary``: checks of the sample and of a claimed normalisation.

``analysis.finish`` builds :class:`SampleChecksBlock` from
``stats.duplicates.sample_checks`` (bitwise-duplicated rows in the seeded sample, and
dimensions whose values sit on a coarse grid). ``analysis.spatial.check_claim`` and
``vaeconfig.check_vae_config`` build :class:`NormalizationCheckBlock` from
``stats.normalization.check_normalization`` (moments of ``(z − shift) · scale``, after
Rombach et al. 2022, §4.3.2 and Esser et al. 2024), with a :class:`VaeConfigBlock` when a
diffusers VAE config was checked. Their JSON form is
:meth:`~latentcheck.model.base.Block.to_dict`, one key per field in field order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import F64, Block

__all__ = ["NormalizationCheckBlock", "SampleChecksBlock", "VaeConfigBlock"]


def _empty() -> F64:
    return np.empty(0)


@dataclass(frozen=True, slots=True, eq=False)
class SampleChecksBlock(Block):
    """Duplicated rows and quantised dimensions in the seeded sample (``summary.sample_checks``).

    Attributes
    ----------
    rows_checked : int
        Sampled rows compared bitwise.
    duplicate_rows : int
        Rows equal to an earlier sampled row.
    duplicate_row_share : float
        duplicate_rows / rows_checked (NaN when no row was checked); a lower bound on the
        input's share unless the sample is every row.
    sample_values : int
        Values per dimension in the seeded sample.
    distinct_values : tuple of int
        Distinct values per dimension in the sample.
    smallest_gap : ndarray of shape (n_dims,)
        Smallest gap between distinct values per dimension (NaN with one distinct value).
    on_grid : tuple of bool
        Per dimension: every gap is a multiple of the smallest.
    quantised_dims : tuple of int
        Dimensions on a grid whose step is at least `quantised_step_sd` std.
    quantised_step_sd : float
    description : str
        The checks in words.
    """

    rows_checked: int = 0
    duplicate_rows: int = 0
    duplicate_row_share: float = math.nan
    sample_values: int = 0
    distinct_values: tuple[int, ...] = ()
    smallest_gap: F64 = field(default_factory=_empty)
    on_grid: tuple[bool, ...] = ()
    quantised_dims: tuple[int, ...] = ()
    quantised_step_sd: float = math.nan
    description: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class VaeConfigBlock(Block):
    """A diffusers VAE config checked on the latents (``summary.normalization_check.vae_config``).

    Attributes
    ----------
    source : str
        Where the config came from.
    scaling_factor, shift_factor : float or None
        The config's global constants.
    latents_mean, latents_std : ndarray of shape (n_channels,) or None
        The config's per-channel constants.
    per_channel : dict or None
        The per-channel check of ``(z − latents_mean) · scaling_factor / latents_std``
        (absent from the JSON for a global config).
    fits : bool
        The constants normalise the latents to within tolerance.
    text : str
        The finding in words.
    fitted : dict
        The constants the latents need, in the config's vocabulary.
    """

    omit_if_none = frozenset({"per_channel"})

    source: str = ""
    scaling_factor: float | None = None
    shift_factor: float | None = None
    latents_mean: F64 | None = None
    latents_std: F64 | None = None
    per_channel: dict[str, Any] | None = None
    fits: bool = False
    text: str = ""
    fitted: dict[str, Any] = field(default_factory=dict)


#: the keys of a claim check (``stats.normalization.NormalizationCheck``), in JSON order
_CLAIM_KEYS = (
    "assume_scale",
    "assume_shift",
    "n_rows",
    "data_mean",
    "data_std",
    "normalized_mean",
    "normalized_std",
    "normalized_rms",
    "kl_gauss",
    "needed_scale",
    "needed_shift",
    "needed_scale_given_shift",
    "within_tolerance",
    "known_constant",
    "fitting_constants",
    "per_dim_std_ratio",
    "per_dim_mean_offset",
    "kl_gauss_dims",
    "kl_gauss_dims_best_global",
    "verdict",
    "mistakes",
    "messages",
)


@dataclass(frozen=True, slots=True, eq=False)
class NormalizationCheckBlock(Block):
    """The check of a claimed normalisation (``summary.normalization_check``).

    Two variants: a claim (``assume_scale``/``assume_shift``, or a VAE config's global
    constants) holds every field of ``stats.normalization.NormalizationCheck``, plus
    `vae_config` when a config was checked; a per-channel VAE config with no claim holds
    only `vae_config` (then `assume_scale` is None and the claim's keys are absent from the
    JSON). Non-finite figures are None, as in the JSON.

    Attributes
    ----------
    assume_scale, assume_shift : float or None
        The claimed constants (None: no claim).
    n_rows : int or None
    data_mean, data_std, normalized_mean, normalized_std, normalized_rms : float or None
    kl_gauss, needed_scale, needed_shift, needed_scale_given_shift : float or None
    within_tolerance : bool or None
    known_constant : str or None
    fitting_constants : tuple of str
    per_dim_std_ratio, per_dim_mean_offset : float or None
    kl_gauss_dims, kl_gauss_dims_best_global : float or None
    verdict : str or None
        "ok", "mistake", "off" or "unknown".
    mistakes, messages : tuple of str
    vae_config : VaeConfigBlock or None
        The checked VAE config (absent from the JSON when none was).
    """

    omit_if_none = frozenset({"vae_config"})

    assume_scale: float | None = None
    assume_shift: float | None = None
    n_rows: int | None = None
    data_mean: float | None = None
    data_std: float | None = None
    normalized_mean: float | None = None
    normalized_std: float | None = None
    normalized_rms: float | None = None
    kl_gauss: float | None = None
    needed_scale: float | None = None
    needed_shift: float | None = None
    needed_scale_given_shift: float | None = None
    within_tolerance: bool | None = None
    known_constant: str | None = None
    fitting_constants: tuple[str, ...] = ()
    per_dim_std_ratio: float | None = None
    per_dim_mean_offset: float | None = None
    kl_gauss_dims: float | None = None
    kl_gauss_dims_best_global: float | None = None
    verdict: str | None = None
    mistakes: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    vae_config: VaeConfigBlock | None = None

    @property
    def has_claim(self) -> bool:
        """Return True when the block checks a claimed global normalisation."""
        return self.assume_scale is not None

    def _present(self) -> list[str]:
        """Return the JSON keys: the claim's only when there is a claim."""
        names = list(_CLAIM_KEYS) if self.has_claim else []
        return names + (["vae_config"] if self.vae_config is not None else [])
