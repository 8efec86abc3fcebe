"""ROOT output: the BumpNet file and the raw fine-grid file, written atomically, and read back."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hist
import numpy as np
import uproot

from processor.fsutil import atomic_path
from processor.output.naming import fs_count_name, parse_fs_count_name, parse_raw_name, raw_name
from processor.output.postprocess import PostProcessResult
from processor.physics.analysis import CUTFLOW_STEPS
from processor.physics.histograms import MassGrid


def bumpnet_filename(hist_cfg: Any, group: str) -> str:
    """BumpNet file name of a sample group from ``histogram_creation_task_config``
    (``output_file``; MC gets an ``_mc`` suffix)."""
    name = hist_cfg.output_file
    return name if group == "data" else name.replace(".root", f"_{group}.root")


#: subdirectory of a group in the raw file holding the per-bin fill counts of weighted histograms
FILLS_DIR = "fills"


def _set_member(obj: Any, name: str, value: float) -> bool:
    if name in obj._members:
        obj._members[name] = value
        return True
    return any(_set_member(base, name, value) for base in obj._bases)


def to_th1(h: hist.Hist, entries: float | None = None) -> Any:
    """A hist as uproot's TH1D with ROOT's statistics right for Weight storage.

    uproot's conversion puts the sum of weights into both ``fEntries`` and ``fTsumw2``; here
    ``fEntries`` is the number of fills (``entries``, default: the contents' sum) and ``fTsumw2``
    is the sum of squared weights (the in-range variances), so ``GetEntries()`` and
    ``GetEffectiveEntries()`` are right in ROOT.
    """
    th1 = uproot.to_writable(h)
    view = h.view(flow=False)
    weighted = view.dtype.names is not None and "variance" in view.dtype.names
    values = np.asarray(view["value"] if weighted else view, dtype=np.float64)
    n = float(values.sum()) if entries is None else float(entries)
    if not weighted and entries is None:
        n = float(np.asarray(h.view(flow=True), dtype=np.float64).sum())
    _set_member(th1, "fEntries", n)
    if weighted:
        _set_member(th1, "fTsumw2", float(np.asarray(view["variance"], dtype=np.float64).sum()))
    return th1


def write_bumpnet_file(path: str | Path, result: PostProcessResult) -> list[str]:
    """Write the ROI histograms (and outlier tails under their own names); return the keys.

    ``fEntries`` of each histogram is its number of fills (also for weighted MC)."""
    keys = []
    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        for spec in result.spectra:
            if spec.roi is not None:
                f[spec.roi_name] = to_th1(spec.roi, spec.roi_entries)
                keys.append(spec.roi_name)
            if spec.outliers is not None:
                f[spec.outlier_name] = to_th1(spec.outliers, spec.outlier_entries)
                keys.append(spec.outlier_name)
    return keys


def _count_hist(n_events: float, sumw: float) -> hist.Hist:
    h = hist.Hist(hist.axis.Regular(2, 0, 2, name="count", label="raw events | sum of weights"))
    h.view()[:] = [n_events, sumw]
    return h


def _cutflow_hist(cutflow: Mapping[str, int]) -> hist.Hist:
    h = hist.Hist(hist.axis.Regular(len(CUTFLOW_STEPS), 0, len(CUTFLOW_STEPS), name="step"))
    h.view()[:] = [cutflow.get(s, 0) for s in CUTFLOW_STEPS]
    return h


def write_raw_file(
    path: str | Path, groups: Mapping[str, Mapping[str, Any]], cutflow: Mapping[str, int]
) -> int:
    """Write every fine histogram and final-state count, per sample group directory.

    Layout: ``<group>/raw_mass_<combo>_cat_<category>`` (fine grid), ``<group>/nevents_cat_<category>``
    (2 bins: raw events, sum of weights), for weighted histograms ``<group>/fills/raw_mass_...``
    (fills per bin; ``fEntries`` of the weighted one is their sum) and ``cutflow`` (steps of
    CUTFLOW_STEPS). Every object is a TH1D, so ROOT's ``hadd`` adds two runs correctly. Returns
    the number of histograms.
    """
    n = 0
    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        for group, content in groups.items():
            fills = content.get("fills") or {}
            for (fs, combo), h in sorted(content["hists"].items()):
                count = fills.get((fs, combo))
                entries = None if count is None else float(count.sum(flow=True))
                f[f"{group}/{raw_name(fs, combo)}"] = to_th1(h, entries)
                if count is not None:
                    f[f"{group}/{FILLS_DIR}/{raw_name(fs, combo)}"] = to_th1(
                        hist.Hist(
                            count.axes[0],
                            storage=hist.storage.Double(),
                            data=count.view(flow=True).astype(np.float64),
                        )
                    )
                n += 1
            for fs, count in sorted(content["fs_events"].items()):
                f[f"{group}/{fs_count_name(fs)}"] = _count_hist(
                    count, content["fs_sumw"].get(fs, count)
                )
        f["cutflow"] = _cutflow_hist(cutflow)
    return n


def read_raw_file(
    path: str | Path, grid: MassGrid
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Read a raw file back into the processor's group structure and the cutflow."""
    groups: dict[str, dict[str, Any]] = {}
    with uproot.open(path) as f:
        cutflow_values = f["cutflow"].values()
        cutflow = {s: int(round(v)) for s, v in zip(CUTFLOW_STEPS, cutflow_values, strict=True)}
        for key, classname in f.classnames(recursive=True).items():
            if "/" not in key or not classname.startswith("TH1"):
                continue
            group, name = key.split(";")[0].split("/", 1)
            content = groups.setdefault(group, {"hists": {}, "fs_events": {}, "fs_sumw": {}})
            obj = f[key]
            if name.startswith(FILLS_DIR + "/raw_mass_"):
                counts = np.rint(obj.values(flow=True)).astype(np.int64)
                c = MassGrid(grid.width, grid.mass_max).make_counts()
                c.view(flow=True)[...] = counts
                content.setdefault("fills", {})[parse_raw_name(name.split("/", 1)[1])] = c
            elif name.startswith("raw_mass_"):
                h = obj.to_hist()
                axis = h.axes[0]
                if len(axis) != grid.n_bins or not np.isclose(axis.edges[-1], grid.mass_max):
                    raise ValueError(
                        f"{path}: {name} has {len(axis)} bins up to {axis.edges[-1]} GeV, but the "
                        f"config's fine grid is {grid.n_bins} bins up to {grid.mass_max} GeV; use "
                        "the same mass_calculation_task_config fine binning as the run"
                    )
                content["hists"][parse_raw_name(name)] = h
            elif name.startswith("nevents_cat_"):
                fs = parse_fs_count_name(name)
                raw_n, sumw = obj.values()
                content["fs_events"][fs] = int(round(raw_n))
                content["fs_sumw"][fs] = float(sumw)
    return groups, cutflow
