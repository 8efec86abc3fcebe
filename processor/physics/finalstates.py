"""Final states and object combinations: which events count, which masses exist, their labels."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from processor.config import CATEGORY_ORDER, CHARGE_TAGS, COMBO_ORDER, FS_ORDER, CombinationConfig

_BITS = 4  # counts are at most 8 (config limit), 4 bits each
_TAG_SHIFT = _BITS * len(FS_ORDER)
#: tag code of each event: 0 none, 1 OS, 2 SS
TAG_CODES = {None: 0, "OS": 1, "SS": 2}
_TAG_OF_CODE = {v: k for k, v in TAG_CODES.items()}


def encode(counts: Mapping[str, np.ndarray], tags: np.ndarray | None = None) -> np.ndarray:
    """Integer code of each event's final state: multiplicities in FS_ORDER (4 bits each) and
    the charge tag code (:data:`TAG_CODES`) above them."""
    n = len(next(iter(counts.values())))
    code = np.zeros(n, dtype=np.int64)
    for i, t in enumerate(FS_ORDER):
        if t in counts:
            code |= counts[t].astype(np.int64) << (_BITS * i)
    if tags is not None:
        code |= tags.astype(np.int64) << _TAG_SHIFT
    return code


def decode(code: int) -> dict[str, int]:
    """Multiplicity per type (FS_ORDER) of a final-state code."""
    return {t: (int(code) >> (_BITS * i)) & ((1 << _BITS) - 1) for i, t in enumerate(FS_ORDER)}


def decode_tag(code: int) -> str | None:
    """The charge tag ("OS", "SS" or None) of a final-state code."""
    return _TAG_OF_CODE[(int(code) >> _TAG_SHIFT) & 3]


def fs_label(counts: Mapping[str, int], tag: str | None = None) -> str:
    """Internal final-state label ``"{e}e_{m}m_{j}j_{g}g_{t}t_{b}b_{Z}Z"`` [+ ``_OS``/``_SS``]."""
    label = "_".join(f"{counts.get(t, 0)}{t}" for t in FS_ORDER)
    return f"{label}_{tag}" if tag else label


def code_label(code: int) -> str:
    """The final-state label of a final-state code."""
    return fs_label(decode(code), decode_tag(code))


def parse_fs_label(label: str) -> tuple[dict[str, int], str | None]:
    """Inverse of :func:`fs_label`: (counts per type in FS_ORDER, charge tag or None).

    Labels without the Z part (the original's six types) parse with Z = 0.
    """
    parts = label.split("_")
    tag = parts.pop() if parts and parts[-1] in CHARGE_TAGS else None
    counts = dict.fromkeys(FS_ORDER, 0)
    for part in parts:
        if len(part) < 2 or part[-1] not in counts or not part[:-1].isdigit():
            raise ValueError(f"not a final-state label: {label!r}")
        counts[part[-1]] = int(part[:-1])
    return counts, tag


def category_label(counts: Mapping[str, int], tag: str | None = None) -> str:
    """Category for names, counts in the original's order e, m, j, g, t, b
    (``2ex_0mx_1jx_0gx_0tx_0bx``), then ``_{Z}Zx`` when there are Z candidates and the tag."""
    label = "_".join(f"{counts.get(t, 0)}{t}x" for t in CATEGORY_ORDER)
    if counts.get("Z", 0):
        label += f"_{counts['Z']}Zx"
    return f"{label}_{tag}" if tag else label


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


@dataclass(frozen=True)
class LeptonPair:
    """One pair of the three electrons/muons of a three-lepton final state, with the pair's
    charge relation: its mass is a combination of its own, labelled e.g. ``e0e2_OS``."""

    first: tuple[str, int]
    second: tuple[str, int]
    tag: str

    @property
    def label(self) -> str:
        """Combination label: the two objects (letter + pT rank) and the tag."""
        (t1, i1), (t2, i2) = self.first, self.second
        return f"{t1}{i1}{t2}{i2}_{self.tag}"


def three_lepton_slots(n_e: int) -> tuple[tuple[tuple[str, int], tuple[str, int]], ...]:
    """The three lepton pairs of an event with ``n_e`` electrons and ``3 - n_e`` muons: leptons
    listed e0.., m0.. and paired (0, 1), (0, 2), (1, 2)."""
    leptons = [("e", i) for i in range(n_e)] + [("m", i) for i in range(3 - n_e)]
    return tuple((leptons[a], leptons[b]) for a, b in ((0, 1), (0, 2), (1, 2)))


#: every possible three-lepton pair combination (each pair, each tag)
LEPTON_PAIRS: tuple[LeptonPair, ...] = tuple(
    dict.fromkeys(
        LeptonPair(first, second, tag)
        for n_e in (3, 2, 1, 0)
        for first, second in three_lepton_slots(n_e)
        for tag in CHARGE_TAGS
    )
)


def combination_label(pattern: Pattern | LeptonPair, counts: Mapping[str, int]) -> str:
    """Objects as letter + pT rank, type by type in the order e, m, j, b, Z, g, t (``e0e1j0``,
    ``j0Z0``); a three-lepton pair's label ends in its charge tag (``e0e2_OS``)."""
    if isinstance(pattern, LeptonPair):
        return pattern.label
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
