"""Mardia's multivariate skewness and kurtosis, from a sample or streamed over all rows.

:func:`mardia` tests a sample (normally the seeded one). :class:`MardiaAccumulator` gives
the same statistics over all rows in the second pass: fed with chunks whitened once by the
shared :class:`~latentcheck.stats.joint.whitening.Whitening`, it sums ``|y|^4`` and, when
:func:`mardia_third_order_affordable` says that their ``n d^2 (d + 1)`` flops fit the
budget, the third-order sums behind the skewness; both merge by addition.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from latentcheck.errors import InputError
from latentcheck.model.base import TestResult
from latentcheck.stats.joint.common import (
    check_sample,
    normal_sf,
    prepare,
    rows_reason,
    skip,
    symmetric_pair_sum,
)
from latentcheck.stats.joint.whitening import Whitening, same_whitening, small_product_rows

__all__ = [
    "THIRD_ORDER_FLOP_BUDGET",
    "MardiaAccumulator",
    "b1p_from_third",
    "cube",
    "mardia",
    "mardia_third_order_affordable",
    "third_order_sums",
]

#: Default flop budget of :func:`mardia_third_order_affordable`: 1e10 floating-point
#: operations, well under a second of single-threaded float64 work.
THIRD_ORDER_FLOP_BUDGET = 1.0e10

_BLOCK_ELEMENTS = 1 << 21  # elements of a temporary (rows x pairs) block: 16 MiB float64

FloatArray = NDArray[np.float64]


class MardiaAccumulator:
    """Mergeable sums for Mardia's skewness and kurtosis over all rows (second pass).

    With ``y_i`` the rows whitened by the full-data mean and population covariance, it
    accumulates ``n``, ``sum_i |y_i|^4`` and, if ``third_order``, the third-order sums
    ``S_rst = sum_i y_ir y_is y_it`` (for ``s <= t``). Then ``b2p = sum |y|^4 / n`` and
    ``b1p = sum_rst (S_rst / n)^2``. The centre is the final mean of pass 1, so the sums
    are central sums and merging is addition.

    Parameters
    ----------
    mean : array_like of shape (n_dims,)
        Full-data mean from pass 1.
    cov : array_like of shape (n_dims, n_dims)
        Full-data population covariance (ddof=0) from pass 1.
    third_order : bool, default=False
        Accumulate the third-order sums needed for skewness; costs ``n * d^2 (d + 1)``
        flops (see :func:`mardia_third_order_affordable`).

    Notes
    -----
    ``sum_{i,j} (y_i' y_j)^3 = sum_{r,s,t} S_rst^2``, which turns Mardia's pairwise
    skewness into a one-pass, mergeable sum (Mardia 1970).
    """

    __slots__ = ("_n_rows", "_sum_r4", "_third", "_third_order", "_whitening")

    def __init__(
        self, mean: npt.ArrayLike, cov: npt.ArrayLike, *, third_order: bool = False
    ) -> None:
        self._init(Whitening.from_moments(mean, cov), third_order)

    def _init(self, whitening: Whitening, third_order: bool) -> None:
        d = whitening.n_dims
        self._whitening = whitening
        self._third_order = bool(third_order)
        self._n_rows = 0
        self._sum_r4 = 0.0
        n_pairs = d * (d + 1) // 2 if third_order else 0
        self._third: FloatArray = np.zeros((d if third_order else 0, n_pairs))

    @classmethod
    def from_whitening(
        cls, whitening: Whitening, *, third_order: bool = False
    ) -> MardiaAccumulator:
        """Return an empty accumulator that uses an existing :class:`Whitening`."""
        acc = cls.__new__(cls)
        acc._init(whitening, third_order)
        return acc

    @property
    def whitening(self) -> Whitening:
        """The whitening shared with other second-pass accumulators."""
        return self._whitening

    @property
    def n_rows(self) -> int:
        """Rows pushed so far."""
        return self._n_rows

    def push(self, chunk: npt.ArrayLike, row_ids: npt.ArrayLike | None = None) -> None:
        """Add a chunk of rows of shape (n_rows, n_dims), float32 or float64 (ids unused)."""
        if self._whitening.reason is not None:
            self._n_rows += _n_chunk_rows(chunk, self._whitening.n_dims)
            return
        y, r2 = self._whitening.apply(chunk)
        self.push_whitened(y, r2)

    @property
    def third_order(self) -> bool:
        """Whether the third-order sums (Mardia's skewness over all rows) accumulate."""
        return self._third_order

    def push_norms(self, r2: FloatArray) -> None:
        """Add rows given only their whitened squared norms ``|y|²`` (no third-order sums).

        For the float32 whitening (:class:`~latentcheck.stats.joint.whitening.
        SingleWhitening`): ``sum |y|^4`` still accumulates in float64.
        """
        if self._third_order:
            raise InputError("`push_norms` cannot feed the third-order sums; use push_whitened")
        self._n_rows += int(r2.shape[0])
        if self._whitening.reason is None:
            self._sum_r4 += float(np.dot(r2, r2))

    def push_whitened(self, y: FloatArray, r2: FloatArray) -> None:
        """Add rows already whitened by :meth:`Whitening.apply` of this whitening."""
        self._n_rows += int(r2.shape[0])
        if self._whitening.reason is not None:
            return
        self._sum_r4 += float(np.dot(r2, r2))
        if self._third_order:
            self._third += third_order_sums(y)

    def merge(self, other: MardiaAccumulator) -> MardiaAccumulator:
        """Return a new accumulator holding the rows of both."""
        if not same_whitening(self._whitening, other._whitening):
            raise InputError("Cannot merge Mardia accumulators built from different moments")
        if self._third_order != other._third_order:
            raise InputError("Cannot merge Mardia accumulators with different `third_order`")
        out = MardiaAccumulator.from_whitening(self._whitening, third_order=self._third_order)
        out._n_rows = self._n_rows + other._n_rows
        out._sum_r4 = self._sum_r4 + other._sum_r4
        out._third = self._third + other._third
        return out

    __add__ = merge

    def finish(self) -> MardiaAccumulator:
        """Return self: nothing waits (see :mod:`latentcheck.engine.protocol`)."""
        return self

    def state(self) -> dict[str, NDArray[np.generic]]:
        """Return the state as a dict of arrays (see :meth:`from_state`)."""
        return {
            "mean": self._whitening.mean.copy(),
            "cov": self._whitening.cov.copy(),
            "third_order": np.array(self._third_order),
            "n_rows": np.array(self._n_rows, dtype=np.int64),
            "sum_r4": np.array(self._sum_r4),
            "third": self._third.copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, NDArray[np.generic]]) -> MardiaAccumulator:
        """Rebuild an accumulator from :meth:`state`."""
        acc = cls(state["mean"], state["cov"], third_order=bool(state["third_order"]))
        acc._n_rows = int(state["n_rows"])
        acc._sum_r4 = float(state["sum_r4"])
        acc._third = np.array(state["third"], dtype=np.float64).reshape(acc._third.shape)
        return acc

    def results(self) -> tuple[TestResult, TestResult]:
        """Return Mardia's (skewness, kurtosis) tests over the rows pushed.

        Skewness is skipped (with the reason) when ``third_order`` is False.
        """
        d = self._whitening.n_dims
        reason = self._whitening.reason or rows_reason(self._n_rows, d, "Mardia's tests")
        if reason is not None:
            skipped = skip(reason, self._whitening.reason is None)
            return skipped, skipped
        n = self._n_rows
        b2p = self._sum_r4 / n
        if not self._third_order:
            skew = TestResult.skipped(
                "Skewness needs third-order sums (n * d^3 flops), not accumulated for "
                f"n={n}, d={d}; use the sample-based `mardia`"
            )
            return skew, _mardia_kurtosis(n, d, b2p)
        b1p = b1p_from_third(self._third, d) / n**2
        return _mardia_skewness(n, d, b1p), _mardia_kurtosis(n, d, b2p)


def mardia_third_order_affordable(
    n_rows: int, n_dims: int, *, flop_budget: float = THIRD_ORDER_FLOP_BUDGET
) -> bool:
    """Say whether Mardia's third-order sums over ``n_rows`` rows fit a flop budget.

    Parameters
    ----------
    n_rows, n_dims : int
        Rows and dimensions of the data.
    flop_budget : float, default=THIRD_ORDER_FLOP_BUDGET
        Allowed floating-point operations (default 1e10, well under a second
        single-threaded for 4 <= n_dims <= 64).

    Returns
    -------
    bool
        True when ``n_rows * (d^2 (d + 1) + 64 d (d + 1) / 2) <= flop_budget``: the BLAS
        products ``y_r (y_s y_t)`` plus the ``d (d + 1) / 2`` memory-bound products
        ``y_s y_t`` per row, each weighted as 64 flops (measured). For d = 64 that is
        about 25,000 rows, for d = 16 about 770,000, for d = 4 about 14 million.
    """
    d = float(n_dims)
    return float(n_rows) * (d * d * (d + 1.0) + 32.0 * d * (d + 1.0)) <= flop_budget


def mardia(x: npt.ArrayLike, *, kurtosis: str = "exact") -> tuple[TestResult, TestResult]:
    """Mardia's multivariate skewness and kurtosis tests.

    Parameters
    ----------
    x : array_like of shape (n_samples, n_dims)
        Sample, finite values.
    kurtosis : {"exact", "asymptotic"}, default="exact"
        Standardisation of the kurtosis statistic: "exact" by the finite-n mean and
        variance of b2p under normality (Mardia 1974); "asymptotic" by d(d+2) and
        8d(d+2)/n, as MVN's ``mardia`` does (it reproduces MVN's published values, but
        over-rejects at large d: size .093 at n = 5000, d = 64).

    Returns
    -------
    skewness, kurtosis : TestResult
        Skewness: statistic ``n b1p / 6`` (times ``k`` below when n < 20), chi2 p-value
        with ``d(d+1)(d+2)/6`` df, effect size ``b1p``. Kurtosis: statistic
        ``z = (b2p - E b2p) / sqrt(Var b2p)`` with the exact finite-n moments (see Notes;
        ``kurtosis="asymptotic"``: ``(b2p - d(d+2)) / sqrt(8 d (d+2) / n)``), two-sided
        normal p-value, effect size ``b2p - d(d+2)`` (excess multivariate kurtosis).

    Notes
    -----
    With ``D_ij = (x_i - m)' S^-1 (x_j - m)``, S the population covariance (ddof=0, as in
    MVN), ``b1p = sum_ij D_ij^3 / n^2`` and ``b2p = sum_i D_ii^2 / n`` [1]_. For n < 20 the
    skewness statistic is multiplied by ``k = (d+1)(n+1)(n+3) / (n((n+1)(d+1) - 6))``, the
    small-sample correction that MVN's ``mardia`` applies [2]_.

    Under normality b2p has mean ``d(d+2)(n-1)/(n+1)`` and variance
    ``8 d (d+2) (n-3) (n-d-1) (n-d+1) / ((n+1)^2 (n+3) (n+5))`` exactly [3]_; the
    asymptotic centre d(d+2) sits ``2 d (d+2) / (n+1)`` too high, which at d = 64 and
    n = 5000 shifts z by -0.65 and nearly doubles the size (.093 instead of .05).

    References
    ----------
    .. [1] Mardia, K. V. (1970). Measures of multivariate skewness and kurtosis with
       applications. Biometrika 57(3), 519-530. :doi:`10.1093/biomet/57.3.519`
    .. [2] Korkmaz, S., Goksuluk, D., Zararsiz, G. (2014). MVN: An R package for assessing
       multivariate normality. The R Journal 6(2), 151-162. :doi:`10.32614/RJ-2014-031`
    .. [3] Mardia, K. V. (1974). Applications of some measures of multivariate skewness
       and kurtosis in testing normality and robustness studies. Sankhya B 36(2), 115-128.
    """
    if kurtosis not in ("exact", "asymptotic"):
        raise InputError(f'`kurtosis` must be "exact" or "asymptotic", got {kurtosis!r}')
    xs = check_sample(x)
    prepared = prepare(xs, "Mardia's tests", min_rows=3)
    if isinstance(prepared, TestResult):
        return prepared, prepared
    y, r2 = prepared
    n, d = y.shape
    # Third-order sums cost n d^2 (d + 1) flops, pairwise products n^2 d (symmetric half).
    if d * (d + 1) < n:
        b1p = b1p_from_third(third_order_sums(y), d) / n**2
    else:
        b1p = symmetric_pair_sum(y, y, cube) / n**2
    b2p = float(np.dot(r2, r2)) / n
    return _mardia_skewness(n, d, b1p), _mardia_kurtosis(n, d, b2p, exact=kurtosis == "exact")


# -- helpers -----------------------------------------------------------------------------


def _n_chunk_rows(chunk: npt.ArrayLike, n_dims: int) -> int:
    """Return the row count of a chunk after checking its shape."""
    shape = np.shape(chunk)
    if len(shape) != 2 or shape[1] != n_dims:
        raise InputError(f"`chunk` must have shape (n_rows, {n_dims}), got shape {shape}")
    return int(shape[0])


def cube(g: FloatArray) -> FloatArray:
    """Return g ** 3 (Mardia's pairwise skewness terms), overwriting g."""
    g3 = g * g
    g *= g3
    return g


def third_order_sums(y: FloatArray) -> FloatArray:
    """Return S[r, p] = sum_i y_ir y_is y_it for the pairs p = (s, t), s <= t (row-major).

    For each s, the products y_is y_it (t >= s) are contiguous slices, so one BLAS product
    per s and row block covers them, with no gathered copies. Row blocks small enough for
    OpenBLAS's small-matrix kernels where that leaves at least 64 rows (faster at d = 64
    and d = 100; see :func:`~latentcheck.stats.joint.whitening.small_product_rows`).
    """
    m, d = y.shape
    out = np.zeros((d, d * (d + 1) // 2))
    rows = small_product_rows(d, d) or max(1, _BLOCK_ELEMENTS // d)
    for a in range(0, m, rows):
        block = y[a : a + rows]
        start = 0
        for s_col in range(d):
            width = d - s_col
            out[:, start : start + width] += block.T @ (block[:, s_col:] * block[:, s_col, None])
            start += width
    return out


def b1p_from_third(third: FloatArray, d: int) -> float:
    """Return sum_rst S_rst^2 from the (s <= t) third-order sums."""
    s_idx, t_idx = np.triu_indices(d)
    # s == t appears once in the full tensor, s < t twice (as (s, t) and (t, s)).
    weights = np.where(s_idx == t_idx, 1.0, 2.0)
    return float(np.sum(weights * np.sum(third**2, axis=0)))


def _mardia_skewness(n: int, d: int, b1p: float) -> TestResult:
    """Return Mardia's skewness test from b1p (MVN conventions)."""
    from scipy.special import chdtrc

    df = d * (d + 1) * (d + 2) / 6.0
    if n < 20:
        # MVN `mardia`: small-sample correction of the skewness statistic for n < 20.
        k = (d + 1.0) * (n + 1.0) * (n + 3.0) / (n * ((n + 1.0) * (d + 1.0) - 6.0))
        stat = n * k * b1p / 6.0
        method = "chi2 approximation with the small-sample correction k (n < 20, MVN `mardia`)"
    else:
        stat = n * b1p / 6.0
        method = "chi2 approximation of n b1p / 6"
    return TestResult(
        statistic=stat, pvalue=float(chdtrc(df, stat)), df=df, effect_size=b1p, method=method
    )


def _mardia_kurtosis(n: int, d: int, b2p: float, *, exact: bool = True) -> TestResult:
    """Return Mardia's kurtosis test from b2p: exact finite-n moments, or MVN's asymptotic."""
    excess = b2p - d * (d + 2.0)
    if exact:
        centre = d * (d + 2.0) * (n - 1.0) / (n + 1.0)
        var = (
            8.0
            * d
            * (d + 2.0)
            * (n - 3.0)
            * (n - d - 1.0)
            * (n - d + 1.0)
            / ((n + 1.0) ** 2 * (n + 3.0) * (n + 5.0))
        )
        if not var > 0:  # n <= d + 1 or n = 3: the moments are degenerate
            centre, var = d * (d + 2.0), 8.0 * d * (d + 2.0) / n
            method = "normal approximation, two-sided (asymptotic moments: n too small)"
        else:
            method = "normal approximation with the exact finite-n mean and variance, two-sided"
        z = (b2p - centre) / math.sqrt(var)
    else:
        z = excess * math.sqrt(n / (8.0 * d * (d + 2.0)))
        method = "normal approximation with the asymptotic moments (MVN), two-sided"
    return TestResult(
        statistic=z,
        pvalue=2.0 * normal_sf(abs(z)),
        effect_size=excess,
        method=method,
    )
