"""Files shipped inside the package (they work the same from a checkout and a wheel install)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from processor.errors import ConfigError
from processor.fsutil import atomic_write_text

#: The commented default config; ``tests/test_install.py`` keeps it identical to ./config.yaml.
DEFAULT_CONFIG_RESOURCE = "data/config.yaml"


def default_config_text() -> str:
    """The commented default ``config.yaml`` (package data ``processor/data/config.yaml``)."""
    return resources.files("processor").joinpath(DEFAULT_CONFIG_RESOURCE).read_text("utf-8")


def write_default_config(path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the commented default config to ``path`` (atomically); returns the path.

    Raises ConfigError if ``path`` exists and ``overwrite`` is false, or is a directory.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise ConfigError(
            f"--write-config {target}: is a directory; pass a file name such as {target / 'config.yaml'}"
        )
    if target.exists() and not overwrite:
        raise ConfigError(
            f"--write-config {target}: file exists; choose another path or delete it first"
        )
    atomic_write_text(target, default_config_text())
    return target
