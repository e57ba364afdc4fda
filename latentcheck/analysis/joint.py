"""Joint Gaussianity and outliers for the analysis: second-pass accumulators and tests.

Builds the whitening from the full-data moments, streams squared Mahalanobis distances and
Mardia's moment sums over every row in the second pass, and runs the sample-based
multivariate tests (Henze–Zirkler, Royston, Doornik–Hansen, energy) and the robust MCD
distances on the seeded sample. The statistics themselves live in ``stats.multivariate``,
``stats.mardia`` and ``stats.outliers``; this module arranges them for the report.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..engine.kernels import Scratch
from ..model.joint import MahalanobisBlock, McdBlock, TopRow
from ..model.report import TestResult

if TYPE_CHECKING:
    from ..stats.joint.whitening import Whitening
    from .spatial import IndependentRows

__all__ = ["JointOptions", "JointPass", "joint_results"]

F64 = NDArray[np.float64]

#: Rows of the seeded sample used by the pairwise tests (Henze–Zirkler, Doornik–Hansen and,
#: when the third-order sums over all rows are too costly, Mardia's skewness).
DEFAULT_JOINT_SAMPLES = 5000
#: Royston's W transform is fitted for 4 <= n <= 2000 (Royston 1992).
ROYSTON_MAX_ROWS = 2000
#: The energy test costs O(n²·d) per Monte-Carlo replicate, so its rows and replicates are
#: capped by default.
DEFAULT_ENERGY_SAMPLES = 500
DEFAULT_ENERGY_RESAMPLES = 99
#: Rows for MinCovDet. With few rows per dimension the reweighted MCD flags far more than
#: 2.5% of Gaussian rows (measured at d = 64: 33% with 500 rows, 11% with 1000, 5% with
#: 2000), so it runs only with at least MCD_ROWS_PER_DIM rows per dimension. This is also
#: its budget (issue 22, README "Performance"): FastMCD's cost grows with rows x d², and the
#: default of 1000 rows runs it up to d = 50 only, whatever the size of the input; wider
#: latents raise --mcd-samples to run it, and any value below MCD_ROWS_PER_DIM per
#: dimension skips it (and the import of scikit-learn), e.g. in a loop run every epoch.
DEFAULT_MCD_SAMPLES = 1000
MCD_ROWS_PER_DIM = 20


@dataclass(frozen=True, slots=True)
class JointOptions:
    """Sample sizes of the joint tests (see the module constants for the defaults)."""

    joint_samples: int = DEFAULT_JOINT_SAMPLES
    energy_samples: int = DEFAULT_ENERGY_SAMPLES
    energy_resamples: int = DEFAULT_ENERGY_RESAMPLES
    mcd_samples: int = DEFAULT_MCD_SAMPLES
    top_rows: int = 10


class JointPass:
    """Second-pass accumulator: Mahalanobis distances and Mardia sums of the used dims.

    Each chunk is whitened once (float32 chunks in float32 where the error bound allows it,
    see :class:`~latentcheck.stats.joint.whitening.SingleWhitening`; else in float64) and
    both accumulators read the same whitened rows.
    """

    def __init__(
        self,
        used: NDArray[np.intp],
        all_dims: bool,
        whitening: Whitening,
        n: int,
        *,
        top: int,
        third: bool,
        scratch: Scratch | None = None,
        thresholds: F64 | None = None,
    ) -> None:
        from ..stats.joint.mardia import MardiaAccumulator
        from ..stats.joint.outliers import MahalanobisAccumulator

        self.used = used
        self.all_dims = all_dims
        self.maha = MahalanobisAccumulator.from_whitening(
            whitening, n, top_k=top, thresholds=thresholds
        )
        self.mardia = MardiaAccumulator.from_whitening(whitening, third_order=third)
        self._scratch = Scratch() if scratch is None else scratch

    @classmethod
    def factory(
        cls, used: NDArray[np.intp], mean: F64, cov: F64, n: int, *, top: int, third: bool
    ) -> Callable[[], JointPass]:
        """Return a function making empty accumulators that share one whitening.

        `mean` and `cov` are over all dimensions; `used` selects the joint ones.
        """
        from ..stats.joint.outliers import chi2_thresholds
        from ..stats.joint.whitening import Whitening

        w = Whitening.from_moments(mean[used], cov[np.ix_(used, used)])
        all_dims = used.size == mean.size
        # the chi2 thresholds here, once: a worker process then never imports scipy
        return functools.partial(
            cls,
            used,
            all_dims,
            w,
            n,
            top=top,
            third=third,
            scratch=Scratch(),
            thresholds=chi2_thresholds(int(used.size)),
        )

    def push(self, chunk: NDArray[Any], row_ids: NDArray[np.int64]) -> None:
        """Add a finite block of rows (all dimensions) with its global row ids."""
        block = chunk if self.all_dims else chunk[:, self.used]
        n, d = block.shape
        if block.dtype == np.float32 and self.maha.whitening.single is not None:
            # whitened in float32 (SingleWhitening); float64 only for the rows that need it
            (y32,) = self._scratch.get(1, n, d, np.float32, slot="y32")
            self.maha.push(block, row_ids, mardia=self.mardia, out_single=y32)
            return
        # room for the rows as [1, x] (see Whitening.apply), and y
        (rows,) = self._scratch.get(1, n, d + 1, slot="rows")
        (y,) = self._scratch.get(1, n, d, slot="y")
        self.maha.push(block, row_ids, mardia=self.mardia, out=(rows, y))

    def finish(self) -> JointPass:
        """Return self: nothing waits."""
        return self

    def merge(self, other: JointPass) -> JointPass:
        """Return a new accumulator holding the rows of both (neither changes)."""
        out = copy.copy(self)
        out.maha = self.maha.merge(other.maha)
        out.mardia = self.mardia.merge(other.mardia)
        return out

    __add__ = merge

    def state(self) -> dict[str, Any]:
        """Return the state as a flat dict (see the Accumulator contract)."""
        out: dict[str, Any] = {"used": self.used.copy(), "all_dims": int(self.all_dims)}
        out.update({f"maha.{k}": v for k, v in self.maha.state().items()})
        out.update({f"mardia.{k}": v for k, v in self.mardia.state().items()})
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> JointPass:
        """Rebuild an accumulator from :meth:`state`."""
        from ..engine.protocol import sub_state
        from ..stats.joint.mardia import MardiaAccumulator
        from ..stats.joint.outliers import MahalanobisAccumulator

        out = cls.__new__(cls)
        out.used = np.asarray(state["used"], dtype=np.intp)
        out.all_dims = bool(int(state["all_dims"]))
        out.maha = MahalanobisAccumulator.from_state(sub_state(state, "maha."))
        out.mardia = MardiaAccumulator.from_state(sub_state(state, "mardia."))
        out._scratch = Scratch()
        return out


class NullSource(Protocol):
    """Where the energy test's replicates were drawn in advance (see ``energy_null``)."""

    def result_for(self, m: int, d: int) -> F64 | None:
        """Return the replicates' statistics if they are of shape (m, d), else None."""


