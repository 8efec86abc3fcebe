"""Run-summary plots: final-state counts, cutflow, processing summary."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from processor.errors import PlotsError  # noqa: F401  (re-exported)
from processor.output.plotstyle import (
    COLOR_BAD,
    COLOR_DROPPED,
    COLOR_KEPT,
    COLOR_OK,
    CUTFLOW_LABELS,
    LabelInfo,
    _atlas_label,
    _bytes,
    _count,
    _duration,
    _figure,
    _save_png,
    _si,
)

logger = logging.getLogger(__name__)

TOP_FINAL_STATES = 30


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
