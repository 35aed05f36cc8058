"""The worker's two agents: `normalize` (raw webhooks → events) and `ledger` (events → table).

Thin: they move records between Kafka, `normalize`, the ledger step and the members table.
At least once they work on batches and await every output's ack before the batch's offsets
commit (and, for the ledger, before the table write); exactly once they go event by event
inside Faust's per-partition transactions.

At least once, a batch's acks are awaited while the next batch is worked on (`InFlight`):
waiting for `acks=all` twice per batch (outputs, then the changelog) left the worker idle
for a quarter of its time (benchmarks/pipeline.py). The events are acked to Faust, so their
offsets can commit, only once everything the batch wrote is durable; a member's records that
the batch in flight wrote but the store does not have yet are handed to the next batch
(`carried`), so it never reads an older record from the store.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, cast

import faust
from faust.types import EventT, RecordMetadata, StreamT, TopicT

from connector.avro import AvroCodec
from connector.streams.ledger import LedgerStep
from connector.streams.members import Cached, Members, stored_value
from connector.streams.messages import consumed_record
from connector.streams.metrics import WorkerMetrics
from connector.streams.normalize import normalize
from connector.streams.outputs import OutputBatch, Outputs
from connector.streams.state_format import record_key

if TYPE_CHECKING:
    from connector.streams.app import ConnectorApp

BATCH_MAX = 500
BATCH_WITHIN = 0.02  # seconds: latency bound for a partly filled batch

Acks = list[Awaitable[RecordMetadata]]


def batches(stream: StreamT) -> AsyncIterator[Sequence[EventT]]:
    """Faust's take_events: lists of events, acked only after the loop body finishes."""
    return cast(faust.Stream, stream).take_events(BATCH_MAX, within=BATCH_WITHIN)


def unacked_batches(stream: StreamT) -> AsyncIterator[Sequence[EventT]]:
    """Faust's noack_take: lists of events the caller acks (`InFlight`) once they are done."""
    return cast(
        AsyncIterator[Sequence[EventT]],
        cast(faust.Stream, stream).noack_take(BATCH_MAX, within=BATCH_WITHIN),
    )


class InFlight:
    """The one batch whose writes are still on their way: at most one at a time.

    `launch(events, done)` runs `done()` (await the acks, write the table...) as a task and then
    acks `events` to the stream, in order, so their offsets may commit; `wait()` waits for the
    batch in flight to finish, and raises what it raised, so a failure stops the agent (Faust
    restarts it from the last committed offsets: nothing is acked that was not written).
    """

    def __init__(self, stream: StreamT) -> None:
        self.stream = stream
        self.task: asyncio.Future[None] | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    async def wait(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            await task

    def launch(self, events: Sequence[EventT], done: Callable[[], Awaitable[None]]) -> None:
        assert self.task is None, "wait() for the batch in flight first"
        self.task = asyncio.ensure_future(self._finish(events, done))

    async def _finish(self, events: Sequence[EventT], done: Callable[[], Awaitable[None]]) -> None:
        await done()
        ack = self.stream.ack
        for event in events:
            await ack(event)


async def normalize_one(
    event: EventT,
    codec: AvroCodec,
    metrics: WorkerMetrics,
    outputs: Outputs | OutputBatch,
    events: TopicT,
    redact: frozenset[str] = frozenset(),
) -> None:
    """Decode one raw webhook into events (or a dead letter) and send them to `outputs`."""
    result = normalize(consumed_record(event.message), codec, redact=redact)
    metrics.raw.inc()
    if result.dead_letter is not None:
        await outputs.dead_letter(result.dead_letter, event)
    for ev, payload in result.events:
        metrics.events.labels(ev.type.value).inc()
        await outputs.send(events, ev.member_key.encode(), payload, event)


def register_agents(connector: ConnectorApp) -> None:
    """Add the `normalize` and `ledger` agents to `connector.app`."""
    app, settings, topics = connector.app, connector.settings, connector.topics
    codec, metrics = connector.codec, connector.metrics
    eos = settings.processing_guarantee == "exactly_once"
    outputs = Outputs(app, codec, metrics, topics["dlq"], exactly_once=eos)
    members = Members(app, connector.members, cache_bytes=settings.member_cache_bytes)
    connector.member_cache = members.cache

    # A rebalance may hand a partition's store to recovery, standby updates or another worker:
    # the cached records are only known to match the store until then (members.StateCache).
    def forget_cached(*_: object, **__: object) -> None:
        members.cache.clear()

    app.on_partitions_revoked.connect(forget_cached)
    app.on_partitions_assigned.connect(forget_cached)
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
        flight = InFlight(stream)
        try:
            async for batch in unacked_batches(stream):
                out = outputs.batch()
                for event in batch:
                    await normalize_one(event, codec, metrics, out, events_topic, redact)
                futures: Acks = [sent.ack for sent in await out.flush()]
                await flight.wait()
                # acked by Kafka before the batch's offsets commit
                flight.launch(batch, functools.partial(_all_acked, futures))
        finally:
            await flight.wait()

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
                members.remember(
                    (record_key(key), states[key], len(stored or b"")) for key, stored in written
                )
                freshness.applied(event.message.partition, event.message.offset)
            return
        flight = InFlight(stream)
        carried: dict[str, Cached] = {}  # what the batch in flight wrote (module docstring)
        try:
            async for batch in unacked_batches(stream):
                states = dict(carried) if flight.busy else {}
                owner: dict[str, EventT] = {}
                out = outputs.batch()
                for event in batch:
                    written, records, dl = step(event, states, serialize=False)
                    if dl is not None:
                        await out.dead_letter(dl, event)
                    for key, _ in written:
                        owner[key] = event
                    for topic, kb, value in records:
                        await out.send(topic, kb, value, event)
                futures: Acks = [sent.ack for sent in await out.flush()]
                rows = [
                    (record_key(key), event, stored_value(states[key]))
                    for key, event in owner.items()
                ]
                carried = {key: states[key] for key in owner}
                await flight.wait()
                flight.launch(batch, functools.partial(write, batch, futures, rows, carried))
        finally:
            await flight.wait()

    async def write(
        batch: Sequence[EventT],
        futures: Acks,
        rows: list[tuple[bytes, EventT, bytes | None]],
        written: dict[str, Cached],
    ) -> None:
        await asyncio.gather(*futures)  # outputs durable before their dedupe marks
        await members.write_batch(rows)
        members.remember(
            (kb, cached, len(vb or b""))
            for cached, (kb, _, vb) in zip(written.values(), rows, strict=True)
        )
        for event in batch:
            freshness.applied(event.message.partition, event.message.offset)


async def _all_acked(futures: Acks) -> None:
    await asyncio.gather(*futures)
