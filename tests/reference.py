"""A slow, obviously-correct reference implementation of the physics of DESIGN §2.

Written from the specification only (not from the vectorised code in ``processor/``), with
plain Python loops over events and objects and the ``math`` module. It exists to be compared
with ``processor.analysis.analyse_objects`` in ``tests/test_reference_comparison.py``.

Input: a list of events; each event is a dict ``type -> list of objects`` for the types
``e, m, j, g, t`` (b-jets come from ``j``); each object is a dict with ``pt``, ``eta``, ``phi``
and either ``energy`` or ``mass`` (GeV), optionally a bool ``pass_quality`` and, for jets, a
bool ``btag``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

#: Combination-label order.
COMBO_ORDER = ("e", "m", "j", "b", "g", "t")
#: Category (final-state label) order.
CATEGORY_ORDER = ("e", "m", "j", "g", "t", "b")
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
    """Types in combination order; b only when b-tagging is on."""
    wanted = set(selection.types)
    if selection.btagging.enabled:
        wanted.add("b")
    return tuple(t for t in COMBO_ORDER if t in wanted)


def select_objects(event, selection) -> dict[str, list[dict]]:
    """Selected objects of every active type, each list sorted by pT descending."""
    selected: dict[str, list[dict]] = {}
    btag_on = selection.btagging.enabled
    for obj_type in active_types(selection):
        source = "j" if obj_type == "b" else obj_type
        cuts = _cuts(selection, obj_type)
        chosen = []
        for obj in event.get(source, []):
            if not _passes(obj, cuts):
                continue
            tagged = bool(obj.get("btag", False))
            if btag_on and obj_type == "j" and tagged:
                continue  # becomes a b-jet
            if obj_type == "b" and not tagged:
                continue
            chosen.append(obj)
        # Python's sort is stable: equal pT keeps input order.
        selected[obj_type] = sorted(chosen, key=lambda o: -o["pt"])
    return selected


def max_count(selection, obj_type) -> int:
    if obj_type == "b":
        return selection.btagging.max_count
    return _cuts(selection, obj_type).max_count


def passes_count_limits(selected, selection) -> bool:
    return all(len(objs) <= max_count(selection, t) for t, objs in selected.items())


# -- final states --------------------------------------------------------------------------------
def counts_of(selected) -> dict[str, int]:
    return {t: len(selected.get(t, [])) for t in CATEGORY_ORDER}


def fs_label(counts) -> str:
    return "_".join(f"{counts.get(t, 0)}{t}" for t in CATEGORY_ORDER)


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


# -- kinematics ----------------------------------------------------------------------------------
def four_momentum(obj, obj_type, hypothesis) -> tuple[float, float, float, float]:
    """(E, px, py, pz) in GeV."""
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


# -- whole analysis ------------------------------------------------------------------------------
@dataclass
class EventResult:
    counts: dict[str, int]
    after_count_limits: bool
    valid: bool
    #: combo label -> mass (only for valid events)
    masses: dict[str, float] = field(default_factory=dict)
    #: combo label -> summed energy, the scale of the rounding error of E^2 - p^2
    energies: dict[str, float] = field(default_factory=dict)

    @property
    def fs(self) -> str:
        return fs_label(self.counts)


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


def analyse_event(event, selection, comb, hypothesis) -> EventResult:
    selected = select_objects(event, selection)
    counts = counts_of(selected)
    if not passes_count_limits(selected, selection):
        return EventResult(counts, False, False)
    if not final_state_ok(counts, comb):
        return EventResult(counts, True, False)
    masses, energies = {}, {}
    for label, objects in combinations(counts, comb):
        momenta = [four_momentum(selected[t][i], t, hypothesis) for t, i in objects]
        masses[label] = invariant_mass(momenta)
        energies[label] = sum(p[0] for p in momenta)
    return EventResult(counts, True, True, masses, energies)


def analyse(events, selection, comb, hypothesis="stored") -> ReferenceResult:
    results = [analyse_event(ev, selection, comb, hypothesis) for ev in events]
    cutflow = {
        "events_read": len(results),
        "after_count_limits": sum(r.after_count_limits for r in results),
        "in_final_state": sum(r.valid for r in results),
        "with_combination": sum(r.valid and bool(r.masses) for r in results),
    }
    return ReferenceResult(results, cutflow)
