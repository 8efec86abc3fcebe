"""One block of generated events: flat object collections sorted by pT, and per-event quantities."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Coll:
    """One collection of objects: flat fields sorted by (event, -pt) and counts per event."""

    n: int
    f: dict[str, np.ndarray]

    @property
    def event(self) -> np.ndarray:
        return self.f["event"]

    @functools.cached_property
    def counts(self) -> np.ndarray:
        return np.bincount(self.event, minlength=self.n)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.f[key]

    def __len__(self) -> int:
        return len(self.event)

    def subset(self, mask: np.ndarray) -> _Coll:
        return _Coll(self.n, {k: v[mask] for k, v in self.f.items()})

    def energy(self) -> np.ndarray:
        p = self["pt"] * np.cosh(self["eta"])
        return np.sqrt(p**2 + self["m"] ** 2)

    def per_event_any(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.event[mask], minlength=self.n) > 0

    def per_event_count(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.event[mask], minlength=self.n)

    def per_event_product(self, factors: np.ndarray) -> np.ndarray:
        return np.exp(np.bincount(self.event, weights=np.log(factors), minlength=self.n))


@dataclass
class _Events:
    """The generated events of one block (GeV)."""

    n: int
    coll: dict[str, _Coll]
    met_x: np.ndarray
    met_y: np.ndarray
    truth_met_x: np.ndarray
    truth_met_y: np.ndarray
    trig: dict[str, np.ndarray]
    sf: dict[str, np.ndarray]
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def _wrap(phi: np.ndarray) -> np.ndarray:
    return (phi + np.pi) % (2 * np.pi) - np.pi
