"""Per-event MC weights (DESIGN §4); data events weigh 1."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import awkward as ak
import numpy as np

from processor.opendata.formats import Format, FormatError
from processor.opendata.releases import format_luminosity_pb


def luminosity_pb(fmt: Format, override: float | None) -> float:
    """Integrated luminosity used for MC normalisation, pb^-1."""
    if override is not None:
        return float(override)
    return format_luminosity_pb(fmt.name)


def default_scale_factors(fmt: Format, btagging: bool) -> tuple[str, ...]:
    """Scale-factor branches multiplied in by default (b-tag ones only with b-tagging on)."""
    sfs = tuple(s for s in fmt.scale_factors if "BTAG" not in s)
    if btagging:
        sfs += ("ScaleFactor_FTAG",) if fmt.name == "2025e" else ("scaleFactor_BTAG",)
    return sfs


def weight_branches(fmt: Format, scale_factors: tuple[str, ...]) -> list[str]:
    """Branches MC weighting reads for a format."""
    base = {
        "2025e": ["mcWeight", "xsec", "kfac", "filteff", "sum_of_weights"],
        "2020e": ["mcWeight", "XSection", "SumWeights"],
        "2016e": ["mcWeight", "XSection", "SumWeights"],
    }.get(fmt.name, [fmt.weight_branch or ""])
    return [*base, *scale_factors]


def mc_weights(
    get: Callable[[str], ak.Array],
    fmt: Format,
    metadata: Mapping[str, Any],
    *,
    lumi_pb: float,
    scale_factors: tuple[str, ...],
) -> np.ndarray:
    """Event weights of an MC chunk.

    2025e: mcWeight x xsec x kfac x filteff x prod(ScaleFactor_*) x lumi / sum_of_weights.
    2020e/2016e: mcWeight x prod(scaleFactor_*) x XSection x lumi / SumWeights.
    PHYSLITE: mcEventWeights[0] x xsec x kfac x filteff x lumi / sumw from the dataset metadata.
    """
    if fmt.name == "2025e":
        w = _np(get("mcWeight")) * _np(get("xsec")) * _np(get("kfac")) * _np(get("filteff"))
        w = w * lumi_pb / _np(get("sum_of_weights"))
    elif fmt.name in ("2020e", "2016e"):
        w = _np(get("mcWeight")) * _np(get("XSection")) * lumi_pb / _np(get("SumWeights"))
    else:
        need = ("xsec", "sumw")
        missing = [k for k in need if not metadata.get(k)]
        if missing:
            raise FormatError(
                f"{metadata.get('filename', 'PHYSLITE file')}: MC weighting needs the dataset's "
                f"{' and '.join(missing)} in the fileset metadata (PHYSLITE files do not store "
                "them); run through a release listing or set mass_calculation_task_config.weighting: none"
            )
        first = ak.firsts(get(fmt.weight_branch), axis=1)
        w = np.asarray(ak.fill_none(first, 0.0), dtype=np.float64)
        norm = float(metadata["xsec"]) * float(metadata.get("kfac") or 1.0)
        norm *= float(metadata.get("filteff") or 1.0)
        w = w * norm * lumi_pb / float(metadata["sumw"])
    for sf in scale_factors:
        w = w * _np(get(sf))
    return w


def _np(arr: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(arr), dtype=np.float64)
