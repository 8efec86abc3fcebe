"""Filesets from ATLAS Open Data metadata (a local stand-in for the atlasopenmagic API) and inputs.

Nothing here touches the internet: the API answers come from tests/data/atom_api_releases.json
served by tests/http_server.py on 127.0.0.1.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot
from http_server import (
    LocalHTTPServer,
    api_server_fixture,  # noqa: F401 - registers "api_server"
    closed_port,
)

from processor.config import ParsingConfig
from processor.opendata.fileset import (
    COFFEA_RESERVED_KEYS,
    RELEASE_TREES,
    RUN_CACHE_NAME,
    DataAccessError,
    FilesetPlan,
    build_fileset,
    dataset_name,
    resolve_protocol,
    user_cache_dir,
    user_metadata_path,
    xrootd_available,
)
from processor.opendata.metadata import _canonical, legacy_metadata_path

DATA = Path(__file__).parent / "data" / "atom_api_releases.json"
SHARED = Path(__file__).resolve().parents[2] / "shared/data/atlas-opendata"
R25 = "2025e-13tev-beta"


def _recorded() -> dict[str, list[dict[str, Any]]]:
    doc = json.loads(DATA.read_text())
    return {k: v for k, v in doc.items() if not k.startswith("_")}


@pytest.fixture
def api(api_server: LocalHTTPServer) -> LocalHTTPServer:
    """The recorded releases behind the local API (ATLAS_API_BASE_URL points at it)."""
    for release, entries in _recorded().items():
        api_server.set_api(release, entries)
    return api_server


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private user cache, and an API address that cannot leave this machine.

    Tests that want an API use the ``api`` fixture; any other API call fails fast on a closed
    loopback port instead of reaching CERN. atlasopenmagic's module attribute is restored
    after the test (build_fileset re-reads ATLAS_API_BASE_URL into it).
    """
    import atlasopenmagic.metadata as atom_md

    cache = tmp_path / "user-cache"
    monkeypatch.setenv("BUMPNET_CACHE_DIR", str(cache))
    nowhere = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("ATLAS_API_BASE_URL", nowhere)
    monkeypatch.setattr(atom_md, "API_BASE_URL", nowhere)
    return cache


def _plan(**kw: Any) -> FilesetPlan:
    build_kw = {
        k: kw.pop(k)
        for k in list(kw)
        if k in ("run_dir", "offline", "inputs", "max_files", "tree_name", "allow_missing")
    }
    return build_fileset(ParsingConfig(**kw), **build_kw)


def _files(plan: FilesetPlan, name: str) -> list[str]:
    return list(plan.fileset[name]["files"])


# ------------------------------------------------------------------------ listing per release
@pytest.mark.parametrize(
    ("release", "skim", "samples", "names", "n_files"),
    [
        (
            R25,
            "2to4lep",
            "both",
            [
                "data",
                "mc_345060_PowhegPythia8EvtGen_NNLOPS_nnlo_30_ggH125_ZZ4l",
                "mc_410470_PhPy8EG_A14_ttbar_hdamp258p75_nonallhad",
                "mc_700901_Sh_2214_Ztt_maxHTpTV2_Mll10_40_BFilter",
            ],
            [5, 1, 3, 2],
        ),
        (R25, "GamGam", "data", ["data"], [3]),
        (
            "2020e-13tev",
            "4lep",
            "both",
            ["data", "mc_345060_ggH125_ZZ4lep", "mc_363490_llll"],
            [4, 1, 1],
        ),
        ("2020e-13tev", "2lep", "mc", ["mc_345060_ggH125_ZZ4lep"], [1]),
        ("2024r-pp", "noskim", "both", ["data", "mc_700320_Sh_2211_Zee_maxHTpTV2_BFilter"], [3, 2]),
        ("2016e-8tev", "noskim", "both", ["data", "mc_117050_ttbar_lep"], [2, 1]),
    ],
)
def test_listing_per_release_and_skim(
    api: LocalHTTPServer,
    release: str,
    skim: str,
    samples: str,
    names: list[str],
    n_files: list[int],
) -> None:
    plan = _plan(release=release, skim=skim, samples=samples, protocol="https")
    assert list(plan.fileset) == names
    assert [len(plan.fileset[n]["files"]) for n in names] == n_files
    tree = RELEASE_TREES[release]
    for entry in plan.fileset.values():
        assert set(entry["files"].values()) == {tree}
        assert entry["metadata"]["release"] == release and entry["metadata"]["skim"] == skim
        for url in entry["files"]:
            assert url.startswith("https://opendata.cern.ch/eos/opendata/atlas/"), url
            assert f".{skim}.root" in url or skim == "noskim"
    assert [d["name"] for d in plan.datasets] == names
    assert plan.metadata_source == "api"


