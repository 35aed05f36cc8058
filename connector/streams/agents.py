"""The worker's two agents: `normalize` (raw webhooks → events) and `ledger` (events → table).

Thin: they move records between Kafka, `normalize`, the ledger step and the members table.
At least once they work on batches and await every output's ack before the batch's offsets
commit (and, for the ledger, before the table write); exactly once they go event by event
inside Faust's per-partition transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TYPE_CHECKING, cast

import faust
from faust.types import EventT, RecordMetadata, StreamT, TopicT

from connector.avro import AvroCodec
from connector.streams.ledger import LedgerStep
from connector.streams.members import Cached, Members, stored_value
from connector.streams.messages import consumed_record
from connector.streams.metrics import WorkerMetrics
from connector.streams.normalize import normalize
from connector.streams.outputs import Outputs
from connector.streams.state_format import record_key

if TYPE_CHECKING:
    from connector.streams.app import ConnectorApp

BATCH_MAX = 500
BATCH_WITHIN = 0.02  # seconds: latency bound for a partly filled batch

Acks = list[Awaitable[RecordMetadata]]


def batches(stream: StreamT) -> AsyncIterator[Sequence[EventT]]:
    """Faust's take_events: lists of events, acked only after the loop body finishes."""
    return cast(faust.Stream, stream).take_events(BATCH_MAX, within=BATCH_WITHIN)


async def normalize_one(
    event: EventT,
    codec: AvroCodec,
    metrics: WorkerMetrics,
    outputs: Outputs,
    events: TopicT,
    redact: frozenset[str] = frozenset(),
) -> Acks:
    """Decode one raw webhook into events (or a dead letter) and send them; their acks."""
    result = normalize(consumed_record(event.message), codec, redact=redact)
    metrics.raw.inc()
    futures: Acks = []
    if result.dead_letter is not None:
        futures.append(await outputs.dead_letter(result.dead_letter, event))
    for ev, payload in result.events:
        metrics.events.labels(ev.type.value).inc()
        futures.append(await outputs.send(events, ev.member_key.encode(), payload, event))
    return futures


def register_agents(connector: ConnectorApp) -> None:
    """Add the `normalize` and `ledger` agents to `connector.app`."""
    app, settings, topics = connector.app, connector.settings, connector.topics
    codec, metrics = connector.codec, connector.metrics
    eos = settings.processing_guarantee == "exactly_once"
    outputs = Outputs(app, codec, metrics, topics["dlq"], exactly_once=eos)
    members = Members(app, connector.members)
    step = LedgerStep(codec, metrics, members, topics, memory=settings.dedupe_memory)
    events_topic = topics["events"]
    freshness = connector.freshness
    redact = settings.redact_attributes

    @app.agent(topics["raw"], name="normalize")
    async def normalize_agent(stream: StreamT) -> None:
        if eos:
            async for event in stream.events():
                await normalize_one(event, codec, metrics, outputs, events_topic, redact)
            return
        async for batch in batches(stream):
            futures: Acks = []
            for event in batch:
                futures += await normalize_one(event, codec, metrics, outputs, events_topic, redact)
            await asyncio.gather(*futures)  # acked by Kafka before the batch's offsets commit

    @app.agent(events_topic, name="ledger")
    async def ledger_agent(stream: StreamT) -> None:
        if eos:
            async for event in stream.events():
                states: dict[str, Cached] = {}
                written, records, dl = step(event, states, serialize=True)
                if dl is not None:
                    await outputs.dead_letter(dl, event)
                for topic, kb, value in records:
                    await outputs.send(topic, kb, value, event)
                for key, stored in written:
                    members.write(record_key(key), stored)
                freshness.applied(event.message.partition, event.message.offset)
            return
        async for batch in batches(stream):
            states = {}
            owner: dict[str, EventT] = {}
            futures: Acks = []
            for event in batch:
                written, records, dl = step(event, states, serialize=False)
                if dl is not None:
                    futures.append(await outputs.dead_letter(dl, event))
                for key, _ in written:
                    owner[key] = event
                for topic, kb, value in records:
                    futures.append(await outputs.send(topic, kb, value, event))
            await asyncio.gather(*futures)  # outputs durable before their dedupe marks
            await members.write_batch(
                [
                    (record_key(key), event, stored_value(states[key]))
                    for key, event in owner.items()
                ]
            )
            for event in batch:
                freshness.applied(event.message.partition, event.message.offset)
