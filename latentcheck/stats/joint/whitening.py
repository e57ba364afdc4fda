"""Whitening by full-data moments, and when a covariance is too degenerate to whiten.

:class:`Whitening` maps rows to coordinates with identity covariance, ``y = (x - mean) @
matrix``, so that ``|y|^2`` is the squared Mahalanobis distance. One instance, built from the
moments of the first pass, is shared by the second-pass accumulators
(:class:`~latentcheck.stats.joint.mardia.MardiaAccumulator` and
:class:`~latentcheck.stats.joint.mahalanobis.MahalanobisAccumulator`), so that each chunk is
whitened once. Constant columns and a singular covariance give a reason instead of a matrix;
the joint tests report that reason in a skipped result.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from latentcheck.engine.kernels import TileCache, exact_threshold
from latentcheck.errors import InputError

__all__ = [
    "UNIT_ROUNDOFF_64",
    "SingleWhitening",
    "Whitening",
    "check_moments",
    "constant_columns",
    "degeneracy_reason",
    "perron_bound",
    "row_norms_squared",
    "same_whitening",
]

# A column counts as constant when its variance is below (1e-12 |mean|)^2 (or zero), and
# the covariance as singular when the reciprocal condition number of the correlation
# matrix is below 1e-10: whitening would then amplify rounding errors beyond 1e-6.
_CONSTANT_RTOL = 1.0e-12
_SINGULAR_RCOND = 1.0e-10

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
_F = TypeVar("_F", np.float32, np.float64)

#: Unit roundoff of float32 and float64 (round to nearest).
_U32: float = 2.0**-24
UNIT_ROUNDOFF_64: float = 2.0**-53
_U64 = UNIT_ROUNDOFF_64
#: The float32 path is used only while its uncertainty band around a squared-norm
#: threshold T stays within T * (1 +- _MAX_BAND): wider (a covariance far from the identity,
#: or a mean many standard deviations out), too many rows would need float64 again.
_MAX_BAND = 1.0e-3

#: Columns per block of the whitening product (see Whitening.apply).
_BLOCK_COLUMNS = 32
#: Largest product (rows x inner x columns multiply-adds) that OpenBLAS hands to its
#: small-matrix kernels, which skip packing the operands (``GEMM_SMALL_MATRIX_PERMIT``,
#: 100^3 on AVX-512 machines); Whitening.apply cuts its products to fit.
_SMALL_PRODUCT = 1_000_000
#: Fewest rows per product: below this, the rows go in one product.
_MIN_ROWS = 64
#: Per column block of a product: its output columns [a, b), the input columns it reads,
#: its part of the matrix, and the rows per product (see _product_blocks).
_Blocks = tuple[tuple[int, int, int, NDArray[Any], int], ...]


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
    _blocks: _Blocks = field(init=False, repr=False)
    #: the same for rows [1, x] (see :meth:`apply`), or None when the mean is far out
    _augmented: _Blocks | None = field(init=False, repr=False)
    #: the mean tiled to chunks, for :meth:`apply` (a cache: pickles empty)
    _tiles: TileCache = field(init=False, repr=False)
    #: the float32 whitening with its error bound, or None where it is not safe
    single: SingleWhitening | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_blocks", _product_blocks(self.matrix, 0))
        object.__setattr__(self, "single", SingleWhitening.build(self))
        augmented = None
        if self.reason is None and _mean_within_std(self.mean, self.cov):
            # [1, x] @ [-mean @ matrix; matrix] = (x - mean) @ matrix
            shifted = np.vstack([-(self.mean @ self.matrix)[None, :], self.matrix])
            augmented = _product_blocks(shifted, 1)
        object.__setattr__(self, "_augmented", augmented)
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
        mean_arr, cov_arr = check_moments(mean, cov)
        reason = degeneracy_reason(mean_arr, cov_arr)
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

        The chunk (float32 or float64) is copied to float64 once and whitened by BLAS
        products. `out`, if given, holds two C-contiguous float64 scratch blocks: the
        first of shape (n_rows, n_dims + 1) or (n_rows, n_dims) for the rows as the
        products read them, the second of the chunk's shape for ``y`` (returned).

        When every column's mean lies within one standard deviation of zero, and the
        first block has room, the rows go in as ``[1, x]`` against ``[-mean @ matrix;
        matrix]``: the centring happens inside the products (one pass over the chunk
        less), with rounding errors at most a few times those of centring first, as
        ``|x| <= |x - mean| + std`` for typical rows. Further out, the rows are centred
        first, so that nothing cancels.
        """
        x = np.asarray(chunk)
        d = self.n_dims
        if x.ndim != 2 or x.shape[1] != d:
            raise InputError(f"`chunk` must have shape (n_rows, {d}), got shape {x.shape}")
        n = x.shape[0]
        if out is None:
            work = np.empty((n, d + 1 if self._augmented is not None else d))
            y = np.empty((n, d))
        else:
            work, y = out
        blocks = self._blocks
        if self._augmented is not None and work.shape[1] == d + 1:
            blocks = self._augmented
            work[:, 0] = 1.0
            np.copyto(work[:, 1:], x)
        else:
            # the mean tiled to the chunk, since a broadcast row gives numpy inner loops
            # of d elements (slower than a float64 copy, exact, and a subtraction of the
            # tile)
            work = work[:, :d]
            (tile,) = self._tiles.get(n, self.mean)
            if x.dtype == np.float64:
                np.subtract(x, tile, out=work)
            else:
                np.copyto(work, x)
                np.subtract(work, tile, out=work)
        # the matrix is upper triangular, so columns [a, b) of y need only the first b
        # columns of the rows (25% fewer multiply-adds at d = 64, 44% at 256). Products
        # of at most _SMALL_PRODUCT multiply-adds run in OpenBLAS's small-matrix kernels,
        # faster than whole-chunk products at d = 64 (a little slower where the BLAS has
        # no such kernels)
        for a, b, inner, block, rows in blocks:
            if rows == 0 or rows >= n:
                np.matmul(work[:, :inner], block, out=y[:, a:b])
                continue
            for s in range(0, n, rows):
                np.matmul(work[s : s + rows, :inner], block, out=y[s : s + rows, a:b])
        return y, row_norms_squared(y)


