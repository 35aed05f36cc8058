"""aiohttp application: `POST /webhooks/{provider}[/{tenant}]` plus health, metrics and OpenAPI.

A delivery is answered 200 only after Kafka acknowledged the raw record (acks=all); broker
trouble or a slow ack past the deadline is a 503 with Retry-After so the provider retries.
Bodies are capped while they are read; signatures are checked on the exact bytes.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from connector import raw
from connector.bridge.openapi import openapi_spec
from connector.bridge.producer import RawProducer
from connector.bridge.retries import RetryMemory
from connector.bridge.spool import Forwarder, Spool, SpoolFull
from connector.errors import VerificationError
from connector.providers import PROVIDERS
from connector.providers.base import RequestTarget
from connector.settings import TENANT_RE, Settings

# Request ids only correlate a response with its log lines: a random per-process prefix and a
# counter (uuid4 read the kernel's random pool on every request: 4 % of the bridge's CPU).
_REQUEST_PREFIX = os.urandom(8).hex()
_request_counter = itertools.count(1)


def next_request_id() -> str:
    return f"{_REQUEST_PREFIX}{next(_request_counter):016x}"


DRAIN_TIMEOUT_S = 5.0
DEADLINE_SWEEP_S = 0.02


def _relay(waiter: asyncio.Future[None], task: asyncio.Future[None]) -> None:
    """The outcome of a Kafka write, to the answer waiting for it (unless it timed out)."""
    if waiter.done():
        return
    if task.cancelled():
        waiter.set_exception(ConnectionError("Kafka write cancelled"))
    elif (exc := task.exception()) is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(None)


log = logging.getLogger("connector.bridge")

SETTINGS_KEY = web.AppKey("settings", Settings)
PRODUCER_KEY = web.AppKey("producer", RawProducer)
METRICS_KEY = web.AppKey("metrics", object)
BRIDGE_KEY = web.AppKey("bridge", object)

RETRY_AFTER_S = "5"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bridge_requests_total",
            "Webhook requests by outcome",
            ["provider", "tenant", "status"],
            registry=r,
        )
        self.verification_failures = Counter(
            "bridge_verification_failures_total",
            "Deliveries refused by signature checks",
            ["provider"],
            registry=r,
        )
        self.produce_latency = Histogram(
            "bridge_produce_seconds",
            "Time from request to Kafka ack",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.bytes = Counter(
            "bridge_accepted_bytes_total", "Body bytes written to Kafka", ["provider"], registry=r
        )
        self.in_flight = Gauge("bridge_in_flight", "Webhooks being handled", registry=r)
        self.pending_sends = Gauge(
            "bridge_pending_sends", "Kafka writes not yet acknowledged", registry=r
        )
        self.retries_recognised = Counter(
            "bridge_retries_recognised_total",
            "Provider retries of deliveries this bridge answered non-2xx, marked retry-of the "
            "first attempt so every copy of one delivery counts once",
            ["provider"],
            registry=r,
        )
        # Voucherify disables a project webhook after 12 failed deliveries, Gameball discards a
        # webhook after 3 (docs/delivery-semantics.md): deploy/alerts.yml watches these two
        self.consecutive_refusals = Gauge(
            "bridge_consecutive_refusals",
            "Non-2xx answers in a row to a provider's deliveries (0 after a 2xx)",
            ["provider", "tenant"],
            registry=r,
        )
        self.last_accepted = Gauge(
            "bridge_last_accepted_timestamp_seconds",
            "When the bridge last answered a provider's delivery with 2xx (Unix time)",
            ["provider", "tenant"],
            registry=r,
        )
        self.spooled = Counter(
            "bridge_spooled_total",
            "Webhooks written to the local spool because Kafka did not take them in time",
            ["provider"],
            registry=r,
        )
        self.spool_refused = Counter(
            "bridge_spool_full_total",
            "Webhooks refused (503) because the spool was full",
            registry=r,
        )

    def watch_spool(self, spool: Spool, forwarder: Forwarder) -> None:
        r = self.registry
        Gauge("bridge_spool_records", "Webhooks in the spool", registry=r).set_function(
            lambda: spool.count
        )
        Gauge("bridge_spool_bytes", "Bytes held by the spool", registry=r).set_function(
            lambda: spool.bytes
        )
        Gauge(
            "bridge_spool_max_bytes", "The spool's cap (CONNECTOR_SPOOL_MAX_BYTES)", registry=r
        ).set_function(lambda: spool.max_bytes)
        Gauge(
            "bridge_spool_oldest_age_seconds",
            "Age of the oldest spooled webhook (0 when empty)",
            registry=r,
        ).set_function(spool.oldest_age_s)
        Gauge(
            "bridge_spool_forwarded", "Spooled webhooks forwarded to Kafka (a counter)", registry=r
        ).set_function(lambda: forwarder.forwarded)
        Gauge(
            "bridge_spooling", "1 while new webhooks go to the spool, else 0", registry=r
        ).set_function(lambda: 1 if forwarder.spooling else 0)


@dataclass(slots=True)
class Answer:
    """What the bridge answers, whichever HTTP front end carries it."""

    status: int
    payload: dict[str, Any]
    headers: dict[str, str] | None = None
    close: bool = False  # close the connection after answering (the rest of a body is junk)


def _error(
    status: int, message: str, request_id: str, headers: dict[str, str] | None = None
) -> Answer:
    return Answer(status, {"error": message, "request_id": request_id}, headers)


@dataclass(slots=True)
class Route:
    """A delivery's provider and tenant, resolved before its body is read."""

    key: str
    tenant: str | None
    tenant_label: str
    provider: Any  # connector.providers.base.Provider
    verifier: Any  # the provider's verifier bound to this tenant's secrets
    verified: bool


