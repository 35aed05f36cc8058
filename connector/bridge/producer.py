"""The bridge's Kafka writer: `acks=all`, idempotent where the broker supports it."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from connector.settings import Settings

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


class RawProducer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        """Return only once the broker acknowledged the record (acks=all)."""
        ...

    async def ready(self) -> bool: ...


class RepeatFilter(logging.Filter):
    """Lets each message template through at most once per `interval` seconds.

    While a broker is down, aiokafka retries it in a tight loop (thousands of connects a
    second, aio-libs/aiokafka#496) and logs every attempt at ERROR: without this, a short
    outage floods the log and formatting those records steals the event loop from requests.
    """

    def __init__(self, interval: float = 5.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)  # the template, so the dict stays small
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        return True


# A logger's filters see only the records logged on that logger, not those its children
# propagate to it: each aiokafka module that logs retries needs its own filter.
AIOKAFKA_RETRY_LOGGERS = (
    "aiokafka",
    "aiokafka.client",
    "aiokafka.cluster",
    "aiokafka.conn",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
)


def quiet_aiokafka_retries() -> None:
    for name in AIOKAFKA_RETRY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())


STOP_TIMEOUT_S = 5.0


class KafkaRawProducer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        quiet_aiokafka_retries()
        idempotent = self.settings.idempotent_producer
        if not idempotent:
            log.warning(
                "idempotent producer disabled: plain acks=all (retries may duplicate; "
                "the ledger dedupes)"
            )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            acks="all",
            enable_idempotence=idempotent,
            # No linger: aiokafka keeps one produce request in flight per broker and batches
            # whatever arrives meanwhile, so waiting only adds latency (benchmarks/bridge.py).
            linger_ms=0,
            max_batch_size=256 * 1024,
            max_request_size=max(2 * 1024 * 1024, self.settings.max_body_bytes + 64 * 1024),
            request_timeout_ms=30_000,
            client_id="loyalty-connector-bridge",
        )
        try:
            await self._producer.start()
        except BaseException:
            producer, self._producer = self._producer, None
            await producer.stop()  # a failed start leaves no half-open client behind
            raise

    async def stop(self) -> None:
        """Flush and close; give up after STOP_TIMEOUT_S when Kafka does not take the records.

        Whatever is still unsent then belongs to requests that were never answered 200 (the
        bridge answers only after Kafka's ack; requests past the ack timeout got a 503), so
        the providers retry them: dropping them loses nothing, while waiting for aiokafka's
        request timeout would outlast an orchestrator's grace period (Kubernetes: 30 s).
        """
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        try:
            await asyncio.wait_for(producer.stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning(
                "Kafka did not take the last raw records within %.0f s; stopping without "
                "them (their requests were not acknowledged, so providers retry them)",
                STOP_TIMEOUT_S,
            )

    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        if self._producer is None:
            raise ConnectionError("Kafka producer not started (broker unreachable)")
        fut = await self._producer.send(topic, value=value, key=key, headers=list(headers))
        await fut

    async def ready(self) -> bool:
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 1.0)
        except Exception:
            return False
        return True


class RdKafkaRawProducer:
    """The same writer on librdkafka (confluent-kafka), the default (`CONNECTOR_BRIDGE_KAFKA`).

    librdkafka batches, sends and reads acks in its own C threads, outside the GIL and the
    event loop, where aiokafka does all of that in Python on the bridge's one core
    (benchmarks/bridge.py: `broker_ceiling` against `broker_ceiling_rdkafka`). Delivery reports
    are served on the event loop itself (`poll(0)` every POLL_S while writes are pending): no
    thread hands results over, so no wait for the GIL sits between an ack and the answer.

    Same record and guarantees as KafkaRawProducer: acks=all, idempotent unless disabled, the
    Java client's key partitioning (murmur2, librdkafka's `murmur2_random` for keyed records),
    no linger.
    """

    POLL_S = 0.001  # uvloop timers have 1 ms steps: a shorter delay is 0, a busy loop
    IDLE_POLL_S = 1.0  # with nothing pending: librdkafka's logs and errors still get served

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.TimerHandle | None = None
        self._fatal: str | None = None

    def _config(self) -> dict[str, Any]:
        s = self.settings
        return {
            "bootstrap.servers": s.bootstrap_servers,
            "client.id": "loyalty-connector-bridge",
            "acks": "all",
            "enable.idempotence": s.idempotent_producer,
            "linger.ms": 0,
            "partitioner": "murmur2_random",  # the Java client's (and aiokafka's) for keys
            "message.max.bytes": max(2 * 1024 * 1024, s.max_body_bytes + 64 * 1024),
            "request.timeout.ms": 30_000,
            "message.timeout.ms": 30_000,
            "socket.nagle.disable": True,
            "logger": RDKAFKA_LOG,
            "error_cb": self._on_error,
        }

    def _on_error(self, err: Any) -> None:
        if err.fatal():  # an idempotent producer that cannot go on (e.g. fenced)
            self._fatal = err.str()
        RDKAFKA_LOG.warning("librdkafka: %s", err.str())

    async def start(self) -> None:
        from confluent_kafka import Producer

        quiet_aiokafka_retries()
        if not self.settings.idempotent_producer:
            log.warning(
                "idempotent producer disabled: plain acks=all (retries may duplicate; "
                "the ledger dedupes)"
            )
        self._loop = asyncio.get_running_loop()
        producer = Producer(self._config())
        try:
            # librdkafka connects lazily; like aiokafka's start, fail when no broker answers
            await self._loop.run_in_executor(None, producer.list_topics, None, 10.0)
        except Exception as exc:
            producer.purge()
            raise ConnectionError(
                f"Kafka unreachable at {self.settings.bootstrap_servers}"
            ) from exc
        self._producer = producer
        self._poller = self._loop.call_later(self.IDLE_POLL_S, self._poll)

    async def stop(self) -> None:
        """Flush, at most STOP_TIMEOUT_S (see KafkaRawProducer.stop), then drop what is left."""
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        # flush() would run the delivery reports on an executor thread: futures belong to the
        # loop, so the reports are served here, polling until nothing is left or time is up
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while len(producer) and time.monotonic() < deadline:
            producer.poll(0)
            await asyncio.sleep(0.005)
        producer.poll(0)
        left = len(producer)
        if left:
            log.warning(
                "Kafka did not take the last %d raw records within %.0f s; stopping without "
                "them (their requests were not acknowledged, so providers retry them)",
                left,
                STOP_TIMEOUT_S,
            )
            producer.purge()
            producer.poll(0)  # the purged records' reports: their futures fail, none hangs

    def submit(
        self, topic: str, key: bytes, value: bytes, headers: Headers
    ) -> asyncio.Future[None]:
        """Hand the record to librdkafka; the future is done when the broker acked it (or
        failed with ConnectionError: not started, a fatal producer error, a full queue)."""
        loop = self._loop or asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        producer = self._producer
        if producer is None:
            fut.set_exception(ConnectionError("Kafka producer not started (broker unreachable)"))
        elif self._fatal is not None:
            fut.set_exception(ConnectionError(f"Kafka producer failed: {self._fatal}"))
        else:
            try:
                producer.produce(
                    topic,
                    value,
                    key,
                    headers=list(headers),
                    on_delivery=functools.partial(_delivered, fut),
                )
            except BufferError:  # librdkafka's queue is full: Kafka is not keeping up
                fut.set_exception(ConnectionError("Kafka producer queue full"))
            else:
                # reports that came in since the last poll: served now, not a timer tick later
                producer.poll(0)
                poller = self._poller
                if poller is None or poller.when() - loop.time() > self.POLL_S:
                    if poller is not None:
                        poller.cancel()  # the idle poll: too late for this record
                    self._poller = loop.call_later(self.POLL_S, self._poll)
        return fut

    def _poll(self) -> None:
        self._poller = None
        producer = self._producer
        if producer is None:
            return
        producer.poll(0)  # runs `_delivered` for every record acked (or failed) meanwhile
        assert self._loop is not None
        # records not yet acked or reports not yet served: soon; else the next submit, or idle
        delay = self.POLL_S if len(producer) else self.IDLE_POLL_S
        self._poller = self._loop.call_later(delay, self._poll)

    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        await self.submit(topic, key, value, headers)

    async def ready(self) -> bool:
        producer = self._producer
        if producer is None or self._fatal is not None:
            return False
        loop = asyncio.get_running_loop()
        try:
            md = await loop.run_in_executor(None, producer.list_topics, None, 1.0)
        except Exception:
            return False
        return bool(md.brokers)


RDKAFKA_LOG = logging.getLogger("connector.bridge.librdkafka")
RDKAFKA_LOG.addFilter(RepeatFilter())


def _delivered(fut: asyncio.Future[None], err: Any, msg: Any) -> None:
    if fut.done():  # the request is past its deadline (answered 503) or gone
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(ConnectionError(f"Kafka write failed: {err.str()}"))


def raw_producer(settings: Settings) -> RawProducer:
    """The bridge's writer for CONNECTOR_BRIDGE_KAFKA (`librdkafka`, the default, or `aiokafka`)."""
    if settings.bridge_kafka == "aiokafka":
        return KafkaRawProducer(settings)
    return RdKafkaRawProducer(settings)
