"""The run itself: pre-flight, coffea processing, accumulation, post-processing and outputs."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
from coffea import processor
from coffea.nanoevents import BaseSchema
from coffea.processor import accumulate
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .analysis import CUTFLOW_STEPS
from .config import Config
from .histograms import MassGrid, accumulator_size
from .inputs import FileReport, inspect_file
from .mass_processor import MassProcessor
from .naming import strip_view
from .output import read_raw_file, write_bumpnet_file, write_raw_file
from .postprocess import PostProcessResult, blacklist_matcher, postprocess
from .readiness import bumpnet_classes, readiness_rows, reason_counts
from .rundir import read_json, software_versions, write_json

log = logging.getLogger(__name__)

RELEASE_INFO = {  # sqrt(s) in TeV, luminosity in fb^-1
    "2025e-13tev-beta": (13.0, 36.6),
    "2020e-13tev": (13.0, 10.0),
    "2024r-pp": (13.0, 36.6),
    "2016e-8tev": (8.0, 1.0),
}


class InputError(RuntimeError):
    """An input file cannot be used and skipbadfiles is off (one line, names the file)."""


class AtomicCheckpointer(processor.SimpleCheckpointer):
    """coffea's per-chunk checkpointer, but written atomically and never for failed chunks."""

    def save(self, output: Any, metadata: Any, processor_instance: Any) -> None:
        """Store one chunk's output via a temporary file and a rename."""
        if isinstance(output, dict) and output.get("failures"):
            return None
        path = Path(self.filepath(metadata, processor_instance))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        import lz4.frame

        with lz4.frame.open(tmp, "wb") as fout:
            cloudpickle.dump(output, fout)
        os.replace(tmp, path)
        return None


@dataclass
class ProcessingResult:
    """Accumulated output plus everything the manifest reports about the processing."""

    out: dict[str, Any]
    reports: list[FileReport]
    metrics: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    #: executor.maxchunks set: files are read only partly on purpose, not a failure
    limited: bool = False

    @property
    def failures(self) -> list[dict[str, str]]:
        """Failed files and chunks, each with its reason."""
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


