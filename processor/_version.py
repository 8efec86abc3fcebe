"""The package version: the single source (``pyproject.toml`` reads it, ``--version`` prints it)."""

__version__ = "0.1.0"
