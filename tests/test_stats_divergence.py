"""Tests of latentcheck.stats.divergence: kl_gauss, the entropy estimator, negentropy."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np
import pytest
from scipy import integrate, special, stats

from latentcheck.errors import DegenerateDimensionWarning, InputError, SmallSampleWarning
from latentcheck.stats import divergence as dv
from latentcheck.stats import entropy

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
SQRT3 = math.sqrt(3.0)


# ---------------------------------------------------------------------------- kl_gauss


def _kl_by_quad(pdf, pieces):
    """KL(q || N(0, 1)) = ∫ q (ln q + ½ ln 2π + x²/2) dx, by scipy.integrate.quad."""

    def integrand(x):
        f = pdf(x)
        return f * (math.log(f) + HALF_LOG_2PI + 0.5 * x * x) if f > 0 else 0.0

    return sum(
        integrate.quad(integrand, a, b, limit=400, epsabs=1e-12, epsrel=1e-12)[0] for a, b in pieces
    )


@pytest.mark.parametrize(
    ("mu", "sigma"), [(0.0, 1.0), (1.0, 1.0), (0.0, 2.0), (-0.3, 0.4), (2.5, 3.7), (0.1, 0.05)]
)
def test_kl_gauss_matches_numerical_integration(mu, sigma):
    pdf = stats.norm(mu, sigma).pdf
    pieces = [(-np.inf, mu - 10 * sigma), (mu - 10 * sigma, mu), (mu, mu + 10 * sigma)]
    pieces.append((mu + 10 * sigma, np.inf))
    truth = _kl_by_quad(pdf, pieces)
    # quad reaches ~1e-12 absolute; KL(N(0,1) || N(0,1)) = 0 needs the atol.
    np.testing.assert_allclose(dv.kl_gauss(mu, sigma), truth, rtol=1e-9, atol=1e-11)


def test_kl_gauss_is_vectorised_closed_form():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 2, 50)
    s = rng.uniform(0.01, 5, 50)
    expected = 0.5 * (m**2 + s**2 - 1 - np.log(s**2))
    out = dv.kl_gauss(m, s)
    assert out.shape == (50,)
    assert out.dtype == np.float64
    # Away from s = 1 the literal formula loses at most a few ulps.
    np.testing.assert_allclose(out, expected, rtol=1e-12)


@pytest.mark.parametrize("sigma", [1 + 1e-12, 1 - 1e-9, 1 + 1e-6, 1 - 1e-3, 0.8, 1.25, 1.7])
def test_kl_gauss_full_precision_near_unit_std(sigma):
    # ½(s² − 1 − ln s²) in 60-digit decimal arithmetic; Decimal(float) is exact.
    with localcontext() as ctx:
        ctx.prec = 60
        s2 = Decimal(sigma) ** 2
        reference = float((s2 - 1 - s2.ln()) / 2)
    # The series branch keeps full relative precision where the formula cancels.
    np.testing.assert_allclose(dv.kl_gauss(0.0, sigma), reference, rtol=1e-14)


def test_kl_gauss_tiny_huge_and_zero_std_without_warnings():
    out = dv.kl_gauss([0.0, 0.0, 0.0, 3.0, 0.0, 1e200], [1e-300, 1e200, 0.0, np.nan, 1.0, 1.0])
    # s = 1e-300: ½(0 − 1) − ln(1e-300), s² underflows but ln s does not.
    np.testing.assert_allclose(out[0], -0.5 + 300 * math.log(10), rtol=1e-15)
    assert out[1] == np.inf
    assert out[2] == np.inf
    assert np.isnan(out[3])
    assert out[4] == 0.0
    assert out[5] == np.inf


def test_kl_gauss_rejects_negative_std():
    with pytest.raises(InputError, match=r"`std` must be non-negative, got -0.5 at index 1"):
        dv.kl_gauss([0.0, 0.0], [1.0, -0.5])


def test_gaussian_entropy_matches_scipy():
    s = np.array([1e-3, 0.5, 1.0, 2.0, 1e3])
    np.testing.assert_allclose(dv.gaussian_entropy(s), stats.norm(scale=s).entropy(), rtol=1e-14)
    assert dv.gaussian_entropy(0.0) == -np.inf
    with pytest.raises(InputError, match="`std` must be non-negative"):
        dv.gaussian_entropy(-1.0)


# ------------------------------------------------------------------ entropy estimator


def _digamma_correction(n, m):
    """Mean over i of ψ(k_i) − ψ(n + 1), k_i the clamped window sizes, term by term."""
    i = np.arange(n)
    k = np.minimum(i + m, n - 1) - np.maximum(i - m, 0)
    return np.mean(special.digamma(k)) - special.digamma(n + 1)


@pytest.mark.parametrize(("n", "m"), [(50, 1), (50, 7), (1000, 5), (1000, 31), (20000, 141)])
def test_entropy_is_vasicek_plus_digamma_correction(n, m):
    rng = np.random.default_rng(n + m)
    x = np.column_stack([rng.standard_normal(n), rng.exponential(size=n), rng.uniform(size=n)])
    vasicek = stats.differential_entropy(x, window_length=m, method="vasicek", axis=0)
    expected = vasicek - math.log(n / (2 * m)) - _digamma_correction(n, m)
    # Same log-spacings summed in another order: agreement to rounding.
    np.testing.assert_allclose(dv.differential_entropy(x, window=m), expected, rtol=0, atol=1e-12)


def test_entropy_is_unbiased_for_uniform_data():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 1.0, size=(20, 20000))  # 20000 samples of 20 rows; H(U(0,1)) = 0
    h = dv.differential_entropy(x)
    # The ψ terms make E Ĥ = 0 exactly; 4 standard errors of the mean of 20000 draws.
    assert abs(h.mean()) < 4 * h.std() / math.sqrt(h.size)
    # Uncorrected Vasicek with the same window is biased by tens of standard errors here.
    raw = stats.differential_entropy(x, window_length=dv.entropy_window(20), axis=0)
    assert abs(raw.mean()) > 20 * h.std() / math.sqrt(h.size)


def _mixture_pdf(x):
    return 0.5 * stats.norm.pdf(x, -1.5, 0.5) + 0.5 * stats.norm.pdf(x, 1.5, 0.5)


# name: (sampler, pdf, quad pieces)
SHAPES = {
    "uniform": (
        lambda rng, n: rng.uniform(-SQRT3, SQRT3, n),
        stats.uniform(-SQRT3, 2 * SQRT3).pdf,
        [(-SQRT3, SQRT3)],
    ),
    "uniform_shifted": (
        lambda rng, n: rng.uniform(1.0, 3.0, n),
        stats.uniform(1.0, 2.0).pdf,
        [(1.0, 3.0)],
    ),
    "laplace": (
        lambda rng, n: rng.laplace(0.0, 1 / math.sqrt(2), n),
        stats.laplace(0.0, 1 / math.sqrt(2)).pdf,
        [(-np.inf, 0.0), (0.0, np.inf)],
    ),
    "laplace_shifted": (
        lambda rng, n: rng.laplace(1.0, 2.0, n),
        stats.laplace(1.0, 2.0).pdf,
        [(-np.inf, 1.0), (1.0, np.inf)],
    ),
    "student_t5": (
        lambda rng, n: rng.standard_t(5, n),
        stats.t(5).pdf,
        [(-np.inf, 0.0), (0.0, np.inf)],
    ),
    "student_t5_unit": (
        lambda rng, n: rng.standard_t(5, n) * math.sqrt(3 / 5),
        stats.t(5, scale=math.sqrt(3 / 5)).pdf,
        [(-np.inf, 0.0), (0.0, np.inf)],
    ),
    "student_t4_unit": (
        lambda rng, n: rng.standard_t(4, n) * math.sqrt(1 / 2),
        stats.t(4, scale=math.sqrt(1 / 2)).pdf,
        [(-np.inf, 0.0), (0.0, np.inf)],
    ),
    "student_t3": (
        lambda rng, n: rng.standard_t(3, n),
        stats.t(3).pdf,
        [(-np.inf, 0.0), (0.0, np.inf)],
    ),
    "lognormal_0.5": (
        lambda rng, n: rng.lognormal(0.0, 0.5, n),
        stats.lognorm(0.5).pdf,
        [(0.0, 1.0), (1.0, np.inf)],
    ),
    "lognormal_1": (
        lambda rng, n: rng.lognormal(0.0, 1.0, n),
        stats.lognorm(1.0).pdf,
        [(0.0, 1.0), (1.0, np.inf)],
    ),
    "bimodal": (
        lambda rng, n: rng.choice([-1.5, 1.5], n) + rng.normal(0.0, 0.5, n),
        _mixture_pdf,
        [(-np.inf, -1.5), (-1.5, 0.0), (0.0, 1.5), (1.5, np.inf)],
    ),
}

#: Stated accuracy of kl_marginal at 10⁵ rows (the issue asks for "a few hundredths").
KL_TOL = 0.02
#: Shapes whose second moment is estimated well enough at 10⁵ rows for KL_TOL. The
#: cross-entropy part ½(m² + s²) of KL(q || N(0, 1)) carries the sampling noise of s²: for
#: Laplace(1, 2) (s² = 8) its sd is 0.03 nats, for t(3) and lognormal(σ=1) it is heavy-tailed
#: (errors of 0.4-0.9 nats seen in 50 seeds). Those shapes test the entropy estimate alone.
KL_SHAPES = [
    "uniform",
    "uniform_shifted",
    "laplace",
    "student_t5_unit",
    "student_t4_unit",
    "lognormal_0.5",
    "bimodal",
]


@pytest.mark.parametrize("name", KL_SHAPES)
def test_kl_marginal_against_quad_truth(name):
    sampler, pdf, pieces = SHAPES[name]
    rng = np.random.default_rng(12345)
    z = sampler(rng, 100_000)[:, None]
    truth = _kl_by_quad(pdf, pieces)
    est = dv.kl_marginal(z.mean(axis=0), z.std(axis=0), z)
    # Over 50 seeds the worst error on these shapes was 0.014 (t5), 0.020 (t4), <= 0.01 for
    # the others; the estimator's own bias is below 0.002, the rest is sampling noise.
    np.testing.assert_allclose(est, truth, rtol=0, atol=KL_TOL)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_entropy_against_quad_truth(name):
    sampler, pdf, pieces = SHAPES[name]

    def neg_f_log_f(x):
        f = pdf(x)
        return -f * math.log(f) if f > 0 else 0.0

    truth = sum(integrate.quad(neg_f_log_f, a, b, limit=400)[0] for a, b in pieces)
    rng = np.random.default_rng(7)
    z = np.column_stack([sampler(rng, 100_000) for _ in range(4)])
    # Four independent samples; each within 0.015: bias < 0.002 on these shapes, sd of the
    # sample mean of ln f at most 0.0045 (t3).
    np.testing.assert_allclose(dv.differential_entropy(z), truth, rtol=0, atol=0.015)


@pytest.mark.parametrize(("n", "tol"), [(100_000, 0.0015), (5000, 0.01)])
def test_negentropy_of_gaussian_data_is_near_zero(n, tol):
    rng = np.random.default_rng(n)
    z = rng.normal(rng.normal(0, 3, 8), rng.uniform(0.1, 10, 8), size=(n, 8))
    raw = dv.negentropy(z, clip=False)
    # Measured mean/sd of the raw estimate: -0.0002/0.0003 at 10⁵ rows, -0.0008/0.002 at
    # 5000 rows; tol is about 5 sd.
    np.testing.assert_allclose(raw, 0.0, atol=tol)
    clipped = dv.negentropy(z)
    np.testing.assert_array_equal(clipped, np.maximum(raw, 0.0))


def test_negentropy_detects_non_gaussian_data():
    rng = np.random.default_rng(3)
    z = rng.uniform(-1, 1, size=(5000, 1))
    # Negentropy of a uniform law: ½ ln(2πe/12) = 0.1765 nats; 10 sd of the estimate.
    np.testing.assert_allclose(
        dv.negentropy(z), 0.5 * math.log(2 * math.pi * math.e / 12), atol=0.02
    )


@pytest.mark.parametrize(("a", "b"), [(3.7, -2.0), (-0.01, 5.0), (1e6, 1e3), (1e-6, 0.0)])
def test_negentropy_is_affine_invariant(a, b):
    rng = np.random.default_rng(11)
    z = np.column_stack([rng.lognormal(0, 0.5, 20000), rng.laplace(size=20000)])
    # Spacings and the std scale by |a| exactly up to rounding of a*z + b.
    np.testing.assert_allclose(
        dv.negentropy(a * z + b, clip=False), dv.negentropy(z, clip=False), rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        dv.differential_entropy(a * z + b),
        dv.differential_entropy(z) + math.log(abs(a)),
        rtol=0,
        atol=1e-9,
    )


def test_kl_marginal_is_kl_gauss_plus_negentropy():
    rng = np.random.default_rng(5)
    z = rng.standard_t(6, size=(3000, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    mean, std = z.mean(axis=0), z.std(axis=0)
    np.testing.assert_array_equal(
        dv.kl_marginal(mean, std, z), dv.kl_gauss(mean, std) + dv.negentropy(z)
    )


def test_columns_are_independent_of_blocking():
    rng = np.random.default_rng(8)
    n = 60_000  # 17 columns per block of sorted columns: 30 columns make 2 blocks
    z = rng.standard_t(5, size=(n, 30))  # float64: no ties, so no column-seeded jitter
    together = dv.differential_entropy(z)
    alone = np.array([dv.differential_entropy(z[:, [j]])[0] for j in (0, 16, 17, 29)])
    np.testing.assert_array_equal(together[[0, 16, 17, 29]], alone)


# ------------------------------------------------------------------------------ ties


def _round_to_bfloat16(x):
    """Round float64 to the nearest bfloat16 (8 significant bits), returned as float64."""
    bits = x.astype(np.float32).view(np.uint32)
    bits = (bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) & np.uint32(0xFFFF0000)
    return bits.view(np.float32).astype(np.float64)


@pytest.mark.parametrize(
    "quantise",
    [
        lambda x: x.astype(np.float16),
        _round_to_bfloat16,
        lambda x: np.round(x / 0.05) * 0.05,
    ],
    ids=["float16", "bfloat16", "grid_0.05"],
)
def test_quantised_latents_give_the_continuous_estimate(quantise):
    rng = np.random.default_rng(21)
    z = rng.standard_normal((100_000, 2)) * [1.0, 0.7] + [0.0, 0.4]
    q = quantise(z)
    assert np.unique(q[:, 0]).size < 20_000  # many zero spacings without dequantisation
    # The rounding cell is <= 0.05: the dequantised entropy moves by <= 0.05²/24 = 1e-4;
    # the rest is jitter noise (sd ~ 0.0005 measured).
    np.testing.assert_allclose(
        dv.negentropy(q, clip=False), dv.negentropy(z, clip=False), rtol=0, atol=0.002
    )


def _dequantise_reference(row, var, seed, column):
    """The spreading of ties written over every distinct value (the first version)."""
    n = row.size
    starts = np.flatnonzero(np.concatenate(([True], row[1:] != row[:-1])))
    counts = np.diff(np.append(starts, n))
    if starts.size == 1:
        return 0.0, 1
    gaps = np.diff(row[starts])
    width = np.minimum(np.append(gaps[0], gaps), np.append(gaps, gaps[-1]))
    tied = np.repeat(counts > 1, counts)
    cell = np.repeat(width, counts)[tied]
    rng = np.random.default_rng(None if seed is None else [seed, column])
    row[tied] = np.sort(row[tied] + cell * (rng.random(cell.size) - 0.5))
    return float(np.sum(cell**2)) / (12.0 * n) / var, int(starts.size)


@pytest.mark.parametrize("n", [2, 3, 10, 1000, 100_000])
@pytest.mark.parametrize(
    "kind", ["float32", "grid", "three_values", "half_zero", "tied_ends", "one_distinct"]
)
def test_dequantise_matches_the_reference_bit_for_bit(n, kind):
    from latentcheck.stats.entropy import _dequantise

    rng = np.random.default_rng(n)
    z = rng.standard_normal(n)
    row = {
        "float32": z.astype(np.float32).astype(np.float64),
        "grid": np.round(z, 1),
        "three_values": rng.integers(0, 3, n).astype(np.float64),
        "half_zero": np.where(np.arange(n) < n // 2, 0.0, z),
        "tied_ends": np.concatenate([[z.min()] * 3, z, [z.max()] * 3]),
        "one_distinct": np.r_[np.zeros(n - 1), 1.0],
    }[kind]
    row = np.sort(row)
    for seed in (0, 7):
        a, b = row.copy(), row.copy()
        got = _dequantise(a, float(row.var()) or 1.0, seed, 5)
        want = _dequantise_reference(b, float(row.var()) or 1.0, seed, 5)
        assert got == want
        np.testing.assert_array_equal(a, b)


def test_ties_jitter_is_seeded():
    rng = np.random.default_rng(4)
    q = np.round(rng.standard_normal((5000, 2)), 2)
    np.testing.assert_array_equal(dv.negentropy(q, seed=3), dv.negentropy(q, seed=3))
    assert not np.array_equal(dv.negentropy(q, seed=3), dv.negentropy(q, seed=4))
    # seed=None: fresh entropy each call, same estimate up to the jitter noise (~1e-3).
    np.testing.assert_allclose(dv.negentropy(q, seed=None), dv.negentropy(q, seed=3), atol=0.01)


def test_coarse_quantisation_warns():
    rng = np.random.default_rng(6)
    z = np.column_stack([np.round(rng.standard_normal(10_000)), rng.standard_normal(10_000)])
    with pytest.warns(
        DegenerateDimensionWarning,
        match=r"1 dimension\(s\) are coarsely quantised \(first: 0\).* takes \d+ distinct "
        r"values in 10000 rows.* overestimated by about 0\.0\d\d nats",
    ):
        neg = dv.negentropy(z, clip=False)

    # Ties are spread over the unit cells, so the estimate is the negentropy of Y = X + U,
    # X ~ N(0, 1), U ~ U(-½, ½): density Φ(y + ½) − Φ(y − ½), variance 13/12.
    def neg_f_log_f(y):
        f = stats.norm.cdf(y + 0.5) - stats.norm.cdf(y - 0.5)
        return -f * math.log(f) if f > 0 else 0.0

    h_y = sum(integrate.quad(neg_f_log_f, a, b)[0] for a, b in [(-np.inf, 0), (0, np.inf)])
    j_y = 0.5 * math.log(2 * math.pi * math.e * 13 / 12) - h_y
    # Measured over 200 seeds at 10⁴ rows: mean -0.004 (the jumps of the dequantised
    # histogram density), sd 0.0014; the tolerance is 8 sd from the truth.
    np.testing.assert_allclose(neg[0], j_y, atol=0.012)


def test_constant_column_warns_and_gives_nan():
    rng = np.random.default_rng(9)
    z = np.column_stack([rng.standard_normal(1000), np.full(1000, 2.5)])
    with pytest.warns(DegenerateDimensionWarning, match=r"1 dimension\(s\) are constant.*NaN"):
        neg = dv.negentropy(z)
    assert np.isfinite(neg[0])
    assert np.isnan(neg[1])
    with pytest.warns(DegenerateDimensionWarning, match=r"constant.*-inf") as record:
        h = dv.differential_entropy(z)
    assert h[1] == -np.inf
    assert record[0].filename == __file__  # stacklevel points at the caller
    many = np.column_stack([z[:, :1], np.ones((1000, 7))])
    with pytest.warns(DegenerateDimensionWarning, match=r"7 .* \(first: 1, 2, 3, 4, 5, \.\.\.\)"):
        dv.negentropy(many)


def test_too_few_rows_warns_and_gives_nan():
    z = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.warns(SmallSampleWarning, match="needs at least 16 rows, got 10; returning NaN"):
        out = dv.negentropy(z)
    assert out.shape == (3,)
    assert np.isnan(out).all()


@pytest.mark.parametrize(
    ("sample", "kwargs", "match"),
    [
        (
            np.zeros(100),
            {},
            r"Expected `sample` of shape \(n_samples, n_dims\), got shape \(100,\)",
        ),
        (np.r_[np.ones(50), np.nan].reshape(-1, 1), {}, "non-finite values in dimension 0"),
        (np.r_[np.ones(50), -np.inf].reshape(-1, 1), {}, "non-finite values in dimension 0"),
        (np.arange(100.0).reshape(-1, 1), {"window": 0}, "`window` must satisfy"),
        (np.arange(100.0).reshape(-1, 1), {"window": 50}, "`window` must satisfy"),
    ],
)
def test_invalid_input_raises(sample, kwargs, match):
    with pytest.raises(InputError, match=match):
        dv.differential_entropy(sample, **kwargs)


# ------------------------------------------------------------- window and sample size


@pytest.mark.parametrize(("n", "m"), [(16, 1), (1000, 5), (5000, 9), (100_000, 23), (10**6, 50)])
def test_entropy_window_rule(n, m):
    assert dv.entropy_window(n) == m


def test_uniform_correction_matches_term_by_term_digamma():
    for n, m in [(16, 1), (5000, 9), (100_000, 23)]:
        np.testing.assert_allclose(
            entropy.uniform_correction(n, m), _digamma_correction(n, m), rtol=0, atol=1e-12
        )


def test_entropy_sample_size():
    assert dv.entropy_sample_size(10**7, 64) == dv.DEFAULT_ENTROPY_SAMPLE_SIZE == 100_000
    assert dv.entropy_sample_size(10**7, 64) * 64 * 8 <= dv.ENTROPY_MEMORY_LIMIT
    assert dv.entropy_sample_size(10**7, 1024) == 8192
    assert dv.entropy_sample_size(500, 64) == 500
    assert dv.entropy_sample_size(10**7, 10**9) == dv.MIN_ENTROPY_SAMPLES
    assert dv.entropy_sample_size(10**7, 1024, requested=200_000) == 200_000
    assert dv.entropy_sample_size(3000, 8, requested=200_000) == 3000
    with pytest.raises(InputError, match="`requested` must be at least 16 rows, got 10"):
        dv.entropy_sample_size(1000, 8, requested=10)
    with pytest.raises(InputError, match="`n_rows` must be >= 0"):
        dv.entropy_sample_size(-1, 8)


def test_estimator_description_is_printable():
    text = str(dv.ENTROPY_ESTIMATOR)
    assert "Vasicek" in text
    assert "n^(1/3)" in text
    assert "psi(k)" in text
    assert all("(19" in ref for ref in dv.ENTROPY_ESTIMATOR.references)
