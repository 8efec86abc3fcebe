"""Command line of ``bumpnet-masses`` (and of the ``runner.py`` shim): parse options, pick the
mode, map failures to exit codes."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from processor._version import __version__
from processor.config import Config, ConfigError, load_config
from processor.configdiff import config_diff, describe_diff
from processor.errors import PlotsError, RunDirLockedError, RunInterrupted, StorageError

log = logging.getLogger("bumpnet")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
#: another run holds the run directory's lock
EXIT_LOCKED = 4
#: a checkpoint or output write failed (disk full, read-only, quota); --resume continues
EXIT_STORAGE = 5
#: histograms and manifest are complete but the plots failed (redo them with --plots-only), or
#: --plots-only refused (a file the plots need is missing or unreadable)
EXIT_PLOTS = 6
#: interrupted by Ctrl-C (SIGINT) or SIGTERM (batch walltime): 128 + signal number
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM


def build_parser() -> argparse.ArgumentParser:
    """The runner's argument parser (the seed's options plus ours).

    The program name is taken from ``sys.argv[0]``: ``bumpnet-masses`` for the installed
    command, ``runner.py`` for the checkout's shim.
    """
    p = argparse.ArgumentParser(
        description="ATLAS Open Data -> invariant-mass histograms for BumpNet (coffea + Dask).",
        epilog="Exit codes: 0 success, 2 usage or config error, 3 finished but some inputs "
        "failed (result marked partial), 4 the run directory is locked by another run, 5 a "
        "checkpoint/output write failed (disk full, read-only; --resume continues), 6 results "
        "written but the plots failed, or --plots-only refused (redo with --plots-only), 130 Ctrl-C, "
        "143 SIGTERM (walltime; --resume continues), 1 anything else.",
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
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "--write-config",
        metavar="PATH",
        help="write the commented default config.yaml to PATH ('-' = stdout) for editing, then exit",
    )
    return p


def write_config(path: str) -> int:
    """--write-config: the packaged default config to ``path`` or stdout; returns the exit code."""
    from processor.resources import default_config_text, write_default_config

    if path == "-":
        sys.stdout.write(default_config_text())
        return EXIT_OK
    try:
        target = write_default_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote the default config to {target}; edit it, then pass --config {target}")
    return EXIT_OK


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


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.max_files is not None:
        overrides["parsing_task_config.max_files_to_process"] = args.max_files
    if args.input:
        overrides["parsing_task_config.inputs"] = list(args.input)
    if args.offline:
        overrides["parsing_task_config.offline"] = True
    return overrides


#: keys a --resume may change: where the workers run, not what they compute
RESUME_MAY_DIFFER = ("cluster", "parsing_task_config.offline")


def resolve_config(args: argparse.Namespace) -> Config:
    """Load the config file (or defaults) and apply command-line overrides.

    ``--resume DIR`` uses exactly DIR's recorded config.yaml; a ``--config``/``--input``/
    ``--max-files`` that changes anything but the cluster section is an error naming the keys.
    """
    overrides = _overrides(args)
    if args.resume:
        recorded_path = Path(args.resume) / "config.yaml"
        if not recorded_path.is_file():
            raise ConfigError(
                f"--resume {args.resume}: not a run directory (no config.yaml); pass the directory of the interrupted run"
            )
        recorded = load_config(recorded_path)
        if args.config is None and not overrides:
            return recorded
        given = load_config(args.config or recorded_path, overrides)
        diff = config_diff(recorded, given, ignore=RESUME_MAY_DIFFER)
        if diff:
            raise ConfigError(
                f"--resume {args.resume}: the options differ from the recorded run in "
                + describe_diff(recorded, given, diff, ("recorded", "given"))
                + "; drop --config/--input to resume the recorded run, or start a new run"
            )
        return given
    path = args.config
    if path is None and Path("config.yaml").is_file() and not args.demo:
        path = "config.yaml"
    return load_config(path, overrides)


class _SigtermHandler:
    """SIGTERM (what batch systems send at walltime) raises :class:`RunInterrupted` in the
    main thread, so it unwinds exactly like Ctrl-C: cluster and jobs shut down, checkpoints kept."""

    def __init__(self) -> None:
        self.previous: Any = None

    def __enter__(self) -> _SigtermHandler:
        def handler(signum: int, frame: Any) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one unwind, not a second one inside it
            raise RunInterrupted("SIGTERM")

        self.previous = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self.previous or signal.SIG_DFL)


def _interrupted_line(exc: KeyboardInterrupt) -> str:
    signame = getattr(exc, "signame", "SIGINT")
    run_dir = getattr(exc, "run_dir", None)
    what = "terminated (SIGTERM, e.g. batch walltime)" if signame == "SIGTERM" else "interrupted"
    head = f"error: {what}; the cluster and its jobs were shut down"
    if run_dir:
        return (
            f"{head}, finished chunks are checkpointed: continue with runner.py --resume {run_dir}"
        )
    return head


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(args, parser)
    if args.write_config is not None:
        return write_config(args.write_config)
    import distributed  # noqa: F401  (its import configures logging; ours must come after)

    from processor.run import app  # heavy imports only after argument parsing

    setup_logging(args.log_level)

    try:
        with _SigtermHandler():
            config = resolve_config(args)
            return app.dispatch(args, config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunDirLockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except KeyboardInterrupt as exc:
        print(_interrupted_line(exc), file=sys.stderr)
        return EXIT_SIGTERM if getattr(exc, "signame", "") == "SIGTERM" else EXIT_SIGINT
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
        if isinstance(known, StorageError):
            return EXIT_STORAGE
        if isinstance(known, RunDirLockedError):
            return EXIT_LOCKED
        if isinstance(known, PlotsError):
            return EXIT_PLOTS
        return EXIT_ERROR
