"""The vectorised physics (processor.physics.analysis.analyse_objects) against the slow reference.

Random events (seeded numpy, plus a hypothesis fuzz of the combination settings) are run
through both implementations; per-event validity and final-state labels (Z counts and charge
tags included), the cutflow, the multiset of (final state, combination) keys and the masses must
agree, for several configurations: the original's physics (Z, tags, pairs off), the defaults
(Z candidates, charge tags, three-lepton pairs), a wide Z window (competing pairs, two Z per
event), overlap removal on events with injected overlaps, per-type minimum counts and b-jets.
"""

from __future__ import annotations

from collections import Counter

import awkward as ak
import numpy as np
import pytest
import reference  # tests/ is on sys.path (rootdir-relative test modules)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.config import CombinationConfig, Config
from processor.physics.analysis import analyse_objects
from processor.physics.finalstates import code_label, combinations_for, parse_fs_label

TYPES = ("e", "m", "j", "g", "t")
#: default cut values, used to put some objects exactly on a cut boundary
PT_EDGE = {"e": 25.0, "m": 25.0, "j": 30.0, "g": 25.0, "t": 20.0}
ETA_EDGE = {"e": 2.47, "m": 2.5, "j": 4.5, "g": 2.37, "t": 2.5}
#: multiplicity 0..6 per type and event, falling so that many final states are valid
COUNT_P = np.array([0.36, 0.2, 0.14, 0.1, 0.08, 0.06, 0.06])
REL_TOL = 1e-4


# -- random events ---------------------------------------------------------------------------
def make_events(
    rng: np.random.Generator,
    n_events: int,
    fourth: str | dict[str, str] = "energy",
    dtype=np.float64,
    quality_types=("e", "m", "g", "t"),
    btag: bool = True,
    edges: bool = True,
    overlaps: float = 0.0,
):
    """(collections for analyse_objects, the same events as Python dicts for the reference).

    pT falls from 5 GeV (cuts at 20-30 GeV), eta is partly central and partly flat in
    +-5, phi uniform, objects in random (unsorted) pT order; the first object of a type in an
    event sits exactly on the default pT or eta cut now and then (``edges``). ``fourth`` is "energy" or
    "mass" for all types or a dict per type. Electrons and muons carry a charge of +-1.
    ``overlaps``: the probability that an object is moved next to (Delta R < 0.6 of) an
    object of another type of its event, so that overlap removal has work to do.
    """
    collections = {}
    events: list[dict[str, list[dict]]] = [{} for _ in range(n_events)]
    for t in TYPES:
        kind = fourth[t] if isinstance(fourth, dict) else fourth
        counts = rng.choice(len(COUNT_P), size=n_events, p=COUNT_P)
        total = int(counts.sum())
        pt = (
            5.0
            + rng.exponential(45.0, total)
            + rng.exponential(300.0, total) * (rng.random(total) < 0.1)
        )
        eta = np.where(
            rng.random(total) < 0.7, rng.normal(0.0, 1.8, total), rng.uniform(-5, 5, total)
        )
        eta = np.clip(eta, -5.0, 5.0)
        phi = rng.uniform(-np.pi, np.pi, total)
        # object 0 of each event (input order): sometimes exactly on a cut boundary
        first = np.zeros(total, dtype=bool)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        first[starts[counts > 0]] = True
        edge_p = 0.04 if edges else 0.0
        pt = np.where(first & (rng.random(total) < edge_p), PT_EDGE[t], pt)
        on_eta_edge = first & (rng.random(total) < edge_p)
        eta = np.where(on_eta_edge, np.sign(rng.random(total) - 0.5) * ETA_EDGE[t], eta)
        mass = rng.uniform(0.0, 25.0 if t == "j" else 2.0, total) * (rng.random(total) < 0.8)
        fields = {"pt": pt, "eta": eta, "phi": phi}
        if kind == "energy":
            p = pt * np.cosh(eta)
            fields["energy"] = np.sqrt(p * p + mass * mass)
        else:
            fields["mass"] = mass
        fields = {k: np.asarray(v, dtype=dtype) for k, v in fields.items()}
        if t in quality_types:
            fields["pass_quality"] = rng.random(total) < 0.85
        if t == "j" and btag:
            fields["btag"] = rng.random(total) < 0.3
        if t in ("e", "m"):
            fields["charge"] = np.where(rng.random(total) < 0.5, -1.0, 1.0).astype(dtype)
        collections[t] = ak.zip({k: ak.unflatten(v, counts) for k, v in fields.items()})
        # the same numbers as plain Python objects
        columns = {k: v.tolist() for k, v in fields.items()}
        names = list(columns)
        k = 0
        for i, c in enumerate(counts.tolist()):
            objs = []
            for _ in range(c):
                objs.append({name: columns[name][k] for name in names})
                k += 1
            events[i][t] = objs
    if overlaps:
        _inject_overlaps(rng, events, overlaps, dtype)
        collections = _to_collections(events, collections, dtype)
    return collections, events


