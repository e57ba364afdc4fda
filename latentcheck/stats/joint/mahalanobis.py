"""Mahalanobis exceedances over all rows, counted in the second pass.

:class:`MahalanobisAccumulator` whitens each chunk once with the full-data moments (a
:class:`~latentcheck.stats.joint.whitening.Whitening` shared with
:class:`~latentcheck.stats.joint.mardia.MardiaAccumulator`), counts squared distances above
the chi2_d 0.99 and 0.999 quantiles and keeps the rows with the largest distances;
:func:`mahalanobis_expected_rates` gives the rates Gaussian rows have at finite n.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from latentcheck.errors import DegenerateDimensionWarning, InputError
from latentcheck.stats.joint.mardia import MardiaAccumulator
from latentcheck.stats.joint.whitening import (
    UNIT_ROUNDOFF_64,
    SingleWhitening,
    Whitening,
    same_whitening,
)

__all__ = [
    "MAHALANOBIS_QUANTILES",
    "MahalanobisAccumulator",
    "MahalanobisOutliers",
    "chi2_thresholds",
    "chi2_upper_quantiles",
    "mahalanobis_expected_rates",
    "top_rows",
]

#: Quantiles of chi2_d at which the Mahalanobis exceedance rates are counted.
MAHALANOBIS_QUANTILES = (0.99, 0.999)
# Upper-tail probabilities of those quantiles, written exactly (1 - 0.99 is not 0.01).
_MAHALANOBIS_TAILS = (0.01, 0.001)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class MahalanobisOutliers:
    """Squared Mahalanobis distances of all rows against chi2_d.

    Attributes
    ----------
    n_rows : int
        Rows counted.
    n_dims : int
        Dimensions d.
    quantiles : ndarray of shape (2,)
        0.99 and 0.999.
    thresholds : ndarray of shape (2,)
        The chi2_d quantiles at those levels.
    n_above : ndarray of shape (2,)
        Rows whose squared distance exceeds each threshold.
    rates : ndarray of shape (2,)
        ``n_above / n_rows``, fractions in [0, 1].
    expected_rates : ndarray of shape (2,)
        The rates under normality: the chance that an in-sample squared distance exceeds
        each threshold under the exact finite-n law of :func:`mahalanobis_expected_rates`
        (0.87 % rather than 1 % at n = 200, d = 4; it tends to 0.01 and 0.001).
    rate_ratios : ndarray of shape (2,)
        ``rates / expected_rates``.
    top_row_ids : ndarray of shape (k,)
        Indices in the original input of the rows with the largest distances, largest
        first (ties: smaller row id first).
    top_d2 : ndarray of shape (k,)
        Their squared distances.
    reason : str or None
        Why the distances could not be computed (then rates are NaN), else None.
    """

    n_rows: int
    n_dims: int
    quantiles: FloatArray
    thresholds: FloatArray
    n_above: IntArray
    rates: FloatArray
    expected_rates: FloatArray
    rate_ratios: FloatArray
    top_row_ids: IntArray
    top_d2: FloatArray
    reason: str | None = None


class MahalanobisAccumulator:
    """Mergeable second-pass counts of squared Mahalanobis distances.

    The squared distance uses the unbiased covariance (ddof=1, as R's ``cov``):
    ``d2_i = (x_i - m)' S_u^-1 (x_i - m) = |y_i|^2 (n - 1) / n``, where ``y`` is whitened
    by the population covariance. Under normality ``d2`` is close to chi2_d.

    Parameters
    ----------
    mean : array_like of shape (n_dims,)
        Full-data mean from pass 1.
    cov : array_like of shape (n_dims, n_dims)
        Full-data population covariance (ddof=0) from pass 1.
    n : int
        Number of rows the moments come from (for the ddof=1 rescaling).
    top_k : int, default=10
        Rows with the largest distances to keep.

    Notes
    -----
    One chunk is whitened once: :meth:`push` computes ``y = (x - m) @ W`` and ``|y|^2``
    with float64 BLAS products (float32 ones for float32 chunks where
    :class:`SingleWhitening` allows, the rows near a threshold or the top whitened again in
    float64) and, when given ``mardia``, hands the same arrays to
    :meth:`MardiaAccumulator.push_whitened` (or the norms to ``push_norms``). Both
    accumulators must share the whitening (``MardiaAccumulator.from_whitening(acc.whitening)``).
    """

    __slots__ = (
        "_edges",
        "_n",
        "_n_above",
        "_n_rows",
        "_thresholds",
        "_top_d2",
        "_top_ids",
        "_top_k",
        "_whitening",
    )

    def __init__(self, mean: npt.ArrayLike, cov: npt.ArrayLike, n: int, *, top_k: int = 10) -> None:
        self._init(Whitening.from_moments(mean, cov), n, top_k)

    def _init(
        self, whitening: Whitening, n: int, top_k: int, thresholds: FloatArray | None = None
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise InputError(f"`n` must be an integer of at least 2, got {n!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
            raise InputError(f"`top_k` must be a non-negative integer, got {top_k!r}")
        self._whitening = whitening
        self._n = int(n)
        self._top_k = int(top_k)
        self._n_rows = 0
        self._n_above = np.zeros(len(MAHALANOBIS_QUANTILES), dtype=np.int64)
        if thresholds is None:
            thresholds = chi2_thresholds(whitening.n_dims)
        self._thresholds = thresholds
        self._edges: list[tuple[np.float32, np.float32]] | None = None
        self._top_ids = np.zeros(0, dtype=np.int64)
        self._top_d2 = np.zeros(0, dtype=np.float64)

    @classmethod
    def from_whitening(
        cls,
        whitening: Whitening,
        n: int,
        *,
        top_k: int = 10,
        thresholds: FloatArray | None = None,
    ) -> MahalanobisAccumulator:
        """Return an empty accumulator that uses an existing :class:`Whitening`.

        `thresholds`, if given, are ``chi2_thresholds(whitening.n_dims)`` computed once
        for many accumulators (a worker process then needs no scipy).
        """
        acc = cls.__new__(cls)
        acc._init(whitening, n, top_k, thresholds)
        return acc

    @property
    def whitening(self) -> Whitening:
        """The whitening shared with other second-pass accumulators."""
        return self._whitening

    @property
    def n_rows(self) -> int:
        """Rows pushed so far."""
        return self._n_rows

    def push(
        self,
        chunk: npt.ArrayLike,
        row_ids: npt.ArrayLike,
        *,
        mardia: MardiaAccumulator | None = None,
        out: tuple[FloatArray, FloatArray] | None = None,
        out_single: NDArray[np.float32] | None = None,
    ) -> None:
        """Add a chunk of finite rows and their global row indices.

        Parameters
        ----------
        chunk : array_like of shape (n_rows, n_dims)
            float32 or float64 rows; whitened in float64.
        row_ids : array_like of int, shape (n_rows,)
            Indices of these rows in the original input.
        mardia : MardiaAccumulator, optional
            Also fed with the same whitened rows (it must share this whitening).
        out : pair of ndarray, optional
            Float64 scratch blocks for the whitening, of shapes (n_rows, n_dims + 1) or
            (n_rows, n_dims), and (n_rows, n_dims) (see :meth:`Whitening.apply`).
        out_single : ndarray of float32, optional
            A C-contiguous (n_rows, n_dims) float32 scratch block for the float32 path.

        Notes
        -----
        C-contiguous float32 chunks are whitened in float32 when the whitening allows it
        (``whitening.single``, see :class:`SingleWhitening` for the error bound) and Mardia's
        third-order sums are not wanted; the counts and top rows stay those of the float64
        whitening (the rows near a threshold are whitened again in float64).
        """
        ids = np.asarray(row_ids)
        shape = np.shape(chunk)
        if len(shape) != 2 or shape[1] != self._whitening.n_dims:
            raise InputError(
                f"`chunk` must have shape (n_rows, {self._whitening.n_dims}), got shape {shape}"
            )
        if ids.shape != (shape[0],) or not np.issubdtype(ids.dtype, np.integer):
            raise InputError(
                f"`row_ids` must be {shape[0]} integers (one per row), got "
                f"shape {ids.shape} of dtype {ids.dtype}"
            )
        if mardia is not None and not same_whitening(mardia.whitening, self._whitening):
            raise InputError("`mardia` must share this accumulator's whitening")
        if self._whitening.reason is not None:
            self._n_rows += shape[0]
            if mardia is not None:
                mardia.push(chunk)
            return
        single = self._whitening.single
        x = np.asarray(chunk)
        if (
            single is not None
            and x.dtype == np.float32
            and x.flags.c_contiguous
            and (mardia is None or not mardia.third_order)
        ):
            self._push_single(single, x, ids.astype(np.int64, copy=False), mardia, out_single)
            return
        y, r2 = self._whitening.apply(x, out)
        if mardia is not None:
            mardia.push_whitened(y, r2)
        self._push_squared(r2, ids.astype(np.int64, copy=False))

    def _push_single(
        self,
        single: SingleWhitening,
        x: NDArray[np.float32],
        ids: IntArray,
        mardia: MardiaAccumulator | None,
        out: NDArray[np.float32] | None,
    ) -> None:
        """Count and rank float32 rows whitened in float32, with float64 where it matters.

        The float32 squared norms ``s`` decide every row outside the uncertainty band of
        each threshold (:class:`SingleWhitening`); the rows inside a band, and every row
        that could enter the top k, are whitened again in float64, so that the counts and
        the top rows are those of the float64 whitening. Mardia's sums take ``s`` in
        float64 (the sum of ``s²`` accumulates in float64). A chunk whose float32 norms
        overflow is whitened in float64 throughout.
        """
        _, s = single.apply(x, out)
        if not math.isfinite(float(np.sum(s, dtype=np.float64))):
            y, r2 = self._whitening.apply(x)
            if mardia is not None:
                mardia.push_whitened(y, r2)
            self._push_squared(r2, ids)
            return
        if mardia is not None:
            mardia.push_norms(s.astype(np.float64))
        scale = (self._n - 1.0) / self._n
        self._n_rows += int(s.shape[0])
        if self._edges is None:  # per threshold: the float32 edges of its band, in |y|^2
            self._edges = [
                (single.below_threshold(float(t) / scale), single.above_threshold(float(t) / scale))
                for t in self._thresholds
            ]
        edges = self._edges
        redo = np.zeros(s.shape[0], dtype=bool)
        sure = np.zeros(self._n_above.shape[0], dtype=np.int64)
        for i, (lo, hi) in enumerate(edges):
            above = s > hi
            sure[i] = np.count_nonzero(above)
            redo |= ~above & ~(s < lo)
        k = self._top_k
        if k:
            # k rows (of the chunk, or of the top so far) whose float64 |y|^2 reach `cut`:
            # a row whose own stays below it cannot enter the top k
            cut = 0.0
            if s.shape[0] >= k:
                cut = single.at_least(float(np.partition(s, s.shape[0] - k)[s.shape[0] - k]))
            if self._top_d2.size == k:
                cut = max(cut, float(self._top_d2.min()) / scale)
            redo |= ~(s < single.below_threshold(cut * (1.0 - 64.0 * UNIT_ROUNDOFF_64)))
        rows = np.flatnonzero(redo)
        _, r2 = self._whitening.apply(x[rows])
        d2 = r2 * scale
        s_rows = s[rows]
        for i, (lo, hi) in enumerate(edges):
            band = ~(s_rows > hi) & ~(s_rows < lo)
            self._n_above[i] += sure[i] + np.count_nonzero(d2[band] > self._thresholds[i])
        if k:
            self._rank(d2, ids[rows])

    def _push_squared(self, r2: FloatArray, ids: IntArray) -> None:
        """Count and rank rows from their population-whitened squared norms."""
        d2 = r2 * ((self._n - 1.0) / self._n)
        self._n_rows += int(d2.shape[0])
        for i, t in enumerate(self._thresholds):  # faster than count_nonzero(axis=...)
            self._n_above[i] += np.count_nonzero(d2 > t)
        if self._top_k:
            self._rank(d2, ids)

    def _rank(self, d2: FloatArray, ids: IntArray) -> None:
        """Merge rows (their squared distances and ids) into the top k."""
        k = self._top_k
        if self._top_d2.size == k:  # only rows reaching the current k-th can enter
            keep = np.flatnonzero(d2 >= self._top_d2.min())
            d2, ids = d2[keep], ids[keep]
        if d2.shape[0] > k:
            kth = np.partition(d2, d2.shape[0] - k)[d2.shape[0] - k]
            keep = np.flatnonzero(d2 >= kth)  # every row tied with the k-th stays a candidate
            d2, ids = d2[keep], ids[keep]
        self._top_ids, self._top_d2 = top_rows(
            np.concatenate([self._top_ids, ids]), np.concatenate([self._top_d2, d2]), k
        )

    def merge(self, other: MahalanobisAccumulator) -> MahalanobisAccumulator:
        """Return a new accumulator holding the rows of both (top-k of the union)."""
        if not same_whitening(self._whitening, other._whitening) or self._n != other._n:
            raise InputError("Cannot merge Mahalanobis accumulators built from different moments")
        if self._top_k != other._top_k:
            raise InputError(
                f"Cannot merge Mahalanobis accumulators with `top_k` {self._top_k} and "
                f"{other._top_k}"
            )
        out = MahalanobisAccumulator.from_whitening(
            self._whitening, self._n, top_k=self._top_k, thresholds=self._thresholds
        )
        out._n_rows = self._n_rows + other._n_rows
        out._n_above = self._n_above + other._n_above
        out._top_ids, out._top_d2 = top_rows(
            np.concatenate([self._top_ids, other._top_ids]),
            np.concatenate([self._top_d2, other._top_d2]),
            self._top_k,
        )
        return out

    __add__ = merge

    def finish(self) -> MahalanobisAccumulator:
        """Return self: nothing waits (see :mod:`latentcheck.engine.protocol`)."""
        return self

    def state(self) -> dict[str, NDArray[np.generic]]:
        """Return the state as a dict of arrays (see :meth:`from_state`)."""
        return {
            "mean": self._whitening.mean.copy(),
            "cov": self._whitening.cov.copy(),
            "n": np.array(self._n, dtype=np.int64),
            "top_k": np.array(self._top_k, dtype=np.int64),
            "n_rows": np.array(self._n_rows, dtype=np.int64),
            "n_above": self._n_above.copy(),
            "top_ids": self._top_ids.copy(),
            "top_d2": self._top_d2.copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, NDArray[np.generic]]) -> MahalanobisAccumulator:
        """Rebuild an accumulator from :meth:`state`."""
        acc = cls(state["mean"], state["cov"], int(state["n"]), top_k=int(state["top_k"]))
        acc._n_rows = int(state["n_rows"])
        acc._n_above = np.array(state["n_above"], dtype=np.int64)
        acc._top_ids = np.array(state["top_ids"], dtype=np.int64)
        acc._top_d2 = np.array(state["top_d2"], dtype=np.float64)
        return acc

    def result(self) -> MahalanobisOutliers:
        """Return the exceedance rates and the top rows over the rows pushed."""
        d = self._whitening.n_dims
        quantiles = np.array(MAHALANOBIS_QUANTILES)
        expected = mahalanobis_expected_rates(self._n, d, self._thresholds)
        reason = self._whitening.reason
        if reason is None and self._n_rows == 0:
            reason = "No rows were pushed"
        if reason is not None:
            warnings.warn(reason, DegenerateDimensionWarning, stacklevel=2)
            nan = np.full(quantiles.shape, np.nan)
            return MahalanobisOutliers(
                n_rows=self._n_rows,
                n_dims=d,
                quantiles=quantiles,
                thresholds=chi2_upper_quantiles(d, _MAHALANOBIS_TAILS),
                n_above=np.zeros(quantiles.shape, dtype=np.int64),
                rates=nan,
                expected_rates=expected,
                rate_ratios=nan,
                top_row_ids=np.zeros(0, dtype=np.int64),
                top_d2=np.zeros(0),
                reason=reason,
            )
        rates = self._n_above / self._n_rows
        # in-sample distances are bounded by (n - 1)^2 / n: with few rows a threshold can
        # lie beyond it, where the expected rate is 0 (ratio NaN: no row can exceed it)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = rates / expected
        return MahalanobisOutliers(
            n_rows=self._n_rows,
            n_dims=d,
            quantiles=quantiles,
            thresholds=self._thresholds.copy(),
            n_above=self._n_above.copy(),
            rates=rates,
            expected_rates=expected,
            rate_ratios=ratios,
            top_row_ids=self._top_ids.copy(),
            top_d2=self._top_d2.copy(),
        )


def mahalanobis_expected_rates(n: int, d: int, thresholds: npt.ArrayLike) -> FloatArray:
    """Return P(d2 > t) for in-sample squared Mahalanobis distances of n Gaussian rows.

    Parameters
    ----------
    n : int
        Rows the mean and the unbiased covariance (ddof=1) are estimated from.
    d : int
        Dimensions.
    thresholds : array_like
        Squared-distance thresholds t.

    Returns
    -------
    ndarray
        Upper-tail probabilities, fractions in [0, 1] (NaN when n <= d + 1).

    Notes
    -----
    With the mean and the unbiased covariance estimated from the same n rows, each row's
    squared distance satisfies ``n d2 / (n - 1)^2 ~ Beta(d/2, (n - d - 1)/2)`` exactly under
    normality (Gnanadesikan & Kettenring 1972, after Wilks 1963) [1]_, not chi2_d; the
    distances are bounded by ``(n - 1)^2 / n``. As n grows the law tends to chi2_d.

    References
    ----------
    .. [1] Gnanadesikan, R., Kettenring, J. R. (1972). Robust estimates, residuals, and
       outlier detection with multiresponse data. Biometrics 28(1), 81-124.
       :doi:`10.2307/2528963`
    """
    from scipy.special import betainc

    t = np.asarray(thresholds, dtype=np.float64)
    b = (n - d - 1.0) / 2.0
    if not b > 0:
        return np.full(t.shape, np.nan)
    u = np.clip(t * n / (n - 1.0) ** 2, 0.0, 1.0)
    # upper tail of Beta(a, b) at u is the lower tail of Beta(b, a) at 1 - u
    return np.asarray(betainc(b, d / 2.0, 1.0 - u), dtype=np.float64)


def chi2_thresholds(d: int) -> FloatArray:
    """Return the squared-distance thresholds: the chi2_d quantiles MAHALANOBIS_QUANTILES."""
    return chi2_upper_quantiles(d, _MAHALANOBIS_TAILS)


def chi2_upper_quantiles(d: int, tails: tuple[float, ...]) -> FloatArray:
    """Return the chi2_d quantiles with the given upper-tail probabilities."""
    from scipy.special import chdtri

    return np.asarray(chdtri(d, np.asarray(tails)), dtype=np.float64)


def top_rows(ids: IntArray, d2: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
    """Return the k rows with the largest d2, ties broken by the smaller row id."""
    order = np.lexsort((ids, -d2))[:k]
    return ids[order], d2[order]
