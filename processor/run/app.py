"""What runner.py does for each mode: run, dry run, resume, shard, merge, plots only."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uproot

from cluster.batch import remove_tls_files
from processor.config import Config, load_config
from processor.configdiff import describe_diff, physics_diff
from processor.errors import BumpnetError, ConfigError, DataAccessError, MergeError
from processor.fsutil import STORAGE_ERRNOS
from processor.opendata.download import uproot_options
from processor.opendata.fileset import FilesetPlan, build_fileset
from processor.output.manifest import MANIFEST_NAME, read_manifest
from processor.physics.accumulator import total_cutflow
from processor.run.cli import EXIT_OK, EXIT_PARTIAL, EXIT_PLOTS
from processor.run.execute import (
    ProcessingResult,
    make_executor,
    preflight,
    process_and_accumulate,
)
from processor.run.finish import finish_run, regenerate_plots, run_release
from processor.run.merge import load_run_output, merge_outputs
from processor.run.rundir import (
    attach_log_file,
    locked_run_dir,
    new_run_dir,
    read_json,
    run_context,
    storage_error,
    write_config,
    write_json,
)

log = logging.getLogger("bumpnet")

#: errors whose message is already one explained line (ours, plus two of the libraries')
KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    BumpnetError,
    FileNotFoundError,
    uproot.KeyInFileError,
)


def one_line(exc: BaseException) -> str:
    """An exception as one line (the first of its chain that says something)."""
    text = " ".join(str(exc).split())
    return text or exc.__class__.__name__


def known_cause(exc: BaseException) -> BaseException | None:
    """The first of our own (explained) errors in an exception's chain, if any.

    Executors wrap worker exceptions (coffea raises ``Exception("Failed processing file: ...")``);
    the explained error underneath is the one to show.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop(0)
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, KNOWN_ERRORS):
            return cur
        if isinstance(cur, OSError) and cur.errno in STORAGE_ERRNOS and cur.filename:
            return storage_error(cur.filename, cur)
        todo += [cur.__cause__, cur.__context__]
    return None


def dispatch(args: argparse.Namespace, config: Config) -> int:
    """Run the mode the arguments ask for; return the exit code."""
    if args.plots_only:
        return plots_only(Path(args.run_dir))
    if args.merge_only is not None:
        return merge_only(args, config)
    return run(args, config)


# -- the main run ------------------------------------------------------------------------------


def plan_inputs(args: argparse.Namespace, config: Config, run_dir: Path | None) -> FilesetPlan:
    """The fileset of this run: the demo sample, --input files, or the configured release."""
    parsing = config.parsing_task_config
    inputs = parsing.inputs
    if args.demo:
        from processor.synthetic import make_demo_sample

        inputs = [str(p) for p in make_demo_sample()]
    plan = build_fileset(
        parsing,
        inputs=inputs,
        run_dir=run_dir,
        offline=parsing.offline or None,
        max_files=parsing.max_files_to_process,
        tree_name=parsing.tree_name,
    )
    if not plan.n_files:
        raise DataAccessError(
            "no input files selected; check parsing_task_config (release, skim, samples, datasets) or --input"
        )
    return plan


def shard(plan: FilesetPlan, index: int, total: int) -> dict[str, Any]:
    """Deterministic slice ``index`` (1-based) of ``total`` of the fileset: every total-th file."""
    items = sorted((ds, f) for ds, spec in plan.fileset.items() for f in spec["files"])
    mine = {item for i, item in enumerate(items) if i % total == index - 1}
    out: dict[str, Any] = {}
    for ds, spec in plan.fileset.items():
        files = {f: t for f, t in spec["files"].items() if (ds, f) in mine}
        if files:
            out[ds] = {"files": files, "metadata": spec.get("metadata", {})}
    return out


def skip_bad(config: Config, plan: FilesetPlan, args: argparse.Namespace) -> bool:
    """skipbadfiles: as configured, else on for release runs and off for --input/--demo runs."""
    if config.executor.skipbadfiles is not None:
        return config.executor.skipbadfiles
    return not (config.parsing_task_config.inputs or args.demo)


