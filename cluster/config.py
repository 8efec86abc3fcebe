"""The ``cluster:`` section of config.yaml: local Dask cluster and batch-system workers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LocalClusterConfig(StrictModel):
    """A distributed.LocalCluster on this machine."""

    n_workers: PositiveInt | None = None
    threads_per_worker: PositiveInt = 1
    memory_limit: str = "auto"
    dashboard_address: str = "127.0.0.1:8787"


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


class ClusterConfig(StrictModel):
    """Local and batch cluster settings."""

    local: LocalClusterConfig = Field(default_factory=LocalClusterConfig)
    pbs: BatchClusterConfig = Field(default_factory=BatchClusterConfig)
