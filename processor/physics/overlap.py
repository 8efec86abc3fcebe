"""Overlap removal between selected objects: the standard ATLAS sequence, vectorised."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import awkward as ak
import numpy as np

#: (type removed, reference types, config key): an object of the first type is removed when it
#: lies within Delta R < config value of a (surviving) reference object; applied in this order.
STEPS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("t", ("e", "m"), "tau_lepton_dr"),
    ("g", ("e", "m"), "photon_lepton_dr"),
    ("j", ("e",), "jet_electron_dr"),
    ("e", ("j",), "electron_jet_dr"),
    ("j", ("m",), "jet_muon_dr"),
    ("m", ("j",), "muon_jet_dr"),
    ("j", ("g",), "jet_photon_dr"),
)


def required_types(types: Iterable[str], cfg: Any) -> set[str]:
    """The collections needed to overlap-remove ``types`` (e.g. e needs the jets, which need
    the electrons and muons that removed jets before); steps with Delta R 0 are skipped."""
    need = set(types)
    for removed, refs, key in reversed(STEPS):
        if getattr(cfg, key) > 0 and removed in need:
            need.update(refs)
    return need


def delta_r(a: ak.Array, b: ak.Array) -> ak.Array:
    """Delta R = sqrt(Delta eta^2 + Delta phi^2) of every (a, b) pair of each event, nested as
    ``[event][object of a][object of b]`` (Delta phi wrapped into [-pi, pi))."""
    pairs = ak.cartesian(
        {"a": ak.zip({"eta": a.eta, "phi": a.phi}), "b": ak.zip({"eta": b.eta, "phi": b.phi})},
        axis=1,
        nested=True,
    )
    deta = ak.values_astype(pairs.a.eta, np.float64) - ak.values_astype(pairs.b.eta, np.float64)
    dphi = ak.values_astype(pairs.a.phi, np.float64) - ak.values_astype(pairs.b.phi, np.float64)
    dphi = (dphi + np.pi) % (2.0 * np.pi) - np.pi
    return np.sqrt(deta**2 + dphi**2)


def near_any(a: ak.Array, b: ak.Array, dr_max: float) -> ak.Array:
    """Per object of ``a``: whether some object of ``b`` in the same event has Delta R < dr_max."""
    return ak.any(delta_r(a, b) < dr_max, axis=2)


def remove_overlaps(objects: Mapping[str, ak.Array], cfg: Any) -> dict[str, ak.Array]:
    """The objects that survive the overlap-removal sequence :data:`STEPS` (input order kept).

    ``cfg`` gives the Delta R of each step (OverlapRemoval); types absent from ``objects`` take
    no part. Each step uses the objects that survived the steps before it.
    """
    out = dict(objects)
    for removed, refs, key in STEPS:
        dr_max = float(getattr(cfg, key))
        present = [r for r in refs if r in out]
        if dr_max <= 0 or removed not in out or not present:
            continue
        ref = out[present[0]][["eta", "phi"]]
        if len(present) > 1:
            ref = ak.concatenate([out[r][["eta", "phi"]] for r in present], axis=1)
        out[removed] = out[removed][~near_any(out[removed], ref, dr_max)]
    return out