def dry_run(args: argparse.Namespace, config: Config) -> int:
    """Validate, print the plan and write nothing."""
    plan = plan_inputs(args, config, None)
    print(f"config OK (sha256 {config.digest()[:12]})")
    print(
        f"{len(plan.datasets)} dataset(s), {plan.n_files} file(s); metadata: {plan.metadata_source or 'n/a'}"
    )
    for line in plan.summary_lines():
        print("  " + line)
    local = {
        ds: spec for ds, spec in plan.fileset.items() if all("://" not in f for f in spec["files"])
    }
    if local:
        reports = preflight(local, config)
        entries = sum(r.entries or 0 for r in reports if r.ok)
        print(f"local files: {len(reports)}, entries: {entries}")
        for r in reports:
            if not r.ok:
                print(f"  BAD {r.error}")
    mode = "pbs" if args.pbs else "local"
    print(
        f"would run with executor={args.executor} mode={mode} chunksize={config.executor.chunksize}"
    )
    return EXIT_OK


@contextlib.contextmanager
def cluster_client(args: argparse.Namespace, config: Config, run_dir: Path) -> Iterator[Any]:
    """A Dask client for --local/--pbs (None for the in-process executors)."""
    if args.executor != "dask":
        yield None
        return
    from cluster.session import open_cluster

    mode = "pbs" if args.pbs else "local"
    with open_cluster(
        mode, config.cluster, run_dir=run_dir, n_workers=args.workers, log_dir=run_dir / "logs"
    ) as client:
        link = client.dashboard_link
        print(f"Dask dashboard: {link}", flush=True)
        if mode == "pbs":
            from cluster.batch import ssh_tunnel_command

            tunnel = ssh_tunnel_command(link)
            if tunnel:
                print(f"  from your laptop: {tunnel}  (then open it on localhost)", flush=True)
        yield client


def _recorded_plan(run_dir: Path, config: Config) -> tuple[FilesetPlan | None, dict[str, Any]]:
    """The fileset a run recorded (``fileset.json``), for ``--resume``; None if it has none."""
    path = run_dir / "fileset.json"
    if not path.is_file():
        return None, {}
    data = read_json(path)
    plan = FilesetPlan(
        fileset=data["fileset"],
        datasets=data.get("datasets", []),
        uproot_options=uproot_options(config.parsing_task_config.network_timeout_s),
    )
    return plan, data


