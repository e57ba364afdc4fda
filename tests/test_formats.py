"""Optional formats: .safetensors, .h5, .zarr and .pt read lazily, by key, like .npz.

Each file must give the same report as the array it holds (the streamed passes see the same
float values in the same order), be read one slice of samples at a time, and fail with a
message that names what was found and the fix.
"""

from __future__ import annotations

import json
import pickle
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_json_close

import latentcheck as lc
from latentcheck.cli import cli
from latentcheck.errors import FormatError, InputError
from latentcheck.io import latents as loading
from latentcheck.io.latents import file_keys, iter_blocks, open_latents, resolve_key
from latentcheck.io.member import SlicedArray

FORMATS = ["safetensors", "hdf5", "zarr", "torch"]
MODULES = {"safetensors": "safetensors", "hdf5": "h5py", "zarr": "zarr", "torch": "torch"}
EXT = {"safetensors": ".safetensors", "hdf5": ".h5", "zarr": ".zarr", "torch": ".pt"}
EXTRA = {"safetensors": "safetensors", "hdf5": "hdf5", "zarr": "zarr", "torch": "torch"}


def _nest(arrays: dict[str, Any]) -> dict[str, Any]:
    """Return {"grp/z": a} as {"grp": {"z": a}}."""
    out: dict[str, Any] = {}
    for name, value in arrays.items():
        *groups, leaf = name.split("/")
        node = out
        for g in groups:
            node = node.setdefault(g, {})
        node[leaf] = value
    return out


def _write(fmt: str, path: Path, arrays: dict[str, np.ndarray] | np.ndarray) -> Path:
    """Write `arrays` (named, ``group/name`` nested) or one unnamed array in `fmt`."""
    pytest.importorskip(MODULES[fmt])
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))
    elif fmt == "hdf5":
        import h5py

        with h5py.File(path, "w") as fh:
            for k, v in arrays.items():
                # small chunks, so that slices cross chunk boundaries
                fh.create_dataset(k, data=v, chunks=(min(7, len(v)), *v.shape[1:]))
    elif fmt == "zarr":
        import zarr

        if isinstance(arrays, np.ndarray):
            zarr.save_array(str(path), arrays)
            return path
        root = zarr.open_group(str(path), mode="w")
        for k, v in arrays.items():
            *groups, leaf = k.split("/")
            node = root
            for g in groups:
                node = node.require_group(g)
            make = getattr(node, "create_array", None) or node.create_dataset
            make(leaf, shape=v.shape, dtype=v.dtype, chunks=(7, *v.shape[1:]))[...] = v
    else:
        import torch

        if isinstance(arrays, np.ndarray):
            torch.save(torch.from_numpy(arrays), path)
        else:
            torch.save(_nest({k: torch.from_numpy(v) for k, v in arrays.items()}), path)
    return path


def _figures(report: lc.Report) -> dict[str, Any]:
    """Return the report as a dict without what names the input (labels, notes, time)."""
    d = report.to_dict()
    d.pop("created_at")
    for k in ("sources", "notes", "aggregate"):
        d["input"].pop(k)
    # the notes (checked on their own) are copied into the warnings
    d["warnings"] = [w for w in d["warnings"] if w not in report.input.notes]
    return d


def _data(case: str, rng: np.random.Generator) -> np.ndarray:
    if case == "2d":
        x = rng.standard_normal((300, 4)) * [1.0, 0.5, 2.0, 1.0] + [0.0, 1.0, 0.0, -0.5]
        x[:, 3] = x[:, 3] ** 3  # heavy tails
        return x.astype(np.float32)
    if case == "conv":
        return rng.standard_normal((24, 3, 4, 5))
    return rng.standard_normal((300, 3)).astype(np.float16)


