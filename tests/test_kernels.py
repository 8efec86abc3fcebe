"""The compiled flat physics (processor.physics.kernels via selection, zcandidates, masses,
analysis) against the vectorised awkward implementation it replaced (tests/awkward_physics.py):
same objects, same masses bit for bit, same entry order, on random jagged inputs."""

from __future__ import annotations

import awkward as ak
import awkward_physics as old
import numpy as np
import pytest
import vector
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from processor.config import CombinationConfig, validate_config
from processor.physics import kernels
from processor.physics.analysis import (
    analyse_objects,
    charge_tags,
    three_lepton_pair_masses,
)
from processor.physics.finalstates import final_state_mask, patterns
from processor.physics.flat import Flat, flat_of
from processor.physics.masses import (
    COMPONENTS,
    PDG_MASS_GEV,
    combination_masses,
    flat_four_momenta,
    four_momenta,
    suffix_sums,
)
from processor.physics.selection import count_limit_mask, object_counts, select_objects
from processor.physics.zcandidates import build_z_candidates

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _bits_equal(a, b) -> bool:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return np.array_equal(a.view(np.int64), b.view(np.int64))
    return np.array_equal(a, b)


def _same_records(a: ak.Array, b: ak.Array) -> None:
    assert a.fields == b.fields
    assert np.array_equal(ak.num(a, axis=1), ak.num(b, axis=1))
    for f in a.fields:
        x = ak.to_numpy(ak.flatten(a[f], axis=1))
        y = ak.to_numpy(ak.flatten(b[f], axis=1))
        assert _bits_equal(x, y), f


def _same_entries(a, b) -> None:
    for field in ("event", "pattern", "mass"):
        assert _bits_equal(getattr(a, field), getattr(b, field)), field


def _jagged(rng, n_events, max_count, ties, *, mass=False, lepton=False, jet=False):
    counts = rng.integers(0, max_count + 1, n_events)
    n = int(counts.sum())
    pt = rng.exponential(40.0, n) + rng.choice([0.0, 5.0], n)
    if ties:  # many equal pT values: the sort must be stable
        pt = rng.choice([8.0, 25.0, 25.0, 47.5, 60.0], n)
    fields = {
        "pt": pt,
        "eta": rng.uniform(-3.0, 3.0, n),
        "phi": rng.uniform(-np.pi, np.pi, n),
    }
    if mass:
        fields["mass"] = rng.normal(2.0, 5.0, n)  # also negative (calibration) masses
    else:
        fields["energy"] = pt * np.cosh(fields["eta"]) * rng.uniform(1.0, 1.2, n)
    fields["pass_quality"] = rng.random(n) < 0.85
    if lepton:
        fields["charge"] = rng.choice([-1.0, 1.0], n)
    if jet:
        fields["btag"] = rng.random(n) < 0.3
    return ak.unflatten(ak.zip(fields), counts)


def _collections(seed, n_events, max_count, ties, mass=False):
    rng = np.random.default_rng(seed)
    return {
        "e": _jagged(rng, n_events, max_count, ties, mass=mass, lepton=True),
        "m": _jagged(rng, n_events, max_count, ties, mass=mass, lepton=True),
        "j": _jagged(rng, n_events, max_count, ties, mass=mass, jet=True),
        "g": _jagged(rng, n_events, max_count, ties, mass=mass),
        "t": _jagged(rng, n_events, max_count, ties, mass=mass),
    }


def _selection(btag: bool, z: bool = True, three: bool = True, **cuts):
    sel = {
        "btagging": {"enabled": btag},
        "z_candidates": {"enabled": z, "window_gev": 60.0},
        "three_lepton_pairs": three,
    }
    sel.update(cuts)
    return validate_config({"object_selection": sel}).object_selection


CASES = dict(
    seed=st.integers(0, 2**32 - 1),
    n_events=st.integers(0, 60),
    max_count=st.integers(0, 8),
    ties=st.booleans(),
)


@SETTINGS
@given(**CASES, mass=st.booleans(), hypothesis=st.sampled_from(["stored", "pdg"]))
def test_four_momenta_bits_match_vector(seed, n_events, max_count, ties, mass, hypothesis):
    cols = _collections(seed, n_events, max_count, ties, mass)
    for t, rec in cols.items():
        new = four_momenta(rec, t, hypothesis)
        ref = old.four_momenta(rec, t, hypothesis)
        via_vector = _vector_components(rec, t, hypothesis)
        for c in COMPONENTS:
            x = ak.to_numpy(ak.flatten(new[c], axis=1))
            assert _bits_equal(x, ak.to_numpy(ak.flatten(ref[c], axis=1))), (t, c)
            _assert_vector_equal(x, ak.to_numpy(ak.flatten(via_vector[c], axis=1)))


