"""Remote inputs through fsspec (issue 19): same reports as local files, ranged reads.

Remote files live in fsspec's in-process ``memory://`` filesystem (and a tmp directory
through ``file://``); a spying subclass of it records every byte range fetched, so that
a test can show a ``.npy`` file is read by its header and then by blocks, never whole.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.cli import cli
from latentcheck.io.latents import file_keys, open_latents

fsspec = pytest.importorskip("fsspec")
from fsspec.implementations.memory import MemoryFileSystem  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from hostile_corpus import make_corpus  # noqa: E402


class SpyFileSystem(MemoryFileSystem):
    """The memory filesystem (same store) that records the ranges read and its options."""

    protocol = "spymem"
    reads: ClassVar[list[tuple[str, int | None, int | None]]] = []
    options: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, *args: Any, **storage_options: Any) -> None:
        super().__init__(*args, **storage_options)
        SpyFileSystem.options.append(dict(storage_options))

    @classmethod
    def _strip_protocol(cls, path):
        if path.startswith("spymem://"):
            path = "memory://" + path[len("spymem://") :]
        return MemoryFileSystem._strip_protocol(path)

    def cat_file(self, path, start=None, end=None, **kwargs):
        SpyFileSystem.reads.append((path, start, end))
        return super().cat_file(path, start=start, end=end, **kwargs)

    def _open(self, path, mode="rb", **kwargs):
        if "r" in mode:  # everything must go through ranged cat_file
            raise AssertionError(f"{path} was opened as a whole file")
        return super()._open(path, mode, **kwargs)


fsspec.register_implementation("spymem", SpyFileSystem, clobber=True)


@pytest.fixture(autouse=True)
def _clean_memory():
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs.clear()
    MemoryFileSystem.pseudo_dirs.append("")
    SpyFileSystem.reads.clear()
    SpyFileSystem.options.clear()
    SpyFileSystem.clear_instance_cache()
    yield
    MemoryFileSystem.store.clear()


def _put(url: str, data: bytes) -> str:
    fs, path = fsspec.core.url_to_fs(url)
    fs.pipe_file(path, data)
    return url


def _npy_bytes(z: np.ndarray, tmp_path: Path) -> bytes:
    p = tmp_path / "tmp_bytes.npy"
    np.save(p, z)
    data = p.read_bytes()
    p.unlink()
    return data


def _same_json(remote: dict[str, Any], local: dict[str, Any], names: dict[str, str]) -> None:
    """Assert two report dicts are byte-identical as JSON once input names are replaced."""
    a, b = json.dumps(remote, sort_keys=True), json.dumps(local, sort_keys=True)
    for old, new in names.items():
        a = a.replace(old, new)
    assert json.loads(a).pop("created_at") and json.loads(b).pop("created_at")
    da, db = json.loads(a), json.loads(b)
    da.pop("created_at"), db.pop("created_at")
    assert json.dumps(da, sort_keys=True) == json.dumps(db, sort_keys=True)


def _report(x: Any, **kw: Any) -> dict[str, Any]:
    return lc.analyze(x, seed=4, test_samples=500, **kw).to_dict()


@pytest.mark.parametrize("fortran", [False, True])
@pytest.mark.slow
def test_issue_19_remote_npy_conv_gives_the_local_report(tmp_path, fortran):
    rng = np.random.default_rng(19)
    z = rng.standard_normal((60, 4, 5, 3)) * np.array([1.0, 2.0, 0.5, 1.0])[None, :, None, None]
    z = np.asfortranarray(z) if fortran else z
    local = tmp_path / "z.npy"
    np.save(local, z)
    url = _put("memory://bucket/z.npy", local.read_bytes())
    _same_json(_report(url, chunk_rows=400), _report(str(local), chunk_rows=400), {url: str(local)})
    file_url = local.as_uri()  # file:// goes through fsspec too
    _same_json(_report(file_url), _report(str(local)), {file_url: str(local)})


def test_issue_19_npy_is_read_by_ranges_never_whole(tmp_path):
    z = np.random.default_rng(1).standard_normal((20_000, 8))  # 1.28 MB of data
    data = _npy_bytes(z, tmp_path)
    _put("memory://b/z.npy", data)
    src = open_latents("spymem://b/z.npy")
    first = SpyFileSystem.reads[0]
    assert first[1] == 0 and first[2] <= 1 << 16  # the header, read ahead at most 64 KiB
    SpyFileSystem.reads.clear()
    got = src.read_items(5000, 6000)
    np.testing.assert_array_equal(got, z[5000:6000])
    assert SpyFileSystem.reads == [("/b/z.npy", 128 + 5000 * 64, 128 + 6000 * 64)]
    SpyFileSystem.reads.clear()
    rep = lc.analyze("spymem://b/z.npy", seed=0, chunk_rows=2000, test_samples=500)
    sizes = [e - s for _, s, e in SpyFileSystem.reads]
    assert max(sizes) <= 2000 * 64 + (1 << 16) < len(data) // 4
    assert sum(sizes) < 2.2 * len(data)  # two passes over the data and little more
    assert rep.input.n_samples == 20_000


def test_issue_19_recursive_globs_and_shards_match_local(tmp_path):
    rng = np.random.default_rng(3)
    parts = {"a/x0.npy": rng.standard_normal((50, 3)), "a/b/x1.npy": rng.standard_normal((70, 3))}
    parts["x2.npy"] = rng.standard_normal((40, 3))
    for name, arr in parts.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / name, arr)
        _put(f"memory://root/{name}", (tmp_path / name).read_bytes())
    src = open_latents("memory://root/**/*.npy")
    assert src.labels == [
        "memory:///root/a/b/x1.npy",
        "memory:///root/a/x0.npy",
        "memory:///root/x2.npy",
    ]
    local = open_latents(str(tmp_path / "**" / "*.npy"))  # local ** recurses too
    assert [Path(p).relative_to(tmp_path).as_posix() for p in local.labels] == [
        "a/b/x1.npy",
        "a/x0.npy",
        "x2.npy",
    ]
    expected = np.concatenate([parts["a/b/x1.npy"], parts["a/x0.npy"], parts["x2.npy"]])
    np.testing.assert_array_equal(src.read_items(0, 70), expected[:70])
    np.testing.assert_array_equal(src.read_items(120, 160), expected[120:])


@pytest.mark.parametrize("compressed", [False, True])
def test_issue_19_remote_npz_and_posterior_npz(tmp_path, compressed):
    rng = np.random.default_rng(5)
    mu, logvar = rng.standard_normal((300, 3)), rng.normal(-1, 0.3, (300, 3))
    local = tmp_path / "post.npz"
    (np.savez_compressed if compressed else np.savez)(local, mu=mu, logvar=logvar)
    url = _put("memory://p/post.npz", local.read_bytes())
    assert file_keys(url) == ["mu", "logvar"]
    # a posterior .npz is found by its key names, remotely as locally
    _same_json(_report(url), _report(str(local)), {url: str(local)})
    _same_json(_report(url, key="mu"), _report(str(local), key="mu"), {url: str(local)})


def test_issue_19_remote_safetensors_and_bfloat16(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    z = np.random.default_rng(6).standard_normal((200, 5)).astype(np.float32)
    local = tmp_path / "z.safetensors"
    st.save_file({"z": z, "other": np.zeros(3)}, local)
    url = _put("memory://s/z.safetensors", local.read_bytes())
    assert file_keys(url) == ["other", "z"]
    _same_json(_report(url), _report(str(local)), {url: str(local)})
    # bfloat16: the upper 16 bits of a float32; these values are exact in bfloat16
    exact = np.array([[1.5, -0.25, 3.0], [-2.0, 0.125, 96.0]], dtype=np.float32)
    bits = (exact.view(np.uint32) >> 16).astype("<u2")
    header = json.dumps({"z": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}})
    blob = len(header).to_bytes(8, "little") + header.encode() + bits.tobytes()
    src = open_latents(_put("memory://s/bf.safetensors", blob))
    np.testing.assert_array_equal(src.read_items(0, 2), exact)
    assert src.notes == ["memory://s/bf.safetensors[z]: bfloat16 values were converted to float32"]


def test_issue_19_remote_zarr_store(tmp_path):
    zarr = pytest.importorskip("zarr")
    z = np.random.default_rng(7).standard_normal((150, 4))
    local = tmp_path / "z.zarr"
    zarr.open(str(local), mode="w", shape=z.shape, chunks=(40, 4), dtype="f8")[:] = z
    arr = zarr.open("memory://zs/z.zarr", mode="w", shape=z.shape, chunks=(40, 4), dtype="f8")
    arr[:] = z
    url = "memory://zs/z.zarr"
    _same_json(_report(url), _report(str(local)), {url: str(local)})


def test_issue_19_compare_and_cli_with_storage_options(tmp_path, runner):
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((400, 3)), rng.standard_normal((400, 3)) * 1.2
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    ua = _put("memory://c/a.npy", (tmp_path / "a.npy").read_bytes())
    ub = _put("memory://c/b.npy", (tmp_path / "b.npy").read_bytes())
    names = {ua: str(tmp_path / "a.npy"), ub: str(tmp_path / "b.npy")}
    got = lc.compare("spymem://c/a.npy", ub, storage_options={"token": "s3cr3t"}).to_dict()
    assert SpyFileSystem.options == [{"token": "s3cr3t"}]
    assert "s3cr3t" not in json.dumps(got)
    names["spymem://c/a.npy"] = str(tmp_path / "a.npy")
    expected = lc.compare(str(tmp_path / "a.npy"), str(tmp_path / "b.npy")).to_dict()
    _same_json(got, expected, names)
    SpyFileSystem.clear_instance_cache()
    SpyFileSystem.options.clear()
    cmd = ["report", "spymem://c/a.npy", "--format", "json", "--seed", "4"]
    res = runner.invoke(cli, [*cmd, "--storage-option", "anon=true", "--storage-option", "k=v"])
    assert res.exit_code == 0, res.stderr
    assert SpyFileSystem.options == [{"anon": True, "k": "v"}]
    local = runner.invoke(
        cli, ["report", str(tmp_path / "a.npy"), "--format", "json", "--seed", "4"]
    )
    _same_json(json.loads(res.stdout), json.loads(local.stdout), names)
    SpyFileSystem.clear_instance_cache()
    SpyFileSystem.options.clear()
    res = runner.invoke(cli, ["compare", "spymem://c/a.npy", ub, "--storage-option", "x=[1]"])
    assert res.exit_code == 0, res.stderr
    assert SpyFileSystem.options == [{"x": [1]}]
    res = runner.invoke(cli, [*cmd, "--storage-option", "novalue"])
    assert res.exit_code == 2 and "expected KEY=VALUE, got 'novalue'" in res.stderr


def test_issue_19_storage_options_must_be_a_mapping():
    with pytest.raises(lc.InputError, match="storage_options must be a dict of fsspec options"):
        lc.analyze("memory://b/z.npy", storage_options=["anon=true"])


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("memory://nope/z.npy", "Error: File not found: memory://nope/z.npy"),
        ("memory://nope/*.npy", "Error: No file matches the pattern memory://nope/*.npy"),
        ("nosuchproto://b/z.npy", "Error: Cannot read nosuchproto://b/z.npy: Protocol not known"),
        ("memory://d/z.h5", "Error: memory://d/z.h5: .h5/.hdf5 files are read from local"),
        ("memory://d", "Error: memory://d is a directory; pass the files"),
    ],
)
def test_issue_19_bad_remote_paths_are_one_line(runner, path, message):
    _put("memory://d/z.h5", b"\x89HDF\r\n\x1a\n")
    _put("memory://d/sub/z.npy", b"")
    res = runner.invoke(cli, ["report", path])
    assert res.exit_code == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_issue_19_missing_fsspec_or_backend_is_one_line(runner, monkeypatch):
    if "s3fs" not in sys.modules:
        monkeypatch.setitem(sys.modules, "s3fs", None)  # as if not installed
    res = runner.invoke(cli, ["report", "s3://bucket/z.npy"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "Reading s3:// paths needs fsspec's backend for it" in res.stderr
    assert "pip install 'latentcheck[s3]'" in res.stderr
    monkeypatch.setitem(sys.modules, "fsspec", None)
    res = runner.invoke(cli, ["report", "memory://b/z.npy"])
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        "Error: Reading memory:// paths needs fsspec: pip install 'latentcheck[remote]'"
    )


@pytest.mark.slow
def test_issue_19_hostile_files_get_the_local_errors_remotely(tmp_path, runner):
    corpus = make_corpus(tmp_path / "c", n_mutants=30)
    checked = 0
    for path in corpus:
        if path.suffix not in (".npy", ".npz") or not path.is_file() or path.is_symlink():
            continue
        url = _put(f"memory://h/{path.name}", path.read_bytes())
        out = []
        for target in (str(path), url):
            res = runner.invoke(
                cli, ["report", target, "--format", "json", "--test-samples", "200"]
            )
            text = res.stdout if res.exit_code == 0 else res.stderr
            text = re.sub(r" at 0x[0-9a-f]+", "", text.replace(target, "P"))  # object ids
            out.append((res.exit_code, text))
        assert out[0][0] in (0, 2), (path.name, out[0])
        if out[0][0] == 0:
            _same_json(json.loads(out[1][1]), json.loads(out[0][1]), {})
        else:
            assert out[1] == out[0], path.name
        checked += 1
    assert checked >= 50


@pytest.mark.parametrize(("length", "size"), [(10**9, 200_000), (100_000, 300_000)])
def test_issue_19_long_npy_header_is_one_line_and_refused_before_it_is_fetched(
    tmp_path, runner, length, size
):
    # a version 2.0 header may declare up to 4 GiB; numpy reads it whole before refusing it
    blob = b"\x93NUMPY\x02\x00" + length.to_bytes(4, "little") + b" " * (size - 12)
    local = tmp_path / "long.npy"
    local.write_bytes(blob)
    _put("memory://h/long.npy", blob)
    errors = []
    for target in (str(local), "spymem://h/long.npy"):
        res = runner.invoke(cli, ["report", target])
        assert res.exit_code == 2 and res.stdout == ""
        assert len(res.stderr.strip().splitlines()) == 1  # numpy's message has 3 lines
        errors.append(res.stderr.replace(target, "P"))
    assert errors[0] == errors[1]
    want = "EOF: reading array header" if length > size else "longer than numpy parses safely"
    assert want in errors[0]
    assert "pickle" not in errors[0]  # numpy's own wording advises allow_pickle=True
    assert sum(e - s for _, s, e in SpyFileSystem.reads) <= 1 << 16


@pytest.mark.slow
def test_issue_19_s3_through_a_local_moto_server(tmp_path, runner, monkeypatch):
    """s3fs against moto's S3 server on the loopback address (skipped where either is absent)."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask a metadata service
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = {"endpoint_url": f"http://{host}:{port}", "region_name": "eu-west-1"}
        options = {"key": "testing", "secret": "testing", "client_kwargs": endpoint}
        fs = fsspec.filesystem("s3", **options)
        fs.mkdir("lc-bucket")
        rng = np.random.default_rng(9)
        parts = [rng.standard_normal((300, 3)), rng.standard_normal((200, 3))]
        for i, (name, part) in enumerate(zip(["a/z0.npy", "z1.npy"], parts, strict=True)):
            np.save(tmp_path / f"z{i}.npy", part)
            fs.pipe_file(f"lc-bucket/shards/{name}", (tmp_path / f"z{i}.npy").read_bytes())
        got = _report("s3://lc-bucket/shards/**/*.npy", storage_options=options)
        assert got["input"]["sources"] == [
            "s3://lc-bucket/shards/a/z0.npy",
            "s3://lc-bucket/shards/z1.npy",
        ]
        local = _report([str(tmp_path / "z0.npy"), str(tmp_path / "z1.npy")])
        got["input"]["sources"] = local["input"]["sources"]
        _same_json(got, local, {})
        cmd = ["report", "s3://lc-bucket/shards/z1.npy", "--format", "json"]
        for key, value in options.items():
            cmd += ["--storage-option", f"{key}={json.dumps(value)}"]
        res = runner.invoke(cli, cmd)
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["input"]["n_samples"] == 200
        res = runner.invoke(cli, [cmd[0], "s3://lc-bucket/missing.npy", *cmd[2:]])
        assert res.exit_code == 2
        assert res.stderr.strip() == "Error: File not found: s3://lc-bucket/missing.npy"
    finally:
        server.stop()
