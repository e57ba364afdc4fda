"""Mergeable streaming accumulators: moments, co-moments and non-finite counts, and the rest.

Every statistic that scales with the number of rows comes from these objects. This module
defines the moment accumulators and re-exports the others, which live beside the engine
(:mod:`latentcheck.engine.tails`: extremes and exceedances; :mod:`latentcheck.engine.sample`:
the seeded sample) with the kernels they share (:mod:`latentcheck.engine.kernels`). Each one
follows the contract of :class:`latentcheck.engine.protocol.Accumulator`: ``push(block,
row_ids)`` for a block of shape (n_rows, n_dims) and its global row ids (ignored where
they do not matter), ``merge(other)`` returning a new object (``+`` is an alias),
``finish()``, ``state()`` returning a flat dict of arrays, and ``from_state``. An empty
accumulator is the identity of ``merge``, so one data set, many shards and many threads
are the same computation.

Everything accumulates in float64 whatever the input dtype. Central moments are merged
pairwise (Pébay 2008), never formed from raw power sums; within a chunk, sums are taken
about a shift close to the chunk mean so that nothing cancels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .kernels import (
    Beyond,
    Scratch,
    TileCache,
    column_sums,
    exact_threshold,
    fold,
    sparse_flatnonzero,
)
from .sample import Reservoir, hash_rows, key_threshold
from .tails import Exceedance, Extremes

__all__ = [
    "Beyond",
    "Comoments",
    "Exceedance",
    "Extremes",
    "Moments",
    "NonFinite",
    "Reservoir",
    "Scratch",
    "TileCache",
    "column_sums",
    "exact_threshold",
    "fold",
    "hash_rows",
    "key_threshold",
    "sparse_flatnonzero",
]

F64 = NDArray[np.float64]
State = dict[str, NDArray[Any]]


# ---------------------------------------------------------------------------------------
# Moments
# ---------------------------------------------------------------------------------------


class Moments:
    """Count, mean and central moment sums M2, M3, M4 per dimension.

    ``M_p = Σ_i (x_i − mean)^p``. Merging follows Pébay (2008), eq. 3.1 (also Terriberry
    2007 for the fourth order), so that chunked and one-shot results agree to rounding.

    References
    ----------
    .. [1] P. Pébay, "Formulas for robust, one-pass parallel computation of covariances and
       arbitrary-order statistical moments", Sandia report SAND2008-6212, 2008.
       https://doi.org/10.2172/1028931
    """

    __slots__ = ("m2", "m3", "m4", "mean", "n")

    def __init__(self, n_dims: int) -> None:
        self.n = 0
        self.mean: F64 = np.zeros(n_dims)
        self.m2: F64 = np.zeros(n_dims)
        self.m3: F64 = np.zeros(n_dims)
        self.m4: F64 = np.zeros(n_dims)

    @property
    def n_dims(self) -> int:
        """Return the number of dimensions."""
        return int(self.mean.shape[0])

    def push(self, chunk: NDArray[Any], row_ids: NDArray[np.int64] | None = None) -> None:
        """Add the rows of `chunk`, shape (n_rows, n_dims) (`row_ids` are not needed)."""
        chunk = np.asarray(chunk)
        n = chunk.shape[0]
        if n == 0:
            return
        shift = column_sums(chunk).astype(np.float64) / n
        dev = np.subtract(chunk, shift, dtype=np.float64)
        sq = dev * dev
        sums = (
            column_sums(dev),
            column_sums(sq),
            np.einsum("ij,ij->j", sq, dev),
            np.einsum("ij,ij->j", sq, sq),
        )
        self.push_shifted(n, shift, *sums)

    def push_shifted(self, n: int, shift: F64, s1: F64, s2: F64, s3: F64, s4: F64) -> None:
        """Add a chunk given its power sums ``S_p = Σ (x − shift)^p`` about `shift`."""
        self.push_many(np.array([n], dtype=np.float64), *(a[None] for a in (shift, s1, s2, s3, s4)))

    def push_many(self, ns: F64, shifts: F64, s1: F64, s2: F64, s3: F64, s4: F64) -> None:
        """Add k chunks at once from their power sums about their shifts (rows of (k, d)).

        `ns` holds the k row counts (all positive). Each chunk's central sums come from
        its power sums by the binomial expansion about its mean ``shift + d`` (|d| is tiny
        when the shift is the chunk mean to rounding, so nothing cancels); the chunks then
        combine about their common mean ``m`` in one step: with ``δ_b = mean_b − m``,
        ``M2 = Σ M2_b + n_b δ_b²``, ``M3 = Σ M3_b + 3 δ_b M2_b + n_b δ_b³`` and ``M4 =
        Σ M4_b + 4 δ_b M3_b + 6 δ_b² M2_b + n_b δ_b⁴`` (Pébay 2008, eq. 2.1-2.3 summed over
        the chunks). The result agrees with chunk-by-chunk merging to rounding, at a few
        numpy calls per batch instead of some thirty per chunk; :meth:`push_shifted` is
        the batch of one.
        """
        if ns.size == 0:
            return
        n_b = ns[:, None]
        d = s1 / n_b
        d2 = d * d
        m2 = s2 - n_b * d2
        m3 = s3 - 3.0 * d * s2 + 2.0 * n_b * d2 * d
        m4 = s4 - 4.0 * d * s3 + 6.0 * d2 * s2 - 3.0 * n_b * d2 * d2
        means = shifts + d
        n = float(ns.sum())
        # the common mean about the first chunk's, so that no large values are summed
        mean = means[0] + (n_b * (means - means[0])).sum(axis=0) / n
        delta = means - mean
        nd2 = n_b * delta * delta
        self._merge_in(
            int(n),
            mean,
            (m2 + nd2).sum(axis=0),
            (m3 + delta * (3.0 * m2 + nd2)).sum(axis=0),
            (m4 + delta * (4.0 * m3 + delta * (6.0 * m2 + nd2))).sum(axis=0),
        )

    def _merge_in(self, nb: int, mean_b: F64, m2b: F64, m3b: F64, m4b: F64) -> None:
        """Merge the moments of another set of rows into self (Pébay 2008, eq. 3.1)."""
        na = self.n
        if nb == 0:
            return
        if na == 0:
            self.n = nb
            self.mean = np.array(mean_b, dtype=np.float64, copy=True)
            self.m2 = np.array(m2b, dtype=np.float64, copy=True)
            self.m3 = np.array(m3b, dtype=np.float64, copy=True)
            self.m4 = np.array(m4b, dtype=np.float64, copy=True)
            return
        n = na + nb
        delta = mean_b - self.mean
        d_n = delta / n
        d_n2 = d_n * d_n
        m2a, m3a, m4a = self.m2, self.m3, self.m4
        term = delta * d_n * na * nb
        self.m4 = (
            m4a
            + m4b
            + term * d_n2 * (na * na - na * nb + nb * nb)
            + 6.0 * d_n2 * (na * na * m2b + nb * nb * m2a)
            + 4.0 * d_n * (na * m3b - nb * m3a)
        )
        self.m3 = m3a + m3b + term * d_n * (na - nb) + 3.0 * d_n * (na * m2b - nb * m2a)
        self.m2 = m2a + m2b + term
        self.mean = self.mean + d_n * nb
        self.n = n

    def merge(self, other: Moments) -> Moments:
        """Return the moments of the union of the rows of self and `other`."""
        out = Moments.from_state(self.state())
        out._merge_in(other.n, other.mean, other.m2, other.m3, other.m4)
        return out

    __add__ = merge

    def finish(self) -> Moments:
        """Return self: nothing waits (see the Accumulator contract)."""
        return self

    def state(self) -> State:
        """Return the state as a dict of arrays."""
        return {
            "n": np.array(self.n, dtype=np.int64),
            "mean": self.mean.copy(),
            "m2": self.m2.copy(),
            "m3": self.m3.copy(),
            "m4": self.m4.copy(),
        }

    @classmethod
    def from_state(cls, state: State) -> Moments:
        """Rebuild an accumulator from :meth:`state`."""
        out = cls(int(np.asarray(state["mean"]).shape[0]))
        out.n = int(state["n"])
        out.mean = np.array(state["mean"], dtype=np.float64)
        out.m2 = np.array(state["m2"], dtype=np.float64)
        out.m3 = np.array(state["m3"], dtype=np.float64)
        out.m4 = np.array(state["m4"], dtype=np.float64)
        return out

    def var(self, ddof: int = 0) -> F64:
        """Return the variance with `ddof` (NaN where n <= ddof)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.m2 / (self.n - ddof) if self.n > ddof else np.full_like(self.m2, np.nan)

    def std(self, ddof: int = 0) -> F64:
        """Return the standard deviation with `ddof`."""
        return np.sqrt(self.var(ddof))

    def skewness(self) -> F64:
        """Return the biased sample skewness g1 = m3 / m2^1.5 (scipy.stats.skew, bias=True)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            m2 = self.m2 / self.n
            m3 = self.m3 / self.n
            out = m3 / m2**1.5
        return np.where(self.m2 > 0, out, np.nan)

    def excess_kurtosis(self) -> F64:
        """Return the biased excess kurtosis g2 = m4 / m2² − 3 (scipy.stats.kurtosis)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            m2 = self.m2 / self.n
            m4 = self.m4 / self.n
            out = m4 / (m2 * m2) - 3.0
        return np.where(self.m2 > 0, out, np.nan)


