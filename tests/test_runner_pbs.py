"""`runner.py --pbs` end to end: Dask workers as real batch jobs (cluster/testbed/start.sh)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_same_run_histograms, assert_sigterm_exit, wait_until_processing
from pbs_helpers import fake_qsub, live_jobs, qstat_states

from processor.synthetic import sample_filename, write_sample

REPO = Path(__file__).resolve().parents[1]
N_FILES, N_EVENTS = 4, 5000
WORKER_TIMEOUT_S = 30

pytestmark = [pytest.mark.pbs, pytest.mark.usefixtures("batch_system"), pytest.mark.timeout(240)]

#: cluster.pbs as in pbs_helpers.pbs_config (testbed queue, small jobs, scheduler on loopback).
CONFIG = f"""\
tasks:
  do_plots: false
cluster:
  local:
    dashboard_address: "127.0.0.1:0"
  pbs:
    kind: pbs
    queue: batch
    cores: 1
    memory: 1GB
    walltime: "00:10:00"
    interface: lo
    n_jobs: 2
    worker_timeout_s: {WORKER_TIMEOUT_S}
    dashboard_address: "127.0.0.1:0"
"""


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four small 2025e data files."""
    base = tmp_path_factory.mktemp("sample")
    return [
        write_sample(
            base / sample_filename("2025e", "data", period=f"data15_period{p}"),
            "2025e",
            N_EVENTS,
            seed=10 + i,
        )
        for i, p in enumerate("DEFG")
    ]


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


def runner(
    mode: str, config: Path, run_dir: Path, sample: list[Path], *extra: str, **env: str
) -> subprocess.Popen:
    """`runner.py MODE --workers 2 --input SAMPLE` in the background (stdout, stderr piped)."""
    cmd = [sys.executable, str(REPO / "runner.py"), mode, "--workers", "2"]
    cmd += ["--config", str(config), "--run-dir", str(run_dir), *extra]
    cmd += ["--input", *map(str, sample)]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_pbs_run_equals_local_run(tmp_path: Path, config: Path, sample: list[Path]) -> None:
    pbs_dir, local_dir = tmp_path / "pbs", tmp_path / "local"
    start = time.monotonic()
    pbs = runner("--pbs", config, pbs_dir, sample)
    local = runner("--local", config, local_dir, sample)
    try:
        pbs_out, pbs_err = pbs.communicate(timeout=180)
        pbs_s = time.monotonic() - start
        local_out, local_err = local.communicate(timeout=60)
    finally:
        for proc in (pbs, local):
            if proc.poll() is None:
                proc.kill()
    print(f"--pbs run: {pbs_s:.1f} s (local run in parallel)")
    assert pbs.returncode == 0, pbs_err[-3000:]
    assert local.returncode == 0, local_err[-3000:]
    assert "Dask dashboard: http://127.0.0.1:" in pbs_out

    logs = sorted(p.name for p in (pbs_dir / "logs").iterdir())
    job_ids = sorted({m.group(1) for n in logs if (m := re.search(r"\.[eo](\d+)$", n))})
    assert len(job_ids) == 2, logs
    assert all(f"dask-worker.e{j}" in logs and f"dask-worker.o{j}" in logs for j in job_ids)
    worker_log = (pbs_dir / "logs" / f"dask-worker.e{job_ids[0]}").read_text()
    assert "Starting worker" in worker_log or "Start worker" in worker_log, worker_log[-2000:]
    assert live_jobs(job_ids) == {}, "the run must leave no job behind"

    assert assert_same_run_histograms(pbs_dir, local_dir) > 100
    pbs_manifest = json.loads((pbs_dir / "manifest.json").read_text())
    local_manifest = json.loads((local_dir / "manifest.json").read_text())
    assert (pbs_manifest["mode"], local_manifest["mode"]) == ("pbs", "local")
    assert pbs_manifest["status"] == "ok"
    assert pbs_manifest["cutflow_total"] == local_manifest["cutflow_total"]
    assert pbs_manifest["cutflow_total"]["events_read"] == N_FILES * N_EVENTS
    assert all(
        i["entries_processed"] == i["entries_expected"] == N_EVENTS for i in pbs_manifest["inputs"]
    )


def test_broken_qsub_fails_fast_with_one_line(
    tmp_path: Path, config: Path, sample: list[Path]
) -> None:
    bin_dir = tmp_path / "bin"
    fake_qsub(bin_dir, "qsub: Unknown queue MSG=cannot locate queue")
    before = set(live_jobs(list(qstat_states())))
    start = time.monotonic()
    proc = runner(
        "--pbs",
        config,
        tmp_path / "run",
        sample,
        "--log-level",
        "WARNING",
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    )
    try:
        out, err = proc.communicate(timeout=WORKER_TIMEOUT_S + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - start
    print(f"broken qsub: exit {proc.returncode} after {elapsed:.1f} s")
    assert proc.returncode == 1, err[-3000:]
    assert elapsed < WORKER_TIMEOUT_S, "a failing qsub must not wait for worker_timeout_s"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "qsub" in errors[0] and "Unknown queue" in errors[0]
    assert "Traceback" not in err, err
    assert not any(line.startswith("ERROR") for line in err.splitlines()), err
    assert not (tmp_path / "run" / "manifest.json").exists()
    assert set(live_jobs(list(qstat_states()))) <= before, "no job may be left behind"


def test_sigterm_ends_the_jobs_removes_tls_and_resume_gives_the_same_result(
    tmp_path: Path, config: Path, sample: list[Path]
) -> None:
    """SIGTERM (batch walltime of the driver) to a --pbs run mid-way: exit 143 with one line
    saying --resume RUN_DIR, none of its worker jobs left, no TLS key or certificate left in the
    run directory; --resume RUN_DIR (no --config, no --input) gives the clean result."""
    import signal

    run_dir = tmp_path / "run"
    proc = runner("--pbs", config, run_dir, sample)
    try:
        wait_until_processing(proc, run_dir, timeout_s=180)
        if proc.poll() is not None:
            pytest.skip("the run finished before SIGTERM could be sent")
        assert list((run_dir / ".dask-tls").iterdir()), "a --pbs run keeps its TLS files here"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_sigterm_exit(proc, err, run_dir)
    job_ids = sorted(
        {m.group(1) for p in (run_dir / "logs").iterdir() if (m := re.search(r"\.[eo](\d+)$", p.name))}
    )  # fmt: skip
    assert job_ids, "the worker jobs wrote no logs"
    for _ in range(30):  # qdel is asynchronous: bounded wait
        if not live_jobs(job_ids):
            break
        time.sleep(1)
    assert live_jobs(job_ids) == {}, "SIGTERM must leave no worker job behind"
    tls = run_dir / ".dask-tls"
    assert not tls.exists() or not list(tls.iterdir())
    assert not (run_dir / "manifest.json").exists()

    resumed = subprocess.run(
        [sys.executable, str(REPO / "runner.py"), "--local", "--workers", "1", "--resume", str(run_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    clean = tmp_path / "clean"
    ref = subprocess.run(
        [sys.executable, str(REPO / "runner.py"), "--executor", "iterative", "--config",
         str(config), "--input", *map(str, sample), "--run-dir", str(clean)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert assert_same_run_histograms(run_dir, clean) > 100
