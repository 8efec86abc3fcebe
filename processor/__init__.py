"""ATLAS Open Data -> invariant-mass histograms for BumpNet: the public API for notebooks and scripts.

Typical use::

    import processor as bm
    config = bm.load_config("config.yaml")
    plan = bm.build_fileset(config.parsing_task_config, inputs=[str(p) for p in bm.make_demo_sample()])
    result = bm.process(plan.fileset, config, client=client)   # or no client: in-process
    results = bm.postprocess_groups(result.out, config)        # {"data": ..., "mc": ...}
    rows = bm.readiness_table(results["data"])                 # what BumpNet would accept, and why
    bm.write_bumpnet_file("bumpnet_histograms.root", results["data"])
    scan = bm.scan_run(results, result.out, config, 13000.0)   # the bump scan (a cross-check)

Subpackages: ``physics`` (per-chunk physics, pure functions), ``opendata`` (releases, metadata,
filesets, formats, weights), ``run`` (the runner: CLI, execution, run directories), ``output``
(post-processing, names, ROOT files, manifest, plots), ``synthetic`` (test and demo samples).
Names are loaded on first use, so ``runner.py --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from processor._version import __version__ as __version__

_EXPORTS = {
    "BumpnetError": "processor.errors",
    "Config": "processor.config",
    "load_config": "processor.config",
    "build_fileset": "processor.opendata.fileset",
    "energy_and_lumi": "processor.opendata.releases",
    "make_demo_sample": "processor.synthetic",
    "DEMO_SIGNAL_MASS_GEV": "processor.synthetic",
    "MassProcessor": "processor.run.mass_processor",
    "process": "processor.run.execute",
    "total_cutflow": "processor.physics.accumulator",
    "MassGrid": "processor.physics.histograms",
    "postprocess_groups": "processor.output.postprocess",
    "readiness_table": "processor.output.readiness",
    "bumpnet_filename": "processor.output.rootfiles",
    "write_bumpnet_file": "processor.output.rootfiles",
    "make_plots": "processor.output.plots",
    "scan_spectrum": "processor.output.bumpscan",
    "BumpScanConfig": "processor.output.scanconfig",
    "scan_roi": "processor.output.scanning",
    "scan_run": "processor.output.scanning",
    "trials_correction": "processor.output.bumpscan",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'processor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
