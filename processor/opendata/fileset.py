"""From the configuration to a coffea fileset: ATLAS Open Data releases or local inputs.

Two sources of files, one result (:class:`FilesetPlan`):

* **A release** (``parsing_task_config.release`` / ``skim`` / ``samples`` / ``datasets``): the
  file lists and the MC normalisation come from the ATLAS Open Data metadata, fetched with
  atlasopenmagic (``set_release`` / ``get_urls`` / ``get_metadata`` / ``save_metadata`` /
  ``read_metadata``; ``ATLAS_API_BASE_URL`` points it at another API). Data and MC are told
  apart by the metadata (a numeric ``dataset_number`` is an MC DSID, anything else, e.g.
  ``"data"``, is collision data), never by file names.
* **Inputs** (``parsing_task_config.inputs`` or the CLI's ``--input``): local files, globs,
  directories or URLs, grouped into datasets by their release-style file names
  (``data`` / ``mc_<DSID>_<name>``) or else by directory.

Metadata caches (so that re-runs, dry runs and resumed runs never call the API):

1. ``<run_dir>/metadata_cache.json``: the entries this run used. A run directory stays
   pinned to it (no expiry) as long as it covers the selection; delete it to refresh.
2. ``<user cache>/metadata/<release>.json``: the whole release in atlasopenmagic's own
   ``save_metadata`` format (fill it by hand with
   ``atom.set_release(R); atom.save_metadata(".../metadata/R.json")``), with a sidecar
   ``<release>.info.json`` recording when and from where it was fetched. It expires after
   ``metadata_cache_expiry_hours``; an expired cache is still used, with a warning, when the
   API cannot be reached, and always in offline mode.

All cache writes go to a temporary file that is renamed into place.
"""

from __future__ import annotations

import glob as globmod
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from processor.config import ParsingConfig
from processor.fsutil import atomic_write_json, cache_root
from processor.opendata.download import (
    DataAccessError,
    cache_path,
    download_files,
    is_remote,
    strip_fsspec_chain,
    uproot_options,
)
from processor.opendata.releases import RELEASES, TREE_CANDIDATES, release_for_tree

__all__ = [
    "DataAccessError",
    "FilesetPlan",
    "RELEASE_TREES",
    "build_fileset",
    "dataset_name",
    "load_release_metadata",
    "uproot_options",
    "user_cache_dir",
    "user_metadata_path",
]

log = logging.getLogger(__name__)