def _top_rows(
    ids: NDArray[np.int64], d2: F64, describe: Callable[[int], str]
) -> tuple[TopRow, ...]:
    """Return the top rows (row index, squared distance, the row in the input's terms)."""
    return tuple(
        TopRow(row=int(i), d2=float(v), where=describe(int(i)))
        for i, v in zip(ids, d2, strict=True)
    )


def joint_results(
    *,
    sample: NDArray[Any],
    sample_ids: NDArray[np.int64],
    used: NDArray[np.intp],
    n: int,
    mean: F64,
    cov: F64,
    joint_pass: Callable[[], JointPass | None],
    options: JointOptions,
    seed: int,
    describe: Callable[[int], str],
    run: Callable[..., Any],
    independent: IndependentRows | None = None,
    energy_null: NullSource | None = None,
) -> tuple[dict[str, TestResult], MahalanobisBlock | None, McdBlock | None]:
    """Return (tests, mahalanobis, mcd) for the report's joint block.

    `run` calls a function and collects the warnings it issues (the analysis collector);
    `joint_pass` returns the second-pass accumulator, waiting for the pass if it still runs.
    For conv latents `independent` holds the sample rows at well-separated positions: the
    tests then run on those alone (see :func:`_independent_tests`), while the Mahalanobis
    and MCD outlier rates still describe every row. `energy_null` holds the energy test's
    replicates when they were drawn in advance.
    """
    from ..stats.joint import multivariate as mv

    if independent is not None:
        mcd = _mcd(sample, sample_ids, used, options, seed, describe, run)
        jp = joint_pass()
        on_rows = _independent_tests(independent, used, options, seed, run)
        return on_rows, _mahalanobis(jp, describe), mcd
    x = np.asarray(sample[: options.joint_samples][:, used], dtype=np.float64)
    m = x.shape[0]
    sub_cov = cov[np.ix_(used, used)]
    on_sample = {
        "henze_zirkler": _with_method(run(mv.henze_zirkler, x), f"on {m} sample rows"),
    }
    xr = x[:ROYSTON_MAX_ROWS]
    on_sample["royston"] = _with_method(run(mv.royston, xr), f"on {xr.shape[0]} sample rows")
    on_sample["doornik_hansen"] = _with_method(run(mv.doornik_hansen, x), f"on {m} sample rows")
    # issue 15: the statistic on all m rows (as R's energy::mvnorm.etest), the p-value of
    # the test on the first energy_samples rows (exact Monte Carlo, fast)
    null_rows = options.energy_samples if options.energy_samples < m else m
    on_sample["energy"] = _with_method(
        run(
            mv.energy,
            x,
            n_resamples=options.energy_resamples,
            seed=seed,
            null_rows=options.energy_samples,
            null=None if energy_null is None else energy_null.result_for(null_rows, used.size),
        ),
        f"on {m} sample rows",
    )
    on_sample["mean_zero"] = _with_method(
        run(mv.mean_zero, n, mean[used], sub_cov), f"over all {n} rows"
    )
    on_sample["cov_identity"] = _with_method(run(mv.cov_identity, n, sub_cov), f"over all {n} rows")
    mcd = _mcd(sample, sample_ids, used, options, seed, describe, run)
    skew_sample = None
    if not mv.mardia_third_order_affordable(n, used.size):
        # the pass will not give the skewness: take it from the sample now, while the
        # pass may still run, rather than after it on the critical path
        skew_sample, _ = run(mv.mardia, x)

    # what needs the second pass comes last: it may still be running until now
    jp = joint_pass()
    tests: dict[str, TestResult] = {}
    if jp is not None:
        skew_all, kurt_all = jp.mardia.results()
    else:
        skew_all = kurt_all = TestResult.skipped("no second pass")
    if skew_all.reason is None:
        tests["mardia_skewness"] = _with_method(skew_all, f"over all {n} rows")
    else:
        if skew_sample is None:
            skew_sample, _ = run(mv.mardia, x)
        tests["mardia_skewness"] = _with_method(
            skew_sample,
            f"on the seeded sample of {m} rows (third-order sums over all rows exceed the "
            "flop budget)",
        )
    tests["mardia_kurtosis"] = _with_method(kurt_all, f"over all {n} rows")
    tests.update(on_sample)
    return tests, _mahalanobis(jp, describe), mcd


