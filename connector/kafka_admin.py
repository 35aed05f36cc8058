"""Creating the connector's topics with the right partitions and cleanup policies."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from connector.errors import BrokerError
from connector.settings import Settings

log = logging.getLogger(__name__)


def topic_specs(settings: Settings, names: list[str] | None = None) -> list[NewTopic]:
    topics = settings.topics
    wanted = names or list(topics.all().values())
    specs = []
    for name in wanted:
        config = {"cleanup.policy": "compact"} if name in topics.compacted() else {}
        specs.append(
            NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=config)
        )
    return specs


async def ensure_topics(
    settings: Settings, names: list[str] | None = None, timeout: float = 30
) -> None:
    """Create missing topics (existing ones are left as they are)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=int(timeout * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings, names) if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s", ", ".join(t.name for t in missing))
    except (TimeoutError, OSError, KafkaError) as exc:
        raise BrokerError(
            f"cannot reach Kafka at {settings.bootstrap_servers} to create topics: {exc}"
        ) from None
    finally:
        await admin.close()


async def wait_and_ensure_topics(
    settings: Settings, names: list[str] | None = None, patience: float = 120
) -> None:
    """`ensure_topics`, retried while the broker is unreachable (a process started during a
    broker restart waits for it instead of exiting), giving up after `patience` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = 0.5
    while True:
        try:
            await ensure_topics(settings, names, timeout=min(30.0, patience))
            return
        except BrokerError as exc:
            if loop.time() + delay >= deadline:
                raise
            log.warning("%s; retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
