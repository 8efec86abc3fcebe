"""What a synthetic file is: formats, kinds, file names, data periods and per-file constants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: the supported formats (``fmt`` argument of :func:`write_sample`)
FORMATS = ("2025e", "2020e", "2016e", "physlite")
#: the sample kinds
KINDS = ("data", "mc")
#: the tree name of each format
TREE_NAMES = {"2025e": "analysis", "2020e": "mini", "2016e": "mini", "physlite": "CollectionTree"}
#: MeV formats store momenta/energies x 1000
UNIT_SCALE = {"2025e": 1.0, "2020e": 1e3, "2016e": 1e3, "physlite": 1e3}
#: bump whenever the generated content changes: invalidates cached demo samples
GENERATOR_VERSION = 1

#: (name, xsec [pb], kfac, filteff) of the synthetic DSIDs; other DSIDs get ``_DEFAULT_XSEC``
SYNTHETIC_DSIDS: dict[int, tuple[str, float, float, float]] = {
    700000: ("Synthetic", 1.0, 1.0, 1.0),
}
_DEFAULT_XSEC = (1.0, 1.0, 1.0)

#: run-number ranges of the data periods (first run, last run)
_PERIOD_RUNS: dict[str, tuple[int, int]] = {
    "data15_periodD": (276262, 276954),
    "data15_periodE": (278880, 279928),
    "data15_periodF": (279932, 280422),
    "data15_periodG": (280423, 281075),
    "data15_periodH": (281130, 281411),
    "data15_periodJ": (282625, 284484),
    "data16_periodA": (296939, 300287),
    "data16_periodB": (300345, 300908),
    "data16_periodC": (301912, 302393),
    "data16_periodD": (302737, 303560),
    "data16_periodE": (303638, 303892),
    "data16_periodF": (303943, 304494),
    "data16_periodG": (305291, 306714),
    "data16_periodI": (307124, 308084),
    "data16_periodK": (309311, 309759),
    "data16_periodL": (310015, 311481),
    "data12": (200804, 215643),
}
_MC_RUN = {"2025e": 284500, "2020e": 284500, "2016e": 195847, "physlite": 284500}


def sample_filename(
    fmt: str,
    kind: str,
    *,
    skim: str = "2to4lep",
    dsid: int = 700000,
    name: str = "Synthetic",
    period: str = "data15_periodD",
) -> str:
    """A file name in the naming scheme of the real files of ``fmt`` (no directory part).

    2025e: ``ODEO_FEB2025_v0_<skim>_<period>.<skim>.root`` (data) and
    ``ODEO_FEB2025_v0_<skim>_mc_<dsid>.<name>.<skim>.root`` (MC); 2020e:
    ``data_<X>.<skim>.root`` (``X`` = the period letter) and ``mc_<dsid>.<name>.<skim>.root``;
    2016e: ``Data<Egamma|Muons>.root`` and ``mc_<dsid>.<name>.root``; PHYSLITE:
    ``<year>_13TeV.<period>.physics_Main.DAOD_PHYSLITE.root`` and
    ``mc20_13TeV.<dsid>.<name>.DAOD_PHYSLITE.root``.  :func:`write_sample` takes the data
    period (run numbers, ``category``) from names of this form.
    """
    _check_fmt_kind(fmt, kind)
    letter = period[-1] if period else "D"
    if fmt == "2025e":
        if kind == "data":
            return f"ODEO_FEB2025_v0_{skim}_{period}.{skim}.root"
        return f"ODEO_FEB2025_v0_{skim}_mc_{dsid}.{name}.{skim}.root"
    if fmt == "2020e":
        return f"data_{letter}.{skim}.root" if kind == "data" else f"mc_{dsid}.{name}.{skim}.root"
    if fmt == "2016e":
        if kind == "data":
            return "DataMuons.root" if "mu" in skim.lower() else "DataEgamma.root"
        return f"mc_{dsid}.{name}.root"
    if kind == "data":
        year, _, per = period.partition("_")
        return f"{year}_13TeV.{per or 'periodD'}.physics_Main.DAOD_PHYSLITE.root"
    return f"mc20_13TeV.{dsid}.{name}.DAOD_PHYSLITE.root"


@dataclass
class _Meta:
    """Per-file constants of a sample."""

    fmt: str
    kind: str
    n_events: int
    seed: int
    dsid: int
    period: str
    run_lo: int
    run_hi: int
    xsec: float
    kfac: float
    filteff: float
    weights: np.ndarray  # mcWeight for every event (float32); ones for data
    sum_w: float
    sum_w2: float

    @property
    def is_mc(self) -> bool:
        return self.kind == "mc"


def _check_fmt_kind(fmt: str, kind: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected 'data' or 'mc'")


def _make_meta(
    path: Path,
    fmt: str,
    kind: str,
    n: int,
    seed: int,
    dsid: int | None,
    xsec: tuple[float, float, float] | None,
) -> _Meta:
    """The per-file constants: data period and run range, DSID, cross-section, MC weights.

    MC files have ``mcWeight`` with a spread (and about 5 % negative weights), scale factors
    around 1 and per-file constant ``xsec``/``kfac``/``filteff``; ``sum_of_weights`` is the
    true sum of ``mcWeight`` over the file (``sum_of_weights_squared`` likewise).
    """
    period = _period_from_name(path.name, fmt)
    lo, hi = _PERIOD_RUNS[period]
    if kind == "mc":
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, 0]))
        mag = np.abs(1.0 + 0.25 * rng.standard_normal(n))
        sign = np.where(rng.random(n) < 0.05, -1.0, 1.0)
        weights = (sign * mag).astype(np.float32)
        xs, kf, fe = xsec if xsec is not None else _DEFAULT_XSEC
        w64 = weights.astype(np.float64)
        return _Meta(
            fmt, kind, n, seed, 700000 if dsid is None else int(dsid), period, lo, hi,
            float(xs), float(kf), float(fe), weights, float(w64.sum()), float((w64**2).sum()),
        )  # fmt: skip
    ones = np.ones(n, dtype=np.float32)
    return _Meta(fmt, kind, n, seed, 0, period, lo, hi, 0.0, 0.0, 0.0, ones, 1.0, 1.0)


def _period_from_name(name: str, fmt: str) -> str:
    """The data period a file name points to (``dataYY_periodX`` or 2020e ``data_X``)."""
    if fmt == "2016e":
        return "data12"
    m = re.search(r"(data1[56])_?(period[A-Z])", name)
    if m and f"{m.group(1)}_{m.group(2)}" in _PERIOD_RUNS:
        return f"{m.group(1)}_{m.group(2)}"
    m = re.search(r"(?:^|[/_.])data_([A-L])\b", name)
    if m and f"data16_period{m.group(1)}" in _PERIOD_RUNS:
        return f"data16_period{m.group(1)}"
    return "data16_periodD" if fmt == "2020e" else "data15_periodD"
