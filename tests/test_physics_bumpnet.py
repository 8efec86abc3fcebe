"""Issue 10 physics on hand-built events: Z candidates, charge tags, three-lepton pairs, overlap
removal, PHYSLITE b-tagging, per-type minimum counts, relative isolation, float64 units.

Expected values are computed by hand (closed formulas, ``math``) and, where an event runs
through the whole analysis, also by the loop reference in ``tests/reference.py``.
"""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pytest
import reference  # tests/ is on sys.path (rootdir-relative test modules)

from processor.config import Config, ConfigError, validate_config
from processor.opendata.btagging import (
    PHYSLITE_LINK,
    PHYSLITE_SCORE,
    TAGGERS,
    discriminant,
    physlite_tag,
)
from processor.opendata.formats import FORMATS, branches_needed, read_collections
from processor.physics.analysis import analyse_objects
from processor.physics.finalstates import code_label, parse_fs_label
from processor.physics.overlap import STEPS, required_types
from processor.physics.selection import select_objects, types_to_read
from processor.physics.zcandidates import build_z_candidates

TYPES = ("e", "m", "j", "g", "t")
MZ = 91.1876


# -- helpers ---------------------------------------------------------------------------------------
def lep(pt: float, phi: float = 0.0, q: float = 1.0, eta: float = 0.0) -> dict:
    """A massless lepton (E = p) with a charge."""
    return {"pt": pt, "eta": eta, "phi": phi, "energy": pt * math.cosh(eta), "charge": q}


def obj(pt: float, eta: float = 0.0, phi: float = 0.0, **extra) -> dict:
    """A massless object (E = p)."""
    return {"pt": pt, "eta": eta, "phi": phi, "energy": pt * math.cosh(eta), **extra}


def dphi_for_mass(m: float, pt1: float, pt2: float) -> float:
    """Azimuthal opening of two massless objects at eta = 0 with pair mass m:
    m^2 = 2 pt1 pt2 (1 - cos dphi)."""
    return math.acos(1.0 - m * m / (2.0 * pt1 * pt2))


def pair_mass(a: dict, b: dict) -> float:
    """Mass of two massless objects from pt, eta, phi (the textbook formula)."""
    return math.sqrt(
        2 * a["pt"] * b["pt"] * (math.cosh(a["eta"] - b["eta"]) - math.cos(a["phi"] - b["phi"]))
    )


def to_collections(events: list[dict], dtype=np.float64) -> dict[str, ak.Array]:
    out = {}
    for t in TYPES:
        per_event = [ev.get(t, []) for ev in events]
        flat = [o for objs in per_event for o in objs]
        counts = np.array([len(objs) for objs in per_event], dtype=np.int64)
        names = ["pt", "eta", "phi", "energy"] + (["charge"] if t in ("e", "m") else [])
        names += [k for k in (flat[0] if flat else {}) if k not in names]
        fields = {}
        for name in names:
            kind = bool if name in ("pass_quality", "btag") else dtype
            fields[name] = ak.unflatten(np.asarray([o[name] for o in flat], dtype=kind), counts)
        out[t] = ak.zip(fields)
    return out


def cfg_with(**object_selection) -> Config:
    return Config.model_validate(
        {
            "object_selection": object_selection,
            "mass_calculation_task_config": {"min_events_per_fs": 0},
        }
    )


def run(events: list[dict], cfg: Config | None = None, overlap: bool = False):
    """(project result, reference result) of the same events."""
    cfg = cfg or cfg_with()
    sel, mc = cfg.object_selection, cfg.mass_calculation_task_config
    res = analyse_objects(
        to_collections(events),
        len(events),
        sel,
        mc.combinations,
        mc.mass_hypothesis,
        overlap_removal=overlap,
    )
    ref = reference.analyse(events, sel, mc.combinations, mc.mass_hypothesis, overlap)
    return res, ref


def masses_of(res, event: int = 0) -> dict[str, float]:
    out = {}
    for ev, (_, combo), m in zip(res.entries.event, res.keys(), res.entries.mass, strict=True):
        if ev == event:
            assert combo not in out
            out[combo] = float(m)
    return out


def fs_of(res, event: int = 0) -> str:
    return code_label(int(res.fs_code[event]))


def z_pair(m: float, pt: float = 70.0, phi0: float = 0.0, flavour: str = "e") -> list[dict]:
    """Two opposite-charge massless leptons of one flavour with pair mass m (eta = 0)."""
    d = dphi_for_mass(m, pt, pt)
    return [lep(pt, phi0, +1.0), lep(pt, phi0 + d, -1.0)]


