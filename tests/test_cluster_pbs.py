"""Workers as real batch jobs (Slurm's PBS-compatible qsub from cluster/testbed/start.sh)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import select
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import distributed
import pytest
from distributed.comm import connect
from distributed.security import Security
from pbs_helpers import fake_qsub, job_ids_of, live_jobs, pbs_config, qstat_states

import processor
from cluster import ClusterStartError, make_batch_cluster, open_cluster

pytestmark = [pytest.mark.pbs, pytest.mark.usefixtures("batch_system"), pytest.mark.timeout(240)]
logger = logging.getLogger(__name__)


def _refused_without_client_cert(address: str) -> None:
    """A TLS connection that presents no certificate must be dropped by the scheduler."""

    async def attempt() -> object:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        comm = await connect(address, timeout=5, ssl_context=ctx)
        await comm.write({"op": "identity"})
        return await asyncio.wait_for(comm.read(), 5)

    with pytest.raises((OSError, asyncio.TimeoutError)):
        asyncio.run(attempt())


def test_two_tls_workers_compute_log_and_leave_no_jobs(tmp_path: Path) -> None:
    log_dir = tmp_path / "worker-logs"
    start = time.monotonic()
    with open_cluster("pbs", pbs_config(), run_dir=tmp_path, log_dir=log_dir) as client:
        startup_s = time.monotonic() - start
        logger.warning("2 batch workers connected %.1f s after open_cluster()", startup_s)
        job_ids = job_ids_of(client)
        assert len(job_ids) == 2
        workers = client.nthreads()
        assert len(workers) == 2
        assert client.scheduler.address.startswith("tls://127.0.0.1:")
        assert all(addr.startswith("tls://") for addr in workers)
        futures = client.map(lambda x: x * x, range(100))
        assert client.submit(sum, futures).result(timeout=60) == sum(x * x for x in range(100))
        files = client.run(lambda: __import__("processor").__file__)
        assert set(files.values()) == {processor.__file__}
        trim = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert set(trim.values()) == {None}, "batch workers must keep glibc's adaptive malloc"
        assert live_jobs(job_ids) == {j: "R" for j in job_ids}
        logs = sorted(p.name for p in log_dir.iterdir())
        assert all(any(j in name for name in logs) for j in job_ids), logs
    assert live_jobs(job_ids) == {}
    assert not list((tmp_path / ".dask-tls").iterdir()), "worker certificates left behind"


def test_plain_and_uncertified_clients_are_refused(tmp_path: Path) -> None:
    with open_cluster("pbs", pbs_config(n_jobs=1), run_dir=tmp_path) as client:
        address = client.scheduler.address
        with pytest.raises(OSError):
            distributed.Client(address.replace("tls://", "tcp://"), timeout=5)
        with pytest.raises(OSError):
            distributed.Client(address, timeout=5, security=Security.temporary())
        _refused_without_client_cert(address)
        assert client.submit(lambda: 7).result(timeout=30) == 7


def test_failing_qsub_raises_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    fake_qsub(bin_dir, "qsub: Unknown queue MSG=cannot locate queue")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    start = time.monotonic()
    with pytest.raises(ClusterStartError, match="Unknown queue") as info:  # noqa: SIM117
        with open_cluster("pbs", pbs_config(), run_dir=tmp_path):
            pytest.fail("the block must not run")
    assert time.monotonic() - start < 30
    assert "\n" not in str(info.value)
    assert "qsub" in str(info.value)


def test_nonexistent_queue_raises_and_leaves_no_jobs(tmp_path: Path) -> None:
    before = set(live_jobs(list(qstat_states())))
    with pytest.raises(ClusterStartError, match="nosuchqueue|invalid partition"):  # noqa: SIM117
        with open_cluster("pbs", pbs_config(queue="nosuchqueue"), run_dir=tmp_path):
            pytest.fail("the block must not run")
    assert set(live_jobs(list(qstat_states()))) <= before


def test_job_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    cfg = pbs_config(n_jobs=1, python="/nonexistent/python3")
    start = time.monotonic()
    with pytest.raises(ClusterStartError, match="ended before") as info:  # noqa: SIM117
        with open_cluster("pbs", cfg, run_dir=tmp_path):
            pytest.fail("the block must not run")
    assert time.monotonic() - start < 45
    assert "nonexistent" in str(info.value)


def test_held_job_times_out_naming_its_state(tmp_path: Path) -> None:
    cfg = pbs_config(n_jobs=1, worker_timeout_s=6.0, job_extra_directives=["-h"])
    with pytest.raises(ClusterStartError, match=r"0 of 1 .*jobs: (\d+)=Q ") as info:  # noqa: SIM117
        with open_cluster("pbs", cfg, run_dir=tmp_path):
            pytest.fail("the block must not run")
    job_id = re.search(r"jobs: (\d+)=", str(info.value)).group(1)
    assert live_jobs([job_id]) == {}


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, RuntimeError])
def test_interrupt_inside_block_removes_jobs(tmp_path: Path, exc_type: type) -> None:
    job_ids: list[str] = []
    with pytest.raises(exc_type):  # noqa: SIM117
        with open_cluster("pbs", pbs_config(), run_dir=tmp_path) as client:
            job_ids = job_ids_of(client)
            assert len(live_jobs(job_ids)) == 2
            raise exc_type("stop")
    assert len(job_ids) == 2
    assert live_jobs(job_ids) == {}


def test_torque_resource_spec(tmp_path: Path) -> None:
    cfg = pbs_config(n_jobs=1, resource_spec="nodes=1:ppn=1")
    batch = make_batch_cluster(cfg.pbs, run_dir=tmp_path)
    try:
        script = batch.cluster.job_script()
        assert "#PBS -l nodes=1:ppn=1" in script
        assert "select=" not in script
        batch.cluster.scale(jobs=1)
        with batch.client() as client:
            client.wait_for_workers(1, timeout=60)
            assert client.submit(lambda: 1).result(timeout=30) == 1
    finally:
        assert batch.close() == {}
    assert live_jobs(batch.job_ids) == {}


_CTRL_C_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from pbs_helpers import job_ids_of, pbs_config
from cluster import open_cluster
with open_cluster("pbs", pbs_config(), run_dir=Path({run_dir!r})) as client:
    print("READY", *job_ids_of(client), flush=True)
    time.sleep(120)
"""


