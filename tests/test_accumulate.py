"""Streaming accumulators against one-shot numpy/scipy computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st

from latentcheck.engine.accumulators import (
    Comoments,
    Exceedance,
    Extremes,
    Moments,
    NonFinite,
    Reservoir,
    exact_threshold,
    fold,
    hash_rows,
    key_threshold,
)


def _chunks(x: np.ndarray, size: int):
    for i in range(0, x.shape[0], size):
        yield x[i : i + size]


def _data(rng: np.random.Generator, n: int = 257, d: int = 5) -> np.ndarray:
    # an offset of 1000 std and mixed scales make cancellation visible if the updates were
    # naive (raw power sums lose every digit of the 4th moment here)
    x = rng.standard_normal((n, d)) * np.array([1.0, 1e-1, 10.0, 2.0, 0.5])[:d]
    x[:, 1] += 1e2
    x[:, 3] = rng.exponential(size=n)
    return x


@pytest.mark.parametrize("size", [1, 7, 257, 258])
def test_moments_match_scipy_for_any_chunking(rng, size):
    x = _data(rng)
    m = Moments(x.shape[1])
    for c in _chunks(x, size):
        m.push(c)
    # rtol 1e-12: float64 with pairwise merges loses a few ulps per merge, far below 1e-9
    np.testing.assert_allclose(m.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.std(), x.std(0), rtol=1e-10)
    np.testing.assert_allclose(m.var(ddof=1), x.var(0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(m.skewness(), st.skew(x, axis=0), rtol=1e-9)
    np.testing.assert_allclose(m.excess_kurtosis(), st.kurtosis(x, axis=0), rtol=1e-9)
    assert m.n == x.shape[0]


def test_moments_float32_input_accumulates_in_float64(rng):
    x = rng.standard_normal((1000, 3)).astype(np.float32) + np.float32(100.0)
    m = Moments(3)
    for c in _chunks(x, 64):
        m.push(c)
    ref = x.astype(np.float64)
    np.testing.assert_allclose(m.mean, ref.mean(0), rtol=1e-13)
    np.testing.assert_allclose(m.std(), ref.std(0), rtol=1e-10)
    np.testing.assert_allclose(m.excess_kurtosis(), st.kurtosis(ref, axis=0), rtol=1e-8)


def test_moments_merge_equals_whole_and_empty_is_identity(rng):
    x = _data(rng)
    a, b, whole, empty = Moments(5), Moments(5), Moments(5), Moments(5)
    a.push(x[:100])
    b.push(x[100:])
    whole.push(x)
    merged = a + b
    for name in ("mean", "m2", "m3", "m4"):
        np.testing.assert_allclose(
            getattr(merged, name),
            getattr(whole, name),
            rtol=1e-10,
            atol=1e-9 * np.abs(getattr(whole, name)).max(),
        )
    same = a.merge(empty)
    np.testing.assert_array_equal(same.m4, a.m4)
    assert (empty + a).n == a.n
    back = Moments.from_state(a.state())
    np.testing.assert_array_equal(back.m3, a.m3)


def test_moments_constant_column_gives_nan_shape_figures():
    x = np.ones((10, 2))
    x[:, 1] = np.arange(10)
    m = Moments(2)
    m.push(x)
    assert m.std()[0] == 0
    assert np.isnan(m.skewness()[0]) and np.isfinite(m.skewness()[1])


@pytest.mark.parametrize("size", [1, 7, 257, 258])
def test_comoments_match_numpy_cov(rng, size):
    x = _data(rng)
    c = Comoments(x.shape[1])
    for ch in _chunks(x, size):
        c.push(ch)
    ref = np.cov(x, rowvar=False, bias=True)
    # atol relative to the largest entry: off-diagonal entries near 0 have no relative scale
    np.testing.assert_allclose(c.cov(), ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(
        c.cov(ddof=1), np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12 * np.abs(ref).max()
    )
    back = Comoments.from_state(c.state())
    np.testing.assert_array_equal(back.comoment, c.comoment)


def _power_sums(chunks):
    """Return each chunk's rows, shift (its rounded mean) and sums of (x - shift)^1..4."""
    out = []
    for c in chunks:
        shift = c.mean(0) + 1e-3  # off the exact mean, as a float32 column sum leaves it
        dev = c - shift
        out.append((c.shape[0], shift, *(np.sum(dev**p, axis=0) for p in (1, 2, 3, 4))))
    ns = np.array([o[0] for o in out], dtype=np.float64)
    return (ns, *(np.array([o[k] for o in out]) for k in range(1, 6)))


