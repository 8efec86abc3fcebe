"""Plot style shared by every plot: colours, ATLAS-style labels, figure helpers, number formats."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl
import mplhep
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.mathtext import MathTextParser
from matplotlib.ticker import NullLocator

from processor.config import CHARGE_TAGS
from processor.errors import PlotsError  # noqa: F401  (re-exported)
from processor.fsutil import atomic_path

logger = logging.getLogger(__name__)

#: panels per overview PNG (a 4 x 4 grid)

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
COLOR_FIT = "#d62728"
COLOR_WINDOW = "#2ca02c"

_OBJECT_SYMBOLS = {
    "e": "e",
    "m": r"\mu",
    "j": "j",
    "g": r"\gamma",
    "t": r"\tau",
    "b": "b",
    "Z": "Z",
}


@dataclass
class Hist1D:
    """Bin contents, variances and edges of one TH1; ``flow``: its under- and overflow."""

    values: np.ndarray
    variances: np.ndarray
    edges: np.ndarray
    flow: tuple[float, float] = (0.0, 0.0)

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
    roi: Hist1D | None = None
    outliers: Hist1D | None = None
    raw: Hist1D | None = None
    problems: list[str] = field(default_factory=list)
    #: the bump scan's record (manifest ``bump_scan``), background and Z_LR per ROI bin
    scan: dict[str, Any] | None = None
    scan_bkg: Hist1D | None = None
    zlr: Hist1D | None = None
    #: data pages of a run with MC: the MC on this spectrum's ROI bins, summed and per process
    with_mc: bool = False
    mc: Hist1D | None = None
    mc_parts: dict[str, Hist1D] = field(default_factory=dict)
    #: why a data spectrum of a run with MC has no MC
    mc_note: str | None = None


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


class _MinorTickMarks(Artist):
    """The minor tick marks of one axis as two marker lines (bottom and top, or left and right)
    instead of matplotlib's two line artists per tick (a quarter of a spectrum page's time).

    :meth:`take` moves the axis's minor locator here (the axis then draws no minor ticks of its
    own); call it after making the marks of every axis (axes sharing x share one locator) and
    again after every scale change, which puts a new locator on the axis. The
    marks copy the style (size, width, direction, colour, which sides) of the axis's own minor
    ticks, and skip minor ticks on major ones, as matplotlib does.
    """

    zorder = 2.5  # with the spines and axes, above the data

    def __init__(self, axis: Any) -> None:
        super().__init__()
        self.axis = axis
        locator = axis.get_minor_locator()
        self.locator: Any = None if isinstance(locator, NullLocator) else locator
        template = axis.get_minor_ticks(1)[0]
        self.lines = []
        for side in (template.tick1line, template.tick2line):
            line = Line2D([], [])
            line.update_from(side)
            line.set_transform(side.get_transform())
            line.set_visible(side.get_visible())
            self.lines.append(line)
        axis.axes.add_artist(self)

    def take(self) -> None:
        """Take over the axis's (new) minor locator."""
        locator = self.axis.get_minor_locator()
        if not isinstance(locator, NullLocator):
            self.locator = locator
            self.axis.set_minor_locator(NullLocator())

    def locations(self) -> np.ndarray:
        """The minor tick locations inside the view, without those on major ticks."""
        if self.locator is None:
            return np.array([])
        minor = np.asarray(self.locator(), dtype=float)
        lo, hi = sorted(self.axis.get_view_interval())
        transform = self.axis.get_transform()
        major = np.asarray(self.axis.get_majorticklocs(), dtype=float)
        t_lo, t_hi = sorted(transform.transform([lo, hi]))
        tol = (t_hi - t_lo) * 1e-5
        t_minor = transform.transform(minor)
        if major.size and minor.size:
            on_major = np.isclose(
                t_minor[:, None], transform.transform(major)[None, :], atol=tol, rtol=0
            ).any(axis=1)
            minor, t_minor = minor[~on_major], t_minor[~on_major]
        inside = (t_minor >= t_lo - tol) & (t_minor <= t_hi + tol)
        return minor[inside]

    def draw(self, renderer: Any) -> None:
        """Draw every minor tick of each side in one marker line."""
        if not self.get_visible():
            return
        locs = self.locations()
        for i, line in enumerate(self.lines):
            if not line.get_visible():
                continue
            other = np.full(len(locs), float(i))  # 0: bottom/left, 1: top/right
            if self.axis.axis_name == "x":
                line.set_data(locs, other)
            else:
                line.set_data(other, locs)
            line.draw(renderer)
        self.stale = False


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
    parts = re.findall(r"([a-zA-Z])(\d+)", combo)
    if not parts:
        return f"m({combo})"
    body = r"\,".join(f"{_OBJECT_SYMBOLS.get(t, t)}_{{{i}}}" for t, i in parts)
    tag = re.search(r"_(OS|SS)$", combo)
    return f"$m_{{{body}}}$" + (f" ({tag.group(1)})" if tag else "")


def _fs_pretty(fs: str) -> str:
    """``2e_0m_1j_0g_0t_0b`` -> ``2e 1j`` (non-zero multiplicities, physics symbols)."""
    items = []
    for part in fs.split("_"):
        if part in CHARGE_TAGS:
            items.append(r"\mathrm{" + part + "}")
            continue
        m = re.fullmatch(r"(\d+)([a-zA-Z])", part)
        if not m:
            return fs
        if int(m.group(1)):
            items.append(f"{m.group(1)}{_OBJECT_SYMBOLS.get(m.group(2), m.group(2))}")
    return "$" + r"\,".join(items) + "$" if items else fs


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
