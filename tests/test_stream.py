"""Issue 18: the push API (``lc.Stream``) against ``lc.analyze`` on the concatenation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.errors import InputError

RTOL = 1e-12  # the pass-1 figures differ from analyze's only by the chunking's rounding


def _batches(x: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Cut x along axis 0 into batches of random sizes, including 1-row batches."""
    out, i = [], 0
    while i < x.shape[0]:
        b = int(rng.choice([1, 1, 2, int(rng.integers(3, 300))]))
        out.append(x[i : i + b])
        i += b
    return out


def _close(a: Any, b: Any) -> None:
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=RTOL, atol=RTOL)


def _assert_pass1_equal(s: lc.Report, a: lc.Report, *, conv: bool = False) -> None:
    """Every figure that needs only pass 1 (and the seeded sample) matches analyze.

    For conv latents analyze widens the normalisation CIs by the spatial design effect,
    which needs its second pass; the stream leaves them unwidened (and says so).
    """
    for name in ("mean", "std", "skewness", "excess_kurtosis", "kl_gauss", "min", "max"):
        _close(getattr(s.dims, name), getattr(a.dims, name))
    # the sample is the same rows: sample figures agree exactly
    for name in ("quantiles", "mad", "negentropy", "kl_marginal", "histogram"):
        _close(getattr(s.dims, name), getattr(a.dims, name))
    _close(s.dims.prior_outlier_rate, a.dims.prior_outlier_rate)
    # conv latents: analyze tests rows at positions separated by the autocorrelation of
    # its second pass; a stream tests one row per item (checked in the conv test)
    for test in () if conv else a.dims.tests:
        _close(s.dims.tests[test].statistic, a.dims.tests[test].statistic)
        _close(s.dims.tests[test].pvalue, a.dims.tests[test].pvalue)
    for key in ("kl_gauss_sum", "negentropy_sum", "kl_marginal_sum", "effective_dims"):
        _close(getattr(s.summary, key), getattr(a.summary, key))
    assert s.summary.prior_outlier_rate.keys() == a.summary.prior_outlier_rate.keys()
    _close(list(s.summary.prior_outlier_rate.values()), list(a.summary.prior_outlier_rate.values()))
    ci = () if conv else ("scale_ci", "shift_ci")
    for key in ("shift", "scale", "scale_rms", "per_dim_shift", "per_dim_scale", *ci):
        _close(getattr(s.summary.normalization, key), getattr(a.summary.normalization, key))
    for key in ("kl_gauss", "total_correlation", "effective_dims", "eigenvalues"):
        _close(getattr(s.joint, key), getattr(a.joint, key))
    for name in (
        () if conv else ("henze_zirkler", "royston", "doornik_hansen", "mean_zero", "cov_identity")
    ):
        _close(s.joint.tests[name].statistic, a.joint.tests[name].statistic)
        _close(s.joint.tests[name].pvalue, a.joint.tests[name].pvalue)
    assert s.input.n_samples == a.input.n_samples
    assert s.input.non_finite_rows == a.input.non_finite_rows
    assert s.settings.sample_rows == a.settings.sample_rows
    assert (s.settings.mode, a.settings.mode) == ("single-pass", "two-pass")


# small joint samples keep the tests fast; the stream and analyze take the same rows
JOINT = {"energy_resamples": 9, "energy_samples": 100, "joint_samples": 400, "mcd_samples": 100}
OPTS = {"seed": 3, "test_samples": 300, "sample_size": 800, **JOINT}
FINISH = JOINT


def test_issue_18_stream_equals_analyze_for_pass1_figures() -> None:
    rng = np.random.default_rng(18)
    x = (rng.standard_t(5, (2500, 4)) * [1, 2, 0.5, 3] + [0.3, -1, 2, 0]).astype(np.float32)
    x[7, 2] = np.nan  # a non-finite row is left out by both
    s = lc.Stream(seed=3, test_samples=300, sample_size=800)
    for b in _batches(x, rng):
        s.update(b)
    with pytest.warns(lc.LatentcheckWarning, match="NaN or inf"):
        rep = s.report(**FINISH)
    with pytest.warns(lc.LatentcheckWarning, match="NaN or inf"):
        ref = lc.analyze(x, **OPTS)
    _assert_pass1_equal(rep, ref)
    assert rep.input.non_finite_rows == 1
    # the rates about the final mean come from the 800-row sample: close, not equal
    got = np.asarray(rep.dims.outlier_rate[0])
    assert np.all(np.abs(got - ref.dims.outlier_rate[0]) < 5 * math.sqrt(0.01 / 800))
    assert any("single-pass" in n for n in rep.input.notes)
    # the outlier finding counts the sample's values (800 rows x 4), not all rows'
    (outliers,) = [f for f in rep.summary.findings if f.aspect == "outliers"]
    assert f"of {800 * 4}" in outliers.text and outliers.text in rep.summary.verdict
    assert "seeded sample" in rep.joint.tests["mardia_kurtosis"].method