def _independent_tests(
    independent: IndependentRows,
    used: NDArray[np.intp],
    options: JointOptions,
    seed: int,
    run: Callable[..., Any],
) -> dict[str, TestResult]:
    """Return the joint tests of a conv source, run on rows independent across the sample.

    Rows at all positions are correlated within an item, and every joint test assumes
    independent rows: on exact N(0, I) smoothed fields mean_zero and cov_identity rejected
    in every draw (issue 15). Here each test, Hotelling's T² and the covariance test
    included, takes its moments from the first `joint_samples` rows at well-separated
    positions (Mardia's skewness and kurtosis too, from the same rows), so that its
    p-value holds under the null for independent items.
    """
    from ..stats.joint import multivariate as mv

    x = np.asarray(independent.rows[: options.joint_samples][:, used], dtype=np.float64)
    m = x.shape[0]
    where = independent.where(m)
    mean = x.mean(axis=0) if m else np.zeros(used.size)
    cov = np.cov(x, rowvar=False, ddof=0).reshape(used.size, used.size) if m > 1 else None
    tests: dict[str, TestResult] = {}
    if m > used.size + 1:
        skew, kurt = run(mv.mardia, x)
    else:
        skew = kurt = TestResult.skipped(
            f"Mardia's tests need more independent rows than dimensions + 1 ({used.size + 1}); "
            f"the sample holds {m} rows at well-separated positions"
        )
    tests["mardia_skewness"] = _with_method(skew, where)
    tests["mardia_kurtosis"] = _with_method(kurt, where)
    tests["henze_zirkler"] = _with_method(run(mv.henze_zirkler, x), where)
    xr = x[:ROYSTON_MAX_ROWS]
    tests["royston"] = _with_method(run(mv.royston, xr), independent.where(xr.shape[0]))
    tests["doornik_hansen"] = _with_method(run(mv.doornik_hansen, x), where)
    xe = x[: options.energy_samples]
    tests["energy"] = _with_method(
        run(mv.energy, xe, n_resamples=options.energy_resamples, seed=seed),
        f"{independent.where(xe.shape[0])}; {options.energy_resamples} Monte-Carlo replicates",
    )
    if cov is None:
        reason = f"{m} rows at well-separated positions are too few for the moment tests"
        tests["mean_zero"] = TestResult.skipped(reason)
        tests["cov_identity"] = TestResult.skipped(reason)
    else:
        tests["mean_zero"] = _with_method(run(mv.mean_zero, m, mean, cov), where)
        tests["cov_identity"] = _with_method(run(mv.cov_identity, m, cov), where)
    return tests


