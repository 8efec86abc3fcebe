"""Z -> ll candidates: greedy same-flavour opposite-charge pairing closest to m_Z, vectorised."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from processor.physics.masses import COMPONENTS, four_momenta

#: PDG id of each lepton type (stored on the Z candidate as its flavour)
LEPTON_PDG = {"e": 11, "m": 13}


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
