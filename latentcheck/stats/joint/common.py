"""Shared plumbing of the joint tests: sample checks, skipped results, blocked pair sums.

``check_sample`` validates a sample and ``check_block_size`` a block size; ``rows_reason``
and ``skip`` turn too few rows or a degenerate covariance into a warning and a skipped
:class:`~latentcheck.model.report.TestResult`; ``prepare`` whitens a sample by its own
moments (or skips); ``symmetric_pair_sum`` sums a function of ``left_j' right_k`` over all
pairs of rows in row blocks, in O(block_size * n_samples) memory, never building the
n × n matrix.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from latentcheck.errors import DegenerateDimensionWarning, InputError, SmallSampleWarning
from latentcheck.model.base import TestResult
from latentcheck.stats.joint.whitening import Whitening

FloatArray = NDArray[np.float64]


def check_sample(x: npt.ArrayLike) -> FloatArray:
    """Return x as a finite 2-D float64 array or raise InputError."""
    xs = np.asarray(x, dtype=np.float64)
    if xs.ndim != 2:
        raise InputError(f"`x` must be a 2-D array (n_samples, n_dims), got shape {xs.shape}")
    if xs.shape[1] == 0:
        raise InputError("`x` must have at least one column, got 0")
    bad = int(np.count_nonzero(~np.isfinite(xs)))
    if bad:
        raise InputError(f"`x` holds {bad} non-finite values; drop those rows first")
    return xs


def check_block_size(block_size: int) -> int:
    """Return block_size as a positive int or raise InputError."""
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
        raise InputError(f"`block_size` must be an integer, got {block_size!r}")
    if block_size < 1:
        raise InputError(f"`block_size` must be at least 1, got {block_size}")
    return int(block_size)


def rows_reason(n: int, d: int, test: str, min_rows: int = 3) -> str | None:
    """Return why n rows are too few for a joint test in d dimensions, or None."""
    if n < min_rows or n <= d:
        return f"Too few rows for {test}: need n > d and n >= {min_rows}, got n={n}, d={d}"
    return None


def skip(reason: str, small: bool = False, *, stacklevel: int = 3) -> TestResult:
    """Warn with the reason and return a skipped TestResult.

    The default stacklevel 3 points at the caller of the public function that calls
    ``skip`` directly; one more level per private helper in between.
    """
    category = SmallSampleWarning if small else DegenerateDimensionWarning
    warnings.warn(reason, category, stacklevel=stacklevel)
    return TestResult.skipped(reason)


def prepare(
    xs: FloatArray, test: str, *, min_rows: int, ddof: int = 0
) -> tuple[FloatArray, FloatArray] | TestResult:
    """Return the whitened sample and its squared norms, or a skipped result."""
    n, d = xs.shape
    reason = rows_reason(n, d, test, min_rows)
    if reason is not None:
        return skip(reason, small=True, stacklevel=4)
    mean = xs.mean(axis=0)
    xc = xs - mean
    whitening = Whitening.from_moments(mean, xc.T @ xc / (n - ddof))
    if whitening.reason is not None:
        return skip(whitening.reason, stacklevel=4)
    y = xc @ whitening.matrix
    return y, np.einsum("ij,ij->i", y, y)


def normal_sf(z: float) -> float:
    """Return the upper tail of the standard normal at z."""
    from scipy.special import ndtr

    return float(ndtr(-z))


def symmetric_pair_sum(
    left: FloatArray,
    right: FloatArray,
    transform: Callable[[FloatArray], FloatArray],
    *,
    block_size: int = 512,
    diagonal: float | None = None,
) -> float:
    """Return sum_{j,k} transform(left_j' right_k) over all ordered pairs of rows.

    ``left_j' right_k`` must be symmetric in (j, k). Row block [a, b) meets columns
    [a, n): its square part counts once, the rest twice, so each unordered pair is
    computed once and memory is O(block_size * n). ``diagonal`` overrides the j == k
    terms (their exact value, free of the rounding of the product).
    """
    n = left.shape[0]
    total = 0.0
    for a in range(0, n, block_size):
        b = min(a + block_size, n)
        g = transform(left[a:b] @ right[a:].T)
        square = g[:, : b - a]
        if diagonal is not None:
            np.fill_diagonal(square, diagonal)
        total += float(np.sum(square)) + 2.0 * float(np.sum(g[:, b - a :]))
    return total
