"""Issue 17's worked example: the per-dimension median absolute deviation ``dims[i].mad``.

Checked against ``scipy.stats.median_abs_deviation(..., scale="normal")`` on the very rows
the report sampled (``analyze_with_sample`` and ``Stream.sample_reservoir`` expose them: these
tests read internals on purpose).
"""

from __future__ import annotations

import json
from importlib.resources import files

import jsonschema
import numpy as np
import pytest
from scipy import special, stats

import latentcheck as lc
from latentcheck.analysis.api import analyze_with_sample
from latentcheck.stats.scale import Z75, median_abs_deviation_sorted

JOINT = {"joint_samples": 300, "mcd_samples": 300, "energy_samples": 50, "energy_resamples": 9}
FAST = {"test_samples": 300, **JOINT}


def _scipy_mad(x: np.ndarray) -> np.ndarray:
    return np.asarray(
        stats.median_abs_deviation(np.asarray(x, dtype=np.float64), axis=0, scale="normal")
    )


def test_issue_17_mad_constant_is_scipys_normal_scale() -> None:
    assert Z75 == special.ndtri(0.75)
    assert 1 / Z75 == pytest.approx(1.482602218505602, rel=1e-15)


@pytest.mark.parametrize("n", [2, 3, 10, 501, 1000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_issue_17_mad_equals_scipy_on_sorted_columns(n: int, dtype: type) -> None:
    rng = np.random.default_rng(n)
    x = (rng.standard_t(3, (n, 4)) * [1, 3, 0.1, 5] + [0, 2, -1, 100]).astype(dtype)
    x[: n // 3, 3] = x[0, 3]  # ties: a third of the column one value
    got = median_abs_deviation_sorted(np.sort(x, axis=0), np.zeros(4, dtype=bool))
    # same medians (mean of the two middle values) and the same division: equal to rounding
    np.testing.assert_allclose(got, _scipy_mad(x), rtol=1e-14, atol=0)


def test_issue_17_mad_window_selection_equals_scipy_with_ties_at_every_size() -> None:
    # the k-th deviation is taken as min over windows of sorted values, not by a partition:
    # heavy ties (values rounded to 0-2 decimals) and every small n, odd and even
    rng = np.random.default_rng(170)
    for n in range(1, 41):
        for decimals in (0, 1, 2):
            x = np.round(rng.standard_t(2, (n, 3)), decimals)
            got = median_abs_deviation_sorted(np.sort(x, axis=0), np.zeros(3, dtype=bool))
            np.testing.assert_array_equal(got, _scipy_mad(x), err_msg=f"n={n}")


def test_issue_17_mad_nan_for_degenerate_and_empty() -> None:
    x = np.sort(np.random.default_rng(0).standard_normal((50, 3)), axis=0)
    got = median_abs_deviation_sorted(x, np.array([False, True, False]))
    assert np.isnan(got[1]) and np.all(np.isfinite(got[[0, 2]]))
    assert np.all(np.isnan(median_abs_deviation_sorted(np.empty((0, 2)), np.zeros(2, bool))))


def test_issue_17_mad_is_consistent_for_the_normal_std() -> None:
    # E[MAD/Φ⁻¹(3/4)] → σ; sd of the estimate ≈ 1.167σ/√n (Rousseeuw & Croux 1993, eff. 37%)
    x = np.random.default_rng(1).standard_normal((20_000, 3)) * [0.5, 1.0, 4.0]
    got = median_abs_deviation_sorted(np.sort(x, axis=0), np.zeros(3, bool))
    np.testing.assert_allclose(got / [0.5, 1.0, 4.0], 1.0, atol=5 * 1.167 / np.sqrt(20_000))


def test_issue_17_report_mad_is_scipys_on_the_reports_own_sample() -> None:
    rng = np.random.default_rng(17)
    x = (rng.standard_t(4, (3000, 5)) * [1, 2, 0.5, 3, 1] + [0.3, -1, 2, 0, 0]).astype(np.float32)
    x[:, 4] = 1.5  # a constant dimension: degenerate, so NaN
    with pytest.warns(lc.LatentcheckWarning):
        a = analyze_with_sample(x, seed=3, sample_size=700, **FAST)
    sample = a.sample
    assert sample.shape == (700, 5)  # a strict sub-sample of the rows: not all of them
    mad = a.report.dims.mad
    assert mad is not None and a.report.dims.degenerate[4] and np.isnan(mad[4])
    np.testing.assert_allclose(mad[:4], _scipy_mad(sample[:, :4]), rtol=1e-14, atol=0)
    # and it is a figure of the sample, not of all rows: close to, not equal to, all rows'
    assert not np.array_equal(mad[:4], _scipy_mad(x[:, :4]))
    np.testing.assert_allclose(mad[:4], _scipy_mad(x[:, :4]), rtol=0.15)


def test_issue_17_mad_conv_latents_pool_positions_per_channel() -> None:
    # (N, C, H, W): one value per position is one row of the (N·H·W, C) view
    rng = np.random.default_rng(4)
    x = rng.standard_normal((30, 3, 4, 5)) * np.array([1.0, 2.0, 0.5])[None, :, None, None]
    rep = lc.analyze(x, seed=3, **FAST)  # the sample holds every row
    assert rep.settings.quantiles_exact and rep.dims.mad is not None
    rows = x.transpose(0, 2, 3, 1).reshape(-1, 3)
    np.testing.assert_allclose(rep.dims.mad, _scipy_mad(rows), rtol=1e-14, atol=0)


def test_issue_17_mad_round_trips_through_json_and_validates() -> None:
    x = np.random.default_rng(2).standard_normal((400, 3))
    x[:, 1] = 0.0
    with pytest.warns(lc.LatentcheckWarning):
        rep = lc.analyze(x, seed=1, **FAST)
    data = json.loads(rep.to_json())
    assert [d["mad"] for d in data["dims"]][1] is None  # NaN is null in the JSON
    assert data["dims"][0]["mad"] == pytest.approx(_scipy_mad(x[:, :1])[0], rel=1e-14)
    schema = json.loads(files("latentcheck").joinpath("schema/report.schema.json").read_text())
    jsonschema.validate(data, schema)
    back = lc.Report.from_dict(data)
    assert back.dims.mad is not None
    np.testing.assert_array_equal(back.dims.mad, rep.dims.mad)  # NaN in the same places
    assert back.to_dict() == rep.to_dict()
    # a report written before the key existed loads without it and writes none back
    for d in data["dims"]:
        del d["mad"]
    old = lc.Report.from_dict(data)
    assert old.dims.mad is None
    assert all("mad" not in d for d in old.to_dict()["dims"])


def test_issue_17_stream_reports_mad_of_its_sample() -> None:
    rng = np.random.default_rng(18)
    x = (rng.standard_t(5, (2500, 4)) * [1, 2, 0.5, 3]).astype(np.float32)
    s = lc.Stream(seed=3, sample_size=800, test_samples=300)
    for i in range(0, 2500, 700):
        s.update(x[i : i + 700])
    rep = s.report(**JOINT)
    res = s.sample_reservoir()
    res.finalize()
    assert res.rows.shape == (800, 4)
    assert rep.dims.mad is not None
    np.testing.assert_allclose(rep.dims.mad, _scipy_mad(res.rows), rtol=1e-14, atol=0)
    # the same seed and sample size sample the same rows as analyze: the same MAD
    ref = lc.analyze(x, seed=3, sample_size=800, **FAST)
    np.testing.assert_array_equal(rep.dims.mad, ref.dims.mad)


def test_issue_17_mad_is_one_column_of_the_shared_table() -> None:
    """The Markdown and HTML tables show dims.mad from the one table definition."""
    from latentcheck.render.dimtable import COLUMNS, dim_table
    from latentcheck.render.formatting import fmt

    z = np.random.default_rng(3).normal(0.0, [1.0, 2.0, 0.5], size=(900, 3))
    rep = lc.analyze(z, seed=0, energy_resamples=0)
    assert [c.name for c in COLUMNS].count("mad") == 1
    for fmt_name in ("markdown", "html"):
        headers, rows, _, _ = dim_table(rep, fmt_name, range(3))
        k = headers.index("mad")
        assert [r[k] for r in rows] == [fmt(m) for m in rep.dims.mad]
    assert "mad" not in dim_table(rep, "text", range(3))[0]
    md = rep.to_markdown()
    assert "| mad |" in md.replace(" mad ", " mad ")
