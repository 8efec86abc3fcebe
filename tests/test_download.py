"""Download cache and streaming over HTTP, against a local server on 127.0.0.1 only."""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from http_server import (
    LocalHTTPServer,
    _parse_ranges,
    closed_port,
    http_server_fixture,  # noqa: F401 - registers "http_server"
)

from processor.opendata.download import (
    DataAccessError,
    cache_path,
    download_files,
    file_checksum,
    parse_checksum,
    uproot_options,
)

REAL_FILE = (
    Path(__file__).resolve().parents[2]
    / "shared/data/atlas-opendata/2020e-13tev_4lep/data_A.4lep.root"
)


@pytest.fixture
def server(http_server: LocalHTTPServer) -> LocalHTTPServer:
    """The shared file server (rooted at ``tmp_path / "srv"``, always shut down)."""
    return http_server


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUMPNET_CACHE_DIR", str(tmp_path / "user-cache"))


def _payload(path: Path, size: int, seed: int = 0) -> bytes:
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _adler(data: bytes) -> str:
    return f"adler32:{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def _write_small_root(path: Path, n: int = 500) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 4, n)
    pts = ak.unflatten(rng.exponential(40.0, int(counts.sum())).astype(np.float32), counts)
    with uproot.recreate(path) as fh:
        fh["analysis"] = {"lep_pt": pts, "met": rng.exponential(30.0, n).astype(np.float32)}
    return {"lep_pt": ak.to_numpy(ak.flatten(pts)), "n": np.asarray(counts)}


# ---------------------------------------------------------------------------- streaming
def _compare_stream(url: str, local: Path, tree: str, branches: list[str]) -> None:
    with uproot.open(url, **uproot_options(10)) as remote:
        got = remote[tree].arrays(branches)
    with uproot.open(local) as fh:
        want = fh[tree].arrays(branches)
    assert len(got) == len(want) > 0
    for b in branches:
        assert ak.all(ak.flatten(got[b], axis=None) == ak.flatten(want[b], axis=None))


@pytest.mark.realdata
def test_stream_real_file_over_http() -> None:
    if not REAL_FILE.is_file():
        pytest.skip(f"real ATLAS Open Data file not present: {REAL_FILE}")
    with LocalHTTPServer(root=REAL_FILE.parent) as server:
        _compare_stream(
            server.url_for(REAL_FILE.name), REAL_FILE, "mini", ["lep_pt", "lep_eta", "lep_n"]
        )
        ranged = [r for r in server.requests if r.headers.get("Range")]
        assert ranged, "uproot should read by byte ranges"


def test_stream_synthetic_file_over_http(server: LocalHTTPServer) -> None:
    root = Path(server.state.root)  # type: ignore[arg-type]
    _write_small_root(root / "eos/small.root")
    _compare_stream(
        server.url_for("eos/small.root"),
        root / "eos/small.root",
        "analysis",
        ["lep_pt", "met"],
    )


def test_multipart_ranges_as_uproot_http_source_sends_them(server: LocalHTTPServer) -> None:
    """uproot's own HTTPSource asks for several ranges in one multipart request."""
    import queue

    from uproot.source.http import HTTPSource

    root = Path(server.state.root)  # type: ignore[arg-type]
    data = _payload(root / "blob.bin", 50_000)
    source = HTTPSource(server.url_for("blob.bin"), timeout=10, num_fallback_workers=1)
    try:
        chunks = source.chunks([(10, 110), (2000, 2500), (49_000, 50_000)], queue.Queue())
        assert [bytes(c.raw_data) for c in chunks] == [
            data[10:110],
            data[2000:2500],
            data[49_000:50_000],
        ]
    finally:
        source.close()
    multi = [r for r in server.requests if "," in r.headers.get("Range", "")]
    assert multi and multi[0].headers["Range"] == "bytes=10-109, 2000-2499, 49000-49999"


def test_range_parser() -> None:
    assert _parse_ranges("bytes=0-9", 100) == [(0, 9)]
    assert _parse_ranges("bytes=90-", 100) == [(90, 99)]
    assert _parse_ranges("bytes=-5", 100) == [(95, 99)]
    assert _parse_ranges("bytes=0-1, 5-6", 100) == [(0, 1), (5, 6)]
    assert _parse_ranges("bytes=200-300", 100) is None


def test_uproot_options_are_one_dict() -> None:
    assert uproot_options() == {"timeout": 90}
    assert uproot_options(12.5) == {"timeout": 12}


