"""Post-processing of the accumulated fine histograms: cuts, peak removal, main/outlier split,
rebinning, names, and what BumpNet would reject."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import hist
import numpy as np

from processor.config import Config
from processor.output.naming import bumpnet_view, outlier_name, roi_name
from processor.physics.histograms import MassGrid

#: BumpNet's loader requirements (DESIGN §3)
BUMPNET_MIN_BINS = 25
BUMPNET_MIN_ENTRIES = 100


@dataclass
class Spectrum:
    """One (final state, combination) spectrum after post-processing."""

    fs: str
    combo: str
    roi_name: str
    outlier_name: str
    roi: hist.Hist | None = None
    outliers: hist.Hist | None = None
    #: ROI start (peak-bin left edge), main/outlier split edge (None: no split), last filled edge
    lo: float | None = None
    split: float | None = None
    hi: float | None = None
    #: content removed by each step (sum of weights)
    removed: dict[str, float] = field(default_factory=dict)
    #: why BumpNet would reject the ROI histogram (empty list: accepted)
    rejected: list[str] = field(default_factory=list)
    #: number of fills (raw entries) in the ROI / outlier histogram (ROOT's fEntries)
    roi_entries: float | None = None
    outlier_entries: float | None = None


@dataclass
class PostProcessResult:
    """Everything post-processing produced for one sample group."""

    spectra: list[Spectrum]
    kept_fs: dict[str, int]
    dropped_fs: dict[str, int]
    collisions: list[list[str]]
    overflow: dict[str, float]


def same_flavour_pair(combo: str) -> bool:
    """Whether a combination holds at least two electrons or two muons."""
    letters = re.findall(r"([a-z])\d+", combo)
    return letters.count("e") >= 2 or letters.count("m") >= 2


def _to_hist(
    values: np.ndarray, variances: np.ndarray, lo: float, width: float, weighted: bool
) -> hist.Hist:
    axis = hist.axis.Regular(
        len(values), lo, lo + len(values) * width, name="mass", label="m [GeV]"
    )
    h = hist.Hist(axis, storage=hist.storage.Weight() if weighted else hist.storage.Double())
    if weighted:
        view = h.view()
        view.value[...] = values
        view.variance[...] = variances
    else:
        h.view()[...] = values
    return h


def _group_sum(arr: np.ndarray, start: int, n_groups: int, size: int) -> np.ndarray:
    """Sums of ``n_groups`` consecutive groups of ``size`` bins starting at ``start``."""
    stop = start + n_groups * size
    padded = np.zeros(n_groups * size)
    chunk = arr[start:stop]
    padded[: len(chunk)] = chunk
    return padded.reshape(n_groups, size).sum(axis=1)


def process_spectrum(
    fs: str,
    combo: str,
    h: hist.Hist,
    grid: MassGrid,
    config: Config,
    weighted: bool,
    fills: hist.Hist | None = None,
) -> Spectrum:
    """Apply the cuts, peak removal and outlier split to one fine histogram, and rebin.

    ``fills`` (per-bin fill counts of a weighted histogram) gives the real entry counts of the
    ROI and outlier histograms; without it the contents are the counts (unweighted/unit weights).
    """
    pp = config.post_processing_task_config
    out_cfg = config.histogram_creation_task_config
    width = out_cfg.bin_width_gev
    bumpnet = out_cfg.use_bumpnet_naming
    spec = Spectrum(
        fs, combo, roi_name(fs, combo, width, bumpnet), outlier_name(fs, combo, width, bumpnet)
    )
    view = h.view(flow=True)
    values = np.array(view.value if weighted else view, dtype=np.float64)
    variances = np.array(view.variance if weighted else view, dtype=np.float64)
    spec.removed["overflow"] = float(values[-1] + values[0])
    values, variances = values[1:-1].copy(), variances[1:-1].copy()
    counts = (
        np.array(fills.view(flow=True), dtype=np.float64)[1:-1]
        if fills is not None
        else values.copy()
    )
    f = grid.width
    edges_lo = np.arange(grid.n_bins) * f

    def cut(mask: np.ndarray, reason: str) -> None:
        spec.removed[reason] = float(values[mask].sum())
        values[mask] = 0.0
        variances[mask] = 0.0
        counts[mask] = 0.0

    if pp.z_peak_cut and same_flavour_pair(combo):
        cut(edges_lo < pp.z_peak_cut_gev - 1e-9, "z_peak_cut")
    if pp.max_mass_cut:
        cut(edges_lo >= pp.max_mass_gev - 1e-9, "max_mass_cut")
    filled = (values != 0) | (variances != 0)
    if not filled.any():
        spec.rejected.append("empty after cuts")
        return spec
    r_peak = int(round(pp.peak_bin_width_gev / f))
    n_coarse = math.ceil(grid.n_bins / r_peak)
    coarse = _group_sum(values, 0, n_coarse, r_peak)
    coarse_filled = _group_sum(filled.astype(np.float64), 0, n_coarse, r_peak) > 0
    if pp.peak_removal:
        start = int(np.flatnonzero(coarse == coarse.max())[-1])
    else:
        start = int(np.flatnonzero(coarse_filled)[0])
    lo_bin = start * r_peak
    cut(np.arange(grid.n_bins) < lo_bin, "peak_removal")
    last_fine = int(np.flatnonzero(filled)[-1])
    spec.lo, spec.hi = lo_bin * f, (last_fine + 1) * f
    split_bin = None
    if pp.split_outliers:
        empty_after = np.flatnonzero(~coarse_filled[start:])
        if len(empty_after) and empty_after[0] > 1:
            split_bin = (start + int(empty_after[0])) * r_peak
    r_out = int(round(width / f))
    main_end = split_bin if (split_bin is not None and out_cfg.exclude_outliers) else last_fine + 1
    main_vals = values.copy()
    main_vars = variances.copy()
    main_vals[main_end:] = 0.0
    main_vars[main_end:] = 0.0
    n_out = max(1, math.ceil((main_end - lo_bin) / r_out))
    spec.roi = _to_hist(
        _group_sum(main_vals, lo_bin, n_out, r_out),
        _group_sum(main_vars, lo_bin, n_out, r_out),
        spec.lo,
        width,
        weighted,
    )
    spec.roi_entries = float(counts[lo_bin:main_end].sum())
    if split_bin is not None:
        spec.split = split_bin * f
        if out_cfg.exclude_outliers and last_fine + 1 > split_bin:
            n_tail = math.ceil((last_fine + 1 - split_bin) / r_out)
            spec.outliers = _to_hist(
                _group_sum(values, split_bin, n_tail, r_out),
                _group_sum(variances, split_bin, n_tail, r_out),
                spec.split,
                width,
                weighted,
            )
            spec.outlier_entries = float(counts[split_bin : last_fine + 1].sum())
    spec.rejected = bumpnet_rejections(spec.roi, spec.roi_entries)
    return spec


def bumpnet_rejections(h: hist.Hist, entries: float | None = None) -> list[str]:
    """Reasons BumpNet's loader would skip this histogram (DESIGN §3).

    ``entries``: the number of fills (a weighted histogram's contents are a sum of weights,
    not its entry count); default: the sum of the contents.
    """
    values = h.values()
    n_entries = float(values.sum()) if entries is None else float(entries)
    reasons = []
    if len(values) < BUMPNET_MIN_BINS:
        reasons.append(f"{len(values)} bins < {BUMPNET_MIN_BINS}")
    if n_entries < BUMPNET_MIN_ENTRIES:
        reasons.append(f"{n_entries:g} entries < {BUMPNET_MIN_ENTRIES}")
    if len(values) and not values[0] > 0:
        reasons.append("first bin is not > 0")
    return reasons


def category_collisions(names: list[str]) -> list[list[str]]:
    """Groups of ROI names that BumpNet's category parser cannot tell apart (photon/tau counts)."""
    seen: dict[tuple, list[str]] = defaultdict(list)
    for name in names:
        seen[bumpnet_view(name)].append(name)
    return [sorted(group) for group in seen.values() if len(group) > 1]