@dataclass(frozen=True, slots=True, eq=False)
class SingleWhitening:
    """The whitening in float32 (half the work of float64), with a bound on its error.

    For float32 rows ``x`` it computes ``ŷ = fl32(x @ W32) - fl32(mean @ W)`` in float32
    (``W32`` the matrix rounded to float32, products cut as in :meth:`Whitening.apply`) and
    ``s = fl32(Σ_j ŷ_j²)``. Against the exact ``y = (x - mean) @ W``, the standard bounds of
    floating-point inner products (Higham 2002, *Accuracy and Stability of Numerical
    Algorithms*, 2nd ed., §3.1 and §3.5, ``γ_k = k u / (1 - k u)``, u = 2^-24) give per
    element ``|ŷ - y| <= g (|x - mean| + |mean|) |W| + u |y|``, with ``g = (1 + u)(γ_d (1 + u)
    + 2u)``, hence per row

        ``‖ŷ - y‖ <= alpha ‖y‖ + beta``, ``alpha = g ‖|W|‖ ‖L‖ + u``, ``beta = g ‖|W|‖ ‖mean‖``,

    since ``x - mean = y Lᵀ`` (``cov = L Lᵀ``); ``‖|W|‖² = ρ(|W|ᵀ|W|)`` and ``‖L‖² =
    λmax(cov) <= ρ(|cov|)`` are bounded from above by :func:`perron_bound`. The squared
    norm adds ``|s - ‖ŷ‖²| <= γ_d ‖ŷ‖²``. So a float32 squared norm tells on which side of a
    threshold the float64 one lies, except inside a narrow band: :meth:`surely_above` and
    :meth:`surely_below` give its edges, which also cover the float64 path's own error
    (the same bounds with u = 2^-53 and ``d + 1`` terms, and a margin of ``64 u`` for the
    scalings), so that a row outside the band is counted exactly as the float64 whitening
    counts it; rows inside are whitened again in float64. The whitening keeps float64
    (``single`` is None) when the band at ``|y|² = d`` is wider than ``1e-3``: a mean many
    standard deviations out or a badly conditioned covariance.

    At d = 64 the band is about ``1.2e-5`` relative for an identity covariance and ``2.6e-4``
    for a condition number of 300 (a few hundred rows of 4e6 whitened again); the observed
    errors are far smaller (``2.5e-7``).
    """

    blocks: _Blocks
    shift: Float32Array
    alpha: float
    beta: float
    gamma: float
    #: the float64 path's own error terms (see the class docstring)
    alpha64: float
    beta64: float
    gamma64: float

    @classmethod
    def build(cls, w: Whitening) -> SingleWhitening | None:
        """Return the float32 whitening of `w`, or None where its band would be too wide."""
        if w.reason is not None:
            return None
        d = w.n_dims
        absw = np.abs(w.matrix)
        w_norm = math.sqrt(perron_bound(absw, gram=True))
        l_norm = math.sqrt(perron_bound(np.abs(w.cov)))
        m_norm = float(np.linalg.norm(w.mean))
        a32, b32 = _error_terms(_U32, d, w_norm, l_norm, m_norm)
        a64, b64 = _error_terms(_U64, d + 1, w_norm, l_norm, m_norm)
        bound = cls(
            blocks=(),
            shift=np.zeros(0, dtype=np.float32),
            alpha=a32,
            beta=b32,
            gamma=_gamma(_U32, d),
            alpha64=a64,
            beta64=b64,
            gamma64=_gamma(_U64, d),
        )
        t = float(d)
        if not bound.surely_above(t) - bound.surely_below(t) <= 2.0 * _MAX_BAND * t:
            return None
        return dataclasses.replace(
            bound,
            blocks=_product_blocks(w.matrix.astype(np.float32), 0),
            shift=(w.mean @ w.matrix).astype(np.float32),
        )

    def apply(
        self, chunk: Float32Array, out: Float32Array | None = None
    ) -> tuple[Float32Array, Float32Array]:
        """Return ``ŷ`` (n_rows, n_dims) and ``s`` (n_rows,) in float32 for float32 rows.

        `out`, if given, is a C-contiguous float32 block of the chunk's shape for ``ŷ``.
        """
        n, d = chunk.shape
        y = np.empty((n, d), dtype=np.float32) if out is None else out
        # rows far out overflow float32 (the caller then whitens them in float64)
        with np.errstate(over="ignore", invalid="ignore"):
            for a, b, inner, block, rows in self.blocks:
                if rows == 0 or rows >= n:
                    np.matmul(chunk[:, :inner], block, out=y[:, a:b])
                    continue
                for s in range(0, n, rows):
                    np.matmul(chunk[s : s + rows, :inner], block, out=y[s : s + rows, a:b])
            np.subtract(y, self.shift, out=y)
            return y, row_norms_squared(y)

    def surely_above(self, t: float) -> float:
        """Return S: ``s > S`` implies that the float64 path's ``|y|²`` exceeds `t`."""
        root = (math.sqrt(t * (1.0 + 64.0 * _U64) / (1.0 - self.gamma64)) + self.beta64) / (
            1.0 - self.alpha64
        )
        return (1.0 + self.gamma) * (root * (1.0 + self.alpha) + self.beta) ** 2

    def surely_below(self, t: float) -> float:
        """Return S: ``s < S`` implies that the float64 path's ``|y|²`` is below `t`."""
        root = (math.sqrt(t * (1.0 - 64.0 * _U64) / (1.0 + self.gamma64)) - self.beta64) / (
            1.0 + self.alpha64
        )
        return (1.0 - self.gamma) * max(0.0, root * (1.0 - self.alpha) - self.beta) ** 2

    def at_least(self, s: float) -> float:
        """Return a value that the float64 path's ``|y|²`` reaches for any row whose s >= `s`."""
        root = (math.sqrt(s / (1.0 + self.gamma)) - self.beta) / (1.0 + self.alpha)
        root64 = max(0.0, root * (1.0 - self.alpha64) - self.beta64)
        return root64**2 * (1.0 - self.gamma64) * (1.0 - 64.0 * _U64)

    def above_threshold(self, t: float) -> np.float32:
        """Return the float32 ``S32`` with ``s > S32`` ⇔ ``s > surely_above(t)``."""
        return _float32_edge(self.surely_above(t), upper=True)

    def below_threshold(self, t: float) -> np.float32:
        """Return the float32 ``S32`` with ``s < S32`` ⇔ ``s < surely_below(t)``."""
        return _float32_edge(self.surely_below(t), upper=False)


