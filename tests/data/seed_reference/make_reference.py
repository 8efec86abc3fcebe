"""Freeze a finished run of the seed-compatible pipeline as the `naming: seed` reference.

Made once from `main` at 3429907 (before BumpNet-native names), with
``runner.py --demo --executor iterative --run-dir RUN``, then
``python tests/data/seed_reference/make_reference.py RUN``. When the demo generator changes,
remake it the same way: 3429907's runner with its ``make_demo_sample`` replaced by the current
generator's demo files (copied out of the cache first), then this script from the current tree
(it records the current ``generator_version``). Writes, beside this script:

* ``fine_kept.npz``: the accumulated fine-grid histograms of every kept final state (sparse:
  non-zero bin indices and contents, flow bins included) and every final state's event count,
  per sample group;
* ``outputs.json``: for every key of the run's BumpNet files, its class, bins, edges, sum and a
  sha256 of its float64 contents, variances and edges (flow bins included).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import uproot

from processor.synthetic import GENERATOR_VERSION

HERE = Path(__file__).resolve().parent


def digest(h) -> str:
    """sha256 of a TH1's contents, variances (flow included) and edges, as float64."""
    parts = [h.values(flow=True), h.variances(flow=True), h.axis().edges()]
    return hashlib.sha256(b"".join(np.asarray(p, "<f8").tobytes() for p in parts)).hexdigest()


def main(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    arrays: dict[str, np.ndarray] = {}
    with uproot.open(run_dir / manifest["raw_file"]) as raw:
        for group, states in manifest["final_states"].items():
            kept = {fs for fs, v in states.items() if v["kept"]}
            counts = [(fs, v["events"]) for fs, v in states.items()]
            arrays[f"{group}|fs_labels"] = np.array([fs for fs, _ in counts])
            arrays[f"{group}|fs_events"] = np.array([n for _, n in counts], dtype=np.int64)
            for spec in manifest["histograms"][group]["spectra"]:
                assert spec["fs"] in kept
            for key in raw[group].keys(cycle=False):
                if not key.startswith("raw_mass_"):
                    continue
                h = raw[f"{group}/{key}"]
                values = h.values(flow=True)
                nz = np.flatnonzero(values)
                # keep only what post-processing reads: kept final states
                spec_fs = [s["fs"] for s in manifest["histograms"][group]["spectra"]]
                raw_names = {
                    s["roi_name"].replace("ROI_mass_", "raw_mass_").rsplit("_width_", 1)[0]: s
                    for s in manifest["histograms"][group]["spectra"]
                    if s["roi_name"]
                }
                s = raw_names.get(key)
                if s is None:
                    continue
                assert s["fs"] in spec_fs
                arrays[f"{group}|{s['fs']}|{s['combo']}|idx"] = nz.astype(np.int32)
                arrays[f"{group}|{s['fs']}|{s['combo']}|val"] = values[nz]
    np.savez_compressed(HERE / "fine_kept.npz", **arrays)
    outputs: dict[str, dict] = {}
    for group, entry in manifest["histograms"].items():
        with uproot.open(run_dir / entry["file"]) as f:
            for key, cls in f.classnames(cycle=False).items():
                h = f[key]
                outputs[f"{group}|{key}"] = {
                    "class": cls,
                    "bins": len(h.values()),
                    "lo": float(h.axis().edges()[0]),
                    "hi": float(h.axis().edges()[-1]),
                    "sum": float(h.values().sum()),
                    "sha256": digest(h),
                }
    meta = {
        "source": "main 3429907, runner.py --demo --executor iterative (demo files of generator_version)",
        "fine_grid": manifest["fine_grid"],
        "demo_events": manifest["cutflow_total"]["events_read"],
        "generator_version": GENERATOR_VERSION,
    }
    (HERE / "outputs.json").write_text(
        json.dumps({"meta": meta, "histograms": outputs}, indent=1, sort_keys=True) + "\n"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