RELEASE_TREES = {name: info.tree for name, info in RELEASES.items()}
#: Keys coffea reserves in a fileset's metadata (they raise ValueError there).
COFFEA_RESERVED_KEYS = frozenset(
    {
        "dataset",
        "filename",
        "treename",
        "metadata",
        "entrystart",
        "entrystop",
        "fileuuid",
        "numentries",
        "uuid",
        "clusters",
        "preload",
    }
)
RUN_CACHE_NAME = "metadata_cache.json"
_RUN_CACHE_FORMAT = 1
_DEFAULT_API = "https://atlasopenmagic-api.app.cern.ch"
_ROOT_FILE_RE = re.compile(r"\.root(\.\d+)?$")


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------
@dataclass
class FilesetPlan:
    """What the runner needs: the coffea fileset plus a readable description of it."""

    #: ``{dataset: {"files": {path_or_url: treename}, "metadata": {...}}}``
    fileset: dict[str, dict[str, Any]]
    #: per dataset: name, is_mc, n_files, n_files_total, release, skim, dsid, physics_short,
    #: xsec, kfac, filteff, sumw, tree_name, source ("release"|"inputs"), note
    datasets: list[dict[str, Any]]
    #: offline / allow_missing: what the caches lacked (one readable line each)
    missing: list[str] = field(default_factory=list)
    #: where the metadata came from ("api", "user cache (...)", "run cache (...)", "inputs")
    metadata_source: str = ""
    #: options for coffea's ``Runner(..., uproot_options=...)`` / ``uproot.open`` (timeout)
    uproot_options: dict[str, Any] = field(default_factory=uproot_options)

    @property
    def n_files(self) -> int:
        """Total number of files in the fileset."""
        return sum(len(d["files"]) for d in self.fileset.values())

    def summary_lines(self) -> list[str]:
        """One line per dataset (for dry runs and logs)."""
        lines = []
        for d in self.datasets:
            kind = "MC  " if d["is_mc"] else "data"
            files = f"{d['n_files']}/{d['n_files_total']} files"
            norm = ""
            if d["is_mc"] and d.get("xsec") is not None:
                norm = (
                    f"  xsec={d['xsec']:g} pb kfac={d.get('kfac')} filteff={d.get('filteff')} "
                    f"sumw={d.get('sumw')}"
                )
            note = f"  ({d['note']})" if d.get("note") else ""
            lines.append(f"{kind} {d['name']:<60} {files:>14}  tree={d['tree_name']}{norm}{note}")
        for item in self.missing:
            lines.append(f"MISSING {item}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for writing the resolved fileset into the run directory)."""
        return {
            "fileset": self.fileset,
            "datasets": self.datasets,
            "missing": self.missing,
            "metadata_source": self.metadata_source,
            "uproot_options": self.uproot_options,
        }


# ------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------
def user_cache_dir() -> Path:
    """The user-level cache of this tool (:func:`processor.fsutil.cache_root`)."""
    return cache_root()


_default_user_cache_dir = user_cache_dir


def user_metadata_path(release: str, base: Path | None = None) -> Path:
    """The user-level metadata cache of a release (atlasopenmagic ``save_metadata`` format)."""
    return Path(base if base is not None else user_cache_dir()) / "metadata" / f"{release}.json"


def _info_path(path: Path) -> Path:
    return path.with_name(path.name[: -len(".json")] + ".info.json")


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


def _read_info(path: Path) -> dict[str, Any]:
    info_file = _info_path(path)
    try:
        info = json.loads(info_file.read_text())
        if isinstance(info, dict):
            return info
    except (OSError, ValueError):
        pass
    # a cache written by hand with atom.save_metadata has no sidecar: its mtime is its age
    return {"fetched_at": path.stat().st_mtime, "api_base_url": None}


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
    path = user_metadata_path(release, cache_base)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{release}.", suffix=".tmp.json", dir=path.parent)
    os.close(fd)
    try:
        atom.save_metadata(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write the metadata cache %s: %s", path, exc)
    finally:
        Path(tmp).unlink(missing_ok=True)
    try:
        _atomic_write_json(
            _info_path(path),
            {
                "release": release,
                "fetched_at": now,
                "fetched_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "api_base_url": api,
                "atlasopenmagic_version": _atom_version(),
                "n_datasets": len(entries),
            },
            indent=2,
        )
    except OSError as exc:
        log.warning("could not write %s: %s", _info_path(path), exc)
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
        "run once with network access (same config without offline) to fill it, or on a "
        'machine with network run: python -c "import atlasopenmagic as atom; '
        f"atom.set_release('{release}'); atom.save_metadata('{release}.json')\" and copy the "
        f"file to {path}"
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
    """The whole release's metadata from the user cache (fresh) or the API, loaded into atom.

    Offline, only the cache is used (stale or not); an absent cache raises DataAccessError
    saying how to fill it. Online, an expired cache is refreshed; when the refresh fails the
    expired cache is used with a warning.
    """
    path = user_metadata_path(release, cache_base)
    cached: dict[str, Any] | None = None
    if path.is_file():
        info = _read_info(path)
        age_h = (time.time() - float(info.get("fetched_at") or 0)) / 3600
        same_api = info.get("api_base_url") in (None, _api_base_url())
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
                fetched_at=info.get("fetched_at"),
                api_base_url=info.get("api_base_url"),
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


# ------------------------------------------------------------------------------------------
# selection
# ------------------------------------------------------------------------------------------
@dataclass
class _Selection:
    keys: list[str]  # canonical keys, data first, then MC by DSID
    whole: set[str]  # sample types taken completely ("data", "mc")
    named: set[str]  # canonical keys named explicitly in parsing.datasets
    unknown: list[str]  # names not found


def _wanted_types(samples: str) -> set[str]:
    return {"data", "mc"} if samples == "both" else {samples}


def _sort_key(key: str, entry: dict[str, Any]) -> tuple[int, int, str]:
    if entry_is_mc(entry):
        return (1, int(str(entry["dataset_number"]).strip()), key)
    return (0, 0, key)


def _select(
    entries: dict[str, dict[str, Any]], samples: str, datasets: list[str | int] | None
) -> _Selection:
    """Resolve ``samples`` + ``datasets`` against canonical entries.

    ``datasets`` restricts the sample types it names: MC names restrict MC, data keys restrict
    data; a type chosen by ``samples`` that ``datasets`` does not name is taken whole.
    """
    wanted = _wanted_types(samples)
    by_key = {k.lower(): k for k in entries}
    by_short: dict[str, str] = {}
    for k, e in entries.items():
        if e.get("physics_short"):
            by_short.setdefault(str(e["physics_short"]).lower(), k)
    named: dict[str, set[str]] = {"data": set(), "mc": set()}
    unknown: list[str] = []
    for item in datasets or []:
        text = str(item).strip()
        key = by_key.get(text.lower()) or by_short.get(text.lower())
        if key is None:
            unknown.append(text)
            continue
        kind = "mc" if entry_is_mc(entries[key]) else "data"
        if kind not in wanted:
            raise DataAccessError(
                f"parsing_task_config.datasets names '{text}', which is {kind.upper()}, but "
                f"parsing_task_config.samples is '{samples}': set samples to '{kind}' or 'both', "
                "or remove it from datasets"
            )
        named[kind].add(key)
    whole = {kind for kind in wanted if not named[kind]}
    keys = [
        k
        for k, e in entries.items()
        if (kind := "mc" if entry_is_mc(e) else "data") in wanted
        and (kind in whole or k in named[kind])
    ]
    keys.sort(key=lambda k: _sort_key(k, entries[k]))
    return _Selection(keys, whole, named["data"] | named["mc"], unknown)


def _unknown_error(unknown: list[str], entries: dict[str, dict[str, Any]], release: str) -> str:
    import difflib

    names = list(entries) + [
        str(e["physics_short"]) for e in entries.values() if e.get("physics_short")
    ]
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hints.append(f"'{name}'" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return (
        f"parsing_task_config.datasets: {', '.join(hints)} not found in release {release}; "
        "use DSIDs or physics_short names of that release (atom.available_datasets())"
    )


def _require_xrootd() -> None:
    """root:// needs fsspec-xrootd (the 'xrootd' extra); say so before anything starts."""
    import importlib.util

    if (
        importlib.util.find_spec("fsspec_xrootd") is None
        or importlib.util.find_spec("XRootD") is None
    ):
        raise DataAccessError(
            "parsing_task_config.protocol is 'root' but XRootD support is not installed: "
            "pip install 'bumpnet-masses[xrootd]' (xrootd + fsspec-xrootd), or use protocol: https"
        )


def _https_fallback(url: str) -> str:
    """atlasopenmagic converts only ``root://eospublic.cern.ch:1094/``; handle the other forms."""
    m = re.match(r"^root://eospublic\.cern\.ch(?::\d+)?/+(eos/.*)$", url)
    return f"https://opendata.cern.ch/{m.group(1)}" if m else url


def _urls_for(key: str, skim: str, protocol: str) -> list[str]:
    import atlasopenmagic as atom

    urls = atom.get_urls(key, skim=skim, protocol=protocol, cache=False)
    urls = [strip_fsspec_chain(u) for u in urls]
    if protocol == "https":
        urls = [_https_fallback(u) if u.startswith("root://") else u for u in urls]
    return urls


def _atom_metadata(key: str, entry: dict[str, Any]) -> dict[str, Any]:
    """atlasopenmagic's ``get_metadata`` for a loaded key (no request), else the raw entry."""
    import atlasopenmagic as atom

    try:
        meta = atom.get_metadata(key)
    except ValueError:
        return entry
    return meta if isinstance(meta, dict) else entry


def _available_skims(entry: dict[str, Any]) -> list[str]:
    skims = ["noskim"] if entry.get("file_list") else []
    skims += [s.get("skim_type") for s in entry.get("skims") or [] if s.get("skim_type")]
    return sorted(skims)


# ------------------------------------------------------------------------------------------
# building the fileset from a release
# ------------------------------------------------------------------------------------------
def _norm(entry: dict[str, Any]) -> dict[str, Any]:
    is_mc = entry_is_mc(entry)
    return {
        "dsid": int(str(entry["dataset_number"]).strip()) if is_mc else None,
        "physics_short": entry.get("physics_short") if is_mc else None,
        "xsec": _float_or_none(entry.get("cross_section_pb")) if is_mc else None,
        "kfac": _float_or_none(entry.get("kFactor")) if is_mc else None,
        "filteff": _float_or_none(entry.get("genFiltEff")) if is_mc else None,
        "sumw": _float_or_none(entry.get("sumOfWeights")) if is_mc else None,
        "n_events": _int_or_none(entry.get("nEvents")),
    }


def _place_files(
    urls: list[str],
    parsing: ParsingConfig,
    offline: bool,
    cache_dir: Path,
    missing: list[str],
) -> dict[str, str]:
    """``{url: where to read it}``: the URL itself, or its download-cache copy."""
    if not parsing.download:
        return {u: u for u in urls}
    remote = [u for u in urls if is_remote(u) or u.startswith("file://")]
    placed = {u: u for u in urls if u not in set(remote)}
    if offline:
        for u in remote:
            target = cache_path(u, cache_dir)
            if target.is_file():
                placed[u] = str(target)
            else:
                missing.append(
                    f"{u}: not in the download cache ({target}); run once with network "
                    "access to download it"
                )
        return placed
    got = download_files(
        remote,
        cache_dir,
        parallel=parsing.download_parallel,
        timeout_s=parsing.network_timeout_s,
    )
    placed.update({u: str(p) for u, p in got.items()})
    return placed


def _from_release(
    parsing: ParsingConfig,
    *,
    run_dir: Path | None,
    offline: bool,
    max_files: int | None,
    cache_base: Path,
    tree_name: str | None,
    allow_missing: bool,
) -> FilesetPlan:
    release, skim, protocol = parsing.release, parsing.skim, parsing.protocol
    tree = tree_name or parsing.tree_name or RELEASE_TREES.get(release, "analysis")
    missing: list[str] = []

    meta: _Metadata | None = None
    sel: _Selection | None = None
    if run_dir is not None:
        meta = _load_run_cache(Path(run_dir), release)
        if meta is not None:
            sel = _select(meta.entries, parsing.samples, parsing.datasets)
            if sel.unknown or not sel.whole <= meta.complete:
                log.info("the run metadata cache does not cover this selection; not used")
                meta = sel = None
            else:
                _atom_load_entries(meta.entries, release)
    if meta is None:
        meta = load_release_metadata(
            release,
            offline=offline,
            expiry_hours=parsing.metadata_cache_expiry_hours,
            cache_base=cache_base,
            also_looked_in=[Path(run_dir) / RUN_CACHE_NAME] if run_dir is not None else [],
        )
        sel = _select(meta.entries, parsing.samples, parsing.datasets)
        if sel.unknown:
            raise DataAccessError(_unknown_error(sel.unknown, meta.entries, release))
    assert sel is not None
    log.info("metadata of %s from %s", release, meta.source)

    if protocol == "root":
        _require_xrootd()
    cache_dir = Path(parsing.cache_dir).expanduser() if parsing.cache_dir else cache_base / "files"
    per_dataset: list[tuple[str, dict[str, Any], list[str], int]] = []
    no_skim: list[str] = []
    for key in sel.keys:
        entry = meta.entries[key]
        if skim not in _available_skims(entry):
            if key in sel.named:
                raise DataAccessError(
                    f"dataset {key} of release {release} has no skim '{skim}' (it has "
                    f"{', '.join(_available_skims(entry)) or 'no files'}); choose one of those "
                    "in parsing_task_config.skim"
                )
            no_skim.append(key)
            continue
        try:
            urls = sorted(set(_urls_for(key, skim, protocol)))
        except ValueError as exc:
            raise DataAccessError(f"dataset {key} of release {release}: {exc}") from None
        chosen = urls[:max_files] if max_files else urls
        per_dataset.append((key, entry, chosen, len(urls)))
    if no_skim:
        log.warning(
            "%d dataset(s) of %s have no skim '%s' and are skipped: %s",
            len(no_skim),
            release,
            skim,
            ", ".join(no_skim[:10]) + (" ..." if len(no_skim) > 10 else ""),
        )
    if not per_dataset:
        skims = sorted({s for e in meta.entries.values() for s in _available_skims(e)})
        raise DataAccessError(
            f"release {release} has no {parsing.samples} files for skim '{skim}'"
            + (f" in datasets {parsing.datasets}" if parsing.datasets else "")
            + f"; available skims: {', '.join(skims) or 'none'} (parsing_task_config.skim)"
        )

    if run_dir is not None and not meta.source.startswith("run cache"):
        try:
            _write_run_cache(Path(run_dir), meta, sel.keys, sel.whole)
        except OSError as exc:
            log.warning("could not write %s: %s", Path(run_dir) / RUN_CACHE_NAME, exc)

    all_urls = [u for _, _, urls, _ in per_dataset for u in urls]
    placed = _place_files(all_urls, parsing, offline, cache_dir, missing)

    fileset: dict[str, dict[str, Any]] = {}
    infos: list[dict[str, Any]] = []
    for key, entry, urls, n_total in per_dataset:
        name = dataset_name(entry)
        files = {placed[u]: tree for u in urls if u in placed}
        norm = _norm(_atom_metadata(key, entry))
        is_mc = entry_is_mc(entry)
        note = ""
        if is_mc and (not norm["xsec"] or not norm["sumw"]):
            note = "metadata lacks cross_section_pb or sumOfWeights: MC weights must use the files' own"
            log.warning("%s: %s", name, note)
        if max_files and n_total > len(urls):
            note = (note + "; " if note else "") + f"first {len(urls)} of {n_total} files"
        info = {
            "name": name,
            "key": key,
            "is_mc": is_mc,
            "n_files": len(files),
            "n_files_total": n_total,
            "release": release,
            "skim": skim,
            "tree_name": tree,
            "source": "release",
            **norm,
            "note": note,
        }
        infos.append(info)
        if not files:
            continue
        fileset[name] = {"files": files, "metadata": _coffea_metadata(info)}
    return _finish(
        fileset, infos, missing, meta.source, offline, allow_missing, parsing.network_timeout_s
    )


def _coffea_metadata(info: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "is_mc",
        "release",
        "skim",
        "dsid",
        "physics_short",
        "xsec",
        "kfac",
        "filteff",
        "sumw",
        "n_events",
        "n_files",
        "n_files_total",
        "source",
        "tree_name",
        "norm_source",
    )
    meta = {k: info.get(k) for k in keys if k in info}
    meta["sample"] = "mc" if info["is_mc"] else "data"
    clash = COFFEA_RESERVED_KEYS & set(meta)
    assert not clash, clash
    return meta


def _finish(
    fileset: dict[str, dict[str, Any]],
    infos: list[dict[str, Any]],
    missing: list[str],
    source: str,
    offline: bool,
    allow_missing: bool,
    timeout_s: float,
) -> FilesetPlan:
    plan = FilesetPlan(
        fileset=fileset,
        datasets=infos,
        missing=missing,
        metadata_source=source,
        uproot_options=uproot_options(timeout_s),
    )
    if missing:
        for item in missing:
            log.warning("missing: %s", item)
        if not allow_missing or not fileset:
            shown = "; ".join(missing[:5]) + (
                f"; ... ({len(missing)} in all)" if len(missing) > 5 else ""
            )
            raise DataAccessError(
                ("offline: " if offline else "")
                + f"{len(missing)} file(s) are not available: {shown}"
            )
    for line in plan.summary_lines():
        log.info("%s", line)
    return plan


# ------------------------------------------------------------------------------------------
# building the fileset from inputs (paths, globs, URLs)
# ------------------------------------------------------------------------------------------
_MC_NAME_RE = re.compile(
    r"(?:^|_)mc_(?P<dsid>\d{6,8})\.(?P<short>[^.]+)(?:\.(?P<skim>[^.]+))?\.root$"
)
_DATA_NAME_RE = re.compile(
    r"(?:^|_)(?:data(?P<year>\d\d)_(?P<period>[A-Za-z0-9]+)|data_(?P<letter>[A-Za-z0-9]+))"
    r"(?:\.(?P<skim>[^.]+))?\.root$"
)
_DATA_2016E_RE = re.compile(r"^Data[A-Z][A-Za-z]*\.root$")
_PHYSLITE_MC_DIR_RE = re.compile(r"^mc\d\d_13p?\d?TeV\.(?P<dsid>\d{6})\.(?P<short>[^.]+)\.")
_PHYSLITE_DATA_DIR_RE = re.compile(r"^data\d\d_13p?\d?TeV\.")
_GLOB_CHARS = set("*?[")


def _classify(path_or_url: str) -> dict[str, Any]:
    """What a file name says: ``{"kind": "data"|"mc"|None, "dsid", "short", "skim"}``."""
    if is_remote(path_or_url) or path_or_url.startswith("file://"):
        parts = [p for p in unquote(urlsplit(strip_fsspec_chain(path_or_url)).path).split("/") if p]
    else:
        parts = list(Path(path_or_url).parts)
    base = parts[-1] if parts else path_or_url
    m = _MC_NAME_RE.search(base)
    if m:
        return {"kind": "mc", "dsid": int(m["dsid"]), "short": m["short"], "skim": m["skim"]}
    m = _DATA_NAME_RE.search(base)
    if m or _DATA_2016E_RE.match(base):
        return {"kind": "data", "dsid": None, "short": None, "skim": m["skim"] if m else None}
    for part in reversed(parts[:-1]):  # PHYSLITE: the rucio dataset directory tells
        m = _PHYSLITE_MC_DIR_RE.match(part)
        if m:
            return {"kind": "mc", "dsid": int(m["dsid"]), "short": m["short"], "skim": None}
        if _PHYSLITE_DATA_DIR_RE.match(part):
            return {"kind": "data", "dsid": None, "short": None, "skim": None}
    return {"kind": None, "dsid": None, "short": None, "skim": None}


def _expand_inputs(items: list[str]) -> list[str]:
    """Files and URLs from paths, directories, globs and URLs (each glob sorted)."""
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if is_remote(text):
            if _GLOB_CHARS & set(urlsplit(text).path):
                raise DataAccessError(
                    f"input '{text}': wildcards are not supported in URLs; list the files"
                )
            out.append(text)
            continue
        if text.startswith("file://"):
            text = unquote(urlsplit(text).path)
        path = os.path.expanduser(text)
        if _GLOB_CHARS & set(path):
            matches = sorted(p for p in globmod.glob(path, recursive=True) if Path(p).is_file())
            if not matches:
                raise DataAccessError(
                    f"input glob '{text}' matches no files; check the directory and pattern "
                    "(quote it so that the shell does not expand it)"
                )
            out.extend(matches)
        elif Path(path).is_dir():
            found = sorted(str(p) for p in Path(path).rglob("*") if _ROOT_FILE_RE.search(p.name))
            if not found:
                raise DataAccessError(f"input directory '{text}' contains no .root files")
            out.extend(found)
        elif Path(path).is_file():
            out.append(path)
        else:
            raise DataAccessError(
                f"input '{text}' does not exist; check the path (relative paths are relative "
                f"to {Path.cwd()})"
            )
    seen: set[str] = set()
    return [x for x in out if not (x in seen or seen.add(x))]


def detect_tree(path: str, override: str | None = None) -> str:
    """The event tree of a local ROOT file: ``override`` if given (checked), else the first of
    analysis / mini / CollectionTree it contains."""
    import uproot

    try:
        with uproot.open(path) as fh:
            classes = {k.split(";")[0]: v for k, v in fh.classnames().items()}
    except Exception as exc:
        raise DataAccessError(
            f"cannot open input '{path}' as a ROOT file ({type(exc).__name__}: {exc}); "
            "remove it from the inputs"
        ) from None
    trees = [k for k, v in classes.items() if v.startswith("TTree") or v == "ROOT::RNTuple"]
    if override:
        if override not in classes:
            raise DataAccessError(
                f"input '{path}' has no tree '{override}' (it has {', '.join(trees) or 'none'}); "
                "fix parsing_task_config.tree_name / --tree-name"
            )
        return override
    for name in TREE_CANDIDATES:
        if name in trees:
            return name
    raise DataAccessError(
        f"input '{path}' has none of the trees {', '.join(TREE_CANDIDATES)} (it has "
        f"{', '.join(trees) or 'none'}); set parsing_task_config.tree_name"
    )


def _cached_entries(release: str, cache_base: Path) -> dict[str, dict[str, Any]]:
    """Canonical entries of the user metadata cache, if one exists (never calls the API)."""
    path = user_metadata_path(release, cache_base)
    if not path.is_file():
        return {}
    try:
        return _canonical(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _from_inputs(
    items: list[str],
    parsing: ParsingConfig,
    *,
    offline: bool,
    max_files: int | None,
    cache_base: Path,
    tree_name: str | None,
    allow_missing: bool,
) -> FilesetPlan:
    files = _expand_inputs(items)
    if not files:
        raise DataAccessError("no input files given")
    override = tree_name or parsing.tree_name
    missing: list[str] = []
    cache_dir = Path(parsing.cache_dir).expanduser() if parsing.cache_dir else cache_base / "files"
    placed = _place_files(files, parsing, offline, cache_dir, missing)

    groups: dict[str, dict[str, Any]] = {}
    for f in files:
        cls = _classify(f)
        if cls["kind"] == "mc":
            name = _sanitize(f"mc_{cls['dsid']}_{cls['short']}")
        elif cls["kind"] == "data":
            name = "data"
        else:
            if is_remote(f):
                parent = unquote(urlsplit(f).path).rstrip("/").rsplit("/", 2)[-2:-1]
                dirname = (parent[0] if parent else "") or "inputs"
            else:
                dirname = Path(f).resolve().parent.name or "inputs"
            name = _sanitize(dirname)
            if name == "data" or name.startswith("mc_"):
                name = f"inputs_{name}"
        group = groups.setdefault(name, {"cls": cls, "files": []})
        group["files"].append(f)

    fileset: dict[str, dict[str, Any]] = {}
    infos: list[dict[str, Any]] = []
    norm_cache: dict[str, dict[str, dict[str, Any]]] = {}
    for name in sorted(groups, key=lambda n: (n != "data", n)):
        group = groups[name]
        cls = group["cls"]
        chosen_src = sorted(group["files"])
        n_total = len(chosen_src)
        if max_files:
            chosen_src = chosen_src[:max_files]
        file_map: dict[str, str] = {}
        for src in chosen_src:
            where = placed.get(src)
            if where is None:
                continue
            if is_remote(where):
                tree = override or RELEASE_TREES.get(parsing.release, "analysis")
                log.info(
                    "input %s is remote: assuming tree '%s' (set parsing_task_config.tree_name "
                    "to change it)",
                    where,
                    tree,
                )
            else:
                try:
                    tree = detect_tree(where, override)
                except DataAccessError as exc:
                    # unreadable or treeless: keep it; the runner's pre-flight reports it per
                    # file (skipped with skipbadfiles, else the run stops naming it)
                    log.debug("%s", exc)
                    tree = override or RELEASE_TREES.get(parsing.release, "analysis")
            file_map[where] = tree
        trees = sorted(set(file_map.values()))
        tree = trees[0] if len(trees) == 1 else ",".join(trees)
        release = release_for_tree(trees[0], parsing.release) if trees else parsing.release
        is_mc = cls["kind"] == "mc"
        info: dict[str, Any] = {
            "name": name,
            "key": name,
            "is_mc": is_mc,
            "n_files": len(file_map),
            "n_files_total": n_total,
            "release": release,
            "skim": cls.get("skim"),
            "tree_name": tree,
            "source": "inputs",
            "dsid": cls["dsid"],
            "physics_short": cls["short"],
            "xsec": None,
            "kfac": None,
            "filteff": None,
            "sumw": None,
            "n_events": None,
            "norm_source": "file" if is_mc else None,
            "note": "",
        }
        if cls["kind"] is None:
            info["note"] = (
                "file names do not say data or MC: treated as data (weight 1); name files like "
                "the releases (data_*/mc_<DSID>.*) to change that"
            )
            log.warning("inputs %s: %s", name, info["note"])
        elif is_mc:
            if release not in norm_cache:
                norm_cache[release] = _cached_entries(release, cache_base)
            entry = norm_cache[release].get(str(cls["dsid"]))
            if entry is not None:
                norm = _norm(entry)
                info.update({k: norm[k] for k in ("xsec", "kfac", "filteff", "sumw", "n_events")})
                info["physics_short"] = norm["physics_short"] or info["physics_short"]
                info["norm_source"] = "metadata cache"
            else:
                info["note"] = "normalisation from the files' own branches (no cached metadata)"
        if max_files and n_total > len(chosen_src):
            info["note"] = (info["note"] + "; " if info["note"] else "") + (
                f"first {len(chosen_src)} of {n_total} files"
            )
        infos.append(info)
        if file_map:
            fileset[name] = {"files": file_map, "metadata": _coffea_metadata(info)}
    return _finish(
        fileset, infos, missing, "inputs", offline, allow_missing, parsing.network_timeout_s
    )


# ------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------
def build_fileset(
    parsing: ParsingConfig,
    *,
    inputs: list[str] | None = None,
    run_dir: Path | None = None,
    offline: bool | None = None,
    max_files: int | None = None,
    user_cache_dir: Path | None = None,
    tree_name: str | None = None,
    allow_missing: bool = False,
) -> FilesetPlan:
    """The coffea fileset for a configuration, with dataset descriptions.

    Args:
        parsing: the ``parsing_task_config`` section.
        inputs: files / globs / directories / URLs (the CLI's ``--input``); overrides
            ``parsing.inputs``; when given (or set in the config) the release is not listed.
        run_dir: run directory; its ``metadata_cache.json`` is read and written.
        offline: never call the API (None: ``parsing.offline``).
        max_files: files per dataset, the first N of the sorted list (None:
            ``parsing.max_files_to_process``).
        user_cache_dir: base of the user-level caches (None: :func:`user_cache_dir`).
        tree_name: tree name override (None: ``parsing.tree_name``, else per release/file).
        allow_missing: with missing files (offline download cache), return them in
            ``FilesetPlan.missing`` instead of raising (a dry run's view).

    Raises:
        DataAccessError: a missing input, an unknown dataset or skim, an unreachable API or
            server, an empty offline cache -- one line naming the thing and the fix.
    """
    offline = parsing.offline if offline is None else offline
    max_files = parsing.max_files_to_process if max_files is None else max_files
    cache_base = Path(user_cache_dir).expanduser() if user_cache_dir else _default_user_cache_dir()
    items = inputs if inputs is not None else parsing.inputs
    if items:
        return _from_inputs(
            list(items),
            parsing,
            offline=offline,
            max_files=max_files,
            cache_base=cache_base,
            tree_name=tree_name,
            allow_missing=allow_missing,
        )
    return _from_release(
        parsing,
        run_dir=run_dir,
        offline=offline,
        max_files=max_files,
        cache_base=cache_base,
        tree_name=tree_name,
        allow_missing=allow_missing,
    )
