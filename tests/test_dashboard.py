"""The Dask dashboard of a real local run answers on the configured loopback port.

``runner.py --local`` is started as a subprocess on a synthetic 2025e file big enough to keep
the workers busy for several seconds, with a config that puts the dashboard on a free port of
127.0.0.1. While the run processes, ``GET /status`` must return the Bokeh page; afterwards the
run must succeed and the port must be closed again.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.synthetic import write_sample

REPO = Path(__file__).resolve().parents[1]
#: ~10 s of processing on 2 workers (8 chunks of 10k events)
N_EVENTS = 80_000
DASHBOARD_LINE = re.compile(r"Dask dashboard: (http://\S+)")
STARTUP_TIMEOUT_S = 90
RUN_TIMEOUT_S = 150


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the runner and everything it started (its own process group)."""
    # the group id is the runner's pid (start_new_session); leftover workers die with it too
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture
def runner_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, queue.Queue, int, Path]]:
    """A running ``runner.py --local`` with the dashboard on a free port; always cleaned up."""
    sample = write_sample(tmp_path / "in" / "sample.root", "2025e", N_EVENTS, seed=11, kind="data")
    port = _free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"run_metadata: {{run_name: dashboard_test, base_output_dir: '{tmp_path / 'output'}'}}\n"
        "tasks: {do_plots: false}\n"
        "executor: {chunksize: 10000, align_clusters: false}\n"
        "cluster:\n"
        f"  local: {{n_workers: 2, dashboard_address: '127.0.0.1:{port}'}}\n"
    )
    run_dir = tmp_path / "run"
    stderr = (tmp_path / "runner.stderr").open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "runner.py"),
            "--local",
            "--config",
            str(config),
            "--input",
            str(sample),
            "--run-dir",
            str(run_dir),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,  # its own process group: one killpg ends workers too
    )
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield proc, lines, port, run_dir
    finally:
        _kill_group(proc)
        reader.join(timeout=10)
        stderr.close()


def _wait_for_dashboard(lines: queue.Queue, seen: list[str]) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        m = DASHBOARD_LINE.search(line)
        if m:
            return m.group(1)
    pytest.fail(f"no 'Dask dashboard:' line within {STARTUP_TIMEOUT_S} s; stdout: {''.join(seen)}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dashboard_answers_during_a_local_run(runner_process, tmp_path: Path) -> None:
    proc, lines, port, run_dir = runner_process
    seen: list[str] = []
    url = _wait_for_dashboard(lines, seen)
    m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/status", url)
    assert m, f"dashboard link {url} is not http://127.0.0.1:<port>/status"
    assert int(m.group(1)) == port, "the configured cluster.local.dashboard_address was not used"
    assert proc.poll() is None, "the run ended before the dashboard could be checked"

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=30) as response:
        status = response.status
        content_type = response.headers.get("Content-Type", "")
        body = response.read().decode("utf-8", "replace")
    assert status == 200
    assert "text/html" in content_type
    assert "bokeh" in body.lower(), "the /status page is not a Bokeh document"

    try:
        code = proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"runner did not finish within {RUN_TIMEOUT_S} s")
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    stderr_tail = (tmp_path / "runner.stderr").read_text()[-3000:]
    assert code == 0, f"runner exited with {code}; stderr tail:\n{stderr_tail}"
    assert (run_dir / "histograms" / "bumpnet_histograms.root").is_file()
    assert any(line.startswith("events read: 80000") for line in seen), "".join(seen)

    deadline = time.monotonic() + 10
    while _port_open(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _port_open(port), f"dashboard port {port} still open after the run"
