"""Final states and object combinations: which events count, which masses exist, their labels."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from processor.config import CATEGORY_ORDER, COMBO_ORDER, CombinationConfig

_BITS = 4  # counts are at most 8 (config limit), 4 bits each


def encode(counts: Mapping[str, np.ndarray]) -> np.ndarray:
    """Integer code of each event's multiplicities (types in category order, 4 bits each)."""
    n = len(next(iter(counts.values())))
    code = np.zeros(n, dtype=np.int64)
    for i, t in enumerate(CATEGORY_ORDER):
        if t in counts:
            code |= counts[t].astype(np.int64) << (_BITS * i)
    return code


def decode(code: int) -> dict[str, int]:
    """Multiplicity per type of a final-state code."""
    return {
        t: (int(code) >> (_BITS * i)) & ((1 << _BITS) - 1) for i, t in enumerate(CATEGORY_ORDER)
    }


def fs_label(counts: Mapping[str, int]) -> str:
    """The original's final-state label, ``"{e}e_{m}m_{j}j_{g}g_{t}t_{b}b"``."""
    return "_".join(f"{counts.get(t, 0)}{t}" for t in ("e", "m", "j", "g", "t", "b"))


def category_label(counts: Mapping[str, int]) -> str:
    """BumpNet category, counts in the order e, m, j, g, t, b: ``2ex_0mx_1jx_0gx_0tx_0bx``."""
    return "_".join(f"{counts.get(t, 0)}{t}x" for t in CATEGORY_ORDER)


def parse_fs_label(label: str) -> dict[str, int]:
    """Inverse of :func:`fs_label`."""
    out: dict[str, int] = {}
    for part in label.split("_"):
        out[part[-1]] = int(part[:-1])
    return out


def final_state_mask(counts: Mapping[str, np.ndarray], comb: CombinationConfig) -> np.ndarray:
    """Events whose final state counts: present types within [min_types, max_types], each
    present count within [min_count, max_count]."""
    arrays = list(counts.values())
    n_types = np.zeros(len(arrays[0]), dtype=np.int64)
    ok = np.ones(len(arrays[0]), dtype=bool)
    for c in arrays:
        present = c > 0
        n_types += present
        ok &= ~present | ((c >= comb.min_count) & (c <= comb.max_count))
    return ok & (n_types >= comb.min_types) & (n_types <= comb.max_types)


@dataclass(frozen=True)
class Pattern:
    """A combination shape: for each type in ``types`` (combination order) the number of
    objects used, ``used[i]``, taken as the last ``used[i]`` of that type's pT-ordered list
    (so in leading-only mode, where used equals the multiplicity, all of them)."""

    types: tuple[str, ...]
    used: tuple[int, ...]

    @property
    def n_objects(self) -> int:
        """Objects in the combination."""
        return sum(self.used)


@lru_cache(maxsize=64)
def patterns(types: tuple[str, ...], comb: CombinationConfig) -> tuple[Pattern, ...]:
    """All combination shapes allowed by the config for the active object types."""
    ordered = tuple(t for t in COMBO_ORDER if t in types)
    out: list[Pattern] = []
    for k in range(comb.min_types, comb.max_types + 1):
        for subset in itertools.combinations(ordered, k):
            for used in itertools.product(range(comb.min_count, comb.max_count + 1), repeat=k):
                if comb.min_objects <= sum(used) <= comb.max_objects:
                    out.append(Pattern(subset, used))
    return tuple(out)


def pattern_applies(pattern: Pattern, counts: Mapping[str, int], mode: str) -> bool:
    """Whether a final state with these multiplicities has this combination."""
    if mode == "leading_only":
        return all(counts.get(t, 0) == u for t, u in zip(pattern.types, pattern.used, strict=True))
    return all(counts.get(t, 0) >= u for t, u in zip(pattern.types, pattern.used, strict=True))


def combination_label(pattern: Pattern, counts: Mapping[str, int]) -> str:
    """Objects as letter + pT rank, type by type in the order e, m, j, b, g, t (``e0e1j0``)."""
    parts = []
    for t, u in zip(pattern.types, pattern.used, strict=True):
        n = counts[t]
        parts.extend(f"{t}{i}" for i in range(n - u, n))
    return "".join(parts)


def combinations_for(
    counts: Mapping[str, int], types: tuple[str, ...], comb: CombinationConfig
) -> list[str]:
    """Combination labels of one final state (in pattern order); empty if it does not count."""
    single = {t: np.array([counts.get(t, 0)]) for t in types}
    if not final_state_mask(single, comb)[0]:
        return []
    return [
        combination_label(p, counts)
        for p in patterns(types, comb)
        if pattern_applies(p, counts, comb.mode)
    ]