# -- Z candidates ----------------------------------------------------------------------------------
def test_two_z_candidates_in_one_event():
    ee = z_pair(90.0, pt=60.0, phi0=0.0)
    mm = z_pair(93.0, pt=55.0, phi0=2.0)
    res, ref = run([{"e": ee, "m": mm}])
    assert fs_of(res) == ref.events[0].fs == "0e_0m_0j_0g_0t_0b_2Z"
    # Z0 is the harder pair (pT of the sum), each Z mass is its pair mass
    z_pt = [
        math.hypot(
            sum(o["pt"] * math.cos(o["phi"]) for o in p),
            sum(o["pt"] * math.sin(o["phi"]) for o in p),
        )
        for p in (ee, mm)
    ]
    assert z_pt[0] > z_pt[1]
    assert ref.events[0].z_masses == pytest.approx([90.0, 93.0], rel=1e-9)
    # m(Z0 Z1) = the four-lepton mass, summed by hand
    four = ee + mm
    e = sum(o["energy"] for o in four)
    px = sum(o["pt"] * math.cos(o["phi"]) for o in four)
    py = sum(o["pt"] * math.sin(o["phi"]) for o in four)
    want = math.sqrt(e * e - px * px - py * py)
    assert masses_of(res) == pytest.approx({"Z0Z1": want}, rel=1e-9)
    assert ref.events[0].masses == pytest.approx({"Z0Z1": want}, rel=1e-9)


def test_z_candidate_objects_and_masses_directly():
    ee = z_pair(91.0, pt=50.0)
    cols = to_collections([{"e": ee, "m": []}])
    out = build_z_candidates(
        {"e": cols["e"], "m": cols["m"]}, cfg_with().object_selection.z_candidates
    )
    z = out["Z"][0]
    assert len(z) == 1 and ak.num(out["e"])[0] == 0
    assert float(z.mass[0]) == pytest.approx(91.0, rel=1e-12)
    assert int(z.flavour[0]) == 11
    # the Z four-momentum is the sum of the leptons' (px, py, pz, E)
    assert float(z.px[0]) == pytest.approx(50.0 + 50.0 * math.cos(ee[1]["phi"]), rel=1e-12)
    assert float(z.E[0]) == pytest.approx(100.0, rel=1e-12)


@pytest.mark.parametrize(
    ("offset", "is_z"), [(9.999, True), (10.001, False), (-9.999, True), (-10.001, False)]
)
def test_pair_just_inside_and_outside_the_window(offset, is_z):
    res, ref = run([{"e": z_pair(MZ + offset)}])
    want = "0e_0m_0j_0g_0t_0b_1Z" if is_z else "2e_0m_0j_0g_0t_0b_0Z_OS"
    assert fs_of(res) == ref.events[0].fs == want
    if not is_z:  # no Z: the pair is an ordinary e0e1 (and tagged OS)
        assert masses_of(res)["e0e1"] == pytest.approx(MZ + offset, rel=1e-9)


def test_window_and_mass_are_configurable():
    cfg = cfg_with(z_candidates={"mass_gev": 125.0, "window_gev": 2.0})
    res, _ = run([{"e": z_pair(124.0)}, {"e": z_pair(91.0)}], cfg)
    assert fs_of(res, 0).endswith("_1Z") and fs_of(res, 1) == "2e_0m_0j_0g_0t_0b_0Z_OS"


def test_same_sign_or_different_flavour_pairs_never_form_a_z():
    ss = [lep(50.0, 0.0, +1.0), lep(50.0, dphi_for_mass(MZ, 50, 50), +1.0)]
    em = {"e": [lep(50.0, 0.0, +1.0)], "m": [lep(50.0, dphi_for_mass(MZ, 50, 50), -1.0)]}
    res, ref = run([{"e": ss}, em])
    assert fs_of(res, 0) == ref.events[0].fs == "2e_0m_0j_0g_0t_0b_0Z_SS"
    assert fs_of(res, 1) == ref.events[1].fs == "1e_1m_0j_0g_0t_0b_0Z_OS"


def test_competing_pairs_sharing_a_lepton_closest_wins():
    # e0 (+) pairs with e1 (-) at 95 GeV and with e2 (-) at 89.5 GeV: |89.5 - mZ| is smaller
    e0 = lep(60.0, 0.0, +1.0)
    e1 = lep(55.0, dphi_for_mass(95.0, 60.0, 55.0), -1.0)
    e2 = lep(50.0, -dphi_for_mass(89.5, 60.0, 50.0), -1.0)
    assert pair_mass(e0, e1) == pytest.approx(95.0) and pair_mass(e0, e2) == pytest.approx(89.5)
    res, ref = run([{"e": [e2, e0, e1]}])
    assert fs_of(res) == ref.events[0].fs == "1e_0m_0j_0g_0t_0b_1Z"
    assert ref.events[0].z_masses == pytest.approx([89.5])
    # the electron left over is e1: m(e0 Z0) is the three-electron mass
    three = [e0, e1, e2]
    e = sum(o["energy"] for o in three)
    px = sum(o["pt"] * math.cos(o["phi"]) for o in three)
    py = sum(o["pt"] * math.sin(o["phi"]) for o in three)
    got = masses_of(res)
    assert got == pytest.approx({"e0Z0": math.sqrt(e * e - px * px - py * py)}, rel=1e-9)
    cols = to_collections([{"e": [e2, e0, e1]}])
    out = build_z_candidates(
        {"e": cols["e"][:, [1, 2, 0]]}, cfg_with().object_selection.z_candidates
    )
    assert out["e"].pt.tolist() == [[55.0]]


