"""Finishing a run: post-process the accumulated result, write the ROOT files, manifest and plots."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from processor.config import Config
from processor.errors import PlotsError, StorageError
from processor.opendata.releases import energy_and_lumi
from processor.output.manifest import build_manifest, group_record, jsonable_metrics, write_manifest
from processor.output.postprocess import postprocess_groups, unmatched_blacklist
from processor.output.readiness import bumpnet_classes
from processor.output.rootfiles import bumpnet_filename, write_bumpnet_file, write_raw_file
from processor.output.scanning import (
    RunScan,
    add_scan_histograms,
    format_window,
    most_significant,
    scan_run,
)
from processor.physics.accumulator import total_cutflow
from processor.physics.histograms import MassGrid, compact_size
from processor.run.execute import ProcessingResult
from processor.run.rundir import software_versions

log = logging.getLogger(__name__)


def run_release(config: Config, demo: bool = False) -> str | None:
    """The release a run's numbers belong to: the configured one, or None for own inputs/demo."""
    if demo or config.parsing_task_config.inputs:
        return None
    return config.parsing_task_config.release


def finish_run(
    run_dir: Path,
    config: Config,
    result: ProcessingResult,
    *,
    context: Mapping[str, Any],
    release: str | None,
    datasets: list[dict[str, Any]] | None = None,
    plots: bool = True,
    scan: bool = True,
    client: Any = None,
) -> dict[str, Any]:
    """Post-process every sample group, bump-scan its ROI spectra (``scan`` and
    ``post_processing_task_config.bump_scan.enabled``; on the Dask workers of ``client`` when
    given), write the ROOT files, manifest.json and (if ``plots`` and ``tasks.do_plots``) the
    plots; return the manifest."""
    out = result.out
    grid = MassGrid.from_config(config.mass_calculation_task_config)
    hist_dir = run_dir / "histograms"
    cutflow = total_cutflow(out)
    raw_file = hist_dir / config.histogram_creation_task_config.raw_output_file
    n_raw = write_raw_file(raw_file, out["groups"], cutflow)
    log.info("wrote %d fine-grid histograms to %s", n_raw, raw_file)
    manifest_hists: dict[str, Any] = {}
    final_states: dict[str, Any] = {}
    kept_events = 0
    hc = config.histogram_creation_task_config
    sqrt_s, lumi = energy_and_lumi(release)
    pp_groups = postprocess_groups(out, config)
    bump = RunScan()
    if scan and config.tasks.do_post_processing:
        bump = scan_run(pp_groups, out, config, sqrt_s * 1000.0, client=client)
    for group, pp in pp_groups.items():
        content = out["groups"][group]
        kept_events += sum(pp.kept_fs.values())
        final_states[group] = {
            fs: {"events": n, "sumw": content["fs_sumw"].get(fs, n), "kept": fs in pp.kept_fs}
            for fs, n in sorted(content["fs_events"].items(), key=lambda kv: -kv[1])
        }
        entry = group_record(pp)
        entry["views"] = list(hc.active_views())
        if config.tasks.do_histogram_creation and config.tasks.do_post_processing:
            path = hist_dir / bumpnet_filename(hc, group)
            written = write_bumpnet_file(path, pp, hc.active_views(), hc.stacks_wanted())
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
            scan_keys = add_scan_histograms(path, bump.outcomes.get(group, {}))
            if scan_keys:
                log.info("%s: added %d bump-scan histograms to %s", group, len(scan_keys), path)
        scanned = bump.outcomes.get(group, {})
        for row in entry["spectra"]:
            if row.get("roi_name") in scanned:
                row["bump_scan"] = scanned[row["roi_name"]].record
        manifest_hists[group] = entry
        if pp.blacklisted:
            log.info(
                "%s: %d blacklisted spectra not written (manifest.json histograms.%s.blacklisted)",
                group,
                len(pp.blacklisted),
                group,
            )
        if pp.collisions:
            log.warning(
                "%s: %d groups of ROI names look the same to BumpNet's selection, which reads "
                "only ex/mx/bx/jx/Zx counts and the OS/SS tag (listed in manifest.json "
                "histograms.%s.collisions), e.g. %s",
                group,
                len(pp.collisions),
                group,
                " / ".join(pp.collisions[0]),
            )
    unmatched = unmatched_blacklist(hc.blacklist, manifest_hists.values())
    if unmatched:
        log.warning(
            "blacklist entries matching no spectrum of this run (check the spelling): %s",
            ", ".join(unmatched),
        )
    cutflow["final_states_kept"] = kept_events
    failures = result.failures
    inputs = result.inputs
    metrics = result.metrics
    wall_time_s = result.wall_time_s
    events_processed = sum(out.get("files", {}).values())
    manifest = build_manifest(
        **context,
        status="partial" if failures else "ok",
        software=software_versions(),
        config_sha256=config.digest(),
        release=release,
        sqrt_s_tev=sqrt_s,
        luminosity_fb=lumi,
        datasets=datasets or [],
        inputs=inputs,
        failures=failures,
        cutflow=out.get("cutflow", {}),
        cutflow_total=cutflow,
        final_states=final_states,
        histograms=manifest_hists,
        naming=hc.naming,
        blacklist={"entries": list(hc.blacklist), "unmatched": unmatched},
        bumpnet_cuts=hc.bumpnet_cuts.model_dump(),
        raw_file=str(raw_file.relative_to(run_dir)),
        formats=out.get("formats", {}),
        coffea_metrics=jsonable_metrics(metrics),
        processing={
            "wall_time_s": round(wall_time_s, 3),
            "events": events_processed,
            "events_per_s": round(events_processed / wall_time_s, 1) if wall_time_s > 0 else None,
            "bytes_read": int(metrics.get("bytesread", 0) or 0),
            "chunks": int(metrics.get("chunks", 0) or 0),
            "n_files": len(inputs),
            "n_failed_files": len({f["file"] for f in failures}),
            "n_failed_chunks": sum(1 for f in failures if f["chunk"] not in ("all",)),
            "accumulator_bytes": compact_size(out.get("groups", {}), grid),
        },
        fine_grid={"width_gev": grid.width, "max_gev": grid.mass_max, "bins": grid.n_bins},
        bump_scan=bump_scan_record(bump, config),
    )
    log.info(
        "accumulator: %d histograms, %.1f MB pickled",
        sum(len(g["hists"]) for g in out["groups"].values()),
        manifest["processing"]["accumulator_bytes"] / 1e6,
    )
    manifest["plots"] = {"status": "pending" if plots and config.tasks.do_plots else "off"}
    write_manifest(run_dir, manifest)
    if plots and config.tasks.do_plots:
        try:
            regenerate_plots(run_dir)
            manifest["plots"] = {"status": "ok"}
        except StorageError:
            raise  # exit 5: the storage is the cause; manifest says "pending"
        except PlotsError as exc:
            manifest["plots"] = {"status": "failed", "error": str(exc)}
        write_manifest(run_dir, manifest)
    return manifest


