"""Post-processing of the accumulated fine histograms: cuts, peak removal, main/outlier split,
rebinning, names, and what BumpNet would reject."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hist
import numpy as np

from processor.config import BumpNetCuts, Config
from processor.output.naming import (
    OUTLIER_PREFIX,
    VIEWS,
    NameStyle,
    spectrum_name,
    strip_view,
    view_name,
)
from processor.output.readiness import Verdict, category_collisions, loader_verdict
from processor.physics.histograms import MassGrid

#: BumpNet's default loader cuts (its raw_cuts; configurable: histogram_creation_task_config.bumpnet_cuts)
BUMPNET_MIN_BINS = BumpNetCuts().min_num_bins
BUMPNET_MIN_ENTRIES = BumpNetCuts().min_total_events


@dataclass
class Spectrum:
    """One (final state, combination) spectrum after post-processing."""

    fs: str
    combo: str
    #: name of each view: raw, rebinned, ROI, outliers
    names: dict[str, str]
    roi: hist.Hist | None = None
    outliers: hist.Hist | None = None
    #: full filled range at the output width (no cuts), aligned with the ROI's edges
    rebinned: hist.Hist | None = None
    #: the fine-grid histogram as accumulated
    raw: hist.Hist | None = None
    #: ROI start (peak-bin left edge), main/outlier split edge (None: no split), last filled edge
    lo: float | None = None
    split: float | None = None
    hi: float | None = None
    #: content removed by each step (sum of weights)
    removed: dict[str, float] = field(default_factory=dict)
    #: why BumpNet's loader would skip the ROI histogram (empty list: accepted)
    rejected: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    #: listed in histogram_creation_task_config.blacklist: not written
    blacklisted: bool = False
    #: MC by process: group -> view (raw, rebinned, ROI, outliers) -> histogram
    components: dict[str, dict[str, hist.Hist]] = field(default_factory=dict)
    #: number of fills (raw entries) in the ROI / outlier histogram (ROOT's fEntries); None:
    #: unweighted, the contents are the counts
    roi_entries: float | None = None
    outlier_entries: float | None = None
    #: fills of every view that has a known count (weighted histograms with fill counts)
    entries_by_view: dict[str, float] = field(default_factory=dict)

    @property
    def roi_name(self) -> str:
        """Name of the ROI view (the one BumpNet reads)."""
        return self.names["ROI"]

    @property
    def outlier_name(self) -> str:
        """Name of the outlier tail (never read by BumpNet)."""
        return self.names["outliers"]

    def views(self) -> dict[str, hist.Hist]:
        """The histograms of this spectrum by view (only those that exist)."""
        found = {"raw": self.raw, "rebinned": self.rebinned, "ROI": self.roi}
        found["outliers"] = self.outliers
        return {k: v for k, v in found.items() if v is not None}


@dataclass
class PostProcessResult:
    """Everything post-processing produced for one sample group."""

    spectra: list[Spectrum]
    kept_fs: dict[str, int]
    dropped_fs: dict[str, int]
    collisions: list[list[str]]
    overflow: dict[str, float]
    #: ROI names of blacklisted spectra (not written)
    blacklisted: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Plan:
    """Where one spectrum's views start and stop, in fine bins, decided on its total."""

    keep_lo: int  # bins below are cut (Z-peak cut, peak removal)
    keep_hi: int  # bins from here on are cut (max-mass cut)
    lo_bin: int
    main_end: int
    n_out: int
    split_bin: int | None
    n_tail: int
    reb_start: int | None
    reb_n: int
    r_out: int


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


