"""A download cache for ATLAS Open Data files: each file is fetched once, resumably, and verified.

Layout: the file behind ``https://host/eos/opendata/atlas/x/y.root`` is stored as
``<cache_dir>/eos/opendata/atlas/x/y.root`` (the URL path, without host, so the ``root://``
and ``https://`` URLs of the same EOS file share one copy). While a file is downloading it
lives in ``<final name>.part``; an interrupted download is resumed with an HTTP ``Range``
request; the size (from the catalogue or the server) and the checksum (from the catalogue or
the server's ``Digest: adler32=...`` answer to ``Want-Digest``, as EOS gives it) are checked
before the ``.part`` file is renamed atomically to its final name. A file that fails its
checks is deleted, so nothing unverified ever sits under a final name.

``http(s)://`` URLs are fetched with ``requests``; other URLs (``root://`` through
fsspec-xrootd, ``file://``) through fsspec, resuming by seeking. Several files download in
parallel (a thread pool) under one rich progress bar. Concurrent processes sharing a cache
directory serialise on a per-file lock in ``<cache_dir>/.locks``.

The options for *streaming* (no download) live here too: :func:`uproot_options`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from processor.errors import DataAccessError  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

#: Seconds uproot/fsspec wait for a remote read before giving up (HTTP total per request;
#: XRootD per operation). coffea retries failed chunks (``executor.retries``).
STREAM_TIMEOUT_S = 90
#: Bytes per read while downloading.
_BLOCK = 1 << 20
#: Bytes per network read: what a cut connection can lose at most (the rest is kept).
_NET_BLOCK = 64 * 1024
#: Upper bound of the wait between two download attempts.
_MAX_BACKOFF_S = 8.0
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CHECKSUM_RE = re.compile(r"^(adler32|sha256|md5|sha1):([0-9a-f]+)$", re.IGNORECASE)


def uproot_options(timeout_s: float | None = None) -> dict[str, Any]:
    """Options for ``uproot.open`` / coffea's ``Runner(uproot_options=...)`` when streaming.

    ``timeout`` bounds each HTTP request (aiohttp, through fsspec) and each XRootD operation
    (fsspec-xrootd); coffea passes it as ``xrootdtimeout``. Transient read errors are retried
    per request by :mod:`processor.opendata.retrying` (``executor.io_retries``).
    """
    return {"timeout": int(timeout_s if timeout_s is not None else STREAM_TIMEOUT_S)}


def coffea_runner_options(options: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split :func:`uproot_options` for coffea: ``(Runner(**first), runner(uproot_options=second))``.

    The timeout goes to ``Runner(xrootdtimeout=...)`` (coffea passes it to ``uproot.open`` as
    ``timeout``), never inside ``uproot_options``: coffea up to 2026.7 passes both and
    ``uproot.open`` fails with "got multiple values for keyword argument 'timeout'" on every
    chunk (2026.9 still does when it traces the columns to preload).
    """
    rest = dict(options or {})
    timeout = rest.pop("timeout", None)
    return ({"xrootdtimeout": int(timeout)} if timeout is not None else {}), rest


# -- cache layout -------------------------------------------------------------------------
def strip_fsspec_chain(url: str) -> str:
    """``simplecache::https://x/y`` -> ``https://x/y`` (atlasopenmagic adds such prefixes)."""
    return url.rsplit("::", 1)[-1]


def is_remote(path_or_url: str) -> bool:
    """True for ``scheme://`` URLs other than ``file://``."""
    scheme = urlsplit(strip_fsspec_chain(path_or_url)).scheme.lower()
    return len(scheme) > 1 and scheme != "file"


def cache_path(url: str, cache_dir: Path) -> Path:
    """Where the download cache keeps ``url``: ``cache_dir`` + the URL's path (host dropped)."""
    parts = urlsplit(strip_fsspec_chain(url))
    rel = unquote(parts.path).lstrip("/")
    pieces = [p for p in rel.split("/") if p not in ("", ".")]
    if not pieces or ".." in pieces:
        raise DataAccessError(
            f"cannot place '{url}' in the download cache: its path is empty or contains '..'; "
            "pass a plain file URL"
        )
    return Path(cache_dir).joinpath(*pieces)