def _float32_edge(value: float, *, upper: bool) -> np.float32:
    """Return the float32 threshold equivalent to `value` (see exact_threshold)."""
    edge = exact_threshold(np.float64(value), _F32, upper=upper)
    return cast(np.float32, edge[()])


_F32 = np.dtype(np.float32)


def perron_bound(b: FloatArray, iterations: int = 30, *, gram: bool = False) -> float:
    """Return an upper bound of the spectral radius of a nonnegative square matrix B.

    B is `b`, or ``bᵀ b`` when `gram` (never formed: two matrix-vector products a step).
    By the Collatz–Wielandt formula, ``ρ(B) <= max_i (B v)_i / v_i`` for any positive
    vector v (Horn & Johnson, *Matrix Analysis*, 2nd ed., Thm 8.1.26); a few power
    iterations from the ones vector make the bound tight, at O(d²) per iteration (an SVD
    would cost O(d³)). A factor ``1 + 4 d u`` covers the
    rounding of the products; without a positive diagonal the bound falls back to the
    largest row sum (also an upper bound).
    """
    d = int(b.shape[0])

    def times(v: FloatArray) -> FloatArray:
        out: FloatArray = b.T @ (b @ v) if gram else b @ v
        return out

    rows = float(times(np.ones(d)).max())  # B's largest row sum
    diag = np.einsum("ij,ij->j", b, b) if gram else np.diag(b)
    if not np.all(diag > 0):
        return rows * (1.0 + 4.0 * d * _U64)
    v = np.ones(d)
    for _ in range(iterations):
        v = times(v)
        v /= v.max()
    bound = min(rows, float((times(v) / v).max()))
    return bound * (1.0 + 4.0 * d * _U64)


