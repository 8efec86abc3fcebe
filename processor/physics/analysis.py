"""One chunk's physics, as pure functions: selection, count limits, final states, masses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import awkward as ak
import numpy as np

from processor.config import CombinationConfig, ObjectSelection
from processor.physics.finalstates import (
    Pattern,
    combination_label,
    decode,
    encode,
    final_state_mask,
    fs_label,
    patterns,
)
from processor.physics.masses import MassEntries, combination_masses
from processor.physics.selection import count_limit_mask, object_counts, select_objects

#: cutflow steps in order (event counts)
CUTFLOW_STEPS = ("events_read", "after_count_limits", "in_final_state", "with_combination")


@dataclass
class ChunkAnalysis:
    """What one chunk contributes, before histogramming."""

    n_events: int
    cutflow: dict[str, int]
    valid: np.ndarray  # events whose final state counts
    fs_code: np.ndarray  # final-state code of every event (meaningful where valid)
    entries: MassEntries
    patterns: tuple[Pattern, ...]

    def keys(self) -> list[tuple[str, str]]:
        """(final-state label, combination label) of every mass entry."""
        return [
            combo_key(int(c), self.patterns[int(p)])
            for c, p in zip(self.fs_code[self.entries.event], self.entries.pattern, strict=True)
        ]


@lru_cache(maxsize=100_000)
def combo_key(code: int, pattern: Pattern) -> tuple[str, str]:
    """(final-state label, combination label) of a pattern in a final state."""
    counts = decode(code)
    return fs_label(counts), combination_label(pattern, counts)


def analyse_objects(
    collections: Mapping[str, ak.Array],
    n_events: int,
    sel: ObjectSelection,
    comb: CombinationConfig,
    hypothesis: str = "stored",
) -> ChunkAnalysis:
    """Select objects, apply count limits and final-state rules, and compute every mass."""
    objects = select_objects(collections, sel)
    types = sel.active_types()
    counts = object_counts(objects, types, n_events)
    within_limits = count_limit_mask(counts, sel)
    valid = within_limits & final_state_mask(counts, comb)
    pats = patterns(types, comb)
    entries = combination_masses(objects, counts, valid, pats, comb.mode, hypothesis)
    with_combo = np.zeros(n_events, dtype=bool)
    with_combo[entries.event] = True
    cutflow = {
        "events_read": int(n_events),
        "after_count_limits": int(within_limits.sum()),
        "in_final_state": int(valid.sum()),
        "with_combination": int(with_combo.sum()),
    }
    return ChunkAnalysis(n_events, cutflow, valid, encode(counts), entries, pats)
