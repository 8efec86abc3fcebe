"""Fine-grid mass histograms: one per (final state, combination), created only when filled.

Per chunk they are filled into one compact :class:`MassTable` (sparse, addable, small to ship);
the ``hist.Hist`` objects are built once from the accumulated table (:func:`expand_group`)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from functools import cached_property
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

    @cached_property
    def axis(self) -> hist.axis.Regular:
        """The mass axis (with flow bins); its ``index`` is the bin a fill goes to."""
        return hist.axis.Regular(
            self.n_bins, 0.0, self.mass_max, name="mass", underflow=True, overflow=True
        )

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


@dataclass
class MassTable:
    """Fine mass histograms of many keys in one compact, addable object.

    Only the touched bins are stored, as one sorted table over ``key id * n_flow + bin`` (bin
    0 is the underflow, ``n_flow - 1`` the overflow): the sum of weights, the sum of squared
    weights (``weighted``: the histograms have Weight storage) and the number of fills
    (``counted``: weighted MC, whose weighted histogram does not keep fills). A chunk fills it
    with one ``np.bincount``; ``+`` adds two tables bin by bin in the same order of floating-point
    additions as adding the equivalent ``hist.Hist``, and :meth:`to_hists` builds the histograms
    once, at the end. A key exists only if it was filled at least once (like the histograms
    before).
    """

    n_flow: int
    weighted: bool
    counted: bool
    keys: list[Any] = field(default_factory=list)
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sumw: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    sumw2: np.ndarray | None = None
    fills: np.ndarray | None = None

    @classmethod
    def fill(
        cls,
        grid: MassGrid,
        keys: list[Any],
        key_id: np.ndarray,
        mass: np.ndarray,
        weights: np.ndarray | None,
        weighted: bool,
    ) -> MassTable:
        """A table of ``keys`` filled with ``mass`` (and ``weights``); ``key_id`` indexes ``keys``."""
        n_flow = grid.n_bins + 2
        bins = grid.axis.index(np.asarray(mass, dtype=np.float64)) + 1
        flat = np.asarray(key_id, dtype=np.int64) * n_flow + bins
        index, inverse = np.unique(flat, return_inverse=True)
        n = len(index)
        counts = np.bincount(inverse, minlength=n).astype(np.float64)
        table = cls(n_flow, weighted, weights is not None, list(keys), index)
        if weights is None:
            table.sumw = counts
            table.sumw2 = counts.copy() if weighted else None
        else:
            w = np.asarray(weights, dtype=np.float64)
            table.sumw = np.bincount(inverse, weights=w, minlength=n)
            table.sumw2 = np.bincount(inverse, weights=w * w, minlength=n)
            table.fills = counts.astype(np.int64)
        return table

    def copy(self) -> MassTable:
        """An independent copy."""
        return MassTable(
            self.n_flow,
            self.weighted,
            self.counted,
            list(self.keys),
            self.index.copy(),
            self.sumw.copy(),
            None if self.sumw2 is None else self.sumw2.copy(),
            None if self.fills is None else self.fills.copy(),
        )

    def __add__(self, other: MassTable) -> MassTable:
        return self.copy().__iadd__(other)

    def __iadd__(self, other: MassTable) -> MassTable:
        if (self.n_flow, self.weighted, self.counted) != (
            other.n_flow,
            other.weighted,
            other.counted,
        ):
            raise ValueError(
                "cannot add mass tables of different grids or storages: "
                f"{(self.n_flow, self.weighted, self.counted)} vs "
                f"{(other.n_flow, other.weighted, other.counted)}"
            )
        pos = {k: i for i, k in enumerate(self.keys)}
        remap = np.array([pos.setdefault(k, len(pos)) for k in other.keys], dtype=np.int64)
        self.keys = list(pos)
        other_index = (
            remap[other.index // self.n_flow] * self.n_flow + other.index % self.n_flow
            if len(other.index)
            else other.index
        )
        index, inverse = np.unique(np.concatenate([self.index, other_index]), return_inverse=True)
        n = len(index)

        def add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            if a is None or b is None:
                return None
            return np.bincount(inverse, weights=np.concatenate([a, b]), minlength=n)

        self.index = index
        self.sumw = add(self.sumw, other.sumw)  # type: ignore[assignment]
        self.sumw2 = add(self.sumw2, other.sumw2)
        fills = add(self.fills, other.fills)
        self.fills = None if fills is None else np.rint(fills).astype(np.int64)
        return self

    def to_hists(self, grid: MassGrid) -> tuple[dict[Any, hist.Hist], dict[Any, hist.Hist]]:
        """The histograms ``{key: Hist}`` and, when ``counted``, the fill counters
        ``{key: Int64 Hist}``, exactly as filling ``hist.Hist`` directly would give."""
        if grid.n_bins + 2 != self.n_flow:
            raise ValueError(f"mass table of {self.n_flow} bins does not match {grid}")
        hists: dict[Any, hist.Hist] = {}
        fills: dict[Any, hist.Hist] = {}
        key_of = self.index // self.n_flow
        bins = self.index % self.n_flow
        bounds = np.searchsorted(key_of, np.arange(len(self.keys) + 1))
        for i, key in enumerate(self.keys):
            lo, hi = bounds[i], bounds[i + 1]
            if lo == hi:
                continue
            b = bins[lo:hi]
            h = grid.make(self.weighted)
            view = h.view(flow=True)
            if self.weighted:
                view.value[b] = self.sumw[lo:hi]
                view.variance[b] = self.sumw2[lo:hi]  # type: ignore[index]
            else:
                view[b] = self.sumw[lo:hi]
            hists[key] = h
            if self.fills is not None:
                c = grid.make_counts()
                c.view(flow=True)[b] = self.fills[lo:hi]
                fills[key] = c
        return hists, fills


def fill_chunk(
    analysis: ChunkAnalysis, grid: MassGrid, weights: np.ndarray | None, weighted: bool
) -> dict[str, Any]:
    """The compact mass table and final-state counts of one chunk.

    Returns ``{"table": MassTable, "fs_events": {fs: n}, "fs_sumw": {fs: sum w},
    "cutflow": {step: n}}``. The table's keys are ``(fs, combo)``; it keeps per-bin fill counts
    when ``weights`` are given. :func:`expand_group` turns it into the histograms.
    """
    entries = analysis.entries
    w_entries = None if weights is None else weights[entries.event]
    n_pat = len(analysis.patterns)
    key = analysis.fs_code[entries.event] * n_pat + entries.pattern
    uniq, key_id = np.unique(key, return_inverse=True)
    names = [combo_key(int(k // n_pat), analysis.patterns[int(k % n_pat)]) for k in uniq.tolist()]
    table = MassTable.fill(grid, names, key_id, entries.mass, w_entries, weighted)
    codes = analysis.fs_code[analysis.valid]
    w_valid = None if weights is None else weights[analysis.valid]
    uniq, inverse, n = np.unique(codes, return_inverse=True, return_counts=True)
    sumw = (
        n.astype(np.float64)
        if w_valid is None
        else np.bincount(inverse, weights=w_valid, minlength=len(uniq))
    )
    labels = [code_label(int(c)) for c in uniq]
    return {
        "table": table,
        "fs_events": dict(zip(labels, (int(x) for x in n), strict=True)),
        "fs_sumw": dict(zip(labels, (float(x) for x in sumw), strict=True)),
        "cutflow": dict(analysis.cutflow),
    }


def expand_group(content: dict[str, Any], grid: MassGrid) -> dict[str, Any]:
    """A sample group's accumulated content with its compact tables turned into histograms:
    ``"table"`` becomes ``"hists"`` (and ``"fills"`` when counted); ``"components"``
    ``{process: MassTable}`` becomes ``{process: {key: Hist}}``. Other entries are kept."""
    out = {k: v for k, v in content.items() if k not in ("table", "components")}
    table = content.get("table")
    if isinstance(table, MassTable):
        hists, fills = table.to_hists(grid)
        out["hists"] = hists
        if table.counted:
            out["fills"] = fills
    else:
        out.setdefault("hists", {})
    if "components" in content:
        out["components"] = {
            proc: comp.to_hists(grid)[0] if isinstance(comp, MassTable) else comp
            for proc, comp in content["components"].items()
        }
    return out


def compact_size(groups: dict[str, Any], grid: MassGrid) -> int:
    """Pickled size of the compact form of accumulated groups (what processing ships and adds)."""
    compact = {}
    for group, content in groups.items():
        c = {k: v for k, v in content.items() if k not in ("hists", "fills", "components")}
        c["table"] = table_of(content.get("hists", {}), content.get("fills"), grid)
        if content.get("components"):
            c["components"] = {p: table_of(h, None, grid) for p, h in content["components"].items()}
        compact[group] = c
    return accumulator_size(compact)


def table_of(
    hists: dict[Any, hist.Hist], fills: dict[Any, hist.Hist] | None, grid: MassGrid
) -> MassTable:
    """The compact table of histograms on ``grid`` (bins that are non-zero in any storage)."""
    weighted = any(h.storage_type is hist.storage.Weight for h in hists.values())
    n_flow = grid.n_bins + 2
    table = MassTable(n_flow, weighted, bool(fills), list(hists))
    idx, sw, sw2, nf = [], [], [], []
    for i, (key, h) in enumerate(hists.items()):
        view = h.view(flow=True)
        vals = np.asarray(view.value if weighted else view, dtype=np.float64)
        var = np.asarray(view.variance, dtype=np.float64) if weighted else None
        cnt = None if not fills else np.asarray(fills[key].view(flow=True), dtype=np.int64)
        nz = (vals != 0) | (var != 0 if var is not None else False)
        if cnt is not None:
            nz |= cnt != 0
        b = np.flatnonzero(nz)
        idx.append(i * n_flow + b)
        sw.append(vals[b])
        if var is not None:
            sw2.append(var[b])
        if cnt is not None:
            nf.append(cnt[b])
    if idx:
        table.index = np.concatenate(idx)
        table.sumw = np.concatenate(sw)
        table.sumw2 = np.concatenate(sw2) if sw2 else None
        table.fills = np.concatenate(nf) if nf else None
    return table


def accumulator_size(obj: Any) -> int:
    """Pickled size in bytes of an accumulator (what Dask ships between workers)."""
    return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
