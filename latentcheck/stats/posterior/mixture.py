"""ELBO surgery: the rate split into I(x; z), total correlation and dimension-wise KL.

:func:`mixture_decomposition` takes posterior parameters (μ, ln σ²) of a seeded subsample of
inputs, estimates the mutual information I(x; z) of the aggregate-posterior mixture by Monte
Carlo, with the mixture densities evaluated exactly by log-sum-exp in blocks of draws, and
splits the analytic rate exactly into I(x; z) + TC + Σ_j KL(q(z_j) ‖ p(z_j)), returned as a
:class:`MixtureDecomposition`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from latentcheck.errors import InputError, SmallSampleWarning
from latentcheck.stats.posterior.params import as_logvar, check_mu, kl_variance_part
from latentcheck.validation import check_int, check_seed

__all__ = [
    "MIXTURE_SAMPLES",
    "SATURATION_MARGIN_NATS",
    "MixtureDecomposition",
    "mixture_decomposition",
]

#: Recommended mixture subsample size for mixture_decomposition (cost O(n² · n_dims)).
MIXTURE_SAMPLES = 2048

_BOUND_KEYS = ("mutual_information", "kl_aggregate", "total_correlation", "dimwise_kl")


# --------------------------------------------------------------------------------------------
# ELBO surgery on a subsample


@dataclass(frozen=True, slots=True)
class MixtureDecomposition:
    """Monte-Carlo "ELBO surgery" split of the rate on a subsample of n inputs.

    All values are in nats per input. ``*_se`` are Monte-Carlo standard errors of the draws
    given the subsample (they do not include the subsample's own sampling variation).

    Attributes
    ----------
    rate_nats : float
        Analytic rate on the subsample, (1/n) Σ_n KL(q(z | x_n) ‖ p(z)); equals
        ``mutual_information + total_correlation + dimwise_kl`` exactly.
    rate_per_dim : ndarray of shape (n_dims,)
        The same per dimension.
    mutual_information : float
        I(x; z) under the empirical joint (x uniform over the n inputs), the "index-code
        mutual information"; always ≤ ln n.
    mutual_information_se : float
        Its Monte-Carlo standard error.
    mutual_information_per_dim : ndarray of shape (n_dims,)
        I(x; z_j) per dimension (each ≤ ln n).
    kl_aggregate : float
        KL(q(z) ‖ p(z)) of the aggregate posterior q(z) = (1/n) Σ_n q(z | x_n) to the prior,
        = ``rate_nats − mutual_information``.
    kl_aggregate_se : float
        Its Monte-Carlo standard error (the same as that of ``mutual_information``).
    total_correlation : float
        TC = KL(q(z) ‖ Π_j q(z_j)) = Σ_j I(x; z_j) − I(x; z).
    total_correlation_se : float
        Its Monte-Carlo standard error.
    dimwise_kl : float
        Σ_j KL(q(z_j) ‖ p(z_j)).
    dimwise_kl_se : float
        Its Monte-Carlo standard error.
    dimwise_kl_per_dim : ndarray of shape (n_dims,)
        KL(q(z_j) ‖ p(z_j)) = ``rate_per_dim − mutual_information_per_dim``.
    dimwise_kl_per_dim_se : ndarray of shape (n_dims,)
        Their Monte-Carlo standard errors.
    mutual_information_upper : float
        Leave-one-out estimate of I(x; z) (Poole et al. [4]_, "L1Out"): q(z) of each draw is
        the mixture of the *other* n − 1 posteriors, which makes it an upper bound on the
        population I(x; z) in expectation, as ``mutual_information`` is a lower one. +inf
        (JSON null) when some draw lies outside every other component.
    mutual_information_upper_se : float
        Its Monte-Carlo standard error.
    mutual_information_per_dim_upper : ndarray of shape (n_dims,)
        The same per dimension.
    mutual_information_ceiling : float
        ln n, the largest value ``mutual_information`` can take.
    mutual_information_regime : str
        ``"ok"`` when the bias bracket [``mutual_information``, ``mutual_information_upper``]
        is no wider than ``mutual_information_se``, so that estimate ± se is a fair interval;
        ``"biased"`` when it is wider (report I(x; z) as the bracket, not estimate ± se);
        ``"saturated"`` when the estimate is within ln 2 of the ceiling ln n (the typical
        draw's own posterior outweighs all n − 1 others together: the subsample cannot
        resolve I(x; z) and only I ≳ ``mutual_information`` is known); ``"unavailable"``
        with fewer than 2 rows.
    bounds : dict
        Bias brackets [lower, upper] of the expected values, from the two estimates and the
        identities: ``mutual_information``, ``kl_aggregate`` (rate − I), ``total_correlation``
        (Σ_j I_j − I, lower end clipped at 0) and ``dimwise_kl`` (rate − Σ_j I_j). Monte-Carlo
        error comes on top (the ``*_se``).
    estimator : dict
        Settings for the report: ``name``, ``n_mixture`` (n), ``n_draws``, ``seed`` (the seed
        actually used), ``block_size``, ``bias_bound_nats`` (ln n, the largest value the
        mutual-information estimate can take) and ``description``.
    """

    rate_nats: float
    rate_per_dim: NDArray[np.float64]
    mutual_information: float
    mutual_information_se: float
    mutual_information_per_dim: NDArray[np.float64]
    kl_aggregate: float
    kl_aggregate_se: float
    total_correlation: float
    total_correlation_se: float
    dimwise_kl: float
    dimwise_kl_se: float
    dimwise_kl_per_dim: NDArray[np.float64]
    dimwise_kl_per_dim_se: NDArray[np.float64]
    mutual_information_upper: float
    mutual_information_upper_se: float
    mutual_information_per_dim_upper: NDArray[np.float64]
    mutual_information_ceiling: float
    mutual_information_regime: str
    bounds: dict[str, tuple[float, float]]
    estimator: dict[str, Any]


#: The log ratios are formed in float32 when every |ln σ²| is at most this (s = e^{-ln σ²/2}
#: then stays below 1e18, and its square's products below the float32 range), else float64.
_FLOAT32_LOGVAR = 80.0


@dataclass(frozen=True, slots=True)
class _Components:
    """The n components of the mixture, laid out for one dimension at a time.

    Densities are compared through a = c − u², u = (z − μ) · s, with s = exp(−ln σ² / 2) / √2
    and c = −½ ln σ² (the −½ ln 2π of every component cancels in the ratios). The arrays of
    the working dtype are (n_dims, n); ``mu_lo`` is μ − float32(μ), None when μ is exact in
    the working dtype.
    """

    mu: NDArray[np.float64]  # (n, d), and the float64 values below for the exact path
    const: NDArray[np.float64]
    scale: NDArray[np.float64]
    mu_hi: NDArray[Any]
    mu_lo: NDArray[Any] | None
    scale_w: NDArray[Any]
    const_w: NDArray[Any]

    @classmethod
    def of(cls, mu: NDArray[np.float64], logvar: NDArray[np.float64]) -> _Components:
        """Return the layout of posteriors N(μ, exp(ln σ²)), rows of shape (n, d)."""
        single = bool(np.abs(logvar).max() <= _FLOAT32_LOGVAR)
        dtype = np.float32 if single else np.float64
        scale = np.exp(-0.5 * logvar) * math.sqrt(0.5)
        const = -0.5 * logvar
        # c about the middle of its range in each dimension: only differences of c matter,
        # and float32 keeps them to 2^-24 of that half-range
        shift = 0.5 * (const.max(axis=0) + const.min(axis=0))
        mu_hi = np.ascontiguousarray(mu.T, dtype=dtype)
        mu_lo = (mu.T - mu_hi).astype(dtype)
        return cls(
            mu=mu,
            const=const,
            scale=scale,
            mu_hi=mu_hi,
            mu_lo=np.ascontiguousarray(mu_lo) if mu_lo.any() else None,
            scale_w=np.ascontiguousarray(scale.T, dtype=dtype),
            const_w=np.ascontiguousarray((const - shift).T, dtype=dtype),
        )

    @property
    def dtype(self) -> np.dtype[Any]:
        """The working dtype of the log ratios (float32 but for extreme ln σ²)."""
        return self.mu_hi.dtype


#: Draws x components x dimensions evaluated together (float32: a 512 KiB block, within a
#: core's L2 cache; one draw at n = 2048, d = 64, which measured 9 % faster than four).
_BLOCK_ELEMENTS = 1 << 17
#: float32 exp arguments below this are raised to it: a subnormal result costs ten times a
#: normal one, and e^-87 (each at most 1.7e-38 of the own component's 1) changes no sum
#: that is kept (see _SUM_RANGE).
_EXP_FLOOR = -87.0
#: Per-dimension sums of ratios kept from float32; outside, evaluated again in float64:
#: below 1e-25 the raised terms (at most n · 1.7e-38) would weigh more than 1e-9 of the sum,
#: or all terms underflow (the leave-one-out ratio); above 1e30, exp may have overflowed.
_SUM_RANGE = (1e-25, 1e30)


def _block_log_ratios(
    comp: _Components,
    z_t: NDArray[np.float64],
    rows: NDArray[np.intp],
    work: NDArray[Any],
    lo_work: NDArray[Any],
) -> NDArray[Any]:
    """Return t (d, b, n) = ln q(z_j | x_n) − ln q(z_j | x_own) in float32, own at −inf.

    z − μ is formed from float32 high and low parts (Dekker's splitting), so that u keeps
    2^-22 of its own size whatever the size of z and μ (narrow posteriors far from 0), and
    |δt| <= 2^-20 (u_n² + u_own²) + 2^-23 (|a_n| + |a_own|): about 1e-6 nats for the terms
    near the own component, at most 1e-4 for those above e^-50 of it when ln σ² spans less
    than 10 in the dimension (a term's relative error is its δt).
    """
    b = z_t.shape[1]
    z_hi = z_t.astype(comp.dtype)
    z_lo = (z_t - z_hi).astype(comp.dtype)
    t: NDArray[Any] = np.subtract(z_hi[:, :, None], comp.mu_hi[:, None, :], out=work)
    if comp.mu_lo is None:
        t += z_lo[:, :, None]
    else:
        t += np.subtract(z_lo[:, :, None], comp.mu_lo[:, None, :], out=lo_work)
    t *= comp.scale_w[:, None, :]
    np.square(t, out=t)
    np.subtract(comp.const_w[:, None, :], t, out=t)  # a = c − u²
    cols = np.arange(b)
    # relative to the own component's a, taken from the same array: equal components
    # give exactly 0, as in float64
    t -= t[:, cols, rows][:, :, None]
    # leave the own component out (its ratio is exactly 1, added back by the caller), so
    # that rounding cannot push a sum below 1 (and g above ln n)
    t[:, cols, rows] = -np.inf
    return t


def _exact_dim_sums(
    comp: _Components, z: NDArray[np.float64], rows: NDArray[np.intp], dims: NDArray[np.intp]
) -> NDArray[np.float64]:
    """Return Σ_{n ≠ own} q(z_j | x_n) / q(z_j | x_own) in float64 for pairs (draw, dim).

    `z` and `rows` are the pairs' draws and own components, `dims` their dimensions; as the
    float64 code did: terms below e^-745 underflow, the sum is 0 when all of them do.
    """
    mu_d = comp.mu[:, dims].T  # (pairs, n)
    const_d = comp.const[:, dims].T
    scale_d = comp.scale[:, dims].T
    own_log = comp.const[rows, dims] - np.square((z - comp.mu[rows, dims]) * comp.scale[rows, dims])
    t = const_d - np.square((z[:, None] - mu_d) * scale_d) - own_log[:, None]
    t[np.arange(dims.size), rows] = -np.inf
    out: NDArray[np.float64] = np.exp(t).sum(axis=1)
    return out


def _log_ratios(
    mu: NDArray[np.float64],
    logvar: NDArray[np.float64],
    z: NDArray[np.float64],
    own: NDArray[np.intp],
    block_size: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Return the InfoNCE and leave-one-out log ratios of every draw, joint and per dimension.

    With L = ln Σ_{m ≠ own} q(z|x_m) / q(z|x_own) (the other n − 1 components): g (n_draws,)
    = ln n − ln(1 + e^L) and g_loo = ln(n − 1) − L; g_dim, g_dim_loo (n_draws, n_dims) the same
    per dimension. g_loo is +inf when every other component underflows.

    The n · n_draws · n_dims log ratios are formed and exponentiated in float32 (see
    :func:`_block_log_ratios`; float64 for |ln σ²| > 80); the per-dimension sums that
    float32 cannot hold to 1e-9 (all others far below the own component, or overflow) are
    evaluated again in float64.
    """
    n, d = mu.shape
    n_draws = z.shape[0]
    log_n = math.log(n)
    log_n1 = math.log(n - 1)
    comp = _Components.of(mu, logvar)
    g = np.empty(n_draws)
    g_loo = np.empty(n_draws)
    g_dim = np.empty((n_draws, d))
    g_dim_loo = np.empty((n_draws, d))
    # one scratch block reused throughout: a fresh temporary per block would be
    # page-faulted in again every time
    width = min(block_size, n_draws)
    work = np.empty((d, width, n), dtype=comp.dtype)
    lo_work = np.empty((d, width, n) if comp.mu_lo is not None else (0, 0, 0), dtype=comp.dtype)
    single = comp.dtype == np.float32
    floor, (low, high) = (_EXP_FLOOR, _SUM_RANGE) if single else (-np.inf, (0.0, np.inf))
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        for start in range(0, n_draws, block_size):
            stop = min(start + block_size, n_draws)
            b = stop - start
            rows = own[start:stop]
            z_t = np.ascontiguousarray(z[start:stop].T)
            t = _block_log_ratios(comp, z_t, rows, work[:, :b], lo_work[:, :b])
            joint = t.sum(axis=0).astype(np.float64)  # (b, n)
            if single:
                np.maximum(t, floor, out=t)
            np.exp(t, out=t)
            sums = t.sum(axis=2).T.astype(np.float64)  # (b, d)
            redo = ~((sums >= low) & (sums <= high))
            if redo.any():
                k, j = np.nonzero(redo)
                sums[k, j] = _exact_dim_sums(comp, z_t[j, k], rows[k], j)
            lse_dim = np.log(sums)  # -inf when all others underflow
            g_dim[start:stop] = log_n - np.logaddexp(0.0, lse_dim)
            g_dim_loo[start:stop] = log_n1 - lse_dim
            top = joint.max(axis=1, keepdims=True)
            top[~np.isfinite(top)] = 0.0
            lse = top[:, 0] + np.log(np.exp(joint - top).sum(axis=1))
            g[start:stop] = log_n - np.logaddexp(0.0, lse)
            g_loo[start:stop] = log_n1 - lse
    return g, g_loo, g_dim, g_dim_loo


def mixture_decomposition(
    mu: ArrayLike,
    logvar: ArrayLike,
    *,
    n_draws: int | None = None,
    seed: int | None = None,
    block_size: int | None = None,
) -> MixtureDecomposition:
    """Split the rate into I(x; z), total correlation and dimension-wise KL.

    Parameters
    ----------
    mu : array_like of shape (n_samples, n_dims)
        Posterior means of a (seeded, uniform) subsample of inputs; every row is one
        component of the aggregate posterior; the cost grows as n_samples² · n_dims with the
        default ``n_draws`` (:data:`MIXTURE_SAMPLES` = 2048 rows is the recommended size).
    logvar : array_like of shape (n_samples, n_dims)
        Their log-variances ln σ² (see :func:`~latentcheck.stats.posterior.params.as_logvar`).
    n_draws : int or None, default=None
        Number of Monte-Carlo draws z ~ q(z | x_m); None draws one per row (stratified over
        the inputs). Larger values cycle over the rows; smaller ones use a random subset.
    seed : int or None, default=None
        Seed of the draws; None picks one from fresh entropy and records it in
        ``estimator["seed"]``.
    block_size : int or None, default=None
        Draws evaluated together; memory is 4 · block_size · n_samples · n_dims bytes (twice
        that when μ is not exact in float32). None keeps a block near 512 KiB (at least one
        draw).

    Returns
    -------
    MixtureDecomposition

    Raises
    ------
    InputError
        For invalid arrays or parameters.

    Warns
    -----
    SmallSampleWarning
        With fewer than 2 rows (every value is NaN).

    Notes
    -----
    With x uniform over the n rows and q(z) = (1/n) Σ_n q(z | x_n), the average rate splits
    as [1]_ [2]_

        (1/n) Σ_n KL(q(z|x_n) ‖ p) = I(x; z) + TC(z) + Σ_j KL(q(z_j) ‖ p(z_j)).

    Draws z_k ~ q(z | x_{m_k}) give g_k = ln q(z_k | x_{m_k}) − ln q(z_k) and, per dimension,
    g_kj = ln q(z_kj | x_{m_k}) − ln q_j(z_kj), with ln q(z) and ln q_j(z_j) evaluated exactly
    over all n components by log-sum-exp, block by block (memory O(block · n · d), never
    n × n). Then I(x; z) ≈ mean_k g_k and I(x; z_j) ≈ mean_k g_kj. The rate is known in closed
    form, so KL(q(z) ‖ p) = rate − I(x; z) and KL(q(z_j) ‖ p) = rate_j − I(x; z_j); as q(z | x)
    factorises, TC = Σ_j I(x; z_j) − I(x; z). Every g is bounded above by ln n (the draw's own
    component is one of the n), so these estimates have far less variance than averaging
    ln q(z) − ln p(z) directly, and the three parts add up to the rate exactly.

    Bias: the estimate is unbiased (over draws) for the n-input mixture. As an estimate for
    the population of inputs, mean_k g_k is the InfoNCE bound with the true critic [3]_ [4]_:
    it is at most ln n and in expectation at most the population I(x; z); Jensen's inequality
    over the other n − 1 components bounds the gap,
    0 ≤ I − E[Î] ≤ ln(1 + (E_{p(x,z)}[q(z|x) / q(z)] − 1) / n), and the same holds per
    dimension. So I is biased low and KL(q(z) ‖ p) high, badly so when I(x; z) approaches
    ln n (near-deterministic encoders: every draw then sits at ln n, and the split only says
    that I(x; z) ≥ ln n). The leave-one-out estimate (draw z_k against the other n − 1
    components only, the "L1Out" bound of [4]_) is biased *high* by Jensen's inequality the
    other way, so the two bracket the population value in expectation; their gap is the
    bias regime reported in ``mutual_information_regime`` and ``bounds``. In a
    linear-Gaussian model with I(x; z) = 5.73 nats (d = 8) the bracket was [5.19, 6.27] at
    n = 1000 (ln n = 6.91; se 0.05) and [5.43, 5.96] at n = 4000, always around the truth,
    while estimate ± se never covered it. Standard errors are sd(g) / √n_draws as for
    independent draws; with stratified draws (one per row) they overstate the Monte-Carlo
    error given the subsample (by 10-20 % in tests) and came within 10 % of the total error
    against population values in linear-Gaussian tests, where the subsample varied too.

    Accuracy at the defaults (n = n_draws = 2048, n_dims = 64): in a
    linear-Gaussian model with I(x; z) = 3.6 nats the standard errors were 0.05 nats (I and
    KL(q(z) ‖ p)), 0.02-0.03 (TC) and 0.05-0.06 (dimension-wise KL), and I was 0.12 nats low;
    with I(x; z) = 9.4 nats > ln 2048 = 7.6 the estimate saturated at 6.9.

    References
    ----------
    .. [1] M. D. Hoffman and M. J. Johnson, "ELBO surgery: yet another way to carve up the
           variational evidence lower bound", NIPS 2016 Workshop on Advances in Approximate
           Bayesian Inference, http://approximateinference.org/2016/accepted/HoffmanJohnson2016.pdf
    .. [2] R. T. Q. Chen, X. Li, R. Grosse and D. Duvenaud, "Isolating Sources of
           Disentanglement in Variational Autoencoders", NeurIPS 2018, :arxiv:`1802.04942`.
    .. [3] A. van den Oord, Y. Li and O. Vinyals, "Representation Learning with Contrastive
           Predictive Coding", 2018, :arxiv:`1807.03748`.
    .. [4] B. Poole, S. Ozair, A. van den Oord, A. A. Alemi and G. Tucker, "On Variational
           Bounds of Mutual Information", ICML 2019, :arxiv:`1905.06922`.
    """
    mu64, lv, draws, block = _check_inputs(mu, logvar, n_draws, block_size)
    n, d = lv.shape
    used_seed = check_seed(seed)
    estimator = _estimator_description(n, draws, used_seed, block)
    if n:
        rate_dim = (0.5 * np.square(mu64) + kl_variance_part(lv)).mean(axis=0)
    else:
        rate_dim = np.full(d, np.nan)
    if n < 2:
        return _too_few_rows(n, d, rate_dim, estimator)
    rng = np.random.default_rng(used_seed)
    # stratified over inputs: whole cycles over all rows, then a random subset for the rest
    own = np.concatenate(
        [np.tile(np.arange(n), draws // n), rng.choice(n, draws % n, replace=False)]
    ).astype(np.intp)
    eps = rng.standard_normal((draws, d))
    z = mu64[own] + np.exp(0.5 * lv[own]) * eps
    ratios = _log_ratios(mu64, lv, z, own, block)
    return _split_rate(n, rate_dim, ratios, estimator)


def _check_inputs(
    mu: ArrayLike, logvar: ArrayLike, n_draws: int | None, block_size: int | None
) -> tuple[NDArray[np.float64], NDArray[np.float64], int, int]:
    """Return validated (μ, ln σ², number of draws, block size), or raise InputError."""
    mu64 = check_mu(mu)
    lv = as_logvar(logvar, "logvar")
    if mu64.shape != lv.shape:
        raise InputError(
            f"`mu` and `logvar` must have the same shape, got {mu64.shape} and {lv.shape}"
        )
    n, d = lv.shape
    if d == 0:
        raise InputError("`mu` has 0 dimensions; expected at least one column")
    draws = n if n_draws is None else check_int(n_draws, "n_draws", minimum=2)
    if block_size is None:
        block = max(1, _BLOCK_ELEMENTS // max(1, n * d))
    else:
        block = check_int(block_size, "block_size", minimum=1)
    return mu64, lv, draws, block


def _estimator_description(n: int, draws: int, seed: int, block: int) -> dict[str, Any]:
    """Return the ``estimator`` record of a decomposition (name, sizes, seed, description)."""
    return {
        "name": "aggregate-posterior mixture, Monte Carlo with analytic rate",
        "n_mixture": int(n),
        "n_draws": int(draws),
        "seed": seed,
        "block_size": int(block),
        "bias_bound_nats": math.log(n) if n > 0 else math.nan,
        "description": (
            "I(x;z) = mean of ln q(z|x) - ln q(z) over draws from q(z|x), with q(z) the "
            "mixture of the n subsample posteriors (<= ln n, biased low for the population); "
            "KL(q(z)||p) = rate - I; TC = sum_j I(x;z_j) - I; dimension-wise KL_j = rate_j - "
            "I(x;z_j)"
        ),
    }


def _too_few_rows(
    n: int, d: int, rate_dim: NDArray[np.float64], estimator: dict[str, Any]
) -> MixtureDecomposition:
    """Warn (at the caller's caller) and return the all-NaN decomposition of n < 2 rows."""
    warnings.warn(
        f"The mixture decomposition needs at least 2 rows, got {n}; its values are NaN",
        SmallSampleWarning,
        stacklevel=3,
    )
    nan_d = np.full(d, np.nan)
    return MixtureDecomposition(
        rate_nats=float(rate_dim.sum()),
        rate_per_dim=rate_dim,
        mutual_information=math.nan,
        mutual_information_se=math.nan,
        mutual_information_per_dim=nan_d,
        kl_aggregate=math.nan,
        kl_aggregate_se=math.nan,
        total_correlation=math.nan,
        total_correlation_se=math.nan,
        dimwise_kl=math.nan,
        dimwise_kl_se=math.nan,
        dimwise_kl_per_dim=nan_d,
        dimwise_kl_per_dim_se=nan_d,
        mutual_information_upper=math.nan,
        mutual_information_upper_se=math.nan,
        mutual_information_per_dim_upper=nan_d,
        mutual_information_ceiling=math.log(n) if n > 0 else math.nan,
        mutual_information_regime="unavailable",
        bounds={k: (math.nan, math.nan) for k in _BOUND_KEYS},
        estimator=estimator,
    )


def _split_rate(
    n: int,
    rate_dim: NDArray[np.float64],
    ratios: tuple[
        NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]
    ],
    estimator: dict[str, Any],
) -> MixtureDecomposition:
    """Return the decomposition from the draws' log ratios (see :func:`_log_ratios`)."""
    g, g_loo, g_dim, g_dim_loo = ratios
    draws = g.shape[0]
    g_sum = g_dim.sum(axis=1)
    root = math.sqrt(draws)
    # every g is <= ln n; clip the rounding of the mean of many values at ln n
    log_n = math.log(n)
    mi = min(float(g.mean()), log_n)
    mi_se = float(g.std(ddof=1)) / root
    mi_dim = np.minimum(g_dim.mean(axis=0), log_n)
    rate = float(rate_dim.sum())
    with np.errstate(invalid="ignore"):
        # +inf draws make the upper estimate +inf and its se NaN
        hi = max(float(g_loo.mean()), mi)
        hi_se = float(g_loo.std(ddof=1)) / root if math.isfinite(hi) else math.nan
        hi_dim = np.maximum(g_dim_loo.mean(axis=0), mi_dim)
    regime = _regime(mi, hi, mi_se, log_n)
    sum_lo, sum_hi = float(mi_dim.sum()), float(hi_dim.sum())
    bounds = {
        "mutual_information": (mi, hi),
        "kl_aggregate": (rate - hi, rate - mi),
        "total_correlation": (max(0.0, sum_lo - hi), max(0.0, sum_hi - mi)),
        "dimwise_kl": (rate - sum_hi, rate - sum_lo),
    }
    return MixtureDecomposition(
        rate_nats=rate,
        rate_per_dim=rate_dim,
        mutual_information=mi,
        mutual_information_se=mi_se,
        mutual_information_per_dim=mi_dim,
        kl_aggregate=rate - mi,
        kl_aggregate_se=mi_se,
        total_correlation=float(mi_dim.sum()) - mi,
        total_correlation_se=float((g_sum - g).std(ddof=1)) / root,
        dimwise_kl=rate - float(mi_dim.sum()),
        dimwise_kl_se=float(g_sum.std(ddof=1)) / root,
        dimwise_kl_per_dim=rate_dim - mi_dim,
        dimwise_kl_per_dim_se=g_dim.std(axis=0, ddof=1) / root,
        mutual_information_upper=hi,
        mutual_information_upper_se=hi_se,
        mutual_information_per_dim_upper=hi_dim,
        mutual_information_ceiling=log_n,
        mutual_information_regime=regime,
        bounds=bounds,
        estimator=estimator,
    )


#: Margin below the ceiling ln n at which the estimate counts as saturated: a draw's
#: g = ln n − ln(1 + Σ_others ratio) exceeds ln n − ln 2 exactly when its own posterior
#: outweighs all n − 1 others together.
SATURATION_MARGIN_NATS = math.log(2.0)


def _regime(lower: float, upper: float, se: float, ceiling: float) -> str:
    """Classify the mixture estimate: "ok", "biased" or "saturated" (see the class docs)."""
    if not math.isfinite(lower):
        return "ok"
    if lower >= ceiling - SATURATION_MARGIN_NATS:
        return "saturated"
    if not upper - lower <= se:  # also for an infinite upper estimate
        return "biased"
    return "ok"
