"""Issue 22: posterior mode reads mu and logvar once per pass, the rate fed by pass 1's draw.

The reference for every figure is the same analysis with the rate streamed in a pass of
its own (``PosteriorJob.feed`` returning None, the code before this change): fed by pass 1,
the report must be the same to the last bit, whatever executes the passes.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.engine import protocol, scheduler, workers
from latentcheck.engine.plan import FirstPass
from latentcheck.io import drawcache
from latentcheck.io import posterior as posterior_io
from latentcheck.io.drawcache import KeptDraws
from latentcheck.io.latents import open_latents
from latentcheck.io.posterior import (
    POSTERIOR_PART,
    DrawSource,
    PosteriorFeed,
    PosteriorJob,
    resolve_inputs,
)


def _files(tmp_path: Path, n: int, d: int, seed: int = 22) -> tuple[str, str]:
    rng = np.random.default_rng(seed)
    mu = (rng.standard_normal((n, d)) * rng.uniform(0.0, 2.0, d)).astype(np.float32)
    logvar = rng.uniform(-4.0, 0.5, (n, d)).astype(np.float32)
    np.save(tmp_path / "mu.npy", mu)
    np.save(tmp_path / "logvar.npy", logvar)
    return str(tmp_path / "mu.npy"), str(tmp_path / "logvar.npy")


class _Reads:
    """Counts the reads of the posterior parameters: by the draw, and by a pass of their own."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.draws = 0
        self.own = 0
        draw, own = DrawSource.draw, posterior_io.StackSource.read_items

        def counted_draw(src: Any, start: int, stop: int, *, keep: bool) -> Any:
            self.draws += 1
            return draw(src, start, stop, keep=keep)

        def counted_own(src: Any, start: int, stop: int) -> Any:
            self.own += 1
            return own(src, start, stop)

        monkeypatch.setattr(DrawSource, "draw", counted_draw)
        monkeypatch.setattr(posterior_io.StackSource, "read_items", counted_own)


def _without_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PosteriorJob, "feed", lambda self, *a, **k: None)


def _report(**kwargs: Any) -> dict[str, Any]:
    out = lc.analyze(**kwargs).to_dict()
    out.pop("created_at")
    return out


