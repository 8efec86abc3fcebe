"""Tests of processor.synthetic: formats vs. the real files, physics content, determinism, demo cache.

Real files are written to temporary directories and read back with uproot; comparisons with the
real ATLAS Open Data copies in ``../shared/data/atlas-opendata`` skip when that is absent.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from processor import synthetic as syn

REAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "atlas-opendata"
N = 4000  # events per sample file

GEV_PER_UNIT = {"2025e": 1.0, "2020e": 1e-3, "2016e": 1e-3, "physlite": 1e-3}


# ---------------------------------------------------------------------------------------------
# helpers


def _real_file(pattern: str) -> Path:
    if not REAL_DIR.is_dir():
        pytest.skip(f"real ATLAS Open Data copies not available ({REAL_DIR})")
    files = sorted(REAL_DIR.glob(pattern))
    if not files:
        pytest.skip(f"no real file matching {pattern} in {REAL_DIR}")
    return files[0]


@functools.cache
def _open_real(path: Path, tree: str) -> uproot.TTree:
    return uproot.open(path)[tree]


def _norm(typename: str) -> str:
    """RVec<T> / std::vector<T> (ROOT) and T[] (uproot leaf-list) -> T[]."""
    m = re.fullmatch(r"(?:ROOT::VecOps::)?RVec<(.+)>|(?:std::)?vector<(.+)>", typename)
    if m:
        return (m.group(1) or m.group(2)).strip() + "[]"
    return typename


def _types(tree: uproot.TTree) -> dict[str, str]:
    return {b.name: _norm(b.typename) for b in tree.branches}


def _tree(path: Path, fmt: str) -> uproot.TTree:
    return uproot.open(path)[syn.TREE_NAMES[fmt]]


def _pair_mass(pt, eta, phi, e) -> np.ndarray:
    """Invariant mass of the first two objects of (n, 2) numpy arrays, computed by hand."""
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    m2 = (e.sum(1)) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2
    return np.sqrt(np.maximum(m2, 0.0))


def _electrons(path: Path, fmt: str) -> dict[str, ak.Array]:
    """Electron pt, eta, phi, E, charge in the file's own units."""
    t = _tree(path, fmt)
    if fmt == "physlite":
        a = t.arrays(filter_name="AnalysisElectronsAuxDyn.*")
        pre = "AnalysisElectronsAuxDyn."
        pt, eta, m = a[pre + "pt"], a[pre + "eta"], a[pre + "m"]
        e = np.sqrt((pt * np.cosh(eta)) ** 2 + m**2)
        return {"pt": pt, "eta": eta, "phi": a[pre + "phi"], "e": e, "q": a[pre + "charge"]}
    energy = "lep_e" if fmt == "2025e" else "lep_E"
    a = t.arrays(["lep_pt", "lep_eta", "lep_phi", energy, "lep_charge", "lep_type"])
    sel = a.lep_type == 11
    return {
        "pt": a.lep_pt[sel],
        "eta": a.lep_eta[sel],
        "phi": a.lep_phi[sel],
        "e": a[energy][sel],
        "q": a.lep_charge[sel],
    }


def _os_pair_masses(obj: dict[str, ak.Array]) -> np.ndarray:
    """Masses of events with exactly two opposite-charge objects."""
    keep = (ak.num(obj["pt"]) == 2) & (ak.sum(obj["q"], axis=1) == 0)
    cols = [ak.to_numpy(obj[k][keep]).astype(np.float64) for k in ("pt", "eta", "phi", "e")]
    return _pair_mass(*cols)


def _all_arrays(path: Path, fmt: str) -> dict[str, ak.Array]:
    t = _tree(path, fmt)
    return {b.name: b.array() for b in t.branches}


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """One DATA and one MC file per format, N events, seed 7."""
    out = {}
    base = tmp_path_factory.mktemp("synthetic")
    for fmt in syn.FORMATS:
        for kind in ("data", "mc"):
            name = syn.sample_filename(fmt, kind)
            out[fmt, kind] = syn.write_sample(base / fmt / name, fmt, N, seed=7, kind=kind)
    return out


