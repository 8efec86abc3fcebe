"""Run directories: layout, logging to logs/, atomic JSON/YAML writes, software versions."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import platform
import sys
from collections.abc import Iterator
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from processor.config import Config
from processor.errors import RunDirLockedError
from processor.fsutil import STORAGE_ERRNOS, atomic_path, atomic_write_json, storage_error

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
    "numba",
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


LOCK_NAME = ".lock"


def create_unique_run_dir(config: Config, stamp: str | None = None) -> Path:
    """Create ``{base_output_dir}/{run_name}_{stamp}`` atomically: ``mkdir`` without
    ``exist_ok``, retried with ``_1``, ``_2``, ... so two runs started in the same second never
    share a directory."""
    stamp = stamp or dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    base = Path(config.run_metadata.base_output_dir)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(base, exc) from None
    name = f"{config.run_metadata.run_name}_{stamp}"
    for n in range(10_000):
        path = base / (name if n == 0 else f"{name}_{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise storage_error(path, exc) from None
        return path
    raise RunDirLockedError(f"{base}: 10000 run directories named {name}_*; pass --run-dir")


def new_run_dir(config: Config, run_dir: str | Path | None = None) -> Path:
    """A new unique ``{base_output_dir}/{run_name}_{YYYYMMDD_HHMMSS}/`` (or ``run_dir``), with
    its subfolders."""
    path = create_unique_run_dir(config) if run_dir is None else Path(run_dir)
    try:
        for sub in SUBDIRS:
            (path / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise storage_error(path, exc) from None
        raise
    return path


@contextlib.contextmanager
def locked_run_dir(path: Path) -> Iterator[Path]:
    """Hold an exclusive OS lock (``fcntl.flock``) on ``path/.lock`` for the block.

    A second run on the same directory fails at once with :class:`RunDirLockedError`; the lock
    goes away with the process, so a killed run never leaves a stale lock behind.
    """
    lock_path = path / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise storage_error(lock_path, exc) from None
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise RunDirLockedError(
                f"{path} is in use by another run ({holder or 'unknown process'}); wait for it "
                "to finish or use another --run-dir"
            ) from None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(
                fd,
                f"pid {os.getpid()} on {platform.node()} since "
                f"{dt.datetime.now().isoformat(timespec='seconds')}\n".encode(),
                0,
            )
        yield path
    finally:
        os.close(fd)  # releases the flock


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


class _RunLogHandler(logging.FileHandler):
    """The run's log file; a record the storage refuses (disk full) is dropped silently: the
    error that matters reaches the console as one line, not as logging's own traceback."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        """Drop the record (logging would print a traceback to stderr)."""
        del record


def attach_log_file(run_dir: Path, name: str = "run.log") -> logging.Handler:
    """Send the root logger's records to run_dir/logs/<name> as well."""
    try:
        handler: logging.Handler = _RunLogHandler(run_dir / "logs" / name)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise storage_error(run_dir / "logs" / name, exc) from None
        raise
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
