"""Issue 20, per-sample files: a glob of (C, H, W) files is not read with H as channels."""

from __future__ import annotations

import json

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.cli import cli


def _files(tmp_path, shapes, seed=0):
    rng = np.random.default_rng(seed)
    arrays = []
    for i, shape in enumerate(shapes):
        c = shape[0]
        # channel k has mean k and std k + 1: any mix-up of axes shows in the moments
        x = rng.standard_normal(shape) * (np.arange(c) + 1.0)[:, None, None]
        x += np.arange(c)[:, None, None]
        np.save(tmp_path / f"s{i:02d}.npy", x.astype(np.float32))
        arrays.append(x.astype(np.float32))
    return arrays


def _pooled_rows(arrays):
    return np.concatenate([a.reshape(a.shape[0], -1).T for a in arrays]).astype(np.float64)


def test_issue_20_same_shape_chw_files_are_refused_naming_per_sample(runner, tmp_path):
    _files(tmp_path, [(4, 16, 16)] * 6)
    res = runner.invoke(cli, ["report", str(tmp_path / "*.npy")])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--per-sample" in lines[0] and "--batch" in lines[0]
    assert "16 dimensions" in lines[0]  # says what the batch reading would have been


def test_issue_20_per_sample_reads_channels_as_dims(runner, tmp_path):
    arrays = _files(tmp_path, [(4, 16, 16)] * 6)
    res = runner.invoke(
        cli, ["report", str(tmp_path / "*.npy"), "--per-sample", "--format", "json"]
    )
    assert res.exit_code == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["input"]["n_dims"] == 4 and rep["input"]["n_samples"] == 6 * 256
    assert "per-sample files: each of the 6 files is one sample" in rep["input"]["layout"]
    rows = _pooled_rows(arrays)  # independent: (positions, channels) by numpy
    np.testing.assert_allclose([d["mean"] for d in rep["dims"]], rows.mean(0), rtol=1e-10)
    np.testing.assert_allclose([d["std"] for d in rep["dims"]], rows.std(0), rtol=1e-9)
    # the API says the same, and reads each file as one (1, C, H, W) sample
    src = lc.open_latents(str(tmp_path / "*.npy"), per_sample=True)
    assert src.shape == (6, 4, 16, 16) and src.n_dims == 4
    np.testing.assert_array_equal(src.read_items(2, 3), rows[512:768].astype(np.float32))
    src.close()


def test_issue_20_batch_keeps_the_old_reading(tmp_path):
    _files(tmp_path, [(4, 16, 16)] * 3)
    src = lc.open_latents(str(tmp_path / "*.npy"), per_sample=False)
    assert src.shape == (12, 16, 16) and src.n_dims == 16
    src.close()


def test_issue_20_mixed_spatial_sizes_are_pooled_per_channel(tmp_path):
    shapes = [(4, 16, 16), (4, 8, 24), (4, 16, 16), (4, 12, 10)]
    arrays = _files(tmp_path, shapes, seed=1)
    rep = lc.analyze(str(tmp_path / "*.npy"), test_samples=100)  # the only fitting reading
    rows = _pooled_rows(arrays)
    assert rep.input.n_dims == 4 and rep.input.n_samples == rows.shape[0]
    assert "mixed spatial sizes" in rep.input.layout and "(8×24, 12×10, 16×16)" in rep.input.layout
    assert f"{rows.shape[0]} rows (positions, not samples) of 4 channels" in rep.input.layout
    np.testing.assert_allclose(rep.dims.mean, rows.mean(0), rtol=1e-10)
    np.testing.assert_allclose(rep.dims.std, rows.std(0), rtol=1e-9)
    # channels last in the files: the channel axis picks them
    for p in tmp_path.glob("*.npy"):
        np.save(p, np.moveaxis(np.load(p), 0, -1))
    rep_last = lc.analyze(str(tmp_path / "*.npy"), channel_axis=-1, test_samples=100)
    np.testing.assert_allclose(rep_last.dims.mean, rows.mean(0), rtol=1e-10)


def test_issue_20_batches_of_disagreeing_shapes_are_not_taken_as_channels(tmp_path):
    _files(tmp_path, [(100, 4, 4), (100, 5, 5)])
    with pytest.raises(lc.InputError, match="Shards disagree"):
        lc.open_latents(str(tmp_path / "*.npy"))
    with pytest.raises(lc.InputError, match="--flatten needs"):
        lc.open_latents(str(tmp_path / "*.npy"), per_sample=True, flatten=True)