# ---------------------------------------------------------------------------------------------
# formats


@pytest.mark.parametrize("fmt", syn.FORMATS)
def test_tree_name_units_and_compression(samples, fmt):
    for kind in ("data", "mc"):
        f = uproot.open(samples[fmt, kind])
        assert f.classnames(cycle=False) == {syn.TREE_NAMES[fmt]: "TTree"}
        assert f.file.compression == uproot.ZLIB(1)
        assert f[syn.TREE_NAMES[fmt]].num_entries == N


@pytest.mark.realdata
def test_2025e_mc_branches_match_real(samples):
    real = _types(_open_real(_real_file("2025e-13tev-beta_*/*_mc_*.root"), "analysis"))
    ours = _types(_tree(samples["2025e", "mc"], "2025e"))
    assert set(ours) == set(real)
    assert {k: v for k, v in ours.items() if real[k] != v} == {}


@pytest.mark.realdata
def test_2025e_data_branches_match_real_with_data_differences(samples):
    real = _types(_open_real(_real_file("2025e-13tev-beta_*/*_mc_*.root"), "analysis"))
    ours = _types(_tree(samples["2025e", "data"], "2025e"))
    # DATA: no sig_lep/n_sig_lep (MC-skim branches), an extra category string branch
    assert set(ours) == (set(real) - {"sig_lep", "n_sig_lep"}) | {"category"}
    diffs = {k: (real.get(k), v) for k, v in ours.items() if real.get(k) != v}
    assert diffs == {
        "xsec": ("double", "float"),
        "kfac": ("double", "float"),
        "filteff": ("double", "float"),
        # real DATA: std::string; uproot writes a char* (TLeafC) string branch
        "category": (None, "char*"),
    }


@pytest.mark.realdata
@pytest.mark.parametrize("kind", ["data", "mc"])
def test_2020e_branches_match_real(samples, kind):
    real = _types(_open_real(_real_file("2020e-13tev_*/data_*.root"), "mini"))
    ours = _types(_tree(samples["2020e", kind], "2020e"))
    assert set(ours) == set(real)
    diffs = {k: (real[k], v) for k, v in ours.items() if real[k] != v}
    # uproot's counters are int32; the real counts are uint32
    counters = {"lep_n", "jet_n", "photon_n", "tau_n", "largeRjet_n"}
    assert diffs == {c: ("uint32_t", "int32_t") for c in counters}


@pytest.mark.realdata
@pytest.mark.parametrize("kind", ["data", "mc"])
def test_physlite_branches_match_real(samples, kind):
    ours = _types(_tree(samples["physlite", kind], "physlite"))
    real_tree = _open_real(_real_file("2024r-pp_physlite/*.root"), "CollectionTree")
    # only the branches we write (the real file has 1494)
    real = {k: _norm(real_tree[k].typename) for k in ours if k in real_tree}
    assert "AnalysisMuonsAuxDyn.m" not in real_tree
    counters = {k for k in ours if "." not in k}
    assert counters == {
        "nAnalysisElectrons",
        "nAnalysisMuons",
        "nAnalysisJets",
        "nAnalysisPhotons",
        "nAnalysisTauJets",
        "nBTagging_AntiKt4EMPFlow",
        "nmcEventWeights",
    }
    assert {k: v for k, v in ours.items() if k not in counters and real.get(k) != v} == {}
    assert "AnalysisMuonsAuxDyn.m" not in ours
    for name in (
        "AnalysisElectronsAuxDyn.DFCommonElectronsLHTight",
        "AnalysisMuonsAuxDyn.quality",
        "AnalysisPhotonsAuxDyn.DFCommonPhotonsIsEMTight",
        "AnalysisTauJetsAuxDyn.RNNJetScore",
        "AnalysisTauJetsAuxDyn.JetDeepSetMedium",
        "AnalysisElectronsAuxDyn.topoetcone20",
        "AnalysisMuonsAuxDyn.ptvarcone30",
        "AnalysisPhotonsAuxDyn.topoetcone40",
        "AnalysisJetsAuxDyn.btaggingLink/AnalysisJetsAuxDyn.btaggingLink.m_persIndex",
        "BTagging_AntiKt4EMPFlowAuxDyn.DL1dv01_pb",
        "BTagging_AntiKt4EMPFlowAuxDyn.GN2v00_pu",
        "EventInfoAuxDyn.eventNumber",
        "EventInfoAuxDyn.mcEventWeights",
    ):
        assert name in ours


