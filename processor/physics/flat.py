"""Jagged object collections as flat numpy arrays plus offsets (the hot path's form).

The physics works on :class:`Flat` collections: one contiguous array per field and the event
offsets. Awkward records are unpacked once per chunk (:func:`flat_of`) and built again only
where a public function must return them (:meth:`Flat.to_awkward`, no copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from processor.physics.kernels import native


@dataclass
class Flat:
    """Objects of one type: ``offsets`` (int64, n_events + 1, from 0) and flat ``fields``."""

    offsets: np.ndarray
    fields: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        self.offsets = native(self.offsets, np.int64)

    @property
    def counts(self) -> np.ndarray:
        """Objects per event (int64)."""
        return np.diff(self.offsets)

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, name: str) -> np.ndarray:
        return self.fields[name]

    def take(self, index: np.ndarray, counts: np.ndarray) -> Flat:
        """The objects at flat ``index`` (grouped by event, ``counts`` per event)."""
        return Flat(offsets_of(counts), {k: v[index] for k, v in self.fields.items()})

    def compress(self, keep: np.ndarray) -> Flat:
        """The objects where ``keep`` (flat bool) is true, order kept."""
        kept = np.zeros(len(keep) + 1, np.int64)
        np.cumsum(keep, out=kept[1:])
        return Flat(kept[self.offsets], {k: v[keep] for k, v in self.fields.items()})

    def to_awkward(self) -> ak.Array:
        """The collection as a jagged array of records (sharing the buffers)."""
        n_obj = int(self.offsets[-1])
        content = ak.contents.RecordArray(
            [ak.contents.NumpyArray(v) for v in self.fields.values()],
            list(self.fields),
            length=n_obj,
        )
        return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(self.offsets), content))


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """Offsets (int64, starting at 0) of per-event counts."""
    out = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def flat_of(rec: ak.Array | Flat) -> Flat:
    """A jagged array of records (one list level) as a :class:`Flat` (packed first if needed);
    a :class:`Flat` as it is."""
    if isinstance(rec, Flat):
        return rec
    layout = ak.to_layout(rec)
    if not _is_packed(layout):
        layout = ak.to_layout(ak.to_packed(rec))
    if not _is_packed(layout):  # e.g. option types: let awkward flatten field by field
        counts = np.asarray(ak.num(rec, axis=1), dtype=np.int64)
        return Flat(
            offsets_of(counts),
            {f: np.asarray(ak.flatten(rec[f], axis=1)) for f in ak.fields(rec)},
        )
    offsets = np.asarray(layout.offsets, dtype=np.int64)
    content = layout.content
    n = int(offsets[-1])
    return Flat(offsets, {f: np.asarray(content.content(f).data)[:n] for f in content.fields})


def _is_packed(layout: ak.contents.Content) -> bool:
    if not isinstance(layout, ak.contents.ListOffsetArray):
        return False
    content = layout.content
    if not isinstance(content, ak.contents.RecordArray) or content.is_tuple:
        return False
    if int(layout.offsets[0]) != 0:
        return False
    return all(
        isinstance(content.content(f), ak.contents.NumpyArray)
        and content.content(f).data.ndim == 1
        and len(content.content(f)) >= int(layout.offsets[-1])
        for f in content.fields
    )