def _warn_reused_run_dir(run_dir: Path, config: Config) -> None:
    """``--run-dir`` of an earlier run under another config: say so (its checkpoints are not reused)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    try:
        earlier = load_config(path)
    except ConfigError:
        return
    diff = physics_diff(earlier, config)
    if diff:
        log.warning(
            "%s holds a run with other physics settings (%s); its checkpoints are not reused and "
            "its results are replaced",
            run_dir,
            describe_diff(earlier, config, diff, ("earlier", "now")),
        )


def run(args: argparse.Namespace, config: Config) -> int:
    """Process the inputs and write a run directory (holding its lock all along)."""
    if args.dry_run:
        return dry_run(args, config)
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(
                f"--resume {run_dir}: not a run directory (no config.yaml); pass the directory of the interrupted run"
            )
    else:
        run_dir = new_run_dir(config, args.run_dir)
    out_dir = run_dir
    if args.batch_job_index is not None:
        out_dir = run_dir / "shards" / f"job_{args.batch_job_index:04d}"
        new_run_dir(config, out_dir)
    try:
        with locked_run_dir(out_dir):
            return _run_locked(args, config, out_dir)
    except KeyboardInterrupt as exc:
        with contextlib.suppress(AttributeError):  # cli prints "--resume <out_dir>"
            exc.run_dir = str(out_dir)  # type: ignore[attr-defined]
        raise


def _run_locked(args: argparse.Namespace, config: Config, out_dir: Path) -> int:
    context = run_context()
    started = time.perf_counter()
    handler = attach_log_file(out_dir)
    remove_tls_files(out_dir)  # a killed --pbs run's TLS key and certificates
    try:
        demo = args.demo
        plan: FilesetPlan | None = None
        if args.resume:
            plan, recorded = _recorded_plan(out_dir, config)
            demo = demo or bool(recorded.get("demo"))
            if plan is None:
                log.warning("%s has no fileset.json: planning the inputs again", out_dir)
        else:
            if args.run_dir and args.batch_job_index is None:
                _warn_reused_run_dir(out_dir, config)
            write_config(out_dir, config)
        if plan is None:
            plan = plan_inputs(args, config, out_dir)
        fileset = plan.fileset
        if args.batch_job_index is not None:
            fileset = shard(plan, args.batch_job_index, args.total_batch_jobs)
            log.info(
                "shard %d/%d: %d file(s)",
                args.batch_job_index,
                args.total_batch_jobs,
                sum(len(s["files"]) for s in fileset.values()),
            )
        if not (args.resume and (out_dir / "fileset.json").is_file()):
            write_json(
                out_dir / "fileset.json",
                {"fileset": fileset, "datasets": plan.datasets, "demo": bool(demo)},
            )
        skip = skip_bad(config, plan, args)
        with cluster_client(args, config, out_dir) as client:
            executor = make_executor(args.executor, config, client)
            result = process_and_accumulate(
                fileset,
                config,
                executor,
                client=client,
                skipbadfiles=skip,
                checkpoint_dir=out_dir / "checkpoints",
                uproot_options=plan.uproot_options or uproot_options(),
                memory_key="cluster.pbs.memory" if args.pbs else "cluster.local.memory_limit",
            )
            is_shard = args.batch_job_index is not None
            result.wall_time_s = time.perf_counter() - started
            # still inside the cluster: the bump scan runs on its workers
            manifest = finish_run(
                out_dir,
                config,
                result,
                context={
                    **context,
                    "mode": "pbs"
                    if args.pbs
                    else ("local" if args.executor == "dask" else args.executor),
                    "run_dir": str(out_dir),
                },
                datasets=plan.datasets,
                plots=not is_shard,
                scan=not is_shard,
                client=client,
                release=run_release(config, demo=demo),
            )
        print_summary(out_dir, manifest, demo=bool(demo))
        return exit_code(manifest)
    finally:
        with contextlib.suppress(OSError):
            remove_tls_files(out_dir)
        logging.getLogger().removeHandler(handler)
        handler.close()


def exit_code(manifest: dict[str, Any]) -> int:
    """3 if inputs failed (the result is partial), else 6 if the plots failed, else 0."""
    if manifest["status"] == "partial":
        return EXIT_PARTIAL
    if (manifest.get("plots") or {}).get("status") == "failed":
        return EXIT_PLOTS
    return EXIT_OK


def print_summary(run_dir: Path, manifest: dict[str, Any], demo: bool = False) -> None:
    """The short summary printed at the end of a run (the demo's ends with where the scan
    found the injected resonance)."""
    cf = manifest["cutflow_total"]
    proc = manifest["processing"]
    n_fs = sum(sum(1 for v in g.values() if v["kept"]) for g in manifest["final_states"].values())
    n_all_fs = sum(len(g) for g in manifest["final_states"].values())
    n_hist = sum(g["n_written"] for g in manifest["histograms"].values())
    n_ready = sum(g["n_bumpnet_ready"] for g in manifest["histograms"].values())
    print(
        f"events read: {cf['events_read']} in {proc['n_files']} file(s), {proc['events_per_s']} events/s"
    )
    print(
        f"final states kept: {n_fs} of {n_all_fs} (min_events_per_fs), events in them: {cf.get('final_states_kept', 0)}"
    )
    print(f"histograms written: {n_hist} ROI ({n_ready} pass BumpNet's checks)")
    for group, g in manifest["histograms"].items():
        if g.get("file"):
            print(f"  {group}: {run_dir / g['file']}")
    print(f"raw fine-grid histograms: {run_dir / manifest['raw_file']}")
    plots = run_dir / "plots"
    plot_state = (manifest.get("plots") or {}).get("status", "ok")
    has_plots = plot_state == "ok" and plots.is_dir() and any(plots.iterdir())
    print(f"manifest: {run_dir / 'manifest.json'}" + (f"   plots: {plots}" if has_plots else ""))
    if plot_state == "failed":
        print(f"error: {manifest['plots']['error']}", file=sys.stderr)
    if manifest["status"] == "partial":
        print(
            f"PARTIAL: {len(manifest['failures'])} input failure(s); see manifest.json 'failures'"
        )
    for line in scan_summary_lines(manifest):
        print(line)
    if demo:
        print(demo_finding_line(manifest))


def scan_summary_lines(manifest: dict[str, Any]) -> list[str]:
    """The bump scan's part of the summary: trials correction and most significant windows."""
    scan = manifest.get("bump_scan") or {}
    if not scan.get("enabled"):
        return []
    lines = [
        f"bump scan (a classical cross-check, not a discovery claim): {scan['n_scanned']} of "
        f"{scan['n_spectra']} ROI spectra scanned {scan['where']} in {scan['seconds']:.1f} s"
    ]
    for group, t in scan.get("trials", {}).items():
        if t["n_spectra"]:
            bound = "≥" if t["z_run_is_lower_bound"] else "="
            lines.append(
                f"  {group}: after the trials correction over {t['n_spectra']} spectra, "
                f"Z {bound} {t['z_run']:.2f} (most significant: {t['most_significant']})"
            )
    if scan.get("summary"):
        lines.append("  most significant windows:")
        lines += [f"    {s}" for s in scan["summary"]]
    return lines


