"""Invariant masses of object combinations: four-momenta on flat arrays, one compiled pass
over the events (:mod:`processor.physics.kernels`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import awkward as ak
import numpy as np

from processor.physics import kernels
from processor.physics.finalstates import Pattern
from processor.physics.flat import Flat, flat_of

#: masses used by the 'pdg' hypothesis (the original's choice: jets and b-jets massless), GeV
PDG_MASS_GEV = {"e": 0.00051099895, "m": 0.1056583755, "t": 1.77686, "g": 0.0, "j": 0.0, "b": 0.0}
COMPONENTS = ("px", "py", "pz", "E")


def flat_four_momenta(
    fields: Mapping[str, np.ndarray], obj_type: str, hypothesis: str = "stored"
) -> dict[str, np.ndarray]:
    """:func:`four_momenta` of flat per-object arrays (pt, eta, phi, energy|mass or px..E).

    The formulas and operation order are vector's (``pt``, ``phi``, ``eta`` with ``E`` or
    ``tau``), so the bits are the same as ``vector.zip(...).px`` etc.
    """
    if "px" in fields:
        return {c: np.asarray(fields[c], dtype=np.float64) for c in COMPONENTS}
    pt = np.asarray(fields["pt"], dtype=np.float64)
    eta = np.asarray(fields["eta"], dtype=np.float64)
    phi = np.asarray(fields["phi"], dtype=np.float64)
    out = {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta)}
    if hypothesis != "pdg" and "energy" in fields:
        out["E"] = np.asarray(fields["energy"], dtype=np.float64)
        return out
    if hypothesis == "pdg":
        tau = np.full(len(pt), PDG_MASS_GEV[obj_type], dtype=np.float64)
    else:
        # E = sqrt(p^2 + m^2) also for a (calibration-induced) negative stored mass
        tau = np.abs(np.asarray(fields["mass"], dtype=np.float64))
    # vector: t = sqrt(max(copysign(tau^2, tau) + |p|^2, 0)), |p| = pt / sin(theta) from eta
    expmeta = np.exp(-eta)
    invsintheta = 0.5 * (1 + expmeta**2) / expmeta
    out["E"] = np.sqrt(np.maximum(np.copysign(tau**2, tau) + pt**2 * invsintheta**2, 0))
    return out


def four_momenta(rec: ak.Array, obj_type: str, hypothesis: str = "stored") -> dict[str, ak.Array]:
    """Cartesian components (px, py, pz, E) in GeV, float64, of jagged objects.

    'stored' uses the energy or mass the file stores; 'pdg' replaces it with the type's
    PDG mass (E = sqrt(p^2 + m^2)). Composite objects (Z candidates) carry their Cartesian
    components already (computed from their leptons under the hypothesis) and are returned as
    they are.
    """
    flat = flat_of(rec)
    comps = flat_four_momenta(flat.fields, obj_type, hypothesis)
    offsets = ak.index.Index64(flat.offsets)
    return {
        c: ak.Array(ak.contents.ListOffsetArray(offsets, ak.contents.NumpyArray(v)))
        for c, v in comps.items()
    }


def suffix_sums(component: ak.Array, width: int) -> np.ndarray:
    """``out[i, k]`` = sum of the component over objects k.. of event i (shape (n, width+1)).

    Objects must be pT-ordered and at most ``width`` per event; missing objects count zero.
    (The physics uses the flat :func:`processor.physics.kernels.suffix_sums`, the same sums.)
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
    is the sum over t of the suffix sum starting at object n_t - u_t. Entries are listed
    pattern by pattern, events ascending within a pattern.
    """
    flat = {t: flat_of(rec) for t, rec in objects.items()}
    return flat_combination_masses(flat, counts, valid, patterns, mode, hypothesis)


def empty_entries() -> MassEntries:
    """No mass entries."""
    return MassEntries(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float64))


@lru_cache(maxsize=64)
def _pattern_table(patterns: tuple[Pattern, ...], types: tuple[str, ...]):
    width = max((len(p.types) for p in patterns), default=1)
    pat_types = np.zeros((len(patterns), width), np.int64)
    pat_used = np.zeros((len(patterns), width), np.int64)
    pat_k = np.zeros(len(patterns), np.int64)
    for ip, pat in enumerate(patterns):
        pat_k[ip] = len(pat.types)
        for k, (t, u) in enumerate(zip(pat.types, pat.used, strict=True)):
            pat_types[ip, k] = types.index(t)
            pat_used[ip, k] = u
    return pat_types, pat_used, pat_k


def flat_combination_masses(
    objects: Mapping[str, Flat],
    counts: Mapping[str, np.ndarray],
    valid: np.ndarray,
    patterns: tuple[Pattern, ...],
    mode: str,
    hypothesis: str = "stored",
) -> MassEntries:
    """:func:`combination_masses` of flat collections (one compiled pass over the events)."""
    idx = np.flatnonzero(valid)
    types = tuple(sorted({t for p in patterns for t in p.types}))
    if not types or not len(idx):
        return empty_entries()
    n_events = len(valid)
    n_sel = np.zeros((n_events, len(types)), np.int64)
    starts = np.zeros((n_events, len(types)), np.int64)
    present = [t for t in types if t in objects]
    sums = np.empty((4, sum(int(objects[t].offsets[-1]) for t in present)), np.float64)
    base = 0
    for k, t in enumerate(types):
        n_sel[:, k] = counts[t]
        if t not in objects:
            if n_sel[idx, k].any():
                raise KeyError(t)
            continue
        flat = objects[t]
        comps = flat_four_momenta(flat.fields, t, hypothesis)
        p4 = (kernels.native(comps[c], np.float64) for c in COMPONENTS)
        kernels.suffix_sums4(flat.offsets, *p4, sums, base)
        starts[:, k] = flat.offsets[:-1] + base
        base += int(flat.offsets[-1])
    pat_types, pat_used, pat_k = _pattern_table(tuple(patterns), types)
    ev, pat, mass = kernels.combination_masses(
        idx,
        n_sel,
        starts,
        sums[0],
        sums[1],
        sums[2],
        sums[3],
        pat_types,
        pat_used,
        pat_k,
        mode == "leading_only",
    )
    return MassEntries(ev, pat, mass)
