"""PHYSLITE b-tagging: tagger scores reached through each jet's btaggingLink, DL1d-style cuts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

log = logging.getLogger(__name__)

#: the jet -> b-tagging object link (index into the event's BTagging_AntiKt4EMPFlow container)
PHYSLITE_LINK = "AnalysisJetsAuxDyn.btaggingLink/AnalysisJetsAuxDyn.btaggingLink.m_persIndex"
#: the b-tagging container's score branches: PHYSLITE_SCORE.format(tagger=..., flavour=b|c|u)
PHYSLITE_SCORE = "BTagging_AntiKt4EMPFlowAuxDyn.{tagger}_p{flavour}"


@dataclass(frozen=True)
class Tagger:
    """A b-tagging algorithm: its charm fraction and the discriminant cut of each working point."""

    name: str
    fc: float
    #: b-jet efficiency (%) -> discriminant cut (tagged if D > cut)
    cuts: dict[int, float]
    source: str


TAGGERS = {
    # ATLAS FTAG recommendations for DL1dv01 (as quoted by the analysis team's request)
    "DL1dv01": Tagger("DL1dv01", 0.018, {60: 4.93, 70: 3.56, 77: 2.51, 85: 0.92}, "FTAG DL1dv01"),
    # GN2v00 pseudo-continuous bins of the ATLAS Easyjet framework (fc = 0.1, marked
    # experimental there): 85 % 1.638, 77 % 2.893, 70 % 3.875, 60 % 5.394
    "GN2v00": Tagger(
        "GN2v00", 0.1, {60: 5.394, 70: 3.875, 77: 2.893, 85: 1.638}, "Easyjet GN2v00 (exp.)"
    ),
}


def discriminant(pb: Any, pc: Any, pu: Any, fc: float) -> Any:
    """D = ln(pb / (fc pc + (1 - fc) pu)), in float64 (-inf for pb = 0, nan for bad scores)."""
    pb, pc, pu = (np.asarray(x, dtype=np.float64) for x in (pb, pc, pu))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(pb / (fc * pc + (1.0 - fc) * pu))


def cut_for(cfg: Any) -> tuple[float, float]:
    """(fc, discriminant cut) of a BTagging config: the tagger's values unless overridden."""
    tagger = TAGGERS[cfg.tagger]
    fc = tagger.fc if cfg.fc is None else float(cfg.fc)
    cut = (
        tagger.cuts[int(cfg.working_point)]
        if cfg.discriminant_min is None
        else cfg.discriminant_min
    )
    return fc, float(cut)


def follow_link(index: ak.Array, target: ak.Array, fill: float = np.nan) -> ak.Array:
    """``target[event][index[event][k]]`` for every jet k, as a jagged float64 array shaped like
    ``index``; links outside the event's container (e.g. invalid 0xFFFFFFFF) give ``fill``."""
    n_jets = np.asarray(ak.num(index, axis=1), dtype=np.int64)
    n_target = np.asarray(ak.num(target, axis=1), dtype=np.int64)
    idx = np.asarray(ak.flatten(index, axis=None), dtype=np.int64)
    values = np.asarray(ak.flatten(target, axis=None), dtype=np.float64)
    event = np.repeat(np.arange(len(n_jets)), n_jets)
    starts = np.cumsum(n_target) - n_target
    ok = (idx >= 0) & (idx < n_target[event])
    out = np.full(len(idx), fill, dtype=np.float64)
    out[ok] = values[starts[event[ok]] + idx[ok]]
    n_bad = int((~ok).sum())
    if n_bad:
        log.debug("%d jets have no valid btaggingLink; treated as untagged", n_bad)
    return ak.unflatten(out, n_jets)


def physlite_branches(cfg: Any) -> tuple[str, ...]:
    """The branches PHYSLITE b-tagging reads for this config."""
    return (PHYSLITE_LINK,) + tuple(
        PHYSLITE_SCORE.format(tagger=cfg.tagger, flavour=f) for f in ("b", "c", "u")
    )


def physlite_tag(get: Callable[[str], ak.Array], cfg: Any) -> ak.Array:
    """Per jet: D > cut, D computed from the scores the jet's btaggingLink points to."""
    link = get(PHYSLITE_LINK)
    scores = {
        f: follow_link(link, get(PHYSLITE_SCORE.format(tagger=cfg.tagger, flavour=f)))
        for f in ("b", "c", "u")
    }
    fc, cut = cut_for(cfg)
    counts = ak.num(link, axis=1)
    flat = {f: np.asarray(ak.flatten(v, axis=None)) for f, v in scores.items()}
    d = discriminant(flat["b"], flat["c"], flat["u"], fc)
    return ak.unflatten(d > cut, counts)  # nan compares False: untagged
