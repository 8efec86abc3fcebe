"""Plots of one run directory, made only from its manifest and ROOT files (``--plots-only``)."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl
import mplhep
import numpy as np
import uproot
import yaml
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.mathtext import MathTextParser
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from .config import BumpNetCuts
from .naming import raw_name
from .output import atomic_path
from .readiness import loader_summary
from .stacks import summed_values

logger = logging.getLogger(__name__)

#: raw fine-grid file when neither the manifest nor config.yaml names another
DEFAULT_RAW_FILE = "histograms/raw_histograms.root"
#: panels per overview PNG (a 4 x 4 grid)
OVERVIEW_PANELS = 16
#: final states shown per group in final_state_counts.png
TOP_FINAL_STATES = 30
#: cutflow steps in display order, with their axis labels
CUTFLOW_LABELS = {
    "events_read": "Events read",
    "after_count_limits": "Object-count\nlimits",
    "in_final_state": "In a counted\nfinal state",
    "with_combination": "With a mass\ncombination",
    "final_states_kept": "In kept\nfinal states",
}

COLOR_RAW = "#b0b0b0"
COLOR_ROI = "#1f5fa8"
COLOR_OUT = "#e07b00"
COLOR_PEAK = "#c0392b"
COLOR_SPLIT = "#6a3d9a"
COLOR_KEPT = "#1f5fa8"
COLOR_DROPPED = "#bdbdbd"
COLOR_BAD = "#c0392b"
COLOR_OK = "#2e7d32"

_OBJECT_SYMBOLS = {
    "e": "e",
    "m": r"\mu",
    "j": "j",
    "g": r"\gamma",
    "t": r"\tau",
    "b": "b",
    "Z": "Z",
}


class PlotsError(RuntimeError):
    """Some plots could not be made (the others were written)."""


@dataclass
class Hist1D:
    """Bin contents, variances and edges of one TH1 (flow bins dropped)."""

    values: np.ndarray
    variances: np.ndarray
    edges: np.ndarray

    @property
    def total(self) -> float:
        """Sum of the bin contents."""
        return float(self.values.sum())


@dataclass
class SpectrumView:
    """Everything drawn for one spectrum of the manifest."""

    group: str
    fs: str
    combo: str
    roi_name: str
    outlier_name: str
    lo: float | None
    split: float | None
    hi: float | None
    rejected: list[str]
    #: BumpNet's loader cuts in words (from the manifest)
    cuts_text: str = ""
    roi: Hist1D | None = None
    outliers: Hist1D | None = None
    raw: Hist1D | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LabelInfo:
    """What the ATLAS label states: centre-of-mass energy and luminosity (None: unknown)."""

    sqrt_s_tev: float
    luminosity_fb: float | None


# --------------------------------------------------------------------------- helpers

#: one mathtext parser for every PDF page (see _SharedMathtext)
_PDF_MATHTEXT = MathTextParser("path")


class _SharedMathtext(Artist):
    """Draws nothing; gives each PDF page's renderer one shared mathtext parser.

    matplotlib makes a new renderer, and with it a new parser with an empty cache, for every
    saved page, so the same log-axis tick labels were parsed again on each page (about a third
    of a page's time). Drawn first (lowest zorder), before any text is measured.
    """

    zorder = -1e9

    def draw(self, renderer: Any) -> None:
        """Point the renderer's text-to-path helper at the shared parser."""
        text2path = getattr(renderer, "_text2path", None)
        if getattr(text2path, "mathtext_parser", None) is not None:
            text2path.mathtext_parser = _PDF_MATHTEXT


@contextmanager
def _style() -> Iterator[None]:
    """mplhep's ATLAS style plus settings that keep hundreds of pages fast and small."""
    with (
        mpl.style.context(mplhep.style.ATLAS),
        mpl.rc_context(
            {
                "pdf.compression": 6,
                "path.simplify": True,
                "axes.titley": 1.0,  # fixed title position: no tick-label measuring per page
                "axes.titlepad": 5.0,
            }
        ),
    ):
        yield


def _figure(width: float, height: float) -> Figure:
    """A pyplot-free Agg figure (nothing to close, no global state)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _rlabel(info: LabelInfo) -> str:
    """``√s = 13 TeV, 36.6 fb⁻¹`` (no luminosity when unknown).

    Written out rather than left to mplhep: its ``$\\sqrt{s}$`` makes mathtext warn about a
    missing radical glyph with the ATLAS fonts on every page.
    """
    com = info.sqrt_s_tev
    energy = f"{int(com)}" if float(com).is_integer() else f"{com:g}"
    text = f"√s = {energy} TeV"
    if info.luminosity_fb is not None:
        text += f", {info.luminosity_fb:.3g} $\\mathrm{{fb}}^{{\\mathrm{{-1}}}}$"
    return text


def _mplhep_label(ax: Axes, **kwargs: Any) -> None:
    """``mplhep.atlas.label`` without its full-figure redraws.

    mplhep draws the whole (stale) figure before placing each part of the label, only to get
    text metrics that the renderer gives without drawing; on our own Agg canvas that draw is
    skipped (the result is pixel-identical, and a label costs milliseconds instead of a
    third of a second).
    """
    canvas = ax.figure.canvas
    canvas.draw = lambda *args, **kw: None  # instance attribute on our own canvas only
    try:
        mplhep.atlas.label(ax=ax, **kwargs)
    finally:
        del canvas.draw


def _atlas_label(ax: Axes, info: LabelInfo, data: bool = True, loc: int = 4) -> None:
    """'ATLAS Open Data' (or 'ATLAS Simulation Open Data') with √s and, if known, the lumi."""
    _mplhep_label(
        ax,
        text="Open Data",
        data=data,
        rlabel=_rlabel(info),
        loc=loc,
        fontstyle=("italic", "normal", "normal", "normal"),
    )


def _mass_label(combo: str) -> str:
    """``e0e1j0`` -> ``$m_{e_{0}e_{1}j_{0}}$``."""
    objects, _, tag = combo.partition("_")
    parts = re.findall(r"([a-zA-Z])(\d+)", objects)
    if not parts:
        return f"m({combo})"
    body = r"\,".join(f"{_OBJECT_SYMBOLS.get(t, t)}_{{{i}}}" for t, i in parts)
    return f"$m_{{{body}}}$" + (f" ({tag})" if tag else "")


def _fs_pretty(fs: str) -> str:
    """``2e_0m_1j_0g_0t_0b`` -> ``2e 1j`` (non-zero multiplicities, physics symbols)."""
    items = []
    parts = fs.split("_")
    tag = parts.pop() if parts and parts[-1] in ("OS", "SS") else ""
    for part in parts:
        m = re.fullmatch(r"(\d+)([a-zA-Z])", part)
        if not m:
            return fs
        if int(m.group(1)):
            items.append(f"{m.group(1)}{_OBJECT_SYMBOLS.get(m.group(2), m.group(2))}")
    text = "$" + r"\,".join(items) + "$" if items else fs
    return f"{text} {tag}" if tag else text


def _si(x: float, unit: str = "", digits: int = 3) -> str:
    """``1234567`` -> ``1.23 M`` (with a unit)."""
    if x is None or not math.isfinite(x):
        return "n/a"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.{digits}g} {prefix}{unit}"
    return f"{x:.{digits}g} {unit}".rstrip()


def _bytes(n: float | None) -> str:
    """Bytes in binary units."""
    if n is None:
        return "n/a"
    for factor, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{int(n)} B"


def _duration(s: float | None) -> str:
    """Seconds as ``1 h 02 min 03 s``."""
    if s is None:
        return "n/a"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} min {sec:02d} s" if h else f"{m} min {sec:02d} s"


def _count(n: Any) -> str:
    """Integer with thousands separators (``n/a`` if missing)."""
    return "n/a" if n is None else f"{int(n):,}"


# --------------------------------------------------------------------------- reading


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's ``manifest.json``."""
    path = run_dir / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest.json; is {run_dir} a run directory?")
    return json.loads(path.read_text())


def _raw_file(run_dir: Path, manifest: Mapping[str, Any]) -> Path:
    """Where the fine-grid histograms are: manifest ``raw_file``, config.yaml, or the default."""
    named = manifest.get("raw_file")
    if named:
        return run_dir / named
    cfg = run_dir / "config.yaml"
    if cfg.is_file():
        try:
            data = yaml.safe_load(cfg.read_text()) or {}
            name = (data.get("histogram_creation_task_config") or {}).get("raw_output_file")
            if name:
                return run_dir / "histograms" / name
        except Exception as exc:  # a broken config must not stop the plots
            logger.debug("could not read raw_output_file from %s: %s", cfg, exc)
    return run_dir / DEFAULT_RAW_FILE


def _read_th1(directory: Any, name: str) -> Hist1D | None:
    """A TH1 from an open uproot directory (None if absent)."""
    try:
        obj = directory[name]
    except (KeyError, uproot.KeyInFileError):
        return None
    values, variances, edges = summed_values(obj)  # a THStack (MC by process) is summed
    return Hist1D(
        np.asarray(values, dtype=np.float64),
        np.asarray(variances, dtype=np.float64),
        np.asarray(edges, dtype=np.float64),
    )


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
    else:
        view.problems.append("histogram file missing")
    if raw_file is not None:
        view.raw = _read_th1(raw_file, f"{view.group}/{_raw_key(spec)}")


def load_spectra(run_dir: Path, manifest: Mapping[str, Any]) -> dict[str, list[SpectrumView]]:
    """Every manifest spectrum per group, with its ROI, outlier and raw histograms."""
    out: dict[str, list[SpectrumView]] = {}
    raw_path = _raw_file(run_dir, manifest)
    cuts_text = loader_summary(BumpNetCuts(**(manifest.get("bumpnet_cuts") or {})))
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
                    cuts_text=cuts_text,
                )
                try:
                    _fill_view(view, spec, hist_file, raw_file)
                except Exception as exc:  # one unreadable histogram must not stop the plots
                    logger.warning("cannot read the histograms of %s: %s", view.roi_name, exc)
                    view.problems.append(f"unreadable histogram ({type(exc).__name__})")
                views.append(view)
    return out


