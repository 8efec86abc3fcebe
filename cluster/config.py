"""The ``cluster:`` section of config.yaml: local Dask cluster and batch-system workers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

_ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]*|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")


def check_memory_limit(value: str) -> str:
    """``auto``, a byte count, a fraction of the machine (0-1) or a size like ``4GB``."""
    text = str(value).strip()
    if text.lower() == "auto":
        return text
    try:
        number = float(text)
    except ValueError:
        from dask.utils import parse_bytes

        try:
            parse_bytes(text)
        except (ValueError, TypeError):
            raise ValueError(
                "not a memory size: use 'auto', a size such as '4GB' or '500MiB', or a fraction such as 0.5"
            ) from None
        return text
    if number <= 0:
        raise ValueError(
            "must be positive: use 'auto', a size such as '4GB', or a fraction such as 0.5"
        )
    return text


def check_dashboard_address(value: str) -> str:
    """``host:port`` or ``:port`` with a port in 0..65535 (0: any free port)."""
    m = _ADDRESS.match(str(value).strip())
    if m is None or int(m.group("port")) > 65535:
        raise ValueError("not an address: use 'host:port' or ':port', e.g. '127.0.0.1:8787'")
    return str(value).strip()


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LocalClusterConfig(StrictModel):
    """A distributed.LocalCluster on this machine."""

    n_workers: PositiveInt | None = None
    threads_per_worker: PositiveInt = 1
    memory_limit: str = "auto"
    dashboard_address: str = "127.0.0.1:8787"

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _memory_limit(cls, v: object) -> str:
        return check_memory_limit(str(v))

    @field_validator("dashboard_address")
    @classmethod
    def _dashboard(cls, v: str) -> str:
        return check_dashboard_address(v)


class AdaptiveConfig(StrictModel):
    """Adaptive scaling of batch workers."""

    minimum_jobs: int = Field(1, ge=0)
    maximum_jobs: PositiveInt = 10


class BatchClusterConfig(StrictModel):
    """A dask-jobqueue cluster whose workers run as batch jobs."""

    kind: Literal["pbs", "slurm", "htcondor"] = "pbs"
    queue: str | None = None
    account: str | None = None
    cores: PositiveInt = 1
    memory: str = "4GB"
    processes: PositiveInt = 1
    walltime: str = Field("04:00:00", pattern=r"^\d+:\d\d:\d\d$")
    #: workers retire this long before the walltime (dask-jobqueue's ``--lifetime`` recipe),
    #: so adaptive clusters replace them before the batch system kills them; null = off
    lifetime_margin_minutes: PositiveFloat | None = 5.0
    #: ``--lifetime-stagger``: lifetimes spread by up to +- this, so workers do not all leave at once
    lifetime_stagger_minutes: float = Field(2.0, ge=0)
    #: ``--lifetime-restart``: restart the worker process inside the same job at its lifetime
    #: (off: the job ends and adaptive scaling submits a fresh job with a full walltime)
    lifetime_restart: bool = False
    #: PBS Pro syntax by default; Torque sites: "nodes=1:ppn=1". None = dask-jobqueue's default.
    resource_spec: str | None = None
    job_extra_directives: list[str] = []
    job_script_prologue: list[str] = []
    interface: str | None = None
    scheduler_host: str | None = None
    n_jobs: PositiveInt = 2
    adaptive: AdaptiveConfig | None = None
    worker_timeout_s: PositiveFloat = 300.0
    tls: bool = True
    python: str | None = None
    #: None = the run directory's logs/.
    log_directory: Path | None = None
    dashboard_address: str = ":8787"

    @field_validator("dashboard_address")
    @classmethod
    def _dashboard(cls, v: str) -> str:
        return check_dashboard_address(v)

    @model_validator(mode="after")
    def _lifetime_fits_walltime(self) -> BatchClusterConfig:
        """The margin must leave a positive lifetime, and the stagger must stay inside it."""
        margin = self.lifetime_margin_minutes
        if margin is None:
            return self
        if self.lifetime_stagger_minutes >= margin:
            raise ValueError(
                f"cluster.pbs.lifetime_stagger_minutes ({self.lifetime_stagger_minutes:g}) must be "
                f"smaller than lifetime_margin_minutes ({margin:g}); lower it or raise the margin"
            )
        if walltime_seconds(self.walltime) <= margin * 60:
            raise ValueError(
                f"cluster.pbs.walltime {self.walltime} is not longer than lifetime_margin_minutes "
                f"({margin:g}); raise the walltime or set lifetime_margin_minutes: null"
            )
        return self


def walltime_seconds(walltime: str) -> int:
    """'HH:MM:SS' (hours may exceed 24) -> seconds."""
    hours, minutes, seconds = (int(part) for part in walltime.split(":"))
    return hours * 3600 + minutes * 60 + seconds


class ClusterConfig(StrictModel):
    """Local and batch cluster settings."""

    local: LocalClusterConfig = Field(default_factory=LocalClusterConfig)
    pbs: BatchClusterConfig = Field(default_factory=BatchClusterConfig)