def _inject_overlaps(rng, events, probability, dtype) -> None:
    """Move some objects next to an object of another type (Delta R uniform in [0, 0.6))."""
    for ev in events:
        others = [(t, o) for t in ev for o in ev[t]]
        for t in ev:
            for obj in ev[t]:
                partners = [o for u, o in others if u != t]
                if not partners or rng.random() >= probability:
                    continue
                target = partners[int(rng.integers(len(partners)))]
                dr, angle = 0.6 * rng.random(), rng.uniform(0, 2 * np.pi)
                eta = target["eta"] + dr * np.cos(angle)
                phi = (target["phi"] + dr * np.sin(angle) + np.pi) % (2 * np.pi) - np.pi
                obj["eta"], obj["phi"] = float(dtype(eta)), float(dtype(phi))
                if "energy" in obj:  # keep the object on its mass shell
                    p = obj["pt"] * np.cosh(obj["eta"])
                    obj["energy"] = float(dtype(max(obj["energy"], p)))


def _to_collections(events, like, dtype):
    """awkward collections holding exactly the numbers of the Python events."""
    out = {}
    for t, rec in like.items():
        counts = np.array([len(ev[t]) for ev in events], dtype=np.int64)
        fields = {}
        for name in rec.fields:
            values = [o[name] for ev in events for o in ev[t]]
            kind = bool if name in ("pass_quality", "btag") else dtype
            fields[name] = ak.unflatten(np.asarray(values, dtype=kind), counts)
        out[t] = ak.zip(fields)
    return out


# -- comparison ----------------------------------------------------------------------------------
def settings_of(cfg: Config):
    mc = cfg.mass_calculation_task_config
    return cfg.object_selection, mc.combinations, mc.mass_hypothesis


