"""Issue 15, item 14: duplicated rows and quantised latents are detected and noted."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import latentcheck as lc
from latentcheck.errors import SampleQualityWarning
from latentcheck.stats.duplicates import QUANTISED_STEP_SD, duplicate_rows, sample_checks


def test_issue_15_duplicate_rows_match_pandas() -> None:
    rng = np.random.default_rng(15_140)
    base = rng.standard_normal((500, 3)).astype(np.float32)
    rows = np.concatenate([base, base[rng.choice(500, 60)], base[:5]])
    rows[0, 0] = -0.0  # −0.0 and 0.0 are the same value
    rows[-5, 0] = 0.0
    rows = rows[rng.permutation(rows.shape[0])]
    expected = int(pd.DataFrame(rows.astype(np.float64) + 0.0).duplicated().sum())
    assert duplicate_rows(rows) == expected
    assert expected >= 60  # at least the 60 copies (some may repeat one row twice)
    assert duplicate_rows(rows[:1]) == 0


def test_issue_15_duplicated_rows_are_reported_and_warned() -> None:
    rng = np.random.default_rng(15_141)
    x = rng.standard_normal((2000, 4))
    dup = np.concatenate([x, x[:200]])[rng.permutation(2200)]
    with pytest.warns(SampleQualityWarning, match="200 of 2200 sampled rows"):
        rep = lc.analyze(dup, seed=0)
    checks = rep.to_dict()["summary"]["sample_checks"]
    assert checks["rows_checked"] == 2200
    assert checks["duplicate_rows"] == 200
    assert checks["duplicate_row_share"] == pytest.approx(200 / 2200)
    assert checks["quantised_dims"] == []
    assert any("repeat an earlier row" in w for w in rep.warnings)


def test_issue_15_quantised_dims_are_found_with_their_step() -> None:
    rng = np.random.default_rng(15_142)
    x = rng.standard_normal((3000, 4))
    x[:, 1] = np.round(x[:, 1] / 0.05) * 0.05  # a 0.05 sd grid: Shapiro size .24 at 5000
    x[:, 3] = np.round(x[:, 3] * 4) / 4
    x = x.astype(np.float32)
    with pytest.warns(SampleQualityWarning, match=r"2 dimension\(s\) \(1, 3\) take values on"):
        rep = lc.analyze(x, seed=0)
    checks = rep.summary.sample_checks
    assert checks is not None
    assert checks["quantised_dims"] == [1, 3]
    for j in range(4):
        assert checks["distinct_values"][j] == np.unique(x[:, j]).size
        gaps = np.diff(np.unique(x[:, j]).astype(np.float64))
        assert checks["smallest_gap"][j] == gaps.min()
    np.testing.assert_allclose(checks["smallest_gap"][1], 0.05, rtol=1e-6)
    np.testing.assert_allclose(checks["smallest_gap"][3], 0.25, rtol=1e-6)
    assert checks["on_grid"] == [False, True, False, True]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_issue_15_continuous_and_half_precision_latents_raise_no_alarm(dtype: type) -> None:
    # float32 ties occur by chance in 1-D and float16 rounds to relative (not uniform)
    # steps, under which Shapiro's size stayed at .045 in 200 replicates of 5000 rows
    x = np.random.default_rng(15_143).standard_normal((20_000, 3)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleQualityWarning)
        rep = lc.analyze(x, seed=0)
    checks = rep.summary.sample_checks
    assert checks is not None
    assert checks["quantised_dims"] == [] and checks["duplicate_rows"] == 0


def test_issue_15_grid_threshold_scales_with_the_sd() -> None:
    # the same 0.05 grid is coarse for sd 1 and fine for sd 100
    rng = np.random.default_rng(15_144)
    col = np.sort(np.round(rng.standard_normal(1000) / 0.05) * 0.05)[:, None]
    for sd, flagged in ((1.0, [0]), (0.05 / (0.5 * QUANTISED_STEP_SD), [])):
        out = sample_checks(col, col, np.array([sd]), n_total=1000)
        assert out["quantised_dims"].tolist() == flagged


@pytest.mark.filterwarnings("ignore::latentcheck.errors.SmallSampleWarning")
def test_issue_15_conv_latents_smoothed_fields_raise_no_alarm_but_quantised_ones_do() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(15_145)
    f = ndimage.gaussian_filter(
        rng.standard_normal((12, 4, 24, 24)), sigma=(0, 0, 1.5, 1.5), mode="wrap"
    )
    f = (f / f.std()).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleQualityWarning)
        rep = lc.analyze(f, seed=0)
    checks = rep.summary.sample_checks
    assert checks is not None
    assert checks["quantised_dims"] == [] and checks["duplicate_rows"] == 0
    # 8-bit storage of the same latents (256 levels over ±4 sd) is a 0.031 sd grid
    q = np.round(f * 32) / 32
    with pytest.warns(SampleQualityWarning, match=r"4 dimension\(s\) \(0, 1, 2, 3\)"):
        rep = lc.analyze(q, seed=0)
    assert rep.summary.sample_checks is not None
    assert rep.summary.sample_checks["quantised_dims"] == [0, 1, 2, 3]
