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
2. ``$XDG_CACHE_HOME/atlasopenmagic/metadata-<release>.json``: the whole release in
   atlasopenmagic's ``save_metadata`` format, shared with atlasopenmagic's ``atom`` command
   (``atom --release R metadata skims`` fills it; its mtime is its age). It expires after
   ``metadata_cache_expiry_hours`` (default 168 h = atom's 7 days); an expired cache is still
   used, with a warning, when the API cannot be reached, and always in offline mode. Our old
   ``<cache_root>/metadata/<release>.json`` is moved there on first use.

All cache writes go to a temporary file that is renamed into place.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processor.config import ParsingConfig
from processor.opendata.download import (
    DataAccessError,
    cache_path,
    download_files,
    is_remote,
    strip_fsspec_chain,
    uproot_options,
)
from processor.opendata.metadata import (
    RUN_CACHE_NAME,
    _atom_load_entries,
    _default_user_cache_dir,
    _float_or_none,
    _int_or_none,
    _load_run_cache,
    _Metadata,
    _write_run_cache,
    dataset_name,
    entry_is_mc,
    load_release_metadata,
    user_cache_dir,
    user_metadata_path,
)
from processor.opendata.releases import RELEASES

__all__ = [
    "DataAccessError",
    "FilesetPlan",
    "RELEASE_TREES",
    "build_fileset",
    "dataset_name",
    "load_release_metadata",
    "resolve_protocol",
    "uproot_options",
    "user_cache_dir",
    "user_metadata_path",
    "xrootd_available",
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


def xrootd_available() -> bool:
    """Whether the 'xrootd' extra is importable (``fsspec_xrootd`` and the ``XRootD`` bindings)."""
    try:
        import fsspec_xrootd  # noqa: F401
        from XRootD import client  # noqa: F401
    except Exception:  # ImportError, or a broken binary module (OSError, ...)
        return False
    return True


def resolve_protocol(protocol: str) -> str:
    """``parsing_task_config.protocol`` -> the one used: ``auto`` is ``root`` when the 'xrootd'
    extra imports (:func:`xrootd_available`), else ``https``; ``root``/``https`` unchanged."""
    if protocol != "auto":
        return protocol
    return "root" if xrootd_available() else "https"


def _require_xrootd() -> None:
    """root:// needs fsspec-xrootd (the 'xrootd' extra); say so before anything starts."""
    if not xrootd_available():
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
    release, skim = parsing.release, parsing.skim
    protocol = resolve_protocol(parsing.protocol)
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

    if parsing.protocol == "auto":
        log.info(
            "protocol auto: %s",
            "root (XRootD; the 'xrootd' extra is installed)"
            if protocol == "root"
            else "https (pip install 'bumpnet-masses[xrootd]' for XRootD)",
        )
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
    from processor.opendata.inputs import _from_inputs  # it builds on this module's helpers

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
