"""A one-hop worker, for measuring issue 15's one-hop lever (not the product's worker).

`pipeline.py --one-hop-worker` runs it (through `--child-worker PATH`) beside the real worker
and the peers, on raw records keyed by member (`pipeline.py --raw-key member`: the delivery id
in the `delivery-id` header). One agent on the raw topic does what the worker's two agents do:
`normalize`, send each event to `<prefix>.events` (still published for analytics), then the
ledger step on the event as decoded (`LedgerStep.apply_event`: no events-topic consume, no Avro
decode) against the members table, whose partition is the raw record's: with raw keyed by
member, every record of a member is in one partition. The batches, `InFlight` acks, carried
states and table writes are the worker's own (connector/streams/agents.py).

What it leaves out, and the product would need (README, "The one-hop lever, measured"): the
bridge keying raw by member, a repartition path for a record whose member is not on its raw
partition, exactly_once, and cutover's offsets.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from faust.types import EventT, StreamT

from connector.registry import codec_for
from connector.settings import Settings
from connector.streams.agents import Acks, InFlight, unacked_batches
from connector.streams.app import ConnectorApp, connector_topics, faust_app
from connector.streams.ledger import LedgerStep
from connector.streams.members import Cached, Members, members_table, stored_value
from connector.streams.messages import consumed_record
from connector.streams.metrics import WorkerMetrics
from connector.streams.normalize import normalize
from connector.streams.outputs import Outputs
from connector.streams.state_format import record_key
from connector.streams.views import register_views


def create_app(settings: Settings) -> ConnectorApp:
    if settings.processing_guarantee != "at_least_once":
        raise SystemExit("the one-hop worker runs at_least_once only")
    codec = codec_for(settings)
    app = faust_app(settings)
    topics = connector_topics(app, settings)
    connector = ConnectorApp(
        app, settings, codec, WorkerMetrics(), members_table(app, settings), topics
    )
    metrics = connector.metrics
    outputs = Outputs(app, codec, metrics, topics["dlq"], exactly_once=False)
    members = Members(app, connector.members, cache_bytes=settings.member_cache_bytes)
    connector.member_cache = members.cache

    def forget_cached(*_: object, **__: object) -> None:
        members.cache.clear()

    app.on_partitions_revoked.connect(forget_cached)
    app.on_partitions_assigned.connect(forget_cached)
    step = LedgerStep(codec, metrics, members, topics, memory=settings.dedupe_memory)
    events_topic, redact = topics["events"], settings.redact_attributes

    @app.agent(topics["raw"], name="normalize")
    async def one_hop(stream: StreamT) -> None:
        flight = InFlight(stream)
        carried: dict[str, Cached] = {}
        try:
            async for batch in unacked_batches(stream):
                states = dict(carried) if flight.busy else {}
                owner: dict[str, EventT] = {}
                futures: Acks = []
                for event in batch:
                    result = normalize(consumed_record(event.message), codec, redact=redact)
                    metrics.raw.inc()
                    if result.dead_letter is not None:
                        futures.append(await outputs.dead_letter(result.dead_letter, event))
                    for loyalty, payload in result.events:
                        metrics.events.labels(loyalty.type.value).inc()
                        mk = loyalty.member_key.encode()
                        futures.append(await outputs.send(events_topic, mk, payload, event))
                        written, records, dl = step.apply_event(
                            event, loyalty, states, serialize=False
                        )
                        if dl is not None:
                            futures.append(await outputs.dead_letter(dl, event))
                        for key, _ in written:
                            owner[key] = event
                        for topic, kb, value in records:
                            futures.append(await outputs.send(topic, kb, value, event))
                rows = [
                    (record_key(key), event, stored_value(states[key]))
                    for key, event in owner.items()
                ]
                carried = {key: states[key] for key in owner}
                await flight.wait()
                flight.launch(batch, functools.partial(write, futures, rows, carried))
        finally:
            await flight.wait()

    async def write(
        futures: Acks, rows: list[tuple[bytes, EventT, bytes | None]], written: dict[str, Cached]
    ) -> None:
        await asyncio.gather(*futures)
        await members.write_batch(rows)
        members.remember(
            (kb, cached, len(vb or b""))
            for cached, (kb, _, vb) in zip(written.values(), rows, strict=True)
        )

    register_views(connector)
    return connector


__all__: Sequence[str] = ["create_app"]
