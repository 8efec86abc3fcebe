"""Per-chunk physics as pure functions: object selection, overlap removal, Z candidates, final
states and charge tags, masses, histograms.

Imports only the config section models and numpy/awkward/numba/hist; testable without coffea
or Dask. The hot path works on flat arrays (:mod:`.flat`) in compiled per-event loops
(:mod:`.kernels`) (``tests/reference.py`` is its independent loop implementation).
"""
