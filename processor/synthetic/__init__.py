"""Synthetic ATLAS Open Data files in each release's on-disk format: a test oracle and the demo."""

from __future__ import annotations

from .demo import (
    DEMO_SEED,
    DEMO_SIGNAL_FRACTION,
    DEMO_SIGNAL_MASS_GEV,
    DEMO_SKIM,
    LUMI_2025E_PB,
    demo_cache_dir,
    make_demo_sample,
)
from .meta import (
    FORMATS,
    GENERATOR_VERSION,
    KINDS,
    SYNTHETIC_DSIDS,
    TREE_NAMES,
    UNIT_SCALE,
    sample_filename,
)
from .sample import write_sample

__all__ = [
    "DEMO_SEED",
    "DEMO_SIGNAL_FRACTION",
    "DEMO_SIGNAL_MASS_GEV",
    "DEMO_SKIM",
    "FORMATS",
    "GENERATOR_VERSION",
    "KINDS",
    "LUMI_2025E_PB",
    "SYNTHETIC_DSIDS",
    "TREE_NAMES",
    "UNIT_SCALE",
    "demo_cache_dir",
    "make_demo_sample",
    "sample_filename",
    "write_sample",
]
