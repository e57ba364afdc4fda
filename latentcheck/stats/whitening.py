"""Whitening by full-data moments, and when a covariance is too degenerate to whiten.

:class:`Whitening` maps rows to coordinates with identity covariance, ``y = (x - mean) @
matrix``, so that ``|y|^2`` is the squared Mahalanobis distance. One instance, built from the
moments of the first pass, is shared by the second-pass accumulators
(:class:`~latentcheck.stats.mardia.MardiaAccumulator` and
:class:`~latentcheck.stats.outliers.MahalanobisAccumulator`), so that each chunk is whitened
once. Constant columns and a singular covariance give a reason instead of a matrix; the joint
tests report that reason in a skipped result.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from latentcheck.accumulate import TileCache
from latentcheck.errors import InputError

__all__ = ["Whitening", "row_norms_squared"]

# A column counts as constant when its variance is below (1e-12 |mean|)^2 (or zero), and
# the covariance as singular when the reciprocal condition number of the correlation
# matrix is below 1e-10: whitening would then amplify rounding errors beyond 1e-6.
_CONSTANT_RTOL = 1.0e-12
_SINGULAR_RCOND = 1.0e-10

FloatArray = NDArray[np.float64]

#: Columns per block of the whitening product (see Whitening.apply).
_BLOCK_COLUMNS = 32
#: Largest product (rows x inner x columns multiply-adds) that OpenBLAS hands to its
#: small-matrix kernels, which skip packing the operands (``GEMM_SMALL_MATRIX_PERMIT``,
#: 100^3 on AVX-512 machines); Whitening.apply cuts its products to fit.
_SMALL_PRODUCT = 1_000_000
#: Fewest rows per product: below this, the rows go in one product.
_MIN_ROWS = 64


def small_product_rows(inner: int, cols: int) -> int:
    """Return rows per product of (rows, inner) @ (inner, cols) for the small-matrix kernels.

    0 when fewer than _MIN_ROWS rows would fit: such thin products are better made whole.
    """
    rows = _SMALL_PRODUCT // max(1, inner * cols)
    return rows if rows >= _MIN_ROWS else 0


@dataclass(frozen=True, slots=True, eq=False)
class Whitening:
    """Affine map to whitened coordinates, shared by the second-pass accumulators.

    ``y = (x - mean) @ matrix`` has identity population covariance, and ``|y|^2`` is the
    squared Mahalanobis distance under the population covariance (ddof=0).

    Attributes
    ----------
    mean : ndarray of shape (n_dims,)
        Full-data mean.
    cov : ndarray of shape (n_dims, n_dims)
        Full-data population covariance (ddof=0).
    matrix : ndarray of shape (n_dims, n_dims)
        ``inv(L).T`` for the Cholesky factor ``cov = L @ L.T`` (upper triangular); zeros
        when the covariance is degenerate.
    reason : str or None
        Why the data cannot be whitened (constant columns, singular covariance), else None.
    """

    mean: FloatArray
    cov: FloatArray
    matrix: FloatArray
    reason: str | None
    _blocks: tuple[tuple[int, int, FloatArray, int], ...] = field(init=False, repr=False)
    #: the mean tiled to chunks, for :meth:`apply` (a cache: pickles empty)
    _tiles: TileCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # column blocks [a, b) of the triangular matrix, their nonzero rows [0, b), and the
        # rows of data per product, for :meth:`apply`: blocks 32 columns wide (the last
        # takes a remainder under 16), each product within _SMALL_PRODUCT multiply-adds
        d = self.matrix.shape[0]
        edges = [*range(0, d, _BLOCK_COLUMNS), d]
        if len(edges) > 2 and d - edges[-2] < _BLOCK_COLUMNS // 2:
            del edges[-2]
        blocks = []
        for a, b in itertools.pairwise(edges):
            rows = small_product_rows(b, b - a)
            blocks.append((a, b, np.ascontiguousarray(self.matrix[:b, a:b]), rows))
        object.__setattr__(self, "_blocks", tuple(blocks))
        object.__setattr__(self, "_tiles", TileCache())

    @classmethod
    def from_moments(cls, mean: npt.ArrayLike, cov: npt.ArrayLike) -> Whitening:
        """Build the whitening from a mean and a population covariance.

        Parameters
        ----------
        mean : array_like of shape (n_dims,)
            Full-data mean.
        cov : array_like of shape (n_dims, n_dims)
            Full-data population covariance (ddof=0).

        Returns
        -------
        Whitening
            With ``reason`` set (and a zero matrix) when the covariance is degenerate.

        Raises
        ------
        InputError
            If the shapes do not match or a value is not finite.
        """
        mean_arr, cov_arr = _check_moments(mean, cov)
        reason = _degeneracy_reason(mean_arr, cov_arr)
        matrix = np.zeros_like(cov_arr)
        if reason is None:
            chol = np.linalg.cholesky(cov_arr)
            # the inverse of a triangular matrix is triangular; the LU inverse leaves
            # rounding noise (1e-16) below the diagonal, which `apply` relies on being 0
            matrix = np.ascontiguousarray(np.triu(np.linalg.inv(chol).T))
        return cls(mean=mean_arr, cov=cov_arr, matrix=matrix, reason=reason)

    @property
    def n_dims(self) -> int:
        """Number of dimensions."""
        return int(self.mean.shape[0])

    def apply(
        self, chunk: npt.ArrayLike, out: tuple[FloatArray, FloatArray] | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Return the whitened rows ``y`` (n_rows, n_dims) and their ``|y|^2`` (n_rows,).

        The chunk (float32 or float64) is promoted to float64 while it is centred, so
        there is one float64 copy and one BLAS product per chunk. `out`, if given, holds
        two C-contiguous float64 scratch blocks of the chunk's shape: the centred rows
        and ``y`` (returned) are written there instead of into new arrays.
        """
        x = np.asarray(chunk)
        if x.ndim != 2 or x.shape[1] != self.n_dims:
            raise InputError(
                f"`chunk` must have shape (n_rows, {self.n_dims}), got shape {x.shape}"
            )
        if out is None:
            centred = np.subtract(x, self.mean, dtype=np.float64)
            y = np.empty_like(centred)
        else:
            # into the scratch block: the mean tiled to the chunk, since a broadcast row
            # gives numpy inner loops of d elements (0.12 ms per 4096 x 64 float32 chunk;
            # 0.085 ms as a float64 copy, exact, and a subtraction of the tile)
            centred, y = out
            (tile,) = self._tiles.get(x.shape[0], self.mean)
            if x.dtype == np.float64:
                np.subtract(x, tile, out=centred)
            else:
                np.copyto(centred, x)
                np.subtract(centred, tile, out=centred)
        # the matrix is upper triangular, so columns [a, b) of y need only the first b
        # columns of the centred rows (25% fewer multiply-adds at d = 64, 44% at 256).
        # Products of at most _SMALL_PRODUCT multiply-adds run in OpenBLAS's small-matrix
        # kernels: at d = 64, 0.23 ms per 4096 rows instead of 0.40 ms in whole-chunk
        # products (2-8% slower where the BLAS has no such kernels)
        n = x.shape[0]
        for a, b, block, rows in self._blocks:
            if rows == 0 or rows >= n:
                np.matmul(centred[:, :b], block, out=y[:, a:b])
                continue
            for s in range(0, n, rows):
                np.matmul(centred[s : s + rows, :b], block, out=y[s : s + rows, a:b])
        return y, row_norms_squared(y)


