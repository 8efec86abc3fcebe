"""Plots of one run directory, made only from its manifest and ROOT files (``--plots-only``)."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import uproot
from matplotlib.figure import Figure

from processor.config import BumpNetCuts
from processor.errors import PlotsError, StorageError
from processor.fsutil import STORAGE_ERRNOS, default_mode, storage_error
from processor.output import summary_plots
from processor.output.manifest import raw_file_path, read_manifest
from processor.output.mc_overlay import MC_GROUP, attach_mc, read_th1
from processor.output.naming import raw_name
from processor.output.plotstyle import (  # noqa: F401  (_bytes, _duration: part of this module's helpers)
    COLOR_BAD,
    COLOR_FIT,
    COLOR_OK,
    COLOR_OUT,
    COLOR_PEAK,
    COLOR_RAW,
    COLOR_ROI,
    COLOR_SPLIT,
    COLOR_WINDOW,
    Hist1D,
    LabelInfo,
    SpectrumView,
    _atlas_label,
    _bytes,
    _duration,
    _figure,
    _fs_pretty,
    _mass_label,
    _mplhep_label,
    _rlabel,
    _save_png,
    _SharedMathtext,
    _style,
)
from processor.output.readiness import loader_summary
from processor.output.scanning import BKG_PREFIX, ZLR_PREFIX, scan_key
from processor.output.spectrum_pages import (  # noqa: F401  (helpers the tests reach through plots)
    _last_filled_edge,
    _log_limits,
    _rebin_raw,
    join_spectra_parts,
    render_spectra_pages,
    spectrum_views,
    split_views,
)
from processor.output.stacks import summed_values
from processor.output.summary_plots import (
    plot_cutflow,
    plot_final_state_counts,
    plot_processing_summary,
)

logger = logging.getLogger(__name__)

#: panels per overview PNG (a 4 x 4 grid)
OVERVIEW_PANELS = 16
#: spectra.pdf is rendered in this many parts per plotting process (load balance), then joined
PDF_PARTS_PER_PROCESS = 3
#: final states shown per group in final_state_counts.png
TOP_FINAL_STATES = summary_plots.TOP_FINAL_STATES


#: cutflow steps in display order, with their axis labels
def _read_th1(directory: Any, name: str) -> Hist1D | None:
    """A TH1 from an open uproot directory (None if absent); a THStack is summed."""
    return read_th1(directory, name)


def _raw_key(spec: Mapping[str, Any]) -> str:
    """``raw_mass_<combo>_cat_<category>`` of a manifest spectrum."""
    fs, combo = spec.get("fs"), spec.get("combo")
    if fs and combo:
        try:
            return raw_name(fs, combo)
        except Exception:  # unparseable label: fall back to the ROI name
            pass
    body = str(spec.get("roi_name", "")).removeprefix("ROI_").removeprefix("mass_")
    return "raw_mass_" + body.rsplit("_width_", 1)[0]


def _open(path: Path, what: str, stack: ExitStack) -> Any:
    """Open a ROOT file for reading, or log a warning and return None."""
    if not path.is_file():
        logger.warning("%s %s is missing; plotting without it", what, path)
        return None
    try:
        return stack.enter_context(uproot.open(path))
    except Exception as exc:
        logger.warning("cannot read %s %s (%s); plotting without it", what, path, exc)
        return None


def _fill_view(view: SpectrumView, spec: Mapping[str, Any], hist_file: Any, raw_file: Any) -> None:
    """Read a spectrum's ROI, outlier tail and raw fine histogram into ``view``."""
    if spec.get("blacklisted"):
        view.problems.append("blacklisted: not written to the BumpNet file")
    elif hist_file is not None:
        view.roi = _read_th1(hist_file, view.roi_name)
        if view.roi is None:
            view.problems.append("ROI histogram not in the file")
        if spec.get("has_outliers", True) and view.outlier_name:
            view.outliers = _read_th1(hist_file, view.outlier_name)
            if view.outliers is None and spec.get("has_outliers"):
                view.problems.append("outlier histogram not in the file")
        scan = spec.get("bump_scan")
        if isinstance(scan, Mapping):
            view.scan = dict(scan)
        if isinstance(scan, Mapping) and "skipped" not in scan and view.roi is not None:
            view.scan_bkg = _read_th1(hist_file, scan_key(BKG_PREFIX, view.roi_name))
            view.zlr = _read_th1(hist_file, scan_key(ZLR_PREFIX, view.roi_name))
    else:
        view.problems.append("histogram file missing")
    if raw_file is not None:
        view.raw = _read_th1(raw_file, f"{view.group}/{_raw_key(spec)}")


