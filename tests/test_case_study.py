"""The case study in docs/case-study.md quotes exactly what latentcheck computes.

docs/make_case_study.py runs the tool over the shipped samples and fills the document's
tables and prose; this test regenerates the text in memory and compares it with the committed
file, so a change of any figure (or of the tool's printed output that the document quotes)
fails here until the document is regenerated with ``python docs/make_case_study.py``.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from helpers import assert_document_fresh, load_doc_script


def _load_script() -> ModuleType:
    return load_doc_script("make_case_study")


@pytest.mark.slow
def test_case_study_matches_a_fresh_run() -> None:
    assert_document_fresh("case-study.md", "make_case_study", _load_script().build_case_study())


@pytest.mark.parametrize(
    ("x", "digits", "text"),
    [
        (0.0, 3, "0"),
        (326.46579, 3, "326"),
        (12160.5, 3, "12200"),
        (18.4578, 3, "18.5"),
        (9.996, 3, "10.0"),
        (0.0022598, 2, "0.0023"),
        (-0.0125258, 3, "-0.0125"),
        (1.9731e-09, 2, "2.0e-09"),
        (None, 3, "—"),
        (float("nan"), 3, "—"),
    ],
)
def test_number_format(x: float | None, digits: int, text: str) -> None:
    assert _load_script().num(x, digits) == text


@pytest.mark.parametrize(
    ("p", "text"), [(0.0, "< 1e-300"), (2.03e-125, "2e-125"), (0.7717, "0.77"), (0.01, "0.01")]
)
def test_pvalue_format(p: float, text: str) -> None:
    assert _load_script().pval(p) == text


def test_rewrap_keeps_tables_code_and_bullets() -> None:
    rewrap = _load_script()._rewrap
    text = (
        "A short\nparagraph.\n\n| a | b |\n| --- | --- |\n\n```\nkeep   this\n  as is\n```\n\n"
        "- one bullet that\n  continues\n- two\n"
    )
    assert rewrap(text, width=40) == (
        "A short paragraph.\n\n| a | b |\n| --- | --- |\n\n```\nkeep   this\n  as is\n```\n\n"
        "- one bullet that continues\n- two\n"
    )


@pytest.mark.parametrize(("k", "lam"), [(0, 1.8), (12, 77.6), (59, 77.6), (14, 310.5)])
def test_poisson_cdf_matches_scipy(k: int, lam: float) -> None:
    from scipy.stats import poisson

    # the script sums the pmf in log space; 1e-9 covers the rounding of up to 60 terms
    np.testing.assert_allclose(
        _load_script()._poisson_cdf(k, lam), poisson.cdf(k, lam), rtol=1e-9, atol=1e-300
    )


@pytest.mark.parametrize("length", [1, 2, 4, 7])
def test_axis_factor_is_the_mean_of_the_ar1_correlation_matrix(length: int) -> None:
    rho = np.random.default_rng(length).uniform(-0.9, 0.9, size=5)
    lag = np.abs(np.subtract.outer(np.arange(length), np.arange(length)))
    expected = [np.mean(r**lag) * length for r in rho]
    # both are short sums of powers: agreement to rounding
    np.testing.assert_allclose(_load_script()._axis_factor(rho, length), expected, rtol=1e-12)


def test_item_takes_a_summary_line_and_its_continuations() -> None:
    text = (
        "SUMMARY\n  Normalisation         a\n                          b\n"
        "  Claimed normalisation x\n                          y\n"
        "                        - z\n  Most correlated       w\n"
    )
    assert _load_script()._item(text, "Claimed normalisation") == (
        "  Claimed normalisation x\n                          y\n                        - z"
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mix_moments_match_numerical_integration(seed: int) -> None:
    from scipy.integrate import quad
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    means, stds = rng.normal(0.0, 3.0, size=4), rng.uniform(0.5, 2.5, size=4)
    skew, exk = _load_script()._mix_moments(means, stds)

    def density(x: float) -> float:
        return float(np.mean(norm.pdf(x, means, stds)))

    lo, hi = means.min() - 12 * stds.max(), means.max() + 12 * stds.max()
    mu = quad(lambda x: x * density(x), lo, hi, limit=200)[0]
    m2, m3, m4 = (
        quad(lambda x, k=k: (x - mu) ** k * density(x), lo, hi, limit=200)[0] for k in (2, 3, 4)
    )
    # adaptive quadrature of smooth densities: agreement far below the figures' 2 digits
    np.testing.assert_allclose([skew, exk], [m3 / m2**1.5, m4 / m2**2 - 3.0], atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1])
def test_independent_half_widths_match_the_tool(seed: int) -> None:
    from scipy.stats import kurtosis

    from latentcheck.stats.scale import normalization

    x = np.random.default_rng(seed).gamma(3.0, size=(4000, 3)) * [1.0, 2.0, 0.5]
    n = x.shape[0]
    mean = x.mean(axis=0)
    dev = x - mean
    ref = normalization(n, mean, (dev**2).sum(axis=0), (dev**4).sum(axis=0))
    std = 1.0 / ref.per_dim_scale
    mean_half, std_half = _load_script()._independent_half_widths(
        std, kurtosis(x, axis=0, fisher=True, bias=True), n
    )
    # the same closed forms from the same moments: agreement to rounding
    np.testing.assert_allclose(
        mean_half, np.diff(ref.per_dim_shift_ci, axis=1)[:, 0] / 2, rtol=1e-9
    )
    np.testing.assert_allclose(std_half, std - 1.0 / ref.per_dim_scale_ci[:, 1], rtol=1e-9)
    np.testing.assert_allclose(std_half, 1.0 / ref.per_dim_scale_ci[:, 0] - std, rtol=1e-9)
