"""Property tests of the accumulators (Hypothesis): merging, chunking, invariances."""

from __future__ import annotations

import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from latentcheck.engine.accumulators import (
    Beyond,
    Comoments,
    Exceedance,
    Extremes,
    Moments,
    Reservoir,
    sparse_flatnonzero,
)

ELEMENTS = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
ARRAYS = hnp.arrays(
    np.float64,
    st.tuples(st.integers(2, 40), st.integers(1, 4)),
    elements=ELEMENTS,
)
SETTINGS = settings(max_examples=60, deadline=None)


def _moments(x: np.ndarray) -> Moments:
    m = Moments(x.shape[1])
    m.push(x)
    return m


def _close(a: Moments, b: Moments) -> None:
    assert a.n == b.n
    # the data reach 1e6, so compare against the data's magnitude, not 0
    mag = np.sqrt(b.m2 / b.n) + np.abs(b.mean) + 1.0
    assert np.all(np.abs(a.mean - b.mean) <= 1e-9 * mag)
    # central sums: compare relative to the size of the data, as they can be ~0
    for p, name in ((2, "m2"), (3, "m3"), (4, "m4")):
        ref = getattr(b, name)
        tol = 1e-10 * (np.abs(ref) + mag**p * a.n)
        assert np.all(np.abs(getattr(a, name) - ref) <= tol), name


@SETTINGS
@given(ARRAYS, st.data())
def test_merge_of_parts_equals_whole(x, data):
    cut = data.draw(st.integers(0, x.shape[0]))
    whole = _moments(x)
    a, b = Moments(x.shape[1]), Moments(x.shape[1])
    a.push(x[:cut])
    b.push(x[cut:])
    _close(a + b, whole)
    _close(b + a, whole)


@SETTINGS
@given(ARRAYS, st.data())
def test_merge_is_associative(x, data):
    n = x.shape[0]
    i = data.draw(st.integers(0, n))
    j = data.draw(st.integers(i, n))
    a, b, c = (
        _moments(x[:i]) if i else Moments(x.shape[1]),
        Moments(x.shape[1]),
        Moments(x.shape[1]),
    )
    b.push(x[i:j])
    c.push(x[j:])
    _close((a + b) + c, a + (b + c))


@SETTINGS
@given(ARRAYS, st.integers(1, 41))
def test_chunk_size_does_not_matter(x, size):
    whole = _moments(x)
    m = Moments(x.shape[1])
    for i in range(0, x.shape[0], size):
        m.push(x[i : i + size])
    _close(m, whole)


@SETTINGS
@given(ARRAYS)
def test_empty_is_identity_and_state_round_trips(x):
    m = _moments(x)
    e = Moments(x.shape[1])
    for merged in (m + e, e + m):
        np.testing.assert_array_equal(merged.m4, m.m4)
        np.testing.assert_array_equal(merged.mean, m.mean)
    back = Moments.from_state(m.state())
    np.testing.assert_array_equal(back.m3, m.m3)
    again = pickle.loads(pickle.dumps(m.state()))
    np.testing.assert_array_equal(Moments.from_state(again).m2, m.m2)


@SETTINGS
@given(ARRAYS, st.randoms(use_true_random=False))
def test_shuffling_rows_changes_nothing(x, random):
    perm = list(range(x.shape[0]))
    random.shuffle(perm)
    _close(_moments(x[perm]), _moments(x))
    e1, e2 = Extremes(x.shape[1]), Extremes(x.shape[1])
    e1.push(x)
    e2.push(x[perm])
    np.testing.assert_array_equal(e1.min, e2.min)


