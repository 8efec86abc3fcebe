"""Invariant masses of object combinations, vectorised over events (no Python event loop)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import awkward as ak
import numpy as np
import vector

from processor.physics.finalstates import Pattern

#: masses used by the 'pdg' hypothesis (the original's choice: jets and b-jets massless), GeV
PDG_MASS_GEV = {"e": 0.00051099895, "m": 0.1056583755, "t": 1.77686, "g": 0.0, "j": 0.0, "b": 0.0}
COMPONENTS = ("px", "py", "pz", "E")


def four_momenta(rec: ak.Array, obj_type: str, hypothesis: str = "stored") -> dict[str, ak.Array]:
    """Cartesian components (px, py, pz, E) in GeV, float64, of jagged objects.

    'stored' uses the energy or mass the file stores; 'pdg' replaces it with the type's
    PDG mass (E = sqrt(p^2 + m^2)). Composite objects (Z candidates) carry their Cartesian
    components already (computed from their leptons under the hypothesis) and are returned as
    they are.
    """
    if "px" in rec.fields:
        return {c: ak.values_astype(rec[c], np.float64) for c in COMPONENTS}
    pt = ak.values_astype(rec.pt, np.float64)
    eta = ak.values_astype(rec.eta, np.float64)
    phi = ak.values_astype(rec.phi, np.float64)
    if hypothesis == "pdg":
        fourth = {"mass": ak.ones_like(pt) * PDG_MASS_GEV[obj_type]}
    elif "energy" in rec.fields:
        fourth = {"energy": ak.values_astype(rec.energy, np.float64)}
    else:
        # E = sqrt(p^2 + m^2) also for a (calibration-induced) negative stored mass
        fourth = {"mass": abs(ak.values_astype(rec.mass, np.float64))}
    p4 = vector.zip({"pt": pt, "eta": eta, "phi": phi, **fourth})
    return {"px": p4.px, "py": p4.py, "pz": p4.pz, "E": p4.E}


def suffix_sums(component: ak.Array, width: int) -> np.ndarray:
    """``out[i, k]`` = sum of the component over objects k.. of event i (shape (n, width+1)).

    Objects must be pT-ordered and at most ``width`` per event; missing objects count zero.
    """
    counts = np.asarray(ak.num(component, axis=1), dtype=np.int64)
    flat = np.asarray(ak.flatten(component, axis=1), dtype=np.float64)
    rows = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    local = np.arange(len(flat)) - np.repeat(starts, counts)
    out = np.zeros((len(counts), width + 1), dtype=np.float64, order="F")
    out[rows, local] = flat
    for k in range(width - 1, -1, -1):  # at most max_count columns, each one vector operation
        out[:, k] += out[:, k + 1]
    return out


@dataclass
class MassEntries:
    """Flat list of combination masses in a chunk."""

    event: np.ndarray  # index of the event in the chunk
    pattern: np.ndarray  # index into the pattern list
    mass: np.ndarray  # GeV


def combination_masses(
    objects: Mapping[str, ak.Array],
    counts: Mapping[str, np.ndarray],
    valid: np.ndarray,
    patterns: tuple[Pattern, ...],
    mode: str,
    hypothesis: str = "stored",
) -> MassEntries:
    """Masses of every allowed combination in every valid event.

    A pattern (types S, used u_t) applies to an event whose multiplicity n_t equals u_t
    (leading-only) or is at least u_t (include-subleading) for each t in S; its four-momentum
    is the sum over t of the suffix sum starting at object n_t - u_t.
    """
    idx = np.flatnonzero(valid)
    types = sorted({t for p in patterns for t in p.types})
    sums: dict[str, dict[str, np.ndarray]] = {}
    n_sel = {t: counts[t][idx] for t in types}
    for t in types:
        if t not in objects:
            continue
        width = int(n_sel[t].max(initial=0))
        comps = four_momenta(objects[t][idx], t, hypothesis)
        sums[t] = {c: suffix_sums(comps[c], width) for c in COMPONENTS}
    ev_parts, pat_parts, mass_parts = [], [], []
    rows = np.arange(len(idx))
    for ip, pat in enumerate(patterns):
        mask = np.ones(len(idx), dtype=bool)
        for t, u in zip(pat.types, pat.used, strict=True):
            mask &= (n_sel[t] == u) if mode == "leading_only" else (n_sel[t] >= u)
        if not mask.any():
            continue
        sel = rows[mask]
        total = dict.fromkeys(COMPONENTS, 0.0)
        for t, u in zip(pat.types, pat.used, strict=True):
            start = n_sel[t][sel] - u
            for c in COMPONENTS:
                total[c] = total[c] + sums[t][c][sel, start]
        m2 = total["E"] ** 2 - (total["px"] ** 2 + total["py"] ** 2 + total["pz"] ** 2)
        ev_parts.append(idx[sel])
        pat_parts.append(np.full(len(sel), ip, dtype=np.int32))
        mass_parts.append(np.sqrt(np.maximum(m2, 0.0)))
    if not ev_parts:
        return MassEntries(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float64))
    return MassEntries(
        np.concatenate(ev_parts), np.concatenate(pat_parts), np.concatenate(mass_parts)
    )
