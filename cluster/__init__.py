"""Dask cluster factories: local, and batch-system workers through dask-jobqueue.

Names are loaded on first use, so ``cluster.config`` (the config models) can be imported
without importing dask-jobqueue.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchCluster": "cluster.batch",
    "JobTracker": "cluster.batch",
    "make_batch_cluster": "cluster.batch",
    "scheduler_host": "cluster.batch",
    "ClusterError": "cluster.errors",
    "ClusterStartError": "cluster.errors",
    "delete_jobs": "cluster.jobs",
    "ensure_jobs_gone": "cluster.jobs",
    "job_states": "cluster.jobs",
    "make_local_cluster": "cluster.local",
    "open_cluster": "cluster.session",
    "wait_for_workers": "cluster.session",
    "ClusterConfig": "cluster.config",
    "LocalClusterConfig": "cluster.config",
    "BatchClusterConfig": "cluster.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cluster' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
