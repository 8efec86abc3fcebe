"""A small threaded HTTP server on 127.0.0.1 for tests that must never touch the internet.

It serves files from a directory with byte-range support (single ranges as fsspec/aiohttp
send them and multipart ranges as uproot's own ``HTTPSource`` sends them), answers
``Want-Digest: adler32`` like EOS does, can cut connections after N bytes (to test resumed
downloads) and can answer like the atlasopenmagic REST API:

* ``GET /datasets/count?release_name=R``          -> ``{"count": n}``
* ``GET /datasets?release_name=R&skip=S&limit=L``  -> a page of dataset entries
* ``GET /metadata/R/KEY``                          -> one entry (by DSID or physics_short)

(the routes ``atlasopenmagic.metadata`` calls; point ``ATLAS_API_BASE_URL`` at
:attr:`LocalHTTPServer.url`). Every request is recorded in :attr:`LocalHTTPServer.requests`
so tests can count them.

Use it as a context manager (always shut down, even when the test fails)::

    with LocalHTTPServer(root=tmp_path) as server:
        url = server.url_for("file.root")

or through the pytest fixtures ``http_server`` / ``api_server``: import
``http_server_fixture`` / ``api_server_fixture`` into the test module (or a conftest) and
ask for ``http_server`` / ``api_server``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

log = logging.getLogger(__name__)

_RANGE_RE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class _State:
    root: Path | None
    api: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    cut_after: int | None = None
    cut_times: int = 0
    digest: bool = True
    accept_ranges: bool = True
    fail_every: int | None = None
    file_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _adler32_file(path: Path) -> str:
    value = 1
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            value = zlib.adler32(block, value)
    return f"{value & 0xFFFFFFFF:08x}"


def _parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """Byte ranges of a ``Range`` header as inclusive (start, end); None when unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    out: list[tuple[int, int]] = []
    for part in spec.split(","):
        m = _RANGE_RE.match(part)
        if not m:
            return None
        first, last = m.group(1), m.group(2)
        if first == "" and last == "":
            return None
        if first == "":  # suffix range: the last N bytes
            n = int(last)
            if n == 0:
                continue
            start, end = max(0, size - n), size - 1
        else:
            start = int(first)
            end = int(last) if last else size - 1
            end = min(end, size - 1)
        if start > end or start >= size:
            continue
        out.append((start, end))
    return out or None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # -- plumbing ---------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("test http server: " + format, *args)

    def _record(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        state = self.server.state
        with state.lock:
            state.requests.append(
                RecordedRequest(self.command, path, query, {k: v for k, v in self.headers.items()})
            )
        return path, query

    def _send_json(self, obj: Any, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- verbs ------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path, query = self._record()
        if self.server.state.api and self._api(path, query):
            return
        self._file(path)

    # -- atlasopenmagic API -----------------------------------------------------------
    def _api(self, path: str, query: dict[str, list[str]]) -> bool:
        api = self.server.state.api
        if path == "/datasets/count":
            release = query.get("release_name", [""])[0]
            self._send_json({"count": len(api.get(release, []))})
            return True
        if path == "/datasets":
            release = query.get("release_name", [""])[0]
            skip = int(query.get("skip", ["0"])[0])
            limit = int(query.get("limit", ["1000"])[0])
            self._send_json(api.get(release, [])[skip : skip + limit])
            return True
        m = re.fullmatch(r"/metadata/([^/]+)/([^/]+)", path)
        if m:
            release, key = m.group(1), m.group(2).lower()
            for entry in api.get(release, []):
                names = {str(entry.get("dataset_number")).lower()}
                if entry.get("physics_short"):
                    names.add(str(entry["physics_short"]).lower())
                if key in names:
                    self._send_json(entry)
                    return True
            self._send_json({"detail": f"dataset {key} not found in {release}"}, 404)
            return True
        return False

    # -- static files --------------------------------------------------------------
    def _file(self, path: str) -> None:
        root = self.server.state.root
        if root is None:
            self._send_error(404, "no file root")
            return
        target = (root / path.lstrip("/")).resolve()
        if root.resolve() not in target.parents or not target.is_file():
            self._send_error(404, f"not found: {path}")
            return
        size = target.stat().st_size
        state = self.server.state
        with state.lock:
            state.file_requests += 1
            flaky = bool(state.fail_every) and state.file_requests % state.fail_every == 0
        if flaky:
            self._send_error(503, "Service Unavailable (flaky test storage)")
            return
        range_header = self.headers.get("Range")
        ranges = None
        if range_header and state.accept_ranges:
            ranges = _parse_ranges(range_header, size)
            if ranges is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        extra: list[tuple[str, str]] = []
        if state.accept_ranges:
            extra.append(("Accept-Ranges", "bytes"))
        if state.digest and "adler32" in self.headers.get("Want-Digest", "").lower():
            extra.append(("Digest", f"adler32={_adler32_file(target)}"))

        if ranges is None:
            self._send_body(target, [(0, size - 1)] if size else [], size, 200, extra)
        elif len(ranges) == 1:
            start, end = ranges[0]
            extra.append(("Content-Range", f"bytes {start}-{end}/{size}"))
            self._send_body(target, ranges, size, 206, extra)
        else:
            self._send_multipart(target, ranges, size, extra)

    def _cut_budget(self) -> int | None:
        """Bytes this response may send before the connection is cut (None: no cut)."""
        state = self.server.state
        with state.lock:
            if state.cut_after is None or state.cut_times <= 0 or self.command == "HEAD":
                return None
            state.cut_times -= 1
            return state.cut_after

    def _send_body(
        self,
        target: Path,
        ranges: list[tuple[int, int]],
        size: int,
        status: int,
        extra: list[tuple[str, str]],
    ) -> None:
        length = sum(end - start + 1 for start, end in ranges)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        budget = self._cut_budget()
        with target.open("rb") as fh:
            for start, end in ranges:
                fh.seek(start)
                remaining = end - start + 1
                while remaining > 0:
                    block = fh.read(min(remaining, 64 * 1024))
                    if budget is not None:
                        if budget <= len(block):
                            self.wfile.write(block[:budget])
                            self.wfile.flush()
                            self._cut()
                            return
                        budget -= len(block)
                    self.wfile.write(block)
                    remaining -= len(block)

    def _send_multipart(
        self,
        target: Path,
        ranges: list[tuple[int, int]],
        size: int,
        extra: list[tuple[str, str]],
    ) -> None:
        boundary = "bumpnet-test-boundary"
        data = target.read_bytes()
        body = b""
        for start, end in ranges:
            body += (
                f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n"
            ).encode()
            body += data[start : end + 1] + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        self.send_response(206)
        self.send_header("Content-Type", f"multipart/byteranges; boundary={boundary}")
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _cut(self) -> None:
        """Drop the connection abruptly (the client sees a short body)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        """Drop kept-alive connections too, so that a stopped server is really down."""
        with self._open_lock:
            conns = list(self._open)
            self._open.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Cut or reset connections are expected in tests: log instead of printing."""
        log.debug("test http server: error while serving %s", client_address, exc_info=True)


class LocalHTTPServer:
    """A threaded HTTP server on 127.0.0.1 with an ephemeral port.

    Args:
        root: directory whose files are served (URL path = path relative to it).
        api: ``{release: [dataset entries]}`` to answer like the atlasopenmagic API.
        cut_after: cut the connection after this many body bytes ...
        cut_times: ... for this many file responses (then serve normally).
        digest: answer ``Want-Digest: adler32`` with a ``Digest`` header (as EOS does).
        accept_ranges: honour ``Range`` headers (False: always send the whole file, 200).
        fail_every: answer every N-th file request with HTTP 503 (a flaky storage).
    """

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        api: dict[str, list[dict[str, Any]]] | None = None,
        cut_after: int | None = None,
        cut_times: int = 1,
        digest: bool = True,
        accept_ranges: bool = True,
        fail_every: int | None = None,
    ) -> None:
        self.state = _State(
            root=Path(root) if root is not None else None,
            api=dict(api or {}),
            cut_after=cut_after,
            cut_times=cut_times if cut_after is not None else 0,
            digest=digest,
            accept_ranges=accept_ranges,
            fail_every=fail_every,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> LocalHTTPServer:
        """Bind to 127.0.0.1 on a free port and serve in a background thread."""
        self._server = _Server(self.state)
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and release the port (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_all_connections()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (still known after :meth:`stop`, e.g. to test a server that is down)."""
        assert self._port is not None, "server not started"
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:45678``."""
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, relpath: str | os.PathLike[str]) -> str:
        """URL of a file below ``root``."""
        return f"{self.url}/{str(relpath).lstrip('/')}"

    # -- behaviour and bookkeeping ----------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far."""
        with self.state.lock:
            return list(self.state.requests)

    def count(self, path_prefix: str = "/", method: str | None = None) -> int:
        """Number of requests whose path starts with ``path_prefix``."""
        return sum(
            1
            for r in self.requests
            if r.path.startswith(path_prefix) and (method is None or r.method == method)
        )

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self.state.lock:
            self.state.requests.clear()

    def set_api(self, release: str, datasets: list[dict[str, Any]]) -> None:
        """Answer API requests for ``release`` with these dataset entries."""
        with self.state.lock:
            self.state.api[release] = list(datasets)

    def cut(self, after_bytes: int, times: int = 1) -> None:
        """Cut the next ``times`` file responses after ``after_bytes`` body bytes."""
        with self.state.lock:
            self.state.cut_after = after_bytes
            self.state.cut_times = times


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="http_server")
def http_server_fixture(tmp_path: Path) -> Iterator[LocalHTTPServer]:
    """A file server rooted at ``tmp_path / "srv"`` (created), shut down after the test."""
    root = tmp_path / "srv"
    root.mkdir(exist_ok=True)
    with LocalHTTPServer(root=root) as server:
        yield server


@pytest.fixture(name="api_server")
def api_server_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalHTTPServer]:
    """A server answering like the atlasopenmagic API (and serving ``tmp_path / "srv"``).

    ``ATLAS_API_BASE_URL`` points at it for the duration of the test. atlasopenmagic reads
    that variable once at import time, so its module attribute is patched as well and
    restored afterwards.
    """
    import atlasopenmagic.metadata as atom_metadata

    root = tmp_path / "srv"
    root.mkdir(exist_ok=True)
    with LocalHTTPServer(root=root) as server:
        monkeypatch.setenv("ATLAS_API_BASE_URL", server.url)
        monkeypatch.setattr(atom_metadata, "API_BASE_URL", server.url)
        yield server
