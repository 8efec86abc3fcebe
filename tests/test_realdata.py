"""Real ATLAS Open Data files (../shared/data/atlas-opendata): every format through the processor;
issue 10 physics on real events (two-Z events in 2020e data, PHYSLITE overlap removal and
b-tagging), also against the loop reference."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import reference
import uproot
from helpers import SHARED, read_branches, run_processor
from test_reference_comparison import compare

from processor.config import validate_config
from processor.opendata.btagging import PHYSLITE_LINK, PHYSLITE_SCORE, TAGGERS
from processor.opendata.formats import FORMATS, branches_needed, read_collections
from processor.physics.overlap import STEPS, near_any
from processor.physics.selection import select_objects, types_to_read
from processor.physics.zcandidates import build_z_candidates

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"real Open Data files not present at {SHARED}"),
]

SAMPLES = {
    "2025e": ("2025e-13tev-beta_2J2LMET30", "analysis", True),
    "2020e": ("2020e-13tev_4lep", "mini", False),
    "physlite": ("2024r-pp_physlite", "CollectionTree", True),
}


def _fileset(folder: str, tree: str, is_mc: bool) -> dict:
    files = sorted((SHARED / folder).glob("*.root"))
    assert files, folder
    return {folder: {"files": {str(f): tree for f in files}, "metadata": {"is_mc": is_mc}}}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_every_format_runs_and_the_cutflow_accounts_for_every_event(fmt):
    folder, tree, is_mc = SAMPLES[fmt]
    fileset = _fileset(folder, tree, is_mc)
    cfg = validate_config({"mass_calculation_task_config": {"min_events_per_fs": 0}})
    out, metrics = run_processor(fileset, cfg, chunksize=3000)
    entries = {f: uproot.open(f)[tree].num_entries for f in fileset[folder]["files"]}
    assert out["files"] == entries
    cf = out["cutflow"][folder]
    assert cf["events_read"] == sum(entries.values())
    assert (
        cf["events_read"]
        >= cf["after_count_limits"]
        >= cf["in_final_state"]
        >= cf["with_combination"]
        > 0
    )
    group = out["groups"]["mc" if is_mc else "data"]
    assert sum(group["fs_events"].values()) == cf["in_final_state"]
    assert out["formats"] == {fmt: sum(entries.values())}
    read = read_branches(metrics)
    sel = cfg.object_selection
    assert read == set(branches_needed(FORMATS[fmt], sel))


#: the original's physics: no Z candidates, charge tags or three-lepton pairs
SEED_PHYSICS = {
    "z_candidates": {"enabled": False},
    "charge_tags": False,
    "three_lepton_pairs": False,
}


def test_physlite_zee_peaks_at_the_z_mass():
    folder, tree, is_mc = SAMPLES["physlite"]
    cfg = validate_config(
        {
            "object_selection": SEED_PHYSICS,  # else the in-window pairs become Z candidates
            "mass_calculation_task_config": {
                "min_events_per_fs": 0,
                "fine_bin_width_gev": 2.0,
                "mass_max_gev": 13000,
            },
        }
    )
    out, _ = run_processor(_fileset(folder, tree, is_mc), cfg)
    hists = out["groups"]["mc"]["hists"]
    ee = sum(h for (fs, combo), h in hists.items() if combo == "e0e1")
    assert ee.values().sum() >= 15
    peak = ee.axes[0].centers[np.argmax(ee.values())]
    assert 85 <= peak <= 97


def test_2020e_four_lepton_data_has_z_peaks_in_dileptons():
    folder, tree, is_mc = SAMPLES["2020e"]
    cfg = validate_config(
        {"object_selection": SEED_PHYSICS, "mass_calculation_task_config": {"min_events_per_fs": 0}}
    )
    out, _ = run_processor(_fileset(folder, tree, is_mc), cfg)
    hists = out["groups"]["data"]["hists"]
    mm = sum(h for (fs, combo), h in hists.items() if combo in ("e0e1", "m0m1"))
    peak = mm.axes[0].centers[np.argmax(mm.values())]
    assert 85 <= peak <= 97


# -- issue 10 on real events --------------------------------------------------------------------
def _collections(fmt: str, cfg, extra: tuple[str, ...] = ()) -> tuple[dict, int, dict]:
    """(collections as the processor reads them, number of events, raw arrays) of a sample."""
    folder, tree, _ = SAMPLES[fmt]
    sel = cfg.object_selection
    branches = branches_needed(FORMATS[fmt], sel) + list(extra)
    arrays = ak.concatenate(
        [uproot.open(f)[tree].arrays(branches) for f in sorted((SHARED / folder).glob("*.root"))]
    )
    overlap = sel.overlap_removal.applies_to(fmt)
    cols = read_collections(
        arrays.__getitem__,
        FORMATS[fmt],
        types_to_read(sel, overlap),
        sel.cuts,
        btag_cfg=sel.btagging,
        charge=sel.needs_charge(),
    )
    return cols, len(arrays), arrays


def _as_events(cols: dict, n: int) -> list[dict]:
    """The same collections as Python dicts (type -> list of objects) for the loop reference."""
    events: list[dict] = [{} for _ in range(n)]
    for t, rec in cols.items():
        for i, objs in enumerate(ak.to_list(rec)):
            events[i][t] = objs
    return events


def test_2020e_four_lepton_data_has_events_with_two_z_candidates():
    cfg = validate_config({"mass_calculation_task_config": {"min_events_per_fs": 0}})
    sel = cfg.object_selection
    cols, n, _ = _collections("2020e", cfg)
    objects = select_objects(cols, sel)
    out = build_z_candidates(objects, sel.z_candidates)
    n_z = ak.to_numpy(ak.num(out["Z"]))
    masses = ak.to_numpy(ak.flatten(out["Z"].mass))
    print(f"2020e 4lep data: {n} events, Z per event {np.bincount(n_z).tolist()}")
    assert (n_z == 2).sum() >= 20  # measured: 70 events with two Z candidates
    assert np.all(np.abs(masses - 91.1876) < 10.0)
    assert set(ak.to_numpy(ak.flatten(out["Z"].flavour)).tolist()) == {11, 13}
    # every lepton is used once: leptons left + 2 per Z = leptons selected
    before = ak.num(objects["e"]) + ak.num(objects["m"])
    after = ak.num(out["e"]) + ak.num(out["m"]) + 2 * ak.num(out["Z"])
    assert ak.all(before == after)
    # through the processor: two-Z final states and their m(Z0 Z1) spectrum
    folder, tree, is_mc = SAMPLES["2020e"]
    res, _ = run_processor(_fileset(folder, tree, is_mc), cfg)
    group = res["groups"]["data"]
    two_z = {fs: k for fs, k in group["fs_events"].items() if fs.split("_")[6] == "2Z"}
    assert sum(two_z.values()) >= 20
    zz = sum(h.values().sum() for (fs, combo), h in group["hists"].items() if combo == "Z0Z1")
    assert zz == sum(two_z.values())  # every two-Z final state has its m(Z0 Z1)
    # and the whole analysis agrees with the loop reference on these real events
    comb = cfg.mass_calculation_task_config.combinations
    stats = compare(cols, _as_events(cols, n), sel, comb, "stored")
    assert stats["two_z_events"] >= 20 and stats["tagged"]["OS"] > 0


def _dielectron_tau_counts(objects: dict) -> tuple[int, int]:
    ne, nt = ak.num(objects["e"]), ak.num(objects["t"])
    return int(ak.sum(ne == 2)), int(ak.sum((ne == 2) & (nt > 0)))


def test_physlite_overlap_removal_removes_the_electron_duplicates():
    cfg = validate_config({"object_selection": SEED_PHYSICS})
    sel = cfg.object_selection
    cols, n, _ = _collections("physlite", cfg)
    raw = select_objects(cols, sel)
    clean = select_objects(cols, sel, overlap_removal=True)
    # before: (almost) every dielectron event also has a tau (the electrons themselves)
    di, with_tau = _dielectron_tau_counts(raw)
    assert di >= 20 and with_tau >= 0.9 * di  # measured 29 of 30
    assert ak.sum(near_any(raw["e"], raw["j"], 0.2)) >= 0.9 * ak.sum(ak.num(raw["e"]))
    # after: no tau or jet left near an electron; most dielectron events lose their tau
    di_or, with_tau_or = _dielectron_tau_counts(clean)
    print(f"PHYSLITE Z->ee dielectron events with a tau: {with_tau}/{di} -> {with_tau_or}/{di_or}")
    assert ak.sum(near_any(clean["e"], clean["t"], 0.2)) == 0
    assert ak.sum(near_any(clean["e"], clean["j"], 0.4)) == 0
    assert with_tau_or <= 0.35 * di_or  # measured 10 of 30
    # the taus left are jets reconstructed as taus too (the sequence has no tau-jet step)
    two_e = ak.num(clean["e"]) == 2
    assert ak.all(near_any(clean["t"][two_e], clean["j"][two_e], 0.2))
    # with the tau ID against jets (JetDeepSet medium) fewer than a quarter keep a tau
    medium = validate_config({"object_selection": {**SEED_PHYSICS, "taus": {"id": "medium"}}})
    cols_m, _, _ = _collections("physlite", medium)
    di_m, with_tau_m = _dielectron_tau_counts(
        select_objects(cols_m, medium.object_selection, overlap_removal=True)
    )
    assert with_tau_m < di_m / 4  # measured 1 of 30


@pytest.mark.parametrize("fmt", ["2025e", "2020e"])
def test_education_ntuples_are_already_overlap_removed(fmt):
    """Why overlap removal is off for them by default: no selected object lies within any step's
    Delta R of another, except (2025e) a few muons at 0.38-0.40 from a jet (pT 35-108 GeV),
    which the ntuple kept and the fixed 0.4 muon-jet step would drop (a muon-jet cone that
    shrinks with the muon pT, common in ATLAS, would explain it; not verified)."""
    cfg = validate_config({"object_selection": {"overlap_removal": {"enabled": True}}})
    sel = cfg.object_selection
    cols, _, _ = _collections(fmt, cfg)
    raw = select_objects(cols, sel)
    steps = {
        (removed, ref): int(ak.sum(near_any(raw[removed], raw[ref], dr)))
        for removed, refs, key in STEPS
        for ref in refs
        if (dr := getattr(sel.overlap_removal, key)) > 0
    }
    print(f"{fmt}: objects within each step's Delta R {steps}")
    n_muons = int(ak.sum(ak.num(raw["m"])))
    assert steps.pop(("m", "j")) <= 0.001 * n_muons  # measured 2025e: 5 of 11210, 2020e: 0
    assert set(steps.values()) == {0}
    clean = select_objects(cols, sel, overlap_removal=True)
    for t in ("e", "j", "g", "t"):
        assert ak.all(ak.num(clean[t]) == ak.num(raw[t])), t


def test_physlite_overlap_removal_kills_the_fake_2mz_peak_in_e0e1j0j1():
    folder, tree, is_mc = SAMPLES["physlite"]
    fileset = _fileset(folder, tree, is_mc)
    counts = {}
    for enabled in (False, True):
        cfg = validate_config(
            {
                "object_selection": {**SEED_PHYSICS, "overlap_removal": {"enabled": enabled}},
                "mass_calculation_task_config": {"min_events_per_fs": 0},
            }
        )
        out, _ = run_processor(fileset, cfg)
        h = sum(h for (fs, combo), h in out["groups"]["mc"]["hists"].items() if combo == "e0e1j0j1")
        centers = h.axes[0].centers
        counts[enabled] = h.values()[(centers > 160) & (centers < 210)].sum()
    print(f"e0e1j0j1 entries in 160-210 GeV: without OR {counts[False]}, with OR {counts[True]}")
    assert counts[False] >= 3  # the electron pair counted again as two jets: 2 m_Z
    assert counts[True] == 0


def test_physlite_physics_matches_the_loop_reference_with_overlap_removal():
    cfg = validate_config({})
    sel = cfg.object_selection
    cols, n, _ = _collections("physlite", cfg)
    comb = cfg.mass_calculation_task_config.combinations
    stats = compare(cols, _as_events(cols, n), sel, comb, "stored", overlap=True)
    assert stats["valid"] >= 50 and stats["z_events"] >= 10


@pytest.mark.parametrize("tagger", ["DL1dv01", "GN2v00"])
def test_physlite_btagging_runs_and_follows_the_links(tagger):
    cfg = validate_config(
        {
            "object_selection": {"btagging": {"enabled": True, "tagger": tagger}},
            "mass_calculation_task_config": {"min_events_per_fs": 0},
        }
    )
    sel = cfg.object_selection
    cols, n, arrays = _collections("physlite", cfg)
    scores = [PHYSLITE_SCORE.format(tagger=tagger, flavour=f) for f in "bcu"]
    assert {PHYSLITE_LINK, *scores} <= set(arrays.fields)
    t = TAGGERS[tagger]
    want = reference.physlite_btag(
        ak.to_list(arrays[PHYSLITE_LINK]),
        *(ak.to_list(arrays[s]) for s in scores),
        t.fc,
        t.cuts[77],
    )
    assert ak.to_list(cols["j"].btag) == want
    # the processor runs with b-tagging on and reads exactly those branches
    folder, tree, is_mc = SAMPLES["physlite"]
    out, metrics = run_processor(_fileset(folder, tree, is_mc), cfg)
    read = read_branches(metrics)
    assert read == set(branches_needed(FORMATS["physlite"], sel))
    assert out["cutflow"][folder]["events_read"] == n
    n_tagged = sum(map(sum, want))
    print(f"PHYSLITE {tagger} 77 %: {n_tagged} of {sum(map(len, want))} jets tagged")


def test_2020e_mev_to_gev_in_float64_keeps_an_entry_on_its_side_of_a_bin_edge():
    """One real 2020e mass sits 3e-6 GeV below the 310 GeV edge; converting MeV -> GeV in
    float32 (the old way) put it 6e-6 GeV above, in the next fine bin."""
    from processor.physics.analysis import analyse_objects

    cfg = validate_config({"object_selection": SEED_PHYSICS})
    sel = cfg.object_selection
    cols, n, arrays = _collections("2020e", cfg)
    comb = cfg.mass_calculation_task_config.combinations
    new = analyse_objects(cols, n, sel, comb)
    fmt = FORMATS["2020e"]
    old_cols = {}
    for t, rec in cols.items():  # the float32 product, cast afterwards
        coll = fmt.collections[t]
        keep = arrays[coll.type_select[0]] == coll.type_select[1] if coll.type_select else None
        fields = {}
        for name, branch in (("pt", coll.pt), ("energy", coll.fourth[1])):
            raw = arrays[branch] if keep is None else arrays[branch][keep]
            assert str(ak.type(raw)).endswith("float32")
            fields[name] = ak.values_astype(raw * np.float32(1e-3), np.float64)
        old_cols[t] = ak.with_field(
            ak.with_field(rec, fields["pt"], "pt"), fields["energy"], "energy"
        )
    old = analyse_objects(old_cols, n, sel, comb)
    assert new.keys() == old.keys()
    moved = np.flatnonzero(np.floor(new.entries.mass / 5.0) != np.floor(old.entries.mass / 5.0))
    assert len(moved) == 1
    i = moved[0]
    assert new.keys()[i] == ("1e_0m_3j_0g_0t_0b_0Z", "e0j0j1j2")
    assert 310.0 - 1e-5 < new.entries.mass[i] < 310.0 < old.entries.mass[i] < 310.0 + 1e-5
