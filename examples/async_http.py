"""I/O-bound example UDFs: an HTTP GET per row, and the slow local server they call.

Standard library only, so every backend loads it (per-GIL interpreters
included). It lives in the repository's examples/, outside the installed
package: the tests, the docs' async page, the quickstart notebook and
bench/async_io.py import it as ``async_http`` with this folder on the path.
The client speaks just enough HTTP/1.1 over asyncio streams for the server
below; use a real client (aiohttp, httpx) for anything else.

The server (``SlowServer``) runs in a child process, answers every request
after a fixed delay, counts the requests in flight at once, can fail every
Nth request with a 503, and exits by itself after ``max_seconds`` or
``max_requests``: the tests and ``bench/async_io.py`` use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import select
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from typing import Any


class HttpError(Exception):
    """The server answered with a status other than 200."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}")
        self.status = status


# ---------------------------------------------------------------------------
# The client: one connection per request, or a kept pool of them
# ---------------------------------------------------------------------------


def _request(url: str, *, keep_alive: bool) -> tuple[str, int, bytes]:
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    connection = "keep-alive" if keep_alive else "close"
    head = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: {connection}\r\n\r\n"
    return parts.hostname or "127.0.0.1", parts.port or 80, head.encode("ascii")


async def _read_response(reader: asyncio.StreamReader, url: str) -> tuple[bytes, bool]:
    """Read one response; return its body and whether the server keeps the connection open."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError(f"the server closed the connection without answering {url}")
    status = int(status_line.split()[1])
    length, keep = None, True
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value == "close":
            keep = False
    body = await (reader.readexactly(length) if length is not None else reader.read())
    if status != 200:
        raise HttpError(status, url)
    return body, keep and length is not None


async def http_get(url: str) -> str:
    """GET ``url`` on a connection of its own; return the body as text (``HttpError`` unless 200)."""
    host, port, request = _request(url, keep_alive=False)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        body, _ = await _read_response(reader, url)
    finally:
        writer.close()  # also when the call is cancelled: the socket closes at the loop's next step
    await writer.wait_closed()
    return body.decode("utf-8")


class KeepAliveClient:
    """An HTTP client that keeps its connections open between calls, as aiohttp's and httpx's do.

    Its connections belong to the event loop they were opened on: a client
    like this in a UDF works across batches only because each worker keeps
    one loop.
    """

    def __init__(self, max_idle: int = 64) -> None:
        self.max_idle = max_idle
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0  # connections opened so far
        self.loop: asyncio.AbstractEventLoop | None = None

    async def get(self, url: str) -> str:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        elif self.loop is not loop:
            raise RuntimeError("KeepAliveClient used on another event loop than the one its connections belong to")
        host, port, request = _request(url, keep_alive=True)
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                break
            writer.close()
        else:
            reader, writer = await asyncio.open_connection(host, port)
            self.opened += 1
        keep = False
        try:
            writer.write(request)
            body, keep = await _read_response(reader, url)
        finally:
            if keep and len(self.idle) < self.max_idle:
                self.idle.append((reader, writer))
            else:
                writer.close()
        return body.decode("utf-8")

    def close(self) -> None:
        """Close the kept connections (their sockets close at the loop's next step)."""
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()

    def __del__(self) -> None:
        # A class UDF is dropped with its worker or its registration, not closed.
        if self.loop is not None and not self.loop.is_closed():
            self.close()


# ---------------------------------------------------------------------------
# UDFs
# ---------------------------------------------------------------------------


async def fetch(url: str) -> str:
    """An async UDF: GET ``url``, return the body."""
    return await http_get(url)


_client: KeepAliveClient | None = None  # this worker's, made on first use


async def fetch_kept(url: str) -> str:
    """``fetch`` over connections kept open between calls and batches (a client in a module global)."""
    global _client
    if _client is None:
        _client = KeepAliveClient()
    return await _client.get(url)


def fetch_sync(url: str) -> str:
    """The same GET, blocking (urllib): what a UDF for DuckDB's own ``create_function`` does today."""
    with urllib.request.urlopen(url, timeout=60) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


class Geocoder:
    """A class UDF with a client made once per worker in ``__init__`` and reused by every batch there.

    Returns ``body|worker token|connections this worker's client opened``,
    so a caller can see the client (and its connections) being reused.
    """

    def __init__(self) -> None:
        self.client = KeepAliveClient()
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def __call__(self, url: str) -> str:
        body = await self.client.get(url)
        return f"{body}|{self.token}|{self.client.opened}"


def answer(query: str) -> str:
    """What the server answers for ``/geocode?q=<query>``: fixed per query, so results can be compared."""
    return hashlib.sha256(query.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------
# The slow server (a child process)
# ---------------------------------------------------------------------------


class SlowServer:
    """A local HTTP server in a child process that answers after ``delay`` seconds; a context manager.

    ``/geocode?q=...`` answers ``answer(q)``; ``&delay=S`` overrides the
    delay of one request. ``configure(delay=, fail_every=)`` changes it and
    resets the counters; ``stats()`` returns requests, failures, connections,
    in flight now and the peak of requests in flight at once.

    With ``fail_every=N``, every Nth request fails with 503, except that the
    request after a failure for the same query never does: a retried call
    succeeds whatever other calls ran in between, so retries=1 is enough.
    """

    START_TIMEOUT = 30.0

    def __init__(self, delay: float = 0.02, *, max_seconds: float = 600.0, max_requests: int = 1_000_000) -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "serve", str(delay), str(max_seconds), str(max_requests)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        output = self.process.stdout
        assert output is not None  # stdout=PIPE
        try:
            ready, _, _ = select.select([output], [], [], self.START_TIMEOUT)
            line = output.readline() if ready else ""
            if not line.startswith("PORT "):
                raise RuntimeError(f"the slow server did not start within {self.START_TIMEOUT:g} s: {line!r}")
        except BaseException:
            self.close()
            raise
        self.port = int(line.split()[1])
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, query: str = "", **parameters: Any) -> str:
        """Return the URL of ``/geocode`` for ``query`` (what SQL builds with ``||``)."""
        extra = "".join(f"&{key}={value}" for key, value in parameters.items())
        return f"{self.base}/geocode?q={urllib.parse.quote(query)}{extra}"

    def _control(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def stats(self) -> dict[str, Any]:
        """Return the counters since the last ``configure``."""
        return self._control("/stats")

    def configure(self, *, delay: float | None = None, fail_every: int = 0) -> None:
        """Set the delay and fail every ``fail_every``-th /geocode request with 503 (0: none); reset the counters."""
        query = urllib.parse.urlencode({"fail_every": fail_every, **({"delay": delay} if delay is not None else {})})
        self._control(f"/config?{query}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> SlowServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _ServerState:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.fail_every = 0
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        # Requests still being answered (their clients may be gone) stay in flight.
        self.requests = self.failures = self.connections = 0
        self.peak = self.in_flight
        self.failed_last: set[str] = set()  # queries whose last request failed


async def _serve(delay: float, max_seconds: float, max_requests: int) -> None:
    state = _ServerState(delay)
    served = 0
    done = asyncio.Event()

    async def respond(writer: asyncio.StreamWriter, status: int, body: bytes, keep: bool) -> None:
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        writer.write(head.encode("ascii") + body)
        await writer.drain()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        state.connections += 1
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                keep = True
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "connection" and value.strip().lower() == "close":
                        keep = False
                parts = urllib.parse.urlsplit(request_line.split()[1].decode("ascii"))
                query = dict(urllib.parse.parse_qsl(parts.query))
                if parts.path == "/stats":
                    counters = {key: getattr(state, key) for key in ("requests", "failures", "connections", "peak")}
                    await respond(writer, 200, json.dumps({**counters, "in_flight": state.in_flight}).encode(), keep)
                elif parts.path == "/config":
                    state.fail_every = int(query.get("fail_every", 0))
                    state.delay = float(query.get("delay", state.delay))
                    state.reset()
                    await respond(writer, 200, b"{}", keep)
                elif parts.path == "/geocode":
                    served += 1
                    state.requests += 1
                    number = state.requests
                    state.in_flight += 1
                    state.peak = max(state.peak, state.in_flight)
                    try:
                        await asyncio.sleep(float(query.get("delay", state.delay)))
                    finally:
                        state.in_flight -= 1
                    text = query.get("q", "")
                    retried = text in state.failed_last
                    state.failed_last.discard(text)
                    if state.fail_every and number % state.fail_every == 0 and not retried:
                        state.failures += 1
                        state.failed_last.add(text)
                        await respond(writer, 503, b"try again", keep)
                    else:
                        await respond(writer, 200, answer(text).encode(), keep)
                    if served >= max_requests:
                        done.set()
                else:
                    await respond(writer, 404, b"", keep)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max_seconds)


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    _delay, _max_seconds, _max_requests = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    asyncio.run(_serve(_delay, _max_seconds, _max_requests))