def test_2016e_layout(samples):
    t = _tree(samples["2016e", "mc"], "2016e")
    names = {b.name for b in t.branches}
    assert {"lep_flag", "lep_E", "jet_MV1", "jet_jvf", "jet_m", "alljet_n", "met_et"} <= names
    assert not {"photon_pt", "tau_pt", "jet_MV2c10"} & names
    assert t["lep_type"].typename == "uint32_t[]"
    a = t.arrays(["lep_flag", "lep_type"])
    tight = ak.flatten(a.lep_flag) & 512
    assert 0 < np.mean(tight > 0) < 1


# ---------------------------------------------------------------------------------------------
# physics content


@pytest.mark.parametrize("fmt", syn.FORMATS)
def test_z_to_ee_mass_and_units(samples, fmt):
    masses = _os_pair_masses(_electrons(samples[fmt, "mc"], fmt)) * GEV_PER_UNIT[fmt]
    window = masses[(masses > 70) & (masses < 110)]
    assert len(window) > 200
    assert abs(np.median(window) - 91.19) < 1.0
    hist, edges = np.histogram(window, bins=np.arange(70, 111, 2.0))
    assert 87 <= edges[np.argmax(hist)] <= 93


def test_same_physics_in_every_format(samples):
    ref = ak.to_numpy(ak.flatten(_electrons(samples["2025e", "mc"], "2025e")["pt"]))
    for fmt in ("2020e", "2016e", "physlite"):
        pt = ak.to_numpy(ak.flatten(_electrons(samples[fmt, "mc"], fmt)["pt"]))
        np.testing.assert_allclose(pt * GEV_PER_UNIT[fmt], ref, rtol=1e-6)


@pytest.mark.parametrize("fmt", syn.FORMATS)
def test_objects_sorted_by_pt(samples, fmt):
    t = _tree(samples[fmt, "mc"], fmt)
    pt_branches = [
        b.name for b in t.branches if re.search(r"(^|_|\.)pt$", b.name) and "[]" in b.typename
    ]
    assert len(pt_branches) >= 2
    for name in pt_branches:
        pt = t[name].array()
        assert ak.all(pt[:, 1:] <= pt[:, :-1]), name


def test_cuts_and_count_limits_matter(samples):
    a = _tree(samples["2025e", "mc"], "2025e").arrays(
        ["lep_pt", "lep_eta", "lep_type", "lep_n", "jet_pt", "jet_eta", "jet_n", "photon_pt"]
    )
    lep_pt = ak.flatten(a.lep_pt)
    assert 0.1 < np.mean(lep_pt < 25) < 0.9
    assert 0.1 < np.mean(ak.flatten(a.jet_pt) < 30) < 0.9
    assert np.any(np.abs(ak.flatten(a.lep_eta[a.lep_type == 11])) > 2.47)
    assert np.any(np.abs(ak.flatten(a.jet_eta)) > 2.5)
    assert np.any(ak.flatten(a.photon_pt) < 25)
    for counter in ("lep_n", "jet_n"):
        counts = ak.to_numpy(a[counter])
        assert np.any(counts == 0) and np.any(counts >= 5), counter
    assert np.array_equal(ak.to_numpy(a.lep_n), ak.to_numpy(ak.num(a.lep_pt)))


