"""Dask worker preload: local worker processes ignore SIGINT.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group, the LocalCluster's
worker processes included; each then died printing a KeyboardInterrupt traceback (and its
nanny a CancelledError one) before the runner could say its one line. The driver alone
handles Ctrl-C and shuts the workers down itself, so they can ignore it. SIGTERM is left alone
(the nanny and the batch system use it to stop workers).
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    """Called by Dask in each worker process at start-up."""
    del worker
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
