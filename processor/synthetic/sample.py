"""One synthetic ROOT file: generated block by block, filled per format, replaced atomically."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import uproot

from processor.fsutil import atomic_path

from .generator import _generate
from .meta import KINDS, SYNTHETIC_DSIDS, TREE_NAMES, _check_fmt_kind, _make_meta
from .writers import _WRITERS, _TreeBuilder

# the package's logger, so log lines keep the name ``processor.synthetic``
log = logging.getLogger(__package__)

#: events generated per block (bounds memory; the content does not depend on basket_size)
_BLOCK = 100_000


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

    The files stand in for real ATLAS Open Data wherever the real thing is out of reach (tests,
    the built-in demo, machines without network).  They are written with uproot, compressed
    with ZLIB level 1 like the real files, and are deterministic: the same arguments and
    ``seed`` give the same array content (the ROOT file bytes differ only in timestamps/UUIDs).
    What each format reproduces is described by its writer in :mod:`.writers`, the physics
    content by :func:`.generator._generate`.

    Args:
        path: the ROOT file to write (parent directories are created; an existing file is
            replaced atomically: the file is written under a temporary name and renamed).
        fmt: one of :data:`FORMATS`.
        n_events: number of events (>= 0).
        seed: random seed; the same arguments and seed give identical array content.
        kind: ``"data"`` or ``"mc"`` (the format writers describe the differences).
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
    with atomic_path(path) as tmp, uproot.recreate(tmp, compression=uproot.ZLIB(1)) as fout:
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
