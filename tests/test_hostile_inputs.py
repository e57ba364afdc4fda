"""Issue 20, hostile headers and paths: each is one error line (exit 2), never a hang."""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.cli import cli
from latentcheck.io import latents as loading
from latentcheck.io.readers.npz import check_inflated_size


def npy_bytes(header: str, data: bytes = b"\0" * 800) -> bytes:
    """Return a version 1.0 .npy file with `header` as its dict (padded as numpy pads)."""
    h = header.encode("latin1")
    h += b" " * (64 - (10 + len(h) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data


def write_npy(path: Path, shape: str, descr: str = "<f8", data: bytes = b"\0" * 800) -> Path:
    path.write_bytes(
        npy_bytes(f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}", data)
    )
    return path


def _error(runner, *args: str) -> str:
    res = runner.invoke(cli, ["report", *args])
    assert res.exit_code == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ("(-5, 3)", "sizes must be integers >= 0"),
        ("(5, -3)", "sizes must be integers >= 0"),
        ("(True, 3)", "sizes must be integers >= 0"),
        ("(" + "1, " * 65 + ")", "65 axes"),
    ],
)
def test_issue_20_hostile_npy_header_shapes(runner, tmp_path, shape, words):
    path = write_npy(tmp_path / "h.npy", shape)
    assert words in _error(runner, str(path))


def test_issue_20_sparse_15_tib_npy_is_refused_by_arithmetic(runner, tmp_path):
    path = write_npy(tmp_path / "sparse.npy", "(1000000000000, 4)", "<f4", data=b"")
    with open(path, "r+b") as fh:  # a sparse file: nothing of the promised data on disk
        fh.truncate(path.stat().st_size + 10**12 * 16)
    line = _error(runner, str(path))
    assert "1000000000000 rows" in line and "14.6 TiB" in line and "hours" in line
    assert "--chunk-rows" in line


def test_issue_20_block_plan_is_bounded(latents_file, monkeypatch):
    src = lc.open_latents(latents_file(np.zeros((100, 2))))
    monkeypatch.setattr(loading, "MAX_BLOCKS", 9)
    with pytest.raises(lc.InputError, match="more than the 9 a pass plans"):
        loading.plan_blocks([src], 10)  # 10 blocks
    assert len(loading.plan_blocks([src], 12)) == 9  # ceil(100 / 12)
    src.close()


def test_issue_20_fifo_and_devices_as_inputs_are_refused_not_read(runner, tmp_path):
    fifo = tmp_path / "fifo.npy"
    os.mkfifo(fifo)
    assert "is a FIFO" in _error(runner, str(fifo))  # no writer: would block for ever
    zero = tmp_path / "zero.npz"
    zero.symlink_to("/dev/zero")  # read only by os.stat, never opened
    assert "is a device" in _error(runner, str(zero))
    assert "is a FIFO" in _error(runner, str(tmp_path / "*.npy"))  # through a glob too


def test_issue_20_name_too_long_and_unreadable_are_one_line(runner, tmp_path):
    assert "File name too long" in _error(runner, str(tmp_path / ("a" * 300 + ".npy")))
    if os.geteuid() != 0:  # root reads anything
        path = write_npy(tmp_path / "locked.npy", "(100, 1)")
        path.chmod(0)
        assert "Permission denied" in _error(runner, str(path))


def _zip_member(tmp_path: Path, name: str, payload: bytes, **info_fields) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("z.npy", payload)
    if info_fields:
        raw = bytearray(path.read_bytes())
        for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local, central
            at = raw.find(sig)
            flags, method = struct.unpack_from("<HH", raw, at + off)
            flags |= info_fields.get("flags", 0)
            method = info_fields.get("method", method)
            struct.pack_into("<HH", raw, at + off, flags, method)
        path.write_bytes(bytes(raw))
    return path


def test_issue_20_npz_member_declaring_more_than_memory_or_its_size(runner, tmp_path):
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, %d), }"
    huge = _zip_member(tmp_path, "huge.npz", npy_bytes(header % (10**7, 10**7), b""))
    line = _error(runner, str(huge))
    assert "corrupt" in line and "declares 800000000000000 bytes" in line
    # a member whose archive entry agrees with its header but not with the machine
    info = zipfile.ZipInfo("z.npy")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    n = memory // 8 + 1
    info.file_size = 128 + 8 * n
    with pytest.raises(lc.FormatError, match="more than this machine's"):
        check_inflated_size("m[z]", 8 * n, 128, info)
    info.file_size = 128 + 8 * 1000
    check_inflated_size("m[z]", 8 * 1000, 128, info)  # a sane member passes


def test_issue_20_encrypted_and_unknown_compression_npz(runner, tmp_path):
    import io

    buf = io.BytesIO()
    np.save(buf, np.ones((10, 2)))
    enc = _zip_member(tmp_path, "enc.npz", buf.getvalue(), flags=0x1)
    assert "encrypted" in _error(runner, str(enc))
    odd = _zip_member(tmp_path, "odd.npz", buf.getvalue(), method=99)
    assert "compression method 99" in _error(runner, str(odd))


@pytest.fixture
def saved(tmp_path):
    x = np.random.default_rng(0).standard_normal((200, 3))
    rep = lc.analyze(x, test_samples=50).to_dict()
    return json.loads(json.dumps(rep, default=float))


def _compare_error(runner, tmp_path, data: str | None, name="bad.json") -> str:
    path = tmp_path / name
    if data is not None:
        path.write_text(data)
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng(1).standard_normal((200, 3)))
    res = runner.invoke(cli, ["compare", str(path), str(good)])
    assert res.exit_code == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_issue_20_compare_refuses_hostile_saved_reports(runner, tmp_path, saved, monkeypatch):
    assert "nested too deeply" in _compare_error(runner, tmp_path, "[" * 100_000 + "]" * 100_000)
    empty = dict(saved, dims=[])
    assert "dims lists 0" in _compare_error(runner, tmp_path, json.dumps(empty))
    short = dict(saved, dims=saved["dims"][:2])
    assert "dims lists 2" in _compare_error(runner, tmp_path, json.dumps(short))
    wrong = dict(saved, dims="oops")
    assert "malformed" in _compare_error(runner, tmp_path, json.dumps(wrong))
    from latentcheck.comparison import api as comparison

    monkeypatch.setattr(comparison, "MAX_REPORT_BYTES", 1000)
    assert "more than a saved report" in _compare_error(runner, tmp_path, json.dumps(saved))
    os.mkfifo(tmp_path / "fifo.json")
    assert "is a FIFO" in _compare_error(runner, tmp_path, None, name="fifo.json")


def test_issue_20_corrupt_hdf5_chunk_mid_stream_is_one_line(runner, tmp_path):
    h5py = pytest.importorskip("h5py")
    x = np.random.default_rng(0).standard_normal((4000, 4))
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("z", data=x, chunks=(500, 4), compression="gzip")
        info = ds.id.get_chunk_info(5)  # rows 2500-2999
    raw = bytearray(path.read_bytes())
    raw[info.byte_offset : info.byte_offset + info.size] = b"\xff" * info.size
    path.write_bytes(bytes(raw))
    line = _error(runner, str(path), "--chunk-rows", "500")
    assert f"{path}[z]" in line and "is the file corrupt?" in line
