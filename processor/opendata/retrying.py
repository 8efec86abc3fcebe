"""Transient read errors (timeouts, HTTP 5xx, connection resets) retried with backoff.

uproot reads a file through a "source"; :class:`RetryingSource` is uproot's own fsspec source
(the one it uses by default for every path and URL) with each request retried when it fails
for a reason that goes away by itself. coffea cannot do this: the processor records any chunk
error, and its executors skip an ``OSError`` on the first occurrence. The retry count and
backoff come from ``executor.io_retries`` / ``executor.io_retry_backoff_s`` through
:func:`with_io_retries` (uproot options, so they travel to the Dask workers).
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import fsspec
import uproot
import uproot.source.fsspec
from uproot.source.coalesce import coalesce_requests

log = logging.getLogger(__name__)

T = TypeVar("T")

#: option names (popped before uproot/fsspec see them)
RETRIES_OPTION = "bumpnet_io_retries"
BACKOFF_OPTION = "bumpnet_io_backoff_s"
#: the longest wait between two attempts
MAX_BACKOFF_S = 30.0

_TRANSIENT_TEXT = re.compile(
    r"timed? ?out|operation expired|connection (reset|refused|aborted)|broken pipe|"
    r"temporarily unavailable|service unavailable|bad gateway|gateway time-?out|"
    r"server disconnected|status 5\d\d|http(?: error)? 5\d\d|\b(?:500|502|503|504)\b",
    re.IGNORECASE,
)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """True for errors that go away by themselves: timeouts, connection resets/refusals,
    HTTP 5xx/408/429 and their XRootD equivalents (judged on the whole exception chain)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, (TimeoutError, asyncio.TimeoutError, ConnectionError)):
            return True
        status = _status(cur)
        if status is not None and (status >= 500 or status in (408, 429)):
            return True
        name = type(cur).__name__
        if name in ("ServerDisconnectedError", "ClientPayloadError", "ClientConnectorError"):
            return True
        readerr = isinstance(cur, (OSError, http.client.HTTPException)) or name.startswith("Client")
        if readerr and _TRANSIENT_TEXT.search(str(cur)):
            return True
        todo += [cur.__cause__, cur.__context__]
    return False


def backoff_s(attempt: int, base_s: float) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): ``base * 2**attempt``, capped."""
    return min(MAX_BACKOFF_S, base_s * (2**attempt))


def retry_call(fn: Callable[[], T], retries: int, base_s: float, what: str) -> T:
    """``fn()``, retried up to ``retries`` times on transient errors with exponential backoff."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise
            delay = backoff_s(attempt, base_s)
            log.warning(
                "%s: transient error (%s: %s); retry %d of %d in %.1f s",
                what,
                type(exc).__name__,
                " ".join(str(exc).split())[:200],
                attempt + 1,
                retries,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


class RetryingSource(uproot.source.fsspec.FSSpecSource):
    """uproot's fsspec source with every request retried on transient errors.

    A failed ranged read is asked again only for the ranges that failed; after the last
    attempt the real error (e.g. aiohttp's ``ClientResponseError: 503``) is raised, not
    uproot's ``TypeError: ... object is not subscriptable``.
    """

    def __init__(self, file_path: str, coalesce_config: Any = None, **options: Any) -> None:
        self._io_retries = int(options.pop(RETRIES_OPTION, 3))
        self._io_backoff_s = float(options.pop(BACKOFF_OPTION, 1.0))
        for key in [k for k in options if k.startswith("bumpnet_")]:  # the runner's, not fsspec's
            options.pop(key)
        super().__init__(file_path, coalesce_config, **options)

    def _retry(self, fn: Callable[[], T]) -> T:
        return retry_call(fn, self._io_retries, self._io_backoff_s, self._file_path_orig)

    def chunk(self, start: int, stop: int) -> Any:
        """One byte range, retried."""
        return self._retry(lambda: super(RetryingSource, self).chunk(start, stop))

    @property
    def num_bytes(self) -> int:
        """The file size (one request), retried."""
        return self._retry(lambda: self._fs.size(self._file_path))

    async def _fetch(self, starts: list[int], ends: list[int]) -> list[Any]:
        results: list[Any] = [None] * len(starts)
        todo = list(range(len(starts)))
        is_caching = isinstance(self._fs, fsspec.implementations.cached.CachingFileSystem)
        for attempt in range(self._io_retries + 1):
            paths = [self._file_path] * len(todo)
            s, e = [starts[i] for i in todo], [ends[i] for i in todo]
            try:
                if self._async_impl and not is_caching:
                    got = await self._fs._cat_ranges(paths=paths, starts=s, ends=e)
                else:
                    got = await asyncio.to_thread(
                        self._fs.cat_ranges, paths=paths, starts=s, ends=e
                    )
            except Exception as exc:
                got = [exc] * len(todo)
            failed = []
            for i, value in zip(todo, got, strict=True):
                results[i] = value
                if isinstance(value, BaseException):
                    failed.append(i)
            if not failed:
                return results
            first = results[failed[0]]
            if attempt >= self._io_retries or not all(is_transient(results[i]) for i in failed):
                raise first
            delay = backoff_s(attempt, self._io_backoff_s)
            log.warning(
                "%s: %d of %d ranges failed (%s: %s); retry %d of %d in %.1f s",
                self._file_path_orig,
                len(failed),
                len(todo),
                type(first).__name__,
                " ".join(str(first).split())[:200],
                attempt + 1,
                self._io_retries,
                delay,
            )
            await asyncio.sleep(delay)
            todo = failed
        raise AssertionError("unreachable")

    def chunks(self, ranges: list[tuple[int, int]], notifications: Any) -> list[Any]:
        """Several byte ranges (coalesced as uproot does), each request retried."""
        if self.closed:
            raise OSError(f"file {self._file_path!r} is closed")
        self._num_requests += 1
        self._num_requested_chunks += len(ranges)
        self._num_requested_bytes += sum(stop - start for start, stop in ranges)

        def submit(request_ranges: list[tuple[int, int]]) -> Any:
            starts = [start for start, _ in request_ranges]
            ends = [stop for _, stop in request_ranges]
            return self._executor.submit(self._fetch(starts, ends))

        return coalesce_requests(ranges, submit, self, notifications, config=self._coalesce_config)


def with_io_retries(options: dict[str, Any] | None, retries: int, backoff: float) -> dict[str, Any]:
    """uproot options that read through :class:`RetryingSource` (unless a handler is set; with
    ``retries=0`` too, so that a failed read names its real cause)."""
    out = dict(options or {})
    if "handler" not in out:
        out.update({"handler": RetryingSource, RETRIES_OPTION: retries, BACKOFF_OPTION: backoff})
    return out


__all__ = ["RetryingSource", "backoff_s", "is_transient", "retry_call", "with_io_retries"]


def _check_uproot() -> None:  # uproot's fsspec source is the default this class extends
    assert issubclass(RetryingSource, uproot.source.chunk.Source)
