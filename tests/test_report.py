"""The report model: JSON contract, schema, NaN handling, round trip through from_dict."""

from __future__ import annotations

import json
import math
from importlib.resources import files

import jsonschema
import numpy as np
import pytest

import latentcheck as lc
from latentcheck.errors import SchemaError
from latentcheck.gates import evaluate, resolve
from latentcheck.model.report import Report

CONTRACT = [
    "schema_version",
    "input.n_samples",
    "input.n_dims",
    "input.layout",
    "input.non_finite_rows",
    "settings.seed",
    "settings.test_samples",
    "joint.kl_gauss",
    "joint.total_correlation",
    "joint.effective_dims",
    "joint.condition_number",
    "joint.eigenvalues",
    "summary.kl_gauss_sum",
    "summary.kl_marginal_sum",
    "summary.normalization.shift",
    "summary.normalization.scale",
    "summary.normalization.per_dim_shift",
    "summary.normalization.per_dim_scale",
    "summary.verdict",
]
DIM_KEYS = [
    "index",
    "mean",
    "std",
    "min",
    "max",
    "skewness",
    "excess_kurtosis",
    "kl_gauss",
    "negentropy",
    "kl_marginal",
    "mad",  # issue 17
]
QKEYS = ["0.001", "0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99", "0.999"]
TESTS = ["shapiro", "dagostino", "anderson", "jarque_bera", "lilliefors", "ks_prior"]


@pytest.fixture(scope="module")
def report() -> Report:
    x = np.random.default_rng(4).standard_normal((800, 5))
    x[:, 2] = np.random.default_rng(5).laplace(size=800)
    x[3, 0] = np.nan
    with pytest.warns(lc.LatentcheckWarning):
        return lc.analyze(x, seed=2)


def test_contract_key_paths_exist(report):
    d = report.to_dict()
    for path in CONTRACT:
        assert resolve(d, path), path
    for rec in d["dims"]:
        for k in DIM_KEYS:
            assert k in rec
        assert list(rec["quantiles"]) == QKEYS
        assert list(rec["outlier_rate"]) == ["3", "4", "5", "6"]
        assert list(rec["prior_outlier_rate"]) == ["3", "4", "5", "6"]
        for t in TESTS:
            assert set(rec["tests"][t]) >= {"statistic", "pvalue", "pvalue_holm"}
    assert list(d["summary"]["outlier_rate"]) == ["3", "4", "5", "6"]
    assert d["input"]["non_finite_rows"] == 1
    assert isinstance(d["summary"]["verdict"], str) and d["summary"]["verdict"]


def test_json_validates_against_shipped_schema(report):
    schema = json.loads(files("latentcheck").joinpath("schema/report.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(report.to_json()), schema)


def test_nan_and_inf_become_null_and_json_is_strict():
    x = np.random.default_rng(0).standard_normal((300, 3))
    x[:, 1] = 1.0  # constant: skewness NaN, scale inf
    with pytest.warns(lc.DegenerateDimensionWarning):
        rep = lc.analyze(x)
    text = rep.to_json()
    assert "NaN" not in text and "Infinity" not in text
    d = json.loads(text)
    assert d["dims"][1]["skewness"] is None
    assert d["dims"][1]["tests"]["shapiro"]["pvalue"] is None
    assert d["dims"][1]["tests"]["shapiro"]["reason"] == "constant in the test sample"
    assert d["summary"]["normalization"]["per_dim_scale"][1] is None


def test_round_trip_through_json(report):
    d = json.loads(report.to_json())
    back = Report.from_dict(d)
    assert json.loads(back.to_json()) == d
    np.testing.assert_allclose(back.dims.kl_marginal, report.dims.kl_marginal, rtol=1e-15)
    assert back.summary.normalization.shift_ci == report.summary.normalization.shift_ci
    assert math.isnan(Report.from_dict(d).dims.tests["shapiro"].pvalue_holm[0]) is False


def test_from_dict_refuses_foreign_or_future_reports():
    with pytest.raises(SchemaError, match="not a latentcheck report"):
        Report.from_dict({"hello": 1})
    with pytest.raises(SchemaError, match="schema_version 99; this latentcheck reads 1"):
        Report.from_dict({"schema_version": 99})
    with pytest.raises(SchemaError, match=r"malformed|lacks the key"):
        Report.from_dict({"schema_version": 1, "settings": {}})


def test_gate_expressions(report):
    d = report.to_dict()
    assert evaluate("input.n_dims == 5", d)
    assert evaluate("count(dims.*.index) >= 5", d)
    assert not evaluate("min(dims.*.std) < 0", d)
    assert evaluate("dims.2.excess_kurtosis > 1", d)
    assert evaluate("mean(dims.*.mean) < 1", d)
    with pytest.raises(lc.InputError, match="is a list of 5; use an index or"):
        evaluate("dims.x.mean > 0", d)
    with pytest.raises(lc.InputError, match="is not a number"):
        evaluate("input.layout > 0", d)
    with pytest.raises(lc.InputError, match="Unknown function 'median'"):
        evaluate("median(dims.*.mean) > 0", d)


def test_schema_1_reports_still_load_and_compare(report):
    # schema 2 added keys beside schema 1's (findings' code and dims, sample_checks, mode):
    # a report saved by schema 1 has none of them and must still load and compare
    d = json.loads(report.to_json())
    d["schema_version"] = 1
    for f in d["summary"]["findings"]:
        del f["code"], f["dims"]
    d["summary"].pop("sample_checks", None)
    d["settings"].pop("mode", None)
    old = Report.from_dict(d)
    assert [f.code for f in old.summary.findings] == [""] * len(d["summary"]["findings"])
    assert all(f.dims == () for f in old.summary.findings)
    c = lc.compare(old, report).comparisons[0]
    assert c.dims is not None
    np.testing.assert_array_equal(c.dims.shift, np.zeros(report.input.n_dims))
