"""Shared pytest fixtures."""

from __future__ import annotations

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