def postprocess(
    hists: Mapping[tuple[str, str], hist.Hist],
    fs_events: Mapping[str, int],
    grid: MassGrid,
    config: Config,
    weighted: bool,
    fills: Mapping[tuple[str, str], hist.Hist] | None = None,
) -> PostProcessResult:
    """Post-process one sample group's accumulated histograms (never a single chunk's);
    ``fills``: per-bin fill counts of weighted histograms (the real entry counts)."""
    min_events = config.mass_calculation_task_config.min_events_per_fs
    kept = {fs: n for fs, n in fs_events.items() if n >= min_events}
    dropped = {fs: n for fs, n in fs_events.items() if n < min_events}
    spectra = []
    overflow: dict[str, float] = {}
    for (fs, combo), h in sorted(hists.items()):
        if fs not in kept:
            continue
        spec = process_spectrum(
            fs, combo, h, grid, config, weighted, (fills or {}).get((fs, combo))
        )
        if spec.removed.get("overflow"):
            overflow[spec.roi_name] = spec.removed["overflow"]
        spectra.append(spec)
    use_bumpnet = config.histogram_creation_task_config.use_bumpnet_naming
    roi_names = [s.roi_name for s in spectra if s.roi is not None]
    collisions = category_collisions(roi_names) if use_bumpnet else []
    return PostProcessResult(spectra, kept, dropped, collisions, overflow)


def postprocess_groups(out: Mapping[str, Any], config: Config) -> dict[str, PostProcessResult]:
    """Post-process every sample group of an accumulator (``tasks.do_post_processing`` off:
    every final state is kept and nothing is written)."""
    grid = MassGrid.from_config(config.mass_calculation_task_config)
    weighted = config.mass_calculation_task_config.weighting == "mc"
    results: dict[str, PostProcessResult] = {}
    for group, content in sorted(out["groups"].items()):
        if config.tasks.do_post_processing:
            results[group] = postprocess(
                content["hists"],
                content["fs_events"],
                grid,
                config,
                weighted,
                content.get("fills"),
            )
        else:
            results[group] = PostProcessResult([], dict(content["fs_events"]), {}, [], {})
    return results