# --------------------------------------------------------------------------- spectra


def _rebin_raw(raw: Hist1D, width: float, align: float | None) -> Hist1D:
    """The fine spectrum in bins of ``width`` whose edges include ``align`` (the ROI start)."""
    fine = float(raw.edges[1] - raw.edges[0]) if len(raw.edges) > 1 else width
    r = max(1, int(round(width / fine)))
    n = len(raw.values)
    k0 = int(round((align or 0.0) / fine)) % r if align else 0
    starts = np.arange(k0, n, r)
    if k0:
        starts = np.concatenate([[0], starts])
    if len(starts) == 0:
        return raw
    idx = np.concatenate([starts, [n]])
    return Hist1D(
        np.add.reduceat(raw.values, starts),
        np.add.reduceat(raw.variances, starts),
        raw.edges[idx],
    )


def _last_filled_edge(h: Hist1D | None) -> float:
    """Upper edge of the last non-empty bin (0 if none)."""
    if h is None:
        return 0.0
    nz = np.flatnonzero(h.values)
    return float(h.edges[nz[-1] + 1]) if len(nz) else 0.0


def _log_limits(arrays: Iterable[np.ndarray], room: float = 0.55) -> tuple[float, float] | None:
    """Log-y limits covering every positive value (at most 8 decades below the maximum),
    with ``room`` times the decades shown added on top for the label and legend."""
    pos = [a[a > 0] for a in arrays if a is not None and len(a)]
    pos = [a for a in pos if len(a)]
    if not pos:
        return None
    lo = min(float(a.min()) for a in pos)
    hi = max(float(a.max()) for a in pos)
    bottom = max(0.5 if lo >= 1 else lo * 0.5, hi * 1e-8)
    decades = max(math.log10(hi / bottom), 1.0)
    return bottom, hi * 10 ** (decades * room)