def test_energies_consistent_with_small_masses(samples):
    a = _tree(samples["2025e", "mc"], "2025e").arrays()

    def mass(prefix: str) -> np.ndarray:
        pt, eta, e = (
            ak.to_numpy(ak.flatten(a[f"{prefix}_{v}"])).astype(float) for v in ("pt", "eta", "e")
        )
        return np.sqrt(np.maximum(e**2 - (pt * np.cosh(eta)) ** 2, 0.0)), pt

    m_lep, pt_lep = mass("lep")
    assert np.all(m_lep < 1e-3 * pt_lep * np.cosh(3.0) + 0.2)
    m_jet, pt_jet = mass("jet")
    assert 1.0 < np.median(m_jet) < 10.0 and np.all(m_jet < 0.2 * pt_jet)


def test_flags_btag_and_taus_are_sensible(samples):
    a = _tree(samples["2025e", "mc"], "2025e").arrays()
    tight, medium, loose = (ak.flatten(a[f"lep_is{w}ID"]) for w in ("Tight", "Medium", "Loose"))
    assert np.all(~tight | medium) and np.all(~medium | loose)
    assert 0.5 < np.mean(tight) < 0.95
    q = ak.to_numpy(ak.flatten(a.jet_btag_quantile))
    assert set(np.unique(q)) == {1, 2, 3, 4, 5} and 0.02 < np.mean(q >= 4) < 0.3
    assert set(np.unique(ak.to_numpy(ak.flatten(a.tau_charge)))) == {-1.0, 1.0}
    assert set(np.unique(ak.to_numpy(ak.flatten(a.tau_nTracks)))) == {1, 3}


def test_injected_resonance_peak(tmp_path):
    with_sig = syn.write_sample(
        tmp_path / "sig.root", "2025e", 4000, seed=3, signal_mass_gev=300.0, signal_fraction=0.3
    )
    without = syn.write_sample(tmp_path / "bkg.root", "2025e", 4000, seed=3)
    for path, expect_peak in ((with_sig, True), (without, False)):
        m = _os_pair_masses(_electrons(path, "2025e"))
        hist, edges = np.histogram(m, bins=np.arange(150, 460, 10.0))
        in_window = np.sum((m > 280) & (m < 320))
        if expect_peak:
            assert 280 <= edges[np.argmax(hist)] <= 310
            assert in_window > 100
        else:
            assert in_window < 10
    a = _tree(with_sig, "2025e").arrays(["jet_pt", "jet_eta", "jet_phi", "jet_e"])
    a = a[ak.num(a.jet_pt) >= 2]
    mjj = _pair_mass(*(ak.to_numpy(a[f][:, :2]).astype(float) for f in a.fields))
    hist, edges = np.histogram(mjj, bins=np.arange(150, 460, 10.0))
    assert 260 <= edges[np.argmax(hist)] <= 310


# ---------------------------------------------------------------------------------------------
# data vs MC


def test_2025e_data_vs_mc(samples):
    d = _tree(samples["2025e", "data"], "2025e").arrays()
    m = _tree(samples["2025e", "mc"], "2025e").arrays()
    assert set(d.category.tolist()) == {"data15"}
    assert np.all(d.mcWeight == 1) and np.all(d.sum_of_weights == 1)
    for k in ("xsec", "kfac", "filteff"):
        assert d[k].type.content.primitive == "float32" and np.all(d[k] == 0)
        assert m[k].type.content.primitive == "float64" and len(np.unique(m[k])) == 1
    assert np.all(m.xsec > 0)
    sfs = [k for k in d.fields if k.startswith("ScaleFactor_")]
    assert len(sfs) == 14
    for k in sfs:
        assert np.all(d[k] == 1), k
    for k in ("PILEUP", "ELE", "MUON", "BTAG", "JVT"):
        sf = ak.to_numpy(m[f"ScaleFactor_{k}"])
        assert np.any(sf != 1) and 0.9 < np.mean(sf) < 1.1, k
    assert np.all(d.truth_jet_n == 0) and np.any(m.truth_jet_n > 0)
    w = ak.to_numpy(m.mcWeight).astype(np.float64)
    assert np.any(w < 0) and np.std(w) > 0.1
    np.testing.assert_allclose(m.sum_of_weights[0], w.sum(), rtol=1e-12)
    np.testing.assert_allclose(m.sum_of_weights_squared[0], (w**2).sum(), rtol=1e-12)
    assert np.all(m.channelNumber == 700000) and np.all(m.runNumber == 284500)
    lo, hi = 276262, 276954  # data15 period D
    assert np.all((d.runNumber >= lo) & (d.runNumber <= hi))
    assert len(np.unique(d.eventNumber)) == N


