"""Open a cluster for a run: start, scale, wait for workers, yield a Client, always clean up."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import distributed

from cluster.batch import BatchCluster, make_batch_cluster
from cluster.config import BatchClusterConfig, ClusterConfig, LocalClusterConfig
from cluster.errors import ClusterStartError
from cluster.jobs import job_states
from cluster.local import make_local_cluster

logger = logging.getLogger(__name__)

#: Local workers are started before LocalCluster returns; this only bounds a hang.
LOCAL_WORKER_TIMEOUT_S = 60.0
#: How often to ask the batch system whether our jobs are still there while waiting.
JOB_CHECK_INTERVAL_S = 3.0


def _log_tail(log_dir: Path, job_id: str) -> str:
    """The last non-empty line of the job's stderr/stdout log in ``log_dir``, or ''."""
    for path in sorted(log_dir.glob(f"*{job_id}*"), key=lambda p: ".e" not in p.name):
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
        lines = [line for line in lines if line]
        if lines:
            return f"'{lines[-1]}' ({path})"
    return ""


def _check_submissions(batch: BatchCluster) -> None:
    """Raise if a job submission failed (dask-jobqueue only logs it)."""
    _, errors = batch.tracker.snapshot()
    if errors:
        raise ClusterStartError(
            f"submitting a worker job failed: {errors[0]} -- check queue, "
            "account, resource_spec and walltime in cluster.pbs, and that qsub works in this shell"
        )


def _check_jobs_alive(batch: BatchCluster) -> None:
    """Raise if a submitted job already ended although its worker never connected."""
    submitted, _ = batch.tracker.snapshot()
    if not submitted:
        return
    try:
        alive = job_states(batch.kind, submitted)
    except RuntimeError as exc:
        logger.warning("cannot query the batch system: %s", exc)
        return
    ended = [job for job in submitted if job not in alive]
    if ended:
        tail = _log_tail(batch.log_dir, ended[0])
        raise ClusterStartError(
            f"batch job(s) {', '.join(ended)} ended before their workers connected"
            + (f"; last log line {tail}" if tail else "")
            + f" -- check the worker logs in {batch.log_dir}"
        )


def _timeout_message(have: int, n: int, timeout_s: float, cluster: object) -> str:
    """One line saying how far start-up got and what to check."""
    head = f"only {have} of {n} Dask workers connected within {timeout_s:.0f} s"
    if not isinstance(cluster, BatchCluster):
        return head + " -- check memory_limit and the worker output above"
    submitted, _ = cluster.tracker.snapshot()
    try:
        states = job_states(cluster.kind, submitted)
        jobs = ", ".join(f"{j}={states.get(j, 'gone')}" for j in submitted) or "none submitted"
    except RuntimeError as exc:
        jobs = f"unknown ({exc})"
    return (
        f"{head}; jobs: {jobs} -- queued (Q) jobs have not been started by the batch system "
        f"(`qstat -f ID` says why); for running (R) ones see {cluster.log_dir} and check that "
        f"the workers can reach {cluster.scheduler_address} (interface/scheduler_host)"
    )


def wait_for_workers(
    client: distributed.Client,
    n: int,
    timeout_s: float,
    cluster: BatchCluster | distributed.LocalCluster | None = None,
) -> float:
    """Wait until ``n`` workers are connected; return the seconds it took.

    With a BatchCluster, failed submissions and jobs that end before connecting raise at
    once. Raises ClusterStartError (one line: cause and what to check) on failure or timeout.
    """
    start = time.monotonic()
    next_job_check = start + JOB_CHECK_INTERVAL_S
    while True:
        have = len(client.nthreads())
        now = time.monotonic()
        if have >= n:
            return now - start
        if isinstance(cluster, BatchCluster):
            _check_submissions(cluster)
            if now >= next_job_check:
                _check_jobs_alive(cluster)
                next_job_check = now + JOB_CHECK_INTERVAL_S
        if now - start >= timeout_s:
            raise ClusterStartError(_timeout_message(have, n, timeout_s, cluster))
        time.sleep(0.25)


def _close_quietly(obj: distributed.Client | distributed.LocalCluster | None) -> None:
    """Close a client or cluster; log instead of raising so clean-up goes on."""
    if obj is None:
        return
    try:
        obj.close(timeout=30)
    except Exception as exc:  # noqa: BLE001
        logger.warning("closing %s failed: %s", type(obj).__name__, exc)


def _scale(batch: BatchCluster, cfg: BatchClusterConfig, n_jobs: int | None) -> int:
    """Request the jobs (fixed or adaptive); return how many workers to wait for."""
    if n_jobs is None and cfg.adaptive is not None:
        batch.cluster.adapt(
            minimum_jobs=cfg.adaptive.minimum_jobs, maximum_jobs=cfg.adaptive.maximum_jobs
        )
        jobs = cfg.adaptive.minimum_jobs
        logger.info("adaptive: %d to %d jobs", jobs, cfg.adaptive.maximum_jobs)
    else:
        jobs = n_jobs or cfg.n_jobs
        batch.cluster.scale(jobs=jobs)
        logger.info("submitting %d worker jobs", jobs)
    return jobs * cfg.processes


@contextmanager
def _local_session(cfg: LocalClusterConfig, n_workers: int | None) -> Iterator[distributed.Client]:
    cluster = client = None
    try:
        cluster = make_local_cluster(cfg, n_workers)
        client = distributed.Client(cluster)
        wait_for_workers(client, len(cluster.workers), LOCAL_WORKER_TIMEOUT_S, cluster)
        logger.info("Dask dashboard: %s", cluster.dashboard_link)
        yield client
    finally:
        _close_quietly(client)
        _close_quietly(cluster)


@contextmanager
def _batch_session(
    cfg: BatchClusterConfig, run_dir: Path, n_jobs: int | None, log_dir: Path | None
) -> Iterator[distributed.Client]:
    batch = make_batch_cluster(cfg, run_dir=run_dir, log_dir=log_dir)
    client = None
    try:
        n = _scale(batch, cfg, n_jobs)
        client = batch.client()
        logger.info("Dask dashboard: %s", batch.dashboard_link)
        waited = wait_for_workers(client, n, cfg.worker_timeout_s, batch)
        logger.info("%d workers connected after %.1f s", n, waited)
        yield client
    finally:
        _close_quietly(client)
        batch.close()


@contextmanager
def open_cluster(
    mode: Literal["local", "pbs"],
    cfg: ClusterConfig,
    *,
    run_dir: Path,
    n_workers: int | None = None,
    log_dir: Path | None = None,
) -> Iterator[distributed.Client]:
    """Start a cluster, wait for its workers and yield a Client; always shut everything down.

    ``mode='local'``: a LocalCluster from ``cfg.local`` with ``n_workers`` workers.
    ``mode='pbs'``: batch jobs from ``cfg.pbs`` (kind pbs/slurm/htcondor); ``n_workers`` is
    then the number of jobs (each runs ``cfg.pbs.processes`` workers) and overrides both
    ``n_jobs`` and ``adaptive``. On exit -- normal, exception or KeyboardInterrupt -- the
    client and cluster are closed and every submitted job is verified gone (qdel if needed).
    Raises ClusterStartError when the workers do not come up.
    """
    if mode == "local":
        session = _local_session(cfg.local, n_workers)
    elif mode == "pbs":
        session = _batch_session(cfg.pbs, Path(run_dir), n_workers, log_dir)
    else:
        raise ValueError(f"cluster mode must be 'local' or 'pbs', not {mode!r}")
    with session as client:
        yield client
