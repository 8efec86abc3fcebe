"""LocalCluster from the config: workers, computing, dashboard, clean shutdown."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import distributed
import pytest
from distributed.core import Status

from cluster import make_local_cluster, open_cluster
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
