"""Issue 22: the mixture's log ratios in float32 against scipy in float64.

The reference evaluates every log density with ``scipy.stats.norm.logpdf`` and every sum
with ``scipy.special.logsumexp``, in float64 (an independent implementation). The float32
kernel states |δt| <= 2^-20 (u_n² + u_own²) + 2^-23 (|a_n| + |a_own|) per log ratio; on
these cases that is below 1e-5 nats for the ratios that carry weight, against Monte-Carlo
standard errors of 0.02-0.2 nats.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

from latentcheck.stats.posterior import mixture
from latentcheck.stats.posterior.mixture import mixture_decomposition


def _reference(
    mu: np.ndarray, lv: np.ndarray, z: np.ndarray, own: np.ndarray
) -> tuple[np.ndarray, ...]:
    n = mu.shape[0]
    logp = st.norm.logpdf(z[:, None, :], mu[None, :, :], np.exp(0.5 * lv)[None, :, :])
    k = np.arange(z.shape[0])
    own_lp = logp[k, own].copy()  # (draws, d)
    logp[k, own] = -np.inf
    with np.errstate(divide="ignore"):
        lse_dim = sp.logsumexp(logp, axis=1) - own_lp
        lse = sp.logsumexp(logp.sum(axis=2), axis=1) - own_lp.sum(axis=1)
    g = math.log(n) - np.logaddexp(0.0, lse)
    g_dim = math.log(n) - np.logaddexp(0.0, lse_dim)
    return g, math.log(n - 1) - lse, g_dim, math.log(n - 1) - lse_dim


def _case(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n, d = 300, 6
    if name == "mixed":  # collapsed to narrow dimensions, as a trained VAE has
        mu = rng.normal(size=(n, d)) * [0.0, 0.05, 0.5, 1.0, 2.0, 3.0]
        lv = np.array([0.0, -0.1, -2.0, -4.0, -6.0, -9.0]) + 0.3 * rng.normal(size=(n, d))
    elif name == "offset":  # narrow posteriors far from 0: z − μ must not cancel
        mu = 1e3 + rng.normal(size=(n, d)) * 0.05
        lv = np.full((n, d), -10.0) + rng.normal(size=(n, d))
    elif name == "wide-range":  # ln σ² spans 70 in a dimension: float32 exp must not overflow
        mu = rng.normal(size=(n, d))
        lv = rng.uniform(-40.0, 30.0, size=(n, d))
    else:  # "extreme": |ln σ²| > 80, evaluated in float64
        mu = rng.normal(size=(n, d))
        lv = rng.uniform(-90.0, 2.0, size=(n, d))
    return mu, lv


@pytest.mark.parametrize("name", ["mixed", "offset", "wide-range", "extreme"])
@pytest.mark.parametrize("exact_float32", [True, False])
def test_issue_22_float32_log_ratios_match_scipy(name: str, exact_float32: bool) -> None:
    rng = np.random.default_rng(22)
    mu, lv = _case(name, rng)
    if exact_float32:  # as from float32 files: μ and ln σ² are exact in float32
        mu, lv = (x.astype(np.float32).astype(np.float64) for x in (mu, lv))
    n, d = mu.shape
    own = np.concatenate([np.arange(n), rng.choice(n, 100, replace=False)])
    z = mu[own] + np.exp(0.5 * lv[own]) * rng.standard_normal((own.size, d))
    got = mixture._log_ratios(mu, lv, z, own, block_size=7)
    want = _reference(mu, lv, z, own)
    for label, a, b in zip(("g", "g_loo", "g_dim", "g_dim_loo"), got, want, strict=True):
        # +inf where every other ratio underflows float64 (below e^-745, as the float64
        # code had it; scipy's shifted sums keep them)
        assert np.all(np.isfinite(a) <= np.isfinite(b)), label
        assert np.all(b[~np.isfinite(a)] > 740), label
        fin = np.isfinite(a)
        # g <= ln n is compressed near the ceiling; g_loo can be large: relative there
        np.testing.assert_allclose(a[fin], b[fin], rtol=1e-6, atol=1e-5, err_msg=label)
        # and the means the report gives agree far below their standard errors
        assert abs(a[fin].mean() - b[fin].mean()) < 2e-6 * max(1.0, abs(b[fin].mean()))


def test_issue_22_mixture_decomposition_keeps_its_exact_cases() -> None:
    # equal components cancel exactly in float32 as in float64 (I = 0 to the last bit)
    mu = np.broadcast_to(np.array([0.3, -1.0, 2.0]), (50, 3))
    lv = np.broadcast_to(np.array([-2.0, 0.5, -9.0]), (50, 3))
    res = mixture_decomposition(mu, lv, seed=1)
    assert res.mutual_information == 0.0 and res.total_correlation == 0.0
    np.testing.assert_array_equal(res.mutual_information_per_dim, 0.0)
    # the estimator records the block of draws of the float32 kernel (512 KiB)
    assert res.estimator["block_size"] == (1 << 17) // (50 * 3)


def test_issue_22_mixture_runs_beside_pass_2_with_the_same_figures(tmp_path, monkeypatch):
    import functools
    import threading

    import latentcheck as lc
    from latentcheck.io.posterior import PosteriorJob

    rng = np.random.default_rng(3)
    np.save(tmp_path / "mu.npy", rng.standard_normal((3000, 5)).astype(np.float32))
    np.save(tmp_path / "lv.npy", rng.uniform(-3.0, 0.0, (3000, 5)).astype(np.float32))
    kwargs = {"mu": tmp_path / "mu.npy", "logvar": tmp_path / "lv.npy", "seed": 7}
    kwargs |= {"threads": 2, "chunk_rows": 500}
    where: list[str] = []
    estimate = mixture.mixture_decomposition

    def spy(*args, **kw):
        where.append(threading.current_thread().name)
        return estimate(*args, **kw)

    monkeypatch.setattr(mixture, "mixture_decomposition", spy)
    got = lc.analyze(**kwargs).to_dict()
    assert len(where) == 1 and where[0].startswith("latentcheck-mixture")
    with monkeypatch.context() as m:  # the estimate after pass 2, in this thread
        m.setattr(PosteriorJob, "start", lambda self, **kw: functools.partial(self.run, **kw))
        want = lc.analyze(**kwargs).to_dict()
    assert where[1] == threading.current_thread().name
    for report in (got, want):
        report.pop("created_at")
    assert got == want