def run_processing(
    fileset: Mapping[str, Any],
    config: Config,
    executor: Any,
    *,
    skipbadfiles: bool,
    checkpoint_dir: Path | None = None,
    uproot_options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the processor over a (pre-flighted) fileset; return the accumulator and coffea metrics."""
    ex = config.executor
    runner = processor.Runner(
        executor=executor,
        schema=BaseSchema,
        chunksize=ex.chunksize,
        maxchunks=ex.maxchunks,
        skipbadfiles=(OSError,) if skipbadfiles else False,
        align_clusters=ex.align_clusters,
        savemetrics=True,
        checkpointer=AtomicCheckpointer(str(checkpoint_dir)) if checkpoint_dir else None,
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
            uproot_options=uproot_options or {},
        )
    return out, metrics


def empty_output() -> dict[str, Any]:
    """The accumulator of a run that processed nothing."""
    return {"groups": {}, "cutflow": {}, "files": {}, "formats": {}, "failures": {}}


def total_cutflow(out: Mapping[str, Any]) -> dict[str, int]:
    """Cutflow summed over datasets."""
    total = dict.fromkeys(CUTFLOW_STEPS, 0)
    for steps in out.get("cutflow", {}).values():
        for k, v in steps.items():
            total[k] = total.get(k, 0) + int(v)
    return total


def process_and_accumulate(
    fileset: Mapping[str, Any],
    config: Config,
    executor: Any,
    *,
    client: Any = None,
    skipbadfiles: bool,
    checkpoint_dir: Path | None = None,
    uproot_options: dict[str, Any] | None = None,
) -> ProcessingResult:
    """Pre-flight, then process; the ProcessingResult accounts for every input file."""
    start = time.perf_counter()
    reports = preflight(fileset, config, client=client, uproot_options=uproot_options)
    usable = usable_fileset(fileset, reports, skipbadfiles)
    n_events = sum(r.entries or 0 for r in reports if r.ok)
    log.info(
        "processing %d events in %d files", n_events, sum(len(d["files"]) for d in usable.values())
    )
    out, metrics = run_processing(
        usable,
        config,
        executor,
        skipbadfiles=skipbadfiles,
        checkpoint_dir=checkpoint_dir,
        uproot_options=uproot_options,
    )
    for key, value in empty_output().items():
        out.setdefault(key, value)
    return ProcessingResult(
        out,
        reports,
        dict(metrics or {}),
        time.perf_counter() - start,
        limited=config.executor.maxchunks is not None,
    )


# -- finishing: post-processing, files, manifest ---------------------------------------------


def output_filename(config: Config, group: str) -> str:
    """BumpNet file name of a sample group (MC gets an ``_mc`` suffix)."""
    name = config.histogram_creation_task_config.output_file
    return name if group == "data" else name.replace(".root", f"_{group}.root")


def finish_run(
    run_dir: Path,
    config: Config,
    out: Mapping[str, Any],
    *,
    inputs: list[dict[str, Any]],
    failures: list[dict[str, str]],
    metrics: Mapping[str, Any],
    wall_time_s: float,
    context: Mapping[str, Any],
    datasets: list[dict[str, Any]] | None = None,
    make_plots: bool | None = None,
    release: str | None = "config",
) -> dict[str, Any]:
    """Post-process every sample group, write the ROOT files, plots and manifest.json."""
    grid = MassGrid(
        config.mass_calculation_task_config.fine_bin_width_gev,
        config.mass_calculation_task_config.mass_max_gev,
    )
    weighted = config.mass_calculation_task_config.weighting == "mc"
    hist_dir = run_dir / "histograms"
    cutflow = total_cutflow(out)
    raw_file = hist_dir / config.histogram_creation_task_config.raw_output_file
    n_raw = write_raw_file(raw_file, out["groups"], cutflow)
    log.info("wrote %d fine-grid histograms to %s", n_raw, raw_file)
    manifest_hists: dict[str, Any] = {}
    final_states: dict[str, Any] = {}
    kept_events = 0
    hc = config.histogram_creation_task_config
    by_process = hc.stacks_wanted()
    for group, content in sorted(out["groups"].items()):
        if config.tasks.do_post_processing:
            components = content.get("components") if by_process else None
            result = postprocess(
                content["hists"], content["fs_events"], grid, config, weighted, components
            )
        else:
            result = PostProcessResult([], dict(content["fs_events"]), {}, [], {})
        kept_events += sum(result.kept_fs.values())
        final_states[group] = {
            fs: {"events": n, "sumw": content["fs_sumw"].get(fs, n), "kept": fs in result.kept_fs}
            for fs, n in sorted(content["fs_events"].items(), key=lambda kv: -kv[1])
        }
        entry = _group_manifest(result)
        entry["views"] = list(hc.active_views())
        if config.tasks.do_histogram_creation and config.tasks.do_post_processing:
            path = hist_dir / output_filename(config, group)
            written = write_bumpnet_file(path, result, hc.active_views(), by_process)
            entry["file"] = str(path.relative_to(run_dir))
            if written.components:
                entry["mc_by_process"] = {
                    "writer": written.writer,
                    "components": written.components,
                    **bumpnet_classes(written.components),
                }
                log.info(
                    "%s: MC by process written as %s: %s",
                    group,
                    written.writer,
                    ", ".join(written.components),
                )
            log.info("wrote %d histograms (%s) to %s", len(written.keys), group, path)
        manifest_hists[group] = entry
        if result.blacklisted:
            log.info(
                "%s: %d blacklisted spectra not written (manifest.json histograms.%s.blacklisted)",
                group,
                len(result.blacklisted),
                group,
            )
        if result.collisions:
            log.warning(
                "%s: %d groups of ROI names look the same to BumpNet's selection, which reads "
                "only ex/mx/bx/jx/Zx counts and the OS/SS tag (listed in manifest.json "
                "histograms.%s.collisions), e.g. %s",
                group,
                len(result.collisions),
                group,
                " / ".join(result.collisions[0]),
            )
    unmatched = unmatched_blacklist(hc.blacklist, manifest_hists.values())
    if unmatched:
        log.warning(
            "blacklist entries matching no spectrum of this run (check the spelling): %s",
            ", ".join(unmatched),
        )
    cutflow["final_states_kept"] = kept_events
    if release == "config":  # the configured release, unless the run read other inputs
        release = None if config.parsing_task_config.inputs else config.parsing_task_config.release
    sqrt_s, lumi = RELEASE_INFO.get(release or "", (13.0, None))
    events_processed = sum(out.get("files", {}).values())
    n_failed_files = len({f["file"] for f in failures})
    manifest = {
        **context,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "partial" if failures else "ok",
        "software": software_versions(),
        "config_sha256": config.digest(),
        "release": release,
        "sqrt_s_tev": sqrt_s,
        "luminosity_fb": lumi,
        "datasets": datasets or [],
        "inputs": inputs,
        "failures": failures,
        "cutflow": out.get("cutflow", {}),
        "cutflow_total": cutflow,
        "final_states": final_states,
        "histograms": manifest_hists,
        "naming": hc.naming,
        "blacklist": {"entries": list(hc.blacklist), "unmatched": unmatched},
        "bumpnet_cuts": hc.bumpnet_cuts.model_dump(),
        "raw_file": str(raw_file.relative_to(run_dir)),
        "formats": out.get("formats", {}),
        "coffea_metrics": _jsonable_metrics(metrics),
        "processing": {
            "wall_time_s": round(wall_time_s, 3),
            "events": events_processed,
            "events_per_s": round(events_processed / wall_time_s, 1) if wall_time_s > 0 else None,
            "bytes_read": int(metrics.get("bytesread", 0) or 0),
            "chunks": int(metrics.get("chunks", 0) or 0),
            "n_files": len(inputs),
            "n_failed_files": n_failed_files,
            "n_failed_chunks": sum(1 for f in failures if f["chunk"] not in ("all",)),
            "accumulator_bytes": accumulator_size(out.get("groups", {})),
        },
        "fine_grid": {"width_gev": grid.width, "max_gev": grid.mass_max, "bins": grid.n_bins},
    }
    log.info(
        "accumulator: %d histograms, %.1f MB pickled",
        sum(len(g["hists"]) for g in out["groups"].values()),
        manifest["processing"]["accumulator_bytes"] / 1e6,
    )
    write_json(run_dir / "manifest.json", manifest)
    plots_wanted = config.tasks.do_plots if make_plots is None else make_plots
    if plots_wanted:
        regenerate_plots(run_dir)
    return manifest


def _group_manifest(result: PostProcessResult) -> dict[str, Any]:
    rows = readiness_rows(result.spectra)
    spectra = []
    for s, row in zip(result.spectra, rows, strict=True):
        written = s.roi is not None and not s.blacklisted
        spectra.append(
            {
                "roi_name": s.roi_name if s.roi is not None else None,
                "outlier_name": s.outlier_name if s.outliers is not None else None,
                "has_outliers": s.outliers is not None,
                "written": written,
                "blacklisted": s.blacklisted,
                "fs": s.fs,
                "combo": s.combo,
                "lo": s.lo,
                "split": s.split,
                "hi": s.hi,
                "n_bins": row.n_bins,
                "entries": row.entries,
                "removed": s.removed,
                "rejected": row.reasons,
                "bumpnet": {
                    "accepted": row.accepted,
                    "loader_name": row.loader_name,
                    "bins_after_trim": row.bins_after_trim,
                    "entries_after_trim": row.entries_after_trim,
                    "codes": row.codes,
                },
            }
        )
    return {
        "spectra": spectra,
        "n_written": sum(1 for s in spectra if s["written"]),
        "n_bumpnet_ready": sum(1 for row in rows if row.accepted),
        "rejection_counts": reason_counts(rows),
        "dropped_final_states": result.dropped_fs,
        "collisions": result.collisions,
        "blacklisted": result.blacklisted,
        "overflow": result.overflow,
    }


def unmatched_blacklist(blacklist: list[str], groups: Any) -> list[str]:
    """Blacklist entries that matched no spectrum of any sample group."""
    hit = [strip_view(n) for g in groups for n in g.get("blacklisted", [])]
    return [b for b in blacklist if not any(map(blacklist_matcher([b]), hit))]


def _jsonable_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, set | frozenset | list | tuple):
            out[k] = sorted(str(x) for x in v)
        elif isinstance(v, int | float | str) or v is None:
            out[k] = v
        else:
            out[k] = str(v)
    return out


def regenerate_plots(run_dir: Path) -> list[Path]:
    """(Re)make the plots of a finished run directory; failures are logged, never fatal."""
    try:
        from .plots import make_plots
    except ImportError as exc:  # pragma: no cover - plots module missing
        log.error("plots unavailable: %s", exc)
        return []
    try:
        files = make_plots(run_dir)
    except Exception:
        log.exception("making plots in %s failed; histograms and manifest are unaffected", run_dir)
        return []
    log.info("wrote %d plot files to %s", len(files), run_dir / "plots")
    return files


# -- merging ---------------------------------------------------------------------------------


def load_run_output(run_dir: Path, config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished run's accumulator (from its raw ROOT file) and its manifest."""
    manifest = read_json(run_dir / "manifest.json")
    grid = MassGrid(
        config.mass_calculation_task_config.fine_bin_width_gev,
        config.mass_calculation_task_config.mass_max_gev,
    )
    groups, _ = read_raw_file(run_dir / manifest["raw_file"], grid)
    out = {
        "groups": groups,
        "cutflow": manifest.get("cutflow", {}),
        "files": {i["file"]: i.get("entries_processed", 0) for i in manifest.get("inputs", [])},
        "formats": manifest.get("formats", {}),
        "failures": {},
    }
    return out, manifest


def merge_outputs(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Add accumulators (histograms, counts, cutflows) of several runs or shards."""
    merged = accumulate(outputs) if outputs else empty_output()
    for key, value in empty_output().items():
        merged.setdefault(key, value)
    return merged