class WebhookHandler:
    """The bridge's work on one delivery, independent of the HTTP layer carrying it.

    A front end (the aiohttp app below, or `connector.bridge.http1`) calls `admit`, `route`,
    reads the body itself within `max_body_bytes` and `body_timeout_ms`, then `accept`, and
    counts the answer with `count`.
    """

    def __init__(self, settings: Settings, producer: RawProducer, metrics: Metrics) -> None:
        self.settings = settings
        self.producer = producer
        self.metrics = metrics
        self.topic = settings.topics.raw
        self.in_flight = 0
        self.pending: set[asyncio.Future[None]] = set()
        self.timeout = settings.ack_timeout_ms / 1000
        self._deadlines: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._sweeper: asyncio.Task[None] | None = None
        self.retries = RetryMemory()
        settings.bind_verifiers()  # a key that cannot be parsed stops the bridge at start
        self.spool: Spool | None = None
        self.forwarder: Forwarder | None = None
        # prometheus_client's labels() takes a lock and builds a key per call: children are
        # looked up once per (provider, tenant[, status]) instead (the bridge's hot path)
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._by_tenant: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._by_provider: dict[str, tuple[Any, Any]] = {}
        metrics.in_flight.set_function(lambda: self.in_flight)
        metrics.pending_sends.set_function(lambda: len(self.pending))
        for key, cfg in settings.providers.items():
            if cfg.unverified:
                log.warning(
                    "%s deliveries are accepted WITHOUT verification "
                    "(CONNECTOR_%s_UNVERIFIED=true): development only",
                    key,
                    key.upper(),
                )

    def admit(self) -> Answer | None:
        """A 429 when this bridge already handles `max_in_flight` deliveries, else None."""
        if self.in_flight >= self.settings.max_in_flight:
            return _error(
                429, "too many concurrent webhooks; retry later", "-", {"Retry-After": "1"}
            )
        return None

    def count(self, key: str, tenant_label: str, status: int) -> None:
        """Count one answer by provider, tenant and status (alerts watch refusals in a row)."""
        if key not in PROVIDERS:
            key = "unknown"
        counted = self._counted.get((key, tenant_label, status))
        if counted is None:
            counted = self.metrics.requests.labels(key, tenant_label, str(status))
            self._counted[(key, tenant_label, status)] = counted
        counted.inc()
        if key == "unknown":
            return
        gauges = self._by_tenant.get((key, tenant_label))
        if gauges is None:
            gauges = (
                self.metrics.consecutive_refusals.labels(key, tenant_label),
                self.metrics.last_accepted.labels(key, tenant_label),
            )
            self._by_tenant[(key, tenant_label)] = gauges
        refusals, last_accepted = gauges
        if 200 <= status < 300:
            refusals.set(0)
            last_accepted.set(time.time())
        else:
            refusals.inc()

    def route(self, key: str, tenant: str | None, request_id: str) -> Route | Answer:
        """The provider and bound verifier of `/webhooks/{key}[/{tenant}]`, or a 404."""
        provider = PROVIDERS.get(key)
        if provider is None:
            return _error(
                404, f"unknown provider {key!r}; valid: {', '.join(sorted(PROVIDERS))}", request_id
            )
        cfg = self.settings.provider(key)
        if tenant is not None and not TENANT_RE.match(tenant):
            return _error(404, "tenant must be 1-64 letters, digits, '.', '_' or '-'", request_id)
        verifier = cfg.verifier_for(tenant)  # bound once per provider and tenant
        if verifier is None:
            return _error(
                404,
                f"unknown tenant {tenant!r} for {key}; valid: {', '.join(cfg.tenant_names)}",
                request_id,
            )
        verified = verifier.configured
        if not verified and not cfg.unverified:
            return _error(
                404,
                f"{key} is not configured on this bridge "
                f"(set the CONNECTOR_{key.upper()}_* secrets)",
                request_id,
            )
        return Route(key, tenant, tenant or "default", provider, verifier, verified)

    def too_large(self, request_id: str) -> Answer:
        return Answer(
            413,
            {
                "error": f"body larger than {self.settings.max_body_bytes} bytes",
                "request_id": request_id,
            },
            close=True,
        )

    def too_slow(self, request_id: str) -> Answer:
        # the rest of a trickled body is not worth waiting for
        return Answer(
            408, {"error": "body not received in time", "request_id": request_id}, close=True
        )

    async def accept(
        self,
        route: Route,
        method: str,
        host: str,
        raw_path: str,
        headers: Mapping[str, str],
        body: bytes,
        request_id: str,
        started: float,
    ) -> Answer:
        """Verify the exact bytes, write the raw record, answer once Kafka acknowledged it."""
        key, tenant, provider = route.key, route.tenant, route.provider
        verified = route.verified
        if verified:
            # Where the provider sent the delivery, for signatures over the URL (Open Loyalty
            # Cloud): CONNECTOR_PUBLIC_URL behind a proxy, else this request's Host and path.
            target = RequestTarget.of(method, host, raw_path, self.settings.public_url)
            try:
                route.verifier.verify(body, headers, target)
            except VerificationError as exc:
                self.metrics.verification_failures.labels(key).inc()
                log.info(
                    "refused %s delivery: %s",
                    key,
                    exc,
                    extra={"request_id": request_id, "provider": key},
                )
                return _error(401, f"verification failed: {exc}", request_id)

        try:
            delivery_id = provider.delivery_id(body, headers) or request_id
        except Exception:  # a malformed body is the worker's to dead-letter, not ours
            delivery_id = request_id
        received_ms = int(time.time() * 1000)
        retry = self.retries.match(key, tenant, body)
        if retry is not None:
            self.metrics.retries_recognised.labels(key).inc()
        kafka_headers = raw.raw_headers(
            provider=key,
            tenant=tenant,
            received_ms=received_ms,
            request_id=request_id,
            content_type=headers.get("Content-Type", ""),
            verified=verified,
            kept=[(n, v) for n in provider.kept_headers if (v := headers.get(n)) is not None],
            first_received_ms=retry.first_received_ms if retry is not None else None,
            retry_of=retry.retry_of if retry is not None else None,
        )

        if self.forwarder is not None and self.forwarder.spooling:
            # Kafka is away (or the spool still drains): straight to the spool, in order
            return await self._spool(
                key, tenant, body, received_ms, delivery_id, kafka_headers, request_id, retry
            )
        if len(self.pending) >= self.settings.max_in_flight:
            self.retries.refused(key, tenant, body, received_ms, delivery_id, retry=retry)
            return _error(
                503,
                "Kafka is not keeping up; retry later",
                request_id,
                {"Retry-After": RETRY_AFTER_S},
            )
        task = asyncio.ensure_future(
            self.producer.send(self.topic, delivery_id.encode(), body, kafka_headers)
        )
        self.pending.add(task)
        task.add_done_callback(self._sent)
        # The answer waits for the ack or the deadline, whichever comes first; on the deadline
        # the write goes on (see below). One sweep for every deadline instead of a timer, a
        # shield and a timeout object per webhook (benchmarks/bridge.py: ~7 % of its CPU).
        waiter = asyncio.get_running_loop().create_future()
        task.add_done_callback(functools.partial(_relay, waiter))
        self._deadlines.append((time.monotonic() + self.timeout, waiter))
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep_deadlines())
        try:
            await waiter
        except TimeoutError:
            if self.forwarder is not None:
                # the write may still succeed too: both copies carry this key and request id
                self.forwarder.begin(f"no ack within {self.settings.ack_timeout_ms} ms")
                return await self._spool(
                    key, tenant, body, received_ms, delivery_id, kafka_headers, request_id, retry
                )
            # the write may still succeed: the provider's retry is then a copy (retry-of)
            self.retries.refused(key, tenant, body, received_ms, delivery_id, retry=retry)
            log.warning(
                "no Kafka ack within %d ms; answering 503",
                self.settings.ack_timeout_ms,
                extra={"request_id": request_id, "provider": key},
            )
            return _error(
                503,
                "Kafka did not acknowledge in time; retry later",
                request_id,
                {"Retry-After": RETRY_AFTER_S},
            )
        except Exception as exc:
            if self.forwarder is not None:
                self.forwarder.begin(f"Kafka write failed: {type(exc).__name__}")
                return await self._spool(
                    key, tenant, body, received_ms, delivery_id, kafka_headers, request_id, retry
                )
            self.retries.refused(key, tenant, body, received_ms, delivery_id, retry=retry)
            log.warning(
                "Kafka write failed: %s",
                type(exc).__name__,
                extra={"request_id": request_id, "provider": key},
            )
            return _error(
                503, "Kafka is unavailable; retry later", request_id, {"Retry-After": RETRY_AFTER_S}
            )
        self.metrics.produce_latency.observe(time.perf_counter() - started)
        counted = self._by_provider.get(key)
        if counted is None:
            counted = (self.metrics.bytes.labels(key), self.metrics.spooled.labels(key))
            self._by_provider[key] = counted
        counted[0].inc(len(body))
        return Answer(200, {"accepted": True, "request_id": request_id})

    async def _spool(
        self,
        key: str,
        tenant: str | None,
        body: bytes,
        received_ms: int,
        delivery_id: str,
        kafka_headers: raw.Headers,
        request_id: str,
        retry: Any,
    ) -> Answer:
        """Keep the verified request in the spool (durably) and answer 200; 503 if full."""
        assert self.spool is not None
        try:
            await self.spool.append(self.topic, delivery_id.encode(), body, kafka_headers)
        except SpoolFull as exc:
            self.metrics.spool_refused.inc()
            self.retries.refused(key, tenant, body, received_ms, delivery_id, retry=retry)
            log.warning("%s; answering 503", exc, extra={"request_id": request_id})
            return _error(
                503,
                "Kafka is unavailable and the spool is full; retry later",
                request_id,
                {"Retry-After": RETRY_AFTER_S},
            )
        except Exception as exc:  # the disk failed us: no 200 without a durable copy
            self.retries.refused(key, tenant, body, received_ms, delivery_id, retry=retry)
            log.error(
                "spool write failed: %s: %s",
                type(exc).__name__,
                exc,
                extra={"request_id": request_id},
            )
            return _error(
                503,
                "Kafka is unavailable; retry later",
                request_id,
                {"Retry-After": RETRY_AFTER_S},
            )
        self.metrics.spooled.labels(key).inc()
        self.metrics.bytes.labels(key).inc(len(body))
        return Answer(200, {"accepted": True, "request_id": request_id, "spooled": True})

    async def _sweep_deadlines(self) -> None:
        """Time out the answers whose ack did not come in `ack_timeout_ms` (late by at most
        DEADLINE_SWEEP_S). Deadlines are appended in order: one timeout for every delivery."""
        deadlines = self._deadlines
        while True:
            await asyncio.sleep(DEADLINE_SWEEP_S)
            now = time.monotonic()
            while deadlines and deadlines[0][0] <= now:
                waiter = deadlines.popleft()[1]
                if not waiter.done():
                    waiter.set_exception(TimeoutError())
            while deadlines and deadlines[0][1].done():
                deadlines.popleft()  # answered: nothing to time out

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    def _sent(self, task: asyncio.Future[None]) -> None:
        self.pending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so a late failure is not reported as unhandled

    async def drain(self, timeout: float) -> None:
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=timeout)