def _mahalanobis(jp: JointPass | None, describe: Callable[[int], str]) -> MahalanobisBlock | None:
    """Return the report's Mahalanobis block from the second pass (None without one)."""
    if jp is None:
        return None
    r = jp.maha.result()
    keys = [f"{q:g}" for q in r.quantiles]
    return MahalanobisBlock(
        n_rows=r.n_rows,
        n_dims=r.n_dims,
        distance="squared Mahalanobis distance with the unbiased covariance (ddof=1)",
        thresholds=dict(zip(keys, r.thresholds.tolist(), strict=True)),
        outlier_rate=dict(zip(keys, r.rates.tolist(), strict=True)),
        expected_rate=dict(zip(keys, r.expected_rates.tolist(), strict=True)),
        rate_ratio=dict(zip(keys, r.rate_ratios.tolist(), strict=True)),
        top_rows=_top_rows(r.top_row_ids, r.top_d2, describe),
        reason=r.reason,
    )


def _mcd(
    sample: NDArray[Any],
    sample_ids: NDArray[np.int64],
    used: NDArray[np.intp],
    options: JointOptions,
    seed: int,
    describe: Callable[[int], str],
    run: Callable[..., Any],
) -> McdBlock:
    """Return the report's MCD block (robust distances on the sample)."""
    from ..stats.joint.outliers import mcd_outliers

    xm = np.asarray(sample[: options.mcd_samples][:, used], dtype=np.float64)
    need = MCD_ROWS_PER_DIM * used.size
    if xm.shape[0] < need:
        return McdBlock(
            n_rows=int(xm.shape[0]),
            n_dims=int(used.size),
            outlier_rate=math.nan,
            expected_rate=0.025,
            top_rows=(),
            reason=(
                f"MinCovDet needs at least {MCD_ROWS_PER_DIM} rows per dimension ({need}) for "
                f"a trustworthy 0.975-quantile rate, the sample gives {xm.shape[0]}; raise "
                "--mcd-samples (and --sample-size) to run it"
            ),
        )
    res = run(
        mcd_outliers,
        xm,
        sample_ids[: options.mcd_samples],
        seed=seed % 2**32,  # sklearn's random_state takes 32 bits
        top=options.top_rows,
    )
    return McdBlock(
        n_rows=res.n_rows,
        n_dims=res.n_dims,
        support_fraction=_clean(res.support_fraction),
        threshold=_clean(res.threshold),
        outlier_rate=_clean(res.rate),
        expected_rate=res.expected_rate,
        top_rows=_top_rows(res.top_row_ids, res.top_d2, describe),
        reason=res.reason,
    )


def _clean(x: float) -> float:
    """Return x as a float (NaN stays NaN; to_dict turns it into null)."""
    return float(x) if x is not None else math.nan


def _with_method(result: TestResult, where: str) -> TestResult:
    """Return `result` with where it was computed added to its method."""
    if result.reason is not None:
        return result
    method = f"{result.method}; {where}" if result.method else where
    return TestResult(
        statistic=result.statistic,
        pvalue=result.pvalue,
        df=result.df,
        effect_size=result.effect_size,
        method=method,
        reason=None,
    )