def _read_line(proc: subprocess.Popen, timeout_s: float) -> str:
    """One line of the child's stdout, or '' when none comes within timeout_s."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    return proc.stdout.readline() if ready else ""  # type: ignore[union-attr]


def test_real_ctrl_c_removes_jobs(tmp_path: Path) -> None:
    script = tmp_path / "ctrl_c.py"
    script.write_text(
        _CTRL_C_SCRIPT.format(tests=str(Path(__file__).parent), run_dir=str(tmp_path))
    )
    with (tmp_path / "stderr.txt").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=err, text=True
        )
        try:
            line = _read_line(proc, 90)
            assert line.startswith("READY"), (tmp_path / "stderr.txt").read_text()[-2000:]
            job_ids = line.split()[1:]
            assert len(live_jobs(job_ids)) == 2
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
    # dask_jobqueue turns Ctrl-C into sys.exit() (exit code 0); cluster/_jobqueue.py undoes it.
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in (tmp_path / "stderr.txt").read_text()
    assert live_jobs(job_ids) == {}


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs Slurm's sbatch")
def test_slurm_kind_on_the_same_testbed(tmp_path: Path) -> None:
    cfg = pbs_config(kind="slurm", n_jobs=1)
    with open_cluster("pbs", cfg, run_dir=tmp_path) as client:
        job_ids = job_ids_of(client)
        assert client.submit(lambda: 3).result(timeout=30) == 3
        assert any(p.name.endswith(".err") for p in (tmp_path / "logs").iterdir())
    assert live_jobs(job_ids) == {}
