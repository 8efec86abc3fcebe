"""The BumpNet file: three views per spectrum, MC by process as THStacks (PyROOT) or per-group
TH1s (without it), blacklisted names left out; same key structure and classes as BumpNet's own
``rebinned_NOSYS.root``; read back with uproot, with PyROOT where installed, and with the
emulated BumpNet loader."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

from processor.config import validate_config
from processor.output.postprocess import postprocess
from processor.output.readiness import SM_COMPONENTS, load_like_bumpnet
from processor.output.rootfiles import read_raw_file, write_bumpnet_file, write_raw_file
from processor.output.stacks import FALLBACK_DIR, WRITER_FALLBACK, WRITER_STACKS, pyroot_available
from processor.physics.histograms import MassGrid

BUMPNET_FILE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "bumpnet" / "rebinned_NOSYS.root"
)
GRID = MassGrid(5.0, 1000.0)
FS_EE = "2e_0m_1j_0g_0t_0b_0Z"  # the processor's labels (physics.finalstates.fs_label)
FS_MM = "0e_2m_0j_0g_0t_0b_0Z"
VIEW_RE = re.compile(r"^(raw|rebinned|ROI|outliers)_(mass_.+)$")
needs_pyroot = pytest.mark.skipif(
    not pyroot_available(), reason="PyROOT not installed (extra 'root')"
)


def _falling(rng: np.random.Generator, n: int, start: float, scale: float) -> np.ndarray:
    return start + rng.exponential(scale, n)


def _mc_inputs() -> tuple[dict, dict, dict]:
    """Per-process fine histograms of two spectra (ttbar, Zee and a BSM sample), and their sums."""
    rng = np.random.default_rng(7)
    comps: dict[str, dict] = {}
    for proc, n, start, scale in (
        ("ttbar", 3000, 100, 120),
        ("Zee", 2000, 80, 60),
        ("Zprime", 300, 390, 5),
    ):
        comps[proc] = {}
        for key in ((FS_EE, "e0e1j0"), (FS_MM, "m0m1")):
            if proc == "Zprime" and key[0] == FS_MM:
                continue  # a process need not appear in every spectrum
            h = GRID.make(False)
            h.fill(mass=_falling(rng, n, start, scale))
            comps[proc][key] = h
    totals: dict = {}
    for by_key in comps.values():
        for key, h in by_key.items():
            totals[key] = totals[key] + h if key in totals else h.copy()
    return totals, {FS_EE: 5300, FS_MM: 5000}, comps


def _cfg(**hc):
    return validate_config({"histogram_creation_task_config": hc})


def _mc_file(tmp_path: Path, name: str = "mc.root", **hc):
    totals, counts, comps = _mc_inputs()
    config = _cfg(**hc)
    res = postprocess(totals, counts, GRID, config, False, components=comps)
    hcfg = config.histogram_creation_task_config
    written = write_bumpnet_file(tmp_path / name, res, hcfg.active_views(), hcfg.stacks_wanted())
    return tmp_path / name, res, written


def structure(path: Path) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """Per view prefix: (class, component name suffixes, component classes) of a BumpNet file."""
    out: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
    with uproot.open(path) as f:
        for key, cls in f.classnames(cycle=False).items():
            m = VIEW_RE.match(key)
            if not m:
                continue
            comps: tuple = ()
            classes: tuple = ()
            if cls == "THStack":
                hists = list(f[key].member("fHists"))
                comps = tuple(sorted({str(h.member("fName")).rsplit("_", 1)[1] for h in hists}))
                classes = tuple(sorted({h.classname for h in hists}))
            entry = (cls, comps, classes)
            assert out.setdefault(m[1], entry) == entry, key
    return out


def bases_by_view(path: Path) -> dict[str, set[str]]:
    """The spectrum names (view prefix removed) present in each view."""
    out: dict[str, set[str]] = {}
    with uproot.open(path) as f:
        for key in f.keys(cycle=False):
            m = VIEW_RE.match(key)
            if m:
                out.setdefault(m[1], set()).add(m[2])
    return out


# -- structure ---------------------------------------------------------------------------------


@needs_pyroot
def test_mc_file_has_three_views_as_thstacks_of_process_components(tmp_path):
    path, res, written = _mc_file(tmp_path)
    assert written.writer == WRITER_STACKS
    assert written.components == ["Zee", "Zprime", "ttbar"]
    assert any(sp.outliers is not None for sp in res.spectra)
    assert structure(path) == {
        "raw": ("THStack", ("copy",), ("TH1D",)),
        "rebinned": ("THStack", ("rebinned",), ("TH1D",)),
        "ROI": ("THStack", ("roi",), ("TH1D",)),
        "outliers": ("THStack", ("outliers",), ("TH1D",)),
    }
    views = bases_by_view(path)
    assert (
        views["raw"]
        == views["rebinned"]
        == views["ROI"]
        == {s.roi_name.removeprefix("ROI_") for s in res.spectra}
    )
    with uproot.open(path) as f:
        keys = f.keys(cycle=False)
        # BumpNet's order: raw, rebinned, ROI for each spectrum
        first = [k for k in keys if not k.startswith("outliers_")][:3]
        assert [k.split("_", 1)[0] for k in first] == ["raw", "rebinned", "ROI"]
        for spec in res.spectra:
            stack = f[spec.roi_name]
            names = sorted(str(h.member("fName")) for h in stack.member("fHists"))
            assert names == sorted(f"{g}_roi" for g in spec.components)
            summed = np.sum([h.values() for h in stack.member("fHists")], axis=0)
            np.testing.assert_allclose(summed, spec.roi.values())
            edges = stack.member("fHists")[0].axis().edges()
            np.testing.assert_allclose(edges, spec.roi.axes[0].edges)
            raw = f[spec.names["raw"]].member("fHists")[0]
            assert len(raw.values()) == GRID.n_bins  # the fine grid, full range
            assert str(raw.member("fTitle")) == "Mass"


@pytest.mark.skipif(not BUMPNET_FILE.is_file(), reason="../shared/data/bumpnet not available")
@needs_pyroot
def test_same_key_structure_and_classes_as_bumpnets_own_file(tmp_path):
    path, _, _ = _mc_file(tmp_path)
    theirs = structure(BUMPNET_FILE)
    ours = structure(path)
    assert set(theirs) == {"raw", "rebinned", "ROI"}
    assert {view: ours[view] for view in theirs} == theirs
    assert set(ours) - set(theirs) == {"outliers"}  # our extra, never read by BumpNet
    # their spectrum has every view, and so does each of ours
    assert len({frozenset(v) for v in bases_by_view(BUMPNET_FILE).values()}) == 1
    ours_by_view = bases_by_view(path)
    assert ours_by_view["raw"] == ours_by_view["rebinned"] == ours_by_view["ROI"]
    assert ours_by_view["outliers"] <= ours_by_view["ROI"]
    with uproot.open(BUMPNET_FILE) as f:
        their_titles = {str(h.member("fTitle")) for k in f.keys() for h in f[k].member("fHists")}
    with uproot.open(path) as f:
        our_titles = {str(h.member("fTitle")) for k in f.keys() for h in f[k].member("fHists")}
    assert our_titles == their_titles == {"Mass"}


@needs_pyroot
def test_pyroot_reads_the_stacks_back(tmp_path):
    path, res, _ = _mc_file(tmp_path)
    spec = res.spectra[0]
    code = f"""
