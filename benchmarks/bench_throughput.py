"""Throughput of the processor relative to a plain uproot read of the same branches (one run)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import uproot
from coffea import processor
from coffea.nanoevents import BaseSchema

from processor.config import validate_config
from processor.opendata.formats import FORMATS, branches_needed
from processor.physics.histograms import accumulator_size
from processor.run.mass_processor import MassProcessor
from processor.synthetic import write_sample
from processor.synthetic.meta import TREE_NAMES


def main() -> int:
    """Write a synthetic file (``--format``, default 2025e), time uproot alone and the processor, print ratios as JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--chunksize", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--format", default="2025e", choices=sorted(TREE_NAMES), help="synthetic format"
    )
    args = ap.parse_args()
    cfg = validate_config({})
    sel = cfg.object_selection
    fmt = FORMATS[args.format]
    tree = TREE_NAMES[args.format]
    branches = branches_needed(fmt, sel)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sample(
            Path(tmp) / "bench.root", args.format, args.events, seed=3, signal_mass_gev=800.0
        )
        t_read, t_proc = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            with uproot.open(path) as f:
                for _arrays in f[tree].iterate(branches, step_size=args.chunksize):
                    pass
            t_read.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            runner = processor.Runner(
                executor=processor.IterativeExecutor(status=False),
                schema=BaseSchema,
                chunksize=args.chunksize,
                savemetrics=True,
            )
            out, metrics = runner(
                {"bench": {"files": {str(path): tree}}},
                processor_instance=MassProcessor(cfg),
                treename=None,
            )
            t_proc.append(time.perf_counter() - t0)
    best_read, best_proc = min(t_read), min(t_proc)
    result = {
        "format": args.format,
        "events": args.events,
        "branches": len(branches),
        "uproot_read_events_per_s": round(args.events / best_read),
        "pipeline_events_per_s": round(args.events / best_proc),
        "pipeline_over_read_time_ratio": round(best_proc / best_read, 2),
        "histograms": sum(len(g["hists"]) for g in out["groups"].values()),
        "accumulator_bytes": accumulator_size(out["groups"]),
        "bytes_read": metrics.get("bytesread"),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
