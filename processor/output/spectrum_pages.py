"""One PDF page per spectrum: raw view, ROI, outlier tail, edges, the bump scan and BumpNet's verdict."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mplhep
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from processor.config import BumpNetCuts
from processor.fsutil import atomic_path
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


class _SpectrumPage:
    """The spectrum page, built once (axes, label, note texts) and refilled per spectrum."""

    def __init__(self, info: LabelInfo, data: bool, cuts_text: str = "") -> None:
        self.cuts_text = cuts_text or loader_summary(BumpNetCuts())
        self.fig = _figure(8.5, 7.0)
        self.fig.add_artist(_SharedMathtext())
        self.ax = self.fig.add_axes((0.13, 0.36, 0.83, 0.55))
        #: the bump scan's Z_LR per ROI bin, below the spectrum
        self.zax = self.fig.add_axes((0.13, 0.17, 0.83, 0.16), sharex=self.ax)
        self.zax.axhline(0.0, color="0.5", lw=0.8)
        self.zax.set_ylabel(r"$Z_{LR}$")
        self.ax.tick_params(labelbottom=False)
        _atlas_label(self.ax, info, data=data, loc=4)
        self.name_text = self.fig.text(
            0.01, 0.055, "", fontsize=8, color="0.35", family="DejaVu Sans Mono"
        )
        self.note_text = self.fig.text(0.01, 0.015, "", fontsize=9)
        self.artists: list[Any] = []

    def _clear(self) -> None:
        """Remove the previous spectrum's artists and legend."""
        for artist in self.artists:
            _remove(artist)
        self.artists = []
        if self.ax.get_legend() is not None:
            self.ax.get_legend().remove()

    def _counts(self, h: Hist1D, color: str, label: str) -> None:
        """The ROI as mplhep ``histplot`` points with Poisson (Garwood) intervals (scaled by
        mplhep for weighted histograms, whose variances differ from their contents)."""
        self.artists.append(
            mplhep.histplot(
                h.values,
                h.edges,
                w2=np.clip(h.variances, 0, None),
                w2method="poisson",
                histtype="errorbar",
                color=color,
                markersize=3,
                label=label,
                ax=self.ax,
            )
        )

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


def plot_spectra_pdf(
    spectra: Mapping[str, list[SpectrumView]], info: LabelInfo, path: Path, cuts_text: str = ""
) -> Path | None:
    """``spectra.pdf``: one page per spectrum, groups in manifest order (None: no spectra);
    ``cuts_text``: BumpNet's loader cuts in words (:func:`readiness.loader_summary`)."""
    views = [v for group in spectra.values() for v in group]
    if not views:
        return None
    pages: dict[bool, _SpectrumPage] = {}
    with atomic_path(path) as tmp, PdfPages(tmp) as pdf:
        for view in views:
            data = view.group != "mc"
            if data not in pages:
                pages[data] = _SpectrumPage(info, data, cuts_text)
            pdf.savefig(pages[data].draw(view))
        meta = pdf.infodict()
        meta["Title"] = "BumpNet mass spectra"
        meta["Creator"] = "bumpnet-masses processor.output.plots"
    return path
