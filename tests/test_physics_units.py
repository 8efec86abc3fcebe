"""Hand-computed physics on tiny hand-built events, for the project's code and the reference.

These are the original's physics (DESIGN §2): Z candidates, charge tags and three-lepton pairs
are off here (the objects carry no charge); tests/test_physics_bumpnet.py covers issue 10.
"""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pytest
import reference  # tests/ is on sys.path (rootdir-relative test modules)

from processor.config import CombinationConfig, Config
from processor.physics.analysis import analyse_objects
from processor.physics.finalstates import code_label, combinations_for

TYPES = ("e", "m", "j", "g", "t")
ME = 0.00051099895


def obj(pt, eta=0.0, phi=0.0, energy=None, mass=None, **flags):
    """One object; massless (E = p) unless energy or mass is given."""
    o = {"pt": pt, "eta": eta, "phi": phi}
    if mass is not None:
        o["mass"] = mass
    else:
        o["energy"] = pt * math.cosh(eta) if energy is None else energy
    o.update(flags)
    return o


def to_collections(events, dtype=np.float64):
    """Python events (type -> list of objects) as analyse_objects' awkward collections."""
    out = {}
    for t in TYPES:
        per_event = [ev.get(t, []) for ev in events]
        flat = [o for objs in per_event for o in objs]
        counts = np.array([len(objs) for objs in per_event], dtype=np.int64)
        if flat:
            names = list(flat[0])
        else:
            names = ["pt", "eta", "phi", "energy"] + (["btag"] if t == "j" else [])
        fields = {}
        for name in names:
            values = [o[name] for o in flat]
            kind = bool if name in ("pass_quality", "btag") else dtype
            fields[name] = ak.unflatten(np.asarray(values, dtype=kind), counts)
        out[t] = ak.zip(fields)
    return out


#: Z candidates, charge tags and three-lepton pairs off: the original's physics
SEED_PHYSICS = {
    "z_candidates": {"enabled": False},
    "charge_tags": False,
    "three_lepton_pairs": False,
}


def run(events, cfg=None, dtype=np.float64):
    """(project result, reference result) for the same events."""
    cfg = cfg or cfg_with()
    sel = cfg.object_selection
    mc = cfg.mass_calculation_task_config
    res = analyse_objects(
        to_collections(events, dtype), len(events), sel, mc.combinations, mc.mass_hypothesis
    )
    ref = reference.analyse(events, sel, mc.combinations, mc.mass_hypothesis)
    return res, ref


def project_masses(res, event=0) -> dict[str, float]:
    """combo label -> mass of one event, from the project's result."""
    out = {}
    for ev, (_, combo), m in zip(res.entries.event, res.keys(), res.entries.mass, strict=True):
        if ev == event:
            assert combo not in out
            out[combo] = float(m)
    return out


def project_fs(res, event=0) -> str:
    return code_label(int(res.fs_code[event]))


def cfg_with(**overrides) -> Config:
    """A config with the original's physics plus ``overrides`` (object_selection merged)."""
    sel = {**SEED_PHYSICS, **overrides.pop("object_selection", {})}
    return Config.model_validate({"object_selection": sel, **overrides})


def comb_cfg(**kw) -> Config:
    return cfg_with(mass_calculation_task_config={"combinations": kw})


# -- DESIGN §2 examples -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("counts", "comb", "expected"),
    [
        ({"e": 2, "j": 1}, {}, {"e0e1j0", "e0e1"}),
        ({"e": 2, "j": 1}, {"min_types": 2}, {"e0e1j0"}),
        ({"e": 1, "m": 1, "j": 1}, {}, {"e0m0", "e0j0", "m0j0", "e0m0j0"}),
        ({"e": 1, "m": 1, "j": 1}, {"min_types": 2}, {"e0m0", "e0j0", "m0j0", "e0m0j0"}),
        ({"e": 2, "j": 1}, {"mode": "include_subleading"}, {"e0e1j0", "e1j0", "e0e1"}),
        ({"e": 5}, {}, set()),  # above max_count 4: the final state does not count
        ({"e": 1, "m": 1, "j": 1, "g": 1, "t": 1}, {}, set()),  # 5 types > max_types 4
    ],
)
def test_design_combination_examples(counts, comb, expected):
    cfg = CombinationConfig(**comb)
    full = {t: counts.get(t, 0) for t in reference.FS_ORDER}
    assert set(combinations_for(full, cfg_with().object_selection.active_types(), cfg)) == expected
    ok = reference.final_state_ok(full, cfg)
    assert {label for label, _ in reference.combinations(full, cfg) if ok} == expected


