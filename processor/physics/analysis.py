"""One chunk's physics, as pure functions: selection, Z candidates, count limits, final states,
charge tags, masses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import awkward as ak
import numpy as np

from processor.config import CombinationConfig, ObjectSelection
from processor.physics.finalstates import (
    LEPTON_PAIRS,
    TAG_CODES,
    LeptonPair,
    Pattern,
    code_label,
    combination_label,
    decode,
    encode,
    final_state_mask,
    patterns,
    three_lepton_slots,
)
from processor.physics.masses import COMPONENTS, MassEntries, combination_masses, four_momenta
from processor.physics.selection import count_limit_mask, object_counts, select_objects
from processor.physics.zcandidates import build_z_candidates

#: cutflow steps in order (event counts)
CUTFLOW_STEPS = ("events_read", "after_count_limits", "in_final_state", "with_combination")


@dataclass
class ChunkAnalysis:
    """What one chunk contributes, before histogramming."""

    n_events: int
    cutflow: dict[str, int]
    valid: np.ndarray  # events whose final state counts
    fs_code: np.ndarray  # final-state code of every event (meaningful where valid)
    entries: MassEntries
    patterns: tuple[Pattern | LeptonPair, ...]

    def keys(self) -> list[tuple[str, str]]:
        """(final-state label, combination label) of every mass entry."""
        return [
            combo_key(int(c), self.patterns[int(p)])
            for c, p in zip(self.fs_code[self.entries.event], self.entries.pattern, strict=True)
        ]


@lru_cache(maxsize=100_000)
def combo_key(code: int, pattern: Pattern | LeptonPair) -> tuple[str, str]:
    """(final-state label, combination label) of a pattern in a final state."""
    return code_label(code), combination_label(pattern, decode(code))


def lepton_charges(objects: Mapping[str, ak.Array]) -> ak.Array:
    """Per event, the charges of the electrons then the muons (each pT-ordered)."""
    parts = [objects[t].charge for t in ("e", "m") if t in objects]
    return parts[0] if len(parts) == 1 else ak.concatenate(parts, axis=1)


def charge_tags(objects: Mapping[str, ak.Array], n_events: int) -> np.ndarray:
    """Tag code per event (:data:`TAG_CODES`): exactly two e/mu -> OS if q1 q2 < 0, else SS."""
    if not any(t in objects for t in ("e", "m")):
        return np.zeros(n_events, dtype=np.int64)
    q = lepton_charges(objects)
    two = np.asarray(ak.num(q, axis=1) == 2)
    product = np.asarray(ak.fill_none(ak.prod(q, axis=1), 0.0), dtype=np.float64)
    tags = np.where(product < 0, TAG_CODES["OS"], TAG_CODES["SS"])
    return np.where(two, tags, TAG_CODES[None]).astype(np.int64)


def three_lepton_pair_masses(
    objects: Mapping[str, ak.Array],
    counts: Mapping[str, np.ndarray],
    valid: np.ndarray,
    hypothesis: str,
    pattern_offset: int,
) -> MassEntries:
    """The three pair masses of each valid event with exactly three electrons/muons.

    Leptons are listed e (pT order) then mu; pairs (0, 1), (0, 2), (1, 2); each entry's
    pattern is ``pattern_offset`` + its index in :data:`LEPTON_PAIRS` (pair and charge tag).
    """
    n_e = counts.get("e", np.zeros(len(valid), np.int64))
    n_m = counts.get("m", np.zeros(len(valid), np.int64))
    idx = np.flatnonzero(valid & (n_e + n_m == 3))
    empty = MassEntries(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float64))
    if not len(idx):
        return empty
    comps = {c: [] for c in COMPONENTS}
    charges = []
    for t in ("e", "m"):
        if t not in objects:
            continue
        rec = objects[t][idx]
        p4 = four_momenta(rec, t, hypothesis)
        for c in COMPONENTS:
            comps[c].append(p4[c])
        charges.append(ak.values_astype(rec.charge, np.float64))
    # (len(idx), 3) arrays of the three leptons, e before mu
    lep = {c: ak.to_numpy(ak.concatenate(v, axis=1)) for c, v in comps.items()}
    q = ak.to_numpy(ak.concatenate(charges, axis=1))
    index = {p: i for i, p in enumerate(LEPTON_PAIRS)}
    ne = n_e[idx]
    ev_parts, pat_parts, mass_parts = [], [], []
    for k, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))):
        s = {c: lep[c][:, a] + lep[c][:, b] for c in COMPONENTS}
        m = np.sqrt(np.maximum(s["E"] ** 2 - (s["px"] ** 2 + s["py"] ** 2 + s["pz"] ** 2), 0.0))
        os_pair = q[:, a] * q[:, b] < 0
        pat = np.zeros(len(idx), dtype=np.int32)
        for n in range(4):
            first, second = three_lepton_slots(n)[k]
            for tag, sel in (("OS", os_pair), ("SS", ~os_pair)):
                rows = (ne == n) & sel
                pat[rows] = pattern_offset + index[LeptonPair(first, second, tag)]
        ev_parts.append(idx)
        pat_parts.append(pat)
        mass_parts.append(m)
    return MassEntries(
        np.concatenate(ev_parts), np.concatenate(pat_parts), np.concatenate(mass_parts)
    )


def _concat(a: MassEntries, b: MassEntries) -> MassEntries:
    return MassEntries(
        np.concatenate([a.event, b.event]),
        np.concatenate([a.pattern, b.pattern]).astype(np.int32),
        np.concatenate([a.mass, b.mass]),
    )


def analyse_objects(
    collections: Mapping[str, ak.Array],
    n_events: int,
    sel: ObjectSelection,
    comb: CombinationConfig,
    hypothesis: str = "stored",
    *,
    overlap_removal: bool = False,
) -> ChunkAnalysis:
    """Select objects (and remove overlaps), build Z candidates, apply count limits and
    final-state rules, tag the charge relation, and compute every mass.

    Electron/muon records need a ``charge`` when Z candidates, charge tags or three-lepton
    pairs are on (``sel.needs_charge()``).
    """
    if sel.needs_charge():
        lacking = [
            t for t in ("e", "m") if t in collections and "charge" not in collections[t].fields
        ]
        if lacking:
            raise ValueError(
                f"collections {lacking} have no 'charge', needed for Z candidates, charge tags "
                "or three-lepton pairs (read them with charge=True, or switch those off)"
            )
    objects = select_objects(collections, sel, overlap_removal)
    types = sel.active_types()
    if "Z" in types:
        objects = build_z_candidates(objects, sel.z_candidates, hypothesis)
    counts = object_counts(objects, types, n_events)
    within_limits = count_limit_mask(counts, sel)
    valid = within_limits & final_state_mask(counts, comb)
    tags = charge_tags(objects, n_events) if sel.charge_tags else None
    pats: tuple[Pattern | LeptonPair, ...] = patterns(types, comb)
    entries = combination_masses(objects, counts, valid, pats, comb.mode, hypothesis)
    if sel.three_lepton_pairs and {"e", "m"} & set(types):
        pairs = three_lepton_pair_masses(objects, counts, valid, hypothesis, len(pats))
        pats = pats + LEPTON_PAIRS
        entries = _concat(entries, pairs)
    with_combo = np.zeros(n_events, dtype=bool)
    with_combo[entries.event] = True
    cutflow = {
        "events_read": int(n_events),
        "after_count_limits": int(within_limits.sum()),
        "in_final_state": int(valid.sum()),
        "with_combination": int(with_combo.sum()),
    }
    return ChunkAnalysis(n_events, cutflow, valid, encode(counts, tags), entries, pats)
