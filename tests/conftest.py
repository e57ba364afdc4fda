"""Shared fixtures: a seeded rng, a latents-file factory, and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def latents_file(tmp_path: Path) -> Callable[..., Path]:
    """Write arrays to .npy (one array) or .npz (keyword arrays) in tmp_path."""
    counter = {"n": 0}

    def make(
        array: Any = None, *, name: str | None = None, compressed: bool = False, **arrays: Any
    ) -> Path:
        counter["n"] += 1
        if array is not None:
            path = tmp_path / (name or f"latents{counter['n']}.npy")
            np.save(path, array)
            return path
        path = tmp_path / (name or f"latents{counter['n']}.npz")
        (np.savez_compressed if compressed else np.savez)(path, **arrays)
        return path

    return make


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
