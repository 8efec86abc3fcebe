"""Z -> ll candidates: greedy same-flavour opposite-charge pairing closest to m_Z (compiled)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from processor.physics import kernels
from processor.physics.flat import Flat, flat_of, offsets_of
from processor.physics.masses import COMPONENTS, flat_four_momenta

#: PDG id of each lepton type (stored on the Z candidate as its flavour)
LEPTON_PDG = {"e": 11, "m": 13}


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
    pT-ordered. The greedy choice is a compiled loop over events (:mod:`.kernels`).
    """
    flavours = [t for t in ("e", "m") if t in objects]
    if not flavours:
        return dict(objects)
    flat = {t: flat_of(objects[t]) for t in flavours}
    built = flat_z_candidates(flat, cfg, hypothesis)
    out = dict(objects)
    for t, rec in built.items():
        out[t] = rec.to_awkward()
    return out


def flat_z_candidates(
    objects: Mapping[str, Flat], cfg: Any, hypothesis: str = "stored"
) -> dict[str, Flat]:
    """:func:`build_z_candidates` of flat collections."""
    out = dict(objects)
    flavours = [t for t in ("e", "m") if t in objects]
    if not flavours:
        return out
    n_events = objects[flavours[0]].n_events
    comp_parts: dict[str, list[np.ndarray]] = {c: [] for c in COMPONENTS}
    charges = []
    offsets: dict[str, np.ndarray] = {}
    total = 0
    for t in flavours:
        rec = objects[t]
        comps = flat_four_momenta(rec.fields, t, hypothesis)
        for c in COMPONENTS:
            comp_parts[c].append(comps[c])
        charges.append(np.asarray(rec["charge"], dtype=np.float64))
        offsets[t] = rec.offsets + total
        total += int(rec.offsets[-1])
    comp = {c: np.concatenate(v) for c, v in comp_parts.items()}
    no_e = np.zeros(n_events + 1, np.int64)
    e_end = int(offsets["e"][-1]) if "e" in offsets else 0
    first, second, n_z, used = kernels.z_pairs(
        offsets.get("e", no_e),
        offsets.get("m", no_e + total),
        comp["px"],
        comp["py"],
        comp["pz"],
        comp["E"],
        np.concatenate(charges),
        float(cfg.mass_gev),
        float(cfg.window_gev),
    )
    z = {c: comp[c][first] + comp[c][second] for c in COMPONENTS}
    z["pt"] = np.hypot(z["px"], z["py"])
    z["mass"] = np.sqrt(np.maximum(z["E"] ** 2 - (z["px"] ** 2 + z["py"] ** 2 + z["pz"] ** 2), 0.0))
    z["flavour"] = np.where(first >= e_end, 13, 11).astype(np.int32)
    z_offsets = offsets_of(n_z)
    order, _ = kernels.select_sort(z_offsets, z["pt"], np.ones(len(first), dtype=bool))
    out["Z"] = Flat(z_offsets, {k: v[order] for k, v in z.items()})
    for t in flavours:
        lo = int(offsets[t][0])
        out[t] = objects[t].compress(~used[lo : lo + int(objects[t].offsets[-1])])
    return out