def row_norms_squared(y: FloatArray) -> FloatArray:
    """Return ``Σ_j y_ij²`` for each row of a float64 block.

    numpy's ``vecdot`` (2.0 and later) takes one BLAS dot per row: 0.042 ms per 4096 x 64
    block against 0.062 ms for ``einsum``, equal to rounding (each row on its own, so
    the result does not depend on how rows are chunked).
    """
    vecdot = getattr(np, "vecdot", None)
    if vecdot is None:  # pragma: no cover - numpy < 2.0
        out: FloatArray = np.einsum("ij,ij->i", y, y)
        return out
    out = vecdot(y, y)
    return out


def _check_moments(mean: npt.ArrayLike, cov: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return (mean, cov) as float64 arrays of matching shapes or raise InputError."""
    mean_arr = np.asarray(mean, dtype=np.float64)
    cov_arr = np.asarray(cov, dtype=np.float64)
    if mean_arr.ndim != 1 or cov_arr.shape != (mean_arr.shape[0], mean_arr.shape[0]):
        raise InputError(
            f"`mean` must have shape (n_dims,) and `cov` (n_dims, n_dims), got "
            f"{mean_arr.shape} and {cov_arr.shape}"
        )
    if not (np.all(np.isfinite(mean_arr)) and np.all(np.isfinite(cov_arr))):
        raise InputError("`mean` and `cov` must be finite")
    return mean_arr, cov_arr


def _constant_columns(mean: FloatArray, var: FloatArray) -> list[int]:
    """Return the indices of columns whose variance is zero relative to their mean."""
    return [int(j) for j in np.flatnonzero(var <= (_CONSTANT_RTOL * np.abs(mean)) ** 2)]


def _degeneracy_reason(mean: FloatArray, cov: FloatArray) -> str | None:
    """Return why a covariance cannot be inverted reliably, or None."""
    var = np.diag(cov).copy()
    constant = _constant_columns(mean, var)
    if constant:
        return f"Column(s) {constant} are constant; joint tests need a full-rank covariance"
    inv_sd = 1.0 / np.sqrt(var)
    eig = np.linalg.eigvalsh(cov * inv_sd[:, None] * inv_sd[None, :])
    rcond = float(eig[0] / eig[-1])
    if not rcond > _SINGULAR_RCOND:
        return (
            f"Covariance is singular (reciprocal condition number of the correlation matrix "
            f"{rcond:.3g} < {_SINGULAR_RCOND:g}); some columns are linear combinations"
        )
    return None


def _same_whitening(a: Whitening, b: Whitening) -> bool:
    """Return whether two whitenings come from the same moments."""
    return a is b or (np.array_equal(a.mean, b.mean) and np.array_equal(a.cov, b.cov))
