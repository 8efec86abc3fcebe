"""Files written atomically (temporary sibling + rename) and the one user cache-directory rule."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """``$BUMPNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/bumpnet-masses`` (``~/.cache`` by default)."""
    env = os.environ.get("BUMPNET_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "bumpnet-masses"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a unique temporary sibling of ``path``; it becomes ``path`` only if the block succeeds.

    The temporary file is flushed to disk before the rename, so a crash leaves either the old
    file or the complete new one under the final name, never a half-written file.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with contextlib.suppress(OSError), open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(
    path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> None:
    """Write JSON atomically (non-JSON values as ``str``)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=str) + "\n")