def test_2020e_data_vs_mc(samples):
    d = _tree(samples["2020e", "data"], "2020e").arrays()
    m = _tree(samples["2020e", "mc"], "2020e").arrays()
    # like the real 2020e data files: weights and scale factors 0, XSection/SumWeights 1
    assert np.all(d.mcWeight == 0) and np.all(d.scaleFactor_PILEUP == 0)
    assert np.all(d.XSection == 1) and np.all(d.SumWeights == 1)
    assert np.all(d.channelNumber == d.runNumber)
    np.testing.assert_allclose(m.SumWeights[0], ak.sum(m.mcWeight), rtol=1e-5)
    assert np.all(m.channelNumber == 700000) and np.any(m.mcWeight < 0)
    assert not np.any(ak.flatten(d.lep_truthMatched)) and np.any(ak.flatten(m.lep_truthMatched))


def test_physlite_data_vs_mc(samples):
    d = _tree(samples["physlite", "data"], "physlite").arrays(filter_name="EventInfoAuxDyn.*")
    m = _tree(samples["physlite", "mc"], "physlite").arrays(filter_name="EventInfoAuxDyn.*")
    assert np.all(ak.num(d["EventInfoAuxDyn.mcEventWeights"]) == 0)
    assert np.all(d["EventInfoAuxDyn.mcChannelNumber"] == 0)
    assert np.all(ak.num(m["EventInfoAuxDyn.mcEventWeights"]) >= 1)
    assert np.all(m["EventInfoAuxDyn.mcChannelNumber"] == 700000)


def test_period_from_file_name(tmp_path):
    name = syn.sample_filename("2025e", "data", period="data16_periodA")
    assert name == "ODEO_FEB2025_v0_2to4lep_data16_periodA.2to4lep.root"
    a = _tree(syn.write_sample(tmp_path / name, "2025e", 200), "2025e").arrays(
        ["category", "runNumber", "channelNumber"]
    )
    assert set(a.category.tolist()) == {"data16"}
    assert np.all((a.runNumber >= 296939) & (a.runNumber <= 300287))
    assert np.all(a.channelNumber == a.runNumber)


# ---------------------------------------------------------------------------------------------
# determinism and API


@pytest.mark.parametrize("fmt", syn.FORMATS)
def test_deterministic_for_a_seed(tmp_path, fmt):
    kw = dict(seed=11, kind="mc", signal_mass_gev=250.0)
    a = _all_arrays(syn.write_sample(tmp_path / "a.root", fmt, 1500, **kw), fmt)
    b = _all_arrays(syn.write_sample(tmp_path / "b.root", fmt, 1500, basket_size=400, **kw), fmt)
    c = _all_arrays(syn.write_sample(tmp_path / "c.root", fmt, 1500, **{**kw, "seed": 12}), fmt)
    assert a.keys() == b.keys() == c.keys()
    for name in a:
        assert ak.array_equal(a[name], b[name]), name
    pt = next(k for k in a if k.endswith("pt") and a[k].ndim == 2)
    assert not ak.array_equal(a[pt], c[pt])
    assert _tree(tmp_path / "b.root", fmt)[pt].num_baskets == 4


def test_zero_events(tmp_path):
    t = _tree(syn.write_sample(tmp_path / "empty.root", "2025e", 0, kind="mc"), "2025e")
    assert t.num_entries == 0 and "lep_pt" in {b.name for b in t.branches}


