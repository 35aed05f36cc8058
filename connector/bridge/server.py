"""Running the bridge process: topics, producer, aiohttp server, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from connector.bridge.app import create_app
from connector.bridge.producer import KafkaRawProducer
from connector.kafka_admin import wait_and_ensure_topics
from connector.settings import Settings

log = logging.getLogger("connector.bridge")


def run_bridge(settings: Settings) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # optional speed-up
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if settings.spool_dir is None:
        loop.run_until_complete(wait_and_ensure_topics(settings, [settings.topics.raw]))

    # with a spool the bridge listens at once, Kafka or not: the forwarder ensures the topic
    async def ensure_topic() -> None:
        await wait_and_ensure_topics(settings, [settings.topics.raw], patience=float("inf"))

    app = create_app(settings, KafkaRawProducer(settings), ensure_topic=ensure_topic)
    log.info(
        "bridge listening on http://%s:%d (raw topic %s)",
        settings.bridge_host,
        settings.bridge_port,
        settings.topics.raw,
    )
    # run_app turns SIGTERM/SIGINT into a graceful stop: no new connections, in-flight
    # requests finish (up to shutdown_timeout), then on_cleanup flushes the producer.
    web.run_app(
        app,
        host=settings.bridge_host,
        port=settings.bridge_port,
        print=None,
        access_log=None,
        shutdown_timeout=15,
        handle_signals=True,
        loop=loop,
    )
    log.info("bridge stopped")
    return 0
