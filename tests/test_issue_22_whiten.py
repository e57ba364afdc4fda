"""Issue 22: float32 whitening in pass 2, with float64 wherever a result could change.

The float64 references are independent of the code under test: the squared distances
come from ``np.linalg.solve`` against the covariance (not the Cholesky-based matrix), and
the thresholds from scipy's chi2 quantiles.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from latentcheck.analysis.joint import JointPass
from latentcheck.stats.joint.mahalanobis import MahalanobisAccumulator
from latentcheck.stats.joint.mardia import MardiaAccumulator
from latentcheck.stats.joint.whitening import Whitening, perron_bound


def correlated(n: int, d: int, seed: int, *, mix: float = 0.1, shift: float = 0.0) -> np.ndarray:
    """Float32 rows: Gaussian mixed by I + mix * N(0, 1), t5 in a quarter of the columns."""
    rng = np.random.default_rng(seed)
    a = np.eye(d) + mix * rng.standard_normal((d, d))
    x = rng.standard_normal((n, d)) @ a + shift
    x[:, : d // 4] = rng.standard_t(5, size=(n, d // 4)) + shift
    return x.astype(np.float32)


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0, dtype=np.float64)
    c = x - mean
    return mean, c.T @ c / x.shape[0]


def reference_r2(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """|y|^2 = (x - mean)' cov^-1 (x - mean) in float64, by a linear solve."""
    c = x.astype(np.float64) - mean
    return np.einsum("ij,ij->i", c, np.linalg.solve(cov, c.T).T)


@pytest.mark.parametrize(
    ("d", "mix", "shift"), [(8, 0.0, 0.0), (64, 0.1, 0.0), (64, 0.1, 0.3), (100, 0.05, -0.5)]
)
def test_issue_22_float32_squared_norms_lie_within_the_stated_bound(d, mix, shift) -> None:
    # ‖ŷ - y‖ <= alpha ‖y‖ + beta and |s - ‖ŷ‖²| <= gamma ‖ŷ‖² (SingleWhitening): every
    # row's float64 norm lies in the interval the float32 one gives, which is narrow
    x = correlated(20_000, d, d, mix=mix, shift=shift)
    mean, cov = moments(x)
    w = Whitening.from_moments(mean, cov)
    single = w.single
    assert single is not None
    _, s = single.apply(x)
    assert s.dtype == np.float32
    ref = reference_r2(x, mean, cov)
    s64 = s.astype(np.float64)
    g, a, b = single.gamma, single.alpha, single.beta
    lo = (np.sqrt(s64 / (1 + g)) - b) / (1 + a)
    hi = (np.sqrt(s64 / (1 - g)) + b) / (1 - a)
    assert np.all(lo <= np.sqrt(ref)) and np.all(np.sqrt(ref) <= hi)
    # the bound is useful (band well under 1e-3 at |y|^2 = d) and the errors far inside it
    assert single.surely_above(float(d)) / d - 1 < 1e-3
    err = np.abs(s64 / ref - 1)
    assert err.max() < 2e-6
    assert err.max() < (single.surely_above(float(d)) / d - 1) / 4


def test_issue_22_float32_whitening_is_refused_where_its_band_would_be_wide() -> None:
    # a mean 1e4 standard deviations out (cancellation) or a condition number of 1e10:
    # the float64 whitening alone
    rng = np.random.default_rng(3)
    far = Whitening.from_moments(np.full(16, 1e4), np.eye(16))
    assert far.single is None
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    ill = Whitening.from_moments(np.zeros(16), q @ np.diag(np.logspace(0, -9, 16)) @ q.T)
    assert ill.reason is None and ill.single is None
    assert Whitening.from_moments(np.zeros(16), np.eye(16)).single is not None


