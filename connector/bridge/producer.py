"""The bridge's Kafka writer: `acks=all`, idempotent where the broker supports it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

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
