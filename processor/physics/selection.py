"""Object selection: kinematic and quality cuts, b-tag split, pT ordering, count limits."""

from __future__ import annotations

from collections.abc import Mapping

import awkward as ak
import numpy as np

from processor.config import ObjectSelection


def select_objects(
    collections: Mapping[str, ak.Array], sel: ObjectSelection
) -> dict[str, ak.Array]:
    """Selected objects of each active type, sorted by pT (descending) within the type.

    Cuts are ``pt > pt_min`` and ``|eta| < abs_eta_max`` (GeV), plus the id/iso mask the
    format adapter computed (``pass_quality``). With b-tagging on, tagged jets that pass the
    jet cuts become type ``b`` and leave ``j``.
    """
    out: dict[str, ak.Array] = {}
    active = sel.active_types()
    for t, rec in collections.items():
        cut = sel.cuts(t)
        # compare in float64: a float32 branch against 2.37 would be compared in float32
        pt = ak.values_astype(rec.pt, np.float64)
        eta = ak.values_astype(rec.eta, np.float64)
        mask = (pt > cut.pt_min) & (abs(eta) < cut.abs_eta_max)
        if "pass_quality" in rec.fields:
            mask = mask & rec.pass_quality
        if t == "j" and "b" in active:
            tagged = rec.btag
            out["b"] = _sorted(rec[mask & tagged])
            if "j" in active:
                out["j"] = _sorted(rec[mask & ~tagged])
        elif t in active:
            out[t] = _sorted(rec[mask])
    return out


def _sorted(rec: ak.Array) -> ak.Array:
    return rec[ak.argsort(rec.pt, axis=1, ascending=False, stable=True)]


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
    """True for events within every type's count limit (the original drops the others)."""
    n = len(next(iter(counts.values()))) if counts else 0
    ok = np.ones(n, dtype=bool)
    for t, c in counts.items():
        ok &= c <= sel.max_count(t)
    return ok
