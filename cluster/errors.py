"""Errors raised while starting or using a Dask cluster."""

from __future__ import annotations


class ClusterError(RuntimeError):
    """Base of the cluster package's errors (counted as ``processor.errors.BumpnetError``)."""


class ClusterStartError(ClusterError):
    """The cluster's workers did not start; the message names the cause and what to check."""


class JobSubmitError(ClusterError):
    """The submit command failed; the JobTracker records it and start-up reports it in one line."""
