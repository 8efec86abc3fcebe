"""Dask workers as batch jobs: dask-jobqueue PBS/Slurm/HTCondor clusters from ``cluster.pbs``.

On top of dask-jobqueue this module

* records every submitted job ID and every failed submission (dask-jobqueue only logs a
  failing ``qsub`` during ``scale()``), so that start-up can fail with a clear message and
  close can verify that no job is left behind;
* turns TLS on by default, with temporary certificates written to ``run_dir/.dask-tls``;
* binds the scheduler to one address of this host (never all interfaces);
* submits from the log directory, so batch systems that ignore ``#PBS -e/-o`` directories
  (Slurm's PBS wrapper) also write the worker logs there.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import distributed
from distributed.core import Status
from distributed.security import Security
from distributed.utils import get_ip, get_ip_interface

from cluster._jobqueue import HTCondorCluster, Job, JobQueueCluster, PBSCluster, SLURMCluster
from cluster.config import BatchClusterConfig, walltime_seconds
from cluster.errors import JobSubmitError
from cluster.jobs import ensure_jobs_gone
from cluster.worker_env import batch_job_prologue

logger = logging.getLogger(__name__)

_CLUSTER_CLASSES: dict[str, type[JobQueueCluster]] = {
    "pbs": PBSCluster,
    "slurm": SLURMCluster,
    "htcondor": HTCondorCluster,
}
#: Where the worker certificates go, inside the run directory (must be visible to the jobs).
TLS_DIRNAME = ".dask-tls"


@dataclass
class JobTracker:
    """Job IDs submitted and submission errors seen by one cluster (thread-safe)."""

    submitted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_job(self, job_id: str) -> None:
        """Remember a submitted job."""
        with self._lock:
            if job_id not in self.submitted:
                self.submitted.append(job_id)

    def record_error(self, message: str) -> None:
        """Remember a failed submission."""
        with self._lock:
            self.errors.append(message)

    def snapshot(self) -> tuple[list[str], list[str]]:
        """(submitted job IDs, submission errors), copied."""
        with self._lock:
            return list(self.submitted), list(self.errors)


class _DropReportedSubmitErrors(logging.Filter):
    """Drop tornado's traceback of a failed submission (open_cluster raises it as one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, JobSubmitError)


class _DropAbandonedTimeouts(logging.Filter):
    """Drop asyncio's "Future exception was never retrieved" for tornado's bare timeouts.

    When start-up fails fast (a refused ``qsub``) and the client and cluster are closed
    at once, a ``tornado.gen.with_timeout`` wait inside distributed (its batched-send
    waker) can time out after its waiter was already gone; asyncio then logs an ERROR with
    ``TimeoutError('Timeout')`` when the future is collected. Nobody waits on it, so it
    changes no result -- but it is a second, misleading error line after the real one.
    Any other never-retrieved exception is still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        abandoned = str(record.msg).startswith("Future exception was never retrieved")
        return not (abandoned and isinstance(exc, asyncio.TimeoutError) and str(exc) == "Timeout")


logging.getLogger("tornado.application").addFilter(_DropReportedSubmitErrors())
logging.getLogger("asyncio").addFilter(_DropAbandonedTimeouts())


def _one_line(text: str, limit: int = 400) -> str:
    """A command's output as one line: its 'error:' lines if it has any, else all lines."""
    lines = [part.strip(" '\"") for part in text.splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if re.search(r"\berror:", line, re.IGNORECASE)]
    line = "; ".join(errors or lines)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _tracked_job_class(
    base: type[Job], tracker: JobTracker, submit_dir: Path, submit_args: list[str]
) -> type[Job]:
    """A subclass of ``base`` that submits from ``submit_dir`` and reports to ``tracker``."""

    class TrackedJob(base):  # type: ignore[misc, valid-type]
        async def _submit_job(self, script_filename: str) -> str:
            cmd = [*shlex.split(self.submit_command), *submit_args, script_filename]
            shown = " ".join(cmd[:-1])
            try:
                proc = await asyncio.create_subprocess_exec(
                    *cmd,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    cwd=submit_dir,
                )
            except OSError as exc:
                raise JobSubmitError(f"cannot run `{shown}`: {exc}") from exc
            out, err = await proc.communicate()
            if proc.returncode != 0:
                detail = _one_line(err.decode(errors="replace") or out.decode(errors="replace"))
                raise JobSubmitError(f"`{shown}` exited with {proc.returncode}: {detail}")
            return out.decode()

        async def start(self) -> None:
            try:
                await super().start()
            except Exception as exc:
                tracker.record_error(_one_line(str(exc)))
                self.status = Status.failed  # SpecCluster.close() asserts this
                raise
            finally:
                if self.job_id:
                    tracker.record_job(self.job_id)

    TrackedJob.__name__ = TrackedJob.__qualname__ = f"Tracked{base.__name__}"
    return TrackedJob