def test_equal_distances_lower_pt_ranks_win():
    # e1 and e2 are mirror images: m(e0 e1) == m(e0 e2) exactly; e1 (input first, same pT) wins
    d = dphi_for_mass(91.0, 50.0, 50.0)
    cols = to_collections([{"e": [lep(60.0, 0.0, +1.0), lep(50.0, d, -1.0), lep(50.0, -d, -1.0)]}])
    cfg = cfg_with().object_selection
    out = build_z_candidates({"e": select_objects(cols, cfg)["e"]}, cfg.z_candidates)
    assert out["e"].phi.tolist() == [[pytest.approx(-d)]]


def test_greedy_pairing_takes_the_closest_first_and_repeats():
    # four muons on a line of azimuth: (m0, m1) is the best pair; after removing them the
    # remaining (m2, m3) pair qualifies too -> two Z
    a = z_pair(91.0, pt=80.0, phi0=0.0, flavour="m")
    b = z_pair(85.0, pt=45.0, phi0=1.0, flavour="m")
    res, ref = run([{"m": a + b}])
    assert fs_of(res) == ref.events[0].fs == "0e_0m_0j_0g_0t_0b_2Z"
    assert sorted(ref.events[0].z_masses) == pytest.approx([85.0, 91.0], rel=1e-9)


def test_five_lepton_event_passes_after_z_building():
    # five electrons: one Z pair + three others; without Z building 5 > max_count 4 drops it
    others = [lep(40.0, 1.0, +1.0), lep(35.0, 2.5, +1.0), lep(30.0, -2.0, -1.0)]
    for o in others:  # keep the leftovers' pairs far from the window
        o["eta"], o["energy"] = 2.0, o["pt"] * math.cosh(2.0)
    event = {"e": z_pair(91.0, pt=70.0, phi0=-0.5) + others}
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert abs(pair_mass(others[a], others[b]) - MZ) > 10
    res, ref = run([event])
    assert res.cutflow == ref.cutflow
    assert bool(res.valid[0]) and fs_of(res) == ref.events[0].fs == "3e_0m_0j_0g_0t_0b_1Z"
    off, ref_off = run([event], cfg_with(z_candidates={"enabled": False}))
    assert off.cutflow["after_count_limits"] == ref_off.cutflow["after_count_limits"] == 0
    # the three leftover electrons give their three pair masses, tagged by charge
    got = masses_of(res)
    want = {
        "e0e1_SS": pair_mass(others[0], others[1]),
        "e0e2_OS": pair_mass(others[0], others[2]),
        "e1e2_OS": pair_mass(others[1], others[2]),
    }
    assert {k: v for k, v in got.items() if k.endswith(("_OS", "_SS"))} == pytest.approx(
        want, rel=1e-9
    )
    assert ref.events[0].masses == pytest.approx(got, rel=1e-9)


def test_z_count_limit_applies_to_the_final_objects():
    event = {"e": z_pair(91.0, pt=60.0), "m": z_pair(91.0, pt=50.0, phi0=2.0)}
    res, ref = run([event], cfg_with(z_candidates={"max_count": 1}))
    assert res.cutflow["after_count_limits"] == ref.cutflow["after_count_limits"] == 0
    res, ref = run([event], cfg_with(z_candidates={"min_count": 2}))
    assert res.cutflow["after_count_limits"] == ref.cutflow["after_count_limits"] == 1


