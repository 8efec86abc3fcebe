"""One chunk's physics, as pure functions: selection, Z candidates, count limits, final states,
charge tags, masses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import awkward as ak
import numpy as np

from processor.config import CombinationConfig, ObjectSelection
from processor.physics import kernels
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
from processor.physics.flat import Flat, flat_of
from processor.physics.masses import (
    MassEntries,
    empty_entries,
    flat_combination_masses,
    flat_four_momenta,
)
from processor.physics.selection import count_limit_mask, flat_select
from processor.physics.zcandidates import flat_z_candidates

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
    flat = {t: flat_of(objects[t]) for t in ("e", "m") if t in objects}
    return flat_charge_tags(flat, n_events)


def flat_charge_tags(objects: Mapping[str, Flat], n_events: int) -> np.ndarray:
    """:func:`charge_tags` of flat collections."""
    if not any(t in objects for t in ("e", "m")):
        return np.zeros(n_events, dtype=np.int64)
    off_e, off_m, q = _lepton_offsets(objects, n_events, "charge")
    two, product = kernels.two_lepton_product(off_e, off_m, q["charge"])
    tags = np.where(product < 0, TAG_CODES["OS"], TAG_CODES["SS"])
    return np.where(two, tags, TAG_CODES[None]).astype(np.int64)


def _lepton_offsets(
    objects: Mapping[str, Flat], n_events: int, *fields: str, hypothesis: str | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Electrons then muons in one flat list: (electron offsets, muon offsets, fields as float64
    and, with ``hypothesis``, the four-momentum components)."""
    parts: dict[str, list[np.ndarray]] = {}
    offsets = {}
    total = 0
    for t in ("e", "m"):
        if t not in objects:
            offsets[t] = np.full(n_events + 1, total, np.int64)
            continue
        rec = objects[t]
        values = {f: np.asarray(rec[f], dtype=np.float64) for f in fields}
        if hypothesis is not None:
            values.update(flat_four_momenta(rec.fields, t, hypothesis))
        for k, v in values.items():
            parts.setdefault(k, []).append(v)
        offsets[t] = rec.offsets + total
        total += int(rec.offsets[-1])
    return offsets["e"], offsets["m"], {k: np.concatenate(v) for k, v in parts.items()}


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
    Entries are listed pair by pair, events ascending.
    """
    flat = {t: flat_of(objects[t]) for t in ("e", "m") if t in objects}
    return flat_three_lepton_pair_masses(flat, counts, valid, hypothesis, pattern_offset)


@lru_cache(maxsize=8)
def _pair_lookup(pattern_offset: int) -> np.ndarray:
    """``[k, n_e, os]`` -> pattern of lepton pair k in an event with n_e electrons."""
    index = {p: i for i, p in enumerate(LEPTON_PAIRS)}
    table = np.zeros((3, 4, 2), np.int32)
    for n in range(4):
        for k, (first, second) in enumerate(three_lepton_slots(n)):
            for os_pair, tag in ((1, "OS"), (0, "SS")):
                table[k, n, os_pair] = pattern_offset + index[LeptonPair(first, second, tag)]
    return table


def flat_three_lepton_pair_masses(
    objects: Mapping[str, Flat],
    counts: Mapping[str, np.ndarray],
    valid: np.ndarray,
    hypothesis: str,
    pattern_offset: int,
) -> MassEntries:
    """:func:`three_lepton_pair_masses` of flat collections."""
    n_e = counts.get("e", np.zeros(len(valid), np.int64))
    n_m = counts.get("m", np.zeros(len(valid), np.int64))
    idx = np.flatnonzero(valid & (n_e + n_m == 3))
    if not len(idx) or not any(t in objects for t in ("e", "m")):
        return empty_entries()
    off_e, off_m, v = _lepton_offsets(objects, len(valid), "charge", hypothesis=hypothesis)
    ev, pat, mass = kernels.three_lepton_pairs(
        idx,
        off_e,
        off_m,
        v["px"],
        v["py"],
        v["pz"],
        v["E"],
        v["charge"],
        _pair_lookup(pattern_offset),
    )
    return MassEntries(ev, pat, mass)


def _concat(a: MassEntries, b: MassEntries) -> MassEntries:
    return MassEntries(
        np.concatenate([a.event, b.event]),
        np.concatenate([a.pattern, b.pattern]).astype(np.int32),
        np.concatenate([a.mass, b.mass]),
    )


def analyse_objects(
    collections: Mapping[str, ak.Array | Flat],
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
    pairs are on (``sel.needs_charge()``). Collections are jagged awkward records or, the same
    objects already flat, :class:`~processor.physics.flat.Flat` (``read_flat_collections``).
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
    flat = {t: flat_of(rec) for t, rec in collections.items()}
    objects = flat_select(flat, sel, overlap_removal)
    types = sel.active_types()
    if "Z" in types:
        objects = flat_z_candidates(objects, sel.z_candidates, hypothesis)
    counts = {t: objects[t].counts if t in objects else np.zeros(n_events, np.int64) for t in types}
    within_limits = count_limit_mask(counts, sel)
    valid = within_limits & final_state_mask(counts, comb)
    tags = flat_charge_tags(objects, n_events) if sel.charge_tags else None
    pats: tuple[Pattern | LeptonPair, ...] = patterns(types, comb)
    entries = flat_combination_masses(objects, counts, valid, pats, comb.mode, hypothesis)
    if sel.three_lepton_pairs and {"e", "m"} & set(types):
        pairs = flat_three_lepton_pair_masses(objects, counts, valid, hypothesis, len(pats))
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