@dataclass
class BatchCluster:
    """A dask-jobqueue cluster plus what clients and clean-up need."""

    cluster: JobQueueCluster
    security: Security | None
    kind: str
    log_dir: Path
    tracker: JobTracker

    @property
    def scheduler_address(self) -> str:
        """The scheduler's address (``tls://`` when TLS is on)."""
        return self.cluster.scheduler_address

    @property
    def dashboard_link(self) -> str:
        """URL of the Dask dashboard."""
        return self.cluster.dashboard_link

    @property
    def job_ids(self) -> list[str]:
        """Every job ID this cluster has submitted so far."""
        return self.tracker.snapshot()[0]

    def client(self, **kwargs: Any) -> distributed.Client:
        """A Client of this cluster with the right TLS credentials."""
        return distributed.Client(self.cluster, security=self.security, **kwargs)

    def close(self, timeout_s: float = 30.0) -> dict[str, str]:
        """Close the cluster, then make sure none of its jobs remains (qdel if needed).

        Returns the jobs that could not be removed (ID -> state), normally none.
        """
        try:
            self.cluster.close(timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - clean-up must go on
            logger.warning("closing the batch cluster failed: %s", exc)
        finally:
            self._remove_certificates()
            leftover = ensure_jobs_gone(self.kind, self.job_ids, timeout_s)
        return leftover

    def _remove_certificates(self) -> None:
        """Delete the worker certificate files from the shared directory."""
        for attr in ("_job_ca_file", "_job_cert", "_job_key"):
            handle = getattr(self.cluster, attr, None)
            if handle is not None:
                handle.close()

    def __enter__(self) -> BatchCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scheduler_host(cfg: BatchClusterConfig) -> str:
    """The one address of this host the scheduler listens on.

    ``scheduler_host`` if set, else the address of ``interface``, else the address this
    host uses to reach the outside (never 0.0.0.0).
    """
    if cfg.scheduler_host:
        return cfg.scheduler_host
    if cfg.interface:
        return get_ip_interface(cfg.interface)
    return get_ip()


def _dashboard_address(address: str, host: str) -> str:
    """':8787' -> 'host:8787', so the dashboard does not listen on every interface."""
    return f"{host}{address}" if address.startswith(":") else address


def _job_kwargs(cfg: BatchClusterConfig, log_dir: Path, job_directory: Path) -> dict[str, Any]:
    """dask-jobqueue keyword arguments for ``cfg.kind``."""
    prologue = [
        f"cd {shlex.quote(str(job_directory))}",
        *batch_job_prologue(),  # glibc's adaptive malloc thresholds (cluster.worker_env)
        *cfg.job_script_prologue,
    ]
    common: dict[str, Any] = {
        "cores": cfg.cores,
        "memory": cfg.memory,
        "processes": cfg.processes,
        "interface": cfg.interface,
        "python": cfg.python or sys.executable,
        "log_directory": str(log_dir),
        "job_script_prologue": prologue,
        "worker_extra_args": worker_lifetime_args(cfg),
    }
    if cfg.kind == "htcondor":
        extra = dict(_split_directive(d) for d in cfg.job_extra_directives)
        return {**common, "disk": cfg.memory, "job_extra_directives": extra}
    common.update(
        queue=cfg.queue,
        account=cfg.account,
        walltime=cfg.walltime,
        job_extra_directives=list(cfg.job_extra_directives),
    )
    if cfg.kind == "pbs":
        common["resource_spec"] = cfg.resource_spec
    elif cfg.resource_spec:
        logger.warning("resource_spec is a PBS setting; ignored for kind '%s'", cfg.kind)
    return common


def worker_lifetime_args(cfg: BatchClusterConfig) -> list[str]:
    """``dask worker`` options that retire a worker before its job's walltime ends.

    dask-jobqueue's recipe for walltime-limited jobs: ``--lifetime`` = walltime minus
    ``lifetime_margin_minutes``, ``--lifetime-stagger`` so that workers leave one by one,
    and (if configured) ``--lifetime-restart``. Empty for HTCondor (no walltime) or with the
    margin set to null.
    """
    if cfg.kind == "htcondor" or cfg.lifetime_margin_minutes is None:
        return []
    lifetime = walltime_seconds(cfg.walltime) - round(cfg.lifetime_margin_minutes * 60)
    args = [
        "--lifetime",
        f"{lifetime}s",
        "--lifetime-stagger",
        f"{round(cfg.lifetime_stagger_minutes * 60)}s",
    ]
    if cfg.lifetime_restart:
        args.append("--lifetime-restart")
    return args


def ssh_tunnel_command(dashboard_link: str, login_node: str | None = None) -> str | None:
    """The ``ssh -N -L PORT:HOST:PORT user@node`` command for a laptop to reach the dashboard.

    ``login_node`` defaults to ``<user>@<this host's FQDN>``: the scheduler (and its dashboard)
    run in this process, so this host is where the tunnel goes. None if the link has no port.
    """
    import getpass
    import socket
    from urllib.parse import urlsplit

    if login_node is None:
        login_node = f"{getpass.getuser()}@{socket.getfqdn()}"
    parts = urlsplit(dashboard_link)
    if not parts.hostname or not parts.port:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"ssh -N -L {parts.port}:{host}:{parts.port} {login_node}"


def _split_directive(directive: str) -> tuple[str, str]:
    """HTCondor 'key = value' -> ('key', 'value')."""
    key, _, value = directive.partition("=")
    return key.strip(), value.strip()


def _submit_args(kind: str) -> list[str]:
    """Extra submit-command arguments: the job name for PBS, so log files are named after it."""
    if kind != "pbs":
        return []
    name = dask.config.get("jobqueue.pbs.name", None)
    return ["-N", name] if name else []


def remove_tls_files(run_dir: Path) -> int:
    """Delete ``run_dir/.dask-tls`` (the workers' copies of a TLS key and certificates);
    returns the number of files removed. A killed ``--pbs`` run leaves them behind (dask-jobqueue
    deletes them only when its cluster object is closed), so every run start and end calls this
    (under the run directory's lock: no live run is using them)."""
    tls_dir = Path(run_dir) / TLS_DIRNAME
    if not tls_dir.is_dir():
        return 0
    n = sum(1 for p in tls_dir.rglob("*") if p.is_file())
    shutil.rmtree(tls_dir, ignore_errors=True)
    if n:
        logger.info("removed %d TLS key/certificate file(s) left in %s", n, tls_dir)
    return n


def _tls(cfg: BatchClusterConfig, run_dir: Path) -> tuple[Security | None, Path | None]:
    """Temporary TLS credentials and the shared directory for the workers' copies (emptied of
    any left by a killed run first)."""
    remove_tls_files(run_dir)
    if not cfg.tls:
        return None, None
    tls_dir = run_dir / TLS_DIRNAME
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Security.temporary(), tls_dir


def make_batch_cluster(
    cfg: BatchClusterConfig,
    *,
    run_dir: Path,
    log_dir: Path | None = None,
    job_directory: Path | None = None,
) -> BatchCluster:
    """Create (but do not scale) the dask-jobqueue cluster described by ``cfg``.

    ``run_dir`` must be on a filesystem the jobs see (it holds the TLS files); worker logs go
    to ``log_dir``, else ``cfg.log_directory``, else ``run_dir/logs``. Jobs ``cd`` into
    ``job_directory`` (default: the current directory) and use ``cfg.python`` or this
    interpreter, so the pip-installed project imports on the workers as it does here.
    """
    run_dir = Path(run_dir).resolve()
    logs = Path(log_dir or cfg.log_directory or run_dir / "logs").resolve()
    logs.mkdir(parents=True, exist_ok=True)
    security, tls_dir = _tls(cfg, run_dir)
    tracker = JobTracker()
    cluster_cls = _CLUSTER_CLASSES[cfg.kind]
    host = scheduler_host(cfg)
    cluster = cluster_cls(
        job_cls=_tracked_job_class(cluster_cls.job_cls, tracker, logs, _submit_args(cfg.kind)),
        security=security,
        shared_temp_directory=str(tls_dir) if tls_dir else None,
        scheduler_options={
            "host": host,
            "dashboard_address": _dashboard_address(cfg.dashboard_address, host),
        },
        **_job_kwargs(cfg, logs, Path(job_directory or Path.cwd()).resolve()),
    )
    logger.info(
        "%s cluster: scheduler %s, worker logs in %s", cfg.kind, cluster.scheduler_address, logs
    )
    return BatchCluster(cluster, security, cfg.kind, logs, tracker)
