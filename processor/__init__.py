"""ATLAS Open Data -> invariant-mass histograms for BumpNet, as a coffea processor on Dask."""

__version__ = "0.1.0"
