"""The Faust floor: the worker's Faust app and topology doing none of the worker's own work.

`benchmarks/pipeline.py` runs it (via `--child-worker`) next to the real worker, on the same raw
records: same `faust_app` configuration (broker, partitions, acks, commit interval, the
consumer's fetch wait and per-message wait of faust_compat uses 6 and 7, take_events batches,
direct producer sends), same two hops and the same number of Kafka records per event,
but no decoding, no Avro, no ledger rules and no table:

* `normalize`: raw record → its bytes unchanged to `<prefix>.events` (1 produce per event);
* `ledger`: events record → its bytes to `<prefix>.ledger`, `<prefix>.balances` and
  `<prefix>.tiers` (3 produces, standing in for the ledger entry, the balance and the
  members-table changelog record).

Its events/s is what Faust and Kafka I/O alone allow on this machine: the worker cannot be
faster than this, whatever its own code costs.

`create_app_one_hop` is the same with issue 15's "one hop" lever: one agent on the raw topic
writes all four records per event (events, ledger, balances, changelog stand-in), as a worker
could if the raw topic were keyed by member and the members table co-partitioned with it. Run
beside the two-hop floor (pipeline.py, `faust_floor_one_hop`) it measures what that lever
would save in Faust, aiokafka and asyncio per event, before anyone changes the raw key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust
from faust.web import Request, Response
from prometheus_client import generate_latest

from connector.settings import Settings
from connector.streams.app import Worker, WorkerMetrics, batches, faust_app


def create_app(settings: Settings) -> Worker:
    """Two hops, as the worker: raw → events (normalize), events → three outputs (ledger)."""
    return _floor(settings, hops=2)


def create_app_one_hop(settings: Settings) -> Worker:
    """One hop: raw → the same four outputs per event, from one agent."""
    return _floor(settings, hops=1)


def _floor(settings: Settings, *, hops: int) -> Worker:
    if settings.processing_guarantee != "at_least_once":
        raise SystemExit("the Faust floor runs at_least_once only")
    app = faust_app(settings)
    metrics = WorkerMetrics()
    t = settings.topics

    async def relay(
        stream: faust.StreamT, topics: list[str], no_key: bytes | None, counted: Callable[[], None]
    ) -> None:
        """Each record's bytes, unchanged, to every one of `topics` (its key, else `no_key`),
        counted once sent; a batch is acked once all its sends are."""
        async for batch in batches(stream):
            futures = []
            for event in batch:
                msg = event.message
                for topic in topics:
                    futures.append(
                        await app.producer.send(
                            topic=topic,
                            key=msg.key or no_key,
                            value=msg.value,
                            partition=None,
                            timestamp=None,
                            headers=None,
                        )
                    )
                counted()
            await asyncio.gather(*futures)

    def normalized() -> None:
        metrics.raw.inc()
        metrics.events.labels("FLOOR").inc()

    def both() -> None:
        normalized()
        metrics.lag.observe(0.0)

    if hops == 1:

        @app.agent(app.topic(t.raw), name="normalize")
        async def one_hop_agent(stream: faust.StreamT) -> None:
            await relay(stream, [t.events, t.ledger, t.balances, t.tiers], b"-", both)

    else:

        @app.agent(app.topic(t.raw), name="normalize")
        async def normalize_agent(stream: faust.StreamT) -> None:
            await relay(stream, [t.events], b"-", normalized)

        @app.agent(app.topic(t.events), name="ledger")
        async def ledger_agent(stream: faust.StreamT) -> None:
            await relay(
                stream, [t.ledger, t.balances, t.tiers], None, lambda: metrics.lag.observe(0.0)
            )

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Request) -> Response:
        return web.bytes(
            generate_latest(metrics.registry), content_type="text/plain; version=0.0.4"
        )

    @app.page("/readyz")
    async def readyz(web: Any, request: Request) -> Response:
        return web.json({"status": "ready"})

    return Worker(app, settings, None, metrics, None, {})  # type: ignore[arg-type]
