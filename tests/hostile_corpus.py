"""Generate a corpus of hostile input files for latentcheck (issue 20's fuzz harness).

``python tests/hostile_corpus.py DIR`` writes the corpus into DIR and lists it;
tests/test_hostile_fuzz.py runs every file through ``latentcheck report``. Each entry is
a file that a careless reader could crash, hang, exhaust memory on, or execute: the
report must either be written (exit 0) or refused in one line (exit 2), and nothing in
it may run code. Mutants of valid files are drawn from a seeded generator, so the corpus
is the same on every run.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: Files the corpus makes, by name; each function writes its file at the given path.
Maker = Callable[[Path], None]


def npy_bytes(header: str, data: bytes = b"") -> bytes:
    """Return a version 1.0 .npy stream with `header` as its dict, padded as numpy pads."""
    h = header.encode("latin1")
    h += b" " * (64 - (10 + len(h) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data


def _header(shape: str, descr: str = "<f8", fortran: str = "False") -> str:
    return f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}"


def _valid() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).standard_normal((64, 3)))
    return buf.getvalue()


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


class _Payload:
    """An object whose unpickling would run code: it must never be unpickled."""

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.system, ("touch PWNED",))


def _fixed() -> dict[str, bytes]:
    """Return the hand-made hostile files by name."""
    valid = _valid()
    obj = np.empty((2, 2), dtype=object)
    obj[0, 0] = _Payload()
    pickled = io.BytesIO()
    np.save(pickled, obj, allow_pickle=True)
    return {
        "empty.npy": b"",
        "magic_only.npy": b"\x93NUMPY",
        "bad_version.npy": b"\x93NUMPY\x09\x00" + valid[8:],
        "negative.npy": npy_bytes(_header("(-5, 3)"), b"\0" * 200),
        "bool_shape.npy": npy_bytes(_header("(True, 3)"), b"\0" * 200),
        "axes65.npy": npy_bytes(_header("(" + "1, " * 65 + ")"), b"\0" * 8),
        "float_shape.npy": npy_bytes(_header("(2.5, 3)"), b"\0" * 200),
        "str_shape.npy": npy_bytes(_header("'abc'"), b"\0" * 200),
        "huge_shape.npy": npy_bytes(_header(f"({2**62}, {2**62})")),
        "truncated.npy": valid[: len(valid) // 2],
        "fortran_truncated.npy": npy_bytes(_header("(100, 3)", fortran="True"), b"\0" * 80),
        "object.npy": pickled.getvalue(),
        "structured.npy": npy_bytes(_header("(4,)", descr="[('a', '<f8'), ('b', '<f8')]")),
        "complex.npy": npy_bytes(_header("(4, 2)", descr="<c16"), b"\0" * 128),
        "string.npy": npy_bytes(_header("(4, 2)", descr="<U3"), b"\0" * 96),
        "void.npy": npy_bytes(_header("(4, 2)", descr="|V8"), b"\0" * 64),
        "zero_dim.npy": npy_bytes(_header("()"), b"\0" * 8),
        "one_dim.npy": npy_bytes(_header("(10,)"), b"\0" * 80),
        "zero_cols.npy": npy_bytes(_header("(10, 0)")),
        "eval_header.npy": npy_bytes("__import__('os').system('touch PWNED')", b""),
        "junk_header.npy": npy_bytes("{'descr': <f8, shape: [[[[", b""),
        "not_zip.npz": b"PK\x03\x04" + b"\0" * 100,
        "empty_zip.npz": _zip({}),
        "pickled_member.npz": _zip({"z.npy": pickled.getvalue()}),
        "lying_member.npz": _zip(
            {"z.npy": npy_bytes(_header("(10000000, 10000000)"))}, zipfile.ZIP_DEFLATED
        ),
        "truncated_member.npz": _zip({"z.npy": valid})[:-40],
        "nan_only.npy": npy_bytes(_header("(50, 2)"), np.full(100, np.nan).tobytes()),
        "inf_mix.npy": npy_bytes(
            _header("(50, 2)"), np.tile([np.inf, 1e308, -1e308, 0.0], 25).tobytes()
        ),
        "huge_values.npy": npy_bytes(
            _header("(50, 2)"), (np.random.default_rng(1).choice([-1, 1], 100) * 1e308).tobytes()
        ),
        "constant.npy": npy_bytes(_header("(50, 2)"), np.ones(100).tobytes()),
        "not_a_pt.pt": b"\x80\x04K\x01.",
        "not_safetensors.safetensors": struct.pack("<Q", 2**60) + b"{}",
        "not_h5.h5": b"\x89HDF\r\n\x1a\n" + b"\0" * 50,
        "report.json": b"[" * 50_000 + b"]" * 50_000,
    }


def _mutants(n: int, seed: int) -> dict[str, bytes]:
    """Return `n` seeded byte-level mutants of a valid .npy and a valid .npz file."""
    rng = np.random.default_rng(seed)
    bases = {"npy": _valid(), "npz": _zip({"z.npy": _valid()})}
    out = {}
    for i in range(n):
        ext = "npy" if i % 2 == 0 else "npz"
        data = bytearray(bases[ext])
        # half in the headers (zip and .npy: the first 200 bytes), where parsing happens;
        # half in the values, which must then be analysed (NaN, inf, 1e308 included)
        in_header = i % 4 < 2
        for _ in range(int(rng.integers(1, 6))):
            at = int(rng.integers(0, 200) if in_header else rng.integers(200, len(data) - 60))
            data[at] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            data = data[: int(rng.integers(0, len(data)))]
        out[f"mutant{i:03d}.{ext}"] = bytes(data)
    return out


def make_corpus(directory: Path, n_mutants: int = 60, seed: int = 20) -> list[Path]:
    """Write the corpus into `directory` and return the paths, sorted by name."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {**_fixed(), **_mutants(n_mutants, seed)}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    if hasattr(os, "mkfifo"):
        os.mkfifo(directory / "fifo.npy")
    (directory / "zero.npz").symlink_to("/dev/zero")
    return sorted(directory.iterdir())


if __name__ == "__main__":  # pragma: no cover - a developer's tool
    for path in make_corpus(Path(sys.argv[1])):
        print(path)
