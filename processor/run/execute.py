"""The run itself: pre-flight, coffea processing, accumulation, post-processing and outputs."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
import time
import uuid
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
from coffea import processor
from coffea.nanoevents import BaseSchema
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from processor.config import Config
from processor.errors import InputError  # noqa: F401  (re-exported)
from processor.fsutil import atomic_path, storage_error
from processor.opendata.download import coffea_runner_options
from processor.opendata.preflight import FileReport, inspect_file
from processor.opendata.retrying import with_io_retries
from processor.physics.accumulator import empty_output
from processor.run import coffea_compat
from processor.run.mass_processor import MassProcessor
from processor.run.open_files import REUSE_OPTION, release_open_files
from processor.run.stall import StallWatchdog

log = logging.getLogger(__name__)


#: source files whose code shapes a chunk's output (part of every checkpoint key)
_CODE_FILES = (
    "physics/*.py",
    "opendata/formats.py",
    "opendata/weights.py",
    "run/mass_processor.py",
)


@functools.cache
def code_version() -> str:
    """SHA-256 of the code that fills a chunk's histograms plus the versions of the libraries
    that read the files; a checkpoint written by other code is never reused."""
    import awkward
    import coffea
    import uproot

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(f"{coffea.__version__} {uproot.__version__} {awkward.__version__}".encode())
    for pattern in _CODE_FILES:
        for f in sorted(root.glob(pattern)):
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def checkpoint_key(config: Config) -> str:
    """Directory name of a run's checkpoints: the physics-config digest and the code version."""
    return f"cfg-{config.physics_digest()[:16]}_code-{code_version()[:12]}"


class AtomicCheckpointer(processor.SimpleCheckpointer):
    """coffea's per-chunk checkpointer, but written atomically and never for failed chunks.

    Paths carry a digest of the chunk's dataset metadata (e.g. cross-sections) next to the entry
    range; the caller keys the directory by config digest and code version (:func:`checkpoint_key`).
    A failed write raises :class:`StorageError` (not an OSError, so skipbadfiles cannot take it
    for a bad input).
    """

    def filepath(self, metadata: Any, processor_instance: Any) -> str:
        """``<dir>/<dataset>/<fileuuid>/<tree>/<start>-<stop>_<metadata digest>.coffea``."""
        del processor_instance
        meta = {k: v for k, v in metadata.items() if k not in ("entrystart", "entrystop")}
        tag = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()
        path = Path(self.checkpoint_dir) / str(metadata["dataset"]) / str(metadata["fileuuid"])
        path /= str(metadata["treename"])
        return str(path / f"{metadata['entrystart']}-{metadata['entrystop']}_{tag[:12]}.coffea")

    def save(self, output: Any, metadata: Any, processor_instance: Any) -> None:
        """Store one chunk's output via a temporary file and a rename."""
        inner = output.get("out", output) if isinstance(output, dict) else None
        if isinstance(inner, dict) and inner.get("failures"):
            return None
        path = Path(self.filepath(metadata, processor_instance))
        error: OSError | None = None
        try:
            import lz4.frame

            # no fsync per chunk: a checkpoint lost in a crash is recomputed by --resume
            with atomic_path(path, fsync=False) as tmp, lz4.frame.open(tmp, "wb") as fout:
                cloudpickle.dump(output, fout)
        except OSError as exc:  # any other write failure counts as storage too (never an input)
            error = exc
        if error is not None:  # raised outside the except block: no OSError in the chain
            raise storage_error(path, error)
        return None


@dataclass
class ProcessingResult:
    """Accumulated output plus everything the manifest reports about the processing.

    A merge of finished runs has no pre-flight reports; it carries the inputs and failures its
    sources recorded instead (``recorded_inputs``, ``recorded_failures``).
    """

    out: dict[str, Any]
    reports: list[FileReport]
    metrics: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    #: executor.maxchunks set: files are read only partly on purpose, not a failure
    limited: bool = False
    recorded_inputs: list[dict[str, Any]] | None = None
    recorded_failures: list[dict[str, str]] | None = None

    @property
    def failures(self) -> list[dict[str, str]]:
        """Failed files and chunks, each with its reason."""
        if self.recorded_failures is not None:
            return list(self.recorded_failures)
        fails = [
            {"file": r.file, "chunk": "all", "reason": r.error} for r in self.reports if not r.ok
        ]
        for fname, chunks in self.out.get("failures", {}).items():
            for chunk, reason in chunks.items():
                fails.append({"file": fname, "chunk": chunk, "reason": reason})
        processed = self.out.get("files", {})
        failed_files = {f["file"] for f in fails}
        for r in self.reports:
            if self.limited:
                break
            if r.ok and r.file not in failed_files and processed.get(r.file, 0) != r.entries:
                fails.append(
                    {
                        "file": r.file,
                        "chunk": "?",
                        "reason": f"{processed.get(r.file, 0)} of {r.entries} entries processed",
                    }
                )
        return fails

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """One manifest row per input file: entries expected and processed, status, error."""
        if self.recorded_inputs is not None:
            return list(self.recorded_inputs)
        processed = self.out.get("files", {})
        failed = {f["file"]: f["reason"] for f in self.failures}
        return [
            {
                "file": r.file,
                "dataset": r.dataset,
                "tree": r.tree,
                "format": r.format,
                "entries_expected": r.entries,
                "entries_processed": int(processed.get(r.file, 0)),
                "status": "failed" if r.file in failed else "ok",
                "error": failed.get(r.file),
                "uuid": r.uuid,
            }
            for r in self.reports
        ]


