"""Streaming statistics of Gaussian posterior parameters: rate per dimension, active units.

Given an encoder's per-input mean ``mu`` and log-variance ``logvar`` of q(z | x) =
N(mu, diag exp(logvar)), this module streams the analytic KL to the prior N(0, I) per
dimension (the "rate" of the training loss) with its mean and variance parts, Var_x(mu),
posterior-std summaries and active units through a mergeable :class:`PosteriorAccumulator`,
and finalises them with :func:`finalize_posterior`. Chunk validation (:func:`as_logvar`,
:func:`check_mu`) lives in :mod:`latentcheck.stats.posterior.params`, the exact count at the
minimum and the ln σ² histogram in :mod:`latentcheck.stats.posterior.logvar`, and the "ELBO
surgery" split rate = I(x; z) + TC + dimension-wise KL (:func:`mixture_decomposition`) in
:mod:`latentcheck.stats.posterior.mixture`; their public names are importable from here too.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from latentcheck.errors import DegenerateDimensionWarning, InputError, SmallSampleWarning
from latentcheck.stats.posterior.logvar import (
    AT_MIN_TOLERANCE,
    HIST_HI,
    HIST_LO,
    NEAR_MIN_SLOTS,
    compress_near_min,
    histogram,
    logvar_quantiles,
    near_min_of_chunk,
    restrict_near_min,
)
from latentcheck.stats.posterior.mixture import (
    MIXTURE_SAMPLES,
    MixtureDecomposition,
    mixture_decomposition,
)
from latentcheck.stats.posterior.params import (
    LOGVAR_BOUND,
    as_logvar,
    as_real_2d,
    check_mu,
    kl_variance_part,
)
from latentcheck.stats.posterior.params import MU_BOUND as MU_BOUND
from latentcheck.validation import QUANTILE_LEVELS, check_int, check_positive

__all__ = [
    "AT_MIN_TOLERANCE",
    "LOGVAR_BOUND",
    "MIXTURE_SAMPLES",
    "STD_QUANTILE_LEVELS",
    "MixtureDecomposition",
    "PosteriorAccumulator",
    "PosteriorStats",
    "as_logvar",
    "check_mu",
    "finalize_posterior",
    "mixture_decomposition",
]

#: Quantile levels of the posterior standard deviation (the report's per-dimension levels).
STD_QUANTILE_LEVELS = QUANTILE_LEVELS

_HIST_MAX_CELLS = 1 << 22
_PUSH_BLOCK_ELEMENTS = 1 << 18
_LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# accumulator

# state key -> (dtype, trailing shape: "" per dimension, "slots" or "bins" for 2-D arrays)
_STATE_LAYOUT: dict[str, tuple[type, str]] = {
    "mu_mean": (np.float64, ""),
    "mu_m2": (np.float64, ""),
    "kl_variance_part_mean": (np.float64, ""),
    "posterior_var_mean": (np.float64, ""),
    "std_mean": (np.float64, ""),
    "logvar_min": (np.float64, ""),
    "logvar_max": (np.float64, ""),
    "near_min_values": (np.float64, "slots"),
    "near_min_counts": (np.int64, "slots"),
    "near_min_tail": (np.int64, ""),
    "near_min_exact": (np.bool_, ""),
    "logvar_hist": (np.int64, "bins"),
}
_FILL = {"logvar_min": np.inf, "logvar_max": -np.inf, "near_min_values": np.inf,
         "near_min_exact": True}  # fmt: skip


def _empty_state(n_dims: int, bins: int) -> dict[str, NDArray[Any]]:
    """Return the per-dimension arrays of an accumulator that holds no rows."""
    widths = {"": (), "slots": (NEAR_MIN_SLOTS,), "bins": (bins + 2 if bins else 0,)}
    return {
        key: np.full((n_dims, *widths[kind]), _FILL.get(key, 0), dtype=dtype)
        for key, (dtype, kind) in _STATE_LAYOUT.items()
    }


def _chunk_state(
    mu: NDArray[np.float64],
    lv: NDArray[np.float64],
    bins: int,
    work: NDArray[np.float64],
    index: NDArray[np.intp],
) -> dict[str, NDArray[Any]]:
    """Return the state of one non-empty block; ``work``, ``index``: scratch of its shape."""
    # Every elementwise pass writes into the scratch arrays: fresh 1 MiB temporaries would be
    # mapped and page-faulted anew each time, which cost more than the arithmetic.
    out: dict[str, NDArray[Any]] = {"mu_mean": mu.mean(axis=0)}
    # two-pass centred sum of squares inside the block (no raw power sums)
    np.subtract(mu, out["mu_mean"], out=work)
    out["mu_m2"] = np.square(work, out=work).sum(axis=0)
    out["kl_variance_part_mean"] = kl_variance_part(lv, out=work).mean(axis=0)
    np.multiply(lv, 0.5, out=work)
    out["std_mean"] = np.exp(work, out=work).mean(axis=0)
    out["posterior_var_mean"] = np.square(work, out=work).mean(axis=0)
    out["logvar_min"] = lv.min(axis=0)
    out["logvar_max"] = lv.max(axis=0)
    near = near_min_of_chunk(lv, out["logvar_min"])
    out["near_min_values"], out["near_min_counts"], out["near_min_tail"] = near
    out["near_min_exact"] = np.ones(lv.shape[1], dtype=bool)
    out["logvar_hist"] = histogram(lv, bins, work, index)
    return out


def _combine_states(
    a: dict[str, NDArray[Any]], n_a: int, b: dict[str, NDArray[Any]], n_b: int
) -> dict[str, NDArray[Any]]:
    """Return the state of the union of two non-empty states with ``n_a`` and ``n_b`` rows."""
    w_b = n_b / (n_a + n_b)
    out = {}
    # Chan, Golub & LeVeque 1979, the formula for combining two subsamples (Pébay 2008
    # gives it for all orders): means and centred sums of squares merge without power sums.
    delta = b["mu_mean"] - a["mu_mean"]
    out["mu_m2"] = a["mu_m2"] + b["mu_m2"] + delta * delta * (n_a * w_b)
    out["mu_mean"] = a["mu_mean"] + delta * w_b
    # plain means merge the same way; stored as means so that e^600 terms cannot overflow
    for key in ("kl_variance_part_mean", "posterior_var_mean", "std_mean"):
        out[key] = a[key] + (b[key] - a[key]) * w_b
    new_min = np.minimum(a["logvar_min"], b["logvar_min"])
    va, ca, ta, ea = restrict_near_min(a, new_min)
    vb, cb, tb, eb = restrict_near_min(b, new_min)
    vals = np.concatenate([va, vb], axis=1)
    counts = np.concatenate([ca, cb], axis=1)
    rows, cols = np.nonzero(counts > 0)
    out["near_min_values"], out["near_min_counts"], extra = compress_near_min(
        new_min.size, rows, vals[rows, cols], counts[rows, cols]
    )
    out["near_min_tail"] = ta + tb + extra
    out["near_min_exact"] = ea & eb
    out["logvar_min"] = new_min
    out["logvar_max"] = np.maximum(a["logvar_max"], b["logvar_max"])
    out["logvar_hist"] = a["logvar_hist"] + b["logvar_hist"]
    return out


class PosteriorAccumulator:
    """Mergeable one-pass summary of posterior parameters (μ, ln σ²).

    Holds, per dimension: the row count, the mean and centred sum of squares of μ (merged
    with the update of Chan, Golub & LeVeque [1]_, Pébay [2]_), the means of
    ½(σ² − 1 − ln σ²), σ² and σ, the minimum and maximum of ln σ², the exact count of entries
    within :data:`AT_MIN_TOLERANCE` of the minimum, and a histogram of ln σ² for quantiles of
    σ. Memory: O(n_dims · bins), never O(n_samples).

    Parameters
    ----------
    bins : int or None, default=None
        Number of histogram bins of ln σ² over [-32, 32] (plus one bin below and one above,
        which stretch to the exact minimum and maximum). None chooses, at the first push,
        2048 bins (width 1/32, 1.6 % in σ) or fewer so that the histogram has at most
        2**22 cells (32 MiB) whatever ``n_dims``.

    Notes
    -----
    The count at the minimum stays exact across chunks and merges although the minimum moves:
    each dimension keeps its 16 smallest distinct ln σ² values inside the window
    [min, min + 1e-6] with their counts, plus the count of the other window entries (the
    "tail", all above the 16th value). When a merge lowers the minimum by less than 1e-6 and
    the new window's edge falls inside a non-empty tail, the tail is kept as an upper bound
    and ``PosteriorStats.at_min_exact`` is False for that dimension; this needs more than 16
    distinct values within 1e-6 of the minimum.

    References
    ----------
    .. [1] T. F. Chan, G. H. Golub and R. J. LeVeque, "Updating formulae and a pairwise
           algorithm for computing sample variances", Stanford report STAN-CS-79-773, 1979.
    .. [2] P. Pébay, "Formulas for robust, one-pass parallel computation of covariances and
           arbitrary-order statistical moments", Sandia report SAND2008-6212, 2008,
           :doi:`10.2172/1028931`.
    """

    __slots__ = ("_bins", "_n", "_n_dims", "_s")

    def __init__(self, *, bins: int | None = None) -> None:
        self._bins = None if bins is None else check_int(bins, "bins", minimum=1)
        self._n = 0
        self._n_dims: int | None = None
        self._s = _empty_state(0, self._bins or 0)

    @property
    def n_samples(self) -> int:
        """Number of rows (inputs, or inputs × positions) pushed so far."""
        return self._n

    @property
    def n_dims(self) -> int | None:
        """Number of latent dimensions, or None before the first push."""
        return self._n_dims

    def push(self, mu: ArrayLike, logvar: ArrayLike, *, row_offset: int | None = None) -> None:
        """Add one chunk of posterior parameters.

        Parameters
        ----------
        mu : array_like of shape (n_samples, n_dims)
            Posterior means, any real dtype (accumulated in float64).
        logvar : array_like of shape (n_samples, n_dims)
            Posterior log-variances ln σ² (convert ``std`` / ``var`` with :func:`as_logvar`).
        row_offset : int or None, default=None
            Row number of the chunk's first row, for error messages; None uses the number of
            rows pushed so far.

        Raises
        ------
        InputError
            If the shapes differ or do not match earlier chunks, or a value is invalid (see
            :func:`check_mu` and :func:`as_logvar`).
        """
        offset = self._n if row_offset is None else int(row_offset)
        mu_arr, lv_arr = as_real_2d(mu, "mu"), as_real_2d(logvar, "logvar")
        if mu_arr.shape != lv_arr.shape:
            raise InputError(
                f"`mu` and `logvar` must have the same shape, got {mu_arr.shape} and {lv_arr.shape}"
            )
        n_rows, n_dims = lv_arr.shape
        if self._n_dims is None:
            if n_dims == 0:
                raise InputError("`mu` has 0 dimensions; expected at least one column")
            if self._bins is None:
                bins = 2048
                while bins > 16 and (bins + 2) * n_dims > _HIST_MAX_CELLS:
                    bins //= 2
                self._bins = bins
            self._n_dims = n_dims
            self._s = _empty_state(n_dims, self._bins)
        elif n_dims != self._n_dims:
            raise InputError(f"Chunk has {n_dims} dimensions but earlier chunks had {self._n_dims}")
        if n_rows == 0:
            return
        # Row blocks of about 1 MiB per float64 temporary keep the elementwise passes in
        # cache; the chunk is committed only once every block has passed validation.
        step = min(n_rows, max(1, _PUSH_BLOCK_ELEMENTS // n_dims))
        scratch = np.empty((3, step, n_dims))
        index = np.empty((step, n_dims), dtype=np.intp)
        chunk: dict[str, NDArray[Any]] = {}
        for start in range(0, n_rows, step):
            stop = min(start + step, n_rows)
            mu_b, lv_b, work = scratch[:, : stop - start]
            # float64 accumulation whatever the input dtype
            np.copyto(mu_b, mu_arr[start:stop], casting="same_kind")
            np.copyto(lv_b, lv_arr[start:stop], casting="same_kind")
            block = _chunk_state(
                check_mu(mu_b, row_offset=offset + start),
                as_logvar(lv_b, "logvar", row_offset=offset + start),
                self._bins or 0,
                work,
                index[: stop - start],
            )
            chunk = _combine_states(chunk, start, block, stop - start) if chunk else block
        self._s = chunk if self._n == 0 else _combine_states(self._s, self._n, chunk, n_rows)
        self._n += n_rows

    def merge(self, other: PosteriorAccumulator) -> PosteriorAccumulator:
        """Return a new accumulator holding the rows of ``self`` and ``other``.

        Raises
        ------
        InputError
            If the two have different numbers of dimensions or histogram bins.
        """
        if not isinstance(other, PosteriorAccumulator):
            raise InputError(f"Can only merge a PosteriorAccumulator, got {type(other).__name__}")
        if other._n == 0 and other._n_dims in (None, self._n_dims):
            return PosteriorAccumulator.from_state(self.state())
        if self._n == 0 and self._n_dims in (None, other._n_dims):
            return PosteriorAccumulator.from_state(other.state())
        if self._n_dims != other._n_dims:
            raise InputError(
                f"Cannot merge posterior accumulators with {self._n_dims} and "
                f"{other._n_dims} dimensions"
            )
        if self._bins != other._bins:
            raise InputError(
                f"Cannot merge posterior accumulators with {self._bins} and {other._bins} "
                "histogram bins; create both with the same `bins`"
            )
        out = PosteriorAccumulator(bins=self._bins)
        out._n_dims = self._n_dims
        out._n = self._n + other._n
        out._s = _combine_states(self._s, self._n, other._s, other._n)
        return out

    __add__ = merge

    def finish(self) -> PosteriorAccumulator:
        """Return self: nothing waits (see :mod:`latentcheck.engine.protocol`)."""
        return self

    def state(self) -> dict[str, NDArray[Any]]:
        """Return the full state as a dict of numpy arrays (see :meth:`from_state`)."""
        head = {
            "n": np.asarray(self._n, dtype=np.int64),
            "n_dims": np.asarray(-1 if self._n_dims is None else self._n_dims, dtype=np.int64),
            "bins": np.asarray(-1 if self._bins is None else self._bins, dtype=np.int64),
        }
        return head | {key: value.copy() for key, value in self._s.items()}

    @classmethod
    def from_state(cls, state: dict[str, NDArray[Any]]) -> PosteriorAccumulator:
        """Rebuild an accumulator from :meth:`state` output.

        Raises
        ------
        InputError
            If a key is missing or an array has the wrong shape.
        """
        missing = [k for k in ("n", "n_dims", "bins", *_STATE_LAYOUT) if k not in state]
        if missing:
            raise InputError(f"Posterior accumulator state lacks keys {', '.join(missing)}")
        bins, n_dims = int(state["bins"]), int(state["n_dims"])
        acc = cls(bins=None if bins < 0 else bins)
        acc._n_dims = None if n_dims < 0 else n_dims
        acc._n = int(state["n"])
        empty = _empty_state(max(n_dims, 0), max(bins, 0))
        for key, (dtype, _) in _STATE_LAYOUT.items():
            value: NDArray[Any] = np.array(state[key], dtype=dtype)
            if value.shape != empty[key].shape:
                raise InputError(
                    f"Posterior accumulator state `{key}` has shape {value.shape}, "
                    f"expected {empty[key].shape}"
                )
            acc._s[key] = value
        return acc

    def __repr__(self) -> str:
        return f"PosteriorAccumulator(n_samples={self._n}, n_dims={self._n_dims})"


# --------------------------------------------------------------------------------------------
# finalisation


@dataclass(frozen=True, slots=True)
class PosteriorStats:
    """Per-dimension and total statistics of Gaussian posteriors q(z_j | x) = N(μ_j, σ_j²).

    Averages "over inputs" are over all rows pushed (inputs, or inputs × positions for conv
    posteriors). Per-dimension values are float64 arrays of shape (n_dims,).

    Attributes
    ----------
    n_samples : int
        Number of rows the statistics come from.
    n_dims : int
        Number of latent dimensions d.
    kl_per_dim : ndarray
        Rate per dimension in nats: mean over inputs of KL(N(μ_j, σ_j²) ‖ N(0, 1)) =
        ½(μ_j² + σ_j² − 1 − ln σ_j²) (Kingma & Welling 2014, app. B). Equals
        ``kl_mean_part + kl_variance_part``.
    kl_mean_part : ndarray
        Mean part of the rate in nats: mean over inputs of ½μ_j².
    kl_variance_part : ndarray
        Variance part of the rate in nats: mean over inputs of ½(σ_j² − 1 − ln σ_j²) ≥ 0.
    rate_nats : float
        Total rate Σ_j ``kl_per_dim`` in nats per row.
    rate_bits : float
        ``rate_nats`` / ln 2, in bits per row.
    rate_mean_part_nats : float
        Σ_j ``kl_mean_part``, in nats.
    rate_variance_part_nats : float
        Σ_j ``kl_variance_part``, in nats.
    rate_share : ndarray
        Fraction of the total rate in each dimension, ``kl_per_dim / rate_nats`` (in [0, 1],
        sums to 1); NaN with a DegenerateDimensionWarning when the total rate is 0.
    mu_mean : ndarray
        Mean over inputs of μ_j.
    mu_var : ndarray
        Var_x(μ_j) = Var_x E[z_j | x] over inputs, ddof=0 (units of z², like σ²); NaN with a
        SmallSampleWarning when fewer than 2 rows.
    mean_posterior_var : ndarray
        E_x[σ_j²], mean posterior variance (units of z²).
    mean_posterior_std : ndarray
        E_x[σ_j], mean posterior standard deviation (units of z).
    snr : ndarray
        Signal-to-noise ratio Var_x(μ_j) / E_x[σ_j²] (dimensionless): how much of the
        aggregate variance of z_j the inputs explain, relative to the encoder noise.
    std_quantile_levels : tuple of float
        Probability levels of ``posterior_std_quantiles``.
    posterior_std_quantiles : ndarray of shape (n_dims, n_levels)
        Quantiles of σ_j over inputs, from the ln σ² histogram: exact for the point mass at
        the minimum, otherwise within one bin (``logvar_bin_width`` in ln σ², i.e. a factor
        exp(width / 2) in σ) of the sample quantile.
    posterior_std_quantiles_all : ndarray of shape (n_levels,)
        The same quantiles of σ pooled over all dimensions and rows.
    logvar_bin_width : float
        Width of the histogram bins in ln σ² (inside [-32, 32]; outside, one bin each side
        stretches to the exact minimum or maximum).
    logvar_min : ndarray
        Minimum of ln σ_j² over inputs (an encoder's clamp shows here, e.g. -30).
    logvar_max : ndarray
        Maximum of ln σ_j² over inputs.
    share_at_min : ndarray
        Fraction of inputs whose ln σ_j² lies within 1e-6 of ``logvar_min`` (in [0, 1]); a
        large share means the encoder's lower clamp is active.
    at_min_exact : ndarray of bool
        True where ``share_at_min`` is exact (always, unless more than 16 distinct values lie
        within 1e-6 of the minimum and shards' minima differed by less than 1e-6; then it is
        an upper bound).
    active_threshold : float
        Threshold on Var_x(μ_j) for an active unit (default 0.01, Burda et al. 2016).
    active_units : int
        Number of dimensions with Var_x(μ_j) > ``active_threshold``.
    active_dims : ndarray of int
        Indices of the active dimensions, ascending.
    collapse_threshold : float
        Threshold on the rate per dimension, in nats, below which a dimension counts as
        collapsed (default 0.01 nats).
    collapsed_dims : ndarray of int
        Indices of dimensions with ``kl_per_dim`` < ``collapse_threshold``, ascending.
    """

    n_samples: int
    n_dims: int
    kl_per_dim: NDArray[np.float64]
    kl_mean_part: NDArray[np.float64]
    kl_variance_part: NDArray[np.float64]
    rate_nats: float
    rate_bits: float
    rate_mean_part_nats: float
    rate_variance_part_nats: float
    rate_share: NDArray[np.float64]
    mu_mean: NDArray[np.float64]
    mu_var: NDArray[np.float64]
    mean_posterior_var: NDArray[np.float64]
    mean_posterior_std: NDArray[np.float64]
    snr: NDArray[np.float64]
    std_quantile_levels: tuple[float, ...]
    posterior_std_quantiles: NDArray[np.float64]
    posterior_std_quantiles_all: NDArray[np.float64]
    logvar_bin_width: float
    logvar_min: NDArray[np.float64]
    logvar_max: NDArray[np.float64]
    share_at_min: NDArray[np.float64]
    at_min_exact: NDArray[np.bool_]
    active_threshold: float
    active_units: int
    active_dims: NDArray[np.intp]
    collapse_threshold: float
    collapsed_dims: NDArray[np.intp]


def finalize_posterior(
    acc: PosteriorAccumulator,
    *,
    active_threshold: float = 0.01,
    collapse_threshold: float = 0.01,
    quantile_levels: tuple[float, ...] = STD_QUANTILE_LEVELS,
) -> PosteriorStats:
    """Compute the posterior statistics from an accumulator.

    Parameters
    ----------
    acc : PosteriorAccumulator
        State after all chunks were pushed (and shards merged).
    active_threshold : float, default=0.01
        A dimension is an active unit when Var_x(μ_j) exceeds this (Burda et al. 2016).
    collapse_threshold : float, default=0.01
        A dimension is collapsed when its rate is below this many nats.
    quantile_levels : tuple of float, default=STD_QUANTILE_LEVELS
        Levels in [0, 1] of the posterior-std quantiles.

    Returns
    -------
    PosteriorStats

    Raises
    ------
    InputError
        If ``acc`` holds no rows, or a threshold or level is invalid.

    Warns
    -----
    SmallSampleWarning
        With a single row: Var_x(μ), the SNR and the active units are undefined (NaN, 0).
    DegenerateDimensionWarning
        When the total rate is exactly 0 (every μ = 0 and σ = 1): ``rate_share`` is NaN.

    Notes
    -----
    Per input and dimension, KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1 − ln σ²) [1]_, split into
    ½μ² and ½(σ² − 1 − ln σ²), the latter evaluated as ½(expm1(ln σ²) − ln σ²) (a Taylor
    series for |ln σ²| < 0.1) so that it keeps full relative precision at σ ≈ 1 and no exp
    overflows for |ln σ²| ≤ 600. The mean part over inputs is ½(mean(μ)² + Var_x(μ)).
    Active units follow Burda et al. [2]_: A_u = Cov_x(E_{u ~ q(u|x)}[u]) > 0.01,
    with Var_x(μ_j) computed with ddof=0. SNR_j = Var_x(μ_j) / E_x[σ_j²].

    References
    ----------
    .. [1] D. P. Kingma and M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014,
           appendix B, :arxiv:`1312.6114`.
    .. [2] Y. Burda, R. Grosse and R. Salakhutdinov, "Importance Weighted Autoencoders",
           ICLR 2016, :arxiv:`1509.00519`.
    """
    active = check_positive(active_threshold, "active_threshold")
    collapse = check_positive(collapse_threshold, "collapse_threshold")
    levels = np.asarray(quantile_levels, dtype=np.float64)
    if levels.ndim != 1 or not np.all((levels >= 0.0) & (levels <= 1.0)):
        raise InputError(f"`quantile_levels` must be numbers in [0, 1], got {quantile_levels!r}")
    if acc.n_samples == 0 or acc.n_dims is None:
        raise InputError("The posterior accumulator holds no rows; push at least one chunk")
    s = acc.state()
    n = int(s["n"])
    mean = s["mu_mean"]
    m2 = s["mu_m2"]
    if n < 2:
        warnings.warn(
            f"Var_x(mu) needs at least 2 rows, got {n}; `mu_var`, `snr` are NaN and no unit "
            "counts as active",
            SmallSampleWarning,
            stacklevel=2,
        )
        mu_var = np.full(mean.shape, np.nan)
    else:
        mu_var = m2 / n
    mean_part = 0.5 * (mean * mean + m2 / n)
    var_part = s["kl_variance_part_mean"]
    kl = mean_part + var_part
    rate = float(kl.sum())
    if rate > 0.0:
        share = kl / rate
    else:
        warnings.warn(
            "The total rate is 0 nats (every mu = 0 and sigma = 1); `rate_share` is NaN",
            DegenerateDimensionWarning,
            stacklevel=2,
        )
        share = np.full(kl.shape, np.nan)
    post_var = s["posterior_var_mean"]
    snr = mu_var / post_var

    lv_min, lv_max = s["logvar_min"], s["logvar_max"]
    limit = lv_min + AT_MIN_TOLERANCE
    at_min = np.where(s["near_min_values"] <= limit[:, None], s["near_min_counts"], 0).sum(1)
    at_min = np.minimum(at_min + s["near_min_tail"], n)
    bins = int(s["bins"])
    lv_q, lv_q_all = logvar_quantiles(s["logvar_hist"], bins, lv_min, lv_max, at_min, levels)
    with np.errstate(invalid="ignore"):
        active_mask = mu_var > active
    return PosteriorStats(
        n_samples=n,
        n_dims=int(s["n_dims"]),
        kl_per_dim=kl,
        kl_mean_part=mean_part,
        kl_variance_part=var_part,
        rate_nats=rate,
        rate_bits=rate / _LN2,
        rate_mean_part_nats=float(mean_part.sum()),
        rate_variance_part_nats=float(var_part.sum()),
        rate_share=share,
        mu_mean=mean,
        mu_var=mu_var,
        mean_posterior_var=post_var,
        mean_posterior_std=s["std_mean"],
        snr=snr,
        std_quantile_levels=tuple(float(p) for p in levels),
        posterior_std_quantiles=np.exp(0.5 * lv_q),
        posterior_std_quantiles_all=np.exp(0.5 * lv_q_all),
        logvar_bin_width=(HIST_HI - HIST_LO) / bins,
        logvar_min=lv_min,
        logvar_max=lv_max,
        share_at_min=at_min / n,
        at_min_exact=s["near_min_exact"],
        active_threshold=active,
        active_units=int(np.count_nonzero(active_mask)),
        active_dims=np.flatnonzero(active_mask),
        collapse_threshold=collapse,
        collapsed_dims=np.flatnonzero(kl < collapse),
    )
