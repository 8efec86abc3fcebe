"""Worker process environment: glibc's adaptive malloc thresholds, not Dask's fixed trim.

Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (config
``distributed.nanny.pre-spawn-environ``) so that freed memory goes back to the OS at once.
Setting that variable also switches off glibc's adaptive mmap threshold: every array above
128 kB is then a fresh ``mmap`` that is faulted in page by page and unmapped when freed. The
processor allocates arrays of a few MB per branch and step, so a worker spent about a third of
its CPU time in the kernel (measured: 1.0 M page faults and 4.5 s system time per 2 M events,
against 0.07 M and 0.5 s without the variable; same peak RSS; ``benchmarks/bench_scale.py``).

Workers therefore start without it, unless the user exported ``MALLOC_TRIM_THRESHOLD_``
themselves (then theirs is kept: the worker inherits the driver's environment).
"""

from __future__ import annotations

import os
import shlex
from typing import Any

#: the variable Dask sets and we leave unset
TRIM_VARIABLE = "MALLOC_TRIM_THRESHOLD_"
#: the user's own setting, read before any Dask nanny has written Dask's default into our
#: environment (the nanny updates ``os.environ`` of the process that starts the workers)
_USER_SETTING = os.environ.get(TRIM_VARIABLE)


def user_set_trim() -> bool:
    """True if ``MALLOC_TRIM_THRESHOLD_`` was in this process's environment at import."""
    return _USER_SETTING is not None


def local_worker_dask_config() -> dict[str, Any]:
    """``dask.config.set`` overrides for a LocalCluster's nannies (empty if the user chose)."""
    if user_set_trim():
        return {}
    return {f"distributed.nanny.pre-spawn-environ.{TRIM_VARIABLE}": None}


def forget_dask_trim_setting() -> None:
    """Drop a ``MALLOC_TRIM_THRESHOLD_`` that an earlier Dask nanny wrote into our environment.

    Worker processes inherit this process's environment; a notebook that started a plain
    LocalCluster before ours would otherwise pass Dask's value on.
    """
    if not user_set_trim():
        os.environ.pop(TRIM_VARIABLE, None)


def batch_job_prologue() -> list[str]:
    """Job-script lines that keep Dask's nanny from setting the variable on a batch node.

    Dask reads ``DASK_*`` variables as config; a dict value is merged into the defaults, so
    only this one key of ``pre-spawn-environ`` changes (the thread-count variables stay).
    """
    if user_set_trim():
        return [f"export {TRIM_VARIABLE}={shlex.quote(_USER_SETTING or '')}"]
    value = repr({TRIM_VARIABLE: None})
    return [
        f"unset {TRIM_VARIABLE}",
        f"export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON={shlex.quote(value)}",
    ]
