"""The vectorised awkward/numpy physics as it was before the compiled kernels (issue 11), kept
verbatim as the reference of ``tests/test_kernels.py``: the flat numba path must give the same
objects and the same masses, bit for bit and in the same order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from processor.config import ObjectSelection
from processor.physics.finalstates import (
    LEPTON_PAIRS,
    TAG_CODES,
    LeptonPair,
    Pattern,
    three_lepton_slots,
)
from processor.physics.masses import COMPONENTS, PDG_MASS_GEV, MassEntries, suffix_sums
from processor.physics.overlap import remove_overlaps


def four_momenta(rec: ak.Array, obj_type: str, hypothesis: str = "stored") -> dict[str, ak.Array]:
    """The components as the replaced code got them from ``vector.zip`` (vector >= 1.6's
    formulas, written out with numpy ufuncs on the awkward arrays, so that this reference does not
    change with the installed vector; ``test_kernels`` compares both with vector itself)."""
    if "px" in rec.fields:
        return {c: ak.values_astype(rec[c], np.float64) for c in COMPONENTS}
    pt = ak.values_astype(rec.pt, np.float64)
    eta = ak.values_astype(rec.eta, np.float64)
    phi = ak.values_astype(rec.phi, np.float64)
    out = {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta)}
    if hypothesis != "pdg" and "energy" in rec.fields:
        out["E"] = ak.values_astype(rec.energy, np.float64)
        return out
    if hypothesis == "pdg":
        tau = ak.ones_like(pt) * PDG_MASS_GEV[obj_type]
    else:
        tau = abs(ak.values_astype(rec.mass, np.float64))
    # np.square, not ** 2: on awkward arrays ** becomes np.power, which numpy 2.0 does not
    # compute as x * x (the flat code's ndarray ** 2 is x * x)
    expmeta = np.exp(-eta)
    invsintheta = 0.5 * (1 + np.square(expmeta)) / expmeta
    out["E"] = np.sqrt(
        np.maximum(np.copysign(np.square(tau), tau) + np.square(pt) * np.square(invsintheta), 0)
    )
    return out


def select_objects(
    collections: Mapping[str, ak.Array], sel: ObjectSelection, overlap_removal: bool = False
) -> dict[str, ak.Array]:
    chosen: dict[str, ak.Array] = {}
    for t, rec in collections.items():
        cut = sel.cuts(t)
        pt = ak.values_astype(rec.pt, np.float64)
        eta = ak.values_astype(rec.eta, np.float64)
        mask = (pt > cut.pt_min) & (abs(eta) < cut.abs_eta_max)
        if "pass_quality" in rec.fields:
            mask = mask & rec.pass_quality
        chosen[t] = rec[mask]
    if overlap_removal:
        chosen = remove_overlaps(chosen, sel.overlap_removal)
    out: dict[str, ak.Array] = {}
    active = sel.active_types()
    for t, rec in chosen.items():
        if t == "j" and "b" in active:
            tagged = rec.btag
            out["b"] = _sorted(rec[tagged])
            if "j" in active:
                out["j"] = _sorted(rec[~tagged])
        elif t in active:
            out[t] = _sorted(rec)
    return out


def _sorted(rec: ak.Array) -> ak.Array:
    return rec[ak.argsort(rec.pt, axis=1, ascending=False, stable=True)]


def combination_masses(
    objects: Mapping[str, ak.Array],
    counts: Mapping[str, np.ndarray],
    valid: np.ndarray,
    patterns: tuple[Pattern, ...],
    mode: str,
    hypothesis: str = "stored",
) -> MassEntries:
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


def _flat_components(rec: ak.Array, t: str, hypothesis: str) -> dict[str, np.ndarray]:
    comps = four_momenta(rec, t, hypothesis)
    return {c: np.asarray(ak.flatten(comps[c], axis=1), dtype=np.float64) for c in COMPONENTS}


def build_z_candidates(
    objects: Mapping[str, ak.Array], cfg: Any, hypothesis: str = "stored"
) -> dict[str, ak.Array]:
    """Objects after Z building: Z candidates (type ``Z``) added, their leptons removed.

    Among the electrons and muons of each event (pT-ordered records with a ``charge``), the
    same-flavour opposite-charge pair whose mass is closest to ``cfg.mass_gev`` becomes a Z if
    ``|m - mass_gev| < cfg.window_gev``; its two leptons leave e/mu and the search repeats with
    the remaining leptons until no pair qualifies. Equal distances: electrons before muons,
    then the pair with the lower pT ranks. The Z four-momentum is the sum of its leptons' (under
    ``hypothesis``); Z records carry px, py, pz, E, pt, mass (GeV) and flavour (11/13),
    pT-ordered. Rounds of the greedy choice are vectorised over events (at most n_lep/2 rounds).
    """
    out = dict(objects)
    flavours = [t for t in ("e", "m") if t in objects]
    if not flavours:
        return out
    n_events = len(objects[flavours[0]])
    comp_parts: dict[str, list[np.ndarray]] = {c: [] for c in COMPONENTS}
    counts: dict[str, np.ndarray] = {}
    offsets: dict[str, int] = {}
    cand: dict[str, list[np.ndarray]] = {"ev": [], "g1": [], "g2": [], "dm": []}
    total = 0
    for t in flavours:
        rec = objects[t]
        n_t = np.asarray(ak.num(rec, axis=1), dtype=np.int64)
        counts[t], offsets[t] = n_t, total
        comps = _flat_components(rec, t, hypothesis)
        for c in COMPONENTS:
            comp_parts[c].append(comps[c])
        charge = np.asarray(ak.flatten(rec.charge, axis=1), dtype=np.float64)
        pairs = ak.argcombinations(rec.pt, 2, axis=1)
        n_pairs = np.asarray(ak.num(pairs, axis=1), dtype=np.int64)
        ev = np.repeat(np.arange(n_events), n_pairs)
        starts = np.cumsum(n_t) - n_t
        first = np.asarray(ak.flatten(pairs["0"]), dtype=np.int64) + starts[ev]
        second = np.asarray(ak.flatten(pairs["1"]), dtype=np.int64) + starts[ev]
        s = {c: comps[c][first] + comps[c][second] for c in COMPONENTS}
        m = np.sqrt(np.maximum(s["E"] ** 2 - (s["px"] ** 2 + s["py"] ** 2 + s["pz"] ** 2), 0.0))
        dm = np.abs(m - cfg.mass_gev)
        ok = (charge[first] * charge[second] < 0) & (dm < cfg.window_gev)
        cand["ev"].append(ev[ok])
        cand["g1"].append(first[ok] + total)
        cand["g2"].append(second[ok] + total)
        cand["dm"].append(dm[ok])
        total += len(charge)
    comp = {c: np.concatenate(v) for c, v in comp_parts.items()}
    ev, g1, g2, dm = (np.concatenate(cand[k]) for k in ("ev", "g1", "g2", "dm"))
    order = np.lexsort((g2, g1, dm, ev))  # by event, then distance to m_Z, then e before mu
    ev, g1, g2 = ev[order], g1[order], g2[order]
    used = np.zeros(total, dtype=bool)
    alive = np.ones(len(ev), dtype=bool)
    picked: list[np.ndarray] = []
    while True:
        alive &= ~used[g1] & ~used[g2]
        idx = np.flatnonzero(alive)
        if not len(idx):
            break
        e_idx = ev[idx]
        best = idx[np.r_[True, e_idx[1:] != e_idx[:-1]]]  # the closest free pair per event
        picked.append(best)
        used[g1[best]] = True
        used[g2[best]] = True
    best = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    z = {c: comp[c][g1[best]] + comp[c][g2[best]] for c in COMPONENTS}
    z["pt"] = np.hypot(z["px"], z["py"])
    z["mass"] = np.sqrt(np.maximum(z["E"] ** 2 - (z["px"] ** 2 + z["py"] ** 2 + z["pz"] ** 2), 0.0))
    z["flavour"] = np.where(g1[best] >= offsets.get("m", total), 13, 11).astype(np.int32)
    z_ev = ev[best]
    z_order = np.lexsort((-z["pt"], z_ev))
    n_z = np.bincount(z_ev, minlength=n_events)
    out["Z"] = ak.zip({k: ak.unflatten(v[z_order], n_z) for k, v in z.items()})
    for t in flavours:
        keep = ~used[offsets[t] : offsets[t] + int(counts[t].sum())]
        out[t] = objects[t][ak.unflatten(keep, counts[t])]
    return out


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