def _part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


@contextlib.contextmanager
def _file_lock(cache_dir: Path, target: Path) -> Iterator[None]:
    """An exclusive advisory lock per cached file, shared across processes (no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    lock_dir = Path(cache_dir) / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(str(target.resolve()).encode()).hexdigest()
    with (lock_dir / f"{key}.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- checksums ---------------------------------------------------------------------------
def parse_checksum(text: str) -> tuple[str, str]:
    """``"adler32:037f48e7"`` -> ``("adler32", "037f48e7")`` (lower case, adler32 zero-padded)."""
    m = _CHECKSUM_RE.match(text.strip())
    if not m:
        raise DataAccessError(
            f"checksum '{text}' is not understood: write it as 'adler32:<8 hex digits>' or "
            "'sha256:<hex>'"
        )
    algo, value = m.group(1).lower(), m.group(2).lower()
    if algo == "adler32":
        value = value.zfill(8)
    return algo, value


def file_checksum(path: Path, algo: str) -> str:
    """The checksum of a file as lower-case hex (adler32 zero-padded to 8 digits)."""
    if algo == "adler32":
        value = 1
        with Path(path).open("rb") as fh:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                value = zlib.adler32(block, value)
        return f"{value & 0xFFFFFFFF:08x}"
    digest = hashlib.new(algo)
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _server_digest(headers: Any) -> str | None:
    """``Digest: adler32=0a1b2c3d`` (RFC 3230, as EOS answers ``Want-Digest``) -> checksum."""
    raw = headers.get("Digest") if headers is not None else None
    if not raw:
        return None
    for item in raw.split(","):
        algo, _, value = item.strip().partition("=")
        if algo.strip().lower() == "adler32" and re.fullmatch(r"[0-9a-fA-F]{1,8}", value.strip()):
            return f"adler32:{value.strip().lower().zfill(8)}"
    return None


# -- errors ------------------------------------------------------------------------------
class _Fatal(Exception):
    """A failure that retrying cannot fix (404, checksum mismatch, ...)."""


class _Retryable(Exception):
    """A failure worth another attempt (connection reset, timeout, 5xx, short body)."""


def _describe_network_error(exc: BaseException) -> str:
    text = str(exc)
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused (is the server down?)"
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return "timed out"
    if "Name or service not known" in text or "NameResolution" in text:
        return "host name could not be resolved (no network?)"
    return f"{type(exc).__name__}: {text[:200]}"


# -- one download ------------------------------------------------------------------------
class _Progress:
    """Thread-safe adapter between downloads and an optional rich progress bar."""

    def __init__(self, enabled: bool, n_files: int) -> None:
        self._lock = threading.Lock()
        self._bar: Any = None
        self._task: Any = None
        self._total = 0
        self._n_files = n_files
        self._done = 0
        if enabled and n_files:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            self._task = self._bar.add_task(self._label(), total=None)

    def _label(self) -> str:
        return f"downloading {self._done}/{self._n_files} files"

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def add_total(self, nbytes: int) -> None:
        with self._lock:
            self._total += nbytes
            if self._bar is not None:
                self._bar.update(self._task, total=self._total)

    def advance(self, nbytes: int) -> None:
        if self._bar is not None and nbytes:
            self._bar.update(self._task, advance=nbytes)

    def file_done(self) -> None:
        with self._lock:
            self._done += 1
            if self._bar is not None:
                self._bar.update(self._task, description=self._label())


class _Downloader:
    """Fetches one URL into its cache path; see the module docstring for the protocol."""

    def __init__(
        self,
        url: str,
        target: Path,
        cache_dir: Path,
        expected: dict[str, Any],
        timeout_s: float,
        retries: int,
        progress: _Progress,
        session_factory: Callable[[], Any],
    ) -> None:
        self.url = strip_fsspec_chain(url)
        self.target = target
        self.part = _part_path(target)
        self.cache_dir = cache_dir
        self.expected_size: int | None = (
            int(expected["size"]) if expected.get("size") is not None else None
        )
        self.expected_sum: tuple[str, str] | None = (
            parse_checksum(str(expected["checksum"])) if expected.get("checksum") else None
        )
        self.timeout_s = timeout_s
        self.retries = max(0, int(retries))
        self.progress = progress
        self._session_factory = session_factory
        self._counted_total = False
        self.server_sum: str | None = None

    # -- driver -------------------------------------------------------------------------
    def run(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.cache_dir, self.target):
            if self.target.exists():  # another process finished it meanwhile
                self.progress.file_done()
                return self.target
            last: BaseException | None = None
            for attempt in range(self.retries + 1):
                if attempt:
                    delay = min(_MAX_BACKOFF_S, 0.25 * 2**attempt)
                    log.info(
                        "retrying %s in %.1f s (attempt %d of %d): %s",
                        self.url,
                        delay,
                        attempt + 1,
                        self.retries + 1,
                        last,
                    )
                    time.sleep(delay)
                try:
                    total = self._fetch()
                    self._verify(total)
                    break
                except _Retryable as exc:
                    last = exc
                except _Fatal as exc:
                    raise DataAccessError(str(exc)) from None
            else:
                have = self.part.stat().st_size if self.part.exists() else 0
                kept = (
                    f"; {have} bytes are kept in {self.part} and the next run resumes from there"
                    if have
                    else ""
                )
                raise DataAccessError(
                    f"cannot download {self.url}: {last} (after {self.retries + 1} attempts)"
                    f"{kept}. Check the network and the URL, or set parsing_task_config.offline / "
                    "stream without parsing_task_config.download"
                )
            os.replace(self.part, self.target)
        self.progress.file_done()
        log.info("downloaded %s -> %s", self.url, self.target)
        return self.target

    # -- transfer ------------------------------------------------------------------------
    def _fetch(self) -> int:
        """Bring ``.part`` to the full size; return that size. Raises _Retryable/_Fatal."""
        scheme = urlsplit(self.url).scheme.lower()
        if scheme in ("http", "https"):
            return self._fetch_http()
        return self._fetch_fsspec()

    def _note_total(self, total: int | None, offset: int) -> None:
        if total is None:
            return
        if self.expected_size is not None and total != self.expected_size:
            self._discard()
            raise _Fatal(
                f"size mismatch for {self.url}: the catalogue says {self.expected_size} bytes, "
                f"the server has {total} bytes; the file changed on the server or the "
                "catalogue is outdated: refresh the metadata cache (delete it) and retry"
            )
        if not self._counted_total:
            self._counted_total = True
            self.progress.add_total(total)
            self.progress.advance(offset)

    def _fetch_http(self) -> int:
        import requests

        offset = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Want-Digest": "adler32", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        session = self._session_factory()
        try:
            resp = session.get(
                self.url,
                headers=headers,
                stream=True,
                timeout=(min(10.0, self.timeout_s), self.timeout_s),
            )
        except requests.RequestException as exc:
            raise _Retryable(_describe_network_error(exc)) from None
        with contextlib.closing(resp):
            if resp.status_code == 416 and offset:
                # the .part is as long as (or longer than) the file: start again
                log.warning("%s: server refused to resume at byte %d; restarting", self.url, offset)
                self._discard()
                raise _Retryable("range not satisfiable for the partial file; restarting")
            if resp.status_code in _RETRY_STATUS:
                raise _Retryable(f"HTTP {resp.status_code} {resp.reason}")
            if resp.status_code not in (200, 206):
                raise _Fatal(
                    f"cannot download {self.url}: HTTP {resp.status_code} {resp.reason}; check "
                    "the URL (and the release/skim/dataset that produced it)"
                )
            self.server_sum = _server_digest(resp.headers) or self.server_sum
            mode = "ab"
            if resp.status_code == 206:
                start, total = _content_range(resp.headers.get("Content-Range", ""))
                if start != offset:
                    log.warning(
                        "%s: server resumed at %s, not %d; restarting", self.url, start, offset
                    )
                    self._discard()
                    raise _Retryable("server answered a different byte range")
            else:
                if offset:
                    log.info("%s: server does not resume downloads; restarting from 0", self.url)
                mode, offset = "wb", 0
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            self._note_total(total, offset)
            got = offset
            try:
                with self.part.open(mode) as fh:
                    for block in resp.iter_content(chunk_size=_NET_BLOCK):
                        if block:
                            fh.write(block)
                            got += len(block)
                            self.progress.advance(len(block))
                    _sync(fh)
            except (requests.RequestException, ConnectionError, TimeoutError) as exc:
                raise _Retryable(
                    f"connection lost after {got} of {total if total else '?'} bytes "
                    f"({_describe_network_error(exc)})"
                ) from None
            except OSError as exc:  # writing the .part failed: disk full, permissions, ...
                raise _Fatal(
                    f"cannot write {self.part}: {exc}; free space or choose another "
                    "parsing_task_config.cache_dir"
                ) from None
        if total is not None and got < total:
            raise _Retryable(f"connection closed after {got} of {total} bytes")
        return total if total is not None else got

    def _fetch_fsspec(self) -> int:
        import fsspec

        offset = self.part.stat().st_size if self.part.exists() else 0
        try:
            fs, path = fsspec.core.url_to_fs(self.url, **_fsspec_options(self.url, self.timeout_s))
            total = int(fs.size(path))
        except FileNotFoundError:
            raise _Fatal(f"cannot download {self.url}: file not found; check the URL") from None
        except ImportError as exc:
            raise _Fatal(
                f"cannot download {self.url}: {exc}; install the 'xrootd' extra "
                "(pip install 'bumpnet-masses[xrootd]') or use protocol: https"
            ) from None
        except Exception as exc:  # network errors differ per fsspec backend
            raise _Retryable(_describe_network_error(exc)) from None
        if offset > total:
            self._discard()
            offset = 0
        self._note_total(total, offset)
        got = offset
        try:
            with fs.open(path, "rb") as src, self.part.open("ab" if offset else "wb") as fh:
                src.seek(offset)
                while got < total:
                    block = src.read(min(_BLOCK, total - got))
                    if not block:
                        break
                    fh.write(block)
                    got += len(block)
                    self.progress.advance(len(block))
                _sync(fh)
        except Exception as exc:
            raise _Retryable(
                f"transfer failed after {got} of {total} bytes ({_describe_network_error(exc)})"
            ) from None
        if got < total:
            raise _Retryable(f"transfer stopped after {got} of {total} bytes")
        return total

    # -- checks -------------------------------------------------------------------------
    def _verify(self, total: int) -> None:
        size = self.part.stat().st_size
        if size != total:
            if size > total:
                self._discard()
            raise _Retryable(f"got {size} bytes, expected {total}")
        if self.expected_size is not None and size != self.expected_size:
            self._discard()
            raise _Fatal(
                f"size mismatch for {self.url}: expected {self.expected_size} bytes, got {size}; "
                "the download was discarded: retry, and refresh the metadata cache if it repeats"
            )
        want = self.expected_sum
        origin = "catalogue"
        if want is None and self.server_sum:
            want, origin = parse_checksum(self.server_sum), "server"
        if want is None:
            log.debug("%s: no checksum known; verified the size only (%d bytes)", self.url, size)
            return
        algo, value = want
        got = file_checksum(self.part, algo)
        if got != value:
            self._discard()
            raise _Fatal(
                f"checksum mismatch for {self.url}: expected {algo}:{value} ({origin}), got "
                f"{algo}:{got}; the corrupt download was deleted, nothing was kept under "
                f"{self.target.name}. Run again to re-download; if it repeats the file on the "
                "server differs from the catalogue: refresh the metadata cache"
            )
        log.debug("%s: %s checksum ok (%s)", self.url, algo, value)

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.part.unlink()


def _sync(fh: BinaryIO) -> None:
    fh.flush()
    with contextlib.suppress(OSError):
        os.fsync(fh.fileno())


def _content_range(value: str) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000)."""
    m = re.match(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", value)
    if not m:
        return None, None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return int(m.group(1)), total


def _fsspec_options(url: str, timeout_s: float) -> dict[str, Any]:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "root":
        return {"timeout": int(timeout_s)}
    return {}


def _make_session_factory() -> Callable[[], Any]:
    """One ``requests.Session`` per worker thread (sessions are not thread-safe)."""
    local = threading.local()

    def factory() -> Any:
        session = getattr(local, "session", None)
        if session is None:
            import requests

            session = requests.Session()
            session.headers["User-Agent"] = "bumpnet-masses/download"
            local.session = session
        return session

    return factory


# -- public entry point ------------------------------------------------------------------
def download_files(
    urls: list[str],
    cache_dir: Path,
    *,
    expected: dict[str, dict] | None = None,
    parallel: int = 4,
    timeout_s: float = 60,
    retries: int = 3,
    progress: bool = True,
) -> dict[str, Path]:
    """Download ``urls`` into ``cache_dir`` (once each) and return ``{url: local path}``.

    Args:
        urls: remote URLs (``http(s)://``, ``root://``, ``file://``); local paths are
            returned unchanged.
        cache_dir: root of the download cache (created if needed).
        expected: per URL ``{"size": int, "checksum": "adler32:..."|"sha256:..."}`` where known.
            Without a checksum the server's ``Digest`` header (EOS: adler32) is used if sent.
        parallel: number of files downloaded at the same time.
        timeout_s: read timeout per request (connecting is bounded by min(10 s, timeout_s)).
        retries: further attempts per file after a failed one (resuming where it stopped).
        progress: show a rich progress bar.

    Raises:
        DataAccessError: one message naming the failed file(s) and the fix. Files that did
            download stay in the cache; a partial ``.part`` file is kept (and resumed next
            time) only when its bytes are not known to be bad.
    """
    cache_dir = Path(cache_dir).expanduser()
    expected = expected or {}
    result: dict[str, Path] = {}
    todo: list[tuple[str, Path]] = []
    order = list(dict.fromkeys(urls))  # unique, in the caller's order
    for url in order:
        if not is_remote(url) and not url.startswith("file://"):
            result[url] = Path(url)  # a plain local path needs no download
            continue
        # remote URLs and file:// (copying off a slow mount) go through the cache
        target = cache_path(url, cache_dir)
        exp = expected.get(url, {})
        if target.exists():
            if exp.get("size") is not None and target.stat().st_size != int(exp["size"]):
                log.warning(
                    "%s in the download cache has %d bytes, expected %s: downloading it again",
                    target,
                    target.stat().st_size,
                    exp["size"],
                )
                target.unlink()
            else:
                log.debug("cached: %s", target)
                result[url] = target
                continue
        todo.append((url, target))
    if not todo:
        return {url: result[url] for url in order if url in result}

    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("downloading %d file(s) into %s (%d in parallel)", len(todo), cache_dir, parallel)
    factory = _make_session_factory()
    failures: list[tuple[str, BaseException]] = []
    with (
        _Progress(progress, len(todo)) as bar,
        ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="download") as pool,
    ):
        futures: dict[Future[Path], str] = {
            pool.submit(
                _Downloader(
                    url, target, cache_dir, expected.get(url, {}), timeout_s, retries, bar, factory
                ).run
            ): url
            for url, target in todo
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                url = futures[fut]
                exc = fut.exception()
                if exc is None:
                    result[url] = fut.result()
                else:
                    failures.append((url, exc))
            if failures:
                for fut in pending:
                    fut.cancel()
                # wait for the running ones; record their outcome too
                for fut in pending:
                    if fut.cancelled():
                        continue
                    exc = fut.exception()
                    if exc is None:
                        result[futures[fut]] = fut.result()
                    else:
                        failures.append((futures[fut], exc))
                pending = set()
    if failures:
        first_url, first = failures[0]
        failed = {u for u, _ in failures}
        finished = sum(1 for u, _ in todo if u in result)
        not_started = len(todo) - finished - len(failed)
        msg = str(first) if isinstance(first, DataAccessError) else f"{first_url}: {first}"
        if len(failures) > 1 or not_started > 0:
            msg += (
                f" ({len(failures)} of {len(todo)} download(s) failed"
                + (f", {not_started} not started" if not_started > 0 else "")
                + f"; {finished} finished and stay cached)"
            )
        if not isinstance(first, DataAccessError):
            log.debug("download failure", exc_info=first)
        raise DataAccessError(msg)
    return {url: result[url] for url in order if url in result}
