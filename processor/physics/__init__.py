"""Per-chunk physics as pure functions: object selection, final states, masses, histograms.

Imports only the config section models and numpy/awkward/vector/hist; testable without coffea
or Dask (``tests/reference.py`` is its independent loop implementation).
"""
