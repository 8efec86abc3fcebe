"""Small shared helpers for tests that run the processor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from coffea import processor
from coffea.nanoevents import BaseSchema

from processor.config import Config
from processor.mass_processor import MassProcessor

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "atlas-opendata"


def run_processor(
    fileset: dict, config: Config, executor: Any = None, chunksize: int = 100_000
) -> tuple[dict, dict]:
    """Run MassProcessor on a fileset; returns (output, metrics)."""
    runner = processor.Runner(
        executor=executor or processor.IterativeExecutor(status=False),
        schema=BaseSchema,
        chunksize=chunksize,
        savemetrics=True,
    )
    return runner(fileset, processor_instance=MassProcessor(config), treename=None)


def assert_same_output(a: dict, b: dict, rtol: float = 0.0) -> None:
    """Every histogram bin (flow included), final-state count and cutflow number agree."""
    assert a["cutflow"] == b["cutflow"]
    assert a["files"] == b["files"]
    assert a["groups"].keys() == b["groups"].keys()
    for group in a["groups"]:
        ga, gb = a["groups"][group], b["groups"][group]
        assert ga["fs_events"] == gb["fs_events"]
        assert ga["hists"].keys() == gb["hists"].keys()
        for key in ga["hists"]:
            va, vb = ga["hists"][key].view(flow=True), gb["hists"][key].view(flow=True)
            if rtol:
                np.testing.assert_allclose(va["value"], vb["value"], rtol=rtol, err_msg=str(key))
            else:
                np.testing.assert_array_equal(va, vb, err_msg=str(key))
