"""Shared pytest fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pbs_helpers import batch_system_problem, pbs_required

ROOT = Path(__file__).resolve().parents[1]

# The Ctrl-C tests send SIGINT to runs started as child processes. A suite started in the
# background by a non-interactive shell (`make test &`, a CI step run with `&`) inherits
# SIGINT *ignored*, and so would every child: its runs would finish with exit 0 and its
# clusters would sleep on after "Ctrl-C". Handled signals are reset to the default at exec,
# so handling SIGINT here gives every child the default (KeyboardInterrupt) back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def batch_system() -> None:
    """Skip (fail with BUMPNET_REQUIRE_PBS=1) unless a PBS-compatible qsub/qstat answers."""
    problem = batch_system_problem()
    if problem and pbs_required():
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)


@pytest.fixture(autouse=True)
def _private_atom_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Keep every test (and its subprocesses) out of the user's ~/.cache/atlasopenmagic.

    The release metadata cache is atlasopenmagic's, under ``$XDG_CACHE_HOME``: point that at a
    private directory. ``BUMPNET_CACHE_DIR`` is pinned to where it pointed before, so the demo
    sample and download caches stay where they were.
    """
    from processor.fsutil import cache_root

    if not os.environ.get("BUMPNET_CACHE_DIR"):
        monkeypatch.setenv("BUMPNET_CACHE_DIR", str(cache_root()))
    xdg = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.setenv("ATLASOPENMAGIC_NO_UPDATE_CHECK", "1")
    yield xdg


@dataclass
class DemoRun:
    """The one demo run a test session shares (``runner.py --local --demo --workers 2``)."""

    result: subprocess.CompletedProcess
    run_dir: Path
    seconds: float
    workdir: Path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """Run the demo once per session, in a subprocess with its own cache directory (so the
    sample is generated, as on a fresh machine). Tests only read it, except through
    :func:`demo_plots_only`."""
    work = tmp_path_factory.mktemp("demo")
    run_dir = work / "demo_run"
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), "--local", "--demo", "--workers", "2",
         "--run-dir", str(run_dir)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "BUMPNET_CACHE_DIR": str(work / "cache")},
    )  # fmt: skip
    return DemoRun(res, run_dir, time.perf_counter() - t0, work)


@pytest.fixture(scope="session")
def demo_plots_only(demo_run: DemoRun) -> subprocess.CompletedProcess:
    """Delete the demo run's plots and remake them with ``--plots-only`` (once per session)."""
    assert demo_run.result.returncode == 0, demo_run.result.stderr[-3000:]
    for p in (demo_run.run_dir / "plots").iterdir():
        p.unlink()
    return subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), "--plots-only", "--run-dir",
         str(demo_run.run_dir)],
        cwd=demo_run.workdir,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "BUMPNET_CACHE_DIR": str(demo_run.workdir / "cache")},
    )  # fmt: skip