def load_spectra(run_dir: Path, manifest: Mapping[str, Any]) -> dict[str, list[SpectrumView]]:
    """Every manifest spectrum per group, with its ROI, outlier and raw histograms."""
    out: dict[str, list[SpectrumView]] = {}
    raw_path = raw_file_path(run_dir, manifest)
    hist_files: dict[str, Any] = {}
    with ExitStack() as stack:
        raw_file = None
        raw_opened = False
        for group, entry in (manifest.get("histograms") or {}).items():
            specs = (entry or {}).get("spectra") or []
            out[group] = views = []
            if not specs:
                continue
            if not raw_opened:
                raw_file = _open(raw_path, "raw fine-grid file", stack)
                raw_opened = True
            hist_file = None
            if entry.get("file"):
                hist_file = _open(run_dir / entry["file"], f"{group} histogram file", stack)
            hist_files[group] = hist_file
            for spec in specs:
                view = SpectrumView(
                    group=group,
                    fs=str(spec.get("fs", "")),
                    combo=str(spec.get("combo", "")),
                    roi_name=str(spec.get("roi_name", "")),
                    outlier_name=str(spec.get("outlier_name", "")),
                    lo=spec.get("lo"),
                    split=spec.get("split"),
                    hi=spec.get("hi"),
                    rejected=list(spec.get("rejected") or []),
                )
                try:
                    _fill_view(view, spec, hist_file, raw_file)
                except Exception as exc:  # one unreadable histogram must not stop the plots
                    logger.warning("cannot read the histograms of %s: %s", view.roi_name, exc)
                    view.problems.append(f"unreadable histogram ({type(exc).__name__})")
                views.append(view)
        attach_mc(out, manifest, raw_file, hist_files.get(MC_GROUP), _raw_key)
    return out


# --------------------------------------------------------------------------- overview


def _overview_page(
    views: list[SpectrumView], info: LabelInfo, group: str, page: int, n_pages: int
) -> Figure:
    """A grid (4 columns) of small log-y panels of the main spectra and their outlier tails."""
    ncols = 4
    nrows = max(1, math.ceil(len(views) / ncols))
    fig = _figure(16.0, 1.0 + 3.2 * nrows)
    page_text = f", page {page}/{n_pages}" if n_pages > 1 else ""
    _header(
        fig,
        info,
        data=group != "mc",
        text=f"{group}: ROI spectra (blue), outlier tails (orange){page_text}",
    )
    top = 1.0 - 1.0 / fig.get_figheight()
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.subplots_adjust(
        left=0.05, right=0.99, bottom=0.55 / fig.get_figheight(), top=top, hspace=0.5, wspace=0.3
    )
    for ax in axes.flat[len(views) :]:
        ax.set_visible(False)
    for ax, view in zip(axes.flat, views, strict=False):
        hists = [h for h in (view.roi, view.outliers) if h is not None]
        for h, color in ((view.roi, COLOR_ROI), (view.outliers, COLOR_OUT)):
            if h is not None:
                _filled_steps(ax, h, color)
        if view.split is not None:
            ax.axvline(view.split, color=COLOR_SPLIT, ls="-.", lw=1)
        limits = _log_limits([h.values for h in hists], room=0.3)
        if limits is not None:
            ax.set_yscale("log")
            ax.set_ylim(*limits)
        else:
            ax.text(0.5, 0.5, "empty", transform=ax.transAxes, ha="center", color="0.4")
        if hists:
            ax.set_xlim(hists[0].edges[0], max(_last_filled_edge(h) for h in hists) or None)
        total = sum(h.total for h in hists)
        ax.set_title(
            f"{view.combo} | {view.fs}",
            fontsize=9,
            color=COLOR_BAD if view.rejected or view.problems else "black",
        )
        ax.text(
            0.97,
            0.95,
            f"{total:,.0f} entries" + ("\nrejected" if view.rejected else ""),
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            color=COLOR_BAD if view.rejected else "0.2",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.5},
        )
        ax.tick_params(labelsize=8, length=4)
        if ax.get_subplotspec().is_first_col():
            width = float(hists[0].edges[1] - hists[0].edges[0]) if hists else 10.0
            ax.set_ylabel(f"Events / {width:g} GeV", fontsize=9)
        ax.set_xlabel(f"{_mass_label(view.combo)} [GeV]", fontsize=9, loc="center")
        ax.minorticks_off()
    return fig


