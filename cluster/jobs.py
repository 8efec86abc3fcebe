"""Ask the batch system which of our jobs still exist, and delete them (qstat/qdel & co.)."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterable

logger = logging.getLogger(__name__)

#: Job states that mean "gone" (kept in the listing for a while after the job ended).
_FINISHED = {
    "pbs": {"C", "F", "X"},
    "slurm": {"CD", "CA", "F", "TO", "NF", "PR", "OOM", "BF", "DL", "RV", "SE"},
    "htcondor": {"3", "4"},
}
_LIST_COMMANDS = {
    "pbs": ["qstat"],
    "slurm": ["squeue", "-h", "-o", "%i %t"],
    "htcondor": ["condor_q", "-af", "ClusterId", "ProcId", "JobStatus"],
}
_DELETE_COMMANDS = {"pbs": ["qdel"], "slurm": ["scancel"], "htcondor": ["condor_rm"]}


def _short_id(job_id: str) -> str:
    """'1234.pbs-server' -> '1234' (PBS lists the server suffix, dask-jobqueue strips it)."""
    return (
        job_id if "." not in job_id or job_id.replace(".", "").isdigit() else job_id.split(".")[0]
    )


def _parse_listing(kind: str, text: str) -> dict[str, str]:
    """Job ID -> state from a qstat / squeue / condor_q listing."""
    states: dict[str, str] = {}
    for line in text.splitlines():
        tokens = line.split()
        if kind == "pbs":
            # "Job id  Name  User  Time Use S Queue": the state is the column before the queue.
            if len(tokens) >= 6 and tokens[0][:1].isdigit():
                states[_short_id(tokens[0])] = tokens[-2]
        elif kind == "slurm" and len(tokens) == 2:
            states[tokens[0]] = tokens[1]
        elif kind == "htcondor" and len(tokens) == 3:
            states[f"{tokens[0]}.{tokens[1]}"] = tokens[2]
    return states


def job_states(kind: str, job_ids: Iterable[str], timeout_s: float = 20.0) -> dict[str, str]:
    """States of those of ``job_ids`` that are still queued or running; finished ones are omitted.

    Raises RuntimeError when the batch system does not answer.
    """
    wanted = {_short_id(j) for j in job_ids}
    if not wanted:
        return {}
    cmd = _LIST_COMMANDS[kind]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {exc}") from exc
    # Slurm's qstat wrapper exits 153 with no output when it lists no job at all.
    if proc.returncode != 0 and (proc.stderr.strip() or proc.stdout.strip()):
        raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()}")
    listing = _parse_listing(kind, proc.stdout)
    return {
        job: state
        for job, state in listing.items()
        if job in wanted and state not in _FINISHED[kind]
    }


def delete_jobs(kind: str, job_ids: Iterable[str], timeout_s: float = 20.0) -> None:
    """Delete jobs (qdel/scancel/condor_rm); jobs that are already gone are not an error."""
    ids = sorted(set(job_ids))
    if not ids:
        return
    cmd = [*_DELETE_COMMANDS[kind], *ids]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("`%s` failed: %s", " ".join(cmd), exc)
        return
    if proc.returncode != 0:
        logger.debug("`%s` exited %d: %s", " ".join(cmd), proc.returncode, proc.stderr.strip())


def wait_jobs_gone(kind: str, job_ids: Iterable[str], timeout_s: float) -> dict[str, str]:
    """Poll until none of ``job_ids`` is queued or running; return the survivors (ID -> state)."""
    ids = list(job_ids)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            alive = job_states(kind, ids)
        except RuntimeError as exc:
            logger.warning("cannot check whether batch jobs %s ended: %s", ", ".join(ids), exc)
            return dict.fromkeys(ids, "?")
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.5)


def ensure_jobs_gone(kind: str, job_ids: Iterable[str], timeout_s: float = 30.0) -> dict[str, str]:
    """Make sure none of ``job_ids`` remains: wait a little, delete survivors, wait again.

    Returns the jobs that still exist afterwards (logged as an error), normally none.
    """
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    alive = wait_jobs_gone(kind, ids, timeout_s / 2)
    if alive:
        logger.warning("batch jobs still present after close, deleting: %s", _fmt(alive))
        delete_jobs(kind, alive)
        alive = wait_jobs_gone(kind, alive, timeout_s / 2)
    if alive:
        logger.error("batch jobs could not be removed, delete them by hand: %s", _fmt(alive))
    return alive


def _fmt(states: dict[str, str]) -> str:
    return ", ".join(f"{job} ({state})" for job, state in sorted(states.items()))
