"""Run directories: layout, logging to logs/, atomic JSON/YAML writes, software versions."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from processor.config import Config
from processor.fsutil import atomic_path, atomic_write_json

SUBDIRS = ("histograms", "plots", "logs")
PACKAGES = (
    "bumpnet-masses",
    "coffea",
    "dask",
    "distributed",
    "dask-jobqueue",
    "uproot",
    "awkward",
    "vector",
    "hist",
    "numpy",
    "atlasopenmagic",
)


def default_run_dir(config: Config, stamp: str | None = None) -> Path:
    """The naming rule of new run directories: ``{base_output_dir}/{run_name}_{YYYYMMDD_HHMMSS}``,
    with ``_1``, ``_2``, ... appended when that name is taken (two runs in the same second)."""
    stamp = stamp or dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    base = Path(config.run_metadata.base_output_dir)
    path = base / f"{config.run_metadata.run_name}_{stamp}"
    n = 1
    while path.exists():
        path = base / f"{config.run_metadata.run_name}_{stamp}_{n}"
        n += 1
    return path


def new_run_dir(config: Config, run_dir: str | Path | None = None) -> Path:
    """``{base_output_dir}/{run_name}_{YYYYMMDD_HHMMSS}/`` (or ``run_dir``), with its subfolders."""
    path = default_run_dir(config) if run_dir is None else Path(run_dir)
    for sub in SUBDIRS:
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    atomic_write_json(path, data)


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def write_config(run_dir: Path, config: Config) -> Path:
    """Save the resolved config as run_dir/config.yaml."""
    path = run_dir / "config.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text("# resolved configuration of this run\n" + config.to_yaml())
    return path


def attach_log_file(run_dir: Path, name: str = "run.log") -> logging.Handler:
    """Send the root logger's records to run_dir/logs/<name> as well."""
    handler = logging.FileHandler(run_dir / "logs" / name)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def software_versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the numbers."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run_context() -> dict[str, Any]:
    """Who/where/how this run was started."""
    return {
        "command": sys.argv,
        "cwd": os.getcwd(),
        "host": platform.node(),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