def _gamma(u: float, k: int) -> float:
    """Return Higham's ``γ_k = k u / (1 - k u)``."""
    return k * u / (1.0 - k * u)


def _error_terms(
    u: float, k: int, w_norm: float, l_norm: float, m_norm: float
) -> tuple[float, float]:
    """Return (alpha, beta) of ``‖ŷ - y‖ <= alpha ‖y‖ + beta`` (see SingleWhitening)."""
    g = (1.0 + u) * (_gamma(u, k) * (1.0 + u) + 2.0 * u)
    return g * w_norm * l_norm + u, g * w_norm * m_norm


def _product_blocks(matrix: NDArray[Any], lead: int) -> _Blocks:
    """Return the column blocks of an upper triangular product, for Whitening.apply.

    For each block ``[a, b)`` of output columns: a, b, ``lead + b`` (the input columns it
    reads, `lead` extra ones first), the block of `matrix` (rows ``[0, lead + b)``), and
    the rows of data per product. Blocks are 32 columns wide (the last takes a remainder
    under 16), each product within _SMALL_PRODUCT multiply-adds.
    """
    d = matrix.shape[1]
    edges = [*range(0, d, _BLOCK_COLUMNS), d]
    if len(edges) > 2 and d - edges[-2] < _BLOCK_COLUMNS // 2:
        del edges[-2]
    blocks = []
    for a, b in itertools.pairwise(edges):
        inner = lead + b
        rows = small_product_rows(inner, b - a)
        blocks.append((a, b, inner, np.ascontiguousarray(matrix[:inner, a:b]), rows))
    return tuple(blocks)


def _mean_within_std(mean: FloatArray, cov: FloatArray) -> bool:
    """Return True when every column's |mean| is at most its standard deviation."""
    return bool(np.all(np.abs(mean) <= np.sqrt(np.diag(cov))))


def row_norms_squared(y: NDArray[_F]) -> NDArray[_F]:
    """Return ``Σ_j y_ij²`` for each row of a float64 (or float32) block, in its dtype.

    numpy's ``vecdot`` (2.0 and later) takes one BLAS dot per row, faster than
    ``einsum`` and equal to rounding (each row on its own, so the result does not depend
    on how rows are chunked).
    """
    vecdot = getattr(np, "vecdot", None)
    if vecdot is None:  # pragma: no cover - numpy < 2.0
        out: NDArray[_F] = np.einsum("ij,ij->i", y, y)
        return out
    out = vecdot(y, y)
    return out


def check_moments(mean: npt.ArrayLike, cov: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
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


def constant_columns(mean: FloatArray, var: FloatArray) -> list[int]:
    """Return the indices of columns whose variance is zero relative to their mean."""
    return [int(j) for j in np.flatnonzero(var <= (_CONSTANT_RTOL * np.abs(mean)) ** 2)]


def degeneracy_reason(mean: FloatArray, cov: FloatArray) -> str | None:
    """Return why a covariance cannot be inverted reliably, or None."""
    var = np.diag(cov).copy()
    constant = constant_columns(mean, var)
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


def same_whitening(a: Whitening, b: Whitening) -> bool:
    """Return whether two whitenings come from the same moments."""
    return a is b or (np.array_equal(a.mean, b.mean) and np.array_equal(a.cov, b.cov))
