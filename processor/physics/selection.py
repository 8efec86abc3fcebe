"""Object selection: kinematic and quality cuts, overlap removal, b-tag split, pT ordering,
count limits."""

from __future__ import annotations

from collections.abc import Mapping

import awkward as ak
import numpy as np

from processor.config import READ_TYPES, ObjectSelection
from processor.physics import kernels
from processor.physics.flat import Flat, flat_of
from processor.physics.overlap import remove_overlaps, required_types


def select_objects(
    collections: Mapping[str, ak.Array], sel: ObjectSelection, overlap_removal: bool = False
) -> dict[str, ak.Array]:
    """Selected objects of each active type, sorted by pT (descending) within the type.

    Cuts are ``pt > pt_min`` and ``|eta| < abs_eta_max`` (GeV), plus the id/iso mask the
    format adapter computed (``pass_quality``). With ``overlap_removal`` the selected objects
    of every collection given (also types read only for it) go through the overlap-removal
    sequence. With b-tagging on, tagged jets that pass the jet cuts become type ``b`` and
    leave ``j``. Equal pT keeps the input order (a stable sort).
    """
    flat = {t: flat_of(rec) for t, rec in collections.items()}
    return {t: f.to_awkward() for t, f in flat_select(flat, sel, overlap_removal).items()}


def flat_select(
    collections: Mapping[str, Flat], sel: ObjectSelection, overlap_removal: bool = False
) -> dict[str, Flat]:
    """:func:`select_objects` of flat collections (the sort is compiled)."""
    keeps: dict[str, np.ndarray | None] = {}
    for t, rec in collections.items():
        cut = sel.cuts(t)
        # compare in float64: a float32 branch against 2.37 would be compared in float32
        pt = np.asarray(rec["pt"], dtype=np.float64)
        eta = np.asarray(rec["eta"], dtype=np.float64)
        mask = (pt > cut.pt_min) & (np.abs(eta) < cut.abs_eta_max)
        if "pass_quality" in rec.fields:
            mask = mask & rec["pass_quality"]
        keeps[t] = mask
    chosen = dict(collections)
    if overlap_removal:  # PHYSLITE only: the (awkward) overlap removal on the selected objects
        survivors = remove_overlaps(
            {t: rec.compress(keeps[t]).to_awkward() for t, rec in collections.items()},
            sel.overlap_removal,
        )
        chosen = {t: flat_of(rec) for t, rec in survivors.items()}
        keeps = dict.fromkeys(chosen)
    out: dict[str, Flat] = {}
    active = sel.active_types()
    for t, rec in chosen.items():
        if t not in active and not (t == "j" and "b" in active):
            continue
        keep = keeps[t]
        if keep is None:
            keep = np.ones(int(rec.offsets[-1]), dtype=bool)
        order, counts = kernels.select_sort(
            rec.offsets, kernels.native(rec["pt"], np.float64), kernels.native(keep, bool)
        )
        if t == "j" and "b" in active:
            tagged = np.asarray(rec["btag"], dtype=bool)[order]
            event = np.repeat(np.arange(len(counts)), counts)
            n_b = np.bincount(event[tagged], minlength=len(counts))
            out["b"] = rec.take(order[tagged], n_b)
            if "j" in active:
                out["j"] = rec.take(order[~tagged], counts - n_b)
        else:
            out[t] = rec.take(order, counts)
    return out


def types_to_read(sel: ObjectSelection, overlap_removal: bool = False) -> tuple[str, ...]:
    """Collections to read for a selection: the active types (b as ``b``: jets plus the tag,
    Z from e and mu) and, with overlap removal, the collections it needs for them."""
    base = set(sel.types)
    active = sel.active_types()
    if "b" in active:
        base.add("j")
    if overlap_removal:
        base = required_types(base, sel.overlap_removal)
    out = tuple(t for t in READ_TYPES if t in base)
    return out + (("b",) if "b" in active else ())


def object_counts(
    objects: Mapping[str, ak.Array], types: tuple[str, ...], n_events: int
) -> dict[str, np.ndarray]:
    """Number of selected objects per event for each type (zeros for types not present)."""
    return {
        t: (
            np.asarray(ak.num(objects[t], axis=1), dtype=np.int64)
            if t in objects
            else np.zeros(n_events, np.int64)
        )
        for t in types
    }


def count_limit_mask(counts: Mapping[str, np.ndarray], sel: ObjectSelection) -> np.ndarray:
    """True for events within every type's [min_count, max_count] (the original drops events
    above max_count; min_count is its newer configuration's per-type minimum)."""
    n = len(next(iter(counts.values()))) if counts else 0
    ok = np.ones(n, dtype=bool)
    for t, c in counts.items():
        ok &= (c >= sel.min_count(t)) & (c <= sel.max_count(t))
    return ok