def test_tree_names_per_release() -> None:
    assert RELEASE_TREES == {
        "2025e-13tev-beta": "analysis",
        "2020e-13tev": "mini",
        "2016e-8tev": "mini",
        "2024r-pp": "CollectionTree",
    }


@pytest.mark.skipif(
    not xrootd_available(),
    reason="protocol root needs the 'xrootd' extra (xrootd + fsspec-xrootd), not installed here "
    "(e.g. make test-lowest's venv)",
)
def test_protocol_root_keeps_xrootd_urls(api: LocalHTTPServer) -> None:
    plan = _plan(release="2020e-13tev", skim="4lep", samples="data", protocol="root")
    assert _files(plan, "data") == [
        f"root://eospublic.cern.ch:1094//eos/opendata/atlas/OutreachDatasets/2020-01-22/4lep/Data/data_{x}.4lep.root"
        for x in "ABCD"
    ]


@pytest.mark.parametrize("extra_installed", [True, False])
def test_protocol_auto_prefers_xrootd_when_the_extra_imports(
    api: LocalHTTPServer, monkeypatch: pytest.MonkeyPatch, extra_installed: bool
) -> None:
    """The default protocol is ``auto``: root:// with the 'xrootd' extra, https without it."""
    import processor.opendata.fileset as fileset_mod

    assert ParsingConfig().protocol == "auto"
    monkeypatch.setattr(fileset_mod, "xrootd_available", lambda: extra_installed)
    plan = _plan(release="2020e-13tev", skim="4lep", samples="data")
    prefix = (
        "root://eospublic.cern.ch:1094//eos/opendata/atlas/"
        if extra_installed
        else "https://opendata.cern.ch/eos/opendata/atlas/"
    )
    files = _files(plan, "data")
    assert len(files) == 4 and all(u.startswith(prefix) for u in files), files
    assert resolve_protocol("auto") == ("root" if extra_installed else "https")
    # explicit values are kept whatever is installed
    assert resolve_protocol("https") == "https" and resolve_protocol("root") == "root"
    https = _plan(release="2020e-13tev", skim="4lep", samples="data", protocol="https")
    assert all(u.startswith("https://opendata.cern.ch/") for u in _files(https, "data"))


def test_xrootd_available_needs_both_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """An importable extra means fsspec_xrootd *and* the XRootD bindings; either missing -> False."""
    for missing in ("fsspec_xrootd", "XRootD"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, missing, None)  # `import missing` raises ImportError
            assert xrootd_available() is False, missing