class _SpectrumPage:
    """The spectrum page, built once (axes, label, note texts) and refilled per spectrum."""

    def __init__(self, info: LabelInfo, data: bool) -> None:
        self.fig = _figure(8.5, 7.0)
        self.fig.add_artist(_SharedMathtext())
        self.ax = self.fig.add_axes((0.13, 0.17, 0.83, 0.74))
        _atlas_label(self.ax, info, data=data, loc=4)
        self.name_text = self.fig.text(
            0.01, 0.055, "", fontsize=8, color="0.35", family="DejaVu Sans Mono"
        )
        self.note_text = self.fig.text(0.01, 0.015, "", fontsize=9)
        self.artists: list[Any] = []

    def _clear(self) -> None:
        """Remove the previous spectrum's artists and legend."""
        for artist in self.artists:
            artist.remove()
        self.artists = []
        if self.ax.get_legend() is not None:
            self.ax.get_legend().remove()

    def _hist(self, h: Hist1D, color: str, label: str) -> None:
        """A step histogram with sqrt(variance) error bars at the bin centres."""
        ax = self.ax
        self.artists.append(ax.stairs(h.values, h.edges, color=color, linewidth=1.6, label=label))
        if len(h.values) <= 400:
            centres = 0.5 * (h.edges[1:] + h.edges[:-1])
            ok = h.values > 0
            self.artists.append(
                ax.errorbar(
                    centres[ok],
                    h.values[ok],
                    yerr=np.sqrt(np.clip(h.variances[ok], 0, None)),
                    fmt="none",
                    ecolor=color,
                    elinewidth=1.0,
                )
            )

    def draw(self, view: SpectrumView) -> Figure:
        """Fill the page with one spectrum; returns the figure to save."""
        self._clear()
        ax, add = self.ax, self.artists.append
        width = float(view.roi.edges[1] - view.roi.edges[0]) if view.roi is not None else 10.0
        raw = _rebin_raw(view.raw, width, view.lo) if view.raw is not None else None
        xmax = 1.05 * max(
            _last_filled_edge(raw),
            _last_filled_edge(view.roi),
            _last_filled_edge(view.outliers),
            view.hi or 0.0,
            (view.split or 0.0) + width,
            (view.lo or 0.0) + 10 * width,
        )
        if raw is not None:
            n = int(np.searchsorted(raw.edges, xmax, side="right"))
            raw = Hist1D(raw.values[:n], raw.variances[:n], raw.edges[: n + 1])
            add(
                ax.stairs(
                    raw.values,
                    raw.edges,
                    fill=True,
                    color=COLOR_RAW,
                    alpha=0.8,
                    label=f"All masses (fine grid in {width:g} GeV bins)",
                )
            )
        if view.lo:
            add(
                ax.axvspan(
                    0.0,
                    view.lo,
                    facecolor="none",
                    edgecolor=COLOR_PEAK,
                    hatch="///",
                    alpha=0.35,
                    linewidth=0,
                    label="Removed (peak region)",
                )
            )
        if view.roi is not None:
            self._hist(view.roi, COLOR_ROI, "ROI (main spectrum)")
        if view.outliers is not None:
            self._hist(view.outliers, COLOR_OUT, "Outlier tail")
        if view.lo is not None:
            add(
                ax.axvline(
                    view.lo,
                    color=COLOR_PEAK,
                    ls="--",
                    lw=1.5,
                    label=f"Peak-removal edge {view.lo:g} GeV",
                )
            )
        if view.split is not None:
            add(
                ax.axvline(
                    view.split,
                    color=COLOR_SPLIT,
                    ls="-.",
                    lw=1.5,
                    label=f"Outlier-split edge {view.split:g} GeV",
                )
            )
        limits = _log_limits(
            [h.values for h in (raw, view.roi, view.outliers) if h is not None], room=0.6
        )
        if limits is not None:
            ax.set_yscale("log")
            ax.set_ylim(*limits)
        else:
            ax.set_yscale("linear")
            ax.set_ylim(0, 1)
            add(ax.text(0.5, 0.5, "no entries", transform=ax.transAxes, ha="center", color="0.4"))
        ax.set_xlim(0.0, xmax)
        ax.set_xlabel(f"{_mass_label(view.combo)} [GeV]")
        ax.set_ylabel(f"Events / {width:g} GeV")
        ax.legend(loc="upper right", fontsize="x-small", frameon=False)
        ax.set_title(
            f"{view.combo} in {view.fs}  [{_fs_pretty(view.fs)}]", loc="left", fontsize="small"
        )
        ax.set_title(view.group, loc="right", fontsize="small")
        self.name_text.set_text(view.roi_name)
        if view.rejected:
            note = "BumpNet would reject this ROI histogram: " + "; ".join(view.rejected)
            color = COLOR_BAD
        else:
            note = f"Accepted by BumpNet's loader ({view.cuts_text})"
            color = COLOR_OK
        if view.problems:
            note += "   |   " + "; ".join(view.problems)
            color = COLOR_BAD
        self.note_text.set_text(note)
        self.note_text.set_color(color)
        return self.fig