def compare(collections, events, sel, comb, hypothesis, overlap=False) -> dict[str, int]:
    """Assert both implementations agree; return how much was compared."""
    n = len(events)
    res = analyse_objects(collections, n, sel, comb, hypothesis, overlap_removal=overlap)
    ref = reference.analyse(events, sel, comb, hypothesis, overlap)

    # per-event validity and final-state labels
    ref_valid = np.array([ev.valid for ev in ref.events], dtype=bool)
    got_valid = np.asarray(res.valid, dtype=bool)
    bad = np.flatnonzero(ref_valid != got_valid)
    assert len(bad) == 0, (
        f"{len(bad)} events differ in validity, e.g. event {bad[0]}: "
        f"reference {ref_valid[bad[0]]} ({ref.events[bad[0]].fs}), got {got_valid[bad[0]]}; "
        f"event = {events[bad[0]]}"
    )
    for i in np.flatnonzero(ref_valid):
        got = code_label(int(res.fs_code[i]))
        assert got == ref.events[i].fs, f"event {i}: fs {got} != {ref.events[i].fs}"

    # cutflow
    assert res.cutflow == ref.cutflow

    # mass entries, paired by (event, fs, combo)
    keys = res.keys()
    got_entries: dict[tuple[int, str, str], float] = {}
    for ev, key, mass in zip(
        res.entries.event.tolist(), keys, res.entries.mass.tolist(), strict=True
    ):
        k = (int(ev), *key)
        assert k not in got_entries, f"duplicate entry {k}"
        got_entries[k] = mass
    ref_entries = {(i, fs, combo): m for i, fs, combo, m in ref.entries()}
    assert Counter(keys) == Counter((fs, combo) for _, fs, combo in ref_entries)
    missing = sorted(set(ref_entries) - set(got_entries))[:5]
    extra = sorted(set(got_entries) - set(ref_entries))[:5]
    assert not missing and not extra, f"missing {missing}, extra {extra}"
    # 1e-4 relative; where E^2 - p^2 cancels (m << E, e.g. one light object) both sides carry
    # a float64 rounding error ~1e-16 E^2 in m^2, so there |m^2 - m_ref^2| <= 1e-12 E^2 is used.
    energy = {(i, ev.fs, c): e for i, ev in enumerate(ref.events) for c, e in ev.energies.items()}
    n_ill_conditioned = 0
    for k, m_ref in ref_entries.items():
        m_got = got_entries[k]
        if abs(m_got - m_ref) <= REL_TOL * abs(m_ref):
            continue
        ok = abs(m_got**2 - m_ref**2) <= 1e-12 * energy[k] ** 2
        assert ok, f"mass of {k}: got {m_got}, reference {m_ref}; event = {events[k[0]]}"
        n_ill_conditioned += 1

    # the combination list of every final state seen
    types = sel.active_types()
    for fs in {ev.fs for ev in ref.events if ev.valid}:
        counts, _ = parse_fs_label(fs)
        want = sorted(label for label, _ in reference.combinations(counts, comb))
        assert sorted(combinations_for(counts, types, comb)) == want, fs

    valid_events = [ev for ev in ref.events if ev.valid]
    return {
        "events": n,
        "valid": int(ref_valid.sum()),
        "entries": len(ref_entries),
        "final_states": len({ev.fs for ev in valid_events}),
        "ill_conditioned": n_ill_conditioned,
        "z_events": sum(ev.counts["Z"] > 0 for ev in valid_events),
        "two_z_events": sum(ev.counts["Z"] >= 2 for ev in valid_events),
        "tagged": Counter(ev.tag for ev in valid_events if ev.tag),
        "pair_entries": sum(k[2].endswith(("_OS", "_SS")) for k in ref_entries),
    }


def _cfg(**mass_calc) -> dict:
    return {"mass_calculation_task_config": mass_calc}


#: the original's physics: no Z candidates, no charge tags, no three-lepton pairs
SEED_PHYSICS = {
    "z_candidates": {"enabled": False},
    "charge_tags": False,
    "three_lepton_pairs": False,
}

