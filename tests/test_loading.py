"""Loading: memory maps, .npz keys, shards and globs, layouts, and every unreadable input."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.errors import FormatError, InputError
from latentcheck.io.latents import iter_blocks, npz_keys, open_latents, plan_blocks
from latentcheck.io.member import LazyMap


def test_npy_is_memory_mapped_not_loaded(latents_file, rng):
    x = rng.standard_normal((100, 3)).astype(np.float32)
    src = open_latents(latents_file(x))
    # mapped on first use only (issue 20: no descriptor held per shard); read with pread
    assert isinstance(src.members[0].array, LazyMap)
    assert src.members[0].array._map is None
    assert isinstance(src.members[0].array[0:1], np.memmap)
    assert src.n_rows == 100 and src.n_dims == 3 and src.dtype == np.float32
    blocks = list(iter_blocks(src, 7))
    assert [b[0] for b in blocks][:3] == [0, 7, 14]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), x)


def test_fortran_ordered_npy_reads_the_same(latents_file, rng):
    x = np.asfortranarray(rng.standard_normal((50, 4)))
    src = open_latents(latents_file(x))
    np.testing.assert_array_equal(np.concatenate([b for _, b in iter_blocks(src, 8)]), x)


def test_uncompressed_npz_member_is_memory_mapped(latents_file, rng):
    z = rng.standard_normal((40, 2))
    path = latents_file(z=z, other=np.zeros(3))
    src = open_latents(path)
    assert isinstance(src.members[0].array, LazyMap)
    assert isinstance(src.members[0].array[0:1], np.memmap)
    assert src.labels == [f"{path}[z]"]
    np.testing.assert_array_equal(src.read_items(0, 40), z)


def test_compressed_npz_is_read_with_a_note(latents_file, rng):
    z = rng.standard_normal((40, 2))
    src = open_latents(latents_file(latents=z, compressed=True))
    assert any("compressed" in n for n in src.notes)
    np.testing.assert_array_equal(src.read_items(0, 40), z)


def test_npz_key_rules(latents_file, rng):
    a, b = rng.standard_normal((10, 2)), rng.standard_normal((10, 3))
    only = latents_file(whatever=a)
    assert open_latents(only).n_dims == 2
    two = latents_file(foo=a, bar=b)
    with pytest.raises(FormatError, match=r"holds 2 arrays \(foo, bar\).*choose one with --key"):
        open_latents(two)
    assert open_latents(two, key="bar").n_dims == 3
    with pytest.raises(FormatError, match=r"has no array named 'baz'; it holds foo, bar"):
        open_latents(two, key="baz")
    assert sorted(npz_keys(two)) == ["bar", "foo"]
    with pytest.raises(InputError, match=r"--key applies to .npz files"):
        open_latents(latents_file(a), key="z")


def test_shards_and_globs_are_one_data_set(tmp_path, rng):
    parts = [rng.standard_normal((n, 3)) for n in (5, 11, 2)]
    for i, p in enumerate(parts):
        np.save(tmp_path / f"shard{i}.npy", p)
    src = open_latents(str(tmp_path / "shard*.npy"))
    assert src.n_rows == 18 and len(src.members) == 3
    ranges = plan_blocks([src], 4)
    assert all(b <= 5 or a >= 5 for a, b in ranges)  # no block crosses a shard boundary
    got = np.concatenate([b for _, b in iter_blocks(src, 4)])
    np.testing.assert_array_equal(got, np.concatenate(parts))
    with pytest.warns(lc.SmallSampleWarning, match="K² needs at least 20 rows"):
        rep = lc.analyze([tmp_path / f"shard{i}.npy" for i in range(3)], allow_few_rows=True)
    np.testing.assert_allclose(rep.dims.mean, np.concatenate(parts).mean(0), rtol=1e-12)


def test_shards_must_agree(tmp_path, rng):
    np.save(tmp_path / "a.npy", rng.standard_normal((5, 3)))
    np.save(tmp_path / "b.npy", rng.standard_normal((5, 4)))
    with pytest.raises(InputError, match=r"Shards disagree: .*a.npy has samples of shape \(3,\)"):
        open_latents([tmp_path / "a.npy", tmp_path / "b.npy"])


def test_conv_rows_and_row_descriptions(rng):
    x = rng.standard_normal((3, 2, 4, 5))
    src = open_latents(x)
    assert src.n_dims == 2 and src.rows_per_item == 20 and src.n_rows == 60
    assert src.describe_row(27) == "sample 1, position (1, 2)"
    assert "channels on axis 1" in src.layout()
    flat = open_latents(x, flatten=True)
    assert flat.n_dims == 40 and flat.describe_row(2) == "sample 2"


def test_torch_like_tensors_are_converted():
    class FakeTensor:
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.a

        def __array__(self, dtype=None, copy=None):
            return self.a

    src = open_latents(FakeTensor(np.ones((4, 2), dtype=np.float32)))
    assert src.dtype == np.float32 and src.n_rows == 4


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p / "missing.npy", r"File not found: .*missing.npy"),
        (lambda p: p, r"is a directory; pass the files"),
        (lambda p: (p / "x.txt").write_text("1 2") and p / "x.txt", r"Unknown file type '.txt'"),
        (lambda p: str(p / "nothing*.npy"), r"No file matches the pattern"),
    ],
)
def test_missing_and_unknown_files(tmp_path, make, match):
    with pytest.raises(FormatError, match=match):
        open_latents(make(tmp_path))


def test_truncated_npy_is_refused(tmp_path, rng):
    path = tmp_path / "t.npy"
    np.save(path, rng.standard_normal((100, 4)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(FormatError, match=r"is truncated: its header promises shape \(100, 4\)"):
        open_latents(path)


def test_corrupt_npy_is_refused(tmp_path):
    path = tmp_path / "c.npy"
    path.write_bytes(b"this is not numpy at all")
    with pytest.raises(FormatError, match=r"is not a readable .npy array"):
        open_latents(path)


def test_corrupt_npz_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    path.write_bytes(b"PK but not really a zip")
    with pytest.raises(FormatError, match=r"is not a readable .npz archive"):
        open_latents(path)


def test_pickled_object_arrays_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "o.npy"
    obj = np.empty((3, 2), dtype=object)
    obj[:] = 1.0
    np.save(path, obj, allow_pickle=True)
    with pytest.raises(FormatError, match=r"dtype=object.*never unpickles"):
        open_latents(path)
    npz = tmp_path / "o.npz"
    np.savez(npz, z=obj)
    with pytest.raises(FormatError, match="never unpickles"):
        open_latents(npz)


@pytest.mark.parametrize(
    "array, error, match",
    [
        (np.ones((4, 2), dtype=np.complex64), FormatError, r"complex numbers \(complex64\)"),
        (np.array([["a", "b"], ["c", "d"]]), FormatError, "is not numeric"),
        (np.zeros((3,), dtype=[("a", "f4"), ("b", "f4")]), FormatError, "structured array"),
        (np.float64(3.0), InputError, r"single number \(a 0-d array\)"),
        (np.ones(5), InputError, r"got shape \(5,\) from .*reshape to \(-1, 1\)"),
        (np.ones((4, 0)), InputError, "a sample with no values"),
    ],
)
def test_arrays_that_cannot_hold_latents(array, error, match):
    with pytest.raises(error, match=match):
        open_latents(array)


def test_bad_channel_axis(rng):
    with pytest.raises(InputError, match=r"`channel_axis` 0 is not a valid non-sample axis"):
        open_latents(rng.standard_normal((2, 3, 4)), channel_axis=0)
    with pytest.raises(InputError, match=r"`channel_axis` 2 is not a valid"):
        open_latents(rng.standard_normal((2, 3)), channel_axis=2)


def test_zero_and_one_row_are_refused(latents_file):
    with pytest.raises(InputError, match="has 0 samples"):
        lc.analyze(latents_file(np.zeros((0, 3))))
    with pytest.raises(InputError, match="has 1 sample; at least 2"):
        lc.analyze(np.zeros((1, 3)))


def test_all_rows_non_finite_is_refused():
    x = np.full((5, 2), np.nan)
    with pytest.raises(InputError, match="has 0 rows without NaN or inf out of 5"):
        lc.analyze(x, allow_few_rows=True)  # past the row-count check of issue 16


def test_bad_input_types():
    with pytest.raises(InputError, match="Cannot read latents from a dict"):
        open_latents({"z": 1})
    with pytest.raises(InputError, match="No input given"):
        open_latents([])


def test_npz_with_bad_local_header_is_refused(tmp_path, rng):
    path = tmp_path / "bad.npz"
    np.savez(path, z=rng.standard_normal((5, 2)))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo("z.npy").header_offset
    data[offset : offset + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"corrupt .npz archive|not a readable"):
        open_latents(path)


def test_all_constant_data_is_refused(latents_file):
    path = latents_file(np.ones((100, 4), dtype=np.float32))
    with pytest.raises(InputError, match=r"All 4 dimensions of .* are constant"):
        lc.analyze(path)
