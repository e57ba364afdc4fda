"""Posterior inputs end to end: mu/logvar/std/var, .npz detection, the seeded draw, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats as st

import latentcheck as lc
from latentcheck.cli import cli
from latentcheck.gates import resolve
from latentcheck.io.latents import iter_blocks
from latentcheck.io.posterior import DrawSource, resolve_inputs, standard_normal

CONTRACT = [
    "kl_per_dim",
    "kl_mean_part",
    "kl_variance_part",
    "snr",
    "rate_nats",
    "rate_bits",
    "active_units",
    "active_dims",
    "collapsed_dims",
    "mutual_information",
    "kl_aggregate",
    "total_correlation",
    "dimwise_kl",
    "estimator",
]


def _posterior(rng, n=3000, d=5):
    mu = rng.standard_normal((n, d)) * np.array([2.0, 1.0, 0.5, 0.05, 0.0])[:d]
    logvar = rng.uniform(-3, 0.5, (n, d))
    logvar[:, 4 % d] = 0.0  # a collapsed dimension: mu = 0, sigma = 1
    return mu, logvar


def _closed_form(mu, logvar):
    per = 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)
    return per.mean(0), (0.5 * mu**2).mean(0), (0.5 * (np.exp(logvar) - 1 - logvar)).mean(0)


@pytest.fixture(scope="module")
def post_report():
    mu, logvar = _posterior(np.random.default_rng(2))
    return mu, logvar, lc.analyze(mu=mu, logvar=logvar, seed=4)


def test_rate_and_active_units_equal_the_closed_form(post_report):
    mu, logvar, rep = post_report
    p = rep.posterior
    rate, mean_part, var_part = _closed_form(mu, logvar)
    # the issue asks for 1e-10 against numpy on the same arrays
    np.testing.assert_allclose(p["kl_per_dim"], rate, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(p["kl_mean_part"], mean_part, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(p["kl_variance_part"], var_part, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(p["rate_nats"], rate.sum(), rtol=1e-10)
    np.testing.assert_allclose(p["rate_bits"], rate.sum() / np.log(2), rtol=1e-10)
    active = np.flatnonzero(mu.var(0) > 0.01)
    assert p["active_units"] == active.size and p["active_dims"] == active.tolist()
    assert p["collapsed_dims"] == np.flatnonzero(rate < 0.01).tolist() == [4]
    np.testing.assert_allclose(p["snr"], mu.var(0) / np.exp(logvar).mean(0), rtol=1e-10)
    assert rep.input.kind == "posterior"
    assert "one seeded draw z = mu + sigma * eps" in rep.input.aggregate


def test_elbo_surgery_adds_up(post_report):
    _, _, rep = post_report
    p = rep.posterior
    # the mixture split is exact on its subsample: rate = I + TC + dimwise
    np.testing.assert_allclose(
        p["mutual_information"] + p["total_correlation"] + p["dimwise_kl"],
        p["mixture_rate_nats"],
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        p["kl_aggregate"], p["total_correlation"] + p["dimwise_kl"], rtol=1e-10
    )
    assert p["mutual_information"] <= np.log(p["estimator"]["n_mixture"]) + 1e-12
    assert p["estimator"]["n_mixture"] == 2048


def test_json_contract_and_text_rate_column(post_report):
    _, _, rep = post_report
    d = json.loads(rep.to_json())
    for key in CONTRACT:
        assert resolve(d, f"posterior.{key}") is not None, key
    text = rep.to_text()
    assert "rate" in text.split("PER DIMENSION")[1].splitlines()[1]
    assert "POSTERIOR" in text and "ELBO surgery" in text


@pytest.mark.parametrize("kind", ["std", "var"])
def test_std_and_var_inputs_give_the_same_rate(post_report, kind):
    mu, logvar, rep = post_report
    spread = np.exp(0.5 * logvar) if kind == "std" else np.exp(logvar)
    other = lc.analyze(mu=mu, **{kind: spread}, seed=4)
    np.testing.assert_allclose(
        other.posterior["kl_per_dim"], rep.posterior["kl_per_dim"], rtol=1e-10, atol=1e-15
    )


def test_npz_with_mu_logvar_and_z_is_a_posterior(latents_file, rng):
    mu, logvar = _posterior(rng, n=800, d=3)
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
    path = latents_file(mu=mu, logvar=logvar, z=z)
    rep = lc.analyze(path)
    assert rep.input.kind == "posterior" and rep.input.aggregate.startswith("z as given")
    np.testing.assert_allclose(rep.dims.mean, z.mean(0), rtol=1e-12)
    # an explicit --key means "just this array as samples"
    plain = lc.analyze(path, key="mu")
    assert plain.input.kind == "samples" and plain.posterior is None
    # without z, the draw is used
    drawn = lc.analyze(latents_file(z_mean=mu, z_log_var=logvar))
    assert drawn.input.kind == "posterior" and "seeded draw" in drawn.input.aggregate


def test_seeded_draw_is_chunk_invariant_and_distributed_right(rng):
    mu, logvar = _posterior(rng, n=2000, d=3)
    _, post = resolve_inputs(
        None, mu=mu, logvar=logvar, std=None, var=None, key=None, channel_axis=1, flatten=False
    )
    src = DrawSource(post, seed=9)
    a = np.concatenate([b for _, b in iter_blocks(src, 2000)])
    b = np.concatenate([b for _, b in iter_blocks(src, 7)])
    np.testing.assert_array_equal(a, b)
    eps = (a - mu) / np.exp(0.5 * logvar)
    assert st.kstest(eps.ravel(), "norm").pvalue > 1e-3
    other = np.concatenate([b for _, b in iter_blocks(DrawSource(post, seed=10), 500)])
    assert not np.array_equal(a, other)


def test_standard_normal_is_normal_and_independent_across_indices():
    x = standard_normal(np.arange(200_000), seed=0)
    assert st.kstest(x, "norm").pvalue > 1e-3
    # neighbouring indices are uncorrelated (|r| < 4 / sqrt(n))
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 4 / np.sqrt(x.size)
    np.testing.assert_array_equal(x[:10], standard_normal(np.arange(10), seed=0))


def test_conv_posterior_is_per_channel(rng):
    mu = rng.standard_normal((50, 3, 4, 4))
    logvar = rng.uniform(-1, 0, (50, 3, 4, 4))
    rep = lc.analyze(mu=mu, logvar=logvar)
    rows_mu = np.moveaxis(mu, 1, -1).reshape(-1, 3)
    rows_lv = np.moveaxis(logvar, 1, -1).reshape(-1, 3)
    np.testing.assert_allclose(
        rep.posterior["kl_per_dim"], _closed_form(rows_mu, rows_lv)[0], rtol=1e-10
    )
    assert rep.input.n_dims == 3 and rep.posterior["n_samples"] == 800


def test_extreme_logvars_do_not_overflow(rng):
    mu = rng.standard_normal((500, 2))
    logvar = np.column_stack([np.full(500, -30.0), np.full(500, 30.0)])
    rep = lc.analyze(mu=mu, logvar=logvar)
    rate = _closed_form(mu, logvar)[0]
    np.testing.assert_allclose(rep.posterior["kl_per_dim"], rate, rtol=1e-10)
    assert rep.posterior["share_at_min"][0] == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"logvar": np.zeros((10, 2))}, r"Only `logvar` given: the posterior also needs"),
        ({"mu": np.zeros((10, 2))}, r"`mu` given without a spread"),
        (
            {"mu": np.zeros((10, 2)), "logvar": np.zeros((10, 2)), "std": np.ones((10, 2))},
            r"Give one of `logvar`, `std`, `var`, not 2",
        ),
        (
            {"mu": np.zeros((10, 2)), "logvar": np.zeros((10, 3))},
            r"`mu` has shape \(10, 2\) but `logvar` has shape \(10, 3\)",
        ),
        ({"mu": np.zeros((10, 2)), "std": np.zeros((10, 2))}, r"`std` has 20 zero values"),
        ({"mu": np.zeros((10, 2)), "std": -np.ones((10, 2))}, r"`std` has 20 negative"),
        ({"mu": np.zeros((10, 2)), "logvar": np.full((10, 2), np.nan)}, r"non-finite"),
        ({}, "No input given"),
    ],
)
def test_bad_posterior_input(kwargs, match):
    with pytest.raises(lc.InputError, match=match):
        lc.analyze(**kwargs, allow_few_rows=True)  # the posterior checks, not the row count


def test_cli_posterior_options_and_errors(runner, latents_file, rng):
    mu, logvar = _posterior(rng, n=400, d=3)
    pm, pl = latents_file(mu, name="mu.npy"), latents_file(logvar, name="lv.npy")
    res = runner.invoke(cli, ["report", "--mu", str(pm), "--logvar", str(pl), "--format", "json"])
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)
    np.testing.assert_allclose(
        got["posterior"]["kl_per_dim"], _closed_form(mu, logvar)[0], rtol=1e-10
    )
    bad = latents_file(np.zeros((400, 4)), name="bad.npy")
    res = runner.invoke(cli, ["report", "--mu", str(pm), "--logvar", str(bad)])
    assert res.exit_code == 2 and "has shape" in res.stderr and "Traceback" not in res.stderr
    res = runner.invoke(cli, ["report", "--logvar", str(pl)])
    assert res.exit_code == 2 and "Only `logvar` given" in res.stderr