# -- charge tags -----------------------------------------------------------------------------------
def test_leftover_os_and_ss_pairs_are_separate_final_states():
    far = dphi_for_mass(40.0, 50.0, 50.0)  # 40 GeV: no Z
    events = [
        {"e": [lep(50.0, 0.0, +1.0), lep(50.0, far, -1.0)]},  # OS
        {"e": [lep(50.0, 0.0, -1.0), lep(50.0, far, -1.0)]},  # SS
        {"e": [lep(50.0, 0.0, +1.0)], "m": [lep(50.0, far, +1.0)]},  # e mu SS
        # a Z plus two leftover muons of equal charge -> SS
        {"e": z_pair(91.0), "m": [lep(40.0, 1.0, +1.0), lep(35.0, 2.0, +1.0, eta=1.5)]},
        {"e": [lep(50.0, 0.0, +1.0)]},  # one lepton: no tag
        {"e": [lep(50.0, 0.0, +1.0), lep(45.0, 1.0, -1.0), lep(40.0, 2.0, -1.0, eta=2.0)]},
    ]
    res, ref = run(events)
    want = [
        "2e_0m_0j_0g_0t_0b_0Z_OS",
        "2e_0m_0j_0g_0t_0b_0Z_SS",
        "1e_1m_0j_0g_0t_0b_0Z_SS",
        "0e_2m_0j_0g_0t_0b_1Z_SS",
        "1e_0m_0j_0g_0t_0b_0Z",
        "3e_0m_0j_0g_0t_0b_0Z",
    ]
    assert [fs_of(res, i) for i in range(len(events))] == want
    assert [ev.fs for ev in ref.events] == want
    assert parse_fs_label(want[3]) == (
        {"e": 0, "m": 2, "j": 0, "g": 0, "t": 0, "b": 0, "Z": 1},
        "SS",
    )
    # OS and SS pairs land in different histograms (fs keys)
    keys = {k for k in res.keys() if k[1] == "e0e1"}
    assert ("2e_0m_0j_0g_0t_0b_0Z_OS", "e0e1") in keys and (
        "2e_0m_0j_0g_0t_0b_0Z_SS",
        "e0e1",
    ) in keys


def test_charge_tags_off_and_z_off_give_the_original_labels():
    cfg = cfg_with(z_candidates={"enabled": False}, charge_tags=False, three_lepton_pairs=False)
    res, ref = run([{"e": z_pair(91.0)}], cfg)
    assert fs_of(res) == ref.events[0].fs == "2e_0m_0j_0g_0t_0b_0Z"
    assert set(masses_of(res)) == {"e0e1"}


# -- three-lepton pair masses ----------------------------------------------------------------------
def test_three_lepton_pair_masses_by_charge():
    # e+ e- mu+, all pairs far from m_Z: pairs e0e1 (OS), e0m0 (SS), e1m0 (OS)
    e0, e1 = lep(70.0, 0.0, +1.0), lep(40.0, 1.2, -1.0)
    m0 = lep(30.0, 2.6, +1.0, eta=1.0)
    res, ref = run([{"e": [e1, e0], "m": [m0]}])
    got = masses_of(res)
    want = {
        "e0e1_OS": pair_mass(e0, e1),
        "e0m0_SS": pair_mass(e0, m0),
        "e1m0_OS": pair_mass(e1, m0),
    }
    assert abs(want["e0e1_OS"] - MZ) > 10  # the only same-flavour opposite-charge pair: no Z
    assert {k: v for k, v in got.items() if "_" in k} == pytest.approx(want, rel=1e-9)
    assert ref.events[0].masses == pytest.approx(got, rel=1e-9)
    # the ordinary combinations are still there (e0e1 without a tag, e0e1m0, ...)
    assert {"e0e1", "e0e1m0"} <= set(got)
    off, _ = run([{"e": [e1, e0], "m": [m0]}], cfg_with(three_lepton_pairs=False))
    assert not any("_" in k for k in masses_of(off))


def test_three_muons_pair_labels():
    ms = [lep(80.0, 0.0, -1.0), lep(50.0, 2.0, -1.0), lep(30.0, -2.0, +1.0, eta=2.0)]
    res, _ = run([{"m": ms}])
    got = {k for k in masses_of(res) if "_" in k}
    assert got == {"m0m1_SS", "m0m2_OS", "m1m2_OS"}


# -- overlap removal -------------------------------------------------------------------------------
#: (removed type, reference type, config key) of each step, reference placed at eta 0 phi 0
OR_CASES = [(removed, refs[0], key) for removed, refs, key in STEPS] + [("t", "m", "tau_lepton_dr")]


def _pt(t: str) -> float:
    return {"e": 40.0, "m": 40.0, "j": 60.0, "g": 40.0, "t": 40.0}[t]


@pytest.mark.parametrize(("removed", "ref_type", "key"), OR_CASES)
@pytest.mark.parametrize("side", [-1, +1])
def test_overlap_removal_threshold(removed, ref_type, key, side):
    cut = getattr(Config().object_selection.overlap_removal, key)
    dr = cut + side * 1e-6
    ref_obj = obj(_pt(ref_type), 0.0, 0.0)
    near = obj(_pt(removed), dr * 0.6, dr * 0.8)  # Delta R = dr (3-4-5 triangle)
    for o, t in ((ref_obj, ref_type), (near, removed)):
        if t in ("e", "m"):
            o["charge"] = 1.0
    event = {ref_type: [ref_obj], removed: [near]}
    # only this step on (e.g. a kept jet would otherwise remove the electron in the next step)
    only = {k: (cut if k == key else 0.0) for _, _, k in STEPS}
    cfg = cfg_with(z_candidates={"enabled": False}, overlap_removal=only)
    got = select_objects(to_collections([event]), cfg.object_selection, overlap_removal=True)
    want = reference.select_objects(event, cfg.object_selection, apply_overlap_removal=True)
    n_left = int(ak.num(got[removed])[0])
    assert n_left == len(want[removed]) == (0 if side < 0 else 1), (removed, ref_type, dr)
    # the reference object always stays (the removed type loses)
    assert int(ak.num(got[ref_type])[0]) == 1
    # without overlap removal nothing is removed
    off = select_objects(to_collections([event]), cfg.object_selection)
    assert int(ak.num(off[removed])[0]) == 1


