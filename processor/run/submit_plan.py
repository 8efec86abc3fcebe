"""cluster/submit.sh's planning step: check its settings and config, name the run directory.

``python -m processor.run.submit_plan`` reads submit.sh's environment (``NUM_JOBS``,
``EXTRA_ARGS``, ``RUN_DIR``, ``CONFIG``, ``FROZEN_TMP``, ``SUBMIT_DRY_RUN``), validates the
runner command line and config exactly as ``runner.py`` would, writes the resolved config for
the jobs, and prints ``KEY=value`` lines (shell-quoted) for submit.sh to ``eval``. Exit 2 with
one line on stderr for any bad setting.
"""

from __future__ import annotations

import glob
import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from processor.errors import ConfigError
from processor.run.cli import build_parser, resolve_config
from processor.run.rundir import default_run_dir


def fail(code: int, msg: str) -> NoReturn:
    """Print one error line and exit."""
    print(f"submit.sh: error: {msg}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Plan the submission (see the module docstring)."""
    env = os.environ
    dry_run = env["SUBMIT_DRY_RUN"] == "1"
    try:
        extra = shlex.split(env.get("EXTRA_ARGS", ""))
    except ValueError as exc:
        fail(2, f"EXTRA_ARGS: {exc}")

    parser = build_parser()
    parser.set_defaults(executor=None)  # tell "not given" from the default
    try:
        args = parser.parse_args(extra)
    except SystemExit:
        fail(2, "EXTRA_ARGS is not a valid runner.py command line (see the message above)")
    ours = {
        "run_dir": "--run-dir (set RUN_DIR)",
        "config": "--config (set CONFIG)",
        "executor": "--executor (set EXECUTOR)",
        "batch_job_index": "--batch-job-index",
        "total_batch_jobs": "--total-batch-jobs",
        "merge_only": "--merge-only",
        "resume": "--resume",
        "plots_only": "--plots-only",
        "dry_run": "--dry-run (use submit.sh --dry-run)",
        "pbs": "--pbs (these jobs need no scheduler)",
    }
    given = [text for key, text in ours.items() if getattr(args, key) not in (None, False)]
    if given:
        fail(2, f"EXTRA_ARGS must not contain {', '.join(given)}: submit.sh sets those itself")

    args.config = env.get("CONFIG") or None
    try:
        config = resolve_config(args)
    except ConfigError as exc:
        fail(2, str(exc))

    for item in config.parsing_task_config.inputs or []:
        item = str(item)
        if "://" not in item and not glob.glob(item) and not Path(item).exists():
            fail(
                2,
                f"input '{item}' matches no file (relative to {Path.cwd()}); fix --input / parsing_task_config.inputs",
            )

    run_dir = env.get("RUN_DIR") or None
    if run_dir is not None:
        p = Path(run_dir)
        if (p / "manifest.json").exists() or (p / "shards").exists() or (p / "jobs").exists():
            fail(
                2,
                f"RUN_DIR={run_dir} already holds a run (manifest.json, shards/ or jobs/); choose a new directory",
            )
    if run_dir is None:  # the runner's own naming rule
        run_dir = str(default_run_dir(config, "YYYYMMDD_HHMMSS" if dry_run else None))
    path = Path(run_dir).absolute()
    if not dry_run:  # the run directory itself is created by the shell once every check passed
        Path(env["FROZEN_TMP"]).write_text(
            f"# resolved configuration for the jobs of cluster/submit.sh (CONFIG={env.get('CONFIG') or 'default'})\n"
            + config.to_yaml()
        )

    pbs = config.cluster.pbs
    out = {
        "RUN_DIR": str(path),
        "CFG_QUEUE": pbs.queue or "",
        "CFG_ACCOUNT": pbs.account or "",
        "CFG_WALLTIME": pbs.walltime,
        "CFG_NCPUS": str(pbs.cores),
        "CFG_MEM": pbs.memory,
        "CFG_RESOURCE_SPEC": pbs.resource_spec or "",
        "CFG_PYTHON": pbs.python or "",
        "CFG_PROLOGUE": "\n".join(pbs.job_script_prologue),
        "EXTRA_Q": shlex.join(extra),
        "LOG_LEVEL": args.log_level,
        "SELF_PYTHON": sys.executable,
    }
    for key, value in out.items():
        print(f"{key}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
