"""MC datasets onto BumpNet's SM process groups (VV, Zee, ..., singletop) by their metadata."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

#: BumpNet's SM groups: stack components named ``<group>_roi`` count as SM in its loader.
SM_GROUPS = ("VV", "Zee", "Zmumu", "Ztautau", "Wlnu", "Wtaunu", "ttbar", "ttX", "ttXX", "singletop")

#: Default mapping: group -> regular expressions searched (case-insensitive) in a dataset's
#: physics_short, then in its metadata "process". Groups are tried in this order and the first
#: match wins, so the more specific groups (ttXX before ttX before ttbar) come first. Written
#: for the physics_short names of the 2025e and 2020e releases, e.g.
#: ``Sh_2211_Zee_maxHTpTV2_BFilter`` -> Zee, ``PhPy8EG_A14_ttbar_hdamp258p75_nonallhad`` -> ttbar,
#: ``MadGraphPythia8EvtGen_A14NNPDF23_ttbarWW`` -> ttXX, ``Sh_2212_llll`` -> VV. Higgs and BSM
#: samples match nothing on purpose: they keep their own name (BumpNet counts them as BSM).
DEFAULT_MC_GROUPS: dict[str, list[str]] = {
    "ttXX": [r"tt(bar)?(WW|WZ|ZZ|HH|tt)(?![a-z])", r"(^|_)(SM)?4tops?", r"(^|_)tttt"],
    "ttX": [
        r"(^|_)tt(bar)?(W|Z|H\d+|gamma|y|ee|mumu|tautau|ll)",
        r"(^|_)t(W)?Zq?(_|$)",
        r"(^|_)tWZ",
    ],
    "singletop": [
        r"single_?(anti)?top",
        r"(^|_)[st]chan",
        r"(^|_)(tW|Wt)(_|$)",
        r"(^|_)tW_",
    ],
    "ttbar": [r"ttbar", r"(^|_)tt_"],
    "Ztautau": [r"(^|_)Z(tautau|tt)(_|$)", r"(^|_)Ztautau"],
    "Zee": [r"(^|_)Zee"],
    "Zmumu": [r"(^|_)Z(mumu|mm)(_|$)", r"(^|_)Zmumu"],
    "Wtaunu": [r"(^|_)W(plus|minus)?taunu"],
    "Wlnu": [r"(^|_)W(plus|minus)?(e|mu|l)nu"],
    "VV": [
        r"(^|_)(llll|lllv|llvv|lvvv|vvvv|lllljj|llvvjj|lllvjj)(_|$)",
        r"(^|_)[WZ](p|m)?(qq|lv|ll|vv)[WZ](p|m)?(qq|lv|ll|vv)",
        r"(^|_)(ZZ|WW|WZ|VV|WWW|WWZ|WZZ|ZZZ|VVV)(_|$)",
    ],
}

_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def component_name(text: str) -> str:
    """A name usable as a ROOT object name: anything but letters, digits, ``_.+-`` -> ``_``."""
    return _SAFE.sub("_", text).strip("_") or "unknown"


@lru_cache(maxsize=16)
def _compiled(items: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[tuple[str, tuple], ...]:
    return tuple((g, tuple(re.compile(p, re.IGNORECASE) for p in ps)) for g, ps in items)


def _frozen(mapping: Mapping[str, Sequence[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((g, tuple(ps)) for g, ps in mapping.items())


def mc_group(
    physics_short: str | None,
    process: str | None = None,
    dsid: int | str | None = None,
    mapping: Mapping[str, Sequence[str]] | None = None,
    fallback: str = "mc",
) -> str:
    """The process group of an MC dataset: the first group one of whose patterns is found in
    ``physics_short`` (then in ``process``); unmapped datasets keep their own name
    (physics_short, else ``mc_<dsid>``, else ``fallback``)."""
    table = _compiled(_frozen(DEFAULT_MC_GROUPS if mapping is None else mapping))
    for text in (physics_short, process):
        if not text:
            continue
        for group, patterns in table:
            if any(p.search(str(text)) for p in patterns):
                return group
    if physics_short:
        return component_name(str(physics_short))
    if dsid not in (None, ""):
        return f"mc_{dsid}"
    return component_name(fallback)


def group_of_metadata(
    metadata: Mapping[str, Any], mapping: Mapping[str, Sequence[str]] | None = None
) -> str:
    """:func:`mc_group` of a coffea chunk's dataset metadata."""
    return mc_group(
        metadata.get("physics_short"),
        metadata.get("process"),
        metadata.get("dsid"),
        mapping,
        fallback=str(metadata.get("dataset", "mc")),
    )


def validate_mapping(mapping: Mapping[str, Sequence[str]]) -> None:
    """Raise ValueError naming the group and pattern that is not usable."""
    for group, patterns in mapping.items():
        if component_name(group) != group:
            raise ValueError(
                f"group name {group!r} must use only letters, digits and _.+- (it names ROOT objects)"
            )
        if not patterns:
            raise ValueError(
                f"group {group!r} has no patterns; list at least one regular expression"
            )
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(
                    f"group {group!r}: {p!r} is not a regular expression ({exc})"
                ) from None
