"""Issue 22 (and 18's "small inputs are fast"): the report of a small file does no work,
and imports nothing, that its figures do not need.

The Lilliefors test is statsmodels' figures computed without importing statsmodels (which
pulls in pandas, 0.2 CPU-s): they are checked here against statsmodels itself, to the
last bit, on every branch of its p-value (Dallal-Wilkinson below 0.1, the table above it,
the table's bounds, sample sizes inside the table, interpolated and beyond it).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from statsmodels.stats.diagnostic import lilliefors

from latentcheck.stats.lilliefors import lilliefors_columns
from latentcheck.stats.normality import univariate_tests


def _columns(rng: np.random.Generator, n: int) -> np.ndarray:
    """Columns from N(0,1) (p mostly from the table) to far from it (Dallal-Wilkinson)."""
    return np.column_stack(
        [
            rng.standard_normal(n),
            3.0 * rng.standard_normal(n) - 2.0,
            rng.standard_t(8, n),
            rng.standard_t(3, n),
            rng.exponential(size=n),
            rng.uniform(size=n),
            rng.standard_normal(n) ** 3,
        ]
    )


# 4 and 1600 are the table's ends, 23 and 1000 between its rows, 100/101 Dallal-Wilkinson's
# switch to the n = 100 formula, 1601 and 5000 the asymptotic critical values, 9000 a
# column longer than numpy's 8192-element reduction buffer
@pytest.mark.parametrize("n", [4, 5, 23, 100, 101, 1000, 1600, 1601, 5000, 9000])
def test_issue_22_lilliefors_equals_statsmodels_to_the_last_bit(n: int) -> None:
    rng = np.random.default_rng(n)
    x = _columns(rng, n)
    stat, pval = lilliefors_columns(x)
    ref = [lilliefors(x[:, j], dist="norm", pvalmethod="approx") for j in range(x.shape[1])]
    np.testing.assert_array_equal(stat, [r[0] for r in ref])
    np.testing.assert_array_equal(pval, [r[1] for r in ref])


def test_issue_22_lilliefors_covers_every_branch_of_the_pvalue() -> None:
    """Across seeds, p-values land in each regime: DW (< 0.1), table, and both bounds."""
    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        for n in (20, 1000, 5000):
            x = _columns(rng, n)
            _, pval = lilliefors_columns(x)
            ref = np.array([lilliefors(c, dist="norm", pvalmethod="approx")[1] for c in x.T])
            np.testing.assert_array_equal(pval, ref)
            seen.update("dw" for p in pval if p <= 0.1)
            seen.update("table" for p in pval if 0.1 < p < 0.99)
            seen.update("upper bound" for p in pval if p == 0.99)
    assert seen == {"dw", "table", "upper bound"}


def test_issue_22_univariate_tests_lilliefors_matches_statsmodels() -> None:
    """The report's Lilliefors figures (through univariate_tests) are statsmodels' own."""
    rng = np.random.default_rng(7)
    x = _columns(rng, 3000)
    res = univariate_tests(x)["lilliefors"]
    for j in range(x.shape[1]):
        s, p = lilliefors(x[:, j], dist="norm", pvalmethod="approx")
        assert res.statistic[j] == s
        assert res.pvalue[j] == p


_NOT_NEEDED = ("statsmodels", "sklearn", "pandas")

_PROBE = """
import json, sys
import numpy as np
import latentcheck as lc
from latentcheck.render import render
x = np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)
rep = lc.analyze(x, seed=0, **KW)
for fmt in ("json", "text"):
    render(rep, fmt)
print(json.dumps({"mcd": rep.joint.mcd["reason"],
                  "loaded": sorted(m for m in MODS if m in sys.modules)}))
"""


def _probe(n: int, d: int, **kw: int) -> dict[str, object]:
    code = _PROBE.replace("N, D", f"{n}, {d}").replace("MODS", repr(_NOT_NEEDED))
    code = code.replace("**KW", f"**{kw!r}")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow  # a fresh interpreter: 2-4 s on the shared 2-core machine
def test_issue_22_small_analyze_imports_no_statsmodels_sklearn_pandas() -> None:
    """A 2000 x 64 analysis (MinCovDet skipped: fewer than 20 rows per dimension in its
    sample) and its JSON and text renderings import none of statsmodels, sklearn, pandas."""
    got = _probe(2000, 64)
    assert got["mcd"] is not None  # MCD skipped, so scikit-learn has no reason to load
    assert got["loaded"] == []


@pytest.mark.slow
def test_issue_22_small_analyze_imports_sklearn_only_for_mcd() -> None:
    """Where MinCovDet runs (1000 sample rows >= 20 per dimension), scikit-learn loads for
    it (and pandas, which scikit-learn imports when installed), never statsmodels."""
    got = _probe(2000, 8)
    assert got["mcd"] is None
    assert "sklearn" in got["loaded"]
    assert "statsmodels" not in got["loaded"]


@pytest.mark.slow
def test_issue_22_mcd_budget_skipped_below_20_rows_per_dim_without_sklearn() -> None:
    """The documented way to skip MinCovDet in a loop: mcd_samples below 20 per dimension.
    The report then says why, and scikit-learn is not imported."""
    got = _probe(2000, 8, mcd_samples=3)
    assert "MinCovDet needs at least 20 rows per dimension" in str(got["mcd"])
    assert got["loaded"] == []
