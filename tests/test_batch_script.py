"""Batch worker job scripts (no submission, no batch system needed): walltime-aware lifetimes,
and the SSH tunnel command printed beside the dashboard link (issue 14)."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import pytest

from cluster.batch import make_batch_cluster, ssh_tunnel_command, worker_lifetime_args
from cluster.config import BatchClusterConfig
from processor.config import ConfigError, load_config


def _cfg(**overrides: object) -> BatchClusterConfig:
    settings: dict[str, object] = {
        "kind": "pbs",
        "queue": "batch",
        "walltime": "01:00:00",
        "tls": False,
        "scheduler_host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
    }
    settings.update(overrides)
    return BatchClusterConfig.model_validate(settings)


def _job_script(cfg: BatchClusterConfig, tmp_path: Path) -> str:
    batch = make_batch_cluster(cfg, run_dir=tmp_path)
    try:
        return batch.cluster.job_script()
    finally:
        batch.cluster.close()


@pytest.mark.parametrize("kind", ["pbs", "slurm"])
def test_job_script_retires_workers_before_the_walltime(kind: str, tmp_path: Path) -> None:
    script = _job_script(_cfg(kind=kind), tmp_path)
    worker_line = next(
        line for line in script.splitlines() if "distributed.cli.dask_worker" in line
    )
    assert "--lifetime 3300s --lifetime-stagger 120s" in worker_line, worker_line
    assert "--lifetime-restart" not in worker_line
    assert ("#PBS -l walltime=01:00:00" if kind == "pbs" else "#SBATCH -t 01:00:00") in script


def test_margin_stagger_and_restart_are_configurable(tmp_path: Path) -> None:
    cfg = _cfg(
        walltime="04:00:00",
        lifetime_margin_minutes=10,
        lifetime_stagger_minutes=3,
        lifetime_restart=True,
    )
    assert worker_lifetime_args(cfg) == [
        "--lifetime",
        "13800s",
        "--lifetime-stagger",
        "180s",
        "--lifetime-restart",
    ]
    assert "--lifetime 13800s --lifetime-stagger 180s --lifetime-restart" in _job_script(
        cfg, tmp_path
    )


def test_no_lifetime_when_off_or_without_walltime() -> None:
    assert worker_lifetime_args(_cfg(lifetime_margin_minutes=None)) == []
    assert worker_lifetime_args(_cfg(kind="htcondor")) == []


@pytest.mark.parametrize(
    ("pbs", "key"),
    [
        ({"walltime": "00:05:00"}, "cluster.pbs.walltime 00:05:00"),
        ({"lifetime_stagger_minutes": 5}, "cluster.pbs.lifetime_stagger_minutes"),
    ],
)
def test_impossible_lifetimes_are_config_errors(tmp_path: Path, pbs: dict, key: str) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"cluster": {"pbs": pbs}}))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_ssh_tunnel_command() -> None:
    link = "http://10.1.2.3:8787/status"
    assert ssh_tunnel_command(link, "me@login1") == "ssh -N -L 8787:10.1.2.3:8787 me@login1"
    assert ssh_tunnel_command(link).startswith("ssh -N -L 8787:10.1.2.3:8787 ")
    assert ssh_tunnel_command("/status") is None


def _abandon(exc: BaseException) -> None:
    """Let asyncio collect a finished future whose exception nobody retrieved."""
    loop = asyncio.new_event_loop()
    try:
        fut = loop.create_future()
        fut.set_exception(exc)
        del fut
        gc.collect()
    finally:
        loop.close()


def test_abandoned_tornado_timeouts_are_not_logged_other_errors_are(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fast failed start left an 'ERROR asyncio: Future exception was never retrieved ...
    TimeoutError: Timeout' line after the real one-line error (CI, stop 16); only that one
    (tornado's bare timeout) is dropped, not other abandoned exceptions."""
    import cluster.batch  # noqa: F401 - installs the filter

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _abandon(TimeoutError("Timeout"))
        assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
        _abandon(TimeoutError("Timeout while resolving host"))
        _abandon(ValueError("Timeout"))
    logged = [r for r in caplog.records if r.name == "asyncio"]
    assert len(logged) == 2, caplog.text
    assert all(r.getMessage().startswith("Future exception was never retrieved") for r in logged)