def plot_spectra_pdf(
    spectra: Mapping[str, list[SpectrumView]], info: LabelInfo, path: Path
) -> Path | None:
    """``spectra.pdf``: one page per spectrum, groups in manifest order (None: no spectra)."""
    views = [v for group in spectra.values() for v in group]
    if not views:
        return None
    pages: dict[bool, _SpectrumPage] = {}
    with atomic_path(path) as tmp, PdfPages(tmp) as pdf:
        for view in views:
            data = view.group != "mc"
            if data not in pages:
                pages[data] = _SpectrumPage(info, data)
            pdf.savefig(pages[data].draw(view))
        meta = pdf.infodict()
        meta["Title"] = "BumpNet mass spectra"
        meta["Creator"] = "bumpnet-masses processor.plots"
    return path


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
        if view.roi is not None:
            ax.stairs(view.roi.values, view.roi.edges, fill=True, color=COLOR_ROI, alpha=0.85)
        if view.outliers is not None:
            ax.stairs(
                view.outliers.values, view.outliers.edges, fill=True, color=COLOR_OUT, alpha=0.85
            )
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


def _header(fig: Figure, info: LabelInfo, data: bool, text: str) -> None:
    """A strip along the top of a multi-panel figure: ATLAS label, ``text``, √s and lumi."""
    h = fig.get_figheight()
    ax = fig.add_axes((0.05, 1.0 - 0.6 / h, 0.94, 0.5 / h))
    ax.set_axis_off()
    _mplhep_label(ax, text="Open Data", data=data, rlabel="", loc=1)
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=12)
    ax.text(1.0, 0.5, _rlabel(info), transform=ax.transAxes, ha="right", va="center", fontsize=13)