def test_design_examples_on_events():
    e1, e2, j1 = obj(60.0, 0.3, 0.1), obj(40.0, -0.5, 2.0), obj(80.0, 1.0, -2.0)
    event = {"e": [e2, e1], "j": [j1]}
    res, ref = run([event])
    assert set(project_masses(res)) == set(ref.events[0].masses) == {"e0e1j0", "e0e1"}
    assert project_fs(res) == ref.events[0].fs == "2e_0m_1j_0g_0t_0b_0Z"
    res, ref = run([event], comb_cfg(min_types=2))
    assert set(project_masses(res)) == set(ref.events[0].masses) == {"e0e1j0"}

    event = {"e": [obj(50.0)], "m": [obj(45.0, 1.0, 1.0)], "j": [obj(70.0, -1.0, 3.0)]}
    res, ref = run([event])
    expected = {"e0m0", "e0j0", "m0j0", "e0m0j0"}
    assert set(project_masses(res)) == set(ref.events[0].masses) == expected
    assert project_fs(res) == "1e_1m_1j_0g_0t_0b_0Z"


# -- masses by hand ------------------------------------------------------------------------------
def test_z_to_ee_back_to_back():
    event = {"e": [obj(45.6, 0.0, 0.0), obj(45.6, 0.0, math.pi)]}
    res, ref = run([event])
    assert project_masses(res) == pytest.approx({"e0e1": 91.2}, rel=1e-12)
    assert ref.events[0].masses == pytest.approx({"e0e1": 91.2}, rel=1e-12)
    # PDG hypothesis: E = sqrt(p^2 + m_e^2) for each, the pair at rest
    res, ref = run([event], cfg_with(mass_calculation_task_config={"mass_hypothesis": "pdg"}))
    want = 2 * math.sqrt(45.6**2 + ME**2)
    assert project_masses(res)["e0e1"] == pytest.approx(want, rel=1e-12)
    assert ref.events[0].masses["e0e1"] == pytest.approx(want, rel=1e-12)


def test_pair_with_longitudinal_momentum():
    # massless, pT 45.6 at eta +1 and -1, back to back in phi: pz cancels, E = 2 pT cosh 1
    event = {"e": [obj(45.6, 1.0, 0.3), obj(45.6, -1.0, 0.3 + math.pi)]}
    res, ref = run([event])
    want = 2 * 45.6 * math.cosh(1.0)
    assert project_masses(res)["e0e1"] == pytest.approx(want, rel=1e-12)
    assert ref.events[0].masses["e0e1"] == pytest.approx(want, rel=1e-12)


def test_stored_mass_and_energy_agree():
    # the same two muons given by mass or by the matching energy; m1 = m2 = 10 GeV at rest in
    # the pair frame with |p| = 30 GeV each: M = 2 sqrt(30^2 + 10^2)
    m = 10.0
    a = {"pt": 30.0, "eta": 0.0, "phi": 0.0}
    b = {"pt": 30.0, "eta": 0.0, "phi": math.pi}
    want = 2 * math.sqrt(30.0**2 + m**2)
    for fourth in ({"mass": m}, {"energy": math.sqrt(30.0**2 + m**2)}):
        res, ref = run([{"m": [{**a, **fourth}, {**b, **fourth}]}])
        assert project_masses(res)["m0m1"] == pytest.approx(want, rel=1e-12)
        assert ref.events[0].masses["m0m1"] == pytest.approx(want, rel=1e-12)


