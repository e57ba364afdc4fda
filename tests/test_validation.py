"""Every raise in _validation.py, with its message."""

from __future__ import annotations

import numpy as np
import pytest

import latentcheck as lc
from latentcheck import validation as v
from latentcheck.errors import FormatError, InputError


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: v.check_int(2.5, "test_samples", minimum=3), "`test_samples` must be an integer"),
        (lambda: v.check_int(True, "x", minimum=0), "`x` must be an integer"),
        (
            lambda: v.check_int(2, "test_samples", minimum=3),
            "`test_samples` must be at least 3, got 2",
        ),
        (lambda: v.check_fraction("a", "alpha"), r"`alpha` must be a number in \(0, 1\)"),
        (lambda: v.check_fraction(1.5, "alpha"), r"`alpha` must be in \(0, 1\), got 1.5"),
        (lambda: v.check_positive("x", "level"), "`level` must be a number >= 0"),
        (lambda: v.check_positive(-1, "level"), "`level` must be a finite number >= 0, got -1"),
        (lambda: v.check_seed(-3), "`seed` must be a non-negative integer"),
        (lambda: v.check_seed(1.5), "`seed` must be a non-negative integer"),
        (lambda: v.check_nan_policy("drop"), "`nan` must be one of omit, error, got 'drop'"),
        (lambda: v.check_shape((), "z.npy"), r"z.npy holds a single number"),
        (lambda: v.check_shape((5,), "z.npy"), r"Expected a 2-D array \(n_samples, n_dims\)"),
        (lambda: v.check_shape((5, 0), "z.npy"), "a sample with no values has no dimensions"),
        (lambda: v.check_channel_axis("1", 3, "z"), "`channel_axis` must be an integer"),
        (lambda: v.check_channel_axis(5, 3, "z"), "choose one of 1..2"),
        (lambda: v.check_row_count(0, "z.npy"), "z.npy has 0 samples"),
        (lambda: v.check_row_count(1, "z.npy"), "z.npy has 1 sample"),
        (lambda: v.check_levels([], "sigma_levels"), "`sigma_levels` must hold at least one"),
    ],
)
def test_input_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()


@pytest.mark.parametrize(
    "dtype, match",
    [
        (np.dtype([("a", "f4")]), "structured array with fields a"),
        (np.dtype(object), "dtype=object"),
        (np.dtype(np.complex128), "complex numbers"),
        (np.dtype("U3"), "is not numeric"),
    ],
)
def test_dtype_errors(dtype, match):
    with pytest.raises(FormatError, match=match):
        v.check_dtype(dtype, "z.npy")


@pytest.mark.parametrize(
    "dtype, used, note",
    [
        (np.float32, np.float32, None),
        (np.float64, np.float64, None),
        (np.float16, np.float64, "z: float16 values were converted to float64"),
        (np.int8, np.float64, "z: int8 values were converted to float64"),
        (np.bool_, np.float64, "z: boolean values were converted to float64"),
    ],
)
def test_dtype_conversions(dtype, used, note):
    assert v.check_dtype(np.dtype(dtype), "z") == (np.dtype(used), note)


def test_seed_none_draws_one():
    assert v.check_seed(None) >= 0
    assert v.check_seed(np.int64(7)) == 7


def test_levels_are_sorted_and_unique():
    assert v.check_levels([5, 3, 3], "x") == (3.0, 5.0)
    assert v.check_levels(None, "x") == (3.0, 4.0, 5.0, 6.0)


def test_analyze_parameter_errors(rng):
    x = rng.standard_normal((50, 2))
    with pytest.raises(InputError, match="`sample_size` must be at least 5000"):
        lc.analyze(x, sample_size=10)
    with pytest.raises(InputError, match="`alpha` must be in"):
        lc.analyze(x, alpha=0)
    with pytest.raises(InputError, match="`threads` must be at least 1"):
        lc.analyze(x, threads=0)
    with pytest.raises(InputError, match="`chunk_rows` must be at least 1"):
        lc.analyze(x, chunk_rows=0)