def plot_overviews(
    spectra: Mapping[str, list[SpectrumView]], info: LabelInfo, plots: Path
) -> list[Path]:
    """``spectra_overview_<group>.png`` (``_<k>.png`` if several pages), largest spectra first."""
    written = []
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
            fig = _overview_page(chunk, info, group, k, len(pages))
            written.append(_save_png(fig, plots / name, dpi=100))
    return written


# --------------------------------------------------------------------------- summaries


def plot_final_state_counts(
    manifest: Mapping[str, Any], info: LabelInfo, path: Path, top: int = TOP_FINAL_STATES
) -> Path:
    """Horizontal bars of events per final state (top ``top``), kept vs dropped."""
    groups = {g: fs for g, fs in (manifest.get("final_states") or {}).items() if fs}
    ncol = max(1, len(groups))
    n_rows = max([min(top, len(fs)) for fs in groups.values()] or [1])
    label_in, axes_in, right_in = 1.75, 6.0, 0.35  # widths in inches
    width = ncol * (label_in + axes_in + right_in)
    fig = _figure(width, max(4.0, 1.6 + 0.26 * n_rows))
    axes = fig.subplots(1, ncol, squeeze=False)[0]
    fig.subplots_adjust(
        left=label_in / width,
        right=1 - right_in / width,
        top=1 - 0.55 / fig.get_figheight(),
        wspace=(label_in + right_in) / axes_in,
        bottom=0.8 / fig.get_figheight(),
    )
    if not groups:
        axes[0].text(
            0.5, 0.5, "no final states in this run", ha="center", transform=axes[0].transAxes
        )
        axes[0].set_yticks([])
        axes[0].set_xticks([])
    for ax, group in zip(axes, list(groups) or ["data"], strict=False):
        _atlas_label(ax, info, data=group != "mc", loc=0)
    for ax, (group, fs_map) in zip(axes, groups.items(), strict=False):
        rows = sorted(
            ((fs, d or {}) for fs, d in fs_map.items()),
            key=lambda item: -float(item[1].get("events", 0) or 0),
        )
        n_kept = sum(bool(d.get("kept")) for _, d in rows)
        shown = rows[:top][::-1]
        events = np.array([float(d.get("events", 0) or 0) for _, d in shown])
        colors = [COLOR_KEPT if d.get("kept") else COLOR_DROPPED for _, d in shown]
        y = np.arange(len(shown))
        ax.barh(y, np.where(events > 0, events, np.nan), color=colors, height=0.75)
        ax.set_yticks(y, [fs for fs, _ in shown], fontsize=8, family="DejaVu Sans Mono")
        ax.tick_params(axis="y", which="both", length=0)
        ax.set_ylim(-0.7, len(shown) - 0.3)
        pos = events[events > 0]
        if len(pos):
            ax.set_xscale("log")
            ax.set_xlim(max(0.5, pos.min() * 0.5), pos.max() * 8)
        for yi, ev in zip(y, events, strict=True):
            if ev > 0:
                ax.text(ev * 1.12, yi, f"{ev:,.0f}", va="center", fontsize=7, color="0.25")
        ax.set_xlabel("Events (raw count)" if group == "mc" else "Events")
        more = f"\n(largest {len(shown)} shown)" if len(rows) > len(shown) else ""
        ax.legend(
            handles=[
                Patch(color=COLOR_KEPT, label=f"kept ({n_kept})"),
                Patch(
                    color=COLOR_DROPPED,
                    label=f"dropped, < min_events_per_fs ({len(rows) - n_kept})",
                ),
            ],
            title=f"{group}: {len(rows)} final states{more}",
            title_fontsize=9,
            loc="lower right",
            fontsize=8,
            frameon=True,
        )
    return _save_png(fig, path)