# ----------------------------------------------------------------------------- cache layout
def test_cache_path_mirrors_url_path(tmp_path: Path) -> None:
    url = "https://opendata.cern.ch/eos/opendata/atlas/rucio/opendata/f.2to4lep.root"
    want = tmp_path / "eos/opendata/atlas/rucio/opendata/f.2to4lep.root"
    assert cache_path(url, tmp_path) == want
    assert cache_path("simplecache::" + url, tmp_path) == want
    root_url = "root://eospublic.cern.ch:1094//eos/opendata/atlas/rucio/opendata/f.2to4lep.root"
    assert cache_path(root_url, tmp_path) == want  # root:// and https share one copy
    with pytest.raises(DataAccessError, match=r"'\.\.'"):
        cache_path("http://127.0.0.1:1/a/../b.root", tmp_path)


def test_checksum_helpers(tmp_path: Path) -> None:
    data = _payload(tmp_path / "x.bin", 12345)
    assert parse_checksum("ADLER32:37F48E7") == ("adler32", "037f48e7")
    assert f"adler32:{file_checksum(tmp_path / 'x.bin', 'adler32')}" == _adler(data)
    import hashlib

    assert file_checksum(tmp_path / "x.bin", "sha256") == hashlib.sha256(data).hexdigest()
    with pytest.raises(DataAccessError, match="not understood"):
        parse_checksum("crc:12")


# ------------------------------------------------------------------------------ downloads
def test_parallel_download_then_cache_hit(server: LocalHTTPServer, tmp_path: Path) -> None:
    root = Path(server.state.root)  # type: ignore[arg-type]
    blobs = {
        f"eos/d{i}/f{i}.root": _payload(root / f"eos/d{i}/f{i}.root", 200_000 + i, i)
        for i in range(6)
    }
    urls = [server.url_for(p) for p in blobs]
    cache = tmp_path / "cache"
    got = download_files(urls, cache, parallel=3, progress=True)
    for rel, data in blobs.items():
        local = got[server.url_for(rel)]
        assert local == cache / rel
        assert local.read_bytes() == data
    assert not list(cache.rglob("*.part"))
    assert all(r.headers.get("Want-Digest") == "adler32" for r in server.requests)
    server.clear()
    again = download_files(urls, cache, parallel=3, progress=False)
    assert again == got
    assert server.count("/") == 0, "cached files must not be fetched again"


def test_download_resumes_after_cut_connection(server: LocalHTTPServer, tmp_path: Path) -> None:
    root = Path(server.state.root)  # type: ignore[arg-type]
    data = _payload(root / "eos/big.root", 1_500_000)
    url = server.url_for("eos/big.root")
    cache = tmp_path / "cache"
    final = cache / "eos/big.root"
    part = final.with_name("big.root.part")
    server.cut(after_bytes=700_000, times=1)

    with pytest.raises(DataAccessError) as err:
        download_files([url], cache, retries=0, progress=False)
    assert url in str(err.value) and "resumes" in str(err.value)
    assert not final.exists()
    assert 0 < part.stat().st_size <= 700_000
    assert part.read_bytes() == data[: part.stat().st_size]
    kept = part.stat().st_size

    server.clear()
    got = download_files([url], cache, retries=0, progress=False)
    assert got[url] == final
    assert final.read_bytes() == data
    assert not part.exists()
    (req,) = server.requests
    assert req.headers.get("Range") == f"bytes={kept}-"