@pytest.mark.parametrize("size", [1, 7, 40, 257])
def test_push_many_matches_scipy_and_chunk_by_chunk_merges(rng, size):
    # the k-way combination about the batch mean (a pass-1 segment's chunks at once)
    x = _data(rng)
    ns, shift, s1, s2, s3, s4 = _power_sums(_chunks(x, size))
    many, one = Moments(5), Moments(5)
    many.push(x[:3])  # the batch joins rows already there
    one.push(x[:3])
    many.push_many(ns, shift, s1, s2, s3, s4)
    for k in range(ns.size):
        one.push_shifted(int(ns[k]), shift[k], s1[k], s2[k], s3[k], s4[k])
    whole = np.concatenate([x[:3], x])
    assert many.n == one.n == whole.shape[0]
    np.testing.assert_allclose(many.mean, whole.mean(0), rtol=1e-13)
    np.testing.assert_allclose(many.var(), whole.var(0), rtol=1e-11)
    np.testing.assert_allclose(many.skewness(), st.skew(whole, axis=0), rtol=1e-9)
    np.testing.assert_allclose(many.excess_kurtosis(), st.kurtosis(whole, axis=0), rtol=1e-9)
    for name in ("m2", "m3", "m4"):
        ref = getattr(one, name)
        np.testing.assert_allclose(
            getattr(many, name), ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max()
        )
    c = Comoments(5)
    grams = [(ch - sh).T @ (ch - sh) for ch, sh in zip(_chunks(x, size), shift, strict=True)]
    c.push_many(ns, shift, s1, np.sum(grams, axis=0))
    ref = np.cov(x, rowvar=False, bias=True)
    np.testing.assert_allclose(c.cov(), ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(c.mean, x.mean(0), rtol=1e-13)
    empty = np.empty((0, 5))
    many.push_many(np.empty(0), empty, empty, empty, empty, empty)  # an empty batch: no-op
    c.push_many(np.empty(0), empty, empty, np.zeros((5, 5)))
    assert many.n == whole.shape[0] and c.n == x.shape[0]


def test_extremes_and_fold(rng):
    x = rng.standard_normal((1001, 4)).astype(np.float32)
    e = Extremes(4)
    for ch in _chunks(x, 99):
        e.push(ch)
    np.testing.assert_array_equal(e.min, x.min(0))
    np.testing.assert_array_equal(e.max, x.max(0))
    np.testing.assert_array_equal(fold(x[:5], np.maximum), x[:5].max(0))
    np.testing.assert_array_equal(fold(x[:1], np.minimum), x[0])
    merged = Extremes.from_state(e.state()) + Extremes(4)
    np.testing.assert_array_equal(merged.max, e.max)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_threshold_matches_float64_comparison(rng, dtype):
    values = rng.standard_normal(2000) * 3
    t_hi = exact_threshold(values, np.dtype(dtype), upper=True)
    t_lo = exact_threshold(values, np.dtype(dtype), upper=False)
    # probe float values at and around each threshold
    probes = np.concatenate(
        [
            values.astype(dtype),
            np.nextafter(values.astype(dtype), dtype(np.inf)),
            np.nextafter(values.astype(dtype), dtype(-np.inf)),
        ]
    )
    for v, th, tl in zip(values, t_hi, t_lo, strict=True):
        near = probes[np.abs(probes.astype(np.float64) - v) < 1e-5]
        np.testing.assert_array_equal(near > th, near.astype(np.float64) > v)
        np.testing.assert_array_equal(near < tl, near.astype(np.float64) < v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 7, 500])