def test_negative_stored_mass_uses_m_squared():
    """Spec: with a stored mass, E = sqrt(p^2 + m^2), so the sign of m does not matter."""
    m = -10.0
    event = {
        "j": [
            {"pt": 40.0, "eta": 0.0, "phi": 0.0, "mass": m},
            {"pt": 40.0, "eta": 0.0, "phi": math.pi, "mass": m},
        ]
    }
    want = 2 * math.sqrt(40.0**2 + m**2)
    res, ref = run([event])
    assert ref.events[0].masses["j0j1"] == pytest.approx(want, rel=1e-12)
    assert project_masses(res)["j0j1"] == pytest.approx(want, rel=1e-12)


# -- ordering, count limits, cuts ----------------------------------------------------------------
def test_pt_ordering_sets_the_ranks():
    # input order 30, 80, 50 GeV -> e0 = 80, e1 = 50, e2 = 30 (all massless, eta 0)
    event = {"e": [obj(30.0, 0.0, 0.0), obj(80.0, 0.0, math.pi / 2), obj(50.0, 0.0, math.pi)]}
    res, ref = run([event], comb_cfg(mode="include_subleading"))
    got, want_labels = project_masses(res), {"e0e1e2", "e1e2"}
    assert set(got) == set(ref.events[0].masses) == want_labels
    # e1e2 = the 50 and 30 GeV electrons, back to back: M = 2 sqrt(50 * 30)
    assert got["e1e2"] == pytest.approx(2 * math.sqrt(50.0 * 30.0), rel=1e-12)
    assert ref.events[0].masses["e1e2"] == pytest.approx(2 * math.sqrt(50.0 * 30.0), rel=1e-12)
    # e0e1e2: E = 160, p = (30 - 50, 80, 0)
    want = math.sqrt(160.0**2 - (20.0**2 + 80.0**2))
    assert got["e0e1e2"] == pytest.approx(want, rel=1e-12)


def test_include_subleading_gives_e1j0():
    e_lead, e_sub, jet = obj(100.0, 0.0, 0.0), obj(40.0, 0.0, 0.0), obj(40.0, 0.0, math.pi)
    res, ref = run([{"e": [e_sub, e_lead], "j": [jet]}], comb_cfg(mode="include_subleading"))
    got = project_masses(res)
    assert set(got) == set(ref.events[0].masses) == {"e0e1j0", "e1j0", "e0e1"}
    # e1j0: two massless 40 GeV objects back to back -> 80 GeV
    assert got["e1j0"] == pytest.approx(80.0, rel=1e-12)
    assert ref.events[0].masses["e1j0"] == pytest.approx(80.0, rel=1e-12)
    # e0e1 collinear and massless -> 0
    assert got["e0e1"] == pytest.approx(0.0, abs=1e-5)


def test_event_over_count_limit_is_dropped():
    five = [obj(30.0 + 10 * i, 0.1 * i, 0.5 * i) for i in range(5)]
    four_and_one_soft = [*five[:4], obj(10.0, 0.0, 1.0)]
    four_and_one_bad = [{**o, "pass_quality": True} for o in five[:4]]
    four_and_one_bad.append(obj(50.0, 0.0, 1.0, pass_quality=False))
    for events, kept in (
        ([{"e": five}], 0),
        ([{"e": four_and_one_soft}], 1),
        ([{"m": four_and_one_bad}], 1),
    ):
        res, ref = run(events)
        assert res.cutflow == ref.cutflow
        assert res.cutflow["after_count_limits"] == kept
        assert bool(res.valid[0]) == bool(kept)
    # a raised limit keeps the five-electron event (and the combination range still drops it)
    cfg = cfg_with(object_selection={"electrons": {"max_count": 5}})
    res, ref = run([{"e": five}], cfg)
    assert res.cutflow == ref.cutflow
    assert res.cutflow["after_count_limits"] == 1
    assert res.cutflow["in_final_state"] == 0  # 5 > combinations.max_count 4