def demo_finding_line(manifest: dict[str, Any]) -> str:
    """One line: the demo's injected mass, the spectrum and window where the scan found it
    (the most significant data window containing it) and the significance."""
    from processor.synthetic.demo import DEMO_SIGNAL_MASS_GEV

    m = DEMO_SIGNAL_MASS_GEV
    best = None
    for group, g in manifest.get("histograms", {}).items():
        if group == "mc":
            continue
        for row in g.get("spectra", []):
            r = row.get("bump_scan") or {}
            w = r.get("window_gev")
            if not w or not (w[0] <= m <= w[1]):
                continue
            key = (r["global_z"], r["local_z"])
            if best is None or key > best[0]:
                best = (key, row["roi_name"], r)
    if best is None:
        return f"injected resonance at {m:g} GeV: not found by the bump scan in any data spectrum"
    _, name, r = best
    bound = "≥" if r.get("global_z_is_lower_bound") else "="
    return (
        f"injected resonance at {m:g} GeV: found in {name}, window "
        f"[{r['window_gev'][0]:g}, {r['window_gev'][1]:g}] GeV, local Z = {r['local_z']:.1f}, "
        f"global Z {bound} {r['global_z']:.1f}"
    )


# -- other modes -------------------------------------------------------------------------------


def plots_only(run_dir: Path) -> int:
    """Re-make the plots of an existing run directory."""
    if not (run_dir / MANIFEST_NAME).is_file():
        raise ConfigError(
            f"--run-dir {run_dir}: no manifest.json there; pass a finished run directory"
        )
    from processor.output.plots import check_plot_inputs

    check_plot_inputs(run_dir)
    with locked_run_dir(run_dir):  # not while a run (or another --plots-only) writes there
        files = regenerate_plots(run_dir)
    print(f"wrote {len(files)} plot file(s) to {run_dir / 'plots'}")
    return EXIT_OK


def merge_only(args: argparse.Namespace, config: Config) -> int:
    """Add the raw histograms of several runs (or of the shards of --run-dir) and finish."""
    sources = [Path(d) for d in args.merge_only]
    if not sources:
        if not args.run_dir:
            raise ConfigError("--merge-only needs run directories or --run-dir DIR holding shards/")
        sources = sorted((Path(args.run_dir) / "shards").glob("job_*"))
        if not sources:
            raise DataAccessError(
                f"{args.run_dir}/shards: no shard directories to merge; did the batch jobs run?"
            )
    for src in sources:
        if not (src / MANIFEST_NAME).is_file():
            raise DataAccessError(
                f"{src}: no manifest.json (unfinished or not a run directory); rerun it or leave it out"
            )
    config = check_mergeable(sources, config if args.config else None) or config
    started = time.perf_counter()
    outputs, inputs, failures, datasets = [], [], [], {}
    wall = 0.0
    for src in sources:
        out, manifest = load_run_output(src, config)
        outputs.append(out)
        inputs += _absolute_rows(manifest)
        failures += manifest.get("failures", [])
        wall += manifest.get("processing", {}).get("wall_time_s", 0.0)
        for d in manifest.get("datasets", []):
            datasets.setdefault(d.get("name"), d)
    merged = merge_outputs(outputs)
    run_dir = new_run_dir(config, args.run_dir)
    with locked_run_dir(run_dir):
        manifest = _finish_merge(
            run_dir, config, sources, merged, inputs, failures, datasets, wall, started
        )
    print(f"merged {len(sources)} run(s): {total_cutflow(merged)['events_read']} events")
    print_summary(run_dir, manifest)
    return exit_code(manifest)


