"""One PDF page per spectrum: raw view, ROI, outlier tail, edges, the bump scan and BumpNet's verdict."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import hist
import mplhep
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from mplhep.error_estimation import poisson_interval

from processor.config import BumpNetCuts
from processor.fsutil import atomic_path
from processor.output.mc_overlay import is_data
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
    _MinorTickMarks,
    _mplhep_label,
    _rlabel,
    _save_png,
    _SharedMathtext,
    _style,
)
from processor.output.readiness import loader_summary

logger = logging.getLogger(__name__)


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
        raw.flow,
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


def _remove(artist: Any) -> None:
    """Remove a matplotlib artist, or every artist in mplhep's (nested) result tuples/lists."""
    if isinstance(artist, list) or (
        isinstance(artist, tuple) and not hasattr(artist, "remove")  # a Container removes itself
    ):
        for a in artist:
            if a is not None:
                _remove(a)
    elif artist is not None:
        artist.remove()


#: colours of the MC processes, in the order of the run's sorted process names (Petroff's
#: ten colours for colour-vision deficiencies)
MC_COLORS = (
    "#3f90da", "#ffa90e", "#bd1f01", "#94a4a2", "#832db6",
    "#a96b59", "#e76300", "#b9ac70", "#717581", "#92dadd",
)  # fmt: skip
COLOR_DATA = "black"
COLOR_MC = "#3f90da"
#: the data/MC axis spans 0..2 unless a point lies higher (then up to this)
RATIO_MAX = 5.0


def _as_hist(values: np.ndarray, edges: np.ndarray, flow=(0.0, 0.0), variances=None) -> Any:
    """A ``hist.Hist`` of ``values`` (and ``variances``) on ``edges`` with flow bins."""
    out = hist.Hist(hist.axis.Variable(edges), storage=hist.storage.Weight())
    view = out.view(flow=True)
    view["value"] = np.concatenate([[flow[0]], values, [flow[1]]])
    var = values if variances is None else variances
    view["variance"] = np.concatenate([[flow[0]], var, [flow[1]]])
    return out


def _plottable(h: Hist1D) -> Any:
    """What mplhep's ``histplot`` draws for ``h``: a ``hist.Hist`` carrying the flow bins
    when ``h`` has under- or overflow (so ``flow="hint"`` marks them), else the arrays."""
    if not any(h.flow):
        return h.values
    return _as_hist(h.values, h.edges, h.flow, h.variances)


