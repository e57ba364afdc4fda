"""The reader registry (issue 17 stage 4): a new format is one registered Reader class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.cli import cli
from latentcheck.errors import FormatError
from latentcheck.io import (
    Member,
    Reader,
    register_reader,
    registered_readers,
    unregister_reader,
)
from latentcheck.io.keys import Chooser
from latentcheck.io.latents import SUPPORTED, file_keys, open_latents


class TextReader(Reader):
    """A test format: whitespace-separated rows of numbers, one sample a line."""

    name = "text-latents"
    suffixes = (".lat",)
    shown = ".lat (test)"
    keyed = False

    def __init__(self) -> None:
        self.opened: list[Path] = []

    def keys(self, path: Path) -> list[str] | None:
        del path
        return None

    def open(self, path: Path, choose: Chooser) -> Member:
        choose(None)
        self.opened.append(path)
        arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
        return Member(str(path), tuple(arr.shape), arr.dtype, arr, in_memory=True)


class NeedsLibrary(TextReader):
    """A format whose library is not installed."""

    name = "needs-library"
    suffixes = (".needlib",)
    shown = ".needlib"
    library = "latentcheck_no_such_module"
    extra = "nosuch"

    def open(self, path: Path, choose: Chooser) -> Member:
        self.load_library()
        return super().open(path, choose)


@pytest.fixture
def text_reader():
    reader = register_reader(TextReader())
    try:
        yield reader
    finally:
        unregister_reader(reader.name)


def _write(path: Path, z: np.ndarray) -> Path:
    np.savetxt(path, z, fmt="%.17g")
    return path


def test_builtin_readers_are_registered_in_message_order():
    names = [r.name for r in registered_readers()][:6]
    assert names == ["npy", "npz", "safetensors", "hdf5", "zarr", "torch"]
    assert SUPPORTED == (".npy, .npz, .safetensors, .h5/.hdf5, .zarr (directory store), .pt/.pth")


def test_registered_reader_is_used_by_open_latents_and_analyze(tmp_path, text_reader):
    z = np.random.default_rng(0).standard_normal((300, 3))
    path = _write(tmp_path / "z.lat", z)
    src = open_latents(str(path))
    np.testing.assert_array_equal(src.read_items(0, 300), z)  # %.17g round-trips exactly
    assert text_reader.opened == [path]
    assert file_keys(path) == []
    got = lc.analyze(str(path), seed=1).to_dict()
    expected = lc.analyze(z, seed=1).to_dict()
    for rep in (got, expected):
        rep.pop("created_at"), rep.pop("input")
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_registered_reader_is_used_by_the_cli(tmp_path, runner, text_reader):
    z = np.random.default_rng(2).standard_normal((200, 2))
    lat = _write(tmp_path / "z.lat", z)
    npy = tmp_path / "z.npy"
    np.save(npy, z)
    out = []
    for path in (lat, npy):
        res = runner.invoke(cli, ["report", str(path), "--format", "json", "--seed", "3"])
        assert res.exit_code == 0, res.stderr
        rep = json.loads(res.stdout)
        rep.pop("created_at"), rep["input"].pop("path", None), rep["input"].pop("name", None)
        out.append(json.dumps(rep, sort_keys=True).replace(str(lat), "P").replace(str(npy), "P"))
    assert out[0] == out[1]
    # --key is refused as for any file of one unnamed array
    res = runner.invoke(cli, ["report", str(lat), "--key", "z"])
    assert res.exit_code == 2 and "one unnamed array; leave out --key" in res.stderr


def test_unknown_suffix_lists_registered_readers(tmp_path, text_reader):
    bad = tmp_path / "z.xyz"
    bad.write_bytes(b"0")
    with pytest.raises(FormatError, match=r"latentcheck reads .*\.pt/\.pth, \.lat \(test\)$"):
        open_latents(str(bad))


def test_missing_library_is_one_line_naming_the_extra(tmp_path, runner):
    reader = register_reader(NeedsLibrary())
    try:
        path = _write(tmp_path / "z.needlib", np.zeros((10, 2)))
        res = runner.invoke(cli, ["report", str(path)])
    finally:
        unregister_reader(reader.name)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "Error: Reading .needlib files needs latentcheck_no_such_module: "
        "pip install 'latentcheck[nosuch]'"
    ]


def test_clashing_suffix_is_refused_unless_replaced(text_reader):
    class Other(TextReader):
        name = "other"
        shown = ".lat (other)"

    with pytest.raises(ValueError, match="clashes with the registered reader 'text-latents'"):
        register_reader(Other())
    other = register_reader(Other(), replace=True)
    try:
        assert [r.name for r in registered_readers() if ".lat" in r.suffixes] == ["other"]
    finally:
        unregister_reader(other.name)
