"""A slow, obviously-correct reference implementation of the physics of DESIGN §2 and issue 10.

Written from the specification only (not from the vectorised code in ``processor/``), with
plain Python loops over events and objects and the ``math`` module. It exists to be compared
with ``processor.physics.analysis.analyse_objects`` in ``tests/test_reference_comparison.py``.

Input: a list of events; each event is a dict ``type -> list of objects`` for the types
``e, m, j, g, t`` (b-jets come from ``j``, Z candidates from ``e`` and ``m``); each object is a
dict with ``pt``, ``eta``, ``phi`` and either ``energy`` or ``mass`` (GeV), optionally a bool
``pass_quality``, for jets a bool ``btag``, for electrons and muons a ``charge``.

Issue 10 rules implemented here:

* overlap removal (when asked for), in this order, each step using what survived before it:
  tau within dR < 0.2 of an e/mu removed; photon within 0.4 of an e/mu removed; jet within 0.2
  of an electron removed, then electron within 0.4 of a remaining jet removed; the same for
  muons; jet within 0.4 of a photon removed (dR values from the config; 0 skips a step);
* Z candidates: among the remaining electrons and muons, the same-flavour opposite-charge pair
  with the mass closest to m_Z becomes a Z if |m - m_Z| < window; its leptons are taken out and
  the search repeats. Ties: the first pair in the order (electron pairs before muon pairs, pairs
  by pT rank) wins. The Z is a new object type whose four-momentum is the sum of its leptons';
* count limits [min_count, max_count] per final type, Z included;
* charge tag: exactly two electrons/muons left -> "OS" if their charges have opposite signs,
  else "SS"; the tag is part of the final-state label;
* three-lepton pairs: exactly three electrons/muons left -> each of the three pairs gets its
  mass under the label ``<first><second>_<OS|SS>`` (leptons listed electrons then muons).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

#: Combination-label order.
COMBO_ORDER = ("e", "m", "j", "b", "Z", "g", "t")
#: The original's category order.
CATEGORY_ORDER = ("e", "m", "j", "g", "t", "b")
#: Final-state label order.
FS_ORDER = ("e", "m", "j", "g", "t", "b", "Z")
#: PDG masses in GeV used by the "pdg" mass hypothesis.
PDG_MASS = {
    "e": 0.00051099895,
    "m": 0.1056583755,
    "t": 1.77686,
    "g": 0.0,
    "j": 0.0,
    "b": 0.0,
}
_CUT_NAME = {
    "e": "electrons",
    "m": "muons",
    "j": "jets",
    "b": "jets",
    "g": "photons",
    "t": "taus",
}
#: overlap-removal steps: (removed type, reference types, config attribute)
OR_STEPS = (
    ("t", ("e", "m"), "tau_lepton_dr"),
    ("g", ("e", "m"), "photon_lepton_dr"),
    ("j", ("e",), "jet_electron_dr"),
    ("e", ("j",), "electron_jet_dr"),
    ("j", ("m",), "jet_muon_dr"),
    ("m", ("j",), "muon_jet_dr"),
    ("j", ("g",), "jet_photon_dr"),
)


# -- object selection -------------------------------------------------------------------------
def _cuts(selection, obj_type):
    return getattr(selection, _CUT_NAME[obj_type])


def _passes(obj, cuts) -> bool:
    if not obj["pt"] > cuts.pt_min:
        return False
    if not abs(obj["eta"]) < cuts.abs_eta_max:
        return False
    return not ("pass_quality" in obj and not obj["pass_quality"])


def active_types(selection) -> tuple[str, ...]:
    """Final types in combination order; b only with b-tagging, Z only with Z candidates."""
    wanted = set(selection.types)
    if selection.btagging.enabled:
        wanted.add("b")
    if selection.z_candidates.enabled and ("e" in wanted or "m" in wanted):
        wanted.add("Z")
    return tuple(t for t in COMBO_ORDER if t in wanted)


def delta_r(a, b) -> float:
    deta = a["eta"] - b["eta"]
    dphi = a["phi"] - b["phi"]
    while dphi > math.pi:
        dphi -= 2 * math.pi
    while dphi < -math.pi:
        dphi += 2 * math.pi
    return math.sqrt(deta * deta + dphi * dphi)


def overlap_removal(chosen: dict[str, list[dict]], settings) -> dict[str, list[dict]]:
    """The OR sequence on lists of selected objects (every type present takes part)."""
    current = {t: list(objs) for t, objs in chosen.items()}
    for removed, refs, key in OR_STEPS:
        cone = getattr(settings, key)
        if cone <= 0 or removed not in current:
            continue
        reference_objects = [o for r in refs for o in current.get(r, [])]
        kept = []
        for obj in current[removed]:
            if any(delta_r(obj, ref) < cone for ref in reference_objects):
                continue
            kept.append(obj)
        current[removed] = kept
    return current


def select_objects(event, selection, apply_overlap_removal=False) -> dict[str, list[dict]]:
    """Selected objects of every active type (not yet Z-built), each sorted by pT descending."""
    chosen = {}
    for obj_type, objs in event.items():
        cuts = _cuts(selection, obj_type)
        chosen[obj_type] = [o for o in objs if _passes(o, cuts)]
    if apply_overlap_removal:
        chosen = overlap_removal(chosen, selection.overlap_removal)
    selected: dict[str, list[dict]] = {}
    btag_on = selection.btagging.enabled
    for obj_type in active_types(selection):
        if obj_type == "Z":
            continue
        source = "j" if obj_type == "b" else obj_type
        keep = []
        for obj in chosen.get(source, []):
            tagged = bool(obj.get("btag", False))
            if btag_on and obj_type == "j" and tagged:
                continue  # becomes a b-jet
            if obj_type == "b" and not tagged:
                continue
            keep.append(obj)
        # Python's sort is stable: equal pT keeps input order.
        selected[obj_type] = sorted(keep, key=lambda o: -o["pt"])
    return selected


# -- kinematics ----------------------------------------------------------------------------------
def four_momentum(obj, obj_type, hypothesis) -> tuple[float, float, float, float]:
    """(E, px, py, pz) in GeV; Z candidates carry theirs in ``p4``."""
    if obj_type == "Z":
        return obj["p4"]
    pt, eta, phi = float(obj["pt"]), float(obj["eta"]), float(obj["phi"])
    px = pt * math.cos(phi)
    py = pt * math.sin(phi)
    pz = pt * math.sinh(eta)
    p2 = px * px + py * py + pz * pz
    if hypothesis == "pdg":
        m = PDG_MASS[obj_type]
        energy = math.sqrt(p2 + m * m)
    elif hypothesis == "stored":
        if "energy" in obj:
            energy = float(obj["energy"])
        else:
            m = float(obj["mass"])
            energy = math.sqrt(p2 + m * m)
    else:
        raise ValueError(hypothesis)
    return energy, px, py, pz


def invariant_mass(momenta) -> float:
    e = px = py = pz = 0.0
    for ei, xi, yi, zi in momenta:
        e += ei
        px += xi
        py += yi
        pz += zi
    return math.sqrt(max(e * e - (px * px + py * py + pz * pz), 0.0))


# -- Z candidates ---------------------------------------------------------------------------------
def build_z(selected, z_settings, hypothesis) -> dict[str, list[dict]]:
    """Greedy Z building; returns new lists for e, m and Z (pT-ordered)."""
    leptons = {t: list(selected.get(t, [])) for t in ("e", "m") if t in selected}
    zs = []
    while True:
        best = None  # (distance, type, i, j)
        for t in ("e", "m"):
            objs = leptons.get(t, [])
            for i in range(len(objs)):
                for j in range(i + 1, len(objs)):
                    if not objs[i]["charge"] * objs[j]["charge"] < 0:
                        continue
                    pair = [four_momentum(objs[k], t, hypothesis) for k in (i, j)]
                    distance = abs(invariant_mass(pair) - z_settings.mass_gev)
                    if distance >= z_settings.window_gev:
                        continue
                    if best is None or distance < best[0]:
                        best = (distance, t, i, j)
        if best is None:
            break
        _, t, i, j = best
        a, b = leptons[t][i], leptons[t][j]
        pa, pb = four_momentum(a, t, hypothesis), four_momentum(b, t, hypothesis)
        p4 = tuple(x + y for x, y in zip(pa, pb, strict=True))
        zs.append({"p4": p4, "pt": math.hypot(p4[1], p4[2]), "mass": invariant_mass([p4])})
        leptons[t] = [o for k, o in enumerate(leptons[t]) if k not in (i, j)]
    out = dict(selected)
    out.update(leptons)
    out["Z"] = sorted(zs, key=lambda z: -z["pt"])
    return out


# -- final states --------------------------------------------------------------------------------
def min_count(selection, obj_type) -> int:
    if obj_type == "Z":
        return selection.z_candidates.min_count
    if obj_type == "b":
        return selection.btagging.min_count
    return _cuts(selection, obj_type).min_count


def max_count(selection, obj_type) -> int:
    if obj_type == "Z":
        return selection.z_candidates.max_count
    if obj_type == "b":
        return selection.btagging.max_count
    return _cuts(selection, obj_type).max_count


def passes_count_limits(final, selection) -> bool:
    return all(
        min_count(selection, t) <= len(final.get(t, [])) <= max_count(selection, t)
        for t in active_types(selection)
    )


def counts_of(final) -> dict[str, int]:
    return {t: len(final.get(t, [])) for t in FS_ORDER}


def fs_label(counts, tag=None) -> str:
    label = "_".join(f"{counts.get(t, 0)}{t}" for t in FS_ORDER)
    return label + ("_" + tag if tag else "")


def final_state_ok(counts, comb) -> bool:
    present = [n for n in counts.values() if n > 0]
    if not comb.min_types <= len(present) <= comb.max_types:
        return False
    return all(comb.min_count <= n <= comb.max_count for n in present)


def combinations(counts, comb) -> list[tuple[str, list[tuple[str, int]]]]:
    """All allowed combinations of one final state: (label, [(type, pT rank), ...])."""
    present = [t for t in COMBO_ORDER if counts.get(t, 0) > 0]
    result = []
    for k in range(comb.min_types, comb.max_types + 1):
        for subset in itertools.combinations(present, k):
            per_type_choices = []
            for t in subset:
                n = counts[t]
                # leading-only: all objects; include_subleading: any start s (objects s..n-1)
                starts = [0] if comb.mode == "leading_only" else list(range(n))
                choices = [
                    [(t, i) for i in range(s, n)]
                    for s in starts
                    if comb.min_count <= n - s <= comb.max_count
                ]
                per_type_choices.append(choices)
            for parts in itertools.product(*per_type_choices):
                objects = [o for part in parts for o in part]
                if not comb.min_objects <= len(objects) <= comb.max_objects:
                    continue
                label = "".join(f"{t}{i}" for t, i in objects)
                result.append((label, objects))
    return result


def charge_relation(a, b) -> str:
    return "OS" if a["charge"] * b["charge"] < 0 else "SS"


# -- b-tagging (PHYSLITE) -------------------------------------------------------------------------
def physlite_btag(links, pb, pc, pu, fc, cut) -> list[list[bool]]:
    """Per event and jet: follow the link into that event's b-tagging container and test
    ln(pb / (fc pc + (1 - fc) pu)) > cut; a link outside the container is untagged."""
    out = []
    for ev_links, ev_pb, ev_pc, ev_pu in zip(links, pb, pc, pu, strict=True):
        tags = []
        for k in ev_links:
            if not 0 <= k < len(ev_pb):
                tags.append(False)
                continue
            b, c, u = ev_pb[k], ev_pc[k], ev_pu[k]
            denominator = fc * c + (1 - fc) * u
            if b <= 0:
                tags.append(False)
            elif denominator <= 0:
                tags.append(True)
            else:
                tags.append(math.log(b / denominator) > cut)
        out.append(tags)
    return out


# -- whole analysis ------------------------------------------------------------------------------
@dataclass
class EventResult:
    counts: dict[str, int]
    after_count_limits: bool
    valid: bool
    tag: str | None = None
    #: combo label -> mass (only for valid events)
    masses: dict[str, float] = field(default_factory=dict)
    #: combo label -> summed energy, the scale of the rounding error of E^2 - p^2
    energies: dict[str, float] = field(default_factory=dict)
    #: Z candidate masses of the event (GeV), pT order
    z_masses: list[float] = field(default_factory=list)

    @property
    def fs(self) -> str:
        return fs_label(self.counts, self.tag)


@dataclass
class ReferenceResult:
    events: list[EventResult]
    cutflow: dict[str, int]

    def entries(self) -> list[tuple[int, str, str, float]]:
        """(event index, fs label, combo label, mass) for every mass entry."""
        out = []
        for i, ev in enumerate(self.events):
            for combo, mass in ev.masses.items():
                out.append((i, ev.fs, combo, mass))
        return out


def analyse_event(event, selection, comb, hypothesis, apply_overlap_removal=False):
    final = select_objects(event, selection, apply_overlap_removal)
    types = active_types(selection)
    if "Z" in types:
        final = build_z(final, selection.z_candidates, hypothesis)
    counts = counts_of(final)
    leptons = [(t, i, o) for t in ("e", "m") for i, o in enumerate(final.get(t, []))]
    tag = None
    if selection.charge_tags and len(leptons) == 2:
        tag = charge_relation(leptons[0][2], leptons[1][2])
    z_masses = [z["mass"] for z in final.get("Z", [])]
    if not passes_count_limits(final, selection):
        return EventResult(counts, False, False, tag, z_masses=z_masses)
    if not final_state_ok(counts, comb):
        return EventResult(counts, True, False, tag, z_masses=z_masses)
    masses, energies = {}, {}
    for label, objects in combinations(counts, comb):
        momenta = [four_momentum(final[t][i], t, hypothesis) for t, i in objects]
        masses[label] = invariant_mass(momenta)
        energies[label] = sum(p[0] for p in momenta)
    if selection.three_lepton_pairs and len(leptons) == 3:
        for (ta, ia, a), (tb, ib, b) in itertools.combinations(leptons, 2):
            label = f"{ta}{ia}{tb}{ib}_{charge_relation(a, b)}"
            momenta = [four_momentum(a, ta, hypothesis), four_momentum(b, tb, hypothesis)]
            masses[label] = invariant_mass(momenta)
            energies[label] = momenta[0][0] + momenta[1][0]
    return EventResult(counts, True, True, tag, masses, energies, z_masses)


def analyse(
    events, selection, comb, hypothesis="stored", apply_overlap_removal=False
) -> ReferenceResult:
    results = [
        analyse_event(ev, selection, comb, hypothesis, apply_overlap_removal) for ev in events
    ]
    cutflow = {
        "events_read": len(results),
        "after_count_limits": sum(r.after_count_limits for r in results),
        "in_final_state": sum(r.valid for r in results),
        "with_combination": sum(r.valid and bool(r.masses) for r in results),
    }
    return ReferenceResult(results, cutflow)