def test_exceedance_counts_equal_naive_counts(rng, dtype, size):
    x = st.t.rvs(3, size=(3000, 4), random_state=rng).astype(dtype)
    wide = x.astype(np.float64)
    mean, std = wide.mean(0), wide.std(0)
    # put values exactly on a threshold: they must not count (strict inequality)
    x[0, 0] = dtype(mean[0] + 3 * std[0])
    wide = x.astype(np.float64)
    levels = [3, 4, 5, 6]
    ex = Exceedance(levels, mean, std, dtype)
    for ch in _chunks(x, size):
        ex.push(ch)
    for i, k in enumerate(levels):
        upper = (wide > mean + k * std).sum(0)
        lower = (wide < mean - k * std).sum(0)
        np.testing.assert_array_equal(ex.upper[i], upper)
        np.testing.assert_array_equal(ex.lower[i], lower)
    np.testing.assert_allclose(
        ex.rates()[0], ((wide > mean + 3 * std) | (wide < mean - 3 * std)).mean(0)
    )
    back = Exceedance.from_state(ex.state())
    np.testing.assert_array_equal((back + Exceedance(levels, mean, std, dtype)).upper, ex.upper)


def test_nonfinite_counts_rows_and_first(rng):
    x = rng.standard_normal((20, 3))
    x[5, 1] = np.nan
    x[9, 0] = np.inf
    x[9, 2] = -np.inf
    a, b = NonFinite(3), NonFinite(3)
    a.push_mask(np.isfinite(x[10:]), np.arange(10, x.shape[0]))
    b.push_mask(np.isfinite(x[:10]), np.arange(10))
    m = a + b
    assert m.rows == 2 and m.first_row == 5 and m.first_dim == 1
    np.testing.assert_array_equal(m.per_dim, [1, 1, 1])
    assert NonFinite.from_state(m.state()).first_row == 5


def test_hash_rows_is_deterministic_and_seed_dependent():
    ids = np.arange(10_000)
    a, b, c = hash_rows(ids, 0), hash_rows(ids, 0), hash_rows(ids, 1)
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.999
    assert np.unique(a).size == ids.size


def _reservoir(x: np.ndarray, cap: int, seed: int, size: int) -> Reservoir:
    r = Reservoir(cap, x.shape[1], seed, x.dtype)
    for i in range(0, x.shape[0], size):
        r.push(x[i : i + size], np.arange(i, min(i + size, x.shape[0])))
    return r.finalize()


@pytest.mark.parametrize("size", [1, 7, 1000, 1001])
def test_reservoir_does_not_depend_on_chunking(rng, size):
    x = rng.standard_normal((1000, 2))
    ref = _reservoir(x, 50, 3, 1000)
    r = _reservoir(x, 50, 3, size)
    np.testing.assert_array_equal(r.row_ids, ref.row_ids)
    np.testing.assert_array_equal(r.rows, x[r.row_ids])


def test_reservoir_merge_equals_whole_and_holds_everything_when_small(rng):
    x = rng.standard_normal((600, 2))
    whole = _reservoir(x, 100, 9, 600)
    a = Reservoir(100, 2, 9)
    b = Reservoir(100, 2, 9)
    a.push(x[:250], np.arange(250))
    b.push(x[250:], np.arange(250, 600))
    np.testing.assert_array_equal((b + a).row_ids, whole.row_ids)
    small = _reservoir(x[:40], 100, 9, 7)
    assert sorted(small.row_ids.tolist()) == list(range(40))
    back = Reservoir.from_state(whole.state())
    np.testing.assert_array_equal(back.rows, whole.rows)


