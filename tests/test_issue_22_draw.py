"""Issue 22: the seeded draw gives bitwise the numbers of its closed form.

The noise eps of element i is the (i mod 65536)-th value of numpy's float32 ziggurat on
the SFC64 stream of SeedSequence(seed, spawn_key=(i // 65536,)); z = mu + sigma * eps in
the inputs' float32 (or float64) arithmetic.
"""

from __future__ import annotations

import itertools
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as st

from latentcheck.errors import InputError
from latentcheck.io.noise import NOISE_BLOCK, SeededNoise
from latentcheck.io.posterior import DrawSource, resolve_inputs, standard_normal


def _closed_form(index: np.ndarray, seed: int) -> np.ndarray:
    """eps element by element from numpy's generators, written out (one block at a time)."""
    blocks: dict[int, np.ndarray] = {}
    out = np.empty(index.shape, dtype=np.float32)
    for pos, i in np.ndenumerate(index):
        b = int(i) // 65536
        if b not in blocks:
            seq = np.random.SeedSequence(seed, spawn_key=(b,))
            gen = np.random.Generator(np.random.SFC64(seq))
            blocks[b] = gen.standard_normal(65536, dtype=np.float32)
        out[pos] = blocks[b][int(i) % 65536]
    return out


@pytest.mark.parametrize("seed", [0, 7, 2**40 + 3])
def test_issue_22_standard_normal_is_bitwise_the_closed_form(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scattered = rng.integers(0, 2**62, size=50)
    block = (np.arange(3000)[:, None] * 64 + np.arange(64)).astype(np.int64)  # 3 blocks
    for index in (scattered, block, block[:1, :1]):
        got = standard_normal(index, seed)
        want = _closed_form(index, seed)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    with pytest.raises(ValueError, match="non-negative"):
        standard_normal(np.array([-1]), seed)


def test_issue_22_seeded_noise_is_chunk_and_thread_invariant() -> None:
    n = 3 * NOISE_BLOCK + 123
    whole = SeededNoise(4).fill(0, np.empty(n, dtype=np.float32))
    np.testing.assert_array_equal(whole, standard_normal(np.arange(n), 4))
    cuts = np.unique(np.r_[0, np.random.default_rng(1).integers(0, n, 40), NOISE_BLOCK, n])
    noise = SeededNoise(4)
    spans = [(int(a), int(b)) for a, b in itertools.pairwise(cuts)]
    parts = [noise.fill(a, np.empty(b - a, dtype=np.float32)) for a, b in spans]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    # out of order, and in threads that share the source (each keeps its own last block)
    got = np.empty(n, dtype=np.float32)

    def fill(a: int, b: int) -> None:
        noise.fill(a, got[a:b])

    threads = [threading.Thread(target=fill, args=span) for span in spans]
    for t in threads[::-1]:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(got, whole)
    back = pickle.loads(pickle.dumps(noise))  # sent to an executor's worker: the seed only
    np.testing.assert_array_equal(back.rows(1, 5, 7), whole[7:42].reshape(5, 7))
    assert not np.array_equal(SeededNoise(5).rows(0, 10, 10), whole[:100].reshape(10, 10))


def test_issue_22_noise_is_standard_normal_across_block_boundaries() -> None:
    x = standard_normal(np.arange(4 * NOISE_BLOCK), 0).astype(np.float64)
    assert st.kstest(x, "norm").pvalue > 1e-3
    # mean, variance and kurtosis of N(0, 1) within 5 standard errors
    n = x.size
    assert abs(x.mean()) < 5 / np.sqrt(n)
    assert abs(x.var() - 1.0) < 5 * np.sqrt(2.0 / n)
    assert abs(st.kurtosis(x)) < 5 * np.sqrt(24.0 / n)
    # no correlation between neighbours, nor between the same offset of adjacent blocks
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 4 / np.sqrt(n)
    a, b = x[:-NOISE_BLOCK], x[NOISE_BLOCK:]
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(a.size)


def _draw_source(tmp_path: Path, dtype: type, **extra: np.ndarray) -> tuple[DrawSource, ...]:
    rng = np.random.default_rng(22)
    n, d = 1000, 8
    mu = (3.0 * rng.standard_normal((n, d))).astype(dtype)
    logvar = rng.uniform(-6.0, 2.0, (n, d)).astype(dtype)
    np.save(tmp_path / "mu.npy", extra.get("mu", mu))
    np.save(tmp_path / "lv.npy", extra.get("logvar", logvar))
    _, post = resolve_inputs(
        None,
        mu=[str(tmp_path / "mu.npy")],
        logvar=[str(tmp_path / "lv.npy")],
        std=None,
        var=None,
        key=None,
        channel_axis=1,
        flatten=False,
    )
    assert post is not None
    return DrawSource(post, seed=5), mu, logvar


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_issue_22_draw_source_is_bitwise_mu_plus_sigma_eps(tmp_path: Path, dtype: type) -> None:
    src, mu, logvar = _draw_source(tmp_path, dtype)
    n, d = mu.shape
    got = np.concatenate([src.read_items(i, min(i + 300, n)) for i in range(0, n, 300)])
    src.close()
    assert got.dtype == dtype  # z has the inputs' precision
    eps = _closed_form(np.arange(n * d).reshape(n, d), 5).astype(dtype)
    want = mu + np.exp(logvar * dtype(0.5)) * eps
    assert want.dtype == dtype
    np.testing.assert_array_equal(got, want)


def test_issue_22_float32_draw_is_within_its_stated_bound(tmp_path: Path) -> None:
    """|z32 - z| <= 2^-21 (|mu| + |sigma eps|), z the exact draw from the same inputs."""
    src, mu, logvar = _draw_source(tmp_path, np.float32)
    z32 = src.read_items(0, mu.shape[0]).astype(np.float64)
    src.close()
    eps = standard_normal(np.arange(mu.size).reshape(mu.shape), 5).astype(np.float64)
    noise = np.exp(0.5 * logvar.astype(np.float64)) * eps
    exact = mu.astype(np.float64) + noise
    err = np.abs(z32 - exact) / (np.abs(mu) + np.abs(noise))
    assert err.max() <= 2.0**-21
    assert err.max() > 0  # rounded: a float32 computation, not a float64 one


def test_issue_22_float32_draw_refuses_to_overflow(tmp_path: Path) -> None:
    lv = np.zeros((1000, 8), dtype=np.float32)
    lv[700, 3] = 200.0  # sigma = e^100 > float32 max / 9
    src, _, _ = _draw_source(tmp_path, np.float32, logvar=lv)
    src.read_items(0, 500)
    with pytest.raises(InputError, match=r"leave the float32 range.*rows from 500.*as float64"):
        src.read_items(500, 1000)
    src.close()
    bad = np.zeros((1000, 8), dtype=np.float32)
    bad[10, 0] = np.nan
    src, _, _ = _draw_source(tmp_path, np.float32, logvar=bad)
    with pytest.raises(InputError, match=r"1 non-finite value \(first at row 10"):
        src.read_items(0, 1000)
    src.close()
