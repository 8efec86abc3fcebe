"""Small shared helpers for tests that run the processor."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import uproot
from coffea import processor
from coffea.nanoevents import BaseSchema

from processor.config import Config
from processor.run.mass_processor import MassProcessor

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


def read_hists(path: Path) -> dict[str, object]:
    """Every object of a ROOT file: TH1 -> (values, variances, edges) with flow; else class."""
    out: dict[str, object] = {}
    with uproot.open(path) as f:
        for key, cls in f.classnames(cycle=False).items():
            if cls.startswith("TH1"):
                h = f[key]
                out[key] = (h.values(flow=True), h.variances(flow=True), h.axis().edges())
            else:
                out[key] = cls
            if cls == "THStack":  # MC by process: each component too
                for h in f[key].member("fHists"):
                    out[f"{key}/{h.member('fName')}"] = (
                        h.values(flow=True),
                        h.variances(flow=True),
                        h.axis().edges(),
                    )
    return out


def assert_same_hists(a: Path, b: Path) -> int:
    """Same keys, and every histogram identical bin by bin; returns the number of TH1."""
    ha, hb = read_hists(a), read_hists(b)
    assert ha.keys() == hb.keys()
    n = 0
    for key, va in ha.items():
        if isinstance(va, str):
            assert va == hb[key], key
            continue
        n += 1
        for x, y in zip(va, hb[key], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=key)
    return n


@contextlib.contextmanager
def two_worker_client() -> Iterator[Any]:
    """A Client of a 2-process LocalCluster on loopback (no dashboard), closed afterwards."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def assert_same_run_histograms(run_a: Path, run_b: Path) -> int:
    """Two run directories hold identical raw and BumpNet histograms (values, variances, edges,
    flow); returns the number of raw TH1."""
    n = assert_same_hists(
        run_a / "histograms" / "raw_histograms.root", run_b / "histograms" / "raw_histograms.root"
    )
    assert assert_same_hists(
        run_a / "histograms" / "bumpnet_histograms.root",
        run_b / "histograms" / "bumpnet_histograms.root",
    )
    mc_a = run_a / "histograms" / "bumpnet_histograms_mc.root"
    mc_b = run_b / "histograms" / "bumpnet_histograms_mc.root"
    assert mc_a.is_file() == mc_b.is_file()
    if mc_a.is_file():
        assert assert_same_hists(mc_a, mc_b)
    return n


def read_branches(metrics: dict) -> set[str]:
    """Branch names coffea's metrics list as read (``Accessed(branch, buffer_key)`` tuples up
    to coffea 2025.x, ``"branch-<buffer>"`` strings later)."""
    return {getattr(c, "branch", None) or str(c).rsplit("-", 1)[0] for c in metrics["columns"]}


def wait_until_processing(proc: subprocess.Popen, run_dir: Path, timeout_s: float = 180.0) -> None:
    """Wait (bounded) until a runner started with piped stdout has connected to its cluster and
    checkpointed its first chunk, or has exited."""
    for line in proc.stdout:  # type: ignore[union-attr]
        if "Dask dashboard" in line:
            break
    for _ in range(int(timeout_s / 0.2)):
        if proc.poll() is not None or list((run_dir / "checkpoints").rglob("*.coffea")):
            return
        time.sleep(0.2)


def assert_sigterm_exit(proc: subprocess.Popen, err: str, run_dir: Path) -> None:
    """Exit 143 with exactly one ``error:`` line naming SIGTERM and ``--resume RUN_DIR``."""
    assert proc.returncode == 143, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "SIGTERM" in errors[0] and f"--resume {run_dir}" in errors[0]
    assert "Traceback" not in err