def data_mc_ratio(data: Hist1D, mc: Hist1D) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data/MC, lower, upper error) per bin: the data's Garwood interval divided by the MC
    (NaN where the MC is empty)."""
    d = np.asarray(data.values, dtype=np.float64)
    m = np.asarray(mc.values, dtype=np.float64)
    ok = m > 0
    ratio = np.full_like(d, np.nan)
    ratio[ok] = d[ok] / m[ok]
    lo, hi = np.nan_to_num(poisson_interval(d, np.clip(data.variances, 0, None)), nan=0.0)
    down = np.full_like(d, np.nan)
    up = np.full_like(d, np.nan)
    down[ok] = np.clip(d[ok] - lo[ok], 0, None) / m[ok]
    up[ok] = np.clip(hi[ok] - d[ok], 0, None) / m[ok]
    return ratio, down, up


def _fixed_limits(ax: Any) -> None:
    """Skip the data-limit update of every patch added to ``ax`` (its x and y limits are set
    by hand on every page): matplotlib walks each step histogram's outline segment by segment
    in Python for it, half of the time spent filling a page. Only on our own page axes."""
    if callable(getattr(ax, "_update_patch_limits", None)):
        ax._update_patch_limits = lambda patch: None


class _SpectrumPage:
    """The spectrum page, built once (axes, label, note texts) and refilled per spectrum.

    ``with_mc`` (data pages of a run with MC): the MC of the same spectrum is stacked under the
    data, and a data/MC panel sits between the spectrum and the Z_LR panel; ``processes``
    (the run's MC processes) fixes each process's colour.
    """

    def __init__(
        self,
        info: LabelInfo,
        data: bool,
        cuts_text: str = "",
        with_mc: bool = False,
        processes: Iterable[str] = (),
    ) -> None:
        self.cuts_text = cuts_text or loader_summary(BumpNetCuts())
        self.with_mc = with_mc
        self.colors = {p: MC_COLORS[i % len(MC_COLORS)] for i, p in enumerate(sorted(processes))}
        height = 8.6 if with_mc else 7.0

        def box(bottom: float, top: float) -> tuple[float, float, float, float]:
            """Axes from ``bottom`` to ``top`` inches above the page's lower edge."""
            return (0.13, bottom / height, 0.83, (top - bottom) / height)

        self.fig = _figure(8.5, height)
        self.fig.add_artist(_SharedMathtext())
        self.ax = self.fig.add_axes(box(3.45, 7.85) if with_mc else box(2.52, 6.37))
        #: data/MC per ROI bin (data pages of a run with MC only)
        self.rax = None
        if with_mc:
            self.rax = self.fig.add_axes(box(2.27, 3.37), sharex=self.ax)
            self.rax.axhline(1.0, color="0.3", lw=0.8, ls="--")
            self.rax.set_ylabel("Data / MC", loc="center", fontsize="small")
            self.rax.tick_params(labelbottom=False)
        #: the bump scan's Z_LR per ROI bin, below the spectrum
        self.zax = self.fig.add_axes(
            box(1.17, 2.19) if with_mc else box(1.19, 2.31), sharex=self.ax
        )
        self.zax.axhline(0.0, color="0.5", lw=0.8)
        self.zax.set_ylabel(r"$Z_{LR}$", **({"loc": "center"} if with_mc else {}))
        self.ax.tick_params(labelbottom=False)
        _atlas_label(self.ax, info, data=data, loc=4)
        self.name_text = self.fig.text(
            0.01, 0.385 / height, "", fontsize=8, color="0.35", family="DejaVu Sans Mono"
        )
        self.note_text = self.fig.text(0.01, 0.105 / height, "", fontsize=9)
        #: minor tick marks drawn in one go per axis side (see _MinorTickMarks)
        self.minor_ticks = [
            _MinorTickMarks(axis)
            for a in (self.ax, self.rax, self.zax)
            if a is not None
            for axis in (a.xaxis, a.yaxis)
        ]
        for marks in self.minor_ticks:
            marks.take()
        for a in self.fig.axes:
            _fixed_limits(a)
        self.artists: list[Any] = []
        #: the data/MC points of the current page (None: no ratio drawn)
        self.ratio_points: Any = None

    def _clear(self) -> None:
        """Remove the previous spectrum's artists and legend."""
        for artist in self.artists:
            _remove(artist)
        self.artists = []
        self.ratio_points = None
        if self.ax.get_legend() is not None:
            self.ax.get_legend().remove()

    def _histplot(self, ax: Any, h: Any, edges: np.ndarray, **kwargs: Any) -> Any:
        """mplhep's ``histplot`` with flow hints, every artist it adds kept for clearing
        (its flow markers are not in what it returns)."""
        before = set(ax.collections)
        hists = h if isinstance(h, list) else [h]
        if any(isinstance(x, hist.Hist) for x in hists):  # mplhep takes their own edges
            converted = [x if isinstance(x, hist.Hist) else _as_hist(x, edges) for x in hists]
            h = converted if isinstance(h, list) else converted[0]
            edges = None
        out = mplhep.histplot(h, edges, ax=ax, flow="hint", **kwargs)
        self.artists.append(out)
        self.artists.extend(
            c for c in ax.collections if c not in before and isinstance(c, PathCollection)
        )
        return out

    def _mc(self, view: SpectrumView) -> None:
        """The MC under the data: stacked per process (or its sum), its statistical band, and
        the data/MC panel (Garwood intervals of the data over the MC, the MC band around 1)."""
        ax, rax, add = self.ax, self.rax, self.artists.append
        mc, data = view.mc, view.roi
        if mc is None or data is None:
            add(rax.text(0.5, 0.5, view.mc_note or "no MC", transform=rax.transAxes,
                         ha="center", va="center", fontsize=7, color="0.4"))  # fmt: skip
            rax.set_ylim(0.0, 2.0)
            return
        edges = mc.edges
        parts = [(p, view.mc_parts[p]) for p in sorted(view.mc_parts)]
        if parts:
            self._histplot(
                ax,
                [_plottable(h) for _, h in parts],
                edges,
                stack=True,
                histtype="fill",
                color=[self.colors.get(p, COLOR_RAW) for p, _ in parts],
                label=[f"MC {p}" for p, _ in parts],
                alpha=0.85,
            )
        else:
            self._histplot(
                ax, _plottable(mc), edges, histtype="fill", color=COLOR_MC, alpha=0.85, label="MC"
            )
        err = np.sqrt(np.clip(mc.variances, 0, None))
        add(ax.stairs(mc.values + err, edges, baseline=mc.values - err, fill=True,
                      facecolor="none", edgecolor="0.25", hatch="////", lw=0,
                      label="MC stat. unc."))  # fmt: skip
        ok = mc.values > 0
        rel = np.where(ok, err / np.where(ok, mc.values, 1.0), np.nan)
        add(rax.stairs(1 + rel, edges, baseline=1 - rel, fill=True, color="0.75", lw=0))
        ratio, down, up = data_mc_ratio(data, mc)
        out = self._histplot(
            rax,
            ratio,
            edges,
            yerr=np.array([down, up]),
            histtype="errorbar",
            color=COLOR_DATA,
            markersize=3,
        )
        container = getattr(out[0], "errorbar", out[0])  # an ErrorbarContainer (old mplhep: bare)
        self.ratio_points = container.lines[0] if hasattr(container, "lines") else container[0]
        shown = ratio[np.isfinite(ratio) & (data.values > 0)]
        top = float(shown.max()) if shown.size else 0.0
        rax.set_ylim(0.0, 2.0 if top <= 1.9 else min(RATIO_MAX, 1.15 * top))

    def _counts(self, h: Hist1D, color: str, label: str) -> None:
        """The ROI as mplhep ``histplot`` points with Poisson (Garwood) intervals (scaled by
        mplhep for weighted histograms, whose variances differ from their contents)."""
        plottable = _plottable(h)
        w2 = {} if any(h.flow) else {"w2": np.clip(h.variances, 0, None)}
        self._histplot(self.ax, plottable, h.edges, w2method="poisson", histtype="errorbar",
                       color=color, markersize=3, label=label, **w2)  # fmt: skip

    def _scan(self, view: SpectrumView) -> None:
        """The bump scan: its background (fit or MC), the most significant window and the
        Z_LR panel (or why there is none)."""
        ax, zax, add = self.ax, self.zax, self.artists.append
        scan = view.scan or {}
        if view.scan_bkg is not None and view.zlr is not None:
            b = view.scan_bkg
            used = b.values > 0
            first = int(np.argmax(used)) if used.any() else len(b.values)
            kind = "fit" if scan.get("background") == "fit" else "MC"
            add(
                ax.stairs(
                    b.values[first:],
                    b.edges[first:],
                    color=COLOR_FIT,
                    lw=1.4,
                    baseline=None,  # no vertical line down to zero at the first bin
                    label=f"Bump-scan background ({kind}"
                    + (
                        f", χ²/ndf = {scan['fit_chi2_ndf']:.2f})"
                        if scan.get("fit_chi2_ndf")
                        else ")"
                    ),
                )
            )
            z = view.zlr
            add(zax.stairs(z.values, z.edges, fill=True, color=COLOR_ROI, alpha=0.7, baseline=0.0))
            zmax = max(3.0, float(np.nanmax(np.abs(z.values))) if z.values.size else 3.0)
            zax.set_ylim(-1.15 * zmax, 1.15 * zmax)
        else:
            zax.set_ylim(-3.0, 3.0)
            reason = scan.get("skipped") or "no bump scan for this spectrum"
            reason = f"bump scan skipped: {reason}" if "skipped" in scan else reason
            add(zax.text(0.5, 0.5, reason, transform=zax.transAxes, ha="center", va="center",
                         fontsize=7, color="0.4"))  # fmt: skip
        window = scan.get("window_gev")
        if window:
            bound = "≥" if scan.get("global_z_is_lower_bound") else "="
            label = (
                f"Most significant window [{window[0]:g}, {window[1]:g}] GeV: "
                f"local Z = {scan['local_z']:.1f}, global Z {bound} {scan['global_z']:.1f}"
            )
            add(ax.axvspan(window[0], window[1], color=COLOR_WINDOW, alpha=0.18, lw=0, label=label))
            add(zax.axvspan(window[0], window[1], color=COLOR_WINDOW, alpha=0.18, lw=0))

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
            beyond = float(raw.values[n:].sum())  # nothing by the choice of xmax
            raw = Hist1D(
                raw.values[:n],
                raw.variances[:n],
                raw.edges[: n + 1],
                (raw.flow[0], raw.flow[1] + beyond),
            )
            label = f"All masses (fine grid in {width:g} GeV bins)"
            if self.with_mc:  # an outline: the MC stack fills the ROI
                self._histplot(ax, _plottable(raw), raw.edges, histtype="step", color="0.55",
                               lw=1.0, label=label)  # fmt: skip
            else:
                self._histplot(ax, _plottable(raw), raw.edges, histtype="fill", color=COLOR_RAW,
                               alpha=0.8, label=label)  # fmt: skip
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
        if self.with_mc:
            self._mc(view)
        if view.roi is not None:
            if self.with_mc:
                self._counts(view.roi, COLOR_DATA, "Data (ROI, main spectrum)")
            else:
                self._counts(view.roi, COLOR_ROI, "ROI (main spectrum)")
        self._scan(view)
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
            [h.values for h in (raw, view.roi, view.outliers) if h is not None],
            room=1.0 if self.with_mc else 0.6,
        )
        if limits is not None:
            ax.set_yscale("log")
            ax.set_ylim(*limits)
        else:
            ax.set_yscale("linear")
            ax.set_ylim(0, 1)
            add(ax.text(0.5, 0.5, "no entries", transform=ax.transAxes, ha="center", color="0.4"))
        ax.set_xlim(0.0, xmax)
        for marks in self.minor_ticks:  # a new y scale brings its own minor locator
            marks.take()
        self.zax.set_xlabel(f"{_mass_label(view.combo)} [GeV]")
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
            note = f"Accepted by BumpNet's loader ({self.cuts_text})"
            color = COLOR_OK
        if view.problems:
            note += "   |   " + "; ".join(view.problems)
            color = COLOR_BAD
        self.note_text.set_text(note)
        self.note_text.set_color(color)
        return self.fig


