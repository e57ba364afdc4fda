"""Input checks at the boundary of the library.

All wording of input errors lives here. Each helper returns a normalised value that the inner
code trusts; none of them uses ``assert``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import FormatError, InputError

#: Per-dimension quantile levels reported for every dimension (numpy "linear" method).
QUANTILE_LEVELS: tuple[float, ...] = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)
#: Outlier thresholds, in standard deviations.
SIGMA_LEVELS: tuple[int, ...] = (3, 4, 5, 6)

NAN_POLICIES = ("omit", "error")


def check_int(value: object, name: str, *, minimum: int) -> int:
    """Return `value` as an int, or raise InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"`{name}` must be an integer, got {value!r}")
    ivalue = int(value)
    if ivalue < minimum:
        raise InputError(f"`{name}` must be at least {minimum}, got {ivalue}")
    return ivalue


def check_fraction(value: object, name: str, *, open_interval: bool = True) -> float:
    """Return `value` as a float in (0, 1), or raise InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"`{name}` must be a number in (0, 1), got {value!r}")
    fvalue = float(value)
    if not (0.0 < fvalue < 1.0) if open_interval else not (0.0 <= fvalue <= 1.0):
        raise InputError(f"`{name}` must be in (0, 1), got {fvalue}")
    return fvalue


def check_positive(value: object, name: str) -> float:
    """Return `value` as a finite float >= 0, or raise InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"`{name}` must be a number >= 0, got {value!r}")
    fvalue = float(value)
    if not np.isfinite(fvalue) or fvalue < 0:
        raise InputError(f"`{name}` must be a finite number >= 0, got {fvalue}")
    return fvalue


def check_strictly_positive(value: object, name: str) -> float:
    """Return `value` as a finite float > 0, or raise InputError naming `name`."""
    fvalue = check_positive(value, name)
    if fvalue == 0:
        raise InputError(f"`{name}` must be > 0, got 0")
    return fvalue


