"""A distributed.LocalCluster on this machine, from the ``cluster.local`` config section."""

from __future__ import annotations

import logging

import dask
import distributed
from dask.system import CPU_COUNT

from cluster.config import LocalClusterConfig
from cluster.worker_env import forget_dask_trim_setting, local_worker_dask_config

logger = logging.getLogger(__name__)

#: Local schedulers and workers listen on loopback only.
LOCAL_HOST = "127.0.0.1"
#: module run in every local worker process at start (it ignores SIGINT)
WORKER_PRELOAD = "cluster.worker_signals"


def default_local_workers(threads_per_worker: int) -> int:
    """As many single-process workers as the cores available to us allow (at least one)."""
    return max(1, CPU_COUNT // threads_per_worker)


def make_local_cluster(
    cfg: LocalClusterConfig, n_workers: int | None = None
) -> distributed.LocalCluster:
    """Start a process-based LocalCluster bound to 127.0.0.1.

    Workers: ``n_workers``, else ``cfg.n_workers``, else cores // threads_per_worker.
    The dashboard listens on ``cfg.dashboard_address`` (a busy port is replaced by a free one).
    Workers keep glibc's adaptive malloc thresholds (:mod:`cluster.worker_env`).
    """
    workers = n_workers or cfg.n_workers or default_local_workers(cfg.threads_per_worker)
    forget_dask_trim_setting()
    with dask.config.set(local_worker_dask_config()):
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=cfg.threads_per_worker,
            processes=True,
            memory_limit=cfg.memory_limit,
            host=LOCAL_HOST,
            dashboard_address=cfg.dashboard_address,
            preload=[WORKER_PRELOAD],  # workers ignore Ctrl-C: the driver shuts them down
        )
    logger.info(
        "local cluster: %d workers x %d threads, scheduler %s",
        workers,
        cfg.threads_per_worker,
        cluster.scheduler_address,
    )
    return cluster
