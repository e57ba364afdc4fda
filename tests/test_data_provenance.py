"""The reference data files are the ones their published figures were computed from.

tests/data/README.md names each file's source; these tests pin the bytes (so an accidental
edit fails here, not as a puzzling drift in a published value) and compare the Iris rows
with an independent copy, scikit-learn's bundled data set.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"

SHA256 = {
    "iris_setosa.csv": "5ceb0cb56183cf23f4f92ea6496e9a99cedbe0333b5001b689f7533462e6de99",
    "pingouin_multivariate.csv": "a4dd2fc45512cf5e20ed59d609525e3a30e113647012fb6c1d6d39df32efcbe2",
}


@pytest.mark.parametrize("name", sorted(SHA256))
def test_data_file_bytes_are_pinned(name: str) -> None:
    assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == SHA256[name]


def test_every_data_file_is_documented() -> None:
    readme = (DATA / "README.md").read_text()
    files = sorted(p.name for p in DATA.iterdir() if p.suffix == ".csv")
    assert files == sorted(SHA256)
    for name in files:
        assert f"`{name}`" in readme, name


def test_iris_setosa_matches_scikit_learns_copy() -> None:
    from sklearn.datasets import load_iris

    iris = load_iris()
    ours = np.loadtxt(DATA / "iris_setosa.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(ours, iris.data[iris.target == 0])


def test_pingouin_data_shape_and_columns() -> None:
    header = (DATA / "pingouin_multivariate.csv").read_text().splitlines()[0]
    assert header == "Condition,Fever,Pressure,Aches"
    values = np.loadtxt(
        DATA / "pingouin_multivariate.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3)
    )
    assert values.shape == (36, 3) and np.isfinite(values).all()
