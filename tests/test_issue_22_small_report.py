"""Issue 22: the 5000 x 64 report without work or imports its figures do not need.

Shapiro-Wilk runs as one ``axis=0`` call (scipy's swilk on each column, without its
per-call overhead): the figures are those of a call per column, to the last bit. The
command line report imports the renderer of its format alone, and no multiprocessing
where no worker process is forked (checked in a fresh interpreter, against what
``import numpy, scipy.stats`` imports anyway).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.stats as st

from latentcheck.errors import SmallSampleWarning
from latentcheck.stats.normality import univariate_tests


@pytest.mark.parametrize("n", [3, 20, 5000, 6000])
def test_issue_22_shapiro_in_one_call_equals_a_call_per_column(n: int) -> None:
    rng = np.random.default_rng(n)
    x = np.column_stack(
        [rng.standard_normal(n), rng.standard_t(3, n), rng.exponential(size=n), rng.uniform(size=n)]
    )
    degenerate = np.array([False, True, False, False])  # a skipped column stays NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)  # the other tests at n = 3
        res = univariate_tests(x, degenerate=degenerate)["shapiro"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*p-value may not be accurate.*")
        warnings.filterwarnings("ignore", message=".*N > 5000.*")
        ref = [st.shapiro(x[:, j]) for j in range(x.shape[1])]
    for j in (0, 2, 3):
        assert res.statistic[j] == ref[j].statistic and res.pvalue[j] == ref[j].pvalue, j
    assert np.isnan(res.statistic[1]) and np.isnan(res.pvalue[1])


_CLI_PROBE = """
import contextlib, io, json, sys
import numpy, scipy.stats
baseline = set(sys.modules)  # what the yardstick process imports anyway
from latentcheck.cli import cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        cli.main(["report", PATH, "--format", FMT], prog_name="latentcheck", standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, exc.code
assert out.getvalue()
print(json.dumps(sorted(m for m in MODS if m in sys.modules and m not in baseline)))
"""

#: Modules the default report has no use for at d = 64 (MinCovDet skipped): the renderers
#: of other formats (the HTML one imports its plotting helpers and `statistics`), the worker
#: processes' machinery, and the heavy optional libraries.
_LAZY = {
    "json": (
        "latentcheck.render.textreport",
        "latentcheck.render.htmlreport",
        "latentcheck.render.htmlplots",
        "latentcheck.render.comparetext",
        "latentcheck.render.metricslines",
        "multiprocessing",
        "statistics",
        "sklearn",
        "statsmodels",
        "pandas",
        "matplotlib",
    ),
    "text": (
        "latentcheck.render.jsonreport",
        "latentcheck.render.htmlreport",
        "latentcheck.render.htmlplots",
        "latentcheck.render.metricslines",
        "multiprocessing",
        "sklearn",
        "statsmodels",
        "pandas",
    ),
}


@pytest.mark.slow  # a fresh interpreter per format: 2-4 s on the shared 2-core machine
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_issue_22_cli_report_imports_only_its_format(tmp_path, fmt: str) -> None:
    path = tmp_path / "z.npy"
    np.save(path, np.random.default_rng(0).standard_normal((2000, 64)).astype(np.float32))
    code = _CLI_PROBE.replace("PATH", repr(str(path))).replace("FMT", repr(fmt))
    code = code.replace("MODS", repr(_LAZY[fmt]))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.splitlines()[-1]) == []


def _children() -> set[int]:
    """Return the pids of this process's children (Linux /proc)."""
    import glob

    pids: set[int] = set()
    for path in glob.glob("/proc/self/task/*/children"):
        with open(path) as f:
            pids.update(int(p) for p in f.read().split())
    return pids


@pytest.mark.skipif(sys.platform != "linux", reason="the replicates are forked on Linux only")
def test_issue_22_energy_replicates_from_the_forked_child_are_the_in_process_ones() -> None:
    from latentcheck.analysis.energy_null import ForkedNull
    from latentcheck.analysis.joint import JointOptions
    from latentcheck.stats.joint.energy_distance import null_statistics

    got = ForkedNull(200, 12, 19, 3).result_for(200, 12)
    assert got is not None
    np.testing.assert_array_equal(got, null_statistics(200, 12, 19, 3))
    assert ForkedNull(200, 12, 19, 3).result_for(200, 11) is None  # another shape: unused
    opts = JointOptions(energy_samples=200, energy_resamples=19)
    assert ForkedNull.maybe(rows=1500, d=12, options=opts, seed=3, threads=1) is None
    assert ForkedNull.maybe(rows=150, d=200, options=opts, seed=3, threads=2) is None


@pytest.mark.skipif(sys.platform != "linux", reason="the replicates are forked on Linux only")
def test_issue_22_report_with_forked_replicates_is_the_in_process_report(monkeypatch) -> None:
    import latentcheck as lc
    from latentcheck.analysis import energy_null

    forks: list[int] = []
    real = energy_null.ForkedNull.__init__

    def counting(self, *args, **kwargs):
        forks.append(1)
        real(self, *args, **kwargs)

    # a thread another test left running would keep the analysis from forking
    monkeypatch.setattr(energy_null, "other_threads", lambda: False)
    monkeypatch.setattr(energy_null.ForkedNull, "__init__", counting)

    x = np.random.default_rng(22).standard_t(6, size=(1500, 12))
    kw = {"seed": 3, "energy_samples": 200, "energy_resamples": 19, "mcd_samples": 3}
    before = _children()
    forked = lc.analyze(x, threads=2, **kw).to_dict()
    assert forks == [1]
    assert _children() == before  # the child is reaped
    in_line = lc.analyze(x, threads=1, **kw).to_dict()
    for rep in (forked, in_line):
        rep.pop("created_at", None)
        rep["settings"].pop("threads", None)
    assert forked == in_line
    assert forked["joint"]["tests"]["energy"]["pvalue"] is not None


@pytest.mark.skipif(sys.platform != "linux", reason="the replicates are forked on Linux only")
def test_issue_22_forked_replicates_do_not_outlive_a_failed_analysis(monkeypatch) -> None:
    import latentcheck as lc
    from latentcheck.analysis import energy_null
    from latentcheck.stats import normality

    monkeypatch.setattr(energy_null, "other_threads", lambda: False)

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(normality, "univariate_tests", boom)
    before = _children()
    x = np.random.default_rng(1).standard_normal((1500, 12))
    with pytest.raises(RuntimeError, match="boom"):
        lc.analyze(x, seed=0, threads=2, energy_samples=1000, energy_resamples=99)
    assert _children() == before