def test_overlap_removal_wraps_phi_and_each_step_uses_the_survivors():
    # an electron at phi = pi - 0.05 and a jet at -pi + 0.05: Delta R = 0.1 -> jet removed
    e = obj(40.0, 0.0, math.pi - 0.05, charge=1.0)
    j = obj(60.0, 0.0, -math.pi + 0.05)
    cfg = cfg_with(z_candidates={"enabled": False}).object_selection
    got = select_objects(to_collections([{"e": [e], "j": [j]}]), cfg, overlap_removal=True)
    assert ak.num(got["j"]).tolist() == [0] and ak.num(got["e"]).tolist() == [1]
    # a photon within 0.4 of a muon is removed (step 2) and so cannot remove the jet beside it
    # (step 5); an electron removed by a jet (step 4) has already removed its tau (step 1)
    m = obj(40.0, 1.0, 1.0, charge=-1.0)
    g = obj(40.0, 1.3, 1.0)
    jet_near_photon = obj(60.0, 1.6, 1.0)  # 0.3 from the photon, 0.6 from the muon
    e2 = obj(40.0, -1.0, -2.0, charge=1.0)
    tau = obj(40.0, -1.1, -2.0)  # 0.1 from e2
    jet_near_e2 = obj(60.0, -1.3, -2.0)  # 0.3 from e2: survives step 3, removes e2 in step 4
    event = {"m": [m], "g": [g], "j": [jet_near_photon, jet_near_e2], "e": [e2], "t": [tau]}
    got = select_objects(to_collections([event]), cfg, overlap_removal=True)
    assert {t: int(ak.num(got[t])[0]) for t in "emjgt"} == {"e": 0, "m": 1, "j": 2, "g": 0, "t": 0}
    want = reference.select_objects(event, cfg, apply_overlap_removal=True)
    assert {t: len(want[t]) for t in "emjgt"} == {"e": 0, "m": 1, "j": 2, "g": 0, "t": 0}


def test_overlap_removal_step_can_be_switched_off_and_defaults_per_format():
    cfg = cfg_with(overlap_removal={"jet_electron_dr": 0.0, "electron_jet_dr": 0.0})
    e = obj(40.0, 0.0, 0.0, charge=1.0)
    j = obj(60.0, 0.05, 0.0)
    got = select_objects(to_collections([{"e": [e], "j": [j]}]), cfg.object_selection, True)
    assert int(ak.num(got["e"])[0]) == int(ak.num(got["j"])[0]) == 1
    auto = Config().object_selection.overlap_removal
    assert auto.applies_to("physlite") and not auto.applies_to("2025e")
    assert not auto.applies_to("2020e") and not auto.applies_to("2016e")
    forced = cfg_with(overlap_removal={"enabled": True}).object_selection.overlap_removal
    assert forced.applies_to("2025e")
    off = cfg_with(overlap_removal={"enabled": False}).object_selection.overlap_removal
    assert not off.applies_to("physlite")


def test_overlap_removal_reads_the_collections_it_needs():
    sel = cfg_with(types=["e", "m"]).object_selection
    assert required_types({"e", "m"}, sel.overlap_removal) == {"e", "m", "j"}
    assert types_to_read(sel, overlap_removal=False) == ("e", "m")
    assert types_to_read(sel, overlap_removal=True) == ("e", "m", "j")
    # jets need the leptons and photons that remove them; taus need the leptons
    assert required_types({"j"}, sel.overlap_removal) == {"e", "m", "j", "g"}
    assert required_types({"t"}, sel.overlap_removal) == {"e", "m", "t"}
    physlite = set(branches_needed(FORMATS["physlite"], sel))
    assert "AnalysisJetsAuxDyn.pt" in physlite and "AnalysisTauJetsAuxDyn.pt" not in physlite
    assert "jet_pt" not in branches_needed(FORMATS["2025e"], sel)  # no overlap removal there


# -- b-tagging (PHYSLITE) --------------------------------------------------------------------------
def _scores_for(d: float, fc: float, r: float = 0.3) -> tuple[float, float, float]:
    """(pb, pc, pu), summing to 1, whose discriminant is d (pc : pu = r : 1 - r)."""
    k = fc * r + (1 - fc) * (1 - r)
    rest = 1 / (1 + math.exp(d) * k)
    return 1 - rest, rest * r, rest * (1 - r)


