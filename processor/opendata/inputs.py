"""Filesets from local files, globs, directories or URLs (``--input``), grouped into datasets."""

from __future__ import annotations

import glob as globmod
import json
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from processor.config import ParsingConfig
from processor.opendata.download import (
    DataAccessError,
    is_remote,
    strip_fsspec_chain,
)
from processor.opendata.fileset import (
    RELEASE_TREES,
    FilesetPlan,
    _coffea_metadata,
    _finish,
    _norm,
    _place_files,
)
from processor.opendata.metadata import (
    _canonical,
    _sanitize,
    legacy_metadata_path,
    user_metadata_path,
)
from processor.opendata.releases import TREE_CANDIDATES, release_for_tree

log = logging.getLogger(__name__)

_ROOT_FILE_RE = re.compile(r"\.root(\.\d+)?$")

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
    """Files and URLs from paths, directories, globs and URLs (each glob sorted); local files
    as absolute paths."""
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
            out.extend(os.path.abspath(p) for p in matches)
        elif Path(path).is_dir():
            found = sorted(
                os.path.abspath(p) for p in Path(path).rglob("*") if _ROOT_FILE_RE.search(p.name)
            )
            if not found:
                raise DataAccessError(f"input directory '{text}' contains no .root files")
            out.extend(found)
        elif Path(path).is_file():
            # absolute: fileset.json and the manifest must name the file from any directory
            # (a --resume or --merge-only started elsewhere)
            out.append(os.path.abspath(path))
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
    """Canonical entries of the user metadata cache, if one exists (never calls the API).

    The shared atlasopenmagic cache first, then our legacy location (not yet migrated).
    """
    try:
        paths = [user_metadata_path(release), legacy_metadata_path(release, cache_base)]
    except DataAccessError:  # not a release name atlasopenmagic could cache
        return {}
    for path in paths:
        if not path.is_file():
            continue
        try:
            return _canonical(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
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