def test_issue_18_stream_conv_batches_equal_analyze() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 3, 6, 5)) * np.array([1.0, 2.0, 0.5])[None, :, None, None]
    s = lc.Stream(seed=3, test_samples=300, sample_size=800)
    for b in _batches(x, rng):
        s.update(b)
    rep = s.report(**FINISH)
    _assert_pass1_equal(rep, lc.analyze(x, **OPTS), conv=True)
    assert rep.spatial is None
    assert any("not widened" in n for n in rep.input.notes)
    # issue 15 on a stream: the headline tests ran on one sampled row per item (40 items),
    # not on the correlated rows at every position
    from scipy import stats

    from latentcheck.analysis.api import analyze_with_sample  # tests the internals

    a = analyze_with_sample(x, **OPTS)
    items = a.row_ids // 30
    _, first = np.unique(items, return_index=True)
    one = np.asarray(a.sample[np.sort(first)], dtype=np.float64)
    assert one.shape[0] == 40
    _close(rep.dims.tests["shapiro"].statistic, [stats.shapiro(c).statistic for c in one.T])
    flat = lc.Stream(seed=3, flatten=True, test_samples=300)
    flat.update(x[:10, :, :2, :2])
    flat.update(x[10:, :, :2, :2])
    assert flat.report(**FINISH).input.n_dims == 12