def _filled_steps(ax: Any, h: Hist1D, color: str) -> None:
    """``h`` as a filled step histogram; what ``ax.stairs(fill=True)`` draws, but its data
    limits are computed in one vectorised call (stairs walks the outline path in Python)."""
    values = np.append(h.values, h.values[-1:])
    ax.fill_between(h.edges, values, step="post", color=color, alpha=0.85, lw=0)


def _header(fig: Figure, info: LabelInfo, data: bool, text: str) -> None:
    """A strip along the top of a multi-panel figure: ATLAS label, ``text``, √s and lumi."""
    h = fig.get_figheight()
    ax = fig.add_axes((0.05, 1.0 - 0.6 / h, 0.94, 0.5 / h))
    ax.set_axis_off()
    _mplhep_label(ax, text="Open Data", data=data, rlabel="", loc=1)
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=12)
    ax.text(1.0, 0.5, _rlabel(info), transform=ax.transAxes, ha="right", va="center", fontsize=13)


def overview_pages(
    spectra: Mapping[str, list[SpectrumView]],
) -> list[tuple[str, str, list[SpectrumView], int, int]]:
    """The overview pages: (file name, group, views, page, pages) per page, largest spectra
    first; ``spectra_overview_<group>.png``, or ``_<k>.png`` if a group has several pages."""
    out = []
    for group, views in spectra.items():
        if not views:
            continue
        ordered = sorted(
            views, key=lambda v: -sum(h.total for h in (v.roi, v.outliers) if h is not None)
        )
        pages = [ordered[i : i + OVERVIEW_PANELS] for i in range(0, len(ordered), OVERVIEW_PANELS)]
        for k, chunk in enumerate(pages, start=1):
            name = (
                f"spectra_overview_{group}.png"
                if len(pages) == 1
                else f"spectra_overview_{group}_{k}.png"
            )
            out.append((name, group, chunk, k, len(pages)))
    return out


def plot_overview_page(
    page: tuple[str, str, list[SpectrumView], int, int], info: LabelInfo, plots: Path
) -> Path:
    """Write one page of :func:`overview_pages` into ``plots``."""
    name, group, views, k, n = page
    return _save_png(_overview_page(views, info, group, k, n), plots / name, dpi=100)


# --------------------------------------------------------------------------- summaries


def _label_info(manifest: Mapping[str, Any]) -> LabelInfo:
    """√s (default 13 TeV) and luminosity (None: unknown) from the manifest."""
    sqrt_s = manifest.get("sqrt_s_tev") or 13
    lumi = manifest.get("luminosity_fb")
    return LabelInfo(float(sqrt_s), float(lumi) if lumi is not None else None)


#: names of the plots make_plots writes (patterns); anything else in plots/ is left alone
OUR_PLOTS = (
    "spectra_overview_*.png",
    "spectra.pdf",
    "final_state_counts.png",
    "cutflow.png",
    "processing_summary.png",
)


def _ours(path: Path) -> bool:
    return any(path.match(pattern) for pattern in OUR_PLOTS)