@pytest.mark.parametrize("capacity", [1, 2, 3, 4, 6])
def test_reservoir_breaks_key_ties_by_row_index(monkeypatch, capacity):
    # 64-bit hash ties never happen in practice, so force them: the sample must still be
    # the `capacity` smallest (key, row) pairs, in that order, however the rows arrive
    keys = {10: 5, 11: 1, 12: 5, 13: 5, 14: 2, 15: 1}
    monkeypatch.setattr(
        "latentcheck.engine.sample.hash_rows",
        lambda ids, seed: np.array([keys[int(i)] for i in ids], dtype=np.uint64),
    )
    expected = sorted(keys, key=lambda i: (keys[i], i))[:capacity]
    for order in ([10, 11, 12, 13, 14, 15], [15, 13, 14, 12, 11, 10]):
        r = Reservoir(capacity, 1, 0)
        for i in order:
            r.push(np.array([[float(i)]]), np.array([i]))
        r = r.finalize()
        assert r.row_ids.tolist() == expected
        assert r.rows[:, 0].tolist() == [float(i) for i in expected]


@pytest.mark.parametrize("head", [0, 1, 37, 300, 1000])
@pytest.mark.parametrize("cap", [1, 300, 5000])
def test_reservoir_split_is_the_sample_as_columns_and_its_first_rows(rng, cap, head):
    # segments merged lazily (rows waiting in the buffer), more rows than the capacity:
    # the columns hold the sample's values, the head its first rows in key order
    x = rng.standard_normal((3000, 3)).astype(np.float32)
    parts = []
    for a in range(0, 3000, 450):
        r = Reservoir(cap, 3, 5, x.dtype)
        for i in range(a, min(a + 450, 3000), 64):
            stop = min(i + 64, a + 450, 3000)
            r.push(x[i:stop], np.arange(i, stop))
        parts.append(r.finalize())
    merged = parts[0]
    for r in parts[1:]:
        merged = merged + r
    columns, rows, ids = merged.split(head)
    whole = _reservoir(x, cap, 5, 3000)
    assert columns.flags.c_contiguous and columns.dtype == np.float32
    np.testing.assert_array_equal(np.sort(columns, axis=1), np.sort(whole.rows.T, axis=1))
    np.testing.assert_array_equal(ids, whole.row_ids[:head])
    np.testing.assert_array_equal(rows, whole.rows[:head])
    assert merged.complete()
    np.testing.assert_array_equal(merged.finalize().row_ids, whole.row_ids)


def test_reservoir_split_breaks_key_ties_as_finalize(monkeypatch):
    keys = {10: 5, 11: 1, 12: 5, 13: 5, 14: 2, 15: 1}
    monkeypatch.setattr(
        "latentcheck.engine.sample.hash_rows",
        lambda ids, seed: np.array([keys[int(i)] for i in ids], dtype=np.uint64),
    )
    r = Reservoir(4, 1, 0)
    for i in [15, 13, 14, 12, 11, 10]:
        r.push(np.array([[float(i)]]), np.array([i]))
    columns, rows, ids = r.split(3)
    assert ids.tolist() == [11, 15, 14] and rows[:, 0].tolist() == [11.0, 15.0, 14.0]
    assert sorted(columns[0].tolist()) == [10.0, 11.0, 14.0, 15.0]


def test_reservoir_is_uniform_over_rows():
    # inclusion frequency of each row over many seeds: a chi-square test of uniformity
    n, cap, seeds = 200, 20, 400
    counts = np.zeros(n)
    x = np.zeros((n, 1))
    for seed in range(seeds):
        counts[_reservoir(x, cap, seed, 64).row_ids] += 1
    expected = seeds * cap / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    # under uniform inclusion chi2 ~ (1 - cap/n) * chi2(n - 1); the 0.999 quantile bounds it
    assert chi2 < st.chi2.ppf(0.999, n - 1)
    # and the first k rows of a sample (key order) are a uniform sample too
    firsts = np.concatenate([_reservoir(x, cap, s, 64).row_ids[:5] for s in range(seeds)])
    assert st.kstest(firsts / n, "uniform").pvalue > 0.001