import sys, ROOT
f = ROOT.TFile.Open(sys.argv[1])
keys = [k.GetName() for k in f.GetListOfKeys()]
st = f.Get({spec.roi_name!r})
assert st.ClassName() == "THStack", st.ClassName()
hs = st.GetHists()
tot = hs.At(0).Clone("tot"); tot.Reset()
for i in range(hs.GetSize()):
    tot.Add(hs.At(i))
print(len(keys), hs.GetSize(), tot.GetNbinsX(), repr(tot.Integral()), repr(tot.GetBinLowEdge(1)))
"""
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    n_keys, n_comps, n_bins, integral, lo = out.stdout.split()
    with uproot.open(path) as f:
        assert int(n_keys) == len(f.keys(cycle=False))
    assert int(n_comps) == len(spec.components)
    assert int(n_bins) == len(spec.roi.values())
    assert float(integral) == pytest.approx(spec.roi.sum())
    assert float(lo) == pytest.approx(spec.lo)


def test_without_pyroot_one_th1_per_group_plus_the_sum(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("BUMPNET_NO_PYROOT", "1")
    with caplog.at_level(logging.WARNING, logger="processor.output"):
        path, res, written = _mc_file(tmp_path)
    assert written.writer == WRITER_FALLBACK
    assert "PyROOT is not installed" in caplog.text and "pip install -e '.[root]'" in caplog.text
    with uproot.open(path) as f:
        classes = f.classnames(cycle=False)
        top = {k: c for k, c in classes.items() if "/" not in k}
        assert set(top.values()) == {"TH1D", "TDirectory"}
        assert {k for k, c in top.items() if c == "TDirectory"} == {FALLBACK_DIR}
        for spec in res.spectra:
            np.testing.assert_allclose(f[spec.roi_name].values(), spec.roi.values())
            parts = f[f"{FALLBACK_DIR}/{spec.roi_name}"]
            assert sorted(parts.keys(cycle=False)) == sorted(f"{g}_roi" for g in spec.components)
            summed = np.sum([parts[k].values() for k in parts.keys(cycle=False)], axis=0)
            np.testing.assert_allclose(summed, spec.roi.values())
    # BumpNet's loader sees only the sums (the directory does not start with ROI)
    assert sorted(h.key for h in load_like_bumpnet(path)) == sorted(s.roi_name for s in res.spectra)


def test_data_file_is_th1d_in_three_views(tmp_path):
    totals, counts, _ = _mc_inputs()
    res = postprocess(totals, counts, GRID, _cfg(), False)
    written = write_bumpnet_file(tmp_path / "data.root", res, ("raw", "rebinned", "ROI"), True)
    assert written.writer is None and written.components == []
    s = structure(tmp_path / "data.root")
    assert any(sp.outliers is not None for sp in res.spectra)
    assert {v: c[0] for v, c in s.items()} == {
        "raw": "TH1D",
        "rebinned": "TH1D",
        "ROI": "TH1D",
        "outliers": "TH1D",
    }
    with uproot.open(tmp_path / "data.root") as f:
        for spec in res.spectra:
            np.testing.assert_array_equal(f[spec.roi_name].values(), spec.roi.values())
            np.testing.assert_array_equal(
                f[spec.names["rebinned"]].values(), spec.rebinned.values()
            )
            np.testing.assert_array_equal(
                f[spec.names["raw"]].values(flow=True), spec.raw.values(flow=True)
            )


def test_views_can_be_chosen(tmp_path):
    totals, counts, _ = _mc_inputs()
    res = postprocess(totals, counts, GRID, _cfg(), False)
    write_bumpnet_file(tmp_path / "roi.root", res, ("ROI",), False)
    assert set(bases_by_view(tmp_path / "roi.root")) <= {"ROI", "outliers"}


def test_blacklisted_names_are_not_written_and_are_reported(tmp_path):
    name = "mass_m0m1_cat_0ex_2mx_0bx_0jx_0Zx_0gx_0tx"
    path, res, written = _mc_file(tmp_path, blacklist=[name])
    assert res.blacklisted == [f"ROI_{name}"]
    with uproot.open(path) as f:
        keys = f.keys(cycle=False, recursive=True)
    assert not [k for k in keys if name in k]
    assert any("e0e1j0" in k for k in keys)


@needs_pyroot
def test_the_emulated_loader_splits_sm_and_bsm_components(tmp_path):
    path, res, _ = _mc_file(tmp_path)
    loaded = {h.name: h for h in load_like_bumpnet(path)}
    spec = next(s for s in res.spectra if s.combo == "e0e1j0")
    h = loaded[spec.roi_name.removeprefix("ROI_")]
    assert sorted(h.components) == ["Zee_roi", "Zprime_roi", "ttbar_roi"]
    assert "Zprime_roi" not in SM_COMPONENTS
    np.testing.assert_allclose(h.bsm, spec.components["Zprime"]["ROI"].values())
    np.testing.assert_allclose(h.values, spec.roi.values())


def test_raw_file_keeps_the_components_and_reads_them_back(tmp_path):
    totals, counts, comps = _mc_inputs()
    groups = {"mc": {"hists": totals, "fs_events": counts, "fs_sumw": {}, "components": comps}}
    write_raw_file(tmp_path / "raw.root", groups, {})
    back, _ = read_raw_file(tmp_path / "raw.root", GRID)
    assert sorted(back["mc"]["components"]) == sorted(comps)
    for proc, by_key in comps.items():
        assert back["mc"]["components"][proc].keys() == by_key.keys()
        for key, h in by_key.items():
            np.testing.assert_array_equal(
                back["mc"]["components"][proc][key].values(flow=True), h.values(flow=True)
            )
    assert back["mc"]["hists"].keys() == totals.keys()


def test_raw_file_on_another_fine_grid_is_a_format_error_naming_file_and_fix(tmp_path):
    """A raw file read with another config's fine grid: the package's own error (one line, the
    file, the grid, the fix), still a ValueError for callers that catch that."""
    from processor.errors import BumpnetError, FormatError

    totals, counts, _ = _mc_inputs()
    groups = {"mc": {"hists": totals, "fs_events": counts, "fs_sumw": {}}}
    write_raw_file(tmp_path / "raw.root", groups, {})
    with pytest.raises(FormatError) as err:
        read_raw_file(tmp_path / "raw.root", MassGrid(10.0, 1000.0))
    msg = str(err.value)
    assert str(tmp_path / "raw.root") in msg and "fine binning" in msg and "\n" not in msg
    assert isinstance(err.value, BumpnetError) and isinstance(err.value, ValueError)


@pytest.fixture(scope="module")
def mc_fileset(tmp_path_factory):
    """Three small synthetic MC datasets (ttbar, Zee, a Z') and one data file, with the
    release metadata a fileset carries."""
    from processor.synthetic import write_sample

    d = tmp_path_factory.mktemp("mc")
    fileset = {}
    for i, (short, dsid) in enumerate(
        (
            ("PhPy8EG_A14_ttbar_hdamp258p75_nonallhad", 410470),
            ("Sh_2211_Zee_maxHTpTV2_BFilter", 700320),
            ("Pythia8EvtGen_A14NNPDF23LO_zprime3000_tt", 301333),
        )
    ):
        path = write_sample(
            d / f"mc_{dsid}.root", "2025e", 3_000, seed=10 + i, kind="mc", dsid=dsid
        )
        fileset[f"mc_{dsid}"] = {
            "files": {str(path): "analysis"},
            "metadata": {"is_mc": True, "dsid": dsid, "physics_short": short},
        }
    data = write_sample(d / "data.root", "2025e", 3_000, seed=20, kind="data")
    fileset["data"] = {"files": {str(data): "analysis"}, "metadata": {"is_mc": False}}
    return fileset


def test_the_processor_keeps_mc_by_process_group(mc_fileset):
    from helpers import run_processor

    out, _ = run_processor(mc_fileset, _cfg(), chunksize=1_000)
    mc = out["groups"]["mc"]
    assert sorted(mc["components"]) == ["Pythia8EvtGen_A14NNPDF23LO_zprime3000_tt", "Zee", "ttbar"]
    assert "components" not in out["groups"]["data"]
    for key, total in mc["hists"].items():
        parts = [c[key].values(flow=True) for c in mc["components"].values() if key in c]
        np.testing.assert_array_equal(
            np.sum(parts, axis=0), total.values(flow=True), err_msg=str(key)
        )
    off, _ = run_processor(mc_fileset, _cfg(mc_by_process=False), chunksize=1_000)
    assert "components" not in off["groups"]["mc"]
    seed, _ = run_processor(mc_fileset, _cfg(naming="seed"), chunksize=1_000)
    assert "components" not in seed["groups"]["mc"]
    mapped, _ = run_processor(mc_fileset, _cfg(mc_groups={"top": ["tt"]}), chunksize=1_000)
    assert sorted(mapped["groups"]["mc"]["components"]) == ["Sh_2211_Zee_maxHTpTV2_BFilter", "top"]
