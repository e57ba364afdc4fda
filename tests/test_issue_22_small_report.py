"""Issue 22: the 5000 x 64 report without work or imports its figures do not need.

Shapiro-Wilk runs as one ``axis=0`` call (scipy's swilk on each column, without its
per-call overhead): the figures are those of a call per column, to the last bit.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats as st

from latentcheck.errors import SmallSampleWarning
from latentcheck.stats.normality import univariate_tests


@pytest.mark.parametrize("n", [3, 20, 5000, 6000])
def test_issue_22_shapiro_in_one_call_equals_a_call_per_column(n: int) -> None:
    rng = np.random.default_rng(n)
    x = np.column_stack(
        [rng.standard_normal(n), rng.standard_t(3, n), rng.exponential(size=n), rng.uniform(size=n)]
    )
    degenerate = np.array([False, True, False, False])  # a skipped column stays NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)  # the other tests at n = 3
        res = univariate_tests(x, degenerate=degenerate)["shapiro"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*p-value may not be accurate.*")
        warnings.filterwarnings("ignore", message=".*N > 5000.*")
        ref = [st.shapiro(x[:, j]) for j in range(x.shape[1])]
    for j in (0, 2, 3):
        assert res.statistic[j] == ref[j].statistic and res.pvalue[j] == ref[j].pvalue, j
    assert np.isnan(res.statistic[1]) and np.isnan(res.pvalue[1])
