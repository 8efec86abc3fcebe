"""ROOT output: the BumpNet file and the raw fine-grid file, written atomically, and read back."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hist
import numpy as np
import uproot

from processor.errors import FormatError
from processor.fsutil import atomic_path
from processor.output.naming import (
    OUTLIER_PREFIX,
    VIEWS,
    fs_count_name,
    parse_fs_count_name,
    parse_raw_name,
    raw_name,
)
from processor.output.postprocess import PostProcessResult
from processor.output.stacks import (
    FALLBACK_DIR,
    WRITER_FALLBACK,
    WRITER_STACKS,
    Item,
    component_key,
    components_by_view,
    pyroot_available,
    write_with_pyroot,
)
from processor.physics.analysis import CUTFLOW_STEPS
from processor.physics.histograms import MassGrid

log = logging.getLogger(__name__)

#: subdirectory of a group in the raw file holding the per-bin fill counts of weighted histograms
FILLS_DIR = "fills"
#: subdirectory of a group in the raw file holding its per-process fine histograms (MC by process)
RAW_COMPONENTS_DIR = "by_process"


def bumpnet_filename(hist_cfg: Any, group: str) -> str:
    """BumpNet file name of a sample group from ``histogram_creation_task_config``
    (``output_file``; MC gets an ``_mc`` suffix)."""
    name = hist_cfg.output_file
    return name if group == "data" else name.replace(".root", f"_{group}.root")


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


@dataclass
class BumpNetFile:
    """What was written to one BumpNet file."""

    keys: list[str]
    #: how MC by process was written: WRITER_STACKS, WRITER_FALLBACK, or None (plain TH1s)
    writer: str | None
    #: process groups appearing as components
    components: list[str]


def bumpnet_items(
    result: PostProcessResult, views: tuple[str, ...], by_process: bool
) -> Iterator[Item]:
    """The keys of a BumpNet file in order: per spectrum its views (raw, rebinned, ROI), then
    its outlier tail; blacklisted spectra and spectra without a ROI are left out."""
    for spec in result.spectra:
        if spec.roi is None or spec.blacklisted:
            continue
        hists = spec.views()
        for view in (*[v for v in VIEWS if v in views], OUTLIER_PREFIX):
            h = hists.get(view)
            if h is None:
                continue
            comps = components_by_view(spec.components, view) if by_process else {}
            yield Item(spec.names[view], h, view, comps, spec.entries_by_view.get(view))


def _write_with_uproot(path: str | Path, items: list[Item]) -> list[str]:
    """Each item's sum as a TH1D under its name (``fEntries``: its fills) and, for MC by
    process, each component as ``by_process/<name>/<group>_<suffix>`` (BumpNet's loader reads
    only top-level keys starting with ``ROI``, so it sees the sums). Returns the top-level keys."""
    keys = []
    with uproot.recreate(path) as f:
        for item in items:
            f[item.name] = to_th1(item.total, item.entries)
            keys.append(item.name)
            for group, h in sorted(item.components.items()):
                f[f"{FALLBACK_DIR}/{item.name}/{component_key(group, item.view)}"] = to_th1(h)
    return keys


def write_bumpnet_file(
    path: str | Path,
    result: PostProcessResult,
    views: tuple[str, ...] = VIEWS,
    by_process: bool = True,
) -> BumpNetFile:
    """Write a sample group's BumpNet file atomically.

    Every spectrum's ``views`` (raw, rebinned, ROI) and its outlier tail (under ``outliers_…``,
    which BumpNet ignores). With ``by_process`` and per-process components (MC), each key is a
    THStack of ``<group>_roi``-style TH1Ds written with PyROOT; without PyROOT, each key is the
    sum (TH1D) and the components go to ``by_process/<key>/`` (a warning says so). ``fEntries``
    of each sum is its number of fills (also for weighted MC).
    """
    items = list(bumpnet_items(result, views, by_process))
    groups = sorted({g for item in items for g in item.components})
    writer = None
    with atomic_path(path) as tmp:
        if groups and pyroot_available():
            keys = write_with_pyroot(tmp, items)
            writer = WRITER_STACKS
        else:
            if groups:
                writer = WRITER_FALLBACK
                log.warning(
                    "%s: PyROOT is not installed, so MC by process is written as %s under "
                    "'%s/<key>/'; install the 'root' extra (pip install -e '.[root]') for "
                    "THStacks BumpNet splits into SM and BSM",
                    Path(path).name,
                    WRITER_FALLBACK,
                    FALLBACK_DIR,
                )
            keys = _write_with_uproot(tmp, items)
    return BumpNetFile(keys, writer, groups)


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
    (fills per bin; ``fEntries`` of the weighted one is their sum), for MC by process
    ``<group>/by_process/<process group>/raw_mass_…``, and ``cutflow`` (steps of
    CUTFLOW_STEPS). Every object is a TH1D, so ROOT's ``hadd`` adds two runs correctly. Returns
    the number of histograms (sums only).
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
            for proc, hists in sorted((content.get("components") or {}).items()):
                for (fs, combo), h in sorted(hists.items()):
                    f[f"{group}/{RAW_COMPONENTS_DIR}/{proc}/{raw_name(fs, combo)}"] = to_th1(h)
            for fs, count in sorted(content["fs_events"].items()):
                f[f"{group}/{fs_count_name(fs)}"] = _count_hist(
                    count, content["fs_sumw"].get(fs, count)
                )
        f["cutflow"] = _cutflow_hist(cutflow)
    return n


def _checked_fine(obj: Any, path: str | Path, name: str, grid: MassGrid) -> hist.Hist:
    """A raw-file TH1 as a hist, checked against the config's fine grid."""
    h = obj.to_hist()
    axis = h.axes[0]
    if len(axis) != grid.n_bins or not np.isclose(axis.edges[-1], grid.mass_max):
        raise FormatError(
            f"{path}: {name} has {len(axis)} bins up to {axis.edges[-1]} GeV, but the "
            f"config's fine grid is {grid.n_bins} bins up to {grid.mass_max} GeV; use "
            "the same mass_calculation_task_config fine binning as the run"
        )
    return h


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
            elif name.startswith(RAW_COMPONENTS_DIR + "/"):
                proc, name = name[len(RAW_COMPONENTS_DIR) + 1 :].split("/", 1)
                if name.startswith("raw_mass_"):
                    h = _checked_fine(obj, path, name, grid)
                    content.setdefault("components", {}).setdefault(proc, {})[
                        parse_raw_name(name)
                    ] = h
            elif name.startswith("raw_mass_"):
                content["hists"][parse_raw_name(name)] = _checked_fine(obj, path, name, grid)
            elif name.startswith("nevents_cat_"):
                fs = parse_fs_count_name(name)
                raw_n, sumw = obj.values()
                content["fs_events"][fs] = int(round(raw_n))
                content["fs_sumw"][fs] = float(sumw)
    return groups, cutflow