def _rebinned_start(first: int, anchor: int, r: int) -> int:
    """First fine bin of the rebinned view: at or below ``first``, on the ROI's grid if >= 0."""
    start = anchor + ((first - anchor) // r) * r
    return start if start >= 0 else first - first % r


def process_spectrum(
    fs: str,
    combo: str,
    h: hist.Hist,
    grid: MassGrid,
    config: Config,
    weighted: bool,
    *,
    fills: hist.Hist | None = None,
    components: Mapping[str, hist.Hist] | None = None,
) -> Spectrum:
    """Apply the cuts, peak removal and outlier split to one fine histogram, rebin, and make
    its views; per-process ``components`` get exactly the same ranges and bins.

    ``fills`` (per-bin fill counts of a weighted histogram) gives the real entry counts of the
    views (ROOT's fEntries); without it the contents are the counts (unweighted/unit weights).
    """
    pp = config.post_processing_task_config
    out_cfg = config.histogram_creation_task_config
    width = out_cfg.bin_width_gev
    style = NameStyle.from_config(config)
    base = spectrum_name(fs, combo, style)
    names = {v: view_name(v, base) for v in (*VIEWS, OUTLIER_PREFIX)}
    spec = Spectrum(fs, combo, names)
    spec.raw = h
    view = h.view(flow=True)
    values = np.array(view.value if weighted else view, dtype=np.float64)
    variances = np.array(view.variance if weighted else view, dtype=np.float64)
    spec.removed["overflow"] = float(values[-1] + values[0])
    values, variances = values[1:-1].copy(), variances[1:-1].copy()
    all_counts = None if fills is None else np.array(fills.view(flow=True), dtype=np.float64)
    counts = values.copy() if all_counts is None else all_counts[1:-1].copy()
    uncut = (values != 0) | (variances != 0)
    f = grid.width
    edges_lo = np.arange(grid.n_bins) * f
    keep_lo, keep_hi = 0, grid.n_bins

    def cut(mask: np.ndarray, reason: str) -> None:
        spec.removed[reason] = float(values[mask].sum())
        values[mask] = 0.0
        variances[mask] = 0.0
        counts[mask] = 0.0

    if pp.z_peak_cut and same_flavour_pair(combo):
        mask = edges_lo < pp.z_peak_cut_gev - 1e-9
        keep_lo = int(mask.sum())
        cut(mask, "z_peak_cut")
    if pp.max_mass_cut:
        mask = edges_lo >= pp.max_mass_gev - 1e-9
        keep_hi = grid.n_bins - int(mask.sum())
        cut(mask, "max_mass_cut")
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
    n_tail = 0
    if split_bin is not None:
        spec.split = split_bin * f
        if out_cfg.exclude_outliers and last_fine + 1 > split_bin:
            n_tail = math.ceil((last_fine + 1 - split_bin) / r_out)
    first_any, last_any = np.flatnonzero(uncut)[[0, -1]]
    reb_start = _rebinned_start(int(first_any), lo_bin, r_out)
    plan = _Plan(
        keep_lo=max(keep_lo, lo_bin),
        keep_hi=keep_hi,
        lo_bin=lo_bin,
        main_end=main_end,
        n_out=max(1, math.ceil((main_end - lo_bin) / r_out)),
        split_bin=split_bin,
        n_tail=n_tail,
        reb_start=reb_start,
        reb_n=math.ceil((int(last_any) + 1 - reb_start) / r_out),
        r_out=r_out,
    )
    spec.roi, spec.outliers = _roi_and_tail(values, variances, plan, f, weighted)
    full_vals, full_vars = _fine(h, weighted)
    spec.rebinned = _rebinned(full_vals, full_vars, plan, f, weighted)
    spec.roi_entries = float(counts[lo_bin:main_end].sum())
    if spec.outliers is not None:
        spec.outlier_entries = float(counts[split_bin : last_fine + 1].sum())
    if all_counts is not None:
        reb_lo, reb_hi = plan.reb_start or 0, (plan.reb_start or 0) + plan.reb_n * r_out
        spec.entries_by_view = {
            "raw": float(all_counts.sum()),
            "rebinned": float(all_counts[1:-1][reb_lo:reb_hi].sum()),
            "ROI": spec.roi_entries,
            **({"outliers": spec.outlier_entries} if spec.outliers is not None else {}),
        }
    for group, comp in sorted((components or {}).items()):
        c_vals, c_vars = _fine(comp, weighted)
        kept_vals, kept_vars = _keep(c_vals, plan), _keep(c_vars, plan)
        roi, tail = _roi_and_tail(kept_vals, kept_vars, plan, f, weighted)
        spec.components[group] = {
            "raw": comp,
            "rebinned": _rebinned(c_vals, c_vars, plan, f, weighted),
            "ROI": roi,
            **({"outliers": tail} if tail is not None else {}),
        }
    spec.verdict = loader_verdict(spec.roi.values(), out_cfg.bumpnet_cuts)
    spec.rejected = list(spec.verdict.reasons)
    return spec


def _fine(h: hist.Hist, weighted: bool) -> tuple[np.ndarray, np.ndarray]:
    """(values, variances) of a fine histogram without flow bins, as float64 copies."""
    view = h.view(flow=False)
    values = np.array(view.value if weighted else view, dtype=np.float64)
    variances = np.array(view.variance if weighted else view, dtype=np.float64)
    return values, variances


def _keep(arr: np.ndarray, plan: _Plan) -> np.ndarray:
    """``arr`` with the bins the cuts remove set to 0."""
    out = np.zeros_like(arr)
    out[plan.keep_lo : plan.keep_hi] = arr[plan.keep_lo : plan.keep_hi]
    return out


def _roi_and_tail(
    values: np.ndarray, variances: np.ndarray, plan: _Plan, f: float, weighted: bool
) -> tuple[hist.Hist, hist.Hist | None]:
    """The ROI histogram (main part) and the outlier tail of cut fine values."""
    main_vals = values.copy()
    main_vars = variances.copy()
    main_vals[plan.main_end :] = 0.0
    main_vars[plan.main_end :] = 0.0
    width = plan.r_out * f
    roi = _to_hist(
        _group_sum(main_vals, plan.lo_bin, plan.n_out, plan.r_out),
        _group_sum(main_vars, plan.lo_bin, plan.n_out, plan.r_out),
        plan.lo_bin * f,
        width,
        weighted,
    )
    tail = None
    if plan.n_tail and plan.split_bin is not None:
        tail = _to_hist(
            _group_sum(values, plan.split_bin, plan.n_tail, plan.r_out),
            _group_sum(variances, plan.split_bin, plan.n_tail, plan.r_out),
            plan.split_bin * f,
            width,
            weighted,
        )
    return roi, tail


def _rebinned(
    values: np.ndarray, variances: np.ndarray, plan: _Plan, f: float, weighted: bool
) -> hist.Hist | None:
    """The uncut fine values over the spectrum's filled range at the output width."""
    if plan.reb_start is None or plan.reb_n <= 0:
        return None
    return _to_hist(
        _group_sum(values, plan.reb_start, plan.reb_n, plan.r_out),
        _group_sum(variances, plan.reb_start, plan.reb_n, plan.r_out),
        plan.reb_start * f,
        plan.r_out * f,
        weighted,
    )


def bumpnet_rejections(h: hist.Hist, cuts: BumpNetCuts | None = None) -> list[str]:
    """Reasons BumpNet's loader would skip this histogram (see :func:`readiness.loader_verdict`:
    like BumpNet, it sums the bin contents, so for weighted MC the total is a sum of weights)."""
    return list(loader_verdict(h.values(), cuts or BumpNetCuts()).reasons)


#: a BumpNet-grammar category (``{e}ex_{m}mx_{b}bx_{j}jx_{Z}Zx``) inside a name
_BUMPNET_CATEGORY = re.compile(r"_cat_\d+ex_\d+mx_\d+bx_\d+jx_\d+Zx(?:_|$)")
#: a zero photon / tau count part (``_0gx``, ``_0tx``) of a BumpNet-grammar name
_ZERO_G_T = re.compile(r"_0[gt]x(?=_|$)")


def _without_zero_g_t(name: str) -> str:
    """A BumpNet-grammar name without its ``_0gx`` / ``_0tx`` parts (other names unchanged).

    BumpNet's own names have no ``gx``/``tx`` at all; ours carry them whenever photons/taus are
    object types, so ``mass_m0j0_cat_0ex_1mx_0bx_1jx_0Zx`` (BumpNet's config) and
    ``mass_m0j0_cat_0ex_1mx_0bx_1jx_0Zx_0gx_0tx`` (ours) are the same spectrum.
    """
    return _ZERO_G_T.sub("", name) if _BUMPNET_CATEGORY.search(name) else name


def blacklist_matcher(blacklist: list[str]) -> Callable[[str], bool]:
    """Whether a spectrum's base name (no view prefix) is blacklisted.

    Entries are exact names as in BumpNet's configs, with or without a view prefix; a seed name's
    ``_width_{w}`` suffix may be left out, and a BumpNet-grammar entry may leave out zero photon /
    tau counts (``_0gx``, ``_0tx``), which BumpNet's own names never have: its config entry
    ``mass_m0j0_cat_0ex_1mx_0bx_1jx_0Zx`` matches our ``mass_m0j0_cat_0ex_1mx_0bx_1jx_0Zx_0gx_0tx``
    but not ``..._1gx_0tx``.
    """
    wanted = {_without_zero_g_t(strip_view(b)) for b in blacklist}

    def match(base: str) -> bool:
        return (
            _without_zero_g_t(base) in wanted
            or _without_zero_g_t(base.rsplit("_width_", 1)[0]) in wanted
        )

    return match


def unmatched_blacklist(blacklist: list[str], groups: Iterable[Mapping[str, Any]]) -> list[str]:
    """Blacklist entries that matched no spectrum of any sample group (manifest group records,
    each with its ``blacklisted`` ROI names)."""
    hit = [strip_view(n) for g in groups for n in g.get("blacklisted", [])]
    return [b for b in blacklist if not any(map(blacklist_matcher([b]), hit))]


def postprocess(
    hists: Mapping[tuple[str, str], hist.Hist],
    fs_events: Mapping[str, int],
    grid: MassGrid,
    config: Config,
    weighted: bool,
    *,
    fills: Mapping[tuple[str, str], hist.Hist] | None = None,
    components: Mapping[str, Mapping[tuple[str, str], hist.Hist]] | None = None,
) -> PostProcessResult:
    """Post-process one sample group's accumulated histograms (never a single chunk's).

    ``fills``: per-bin fill counts of weighted histograms (the real entry counts);
    ``components``: per-process fine histograms of the same group (MC by process), cut and
    binned exactly like their sum.
    """
    min_events = config.mass_calculation_task_config.min_events_per_fs
    kept = {fs: n for fs, n in fs_events.items() if n >= min_events}
    dropped = {fs: n for fs, n in fs_events.items() if n < min_events}
    hc = config.histogram_creation_task_config
    is_blacklisted = blacklist_matcher(hc.blacklist)
    spectra = []
    overflow: dict[str, float] = {}
    for (fs, combo), h in sorted(hists.items()):
        if fs not in kept:
            continue
        comps = {
            group: by_key[(fs, combo)]
            for group, by_key in (components or {}).items()
            if (fs, combo) in by_key
        }
        spec = process_spectrum(
            fs,
            combo,
            h,
            grid,
            config,
            weighted,
            fills=(fills or {}).get((fs, combo)),
            components=comps,
        )
        spec.blacklisted = is_blacklisted(strip_view(spec.roi_name))
        if spec.removed.get("overflow"):
            overflow[spec.roi_name] = spec.removed["overflow"]
        spectra.append(spec)
    roi_names = [s.roi_name for s in spectra if s.roi is not None and not s.blacklisted]
    collisions = category_collisions(roi_names) if hc.use_bumpnet_naming else []
    blacklisted = [s.roi_name for s in spectra if s.blacklisted]
    return PostProcessResult(spectra, kept, dropped, collisions, overflow, blacklisted)


def postprocess_groups(out: Mapping[str, Any], config: Config) -> dict[str, PostProcessResult]:
    """Post-process every sample group of an accumulator (``tasks.do_post_processing`` off:
    every final state is kept and nothing is written); with MC by process, each group's
    per-process components are cut and binned like their sum."""
    grid = MassGrid.from_config(config.mass_calculation_task_config)
    weighted = config.mass_calculation_task_config.weighting == "mc"
    by_process = config.histogram_creation_task_config.stacks_wanted()
    results: dict[str, PostProcessResult] = {}
    for group, content in sorted(out["groups"].items()):
        if config.tasks.do_post_processing:
            components = content.get("components") if by_process else None
            results[group] = postprocess(
                content["hists"],
                content["fs_events"],
                grid,
                config,
                weighted,
                fills=content.get("fills"),
                components=components,
            )
        else:
            results[group] = PostProcessResult([], dict(content["fs_events"]), {}, [], {})
    return results
