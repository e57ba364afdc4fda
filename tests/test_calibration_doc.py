"""docs/calibration.md (issue 15, "Done when"): its numbers come from a fresh run.

docs/make_calibration.py analyses seeded replicates through ``latentcheck.analyze`` and keeps
every replicate's p-values in docs/calibration.json; the table is rendered from that file.
These tests check that the table is the rendering of the JSON, that the simulated data are
what the document says (exact N(0, 1) values, the stated spatial correlation, t(5)
marginals), and recompute the first replicate of every cell, so a change of any test's
p-values fails here until ``python docs/make_calibration.py`` is rerun.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from helpers import load_doc_script
from scipy import stats

REPO = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    return load_doc_script("make_calibration")


def _doc() -> dict[str, Any]:
    return json.loads((REPO / "docs" / "calibration.json").read_text(encoding="utf-8"))


def test_calibration_table_is_the_rendering_of_its_json() -> None:
    mod = _load()
    doc = _doc()
    assert (REPO / "docs" / "calibration.md").read_text(encoding="utf-8") == mod.render(doc)
    assert set(doc["cells"]) == {f"{a}/{b}" for a in mod.LAYOUTS for b in mod.DISTRIBUTIONS}
    assert all(len(v) == doc["replicates"] for v in doc["cells"].values())


def test_calibration_conv_fields_are_exact_gaussian_with_the_stated_correlation() -> None:
    mod = _load()
    rng = np.random.default_rng(7)
    f = mod._smoothed(rng, 64)  # 64 items x 4 channels x 32 x 32
    assert abs(f.mean()) < 4 / math.sqrt(f.size / 50)  # ~50 values per independent patch
    assert f.var() == pytest.approx(1.0, abs=0.03)
    # a Gaussian kernel of sd s gives lag-h correlation exp(-h^2 / (4 s^2)) (continuous form)
    lag1 = np.mean(f[..., 1:] * f[..., :-1])
    assert lag1 == pytest.approx(math.exp(-1 / (4 * mod.SMOOTH**2)), abs=0.02)
    t5 = mod.draw("iid", "t(5)", 3).ravel() * math.sqrt(5 / 3)
    assert stats.kstest(t5, stats.t(5).cdf).pvalue > 0.001
    mix = mod.draw("iid", "mixture", 3)
    assert mix.var() == pytest.approx(1.0, abs=0.05)


@pytest.mark.slow
def test_calibration_json_matches_a_fresh_first_replicate() -> None:
    mod = _load()
    doc = _doc()
    for key, reps in doc["cells"].items():
        layout, dist = key.split("/")
        fresh = mod.replicate(layout, dist, 0)
        old = reps[0]
        assert set(fresh) == set(old), key
        for family, tests in old.items():
            for name, p in tests.items():
                a = np.array(fresh[family][name], dtype=float)
                b = np.array(p, dtype=float)
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12, err_msg=f"{key} {name}")
