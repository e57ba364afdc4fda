"""The parent resolves only the names a worker's result needs when it unpickles one.

Worker results come from this process's own forked children, never from a file; the
Unpickler still refuses functions and foreign classes, so no pickle can run code there.
"""

from __future__ import annotations

import os
import pickle
from functools import partial

import numpy as np
import pytest
from test_passes import _Failing, needs_fork

from latentcheck.engine import plan, scheduler, workers
from latentcheck.engine.accumulators import Moments
from latentcheck.engine.workers import Arena, rebuild_error, worker_result_class
from latentcheck.errors import InputError
from latentcheck.io.latents import open_latents, plan_blocks


class _Runs:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _LoadsAFile:
    def __reduce__(self):
        return (np.load, ("x.npy", None, True))


@pytest.fixture
def arena():
    a = Arena(1 << 16)
    yield a
    a.close()


def test_results_of_the_engine_round_trip(arena):
    acc = Moments(3)
    acc.push(np.random.default_rng(0).standard_normal((50, 3)))
    ok, back = arena.loads(arena.dumps((True, acc), use_map=False))
    assert ok and isinstance(back, Moments)
    np.testing.assert_array_equal(back.state()["m2"], acc.state()["m2"])


def test_errors_travel_as_class_and_arguments(arena):
    # as a worker sends them: never a pickled exception, whose reducer a library may replace
    error = InputError("row 3 of x.npy is NaN")
    ok, value = arena.loads(arena.dumps((False, (type(error), error.args, str(error)))))
    rebuilt = rebuild_error(*value)
    assert not ok and type(rebuilt) is InputError and str(rebuilt) == "row 3 of x.npy is NaN"

    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}/{b}")

    odd = rebuild_error(Odd, ("only one",), "x/y")
    assert type(odd) is RuntimeError and str(odd) == "Odd: x/y"


@needs_fork
def test_a_worker_error_comes_back_with_tblib_installed():
    # dask's distributed installs tblib's exception reducer, which names functions the
    # parent refuses: the worker's error must still reach the caller as itself
    pickling_support = pytest.importorskip("tblib.pickling_support")
    pickling_support.install()
    src = open_latents(np.random.default_rng(1).standard_normal((300, 2)))
    failing = _Failing(src, 290)
    make = partial(plan.FirstPass, 2, dtype=src.dtype, seed=0, sample_size=50, covariance=True)
    pool = workers.WorkerPool(failing, 1)
    try:
        with pytest.raises(InputError, match="Rows from 290 could not be read"):
            scheduler.run_pass(failing, plan_blocks([src], 20), make, threads=2, pool=pool)
    finally:
        pool.close()


@pytest.mark.parametrize("payload", [_Runs(), _LoadsAFile(), eval, getattr])
def test_functions_are_refused(arena, payload):
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(pickle.UnpicklingError, match="may not name"):
        arena.loads(data)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "eval"),
        ("posix", "system"),
        ("numpy", "load"),
        ("subprocess", "Popen"),
        ("json", "JSONDecoder"),
        ("not_imported_anywhere", "X"),
        ("numpy", "lib.format"),
    ],
)
def test_names_outside_the_allowlist_are_refused(module, name):
    with pytest.raises(pickle.UnpicklingError):
        worker_result_class(module, name)


def test_an_accumulator_class_of_the_caller_is_allowed():
    assert worker_result_class(__name__, "_Acc") is _Acc
    assert worker_result_class("builtins", "ValueError") is ValueError
    assert worker_result_class("numpy", "ndarray") is np.ndarray


class _Acc:
    def push(self, block, row_ids=None): ...
    def merge(self, other): ...
    def finish(self): ...
    def state(self): ...
