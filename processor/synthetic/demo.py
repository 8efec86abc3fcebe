"""The built-in demo sample: four 2025e files, cached and reused through a sha256 manifest."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from processor.fsutil import atomic_write_text, cache_root

from .meta import GENERATOR_VERSION, sample_filename
from .sample import _write

# the package's logger, so log lines keep the name ``processor.synthetic``
log = logging.getLogger(__package__)

#: integrated luminosity of the 2025e release, pb^-1 (DESIGN §4)
LUMI_2025E_PB = 36600.0


def demo_cache_dir() -> Path:
    """Where :func:`make_demo_sample` keeps the demo files.

    ``<cache root>/demo`` (:func:`processor.fsutil.cache_root`): ``$BUMPNET_CACHE_DIR/demo`` when set,
    else ``$XDG_CACHE_HOME/bumpnet-masses/demo`` (``~/.cache/bumpnet-masses/demo``).
    """
    return cache_root() / "demo"


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
    (default :func:`demo_cache_dir`) and recorded in ``demo_manifest.json`` (generator
    version, seeds, event counts, sha256); a later call with the same ``n_events`` reuses
    files whose size and sha256 match the manifest, and
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
            atomic_write_text(
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