# ---------------------------------------------------------------------------------------
# Covariance
# ---------------------------------------------------------------------------------------


class Comoments:
    """Count, mean and co-moment matrix ``C = Σ_i (x_i − mean)(x_i − mean)ᵀ``.

    Each chunk's co-moments are taken about a shift near its own mean (a BLAS product of
    the centred block); chunks merge as ``C = C_a + C_b + n_a n_b / n · δ δᵀ`` (Chan, Golub &
    LeVeque 1979; Pébay 2008, eq. 3.3).
    """

    __slots__ = ("comoment", "mean", "n")

    def __init__(self, n_dims: int) -> None:
        self.n = 0
        self.mean: F64 = np.zeros(n_dims)
        self.comoment: F64 = np.zeros((n_dims, n_dims))

    def push(self, chunk: NDArray[Any], row_ids: NDArray[np.int64] | None = None) -> None:
        """Add the rows of `chunk`, shape (n_rows, n_dims) (`row_ids` are not needed)."""
        chunk = np.asarray(chunk)
        n = chunk.shape[0]
        if n == 0:
            return
        shift = column_sums(chunk).astype(np.float64) / n
        dev = np.subtract(chunk, shift, dtype=np.float64)
        self.push_shifted(n, shift, column_sums(dev), dev.T @ dev)

    def push_shifted(self, n: int, shift: F64, s1: F64, gram: F64) -> None:
        """Add a chunk given ``Σ (x − shift)`` and ``Σ (x − shift)(x − shift)ᵀ``."""
        self.push_many(np.array([n], dtype=np.float64), shift[None], s1[None], gram)

    def push_many(self, ns: F64, shifts: F64, s1: F64, gram: F64) -> None:
        """Add k chunks at once, from their sums about their shifts.

        `ns` holds the k row counts, `shifts` and `s1` (``Σ (x − shift)``) are rows of (k, d),
        and `gram` is the sum over the chunks of their ``Σ (x − shift)(x − shift)ᵀ``. About
        the chunks' common mean ``m``, with ``d_b = s1_b / n_b`` and ``δ_b = shift_b + d_b −
        m``: ``C = Σ_b gram_b − n_b d_b d_bᵀ + n_b δ_b δ_bᵀ``, two BLAS products for the
        whole batch (Chan, Golub & LeVeque 1979, summed over the chunks).
        """
        if ns.size == 0:
            return
        n_b = ns[:, None]
        d = s1 / n_b
        means = shifts + d
        n = float(ns.sum())
        mean = means[0] + (n_b * (means - means[0])).sum(axis=0) / n
        delta = means - mean
        self._merge_in(int(n), mean, gram - (n_b * d).T @ d + (n_b * delta).T @ delta)

    def _merge_in(self, nb: int, mean_b: F64, cb: F64) -> None:
        """Merge the co-moments of another set of rows into self."""
        na = self.n
        if nb == 0:
            return
        if na == 0:
            self.n = nb
            self.mean = np.array(mean_b, dtype=np.float64, copy=True)
            self.comoment = np.array(cb, dtype=np.float64, copy=True)
            return
        n = na + nb
        delta = mean_b - self.mean
        self.comoment = self.comoment + cb + np.outer(delta, delta) * (na * nb / n)
        self.mean = self.mean + delta * (nb / n)
        self.n = n

    def merge(self, other: Comoments) -> Comoments:
        """Return the co-moments of the union of the rows of self and `other`."""
        out = Comoments.from_state(self.state())
        out._merge_in(other.n, other.mean, other.comoment)
        return out

    __add__ = merge

    def finish(self) -> Comoments:
        """Return self: nothing waits (see the Accumulator contract)."""
        return self

    def state(self) -> State:
        """Return the state as a dict of arrays."""
        return {
            "n": np.array(self.n, dtype=np.int64),
            "mean": self.mean.copy(),
            "comoment": self.comoment.copy(),
        }

    @classmethod
    def from_state(cls, state: State) -> Comoments:
        """Rebuild an accumulator from :meth:`state`."""
        out = cls(int(np.asarray(state["mean"]).shape[0]))
        out.n = int(state["n"])
        out.mean = np.array(state["mean"], dtype=np.float64)
        out.comoment = np.array(state["comoment"], dtype=np.float64)
        return out

    def cov(self, ddof: int = 0) -> F64:
        """Return the covariance matrix with `ddof` (symmetrised)."""
        c = self.comoment / (self.n - ddof)
        cov: F64 = 0.5 * (c + c.T)
        return cov


