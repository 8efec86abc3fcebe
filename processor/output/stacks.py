"""MC by process in the BumpNet file: THStacks written with PyROOT, else TH1s with uproot."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import hist
import numpy as np

log = logging.getLogger(__name__)

#: Component name suffix per view, as in BumpNet's own file (``ttbar_copy`` is the raw view).
COMPONENT_SUFFIX = {"raw": "copy", "rebinned": "rebinned", "ROI": "roi", "outliers": "outliers"}
#: Directory holding the per-process TH1s when THStacks cannot be written (no PyROOT).
FALLBACK_DIR = "by_process"
#: Title of every written TH1 (BumpNet's own file uses "Mass").
TH1_TITLE = "Mass"
#: Set to 1 to write without PyROOT even where it is installed.
NO_PYROOT_ENV = "BUMPNET_NO_PYROOT"

WRITER_STACKS = "THStack (PyROOT)"
WRITER_FALLBACK = "one TH1 per process group plus the sum (uproot; PyROOT not available)"


@dataclass
class Item:
    """One key of the BumpNet file: a histogram and, for MC by process, its components."""

    name: str
    total: hist.Hist
    view: str
    #: process group -> histogram (empty: a plain TH1)
    components: dict[str, hist.Hist] = field(default_factory=dict)
    #: number of fills of ``total`` (ROOT's fEntries); None: ROOT's default from the contents
    entries: float | None = None


def component_key(group: str, view: str) -> str:
    """``<group>_roi`` / ``_rebinned`` / ``_copy`` (raw) / ``_outliers``."""
    return f"{group}_{COMPONENT_SUFFIX[view]}"


@lru_cache(maxsize=1)
def _import_root() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"\s*This distribution of ROOT is in alpha stage"
            )
            import ROOT
    except Exception as exc:  # ImportError, or a broken ROOT installation
        log.debug("PyROOT not usable: %s", exc)
        return None
    ROOT.gROOT.SetBatch(True)
    ROOT.TH1.AddDirectory(False)
    return ROOT


def pyroot_available() -> bool:
    """Whether PyROOT can be imported (the optional ``root`` extra) and is not switched off."""
    if os.environ.get(NO_PYROOT_ENV, "") not in ("", "0"):
        return False
    return _import_root() is not None


def _arrays(h: hist.Hist) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, variances, edges) with flow bins; Double storage: variances = values."""
    view = h.view(flow=True)
    if hasattr(view, "dtype") and view.dtype.names and "variance" in view.dtype.names:
        values, variances = np.asarray(view["value"]), np.asarray(view["variance"])
    else:
        values = np.asarray(view)
        variances = values
    n = len(h.axes[0])
    if len(values) != n + 2:  # an axis without flow bins
        pad = np.zeros(n + 2)
        pad[1:-1], values = values, pad.copy()
        pad2 = np.zeros(n + 2)
        pad2[1:-1], variances = variances, pad2
    return (
        np.ascontiguousarray(values, dtype=np.float64),
        np.ascontiguousarray(variances, dtype=np.float64),
        np.asarray(h.axes[0].edges, dtype=np.float64),
    )


def _th1(root: Any, name: str, h: hist.Hist, entries: float | None = None) -> Any:
    """A ROOT TH1D with ``h``'s edges, contents and variances (flow bins included); its
    statistics recomputed from them (``entries``, when known, sets fEntries)."""
    values, variances, edges = _arrays(h)
    th1 = root.TH1D(name, TH1_TITLE, len(edges) - 1, float(edges[0]), float(edges[-1]))
    th1.SetContent(values)
    th1.Sumw2()
    th1.GetSumw2().Set(len(variances), variances)
    th1.ResetStats()
    if entries is not None:
        th1.SetEntries(float(entries))
    return th1


def write_with_pyroot(path: str | Path, items: Iterable[Item]) -> list[str]:
    """Write items with PyROOT: a THStack of ``<group>_<suffix>`` TH1Ds where an item has
    components, else a TH1D. Returns the keys written."""
    root = _import_root()
    if root is None:
        raise RuntimeError(
            "PyROOT is not importable; install the 'root' extra: pip install -e '.[root]'"
        )
    keys = []
    tfile = root.TFile.Open(str(path), "RECREATE")
    if not tfile or tfile.IsZombie():
        raise OSError(f"{path}: ROOT cannot create the file; check the directory is writable")
    try:
        for item in items:
            if item.components:
                stack = root.THStack(item.name, item.name)
                parts = [
                    _th1(root, component_key(group, item.view), h)
                    for group, h in sorted(item.components.items())
                ]
                for part in parts:
                    stack.Add(part)
                tfile.WriteObject(stack, item.name)
            else:
                tfile.WriteObject(_th1(root, item.name, item.total, item.entries), item.name)
            keys.append(item.name)
    finally:
        tfile.Close()
    return keys


def read_components(f: Any, name: str) -> dict[str, np.ndarray]:
    """Per-component bin contents of a key of an open uproot file, from a THStack or from the
    uproot fallback layout; ``{}`` for a plain TH1."""
    cls = f.classnames(cycle=False).get(name)
    if cls == "THStack":
        return {str(h.member("fName")): h.values() for h in f[name].member("fHists")}
    sub = f"{FALLBACK_DIR}/{name}"
    try:
        directory = f[sub]
    except Exception:
        return {}
    return {k: directory[k].values() for k in directory.keys(cycle=False)}


def summed_values(obj: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, variances, edges) of a TH1, or of a THStack's components summed."""
    if getattr(obj, "classname", "") == "THStack":
        parts = list(obj.member("fHists"))
        if not parts:
            raise ValueError(f"THStack {obj.member('fName')} has no components")
        values = np.sum([p.values() for p in parts], axis=0)
        variances = np.sum([_variances(p) for p in parts], axis=0)
        return values, variances, np.asarray(parts[0].axis().edges())
    return np.asarray(obj.values()), _variances(obj), np.asarray(obj.axis().edges())


def _variances(obj: Any) -> np.ndarray:
    v = obj.variances()
    return np.asarray(obj.values() if v is None else v, dtype=np.float64)


def components_by_view(
    spectrum_components: Mapping[str, Mapping[str, hist.Hist]], view: str
) -> dict[str, hist.Hist]:
    """``{group: histogram}`` of one view from ``Spectrum.components``."""
    return {g: views[view] for g, views in spectrum_components.items() if view in views}
