"""Fixes for coffea limitations the runner must not inherit (applied once at import).

coffea 2026.9 hashes file metadata (``FileMeta.__hash__``, used to deduplicate files and
processed chunks, on the driver and on every worker) with ``bytes(..., "ascii")``: a single
non-ASCII character anywhere in an input path (``données/ü.root``) raised UnicodeEncodeError
and aborted the whole run, even with skipbadfiles. :func:`patch_unicode_hash` replaces it with
the same MD5 over UTF-8, which is byte-identical for ASCII text, so every existing hash (and
checkpoint) stays as it was. It also makes coffea reuse a worker's open input file across
the chunks of that file (:mod:`processor.run.open_files`). This module is imported by
``mass_processor`` so that Dask workers, which import that module to unpickle the processor,
are patched as well.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from processor.run import open_files

log = logging.getLogger(__name__)


def unicode_hash(items: Iterable[Any]) -> int:
    """coffea's ``_hash`` (first 16 hex digits of an MD5 of ``;``-joined items), over UTF-8."""
    digest = hashlib.md5(";".join(str(x) for x in items).encode("utf-8"))
    return int(digest.hexdigest()[:16], base=16)


def patch_unicode_hash() -> None:
    """Make coffea hash non-ASCII paths (idempotent)."""
    import coffea.processor.executor as executor
    import coffea.util as util

    util._hash = unicode_hash
    executor._hash = unicode_hash


def patch_coffea() -> None:
    """Apply every fix of this module (idempotent)."""
    patch_unicode_hash()
    open_files.install()


patch_coffea()


class CoffeaCompatPlugin(WorkerPlugin):
    """A Dask worker plugin applying these fixes on every worker, also ones started later
    (coffea's pre-processing hashes paths on the workers before any of our modules is loaded)."""

    name = "bumpnet-coffea-compat"

    def setup(self, worker: Any) -> None:
        """Called by Dask on each worker."""
        del worker
        patch_coffea()


def register_on(client: Any) -> None:
    """Register :class:`CoffeaCompatPlugin` on a Dask client's cluster."""
    try:
        client.register_plugin(CoffeaCompatPlugin(), name=CoffeaCompatPlugin.name)
    except Exception as exc:  # a worker restarting right now: it gets the plugin when it is back
        log.debug("registering the coffea fixes on the workers: %s", exc)
