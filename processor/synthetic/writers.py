"""Synthetic ATLAS Open Data files: physics-like events in each release's on-disk format.

The files stand in for real ATLAS Open Data wherever the real thing is out of reach (tests,
the built-in demo, machines without network).  They are written with uproot, compressed with
ZLIB level 1 like the real files, and are deterministic: the same arguments and ``seed`` give
the same array content (the ROOT file bytes differ only in timestamps/UUIDs).

Formats (``fmt``) and what is reproduced
----------------------------------------
``"2025e"``  tree ``analysis``, GeV: the full branch set of the real 2025e-13tev-beta files
    (``lep_*``, ``jet_*``, ``largeRJet_*``, ``photon_*``, ``tau_*``, ``truth_*``, ``met*``,
    ``trig*``, ``ScaleFactor_*``, ``mcWeight``, ``xsec``/``kfac``/``filteff``,
    ``num_events``/``sum_of_weights``/``sum_of_weights_squared``, ...).  MC files carry the
    branch set of the real MC files at hand (including ``sig_lep``/``n_sig_lep``); DATA files
    differ as the real ones do: no ``sig_lep``/``n_sig_lep``, an extra ``category`` branch
    (``"data15"``/``"data16"``), ``xsec``/``kfac``/``filteff`` are float32 and 0,
    ``mcWeight`` 1, ``sum_of_weights`` 1, every ``ScaleFactor_*`` 1, truth collections empty.
``"2020e"``  tree ``mini``, MeV: the 81 branches of the real 2020e-13tev files (``lep_E``,
    ``lep_type`` uint32, ``lep_isTightID``, ``lep_ptcone30``, ``jet_MV2c10``, ``photon_*``,
    ``tau_*``, ``largeRjet_*``, ``met_et``, ``scaleFactor_*``, ``XSection``, ``SumWeights``,
    int32 ``runNumber``/``eventNumber``/``channelNumber``).  DATA files copy the real ones:
    ``mcWeight`` and every ``scaleFactor_*`` 0, ``XSection`` and ``SumWeights`` 1,
    ``channelNumber`` = ``runNumber``.
``"2016e"``  tree ``mini``, MeV: the 8 TeV education layout as declared by the public 8 TeV
    analysis code (``lep_flag`` with bit 9 = tight, ``jet_MV1``, ``jet_jvf``, ``jet_m``,
    ``alljet_n``, ``passGRL``, ``hasGoodVertex``, ``scaleFactor_JVFSF``/``ZVERTEX``, no
    photons or taus).  No real 2016e file was available, so these branch types are unverified;
    data/MC conventions follow 2020e.
``"physlite"``  tree ``CollectionTree``, MeV: the PHYSLITE branches an analysis of
    electrons, muons, jets, photons and taus reads -- ``AnalysisElectronsAuxDyn.{pt, eta, phi,
    m, charge, DFCommonElectronsLHLoose/Medium/Tight}``, ``AnalysisMuonsAuxDyn.{pt, eta, phi,
    charge, quality}`` (no ``m``, like the real files), ``AnalysisJetsAuxDyn.{pt, eta, phi,
    m}``, ``AnalysisPhotonsAuxDyn.{pt, eta, phi, m, DFCommonPhotonsIsEMTight}``,
    ``AnalysisTauJetsAuxDyn.{pt, eta, phi, m, charge, RNNJetScore}`` and
    ``EventInfoAuxDyn.{eventNumber, runNumber, mcChannelNumber, mcEventWeights}`` -- with the
    real types.  DATA files: ``mcChannelNumber`` 0 and empty ``mcEventWeights``.

On-disk types uproot cannot reproduce (values read back identically with uproot):

* jagged branches are leaf-list arrays ``T[]`` with a counter branch instead of ROOT's
  ``RVec<T>``/``std::vector<T>`` (``TBranchElement``); each collection shares one counter,
  named like the real count branch (``lep_n``, ``jet_n``, ...) where the format has one;
* those counters are always int32: 2020e/2016e ``*_n`` are uint32 in the real files;
* PHYSLITE has no count branches: the synthetic file has extra int32 counters
  (``nAnalysisElectrons``, ..., ``nmcEventWeights``);
* 2025e DATA ``category`` is ``std::string`` in the real files; uproot cannot write that
  and writes a ``char*`` (``TLeafC``) string branch instead, which uproot reads back as the
  same strings (ROOT's ``RDataFrame.Snapshot`` could write a true ``std::string``, but ROOT
  is an optional extra and is not used here);
* 2020e DATA files store empty truth vectors (``lep_truthMatched``, ``jet_trueflav``, ...);
  with a shared counter they are filled with False/0 instead.

Physics content (identical for every format, converted to MeV where needed)
---------------------------------------------------------------------------
Each event is one process: Drell-Yan Z/gamma* -> ee and mumu (Breit-Wigner m = 91.1876 GeV,
Gamma = 2.4952 GeV, plus a falling continuum), W -> e nu / mu nu, Z -> tautau with hadronic and
leptonic tau decays, H -> gammagamma (125.09 GeV) and a diphoton continuum, ZZ -> 4 leptons,
ttbar (t -> bW, W -> l nu / qq) and QCD multijet (falling m_jj), optionally with an injected
narrow resonance X (``signal_mass_gev``, Gamma = 1 % of m, in ``signal_fraction`` of the events)
decaying to jj (50 %), ee (25 %) or mumu (25 %).  Resonances are proper two-body decays of
boosted parents; reconstructed objects are smeared with pT-dependent resolutions, have small
masses (jets a few GeV) and E = sqrt(p^2 + m^2).  Every event also gets ISR/pile-up jets,
non-prompt leptons, fake photons and fake taus (Poisson multiplicities) with steeply falling
pT spectra reaching below the usual analysis thresholds, so pT/|eta| cuts and count limits
matter.  Collections are sorted by pT (descending) within each event.  Quality flags, isolation
variables, b-tagging (2025e quantiles 1-5, MV2c10/MV1 scores), JVT, trigger bits and trigger
matching are drawn with sensible efficiencies for prompt and fake objects.

MC files have ``mcWeight`` with a spread (and about 5 % negative weights), scale factors
around 1 and per-file constant ``xsec``/``kfac``/``filteff``; ``sum_of_weights`` is the true
sum of ``mcWeight`` over the file (``sum_of_weights_squared`` likewise).

The demo
--------
:func:`make_demo_sample` writes the built-in demo: 2 DATA files (data15 period D and data16
period A, with an injected 400 GeV resonance) and 2 background-only MC files (normalised so
that MC matches the data background at 36.6 fb^-1), in 2025e format, into
:func:`demo_cache_dir`; a JSON manifest (generator version, seeds, event counts, sha256) makes
later calls reuse the files, and damaged or missing files are regenerated atomically.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

log = logging.getLogger(__name__)

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

#: integrated luminosity of the 2025e release, pb^-1 (DESIGN §4)
LUMI_2025E_PB = 36600.0
#: (name, xsec [pb], kfac, filteff) of the synthetic DSIDs; other DSIDs get ``_DEFAULT_XSEC``
SYNTHETIC_DSIDS: dict[int, tuple[str, float, float, float]] = {
    700000: ("Synthetic", 1.0, 1.0, 1.0),
}
_DEFAULT_XSEC = (1.0, 1.0, 1.0)

#: events generated per block (bounds memory; the content does not depend on basket_size)
_BLOCK = 100_000

# ---------------------------------------------------------------------------------------------
# physics constants (GeV)
M_Z, G_Z = 91.1876, 2.4952
M_W, G_W = 80.379, 2.085
M_H, G_H = 125.09, 0.0041
M_TOP, G_TOP = 172.5, 1.42
M_TAU = 1.77686
M_E = 0.000510999
M_MU = 0.1056584
M_B = 4.8

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

_AK_TYPES = {
    np.dtype(np.float32): "float32",
    np.dtype(np.float64): "float64",
    np.dtype(np.int32): "int32",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.uint64): "uint64",
    np.dtype(np.bool_): "bool",
}

# =============================================================================================
# public API


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


def write_sample(
    path: str | Path,
    fmt: str,
    n_events: int,
    *,
    seed: int = 0,
    kind: str = "data",
    signal_mass_gev: float | None = None,
    signal_fraction: float = 0.02,
    dsid: int | None = None,
    basket_size: int | None = None,
) -> Path:
    """Write ``n_events`` synthetic events in format ``fmt`` to ``path`` and return the path.

    Args:
        path: the ROOT file to write (parent directories are created; an existing file is
            replaced atomically: the file is written under a temporary name and renamed).
        fmt: one of :data:`FORMATS`.
        n_events: number of events (>= 0).
        seed: random seed; the same arguments and seed give identical array content.
        kind: ``"data"`` or ``"mc"`` (see the module docstring for the differences).
        signal_mass_gev: if set, inject a narrow resonance of this mass (GeV) ...
        signal_fraction: ... into this fraction of the events (0-1).
        dsid: MC channel number (default 700000); ``xsec``/``kfac``/``filteff`` come from
            :data:`SYNTHETIC_DSIDS` (1 pb, 1, 1 for unknown DSIDs).  Ignored
            for data.
        basket_size: entries per basket (default: up to 100 000); does not change the content.

    For DATA the period (run numbers and the 2025e ``category``) is taken from the file name
    when it contains ``dataYY_periodX`` (as :func:`sample_filename` makes it) or, for 2020e,
    ``data_X``; otherwise data15 period D (2020e: data16 period D; 2016e: 2012 runs).
    """
    xsec = None
    if dsid is not None and dsid in SYNTHETIC_DSIDS:
        xsec = SYNTHETIC_DSIDS[dsid][1:]
    return _write(
        Path(path),
        fmt,
        n_events,
        seed=seed,
        kind=kind,
        signal_mass_gev=signal_mass_gev,
        signal_fraction=signal_fraction,
        dsid=dsid,
        basket_size=basket_size,
        xsec=xsec,
    )


def demo_cache_dir() -> Path:
    """Where :func:`make_demo_sample` keeps the demo files.

    ``$BUMPNET_CACHE_DIR/demo`` when ``BUMPNET_CACHE_DIR`` (the project's cache root) is set,
    else ``$XDG_CACHE_HOME/bumpnet-masses/demo`` (``~/.cache/bumpnet-masses/demo``).
    """
    root = os.environ.get("BUMPNET_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "demo"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "bumpnet-masses" / "demo"


#: the demo's injected resonance and its seed
DEMO_SIGNAL_MASS_GEV = 400.0
DEMO_SIGNAL_FRACTION = 0.01
DEMO_SEED = 20250
DEMO_SKIM = "2to4lep"
_MANIFEST = "demo_manifest.json"


def make_demo_sample(cache_dir: str | Path | None = None, *, n_events: int = 200_000) -> list[Path]:
    """The built-in demo sample: 2 DATA + 2 MC files in 2025e format, ``n_events`` in total.

    The DATA files (data15 period D, data16 period A) contain a resonance at
    :data:`DEMO_SIGNAL_MASS_GEV` in :data:`DEMO_SIGNAL_FRACTION` of the events; the MC files
    (DSIDs 700001, 700002) are background only, with cross-sections chosen so that MC
    normalised to 36.6 fb^-1 matches the data background (up to the few-% effect of the
    scale factors).  Files are written to ``cache_dir``
    (default :func:`demo_cache_dir`) and recorded in ``demo_manifest.json``; a later call with
    the same ``n_events`` reuses files whose size and sha256 match the manifest, and
    regenerates missing or damaged ones (written under a temporary name, then renamed).
    Returns the file paths, data files first.
    """
    if n_events < 4:
        raise ValueError(f"n_events must be >= 4 (one event per file at least), got {n_events}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else demo_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    specs = _demo_specs(n_events)
    params = {
        "generator_version": GENERATOR_VERSION,
        "format": "2025e",
        "n_events": n_events,
        "seed": DEMO_SEED,
        "signal_mass_gev": DEMO_SIGNAL_MASS_GEV,
        "signal_fraction": DEMO_SIGNAL_FRACTION,
    }
    with _locked(cache / ".demo.lock"):
        manifest = _read_manifest(cache / _MANIFEST)
        recorded = manifest.get("files", {}) if manifest.get("params") == params else {}
        t0 = time.perf_counter()
        paths = [cache / spec["name"] for spec in specs]
        todo = []
        for spec, target in zip(specs, paths, strict=True):
            entry = recorded.get(spec["name"])
            if entry is None or not _file_matches(target, entry):
                if entry is not None or target.exists():
                    log.warning("demo file %s is missing or damaged: regenerating", target)
                todo.append((spec, target))

        def build(item: tuple[dict[str, Any], Path]) -> None:
            spec, target = item
            _write(
                target,
                "2025e",
                spec["n_events"],
                seed=spec["seed"],
                kind=spec["kind"],
                signal_mass_gev=spec["signal_mass_gev"],
                signal_fraction=DEMO_SIGNAL_FRACTION,
                dsid=spec.get("dsid"),
                basket_size=None,
                xsec=spec.get("xsec"),
            )

        # zlib and numpy release the GIL: a few threads use the available cores
        workers = max(1, min(len(todo), _available_cores(), 4))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(build, todo))
        rewritten = {spec["name"] for spec, _ in todo}
        files: dict[str, dict[str, Any]] = {}
        for spec, target in zip(specs, paths, strict=True):
            if spec["name"] in rewritten:
                files[spec["name"]] = {
                    "kind": spec["kind"],
                    "n_events": spec["n_events"],
                    "seed": spec["seed"],
                    "size": target.stat().st_size,
                    "sha256": _sha256(target),
                }
            else:
                files[spec["name"]] = recorded[spec["name"]]
        regenerated = len(todo)
        if regenerated:
            _atomic_write_text(
                cache / _MANIFEST, json.dumps({"params": params, "files": files}, indent=2)
            )
        if regenerated:
            log.info(
                "demo sample: wrote %d of %d file(s) in %s (%.1f s)",
                regenerated,
                len(specs),
                cache,
                time.perf_counter() - t0,
            )
        else:
            log.info("demo sample: reusing %d cached file(s) in %s", len(specs), cache)
    return paths


# =============================================================================================
# writing


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


def _write(
    path: Path,
    fmt: str,
    n_events: int,
    *,
    seed: int,
    kind: str,
    signal_mass_gev: float | None,
    signal_fraction: float,
    dsid: int | None,
    basket_size: int | None,
    xsec: tuple[float, float, float] | None,
) -> Path:
    _check_fmt_kind(fmt, kind)
    n_events = int(n_events)
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    if signal_mass_gev is not None and not signal_mass_gev > 0:
        raise ValueError(f"signal_mass_gev must be > 0, got {signal_mass_gev}")
    if not 0.0 <= signal_fraction <= 1.0:
        raise ValueError(f"signal_fraction must be within [0, 1], got {signal_fraction}")
    if basket_size is not None and basket_size < 1:
        raise ValueError(f"basket_size must be >= 1, got {basket_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    t0 = time.perf_counter()
    meta = _make_meta(path, fmt, kind, n_events, seed, dsid, xsec)
    basket = basket_size or min(max(n_events, 1), _BLOCK)
    kind_code = KINDS.index(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        with uproot.recreate(tmp, compression=uproot.ZLIB(1)) as fout:
            tree = None
            for start in range(0, max(n_events, 1), _BLOCK):
                stop = min(start + _BLOCK, n_events)
                rng = np.random.default_rng(
                    np.random.SeedSequence([seed, kind_code, 1 + start // _BLOCK])
                )
                events = _generate(rng, stop - start, signal_mass_gev, signal_fraction, meta.is_mc)
                tb = _TreeBuilder()
                _WRITERS[fmt](tb, events, meta, start)
                if tree is None:
                    tree = fout.mktree(TREE_NAMES[fmt], tb.types, counter_name=tb.counter_name)
                for b0 in range(0, stop - start, basket):
                    tree.extend({k: v[b0 : b0 + basket] for k, v in tb.data.items()})
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    log.info(
        "wrote %s: %d %s events in %s format%s (%.2f s)",
        path,
        n_events,
        kind.upper(),
        fmt,
        f", {signal_fraction:.1%} signal at {signal_mass_gev:g} GeV" if signal_mass_gev else "",
        time.perf_counter() - t0,
    )
    return path


def _make_meta(
    path: Path,
    fmt: str,
    kind: str,
    n: int,
    seed: int,
    dsid: int | None,
    xsec: tuple[float, float, float] | None,
) -> _Meta:
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


@functools.cache
def _datashape(text: str) -> Any:
    """An awkward type from a datashape string, parsed once (parsing is slow)."""
    return ak.types.from_datashape(text, highlevel=False)


class _TreeBuilder:
    """Collects branch types (for ``mktree``), block data and jagged-branch counters."""

    def __init__(self) -> None:
        self.types: dict[str, Any] = {}
        self.data: dict[str, Any] = {}
        self.counters: dict[str, str] = {}

    def counter_name(self, branch: str) -> str:
        return self.counters[branch]

    def counter(self, name: str) -> None:
        """Reserve the position of a counter branch (filled by uproot from the jagged data)."""
        self.types[name] = np.dtype(np.int32)

    def scalar(self, name: str, values: Any, dtype: Any) -> None:
        self.types[name] = np.dtype(dtype)
        self.data[name] = np.asarray(values).astype(dtype, copy=False)

    def const(self, name: str, value: float, dtype: Any, n: int) -> None:
        self.scalar(name, np.full(n, value, dtype=dtype), dtype)

    def jagged(self, name: str, coll: _Coll, values: Any, dtype: Any, counter: str) -> None:
        dt = np.dtype(dtype)
        self.types[name] = _datashape("var * " + _AK_TYPES[dt])
        flat = np.asarray(values).astype(dt, copy=False)
        self.data[name] = ak.unflatten(flat, coll.counts)
        self.counters[name] = counter

    def string(self, name: str, value: str, n: int) -> None:
        self.types[name] = _datashape("string")
        self.data[name] = np.full(n, value)


# =============================================================================================
# physics generation


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


_POOL_FIELDS = {
    "lep": ("pt", "eta", "phi", "m", "charge", "flav", "prompt"),
    "jet": ("pt", "eta", "phi", "m", "flav", "pileup"),
    "photon": ("pt", "eta", "phi", "prompt"),
    "tau": ("pt", "eta", "phi", "m", "charge", "prompt"),
    "truth_jet": ("pt", "eta", "phi", "m"),
    "truth_elec": ("pt", "eta", "phi"),
    "truth_muon": ("pt", "eta", "phi"),
    "truth_tau": ("pt", "eta", "phi"),
    "truth_photon": ("pt", "eta", "phi"),
}


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


def _p4(mass: np.ndarray, pt: np.ndarray, y: np.ndarray, phi: np.ndarray) -> np.ndarray:
    mt = np.sqrt(mass**2 + pt**2)
    return np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)])


def _boost(p: np.ndarray, parent: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Boost rest-frame 4-vectors ``p`` (4, k) into the frame where the parent has ``parent``."""
    e, px, py, pz = parent
    bx, by, bz = px / e, py / e, pz / e
    gamma = e / mass
    bp = bx * p[1] + by * p[2] + bz * p[3]
    coef = gamma**2 / (gamma + 1.0) * bp + gamma * p[0]
    return np.stack([gamma * (p[0] + bp), p[1] + coef * bx, p[2] + coef * by, p[3] + coef * bz])


def _pt_eta_phi(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pt = np.maximum(np.hypot(p[1], p[2]), 1e-9)
    return pt, np.arcsinh(p[3] / pt), np.arctan2(p[2], p[1])


def _wrap(phi: np.ndarray) -> np.ndarray:
    return (phi + np.pi) % (2 * np.pi) - np.pi


class _Gen:
    """Vectorised event generation: processes add objects to pools, ``finish`` sorts them."""

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.rng = rng
        self.n = n
        self.pools: dict[str, list[dict[str, np.ndarray]]] = {k: [] for k in _POOL_FIELDS}
        self.nu: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.mismeasure: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    # --- building blocks -------------------------------------------------------------------
    def u(self, k: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        return self.rng.uniform(lo, hi, k)

    def falling(self, k: int, x0: float, power: float, cap: float = 6500.0) -> np.ndarray:
        """x >= x0 with density ~ x^-(power+1)."""
        return np.minimum(x0 * (1.0 - self.rng.random(k)) ** (-1.0 / power), cap)

    def breit_wigner(self, m0: float, width: float, k: int, lo: float, hi: float) -> np.ndarray:
        a = np.arctan(2 * (lo - m0) / width)
        b = np.arctan(2 * (hi - m0) / width)
        return m0 + 0.5 * width * np.tan(self.rng.uniform(a, b, k))

    def parents(self, mass: np.ndarray, pt_mean: float | np.ndarray, y_sigma: float) -> np.ndarray:
        k = mass.size
        pt = self.rng.exponential(1.0, k) * pt_mean
        y = np.clip(self.rng.normal(0.0, y_sigma, k), -4.0, 4.0)
        return _p4(mass, pt, y, self.u(k, -np.pi, np.pi))

    def decay(
        self, parent: np.ndarray, mass: np.ndarray, m1: Any, m2: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Isotropic two-body decay of boosted parents into daughters of masses m1, m2."""
        k = mass.size
        m1 = np.broadcast_to(np.asarray(m1, dtype=float), (k,))
        m2 = np.broadcast_to(np.asarray(m2, dtype=float), (k,))
        mm = mass**2
        pstar = np.sqrt(np.maximum((mm - (m1 + m2) ** 2) * (mm - (m1 - m2) ** 2), 0.0)) / (2 * mass)
        cos = self.u(k, -1.0, 1.0)
        sin = np.sqrt(1.0 - cos**2)
        ph = self.u(k, -np.pi, np.pi)
        d = np.stack([sin * np.cos(ph), sin * np.sin(ph), cos]) * pstar
        p1 = np.vstack([np.sqrt(pstar**2 + m1**2), d])
        p2 = np.vstack([np.sqrt(pstar**2 + m2**2), -d])
        return _boost(p1, parent, mass), _boost(p2, parent, mass)

    def _add(self, pool: str, event: np.ndarray, **fields: Any) -> None:
        k = event.size
        rec = {"event": event}
        for name in _POOL_FIELDS[pool]:
            rec[name] = np.broadcast_to(np.asarray(fields[name]), (k,))
        self.pools[pool].append(rec)

    # --- objects -----------------------------------------------------------------------------
    def lepton(self, event: np.ndarray, p: np.ndarray, flav: Any, charge: Any) -> None:
        """A prompt lepton from its true 4-vector: truth record, smearing, acceptance."""
        k = event.size
        flav = np.broadcast_to(np.asarray(flav), (k,))
        charge = np.broadcast_to(np.asarray(charge), (k,))
        pt, eta, phi = _pt_eta_phi(p)
        for f, pool in ((11, "truth_elec"), (13, "truth_muon")):
            sel = (flav == f) & (pt > 10.0)
            self._add(pool, event[sel], pt=pt[sel], eta=eta[sel], phi=phi[sel])
        res = np.where(flav == 11, 0.02 + 0.1 / np.sqrt(pt), 0.015 + 1e-4 * pt)
        rpt = pt * (1.0 + res * self.rng.standard_normal(k))
        reta = eta + 0.001 * self.rng.standard_normal(k)
        rphi = _wrap(phi + 0.001 * self.rng.standard_normal(k))
        acc = (rpt > 7.0) & (np.abs(reta) < 2.5)
        self._add(
            "lep", event[acc], pt=rpt[acc], eta=reta[acc], phi=rphi[acc],
            m=np.where(flav[acc] == 11, M_E, M_MU), charge=charge[acc], flav=flav[acc],
            prompt=True,
        )  # fmt: skip

    def fake_leptons(self, event: np.ndarray) -> None:
        k = event.size
        flav = np.where(self.rng.random(k) < 0.5, 11, 13)
        self._add(
            "lep", event, pt=7.0 + self.rng.exponential(6.0, k), eta=self.u(k, -2.5, 2.5),
            phi=self.u(k, -np.pi, np.pi), m=np.where(flav == 11, M_E, M_MU),
            charge=np.where(self.rng.random(k) < 0.5, -1, 1), flav=flav, prompt=False,
        )  # fmt: skip

    def jet(self, event: np.ndarray, p: np.ndarray, flav: Any, balanced: bool = True) -> None:
        """A jet from its parton 4-vector; ``balanced`` jets feed their mismeasurement to MET."""
        k = event.size
        flav = np.broadcast_to(np.asarray(flav), (k,))
        pt, eta, phi = _pt_eta_phi(p)
        truth = (pt > 20.0) & (np.abs(eta) < 4.5)
        self._add(
            "truth_jet", event[truth], pt=pt[truth], eta=eta[truth], phi=phi[truth],
            m=pt[truth] * self.u(int(truth.sum()), 0.04, 0.12),
        )  # fmt: skip
        res = np.sqrt(0.6**2 / pt + 0.04**2)
        rpt = pt * np.maximum(1.0 + res * self.rng.standard_normal(k), 0.05)
        reta = eta + 0.01 * self.rng.standard_normal(k)
        rphi = _wrap(phi + 0.01 * self.rng.standard_normal(k))
        acc = (rpt > 20.0) & (np.abs(reta) < 4.5)
        if balanced:
            dpt = np.where(acc, rpt - pt, -pt)
            self.mismeasure.append((event, -dpt * np.cos(phi), -dpt * np.sin(phi)))
        self._add(
            "jet", event[acc], pt=rpt[acc], eta=reta[acc], phi=rphi[acc],
            m=rpt[acc] * self.u(int(acc.sum()), 0.04, 0.12), flav=flav[acc], pileup=False,
        )  # fmt: skip

    def extra_jets(self, event: np.ndarray) -> None:
        """ISR and pile-up jets: steeply falling pT from 15 GeV, flat in |eta| < 4.5."""
        k = event.size
        pt = self.falling(k, 15.0, 3.0)
        eta = self.u(k, -4.5, 4.5)
        phi = self.u(k, -np.pi, np.pi)
        pileup = (pt < 50.0) & (self.rng.random(k) < 0.35)
        r = self.rng.random(k)
        flav = np.where(r < 0.02, 5, np.where(r < 0.07, 4, 0))
        truth = ~pileup & (pt > 20.0)
        self._add(
            "truth_jet", event[truth], pt=pt[truth], eta=eta[truth], phi=phi[truth],
            m=pt[truth] * self.u(int(truth.sum()), 0.04, 0.12),
        )  # fmt: skip
        rpt = pt * (1.0 + np.sqrt(0.6**2 / pt + 0.04**2) * self.rng.standard_normal(k))
        acc = rpt > 20.0
        self._add(
            "jet", event[acc], pt=rpt[acc], eta=eta[acc], phi=phi[acc],
            m=rpt[acc] * self.u(int(acc.sum()), 0.04, 0.12), flav=flav[acc], pileup=pileup[acc],
        )  # fmt: skip

    def photon(self, event: np.ndarray, p: np.ndarray) -> None:
        k = event.size
        pt, eta, phi = _pt_eta_phi(p)
        t = pt > 10.0
        self._add("truth_photon", event[t], pt=pt[t], eta=eta[t], phi=phi[t])
        res = np.sqrt(0.1**2 / pt + 0.01**2)
        rpt = pt * (1.0 + res * self.rng.standard_normal(k))
        reta = eta + 0.001 * self.rng.standard_normal(k)
        rphi = _wrap(phi + 0.001 * self.rng.standard_normal(k))
        acc = (rpt > 15.0) & (np.abs(reta) < 2.5)
        self._add("photon", event[acc], pt=rpt[acc], eta=reta[acc], phi=rphi[acc], prompt=True)

    def fake_photons(self, event: np.ndarray) -> None:
        k = event.size
        self._add(
            "photon", event, pt=self.falling(k, 15.0, 3.0), eta=self.u(k, -2.5, 2.5),
            phi=self.u(k, -np.pi, np.pi), prompt=False,
        )  # fmt: skip

    def tau_had(self, event: np.ndarray, p: np.ndarray, charge: Any) -> None:
        k = event.size
        charge = np.broadcast_to(np.asarray(charge), (k,))
        pt, eta, phi = _pt_eta_phi(p)
        rpt = pt * (1.0 + 0.08 * self.rng.standard_normal(k))
        reta = eta + 0.005 * self.rng.standard_normal(k)
        rphi = _wrap(phi + 0.005 * self.rng.standard_normal(k))
        acc = (rpt > 15.0) & (np.abs(reta) < 2.5)
        self._add(
            "tau", event[acc], pt=rpt[acc], eta=reta[acc], phi=rphi[acc],
            m=self.u(int(acc.sum()), 0.3, 1.6), charge=charge[acc], prompt=True,
        )  # fmt: skip

    def fake_taus(self, event: np.ndarray) -> None:
        k = event.size
        self._add(
            "tau", event, pt=self.falling(k, 15.0, 2.5), eta=self.u(k, -2.5, 2.5),
            phi=self.u(k, -np.pi, np.pi), m=self.u(k, 0.3, 1.6),
            charge=np.where(self.rng.random(k) < 0.5, -1, 1), prompt=False,
        )  # fmt: skip

    def neutrino(self, event: np.ndarray, p: np.ndarray) -> None:
        self.nu.append((event, p[1], p[2]))

    def tau_decay(self, event: np.ndarray, p: np.ndarray, charge: np.ndarray) -> None:
        """tau -> hadrons nu (65 %) or l nu nu: the visible part takes a fraction x of p."""
        k = event.size
        pt, eta, phi = _pt_eta_phi(p)
        t = pt > 10.0
        self._add("truth_tau", event[t], pt=pt[t], eta=eta[t], phi=phi[t])
        had = self.rng.random(k) < 0.65
        x = np.where(had, self.u(k, 0.3, 0.95), self.u(k, 0.15, 0.8))
        self.tau_had(event[had], p[:, had] * x[had], charge[had])
        lep = ~had
        flav = np.where(self.rng.random(int(lep.sum())) < 0.5, 11, 13)
        self.lepton(event[lep], p[:, lep] * x[lep], flav, charge[lep])
        self.neutrino(event, p * (1.0 - x))

    def w_decay(
        self, event: np.ndarray, p: np.ndarray, mass: np.ndarray, charge: np.ndarray
    ) -> None:
        """W -> e nu, mu nu, tau nu (1/9 each) or q q' (2 jets, c in half of them)."""
        k = event.size
        r = self.rng.random(k)
        lep = r < 2.0 / 9.0
        tau = (r >= 2.0 / 9.0) & (r < 3.0 / 9.0)
        had = r >= 3.0 / 9.0
        if lep.any():
            flav = np.where(r[lep] < 1.0 / 9.0, 11, 13)
            ml = np.where(flav == 11, M_E, M_MU)
            pl, pn = self.decay(p[:, lep], mass[lep], ml, 0.0)
            self.lepton(event[lep], pl, flav, charge[lep])
            self.neutrino(event[lep], pn)
        if tau.any():
            pt_, pn = self.decay(p[:, tau], mass[tau], M_TAU, 0.0)
            self.tau_decay(event[tau], pt_, charge[tau])
            self.neutrino(event[tau], pn)
        if had.any():
            q1, q2 = self.decay(p[:, had], mass[had], 0.0, 0.0)
            kh = int(had.sum())
            self.jet(event[had], q1, np.where(self.rng.random(kh) < 0.5, 4, 0))
            self.jet(event[had], q2, 0)

    # --- processes ----------------------------------------------------------------------------
    def dilepton(self, ev: np.ndarray, flav: int) -> None:
        """Drell-Yan: 85 % Z line shape, 15 % falling continuum from 20 GeV."""
        k = ev.size
        bw = self.rng.random(k) < 0.85
        mass = np.where(
            bw, self.breit_wigner(M_Z, G_Z, k, 60.0, 120.0), self.falling(k, 20.0, 2.0, 3000.0)
        )
        parent = self.parents(mass, 12.0, 1.6)
        ml = M_E if flav == 11 else M_MU
        p1, p2 = self.decay(parent, mass, ml, ml)
        self.lepton(ev, p1, flav, -1)
        self.lepton(ev, p2, flav, 1)

    def wlnu(self, ev: np.ndarray, flav: int) -> None:
        k = ev.size
        mass = self.breit_wigner(M_W, G_W, k, 50.0, 150.0)
        parent = self.parents(mass, 10.0, 1.6)
        charge = np.where(self.rng.random(k) < 0.58, 1, -1)
        pl, pn = self.decay(parent, mass, M_E if flav == 11 else M_MU, 0.0)
        self.lepton(ev, pl, flav, charge)
        self.neutrino(ev, pn)

    def ztautau(self, ev: np.ndarray) -> None:
        k = ev.size
        mass = self.breit_wigner(M_Z, G_Z, k, 60.0, 120.0)
        p1, p2 = self.decay(self.parents(mass, 12.0, 1.6), mass, M_TAU, M_TAU)
        self.tau_decay(ev, p1, np.full(k, -1))
        self.tau_decay(ev, p2, np.full(k, 1))

    def diphoton(self, ev: np.ndarray, higgs: bool) -> None:
        k = ev.size
        if higgs:
            mass = self.breit_wigner(M_H, G_H, k, M_H - 1.0, M_H + 1.0)
            parent = self.parents(mass, 25.0, 1.3)
        else:
            mass = self.falling(k, 50.0, 2.0, 3000.0)
            parent = self.parents(mass, 15.0, 1.3)
        g1, g2 = self.decay(parent, mass, 0.0, 0.0)
        self.photon(ev, g1)
        self.photon(ev, g2)

    def zz4l(self, ev: np.ndarray) -> None:
        k = ev.size
        m1 = self.breit_wigner(M_Z, G_Z, k, 60.0, 120.0)
        m2 = self.breit_wigner(M_Z, G_Z, k, 60.0, 120.0)
        mass = m1 + m2 + self.rng.exponential(60.0, k)
        z1, z2 = self.decay(self.parents(mass, 20.0, 1.2), mass, m1, m2)
        for z, mz in ((z1, m1), (z2, m2)):
            flav = np.where(self.rng.random(k) < 0.5, 11, 13)
            ml = np.where(flav == 11, M_E, M_MU)
            l1, l2 = self.decay(z, mz, ml, ml)
            self.lepton(ev, l1, flav, -1)
            self.lepton(ev, l2, flav, 1)

    def ttbar(self, ev: np.ndarray) -> None:
        k = ev.size
        mt1 = self.breit_wigner(M_TOP, G_TOP, k, M_TOP - 10, M_TOP + 10)
        mt2 = self.breit_wigner(M_TOP, G_TOP, k, M_TOP - 10, M_TOP + 10)
        mass = mt1 + mt2 + self.rng.exponential(120.0, k)
        t1, t2 = self.decay(self.parents(mass, 50.0, 1.0), mass, mt1, mt2)
        for t, mt, wq in ((t1, mt1, 1), (t2, mt2, -1)):
            mw = self.breit_wigner(M_W, G_W, k, 60.0, 100.0)
            b, w = self.decay(t, mt, M_B, mw)
            self.jet(ev, b, 5)
            self.w_decay(ev, w, mw, np.full(k, wq))

    def multijet(self, ev: np.ndarray) -> None:
        k = ev.size
        mass = self.falling(k, 60.0, 3.0)
        q1, q2 = self.decay(self.parents(mass, 15.0, 1.2), mass, 0.0, 0.0)
        for q in (q1, q2):
            r = self.rng.random(k)
            self.jet(ev, q, np.where(r < 0.03, 5, np.where(r < 0.09, 4, 0)))

    def resonance(self, ev: np.ndarray, m0: float) -> None:
        """The injected X: Gamma = 1 % of m0; X -> jj (50 %), ee (25 %), mumu (25 %)."""
        k = ev.size
        width = 0.01 * m0
        mass = self.breit_wigner(m0, width, k, m0 - 20 * width, m0 + 20 * width)
        parent = self.parents(mass, 0.1 * m0 + 10.0, 1.0)
        r = self.rng.random(k)
        for sel, kind in ((r < 0.5, "jj"), ((r >= 0.5) & (r < 0.75), "ee"), (r >= 0.75, "mm")):
            if not sel.any():
                continue
            if kind == "jj":
                q1, q2 = self.decay(parent[:, sel], mass[sel], 0.0, 0.0)
                self.jet(ev[sel], q1, 0)
                self.jet(ev[sel], q2, 0)
            else:
                flav, ml = (11, M_E) if kind == "ee" else (13, M_MU)
                l1, l2 = self.decay(parent[:, sel], mass[sel], ml, ml)
                self.lepton(ev[sel], l1, flav, -1)
                self.lepton(ev[sel], l2, flav, 1)

    def extras(self) -> None:
        """Objects in every event: ISR/pile-up jets, non-prompt leptons, fake photons/taus."""
        for mean, adder in (
            (1.2, self.extra_jets),
            (0.2, self.fake_leptons),
            (0.1, self.fake_photons),
            (0.15, self.fake_taus),
        ):
            counts = self.rng.poisson(mean, self.n)
            adder(np.repeat(np.arange(self.n), counts))

    # --- assembly -----------------------------------------------------------------------------
    def collection(self, pool: str) -> _Coll:
        parts = self.pools[pool]
        if parts:
            f = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
        else:
            f = {k: np.zeros(0) for k in ("event", *_POOL_FIELDS[pool])}
        f["event"] = f["event"].astype(np.int64)
        order = np.lexsort((-f["pt"], f["event"]))
        return _Coll(self.n, {k: v[order] for k, v in f.items()})

    def vector_sum(
        self, items: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        sx = np.zeros(self.n)
        sy = np.zeros(self.n)
        for ev, x, y in items:
            sx += np.bincount(ev, weights=x, minlength=self.n)
            sy += np.bincount(ev, weights=y, minlength=self.n)
        return sx, sy


#: background process fractions (the remainder is QCD multijet)
_PROCESSES = (
    ("zee", 0.13),
    ("zmumu", 0.13),
    ("wenu", 0.07),
    ("wmunu", 0.07),
    ("ztautau", 0.05),
    ("hgg", 0.01),
    ("diphoton", 0.04),
    ("zz4l", 0.02),
    ("ttbar", 0.06),
)


def _generate(
    rng: np.random.Generator,
    n: int,
    signal_mass_gev: float | None,
    signal_fraction: float,
    is_mc: bool,
) -> _Events:
    """Generate ``n`` events (GeV): objects, MET, trigger bits and (for MC) scale factors."""
    g = _Gen(rng, n)
    names = [p for p, _ in _PROCESSES] + ["multijet"]
    probs = [f for _, f in _PROCESSES]
    probs.append(1.0 - sum(probs))
    probs_arr = np.array(probs)
    if signal_mass_gev is not None:
        names.append("signal")
        probs_arr = np.append(probs_arr * (1.0 - signal_fraction), signal_fraction)
    proc = rng.choice(len(names), size=n, p=probs_arr / probs_arr.sum())
    idx = {name: np.flatnonzero(proc == i) for i, name in enumerate(names)}
    g.dilepton(idx["zee"], 11)
    g.dilepton(idx["zmumu"], 13)
    g.wlnu(idx["wenu"], 11)
    g.wlnu(idx["wmunu"], 13)
    g.ztautau(idx["ztautau"])
    g.diphoton(idx["hgg"], higgs=True)
    g.diphoton(idx["diphoton"], higgs=False)
    g.zz4l(idx["zz4l"])
    g.ttbar(idx["ttbar"])
    g.multijet(idx["multijet"])
    if signal_mass_gev is not None:
        g.resonance(idx["signal"], float(signal_mass_gev))
    g.extras()
    coll = {name: g.collection(name) for name in _POOL_FIELDS}
    nu_x, nu_y = g.vector_sum(g.nu)
    mis_x, mis_y = g.vector_sum(g.mismeasure)
    met_x = nu_x + mis_x + rng.normal(0.0, 6.0, n)
    met_y = nu_y + mis_y + rng.normal(0.0, 6.0, n)
    ev = _Events(n, coll, met_x, met_y, nu_x, nu_y, {}, {})
    _decorate(rng, ev)
    if is_mc:
        _scale_factors(rng, ev)
    return ev


def _nested(
    rng: np.random.Generator,
    prompt: np.ndarray,
    eff_prompt: tuple[float, ...],
    eff_fake: tuple[float, ...],
) -> list[np.ndarray]:
    """Nested working points (loosest first): each passes with its efficiency given the previous."""
    k = prompt.size
    out = []
    passed = np.ones(k, dtype=bool)
    prev_p = prev_f = 1.0
    for ep, ef in zip(eff_prompt, eff_fake, strict=True):
        prob = np.where(prompt, ep / prev_p, ef / prev_f)
        passed = passed & (rng.random(k) < prob)
        out.append(passed)
        prev_p, prev_f = ep, ef
    return out


def _isolation(
    rng: np.random.Generator, pt: np.ndarray, tight: np.ndarray, loose: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Track and calorimeter isolation energies consistent with the isolation flags."""
    k = pt.size
    trk = np.where(
        tight,
        np.where(rng.random(k) < 0.5, 0.0, np.minimum(rng.exponential(0.01, k), 0.045)),
        np.where(loose, rng.uniform(0.05, 0.12, k), 0.15 + rng.exponential(0.25, k)),
    )
    calo = np.where(
        tight,
        np.clip(rng.normal(0.0, 0.02, k), -0.05, 0.045),
        np.where(loose, rng.uniform(0.05, 0.15, k), 0.15 + rng.exponential(0.2, k)),
    )
    return trk * pt, calo * pt


#: b-tag quantile probabilities (quantiles 1..5) for b, c and light jets; >= 4 is the 77 % WP
_BTAG_PROBS = {
    5: (0.15, 0.03, 0.05, 0.12, 0.65),
    4: (0.55, 0.10, 0.10, 0.15, 0.10),
    0: (0.90, 0.05, 0.03, 0.015, 0.005),
}


def _decorate(rng: np.random.Generator, ev: _Events) -> None:
    """Quality flags, isolation, b-tagging, JVT, large-R jets and trigger bits."""
    n = ev.n
    lep, jet, pho, tau = (ev.coll[k] for k in ("lep", "jet", "photon", "tau"))
    # leptons
    prompt = lep["prompt"].astype(bool)
    lep.f["prompt"] = prompt
    loose, medium, tight = _nested(rng, prompt, (0.98, 0.95, 0.88), (0.7, 0.35, 0.15))
    lep.f.update(loose_id=loose, medium_id=medium, tight_id=tight)
    liso, tiso = _nested(rng, prompt, (0.96, 0.85), (0.35, 0.15))
    lep.f.update(loose_iso=liso, tight_iso=tiso)
    lep.f["ptvarcone30"], lep.f["topoetcone20"] = _isolation(rng, lep["pt"], tiso, liso)
    k = len(lep)
    lep.f["z0"] = np.where(prompt, rng.normal(0, 0.1, k), rng.normal(0, 2.0, k))
    d0sig = np.where(prompt, rng.normal(0, 1.0, k), rng.normal(0, 6.0, k))
    lep.f["d0sig"] = d0sig
    lep.f["d0"] = d0sig * 0.015
    lep.f["charge"] = lep["charge"].astype(np.int32)
    lep.f["flav"] = lep["flav"].astype(np.int32)
    # jets
    flav = jet["flav"].astype(np.int32)
    jet.f["flav"] = flav
    cum = {f: np.cumsum(p) for f, p in _BTAG_PROBS.items()}
    table = np.stack([cum[5], cum[4], cum[0]])
    row = np.where(flav == 5, 0, np.where(flav == 4, 1, 2))
    u = rng.random(len(jet))
    jet.f["quantile"] = (1 + (u[:, None] > table[row, :4]).sum(axis=1)).astype(np.int32)
    pileup = jet["pileup"].astype(bool)
    jvt_region = (jet["pt"] < 60.0) & (np.abs(jet["eta"]) < 2.4)
    jvt_pass = np.where(
        jvt_region, np.where(pileup, rng.random(len(jet)) < 0.1, rng.random(len(jet)) < 0.97), True
    )
    jet.f.update(pileup=pileup, jvt_pass=jvt_pass, jvt_region=jvt_region)
    jet.f["pt_jer1"] = jet["pt"] * (1.0 + 0.02 * rng.standard_normal(len(jet)))
    jet.f["pt_jer2"] = jet["pt"] * (1.0 + 0.03 * rng.standard_normal(len(jet)))
    # large-R jets from hard jets
    big = jet["pt"] > 200.0
    kb = int(big.sum())
    lr = {
        "event": jet.event[big],
        "pt": jet["pt"][big] * rng.uniform(1.0, 1.12, kb),
        "eta": jet["eta"][big] + 0.03 * rng.standard_normal(kb),
        "phi": _wrap(jet["phi"][big] + 0.03 * rng.standard_normal(kb)),
        "D2": rng.uniform(0.8, 4.0, kb),
        "tau32": rng.uniform(0.3, 0.95, kb),
    }
    lr["m"] = np.maximum(lr["pt"] * rng.uniform(0.08, 0.35, kb), 40.0)
    keep = (lr["pt"] > 250.0) & (np.abs(lr["eta"]) < 2.0)
    lr = {key: v[keep] for key, v in lr.items()}
    order = np.lexsort((-lr["pt"], lr["event"]))
    ev.coll["largeRjet"] = _Coll(n, {key: v[order] for key, v in lr.items()})
    # photons
    pprompt = pho["prompt"].astype(bool)
    pho.f["prompt"] = pprompt
    ploose, ptight = _nested(rng, pprompt, (0.98, 0.88), (0.6, 0.2))
    pliso, ptiso = _nested(rng, pprompt, (0.95, 0.85), (0.4, 0.2))
    pho.f.update(loose_id=ploose, tight_id=ptight, loose_iso=pliso, tight_iso=ptiso)
    pho.f["ptcone"], pho.f["etcone"] = _isolation(rng, pho["pt"], ptiso, pliso)
    pho.f["m"] = np.zeros(len(pho))
    r = rng.random(len(pho))
    pho.f["conv"] = np.where(r < 0.7, 0, 1 + (r * 100).astype(np.int32) % 5).astype(np.int32)
    # taus
    tprompt = tau["prompt"].astype(bool)
    tau.f["prompt"] = tprompt
    kt = len(tau)
    tau.f["charge"] = tau["charge"].astype(np.int32)
    tau.f["ntracks"] = np.where(rng.random(kt) < np.where(tprompt, 0.72, 0.45), 1, 3).astype(
        np.int32
    )
    rnn = np.where(tprompt, rng.beta(6.0, 1.2, kt), rng.beta(0.5, 8.0, kt))
    tau.f["rnn_jet"] = rnn
    tau.f["rnn_ele"] = np.where(tprompt, rng.beta(8.0, 0.6, kt), rng.beta(2.0, 1.0, kt))
    tau.f["tight"] = rnn > 0.8
    # triggers (and trigger matching)
    met = np.hypot(ev.met_x, ev.met_y)
    is_e, is_m = lep["flav"] == 11, lep["flav"] == 13
    e_cand = is_e & (lep["pt"] > 27.0) & tight
    m_cand = is_m & (lep["pt"] > 27.0) & medium
    trig = {
        "trigE": lep.per_event_any(e_cand) & (rng.random(n) < 0.96),
        "trigM": lep.per_event_any(m_cand) & (rng.random(n) < 0.90),
        "trigDE": (lep.per_event_count(is_e & (lep["pt"] > 18.0) & loose) >= 2)
        & (rng.random(n) < 0.95),
        "trigDM": (lep.per_event_count(is_m & (lep["pt"] > 15.0)) >= 2) & (rng.random(n) < 0.90),
        "trigML": lep.per_event_any(is_e & (lep["pt"] > 17.0))
        & lep.per_event_any(is_m & (lep["pt"] > 14.0))
        & (rng.random(n) < 0.90),
        "trigP": (
            (pho.per_event_count((pho["pt"] > 25.0) & ploose) >= 2)
            | pho.per_event_any(pho["pt"] > 140.0)
        )
        & (rng.random(n) < 0.97),
        "trigT": tau.per_event_any(tau["pt"] > 160.0) & (rng.random(n) < 0.9),
        "trigDT": (tau.per_event_count(tau["pt"] > 40.0) >= 2) & (rng.random(n) < 0.85),
        "trigMET": rng.random(n) < 1.0 / (1.0 + np.exp(-(met - 110.0) / 15.0)),
    }
    ev.trig = trig
    ev_e = lep.event
    lep.f["trig_matched"] = ((e_cand & trig["trigE"][ev_e]) | (m_cand & trig["trigM"][ev_e])) & (
        rng.random(k) < 0.95
    )
    pho.f["trig_matched"] = (pho["pt"] > 25.0) & trig["trigP"][pho.event]
    tau.f["trig_matched"] = (tau["pt"] > 40.0) & (trig["trigT"] | trig["trigDT"])[tau.event]
    sig = tight & liso
    lep.f["sig"] = sig
    ev.extra["n_sig_lep"] = lep.per_event_count(sig)
    ev.extra["dilep_match"] = (
        (lep.per_event_count(lep["trig_matched"]) >= 1) & (lep.counts >= 2)
    ).astype(np.float32)


def _scale_factors(rng: np.random.Generator, ev: _Events) -> None:
    """MC scale factors around 1 (2025e names), per-object factors multiplied per event."""
    n = ev.n
    lep, jet, pho, tau = (ev.coll[k] for k in ("lep", "jet", "photon", "tau"))

    def obj(
        coll: _Coll, mean: np.ndarray | float, sigma: float, mask: np.ndarray | None = None
    ) -> np.ndarray:
        f = np.clip(mean + sigma * rng.standard_normal(len(coll)), 0.5, 1.5)
        if mask is not None:
            f = np.where(mask, f, 1.0)
        return coll.per_event_product(f)

    def evt(mask: np.ndarray, mean: float, sigma: float) -> np.ndarray:
        return np.where(mask, np.clip(mean + sigma * rng.standard_normal(n), 0.3, 1.5), 1.0)

    is_e = lep["flav"] == 11
    btag = obj(jet, np.where(jet["quantile"] >= 4, 0.97, 1.003), 0.01)
    trig = ev.trig
    ev.sf = {
        "PILEUP": np.clip(1.0 + 0.12 * rng.standard_normal(n), 0.2, 1.6),
        "ELE": obj(lep, 0.99, 0.015, is_e),
        "MUON": obj(lep, 0.995, 0.01, ~is_e),
        "PHOTON": obj(pho, 1.0, 0.01),
        "TAU": obj(tau, 0.98, 0.03),
        "BTAG": btag,
        "FTAG": btag,
        "JVT": obj(jet, 0.99, 0.01, jet["jvt_region"]),
        "LepTRIGGER": evt(trig["trigE"] | trig["trigM"], 0.985, 0.02),
        "MuTRIGGER": evt(trig["trigM"], 0.98, 0.02),
        "ElTRIGGER": evt(trig["trigE"], 0.99, 0.01),
        "MLTRIGGER": evt(trig["trigML"], 0.98, 0.03),
        "PhotonTRIGGER": evt(trig["trigP"], 0.99, 0.01),
        "TauTRIGGER": np.ones(n),
        "DiTauTRIGGER": np.ones(n),
        "ZVERTEX": np.clip(1.0 + 0.02 * rng.standard_normal(n), 0.8, 1.2),
    }


# =============================================================================================
# format writers


def _event_numbers(meta: _Meta, start: int, n: int) -> np.ndarray:
    return (meta.seed % 2000) * 1_000_000 + start + np.arange(n, dtype=np.int64)


def _run_numbers(meta: _Meta, start: int, n: int) -> np.ndarray:
    if meta.is_mc:
        return np.full(n, _MC_RUN[meta.fmt], dtype=np.int64)
    n_runs = 8
    runs = np.linspace(meta.run_lo, meta.run_hi, n_runs).astype(np.int64)
    index = (start + np.arange(n, dtype=np.int64)) * n_runs // max(meta.n_events, 1)
    return runs[np.minimum(index, n_runs - 1)]


def _leading_pair_mass(c: _Coll) -> np.ndarray:
    """Invariant mass of the two leading objects (0 where there are fewer than two)."""
    counts = c.counts
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    two = counts >= 2
    i, j = first[two], first[two] + 1
    e = c.energy()
    px = c["pt"] * np.cos(c["phi"])
    py = c["pt"] * np.sin(c["phi"])
    pz = c["pt"] * np.sinh(c["eta"])
    m2 = (e[i] + e[j]) ** 2 - (px[i] + px[j]) ** 2 - (py[i] + py[j]) ** 2 - (pz[i] + pz[j]) ** 2
    out = np.zeros(c.n)
    out[two] = np.sqrt(np.maximum(m2, 0.0))
    return out


def _write_2025e(tb: _TreeBuilder, ev: _Events, meta: _Meta, start: int) -> None:
    n, mc, s = ev.n, meta.is_mc, 1.0
    lep, jet, pho, tau, lrj = (ev.coll[k] for k in ("lep", "jet", "photon", "tau", "largeRjet"))
    f4, f8, i4, u4, u8, b = np.float32, np.float64, np.int32, np.uint32, np.uint64, np.bool_

    def sf(name: str) -> np.ndarray:
        return ev.sf[name] if mc else np.ones(n)

    tb.const("num_events", meta.n_events, f8, n)
    tb.const("sum_of_weights", meta.sum_w, f8, n)
    tb.const("sum_of_weights_squared", meta.sum_w2, f8, n)
    if not mc:
        tb.string("category", meta.period.split("_")[0], n)
    tb.scalar("TriggerMatch_DILEPTON", ev.extra["dilep_match"], f4)
    tb.scalar("ScaleFactor_MLTRIGGER", sf("MLTRIGGER"), f4)
    tb.scalar("ScaleFactor_PILEUP", sf("PILEUP"), f4)
    tb.scalar("ScaleFactor_FTAG", sf("FTAG"), f4)
    tb.scalar("mcWeight", meta.weights[start : start + n], f4)
    xs_type = f8 if mc else f4
    tb.const("xsec", meta.xsec, xs_type, n)
    tb.const("filteff", meta.filteff, xs_type, n)
    tb.const("kfac", meta.kfac, xs_type, n)
    runs = _run_numbers(meta, start, n)
    tb.scalar("channelNumber", np.full(n, meta.dsid) if mc else runs, u4)
    tb.scalar("eventNumber", _event_numbers(meta, start, n), u8)
    tb.scalar("runNumber", runs, u4)
    for t in (
        "trigML",
        "trigP",
        "trigDT",
        "trigT",
        "trigE",
        "trigDM",
        "trigDE",
        "trigM",
        "trigMET",
    ):
        tb.scalar(t, ev.trig[t], b)
    tb.scalar("ScaleFactor_BTAG", sf("BTAG"), f4)
    tb.scalar("ScaleFactor_JVT", sf("JVT"), f4)
    tb.counter("jet_n")
    for name, values, dt in (
        ("jet_pt", jet["pt"] * s, f4),
        ("jet_eta", jet["eta"], f4),
        ("jet_phi", jet["phi"], f4),
        ("jet_e", jet.energy() * s, f4),
        ("jet_btag_quantile", jet["quantile"], i4),
        ("jet_jvt", jet["jvt_pass"], b),
    ):
        tb.jagged(name, jet, values, dt, "jet_n")
    tb.counter("largeRJet_n")
    for name, values in (
        ("largeRJet_pt", lrj["pt"]),
        ("largeRJet_eta", lrj["eta"]),
        ("largeRJet_phi", lrj["phi"]),
        ("largeRJet_e", np.sqrt((lrj["pt"] * np.cosh(lrj["eta"])) ** 2 + lrj["m"] ** 2)),
        ("largeRJet_m", lrj["m"]),
        ("largeRJet_D2", lrj["D2"]),
    ):
        tb.jagged(name, lrj, values, f4, "largeRJet_n")
    tb.jagged("jet_pt_jer1", jet, jet["pt_jer1"], f4, "jet_n")
    tb.jagged("jet_pt_jer2", jet, jet["pt_jer2"], f4, "jet_n")
    for name in ("ELE", "MUON", "LepTRIGGER", "MuTRIGGER", "ElTRIGGER"):
        tb.scalar(f"ScaleFactor_{name}", sf(name), f4)
    tb.counter("lep_n")
    for name, values, dt in (
        ("lep_type", lep["flav"], i4),
        ("lep_pt", lep["pt"], f4),
        ("lep_eta", lep["eta"], f4),
        ("lep_phi", lep["phi"], f4),
        ("lep_e", lep.energy(), f4),
        ("lep_charge", lep["charge"], i4),
        ("lep_ptvarcone30", lep["ptvarcone30"], f4),
        ("lep_topoetcone20", lep["topoetcone20"], f4),
        ("lep_z0", lep["z0"], f4),
        ("lep_d0", lep["d0"], f4),
        ("lep_d0sig", lep["d0sig"], f4),
        ("lep_isTightID", lep["tight_id"], b),
        ("lep_isMediumID", lep["medium_id"], b),
        ("lep_isLooseID", lep["loose_id"], b),
        ("lep_isTightIso", lep["tight_iso"], b),
        ("lep_isLooseIso", lep["loose_iso"], b),
        ("lep_isTrigMatched", lep["trig_matched"], b),
    ):
        tb.jagged(name, lep, values, dt, "lep_n")
    if mc:  # present in the real MC files (2J2LMET30 skim), absent from the data files
        tb.jagged("sig_lep", lep, lep["sig"], b, "lep_n")
        tb.scalar("n_sig_lep", ev.extra["n_sig_lep"], u8)
    tb.scalar("ScaleFactor_PHOTON", sf("PHOTON"), f4)
    tb.counter("photon_n")
    for name, values, dt in (
        ("photon_pt", pho["pt"], f4),
        ("photon_eta", pho["eta"], f4),
        ("photon_phi", pho["phi"], f4),
        ("photon_e", pho.energy(), f4),
        ("photon_ptcone20", pho["ptcone"], f4),
        ("photon_topoetcone40", pho["etcone"], f4),
        ("photon_isLooseID", pho["loose_id"], b),
        ("photon_isTightID", pho["tight_id"], b),
        ("photon_isLooseIso", pho["loose_iso"], b),
        ("photon_isTightIso", pho["tight_iso"], b),
    ):
        tb.jagged(name, pho, values, dt, "photon_n")
    for name in ("TAU", "TauTRIGGER", "DiTauTRIGGER"):
        tb.scalar(f"ScaleFactor_{name}", sf(name), f4)
    tb.counter("tau_n")
    for name, values, dt in (
        ("tau_pt", tau["pt"], f4),
        ("tau_eta", tau["eta"], f4),
        ("tau_phi", tau["phi"], f4),
        ("tau_e", tau.energy(), f4),
        ("tau_charge", tau["charge"], f4),
        ("tau_nTracks", tau["ntracks"], i4),
        ("tau_isTight", tau["tight"], b),
        ("tau_RNNJetScore", tau["rnn_jet"], f4),
        ("tau_RNNEleScore", tau["rnn_ele"], f4),
    ):
        tb.jagged(name, tau, values, dt, "tau_n")
    for short, pool, fields in (
        ("jet", "truth_jet", ("pt", "eta", "phi", "m")),
        ("elec", "truth_elec", ("pt", "eta", "phi")),
        ("muon", "truth_muon", ("pt", "eta", "phi")),
        ("tau", "truth_tau", ("pt", "eta", "phi")),
        ("photon", "truth_photon", ("pt", "eta", "phi")),
    ):
        coll = ev.coll[pool] if mc else ev.coll[pool].subset(np.zeros(len(ev.coll[pool]), bool))
        tb.counter(f"truth_{short}_n")
        for fld in fields:
            tb.jagged(f"truth_{short}_{fld}", coll, coll[fld], f4, f"truth_{short}_n")
    tmet = np.hypot(ev.truth_met_x, ev.truth_met_y)
    tb.scalar("truth_met", tmet if mc else np.zeros(n), f4)
    tb.scalar(
        "truth_met_phi", np.arctan2(ev.truth_met_y, ev.truth_met_x) if mc else np.zeros(n), f4
    )
    tb.scalar("met", np.hypot(ev.met_x, ev.met_y), f4)
    tb.scalar("met_phi", np.arctan2(ev.met_y, ev.met_x), f4)
    tb.scalar("met_mpx", ev.met_x, f4)
    tb.scalar("met_mpy", ev.met_y, f4)


def _mini_common(tb: _TreeBuilder, ev: _Events, meta: _Meta, start: int) -> np.ndarray:
    """runNumber/eventNumber/channelNumber/mcWeight of the ``mini`` formats; returns runs."""
    n = ev.n
    runs = _run_numbers(meta, start, n)
    tb.scalar("runNumber", runs, np.int32)
    tb.scalar("eventNumber", _event_numbers(meta, start, n) % (2**31 - 1), np.int32)
    tb.scalar("channelNumber", np.full(n, meta.dsid) if meta.is_mc else runs, np.int32)
    tb.scalar(
        "mcWeight", meta.weights[start : start + n] if meta.is_mc else np.zeros(n), np.float32
    )
    return runs


def _write_2020e(tb: _TreeBuilder, ev: _Events, meta: _Meta, start: int) -> None:
    n, mc, s = ev.n, meta.is_mc, 1e3
    lep, jet, pho, tau, lrj = (ev.coll[k] for k in ("lep", "jet", "photon", "tau", "largeRjet"))
    f4, i4, u4, b = np.float32, np.int32, np.uint32, np.bool_
    rng = np.random.default_rng(np.random.SeedSequence([meta.seed, 2020, start]))

    def sf(name: str) -> np.ndarray:
        return ev.sf[name] if mc else np.zeros(n)

    def truthy(coll: _Coll, values: np.ndarray) -> np.ndarray:
        return values if mc else np.zeros(len(coll), dtype=values.dtype)

    def syst(coll: _Coll) -> np.ndarray:
        return (
            coll["pt"] * s * 0.01 * np.abs(rng.standard_normal(len(coll)))
            if mc
            else np.zeros(len(coll))
        )

    _mini_common(tb, ev, meta, start)
    for name in ("PILEUP", "ELE", "MUON", "PHOTON", "TAU", "BTAG", "LepTRIGGER", "PhotonTRIGGER"):
        tb.scalar(f"scaleFactor_{name}", sf(name), f4)
    for t in ("trigE", "trigM", "trigP"):
        tb.scalar(t, ev.trig[t], b)
    tb.counter("lep_n")
    for name, values, dt in (
        ("lep_truthMatched", truthy(lep, lep["prompt"]), b),
        ("lep_trigMatched", lep["trig_matched"], b),
        ("lep_pt", lep["pt"] * s, f4),
        ("lep_eta", lep["eta"], f4),
        ("lep_phi", lep["phi"], f4),
        ("lep_E", lep.energy() * s, f4),
        ("lep_z0", lep["z0"], f4),
        ("lep_charge", lep["charge"], i4),
        ("lep_type", lep["flav"], u4),
        ("lep_isTightID", lep["tight_id"], b),
        ("lep_ptcone30", lep["ptvarcone30"] * s, f4),
        ("lep_etcone20", lep["topoetcone20"] * s, f4),
        ("lep_trackd0pvunbiased", lep["d0"], f4),
        ("lep_tracksigd0pvunbiased", np.abs(lep["d0sig"]), f4),
    ):
        tb.jagged(name, lep, values, dt, "lep_n")
    met = np.hypot(ev.met_x, ev.met_y)
    tb.scalar("met_et", met * s, f4)
    tb.scalar("met_phi", np.arctan2(ev.met_y, ev.met_x), f4)
    tb.counter("jet_n")
    jvt = np.where(
        jet["jvt_pass"], rng.uniform(0.6, 1.0, len(jet)), rng.uniform(-0.1, 0.59, len(jet))
    )
    for name, values, dt in (
        ("jet_pt", jet["pt"] * s, f4),
        ("jet_eta", jet["eta"], f4),
        ("jet_phi", jet["phi"], f4),
        ("jet_E", jet.energy() * s, f4),
        ("jet_jvt", jvt, f4),
        ("jet_trueflav", truthy(jet, jet["flav"]), i4),
        ("jet_truthMatched", truthy(jet, ~jet["pileup"]), b),
        (
            "jet_MV2c10",
            _tagger_score(rng, jet["quantile"], (-1.0, 0.11, 0.64, 0.83, 0.94, 1.0)),
            f4,
        ),
    ):
        tb.jagged(name, jet, values, dt, "jet_n")
    tb.counter("photon_n")
    for name, values, dt in (
        ("photon_truthMatched", truthy(pho, pho["prompt"]), b),
        ("photon_trigMatched", pho["trig_matched"], b),
        ("photon_pt", pho["pt"] * s, f4),
        ("photon_eta", pho["eta"], f4),
        ("photon_phi", pho["phi"], f4),
        ("photon_E", pho.energy() * s, f4),
        ("photon_isTightID", pho["tight_id"], b),
        ("photon_ptcone30", pho["ptcone"] * s, f4),
        ("photon_etcone20", pho["etcone"] * s, f4),
        ("photon_convType", pho["conv"], i4),
    ):
        tb.jagged(name, pho, values, dt, "photon_n")
    tb.counter("tau_n")
    for name, values, dt in (
        ("tau_pt", tau["pt"] * s, f4),
        ("tau_eta", tau["eta"], f4),
        ("tau_phi", tau["phi"], f4),
        ("tau_E", tau.energy() * s, f4),
        ("tau_isTightID", tau["tight"], b),
        ("tau_truthMatched", truthy(tau, tau["prompt"]), b),
        ("tau_trigMatched", tau["trig_matched"], b),
        ("tau_nTracks", tau["ntracks"], i4),
        ("tau_BDTid", tau["rnn_jet"], f4),
    ):
        tb.jagged(name, tau, values, dt, "tau_n")
    tb.scalar("ditau_m", _leading_pair_mass(tau) * s, f4)
    tb.jagged("lep_pt_syst", lep, syst(lep), f4, "lep_n")
    tb.scalar(
        "met_et_syst", met * s * 0.02 * np.abs(rng.standard_normal(n)) if mc else np.zeros(n), f4
    )
    tb.jagged("jet_pt_syst", jet, syst(jet), f4, "jet_n")
    tb.jagged("photon_pt_syst", pho, syst(pho), f4, "photon_n")
    tb.jagged("tau_pt_syst", tau, syst(tau), f4, "tau_n")
    tb.const("XSection", meta.xsec * meta.kfac * meta.filteff if mc else 1.0, f4, n)
    tb.const("SumWeights", meta.sum_w if mc else 1.0, f4, n)
    tb.counter("largeRjet_n")
    lre = np.sqrt((lrj["pt"] * np.cosh(lrj["eta"])) ** 2 + lrj["m"] ** 2)
    for name, values in (
        ("largeRjet_pt", lrj["pt"] * s),
        ("largeRjet_eta", lrj["eta"]),
        ("largeRjet_phi", lrj["phi"]),
        ("largeRjet_E", lre * s),
        ("largeRjet_m", lrj["m"] * s),
        ("largeRjet_truthMatched", truthy(lrj, np.ones(len(lrj)))),
        ("largeRjet_D2", lrj["D2"]),
        ("largeRjet_tau32", lrj["tau32"]),
        ("largeRjet_pt_syst", syst(lrj)),
    ):
        tb.jagged(name, lrj, values, f4, "largeRjet_n")
    tb.jagged("tau_charge", tau, tau["charge"], i4, "tau_n")


def _tagger_score(
    rng: np.random.Generator, quantile: np.ndarray, edges: tuple[float, ...]
) -> np.ndarray:
    """A continuous b-tagging score in the band of each quantile (edges: 6 values, q = 1..5)."""
    e = np.asarray(edges)
    lo, hi = e[quantile - 1], e[quantile]
    return lo + (hi - lo) * rng.random(quantile.size)


def _write_2016e(tb: _TreeBuilder, ev: _Events, meta: _Meta, start: int) -> None:
    n, mc, s = ev.n, meta.is_mc, 1e3
    lep, jet = ev.coll["lep"], ev.coll["jet"]
    f4, i4, u4, b = np.float32, np.int32, np.uint32, np.bool_
    rng = np.random.default_rng(np.random.SeedSequence([meta.seed, 2016, start]))

    def sf(name: str) -> np.ndarray:
        return ev.sf[name] if mc else np.zeros(n)

    _mini_common(tb, ev, meta, start)
    tb.scalar("pvxp_n", 1 + rng.poisson(11.0, n), i4)
    tb.scalar("vxp_z", rng.normal(0.0, 50.0, n), f4)
    for name, src in (
        ("PILEUP", "PILEUP"),
        ("ELE", "ELE"),
        ("MUON", "MUON"),
        ("BTAG", "BTAG"),
        ("TRIGGER", "LepTRIGGER"),
        ("JVFSF", "JVT"),
        ("ZVERTEX", "ZVERTEX"),
    ):
        tb.scalar(f"scaleFactor_{name}", sf(src), f4)
    tb.scalar("trigE", ev.trig["trigE"], b)
    tb.scalar("trigM", ev.trig["trigM"], b)
    tb.const("passGRL", True, b, n)
    tb.const("hasGoodVertex", True, b, n)
    flag = (
        lep["loose_id"].astype(np.uint32)
        | (lep["medium_id"].astype(np.uint32) << 1)
        | (lep["tight_id"].astype(np.uint32) << 9)
    )
    tb.counter("lep_n")
    for name, values, dt in (
        ("lep_truthMatched", lep["prompt"] if mc else np.zeros(len(lep), bool), b),
        ("lep_trigMatched", lep["trig_matched"], b),
        ("lep_pt", lep["pt"] * s, f4),
        ("lep_eta", lep["eta"], f4),
        ("lep_phi", lep["phi"], f4),
        ("lep_E", lep.energy() * s, f4),
        ("lep_z0", lep["z0"], f4),
        ("lep_charge", lep["charge"], i4),
        ("lep_type", lep["flav"], u4),
        ("lep_flag", flag, u4),
        ("lep_ptcone30", lep["ptvarcone30"] * s, f4),
        ("lep_etcone20", lep["topoetcone20"] * s, f4),
        ("lep_trackd0pvunbiased", lep["d0"], f4),
        ("lep_tracksigd0pvunbiased", np.abs(lep["d0sig"]), f4),
    ):
        tb.jagged(name, lep, values, dt, "lep_n")
    tb.scalar("met_et", np.hypot(ev.met_x, ev.met_y) * s, f4)
    tb.scalar("met_phi", np.arctan2(ev.met_y, ev.met_x), f4)
    tb.counter("jet_n")
    tb.scalar("alljet_n", jet.counts + rng.poisson(1.0, n), u4)
    kj = len(jet)
    jvf = np.where(
        np.abs(jet["eta"]) > 2.4,
        -1.0,
        np.where(jet["jvt_pass"], rng.uniform(0.5, 1.0, kj), rng.uniform(0.0, 0.5, kj)),
    )
    is_b = jet["flav"] == 5
    sv0 = np.where(
        rng.random(kj) < np.where(is_b, 0.7, 0.05), rng.exponential(np.where(is_b, 4.0, 1.0)), 0.0
    )
    for name, values, dt in (
        ("jet_pt", jet["pt"] * s, f4),
        ("jet_eta", jet["eta"], f4),
        ("jet_phi", jet["phi"], f4),
        ("jet_E", jet.energy() * s, f4),
        ("jet_m", jet["m"] * s, f4),
        ("jet_jvf", jvf, f4),
        ("jet_trueflav", jet["flav"] if mc else np.zeros(kj), i4),
        ("jet_truthMatched", ~jet["pileup"] if mc else np.zeros(kj), i4),
        ("jet_SV0", sv0, f4),
        ("jet_MV1", _tagger_score(rng, jet["quantile"], (0.0, 0.2, 0.6, 0.7892, 0.98, 1.0)), f4),
    ):
        tb.jagged(name, jet, values, dt, "jet_n")


_PHYSLITE_COUNTERS = {
    "AnalysisElectronsAuxDyn": "nAnalysisElectrons",
    "AnalysisMuonsAuxDyn": "nAnalysisMuons",
    "AnalysisJetsAuxDyn": "nAnalysisJets",
    "AnalysisPhotonsAuxDyn": "nAnalysisPhotons",
    "AnalysisTauJetsAuxDyn": "nAnalysisTauJets",
}


def _write_physlite(tb: _TreeBuilder, ev: _Events, meta: _Meta, start: int) -> None:
    n, mc, s = ev.n, meta.is_mc, 1e3
    lep, jet, pho, tau = (ev.coll[k] for k in ("lep", "jet", "photon", "tau"))
    f4, i8, u8 = np.float32, np.int8, np.uint8
    ele = lep.subset(lep["flav"] == 11)
    mu = lep.subset(lep["flav"] == 13)
    quality = np.where(
        mu["tight_id"], 0, np.where(mu["medium_id"], 1, np.where(mu["loose_id"], 2, 3))
    )

    def add(prefix: str, coll: _Coll, fields: tuple[tuple[str, np.ndarray, Any], ...]) -> None:
        for name, values, dt in fields:
            tb.jagged(f"{prefix}.{name}", coll, values, dt, _PHYSLITE_COUNTERS[prefix])

    add(
        "AnalysisElectronsAuxDyn",
        ele,
        (
            ("pt", ele["pt"] * s, f4),
            ("eta", ele["eta"], f4),
            ("phi", ele["phi"], f4),
            ("m", ele["m"] * s, f4),
            ("charge", ele["charge"], f4),
            ("DFCommonElectronsLHLoose", ele["loose_id"], i8),
            ("DFCommonElectronsLHMedium", ele["medium_id"], i8),
            ("DFCommonElectronsLHTight", ele["tight_id"], i8),
        ),
    )
    add(
        "AnalysisMuonsAuxDyn",
        mu,
        (
            ("pt", mu["pt"] * s, f4),
            ("eta", mu["eta"], f4),
            ("phi", mu["phi"], f4),
            ("charge", mu["charge"], f4),
            ("quality", quality, u8),
        ),
    )
    add(
        "AnalysisJetsAuxDyn",
        jet,
        (
            ("pt", jet["pt"] * s, f4),
            ("eta", jet["eta"], f4),
            ("phi", jet["phi"], f4),
            ("m", jet["m"] * s, f4),
        ),
    )
    add(
        "AnalysisPhotonsAuxDyn",
        pho,
        (
            ("pt", pho["pt"] * s, f4),
            ("eta", pho["eta"], f4),
            ("phi", pho["phi"], f4),
            ("m", pho["m"] * s, f4),
            ("DFCommonPhotonsIsEMTight", pho["tight_id"], i8),
        ),
    )
    add(
        "AnalysisTauJetsAuxDyn",
        tau,
        (
            ("pt", tau["pt"] * s, f4),
            ("eta", tau["eta"], f4),
            ("phi", tau["phi"], f4),
            ("m", tau["m"] * s, f4),
            ("charge", tau["charge"], f4),
            ("RNNJetScore", tau["rnn_jet"], f4),
        ),
    )
    tb.scalar("EventInfoAuxDyn.eventNumber", _event_numbers(meta, start, n), np.uint64)
    tb.scalar("EventInfoAuxDyn.runNumber", _run_numbers(meta, start, n), np.uint32)
    tb.scalar("EventInfoAuxDyn.mcChannelNumber", np.full(n, meta.dsid if mc else 0), np.uint32)
    # nominal weight first, then two variations (real files carry a few hundred)
    if mc:
        w = meta.weights[start : start + n].astype(np.float64)
        rng = np.random.default_rng(np.random.SeedSequence([meta.seed, 2024, start]))
        var = w[:, None] * (1.0 + 0.05 * rng.standard_normal((n, 2)))
        flat = np.column_stack([w, var]).ravel()
        counts = np.full(n, 3)
    else:
        flat = np.zeros(0)
        counts = np.zeros(n, dtype=np.int64)
    tb.types["EventInfoAuxDyn.mcEventWeights"] = _datashape("var * float32")
    tb.data["EventInfoAuxDyn.mcEventWeights"] = ak.unflatten(flat.astype(np.float32), counts)
    tb.counters["EventInfoAuxDyn.mcEventWeights"] = "nmcEventWeights"


_WRITERS: dict[str, Callable[[_TreeBuilder, _Events, _Meta, int], None]] = {
    "2025e": _write_2025e,
    "2020e": _write_2020e,
    "2016e": _write_2016e,
    "physlite": _write_physlite,
}

# =============================================================================================
# demo cache helpers


def _demo_specs(n_events: int) -> list[dict[str, Any]]:
    """The demo files: names, kinds, seeds, event counts and (MC) cross-sections."""
    per = [n_events // 4 + (1 if i < n_events % 4 else 0) for i in range(4)]
    n_data = per[0] + per[1]
    # MC normalised to the data background: sum of weights = xsec * lumi per file
    xsec_each = n_data * (1.0 - DEMO_SIGNAL_FRACTION) / (2 * LUMI_2025E_PB)
    specs: list[dict[str, Any]] = []
    for i, period in enumerate(("data15_periodD", "data16_periodA")):
        specs.append(
            {
                "name": sample_filename("2025e", "data", skim=DEMO_SKIM, period=period),
                "kind": "data",
                "n_events": per[i],
                "seed": DEMO_SEED + i,
                "signal_mass_gev": DEMO_SIGNAL_MASS_GEV,
            }
        )
    for j, (dsid, name) in enumerate(((700001, "Synthetic_SM_A"), (700002, "Synthetic_SM_B"))):
        specs.append(
            {
                "name": sample_filename("2025e", "mc", skim=DEMO_SKIM, dsid=dsid, name=name),
                "kind": "mc",
                "n_events": per[2 + j],
                "seed": DEMO_SEED + 2 + j,
                "signal_mass_gev": None,
                "dsid": dsid,
                "xsec": (xsec_each, 1.0, 1.0),
            }
        )
    return specs


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_matches(path: Path, entry: dict[str, Any]) -> bool:
    try:
        if path.stat().st_size != entry.get("size"):
            return False
    except OSError:
        return False
    return _sha256(path) == entry.get("sha256")


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive inter-process lock (no-op where ``fcntl`` is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
