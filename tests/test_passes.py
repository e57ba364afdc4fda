"""The streaming passes on worker processes and threads: the same results, errors surface."""

from __future__ import annotations

import itertools
import multiprocessing
import sys

import numpy as np
import pytest
from test_analyze import _assert_same_report, _leaves, _mixed

import latentcheck as lc
from latentcheck.engine import kernels, plan, scheduler, workers
from latentcheck.errors import InputError
from latentcheck.io.latents import open_latents, plan_blocks

needs_fork = pytest.mark.skipif(
    not workers.processes_available(), reason="worker processes are forked on Linux only"
)


def _ids(start: int, n: int) -> np.ndarray:
    """Return the global row ids of `n` rows from `start` (what the scheduler pushes)."""
    return np.arange(start, start + n, dtype=np.int64)


@pytest.fixture
def pools(monkeypatch):
    """Let small data sets use worker processes; record the pools made."""
    monkeypatch.setattr(workers, "PROCESS_MIN_VALUES", 0)
    made = []
    real = workers.WorkerPool.__init__

    def spy(self, *args, **kwargs):
        made.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(workers.WorkerPool, "__init__", spy)
    return made


@pytest.fixture
def forking(pools, monkeypatch):
    """As `pools`, also when an earlier test left threads running (zarr's I/O threads)."""
    monkeypatch.setattr(workers, "other_threads", lambda: False)
    return pools


@needs_fork
@pytest.mark.filterwarnings("ignore:2 of 2500 rows hold NaN")
@pytest.mark.parametrize("chunk_rows", [7, 1000])
def test_worker_processes_give_the_threads_report(forking, chunk_rows):
    data = _mixed(np.random.default_rng(8), n=2500)
    data[[3, 1200], 2] = np.nan  # rows left out in both passes
    threads = lc.analyze(data, seed=2, chunk_rows=1500, threads=1).to_dict()
    assert not forking
    procs = lc.analyze(data, seed=2, chunk_rows=chunk_rows, threads=2).to_dict()
    assert len(forking) == 1  # one pool of one worker, for both passes
    _assert_same_report(threads, procs, rtol=1e-10)
    assert multiprocessing.active_children() == []


@needs_fork
def test_worker_processes_carry_the_spatial_accumulators(forking, tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 3, 6, 5)).astype(np.float32)
    x += 0.5 * np.roll(x, 1, axis=3)  # spatial correlation for the design effects
    path = tmp_path / "conv.npy"
    np.save(path, x)
    threads = lc.analyze(str(path), seed=1, threads=1).to_dict()
    procs = lc.analyze(str(path), seed=1, threads=2, chunk_rows=50).to_dict()
    assert len(forking) == 1
    assert procs["spatial"] is not None
    _assert_same_report(threads, procs, rtol=1e-10)


@needs_fork
def test_no_worker_processes_beside_other_threads(pools):
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        lc.analyze(np.random.default_rng(0).standard_normal((300, 3)), threads=2)
    finally:
        stop.set()
        other.join()
    assert not pools  # a host program's threads could hold locks at the fork


def _analyze_in_daemon(queue) -> None:
    try:
        rep = lc.analyze(np.random.default_rng(0).standard_normal((300, 3)), threads=2)
        queue.put(("ok", rep.dims.mean.tolist()))
    except BaseException as exc:
        queue.put(("error", repr(exc)))


@needs_fork
def test_a_daemonic_process_analyses_with_threads(forking):
    # a multiprocessing pool worker may not have children of its own
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_analyze_in_daemon, args=(queue,), daemon=True)
    proc.start()
    status, value = queue.get(timeout=60)
    proc.join()
    assert status == "ok", value
    assert len(value) == 3


class _Failing:
    """A source whose blocks from row `bad` on cannot be read."""

    def __init__(self, source, bad: int) -> None:
        self._source = source
        self._bad = bad
        self.rows_per_item = source.rows_per_item
        self.n_rows = source.n_rows
        self.n_dims = source.n_dims

    def read_items(self, start: int, stop: int) -> np.ndarray:
        if stop > self._bad:
            raise InputError(f"Rows from {self._bad} could not be read")
        return self._source.read_items(start, stop)