def _response(answer: Answer) -> web.Response:
    resp = web.json_response(answer.payload, status=answer.status, headers=answer.headers)
    if answer.close:
        resp.force_close()
    return resp


class AiohttpWebhooks:
    """`POST /webhooks/{provider}[/{tenant}]` in aiohttp: `WebhookHandler` behind aiohttp's
    request objects (the bridge's first front end; `connector.bridge.http1` is the lean one)."""

    def __init__(self, handler: WebhookHandler) -> None:
        self.handler = handler

    async def handle(self, request: web.Request) -> web.StreamResponse:
        handler = self.handler
        key = request.match_info.get("provider", "")
        refused = handler.admit()
        if refused is not None:
            handler.count(key, "-", refused.status)
            return _response(refused)
        handler.in_flight += 1
        try:
            answer, tenant_label = await self._handle(request, key)
        finally:
            handler.in_flight -= 1
        handler.count(key, tenant_label, answer.status)
        return _response(answer)

    async def _handle(self, request: web.Request, key: str) -> tuple[Answer, str]:
        handler = self.handler
        started = time.perf_counter()
        request_id = next_request_id()
        route = handler.route(key, request.match_info.get("tenant"), request_id)
        if isinstance(route, Answer):
            return route, "-"
        try:
            # asyncio.timeout, not wait_for: no extra task per request on the hot path
            async with asyncio.timeout(handler.settings.body_timeout_ms / 1000):
                body = await self._read_capped(request)
        except TimeoutError:
            return handler.too_slow(request_id), route.tenant_label
        if body is None:
            return handler.too_large(request_id), route.tenant_label
        raw_path = request.raw_path  # as sent: still percent-encoded
        answer = await handler.accept(
            route,
            request.method,
            request.host,
            raw_path if raw_path.startswith("/") else request.rel_url.raw_path,
            request.headers,
            body,
            request_id,
            started,
        )
        return answer, route.tenant_label

    async def _read_capped(self, request: web.Request) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the cap."""
        cap = self.handler.settings.max_body_bytes
        if request.content_length is not None and request.content_length > cap:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            size += len(chunk)
            if size > cap:
                return None
            chunks.append(chunk)
        return b"".join(chunks)


class Bridge:
    """One bridge: settings, producer, metrics, the webhook handler, its spool; started and
    stopped the same way whichever HTTP front end serves it (`create_app`, `http1.serve`).

    With `manage_producer`, it starts and stops the producer. With a spool
    (`CONNECTOR_SPOOL_DIR`), the bridge may start before Kafka is reachable: `ensure_topic`
    (retried until it succeeds) runs before the spool is first forwarded.
    """

    def __init__(
        self,
        settings: Settings,
        producer: RawProducer,
        *,
        manage_producer: bool = True,
        ensure_topic: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.metrics = Metrics()
        self.handler = WebhookHandler(settings, producer, self.metrics)
        self.manage_producer = manage_producer
        self.ensure_topic = ensure_topic
        self.openapi = openapi_spec()
        self._starter: asyncio.Task[None] | None = None

    async def readiness(self) -> tuple[int, dict[str, Any], dict[str, str] | None]:
        """`/readyz`: ready when Kafka answers, or while the spool takes what Kafka cannot."""
        if await self.producer.ready():
            return 200, {"status": "ready"}, None
        spool = self.handler.spool
        if spool is not None and spool.bytes < spool.max_bytes:
            # Kafka is away but the bridge accepts: into the spool
            return 200, {"status": "ready", "spooling": True}, None
        return 503, {"status": "broker unreachable"}, {"Retry-After": RETRY_AFTER_S}

    def metrics_text(self) -> bytes:
        return generate_latest(self.metrics.registry)

    async def start(self) -> None:
        settings, producer, handler = self.settings, self.producer, self.handler
        if settings.spool_dir is None:
            if self.manage_producer:
                await producer.start()
            return
        spool = Spool(settings.spool_dir, settings.spool_max_bytes)
        await spool.open()
        started = asyncio.Event()

        async def ensure_raw_topic() -> None:
            await started.wait()
            if self.ensure_topic is not None:
                await self.ensure_topic()

        forwarder = Forwarder(spool, producer.send, ensure_raw_topic)
        handler.spool, handler.forwarder = spool, forwarder
        self.metrics.watch_spool(spool, forwarder)

        async def start_producer() -> None:
            delay = 0.5
            while True:
                try:
                    await producer.start()
                    started.set()
                    return
                except Exception as exc:  # Kafka unreachable: spool meanwhile, keep trying
                    forwarder.begin(f"Kafka unreachable at start: {type(exc).__name__}")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)

        if self.manage_producer:
            self._starter = asyncio.ensure_future(start_producer())
        else:
            started.set()
        forwarder.start()

    async def stop(self) -> None:
        # Kafka writes still pending belong to requests already answered 503 (past the ack
        # timeout): waited for a little, then the producer's bounded stop. With Kafka gone
        # the bridge exits ~10 s after SIGTERM, inside an orchestrator's grace period.
        # with a spool every pending write past its ack deadline has a durable copy there
        handler = self.handler
        await handler.drain(timeout=0.5 if handler.spool is not None else DRAIN_TIMEOUT_S)
        if handler.forwarder is not None:
            await handler.forwarder.stop()
        if self._starter is not None:
            self._starter.cancel()
            await asyncio.gather(self._starter, return_exceptions=True)
        await handler.close()
        if self.manage_producer:
            await self.producer.stop()
        if handler.spool is not None:
            await handler.spool.close()  # what was not forwarded stays for the next start


def create_app(
    settings: Settings,
    producer: RawProducer,
    *,
    manage_producer: bool = True,
    ensure_topic: Callable[[], Awaitable[None]] | None = None,
) -> web.Application:
    """The bridge as an aiohttp application (see `Bridge` for the arguments)."""
    # lingering_time: after a 408/413 aiohttp would keep reading a client's unread body for 10 s;
    # half a second lets a real provider see the answer without feeding slow clients.
    app = web.Application(
        client_max_size=settings.max_body_bytes + 1, handler_args={"lingering_time": 0.5}
    )
    bridge = Bridge(settings, producer, manage_producer=manage_producer, ensure_topic=ensure_topic)
    app[SETTINGS_KEY] = settings
    app[PRODUCER_KEY] = producer
    app[METRICS_KEY] = bridge.metrics
    app[BRIDGE_KEY] = bridge

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        status, payload, headers = await bridge.readiness()
        return web.json_response(payload, status=status, headers=headers)

    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(
            body=bridge.metrics_text(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(bridge.openapi)

    webhooks = AiohttpWebhooks(bridge.handler)
    app.router.add_post("/webhooks/{provider}", webhooks.handle)
    app.router.add_post("/webhooks/{provider}/{tenant}", webhooks.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/openapi.json", openapi)
    app.middlewares.append(_errors_middleware)

    async def on_startup(app: web.Application) -> None:
        await bridge.start()

    async def on_cleanup(app: web.Application) -> None:
        await bridge.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


@web.middleware
async def _errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """JSON errors for routing failures; never a bare 500 page for a bug (logged, then 500)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            body: dict[str, Any] = {"error": exc.reason}
            return web.json_response(
                body,
                status=exc.status,
                headers={k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")},
            )
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)