def _vector_components(rec: ak.Array, t: str, hypothesis: str) -> dict[str, ak.Array]:
    """px, py, pz, E from vector itself (what the code before the kernels used)."""
    as64 = {f: ak.values_astype(rec[f], np.float64) for f in rec.fields}
    if hypothesis == "pdg":
        fourth = {"mass": ak.ones_like(as64["pt"]) * PDG_MASS_GEV[t]}
    elif "energy" in as64:
        fourth = {"energy": as64["energy"]}
    else:
        fourth = {"mass": abs(as64["mass"])}
    p4 = vector.zip({"pt": as64["pt"], "eta": as64["eta"], "phi": as64["phi"], **fourth})
    return {"px": p4.px, "py": p4.py, "pz": p4.pz, "E": p4.E}


def _assert_vector_equal(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Bit for bit with vector >= 1.6 (whose formulas the flat code writes out); older vector
    (1.5, the lowest allowed) computes E by another route, equal within 4 ulp."""
    if Version(vector.__version__) >= Version("1.6"):
        assert _bits_equal(ours, theirs)
    else:
        np.testing.assert_array_max_ulp(ours, theirs, maxulp=4)


def test_four_momenta_special_values_match_vector():
    """Zero and negative masses, eta 0 and large |eta|, zero pT: vector's own formulas."""
    pt = np.array([0.0, 1e-3, 30.0, 30.0, 30.0, 1e4, 55.5])
    eta = np.array([0.0, 4.9, -4.9, 0.0, 1e-9, 2.5, -0.3])
    phi = np.array([0.0, np.pi, -np.pi, 1.0, -2.0, 3.0, 0.5])
    mass = np.array([0.0, -0.0, -3.0, 125.0, -1e-6, 0.0, 80.4])
    rec = ak.unflatten(ak.zip({"pt": pt, "eta": eta, "phi": phi, "mass": mass}), [3, 0, 4])
    for hyp in ("stored", "pdg"):
        new = flat_four_momenta({"pt": pt, "eta": eta, "phi": phi, "mass": mass}, "m", hyp)
        ref = old.four_momenta(rec, "m", hyp)
        for c in COMPONENTS:
            assert _bits_equal(new[c], ak.to_numpy(ak.flatten(ref[c])))
    p4 = vector.array({"pt": pt, "eta": eta, "phi": phi, "mass": np.abs(mass)})
    new = flat_four_momenta({"pt": pt, "eta": eta, "phi": phi, "mass": mass}, "m", "stored")
    _assert_vector_equal(new["E"], p4.E)
    _assert_vector_equal(new["pz"], p4.pz)


@SETTINGS
@given(**CASES, btag=st.booleans())
def test_select_objects_matches_awkward_argsort(seed, n_events, max_count, ties, btag):
    cols = _collections(seed, n_events, max_count, ties)
    sel = _selection(btag, electrons={"pt_min": 10.0, "abs_eta_max": 2.47})
    new = select_objects(cols, sel)
    ref = old.select_objects(cols, sel)
    assert list(new) == list(ref)
    for t in ref:
        _same_records(new[t], ref[t])


def test_select_sort_is_stable_descending():
    offsets = np.array([0, 5, 5, 8], np.int64)
    pt = np.array([3.0, 9.0, 3.0, 9.0, 1.0, 2.0, 2.0, 7.0])
    keep = np.array([True, True, True, True, False, True, True, True])
    order, counts = kernels.select_sort(offsets, pt, keep)
    assert order.tolist() == [1, 3, 0, 2, 7, 5, 6]
    assert counts.tolist() == [4, 0, 3]
    order, counts = kernels.select_sort(np.zeros(1, np.int64), np.zeros(0), np.zeros(0, bool))
    assert len(order) == 0 and len(counts) == 0


@SETTINGS
@given(**CASES, hypothesis=st.sampled_from(["stored", "pdg"]), only=st.sampled_from(["e", "m", ""]))
def test_z_candidates_match_vectorised(seed, n_events, max_count, ties, hypothesis, only):
    cols = _collections(seed, n_events, max_count, ties)
    sel = _selection(False)
    objects = old.select_objects(cols, sel)
    if only:
        objects = {t: r for t, r in objects.items() if t != only}
    new = build_z_candidates(objects, sel.z_candidates, hypothesis)
    ref = old.build_z_candidates(objects, sel.z_candidates, hypothesis)
    assert list(new) == list(ref)
    for t in ref:
        _same_records(new[t], ref[t])


def test_z_candidates_ties_prefer_electrons_then_lower_pair_index():
    """Two electron and two muon pairs at the same distance from m_Z: electrons first."""
    e = ak.Array(
        [
            [{"pt": 45.0, "eta": 0.0, "phi": 0.0, "energy": 45.0, "charge": 1.0}] * 2
            + [{"pt": 45.0, "eta": 0.0, "phi": np.pi, "energy": 45.0, "charge": -1.0}] * 2
        ]
    )
    m = ak.Array(
        [
            [
                {"pt": 45.0, "eta": 0.0, "phi": 0.0, "energy": 45.0, "charge": 1.0},
                {"pt": 45.0, "eta": 0.0, "phi": np.pi, "energy": 45.0, "charge": -1.0},
            ]
        ]
    )
    cfg = _selection(False).z_candidates
    new = build_z_candidates({"e": e, "m": m}, cfg)
    ref = old.build_z_candidates({"e": e, "m": m}, cfg)
    for t in ref:
        _same_records(new[t], ref[t])
    assert ak.to_list(new["Z"].flavour) == [[11, 11, 13]]


COMBOS = [
    CombinationConfig(),
    CombinationConfig(mode="include_subleading"),
    CombinationConfig(min_types=1, max_types=6, min_objects=1, max_objects=8, max_count=8),
    CombinationConfig(
        mode="include_subleading", max_types=6, min_objects=1, max_objects=8, max_count=8
    ),
]


@SETTINGS
@given(
    **CASES,
    combo=st.sampled_from(range(len(COMBOS))),
    btag=st.booleans(),
    hypothesis=st.sampled_from(["stored", "pdg"]),
)
def test_combination_masses_match_suffix_sums(
    seed, n_events, max_count, ties, combo, btag, hypothesis
):
    comb = COMBOS[combo]
    cols = _collections(seed, n_events, max_count, ties)
    sel = _selection(btag)
    objects = old.build_z_candidates(old.select_objects(cols, sel), sel.z_candidates)
    types = sel.active_types()
    counts = object_counts(objects, types, n_events)
    valid = count_limit_mask(counts, sel) & final_state_mask(counts, comb)
    pats = patterns(types, comb)
    new = combination_masses(objects, counts, valid, pats, comb.mode, hypothesis)
    ref = old.combination_masses(objects, counts, valid, pats, comb.mode, hypothesis)
    _same_entries(new, ref)
    # also on every event (valid or not) with at most 8 objects of each type
    every = np.all([c <= 8 for c in counts.values()], axis=0)
    new = combination_masses(objects, counts, every, pats, comb.mode, hypothesis)
    ref = old.combination_masses(objects, counts, every, pats, comb.mode, hypothesis)
    _same_entries(new, ref)


@SETTINGS
@given(**CASES, hypothesis=st.sampled_from(["stored", "pdg"]))
def test_three_lepton_pairs_and_charge_tags_match(seed, n_events, max_count, ties, hypothesis):
    cols = _collections(seed, n_events, max_count, ties)
    sel = _selection(False)
    for z in (False, True):
        objects = old.select_objects(cols, sel)
        if z:
            objects = old.build_z_candidates(objects, sel.z_candidates)
        types = sel.active_types()
        counts = object_counts(objects, types, n_events)
        valid = np.ones(n_events, dtype=bool)
        for offset in (0, 17):
            new = three_lepton_pair_masses(objects, counts, valid, hypothesis, offset)
            ref = old.three_lepton_pair_masses(objects, counts, valid, hypothesis, offset)
            _same_entries(new, ref)
        assert _bits_equal(charge_tags(objects, n_events), old.charge_tags(objects, n_events))
        only_m = {"m": objects["m"]}
        assert _bits_equal(charge_tags(only_m, n_events), old.charge_tags(only_m, n_events))
        assert _bits_equal(charge_tags({}, n_events), old.charge_tags({}, n_events))


def _old_analysis(cols, n_events, sel, comb, hypothesis):
    """The old analyse_objects pipeline from the reference functions (no overlap removal)."""
    objects = old.select_objects(cols, sel)
    types = sel.active_types()
    if "Z" in types:
        objects = old.build_z_candidates(objects, sel.z_candidates, hypothesis)
    counts = object_counts(objects, types, n_events)
    valid = count_limit_mask(counts, sel) & final_state_mask(counts, comb)
    pats = patterns(types, comb)
    entries = old.combination_masses(objects, counts, valid, pats, comb.mode, hypothesis)
    tags = old.charge_tags(objects, n_events) if sel.charge_tags else None
    if sel.three_lepton_pairs:
        pairs = old.three_lepton_pair_masses(objects, counts, valid, hypothesis, len(pats))
        entries = type(entries)(
            np.concatenate([entries.event, pairs.event]),
            np.concatenate([entries.pattern, pairs.pattern]).astype(np.int32),
            np.concatenate([entries.mass, pairs.mass]),
        )
    return valid, tags, entries


@SETTINGS
@given(**CASES, combo=st.sampled_from(range(len(COMBOS))), btag=st.booleans(), z=st.booleans())
def test_analyse_objects_matches_vectorised(seed, n_events, max_count, ties, combo, btag, z):
    comb = COMBOS[combo]
    cols = _collections(seed, n_events, max_count, ties, mass=bool(seed % 2))
    sel = _selection(btag, z=z)
    for hypothesis in ("stored", "pdg"):
        got = analyse_objects(cols, n_events, sel, comb, hypothesis)
        valid, _tags, entries = _old_analysis(cols, n_events, sel, comb, hypothesis)
        assert _bits_equal(got.valid, valid)
        _same_entries(got.entries, entries)


def test_empty_chunk_and_events_without_objects():
    sel = _selection(True)
    comb = CombinationConfig(mode="include_subleading")
    for n_events, max_count in ((0, 3), (5, 0)):
        cols = _collections(1, n_events, max_count, False)
        got = analyse_objects(cols, n_events, sel, comb)
        assert got.cutflow["events_read"] == n_events
        assert len(got.entries.mass) == 0
        assert got.entries.event.dtype == np.int64 and got.entries.pattern.dtype == np.int32
        for t, rec in select_objects(cols, sel).items():
            assert len(rec) == n_events and ak.sum(ak.num(rec, axis=1)) == 0, t


def test_max_count_events():
    """Events with 8 objects of every type (the config limit), every combination."""
    rng = np.random.default_rng(5)
    n = 20
    cols = {
        t: ak.unflatten(
            ak.zip(
                {
                    "pt": rng.uniform(30, 300, 8 * n),
                    "eta": rng.uniform(-2, 2, 8 * n),
                    "phi": rng.uniform(-3, 3, 8 * n),
                    "energy": rng.uniform(300, 900, 8 * n),
                    "charge": rng.choice([-1.0, 1.0], 8 * n),
                    "btag": rng.random(8 * n) < 0.5,
                }
            ),
            np.full(n, 8),
        )
        for t in ("e", "m", "j", "g", "t")
    }
    comb = CombinationConfig(
        mode="include_subleading", max_types=6, min_objects=1, max_objects=8, max_count=8
    )
    sel = validate_config(
        {
            "object_selection": {
                t: {"max_count": 8, "pt_min": 0.0}
                for t in ("electrons", "muons", "jets", "photons", "taus")
            }
            | {"btagging": {"enabled": True, "max_count": 8}, "z_candidates": {"enabled": False}}
        }
    ).object_selection
    got = analyse_objects(cols, n, sel, comb)
    valid, _tags, entries = _old_analysis(cols, n, sel, comb, "stored")
    assert valid.sum() > 0 and len(entries.mass) > 1000
    _same_entries(got.entries, entries)


def test_counts_above_the_code_width_are_refused():
    idx = np.array([0], np.int64)
    n_sel = np.array([[16]], np.int64)
    with pytest.raises(ValueError, match="above 15"):
        kernels.combination_masses(
            idx,
            n_sel,
            np.zeros((1, 1), np.int64),
            *(np.zeros(16) for _ in range(4)),
            np.zeros((1, 1), np.int64),
            np.ones((1, 1), np.int64),
            np.ones(1, np.int64),
            True,
        )


def test_suffix_sums_match_the_padded_table():
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 6, 50)
    x = rng.normal(0, 100, counts.sum())
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat = kernels.suffix_sums(offsets, x)
    table = suffix_sums(ak.unflatten(x, counts), int(counts.max()))
    rows = np.repeat(np.arange(len(counts)), counts)
    local = np.arange(len(x)) - np.repeat(offsets[:-1], counts)
    assert _bits_equal(flat, table[rows, local])