def test_download_retries_and_resumes_within_one_call(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    root = Path(server.state.root)  # type: ignore[arg-type]
    data = _payload(root / "f.root", 400_000, 3)
    server.cut(after_bytes=150_000, times=1)
    got = download_files([server.url_for("f.root")], tmp_path / "c", retries=2, progress=False)
    assert next(iter(got.values())).read_bytes() == data
    ranges = [r.headers.get("Range") for r in server.requests]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")


def test_checksum_mismatch_leaves_nothing_under_final_name(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    root = Path(server.state.root)  # type: ignore[arg-type]
    data = _payload(root / "eos/f.root", 100_000)
    url = server.url_for("eos/f.root")
    wrong = "adler32:00000001"
    with pytest.raises(DataAccessError) as err:
        download_files([url], tmp_path / "c", expected={url: {"checksum": wrong}}, progress=False)
    msg = str(err.value)
    assert url in msg and "00000001" in msg and _adler(data).split(":")[1] in msg
    assert "Run again" in msg
    assert not (tmp_path / "c/eos/f.root").exists()
    assert not (tmp_path / "c/eos/f.root.part").exists()
    # the right checksum passes
    good = download_files(
        [url],
        tmp_path / "c",
        expected={url: {"checksum": _adler(data), "size": len(data)}},
        progress=False,
    )
    assert good[url].read_bytes() == data


def test_file_changed_on_server_between_attempts_is_caught_by_server_digest(
    server: LocalHTTPServer,
    tmp_path: Path,
) -> None:
    """Resuming glues old and new bytes; EOS-style ``Digest`` reveals it and nothing is kept."""
    root = Path(server.state.root)  # type: ignore[arg-type]
    _payload(root / "f.root", 300_000, 1)
    url = server.url_for("f.root")
    server.cut(after_bytes=100_000, times=1)
    with pytest.raises(DataAccessError):
        download_files([url], tmp_path / "c", retries=0, progress=False)
    new = _payload(root / "f.root", 300_000, 2)  # same size, other bytes
    with pytest.raises(DataAccessError, match="checksum mismatch.*server"):
        download_files([url], tmp_path / "c", retries=0, progress=False)
    assert not (tmp_path / "c/f.root").exists() and not (tmp_path / "c/f.root.part").exists()
    got = download_files([url], tmp_path / "c", retries=0, progress=False)
    assert got[url].read_bytes() == new


def test_expected_size_mismatch(server: LocalHTTPServer, tmp_path: Path) -> None:
    root = Path(server.state.root)  # type: ignore[arg-type]
    _payload(root / "f.root", 5000)
    url = server.url_for("f.root")
    with pytest.raises(DataAccessError, match=r"size mismatch.*says 4000 bytes.*5000"):
        download_files([url], tmp_path / "c", expected={url: {"size": 4000}}, progress=False)
    assert not (tmp_path / "c/f.root").exists() and not (tmp_path / "c/f.root.part").exists()


def test_server_without_range_support_restarts_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    data = _payload(root / "f.root", 250_000)
    cache = tmp_path / "c"
    part = cache / "f.root.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    with LocalHTTPServer(root=root, accept_ranges=False) as server:
        got = download_files([server.url_for("f.root")], cache, progress=False)
    assert got[server.url_for("f.root")].read_bytes() == data
    assert not part.exists()


def test_http_404_is_one_clear_error(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.url_for("nope.root")
    t0 = time.monotonic()
    with pytest.raises(DataAccessError, match=r"nope\.root: HTTP 404"):
        download_files([url], tmp_path / "c", retries=3, progress=False)
    assert time.monotonic() - t0 < 2, "a 404 must not be retried"
    assert server.count("/nope.root") == 1


def test_server_down_fails_fast_and_writes_nothing(tmp_path: Path) -> None:
    port = closed_port()
    urls = [f"http://127.0.0.1:{port}/eos/a{i}.root" for i in range(3)]
    cache = tmp_path / "c"
    t0 = time.monotonic()
    with pytest.raises(DataAccessError) as err:
        download_files(urls, cache, retries=1, timeout_s=5, progress=False)
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "connection refused" in msg and f"127.0.0.1:{port}" in msg
    assert msg.count("cannot download") == 1, "one message, not one per file"
    left = [p for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts]
    assert left == []


def test_fsspec_backend_resumes_file_url(tmp_path: Path) -> None:
    """Non-HTTP URLs (root:// in real life) go through fsspec; file:// exercises that path."""
    src = tmp_path / "mount/eos/f.root"
    data = _payload(src, 300_000)
    url = src.as_uri()
    cache = tmp_path / "c"
    part = cache_path(url, cache).with_name("f.root.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:123_456])
    got = download_files([url], cache, expected={url: {"checksum": _adler(data)}}, progress=False)
    assert got[url] == cache_path(url, cache) and got[url].read_bytes() == data
    assert not part.exists()


def test_local_paths_pass_through(tmp_path: Path) -> None:
    p = tmp_path / "x.root"
    p.write_bytes(b"x")
    assert download_files([str(p)], tmp_path / "c", progress=False) == {str(p): p}
    assert not (tmp_path / "c").exists()


def test_concurrent_calls_share_the_cache(server: LocalHTTPServer, tmp_path: Path) -> None:
    """Two callers downloading the same file at once: one copy, both get it."""
    from concurrent.futures import ThreadPoolExecutor

    root = Path(server.state.root)  # type: ignore[arg-type]
    data = _payload(root / "shared.root", 800_000)
    url = server.url_for("shared.root")
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda _: download_files([url], tmp_path / "c", progress=False), range(2))
        )
    assert results[0][url].read_bytes() == data and results[0] == results[1]
    assert server.count("/shared.root") == 1
    assert sorted(os.listdir(tmp_path / "c")) == [".locks", "shared.root"]
