"""Spatial statistics of conv latents: streaming maps, autocorrelation, ESS, separated positions."""

from __future__ import annotations

import itertools
import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from latentcheck.errors import DegenerateDimensionWarning, InputError, SmallSampleWarning
from latentcheck.stats.spatial.correlation import (
    SpatialAccumulator,
    effective_sample_size,
    separated_rows,
    separation_gap,
    spatial_statistics,
    variance_inflation,
    well_separated_positions,
)

# float64 sums over at most a few hundred rows, in a different order than numpy's: the
# results agree to a few ulps of the largest intermediate, far below 1e-10
RTOL = 1e-10
ATOL = 1e-12


def ar1_field(
    rng: np.random.Generator, n: int, rhos: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """Return n samples (n, C, *shape) of a unit-variance separable AR(1) field.

    `rhos` has shape (n_axes, C). A stationary AR(1) recursion along one axis, applied in
    turn along every axis, gives Corr(x_p, x_q) = Π_a ρ_a^|p_a − q_a| (the covariance is
    the Kronecker product of the per-axis AR(1) correlation matrices).
    """
    c = rhos.shape[1]
    x = rng.standard_normal((n, c, *shape))
    for a in range(len(shape)):
        y = np.moveaxis(x, 2 + a, 0)
        r = rhos[a].reshape((1, c) + (1,) * (len(shape) - 1))
        innov = np.sqrt(1.0 - r * r)
        for t in range(1, shape[a]):
            y[t] = r * y[t - 1] + innov * y[t]
    return x


def conv_data(rng: np.random.Generator, n: int = 40, shape: tuple[int, ...] = (6, 5)):
    """Return correlated conv latents with per-channel offsets and scales, shape (n, 3, *shape)."""
    rhos = np.array([[0.5, -0.3, 0.8], [0.2, 0.6, 0.0], [0.4, 0.1, 0.3]])[: len(shape)]
    x = ar1_field(rng, n, rhos, shape)
    scale = np.array([1.0, 3.0, 0.5]).reshape((1, 3) + (1,) * len(shape))
    offset = np.array([0.0, -2.0, 10.0]).reshape((1, 3) + (1,) * len(shape))
    return x * scale + offset


def reference_autocorrelation(x: np.ndarray) -> np.ndarray:
    """Literal transcription: mean neighbour product about the channel mean / channel variance."""
    k = x.ndim - 2
    out = np.empty((k, x.shape[1]))
    for c in range(x.shape[1]):
        xc = x[:, c]
        mu = xc.mean()
        var = ((xc - mu) ** 2).mean()
        for a in range(k):
            lo = np.take(xc, np.arange(xc.shape[1 + a] - 1), axis=1 + a)
            hi = np.take(xc, np.arange(1, xc.shape[1 + a]), axis=1 + a)
            out[a, c] = np.mean((lo - mu) * (hi - mu)) / var
    return out


def reference_pearson(x: np.ndarray) -> np.ndarray:
    """np.corrcoef of the array and its copy shifted by one along each spatial axis."""
    k = x.ndim - 2
    out = np.empty((k, x.shape[1]))
    for c, a in itertools.product(range(x.shape[1]), range(k)):
        xc = x[:, c]
        lo = np.take(xc, np.arange(xc.shape[1 + a] - 1), axis=1 + a)
        hi = np.take(xc, np.arange(1, xc.shape[1 + a]), axis=1 + a)
        out[a, c] = np.corrcoef(lo.ravel(), hi.ravel())[0, 1]
    return out


def push_chunks(acc: SpatialAccumulator, x: np.ndarray, chunk: int) -> SpatialAccumulator:
    for i in range(0, x.shape[0], chunk):
        acc.push(x[i : i + chunk])
    return acc


def channel_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    axes = (0, *range(2, x.ndim))
    return x.mean(axis=axes), x.std(axis=axes)


# ---------------------------------------------------------------------------------------
# streaming equals one-shot numpy
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk", [1, 7, 40, 41])
def test_streaming_equals_numpy(dtype: type, chunk: int) -> None:
    rng = np.random.default_rng(1)
    x = conv_data(rng).astype(dtype)
    x64 = x.astype(np.float64)
    mean, std = channel_moments(x64)
    acc = push_chunks(SpatialAccumulator(3, (6, 5), mean=mean, std=std), x, chunk)
    res = spatial_statistics(acc)
    assert res.n_items == 40 and res.n_dropped_items == 0
    np.testing.assert_allclose(res.mean_map, x64.mean(axis=0), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(res.std_map, x64.std(axis=0), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(res.autocorrelation, reference_autocorrelation(x64), atol=ATOL)
    np.testing.assert_allclose(res.autocorrelation_pearson, reference_pearson(x64), atol=ATOL)
    m = mean.reshape(1, 3, 1, 1)
    s = std.reshape(1, 3, 1, 1)
    for i, k in enumerate((3.0, 4.0)):
        expected = ((x64 > m + k * s) | (x64 < m - k * s)).mean(axis=0)
        # counts are integers, compared exactly (thresholds are exact in the input dtype)
        np.testing.assert_array_equal(res.outlier_rate_map[i], expected)
    assert res.outlier_rate_map[0].sum() > 0


@pytest.mark.parametrize("chunk", [1, 7, 40])
def test_rows_layout_equals_items_layout(chunk: int) -> None:
    rng = np.random.default_rng(2)
    x = conv_data(rng).astype(np.float32)
    mean, std = channel_moments(x.astype(np.float64))
    items = push_chunks(SpatialAccumulator(3, (6, 5), mean=mean, std=std), x, chunk)
    rows = np.moveaxis(x, 1, -1).reshape(-1, 3)  # LatentSource layout: channels last
    acc = SpatialAccumulator(3, (6, 5), mean=mean, std=std)
    p = 30
    for i in range(0, 40, chunk):
        lo, hi = i * p, min(i + chunk, 40) * p
        acc.push(rows[lo:hi], np.arange(lo, hi, dtype=np.int64))
    a, b = spatial_statistics(items), spatial_statistics(acc)
    np.testing.assert_allclose(b.mean_map, a.mean_map, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(b.std_map, a.std_map, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(b.autocorrelation, a.autocorrelation, atol=ATOL)
    np.testing.assert_array_equal(b.outlier_rate_map, a.outlier_rate_map)


@pytest.mark.parametrize("shape", [(9,), (4, 5, 3)])
def test_other_spatial_ranks(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    x = conv_data(rng, n=30, shape=shape)
    res = spatial_statistics(push_chunks(SpatialAccumulator(3, shape), x, 7))
    assert res.autocorrelation.shape == (len(shape), 3)
    np.testing.assert_allclose(res.autocorrelation, reference_autocorrelation(x), atol=ATOL)
    np.testing.assert_allclose(res.autocorrelation_pearson, reference_pearson(x), atol=ATOL)
    np.testing.assert_allclose(res.std_map, x.std(axis=0), rtol=RTOL, atol=ATOL)
    assert res.outlier_rate_map is None


def test_large_offset_does_not_cancel() -> None:
    # a 1e6 offset with unit spread: raw power sums would lose ~12 digits of the variance
    rng = np.random.default_rng(4)
    x = conv_data(rng) + 1e6
    res = spatial_statistics(push_chunks(SpatialAccumulator(3, (6, 5)), x, 7))
    np.testing.assert_allclose(res.std_map, x.std(axis=0), rtol=1e-8)
    np.testing.assert_allclose(res.autocorrelation, reference_autocorrelation(x), atol=1e-8)


# ---------------------------------------------------------------------------------------
# merge, identity, state
# ---------------------------------------------------------------------------------------


def _assert_same_state(a: SpatialAccumulator, b: SpatialAccumulator, rtol: float = 0.0) -> None:
    sa, sb = a.state(), b.state()
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_allclose(sa[key], sb[key], rtol=rtol, atol=ATOL if rtol else 0)


def test_merge_matches_one_shot_and_is_associative() -> None:
    rng = np.random.default_rng(5)
    x = conv_data(rng, n=45)
    mean, std = channel_moments(x)

    def make() -> SpatialAccumulator:
        return SpatialAccumulator(3, (6, 5), mean=mean, std=std)

    whole = push_chunks(make(), x, 45)
    parts = [push_chunks(make(), x[s], 4) for s in (slice(0, 10), slice(10, 31), slice(31, 45))]
    left = (parts[0] + parts[1]) + parts[2]
    right = parts[0].merge(parts[1].merge(parts[2]))
    _assert_same_state(left, whole, rtol=RTOL)
    _assert_same_state(right, whole, rtol=RTOL)
    _assert_same_state(parts[1] + parts[0] + parts[2], whole, rtol=RTOL)


def test_empty_is_identity() -> None:
    rng = np.random.default_rng(6)
    x = conv_data(rng)
    mean, std = channel_moments(x)
    acc = push_chunks(SpatialAccumulator(3, (6, 5), mean=mean, std=std), x, 7)
    empty = SpatialAccumulator(3, (6, 5), mean=mean, std=std)
    _assert_same_state(empty + acc, acc)
    _assert_same_state(acc + empty, acc)
    acc.push(x[:0])
    _assert_same_state(acc + empty, acc)


def test_state_and_pickle_round_trip() -> None:
    rng = np.random.default_rng(7)
    x = conv_data(rng)
    mean, std = channel_moments(x)
    for acc in (
        push_chunks(SpatialAccumulator(3, (6, 5), mean=mean, std=std, levels=(2, 5)), x, 9),
        push_chunks(SpatialAccumulator(3, (6, 5)), x, 9),
    ):
        _assert_same_state(SpatialAccumulator.from_state(acc.state()), acc)
        _assert_same_state(pickle.loads(pickle.dumps(acc)), acc)


def test_merge_refuses_different_accumulators() -> None:
    a = SpatialAccumulator(3, (6, 5))
    with pytest.raises(InputError, match="Cannot merge spatial accumulators"):
        a.merge(SpatialAccumulator(3, (5, 6)))
    with pytest.raises(InputError, match="Cannot merge spatial accumulators"):
        a.merge(SpatialAccumulator(3, (6, 5), mean=np.zeros(3), std=np.ones(3)))


small_blocks = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.just(2), st.just(3), st.just(4)),
    elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=40, deadline=None)
@given(a=small_blocks, b=small_blocks, seed=st.integers(0, 2**32 - 1))
def test_merge_commutes_and_shuffling_items_changes_nothing(
    a: np.ndarray, b: np.ndarray, seed: int
) -> None:
    acc_a, acc_b = SpatialAccumulator(2, (3, 4)), SpatialAccumulator(2, (3, 4))
    acc_a.push(a)
    acc_b.push(b)
    both = np.concatenate([a, b])
    shuffled = SpatialAccumulator(2, (3, 4))
    shuffled.push(both[np.random.default_rng(seed).permutation(both.shape[0])])
    ab, ba = (acc_a + acc_b).state(), (acc_b + acc_a).state()
    # sums of squares of values up to 1e3 over <= 12 rows: rounding stays below 1e-6
    for key in ("mean", "m2", "cross"):
        np.testing.assert_allclose(ab[key], ba[key], rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(ab[key], shuffled.state()[key], rtol=1e-9, atol=1e-6)


# ---------------------------------------------------------------------------------------
# dropped samples, validation, warnings
# ---------------------------------------------------------------------------------------


def test_nonfinite_samples_are_dropped_and_counted() -> None:
    rng = np.random.default_rng(8)
    x = conv_data(rng)
    bad = x.copy()
    bad[3, 1, 2, 2] = np.nan
    bad[17, 0, 0, 4] = np.inf
    acc = push_chunks(SpatialAccumulator(3, (6, 5)), bad, 7)
    ref = push_chunks(SpatialAccumulator(3, (6, 5)), np.delete(x, [3, 17], axis=0), 7)
    res, expected = spatial_statistics(acc), spatial_statistics(ref)
    assert res.n_dropped_items == 2 and res.n_items == 38
    np.testing.assert_allclose(res.std_map, expected.std_map, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(res.autocorrelation, expected.autocorrelation, atol=ATOL)


def test_incomplete_rows_drop_their_sample() -> None:
    rng = np.random.default_rng(9)
    x = conv_data(rng, n=10)
    rows = np.moveaxis(x, 1, -1).reshape(-1, 3)
    ids = np.arange(rows.shape[0], dtype=np.int64)
    keep = np.ones(rows.shape[0], dtype=bool)
    keep[[2 * 30 + 7, 2 * 30 + 8, 5 * 30]] = False  # rows of samples 2 and 5 removed
    acc = SpatialAccumulator(3, (6, 5))
    acc.push(rows[keep], ids[keep])
    ref = push_chunks(SpatialAccumulator(3, (6, 5)), np.delete(x, [2, 5], axis=0), 10)
    assert acc.n == 8 and acc.n_dropped == 2
    _assert_same_state_maps(acc, ref)


def _assert_same_state_maps(a: SpatialAccumulator, b: SpatialAccumulator) -> None:
    for key in ("mean", "m2", "cross"):
        np.testing.assert_allclose(a.state()[key], b.state()[key], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SpatialAccumulator(0, (4, 4)), "`n_channels` must be at least 1"),
        (lambda: SpatialAccumulator(2, ()), "`spatial_shape` must have at least one axis"),
        (lambda: SpatialAccumulator(2, (4, 0)), "`spatial_shape` must be at least 1"),
        (lambda: SpatialAccumulator(2, (4, 4), mean=np.zeros(2)), "Give both `mean` and `std`"),
        (
            lambda: SpatialAccumulator(2, (4, 4), mean=np.zeros(3), std=np.ones(3)),
            r"`mean` must have shape \(2,\)",
        ),
    ],
)
def test_constructor_errors(make, match: str) -> None:
    with pytest.raises(InputError, match=match):
        make()


def test_push_errors() -> None:
    acc = SpatialAccumulator(3, (6, 5))
    with pytest.raises(InputError, match=r"Expected blocks of shape \(n, 3, 6, 5\)"):
        acc.push(np.zeros((2, 6, 5, 3)))
    with pytest.raises(InputError, match="not a multiple of 30"):
        acc.push(np.zeros((31, 3)))
    with pytest.raises(InputError, match="Expected rows of 3 channels"):
        acc.push(np.zeros((30, 4)))


def test_empty_accumulator_warns_and_gives_nan() -> None:
    acc = SpatialAccumulator(2, (4, 4), mean=np.zeros(2), std=np.ones(2))
    with pytest.warns(SmallSampleWarning, match="0 items, 0 dropped"):
        res = spatial_statistics(acc)
    assert np.isnan(res.autocorrelation).all() and np.isnan(res.effective_sample_size).all()
    assert np.isnan(res.outlier_rate_map).all()


def test_constant_channel_warns() -> None:
    rng = np.random.default_rng(10)
    x = conv_data(rng)
    x[:, 2] = 4.0
    acc = push_chunks(SpatialAccumulator(3, (6, 5)), x, 7)
    with pytest.warns(DegenerateDimensionWarning, match=r"channels \[2\]"):
        res = spatial_statistics(acc)
    assert np.isnan(res.autocorrelation[:, 2]).all() and np.isnan(res.effective_sample_size[2])
    np.testing.assert_allclose(res.autocorrelation[:, :2], reference_autocorrelation(x[:, :2]))


def test_to_jsonable_is_nested_lists_without_nan() -> None:
    rng = np.random.default_rng(11)
    x = conv_data(rng, shape=(1, 5))  # a length-1 axis has no neighbours: NaN → None
    mean, std = channel_moments(x)
    res = spatial_statistics(push_chunks(SpatialAccumulator(3, (1, 5), mean=mean, std=std), x, 7))
    out = res.to_jsonable()
    json.dumps(out, allow_nan=False)
    assert out["autocorrelation"][0] == [None, None, None]
    assert len(out["mean_map"]) == 3 and len(out["mean_map"][0]) == 1
    assert len(out["outlier_rate_map"]) == 2
    assert out["spatial_shape"] == [1, 5]


# ---------------------------------------------------------------------------------------
# AR(1) fields: recovery of ρ, effective sample size
# ---------------------------------------------------------------------------------------


def test_ar1_field_recovers_rho() -> None:
    rng = np.random.default_rng(12)
    rhos = np.array([[0.6, 0.2, -0.4], [0.3, 0.85, 0.0]])
    x = ar1_field(rng, 300, rhos, (16, 16))
    res = spatial_statistics(push_chunks(SpatialAccumulator(3, (16, 16)), x, 64))
    # 72,000 neighbour pairs per axis and channel; with the spatial correlation the standard
    # error of r is below 0.01 for these ρ, so 0.03 is more than 3 standard errors
    np.testing.assert_allclose(res.autocorrelation, rhos, atol=0.03)
    np.testing.assert_allclose(res.autocorrelation_pearson, rhos, atol=0.03)


def bayley_hammersley(rho: float, length: int) -> float:
    """Closed form of (1/L) Σ_{s,t} ρ^|s−t| (Bayley & Hammersley 1946), for ρ ≠ 1."""
    return (1 + rho) / (1 - rho) - 2 * rho * (1 - rho**length) / (length * (1 - rho) ** 2)


def ar1_corr(rho: float, length: int) -> np.ndarray:
    idx = np.arange(length)
    return rho ** np.abs(idx[:, None] - idx[None, :])


@pytest.mark.parametrize(
    ("rho_h", "rho_w"), [(0.0, 0.0), (0.5, 0.2), (0.9, -0.3), (-0.6, 0.99), (1.0, 0.4)]
)
def test_variance_inflation_equals_brute_force(rho_h: float, rho_w: float) -> None:
    h, w = 5, 7
    # Var(mean) · HW / σ² = 1ᵀ (R_H ⊗ R_W) 1 / (HW) for the full 35 × 35 correlation matrix
    big = np.kron(ar1_corr(rho_h, h), ar1_corr(rho_w, w))
    brute = big.sum() / (h * w)
    np.testing.assert_allclose(variance_inflation((h, w), [rho_h, rho_w]), brute, rtol=1e-12)
    np.testing.assert_allclose(
        effective_sample_size(10, (h, w), [rho_h, rho_w]), 10 * h * w / brute, rtol=1e-12
    )
    if rho_h != 1.0:
        closed = bayley_hammersley(rho_h, h) * bayley_hammersley(rho_w, w)
        np.testing.assert_allclose(variance_inflation((h, w), [rho_h, rho_w]), closed, rtol=1e-9)


def test_variance_inflation_per_channel_shape() -> None:
    rho = np.array([[0.1, 0.5, np.nan], [0.2, 0.5, 0.0]])
    vif = variance_inflation((8, 8), rho)
    assert vif.shape == (3,)
    expected = [
        bayley_hammersley(0.1, 8) * bayley_hammersley(0.2, 8),
        bayley_hammersley(0.5, 8) ** 2,
    ]
    np.testing.assert_allclose(vif[:2], expected, rtol=1e-12)
    assert vif[2] == 1.0  # NaN (no neighbours) counts as independent
    with pytest.raises(InputError, match="one row per spatial axis"):
        variance_inflation((8, 8), [0.1, 0.2, 0.3])


def test_effective_sample_size_matches_simulated_variance_of_mean() -> None:
    rng = np.random.default_rng(13)
    rhos = np.array([[0.7], [0.4]])
    fields = ar1_field(rng, 6000, rhos, (8, 8))
    means = fields.reshape(6000, -1).mean(axis=1)
    simulated = means.var(ddof=1) * 64  # Var(mean) · HW for unit-variance fields
    # the sample variance of 6000 Gaussian means has relative SE √(2/5999) ≈ 1.8%: rtol 0.08
    np.testing.assert_allclose(simulated, variance_inflation((8, 8), rhos[:, 0]), rtol=0.08)
    acc = SpatialAccumulator(1, (8, 8))
    acc.push(fields[:500])
    res = spatial_statistics(acc)
    # ESS from the estimated ρ: within the 0.03 tolerance on ρ, the VIF moves by < 20%
    np.testing.assert_allclose(
        res.effective_sample_size, 500 * 64 / variance_inflation((8, 8), rhos), rtol=0.2
    )
    np.testing.assert_allclose(
        res.variance_inflation * res.effective_sample_size, 500 * 64, rtol=1e-12
    )


# ---------------------------------------------------------------------------------------
# well-separated positions
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "gap"), [((8, 8), 3), ((7, 10), (2, 4)), ((5,), 1), ((4, 5, 6), 2), ((3, 3), 5)]
)
def test_well_separated_positions(shape: tuple[int, ...], gap) -> None:
    pos = well_separated_positions(shape, gap)
    gaps = (gap,) * len(shape) if isinstance(gap, int) else gap
    coords = np.stack(np.unravel_index(pos, shape), axis=1)
    for i, j in itertools.combinations(range(len(pos)), 2):
        d = np.abs(coords[i] - coords[j])
        # some axis separates the pair by at least its gap
        assert any(d[a] >= gaps[a] for a in range(len(shape)))
    expected_count = np.prod([(s - 1) // g + 1 for s, g in zip(shape, gaps, strict=True)])
    assert pos.size == expected_count
    assert np.all(np.diff(pos) > 0)


def test_well_separated_positions_errors() -> None:
    with pytest.raises(InputError, match="one per spatial axis"):
        well_separated_positions((4, 4), (1, 2, 3))
    with pytest.raises(InputError, match="`min_gap` must be at least 1"):
        well_separated_positions((4, 4), 0)


@pytest.mark.parametrize("rho", [0.0, 0.04, 0.3, 0.6, -0.8, 0.95, 1.0])
def test_separation_gap_is_smallest_gap_below_threshold(rho: float) -> None:
    (gap,) = separation_gap([rho], (64,))
    expected = next(g for g in range(1, 65) if abs(rho) ** g < 0.05 or g == 64)
    assert gap == expected
    (capped,) = separation_gap([rho], (64,), max_gap=4)
    assert capped == min(expected, 4)


def test_separation_gap_uses_worst_channel_per_axis() -> None:
    gaps = separation_gap(np.array([[0.1, 0.6], [0.3, np.nan]]), (32, 32))
    assert gaps == (6, 3)  # 0.6^6 = 0.047 < 0.05 ≤ 0.6^5; 0.3^3 = 0.027 < 0.05 ≤ 0.3^2


def test_statistics_use_separated_positions() -> None:
    rng = np.random.default_rng(14)
    x = ar1_field(rng, 200, np.array([[0.6], [0.3]]), (16, 16))
    res = spatial_statistics(push_chunks(SpatialAccumulator(1, (16, 16)), x, 50))
    assert res.separation_gap == separation_gap(res.autocorrelation, (16, 16))
    np.testing.assert_array_equal(
        res.separated_positions, well_separated_positions((16, 16), res.separation_gap)
    )
    ids = np.arange(3 * 256, dtype=np.int64)
    mask = separated_rows(ids, 256, res.separated_positions)
    np.testing.assert_array_equal(np.flatnonzero(mask[:256]), res.separated_positions)
    assert mask.sum() == 3 * res.separated_positions.size


def test_rows_without_ids_integers_and_empty_blocks() -> None:
    rng = np.random.default_rng(15)
    x = np.round(conv_data(rng, n=12) * 4).astype(np.int32)
    x64 = x.astype(np.float64)
    mean, std = channel_moments(x64)
    ref = push_chunks(SpatialAccumulator(3, (6, 5), mean=mean, std=std), x64, 12)
    acc = SpatialAccumulator(3, (6, 5), mean=mean, std=std)
    acc.push(np.moveaxis(x, 1, -1).reshape(-1, 3))
    acc.push(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    acc.push(np.zeros((0, 3, 6, 5)))
    _assert_same_state(acc, ref, rtol=RTOL)


def test_spatial_shape_must_be_a_sequence() -> None:
    with pytest.raises(InputError, match="`spatial_shape` must be a sequence of positive integers"):
        SpatialAccumulator(2, 5)  # type: ignore[arg-type]