def test_sample_filenames():
    assert syn.sample_filename("2025e", "mc", dsid=700123, name="Zee") == (
        "ODEO_FEB2025_v0_2to4lep_mc_700123.Zee.2to4lep.root"
    )
    assert syn.sample_filename("2025e", "data", skim="GamGam") == (
        "ODEO_FEB2025_v0_GamGam_data15_periodD.GamGam.root"
    )
    assert syn.sample_filename("2020e", "data", skim="4lep") == "data_D.4lep.root"
    assert syn.sample_filename("2020e", "mc", skim="4lep", dsid=345060, name="ggH") == (
        "mc_345060.ggH.4lep.root"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fmt": "2099x"},
        {"kind": "pseudo"},
        {"n_events": -1},
        {"signal_mass_gev": 300.0, "signal_fraction": 1.5},
        {"signal_mass_gev": -5.0},
        {"basket_size": 0},
    ],
)
def test_invalid_arguments(tmp_path, kwargs):
    args = {"fmt": "2025e", "n_events": 10, **kwargs}
    with pytest.raises(ValueError):
        syn.write_sample(tmp_path / "x.root", args.pop("fmt"), args.pop("n_events"), **args)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# demo


def test_demo_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("BUMPNET_CACHE_DIR", str(tmp_path / "cache"))
    assert syn.demo_cache_dir() == tmp_path / "cache" / "demo"
    monkeypatch.delenv("BUMPNET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert syn.demo_cache_dir() == tmp_path / "xdg" / "bumpnet-masses" / "demo"


def test_demo_sample_is_cached_and_repaired(tmp_path):
    cache = tmp_path / "demo"
    paths = syn.make_demo_sample(cache, n_events=4000)
    assert [p.parent for p in paths] == [cache] * 4
    assert [p.name for p in paths] == [
        "ODEO_FEB2025_v0_2to4lep_data15_periodD.2to4lep.root",
        "ODEO_FEB2025_v0_2to4lep_data16_periodA.2to4lep.root",
        "ODEO_FEB2025_v0_2to4lep_mc_700001.Synthetic_SM_A.2to4lep.root",
        "ODEO_FEB2025_v0_2to4lep_mc_700002.Synthetic_SM_B.2to4lep.root",
    ]
    assert sum(uproot.open(p)["analysis"].num_entries for p in paths) == 4000
    manifest = json.loads((cache / "demo_manifest.json").read_text())
    assert manifest["params"]["generator_version"] == syn.GENERATOR_VERSION
    assert sorted(manifest["files"]) == sorted(p.name for p in paths)
    data = uproot.open(paths[0])["analysis"].arrays(["category", "lep_pt"])
    assert set(data.category.tolist()) == {"data15"}
    mtimes = [p.stat().st_mtime_ns for p in paths]

    # second call: nothing rewritten
    assert syn.make_demo_sample(cache, n_events=4000) == paths
    assert [p.stat().st_mtime_ns for p in paths] == mtimes

    # a damaged and a missing file are regenerated, the others kept
    with paths[1].open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"garbage")
    paths[2].unlink()
    assert syn.make_demo_sample(cache, n_events=4000) == paths
    new = [p.stat().st_mtime_ns for p in paths]
    assert new[0] == mtimes[0] and new[3] == mtimes[3]
    assert new[1] != mtimes[1] and paths[2].exists()
    again = uproot.open(paths[0])["analysis"].arrays(["category", "lep_pt"])
    assert ak.array_equal(again.lep_pt, data.lep_pt)
    fixed = json.loads((cache / "demo_manifest.json").read_text())
    assert fixed["files"][paths[0].name] == manifest["files"][paths[0].name]
    assert uproot.open(paths[1])["analysis"].num_entries == 1000
    assert not [p for p in cache.iterdir() if ".tmp" in p.name]

    # MC normalised to the data background: sum over files of xsec * lumi ~ data events
    xsecs = [uproot.open(p)["analysis"]["xsec"].array()[0] for p in paths[2:]]
    assert sum(xsecs) * syn.LUMI_2025E_PB == pytest.approx(2000 * (1 - syn.DEMO_SIGNAL_FRACTION))