def preflight(
    fileset: Mapping[str, Any],
    config: Config,
    *,
    client: Any = None,
    uproot_options: dict[str, Any] | None = None,
) -> list[FileReport]:
    """Open every input once (on the Dask workers when a client is given) and check it."""
    jobs = []
    for dataset, spec in fileset.items():
        is_mc = bool(spec.get("metadata", {}).get("is_mc", False))
        for path, tree in spec["files"].items():
            jobs.append((path, dataset, tree, config, is_mc, uproot_options))
    if not jobs:
        return []
    with Progress(
        TextColumn("Checking inputs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("inputs", total=len(jobs))
        if client is not None:
            from distributed import as_completed

            futures = [client.submit(inspect_file, *job, pure=False) for job in jobs]
            order = {f.key: i for i, f in enumerate(futures)}
            reports: list[Any] = [None] * len(jobs)
            for fut in as_completed(futures):
                reports[order[fut.key]] = fut.result()
                bar.advance(task)
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
                reports = []
                for rep in pool.map(lambda job: inspect_file(*job), jobs):
                    reports.append(rep)
                    bar.advance(task)
    return reports


def usable_fileset(
    fileset: Mapping[str, Any], reports: list[FileReport], skipbadfiles: bool
) -> dict[str, Any]:
    """The fileset without failed or empty files; the first failure raises if not skipping."""
    bad = [r for r in reports if not r.ok]
    if bad and not skipbadfiles:
        raise InputError(bad[0].error + " (or set executor.skipbadfiles: true to go on without it)")
    for r in bad:
        log.error("skipping input: %s", r.error)
    good = {(r.dataset, r.file): r for r in reports if r.ok and r.entries}
    out: dict[str, Any] = {}
    for dataset, spec in fileset.items():
        files = {p: good[(dataset, p)].tree for p in spec["files"] if (dataset, p) in good}
        if files:
            out[dataset] = {"files": files, "metadata": dict(spec.get("metadata", {}))}
    return out


def make_executor(kind: str, config: Config, client: Any = None, status: bool = True) -> Any:
    """A coffea executor: 'dask' (needs a client), 'futures' or 'iterative'."""
    ex = config.executor
    if kind == "dask":
        return processor.DaskExecutor(
            client=client, status=status, retries=ex.retries, treereduction=ex.treereduction
        )
    if kind == "futures":
        return processor.FuturesExecutor(workers=2, status=status)
    return processor.IterativeExecutor(status=status)


def coffea_metadata(
    fileset: Mapping[str, Any], reports: list[FileReport], align_clusters: bool
) -> dict[Any, dict[str, Any]]:
    """coffea's per-file metadata (entries, UUID, clusters) from the pre-flight reports.

    Given to the Runner as its ``metadata_cache``, it spares coffea's pre-processing, which
    would open every file and read its tree header once more (about 0.1 s for a 2025e tree
    and 2 s for a PHYSLITE one). Each value carries the dataset's own metadata as well, as
    coffea's pre-processing would. Files the reports do not fully describe are left out, and
    coffea pre-processes those itself.
    """
    known = {(r.dataset, r.file): r for r in reports if r.ok and r.entries and r.uuid}
    out: dict[Any, dict[str, Any]] = {}
    for dataset, spec in fileset.items():
        user = dict(spec.get("metadata") or {})
        for path, tree in spec["files"].items():
            rep = known.get((dataset, path))
            if rep is None or rep.tree != tree or (align_clusters and rep.clusters is None):
                continue
            meta = {**user, "numentries": rep.entries, "uuid": uuid.UUID(rep.uuid).bytes}
            if align_clusters:
                meta["clusters"] = list(rep.clusters)
            out[processor.executor.FileMeta(dataset, path, tree)] = meta
    return out


def run_processing(
    fileset: Mapping[str, Any],
    config: Config,
    executor: Any,
    *,
    skipbadfiles: bool,
    checkpoint_dir: Path | None = None,
    uproot_options: dict[str, Any] | None = None,
    reports: list[FileReport] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the processor over a (pre-flighted) fileset; return the accumulator and coffea metrics.

    The streaming timeout reaches coffea as ``xrootdtimeout`` (see ``coffea_runner_options``).
    With the pre-flight ``reports``, coffea does not open the files again to learn their
    entries (:func:`coffea_metadata`).
    """
    ex = config.executor
    runner_kw, options = coffea_runner_options(uproot_options)
    runner = processor.Runner(
        executor=executor,
        schema=BaseSchema,
        chunksize=ex.chunksize,
        maxchunks=ex.maxchunks,
        skipbadfiles=(OSError,) if skipbadfiles else False,
        align_clusters=ex.align_clusters,
        savemetrics=True,
        metadata_cache=coffea_metadata(fileset, reports or [], ex.align_clusters),
        **runner_kw,
        checkpointer=(
            AtomicCheckpointer(str(Path(checkpoint_dir) / checkpoint_key(config)))
            if checkpoint_dir
            else None
        ),
    )
    if not fileset:
        return empty_output(), {}
    with warnings.catch_warnings():
        # PHYSLITE holds many branches BaseSchema cannot represent; we never read them
        warnings.filterwarnings("ignore", message="Skipping .* as it is")
        out, metrics = runner(
            dict(fileset),
            processor_instance=MassProcessor(config, skip_bad_chunks=skipbadfiles),
            treename=None,
            uproot_options=options,
        )
    return out, metrics


def process_and_accumulate(
    fileset: Mapping[str, Any],
    config: Config,
    executor: Any,
    *,
    client: Any = None,
    skipbadfiles: bool,
    checkpoint_dir: Path | None = None,
    uproot_options: dict[str, Any] | None = None,
    memory_key: str = "cluster.local.memory_limit",
) -> ProcessingResult:
    """Pre-flight, then process; the ProcessingResult accounts for every input file.

    On a Dask cluster a :class:`~processor.run.stall.StallWatchdog` turns a stall (workers
    paused or gone, nothing finishing) into a StallError naming ``memory_key``."""
    start = time.perf_counter()
    uproot_options = with_io_retries(
        uproot_options, config.executor.io_retries, config.executor.io_retry_backoff_s
    )
    if client is not None:
        coffea_compat.register_on(client)
    with StallWatchdog(client, config.executor.stall_timeout_s, memory_key):
        reports = preflight(fileset, config, client=client, uproot_options=uproot_options)
        usable = usable_fileset(fileset, reports, skipbadfiles)
        n_events = sum(r.entries or 0 for r in reports if r.ok)
        n_files = sum(len(d["files"]) for d in usable.values())
        log.info("processing %d events in %d files", n_events, n_files)
        try:
            out, metrics = run_processing(
                usable,
                config,
                executor,
                skipbadfiles=skipbadfiles,
                checkpoint_dir=checkpoint_dir,
                # one open per file and worker thread (processor.run.open_files)
                uproot_options={**uproot_options, REUSE_OPTION: True},
                reports=reports,
            )
        finally:
            close_reused_files(client)
    for key, value in empty_output().items():
        out.setdefault(key, value)
    return ProcessingResult(
        out,
        reports,
        dict(metrics or {}),
        time.perf_counter() - start,
        limited=config.executor.maxchunks is not None,
    )


def close_reused_files(client: Any = None) -> None:
    """Close the input files kept open across chunks, here and on the Dask workers."""
    release_open_files()
    if client is not None:
        try:
            client.run(release_open_files)
        except Exception as exc:  # a worker gone: its files went with it
            log.debug("closing reused input files on the workers: %s", exc)


def process(
    fileset: Mapping[str, Any],
    config: Config,
    *,
    client: Any = None,
    executor: str | None = None,
    skipbadfiles: bool = False,
    uproot_options: dict[str, Any] | None = None,
    checkpoint_dir: Path | None = None,
    status: bool = True,
) -> ProcessingResult:
    """Process a coffea fileset with the MassProcessor: on a Dask cluster when ``client`` is
    given, else in this process (``executor``: "iterative" (default) or "futures").

    Every input is checked first; the result accounts for every file (``result.failures``).
    """
    kind = executor or ("dask" if client is not None else "iterative")
    return process_and_accumulate(
        fileset,
        config,
        make_executor(kind, config, client, status=status),
        client=client,
        skipbadfiles=skipbadfiles,
        checkpoint_dir=checkpoint_dir,
        uproot_options=uproot_options,
    )
