"""The MC of each data spectrum on that spectrum's ROI bins, for the data-vs-MC pages.

A data spectrum and the MC spectrum of the same final state and combination have their own ROI
(peak-removal edge, outlier split and bin width are found per sample group), so the MC is taken
from the run's raw file: the fine-grid MC histogram, and one per process where the run kept MC
by process (``mc/by_process/<process>/raw_mass_...``), summed into the data ROI's bins. Without
the raw file, the MC ROI of the BumpNet file (a THStack, or the sum plus ``by_process/<key>/``)
is used where its bins line up with the data's. Everything is read from the run directory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import uproot

from processor.output.plotstyle import Hist1D, SpectrumView
from processor.output.stacks import read_components, summed_values

logger = logging.getLogger(__name__)

#: the sample group holding the MC (the runner's name)
MC_GROUP = "mc"
#: directory of per-process fine histograms in a raw file's group (rootfiles.RAW_COMPONENTS_DIR)
RAW_BY_PROCESS = "by_process"


def is_data(group: str) -> bool:
    """Whether a sample group is collision data (everything but the MC group)."""
    return group != MC_GROUP


def rebin_to(h: Hist1D, edges: np.ndarray) -> Hist1D | None:
    """``h`` summed into the bins ``edges`` (None where an edge is not one of ``h``'s or lies
    outside its range). The flow of the result is ``h``'s own flow (entries beyond ``h``'s
    range), not what falls outside ``edges``."""
    src = np.asarray(h.edges, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if len(edges) < 2 or edges[0] < src[0] - 1e-9 or edges[-1] > src[-1] + 1e-9:
        return None
    idx = np.clip(
        np.searchsorted(src, edges - 1e-9 * np.maximum(1.0, np.abs(edges))), 0, len(src) - 1
    )
    if not np.allclose(src[idx], edges, rtol=1e-9, atol=1e-9) or np.any(np.diff(idx) <= 0):
        return None
    stop = int(idx[-1])
    values = np.add.reduceat(h.values[:stop], idx[:-1])
    variances = np.add.reduceat(h.variances[:stop], idx[:-1])
    return Hist1D(values, variances, edges.copy(), h.flow)


def read_th1(directory: Any, name: str) -> Hist1D | None:
    """A TH1 of an open uproot file with its flow, or a THStack's components summed (its
    flow not kept); None if absent."""
    try:
        obj = directory[name]
    except (KeyError, uproot.KeyInFileError):
        return None
    values, variances, edges = summed_values(obj)
    flow = (0.0, 0.0)
    if getattr(obj, "classname", "") != "THStack":
        try:
            full = obj.values(flow=True)
            flow = (float(full[0]), float(full[-1]))
        except Exception:  # no flow bins
            pass
    return Hist1D(
        np.asarray(values, dtype=np.float64),
        np.asarray(variances, dtype=np.float64),
        np.asarray(edges, dtype=np.float64),
        flow,
    )


def _processes(manifest: Mapping[str, Any], raw_file: Any) -> list[str]:
    """MC process groups of the run: the manifest's list, else the raw file's directories."""
    entry = (manifest.get("histograms") or {}).get(MC_GROUP) or {}
    listed = (entry.get("mc_by_process") or {}).get("components") or []
    if listed:
        return sorted(str(p) for p in listed)
    if raw_file is None:
        return []
    try:
        return sorted(raw_file[f"{MC_GROUP}/{RAW_BY_PROCESS}"].keys(cycle=False, recursive=False))
    except Exception:
        return []


def _from_raw(raw_file: Any, raw_key: str, processes: list[str], edges: np.ndarray) -> tuple:
    """(sum, {process: part}) of the MC fine histograms on ``edges``; (None, {}) if absent."""
    fine = read_th1(raw_file, f"{MC_GROUP}/{raw_key}")
    if fine is None:
        return None, {}
    total = rebin_to(fine, edges)
    parts: dict[str, Hist1D] = {}
    for proc in processes:
        h = read_th1(raw_file, f"{MC_GROUP}/{RAW_BY_PROCESS}/{proc}/{raw_key}")
        if h is not None and (part := rebin_to(h, edges)) is not None:
            parts[proc] = part
    return total, parts


def _from_bumpnet(mc_file: Any, roi_name: str, edges: np.ndarray) -> tuple:
    """(sum, {process: part}) from the MC ROI of the BumpNet file where its bins line up."""
    roi = read_th1(mc_file, roi_name)
    total = rebin_to(roi, edges) if roi is not None else None
    if total is None:
        return None, {}
    parts: dict[str, Hist1D] = {}
    try:
        comps = read_components(mc_file, roi_name)
    except Exception:
        comps = {}
    for name, values in comps.items():
        proc = name.rsplit("_", 1)[0] if name.endswith("_roi") else name
        v = np.asarray(values, dtype=np.float64)
        part = rebin_to(Hist1D(v, v.copy(), roi.edges), edges) if roi is not None else None
        if part is not None:
            part.variances = np.zeros_like(part.values)  # only the sum's variances are kept
            parts[proc] = part
    return total, parts


def attach_mc(
    spectra: Mapping[str, list[SpectrumView]],
    manifest: Mapping[str, Any],
    raw_file: Any,
    mc_file: Any,
    raw_key: Any,
) -> None:
    """Give every data spectrum its MC (``view.mc``, ``view.mc_parts``) when the run has MC
    spectra; a data spectrum without MC gets ``view.mc_note`` saying why. ``raw_key`` maps a
    manifest spectrum to its raw-file name."""
    mc_views = spectra.get(MC_GROUP) or []
    if not mc_views:
        return
    mc_specs = {
        (str(s.get("fs", "")), str(s.get("combo", ""))): s
        for s in ((manifest.get("histograms") or {}).get(MC_GROUP) or {}).get("spectra") or []
    }
    processes = _processes(manifest, raw_file)
    for group, views in spectra.items():
        if not is_data(group):
            continue
        specs = ((manifest.get("histograms") or {}).get(group) or {}).get("spectra") or []
        for view, spec in zip(views, specs, strict=False):
            view.with_mc = True
            if view.roi is None:
                view.mc_note = "no ROI histogram"
                continue
            total, parts = None, {}
            try:
                if raw_file is not None:
                    total, parts = _from_raw(raw_file, raw_key(spec), processes, view.roi.edges)
                mc_spec = mc_specs.get((view.fs, view.combo))
                if total is None and mc_file is not None and mc_spec and mc_spec.get("roi_name"):
                    total, parts = _from_bumpnet(mc_file, str(mc_spec["roi_name"]), view.roi.edges)
            except Exception as exc:  # one unreadable MC histogram must not stop the plots
                logger.warning("cannot read the MC of %s: %s", view.roi_name, exc)
                total, parts = None, {}
            if total is None:
                view.mc_note = "no MC for this final state and combination"
                continue
            view.mc = total
            view.mc_parts = parts