def check_plot_inputs(run_dir: str | Path) -> None:
    """Refuse (:class:`PlotsError`, naming the file) when a ROOT file the manifest names is
    missing or unreadable (truncated, damaged), so that ``--plots-only`` never replaces good
    plots with empty panels. Every ROI and outlier histogram the manifest lists is read."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir, check=False)
    fix = "restore it (or rerun the run: runner.py --resume RUN_DIR) before --plots-only"
    needed: list[tuple[Path, list[str]]] = []
    groups = manifest.get("histograms") or {}
    if any((g or {}).get("spectra") for g in groups.values()):
        needed.append((raw_file_path(run_dir, manifest), []))
    for entry in groups.values():
        if (entry or {}).get("file"):
            names = [
                str(spec[key])
                for spec in entry.get("spectra") or []
                for key in ("roi_name", "outlier_name")
                if spec.get(key) and (key == "roi_name" or spec.get("has_outliers"))
            ]
            needed.append((run_dir / entry["file"], names))
    for path, names in needed:
        if not path.is_file():
            raise PlotsError(f"{path} is missing; the plots need it: {fix}")
        try:
            with uproot.open(path) as f:
                for name in names:
                    summed_values(f[name])  # a THStack (MC by process) is summed
        except Exception as exc:
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
            raise PlotsError(
                f"{path} is unreadable (truncated or damaged? {reason}); {fix}"
            ) from None


def _swap_in(new: Path, plots: Path) -> None:
    """Make the fully rendered directory ``new`` the run's ``plots/``: files of ours that were
    not remade (stale) go, anything else already in plots/ is kept; the directories are then
    exchanged by rename, so readers see the old set or the new one, never a mix."""
    if plots.is_dir():
        for old in plots.iterdir():
            target = new / old.name
            if _ours(old):
                if not target.exists():
                    logger.info("removing stale plot %s", old)
                continue
            if not target.exists() and not old.name.startswith("."):
                if old.is_dir():
                    shutil.copytree(old, target)
                else:
                    shutil.copy2(old, target)
        trash = Path(tempfile.mkdtemp(prefix=".plots.old-", dir=plots.parent))
        trash.rmdir()
        os.rename(plots, trash)
        try:
            os.rename(new, plots)
        except OSError:
            os.rename(trash, plots)  # put the old set back
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(new, plots)


#: the plot jobs of the current :func:`make_plots` call, read by forked pool processes
_JOBS: list[tuple[str, Callable[[], Path | list[Path] | None]]] = []


def _run_job(i: int) -> list[Path] | str:
    """Run plot job ``i`` of :data:`_JOBS`: its files, or the error as text (logged here)."""
    name, job = _JOBS[i]
    t = time.perf_counter()
    try:
        with _style():
            result = job()
    except StorageError:
        raise
    except Exception as exc:
        logger.debug("plot %s failed", name, exc_info=True)
        return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    files = result if isinstance(result, list) else [result] if result else []
    logger.debug("%s: %d file(s) in %.2f s", name, len(files), time.perf_counter() - t)
    return files


def plot_processes(n_jobs: int) -> int:
    """How many processes render plots: ``BUMPNET_PLOT_PROCESSES`` if set, else one per core
    (at most ``n_jobs``); 1 where fork is unavailable (the jobs are closures)."""
    if sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    env = os.environ.get("BUMPNET_PLOT_PROCESSES")
    n = (
        int(env)
        if env and env.isdigit()
        else (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
    )
    return max(1, min(n, n_jobs))


def _run_jobs(
    jobs: list[tuple[str, Callable[[], Path | list[Path] | None]]], n_proc: int
) -> list[tuple[str, list[Path] | str]]:
    """Run the plot jobs, in parallel forked processes when there is more than one core, in
    the order given; results in job order. Falls back to one process if the pool fails."""
    global _JOBS
    _JOBS = list(jobs)
    n_proc = max(1, min(n_proc, len(jobs)))
    try:
        if n_proc > 1:
            try:
                ctx = multiprocessing.get_context("fork")
                with ProcessPoolExecutor(n_proc, mp_context=ctx) as pool:
                    futures = [pool.submit(_run_job, i) for i in range(len(jobs))]
                    return [(name, f.result()) for (name, _), f in zip(jobs, futures, strict=True)]
            except StorageError:
                raise
            except Exception as exc:  # a broken pool (killed child, no fork): do it here
                logger.warning("parallel plotting failed (%s); plotting in this process", exc)
        return [(name, _run_job(i)) for i, (name, _) in enumerate(jobs)]
    finally:
        _JOBS = []


def make_plots(run_dir: str | Path) -> list[Path]:
    """Make every plot of a run directory from its manifest and ROOT files alone.

    Returns the files written into ``run_dir/plots/``: ``spectra.pdf`` (one page per spectrum;
    absent without spectra), ``spectra_overview_<group>[_<k>].png``, ``final_state_counts.png``,
    ``cutflow.png`` and ``processing_summary.png``. The plots are written as a set: rendered
    into a temporary sibling directory, then swapped in, so a failure leaves the earlier plots
    as they were. A missing raw or histogram file is logged and the plots are made without it
    (``--plots-only`` refuses first, :func:`check_plot_inputs`). If a plot fails, the others are
    still tried and :class:`PlotsError` is raised at the end; a write the storage refuses
    raises :class:`StorageError` at once. The plots are rendered in parallel processes
    (:func:`plot_processes`).
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir, check=False)
    plots = run_dir / "plots"
    try:
        new = Path(tempfile.mkdtemp(prefix=".plots.new-", dir=run_dir))
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise storage_error(plots, exc) from None
        raise
    try:
        written = _render(run_dir, manifest, new)
        try:
            with contextlib.suppress(OSError):  # mkdtemp's 0700 -> as mkdir would
                os.chmod(new, default_mode(directory=True))
            _swap_in(new, plots)
        except OSError as exc:
            if exc.errno in STORAGE_ERRNOS:
                raise storage_error(plots, exc) from None
            raise
    except StorageError as exc:
        # name the final location, not the temporary directory
        raise StorageError(str(exc).replace(str(new), str(plots))) from None
    finally:
        shutil.rmtree(new, ignore_errors=True)
    written = [plots / p.relative_to(new) for p in written]
    logger.info(
        "wrote %d plot files to %s in %.1f s", len(written), plots, time.perf_counter() - t0
    )
    return written


