"""The bump scan of a run: every ROI spectrum of every group, on the Dask workers when possible.

:func:`scan_tasks` collects one :class:`ScanTask` per ROI histogram (plain arrays, cheap to
ship), :func:`run_scan_task` is the pure function that scans one of them (mapped over the
workers with ``client.map`` when a Dask client is up, else called in process), and
:func:`scan_run` ties both together and adds the run's trials correction. The scan is a
classical cross-check of what BumpNet is given, not a discovery claim: see the README.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from processor.output.scanconfig import BumpScanConfig

log = logging.getLogger(__name__)

#: prefixes of the scan's histograms written beside ``ROI_...`` in the BumpNet file
ZLR_PREFIX = "zlr_"
BKG_PREFIX = "scanbkg_"
ROI_PREFIX = "ROI_"


def scan_key(prefix: str, roi_name: str) -> str:
    """``ROI_mass_X`` -> ``{prefix}mass_X`` (a name without the ROI_ prefix gets the prefix)."""
    base = roi_name[len(ROI_PREFIX) :] if roi_name.startswith(ROI_PREFIX) else roi_name
    return f"{prefix}{base}"


@dataclass(frozen=True)
class ScanTask:
    """One spectrum to scan: its ROI counts and edges, and the MC background when used."""

    group: str
    name: str
    counts: np.ndarray
    edges: np.ndarray
    sqrt_s_gev: float
    config: dict[str, Any]
    #: expected counts per ROI bin from the weighted MC (``background: mc``), else None
    mc_background: np.ndarray | None = None
    #: the ROI histogram's axis, reused for the zlr_/scanbkg_ histograms (identical binning)
    axis: Any = None


@dataclass
class ScanOutcome:
    """What :func:`run_scan_task` returns: the manifest record and the per-bin arrays."""

    group: str
    name: str
    record: dict[str, Any]
    edges: np.ndarray
    zlr: np.ndarray | None = None
    background: np.ndarray | None = None
    seconds: float = 0.0
    axis: Any = None


@dataclass
class RunScan:
    """The scan of a whole run: outcomes per group and ROI name, and the trials correction."""

    outcomes: dict[str, dict[str, ScanOutcome]] = field(default_factory=dict)
    trials: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    #: the sum of the per-spectrum scan times (on the workers: their total busy time)
    task_seconds: float = 0.0
    where: str = "in process"

    def records(self) -> dict[str, dict[str, dict[str, Any]]]:
        """group -> ROI name -> manifest record."""
        return {g: {n: o.record for n, o in d.items()} for g, d in self.outcomes.items()}


def scan_roi(
    counts: Any,
    edges: Any,
    sqrt_s_gev: float,
    *,
    config: BumpScanConfig | None = None,
    seed: int | None = None,
    mc_background: Any = None,
) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray | None, Any]:
    """Scan one ROI spectrum as the pipeline does: :func:`~processor.output.bumpscan.
    scan_spectrum` on the bins after the first ``config.skip_leading_bins`` (the turn-on at
    the ROI's peak bin), against a fit or, when given, ``mc_background`` (expected counts per
    ROI bin). Returns the manifest record (window bins counted in the full ROI, plus
    ``skipped_leading_bins``), Z_LR and background per ROI bin (0 in the skipped bins; None
    when not scanned) and the library's :class:`~processor.output.bumpscan.BumpScanResult`.
    """
    from processor.output.bumpscan import scan_spectrum

    config = config or BumpScanConfig()
    c = np.asarray(counts, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    k = min(config.skip_leading_bins, max(c.size - 1, 0))
    bkg: Any = "fit"
    if mc_background is not None:
        bkg = np.asarray(mc_background, dtype=np.float64)[k:]
    elif config.background == "mc":
        bkg = None  # the library records "no MC histogram given"
    result = scan_spectrum(c[k:], e[k:], sqrt_s_gev, background=bkg, config=config, seed=seed)
    record = result.to_dict()
    if "skipped" in record:
        return record, None, None, result
    record["skipped_leading_bins"] = k
    if record.get("window_bins"):
        record["window_bins"] = [record["window_bins"][0] + k, record["window_bins"][1] + k]
    pad = np.zeros(k)
    zlr = np.concatenate([pad, np.asarray(result.zlr, dtype=np.float64)])
    background = np.concatenate([pad, np.asarray(result.background, dtype=np.float64)])
    return record, zlr, background, result


def run_scan_task(task: ScanTask) -> ScanOutcome:
    """Scan one spectrum (pure: same task, same result; safe to run on a Dask worker)."""
    from processor.output.bumpscan import spectrum_seed

    t0 = time.perf_counter()
    config = BumpScanConfig.model_validate(task.config)
    seed = spectrum_seed(config.seed, f"{task.group}/{task.name}")
    try:
        record, zlr, background, _ = scan_roi(
            task.counts,
            task.edges,
            task.sqrt_s_gev,
            config=config,
            seed=seed,
            mc_background=task.mc_background,
        )
    except Exception as err:  # never lose a run to one spectrum
        log.exception("bump scan of %s/%s failed", task.group, task.name)
        return ScanOutcome(
            task.group,
            task.name,
            {"skipped": f"scan error: {type(err).__name__}: {err}"},
            task.edges,
            seconds=time.perf_counter() - t0,
            axis=task.axis,
        )
    return ScanOutcome(
        task.group,
        task.name,
        record,
        task.edges,
        zlr=zlr,
        background=background,
        seconds=time.perf_counter() - t0,
        axis=task.axis,
    )


def mc_on_edges(fine: Any, edges: np.ndarray, weighted: bool) -> np.ndarray:
    """A fine-grid (regular) MC histogram summed into the bins ``edges`` (multiples of its width)."""
    view = fine.view(flow=False)
    values = np.asarray(view.value if weighted else view, dtype=np.float64)
    axis = fine.axes[0]
    width = (axis.edges[-1] - axis.edges[0]) / values.size
    idx = np.clip(np.rint((np.asarray(edges) - axis.edges[0]) / width).astype(int), 0, values.size)
    cum = np.concatenate([[0.0], np.cumsum(values)])
    return cum[idx[1:]] - cum[idx[:-1]]


def scan_tasks(
    pp_groups: Mapping[str, Any],
    out: Mapping[str, Any],
    config: Any,
    sqrt_s_gev: float,
) -> list[ScanTask]:
    """One task per ROI histogram of every group (``pp_groups``: group -> post-processing
    result). With ``background: mc`` and weighted MC processed, a data spectrum's background
    is the MC of the same spectrum (``out['groups']['mc']``) summed into the data's ROI bins;
    MC spectra themselves are always scanned against a fit (the false-alarm check)."""
    scfg: BumpScanConfig = config.post_processing_task_config.bump_scan
    weighted = config.mass_calculation_task_config.weighting == "mc"
    mc_hists = out.get("groups", {}).get("mc", {}).get("hists", {}) if weighted else {}
    use_mc = scfg.background == "mc"
    if use_mc and not mc_hists:
        log.warning(
            "bump_scan.background is 'mc' but no weighted MC was processed: "
            "data spectra are scanned against a fit instead"
        )
    dump = scfg.model_dump(mode="json")
    tasks = []
    for group, pp in pp_groups.items():
        for spec in pp.spectra:
            if spec.roi is None or getattr(spec, "blacklisted", False):
                continue  # not written to the BumpNet file: nothing to scan beside
            counts = np.asarray(spec.roi.values(), dtype=np.float64)
            edges = np.asarray(spec.roi.axes[0].edges, dtype=np.float64)
            mc_bkg = None
            task_cfg = {**dump, "background": "fit"}
            if group != "mc" and use_mc and mc_hists:
                # without an MC histogram of this spectrum the scan records it as skipped
                task_cfg = dump
                fine = mc_hists.get((spec.fs, spec.combo))
                if fine is not None:
                    mc_bkg = mc_on_edges(fine, edges, weighted)
            tasks.append(
                ScanTask(
                    group,
                    spec.roi_name,
                    counts,
                    edges,
                    sqrt_s_gev,
                    task_cfg,
                    mc_bkg,
                    axis=spec.roi.axes[0],
                )
            )
    return tasks


def scan_run(
    pp_groups: Mapping[str, Any],
    out: Mapping[str, Any],
    config: Any,
    sqrt_s_gev: float,
    client: Any = None,
) -> RunScan:
    """Scan every ROI spectrum of every group (on the Dask workers when ``client`` is given)
    and correct the most significant one for the number of spectra scanned (per group)."""
    from processor.output.bumpscan import trials_correction

    scfg: BumpScanConfig = config.post_processing_task_config.bump_scan
    run = RunScan()
    if not scfg.enabled:
        return run
    t0 = time.perf_counter()
    tasks = scan_tasks(pp_groups, out, config, sqrt_s_gev)
    outcomes: list[ScanOutcome]
    if client is not None and tasks:
        run.where = "on the Dask workers"
        try:
            futures = client.map(run_scan_task, tasks, pure=False)
            outcomes = client.gather(futures)
        except Exception:
            log.exception("bump scan on the Dask workers failed; scanning in process")
            run.where = "in process"
            outcomes = [run_scan_task(t) for t in tasks]
    else:
        outcomes = [run_scan_task(t) for t in tasks]
    for o in outcomes:
        run.outcomes.setdefault(o.group, {})[o.name] = o
    for group, by_name in run.outcomes.items():
        run.trials[group] = trials_correction({n: o.record for n, o in by_name.items()}).to_dict()
    run.seconds = time.perf_counter() - t0
    run.task_seconds = sum(o.seconds for o in outcomes)
    n_scanned = sum("skipped" not in o.record for o in outcomes)
    log.info(
        "bump scan: %d of %d ROI spectra scanned (%s) in %.1f s (%.1f s summed over the tasks)",
        n_scanned,
        len(outcomes),
        run.where,
        run.seconds,
        run.task_seconds,
    )
    return run


def most_significant(
    records: Mapping[str, Mapping[str, Mapping[str, Any]]], n: int = 5
) -> list[tuple[str, str, dict[str, Any]]]:
    """The ``n`` scanned spectra with the smallest global p-value (ties: larger local Z)."""
    rows = [
        (g, name, dict(r))
        for g, by_name in records.items()
        for name, r in by_name.items()
        if "skipped" not in r and r.get("window_gev")
    ]
    rows.sort(key=lambda t: (t[2]["global_p"], -t[2]["local_z"]))
    return rows[:n]


def format_window(group: str, name: str, r: Mapping[str, Any]) -> str:
    """One line: spectrum, window and significances."""
    lo, hi = r["window_gev"]
    bound = "≥" if r.get("global_z_is_lower_bound") else "="
    return (
        f"{group}/{name}: [{lo:g}, {hi:g}] GeV, local Z = {r['local_z']:.1f}, "
        f"global Z {bound} {r['global_z']:.1f} ({r['background']})"
    )


def _hist_from(values: np.ndarray, edges: np.ndarray, label: str, axis: Any = None) -> Any:
    """A histogram of ``values`` on ``axis`` (the ROI's own, so that ROOT sees the same binning)
    or, without it, on ``edges``."""
    import hist

    if axis is None:
        axis = hist.axis.Variable(edges, name="mass", label="mass [GeV]")
    h = hist.Hist(axis, label=label)
    h.view()[:] = values
    return h


def add_scan_histograms(path: str | Path, outcomes: Mapping[str, ScanOutcome]) -> list[str]:
    """Add ``zlr_mass_…`` (Z_LR per bin) and ``scanbkg_mass_…`` (the scan's background per bin)
    beside each scanned ``ROI_mass_…`` of the BumpNet file ``path``; return the keys added.

    The file is updated as a copy that replaces the original only when complete (whatever
    wrote it, uproot or PyROOT); BumpNet's loader reads only ``ROI_`` keys.
    """
    import shutil

    import uproot

    from processor.fsutil import atomic_path
    from processor.output.rootfiles import to_th1

    items = {n: o for n, o in outcomes.items() if o.zlr is not None and o.background is not None}
    if not items:
        return []
    keys = []
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)
        with uproot.update(tmp) as f:
            for name, o in sorted(items.items()):
                for prefix, values, label in (
                    (ZLR_PREFIX, o.zlr, "Z_LR"),
                    (BKG_PREFIX, o.background, "scan background"),
                ):
                    key = scan_key(prefix, name)
                    h = _hist_from(np.asarray(values, float), o.edges, label, o.axis)
                    f[key] = to_th1(h)
                    keys.append(key)
    return keys