def check_mergeable(sources: list[Path], given: Config | None) -> Config | None:
    """Refuse runs that must not be added; return the runs' common config (None if unrecorded).

    Every run must have the same physics settings (:func:`physics_diff`, also as a given
    ``--config``), no run may be listed twice, and no input file may have been processed by two
    runs. Errors name the keys, runs and files.
    """
    resolved: dict[Path, Path] = {}
    for src in sources:
        real = src.resolve()
        if real in resolved:
            raise MergeError(
                f"--merge-only: {src} is listed twice (also as {resolved[real]}); every event would "
                "count twice, list each run once"
            )
        resolved[real] = src
    configs: list[tuple[Path, Config]] = []
    for src in sources:
        path = src / "config.yaml"
        if path.is_file():
            configs.append((src, load_config(path)))
    if given is not None:
        configs.insert(0, (Path("--config"), given))
    for (src_a, a), (src_b, b) in zip(configs, configs[1:], strict=False):
        diff = physics_diff(a, b)
        if diff:
            raise MergeError(
                f"--merge-only: {src_a} and {src_b} differ in physics settings: "
                + describe_diff(a, b, diff, (str(src_a), str(src_b)))
                + "; merge only runs made with the same cuts and binning"
            )
    seen: dict[str, tuple[Path, str]] = {}
    for src in sources:
        manifest = read_manifest(src, check=False)
        for row in manifest.get("inputs", []):
            if not row.get("entries_processed"):
                continue
            name = str(row["file"])
            key = name if "://" in name else str(_input_path(name, manifest).resolve())
            # the same file at two places (a copy, a download of a URL) has the same ROOT UUID
            keys = [key] + ([f"uuid {row['uuid']}"] if row.get("uuid") else [])
            for k in keys:
                if k in seen:
                    other, other_name = seen[k]
                    same = name if other_name == name else f"{name} (also read as {other_name})"
                    raise MergeError(
                        f"--merge-only: input {same} was processed by both {other} and {src}; "
                        "its events would count twice, leave one of the runs out"
                    )
            for k in keys:
                seen[k] = (src, name)
    if given is None and configs:
        return configs[0][1]
    return None


def _input_path(name: str, manifest: dict[str, Any]) -> Path:
    """A local input as its run saw it: a relative name (runs before inputs were recorded
    absolute) is relative to the directory the run was started in."""
    return Path(manifest.get("cwd") or ".") / name


def _absolute_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's input rows with local files named absolutely (valid from any directory)."""
    return [
        row
        if "://" in str(row.get("file", "")) or Path(str(row.get("file", ""))).is_absolute()
        else {**row, "file": str(_input_path(str(row["file"]), manifest).absolute())}
        for row in manifest.get("inputs", [])
    ]


def _finish_merge(
    run_dir: Path,
    config: Config,
    sources: list[Path],
    merged: dict[str, Any],
    inputs: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    datasets: dict[str, Any],
    wall: float,
    started: float,
) -> dict[str, Any]:
    handler = attach_log_file(run_dir, "merge.log")
    try:
        write_config(run_dir, config)
        result = ProcessingResult(
            merged,
            [],
            {"merged_from": [str(s) for s in sources]},
            wall + (time.perf_counter() - started),
            recorded_inputs=inputs,
            recorded_failures=failures,
        )
        manifest = finish_run(
            run_dir,
            config,
            result,
            release=run_release(config),
            context={
                **run_context(),
                "mode": "merge",
                "run_dir": str(run_dir),
                "merged_from": [str(s) for s in sources],
            },
            datasets=list(datasets.values()),
        )
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    return manifest


__all__ = ["KNOWN_ERRORS", "dispatch", "known_cause", "one_line"]
