"""Issue 17, stage 1: the typed report model, its JSON boundary and the renderer registry."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import stats

import latentcheck as lc
from latentcheck.errors import InputError, SampleQualityWarning
from latentcheck.model.base import Block, from_jsonable, level_key, to_jsonable
from latentcheck.model.posterior import PosteriorBlock
from latentcheck.render import available_formats, register, render
from latentcheck.render.registry import RenderOptions, unregister


@pytest.fixture(scope="module")
def post_report() -> lc.Report:
    rng = np.random.default_rng(17)
    mu = rng.standard_normal((600, 4))
    mu[:, 3] *= 0.01  # an inactive, collapsed dimension
    logvar = rng.normal(-2.0, 0.3, (600, 4))
    logvar[:, 3] = 0.0
    return lc.analyze(mu=mu, logvar=logvar, seed=0)


@pytest.fixture(scope="module")
def wide_report() -> lc.Report:
    rng = np.random.default_rng(18)
    z = rng.standard_normal((400, 12)) * rng.uniform(0.5, 2.0, 12)
    z[:, 4] = rng.standard_t(3, 400)
    return lc.analyze(z, seed=0, sigma_levels=(2.5, 3.0, 4.0))


def test_issue_17_posterior_block_is_typed(post_report):
    post = post_report.posterior
    assert isinstance(post, PosteriorBlock)
    assert isinstance(post.kl_per_dim, np.ndarray) and post.kl_per_dim.shape == (4,)
    assert isinstance(post.rate_nats, float) or isinstance(post.rate_nats, np.floating)
    assert post.collapsed_dims == (3,) and post.active_units == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        post.rate_nats = 0.0  # type: ignore[misc]


def test_issue_17_posterior_block_round_trips(post_report):
    post = post_report.posterior
    d = post.to_dict()
    back = PosteriorBlock.from_dict(json.loads(json.dumps(d, allow_nan=False)))
    assert back.to_dict() == d
    assert list(d) == [f.name for f in dataclasses.fields(PosteriorBlock)]
    np.testing.assert_array_equal(back.kl_per_dim, post.kl_per_dim)
    assert back.collapsed_dims == post.collapsed_dims
    assert back.mi_ceiling() == post.mi_ceiling()
    assert back.lowest_logvar_dim() == post.lowest_logvar_dim()


def test_issue_17_posterior_block_reads_as_its_json_mapping(post_report):
    post = post_report.posterior
    d = post.to_dict()
    assert dict(post.items()) == d and len(post) == len(d) and list(post) == list(d)
    assert post["rate_nats"] == d["rate_nats"] and post.get("nope") is None
    with pytest.raises(KeyError):
        post["nope"]


def test_issue_17_an_old_partial_posterior_reads_with_defaults():
    back = PosteriorBlock.from_dict({"rate_nats": 1.5, "kl_per_dim": [1.0, None, 0.5]})
    assert back.rate_nats == 1.5 and math.isnan(back.mutual_information)
    assert not back.has_mutual_information and back.mi_ceiling() is None
    np.testing.assert_array_equal(back.kl_per_dim, [1.0, np.nan, 0.5])
    assert back.to_dict()["kl_per_dim"] == [1.0, None, 0.5]


def test_issue_17_report_round_trips_through_json(post_report):
    d = json.loads(post_report.to_json())
    back = lc.Report.from_dict(d)
    assert isinstance(back.posterior, PosteriorBlock)
    assert json.loads(back.to_json()) == d
    assert back.to_text() == post_report.to_text()


def test_issue_17_low_level_types_round_trip():
    from latentcheck.model.report import Finding, Normalization, TestResult

    for obj in (
        TestResult(statistic=1.5, pvalue=math.nan, df=2.0, method="exact"),
        Finding("scale", "warn", "text", code="scale_spread", dims=(1, 2)),
        Normalization(
            shift=0.1,
            scale=2.0,
            scale_rms=1.9,
            per_dim_shift=np.array([0.1, math.nan]),
            per_dim_scale=np.array([2.0, 3.0]),
            shift_ci=(0.0, 0.2),
            scale_ci=(1.8, 2.2),
            per_dim_shift_ci=np.array([[0.0, 0.2], [0.1, 0.3]]),
            per_dim_scale_ci=np.array([[1.0, 3.0], [2.0, 4.0]]),
            n_rows=10,
        ),
    ):
        d = json.loads(json.dumps(to_jsonable(obj), allow_nan=False))
        assert to_jsonable(from_jsonable(type(obj), d)) == d


def test_issue_17_expected_outlier_rates_match_scipy(wide_report):
    st = wide_report.settings
    ref = 2.0 * stats.norm.sf(np.asarray(st.sigma_levels))  # independent: scipy's normal tail
    np.testing.assert_allclose(st.expected_outlier_rates, ref, rtol=1e-13)
    # the summary's stored figure is the same number
    exp = [wide_report.summary.expected_outlier_rate[level_key(k)] for k in st.sigma_levels]
    np.testing.assert_array_equal(st.expected_outlier_rates, exp)
    assert st.headline_level == 1


def test_issue_17_outlier_ratio_is_the_json_figure(wide_report):
    records = wide_report.to_dict()["dims"]
    for i, k in enumerate(wide_report.settings.sigma_levels):
        key = level_key(k)
        ratio = wide_report.outlier_ratio(i)
        np.testing.assert_array_equal(ratio, [r["outlier_ratio"][key] for r in records])
        # independently: the share of |z - mean| > k std over the normal tail, by counting
        assert ratio.shape == (12,)
        np.testing.assert_allclose(
            ratio * 2.0 * stats.norm.sf(k), wide_report.dims.outlier_rate[i], rtol=1e-12
        )


def test_issue_17_top_dims_picks_the_largest_kl_marginal(wide_report):
    kl = wide_report.dims.kl_marginal
    # independent: sort the (value, index) pairs in pure Python, NaN last, ties by index
    ranked = sorted(range(kl.size), key=lambda j: (-(kl[j] if np.isfinite(kl[j]) else -1e300), j))
    for m in (1, 3, 5, 11):
        assert wide_report.top_dims(m).tolist() == sorted(ranked[:m])
    assert wide_report.top_dims(12).tolist() == list(range(12))
    assert wide_report.top_dims(100).tolist() == list(range(12))


def test_issue_17_a_registered_renderer_is_a_new_output_format(wide_report):
    calls = []

    @register("report", "dims-csv")
    def dims_csv(report: lc.Report, options: RenderOptions) -> str:
        calls.append(options)
        rows = [f"{int(i)},{m!r}" for i, m in zip(report.dims.index, report.dims.mean, strict=True)]
        return "\n".join(["dim,mean", *rows[: options.max_dims]]) + "\n"

    try:
        assert "dims-csv" in available_formats("report")
        assert "dims-csv" not in available_formats("comparison")
        text = render(wide_report, "dims-csv", max_dims=3)
        assert text.splitlines()[0] == "dim,mean" and len(text.splitlines()) == 4
        assert calls == [RenderOptions(width=100, max_dims=3, precision=3)]
        with pytest.raises(InputError, match="dims-csv output is available for reports, not"):
            render(lc.compare(wide_report, wide_report, n_permutations=0), "dims-csv")
    finally:
        unregister("report", "dims-csv")
    with pytest.raises(ValueError, match="unknown format 'dims-csv'; choose one of"):
        render(wide_report, "dims-csv")


def test_issue_17_builtin_formats_are_registered_for_both_kinds():
    assert set(lc.render.FORMATS) <= set(available_formats("report"))
    assert set(available_formats("comparison")) >= {"text", "json", "markdown", "metrics"}
    assert "html" not in available_formats("comparison")


def test_issue_17_methods_and_render_agree(wide_report):
    r = wide_report
    assert r.to_text(width=80, max_dims=5) == render(r, "text", width=80, max_dims=5)
    assert r.to_markdown(max_dims=5) == render(r, "markdown", max_dims=5)
    assert render(r, "json") == r.to_json() + "\n"
    assert str(r).startswith("latentcheck report: array") and "VERDICT" in str(r)
    assert r._repr_html_().startswith("<div><b>latentcheck report</b>")


def test_issue_17_block_base_is_a_read_only_mapping():
    assert issubclass(PosteriorBlock, Block)
    with pytest.raises(TypeError):
        PosteriorBlock()["rate_nats"] = 1.0  # type: ignore[index]


def test_issue_17_per_channel_vae_config_renders_without_a_claim(wide_report):
    # a diffusers-style per-channel config leaves summary.normalization_check holding only
    # its vae_config block; the text report formatted the missing claim with :g and crashed
    from latentcheck.vaeconfig import check_vae_config

    d = wide_report.input.n_dims
    rep = check_vae_config(wide_report, {"latents_mean": [0.0] * d, "latents_std": [1.0] * d})
    assert list(rep.summary.normalization_check) == ["vae_config"]
    assert rep.summary.claimed_normalization is None
    text = rep.to_text()
    assert "Claimed normalisation" not in text and "[vae_config]" in text
    assert "Claimed normalisation" not in rep.to_html()
    claimed = lc.analyze(np.random.default_rng(1).standard_normal((300, 2)), assume_scale=0.5)
    assert claimed.summary.claimed_normalization is claimed.summary.normalization_check
    assert "Claimed normalisation" in claimed.to_text()


def test_issue_17_the_cli_renders_through_the_registry(runner, latents_file):
    from latentcheck.cli import cli
    from latentcheck.render.registry import get_renderer

    original = get_renderer("report", "markdown")
    seen = []

    @register("report", "markdown")
    def dummy(report: lc.Report, options: RenderOptions) -> str:
        seen.append(options.max_dims)
        return f"dummy markdown for {report.input.n_dims} dims\n"

    try:
        npy = latents_file(np.random.default_rng(3).standard_normal((200, 3)))
        res = runner.invoke(cli, ["report", str(npy), "--format", "markdown", "--max-dims", "2"])
    finally:
        register("report", "markdown")(original)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == "dummy markdown for 3 dims\n" and seen == [2]
    assert get_renderer("report", "markdown") is original


def test_issue_17_a_renderer_registered_before_first_use_is_kept():
    # the built-in modules load on first use; they must not replace a user's renderer
    code = (
        "import latentcheck.render.registry as r\n"
        "r.register('report', 'markdown')(lambda obj, opts: 'mine')\n"
        "print(r.get_renderer('report', 'markdown')(None, r.RenderOptions()))\n"
        "print('text' in r.available_formats('report'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["mine", "True"]


def test_issue_17_sample_checks_block_round_trips():
    from latentcheck.model.checks import SampleChecksBlock
    from latentcheck.stats.duplicates import sample_checks

    rng = np.random.default_rng(17)
    z = rng.standard_normal((300, 3))
    z[:, 1] = np.round(z[:, 1])  # a quantised dimension
    z[10] = z[3]  # a duplicated row
    with pytest.warns(SampleQualityWarning), warnings.catch_warnings():
        warnings.simplefilter("ignore", lc.DegenerateDimensionWarning)
        rep = lc.analyze(z, seed=0)
    block = rep.summary.sample_checks
    assert isinstance(block, SampleChecksBlock)
    assert block.duplicate_rows == 1 and block.quantised_dims == (1,)
    assert block.smallest_gap[1] == 1.0 and block.on_grid[1] and not block.on_grid[0]
    # the JSON form is the statistic's dict, key for key
    sorted_cols = np.sort(z, axis=0)
    assert block.to_dict() == to_jsonable(sample_checks(z, sorted_cols, z.std(0), n_total=300))
    d = json.loads(json.dumps(block.to_dict(), allow_nan=False))
    back = SampleChecksBlock.from_dict(d)
    assert back.to_dict() == d and list(d) == [f.name for f in dataclasses.fields(back)]
    assert block["quantised_dims"] == [1] and dict(block) == d
    # one distinct value: the gap and an empty sample's share are NaN, null in JSON
    empty = SampleChecksBlock.from_dict({"rows_checked": 0, "smallest_gap": [None]})
    assert math.isnan(empty.duplicate_row_share) and math.isnan(empty.smallest_gap[0])
    assert empty.to_dict()["smallest_gap"] == [None]


def _json_round_trip(block: Block) -> tuple[dict, Block]:
    d = json.loads(json.dumps(block.to_dict(), allow_nan=False))
    return d, type(block).from_dict(d)


def test_issue_17_normalization_check_block_round_trips(wide_report):
    from latentcheck.model.checks import NormalizationCheckBlock, VaeConfigBlock
    from latentcheck.stats.normalization import check_normalization
    from latentcheck.vaeconfig import check_vae_config

    rng = np.random.default_rng(2)
    z = rng.standard_normal((500, 3)) * 5.0 + 1.0
    rep = lc.analyze(z, seed=0, assume_scale=0.18215)
    check = rep.summary.normalization_check
    assert isinstance(check, NormalizationCheckBlock) and check.has_claim
    # the block is the statistic's NormalizationCheck, key for key (an independent call)
    norm = rep.summary.normalization
    ok = ~np.asarray(rep.dims.degenerate)
    direct = check_normalization(
        norm.n_rows,
        norm.shift,
        1.0 / norm.scale,
        assume_scale=0.18215,
        assume_shift=0.0,
        per_dim_mean=norm.per_dim_shift[ok],
        per_dim_std=1.0 / norm.per_dim_scale[ok],
    )
    assert check.to_dict() == to_jsonable(direct)
    assert check.needed_scale == pytest.approx(1.0 / np.std(z), rel=1e-12)
    assert check.mistakes == direct.mistakes and check.vae_config is None
    d, back = _json_round_trip(check)
    assert back.to_dict() == d and "vae_config" not in d and check["verdict"] == d["verdict"]

    # a global config: the claim's keys and then its vae_config block
    glob = check_vae_config(rep, {"scaling_factor": 0.2, "shift_factor": 1.0})
    check = glob.summary.normalization_check
    assert isinstance(check.vae_config, VaeConfigBlock) and check.vae_config.per_channel is None
    assert check.assume_scale == 0.2 and check.assume_shift == 1.0
    d, back = _json_round_trip(check)
    assert back.to_dict() == d and list(d)[-1] == "vae_config"
    assert "per_channel" not in d["vae_config"] and back.vae_config.fits == check.vae_config.fits

    # a per-channel config with no claim: only the vae_config key
    dd = wide_report.input.n_dims
    per = check_vae_config(wide_report, {"latents_mean": [0.0] * dd, "latents_std": [1.0] * dd})
    check = per.summary.normalization_check
    assert not check.has_claim and check.verdict is None and check.mistakes == ()
    d, back = _json_round_trip(check)
    assert list(d) == ["vae_config"] and back.to_dict() == d and not back.has_claim
    np.testing.assert_array_equal(back.vae_config.latents_std, np.ones(dd))
    assert back.vae_config.per_channel == d["vae_config"]["per_channel"]


def test_issue_17_spatial_block_round_trips():
    from latentcheck.model.spatial import HeadlineTestsBlock, SpatialBlock, SpatialTestsBlock

    rng = np.random.default_rng(5)
    z = rng.standard_normal((40, 3, 6, 6))
    rep = lc.analyze(z, seed=0)
    sp = rep.spatial
    assert isinstance(sp, SpatialBlock) and sp.spatial_shape == (6, 6) and sp.n_items == 40
    assert isinstance(sp.separated_tests, SpatialTestsBlock)
    assert isinstance(sp.headline_tests, HeadlineTestsBlock)
    # the per-position mean map is the mean over samples at each position (numpy)
    np.testing.assert_allclose(sp.mean_map, z.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sp.std_map, z.std(axis=0), rtol=1e-10)
    assert sp.headline_tests.n_rows == sp.separated_tests.n_rows
    d = json.loads(json.dumps(sp.to_dict(), allow_nan=False))
    back = SpatialBlock.from_dict(d)
    assert back.to_dict() == d and dict(sp) == d
    assert list(d) == [f.name for f in dataclasses.fields(SpatialBlock)]
    assert "n_positions" not in d["all_positions_tests"] and "n_positions" in d["separated_tests"]
    np.testing.assert_array_equal(
        back.separated_tests.tests["shapiro"].pvalue_holm,
        sp.separated_tests.tests["shapiro"].pvalue_holm,
    )
    # a block saved before the separated tests existed keeps its keys and no others
    old = {k: d[k] for k in ("spatial_shape", "n_items", "mean_map")}
    old_back = SpatialBlock.from_dict(old)
    assert old_back.separated_tests is None and old_back.separated_positions is None
    assert set(old) <= set(old_back.to_dict()) and "headline_tests" not in old_back.to_dict()