def check_real(value: object, name: str) -> float:
    """Return `value` as a finite float, or raise InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"`{name}` must be a number, got {value!r}")
    fvalue = float(value)
    if not np.isfinite(fvalue):
        raise InputError(f"`{name}` must be finite, got {fvalue}")
    return fvalue


def check_seed(seed: object) -> int:
    """Return the seed to use: `seed` itself, or a fresh one drawn from the OS when None."""
    return draw_seed() if seed is None else check_seed_value(seed)


def draw_seed() -> int:
    """Return a fresh seed drawn from the OS (32 bits)."""
    # 32 bits: short enough to read and retype, and what every consumer accepts
    entropy = np.random.SeedSequence().entropy
    # without an argument SeedSequence draws a 128-bit int (never None or a sequence)
    assert isinstance(entropy, int)
    return entropy % (2**32)


def check_seed_value(seed: object) -> int:
    """Return `seed` as an int in [0, 2**64), or raise InputError."""
    if (
        isinstance(seed, bool)
        or not isinstance(seed, numbers.Integral)
        or not 0 <= int(seed) < 2**64  # the row hash salts with a uint64
    ):
        raise InputError(f"`seed` must be a non-negative integer below 2**64 or None, got {seed!r}")
    return int(seed)


def check_nan_policy(nan: object) -> str:
    """Return the non-finite policy, one of NAN_POLICIES."""
    return check_choice(nan, "nan", NAN_POLICIES)


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Return `value` if it is one of `choices`, or raise InputError naming `name`."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"`{name}` must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_dtype(dtype: np.dtype[Any], where: str) -> tuple[np.dtype[Any], str | None]:
    """Return the dtype computations use for input of `dtype`, and a note if it is upcast.

    float32 and float64 are used as they are; float16, integer and boolean input is upcast
    to float64 with a note; complex, string, object and structured dtypes are refused.
    """
    if dtype.fields is not None:
        raise FormatError(
            f"{where} holds a structured array with fields {', '.join(dtype.fields)}; "
            "save the latents as a plain float array"
        )
    if dtype.hasobject:
        raise FormatError(
            f"{where} holds Python objects (dtype=object), which would need unpickling; "
            "latentcheck never unpickles: save the latents as a float array"
        )
    kind = dtype.kind
    if kind == "f" and dtype.itemsize in (4, 8):
        return dtype, None
    if kind == "f" or kind in "iub":
        name = "boolean" if kind == "b" else str(dtype)
        return np.dtype(np.float64), f"{where}: {name} values were converted to float64"
    if kind == "c":
        raise FormatError(
            f"{where} holds complex numbers ({dtype}); latents must be real: "
            "pass the real part, or real and imaginary parts as separate dimensions"
        )
    raise FormatError(f"{where} has dtype {dtype}, which is not numeric; expected floats")


#: Axes an array may have (numpy's own limit since 2.0; 32 before).
MAX_AXES = 64


def check_shape(shape: Sequence[int], where: str) -> tuple[int, ...]:
    """Return `shape` if it can hold latents (at least 2-D, at least one dimension).

    A shape read from a file header is untrusted: booleans, negative sizes and more than
    :data:`MAX_AXES` axes are refused (issue 20), before any size is computed from it.
    """
    if len(shape) > MAX_AXES:
        raise FormatError(f"{where} declares {len(shape)} axes; arrays have at most {MAX_AXES}")
    sizes: Sequence[object] = shape  # untrusted: whatever a header held
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or int(s) < 0:
            raise FormatError(
                f"{where} declares the shape {tuple(shape)!r}: sizes must be integers >= 0"
            )
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        raise InputError(
            f"{where} holds a single number (a 0-d array); expected an array of shape "
            "(n_samples, n_dims)"
        )
    if len(shape) == 1:
        raise InputError(
            f"Expected a 2-D array (n_samples, n_dims), got shape {shape} from {where}; "
            "reshape to (-1, 1) for one dimension"
        )
    if any(s == 0 for s in shape[1:]):
        raise InputError(f"{where} has shape {shape}: a sample with no values has no dimensions")
    return shape


def check_channel_axis(channel_axis: object, ndim: int, where: str) -> int:
    """Return `channel_axis` normalised to 1..ndim-1 for an array of `ndim` dimensions."""
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
        raise InputError(f"`channel_axis` must be an integer, got {channel_axis!r}")
    axis = int(channel_axis)
    if axis < 0:
        axis += ndim
    if not 1 <= axis < ndim:
        raise InputError(
            f"`channel_axis` {channel_axis} is not a valid non-sample axis of the "
            f"{ndim}-D array in {where}; choose one of 1..{ndim - 1} (axis 0 holds samples)"
        )
    return axis


def check_row_count(n_rows: int, where: str) -> None:
    """Raise InputError unless there are at least two rows to describe."""
    if n_rows == 0:
        raise InputError(f"{where} has 0 samples; there is nothing to describe")
    if n_rows == 1:
        raise InputError(
            f"{where} has 1 sample; at least 2 are needed to estimate a spread "
            "(thousands for meaningful tests)"
        )


#: fewer rows than this are refused (unless overridden): D'Agostino's kurtosis test needs 20,
#: and no spread, tail or shape figure means anything from fewer.
MIN_ROWS = 20


def check_rows_vs_dims(
    n_rows: int, n_dims: int, where: str, *, shape: Sequence[int] = (), allow: bool = False
) -> None:
    """Raise InputError for fewer rows than dimensions or than ``MIN_ROWS``, unless `allow`.

    A (10, 5000) array is almost always a transposed (5000, 10) one, and a statistic of 3
    rows is noise: both are refused before any statistic, with the fix in the message.
    """
    if allow or (n_rows >= n_dims and n_rows >= MIN_ROWS):
        return
    shown = "×".join(str(int(s)) for s in shape) if shape else f"{n_rows}×{n_dims}"
    if n_rows < n_dims:
        why = f"fewer rows (samples) than dimensions ({n_rows} < {n_dims})"
        fix = (
            "samples go on axis 0: if they are on the last axis, transpose the array "
            "(z.T); for conv latents (N, C, H, W) set --channel-axis (channel_axis)"
        )
    else:
        why = f"{n_rows} rows, fewer than the {MIN_ROWS} the statistics need"
        fix = "pass more samples"
    raise InputError(
        f"{where} ({shown}) gives {why}; {fix}, or pass --allow-few-rows "
        "(allow_few_rows=True) to describe it anyway"
    )


def check_levels(values: Sequence[float] | None, name: str) -> tuple[float, ...]:
    """Return a sorted tuple of positive thresholds (sigma levels)."""
    if values is None:
        return tuple(float(v) for v in SIGMA_LEVELS)
    out = []
    for v in values:
        out.append(check_positive(v, name))
    if not out:
        raise InputError(f"`{name}` must hold at least one value")
    return tuple(sorted(set(out)))


#: Largest |mean| or std analysed: kurtosis needs 4th powers, and eigenvalue sums squares
#: of variances; both overflow float64 (1.8e308) beyond about 1e77.
MAX_MAGNITUDE = 1e75


def check_no_overflow(mean: Any, std: Any, where: str) -> None:
    """Raise InputError if the values are too large for float64 statistics (issue 20).

    Rows holding NaN or inf are left out before the moments, so a non-finite mean or
    standard deviation can only come from sums that overflowed (|values| above about
    1e154 square beyond float64's 1.8e308); fourth moments and squared variances overflow
    from about 1e77 (:data:`MAX_MAGNITUDE`). Such dimensions used to be reported as
    "constant", or crashed; say what happened and how to fix it instead.
    """
    m = np.abs(np.asarray(mean, dtype=np.float64))
    s = np.asarray(std, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(m) & np.isfinite(s)) | (m > MAX_MAGNITUDE) | (s > MAX_MAGNITUDE)
    if not bad.any():
        return
    idx = np.flatnonzero(bad)
    shown = ", ".join(str(i) for i in idx[:10]) + (" ..." if idx.size > 10 else "")
    raise InputError(
        f"{where}: the values of {idx.size} dimension(s) ({shown}) are too large for "
        f"float64 arithmetic (means or spreads above {MAX_MAGNITUDE:g}: their powers "
        "overflow); divide the latents by a constant before checking them"
    )


def check_regular_file(path: Any) -> None:
    """Raise FormatError unless `path` is a regular file or a directory (a Zarr store).

    FIFOs, sockets and devices (``fifo.npy``, ``/proc/self/fd/0``, ``/dev/zero`` behind an
    ``.npz`` name) are refused rather than read: a FIFO blocks until a writer comes, and a
    device can be read for ever (issue 20).
    """
    import os
    import stat

    try:
        st = os.stat(path)
    except OSError as exc:
        raise FormatError(f"Cannot read {path}: {exc.strerror}") from None
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK):
            raise FormatError(f"Cannot read {path}: Permission denied")
        return
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(st.st_mode)
        else "a device"
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
        else "a socket"
        if stat.S_ISSOCK(st.st_mode)
        else "not a regular file"
    )
    raise FormatError(
        f"{path} is {kind}; latentcheck reads regular files only (save the stream to a file)"
    )
