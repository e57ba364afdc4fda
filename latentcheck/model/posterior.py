"""The report's ``posterior`` block: posterior-parameter figures as one typed, frozen object.

``_inputs.PosteriorJob.run`` builds it from ``stats.posterior.finalize_posterior`` (the rate
and its parts, after Kingma & Welling 2014, eq. 10; active units after Burda et al. 2016)
and ``stats.mixture.mixture_decomposition`` (ELBO surgery, Hoffman & Johnson 2016). Its JSON
form (:meth:`~latentcheck.model.base.Block.to_dict`) has one key per field, in field order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import F64, Block

__all__ = ["MI_CEILING_TOL", "PosteriorBlock"]

#: I(x;z) within this many nats of ln n (the mixture estimate's ceiling) is a bound, for
#: reports that do not carry the estimator's own regime (`mutual_information_regime`).
MI_CEILING_TOL = 0.1


def _empty() -> F64:
    return np.empty(0)


@dataclass(frozen=True, slots=True, eq=False)
class PosteriorBlock(Block):
    """Posterior-parameter statistics (``report.posterior``).

    Per-dimension fields are arrays of shape (n_dims,); figures a report saved by an older
    version lacks read back as NaN, empty arrays or None. Units are nats unless named.

    Attributes
    ----------
    spread_input : str
        Which spread was given: "logvar", "std" or "var".
    n_samples : int
        Rows of posterior parameters.
    kl_per_dim, kl_mean_part, kl_variance_part : ndarray
        Mean over inputs of KL(q(z_j|x) || N(0, 1)), and its parts mu²/2 and
        (σ² − 1 − ln σ²)/2.
    rate_nats, rate_bits : float
        Total rate per row.
    rows_per_sample : int
        Rows per input sample (positions of a conv latent; 1 otherwise).
    rate_per_sample_nats, rate_mean_part_nats, rate_variance_part_nats : float
        Rate per input sample, and the rate's two parts per row.
    rate_share : ndarray
        Each dimension's share of the rate.
    mu_mean, mu_var, mean_posterior_var, mean_posterior_std, snr : ndarray
        E_x mu_j, Var_x mu_j, E_x σ_j², E_x σ_j, and Var_x mu_j / E_x σ_j².
    posterior_std_quantiles : dict of str to ndarray
        Per-dimension quantiles of σ_j, keyed by level.
    posterior_std_quantiles_all : dict of str to float
        Quantiles of σ over all dimensions, keyed by level.
    logvar_min, logvar_max, share_at_min : ndarray
        Smallest and largest ln σ_j², and the share of rows at the smallest.
    active_threshold : float
    active_units : int
        Dimensions with Var_x mu_j > active_threshold.
    active_dims : tuple of int
    collapse_threshold : float
    collapsed_dims : tuple of int
        Dimensions with a rate below collapse_threshold.
    mutual_information, mutual_information_se : float
        Mixture estimate of I(x; z) (at most ln n_mixture) and its Monte-Carlo error.
    kl_aggregate, kl_aggregate_se : float
        KL(q(z) || p(z)) = rate − I(x; z).
    total_correlation, total_correlation_se : float
        Total correlation of the mixture q(z).
    dimwise_kl, dimwise_kl_se : float
        Σ_j KL(q(z_j) || p(z_j)).
    dimwise_kl_per_dim : ndarray
    mixture_rate_nats : float
        The rate over the mixture's inputs.
    mutual_information_upper, mutual_information_upper_se : float
        Leave-one-out estimate of I(x; z), an upper bound in expectation (NaN: unbounded).
    mutual_information_ceiling : float
        ln n_mixture.
    mutual_information_regime : str or None
        "unbiased", "biased" or "saturated".
    mixture_bounds : dict of str to list
        Lower and upper bounds per figure.
    estimator : dict
        The mixture estimator in words and numbers (``n_mixture``, ``bias_bound_nats``, ...).
    """

    spread_input: str = "logvar"
    n_samples: int = 0
    kl_per_dim: F64 | None = None
    kl_mean_part: F64 = field(default_factory=_empty)
    kl_variance_part: F64 = field(default_factory=_empty)
    rate_nats: float = math.nan
    rate_bits: float = math.nan
    rows_per_sample: int = 1
    rate_per_sample_nats: float = math.nan
    rate_mean_part_nats: float = math.nan
    rate_variance_part_nats: float = math.nan
    rate_share: F64 = field(default_factory=_empty)
    mu_mean: F64 = field(default_factory=_empty)
    mu_var: F64 = field(default_factory=_empty)
    mean_posterior_var: F64 = field(default_factory=_empty)
    mean_posterior_std: F64 = field(default_factory=_empty)
    snr: F64 = field(default_factory=_empty)
    posterior_std_quantiles: dict[str, F64] = field(default_factory=dict)
    posterior_std_quantiles_all: dict[str, float] = field(default_factory=dict)
    logvar_min: F64 = field(default_factory=_empty)
    logvar_max: F64 = field(default_factory=_empty)
    share_at_min: F64 = field(default_factory=_empty)
    active_threshold: float = 0.01
    active_units: int | None = None
    active_dims: tuple[int, ...] = ()
    collapse_threshold: float = 0.01
    collapsed_dims: tuple[int, ...] = ()
    mutual_information: float = math.nan
    mutual_information_se: float = math.nan
    kl_aggregate: float = math.nan
    kl_aggregate_se: float = math.nan
    total_correlation: float = math.nan
    total_correlation_se: float = math.nan
    dimwise_kl: float = math.nan
    dimwise_kl_se: float = math.nan
    dimwise_kl_per_dim: F64 = field(default_factory=_empty)
    mixture_rate_nats: float = math.nan
    mutual_information_upper: float = math.nan
    mutual_information_upper_se: float = math.nan
    mutual_information_ceiling: float = math.nan
    mutual_information_regime: str | None = None
    mixture_bounds: dict[str, Any] = field(default_factory=dict)
    estimator: dict[str, Any] = field(default_factory=dict)

    @property
    def has_mutual_information(self) -> bool:
        """Return True when the block holds a finite I(x;z) estimate (JSON: not null)."""
        return math.isfinite(self.mutual_information)

    @property
    def n_mixture(self) -> int | None:
        """Return the number of inputs of the mixture estimate, if recorded."""
        n = self.estimator.get("n_mixture")
        return int(n) if n else None

    def mi_ceiling(self) -> float | None:
        """Return ln n when the I(x;z) estimate sits at its ceiling ln n, else None.

        The aggregate-posterior mixture estimate over n inputs cannot exceed ln n (Hoffman &
        Johnson 2016, "ELBO surgery"); within ``MI_CEILING_TOL`` nats of it the estimate is
        a lower bound, and its standard error says nothing about the true value.
        """
        n_mix = self.n_mixture
        if not self.has_mutual_information or n_mix is None or n_mix < 2:
            return None
        ceiling = math.log(n_mix)
        if self.mutual_information_regime == "saturated":
            # the leave-one-out bracket puts the estimate at the ceiling (stats.mixture)
            return ceiling
        return ceiling if self.mutual_information >= ceiling - MI_CEILING_TOL else None

    def lowest_logvar_dim(self) -> int | None:
        """Return the dimension with the smallest finite ln σ², or None if there is none."""
        lv = np.asarray(self.logvar_min, dtype=np.float64)
        if not np.isfinite(lv).any():
            return None
        return int(np.argmin(np.where(np.isfinite(lv), lv, np.inf)))
