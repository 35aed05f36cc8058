"""The Faust floor: the worker's Faust app and topology doing none of the worker's own work.

`benchmarks/pipeline.py` runs it (via `--child-worker`) next to the real worker, on the same raw
records: same `faust_app` configuration (broker, partitions, acks, commit interval, take_events
batches, direct producer sends), same two hops and the same number of Kafka records per event,
but no decoding, no Avro, no ledger rules and no table:

* `normalize`: raw record → its bytes unchanged to `<prefix>.events` (1 produce per event);
* `ledger`: events record → its bytes to `<prefix>.ledger`, `<prefix>.balances` and
  `<prefix>.tiers` (3 produces, standing in for the ledger entry, the balance and the
  members-table changelog record).

Its events/s is what Faust and Kafka I/O alone allow on this machine: the worker cannot be
faster than this, whatever its own code costs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import faust
from faust.web import Request, Response
from prometheus_client import generate_latest

from connector.settings import Settings
from connector.streams.app import Worker, WorkerMetrics, batches, faust_app


def create_app(settings: Settings) -> Worker:
    if settings.processing_guarantee != "at_least_once":
        raise SystemExit("the Faust floor runs at_least_once only")
    app = faust_app(settings)
    metrics = WorkerMetrics()
    t = settings.topics
    raw, events = app.topic(t.raw), app.topic(t.events)
    outputs = [t.ledger, t.balances, t.tiers]

    async def send(topic: str, key: bytes | None, value: bytes | None) -> Awaitable[Any]:
        fut: Awaitable[Any] = await app.producer.send(topic, key, value, None, None, None)
        return fut

    @app.agent(raw, name="normalize")
    async def normalize_agent(stream: faust.StreamT) -> None:
        async for batch in batches(stream):
            futures = []
            for event in batch:
                msg = event.message
                futures.append(await send(t.events, msg.key or b"-", msg.value))
                metrics.raw.inc()
                metrics.events.labels("FLOOR").inc()
            await asyncio.gather(*futures)

    @app.agent(events, name="ledger")
    async def ledger_agent(stream: faust.StreamT) -> None:
        async for batch in batches(stream):
            futures = []
            for event in batch:
                msg = event.message
                for topic in outputs:
                    futures.append(await send(topic, msg.key, msg.value))
                metrics.lag.observe(0.0)
            await asyncio.gather(*futures)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Request) -> Response:
        return web.bytes(
            generate_latest(metrics.registry), content_type="text/plain; version=0.0.4"
        )

    @app.page("/readyz")
    async def readyz(web: Any, request: Request) -> Response:
        return web.json({"status": "ready"})

    return Worker(app, settings, None, metrics, None, {})  # type: ignore[arg-type]
