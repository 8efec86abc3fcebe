"""Merging finished runs or shards: read each run's raw histograms back and add them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coffea.processor import accumulate

from processor.config import Config
from processor.output.manifest import raw_file_path, read_manifest
from processor.output.rootfiles import read_raw_file
from processor.physics.accumulator import empty_output
from processor.physics.histograms import MassGrid


def load_run_output(run_dir: Path, config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished run's accumulator (from its raw ROOT file) and its manifest."""
    manifest = read_manifest(run_dir)
    grid = MassGrid.from_config(config.mass_calculation_task_config)
    groups, _ = read_raw_file(raw_file_path(run_dir, manifest), grid)
    out = {
        "groups": groups,
        "cutflow": manifest.get("cutflow", {}),
        "files": {i["file"]: i.get("entries_processed", 0) for i in manifest.get("inputs", [])},
        "formats": manifest.get("formats", {}),
        "failures": {},
    }
    return out, manifest


def merge_outputs(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Add accumulators (histograms, counts, cutflows) of several runs or shards."""
    merged = accumulate(outputs) if outputs else empty_output()
    for key, value in empty_output().items():
        merged.setdefault(key, value)
    return merged