@needs_fork
@pytest.mark.parametrize("bad", [10, 290])  # in the caller's run, in the worker's run
def test_a_failing_run_raises_in_the_caller_and_stops_the_workers(bad):
    src = open_latents(np.random.default_rng(1).standard_normal((300, 2)))
    failing = _Failing(src, bad)
    ranges = plan_blocks([src], 20)
    from functools import partial

    make = partial(plan.FirstPass, 2, dtype=src.dtype, seed=0, sample_size=50, covariance=True)
    pool = workers.WorkerPool(failing, 1)
    try:
        with pytest.raises(InputError, match=f"Rows from {bad} could not be read"):
            scheduler.run_pass(failing, ranges, make, threads=2, pool=pool)
    finally:
        pool.close()
    assert multiprocessing.active_children() == []


@needs_fork
def test_worker_pool_runs_successive_passes():
    from functools import partial

    x = np.random.default_rng(5).standard_normal((500, 3))
    src = open_latents(x)
    ranges = plan_blocks([src], 64)
    make = partial(plan.FirstPass, 3, dtype=src.dtype, seed=0, sample_size=50, covariance=True)
    with workers.WorkerPool(src, 1) as pool:
        a = scheduler.run_pass(src, ranges, make, threads=2, pool=pool)
        b = scheduler.start_pass(src, ranges, make, threads=1, pool=pool).result()
        assert pool.workers[0]._proc.is_alive()
    np.testing.assert_allclose(a.moments.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(a.moments.mean, b.moments.mean, rtol=1e-12)
    np.testing.assert_allclose(b.comoments.cov(), np.cov(x, rowvar=False, ddof=0), rtol=1e-12)
    assert multiprocessing.active_children() == []


def test_processes_only_on_linux():
    assert workers.processes_available() == sys.platform.startswith("linux")


@needs_fork
def test_library_backed_data_stays_on_threads(forking, tmp_path):
    # HDF5 handles were not made for fork: such data sets use worker threads
    h5py = pytest.importorskip("h5py")
    x = np.random.default_rng(3).standard_normal((400, 3))
    path = tmp_path / "z.h5"
    with h5py.File(path, "w") as fh:
        fh["z"] = x
    assert not open_latents(str(path)).fork_safe
    assert open_latents(x).fork_safe
    rep = lc.analyze(str(path), threads=2)
    assert not forking
    np.testing.assert_allclose(rep.dims.mean, x.mean(0), rtol=1e-12)
    npy = tmp_path / "z.npy"
    np.save(npy, x)
    assert open_latents(str(npy)).fork_safe
    lc.analyze(str(npy), threads=2)
    assert len(forking) == 1


@needs_fork
def test_an_empty_caller_run_merges_cleanly(forking):
    # one chunk only: the caller's shorter run of each pass is empty
    data = _mixed(np.random.default_rng(6), n=60)
    threads = lc.analyze(data, seed=4, threads=1).to_dict()
    procs = lc.analyze(data, seed=4, threads=2, chunk_rows=100).to_dict()
    assert len(forking) == 1
    _assert_same_report(threads, procs, rtol=1e-10)


@needs_fork
def test_a_failure_in_the_sample_work_stops_pass_2(forking, monkeypatch):
    # pass 2 streams on the worker while this process tests the sample; when that fails
    # the worker is stopped and the caller's own share of pass 2 is never started
    from latentcheck.stats import normality

    calls = []
    real = scheduler.participate

    def counting(source, make, segments, tokens, progress, **kwargs):
        calls.append(type(make).__name__)
        return real(source, make, segments, tokens, progress, **kwargs)

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(scheduler, "participate", counting)
    monkeypatch.setattr(normality, "univariate_tests", boom)
    with pytest.raises(RuntimeError, match="boom"):
        lc.analyze(np.random.default_rng(2).standard_normal((3000, 3)), threads=2, chunk_rows=100)
    assert len(forking) == 1
    assert "SecondPassFactory" not in calls  # in this process: only its part of pass 1
    assert multiprocessing.active_children() == []


def _die(code: int) -> None:
    import os

    os._exit(code)


@needs_fork
@pytest.mark.parametrize(("code", "message"), [(3, "exit code 3"), (-9, "killed by SIGKILL")])
def test_a_worker_that_dies_is_reported(code, message):
    from functools import partial

    src = open_latents(np.zeros((10, 2)))
    make = partial(_kill_self, -code) if code < 0 else partial(_die, code)
    with workers.WorkerPool(src, 1) as pool:
        pool.tokens.fill(1)
        worker = pool.workers[0].submit(make, [[(0, 10)]])
        with pytest.raises(RuntimeError, match=message):
            worker.result()
    assert multiprocessing.active_children() == []


def _kill_self(sig: int) -> None:
    import os

    os.kill(os.getpid(), sig)


@needs_fork
def test_the_progress_bar_counts_the_workers_chunks(forking, capfd):
    # the count lives in shared memory: without it this process would see only its own
    # runs (a third of pass 1 and of pass 2) and never reach 100%
    lc.analyze(
        np.random.default_rng(1).standard_normal((3000, 3)),
        threads=2,
        chunk_rows=100,
        progress=True,
    )
    assert len(forking) == 1
    err = capfd.readouterr().err
    assert "100%" in err


@needs_fork
def test_a_refused_fork_falls_back_to_threads(forking, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(workers, "Worker", refuse)
    x = np.random.default_rng(9).standard_normal((2000, 3))
    rep = lc.analyze(x, threads=2, chunk_rows=100)
    assert len(forking) == 1  # tried, refused, then threads
    np.testing.assert_allclose(rep.dims.mean, x.mean(0), rtol=1e-12)
    assert multiprocessing.active_children() == []


def _same_bits(a: dict, b: dict) -> None:
    """Assert two reports equal to the last bit (run details such as threads aside)."""
    la, lb = dict(_leaves(a)), dict(_leaves(b))
    assert la.keys() == lb.keys()
    assert [k for k in la if la[k] != lb[k]] == []


@needs_fork
@pytest.mark.filterwarnings("ignore:2 of 2500 rows hold NaN")
def test_any_worker_layout_gives_the_same_bits(forking, monkeypatch):
    # segments are fixed by the number of chunks and merged in segment order, so who
    # streamed which segment, and how many workers there were, cannot show in the result
    from latentcheck.analysis import run as analysis_run

    data = _mixed(np.random.default_rng(8), n=2500)
    data[[3, 1200], 2] = np.nan
    ref = lc.analyze(data, seed=2, chunk_rows=7, threads=1).to_dict()
    assert not forking
    _same_bits(ref, lc.analyze(data, seed=2, chunk_rows=7, threads=2).to_dict())
    assert len(forking) == 1

    # a caller that joins late: the worker streams most segments of pass 1
    import time

    real = analysis_run.import_sample_statistics
    monkeypatch.setattr(
        analysis_run, "import_sample_statistics", lambda: (time.sleep(0.3), real())[1]
    )
    _same_bits(ref, lc.analyze(data, seed=2, chunk_rows=7, threads=2).to_dict())
    assert len(forking) == 2

    monkeypatch.setattr(workers, "processes_available", lambda: False)
    for threads in (2, 5):  # worker threads
        _same_bits(ref, lc.analyze(data, seed=2, chunk_rows=7, threads=threads).to_dict())
    assert len(forking) == 2


def test_segments_depend_on_the_number_of_chunks_only():
    for n in (0, 1, 3, 4, 5, 63, 64, 255, 256, 257, 977, 10_000):
        ranges = [(10 * i, 10 * i + 10) for i in range(n)]
        segs = scheduler.segments_of(ranges)
        assert [r for seg in segs for r in seg] == ranges  # all chunks, in order
        assert n == 0 or all(segs)  # no empty segment (repeated cuts are dropped)
        assert len(segs) <= max(1, scheduler.MAX_SEGMENTS)
        assert len(segs) <= max(1, n // scheduler.MIN_SEGMENT_CHUNKS)
        lengths = [len(seg) for seg in segs]
        assert all(a >= b - 1 for a, b in itertools.pairwise(lengths))  # longest first
        if len(segs) > 3:
            assert lengths[0] >= 3 * lengths[-1]  # short ones at the end
        same_n = scheduler.segments_of([(0, 1)] * n)
        assert [len(seg) for seg in segs] == [len(seg) for seg in same_n]
    assert scheduler.segments_of([]) == [[]]


def _take_all(tokens, conn) -> None:
    import time

    got = []
    while (i := tokens.take()) is not None:
        got.append(i)
        time.sleep(0.001)  # let the others take some
    conn.send(got)


@needs_fork
def test_each_segment_is_taken_exactly_once_across_processes():
    ctx = multiprocessing.get_context("fork")
    tokens = workers.PipeTokens()
    try:
        tokens.fill(scheduler.MAX_SEGMENTS)
        pipes = [ctx.Pipe() for _ in range(3)]
        procs = [ctx.Process(target=_take_all, args=(tokens, w)) for _, w in pipes]
        for p in procs:
            p.start()
        mine = []
        while (i := tokens.take()) is not None:
            mine.append(i)
        taken = [r.recv() for r, _ in pipes]
        for p in procs:
            p.join()
        every = sorted(mine + [i for got in taken for i in got])
        assert every == list(range(scheduler.MAX_SEGMENTS))
        assert tokens.take() is None
        tokens.fill(3)
        tokens.drain()  # a cancelled pass leaves nothing for the next one
        assert tokens.take() is None
        tokens.fill(3)
        tokens.take()
        tokens.fill(2)  # leftovers of an interrupted pass are dropped
        assert [tokens.take(), tokens.take(), tokens.take()] == [0, 1, None]
    finally:
        tokens.close()


class _BigAcc:
    """An accumulator whose state holds large and small arrays, whatever it is fed."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.data = {
            "rows": rng.standard_normal((40_000, 5)).astype(np.float32),  # 800 KB
            "ids": np.arange(80_000, dtype=np.int64)[::2],  # strided, 320 KB
            "small": np.arange(10.0),  # always pickled inline
            "text": "kept",
        }

    def push(self, block, row_ids) -> None:
        pass

    def finish(self) -> _BigAcc:
        return self


@needs_fork
@pytest.mark.parametrize("arena_bytes", [0, 1 << 22])  # too small: pickled as usual
def test_large_results_come_back_through_the_arena(arena_bytes):
    src = open_latents(np.zeros((10, 2)))
    with workers.WorkerPool(src, 1, arena_bytes=arena_bytes) as pool:
        pool.tokens.fill(1)
        ((index, acc),) = pool.workers[0].submit(_BigAcc, [[(0, 10)]], shared=True).result()
    want = _BigAcc().data
    assert index == 0 and acc.data.keys() == want.keys()
    for k, v in want.items():
        np.testing.assert_array_equal(acc.data[k], v)
        assert type(acc.data[k]) is type(v)
    # a view of the shared map, or unpickled as usual when the map is too small
    assert _in_map(acc.data["rows"]) == _in_map(acc.data["ids"]) == (arena_bytes > 0)
    assert not _in_map(acc.data["small"])


def _in_map(a) -> bool:
    """Return whether array `a` is a view of a memory map."""
    import mmap

    while isinstance(a, np.ndarray):
        a = a.base
    return isinstance(a, memoryview) and isinstance(a.obj, mmap.mmap)


@needs_fork
def test_shared_memory_is_given_back_only_when_unused():
    src = open_latents(np.zeros((10, 2)))
    with workers.WorkerPool(src, 1, arena_bytes=1 << 22) as pool:
        worker = pool.workers[0]
        pool.tokens.fill(1)
        ((_, acc),) = worker.submit(_BigAcc, [[(0, 10)]], shared=True).result()
        pool.release_shared()
        assert not worker.arena.closed  # the rows still live in it
        assert _in_map(acc.data["rows"])
        rows = acc.data["rows"].copy()
        del acc
        pool.release_shared()
        assert worker.arena.closed
        # later results come back pickled (the worker unmaps its side too)
        pool.tokens.fill(1)
        ((_, again),) = worker.submit(_BigAcc, [[(0, 10)]], shared=True).result()
        np.testing.assert_array_equal(again.data["rows"], rows)
        assert again.data["rows"].base is None or not isinstance(
            again.data["rows"].base, memoryview
        )


def test_segment_count_is_capped_by_the_state_they_hold(monkeypatch):
    assert scheduler.segment_cap(1) == scheduler.MAX_SEGMENTS
    assert scheduler.segment_cap(8 * 2048**2) == 2  # a covariance at d = 2048: 32 MiB each
    assert scheduler.segment_cap(8 * 512**2) == scheduler.SEGMENT_STATE_BUDGET // (8 * 512**2)
    ranges = [(i, i + 1) for i in range(1000)]
    assert len(scheduler.segments_of(ranges, 5)) == 5
    assert len(scheduler.segments_of(ranges, 500)) == 1000 // scheduler.MIN_SEGMENT_CHUNKS

    # the analysis sizes its passes' segments by their accumulators
    made = []
    real = scheduler.segments_of

    def spy(ranges, max_segments=scheduler.MAX_SEGMENTS):
        made.append(max_segments)
        return real(ranges, max_segments)

    monkeypatch.setattr(scheduler, "segments_of", spy)
    d = 6
    monkeypatch.setattr(scheduler, "SEGMENT_STATE_BUDGET", 3 * 8 * d * d)
    x = np.random.default_rng(1).standard_normal((2000, d))
    rep = lc.analyze(x, chunk_rows=10, threads=2)
    assert made[0] == 3  # pass 1: covariance, 8 d² bytes per segment
    np.testing.assert_allclose(rep.dims.mean, x.mean(0), rtol=1e-12)


class _SlowBigAcc(_BigAcc):
    """A big result (more than a pipe holds), ready after a moment."""

    def __init__(self) -> None:
        import time

        time.sleep(0.3)
        super().__init__()


@needs_fork
def test_an_interrupted_wait_terminates_the_busy_worker(monkeypatch):
    # Ctrl-C while this process waits for a result: the worker may be writing it, so
    # stopping the pool must terminate it, not ask it to exit and wait (a deadlock: the
    # worker blocks on the full pipe that nobody reads any more)
    import threading

    src = open_latents(np.zeros((10, 2)))
    pool = workers.WorkerPool(src, 1)
    worker = pool.workers[0]
    try:
        pool.tokens.fill(1)
        worker.submit(_SlowBigAcc, [[(0, 10)]])

        def interrupted():
            raise KeyboardInterrupt

        monkeypatch.setattr(worker._conn, "recv_bytes", interrupted)
        with pytest.raises(KeyboardInterrupt):
            worker.result()
        closing = threading.Thread(target=pool.close)
        closing.start()
        closing.join(timeout=20)
        assert not closing.is_alive()
    finally:
        if worker._proc.is_alive():  # only if the test failed: unblock it
            worker._proc.kill()
    assert multiprocessing.active_children() == []


def test_second_pass_accumulators_need_no_scipy(monkeypatch):
    # a worker process forked before the imports would otherwise import scipy (0.1 s) to
    # compute the chi2 thresholds once per segment: the factory carries them
    from latentcheck.analysis.joint import JointPass
    from latentcheck.stats.joint import mahalanobis

    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 4))
    make = JointPass.factory(
        np.arange(4), x.mean(0), np.cov(x, rowvar=False), 500, top=3, third=False
    )

    def no_scipy(*args, **kwargs):
        raise AssertionError("chi2 quantiles computed again")

    monkeypatch.setattr(mahalanobis, "chi2_upper_quantiles", no_scipy)
    acc = make()
    acc.push(x, np.arange(500))
    acc = acc.merge(make())
    assert acc.maha.result().n_rows == 500


@needs_fork
def test_a_too_tight_prefilter_gives_the_same_report(forking, monkeypatch):
    # p < 1e-15 in practice: the sample is then collected again without a prefilter, while
    # pass 2 runs on the worker, and the report does not show it
    from latentcheck.analysis import run as analysis_run

    x = np.random.default_rng(5).standard_normal((3000, 3))
    ref = lc.analyze(x, seed=3, sample_size=500, test_samples=200, chunk_rows=50, threads=2)
    calls = []

    def too_tight(n_rows: int, capacity: int) -> int:
        calls.append(n_rows)
        return 2**40  # keys are uniform on [0, 2^64): almost no row passes

    monkeypatch.setattr(analysis_run, "key_threshold", too_tight)
    got = lc.analyze(x, seed=3, sample_size=500, test_samples=200, chunk_rows=50, threads=2)
    assert calls and len(forking) == 2
    _same_bits(ref.to_dict(), got.to_dict())
    assert multiprocessing.active_children() == []


def test_passes_inside_an_analysis_leave_its_blas_limit_alone(monkeypatch):
    # each threadpoolctl limit walks every loaded library (5 ms once scipy is loaded); the
    # analysis holds one limit throughout, and its passes take none of their own
    import threadpoolctl

    calls = []
    real = threadpoolctl.threadpool_limits

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", counting)
    lc.analyze(np.random.default_rng(2).standard_normal((3000, 3)), chunk_rows=100, threads=2)
    assert len(calls) == 1
    x = np.random.default_rng(3).standard_normal((300, 2))
    src = open_latents(x)
    from functools import partial

    make = partial(plan.FirstPass, 2, dtype=src.dtype, seed=0, sample_size=50, covariance=True)
    scheduler.run_pass(src, plan_blocks([src], 20), make, threads=2)  # on its own: limits
    assert len(calls) == 2


@pytest.mark.parametrize("n", [1, 7, 64, 100, 4096])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_centring_matches_one_float64_subtraction_bit_for_bit(n: int, dtype: type) -> None:
    # pass 1 centres each chunk by a copy and an in-place subtraction over k rows at a
    # time (k = gcd(n, 64)); the bits must be those of the plain broadcast subtraction
    rng = np.random.default_rng(n)
    block = (rng.standard_normal((n, 24)) * 5.0 + 3.0).astype(dtype)
    out = np.full((n, 24), np.nan)
    rows, sums = kernels.widen(block, out)
    assert (rows is block) == (dtype is np.float64)
    np.testing.assert_allclose(sums, block.sum(axis=0, dtype=np.float64), rtol=1e-14)
    shift = sums / n
    kernels.centre(rows, shift, out)
    np.testing.assert_array_equal(out, np.subtract(block, shift, dtype=np.float64))
    if dtype is np.float64:
        np.testing.assert_array_equal(rows, block.astype(np.float64))  # left unchanged


def test_first_pass_adds_waiting_chunk_sums_whenever_its_moments_are_read() -> None:
    # chunks' sums wait in a list and join the moments in batches (BATCH_CHUNKS, or when
    # moments, comoments, merge or finish need them); any batching gives the same figures
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((1000, 6)) * [1, 2, 3, 4, 5, 6] + 50.0).astype(np.float32)

    def first(batch: int, peek: bool) -> plan.FirstPass:
        fp = plan.FirstPass(6, dtype=np.dtype(np.float32), seed=0, sample_size=50, covariance=True)
        fp.BATCH_CHUNKS = batch
        for start in range(0, 1000, 70):
            fp.push(x[start : start + 70], _ids(start, x[start : start + 70].shape[0]))
            if peek:
                assert fp.moments.n == min(start + 70, 1000)
        return fp

    ref = x.astype(np.float64)
    for fp in (first(256, False), first(3, False), first(256, True)):
        np.testing.assert_allclose(fp.moments.mean, ref.mean(0), rtol=1e-13)
        np.testing.assert_allclose(
            fp.moments.m4 / 1000, ((ref - ref.mean(0)) ** 4).mean(0), rtol=1e-10
        )
        assert fp.comoments is not None
        np.testing.assert_allclose(fp.comoments.cov(), np.cov(ref.T, bias=True), rtol=1e-10)
    a, b = first(256, False), first(256, False)
    merged = a.merge(b)  # both sides' waiting sums join first
    assert merged.moments.n == 2000
    np.testing.assert_allclose(merged.moments.mean, ref.mean(0), rtol=1e-13)


@pytest.mark.parametrize("n", [1, 7, 64, 100, 4096])
def test_column_dots_match_numpy(n: int) -> None:
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((n, 24)), rng.standard_normal((n, 24)) + 3.0
    ref = (a * b).sum(axis=0)
    got = kernels.column_dots(a, b)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13 * np.abs(a * b).sum(axis=0).max())


def test_second_pass_skips_the_finiteness_check_only_when_told_the_data_are_finite() -> None:
    rng = np.random.default_rng(9)
    x = rng.standard_normal((500, 4)).astype(np.float32)
    mean, std = x.mean(0).astype(np.float64), x.std(0).astype(np.float64)

    def counts(block: np.ndarray, finite: bool) -> np.ndarray:
        sp = plan.SecondPass((1.0, 2.0), mean, std, np.dtype(np.float32), finite=finite)
        sp.push(block, _ids(0, block.shape[0]))
        return np.stack([sp.centered.upper, sp.centered.lower, sp.prior.upper])

    np.testing.assert_array_equal(counts(x, True), counts(x, False))
    x[7, 2] = np.nan  # checked (the default): the row is left out, as in the first pass
    np.testing.assert_array_equal(counts(x, False), counts(np.delete(x, 7, axis=0), False))


def test_second_pass_extremes_are_exact_with_and_without_values_beyond() -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3000, 5)).astype(np.float32)
    x[:, 3] = rng.uniform(-1.0, 1.0, 3000)  # never beyond 3 sigma: reduced directly
    x[1234, 1] = 40.0  # far beyond: found among the candidates
    mean, std = x.mean(0).astype(np.float64), x.std(0).astype(np.float64)
    parts = []
    for s in range(0, 3000, 700):
        sp = plan.SecondPass((3.0, 4.0), mean, std, np.dtype(np.float32), finite=True)
        sp.push(x[s : s + 700], _ids(s, x[s : s + 700].shape[0]))
        parts.append(sp)
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    np.testing.assert_array_equal(merged.extremes.max, x.max(axis=0))
    np.testing.assert_array_equal(merged.extremes.min, x.min(axis=0))
    assert merged.extremes.max[1] == 40.0


def test_chunk_shift_keeps_moments_exact_far_from_zero() -> None:
    # float32 rows 3e6 std from zero, in one long chunk: the shift comes from float64
    # sums (float32 sums of 20000 such rows missed the mean by about 2000 std, and the
    # kurtosis about that shift kept three digits)
    from scipy import stats

    rng = np.random.default_rng(12)
    x = (rng.standard_normal((20000, 3)) + 3e6).astype(np.float32)
    fp = plan.FirstPass(3, dtype=np.dtype(np.float32), seed=0, sample_size=10, covariance=False)
    fp.push(x, _ids(0, x.shape[0]))
    # the reference about 3e6, exactly (the float32 values lie on a grid of 0.25): scipy
    # on the raw values loses nine digits of the mean to the offset itself
    ref = x.astype(np.float64) - 3e6
    m = fp.moments
    np.testing.assert_allclose(m.mean - 3e6, ref.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(m.skewness(), stats.skew(ref), rtol=1e-8)
    np.testing.assert_allclose(m.excess_kurtosis(), stats.kurtosis(ref), rtol=1e-8)


def test_covariance_keeps_its_small_eigenvalues_to_twelve_digits() -> None:
    # condition number 1e4, means 0.5 std from zero: centred chunk by chunk, the smallest
    # eigenvalue's direction keeps 4e-14 relative error against a long-double reference.
    # Power sums about zero (no centring) gave 1.4e-12: 30-40 times worse at every
    # conditioning, which Mardia's kurtosis over all rows then amplifies a hundredfold.
    # The bound is 5e-13: the error depends on the BLAS kernel (2.2e-13 with OpenBLAS 0.3.31's
    # SkylakeX kernel), and 5e-13 still fails the uncentred power sums by a factor of three.
    rng = np.random.default_rng(33)
    n, d = 40000, 16
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    z = rng.standard_normal((n, d)) @ (q * np.sqrt(np.logspace(0, -4, d))).T
    x = (z + 0.5 * z.std(axis=0)).astype(np.float32)
    fp = plan.FirstPass(d, dtype=np.dtype(np.float32), seed=0, sample_size=10, covariance=True)
    for s in range(0, n, 4096):
        fp.push(x[s : s + 4096], _ids(s, x[s : s + 4096].shape[0]))
    ref = x.astype(np.longdouble)
    c = ref - ref.mean(axis=0)
    cov = (c.T @ c / n).astype(np.float64)
    w, v = np.linalg.eigh(cov)
    err = fp.comoments.cov() - cov
    assert abs(v[:, 0] @ err @ v[:, 0]) / w[0] < 5e-13