@pytest.mark.slow
def test_issue_22_pass_1_feeds_the_rate_bitwise(tmp_path, monkeypatch):
    mu, logvar = _files(tmp_path, 3000, 6)
    kwargs = {"mu": mu, "logvar": logvar, "seed": 3, "chunk_rows": 200, "threads": 2}
    with monkeypatch.context() as m:
        _without_feed(m)
        reads = _Reads(m)
        want = _report(**kwargs)
        assert (reads.draws, reads.own) == (15, 15)  # pass 1 draws; a third read
    reads = _Reads(monkeypatch)
    got = _report(**kwargs)
    assert (reads.draws, reads.own) == (15, 0)  # 15 chunks, read once
    assert got == want
    # and the rate is the closed form Σ_j mean_x ½(mu² + σ² − 1 − ln σ²) (Kingma & Welling)
    m64, lv64 = np.load(mu).astype(np.float64), np.load(logvar).astype(np.float64)
    kl = 0.5 * (m64**2 + np.exp(lv64) - 1.0 - lv64)
    np.testing.assert_allclose(got["posterior"]["kl_per_dim"], kl.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(got["posterior"]["rate_nats"], kl.mean(axis=0).sum(), rtol=1e-12)


@pytest.mark.slow
def test_issue_22_std_and_conv_posteriors_are_fed_bitwise(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    mu = rng.standard_normal((200, 3, 6, 5)).astype(np.float32)
    std = np.exp(rng.uniform(-2.0, 0.3, mu.shape)).astype(np.float32)
    kwargs = {"mu": mu, "std": std, "seed": 9, "chunk_rows": 120}
    with monkeypatch.context() as m:
        _without_feed(m)
        want = _report(**kwargs)
    reads = _Reads(monkeypatch)
    got = _report(**kwargs)
    assert reads.own == 0
    assert got == want
    assert got["posterior"]["spread_input"] == "std"


@pytest.mark.slow
def test_issue_22_other_segments_keep_the_rate_in_its_own_pass(tmp_path, monkeypatch):
    # pass 1 holds a co-moment matrix per segment: from d = 182 up (8 d^2 bytes against
    # the budget), or here with a smaller budget, it has fewer, longer segments than the
    # posterior's pass; merged in another order the rate would move in its last bits, so
    # the posterior keeps its own pass
    mu, logvar = _files(tmp_path, 3000, 6)
    kwargs = {"mu": mu, "logvar": logvar, "seed": 1, "chunk_rows": 50}
    reads = _Reads(monkeypatch)
    _report(**kwargs)
    assert (reads.draws, reads.own) == (60, 0)
    monkeypatch.setattr(scheduler, "SEGMENT_STATE_BUDGET", 8 * 6 * 6 * 8)  # 8 segments
    reads = _Reads(monkeypatch)
    _report(**kwargs)
    assert (reads.draws, reads.own) == (60, 60)
    # the rule: fed only when pass 1 streams the posterior's own segments
    _, post = resolve_inputs(
        None, mu=mu, logvar=logvar, std=None, var=None, key=None, channel_axis=1, flatten=False
    )
    assert post is not None
    job, src = PosteriorJob(post), DrawSource(post, seed=1)
    own = job.plan(50)
    assert isinstance(job.feed(src, own, seed=1, chunk_rows=50), PosteriorFeed)
    assert (
        job.feed(
            src, scheduler.segments_of([r for seg in own for r in seg], 8), seed=1, chunk_rows=50
        )
        is None
    )
    assert job.feed(src, own, seed=2, chunk_rows=50) is None  # another draw
    assert job.feed(open_latents(mu), own, seed=1, chunk_rows=50) is None  # not a draw
    src.close()


def test_issue_22_given_z_is_not_fed(tmp_path, monkeypatch):
    mu, logvar = _files(tmp_path, 1000, 4)
    z = np.random.default_rng(2).standard_normal((1000, 4))
    reads = _Reads(monkeypatch)
    lc.analyze(z, mu=mu, logvar=logvar, seed=0, chunk_rows=250)
    assert (reads.draws, reads.own) == (0, 4)


@pytest.mark.slow
@pytest.mark.skipif(not workers.processes_available(), reason="forks worker processes")
def test_issue_22_worker_processes_feed_the_rate_bitwise(tmp_path, monkeypatch):
    mu, logvar = _files(tmp_path, 6000, 8)
    kwargs = {"mu": mu, "logvar": logvar, "seed": 4, "threads": 2, "chunk_rows": 100}
    with monkeypatch.context() as m:
        _without_feed(m)
        want = _report(**kwargs)
    monkeypatch.setattr(workers, "PROCESS_MIN_VALUES", 0)  # fork a worker for this size
    pools: list[Any] = []
    maybe = workers.WorkerPool.maybe.__func__  # type: ignore[attr-defined]

    def spy(cls: Any, *args: Any, **kwargs: Any) -> Any:
        pools.append(maybe(cls, *args, **kwargs))
        return pools[-1]

    monkeypatch.setattr(workers.WorkerPool, "maybe", classmethod(spy))
    got = _report(**kwargs)
    assert got == want
    # a thread another test left running (an executor's) rightly keeps the pass on threads
    assert len(pools) == 1 and (pools[0] is not None or workers.other_threads())


@pytest.mark.slow
def test_issue_22_process_pool_executor_feeds_the_rate_bitwise(tmp_path, monkeypatch):
    mu, logvar = _files(tmp_path, 4000, 5)
    kwargs = {"mu": mu, "logvar": logvar, "seed": 6, "chunk_rows": 250}
    with monkeypatch.context() as m:
        _without_feed(m)
        want = _report(**kwargs)
    with ProcessPoolExecutor(2) as ex:
        got = _report(**kwargs, executor=ex)
    assert got.pop("settings")["engine"] == "executor:ProcessPoolExecutor"
    want.pop("settings")
    assert got == want


def _draw_source(tmp_path: Path, kind: str) -> tuple[DrawSource, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    mu = rng.standard_normal((500, 7)).astype(np.float32)
    logvar = rng.uniform(-5.0, 1.0, (500, 7))
    spread = {"logvar": logvar, "std": np.exp(0.5 * logvar), "var": np.exp(logvar)}[kind]
    np.save(tmp_path / "mu.npy", mu)
    np.save(tmp_path / "spread.npy", spread.astype(np.float32))
    args = {"logvar": None, "std": None, "var": None, kind: [str(tmp_path / "spread.npy")]}
    _, post = resolve_inputs(
        None, mu=[str(tmp_path / "mu.npy")], key=None, channel_axis=1, flatten=False, **args
    )
    assert post is not None
    return DrawSource(post, seed=2), mu, np.load(tmp_path / "spread.npy")


@pytest.mark.parametrize("kind", ["logvar", "std", "var"])
def test_issue_22_draw_hands_out_the_parameters_it_drew_from(tmp_path, kind):
    src, mu, spread = _draw_source(tmp_path, kind)
    sp64 = spread.astype(np.float64)
    lv = {"logvar": 1.0, "std": 2.0, "var": 1.0}[kind] * (
        sp64 if kind == "logvar" else np.log(sp64)
    )
    for start, stop in [(0, 130), (130, 500)]:
        z, parts = src.read_with(start, stop, (POSTERIOR_PART,))
        assert list(parts) == [POSTERIOR_PART]
        # z is bitwise the plain read (float32, as mu and the spread are), the part is
        # [mu | logvar] in float64
        again = src.read_items(start, stop)
        assert z.dtype == again.dtype == np.float32
        np.testing.assert_array_equal(z.view(np.uint32), again.view(np.uint32))
        params = parts[POSTERIOR_PART]
        assert params.dtype == np.float64 and params.shape == (stop - start, 14)
        np.testing.assert_array_equal(params[:, :7], mu[start:stop].astype(np.float64))
        np.testing.assert_allclose(params[:, 7:], lv[start:stop], rtol=1e-15, atol=1e-15)
    z, parts = src.read_with(0, 10, ())
    assert parts == {}
    with pytest.raises(ValueError, match="no part 'mu'"):
        src.read_with(0, 10, ("mu",))
    with pytest.raises(ValueError, match="no part 'posterior'"):
        open_latents(mu).read_with(0, 10, (POSTERIOR_PART,))
    src.close()


def test_issue_22_first_pass_with_extras_keeps_the_contract(tmp_path):
    src, _, _ = _draw_source(tmp_path, "logvar")
    feed = PosteriorFeed(7, {"mu": "mu", "spread": "logvar"}, 2, capacity=40, threshold=None)

    def make() -> FirstPass:
        return FirstPass(
            7, dtype=np.dtype(np.float64), seed=2, sample_size=50, covariance=True, extras=feed
        )

    def feed_rows(start: int, stop: int) -> FirstPass:
        acc = make()
        assert acc.side_inputs == (POSTERIOR_PART,)
        for a in range(start, stop, 60):
            b = min(a + 60, stop)
            z, parts = src.read_with(a, b, acc.side_inputs)
            ids = np.arange(a, b, dtype=np.int64)
            acc.push(z, ids)
            acc.push_side(parts, ids)
        return acc.finish()

    whole = feed_rows(0, 500)
    merged = feed_rows(0, 180).merge(feed_rows(180, 500))
    state = protocol.state_of(merged)
    back = protocol.from_state(state)
    assert sorted(protocol.state_of(back)) == sorted(state)
    for key, want in protocol.state_of(whole).items():
        got = np.asarray(state[key])
        if got.dtype.kind == "f":  # merged in another order than the one pass
            np.testing.assert_allclose(got, np.asarray(want), rtol=1e-12, atol=1e-12, err_msg=key)
        else:
            np.testing.assert_array_equal(got, np.asarray(want), err_msg=key)
        np.testing.assert_array_equal(np.asarray(protocol.state_of(back)[key]), got)
    # the posterior part holds what the StackSource pass computes from the files
    rate = back.extras[POSTERIOR_PART].acc.state()
    lv = np.load(tmp_path / "spread.npy").astype(np.float64)
    np.testing.assert_allclose(rate["logvar_max"], lv.max(axis=0), rtol=0)
    assert int(rate["n"]) == 500
    src.close()


@pytest.mark.slow
def test_issue_22_pass_2_reads_back_the_draws_of_pass_1_bitwise(tmp_path, monkeypatch):
    mu, logvar = _files(tmp_path, 3000, 6, seed=5)
    kwargs = {"mu": mu, "logvar": logvar, "seed": 2, "chunk_rows": 250, "threads": 2}
    with monkeypatch.context() as m:
        _without_feed(m)
        m.setattr(DrawSource, "keep_draws", lambda self: None)
        reads = _Reads(m)
        want = _report(**kwargs)
        assert (reads.draws, reads.own) == (24, 12)  # as before issue 22: 3 reads
    kept = []
    read = KeptDraws.read

    def counted(self: KeptDraws, row0: int, n: int) -> Any:
        out = read(self, row0, n)
        kept.append(out is not None)
        return out

    with monkeypatch.context() as m:
        m.setattr(KeptDraws, "read", counted)
        reads = _Reads(m)
        got = _report(**kwargs)
    assert (reads.draws, reads.own) == (12, 0) and kept == [True] * 12
    assert got == want
    # a failed write (a full disk) leaves pass 2 to draw again, with the same figures
    with monkeypatch.context() as m:
        m.setattr(drawcache.os, "pwrite", _full_disk)
        reads = _Reads(m)
        assert _report(**kwargs) == want
        assert reads.draws == 24


def _full_disk(*args: Any) -> int:
    raise OSError(28, "No space left on device")


def test_issue_22_kept_draws_round_trip_and_refuse_pickling(tmp_path):
    import pickle

    kept = KeptDraws.maybe(3, 10)
    assert kept is not None
    rows = np.random.default_rng(1).standard_normal((10, 3))
    kept.write(4, rows[4:])
    kept.write(0, rows[:4])
    assert kept.read(0, 10) is None  # not sealed: pass 1 has not drawn every row yet
    kept.seal()
    kept.write(0, np.zeros((4, 3)))  # sealed: writes no more
    np.testing.assert_array_equal(kept.read(0, 10).view(np.uint64), rows.view(np.uint64))
    np.testing.assert_array_equal(kept.read(3, 2), rows[3:5])
    with pytest.raises(TypeError, match="fork only"):
        pickle.dumps(kept)
    kept.close()
    assert not kept.sealed and kept.read(0, 1) is None


def test_issue_22_kept_draws_never_fill_a_disk(monkeypatch):
    """Draws beyond the byte budget, or a quarter of the free space, are drawn again."""
    import collections

    from latentcheck.io import drawcache

    assert KeptDraws.maybe(64, drawcache.MAX_KEPT_BYTES // (8 * 64) + 1) is None
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(drawcache.shutil, "disk_usage", lambda path: usage(10**9, 0, 4000))
    assert KeptDraws.maybe(10, 13) is None  # 1040 bytes > 4000 / 4
    kept = KeptDraws.maybe(10, 12)  # 960 bytes fit
    assert kept is not None
    kept.close()