def plot_cutflow(manifest: Mapping[str, Any], info: LabelInfo, path: Path) -> Path:
    """Bars of the cutflow steps with the event numbers and fractions of events read."""
    cutflow = manifest.get("cutflow_total") or {}
    steps = [s for s in CUTFLOW_LABELS if s in cutflow]
    steps += [s for s in cutflow if s not in CUTFLOW_LABELS]
    values = np.array([float(cutflow[s] or 0) for s in steps])
    fig = _figure(9.0, 6.5)
    ax = fig.add_axes((0.13, 0.13, 0.83, 0.77))
    _atlas_label(ax, info, data=True, loc=0)
    if not steps:
        ax.text(0.5, 0.5, "no cutflow in the manifest", ha="center", transform=ax.transAxes)
    else:
        x = np.arange(len(steps))
        colors = [COLOR_KEPT] * len(steps)
        if "final_states_kept" in steps:
            colors[steps.index("final_states_kept")] = "#5b8fd1"
        ax.bar(x, values, color=colors, width=0.65)
        ax.set_xticks(x, [CUTFLOW_LABELS.get(s, s) for s in steps], fontsize=11)
        ax.tick_params(axis="x", which="both", length=0)
        first = values[0] if len(values) and values[0] > 0 else None
        top = values.max() if values.max() > 0 else 1.0
        for xi, v in zip(x, values, strict=True):
            frac = f"\n({100 * v / first:.3g} %)" if first else ""
            ax.text(xi, v + 0.02 * top, f"{v:,.0f}{frac}", ha="center", va="bottom", fontsize=10)
        ax.set_ylim(0, top * 1.3)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _si(v, digits=3) if v else "0"))
        ax.set_xlim(-0.6, len(steps) - 0.4)
    ax.set_ylabel("Events")
    return _save_png(fig, path)


def _spectra_counts(manifest: Mapping[str, Any]) -> str:
    """``data: 12 (3), mc: 10 (2)``: spectra per group and how many BumpNet would reject."""
    parts = []
    for group, entry in (manifest.get("histograms") or {}).items():
        specs = (entry or {}).get("spectra") or []
        parts.append(f"{group}: {len(specs)} ({sum(bool(s.get('rejected')) for s in specs)})")
    return ", ".join(parts) or "none"