# name, config overrides, make_events options, minimum expected entries
CASES = {
    "defaults": ({}, {}, 3000),
    "seed_physics": ({"object_selection": SEED_PHYSICS}, {}, 3000),
    "original_2to4_types": (_cfg(combinations={"min_types": 2}), {}, 1500),
    "include_subleading": (_cfg(combinations={"mode": "include_subleading"}), {}, 5000),
    "btagging": ({"object_selection": {"btagging": {"enabled": True}}}, {}, 3000),
    "pdg_hypothesis_btag": (
        {
            "object_selection": {"btagging": {"enabled": True}},
            "mass_calculation_task_config": {"mass_hypothesis": "pdg"},
        },
        {},
        3000,
    ),
    "stored_mass": ({}, {"fourth": "mass"}, 3000),
    "mixed_energy_and_mass_float32": (
        _cfg(combinations={"mode": "include_subleading"}),
        {
            "fourth": {"e": "mass", "m": "energy", "j": "mass", "g": "energy", "t": "mass"},
            "dtype": np.float32,
            # float32(2.37) < 2.37: see test_physics_units.py::test_float32_cut_edge
            "edges": False,
        },
        5000,
    ),
    "tight_max3_mincount2": (_cfg(combinations={"max_objects": 3, "min_count": 2}), {}, 500),
    "custom_types_cuts_limits": (
        {
            "object_selection": {
                "types": ["g", "e", "j"],
                "electrons": {"pt_min": 40.0, "abs_eta_max": 2.0, "max_count": 2},
                "jets": {"pt_min": 20.0, "abs_eta_max": 2.5, "max_count": 3},
                "photons": {"max_count": 1},
                "btagging": {"enabled": True, "max_count": 2},
            },
            "mass_calculation_task_config": {
                "combinations": {
                    "mode": "include_subleading",
                    "min_types": 2,
                    "max_types": 3,
                    "min_objects": 3,
                    "max_objects": 5,
                    "max_count": 3,
                }
            },
        },
        {"quality_types": ("e", "j", "g")},
        700,
    ),
    "no_quality_no_btag_field": ({}, {"quality_types": (), "btag": False}, 3000),
    "z_wide_window_two_z": (
        {"object_selection": {"z_candidates": {"window_gev": 60.0}}},
        {},
        3000,
    ),
    "min_counts_and_z_limits": (
        {
            "object_selection": {
                "electrons": {"min_count": 1},
                "jets": {"min_count": 1, "max_count": 3},
                "z_candidates": {"window_gev": 40.0, "max_count": 1},
            }
        },
        {},
        300,
    ),
    "tags_without_z_pdg": (
        {
            "object_selection": {"z_candidates": {"enabled": False}},
            "mass_calculation_task_config": {"mass_hypothesis": "pdg"},
        },
        {},
        3000,
    ),
}

# name, config overrides, make_events options, minimum expected entries: overlap removal on
OR_CASES = {
    "overlap_removal_defaults": ({}, {"overlaps": 0.3}, 2000),
    "overlap_removal_custom_dr_btag_subset": (
        {
            "object_selection": {
                "types": ["e", "j", "t"],
                "btagging": {"enabled": True},
                "overlap_removal": {
                    "tau_lepton_dr": 0.3,
                    "jet_electron_dr": 0.35,
                    "electron_jet_dr": 0.25,
                    "photon_lepton_dr": 0.0,
                },
            }
        },
        {"overlaps": 0.4},
        1000,
    ),
    "overlap_removal_seed_physics": (
        {"object_selection": SEED_PHYSICS},
        {"overlaps": 0.3, "fourth": "mass"},
        2000,
    ),
}

N_EVENTS = 3000


@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference(name):
    overrides, gen, min_entries = CASES[name]
    cfg = Config.model_validate(overrides)
    seed = sum(map(ord, name))
    collections, events = make_events(np.random.default_rng(seed), N_EVENTS, **gen)
    stats = compare(collections, events, *settings_of(cfg))
    print(f"{name}: {stats}")
    assert stats["entries"] >= min_entries, stats
    # the sample must exercise the count limits and the final-state rules
    assert 0 < stats["valid"] < stats["events"]
    sel = cfg.object_selection
    # what each configuration must exercise (minimum counts in the valid events) ...
    for stat, minimum in EXPECT.get(name, {}).items():
        got = stats["tagged"].get(stat, 0) if stat in ("OS", "SS") else stats[stat]
        assert got >= minimum, (stat, stats)
    # ... and what a switched-off feature must never produce
    if not sel.z_candidates.enabled:
        assert stats["z_events"] == 0, stats
    if not sel.charge_tags:
        assert not stats["tagged"], stats
    if not sel.three_lepton_pairs:
        assert stats["pair_entries"] == 0, stats


