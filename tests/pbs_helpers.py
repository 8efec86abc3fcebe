"""Helpers for the tests that need a PBS-compatible batch system (cluster/testbed/start.sh)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from cluster.config import BatchClusterConfig, ClusterConfig

START_HINT = "start one with `sudo bash cluster/testbed/start.sh`"
#: PBS/Torque states of jobs that have ended (Slurm's qstat keeps them listed for a while).
ENDED_STATES = {"C", "F", "X"}


def batch_system_problem() -> str | None:
    """Why the pbs tests cannot run here, or None when qsub/qstat are there and answer."""
    if shutil.which("qsub") is None:
        return f"no PBS-compatible batch system: qsub is not on PATH; {START_HINT}"
    try:
        subprocess.run(["qstat", "-Q"], capture_output=True, timeout=15, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the batch system does not answer (qstat: {exc}); {START_HINT}"
    return None


def pbs_required() -> bool:
    """BUMPNET_REQUIRE_PBS=1 turns a missing batch system into a failure (for CI)."""
    return os.environ.get("BUMPNET_REQUIRE_PBS", "") == "1"


def pbs_config(**overrides: object) -> ClusterConfig:
    """Small worker jobs on the testbed's 'batch' queue, everything on loopback."""
    settings: dict[str, object] = {
        "kind": "pbs",
        "queue": "batch",
        "cores": 1,
        "memory": "1GB",
        "walltime": "00:10:00",
        "interface": "lo",
        "n_jobs": 2,
        "worker_timeout_s": 60.0,
        "dashboard_address": "127.0.0.1:0",
    }
    settings.update(overrides)
    return ClusterConfig(pbs=BatchClusterConfig.model_validate(settings))


def qstat_states() -> dict[str, str]:
    """Job ID -> state letter for every job qstat lists (parsed independently of cluster.jobs)."""
    # check=False: Slurm's qstat wrapper exits 153 when it lists no job at all.
    out = subprocess.run(["qstat"], capture_output=True, text=True, timeout=15, check=False).stdout
    states = {}
    for line in out.splitlines():
        tokens = line.split()
        if len(tokens) >= 6 and tokens[0][:1].isdigit():
            states[tokens[0].split(".")[0]] = tokens[-2]
    return states


def live_jobs(job_ids: list[str]) -> dict[str, str]:
    """Those of job_ids that qstat still shows as not ended."""
    states = qstat_states()
    return {j: states[j] for j in job_ids if j in states and states[j] not in ENDED_STATES}


def job_ids_of(client: object) -> list[str]:
    """Batch job IDs behind a Client of a dask-jobqueue cluster."""
    workers = client.cluster.workers.values()  # type: ignore[attr-defined]
    return sorted(w.job_id for w in workers if w.job_id)


def fake_qsub(bin_dir: Path, message: str, exit_code: int = 1) -> Path:
    """Write a `qsub` that prints ``message`` to stderr and fails; put bin_dir first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "qsub"
    script.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script