def _physlite_getter(links, pb, pc, pu, tagger="DL1dv01"):
    data = {
        PHYSLITE_LINK: ak.Array(links),
        PHYSLITE_SCORE.format(tagger=tagger, flavour="b"): ak.Array(pb),
        PHYSLITE_SCORE.format(tagger=tagger, flavour="c"): ak.Array(pc),
        PHYSLITE_SCORE.format(tagger=tagger, flavour="u"): ak.Array(pu),
    }
    return data.__getitem__


def test_dl1d_formula_by_hand():
    pb, pc, pu = 0.5, 0.2, 0.3
    assert float(discriminant(pb, pc, pu, 0.018)) == pytest.approx(
        math.log(0.5 / (0.018 * 0.2 + 0.982 * 0.3)), rel=1e-12
    )
    assert TAGGERS["DL1dv01"].cuts == {60: 4.93, 70: 3.56, 77: 2.51, 85: 0.92}
    assert TAGGERS["DL1dv01"].fc == 0.018


@pytest.mark.parametrize("tagger", ["DL1dv01", "GN2v00"])
@pytest.mark.parametrize("wp", [60, 70, 77, 85])
def test_discriminant_at_each_working_point(tagger, wp):
    t = TAGGERS[tagger]
    cut = t.cuts[wp]
    # one event, two jets just below / just above the cut; the container is stored reversed
    below, above = _scores_for(cut - 0.01, t.fc), _scores_for(cut + 0.01, t.fc)
    assert math.log(above[0] / (t.fc * above[1] + (1 - t.fc) * above[2])) == pytest.approx(
        cut + 0.01
    )
    container = [above, below]  # jet 0 (below) -> slot 1, jet 1 (above) -> slot 0
    get = _physlite_getter(
        [[1, 0]], *([[c[i] for c in container]] for i in range(3)), tagger=tagger
    )
    cfg = cfg_with(btagging={"enabled": True, "tagger": tagger, "working_point": wp})
    tags = physlite_tag(get, cfg.object_selection.btagging)
    assert tags.tolist() == [[False, True]]
    # the same through the loop reference
    fc, links = t.fc, [[1, 0]]
    scores = [[[c[i] for c in container]] for i in range(3)]
    assert reference.physlite_btag(links, *scores, fc, cut) == [[False, True]]


def test_btagging_options_invalid_links_and_explicit_cut():
    good = _scores_for(5.0, 0.018)
    get = _physlite_getter(
        [[0, 7, 4294967295], []], [[good[0]], []], [[good[1]], []], [[good[2]], []]
    )
    cfg = cfg_with(btagging={"enabled": True}).object_selection.btagging
    assert physlite_tag(get, cfg).tolist() == [[True, False, False], []]
    strict = cfg_with(btagging={"enabled": True, "discriminant_min": 5.5}).object_selection
    assert physlite_tag(get, strict.btagging).tolist() == [[False, False, False], []]
    # a different fc changes D: with fc = 1, D = ln(pb / pc)
    fc1 = cfg_with(btagging={"enabled": True, "fc": 1.0, "discriminant_min": 0.0})
    want = math.log(good[0] / good[1]) > 0
    assert physlite_tag(get, fc1.object_selection.btagging).tolist()[0][0] == want


def test_physlite_btagging_matches_the_loop_reference_on_random_containers():
    rng = np.random.default_rng(5)
    links, pb, pc, pu = [], [], [], []
    for _ in range(500):
        n = int(rng.integers(0, 8))
        perm = rng.permutation(n).tolist()
        if n and rng.random() < 0.1:
            perm[0] = 4294967295  # an invalid link
        p = [
            _scores_for(d, 0.1, r)
            for d, r in zip(rng.uniform(-2, 8, n), rng.random(n), strict=True)
        ]
        links.append(perm)
        pb.append([x[0] for x in p])
        pc.append([x[1] for x in p])
        pu.append([x[2] for x in p])
    get = _physlite_getter(links, pb, pc, pu, "GN2v00")
    for wp in (60, 70, 77, 85):
        cfg = cfg_with(btagging={"enabled": True, "tagger": "GN2v00", "working_point": wp})
        got = physlite_tag(get, cfg.object_selection.btagging).tolist()
        want = reference.physlite_btag(links, pb, pc, pu, 0.1, TAGGERS["GN2v00"].cuts[wp])
        assert got == want
        assert 20 < sum(map(sum, got)) < sum(map(len, got)) - 20