def test_key_threshold_prefilter_gives_the_same_sample(rng):
    x = rng.standard_normal((20000, 2))
    plain = _reservoir(x, 300, 4, 97)
    t = key_threshold(20000, 300)
    assert t >= int(hash_rows(np.arange(20000), 4)[plain.row_ids].max())
    r = Reservoir(300, 2, 4, threshold=t)
    for i in range(0, 20000, 97):
        r.push(x[i : i + 97], np.arange(i, min(i + 97, 20000)))
    assert r.complete() and r.prefiltered > 15000
    np.testing.assert_array_equal(r.finalize().row_ids, plain.row_ids)
    assert key_threshold(10, 300) == np.iinfo(np.uint64).max


def test_a_too_tight_prefilter_is_detected(rng):
    x = rng.standard_normal((5000, 2))
    r = Reservoir(300, 2, 4, threshold=int(2**64 * 0.01))  # room for about 50 rows
    r.push(x, np.arange(5000))
    assert not r.complete()
    loose = Reservoir(300, 2, 4)
    loose.push(x, np.arange(5000))
    assert loose.complete() and loose.finalize().keys.size == 300


def test_scratch_blocks_are_per_thread_and_per_slot_and_go_with_their_thread():
    import gc
    import threading
    import weakref

    from latentcheck.engine.accumulators import Scratch

    s = Scratch()
    a, b = s.get(2, 100, 3)
    assert a.shape == b.shape == (100, 3) and not np.shares_memory(a, b)
    assert np.shares_memory(s.get(2, 50, 3)[0], a)  # reused, not reallocated
    assert not np.shares_memory(s.get(1, 100, 3, slot="other")[0], a)
    seen = {}

    def in_thread():
        (c,) = s.get(1, 100, 3)
        seen["shares"] = np.shares_memory(c, a)
        seen["buf"] = weakref.ref(c.base)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    gc.collect()
    assert seen["shares"] is False
    assert seen["buf"]() is None  # freed with the thread
    assert np.shares_memory(s.get(2, 100, 3)[0], a)


def test_exceedance_counts_waiting_values_whenever_read(rng, monkeypatch):
    # values beyond the lowest level wait and are counted in batches (BATCH_VALUES, or when
    # upper, lower, rates, merge or state read them): any batching gives the same counts
    x = (rng.standard_normal((3000, 5)) * 2.0).astype(np.float32)
    center, scale = np.zeros(5), np.ones(5)
    ref_hi = np.stack([(x > k).sum(0) for k in (1.0, 2.0, 3.0)])
    ref_lo = np.stack([(x < -k).sum(0) for k in (1.0, 2.0, 3.0)])

    def run(batch: int, read_every: int) -> Exceedance:
        monkeypatch.setattr(Exceedance, "BATCH_VALUES", batch)
        e = Exceedance([1.0, 2.0, 3.0], center, scale, np.float32)
        for i, ch in enumerate(_chunks(x, 97)):
            e.push(ch)
            if read_every and i % read_every == 0:
                assert e.upper.sum() <= ref_hi.sum()
        return e

    for batch, read_every in ((1, 0), (1 << 16, 0), (500, 3)):
        e = run(batch, read_every)
        np.testing.assert_array_equal(e.upper, ref_hi)
        np.testing.assert_array_equal(e.lower, ref_lo)
    a, b = run(1 << 16, 0), run(1 << 16, 0)
    merged = a.merge(b)
    np.testing.assert_array_equal(merged.upper, 2 * ref_hi)
    np.testing.assert_array_equal(Exceedance.from_state(a.state()).lower, ref_lo)
