"""Synthetic ATLAS Open Data files: the former module, moved whole to writers.py, split next."""

from .writers import *  # noqa: F403
