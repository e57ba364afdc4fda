"""Issue 22: the Kolmogorov–Smirnov p-values of the small report without 3 ms per column.

``stats.kolmogorov.kstwo_sf`` is ``scipy.stats.kstwo.sf``: scipy's own function wherever
scipy does not double its one-sided sum, and the same Birnbaum–Tingey sum evaluated
vectorised where it does. Checked against scipy on a grid of n and D, against the sum
computed in 50-digit decimals (an independent reference), and its parts (Loader's
stirlerr and bd0) against decimals too.
"""

from __future__ import annotations

import math
from decimal import Decimal, getcontext
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats as st

from latentcheck.stats.kolmogorov import bd0, kstwo_sf, smirnov_sf, stirlerr

PI = Decimal("3.14159265358979323846264338327950288419716939937510")


def _rtol(p: np.ndarray) -> np.ndarray:
    """The stated agreement: 5e-15 (1 + |ln p|) relative (each term's log carries a few
    units of rounding in |ln p|; measured worst 4.1e-15 (1 + |ln p|) on this grid's n)."""
    return 5e-15 * (1.0 - np.log(p))


def _smirnov_decimal(n: int, x: float) -> float:
    """P(D+_n >= x) by the Birnbaum–Tingey sum in 50-digit decimal arithmetic."""
    getcontext().prec = 50
    big_x, big_n = Decimal(x), Decimal(n)
    total = Decimal(0)
    for j in range(math.ceil(n - n * Fraction(x))):
        q = (big_n - j) / big_n - big_x
        p = big_x + Decimal(j) / big_n
        total += Decimal(math.comb(n, j)) * q ** (n - j) * p ** (j - 1)
    return float(big_x * total)


def test_issue_22_stirlerr_matches_decimal() -> None:
    getcontext().prec = 50
    k = np.arange(1.0, 60.0)
    ref = [
        float(
            Decimal(math.factorial(int(i))).ln()
            - (Decimal(int(i)) + Decimal("0.5")) * Decimal(int(i)).ln()
            + Decimal(int(i))
            - (2 * PI).ln() / 2
        )
        for i in k
    ]
    # the table: the correctly rounded values; the series above 15: its truncation,
    # 691 / (360360 k^11) < 1.2e-16 absolute (a term of ln b, itself of order 1 or more)
    np.testing.assert_allclose(stirlerr(k[:15]), ref[:15], rtol=1.2e-16, atol=0)
    np.testing.assert_allclose(stirlerr(k[15:]), ref[15:], rtol=4.5e-16, atol=1.2e-16)


def test_issue_22_bd0_matches_decimal_on_and_off_the_series() -> None:
    getcontext().prec = 50
    x = np.array([3.0, 100.0, 2500.0, 2500.0, 4750.0, 10.0, 1.0])
    m = np.array([3.5, 130.0, 2750.0, 2250.0, 4500.0, 200.0, 251.5])  # |v| from .02 to .99
    got = bd0(x, m)
    ref = [
        float(Decimal(a) * (Decimal(a) / Decimal(b)).ln() + Decimal(b) - Decimal(a))
        for a, b in zip(x, m, strict=True)
    ]
    # series (|v| < 1/2): a few ulp of the result; direct form: of x ln(x/m), up to 30x more
    np.testing.assert_allclose(got[:5], ref[:5], rtol=2e-15)
    np.testing.assert_allclose(got[5:], ref[5:], rtol=1e-14)


@pytest.mark.parametrize("n", [141, 500, 2000])
def test_issue_22_smirnov_sf_matches_the_sum_in_decimals(n: int) -> None:
    rng = np.random.default_rng(n)
    lo, hi = math.sqrt(2.2 / n), min(0.49, math.sqrt(369.0 / n))
    x = np.sort(rng.uniform(lo, hi, 4))
    ref = np.array([_smirnov_decimal(n, float(v)) for v in x])
    got = smirnov_sf(n, x)
    assert np.all(np.abs(got / ref - 1) <= _rtol(ref)), (got / ref - 1, ref)


@pytest.mark.parametrize("n", [1, 2, 7, 100, 140, 141, 150, 777, 1000, 5000, 20000])
def test_issue_22_kstwo_sf_matches_scipy_on_a_grid(n: int) -> None:
    rng = np.random.default_rng(22 + n)
    lo, hi = math.sqrt(2.2 / n), min(0.49, math.sqrt(369.9 / n))
    if lo >= hi:  # n < 9: no doubled one-sided sum in scipy; any D
        lo, hi = 0.02, 0.9
    edges = [lo, hi, 1.0 / n, 1.5 / n, 0.5, 0.49999, 1.0 - 1.5 / n, 0.0, 1.0, np.nan]
    x = np.concatenate([rng.uniform(0.5 * lo, 1.1 * hi, 40), edges])
    x = x[(x >= 0) & (x <= 1) | np.isnan(x)]
    got = kstwo_sf(x, n)
    ref = st.kstwo.sf(x, n)
    t, nxsq = n * x, n * x * x
    fast = (n > 140) & (t > 1) & (t < n - 1) & (x < 0.5) & (nxsq >= 2.2) & (nxsq < 370)
    # outside the doubled one-sided sum: scipy's own function, to the last bit
    np.testing.assert_array_equal(got[~fast], ref[~fast])
    normal = fast & (ref > 1e-300)
    assert np.all(np.abs(got[normal] / ref[normal] - 1) <= _rtol(ref[normal]))
    # p-values that underflow to subnormals agree to their absolute resolution
    np.testing.assert_allclose(got[fast & ~normal], ref[fast & ~normal], rtol=0, atol=1e-300)
    if n >= 150:
        assert normal.sum() >= 20  # the grid does reach the vectorised sum


def test_issue_22_ks_prior_at_n_5000_is_kstest_within_the_stated_precision() -> None:
    from latentcheck.stats.normality import ks_prior

    rng = np.random.default_rng(5000)
    # columns off N(0, 1) by 2-30 %: p-values from 1e-3 down to 1e-150 (the doubled sum)
    x = rng.standard_normal((5000, 12)) * np.linspace(0.7, 1.3, 12) + np.linspace(-0.2, 0.2, 12)
    d, p = ks_prior(x)
    for j in range(x.shape[1]):
        ref = st.kstest(x[:, j], "norm")
        assert d[j] == ref.statistic
        assert abs(p[j] / ref.pvalue - 1) <= _rtol(np.array(ref.pvalue)), (j, p[j], ref)
