"""One open input file per worker thread, reused across the chunks it reads from that file.

coffea opens the input file again for every chunk and reads the tree header each time: about
0.1 s for a 2025e tree of 117 branches and 2 s for a PHYSLITE tree of 1,494, against about
0.4 s of physics for a 200 k-event chunk. :func:`install` makes coffea's per-chunk
``uproot.open`` hand out the file the same thread opened for the previous chunk when it is
the same file, opened with the same options and unchanged on disk (local files: inode, size
and modification time). uproot then serves the tree from the open file's object cache.

The file is closed when the thread moves on to another file, when a chunk fails while
reading it (the next chunk opens it afresh), and at the end of every run
(:func:`release_open_files`, also on the Dask workers), so no handle outlives a run. Only the
runner's own runs reuse files: they pass the uproot option :data:`REUSE_OPTION`; coffea runs
of anyone else in the same process open every chunk afresh as usual.
"""

from __future__ import annotations

import logging
import os
import threading
import types
from typing import Any

import uproot

log = logging.getLogger(__name__)

#: uproot option (removed before uproot sees it) with which a run asks for reused files
REUSE_OPTION = "bumpnet_reuse_open_files"

_lock = threading.Lock()
#: thread id -> (key, open uproot directory)
_open: dict[int, tuple[tuple[Any, ...], Any]] = {}


def _file_name(path: Any) -> str | None:
    """The file name of coffea's ``{filename: None}`` argument, else None (not ours to reuse)."""
    if isinstance(path, dict) and len(path) == 1:
        ((name, obj),) = path.items()
        return name if obj is None and isinstance(name, str) else None
    return None


def _disk_identity(name: str) -> tuple[int, int, int] | None:
    """Inode, size and modification time of a local file; None for URLs."""
    local = name[len("file://") :] if name.startswith("file://") else name
    if "://" in local:
        return None
    try:
        st = os.stat(local)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _close(entry: tuple[tuple[Any, ...], Any] | None) -> None:
    if entry is not None:
        try:
            entry[1].close()
        except Exception as exc:  # closing must never fail a run
            log.debug("closing %s: %s", entry[0][0], exc)


class _Reused:
    """Context manager around a cached open file: leaving it keeps the file open, unless the
    block raised (the file is then closed and forgotten)."""

    def __init__(self, directory: Any, thread: int) -> None:
        self._directory = directory
        self._thread = thread

    def __enter__(self) -> Any:
        return self._directory

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            with _lock:
                entry = _open.get(self._thread)
                if entry is not None and entry[1] is self._directory:
                    del _open[self._thread]
                else:
                    entry = None
            _close(entry)


def open_reused(path: Any, **options: Any) -> Any:
    """``uproot.open(path, **options)``, reusing this thread's open file when it is the same
    (only with ``REUSE_OPTION`` set: the runner's runs)."""
    reuse = bool(options.pop(REUSE_OPTION, False))
    name = _file_name(path) if reuse else None
    if name is None:
        return uproot.open(path, **options)
    key = (name, _disk_identity(name), repr(sorted(options.items(), key=lambda kv: kv[0])))
    thread = threading.get_ident()
    with _lock:
        entry = _open.get(thread)
    if entry is not None and entry[0] == key and not entry[1].file.closed:
        cache = entry[1].file.array_cache
        if cache is not None:  # holds the last chunk's arrays: as if the file were new
            cache.clear()
        return _Reused(entry[1], thread)
    _close(entry)
    directory = uproot.open(path, **options)
    with _lock:
        _open[thread] = (key, directory)
    return _Reused(directory, thread)


def release_open_files() -> int:
    """Close every file kept open by :func:`open_reused` in this process; return how many."""
    with _lock:
        entries = list(_open.values())
        _open.clear()
    for entry in entries:
        _close(entry)
    return len(entries)


class _UprootReusingFiles(types.ModuleType):
    """uproot as coffea's executor module sees it: everything as is, but ``open`` reuses."""

    def __getattr__(self, name: str) -> Any:
        return getattr(uproot, name)

    @staticmethod
    def open(path: Any, **options: Any) -> Any:
        """See :func:`open_reused`."""
        return open_reused(path, **options)


def install() -> None:
    """Make coffea's executor open input files through :func:`open_reused` (idempotent)."""
    import coffea.processor.executor as executor

    if not isinstance(executor.uproot, _UprootReusingFiles):
        executor.uproot = _UprootReusingFiles("uproot")