def spectrum_views(spectra: Mapping[str, list[SpectrumView]]) -> list[SpectrumView]:
    """Every spectrum of ``spectra`` in page order (groups in manifest order)."""
    return [v for group in spectra.values() for v in group]


def bookmark(view: SpectrumView) -> str:
    """The PDF bookmark of a spectrum's page: group, combination, final state."""
    return f"{view.group}: {view.combo} | {view.fs}"


def render_spectra_pages(
    views: list[SpectrumView],
    info: LabelInfo,
    path: Path,
    cuts_text: str = "",
    processes: list[str] | None = None,
) -> Path:
    """Write one page per view of ``views`` into the PDF ``path`` (atomically).

    ``processes``: the MC processes of the legend, in order; give the same list to every
    part of one document (default: those of ``views``).
    """
    if processes is None:
        processes = sorted({p for v in views for p in v.mc_parts})
    pages: dict[tuple[bool, bool], _SpectrumPage] = {}
    with atomic_path(path) as tmp, PdfPages(tmp) as pdf:
        for view in views:
            kind = (is_data(view.group), view.with_mc)
            if kind not in pages:
                pages[kind] = _SpectrumPage(info, kind[0], cuts_text, kind[1], processes)
            pdf.savefig(pages[kind].draw(view))
    return path


def join_spectra_parts(parts: list[Path], views: list[SpectrumView], path: Path) -> Path:
    """Join the part PDFs (in order, one page per view) into ``path`` with one bookmark per
    page; raises ValueError if the parts do not hold one page per view."""
    from pypdf import PdfWriter  # only the plots need it

    writer = PdfWriter()
    for part in parts:
        writer.append(part)
    if len(writer.pages) != len(views):
        raise ValueError(f"the spectra parts hold {len(writer.pages)} pages, not {len(views)}")
    for page, view in enumerate(views):
        writer.add_outline_item(title=bookmark(view), page_number=page)
    writer.add_metadata(
        {"/Title": "BumpNet mass spectra", "/Creator": "bumpnet-masses processor.output.plots"}
    )
    writer.page_mode = "/UseOutlines"
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        writer.write(out)
    writer.close()
    return path


def split_views(views: list[SpectrumView], n_parts: int) -> list[list[SpectrumView]]:
    """``views`` cut into at most ``n_parts`` consecutive, nearly equal, non-empty parts."""
    n_parts = max(1, min(n_parts, len(views)))
    bounds = [round(i * len(views) / n_parts) for i in range(n_parts + 1)]
    return [views[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