#: minimum counts per case: Z events, two-Z events, OS/SS-tagged events, three-lepton pairs
EXPECT = {
    "defaults": {"z_events": 50, "OS": 100, "SS": 100, "pair_entries": 500},
    "btagging": {"z_events": 50, "OS": 100, "SS": 100, "pair_entries": 500},
    "z_wide_window_two_z": {"z_events": 300, "two_z_events": 20, "OS": 100, "pair_entries": 100},
    "min_counts_and_z_limits": {"z_events": 30, "OS": 20, "SS": 20, "pair_entries": 30},
    "tags_without_z_pdg": {"OS": 100, "SS": 100, "pair_entries": 500},
    "mixed_energy_and_mass_float32": {"z_events": 50, "pair_entries": 500},
}


@pytest.mark.parametrize("name", list(OR_CASES))
def test_matches_reference_with_overlap_removal(name):
    overrides, gen, min_entries = OR_CASES[name]
    cfg = Config.model_validate(overrides)
    seed = sum(map(ord, name))
    collections, events = make_events(np.random.default_rng(seed), N_EVENTS, **gen)
    stats = compare(collections, events, *settings_of(cfg), overlap=True)
    print(f"{name}: {stats}")
    assert stats["entries"] >= min_entries, stats
    # the injected overlaps really change the result
    off = analyse_objects(collections, N_EVENTS, *settings_of(cfg)[:2])
    on = analyse_objects(collections, N_EVENTS, *settings_of(cfg)[:2], overlap_removal=True)
    changed = np.asarray(off.fs_code != on.fs_code) & np.asarray(off.valid | on.valid)
    assert changed.sum() >= 200, changed.sum()


def test_count_limits_and_boundaries_are_exercised():
    """The random sample really has events over the count limits and objects on the cuts."""
    collections, events = make_events(np.random.default_rng(1), N_EVENTS)
    cfg = Config()
    ref = reference.analyse(events, *settings_of(cfg)[:2])
    dropped = ref.cutflow["events_read"] - ref.cutflow["after_count_limits"]
    assert dropped > 50
    on_pt_edge = sum(o["pt"] == PT_EDGE[t] for ev in events for t in ev for o in ev[t])
    on_eta_edge = sum(abs(o["eta"]) == ETA_EDGE[t] for ev in events for t in ev for o in ev[t])
    assert on_pt_edge > 50 and on_eta_edge > 50


# -- hypothesis fuzz of the combination settings ----------------------------------------------------
@st.composite
def combination_configs(draw):
    min_types = draw(st.integers(1, 4))
    max_types = draw(st.integers(min_types, 5))
    min_count = draw(st.integers(1, 3))
    max_count = draw(st.integers(min_count, 4))
    min_objects = draw(st.integers(1, 5))
    max_objects = draw(st.integers(min_objects, 8))
    mode = draw(st.sampled_from(["leading_only", "include_subleading"]))
    return CombinationConfig(
        min_types=min_types,
        max_types=max_types,
        min_count=min_count,
        max_count=max_count,
        min_objects=min_objects,
        max_objects=max_objects,
        mode=mode,
    )


# derandomized (the same examples every run) and without a database: a fixed, fast check
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    comb=combination_configs(),
    btag=st.booleans(),
    hypothesis=st.sampled_from(["stored", "pdg"]),
    types=st.lists(st.sampled_from(TYPES), min_size=1, max_size=5, unique=True),
    seed=st.integers(0, 2**32 - 1),
    z=st.booleans(),
    tags=st.booleans(),
    pairs=st.booleans(),
    overlap=st.booleans(),
)
def test_fuzz_combination_settings(comb, btag, hypothesis, types, seed, z, tags, pairs, overlap):
    cfg = Config.model_validate(
        {
            "object_selection": {
                "types": types,
                "btagging": {"enabled": btag},
                "z_candidates": {"enabled": z, "window_gev": 30.0},
                "charge_tags": tags,
                "three_lepton_pairs": pairs,
            }
        }
    )
    collections, events = make_events(
        np.random.default_rng(seed), 200, overlaps=0.3 if overlap else 0.0
    )
    compare(collections, events, cfg.object_selection, comb, hypothesis, overlap)
