"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pbs_helpers import batch_system_problem, pbs_required


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
