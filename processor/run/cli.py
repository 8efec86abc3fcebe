"""Command line of runner.py: parse options, pick the mode, map failures to exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from processor.config import Config, ConfigError, load_config

log = logging.getLogger("bumpnet")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    """The runner's argument parser (the seed's options plus ours)."""
    p = argparse.ArgumentParser(
        prog="runner.py",
        description="ATLAS Open Data -> invariant-mass histograms for BumpNet (coffea + Dask).",
        epilog="Exit codes: 0 success, 2 usage or config error, 3 finished but some inputs "
        "failed (result marked partial), 1 anything else.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="run on a local Dask cluster (default)")
    where.add_argument(
        "--pbs", action="store_true", help="run Dask workers as PBS jobs (cluster.pbs)"
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="config file (default: ./config.yaml if present, else built-in defaults)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate config, print the plan (datasets, files, entries when local); write nothing",
    )
    p.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    p.add_argument(
        "--run-dir", metavar="DIR", help="use this directory instead of creating a new one"
    )
    p.add_argument("--plots-only", action="store_true", help="re-generate the plots of --run-dir")
    p.add_argument(
        "--merge-only",
        nargs="*",
        metavar="RUN_DIR",
        default=None,
        help="add the raw histograms of these run directories (default: the shards under --run-dir), redo post-processing and plots",
    )
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue an interrupted run in DIR: finished chunks are reloaded from DIR/checkpoints",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="generate (once, cached) and process the built-in synthetic demo sample; offline",
    )
    p.add_argument(
        "--input",
        nargs="+",
        metavar="PATH_OR_GLOB",
        help="process these local files, globs or URLs instead of the configured release",
    )
    p.add_argument(
        "--max-files",
        type=int,
        metavar="N",
        help="at most N files per dataset (overrides max_files_to_process)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local: worker processes; --pbs: number of worker jobs",
    )
    p.add_argument(
        "--offline", action="store_true", help="use only cached release metadata; never ask the API"
    )
    p.add_argument(
        "--executor",
        choices=["dask", "iterative", "futures"],
        default="dask",
        help="dask (default; local or PBS cluster), or in-process iterative/futures executors",
    )
    p.add_argument(
        "--batch-job-index",
        type=int,
        metavar="N",
        help="batch shard index, 1-based (set by cluster/submit.sh)",
    )
    p.add_argument(
        "--total-batch-jobs",
        type=int,
        metavar="N",
        help="number of batch shards (set by cluster/submit.sh)",
    )
    return p


def setup_logging(level: str) -> None:
    """Console logging for the CLI."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("distributed", "bokeh", "tornado", "asyncio", "numba", "fsspec"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, level)))


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.plots_only and not args.run_dir:
        parser.error("--plots-only needs --run-dir DIR")
    if (args.batch_job_index is None) != (args.total_batch_jobs is None):
        parser.error("--batch-job-index and --total-batch-jobs go together")
    if args.total_batch_jobs is not None and not 1 <= args.batch_job_index <= args.total_batch_jobs:
        parser.error("--batch-job-index must be between 1 and --total-batch-jobs")
    if args.batch_job_index is not None and not args.run_dir:
        parser.error("batch shards need --run-dir (the shared run directory)")
    if args.max_files is not None and args.max_files < 1:
        parser.error("--max-files must be >= 1")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.resume and args.run_dir:
        parser.error("--resume DIR already names the run directory; drop --run-dir")


def resolve_config(args: argparse.Namespace) -> Config:
    """Load the config file (or defaults) and apply command-line overrides."""
    path = args.config
    if path is None and args.resume:
        path = str(Path(args.resume) / "config.yaml")
    if path is None and Path("config.yaml").is_file() and not args.demo:
        path = "config.yaml"
    overrides: dict[str, Any] = {}
    if args.max_files is not None:
        overrides["parsing_task_config.max_files_to_process"] = args.max_files
    if args.input:
        overrides["parsing_task_config.inputs"] = list(args.input)
    if args.offline:
        overrides["parsing_task_config.offline"] = True
    return load_config(path, overrides)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(args, parser)
    import distributed  # noqa: F401  (its import configures logging; ours must come after)

    from processor.run import app  # heavy imports only after argument parsing

    setup_logging(args.log_level)

    try:
        config = resolve_config(args)
        return app.dispatch(args, config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted; the cluster and its jobs were shut down", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # one line on stderr; the traceback goes to the log at DEBUG
        known = app.known_cause(exc)
        log.debug("run failed", exc_info=True)
        if known is None:
            print(
                f"error: {exc.__class__.__name__}: {app.one_line(exc)} (rerun with --log-level DEBUG for the traceback)",
                file=sys.stderr,
            )
        else:
            print(f"error: {app.one_line(known)}", file=sys.stderr)
        return EXIT_ERROR