def test_btagging_branches_and_unknown_tagger():
    sel = cfg_with(btagging={"enabled": True, "tagger": "GN2v00"}).object_selection
    need = set(branches_needed(FORMATS["physlite"], sel))
    assert {PHYSLITE_LINK, "BTagging_AntiKt4EMPFlowAuxDyn.GN2v00_pb"} <= need
    assert "BTagging_AntiKt4EMPFlowAuxDyn.DL1dv01_pb" not in need
    with pytest.raises(ConfigError, match="tagger"):
        validate_config({"object_selection": {"btagging": {"tagger": "MV2c10"}}})
    with pytest.raises(ConfigError, match="working_point"):
        validate_config({"object_selection": {"btagging": {"working_point": 80}}})


# -- per-type minimum counts -----------------------------------------------------------------------
def test_min_count_is_applied_to_the_final_objects():
    cfg = cfg_with(electrons={"min_count": 1})
    events = [
        {"e": [lep(50.0, 0.0, +1.0)], "j": [obj(60.0, 1.0, 2.0)]},  # 1 e: kept
        {"m": [lep(50.0, 0.0, +1.0)], "j": [obj(60.0, 1.0, 2.0)]},  # 0 e: dropped
        {"e": z_pair(91.0)},  # both electrons become a Z: 0 e left, dropped
    ]
    res, ref = run(events, cfg)
    assert res.valid.tolist() == [ev.valid for ev in ref.events] == [True, False, False]
    assert res.cutflow == ref.cutflow
    jets2 = cfg_with(jets={"min_count": 2})
    res, ref = run([{"j": [obj(60.0), obj(50.0, 1.0, 2.0)]}, {"j": [obj(60.0)]}], jets2)
    assert res.valid.tolist() == [True, False]
    with pytest.raises(ConfigError, match="min_count must be <= max_count"):
        validate_config({"object_selection": {"muons": {"min_count": 3, "max_count": 2}}})
    with pytest.raises(ConfigError, match="every event would be dropped"):
        validate_config({"object_selection": {"types": ["e", "j"], "taus": {"min_count": 1}}})
    with pytest.raises(ConfigError, match="needs btagging.enabled"):
        validate_config({"object_selection": {"btagging": {"min_count": 1}}})
    with pytest.raises(ConfigError, match="needs z_candidates.enabled"):
        validate_config({"object_selection": {"z_candidates": {"enabled": False, "min_count": 1}}})
    # b-jets and Z have their own limits
    b2 = cfg_with(btagging={"enabled": True, "min_count": 1})
    assert b2.object_selection.min_count("b") == 1 and b2.object_selection.min_count("Z") == 0


# -- relative isolation, charges, units (format adapters) ------------------------------------------
def _getter(data: dict[str, list]):
    arrays = {k: ak.Array(v) for k, v in data.items()}
    return arrays.__getitem__


def _2025e_leptons(**extra) -> dict[str, list]:
    data = {
        "lep_pt": [[100.0, 50.0, 40.0]],
        "lep_eta": [[0.1, 0.2, 0.3]],
        "lep_phi": [[0.0, 1.0, 2.0]],
        "lep_e": [[101.0, 51.0, 41.0]],
        "lep_type": [[11, 11, 13]],
        "lep_charge": [[1, -1, 1]],
        # calorimeter cones: 5.9 % (pass at 0.06), 6.1 % (fail), 1 % (muon)
        "lep_topoetcone20": [[5.9, 3.05, 0.4]],
        "lep_ptvarcone30": [[0.0, 0.0, 4.0]],
    }
    data.update(extra)
    return data


def test_rel_isolation_cut_and_variable_per_format():
    cfg = cfg_with(electrons={"rel_isolation_max": 0.06}, muons={"rel_isolation_max": 0.06})
    sel = cfg.object_selection
    cols = read_collections(_getter(_2025e_leptons()), FORMATS["2025e"], ("e", "m"), sel.cuts)
    assert cols["e"].pass_quality.tolist() == [[True, False]]
    assert cols["m"].pass_quality.tolist() == [[True]]
    # the track cone instead: the muon has 10 % and fails
    trk = cfg_with(muons={"rel_isolation_max": 0.06, "rel_isolation_variable": "track"})
    cols = read_collections(
        _getter(_2025e_leptons()), FORMATS["2025e"], ("m",), trk.object_selection.cuts
    )
    assert cols["m"].pass_quality.tolist() == [[False]]
    # the cone variable each format uses
    need = {fmt: set(branches_needed(FORMATS[fmt], sel)) for fmt in ("2025e", "2020e", "physlite")}
    assert "lep_topoetcone20" in need["2025e"] and "lep_etcone20" in need["2020e"]
    assert {
        "AnalysisElectronsAuxDyn.topoetcone20",
        "AnalysisMuonsAuxDyn.topoetcone20",
    } <= need["physlite"]
    with pytest.raises(ConfigError, match="relative isolation exists for electrons, muons"):
        validate_config({"object_selection": {"jets": {"rel_isolation_max": 0.1}}})


