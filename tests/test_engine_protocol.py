"""Every registered accumulator against the contract of latentcheck.engine.protocol (issue 17).

For each class in REGISTRY: a data set is cut into k parts at different places, each part
is pushed (chunked) into a fresh accumulator, and the parts are merged in several tree
orders; the result must equal the one-pass accumulator of the whole data set. The state
must round-trip (also through ``np.savez`` / ``np.load(allow_pickle=False)``), and merge
must be pure: it changes neither operand, and pushing into its result changes neither.

Tolerances: counts, extremes, the sample and top-k lists are exact; float sums are merged
by Pébay/Chan updates whose rounding grows with the number of merges (at most ~20 here),
each within a few eps = 2.2e-16 of the magnitude: rtol 1e-11 with an absolute floor of
1e-11 x the largest magnitude of the array leaves three orders of margin.
"""

from __future__ import annotations

import inspect
import io
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from latentcheck.analysis.joint import JointPass
from latentcheck.analysis.spatial import spatial_factory
from latentcheck.engine import protocol
from latentcheck.engine.accumulators import (
    Comoments,
    Exceedance,
    Extremes,
    Moments,
    NonFinite,
    Reservoir,
)
from latentcheck.engine.plan import FirstPass, SecondPassFactory
from latentcheck.io.latents import open_latents
from latentcheck.io.posterior import PosteriorPass
from latentcheck.stats.joint.mardia import MardiaAccumulator
from latentcheck.stats.joint.outliers import MahalanobisAccumulator
from latentcheck.stats.spatial.correlation import SpatialAccumulator
from latentcheck.stats.spatial.design_effect import ItemMeansAccumulator

C, SHAPE = 3, (2, 4)
P = 8  # positions per item: every cut falls between items (the spatial accumulators need it)
N_ITEMS = 90
N = N_ITEMS * P
LEVELS = (1.0, 2.0, 3.0)


def _data(dtype: Any = np.float64, nonfinite: bool = False) -> np.ndarray:
    rng = np.random.default_rng(17)
    x = rng.standard_normal((N, C)) * [1.0, 3.0, 0.5] + [2.0, -1.0, 40.0]
    x[:, 1] += 0.5 * x[:, 0]  # correlated dims, so the covariance is not diagonal
    x = x.astype(dtype)
    if nonfinite:
        x[[5, 333, 334], [0, 2, 1]] = [np.nan, np.inf, -np.inf]
    return x


def _summary() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _data()
    return x.mean(axis=0), x.std(axis=0), np.cov(x, rowvar=False, ddof=0)


def _makers() -> dict[str, tuple[Callable[[], Any], np.ndarray]]:
    """Return, per registered kind, a factory of empty accumulators and the rows to feed."""
    mean, std, cov = _summary()
    used = np.arange(C)
    x64, x32 = _data(), _data(np.float32)
    return {
        "moments": (lambda: Moments(C), x64),
        "comoments": (lambda: Comoments(C), x64),
        "extremes": (lambda: Extremes(C), x32),
        "exceedance": (lambda: Exceedance(LEVELS, mean, std, np.float32), x32),
        "nonfinite": (lambda: NonFinite(C), _data(nonfinite=True)),
        "reservoir": (lambda: Reservoir(40, C, 5, np.float32), x32),
        "first_pass": (
            lambda: FirstPass(
                C, dtype=np.dtype(np.float32), seed=3, sample_size=30, covariance=True
            ),
            _data(np.float32, nonfinite=True),
        ),
        "second_pass": (
            SecondPassFactory(
                LEVELS,
                mean,
                std,
                np.dtype(np.float64),
                joint=JointPass.factory(used, mean, cov, N, top=4, third=True),
                spatial=spatial_factory(
                    open_latents(np.zeros((N_ITEMS, C, *SHAPE))), mean, std, LEVELS
                ),
            ),
            x64,
        ),
        "mardia": (lambda: MardiaAccumulator(mean, cov, third_order=True), x64),
        "mahalanobis": (lambda: MahalanobisAccumulator(mean, cov, N, top_k=5), x64),
        "joint_pass": (JointPass.factory(used, mean, cov, N, top=4, third=True), x32),
        "spatial": (lambda: SpatialAccumulator(C, SHAPE, mean=mean, std=std), x64),
        "item_means": (lambda: ItemMeansAccumulator(C, P, mean), x64),
        "posterior_pass": (
            lambda: PosteriorPass(C, "logvar", {}, seed=2, capacity=25, threshold=None),
            np.concatenate([x64, np.log(0.1 + _data() ** 2)], axis=1),
        ),
    }


def _feed(make: Callable[[], Any], x: np.ndarray, start: int, stop: int, chunk: int) -> Any:
    acc = make()
    for a in range(start, stop, chunk):
        b = min(a + chunk, stop)
        acc.push(x[a:b], np.arange(a, b, dtype=np.int64))
    return acc.finish()


def _assert_same_state(got: dict[str, Any], want: dict[str, Any], exact: bool = False) -> None:
    assert sorted(got) == sorted(want)
    for key, w in want.items():
        g = got[key]
        w_arr, g_arr = np.asarray(w), np.asarray(g)
        if exact or w_arr.dtype.kind not in "fc":
            np.testing.assert_array_equal(g_arr, w_arr, err_msg=key)
            assert g_arr.dtype == w_arr.dtype, key
        else:
            scale = float(np.nanmax(np.abs(w_arr), initial=1.0, where=np.isfinite(w_arr)))
            np.testing.assert_allclose(g_arr, w_arr, rtol=1e-11, atol=1e-11 * scale, err_msg=key)