def _ranks(x: np.ndarray, world: int, rng: np.random.Generator) -> list[lc.Stream]:
    """Rank r gets rows r, r + world, ... (DistributedSampler order), in random batches."""
    out = []
    for r in range(world):
        s = lc.Stream(seed=3, test_samples=300, sample_size=800, rank=r, world_size=world)
        for b in _batches(x[r::world], rng):
            s.update(b)
        out.append(s)
    return out


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Return the leaves of a JSON-like value by path."""
    if isinstance(value, dict):
        return {k: v for key, x in value.items() for k, v in _leaves(x, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, x in enumerate(value) for k, v in _leaves(x, f"{path}/{i}").items()}
    return {path: value}


def _assert_same_report(r1: lc.Report, r2: lc.Report) -> None:
    """Equal reports: numbers to 1e-12 (merge order rounds differently), the rest exactly."""
    a, b = _leaves(r1.to_dict()), _leaves(r2.to_dict())
    assert a.keys() == b.keys()
    for key, x in a.items():
        if key == "/created_at":
            continue
        y = b[key]
        if isinstance(x, float) and isinstance(y, float):
            assert math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12), key
        else:
            assert x == y, key


def test_issue_18_merge_any_grouping_equals_analyze() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2400, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.2], [0, 0, 2]])
    a, b, c = _ranks(x, 3, rng)
    left = _ranks(x, 3, rng)
    right = _ranks(x, 3, rng)
    r1 = a.merge(b).merge(c).report(**FINISH)
    r2 = right[0].merge(right[1].merge(right[2])).report(**FINISH)
    r3 = left[2].merge(left[0]).merge(left[1]).report(**FINISH)
    # rows of the interleaved order are the data set's rows in their original order
    _assert_pass1_equal(r1, lc.analyze(x, **OPTS))
    _assert_same_report(r1, r2)
    _assert_same_report(r1, r3)


def test_issue_18_merged_conv_ranks_equal_analyze() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((60, 2, 5, 4))
    ranks = _ranks(x, 3, rng)  # rank r gets samples r, r + 3, ... with all their positions
    rep = ranks[1].merge(ranks[2]).merge(ranks[0]).report(**FINISH)
    _assert_pass1_equal(rep, lc.analyze(x, **OPTS), conv=True)


def test_issue_18_state_round_trip_without_pickle() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((900, 3)).astype(np.float32)
    ranks = _ranks(x, 2, rng)
    sent = lc.Stream.from_bytes(ranks[1].to_bytes())
    merged = ranks[0].merge(sent).report(**FINISH)
    _assert_pass1_equal(merged, lc.analyze(x, **OPTS))
    with pytest.raises(InputError, match="Stream state"):
        lc.Stream.from_state({"config.seed": np.array(1)})


def test_issue_18_bad_batches_raise_input_error() -> None:
    s = lc.Stream()
    s.update(np.zeros((3, 4)) + np.arange(4))
    with pytest.raises(InputError, match="same shape"):
        s.update(np.zeros((3, 5)))
    with pytest.raises(InputError, match="same shape"):
        s.update(np.zeros((3, 4, 2)))
    with pytest.raises(InputError, match="0 rows"):
        s.update(np.zeros((0, 4)))
    strict = lc.Stream(nan="error")
    bad = np.ones((5, 2))
    bad[3, 1] = np.nan
    strict.update(bad[:3])
    with pytest.raises(InputError, match="non-finite"):
        strict.update(bad)
    assert (strict.n_items, strict.n_rows, strict.n_batches) == (3, 3, 1)  # nothing half-added
    only_nan = lc.Stream()
    only_nan.update(np.full((4, 2), np.nan))
    with pytest.raises(InputError, match="0 rows without NaN"):
        only_nan.report()
    with pytest.raises(InputError, match="empty"):
        lc.Stream().report()
    one, two = lc.Stream(), lc.Stream()
    one.update(np.ones((2, 1)))
    two.update(np.ones((2, 1)))
    with pytest.raises(InputError, match="rank"):
        one.merge(two)
    with pytest.raises(InputError, match="rank"):
        lc.Stream(rank=2, world_size=2)
    with pytest.raises(lc.FormatError, match="float array"):
        lc.Stream().update(object())


def test_issue_18_memory_is_bounded() -> None:
    rng = np.random.default_rng(1)
    s = lc.Stream(sample_size=200, test_samples=100)
    for _ in range(600):
        s.update(rng.standard_normal((int(rng.integers(1, 40)), 2)))
        assert s._reservoir.keys.size + s._reservoir._buffered < 2 * 200 + 40
        assert len(s._first._waiting) <= s._first.BATCH_CHUNKS
    assert s.report(energy_resamples=0).settings.sample_rows == 200


class _FakeTensor:
    """Duck-typed tensor: what Stream reads of a torch tensor on a device."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.calls: list[str] = []

    def detach(self) -> _FakeTensor:
        self.calls.append("detach")
        return self

    def cpu(self) -> _FakeTensor:
        self.calls.append("cpu")
        return self

    def numpy(self) -> np.ndarray:
        return self.a


def test_issue_18_tensor_like_batches_and_posterior() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((600, 2))
    t = _FakeTensor(x)
    s = lc.Stream(seed=1, test_samples=100)
    s.update(t)
    assert t.calls == ["detach", "cpu"]
    _close(s.report(energy_resamples=0).dims.mean, x.mean(axis=0))
    # update_posterior: one draw z = mu + exp(logvar / 2) eps per row
    p = lc.Stream(seed=1, test_samples=100)
    mu = rng.standard_normal((4000, 2)) * 0.5
    p.update_posterior(mu, np.full_like(mu, math.log(0.75)))
    rep = p.report(energy_resamples=0)
    # Var z = Var mu + 0.75 = 1: within 5 standard errors
    assert np.all(np.abs(rep.dims.std**2 - 1.0) < 5 * math.sqrt(2 / 4000))
    with pytest.raises(InputError, match="logvar has shape"):
        p.update_posterior(mu, mu[:, :1])


def test_issue_18_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    x = torch.randn(500, 3, requires_grad=True)
    s = lc.Stream(test_samples=100)
    s.update(x * 2)
    s.update(x[:10].to(torch.bfloat16))
    assert s.report(energy_resamples=0).input.n_samples == 510


