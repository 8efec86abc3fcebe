"""Per-chunk physics as pure functions: object selection, overlap removal, Z candidates, final
states and charge tags, masses, histograms.

Imports only the config section models and numpy/awkward/vector/hist; testable without coffea
or Dask (``tests/reference.py`` is its independent loop implementation).
"""