def _trees(parts: list[Any]) -> dict[str, Any]:
    """Return the merge of `parts` in several tree orders (each merge is pure)."""
    left = parts[0]
    for p in parts[1:]:
        left = left.merge(p)
    right = parts[-1]
    for p in reversed(parts[:-1]):
        right = p.merge(right)
    level = list(parts)
    while len(level) > 1:  # balanced pairs
        nxt = [a.merge(b) for a, b in zip(level[::2], level[1::2], strict=False)]
        level = nxt + ([level[-1]] if len(level) % 2 else [])
    order = np.random.default_rng(len(parts)).permutation(len(parts))
    shuffled = parts[order[0]]
    for i in order[1:]:
        shuffled = shuffled.merge(parts[i])
    return {"left": left, "right": right, "balanced": level[0], "shuffled": shuffled}


def test_issue_17_every_accumulator_class_is_registered_and_conforms():
    makers = _makers()
    assert sorted(makers) == sorted(protocol.REGISTRY)
    for kind, (make, _) in makers.items():
        acc = make()
        assert isinstance(acc, protocol.Accumulator), kind
        inspect.signature(acc.push).bind(np.zeros((0, C)), np.zeros(0, dtype=np.int64))
        assert protocol.kind_of(acc) == kind
        assert protocol.accumulator_class(kind) is type(acc)
    with pytest.raises(ValueError, match="Unknown accumulator kind"):
        protocol.accumulator_class("nope")


@pytest.mark.parametrize("kind", sorted(protocol.REGISTRY))
def test_issue_17_split_merge_in_any_tree_equals_one_pass(kind):
    make, x = _makers()[kind]
    whole = protocol.state_of(_feed(make, x, 0, N, 64))
    rng = np.random.default_rng(sum(map(ord, kind)))
    for k in (1, 2, 5, 9):
        cuts = np.sort(rng.choice(np.arange(1, N_ITEMS), k - 1, replace=False)) * P
        bounds = [0, *cuts.tolist(), N]
        parts = [_feed(make, x, a, b, 40) for a, b in itertools.pairwise(bounds)]
        for name, merged in _trees(parts).items():
            got = protocol.state_of(merged.finish())
            try:
                _assert_same_state(got, whole)
            except AssertionError as exc:
                raise AssertionError(f"{kind}, k={k}, {name} merge: {exc}") from None


@pytest.mark.parametrize("kind", sorted(protocol.REGISTRY))
def test_issue_17_state_round_trips_without_pickle(kind):
    make, x = _makers()[kind]
    a, b = _feed(make, x, 0, 400, 64), _feed(make, x, 400, N, 64)
    state = protocol.state_of(a)
    for value in state.values():  # arrays of numbers or text, or plain scalars
        assert isinstance(value, (int, float, str, np.ndarray)), type(value)
        assert np.asarray(value).dtype.kind in "biufcU", np.asarray(value).dtype
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz:
        loaded = {k: npz[k] for k in npz.files}
    for saved in (state, loaded):
        back = protocol.from_state(saved)
        assert type(back) is type(a)
        _assert_same_state(protocol.state_of(back), state, exact=True)
        # the rebuilt accumulator merges exactly as the original does
        want = protocol.state_of(a.merge(b).finish())
        _assert_same_state(protocol.state_of(back.merge(b).finish()), want, exact=True)


@pytest.mark.parametrize("kind", sorted(protocol.REGISTRY))
def test_issue_17_merge_is_pure(kind):
    make, x = _makers()[kind]
    a, b = _feed(make, x, 0, 320, 64), _feed(make, x, 320, 640, 64)
    before_a, before_b = protocol.state_of(a), protocol.state_of(b)
    merged = a.merge(b)
    empty = make()
    for out in (merged, a.merge(empty), empty.merge(a)):
        out.push(x[640:], np.arange(640, N, dtype=np.int64))  # pushing into a result ...
        out.finish()
    _assert_same_state(protocol.state_of(a), before_a, exact=True)  # ... changes no operand
    _assert_same_state(protocol.state_of(b), before_b, exact=True)
    # an empty accumulator is the identity of merge
    _assert_same_state(protocol.state_of(a.merge(make()).finish()), before_a)
    _assert_same_state(protocol.state_of(make().merge(a).finish()), before_a)


def test_issue_17_stream_merge_is_pure_too():
    # lc.Stream (the push API) merges like every accumulator: a new stream, operands kept
    import latentcheck as lc

    x = _data()
    a, b, empty = (lc.Stream(seed=1, rank=r, world_size=2) for r in (0, 1, 0))
    a.update(x[:300])
    b.update(x[300:600])
    before_a, before_b = a.state(), b.state()
    for merged in (a.merge(b), a.merge(empty), empty.merge(a)):
        merged.update(x[600:])
    _assert_same_state(a.state(), before_a, exact=True)
    _assert_same_state(b.state(), before_b, exact=True)
    assert empty.n_rows == 0