def test_issue_18_torch_example_script_runs() -> None:
    pytest.importorskip("torch")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "torch_loop.py"
    spec = importlib.util.spec_from_file_location("torch_loop", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metrics = module.main()
    assert metrics["val/latents/n_samples"] == 96 * 8 * 8
    assert metrics["val/latents/n_dims"] == 4


def test_issue_18_gather_over_a_fake_torch_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`gather` with a stand-in for torch.distributed: two ranks' bytes, all-gathered."""
    import sys
    import types

    from latentcheck.stream import gather

    class T:  # the few tensor operations gather uses, on numpy
        def __init__(self, a: np.ndarray) -> None:
            self.a = np.array(a)

        def item(self) -> Any:
            return self.a.item()

        def __getitem__(self, k: Any) -> T:
            return T(self.a[k])

        def __setitem__(self, k: Any, v: T) -> None:
            self.a[k] = v.a

        def to(self, device: Any) -> T:
            return self

        def cpu(self) -> T:
            return self

        def numpy(self) -> np.ndarray:
            return self.a

    rng = np.random.default_rng(9)
    x = rng.standard_normal((700, 3))
    ranks = _ranks(x, 2, rng)
    other_bytes = np.frombuffer(ranks[1].to_bytes(), dtype=np.uint8)

    def all_gather(out: list[T], mine: T, group: Any = None) -> None:
        if mine.a.dtype == np.int64:  # the sizes
            out[0].a[...] = mine.a
            out[1].a[...] = other_bytes.size
        else:
            out[0].a[...] = mine.a
            out[1].a[: other_bytes.size] = other_bytes

    fake = types.ModuleType("torch")
    fake.int64, fake.uint8 = np.int64, np.uint8  # type: ignore[attr-defined]
    fake.device = lambda *a: "cpu"  # type: ignore[attr-defined]
    fake.tensor = lambda v, dtype, device: T(np.array(v, dtype=dtype))  # type: ignore[attr-defined]
    fake.zeros = lambda n, dtype, device: T(np.zeros(n, dtype=dtype))  # type: ignore[attr-defined]
    fake.zeros_like = lambda t: T(np.zeros_like(t.a))  # type: ignore[attr-defined]
    fake.from_numpy = T  # type: ignore[attr-defined]
    dist = types.ModuleType("torch.distributed")
    dist.get_world_size = lambda group=None: 2  # type: ignore[attr-defined]
    dist.get_backend = lambda group=None: "gloo"  # type: ignore[attr-defined]
    dist.all_gather = all_gather  # type: ignore[attr-defined]
    fake.distributed = dist  # type: ignore[attr-defined]
    with monkeypatch.context() as mp:  # only around gather: scipy looks for torch too
        mp.setitem(sys.modules, "torch", fake)
        mp.setitem(sys.modules, "torch.distributed", dist)
        merged = gather(ranks[0])
    assert set(merged.ranks) == {0, 1}
    _assert_pass1_equal(merged.report(**FINISH), lc.analyze(x, **OPTS))


@pytest.mark.slow
def test_issue_18_outlier_verdict_calibrated_on_spatially_correlated_conv_latents() -> None:
    """Gaussian conv latents, AR(1) along each image row (rho = 0.8), 9600 rows, a sample of
    500: the heavy-tails warning must fire at most at alpha = 0.05 (binomial band). (Judged
    as if the sample's rates came from all rows it fired in 10 of 80 i.i.d. runs, measured;
    the first test checks the count the finding uses.)"""
    from scipy import stats

    rng = np.random.default_rng(20)
    runs, warned, rho = 60, 0, 0.8
    for r in range(runs):
        e = rng.standard_normal((150, 4, 8, 8))
        z = np.empty_like(e)
        z[..., 0] = e[..., 0]
        for w in range(1, 8):
            z[..., w] = rho * z[..., w - 1] + math.sqrt(1 - rho**2) * e[..., w]
        s = lc.Stream(seed=r, sample_size=500, test_samples=100)
        s.update(z[:70])
        s.update(z[70:])
        rep = s.report(energy_resamples=0, joint_samples=100, mcd_samples=100)
        (f,) = [f for f in rep.summary.findings if f.aspect == "outliers"]
        warned += f.status == "warn"
    assert warned <= stats.binom.ppf(0.999, runs, 0.05)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow in the updates
def test_issue_20_stream_names_overflow_as_analyze_does() -> None:
    # the stream shares analyze's dimension checks: overflowing values are an error that
    # says so, not a report of NaN figures
    z = np.random.default_rng(0).standard_normal((600, 3)) * 1e160
    s = lc.Stream(seed=0)
    s.update(z)
    with pytest.raises(InputError, match=r"too large for float64 arithmetic"):
        s.report()