@pytest.mark.parametrize("case", ["2d", "conv", "float16"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_file_report_equals_array_report(tmp_path, fmt, case):
    x = _data(case, np.random.default_rng(1))
    path = _write(fmt, tmp_path / f"x{EXT[fmt]}", {"z": x, "labels": np.arange(3)})
    from_file = lc.analyze(path, seed=2)
    from_array = lc.analyze(x, seed=2)
    assert_json_close(_figures(from_file), _figures(from_array), rel=1e-12)
    assert from_file.input.sources == (f"{path}[z]",)
    if case == "float16":
        assert from_file.input.notes == (f"{path}[z]: float16 values were converted to float64",)


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_are_lazy_slices(tmp_path, fmt, monkeypatch):
    x = _data("conv", np.random.default_rng(2))  # 24 samples of 20 rows
    path = _write(fmt, tmp_path / f"x{EXT[fmt]}", {"z": x})
    calls: list[tuple[int, int]] = []
    original = SlicedArray.__getitem__

    def counting(self: SlicedArray, index: slice) -> np.ndarray:
        assert isinstance(index, slice) and index.step is None
        calls.append((index.start, index.stop))
        return original(self, index)

    monkeypatch.setattr(SlicedArray, "__getitem__", counting)
    src = open_latents(path)
    assert calls == []  # opening reads no data
    block = src.read_items(5, 9)
    assert calls == [(5, 9)] and block.shape == (4 * 20, 3)
    np.testing.assert_array_equal(block, np.moveaxis(x[5:9], 1, -1).reshape(-1, 3))
    src.close()
    calls.clear()
    lc.analyze(path, chunk_rows=40, threads=1)
    # 40 rows = 2 samples per read: never the whole array, and every sample is read
    assert calls and all(stop - start <= 2 for start, stop in calls)
    assert {i for start, stop in calls for i in range(start, stop)} == set(range(24))


@pytest.mark.parametrize("fmt", FORMATS)
def test_keys_are_chosen_like_npz(tmp_path, fmt, rng):
    a, b = rng.standard_normal((10, 2)), rng.standard_normal((10, 3))
    only = _write(fmt, tmp_path / f"only{EXT[fmt]}", {"whatever": a})
    assert open_latents(only).n_dims == 2  # a single array is used whatever its name
    named = _write(fmt, tmp_path / f"named{EXT[fmt]}", {"labels": b, "latents": a})
    assert open_latents(named).labels == [f"{named}[latents]"]
    two = _write(fmt, tmp_path / f"two{EXT[fmt]}", {"foo": a, "bar": b})
    assert sorted(file_keys(two)) == ["bar", "foo"]
    with pytest.raises(FormatError, match=r"holds 2 arrays \((foo, bar|bar, foo)\).*--key"):
        open_latents(two)
    assert open_latents(two, key="bar").n_dims == 3
    with pytest.raises(FormatError, match=r"has no array named 'baz'; it holds (foo|bar), "):
        open_latents(two, key="baz")


@pytest.mark.parametrize("fmt", ["hdf5", "zarr", "torch"])
def test_nested_arrays_are_named_by_path(tmp_path, fmt, rng):
    z = rng.standard_normal((12, 2))
    path = _write(fmt, tmp_path / f"n{EXT[fmt]}", {"enc/z": z, "enc/aux/w": z[:, :1]})
    assert sorted(file_keys(path)) == ["enc/aux/w", "enc/z"]
    np.testing.assert_array_equal(open_latents(path, key="enc/z").read_items(0, 12), z)
    np.testing.assert_array_equal(open_latents(path, key="/enc/z").read_items(0, 12), z)


@pytest.mark.parametrize("fmt", ["zarr", "torch"])
def test_single_unnamed_array(tmp_path, fmt, rng):
    z = rng.standard_normal((12, 2)).astype(np.float32)
    path = _write(fmt, tmp_path / f"one{EXT[fmt]}", z)
    assert file_keys(path) == [] and resolve_key(path, None) is None
    src = open_latents(path)
    assert src.labels == [str(path)]
    np.testing.assert_array_equal(src.read_items(0, 12), z)
    with pytest.raises(InputError, match=r"--key applies to .npz files .* one unnamed array"):
        open_latents(path, key="z")


def test_zarr_store_without_the_suffix_and_directories(tmp_path, rng):
    z = rng.standard_normal((12, 2))
    store = _write("zarr", tmp_path / "store", z)
    np.testing.assert_array_equal(open_latents(store).read_items(0, 12), z)
    (tmp_path / "plain").mkdir()
    with pytest.raises(FormatError, match=r"is a directory; pass the files.*Zarr"):
        open_latents(tmp_path / "plain")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(FormatError, match=r"empty.zarr is not a readable Zarr store"):
        open_latents(tmp_path / "empty.zarr")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("names", [("mu", "logvar", "z"), ("z_mean", "log_var", None)])
def test_posterior_files_are_read_as_posteriors(tmp_path, fmt, names):
    rng = np.random.default_rng(5)
    mu = rng.standard_normal((400, 3)) * [1.0, 0.1, 0.6]
    logvar = rng.uniform(-3.0, 0.0, (400, 3))
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal((400, 3))
    mu_key, lv_key, z_key = names
    arrays = {mu_key: mu, lv_key: logvar} | ({z_key: z} if z_key else {})
    path = _write(fmt, tmp_path / f"post{EXT[fmt]}", arrays)
    got = lc.analyze(path, seed=4)
    expected = lc.analyze(z if z_key else None, mu=mu, logvar=logvar, seed=4)
    assert got.input.kind == "posterior"
    assert_json_close(_figures(got), _figures(expected), rel=1e-12)
    if z_key:
        assert got.input.aggregate == f"z as given ({path}[z])"
    else:
        assert got.input.aggregate.startswith("one seeded draw")


@pytest.mark.parametrize("fmt", FORMATS)
def test_shards_are_one_data_set(tmp_path, fmt):
    rng = np.random.default_rng(6)
    parts = [rng.standard_normal((n, 3)) for n in (50, 110, 40)]
    for i, p in enumerate(parts):
        _write(fmt, tmp_path / f"shard{i}{EXT[fmt]}", {"z": p})
    pattern = str(tmp_path / f"shard*{EXT[fmt]}")
    got = lc.analyze(pattern, seed=1, chunk_rows=32)
    assert len(got.input.sources) == 3
    expected = lc.analyze(np.concatenate(parts), seed=1, chunk_rows=32)
    assert_json_close(_figures(got), _figures(expected), rel=1e-12)


def test_posterior_shards_and_mixed_formats(tmp_path):
    rng = np.random.default_rng(7)
    mu = rng.standard_normal((300, 2))
    lv = rng.uniform(-2.0, 0.0, (300, 2))
    _write("safetensors", tmp_path / "p0.safetensors", {"mu": mu[:120], "logvar": lv[:120]})
    _write("hdf5", tmp_path / "p1.h5", {"mu": mu[120:], "logvar": lv[120:]})
    paths = [tmp_path / "p0.safetensors", tmp_path / "p1.h5"]
    got = lc.analyze(paths, seed=3)
    assert got.input.kind == "posterior" and len(got.input.sources) == 4  # mu, then logvar
    assert got.input.sources[2:] == tuple(f"{p}[logvar]" for p in paths)  # issue 16
    assert_json_close(_figures(got), _figures(lc.analyze(mu=mu, logvar=lv, seed=3)), rel=1e-12)
    np.save(tmp_path / "p2.npy", mu[:10])
    src = open_latents([tmp_path / "p1.h5", tmp_path / "p2.npy"], role="mu")
    got_rows = np.concatenate([b for _, b in iter_blocks(src, 64)])
    np.testing.assert_array_equal(got_rows, np.concatenate([mu[120:], mu[:10]]))


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_library_names_the_extra(tmp_path, fmt, monkeypatch):
    path = tmp_path / f"x{EXT[fmt]}"
    if fmt == "zarr":
        path.mkdir()
    else:
        path.write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, MODULES[fmt], None)
    shown = ".h5" if fmt == "hdf5" else EXT[fmt]
    expected = (
        f"Reading {shown} files needs {MODULES[fmt]}: pip install 'latentcheck[{EXTRA[fmt]}]'"
    )
    with pytest.raises(FormatError, match=f"^{re.escape(expected)}$"):
        open_latents(path)


@pytest.mark.parametrize("fmt", ["safetensors", "hdf5", "torch"])
def test_unreadable_files(tmp_path, fmt):
    pytest.importorskip(MODULES[fmt])
    path = tmp_path / f"junk{EXT[fmt]}"
    path.write_bytes(b"this is not a tensor file at all")
    with pytest.raises(FormatError, match=rf"junk{EXT[fmt]} is not a readable"):
        open_latents(path)


def test_unknown_extension_lists_the_formats(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("1 2")
    with pytest.raises(
        FormatError, match=r"Unknown file type '.txt'.*reads .npy, .npz, .safetensors, .h5/.hdf5"
    ):
        open_latents(path)
    assert loading.resolve_npz_key is loading.resolve_key


def test_hdf5_strings_empty_and_closing(tmp_path, rng):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as fh:
        fh["z"] = rng.standard_normal((20, 2))
        fh["names"] = np.array(["a", "b"], dtype=h5py.string_dtype())
        fh.create_dataset("nothing", data=h5py.Empty("f"))
    src = open_latents(path)
    handle = src.members[0].array.data.file
    assert handle  # the file stays open while streaming
    src.close()
    assert not handle and src.members[0].array is None
    with pytest.raises(FormatError, match=r"x.h5\[names\] holds strings, not numbers"):
        open_latents(path, key="names")
    with pytest.raises(FormatError, match=r"x.h5\[nothing\] is an empty HDF5 dataset"):
        open_latents(path, key="nothing")
    with pytest.raises(FormatError, match=r"has no array named 'grp'"):
        open_latents(path, key="grp")


def test_bfloat16_safetensors_is_upcast_through_torch(tmp_path, rng):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    t = torch.from_numpy(rng.standard_normal((200, 3))).to(torch.bfloat16)
    path = tmp_path / "b.safetensors"
    st.save_file({"z": t}, str(path))
    got = lc.analyze(path, seed=1)
    # float32 holds every bfloat16 value exactly, so this is the same data
    expected = lc.analyze(t.float().numpy(), seed=1)
    assert_json_close(_figures(got), _figures(expected), rel=1e-12)
    assert got.input.dtype == "float32"
    assert got.input.notes == (f"{path}[z]: bfloat16 values were converted to float32",)


def test_bfloat16_safetensors_without_torch_says_what_to_install(tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    # a bfloat16 file written by hand (8-byte header length, JSON header, raw bytes)
    header = json.dumps({"z": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}})
    raw = header.encode() + b" " * (-len(header) % 8)
    path = tmp_path / "b.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(8))
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(
        FormatError,
        match=r"b.safetensors\[z\] holds bfloat16 values, which numpy cannot represent; "
        r"install torch .*latentcheck\[torch\]",
    ):
        open_latents(path)


# --- PyTorch: tensors only, never unpickled -----------------------------------------------

RAN: list[str] = []


def _side_effect(tag: str) -> str:
    RAN.append(tag)
    return tag


class _Payload:
    """An object whose unpickling would call _side_effect."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_side_effect, ("unpickled",))


def test_pt_with_objects_is_refused_and_never_unpickled(tmp_path, rng):
    torch = pytest.importorskip("torch")
    path = tmp_path / "ckpt.pt"
    torch.save({"z": torch.zeros(4, 2), "extra": _Payload()}, path)
    RAN.clear()
    with pytest.raises(
        FormatError, match=r"ckpt.pt holds non-tensor objects .* latentcheck never unpickles"
    ):
        lc.analyze(path)
    assert RAN == []  # the payload's code never ran
    np_path = tmp_path / "np.pt"
    torch.save({"z": rng.standard_normal((4, 2))}, np_path)  # a numpy array is pickled too
    with pytest.raises(FormatError, match=r"np.pt holds non-tensor objects"):
        open_latents(np_path)
    pkl = tmp_path / "plain.pth"
    pkl.write_bytes(pickle.dumps({"z": _Payload()}, protocol=2))
    with pytest.raises(FormatError, match=r"plain.pth holds non-tensor objects"):
        open_latents(pkl)
    assert RAN == []


def test_pt_is_loaded_weights_only_and_memory_mapped(tmp_path, rng, monkeypatch):
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((30, 2))
    path = _write("torch", tmp_path / "z.pt", {"z": z, "step": np.array([3])})
    seen: list[dict[str, Any]] = []
    load = torch.load

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording)
    np.testing.assert_array_equal(open_latents(path).read_items(0, 30), z)
    assert seen and all(k["weights_only"] is True and k["mmap"] is True for k in seen)


def test_pt_legacy_format_bfloat16_and_dicts_without_tensors(tmp_path, rng):
    torch = pytest.importorskip("torch")
    z = torch.from_numpy(rng.standard_normal((30, 2)))
    legacy = tmp_path / "old.pt"
    torch.save({"z": z}, legacy, _use_new_zipfile_serialization=False)
    src = open_latents(legacy)
    np.testing.assert_array_equal(src.read_items(0, 30), z.numpy())
    assert any("legacy format, so it was read into memory" in n for n in src.notes)
    half = tmp_path / "half.pt"
    torch.save({"mu": z.to(torch.bfloat16)}, half)
    src = open_latents(half)
    assert src.dtype == np.float32 and src.notes == [
        f"{half}[mu]: bfloat16 values were converted to float32"
    ]
    np.testing.assert_array_equal(src.read_items(0, 30), z.to(torch.bfloat16).float().numpy())
    empty = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "name": "vae"}, empty)
    with pytest.raises(FormatError, match=r"meta.pt holds a dict with no tensors"):
        open_latents(empty)


def test_in_memory_bfloat16_tensor(rng):
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(rng.standard_normal((100, 2))).to(torch.bfloat16)
    src = open_latents(t)
    assert src.notes == ["array: bfloat16 values were converted to float32"]
    np.testing.assert_array_equal(src.read_items(0, 100), t.float().numpy())


@pytest.mark.parametrize("fmt", ["safetensors", "hdf5", "torch"])
def test_cli_reads_the_formats(tmp_path, runner, fmt):
    z = np.random.default_rng(8).standard_normal((200, 3))
    path = _write(fmt, tmp_path / f"z{EXT[fmt]}", {"z": z})
    res = runner.invoke(cli, ["report", str(path), "--format", "json", "--seed", "3"])
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)
    expected = json.loads(json.dumps(lc.analyze([str(path)], seed=3).to_dict()))
    got.pop("created_at"), expected.pop("created_at")
    assert got == expected


def test_issue_20_sparse_and_quantized_pt_tensors_are_one_line(tmp_path, runner, rng):
    torch = pytest.importorskip("torch")
    z = torch.from_numpy(rng.standard_normal((40, 3)))
    sparse = tmp_path / "sparse.pt"
    torch.save({"z": z.to_sparse()}, sparse)
    res = runner.invoke(cli, ["report", str(sparse)])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.strip().endswith(
        "sparse.pt[z] holds a sparse_coo tensor, which latentcheck reads only dense; save "
        "t.to_dense() instead"
    )
    assert len(res.stderr.strip().splitlines()) == 1
    quant = tmp_path / "quant.pt"
    with warnings.catch_warnings():  # torch deprecates quantized tensors; users still have them
        warnings.simplefilter("ignore", UserWarning)
        q = torch.quantize_per_tensor(z.float(), 0.1, 0, torch.qint8)
    torch.save(q, quant)
    res = runner.invoke(cli, ["report", str(quant)])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "holds qint8 values, which latentcheck cannot read" in res.stderr