def test_charges_are_read_for_electrons_and_muons_only_when_used():
    sel = Config().object_selection
    cols = read_collections(
        _getter(_2025e_leptons()), FORMATS["2025e"], ("e", "m"), sel.cuts, charge=True
    )
    assert cols["e"].charge.tolist() == [[1.0, -1.0]] and cols["m"].charge.tolist() == [[1.0]]
    for fmt, branch in (
        ("2025e", "lep_charge"),
        ("2020e", "lep_charge"),
        ("2016e", "lep_charge"),
        ("physlite", "AnalysisElectronsAuxDyn.charge"),
    ):
        assert branch in branches_needed(FORMATS[fmt], sel), fmt
    plain = cfg_with(z_candidates={"enabled": False}, charge_tags=False, three_lepton_pairs=False)
    assert "lep_charge" not in branches_needed(FORMATS["2025e"], plain.object_selection)


def test_mev_to_gev_after_the_cast_to_float64():
    # float32 MeV values whose float32 product with 1e-3 rounds differently from float64
    pt_mev = np.array([25000.0019531, 41234.566, 99999.99, 13.37], dtype=np.float32)
    data = {
        "lep_pt": [pt_mev.tolist()],
        "lep_eta": [[0.0] * 4],
        "lep_phi": [[0.0] * 4],
        "lep_E": [pt_mev.tolist()],
        "lep_type": [[11] * 4],
    }
    arrays = {k: ak.values_astype(ak.Array(v), np.float32) for k, v in data.items()}
    cols = read_collections(
        arrays.__getitem__, FORMATS["2020e"], ("e",), Config().object_selection.cuts
    )
    got = ak.to_numpy(ak.flatten(cols["e"].pt))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, pt_mev.astype(np.float64) * 1e-3)
    float32_way = (pt_mev * np.float32(1e-3)).astype(np.float64)
    assert (float32_way != got).any()  # the old conversion really differed


def test_z_candidates_need_charges():
    sel = Config().object_selection
    assert sel.needs_charge() and "Z" in sel.active_types()
    cols = to_collections([{"e": z_pair(91.0)}])
    cols["e"] = cols["e"][["pt", "eta", "phi", "energy"]]
    comb = Config().mass_calculation_task_config.combinations
    with pytest.raises(ValueError, match="no 'charge'"):
        analyse_objects(cols, 1, sel, comb)
    no_leptons = cfg_with(types=["j", "g"]).object_selection
    assert not no_leptons.needs_charge() and "Z" not in no_leptons.active_types()


# -- synthetic PHYSLITE files carry what the physics reads ---------------------------------------
def test_synthetic_physlite_btagging_follows_the_links(tmp_path):
    import uproot
    from helpers import read_branches, run_processor

    from processor.synthetic import write_sample

    path = write_sample(tmp_path / "pl.root", "physlite", 3000, seed=4, kind="mc", dsid=700001)
    cfg = validate_config(
        {
            "object_selection": {
                "btagging": {"enabled": True},
                "electrons": {"rel_isolation_max": 0.06},
                "muons": {"rel_isolation_max": 0.1, "rel_isolation_variable": "track"},
                "photons": {"rel_isolation_max": 0.1},
                "taus": {"id": "medium"},
            },
            "mass_calculation_task_config": {"min_events_per_fs": 0},
        }
    )
    sel = cfg.object_selection
    fmt = FORMATS["physlite"]
    need = branches_needed(fmt, sel)
    arrays = uproot.open(path)["CollectionTree"].arrays(need)
    cols = read_collections(
        arrays.__getitem__, fmt, types_to_read(sel, True), sel.cuts, btag_cfg=sel.btagging
    )
    scores = [PHYSLITE_SCORE.format(tagger="DL1dv01", flavour=f) for f in "bcu"]
    links = ak.to_list(arrays[PHYSLITE_LINK])
    want = reference.physlite_btag(
        links, *(ak.to_list(arrays[s]) for s in scores), 0.018, TAGGERS["DL1dv01"].cuts[77]
    )
    assert ak.to_list(cols["j"].btag) == want
    n_tagged, n_jets = sum(map(sum, want)), sum(map(len, want))
    assert 0.05 * n_jets < n_tagged < 0.5 * n_jets
    # the container is not in jet order: ignoring the links gives other tags
    identity = [list(range(len(v))) for v in links]
    unlinked = reference.physlite_btag(
        identity, *(ak.to_list(arrays[s]) for s in scores), 0.018, TAGGERS["DL1dv01"].cuts[77]
    )
    assert unlinked != want
    # the whole processor runs on it (overlap removal on, isolation, tau ID, b-jets)
    fileset = {"pl": {"files": {str(path): "CollectionTree"}, "metadata": {"is_mc": True}}}
    out, metrics = run_processor(fileset, cfg)
    assert read_branches(metrics) == set(need)
    assert any("b0" in combo for _, combo in out["groups"]["mc"]["hists"])
