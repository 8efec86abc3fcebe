"""Import dask-jobqueue without losing Ctrl-C.

dask_jobqueue.runner (imported by dask_jobqueue) replaces the SIGINT handler with
``sys.exit()`` at import time, so Ctrl-C raises SystemExit(None) -- exit code 0, and no
KeyboardInterrupt for callers, notebooks or clean-up code. Import it from here instead:
the previous handler (Python's default: KeyboardInterrupt) is put back.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def _is_jobqueue_handler(handler: Any) -> bool:
    return getattr(handler, "__module__", "") == "dask_jobqueue.runner"


def _restore_sigint(previous: Any) -> None:
    """Undo dask_jobqueue.runner's SIGINT handler (only possible in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if not _is_jobqueue_handler(signal.getsignal(signal.SIGINT)):
        return
    if previous is None or _is_jobqueue_handler(previous):
        previous = signal.default_int_handler
    signal.signal(signal.SIGINT, previous)


_previous = signal.getsignal(signal.SIGINT)
from dask_jobqueue import HTCondorCluster, PBSCluster, SLURMCluster  # noqa: E402
from dask_jobqueue.core import Job, JobQueueCluster  # noqa: E402

_restore_sigint(_previous)

__all__ = ["HTCondorCluster", "Job", "JobQueueCluster", "PBSCluster", "SLURMCluster"]
