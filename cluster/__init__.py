"""Dask cluster factories: local, and batch-system workers through dask-jobqueue."""