def plot_processing_summary(manifest: Mapping[str, Any], info: LabelInfo, path: Path) -> Path:
    """A table of the run's processing figures."""
    p = manifest.get("processing") or {}
    wall = p.get("wall_time_s")
    bytes_read = p.get("bytes_read")
    rate_b = bytes_read / wall if bytes_read and wall else None
    status = str(manifest.get("status", "unknown"))
    lumi = info.luminosity_fb
    n_failed_files = p.get("n_failed_files") or 0
    n_failed_chunks = p.get("n_failed_chunks") or 0
    rows = [
        ("Status", status),
        ("Release", str(manifest.get("release") or "n/a (local input)")),
        (
            "√s / luminosity",
            f"{info.sqrt_s_tev:g} TeV / "
            + (f"{lumi:.3g} $\\mathrm{{fb}}^{{\\mathrm{{-1}}}}$" if lumi is not None else "n/a"),
        ),
        ("Events processed", _count(p.get("events"))),
        ("Wall time", _duration(wall)),
        ("Throughput", _si(p.get("events_per_s") or float("nan")) + " events/s"),
        ("Bytes read", _bytes(bytes_read) + (f"  ({_bytes(rate_b)}/s)" if rate_b else "")),
        ("Files read / failed", f"{_count(p.get('n_files'))} / {_count(p.get('n_failed_files'))}"),
        ("Chunks / failed", f"{_count(p.get('chunks'))} / {_count(p.get('n_failed_chunks'))}"),
        ("Accumulator size", _bytes(p.get("accumulator_bytes"))),
        ("Spectra (BumpNet would reject)", _spectra_counts(manifest)),
    ]
    fig = _figure(8.0, 5.2)
    ax = fig.add_axes((0.05, 0.02, 0.9, 0.8))
    _atlas_label(ax, info, data=True, loc=0)
    ax.set_axis_off()
    fig.text(0.05, 0.965, "Processing summary", fontsize=15, fontweight="bold", va="top")
    table = ax.table(
        cellText=[[k, v] for k, v in rows],
        colWidths=[0.42, 0.58],
        cellLoc="left",
        loc="upper center",
        edges="horizontal",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(12)
    table.scale(1.0, 1.9)
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("0.8")
        if c == 0:
            cell.get_text().set_color("0.3")
        if c != 1:
            continue
        key = rows[r][0]
        if key == "Status":
            cell.get_text().set_color(COLOR_OK if status == "ok" else COLOR_BAD)
            cell.get_text().set_fontweight("bold")
        elif (key == "Files read / failed" and n_failed_files) or (
            key == "Chunks / failed" and n_failed_chunks
        ):
            cell.get_text().set_color(COLOR_BAD)
    return _save_png(fig, path)


# --------------------------------------------------------------------------- entry point


def _label_info(manifest: Mapping[str, Any]) -> LabelInfo:
    """√s (default 13 TeV) and luminosity (None: unknown) from the manifest."""
    sqrt_s = manifest.get("sqrt_s_tev") or 13
    lumi = manifest.get("luminosity_fb")
    return LabelInfo(float(sqrt_s), float(lumi) if lumi is not None else None)


def _remove_stale(plots: Path, keep: set[Path]) -> None:
    """Delete plots of an earlier call that this call did not remake (only our own names)."""
    for pattern in ("spectra_overview_*.png", "spectra.pdf"):
        for old in plots.glob(pattern):
            if old not in keep:
                logger.info("removing stale plot %s", old)
                old.unlink(missing_ok=True)


def make_plots(run_dir: str | Path) -> list[Path]:
    """Make every plot of a run directory from its manifest and ROOT files alone.

    Writes into ``run_dir/plots/`` (atomically: temporary name, then rename) and returns the
    files written: ``spectra.pdf`` (one page per spectrum; absent without spectra),
    ``spectra_overview_<group>[_<k>].png``, ``final_state_counts.png``, ``cutflow.png`` and
    ``processing_summary.png``. A missing raw or histogram file is logged and the plots are
    made without it. If a plot fails, the others are still made and :class:`PlotsError` is
    raised at the end.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    info = _label_info(manifest)
    spectra = load_spectra(run_dir, manifest)
    written: list[Path] = []
    failures: list[str] = []

    jobs: list[tuple[str, Callable[[], Path | list[Path] | None]]] = [
        ("spectra.pdf", lambda: plot_spectra_pdf(spectra, info, plots / "spectra.pdf")),
        ("spectra overviews", lambda: plot_overviews(spectra, info, plots)),
        (
            "final_state_counts.png",
            lambda: plot_final_state_counts(manifest, info, plots / "final_state_counts.png"),
        ),
        ("cutflow.png", lambda: plot_cutflow(manifest, info, plots / "cutflow.png")),
        (
            "processing_summary.png",
            lambda: plot_processing_summary(manifest, info, plots / "processing_summary.png"),
        ),
    ]
    with _style():
        for name, job in jobs:
            t = time.perf_counter()
            try:
                result = job()
            except Exception as exc:
                logger.exception("plot %s failed", name)
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            files = result if isinstance(result, list) else [result] if result else []
            written.extend(files)
            logger.debug("%s: %d file(s) in %.2f s", name, len(files), time.perf_counter() - t)
    if not failures:
        _remove_stale(plots, set(written))
    n_spectra = sum(len(v) for v in spectra.values())
    logger.info(
        "wrote %d plot files (%d spectra) to %s in %.1f s",
        len(written),
        n_spectra,
        plots,
        time.perf_counter() - t0,
    )
    if failures:
        raise PlotsError("some plots failed: " + "; ".join(failures))
    return written
