"""Validation of posterior parameters and the elementwise Gaussian KL to the prior.

:func:`as_logvar` and :func:`check_mu` validate and normalise one chunk of an encoder's
posterior means μ and log-variances ln σ² (or standard deviations σ, variances σ²) of
q(z | x) = N(μ, diag σ²), with error messages that give absolute row numbers.
``kl_variance_part`` evaluates the variance part ½(σ² − 1 − ln σ²) of KL(q(z | x) ‖ N(0, I))
elementwise, with full relative precision near σ = 1. The streaming accumulator in
:mod:`latentcheck.stats.posterior.rate` and the mixture estimator in
:mod:`latentcheck.stats.posterior.mixture` build on them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from latentcheck.errors import InputError

__all__ = [
    "LOGVAR_BOUND",
    "MU_BOUND",
    "as_logvar",
    "as_real_2d",
    "check_mu",
    "kl_variance_part",
]

#: Accepted range of log-variances: exp(+-600) and the sums and squares built from it stay
#: finite in float64 (exp overflows above 709.78; the mixture needs exp(-logvar / 2) too).
LOGVAR_BOUND = 600.0
#: Largest accepted |mu|, so that mu**2 and its sums over many rows stay finite.
MU_BOUND = 1e150

_SERIES_CUTOFF = 0.1
# 1/k! for k = 2..10: exp(x) - 1 - x = x^2 (1/2! + x/3! + ... + x^8/10!) + O(x^11); at
# |x| < 0.1 the first omitted term is below 5e-17 of the sum.
_INV_FACT = tuple(1.0 / math.factorial(k) for k in range(2, 11))

_Kind = Literal["logvar", "std", "var"]


# --------------------------------------------------------------------------------------------
# validation of one chunk


def as_real_2d(values: ArrayLike, name: str) -> NDArray[Any]:
    """Return ``values`` as a 2-D real array (dtype unchanged), or raise InputError."""
    arr = np.asarray(values)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InputError(f"`{name}` must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(
            f"Expected `{name}` as a 2-D array (n_samples, n_dims), got shape {arr.shape}"
        )
    return arr


def _as_float_2d(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """Return ``values`` as a 2-D float64 array, or raise InputError."""
    return as_real_2d(values, name).astype(np.float64, copy=False)


def _count_first(mask: NDArray[np.bool_], row_offset: int) -> tuple[int, int]:
    """Return the number of True entries and the first row (plus offset) holding one."""
    rows = np.flatnonzero(mask.any(axis=1))
    return int(np.count_nonzero(mask)), int(rows[0]) + row_offset


def _raise_bad(mask: NDArray[np.bool_], name: str, what: str, fix: str, row_offset: int) -> None:
    """Raise InputError for the entries flagged in ``mask``; ``what`` is "<adjective> value"."""
    if mask.any():
        count, row = _count_first(mask, row_offset)
        noun = what if count == 1 else what.replace(" value", " values", 1)
        raise InputError(f"`{name}` has {count} {noun} (first at row {row}); {fix}")


def as_logvar(
    values: ArrayLike,
    kind: _Kind = "logvar",
    *,
    name: str | None = None,
    row_offset: int = 0,
) -> NDArray[np.float64]:
    """Convert one chunk of posterior log-variances, standard deviations or variances.

    Parameters
    ----------
    values : array_like of shape (n_samples, n_dims)
        One chunk of ``logvar`` = ln σ², ``std`` = σ or ``var`` = σ², any real dtype.
    kind : {"logvar", "std", "var"}, default="logvar"
        What ``values`` holds.
    name : str or None, default=None
        Name used in error messages (e.g. the ``.npz`` key); defaults to ``kind``.
    row_offset : int, default=0
        Index of the chunk's first row in the whole data set, so that messages give
        absolute row numbers.

    Returns
    -------
    ndarray of shape (n_samples, n_dims)
        float64 log-variances ln σ², within ±:data:`LOGVAR_BOUND`.

    Raises
    ------
    InputError
        If ``values`` is not 2-D and real, holds NaN or ±inf, a negative or zero ``std`` /
        ``var`` (σ = 0 has no log-variance), or a log-variance outside ±600, where exp(±ln σ²)
        and the sums built on it would leave the float64 range.

    Notes
    -----
    ln σ² = 2 ln σ for ``std`` and ln σ² for ``var``, computed from the float64 value so that
    tiny σ (e.g. exp(-15) at the usual clamp ln σ² = -30) keep full precision.
    """
    if kind not in ("logvar", "std", "var"):
        raise InputError(f"`kind` must be 'logvar', 'std' or 'var', got {kind!r}")
    label = kind if name is None else name
    arr = _as_float_2d(values, label)
    if arr.size == 0:
        return arr
    lo, hi = arr.min(), arr.max()
    finite = bool(np.isfinite(lo) and np.isfinite(hi))
    if kind == "logvar":
        if finite and -LOGVAR_BOUND <= lo and hi <= LOGVAR_BOUND:
            return arr
        _raise_bad(~np.isfinite(arr), label, "non-finite value", "remove those rows", row_offset)
        _raise_bad(
            np.abs(arr) > LOGVAR_BOUND,
            label,
            f"value outside [-{LOGVAR_BOUND:g}, {LOGVAR_BOUND:g}]",
            "exp(logvar) must stay inside the float64 range; clamp `logvar` as the encoder does",
            row_offset,
        )
        return arr  # pragma: no cover - one of the checks above always raises
    bound = math.exp(LOGVAR_BOUND / (2.0 if kind == "std" else 1.0))
    if not (finite and lo > 0.0 and hi <= bound and lo >= 1.0 / bound):
        _raise_bad(~np.isfinite(arr), label, "non-finite value", "remove those rows", row_offset)
        _raise_bad(
            arr < 0.0, label, "negative value", f"a posterior {kind} must be positive", row_offset
        )
        _raise_bad(
            arr == 0.0,
            label,
            "zero value",
            f"σ = 0 has no log-variance; clip `{label}` to a small positive value or pass `logvar`",
            row_offset,
        )
        _raise_bad(
            (arr > bound) | (arr < 1.0 / bound),
            label,
            f"value outside [{1.0 / bound:.3g}, {bound:.3g}]",
            f"ln σ² must lie within ±{LOGVAR_BOUND:g}",
            row_offset,
        )
    out = np.log(arr)
    if kind == "std":
        out *= 2.0
    return out


def check_mu(values: ArrayLike, *, name: str = "mu", row_offset: int = 0) -> NDArray[np.float64]:
    """Validate one chunk of posterior means.

    Parameters
    ----------
    values : array_like of shape (n_samples, n_dims)
        One chunk of μ, any real dtype.
    name : str, default="mu"
        Name used in error messages.
    row_offset : int, default=0
        Index of the chunk's first row in the whole data set, for messages.

    Returns
    -------
    ndarray of shape (n_samples, n_dims)
        ``values`` as float64.

    Raises
    ------
    InputError
        If ``values`` is not 2-D and real, holds NaN or ±inf, or |μ| > 1e150 (μ² would
        overflow in the sums).
    """
    arr = _as_float_2d(values, name)
    if arr.size == 0:
        return arr
    lo, hi = arr.min(), arr.max()
    if np.isfinite(lo) and np.isfinite(hi) and -MU_BOUND <= lo and hi <= MU_BOUND:
        return arr
    _raise_bad(~np.isfinite(arr), name, "non-finite value", "remove those rows", row_offset)
    _raise_bad(
        np.abs(arr) > MU_BOUND,
        name,
        f"value with magnitude above {MU_BOUND:g}",
        "μ² would overflow float64; check the encoder output",
        row_offset,
    )
    return arr  # pragma: no cover - one of the checks above always raises


# --------------------------------------------------------------------------------------------
# elementwise Gaussian KL parts


def kl_variance_part(
    logvar: NDArray[np.float64], out: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """Return ½(σ² − 1 − ln σ²) elementwise (into ``out`` if given), accurate near σ = 1."""
    out = np.expm1(logvar, out=out)
    out -= logvar
    small = np.abs(logvar) < _SERIES_CUTOFF
    if small.any():
        # expm1(x) - x loses digits to cancellation as x -> 0 (relative error ~ 2 eps / |x|);
        # the Taylor series of exp(x) - 1 - x keeps full relative precision there.
        x = logvar[small]
        poly = np.full_like(x, _INV_FACT[-1])
        for coef in _INV_FACT[-2::-1]:
            poly *= x
            poly += coef
        out[small] = x * x * poly
    out *= 0.5
    return out
