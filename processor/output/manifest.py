"""manifest.json: its shape (pydantic models), how a run's manifest is built, and how it is read.

This module is the one place that knows the manifest's keys; the runner, the plots, merges and
``--resume`` go through :func:`build_manifest` and :func:`read_manifest`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from processor.errors import RunDirError
from processor.fsutil import atomic_write_json
from processor.output.postprocess import PostProcessResult
from processor.output.readiness import group_readiness

MANIFEST_NAME = "manifest.json"

log = logging.getLogger(__name__)


class _Open(BaseModel):
    """A record that may carry more keys than the ones listed (newer writers add some)."""

    model_config = ConfigDict(extra="allow")


class SpectrumRecord(_Open):
    """One post-processed spectrum of a sample group."""

    roi_name: str | None
    outlier_name: str | None
    has_outliers: bool
    fs: str
    combo: str
    lo: float | None
    split: float | None
    hi: float | None
    n_bins: int
    entries: float
    removed: dict[str, float]
    rejected: list[str]
    #: in the BumpNet file (has a ROI histogram and is not blacklisted)
    written: bool = True
    blacklisted: bool = False
    #: BumpNet's loader, emulated: accepted, loader_name, bins/entries_after_trim, codes
    bumpnet: dict[str, Any] | None = None


class GroupRecord(_Open):
    """The BumpNet file of one sample group ("data" or "mc") and its spectra."""

    spectra: list[SpectrumRecord]
    n_written: int
    n_bumpnet_ready: int
    dropped_final_states: dict[str, float]
    collisions: list[list[str]]
    overflow: dict[str, float]
    file: str | None = None
    #: views written per spectrum (raw, rebinned, ROI)
    views: list[str] | None = None
    #: ROI names of blacklisted spectra (not written)
    blacklisted: list[str] = []
    #: spectra per reason code BumpNet's loader would skip them for
    rejection_counts: dict[str, int] = {}
    #: MC by process: writer, components, bumpnet_sm, bumpnet_bsm
    mc_by_process: dict[str, Any] | None = None


class ProcessingRecord(_Open):
    """How the processing went (other tooling reads events, events_per_s, accumulator_bytes)."""

    wall_time_s: float
    events: int
    events_per_s: float | None
    bytes_read: int
    chunks: int
    n_files: int
    n_failed_files: int
    n_failed_chunks: int
    accumulator_bytes: int


class Manifest(_Open):
    """The whole manifest.json of a run directory."""

    finished: str
    status: str  #: "ok" | "partial"
    software: dict[str, str]
    config_sha256: str
    release: str | None
    sqrt_s_tev: float
    luminosity_fb: float | None
    datasets: list[dict[str, Any]]
    inputs: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    cutflow: dict[str, dict[str, int]]
    cutflow_total: dict[str, int]
    final_states: dict[str, dict[str, dict[str, Any]]]
    histograms: dict[str, GroupRecord]
    raw_file: str
    formats: dict[str, Any]  #: format name -> events (per the processor)
    coffea_metrics: dict[str, Any]
    processing: ProcessingRecord
    fine_grid: dict[str, float]
    #: histogram_creation_task_config.naming (bumpnet | seed)
    naming: str | None = None
    #: the configured blacklist and the entries that matched nothing
    blacklist: dict[str, list[str]] | None = None
    #: BumpNet's loader cuts the readiness verdicts used
    bumpnet_cuts: dict[str, float] | None = None


def group_record(result: PostProcessResult) -> dict[str, Any]:
    """The manifest entry of one sample group's post-processing result."""
    return {
        **group_readiness(result),
        "dropped_final_states": result.dropped_fs,
        "overflow": result.overflow,
    }


def jsonable_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """coffea's metrics with sets/lists sorted into lists and anything else as a string."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, set | frozenset | list | tuple):
            out[k] = sorted(str(x) for x in v)
        elif isinstance(v, int | float | str) or v is None:
            out[k] = v
        else:
            out[k] = str(v)
    return out


def build_manifest(**fields: Any) -> dict[str, Any]:
    """A manifest from its fields (checked against :class:`Manifest`), ``finished`` = now."""
    fields.setdefault("finished", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    Manifest.model_validate(fields)
    return fields


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``run_dir/manifest.json`` atomically."""
    path = Path(run_dir) / MANIFEST_NAME
    atomic_write_json(path, dict(manifest))
    return path


class ManifestMissingError(RunDirError, FileNotFoundError):
    """A directory has no manifest.json (not a finished run)."""


def read_manifest(run_dir: str | Path, *, check: bool = True) -> dict[str, Any]:
    """A finished run's ``manifest.json``; missing or (with ``check``) malformed: RunDirError."""
    path = Path(run_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestMissingError(
            f"{path}: no manifest.json; is {run_dir} a finished run directory? "
            "(an interrupted run continues with --resume)"
        )
    try:
        data = json.loads(path.read_text())
        if check:
            Manifest.model_validate(data)
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise RunDirError(f"{path}: not a valid manifest ({first}); rerun the run") from exc
    return data


def raw_file_path(run_dir: str | Path, manifest: Mapping[str, Any]) -> Path:
    """The run's fine-grid ROOT file: the manifest's ``raw_file``, else the run's config.yaml's
    ``raw_output_file``, else the default name."""
    run_dir = Path(run_dir)
    if manifest.get("raw_file"):
        return run_dir / manifest["raw_file"]
    name = "raw_histograms.root"
    if (run_dir / "config.yaml").is_file():
        from processor.config import load_config

        try:
            name = load_config(
                run_dir / "config.yaml"
            ).histogram_creation_task_config.raw_output_file
        except Exception as exc:  # a broken config must not stop the plots
            log.debug("no raw_output_file from %s: %s", run_dir / "config.yaml", exc)
    return run_dir / "histograms" / name
