"""LocalCluster from the config: workers, computing, dashboard, clean shutdown."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import distributed
import pytest
from distributed.core import Status

from cluster import make_local_cluster, open_cluster, worker_env
from cluster.config import ClusterConfig, LocalClusterConfig
from cluster.local import default_local_workers

pytestmark = pytest.mark.timeout(120)


def _cfg(**kw: object) -> LocalClusterConfig:
    return LocalClusterConfig(dashboard_address="127.0.0.1:0", **kw)


def test_requested_workers_compute_and_dashboard_answers() -> None:
    with (
        make_local_cluster(_cfg(n_workers=3), n_workers=2) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert len(client.nthreads()) == 2
        assert all(n == 1 for n in client.nthreads().values())
        assert client.submit(sum, range(10)).result(timeout=30) == 45
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        link = cluster.dashboard_link
        assert link.startswith("http://127.0.0.1:"), link
        with urllib.request.urlopen(link, timeout=20) as response:
            body = response.read().decode(errors="replace")
            assert response.status == 200
        assert "bokeh" in body.lower()


def test_worker_count_from_config_then_cores() -> None:
    with make_local_cluster(_cfg(n_workers=1)) as cluster:
        assert len(cluster.workers) == 1
    assert default_local_workers(1) >= 1
    assert default_local_workers(10_000) == 1


def _worker_env(client: distributed.Client, name: str) -> set[str | None]:
    return set(client.run(lambda: __import__("os").environ.get(name)).values())


def test_workers_keep_glibc_adaptive_malloc_unless_the_user_set_the_trim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dask's MALLOC_TRIM_THRESHOLD_ (which turns every array above 128 kB into a fresh,
    page-faulted mmap) is not set on our workers; Dask's other variables still are; a value
    the user exported is kept. A value an earlier plain LocalCluster wrote into our
    environment is not passed on."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as a plain Dask nanny leaves it
    monkeypatch.setattr(worker_env, "_USER_SETTING", None)
    with make_local_cluster(_cfg(n_workers=1)) as cluster, distributed.Client(cluster) as client:
        assert _worker_env(client, "MALLOC_TRIM_THRESHOLD_") == {None}
        assert _worker_env(client, "OMP_NUM_THREADS") == {"1"}
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1234567")
    monkeypatch.setattr(worker_env, "_USER_SETTING", "1234567")
    with make_local_cluster(_cfg(n_workers=1)) as cluster, distributed.Client(cluster) as client:
        assert _worker_env(client, "MALLOC_TRIM_THRESHOLD_") == {"1234567"}


def test_batch_job_script_unsets_the_trim_but_keeps_a_user_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_env, "_USER_SETTING", None)
    lines = worker_env.batch_job_prologue()
    assert lines[0] == "unset MALLOC_TRIM_THRESHOLD_"
    name, value = lines[1].removeprefix("export ").split("=", 1)
    env = {name: shlex.split(value)[0]}
    got = subprocess.run(
        [
            sys.executable,
            "-c",
            "import dask, distributed; from distributed.nanny import _get_env_variables as g; "
            "print(sorted(g('distributed.nanny.pre-spawn-environ')))",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert got == "['MKL_NUM_THREADS', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS']", got
    monkeypatch.setattr(worker_env, "_USER_SETTING", "99 9")
    assert worker_env.batch_job_prologue() == ["export MALLOC_TRIM_THRESHOLD_='99 9'"]


def test_open_cluster_shuts_down_on_exception(tmp_path: Path) -> None:
    cfg = ClusterConfig(local=_cfg(n_workers=2, threads_per_worker=1))
    seen: dict[str, object] = {}
    with pytest.raises(RuntimeError, match="boom"):  # noqa: SIM117
        with open_cluster("local", cfg, run_dir=tmp_path) as client:
            seen.update(client=client, cluster=client.cluster, addr=client.scheduler.address)
            assert client.submit(lambda x: x * 2, 21).result(timeout=30) == 42
            raise RuntimeError("boom")
    assert seen["client"].status == "closed"
    assert seen["cluster"].status == Status.closed
    with pytest.raises(OSError):
        distributed.Client(seen["addr"], timeout=3)


def test_unknown_mode_is_rejected(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="'local' or 'pbs'"),
        open_cluster(
            "sge",
            ClusterConfig(),
            run_dir=tmp_path,  # type: ignore[arg-type]
        ),
    ):
        pass