def test_flat_round_trip_of_masked_records():
    """Records after a jagged mask (not packed) unpack to the same values and back."""
    rec = ak.zip(
        {"pt": ak.Array([[3.0, 1.0], [], [2.0, 5.0, 4.0]]), "q": ak.Array([[1, 2], [], [3, 4, 5]])}
    )
    masked = rec[rec.pt > 1.5]
    flat = flat_of(masked)
    assert isinstance(flat, Flat)
    assert flat.offsets.tolist() == [0, 1, 1, 4]
    assert flat["pt"].tolist() == [3.0, 2.0, 5.0, 4.0]
    assert ak.to_list(flat.to_awkward()) == ak.to_list(masked)
    assert ak.to_list(flat.compress(flat["q"] != 4).to_awkward()) == [
        [{"pt": 3.0, "q": 1}],
        [],
        [{"pt": 2.0, "q": 3}, {"pt": 4.0, "q": 5}],
    ]


@pytest.mark.parametrize("fmt_name", ["2025e", "2020e", "2016e", "physlite"])
def test_flat_reader_matches_the_record_reader(tmp_path, fmt_name):
    """read_flat_collections (the processor's reader) = read_collections unpacked, for every
    format, with quality working points, charges and b-tagging."""
    import uproot

    from processor.opendata.formats import FORMATS, read_collections, read_flat_collections
    from processor.physics.selection import types_to_read
    from processor.synthetic import write_sample
    from processor.synthetic.meta import TREE_NAMES

    path = write_sample(tmp_path / "s.root", fmt_name, 300, seed=4)
    with uproot.open(path) as f:
        arrays = f[TREE_NAMES[fmt_name]].arrays()
    fmt = FORMATS[fmt_name]
    for overrides in (
        {},
        {"btagging": {"enabled": True}, "electrons": {"id": "tight", "iso": None}},
        {"muons": {"rel_isolation_max": 0.2}, "types": ["e", "m", "j"]},
    ):
        sel = validate_config({"object_selection": overrides}).object_selection
        kwargs = dict(btag_cfg=sel.btagging, charge=sel.needs_charge())
        types = types_to_read(sel, fmt_name == "physlite")
        try:
            ref = read_collections(arrays.__getitem__, fmt, types, sel.cuts, **kwargs)
        except Exception as exc:  # an option this format lacks: both readers refuse it
            with pytest.raises(type(exc)):
                read_flat_collections(arrays.__getitem__, fmt, types, sel.cuts, **kwargs)
            continue
        got = read_flat_collections(arrays.__getitem__, fmt, types, sel.cuts, **kwargs)
        assert list(got) == list(ref)
        for t in ref:
            want = flat_of(ref[t])
            assert np.array_equal(got[t].offsets, want.offsets), t
            assert list(got[t].fields) == list(want.fields), t
            for f in want.fields:
                assert _bits_equal(got[t][f], want[f]), (t, f)
        n = len(arrays)
        for hyp in ("stored", "pdg"):
            over = fmt_name == "physlite"
            a = analyse_objects(got, n, sel, CombinationConfig(), hyp, overlap_removal=over)
            b = analyse_objects(ref, n, sel, CombinationConfig(), hyp, overlap_removal=over)
            _same_entries(a.entries, b.entries)


def test_kernels_compile_without_a_writable_cache(monkeypatch):
    """No cache location (read-only install, no writable home): compiled per process instead."""
    real = kernels.njit

    def no_cache(**options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")
        return real(**options)

    monkeypatch.setattr(kernels, "njit", no_cache)

    def plus_one(x):
        return x + 1

    assert kernels._kernel(plus_one)(1) == 2


def test_native_inputs():
    """Read-only, strided or byte-swapped arrays become the one compiled array type."""
    ro = np.frombuffer(np.arange(4.0).tobytes(), dtype=np.float64)
    for a in (ro, np.arange(8.0)[::2], np.arange(4.0).astype(">f8")):
        out = kernels.native(a, np.float64)
        assert out.flags.writeable and out.flags.c_contiguous and out.dtype.isnative
        assert np.array_equal(out, np.asarray(a, dtype=np.float64))
    fresh = np.arange(3.0)
    assert kernels.native(fresh, np.float64) is fresh
