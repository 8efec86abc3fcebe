"""Fine-grid mass histograms: one per (final state, combination), created only when filled."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import hist
import numpy as np

from processor.physics.analysis import ChunkAnalysis, combo_key
from processor.physics.finalstates import code_label


@dataclass(frozen=True)
class MassGrid:
    """The fixed fine binning every histogram shares: [0, mass_max) in steps of ``width``."""

    width: float = 5.0
    mass_max: float = 13000.0

    @classmethod
    def from_config(cls, mass_cfg: Any) -> MassGrid:
        """The grid of ``mass_calculation_task_config`` (``fine_bin_width_gev``, ``mass_max_gev``)."""
        return cls(mass_cfg.fine_bin_width_gev, mass_cfg.mass_max_gev)

    @property
    def n_bins(self) -> int:
        """Number of regular bins (flow bins excluded)."""
        return int(round(self.mass_max / self.width))

    def make(self, weighted: bool) -> hist.Hist:
        """An empty histogram on this grid (Weight storage when weighted)."""
        axis = hist.axis.Regular(
            self.n_bins,
            0.0,
            self.mass_max,
            name="mass",
            label="m [GeV]",
            underflow=True,
            overflow=True,
        )
        return hist.Hist(axis, storage=hist.storage.Weight() if weighted else hist.storage.Double())

    def make_counts(self) -> hist.Hist:
        """An empty per-bin fill counter on this grid (Int64 storage, flow bins included)."""
        return hist.Hist(
            hist.axis.Regular(
                self.n_bins, 0.0, self.mass_max, name="mass", underflow=True, overflow=True
            ),
            storage=hist.storage.Int64(),
        )


def fill_chunk(
    analysis: ChunkAnalysis, grid: MassGrid, weights: np.ndarray | None, weighted: bool
) -> dict[str, Any]:
    """Histograms and final-state counts of one chunk.

    Returns ``{"hists": {(fs, combo): Hist}, "fs_events": {fs: n}, "fs_sumw": {fs: sum w},
    "cutflow": {step: n}}``, plus ``"fills": {(fs, combo): Int64 Hist}`` (the number of fills
    per bin, which a weighted histogram does not keep) when ``weights`` are given. Only keys with
    entries are created.
    """
    entries = analysis.entries
    w_entries = None if weights is None else weights[entries.event]
    n_pat = len(analysis.patterns)
    key = analysis.fs_code[entries.event] * n_pat + entries.pattern
    hists: dict[tuple[str, str], hist.Hist] = {}
    fills: dict[tuple[str, str], hist.Hist] = {}
    if len(key):
        order = np.argsort(key, kind="stable")
        uniq, starts = np.unique(key[order], return_index=True)
        bounds = np.append(starts, len(order))
        for k, lo, hi in zip(uniq, bounds[:-1], bounds[1:], strict=True):
            sel = order[lo:hi]
            h = grid.make(weighted)
            if w_entries is None:
                h.fill(mass=entries.mass[sel])
            else:
                h.fill(mass=entries.mass[sel], weight=w_entries[sel])
            name = combo_key(int(k // n_pat), analysis.patterns[int(k % n_pat)])
            hists[name] = h
            if w_entries is not None:
                fills[name] = grid.make_counts().fill(mass=entries.mass[sel])
    codes = analysis.fs_code[analysis.valid]
    w_valid = None if weights is None else weights[analysis.valid]
    uniq, inverse, n = np.unique(codes, return_inverse=True, return_counts=True)
    sumw = (
        n.astype(np.float64)
        if w_valid is None
        else np.bincount(inverse, weights=w_valid, minlength=len(uniq))
    )
    labels = [code_label(int(c)) for c in uniq]
    out: dict[str, Any] = {
        "hists": hists,
        "fs_events": dict(zip(labels, (int(x) for x in n), strict=True)),
        "fs_sumw": dict(zip(labels, (float(x) for x in sumw), strict=True)),
        "cutflow": dict(analysis.cutflow),
    }
    if weights is not None:
        out["fills"] = fills
    return out


def accumulator_size(obj: Any) -> int:
    """Pickled size in bytes of an accumulator (what Dask ships between workers)."""
    return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