@SETTINGS
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(3, 40), st.integers(1, 3)),
        elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    ),
    st.floats(0.01, 100),
    st.floats(-100, 100),
)
def test_shift_and_scale_move_statistics_as_expected(x, a, b):
    m, t = _moments(x), _moments(a * x + b)
    np.testing.assert_allclose(t.mean, a * m.mean + b, rtol=1e-9, atol=1e-9 * (abs(b) + a * 1e3))
    ok = m.std() > 1e-6 * (np.abs(x).max() + 1)
    np.testing.assert_allclose(t.std()[ok], a * m.std()[ok], rtol=1e-6)
    np.testing.assert_allclose(t.skewness()[ok], m.skewness()[ok], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        t.excess_kurtosis()[ok], m.excess_kurtosis()[ok], rtol=1e-5, atol=1e-6
    )


@SETTINGS
@given(ARRAYS, st.data())
def test_comoments_merge_equals_whole(x, data):
    cut = data.draw(st.integers(0, x.shape[0]))
    whole = Comoments(x.shape[1])
    whole.push(x)
    a, b = Comoments(x.shape[1]), Comoments(x.shape[1])
    a.push(x[:cut])
    b.push(x[cut:])
    merged = b + a
    scale = (np.abs(x).max() + 1.0) ** 2 * x.shape[0]
    np.testing.assert_allclose(merged.comoment, whole.comoment, rtol=1e-9, atol=1e-11 * scale)
    back = Comoments.from_state(pickle.loads(pickle.dumps(merged.state())))
    np.testing.assert_array_equal(back.comoment, merged.comoment)


@SETTINGS
@given(ARRAYS, st.integers(1, 41), st.integers(0, 2**32))
def test_reservoir_and_exceedance_are_chunk_invariant(x, size, seed):
    n, d = x.shape
    mean, std = x.mean(0), x.std(0) + 1.0
    ref_r = Reservoir(5, d, seed)
    ref_r.push(x, np.arange(n))
    ref_e = Exceedance([1, 2], mean, std)
    ref_e.push(x)
    r, e = Reservoir(5, d, seed), Exceedance([1, 2], mean, std)
    for i in range(0, n, size):
        r.push(x[i : i + size], np.arange(i, min(i + size, n)))
        e.push(x[i : i + size])
    np.testing.assert_array_equal(r.finalize().row_ids, ref_r.finalize().row_ids)
    np.testing.assert_array_equal(e.upper, ref_e.upper)
    np.testing.assert_array_equal(e.lower, ref_e.lower)


@SETTINGS
@given(ARRAYS, st.floats(-2.0, 2.0), st.floats(-2.0, 2.0), st.integers(1, 17))
def test_extremes_from_values_beyond_thresholds_match_numpy(x, hi, lo, rows):
    """Whatever the thresholds (none beyond, some columns, every column), min/max are exact."""
    d = x.shape[1]
    # per-column thresholds: some columns get none of their values beyond them
    upper = x.mean(axis=0) + hi * np.arange(d)
    lower = x.mean(axis=0) - lo * np.arange(d)
    e = Extremes(d)
    for s in range(0, x.shape[0], rows):
        chunk = np.ascontiguousarray(x[s : s + rows])
        flat = chunk.reshape(-1)
        above = Beyond.gather(flat, d, np.flatnonzero(chunk > upper))
        below = Beyond.gather(flat, d, np.flatnonzero(chunk < lower))
        e.push_beyond(chunk, above, below)
    np.testing.assert_array_equal(e.max, x.max(axis=0))
    np.testing.assert_array_equal(e.min, x.min(axis=0))


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.bool_,
        st.tuples(st.integers(0, 70), st.integers(1, 9)),
        elements=st.booleans(),
    ),
    st.floats(0.0, 1.0),
)
def test_sparse_flatnonzero_matches_numpy(mask, density):
    """Sparse, dense, and sizes that are no multiple of 8 all give numpy's positions."""
    rng = np.random.default_rng(int(density * 1000))
    sparse = mask & (rng.random(mask.shape) < density * 0.05)
    for m in (mask, sparse):
        np.testing.assert_array_equal(sparse_flatnonzero(m), np.flatnonzero(m))
