"""``compare`` on posteriors: ``--mu/--logvar`` pairs and ``lc.Posterior`` (issue 16)."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import numpy as np
import pytest

import latentcheck as lc
import latentcheck.comparison.api
from latentcheck.cli import cli
from latentcheck.errors import InputError

N, D = 1000, 3


def posterior(seed: int, logvar_shift: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((N, D)) * [1.0, 0.5, 0.1]
    logvar = rng.normal(-1.0, 0.3, (N, D)) + logvar_shift
    return mu, logvar


def rate_per_dim(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(N(mu, e^logvar) || N(0, 1)) per row, averaged over rows: the closed form
    (Kingma & Welling 2014, appendix B), written out here independently of the package."""
    return np.mean(0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar), axis=0)


def test_issue_16_compare_api_posterior_rate_deltas_match_closed_form():
    mu_a, lv_a = posterior(0, 0.0)
    mu_b, lv_b = posterior(1, -1.0)
    cmp = lc.compare(
        lc.Posterior(mu_a, logvar=lv_a),
        {"mu": mu_b, "std": np.exp(lv_b / 2)},  # the dict form, with std instead of logvar
        seed=0,
        n_permutations=0,
    )
    d = cmp.to_dict()
    r_a, r_b = rate_per_dim(mu_a, lv_a), rate_per_dim(mu_b, lv_b)
    pair = d["comparisons"][0]
    got = np.array(
        [[rec["rate"][k] for k in ("baseline", "value", "delta")] for rec in pair["dims"]]
    )
    # sums of 1000 terms in float64: agreement to rounding
    np.testing.assert_allclose(got, np.c_[r_a, r_b, r_b - r_a], rtol=1e-9, atol=1e-12)
    rate = pair["summary_deltas"]["rate_nats"]
    np.testing.assert_allclose(
        [rate["baseline"], rate["value"], rate["delta"]],
        [r_a.sum(), r_b.sum(), r_b.sum() - r_a.sum()],
        rtol=1e-9,
    )
    assert d["baseline"]["kind"] == "posterior" and pair["input"]["kind"] == "posterior"
    assert [f["code"] for f in pair["findings"]].count("rate") == 1
    # the rate profile is the sorted rate per dimension
    np.testing.assert_allclose(cmp.baseline.profiles["rate"], np.sort(r_a)[::-1], rtol=1e-9)


def test_issue_16_posterior_dict_with_unknown_keys_is_refused(monkeypatch):
    mu, lv = posterior(0, 0.0)
    calls = []
    monkeypatch.setattr(
        latentcheck.comparison.api, "analyze_with_sample", lambda *a, **k: calls.append(a)
    )
    # a bad posterior anywhere is refused before any input is analysed
    with pytest.raises(InputError, match="has shape"):
        lc.compare(mu, lc.Posterior(mu, logvar=lv), lc.Posterior(mu, logvar=lv[:, :2]))
    with pytest.raises(InputError, match="without a spread"):
        lc.compare(mu, lc.Posterior(mu))
    assert calls == []
    with pytest.raises(InputError, match="posterior input is a dict"):
        lc.compare(mu, {"mu": mu, "log_var": lv})
    with pytest.raises(InputError, match="posterior input is a dict"):
        lc.compare(mu, {"logvar": lv})


@pytest.mark.slow  # six analyses: about 2.6 s
def test_issue_16_compare_cli_posterior_pairs_equal_the_api(runner, latents_file):
    mu_a, lv_a = posterior(0, 0.0)
    mu_b, lv_b = posterior(1, -1.0)
    mu_c, lv_c = posterior(2, 0.5)
    npz = latents_file(mu=mu_a, logvar=lv_a)  # a posterior .npz as the positional baseline
    paths = [latents_file(x) for x in (mu_b, lv_b, mu_c, lv_c)]
    args = ["compare", str(npz), "--mu", str(paths[0]), "--logvar", str(paths[1])]
    args += ["--mu", str(paths[2]), "--logvar", str(paths[3])]
    res = runner.invoke(cli, [*args, "--format", "json", "--n-permutations", "0"])
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)
    api = lc.compare(
        str(npz),
        lc.Posterior(str(paths[0]), logvar=str(paths[1])),
        lc.Posterior(str(paths[2]), logvar=str(paths[3])),
        n_permutations=0,
    )
    want = json.loads(api.to_json())
    got.pop("created_at"), want.pop("created_at")
    assert got == want
    schema = resources.files("latentcheck").joinpath("schema/compare.schema.json").read_text()
    jsonschema.validate(json.loads(api.to_json()), json.loads(schema))
    # the positional input first, then the --mu inputs in the order given
    assert [c["input"]["sources"] for c in got["comparisons"]] == [
        [str(paths[0]), str(paths[1])],
        [str(paths[2]), str(paths[3])],
    ]
    r_a = rate_per_dim(mu_a, lv_a)
    for c, (mu, lv) in zip(got["comparisons"], [(mu_b, lv_b), (mu_c, lv_c)], strict=True):
        delta = [rec["rate"]["delta"] for rec in c["dims"]]
        np.testing.assert_allclose(delta, rate_per_dim(mu, lv) - r_a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mu", "A", "--logvar", "BAD"], "has shape"),
        (["--mu", "A"], "needs one spread"),
        (["--mu", "A", "--logvar", "LV", "--mu", "A"], "2 --mu but 1 --logvar"),
        (["--mu", "A", "--logvar", "LV", "--mu", "A", "--std", "LV"], "the same option"),
    ],
)
def test_issue_16_compare_cli_bad_posteriors_exit_2_with_one_line(
    runner, latents_file, tmp_path, extra, message
):
    mu, lv = posterior(0, 0.0)
    files = {"A": latents_file(mu), "LV": latents_file(lv), "BAD": latents_file(lv[:, :2])}
    args = [str(files[a]) if a in files else a for a in extra]
    res = runner.invoke(cli, ["compare", str(files["A"]), *args])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert res.stdout == ""