def bump_scan_record(bump: RunScan, config: Config) -> dict[str, Any]:
    """The run-level ``bump_scan`` entry of manifest.json: settings, where and how long it ran,
    the trials correction per sample group and the most significant windows (the per-spectrum
    records are under ``histograms.<group>.spectra[].bump_scan``)."""
    cfg = config.post_processing_task_config.bump_scan
    records = bump.records()
    return {
        "enabled": cfg.enabled and bool(bump.outcomes),
        "config": cfg.model_dump(mode="json"),
        "where": bump.where,
        "seconds": round(bump.seconds, 2),
        "task_seconds": round(bump.task_seconds, 2),
        "n_spectra": sum(len(v) for v in records.values()),
        "n_scanned": sum("skipped" not in r for v in records.values() for r in v.values()),
        "trials": bump.trials,
        "most_significant": [
            {"group": g, "roi_name": n, **{k: r[k] for k in ("window_gev", "local_z", "global_z")}}
            for g, n, r in most_significant(records, 10)
        ],
        "summary": [format_window(g, n, r) for g, n, r in most_significant(records, 5)],
    }


def regenerate_plots(run_dir: Path) -> list[Path]:
    """(Re)make the plots of a finished run directory.

    Raises :class:`StorageError` when the plots cannot be written and :class:`PlotsError`
    (one line, naming what failed and ``--plots-only``) for any other failure; histograms and
    manifest are never touched.
    """
    from processor.output.plots import make_plots

    try:
        files = make_plots(run_dir)
    except (StorageError, PlotsError):
        log.debug("making plots in %s failed", run_dir, exc_info=True)
        raise
    except Exception as exc:
        log.debug("making plots in %s failed", run_dir, exc_info=True)
        raise PlotsError(
            f"making the plots in {run_dir / 'plots'} failed ({exc.__class__.__name__}: "
            f"{' '.join(str(exc).split())[:200]}); histograms and manifest are complete, redo "
            f"the plots with runner.py --plots-only --run-dir {run_dir}"
        ) from exc
    log.info("wrote %d plot files to %s", len(files), run_dir / "plots")
    return files