def test_cuts_are_strict_and_quality_is_required():
    # pT exactly at the cut, |eta| exactly at the cut, failing quality: all rejected
    at_pt = obj(25.0, 0.0, 0.0, pass_quality=True)
    at_eta = obj(60.0, 2.5, 1.0, pass_quality=True)
    bad_q = obj(60.0, 0.0, 2.0, pass_quality=False)
    good = [obj(50.0, 0.2, 0.0, pass_quality=True), obj(35.0, -1.0, 3.0, pass_quality=True)]
    res, ref = run([{"m": [at_pt, at_eta, bad_q, *good]}])
    assert project_fs(res) == ref.events[0].fs == "0e_2m_0j_0g_0t_0b_0Z"
    assert set(project_masses(res)) == {"m0m1"}
    assert project_masses(res) == pytest.approx(ref.events[0].masses, rel=1e-12)
    # taus have their own, lower pT cut (20 GeV): 21 GeV passes
    res, ref = run([{"t": [obj(21.0), obj(60.0, 0.0, 2.0)]}])
    assert project_fs(res) == ref.events[0].fs == "0e_0m_0j_0g_2t_0b_0Z"


def test_float32_cut_edge():
    """A float32 value just below the cut passes the strict cut |eta| < 2.37.

    float32(2.37) = 2.369999885559082 < 2.37, so the photon must be selected whatever dtype
    the file stores (the selection must not round the cut to the input's precision).
    """
    eta = float(np.float32(2.37))
    assert eta < 2.37
    photons = [obj(50.0, eta, 0.0), obj(50.0, 0.0, math.pi)]
    res, ref = run([{"g": photons}], dtype=np.float32)
    assert ref.events[0].fs == "0e_0m_0j_2g_0t_0b_0Z"
    assert project_fs(res) == "0e_0m_0j_2g_0t_0b_0Z"
    assert set(project_masses(res)) == {"g0g1"}


# -- b-tagging -----------------------------------------------------------------------------------
def test_btag_moves_jet_to_b_and_label_orders():
    event = {
        "e": [obj(50.0, 0.0, 0.0)],
        "j": [
            obj(60.0, 0.5, 1.0, btag=True),
            obj(90.0, -0.5, 2.0, btag=False),
            obj(25.0, 0.0, 3.0, btag=True),  # tagged but fails the jet pT cut: neither j nor b
        ],
        "g": [obj(40.0, 1.0, -1.0)],
    }
    cfg = cfg_with(object_selection={"btagging": {"enabled": True}}, **_min_types(3))
    res, ref = run([event], cfg)
    # category order e, m, j, g, t, b; combination order e, m, j, b, g, t
    assert project_fs(res) == ref.events[0].fs == "1e_0m_1j_1g_0t_1b_0Z"
    got = project_masses(res)
    assert (
        set(got)
        == set(ref.events[0].masses)
        == {
            "e0j0b0",
            "e0j0g0",
            "e0b0g0",
            "j0b0g0",
            "e0j0b0g0",
        }
    )
    assert got == pytest.approx(ref.events[0].masses, rel=1e-12)
    # b0 is the tagged 60 GeV jet, j0 the untagged 90 GeV one
    parts = [reference.four_momentum(o, "j", "stored") for o in event["j"][:2]]
    want_jb = reference.invariant_mass(parts)
    no_photon = cfg_with(object_selection={"btagging": {"enabled": True}}, **_min_types(2))
    res2, _ = run([{"j": event["j"]}], no_photon)
    assert project_masses(res2) == pytest.approx({"j0b0": want_jb}, rel=1e-12)
    # b-tagging off: the tag is ignored, both jets are j
    res3, ref3 = run([{"j": event["j"]}])
    assert project_fs(res3) == ref3.events[0].fs == "0e_0m_2j_0g_0t_0b_0Z"
    assert project_masses(res3) == pytest.approx({"j0j1": want_jb}, rel=1e-12)


def test_btag_count_limit():
    jets = [obj(40.0 + 10 * i, 0.0, i, btag=True) for i in range(3)]
    cfg = cfg_with(object_selection={"btagging": {"enabled": True, "max_count": 2}})
    res, ref = run([{"j": jets}], cfg)
    assert res.cutflow == ref.cutflow
    assert res.cutflow["after_count_limits"] == 0


def _min_types(n: int) -> dict:
    return {"mass_calculation_task_config": {"combinations": {"min_types": n}}}
