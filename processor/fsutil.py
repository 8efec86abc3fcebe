"""Files written atomically (temporary sibling + rename) and the one user cache-directory rule."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from processor.errors import StorageError

#: errno values that mean "the storage cannot take the write", never "the input is bad"
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG}
)


def storage_error(path: str | Path, exc: OSError) -> StorageError:
    """One line naming the path, the real cause and how to continue."""
    cause = os.strerror(exc.errno) if exc.errno else str(exc)
    return StorageError(
        f"cannot write {path}: {cause} [errno {exc.errno}]; free space or fix the permissions "
        "of the output location, then rerun with --resume RUN_DIR to continue from the checkpoints"
    )


def cache_root() -> Path:
    """``$BUMPNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/bumpnet-masses`` (``~/.cache`` by default)."""
    env = os.environ.get("BUMPNET_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "bumpnet-masses"


def current_umask() -> int:
    """This process's umask (read without changing it where /proc allows)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The permissions ``open``/``mkdir`` would give a new file/directory under the umask
    (temporary files and directories are private until they take their final name)."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str = ".tmp", fsync: bool = True) -> Iterator[Path]:
    """Yield a unique temporary sibling of ``path``; it becomes ``path`` only if the block succeeds.

    The temporary file is flushed to disk before the rename (``fsync``), so a crash leaves either
    the old file or the complete new one under the final name, never a half-written file. The
    file gets the permissions a plain ``open`` would give it (umask), not the temporary's 0600.
    A write
    the storage refuses (disk full, read-only, quota: :data:`STORAGE_ERRNOS`) raises
    :class:`StorageError` naming ``path`` (the final name, not the temporary one). ``suffix`` ends
    the temporary name (for writers that pick the format from it); it starts with a dot, so
    globs of final names never see it.
    """
    final = Path(path)
    error: OSError | None = None
    tmp: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        if fsync:
            with contextlib.suppress(OSError), open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        with contextlib.suppress(OSError):  # some mounts refuse chmod: keep the file anyway
            os.chmod(tmp, default_mode())  # mkstemp's 0600 -> what a plain open would give
        os.replace(tmp, final)
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        error = exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    if error is not None:  # raised outside the except block: no OSError in the chain
        raise storage_error(final, error)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(
    path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> None:
    """Write JSON atomically (non-JSON values as ``str``)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=str) + "\n")