def test_protocol_root_without_the_extra_says_how_to_install_it(
    api: LocalHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import processor.opendata.fileset as fileset_mod

    monkeypatch.setattr(fileset_mod, "xrootd_available", lambda: False)
    with pytest.raises(DataAccessError, match=r"pip install 'bumpnet-masses\[xrootd\]'"):
        _plan(release="2020e-13tev", skim="4lep", samples="data", protocol="root")


def test_tree_name_override(api: LocalHTTPServer) -> None:
    plan = _plan(release=R25, samples="data", tree_name="mytree")
    assert set(plan.fileset["data"]["files"].values()) == {"mytree"}
    plan = _plan(release=R25, samples="data", max_files=1, **{"tree_name": None})
    assert set(plan.fileset["data"]["files"].values()) == {"analysis"}


def test_skipped_datasets_without_the_skim(
    api: LocalHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    plan = _plan(release=R25, skim="GamGam", samples="mc")
    assert [d["dsid"] for d in plan.datasets] == [410470, 700901]
    assert "have no skim 'GamGam'" in caplog.text and "345060" in caplog.text


def test_unknown_skim_lists_the_available_ones(api: LocalHTTPServer) -> None:
    with pytest.raises(
        DataAccessError,
        match=r"no both files for skim '3J1LMET30'.*available skims: 2to4lep, GamGam, noskim",
    ):
        _plan(release=R25, skim="3J1LMET30", samples="both")
    with pytest.raises(DataAccessError, match=r"dataset 345060 .* has no skim 'GamGam'"):
        _plan(release=R25, skim="GamGam", samples="mc", datasets=[345060])


# ------------------------------------------------------------------------ data vs MC, normalisation
def test_data_vs_mc_comes_from_the_metadata_not_file_names(api: LocalHTTPServer) -> None:
    """An MC entry whose files look like data stays MC, and vice versa."""
    entries = copy.deepcopy(_recorded()[R25])
    data, mc = entries[0], entries[1]
    data["skims"][0]["file_list"] = [
        "root://eospublic.cern.ch:1094//eos/x/mc_999999.looks_like_mc.2to4lep.root"
    ]
    mc["skims"][0]["file_list"] = [
        "root://eospublic.cern.ch:1094//eos/x/data15_periodD.2to4lep.root"
    ]
    api.set_api(R25, entries)
    plan = _plan(release=R25, samples="both")
    info = {d["name"]: d for d in plan.datasets}
    assert info["data"]["is_mc"] is False
    assert info["mc_700901_Sh_2214_Ztt_maxHTpTV2_Mll10_40_BFilter"]["is_mc"] is True
    assert plan.fileset["data"]["metadata"]["sample"] == "data"
    assert _files(plan, "data")[0].endswith("mc_999999.looks_like_mc.2to4lep.root")


def test_mc_normalisation_travels_in_the_fileset_metadata(api: LocalHTTPServer) -> None:
    plan = _plan(release=R25, samples="both", datasets=[410470])
    meta = plan.fileset["mc_410470_PhPy8EG_A14_ttbar_hdamp258p75_nonallhad"]["metadata"]
    assert meta["is_mc"] is True and meta["dsid"] == 410470
    assert meta["physics_short"] == "PhPy8EG_A14_ttbar_hdamp258p75_nonallhad"
    assert (meta["xsec"], meta["kfac"], meta["filteff"], meta["sumw"]) == (
        729.77,
        1.1398,
        0.5438,
        5.32e10,
    )
    assert meta["release"] == R25 and meta["skim"] == "2to4lep"
    data_meta = plan.fileset["data"]["metadata"]
    assert data_meta["is_mc"] is False and data_meta["xsec"] is None
    for entry in plan.fileset.values():
        assert not COFFEA_RESERVED_KEYS & set(entry["metadata"])
    (mc_info,) = [d for d in plan.datasets if d["is_mc"]]
    for key in (
        "name",
        "is_mc",
        "n_files",
        "release",
        "skim",
        "dsid",
        "physics_short",
        "xsec",
        "kfac",
        "filteff",
        "sumw",
        "source",
    ):
        assert key in mc_info
    assert mc_info["source"] == "release"


def test_dataset_names_are_readable() -> None:
    assert dataset_name({"dataset_number": "data"}) == "data"
    assert (
        dataset_name({"dataset_number": "700901", "physics_short": "Sh_2214_Ztt"})
        == "mc_700901_Sh_2214_Ztt"
    )
    assert dataset_name({"dataset_number": 410470, "physics_short": None}) == "mc_410470"


# ------------------------------------------------------------------------ selection
def test_select_by_dsid_and_physics_short(api: LocalHTTPServer) -> None:
    plan = _plan(
        release=R25, samples="mc", datasets=[700901, "phpy8eg_a14_ttbar_hdamp258p75_nonallhad"]
    )
    assert [d["dsid"] for d in plan.datasets] == [410470, 700901]
    # samples=both + MC names: the MC is restricted, data is taken whole
    plan = _plan(release=R25, samples="both", datasets=["700901"])
    assert list(plan.fileset) == ["data", "mc_700901_Sh_2214_Ztt_maxHTpTV2_Mll10_40_BFilter"]
    plan = _plan(release=R25, samples="data", datasets=["data"])
    assert list(plan.fileset) == ["data"]


def test_unknown_dataset_says_did_you_mean(api: LocalHTTPServer) -> None:
    with pytest.raises(DataAccessError, match=r"'700902' .*did you mean 700901"):
        _plan(release=R25, samples="mc", datasets=[700902])


def test_mc_name_with_samples_data_is_an_error(api: LocalHTTPServer) -> None:
    with pytest.raises(DataAccessError, match=r"'700901', which is MC.*samples is 'data'"):
        _plan(release=R25, samples="data", datasets=[700901])


def test_max_files_is_deterministic(api: LocalHTTPServer) -> None:
    entries = copy.deepcopy(_recorded()[R25])
    rng = np.random.default_rng(1)
    files = entries[0]["skims"][0]["file_list"]
    want = sorted(files)[:2]
    for seed in range(3):
        shuffled = list(rng.permutation(files))
        entries[0]["skims"][0]["file_list"] = shuffled
        api.set_api(R25, entries)
        plan = _plan(
            release=R25,
            samples="data",
            max_files_to_process=2,
            metadata_cache_expiry_hours=1e-9,
            protocol="https",
        )
        assert _files(plan, "data") == [
            u.replace("root://eospublic.cern.ch:1094/", "https://opendata.cern.ch") for u in want
        ], seed
        assert plan.datasets[0]["n_files_total"] == 5 and plan.datasets[0]["n_files"] == 2
    plan = _plan(release=R25, samples="data", max_files_to_process=2, max_files=3)
    assert plan.datasets[0]["n_files"] == 3, "the max_files argument wins over the config"


# ------------------------------------------------------------------------ metadata caches
def test_second_call_uses_the_user_cache(api: LocalHTTPServer, _isolated_cache: Path) -> None:
    _plan(release=R25, samples="both")
    assert api.count("/datasets") >= 2  # count + pages
    path = user_metadata_path(R25)
    # atlasopenmagic's own cache file (its atom CLI's), under $XDG_CACHE_HOME
    assert path == Path(os.environ["XDG_CACHE_HOME"]) / "atlasopenmagic" / f"metadata-{R25}.json"
    import atlasopenmagic.cli as atom_cli

    assert Path(atom_cli._metadata_cache_path(R25)).name == path.name
    origin = json.loads((_isolated_cache / "metadata" / f"{R25}.origin.json").read_text())
    assert origin["api_base_url"] == api.url
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "only atom's file there"
    # the cache is atlasopenmagic's own format: read_metadata reads it back
    import atlasopenmagic as atom

    atom.read_metadata(str(path), release=R25)
    assert atom.get_metadata("700901")["physics_short"] == "Sh_2214_Ztt_maxHTpTV2_Mll10_40_BFilter"
    assert len(_canonical(atom.get_all_metadata())) == 4

    api.clear()
    plan = _plan(release=R25, samples="both", skim="GamGam")
    assert api.count("/") == 0
    assert plan.metadata_source.startswith("user cache")


def test_run_cache_serves_reruns_and_resume(
    api: LocalHTTPServer, tmp_path: Path, _isolated_cache: Path
) -> None:
    run = tmp_path / "run"
    first = _plan(release=R25, samples="both", datasets=[700901], run_dir=run)
    doc = json.loads((run / RUN_CACHE_NAME).read_text())
    assert doc["release"] == R25 and sorted(doc["datasets"]) == ["700901", "data"]
    assert doc["complete"] == ["data"]
    # the user cache goes away: the run directory alone answers a re-run / dry run / resume
    user_metadata_path(R25).unlink()
    api.clear()
    again = _plan(release=R25, samples="both", datasets=[700901], run_dir=run)
    assert api.count("/") == 0
    assert again.fileset == first.fileset
    assert again.metadata_source.startswith("run cache")
    again = _plan(release=R25, samples="data", run_dir=run, offline=True)
    assert list(again.fileset) == ["data"]
    # a selection the run cache does not cover goes to the API once, and the run cache grows
    wider = _plan(release=R25, samples="both", run_dir=run)
    assert api.count("/datasets") >= 1
    assert len(wider.fileset) == 4
    assert sorted(json.loads((run / RUN_CACHE_NAME).read_text())["complete"]) == ["data", "mc"]


def test_expired_cache_is_refreshed_once(api: LocalHTTPServer) -> None:
    _plan(release=R25, samples="data")
    ten_hours_ago = time.time() - 10 * 3600  # the age is the mtime, as for atom
    os.utime(user_metadata_path(R25), (ten_hours_ago, ten_hours_ago))
    api.clear()
    _plan(release=R25, samples="data", metadata_cache_expiry_hours=24)
    assert api.count("/") == 0, "10 h old is fresh with a 24 h expiry"
    _plan(release=R25, samples="data", metadata_cache_expiry_hours=5)
    n = api.count("/datasets")
    assert n >= 2, "expired: fetched again"
    api.clear()
    _plan(release=R25, samples="data", metadata_cache_expiry_hours=5)
    assert api.count("/") == 0, "refreshed cache is fresh again"


def test_offline_with_a_cold_cache_says_how_to_fill_it(
    api: LocalHTTPServer, tmp_path: Path, _isolated_cache: Path
) -> None:
    with pytest.raises(DataAccessError) as err:
        _plan(release="2020e-13tev", skim="4lep", offline=True, run_dir=tmp_path / "run")
    msg = str(err.value)
    assert msg.startswith("offline: no metadata cached for release 2020e-13tev")
    assert str(user_metadata_path("2020e-13tev")) in msg
    assert "atom --release 2020e-13tev metadata skims" in msg
    assert str(tmp_path / "run" / RUN_CACHE_NAME) in msg
    assert "run once with network access" in msg and "atom.save_metadata" in msg
    assert api.count("/") == 0


def test_offline_uses_a_stale_cache_and_a_hand_made_one(
    api: LocalHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    # a file written by atlasopenmagic's save_metadata, with no sidecar and an old mtime
    import atlasopenmagic as atom
    import atlasopenmagic.metadata as atom_md

    atom_md.empty_metadata()
    atom.set_release("2020e-13tev")  # from the local API
    path = user_metadata_path("2020e-13tev")
    path.parent.mkdir(parents=True, exist_ok=True)
    atom.save_metadata(str(path))
    old = time.time() - 1000 * 3600
    os.utime(path, (old, old))
    api.clear()
    plan = _plan(release="2020e-13tev", skim="4lep", samples="both", offline=True)
    assert list(plan.fileset) == ["data", "mc_345060_ggH125_ZZ4lep", "mc_363490_llll"]
    assert api.count("/") == 0
    assert "offline: using the metadata cache" in caplog.text


def test_api_down_without_cache_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import atlasopenmagic.metadata as atom_md

    down = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("ATLAS_API_BASE_URL", down)
    monkeypatch.setattr(atom_md, "API_BASE_URL", down)
    t0 = time.monotonic()
    with pytest.raises(
        DataAccessError, match=rf"cannot fetch the metadata of release {R25} from {down}.*offline"
    ):
        _plan(release=R25)
    assert time.monotonic() - t0 < 30


def test_api_failure_with_expired_cache_falls_back(
    api: LocalHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    _plan(release="2024r-pp", skim="noskim", samples="both")
    api.set_api("2024r-pp", [])  # the API answers, but without the release
    plan = _plan(
        release="2024r-pp", skim="noskim", samples="both", metadata_cache_expiry_hours=1e-9
    )
    assert "expired" in plan.metadata_source
    assert len(plan.fileset) == 2
    assert "using the expired metadata cache" in caplog.text


def test_legacy_cache_is_moved_into_atoms_cache_once(
    api: LocalHTTPServer, _isolated_cache: Path
) -> None:
    import atlasopenmagic as atom
    import atlasopenmagic.metadata as atom_md

    atom_md.empty_metadata()
    atom.set_release(R25)  # from the local API
    old = legacy_metadata_path(R25)
    old.parent.mkdir(parents=True)
    atom.save_metadata(str(old))
    fetched = time.time() - 5 * 3600
    old.with_name(f"{R25}.info.json").write_text(
        json.dumps({"fetched_at": fetched, "api_base_url": api.url})
    )
    api.clear()
    plan = _plan(release=R25, samples="both")
    assert api.count("/") == 0, "the old cache (5 h old) was used, not the API"
    assert plan.metadata_source.startswith(f"user cache {user_metadata_path(R25)}")
    assert not old.exists() and not old.with_name(f"{R25}.info.json").exists()
    assert abs(user_metadata_path(R25).stat().st_mtime - fetched) < 2, "age kept"
    # offline too, from the new place only
    assert _plan(release=R25, samples="both", offline=True).fileset == plan.fileset


def test_atom_cli_reads_the_cache_we_write(api: LocalHTTPServer) -> None:
    """atlasopenmagic's own command is served by our cache, with the API unreachable."""
    _plan(release=R25, samples="both")
    env = {
        **os.environ,
        "ATLAS_API_BASE_URL": f"http://127.0.0.1:{closed_port()}",
        "ATLASOPENMAGIC_NO_UPDATE_CHECK": "1",
        "XDG_CONFIG_HOME": str(user_metadata_path(R25).parents[2] / "config"),
    }
    code = (
        "import sys; from atlasopenmagic.cli import main; "
        f"sys.argv = ['atom', '--release', '{R25}', 'metadata', 'skims']; main()"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "2to4lep" in res.stdout and "GamGam" in res.stdout


def test_user_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BUMPNET_CACHE_DIR", str(tmp_path / "x"))
    assert user_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("BUMPNET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "bumpnet-masses"


# ------------------------------------------------------------------------ download through the fileset
def _write_root(path: Path, tree: str, n: int = 50, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 3, n)
    pts = ak.unflatten(rng.exponential(40.0, int(counts.sum())).astype(np.float32), counts)
    path.parent.mkdir(parents=True, exist_ok=True)
    with uproot.recreate(path) as fh:
        fh[tree] = {"lep_pt": pts}


def _local_release(api: LocalHTTPServer, tmp_path: Path) -> list[dict[str, Any]]:
    """Recorded 2025e entries whose 2to4lep files are served by the local server."""
    srv = tmp_path / "srv"
    entries = copy.deepcopy(_recorded()[R25])
    for entry in entries:
        for skim in entry["skims"]:
            if skim["skim_type"] != "2to4lep":
                continue
            local = []
            for i, url in enumerate(sorted(skim["file_list"])[:2]):
                rel = url.split("//eos/", 1)[1]
                _write_root(srv / "eos" / rel, "analysis", seed=i)
                local.append(api.url_for(f"eos/{rel}"))
            skim["file_list"] = local
    api.set_api(R25, entries)
    return entries


def test_download_true_points_the_fileset_at_the_cache(
    api: LocalHTTPServer, tmp_path: Path
) -> None:
    _local_release(api, tmp_path)
    cache = tmp_path / "files"
    plan = _plan(release=R25, samples="both", download=True, cache_dir=cache)
    paths = [p for d in plan.fileset.values() for p in d["files"]]
    assert len(paths) == 7
    for p in paths:
        assert p.startswith(str(cache / "eos/opendata/atlas/rucio/opendata/")), p
        assert Path(p).is_file()
        assert (tmp_path / "srv" / Path(p).relative_to(cache)).read_bytes() == Path(p).read_bytes()
    api.clear()
    again = _plan(release=R25, samples="both", download=True, cache_dir=cache)
    assert again.fileset == plan.fileset
    assert api.count("/") == 0, "metadata and files both come from the caches"
    offline = _plan(release=R25, samples="both", download=True, cache_dir=cache, offline=True)
    assert offline.fileset == plan.fileset and offline.missing == []


def test_offline_download_cache_missing_files(api: LocalHTTPServer, tmp_path: Path) -> None:
    _local_release(api, tmp_path)
    cache = tmp_path / "files"
    plan = _plan(release=R25, samples="data", download=True, cache_dir=cache, max_files=1)
    assert len(plan.fileset["data"]["files"]) == 1
    with pytest.raises(
        DataAccessError,
        match=r"offline: 1 file\(s\) are not available: .*not in the download cache",
    ):
        _plan(release=R25, samples="data", download=True, cache_dir=cache, offline=True)
    partial = _plan(
        release=R25,
        samples="data",
        download=True,
        cache_dir=cache,
        offline=True,
        allow_missing=True,
    )
    assert len(partial.missing) == 1 and len(partial.fileset["data"]["files"]) == 1
    assert any(line.startswith("MISSING ") for line in partial.summary_lines())


def test_fileset_runs_through_coffea_streaming_over_http(
    api: LocalHTTPServer, tmp_path: Path
) -> None:
    """The fileset (metadata keys included) is accepted by coffea and streams from the server."""
    from coffea import processor
    from coffea.nanoevents import BaseSchema

    from processor.opendata.download import coffea_runner_options, uproot_options

    _local_release(api, tmp_path)

    class Count(processor.ProcessorABC):
        def process(self, events: Any) -> dict[str, Any]:
            meta = events.metadata
            return {
                "n": {meta["dataset"]: len(events)},
                "meta": [(meta["dataset"], meta["is_mc"], meta["xsec"], meta["sample"])],
            }

        def postprocess(self, accumulator: Any) -> Any:
            return accumulator

    plan = _plan(release=R25, samples="both", datasets=[700901, "data"])
    runner_kw, options = coffea_runner_options(uproot_options(10))
    assert runner_kw == {"xrootdtimeout": 10} and "timeout" not in options
    runner = processor.Runner(
        executor=processor.IterativeExecutor(status=False), schema=BaseSchema, **runner_kw
    )
    out = runner(plan.fileset, Count(), uproot_options=options)
    mc = "mc_700901_Sh_2214_Ztt_maxHTpTV2_Mll10_40_BFilter"
    assert out["n"] == {"data": 100, mc: 100}
    assert set(out["meta"]) == {("data", False, None, "data"), (mc, True, 23.57, "mc")}
    assert api.count("/eos/", method="GET") > 0, "the files were streamed from the server"


# ------------------------------------------------------------------------ inputs
@pytest.fixture
def input_tree(tmp_path: Path) -> Path:
    base = tmp_path / "inputs"
    _write_root(base / "a/ODEO_FEB2025_v0_2to4lep_data15_periodD.2to4lep.root", "analysis")
    _write_root(base / "a/ODEO_FEB2025_v0_2to4lep_data16_periodA.2to4lep.root", "analysis")
    _write_root(base / "a/ODEO_FEB2025_v0_2to4lep_mc_700901.Sh_2214_Ztt.2to4lep.root", "analysis")
    _write_root(base / "b/data_A.4lep.root", "mini")
    _write_root(base / "b/mc_345060.ggH125_ZZ4lep.4lep.root", "mini")
    _write_root(base / "myrun/chunk_1.root", "mini")
    _write_root(base / "myrun/chunk_0.root", "mini")
    _write_root(base / "weird/x.root", "events")
    return base


def test_inputs_are_grouped_by_name_and_directory(input_tree: Path) -> None:
    plan = _plan(
        inputs=[
            str(input_tree / "a/*.root"),
            str(input_tree / "b"),
            str(input_tree / "myrun/chunk_*.root"),
        ]
    )
    assert list(plan.fileset) == [
        "data",
        "mc_345060_ggH125_ZZ4lep",
        "mc_700901_Sh_2214_Ztt",
        "myrun",
    ]
    data = plan.fileset["data"]["files"]
    assert list(data) == sorted(data)
    assert {Path(p).name: t for p, t in data.items()} == {
        "ODEO_FEB2025_v0_2to4lep_data15_periodD.2to4lep.root": "analysis",
        "ODEO_FEB2025_v0_2to4lep_data16_periodA.2to4lep.root": "analysis",
        "data_A.4lep.root": "mini",
    }
    info = {d["name"]: d for d in plan.datasets}
    assert (
        info["mc_700901_Sh_2214_Ztt"]["is_mc"] and info["mc_700901_Sh_2214_Ztt"]["dsid"] == 700901
    )
    assert info["mc_700901_Sh_2214_Ztt"]["release"] == R25
    assert info["mc_345060_ggH125_ZZ4lep"]["tree_name"] == "mini"
    assert info["myrun"]["is_mc"] is False and "treated as data (weight 1)" in info["myrun"]["note"]
    assert [Path(p).name for p in plan.fileset["myrun"]["files"]] == [
        "chunk_0.root",
        "chunk_1.root",
    ]
    assert all(d["source"] == "inputs" for d in plan.datasets)
    assert plan.fileset["myrun"]["metadata"]["source"] == "inputs"
    limited = _plan(inputs=[str(input_tree / "myrun")], max_files=1)
    assert [Path(p).name for p in limited.fileset["myrun"]["files"]] == ["chunk_0.root"]


def test_inputs_mc_normalisation_from_a_cached_release(
    api: LocalHTTPServer, input_tree: Path
) -> None:
    _plan(release=R25, samples="mc")  # fills the user cache
    api.clear()
    plan = _plan(inputs=[str(input_tree / "a/*mc_700901*")])
    (info,) = plan.datasets
    assert (
        info["xsec"] == 23.57 and info["sumw"] == 5.4e6 and info["norm_source"] == "metadata cache"
    )
    assert api.count("/") == 0


def test_input_errors_name_the_path(input_tree: Path) -> None:
    with pytest.raises(DataAccessError, match=r"input glob '.*nothing\*\.root' matches no files"):
        _plan(inputs=[str(input_tree / "nothing*.root")])
    with pytest.raises(DataAccessError, match=r"input '.*missing\.root' does not exist"):
        _plan(inputs=[str(input_tree / "missing.root")])
    plan = _plan(inputs=[str(input_tree / "weird")], tree_name="events")
    assert set(plan.fileset["weird"]["files"].values()) == {"events"}


def test_unreadable_or_treeless_inputs_are_left_to_the_preflight(input_tree: Path) -> None:
    """Such files stay in the fileset with the configured/default tree; the runner's pre-flight
    then reports each one (skipped with skipbadfiles, else the run stops naming it)."""
    from processor.opendata.inputs import detect_tree

    with pytest.raises(
        DataAccessError,
        match=r"has none of the trees analysis, mini, CollectionTree \(it has events\)",
    ):
        detect_tree(
            str(input_tree / "weird" / next(p.name for p in (input_tree / "weird").iterdir()))
        )
    plan = _plan(inputs=[str(input_tree / "weird")])
    assert set(plan.fileset["weird"]["files"].values()) == {"analysis"}
    with pytest.raises(DataAccessError, match=r"has no tree 'analysis'"):
        detect_tree(str(input_tree / "b/data_A.4lep.root"), "analysis")
    plan = _plan(inputs=[str(input_tree / "b/data_A.4lep.root")], tree_name="analysis")
    assert set(next(iter(plan.fileset.values()))["files"].values()) == {"analysis"}
    bad = input_tree / "bad.root"
    bad.write_bytes(b"not a ROOT file")
    with pytest.raises(DataAccessError, match=r"cannot open input '.*bad\.root' as a ROOT file"):
        detect_tree(str(bad))
    assert str(bad) in next(iter(_plan(inputs=[str(bad)]).fileset.values()))["files"]


def test_input_urls_are_downloaded_and_grouped(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    _write_root(srv / "eos/x/mc_410470.ttbar.2lep.root", "mini")
    _write_root(srv / "eos/x/data_B.2lep.root", "mini")
    with LocalHTTPServer(root=srv) as server:
        urls = [
            server.url_for("eos/x/data_B.2lep.root"),
            server.url_for("eos/x/mc_410470.ttbar.2lep.root"),
        ]
        streamed = _plan(inputs=urls, release="2020e-13tev")
        assert streamed.fileset["data"]["files"] == {urls[0]: "mini"}
        cached = _plan(inputs=urls, download=True, cache_dir=tmp_path / "c")
        assert cached.fileset["mc_410470_ttbar"]["files"] == {
            str(tmp_path / "c/eos/x/mc_410470.ttbar.2lep.root"): "mini"
        }
    with pytest.raises(DataAccessError, match="wildcards are not supported"):
        _plan(inputs=["https://example.invalid/eos/*.root"])


@pytest.mark.realdata
def test_inputs_real_files() -> None:
    mc_dir = SHARED / "2025e-13tev-beta_2J2LMET30"
    data_dir = SHARED / "2020e-13tev_4lep"
    if not mc_dir.is_dir() or not data_dir.is_dir():
        pytest.skip("real ATLAS Open Data files not present")
    plan = _plan(inputs=[str(mc_dir / "*.root"), str(data_dir)])
    mc = [d for d in plan.datasets if d["is_mc"]]
    assert [d["dsid"] for d in mc] == [301333, 345120, 346344, 410081, 700901]
    assert all(d["tree_name"] == "analysis" and d["skim"] == "2J2LMET30" for d in mc)
    assert plan.fileset["data"]["files"] == {
        str(data_dir / f"data_{x}.4lep.root"): "mini" for x in "ABCD"
    }
    physlite = SHARED / "2024r-pp_physlite/PHYSLITE_example.root"
    if physlite.is_file():
        plan = _plan(inputs=[str(physlite)])
        (info,) = plan.datasets
        assert info["tree_name"] == "CollectionTree" and info["release"] == "2024r-pp"