def near_thresholds(x: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows placed at the chi2 0.99 / 0.999 thresholds and tied near the top, in float32.

    Returns the float32 rows and the float64 squared distances they were placed at.
    """
    rng = np.random.default_rng(seed)
    mean, cov = moments(x)
    d = x.shape[1]
    chol = np.linalg.cholesky(cov)
    scale = (n - 1.0) / n
    targets = np.concatenate(
        [
            stats.chi2.isf(0.01, d) * (1 + rng.uniform(-1e-6, 1e-6, 400)),
            stats.chi2.isf(0.001, d) * (1 + rng.uniform(-1e-6, 1e-6, 400)),
            1e4 * (1 + rng.uniform(-3e-8, 3e-8, 30)),  # near-ties for the top 10
        ]
    )
    v = rng.standard_normal((targets.size, d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    rows = mean + (np.sqrt(targets / scale)[:, None] * v) @ chol.T
    return rows.astype(np.float32), targets


def test_issue_22_counts_and_top_rows_identical_with_rows_at_the_thresholds() -> None:
    # 830 rows within 1e-6 of a threshold or of each other at the top (30 in one chunk):
    # float32 norms alone put some on the wrong side (checked), the float64 re-whitening of
    # the band and of the top candidates does not
    base = correlated(30_000, 64, 1)
    n = 36_000
    crafted, _ = near_thresholds(base, n, 2)
    x = np.concatenate([base, crafted[:-30], base[: n - base.shape[0] - crafted.shape[0]]])
    rng = np.random.default_rng(4)
    x = x[rng.permutation(n - 30)]
    # the 30 near-ties in one chunk, so that which 10 of them lead is decided there
    x = np.concatenate([x[:5000], crafted[-30:], x[5000:]])
    ids = np.arange(n, dtype=np.int64)
    mean, cov = moments(base)
    w = Whitening.from_moments(mean, cov)
    assert w.single is not None
    results = []
    for rows in (x, x.astype(np.float64)):  # float32 path, float64 path
        acc = MahalanobisAccumulator.from_whitening(w, n, top_k=10)
        for a in range(0, n, 4096):
            acc.push(rows[a : a + 4096], ids[a : a + 4096])
        results.append(acc.result())
    single, double = results
    np.testing.assert_array_equal(single.n_above, double.n_above)
    np.testing.assert_array_equal(single.top_row_ids, double.top_row_ids)
    # the top distances are float64 re-whitenings of those rows: equal to rounding
    np.testing.assert_allclose(single.top_d2, double.top_d2, rtol=1e-14, atol=0)
    # the independent reference, and proof that the case is hard for float32 alone
    d2 = reference_r2(x, mean, cov) * ((n - 1.0) / n)
    t = stats.chi2.isf([0.01, 0.001], 64)
    np.testing.assert_array_equal(single.n_above, [(d2 > ti).sum() for ti in t])
    np.testing.assert_array_equal(single.top_row_ids, np.lexsort((ids, -d2))[:10])
    s = w.single.apply(x)[1].astype(np.float64) * ((n - 1.0) / n)
    assert any(np.count_nonzero((s > ti) != (d2 > ti)) > 0 for ti in t)
    assert set(np.lexsort((ids, -s))[:10]) != set(single.top_row_ids)


def test_issue_22_mardia_kurtosis_from_float32_norms_within_the_bound() -> None:
    # b2p = mean |y|^4 summed in float64 from the float32 norms: relative error at most
    # (1 + e)^2 - 1 with e the band of a single row; observed far smaller
    x = correlated(40_000, 32, 6)
    mean, cov = moments(x)
    w = Whitening.from_moments(mean, cov)
    accs = []
    for rows in (x, x.astype(np.float64)):
        maha = MahalanobisAccumulator.from_whitening(w, x.shape[0])
        mardia = MardiaAccumulator.from_whitening(w)
        for a in range(0, x.shape[0], 4096):
            maha.push(rows[a : a + 4096], np.arange(a, min(a + 4096, x.shape[0])), mardia=mardia)
        accs.append(mardia)
    ref_b2p = float(np.mean(reference_r2(x, mean, cov) ** 2))
    b2p32 = accs[0]._sum_r4 / x.shape[0]
    b2p64 = accs[1]._sum_r4 / x.shape[0]
    assert abs(b2p64 / ref_b2p - 1) < 1e-12
    e = w.single.surely_above(32.0) / 32.0 - 1
    assert abs(b2p32 / ref_b2p - 1) <= (1 + e) ** 2 - 1
    assert abs(b2p32 / ref_b2p - 1) < 1e-6
    z32, z64 = (a.results()[1].statistic for a in accs)
    assert abs(z32 - z64) < 1e-3


def test_issue_22_float32_overflow_falls_back_to_float64() -> None:
    # a row 1e20 standard deviations out overflows float32 squared norms: that chunk is
    # whitened in float64 throughout, and counts and top rows match the float64 path
    x = correlated(5000, 16, 8)
    mean, cov = moments(x)
    x[17, 3] = np.float32(1e20)
    w = Whitening.from_moments(mean, cov)
    out = []
    for rows in (x, x.astype(np.float64)):
        acc = MahalanobisAccumulator.from_whitening(w, 5000, top_k=3)
        acc.push(rows, np.arange(5000))
        out.append(acc.result())
    np.testing.assert_array_equal(out[0].n_above, out[1].n_above)
    np.testing.assert_array_equal(out[0].top_row_ids, out[1].top_row_ids)
    assert out[0].top_row_ids[0] == 17 and np.isfinite(out[0].top_d2[0])


def test_issue_22_joint_pass_float32_and_float64_blocks_agree() -> None:
    # the engine's second-pass accumulator takes the float32 route for float32 blocks
    x = correlated(9000, 24, 9)
    mean, cov = moments(x)
    used = np.arange(24)
    res = []
    for rows in (x, x.astype(np.float64)):
        jp = JointPass.factory(used, mean, cov, 9000, top=5, third=False)()
        for a in range(0, 9000, 2048):
            jp.push(rows[a : a + 2048], np.arange(a, min(a + 2048, 9000), dtype=np.int64))
        res.append((jp.maha.result(), jp.mardia.results()[1]))
    np.testing.assert_array_equal(res[0][0].n_above, res[1][0].n_above)
    np.testing.assert_array_equal(res[0][0].top_row_ids, res[1][0].top_row_ids)
    assert math.isclose(res[0][1].statistic, res[1][1].statistic, rel_tol=1e-5, abs_tol=1e-6)


@pytest.mark.parametrize("d", [5, 64, 200])
def test_issue_22_perron_bound_is_an_upper_bound_and_tight(d: int) -> None:
    rng = np.random.default_rng(d)
    a = np.abs(np.triu(rng.standard_normal((d, d))))
    b = a.T @ a
    exact = np.linalg.norm(a, 2) ** 2
    bound = perron_bound(b)
    assert exact <= bound <= exact * 1.01
    assert exact <= perron_bound(a, gram=True) <= exact * 1.01  # b = aᵀa, never formed
    cov = np.cov(rng.standard_normal((4 * d, d)) @ (np.eye(d) + 0.2 * a / d), rowvar=False)
    assert np.linalg.eigvalsh(cov)[-1] <= perron_bound(np.abs(cov))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_issue_22_exceedance_histogram_counts_match_literal_counts(dtype) -> None:
    # counting the values beyond each level by one (column, levels passed) histogram gives
    # the counts of a literal comparison per level, for tied levels and constant columns too
    from latentcheck.engine.tails import Exceedance

    rng = np.random.default_rng(12)
    x = rng.standard_t(3, size=(30_000, 7)).astype(dtype)
    x[:, 2] = 1.5  # constant column: scale 0, every level's threshold the same
    center = x.mean(0, dtype=np.float64)
    scale = x.std(0, dtype=np.float64)
    levels = [0.5, 2.0, 2.0, 3.0, 6.0]
    acc = Exceedance(levels, center, scale, dtype)
    for a in range(0, 30_000, 4096):
        acc.push(x[a : a + 4096])
    for i, k in enumerate(levels):
        np.testing.assert_array_equal(acc.upper[i], (x > center + k * scale).sum(0))
        np.testing.assert_array_equal(acc.lower[i], (x < center - k * scale).sum(0))
