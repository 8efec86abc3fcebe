"""Errors raised while starting or using a Dask cluster."""

from __future__ import annotations


class ClusterStartError(RuntimeError):
    """The cluster's workers did not start; the message names the cause and what to check."""