class NonFinite:
    """Counts of non-finite values per dimension and of rows holding any."""

    __slots__ = ("first_dim", "first_row", "per_dim", "rows")

    def __init__(self, n_dims: int) -> None:
        self.per_dim = np.zeros(n_dims, dtype=np.int64)
        self.rows = 0
        self.first_row = -1
        self.first_dim = -1

    def push(self, chunk: NDArray[Any], row_ids: NDArray[np.int64]) -> None:
        """Count the non-finite values of `chunk`, whose global row ids are `row_ids`."""
        self.push_mask(np.isfinite(chunk), row_ids)

    def push_mask(self, finite: NDArray[np.bool_], row_ids: NDArray[np.int64]) -> None:
        """Record a block's elementwise finiteness mask (False = NaN or ±inf)."""
        bad = ~finite
        self.per_dim += bad.sum(axis=0)
        bad_rows = np.flatnonzero(bad.any(axis=1))
        if bad_rows.size:
            self.rows += int(bad_rows.size)
            first = int(row_ids[bad_rows[0]])
            if self.first_row < 0 or first < self.first_row:
                self.first_row = first
                self.first_dim = int(np.flatnonzero(bad[bad_rows[0]])[0])

    def merge(self, other: NonFinite) -> NonFinite:
        """Return the counts of the union."""
        out = NonFinite(self.per_dim.shape[0])
        out.per_dim = self.per_dim + other.per_dim
        out.rows = self.rows + other.rows
        firsts = [
            (f, k)
            for f, k in ((self.first_row, self.first_dim), (other.first_row, other.first_dim))
            if f >= 0
        ]
        out.first_row, out.first_dim = min(firsts) if firsts else (-1, -1)
        return out

    __add__ = merge

    def finish(self) -> NonFinite:
        """Return self: nothing waits (see the Accumulator contract)."""
        return self

    def state(self) -> State:
        """Return the state as a dict of arrays."""
        return {
            "per_dim": self.per_dim.copy(),
            "rows": np.array(self.rows),
            "first_row": np.array(self.first_row),
            "first_dim": np.array(self.first_dim),
        }

    @classmethod
    def from_state(cls, state: State) -> NonFinite:
        """Rebuild an accumulator from :meth:`state`."""
        out = cls(int(np.asarray(state["per_dim"]).shape[0]))
        out.per_dim = np.array(state["per_dim"], dtype=np.int64)
        out.rows = int(state["rows"])
        out.first_row = int(state["first_row"])
        out.first_dim = int(state["first_dim"])
        return out