def _render(run_dir: Path, manifest: Mapping[str, Any], plots: Path) -> list[Path]:
    """Render every plot into ``plots`` (a fresh directory); see :func:`make_plots`."""
    info = _label_info(manifest)
    spectra = load_spectra(run_dir, manifest)
    cuts = loader_summary(BumpNetCuts(**(manifest.get("bumpnet_cuts") or {})))
    written: list[Path] = []
    failures: list[str] = []

    # the quick summaries and overviews first, so that they are done within seconds; then the
    # per-spectrum PDF (most of the time) in consecutive parts, joined at the end
    views = spectrum_views(spectra)
    pages = overview_pages(spectra)
    # at most: 3 summaries, the overview pages and one PDF part per spectrum
    n_proc = plot_processes(3 + len(pages) + len(views))
    parts = split_views(views, 1 if n_proc == 1 else PDF_PARTS_PER_PROCESS * n_proc)
    part_files = [plots / f".spectra.part{i:03d}.pdf" for i in range(len(parts))]
    processes = sorted({p for v in views for p in v.mc_parts})
    jobs: list[tuple[str, Callable[[], Path | list[Path] | None]]] = [
        (
            "processing_summary.png",
            lambda: plot_processing_summary(manifest, info, plots / "processing_summary.png"),
        ),
        *((page[0], functools.partial(plot_overview_page, page, info, plots)) for page in pages),
        (
            "final_state_counts.png",
            lambda: plot_final_state_counts(manifest, info, plots / "final_state_counts.png"),
        ),
        ("cutflow.png", lambda: plot_cutflow(manifest, info, plots / "cutflow.png")),
        *(
            (
                "spectra.pdf",
                functools.partial(render_spectra_pages, part, info, file, cuts, processes),
            )
            for part, file in zip(parts, part_files, strict=True)
        ),
    ]
    pdf_failed = False
    for name, outcome in _run_jobs(jobs, n_proc):
        if isinstance(outcome, str):
            failures.append(f"{name}: {outcome}")
            pdf_failed |= name == "spectra.pdf"
        elif name != "spectra.pdf":
            written.extend(outcome)
    if views and not pdf_failed:
        try:
            written.append(join_spectra_parts(part_files, views, plots / "spectra.pdf"))
        except StorageError:
            raise
        except Exception as exc:
            failures.append(f"spectra.pdf: {type(exc).__name__}: {' '.join(str(exc).split())}")
    for file in part_files:
        file.unlink(missing_ok=True)
    n_spectra = sum(len(v) for v in spectra.values())
    logger.debug("rendered %d plot files (%d spectra)", len(written), n_spectra)
    if failures:
        raise PlotsError(
            f"some plots of {run_dir / 'plots'} failed (" + "; ".join(failures) + "); the "
            "earlier plots are kept, histograms and manifest are complete; redo them with "
            f"runner.py --plots-only --run-dir {run_dir}"
        )
    return written
