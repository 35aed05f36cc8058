"""The bridge's lean HTTP/1.1 front end: asyncio protocol + httptools (llhttp, Node.js's parser).

Why not only aiohttp: per webhook, aiohttp's request/response objects, router, middlewares and
stream readers cost ~60 µs of CPU on one core before our own work starts (benchmarks/bridge.py,
`http_ceiling` against a bare protocol); a bridge process is one Python thread, so that cost is
its throughput ceiling. This module does only what a webhook endpoint needs, and the same work
per delivery as the aiohttp app (`connector.bridge.app.WebhookHandler`, shared by both):

* `POST /webhooks/{provider}[/{tenant}]`, `GET`/`HEAD` `/healthz`, `/readyz`, `/metrics`,
  `/openapi.json`; JSON 404/405 (with `Allow`) like the aiohttp app.
* Keep-alive, HTTP/1.0, `Connection: close`, pipelined requests answered in order,
  `Expect: 100-continue`, chunked bodies (llhttp decodes them; it also refuses a request that has
  both `Content-Length` and `Transfer-Encoding`, and malformed ones: 400, connection closed).
* Limits before buffering: a `Content-Length` above `CONNECTOR_MAX_BODY_BYTES` is 413 before a
  byte of the body is kept, a chunked body is cut off at the cap (413); the request head is capped
  at `MAX_HEAD_BYTES` (431); a request whose head and body do not arrive within
  `CONNECTOR_BODY_TIMEOUT_MS` gets 408; an idle keep-alive connection is closed after
  `KEEPALIVE_S`. Each of those answers closes the connection. Deadlines are checked by one sweep
  every `SWEEP_S`, not a timer per request.
* Back-pressure: a connection whose client does not read its answers stops being read.
* SIGTERM/SIGINT: stop listening, close idle connections, let in-flight deliveries finish (up to
  `SHUTDOWN_S`), then stop the bridge (drain, producer flush, spool close).

`CONNECTOR_BRIDGE_HTTP=aiohttp` serves the aiohttp app instead (the same handler).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote

import httptools
from multidict import CIMultiDict
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from connector.bridge.app import Answer, Bridge, Route, WebhookHandler, next_request_id
from connector.bridge.eager import drive

log = logging.getLogger("connector.bridge")

MAX_HEAD_BYTES = 32 * 1024  # request line + headers (aiohttp: 8190 per line and per field)
KEEPALIVE_S = 75.0  # as aiohttp's keepalive_timeout
SWEEP_S = 0.25
LINGER_S = 0.5  # as the aiohttp app's lingering_time
SHUTDOWN_S = 15.0  # as the aiohttp runner's shutdown_timeout
MAX_PIPELINED = 16  # requests parsed ahead of the one being answered before reading pauses

JSON = b"application/json; charset=utf-8"
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_GET_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json")


class _Date:
    """The `Date` header, formatted once a second."""

    def __init__(self) -> None:
        self.second = 0
        self.value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self.value = formatdate(second, usegmt=True).encode()
        return self.value


_date = _Date()


def _head(status: int, content_type: bytes, length: int, extra: dict[str, str] | None) -> bytes:
    parts = [
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n"
        % (status, _REASONS.get(status, b"Unknown"), content_type, length, _date.now())
    ]
    if extra:
        for name, value in extra.items():
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    return b"".join(parts)


class _Request:
    __slots__ = (
        "method",
        "url",
        "headers",
        "body",
        "answer",
        "route",
        "request_id",
        "started",
        "keep_alive",
    )

    def __init__(self, method: str, url: bytes, headers: CIMultiDict[str]) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body: bytes = b""
        self.answer: Answer | None = None  # decided before the body (404, 413, ...)
        self.route: Route | None = None
        self.request_id = ""
        self.started = 0.0
        self.keep_alive = True


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.handler: WebhookHandler = server.bridge.handler
        self.cap = server.bridge.settings.max_body_bytes
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.header_list: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.head_bytes = 0
        self.in_head = False  # between the first byte of a request and its headers' end
        self.in_message = False
        self.current: _Request | None = None
        self.queue: deque[_Request] = deque()
        self.busy = False
        self.closing = False
        self.reading_paused = False
        self.lingering = False  # answered and closing: what still comes is read and dropped
        self.deadline = time.monotonic() + KEEPALIVE_S
        self.deadline_answer: Answer | None = None  # None: close silently (idle keep-alive)

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)

    def pause_writing(self) -> None:  # the client does not read its answers: stop reading
        self._pause_reading()

    def resume_writing(self) -> None:
        self._resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.lingering:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(Answer(400, {"error": "protocol upgrades are not supported"}))
            return
        except httptools.HttpParserError as exc:
            if self.current is not None and self.current.answer is not None:
                # a callback decided (413) and stopped the parser: answer that
                self._refuse(self.current.answer)
            else:
                self._refuse(Answer(400, {"error": f"bad request: {exc}"}))
            return
        if self.in_head:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._refuse(
                    Answer(431, {"error": f"request head larger than {MAX_HEAD_BYTES} bytes"})
                )

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self.in_head = True
        self.head_bytes = 0
        self.url = b""
        self.header_list = []
        self.chunks = []
        self.size = 0
        self.deadline = time.monotonic() + self.server.body_timeout
        self.deadline_answer = Answer(408, {"error": "request not received in time"}, close=True)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_list.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        self.in_head = False
        request = _Request(
            self.parser.get_method().decode(), self.url, CIMultiDict(self.header_list)
        )
        self.current = request
        path = request.url.split(b"?", 1)[0].decode("latin-1")
        if path.startswith("/webhooks/"):
            if request.method != "POST":
                request.answer = Answer(405, {"error": "Method Not Allowed"}, {"Allow": "POST"})
            else:
                request.request_id = next_request_id()
                request.started = time.perf_counter()
                self.deadline_answer = self.handler.too_slow(request.request_id)
                parts = path.split("/")
                if len(parts) not in (3, 4) or not all(parts[2:]):
                    request.answer = Answer(404, {"error": "Not Found"})
                else:
                    key = unquote(parts[2]) if "%" in parts[2] else parts[2]
                    tenant = None
                    if len(parts) == 4:
                        tenant = unquote(parts[3]) if "%" in parts[3] else parts[3]
                    route = self.handler.route(key, tenant, request.request_id)
                    if isinstance(route, Answer):
                        request.answer = route
                        request.route = Route(key, tenant, "-", None, None, False)
                    else:
                        request.route = route
                        length = request.headers.get("Content-Length")
                        if length is not None and length.isdigit() and int(length) > self.cap:
                            request.answer = self.handler.too_large(request.request_id)
                            # nothing of the body is read: answer now, then close
                            raise _Stop
        elif path not in _GET_PATHS:
            request.answer = Answer(404, {"error": "Not Found"})
        elif request.method not in ("GET", "HEAD"):
            request.answer = Answer(405, {"error": "Method Not Allowed"}, {"Allow": "GET,HEAD"})
        if (
            request.headers.get("Expect", "").lower() == "100-continue"
            and request.answer is None
            and self.transport is not None
        ):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        request = self.current
        if request is None or request.answer is not None:
            return  # answered before its body: the body is read past, not kept
        self.size += len(body)
        if self.size > self.cap:
            request.answer = self.handler.too_large(request.request_id)
            raise _Stop
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        request = self.current
        self.current = None
        self.in_message = False
        if request is None:
            return
        request.body = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks = []
        request.keep_alive = self.parser.should_keep_alive()
        self.deadline = float("inf")  # being answered: the handler has its own deadlines
        self.deadline_answer = None
        self.queue.append(request)
        if len(self.queue) >= MAX_PIPELINED:
            self._pause_reading()
        if not self.busy:
            self.busy = True
            drive(self._serve())  # no Task per burst of requests (connector/bridge/eager.py)

    # -- answering ---------------------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            while self.queue and not self.closing:
                request = self.queue.popleft()
                await self._answer(request, not request.keep_alive)
        finally:
            self.busy = False
        if self.closing:
            return
        if self.reading_paused and len(self.queue) < MAX_PIPELINED:
            self._resume_reading()
        if not self.in_message:
            self.deadline = time.monotonic() + KEEPALIVE_S
            self.deadline_answer = None
            if self.server.stopping:
                self._close()

    async def _answer(self, request: _Request, close: bool) -> None:
        handler = self.handler
        if request.route is None:  # not a webhook
            answer = request.answer
            if answer is None:
                await self._endpoint(request, close)
                return
            self._write(answer, close or answer.close, request.method == "HEAD")
            return
        route = request.route
        answer = request.answer
        if answer is None:
            refused = handler.admit()
            if refused is not None:
                answer = refused
                tenant_label = "-"
            else:
                handler.in_flight += 1
                try:
                    host = request.headers.get("Host") or self.server.host
                    path = request.url.split(b"?", 1)[0].decode("latin-1")
                    answer = await handler.accept(
                        route,
                        request.method,
                        host,
                        path,
                        request.headers,
                        request.body,
                        request.request_id,
                        request.started,
                    )
                except Exception:  # a bug: logged, 500, the bridge goes on
                    log.exception("unexpected error handling a %s delivery", route.key)
                    answer = Answer(500, {"error": "internal error"})
                finally:
                    handler.in_flight -= 1
                tenant_label = route.tenant_label
        else:
            tenant_label = route.tenant_label
        handler.count(route.key, tenant_label, answer.status)
        self._write(answer, close or answer.close, False)

    async def _endpoint(self, request: _Request, close: bool) -> None:
        bridge = self.server.bridge
        path = request.url.split(b"?", 1)[0]
        head_only = request.method == "HEAD"
        if path == b"/healthz":
            self._write(Answer(200, {"status": "ok"}), close, head_only)
        elif path == b"/readyz":
            status, payload, headers = await bridge.readiness()
            self._write(Answer(status, payload, headers), close, head_only)
        elif path == b"/metrics":
            self._send(
                200, CONTENT_TYPE_LATEST.encode(), bridge.metrics_text(), None, close, head_only
            )
        else:
            self._send(200, JSON, self.server.openapi, None, close, head_only)

    def _write(self, answer: Answer, close: bool, head_only: bool) -> None:
        body = json.dumps(answer.payload).encode()
        self._send(answer.status, JSON, body, answer.headers, close, head_only)

    def _send(
        self,
        status: int,
        content_type: bytes,
        body: bytes,
        headers: dict[str, str] | None,
        close: bool,
        head_only: bool,
    ) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        head = _head(status, content_type, len(body), headers)
        if close:
            transport.write(head + b"Connection: close\r\n\r\n" + (b"" if head_only else body))
            self._close()
        else:
            transport.write(head + b"\r\n" + (b"" if head_only else body))

    def _refuse(self, answer: Answer) -> None:
        """Answer a request that cannot go on (bad, too large, too slow), then close.

        After a 408 or 413 the client may still be sending its body: it is read and dropped for
        LINGER_S (as aiohttp's lingering_time) so the client sees the answer, not a reset."""
        if self.current is not None and self.current.route is not None:
            route = self.current.route
            self.handler.count(route.key, route.tenant_label, answer.status)
        self.current = None
        self.queue.clear()
        transport = self.transport
        if transport is None or self.closing:
            return
        body = json.dumps(answer.payload).encode()
        head = _head(answer.status, JSON, len(body), answer.headers)
        transport.write(head + b"Connection: close\r\n\r\n" + body)
        if answer.status in (408, 413):
            self.lingering = True
            self.deadline = time.monotonic() + LINGER_S
            self.deadline_answer = None  # then closed
            self._resume_reading()
        else:
            self._close()

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closing:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()

    def expire(self, now: float) -> None:
        """The sweep: a request too slow to arrive gets its 408; an idle connection closes."""
        if now < self.deadline or (self.busy and not self.lingering):
            return
        answer = self.deadline_answer
        if answer is None:
            self._close()
        else:
            self._refuse(answer)

    def idle(self) -> bool:
        return not self.busy and not self.in_message and not self.queue


class _Stop(Exception):
    """Raised from a parser callback to stop parsing: the request is answered as decided."""


class Server:
    """Listens for the bridge; `serve` runs it until SIGTERM/SIGINT."""

    def __init__(self, bridge: Bridge, host: str, port: int) -> None:
        self.bridge = bridge
        self.host = host
        self.port = port
        self.body_timeout = bridge.settings.body_timeout_ms / 1000
        self.openapi = json.dumps(bridge.openapi).encode()
        self.connections: set[_Connection] = set()
        self.stopping = False
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, *, reuse_port: bool = False) -> None:
        await self.bridge.start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_port=reuse_port or None
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.expire(now)

    async def stop(self, grace: float = SHUTDOWN_S) -> None:
        """No new connections; idle ones closed; in-flight deliveries answered; bridge stopped."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if connection.idle():
                connection._close()
        deadline = time.monotonic() + grace
        # a poll every 50 ms, only while stopping
        while any(not c.idle() for c in self.connections) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection._close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self.bridge.stop()


async def serve(bridge: Bridge, host: str, port: int, *, reuse_port: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    server = Server(bridge, host, port)
    await server.start(reuse_port=reuse_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.stop()
