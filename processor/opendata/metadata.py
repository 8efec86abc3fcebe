"""ATLAS Open Data release metadata: the API via atlasopenmagic, the run-level and user-level caches.

The user-level cache is atlasopenmagic's own (that of its ``atom`` command, read in
``atlasopenmagic/cli.py`` 1.10): ``$XDG_CACHE_HOME/atlasopenmagic/metadata-<release>.json``
(``~/.cache`` when ``XDG_CACHE_HOME`` is unset), written by ``save_metadata``, read by
``read_metadata``, its age is its mtime and ``atom`` refetches after 7 days. So
``atom --release R metadata skims`` on a login node fills it for offline batch jobs, and what
this package fetches serves ``atom``. Our old cache (``<cache_root>/metadata/<release>.json`` +
``.info.json``) is moved there once, on first use.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processor.errors import StorageError
from processor.fsutil import atomic_path, atomic_write_json, cache_root
from processor.opendata.download import (
    DataAccessError,
)

log = logging.getLogger(__name__)

RUN_CACHE_NAME = "metadata_cache.json"
_RUN_CACHE_FORMAT = 1
_DEFAULT_API = "https://atlasopenmagic-api.app.cern.ch"


# ------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------
def user_cache_dir() -> Path:
    """The user-level cache of this tool (:func:`processor.fsutil.cache_root`)."""
    return cache_root()


_default_user_cache_dir = user_cache_dir


#: atlasopenmagic's release-name check for cache file names (``cli._SAFE_RELEASE_RE``)
_SAFE_RELEASE_RE = re.compile(r"^[A-Za-z0-9._-]+$")
#: atlasopenmagic's ``cli._METADATA_CACHE_TTL_SECONDS`` (7 days), our default expiry too
ATOM_METADATA_TTL_HOURS = 7 * 24.0


def atom_cache_dir() -> Path:
    """atlasopenmagic's cache directory, by its own rule: ``$XDG_CACHE_HOME/atlasopenmagic``.

    Like atlasopenmagic, ``XDG_CACHE_HOME`` is used as given whenever it is set; unset means
    ``~/.cache``.
    """
    return Path(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))) / "atlasopenmagic"


def user_metadata_path(release: str, base: Path | None = None) -> Path:
    """The shared user-level metadata cache of a release: ``atom``'s ``metadata-<release>.json``.

    ``base`` is accepted for compatibility and ignored: the file is atlasopenmagic's.
    Raises DataAccessError for a release name atlasopenmagic would reject as a file name.
    """
    del base
    if not _SAFE_RELEASE_RE.match(release):
        raise DataAccessError(
            f"parsing_task_config.release '{release}': not a valid release name "
            "(letters, digits, '.', '_', '-'); use one of the published releases"
        )
    return atom_cache_dir() / f"metadata-{release}.json"


def legacy_metadata_path(release: str, base: Path | None = None) -> Path:
    """Where releases were cached before the cache was shared: ``<cache_root>/metadata/R.json``."""
    return Path(base if base is not None else user_cache_dir()) / "metadata" / f"{release}.json"


def _info_path(path: Path) -> Path:
    return path.with_name(path.name[: -len(".json")] + ".info.json")


def _origin_path(release: str, base: Path | None) -> Path:
    """Our note of which API a shared-cache file came from (kept out of atom's directory)."""
    return (
        Path(base if base is not None else user_cache_dir()) / "metadata" / f"{release}.origin.json"
    )


def _write_origin(release: str, base: Path | None, path: Path, api: str) -> None:
    """Record the API of ``path`` together with its mtime (a later ``atom`` write voids it)."""
    try:
        _atomic_write_json(
            _origin_path(release, base),
            {"release": release, "api_base_url": api, "mtime_ns": path.stat().st_mtime_ns},
            indent=2,
        )
    except OSError as exc:
        log.warning("could not write %s: %s", _origin_path(release, base), exc)


def _read_origin(release: str, base: Path | None, path: Path) -> str | None:
    """The API ``path`` was fetched from, if we wrote it and nobody rewrote it since; else None."""
    try:
        doc = json.loads(_origin_path(release, base).read_text())
        if isinstance(doc, dict) and doc.get("mtime_ns") == path.stat().st_mtime_ns:
            return doc.get("api_base_url")
    except (OSError, ValueError):
        pass
    return None


def _migrate_legacy_cache(release: str, base: Path | None) -> None:
    """Move our pre-sharing cache file of ``release`` into atom's cache, once.

    The moved file keeps its fetch time as mtime (atom's notion of age). When the shared file
    already exists the old one is just removed.
    """
    old = legacy_metadata_path(release, base)
    if not old.is_file():
        return
    new = user_metadata_path(release)
    info_file = _info_path(old)
    try:
        if not new.exists():
            try:
                info = json.loads(info_file.read_text())
                fetched = float(info["fetched_at"])
                api = info.get("api_base_url")
            except (OSError, ValueError, KeyError, TypeError):
                fetched, api = old.stat().st_mtime, None
            new.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(new) as tmp:
                tmp.write_bytes(old.read_bytes())
            os.utime(new, (fetched, fetched))
            if api:
                _write_origin(release, base, new, api)
            log.info("moved the metadata cache %s to atlasopenmagic's %s", old, new)
        old.unlink()
        info_file.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not move the metadata cache %s to %s: %s", old, new, exc)


def _atomic_write_json(path: Path, obj: Any, *, indent: int | None = None) -> None:
    atomic_write_json(path, obj, indent=indent, sort_keys=True)


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"


def _float_or_none(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out


def _int_or_none(value: Any) -> int | None:
    number = _float_or_none(value)
    return int(number) if number is not None and number.is_integer() else None


def _api_base_url() -> str:
    """The API atlasopenmagic talks to, re-read from ``ATLAS_API_BASE_URL``.

    atlasopenmagic reads the variable once, at import; setting it later (a notebook, a test)
    would otherwise be ignored.
    """
    import atlasopenmagic.metadata as atom_md

    env = os.environ.get("ATLAS_API_BASE_URL")
    if env:
        atom_md.API_BASE_URL = env.rstrip("/")
    return str(atom_md.API_BASE_URL)


def entry_is_mc(entry: dict[str, Any]) -> bool:
    """MC iff the metadata's ``dataset_number`` is a DSID (digits); data entries say ``data``."""
    return str(entry.get("dataset_number", "")).strip().isdigit()


def dataset_name(entry: dict[str, Any]) -> str:
    """A readable coffea dataset name: ``data`` or ``mc_<DSID>_<physics_short>``."""
    number = str(entry.get("dataset_number", "")).strip()
    if not entry_is_mc(entry):
        return _sanitize(number.lower() or "data")
    short = entry.get("physics_short")
    return _sanitize(f"mc_{number}_{short}" if short else f"mc_{number}")


def _canonical(metadata: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Drop atlasopenmagic's physics_short aliases: one key (the dataset number) per entry."""
    out: dict[str, dict[str, Any]] = {}
    for key, entry in metadata.items():
        if not isinstance(entry, dict):
            continue
        number = str(entry.get("dataset_number", key)).strip()
        if key.lower() == number.lower():
            out[key] = entry
    return out


def _with_aliases(entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """atlasopenmagic's in-memory layout: entries by dataset number and by physics_short."""
    out = dict(entries)
    for entry in entries.values():
        short = entry.get("physics_short")
        if short and short.lower() not in out:
            out[short.lower()] = entry
    return out


# ------------------------------------------------------------------------------------------
# metadata: caches and the API
# ------------------------------------------------------------------------------------------
@dataclass
class _Metadata:
    """A release's metadata loaded into atlasopenmagic, with where it came from."""

    release: str
    entries: dict[str, dict[str, Any]]  # canonical keys only
    source: str
    #: sample types this set holds completely ("data", "mc"); a run cache may hold a subset
    complete: frozenset[str] = frozenset({"data", "mc"})
    fetched_at: float | None = None
    api_base_url: str | None = None


def _atom_read(path: Path, release: str) -> dict[str, dict[str, Any]]:
    """Load a save_metadata-format file into atlasopenmagic; return its canonical entries."""
    import atlasopenmagic as atom

    try:
        atom.read_metadata(str(path), release=release)
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise DataAccessError(
            f"metadata cache {path} is unreadable ({exc}); delete it and run with network "
            "access to fetch it again"
        ) from None
    # an empty metadata set would make get_all_metadata() call the API: check the fields first
    entries = _canonical(atom.get_all_metadata()) if atom.get_metadata_fields() else {}
    if not entries:
        raise DataAccessError(
            f"metadata cache {path} holds no datasets; delete it and run with network access"
        )
    return entries


def _atom_load_entries(entries: dict[str, dict[str, Any]], release: str) -> None:
    """Put entries (e.g. from a run cache) into atlasopenmagic through ``read_metadata``."""
    import atlasopenmagic as atom

    fd, tmp = tempfile.mkstemp(prefix="bumpnet-atom-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(_with_aliases(entries), fh)
        atom.read_metadata(tmp, release=release)
    finally:
        Path(tmp).unlink(missing_ok=True)


def fetch_release_metadata(release: str, cache_base: Path | None = None) -> _Metadata:
    """Download a release's metadata with atlasopenmagic and store it in the user cache."""
    import atlasopenmagic as atom
    import atlasopenmagic.metadata as atom_md

    api = _api_base_url()
    log.info("fetching the metadata of release %s from %s", release, api)
    try:
        atom_md.empty_metadata()  # set_release skips the download when the release is active
        atom.set_release(release)
        # with nothing fetched, get_all_metadata() would fetch again: look at the fields first
        raw = atom.get_all_metadata() if atom.get_metadata_fields() else {}
    except Exception as exc:  # requests errors, HTTP errors, bad JSON, ...
        raise DataAccessError(
            f"cannot fetch the metadata of release {release} from {api}: "
            f"{type(exc).__name__}: {str(exc)[:300]}. Check the network (or ATLAS_API_BASE_URL), "
            "or run offline with a filled metadata cache (parsing_task_config.offline: true)"
        ) from None
    entries = _canonical(raw)
    if not entries:
        raise DataAccessError(
            f"the API at {api} returned no datasets for release {release}; check the release "
            "name and ATLAS_API_BASE_URL"
        )
    now = time.time()
    path = user_metadata_path(release)
    try:
        # save_metadata picks the format from the suffix: keep ".json"; the leading dot keeps
        # the half-written file out of atom's list of cached releases (metadata-*.json)
        with atomic_path(path, suffix=".tmp.json") as tmp:
            atom.save_metadata(str(tmp))
    except (OSError, StorageError) as exc:  # a cache we cannot write must not stop the run
        log.warning("could not write the metadata cache %s: %s", path, exc)
    else:
        try:
            _write_origin(release, cache_base, path, api)
        except OSError as exc:
            log.warning("could not write the metadata cache %s: %s", path, exc)
    log.info("cached %d datasets of %s in %s", len(entries), release, path)
    return _Metadata(release, entries, "api", fetched_at=now, api_base_url=api)


def _atom_version() -> str:
    try:
        from importlib.metadata import version

        return version("atlasopenmagic")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


def _fill_cache_hint(release: str, path: Path) -> str:
    return (
        "run once with network access (same config without offline) to fill it, or run "
        f"`atom --release {release} metadata skims` where there is network (it fills the same "
        f"cache), or save it there with atom.set_release('{release}'); "
        f"atom.save_metadata('{path}')"
    )


def _load_run_cache(run_dir: Path, release: str) -> _Metadata | None:
    path = Path(run_dir) / RUN_CACHE_NAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable run metadata cache %s: %s", path, exc)
        return None
    if not isinstance(doc, dict) or doc.get("format") != _RUN_CACHE_FORMAT:
        log.warning("ignoring run metadata cache %s: unknown format", path)
        return None
    if doc.get("release") != release:
        log.info(
            "run metadata cache %s is for release %s, not %s; not used",
            path,
            doc.get("release"),
            release,
        )
        return None
    entries = doc.get("datasets") or {}
    if not isinstance(entries, dict) or not entries:
        return None
    age_h = (time.time() - float(doc.get("fetched_at", 0))) / 3600
    return _Metadata(
        release,
        entries,
        f"run cache {path} ({age_h:.1f} h old)",
        complete=frozenset(doc.get("complete", [])),
        fetched_at=doc.get("fetched_at"),
        api_base_url=doc.get("api_base_url"),
    )


def _write_run_cache(
    run_dir: Path, meta: _Metadata, keys: Iterable[str], complete: Iterable[str]
) -> None:
    path = Path(run_dir) / RUN_CACHE_NAME
    entries = {k: meta.entries[k] for k in keys}
    complete = set(complete)
    old = _load_run_cache(run_dir, meta.release)
    if old is not None:  # keep what an earlier selection of this run needed
        entries = {**old.entries, **entries}
        complete |= set(old.complete)
    doc = {
        "format": _RUN_CACHE_FORMAT,
        "release": meta.release,
        "fetched_at": meta.fetched_at if meta.fetched_at is not None else time.time(),
        "api_base_url": meta.api_base_url,
        "source": meta.source,
        "complete": sorted(complete),
        "atlasopenmagic_version": _atom_version(),
        "datasets": entries,
    }
    _atomic_write_json(path, doc)
    log.debug("wrote %s (%d datasets)", path, len(entries))


def load_release_metadata(
    release: str,
    *,
    offline: bool = False,
    expiry_hours: float = 168.0,
    cache_base: Path | None = None,
    force_refresh: bool = False,
    also_looked_in: Iterable[Path] = (),
) -> _Metadata:
    """The whole release's metadata from the shared user cache (fresh) or the API, into atom.

    The cache is atlasopenmagic's ``metadata-<release>.json`` (:func:`user_metadata_path`);
    its age is its mtime, as for ``atom``. ``cache_base`` holds our legacy cache (moved on
    first use) and the note of which API a file came from.

    Offline, only the cache is used (stale or not); an absent cache raises DataAccessError
    saying how to fill it. Online, an expired cache is refreshed; when the refresh fails the
    expired cache is used with a warning.
    """
    _migrate_legacy_cache(release, cache_base)
    path = user_metadata_path(release)
    cached: dict[str, Any] | None = None
    if path.is_file():
        mtime = path.stat().st_mtime
        api = _read_origin(release, cache_base, path)
        age_h = (time.time() - mtime) / 3600
        same_api = api in (None, _api_base_url())
        info = {"fetched_at": mtime, "api_base_url": api}
        cached = {"info": info, "age_h": age_h}
        fresh = age_h < expiry_hours and same_api and not force_refresh
        if offline or fresh:
            if offline and not fresh:
                log.warning(
                    "offline: using the metadata cache %s although it is %.1f h old "
                    "(expiry %.0f h)",
                    path,
                    age_h,
                    expiry_hours,
                )
            entries = _atom_read(path, release)
            return _Metadata(
                release,
                entries,
                f"user cache {path} ({age_h:.1f} h old)",
                fetched_at=info["fetched_at"],
                api_base_url=api,
            )
        reason = "is for another API" if not same_api else f"is {age_h:.1f} h old"
        log.info("metadata cache %s %s: refreshing from the API", path, reason)
    if offline:
        places = ", ".join(str(p) for p in [*also_looked_in, path])
        raise DataAccessError(
            f"offline: no metadata cached for release {release} (looked in {places}); "
            + _fill_cache_hint(release, path)
        )
    try:
        return fetch_release_metadata(release, cache_base)
    except DataAccessError as exc:
        if cached is None:
            raise
        log.warning("%s -- using the expired metadata cache %s instead", exc, path)
        entries = _atom_read(path, release)
        return _Metadata(
            release,
            entries,
            f"user cache {path} ({cached['age_h']:.1f} h old, expired; API unreachable)",
            fetched_at=cached["info"].get("fetched_at"),
            api_base_url=cached["info"].get("api_base_url"),
        )
