"""Dask cluster factories: local, and batch-system workers through dask-jobqueue."""

from cluster.batch import BatchCluster, JobTracker, make_batch_cluster, scheduler_host
from cluster.errors import ClusterStartError
from cluster.jobs import delete_jobs, ensure_jobs_gone, job_states
from cluster.local import make_local_cluster
from cluster.session import open_cluster, wait_for_workers

__all__ = [
    "BatchCluster",
    "ClusterStartError",
    "JobTracker",
    "delete_jobs",
    "ensure_jobs_gone",
    "job_states",
    "make_batch_cluster",
    "make_local_cluster",
    "open_cluster",
    "scheduler_host",
    "wait_for_workers",
]
