"""The Faust app factory: topics, the members table, the agents and the worker's web views.

At-least-once (default): the ledger works on batches; it sends a batch's outputs and waits for
Kafka's acks *before* writing the members table, so a crash can only cause re-processing of
events whose table write never happened (their outputs are re-sent with the same ids), never an
output lost behind an already-written dedupe mark. `exactly_once` puts outputs, changelog and
offsets in one Kafka transaction instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import faust
from faust.exceptions import SameNode
from faust.streams import _current_event  # noqa: PLC2701 - see _as_current
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from connector.avro import AvroCodec
from connector.domain.ledger import MemberState, Outcome, apply, with_account
from connector.models import (
    ACCOUNT_RE,
    POINTS_MAX,
    DeadLetter,
    LoyaltyEvent,
    account_key,
    to_dict,
    to_json_obj,
    utc,
)
from connector.registry import codec_for
from connector.settings import Settings
from connector.streams.normalize import RawRecord, dead_letter, header_map, normalize
from connector.streams.partitioner import CachedPartitioner
from connector.streams.recovery import ConnectorTableManager

log = logging.getLogger("connector.worker")

BATCH_MAX = 500
BATCH_WITHIN = 0.02  # seconds: latency bound for a partly filled batch


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.raw = Counter("worker_raw_records_total", "Raw webhooks normalized", registry=r)
        self.events = Counter(
            "worker_events_total", "Canonical events by type", ["type"], registry=r
        )
        self.dead_letters = Counter(
            "worker_dead_letters_total", "Dead letters by stage", ["stage"], registry=r
        )
        self.duplicates = Counter(
            "worker_duplicate_events_total", "Events already applied (no effect)", registry=r
        )
        self.beyond_horizon = Counter(
            "worker_beyond_dedupe_horizon_total",
            "Events not in the dedupe memory but as old as events it forgot: taken as "
            "redeliveries (also counted as duplicates); grows: raise CONNECTOR_DEDUPE_MEMORY",
            registry=r,
        )
        self.entries = Counter(
            "worker_ledger_entries_total", "Ledger entries by origin", ["origin"], registry=r
        )
        self.lag = Histogram(
            "worker_event_age_seconds",
            "Webhook received → balance written",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )


@dataclass
class Worker:
    """The Faust app with its topics and table, as built by `create_app`."""

    app: faust.App
    settings: Settings
    codec: AvroCodec
    metrics: WorkerMetrics
    members: Any
    topics: dict[str, Any]


def _as_current(event: Any) -> None:
    """Make `event` Faust's current event, so a table write lands in its partition.

    Faust picks the changelog partition and the local store shard from the current event;
    batch processing writes after the batch, so we point it at the event that owns the key.
    """
    _current_event.set(weakref.ref(event))


def batches(stream: Any) -> Any:
    """Faust's take_events: lists of events, acked only after the loop body finishes."""
    return stream.take_events(BATCH_MAX, within=BATCH_WITHIN)


def faust_broker(settings: Settings) -> list[str]:
    return [f"kafka://{s}" for s in settings.bootstrap_servers.split(",")]


def faust_app(settings: Settings) -> faust.App:
    """The Faust app with the worker's configuration, before agents, tables and views."""
    data_dir = settings.data_dir.resolve() / f"{settings.app_id}-{settings.web_port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=faust_broker(settings),
        store="rocksdb://" if settings.table_store == "rocksdb" else "memory://",
        datadir=str(data_dir),
        processing_guarantee=settings.processing_guarantee,
        table_standby_replicas=settings.standby_replicas,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_advertised_host,
        canonical_url=f"http://{settings.web_advertised_host}:{settings.web_port}",
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        stream_recovery_delay=0.0,
        producer_acks=-1,
        web_in_thread=False,
        TableManager=ConnectorTableManager,
        producer_partitioner=CachedPartitioner(),
        loghandlers=[],
    )
    return app


def create_app(settings: Settings) -> Worker:
    codec = codec_for(settings)
    topics = settings.topics
    app = faust_app(settings)
    metrics = WorkerMetrics()
    raw_topic = app.topic(topics.raw, partitions=settings.partitions)
    events_topic = app.topic(topics.events, partitions=settings.partitions)
    ledger_topic = app.topic(topics.ledger, partitions=settings.partitions)
    balances_topic = app.topic(topics.balances, partitions=settings.partitions, compacting=True)
    tiers_topic = app.topic(topics.tiers, partitions=settings.partitions, compacting=True)
    dlq_topic = app.topic(topics.dlq, partitions=settings.partitions)
    # One record per member (key = the member key's UTF-8 bytes, JSON value =
    # MemberState.to_json()), so an event's effect and its dedupe mark are a single changelog
    # write. The key must be raw bytes, exactly the events topic's key: Faust's router finds a
    # key's owner by hashing the *changelog* key, while the record lives in the partition of the
    # events record that wrote it. Faust picks the table's serializers from key_type (a `str`
    # key is JSON-encoded, '"k"', whatever a Schema says), so key_type=bytes it is.
    # The value is the JSON text as bytes (value_type=bytes: Faust passes it through), made
    # and parsed here with the standard json module; the same bytes Faust's json codec wrote.
    members = app.Table(
        "members",
        default=None,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
    )
    eos = settings.processing_guarantee == "exactly_once"
    memory = settings.dedupe_memory

    async def send(topic: Any, key: bytes, value: bytes, source: Any) -> Awaitable[Any]:
        """Send an output of processing `source` (the event being processed).

        exactly_once: Faust's TransactionManager puts a record into the transaction of its
        *destination* partition, and commits a source partition's offsets with the transaction
        of the *source* partition number. Both agents re-key (raw: delivery id → events:
        member key), so an output usually lands in another partition's transaction, which
        commits only when that partition's own input happens to commit, and aborts after the
        transaction timeout if it does not: the output is lost while its input is committed.
        So outputs go explicitly into the source partition's transaction (committed atomically
        with the source offset), via the producer's per-transaction producers.
        """
        if not eos:
            # Straight to Faust's producer (aiokafka): Topic.send's channel/FutureMessage
            # plumbing costs ~40 % of the worker's CPU per event (benchmarks/pipeline.py) and
            # nothing here needs it: we await every output's ack ourselves before the table write.
            fut: Awaitable[Any] = await app.producer.send(
                topic.get_topic_name(), key, value, None, None, None
            )
            return fut
        msg = source.message
        transactional_id = (
            f"{app.conf.id}-{app.assignor.group_for_topic(msg.topic)}-{msg.partition}"
        )
        sent: Awaitable[Any] = await app.producer.send(
            topic.get_topic_name(), key, value, None, None, None, transactional_id=transactional_id
        )
        return sent

    async def send_dead_letter(dl: DeadLetter, source: Any) -> Awaitable[Any]:
        metrics.dead_letters.labels(dl.stage).inc()
        log.warning(
            "dead letter (%s): %s: %s",
            dl.stage,
            dl.error_class,
            dl.error_message,
            extra={"delivery_id": dl.delivery_id, "provider": dl.provider},
        )
        return await send(dlq_topic, dl.delivery_id.encode(), codec.encode(dl), source)

    # -- normalize ----------------------------------------------------------------------------

    async def normalize_one(event: Any) -> list[Awaitable[Any]]:
        msg = event.message
        record = RawRecord(
            msg.key, msg.value, list(msg.headers or ()), msg.topic, msg.partition, msg.offset
        )
        result = normalize(record, codec)
        metrics.raw.inc()
        futures: list[Awaitable[Any]] = []
        if result.dead_letter is not None:
            futures.append(await send_dead_letter(result.dead_letter, event))
        for ev, payload in result.events:
            metrics.events.labels(ev.type.value).inc()
            futures.append(await send(events_topic, ev.member_key.encode(), payload, event))
        return futures

    @app.agent(raw_topic, name="normalize")
    async def normalize_agent(stream: faust.StreamT) -> None:
        if eos:
            async for event in stream.events():
                await normalize_one(event)
            return
        async for batch in batches(stream):
            futures: list[Awaitable[Any]] = []
            for event in batch:
                futures += await normalize_one(event)
            await asyncio.gather(*futures)  # acked by Kafka before the batch's offsets commit

    # -- ledger -------------------------------------------------------------------------------

    changelog_name = members.changelog_topic.get_topic_name()

    async def write_members(rows: list[tuple[str, Any, MemberState]]) -> None:
        """Write a batch's member records to the store and the changelog (at-least-once).

        What `members[key] = value` does (store write, then the changelog record in the
        partition of the event being processed, then the persisted offset once Kafka has it),
        without Faust's per-write FutureMessage/buffer plumbing, which cost more than the
        write itself; and the batch waits for the changelog acks, so its source offsets are
        never committed ahead of the table state they produced.
        """
        sent: list[tuple[int, Awaitable[Any]]] = []
        for key, event, state in rows:
            kb, vb = key.encode(), dump_state(state)
            _as_current(event)
            members.data[kb] = vb
            partition = event.message.partition
            sent.append(
                (partition, await app.producer.send(changelog_name, kb, vb, partition, None, None))
            )
        acks = await asyncio.gather(*(fut for _, fut in sent))
        last: dict[int, int] = {}
        for (partition, _), md in zip(sent, acks, strict=True):
            last[partition] = max(last.get(partition, -1), md.offset)
        for partition, offset in last.items():
            members.data.set_persisted_offset(  # type: ignore[attr-defined]
                TP(changelog_name, partition), offset
            )

    def ledger_step(
        event: Any, states: dict[str, MemberState | None], *, serialize: bool
    ) -> tuple[list[tuple[str, bytes | None]], list[tuple[Any, bytes, bytes]], DeadLetter | None]:
        """Apply one events-topic record to the cached state.

        Returns (written, outputs, dead letter): the table keys the event changed, each with
        its stored value when `serialize` (the account's record, and the member's default
        record when it first lists a new account), and the encoded outputs; or ([], [], the
        dead letter). Everything that can fail for one event (reading the stored states, the
        rules, every Avro encode and, with `serialize`, the table values) runs before `states`
        takes the new states, so a failure dead-letters that event alone and leaves the member
        as it was before it.
        `serialize=False` (batches) leaves the table value to `write_members`, once per member
        per batch: `dump_state` has no value-dependent failure once the encodes passed (every
        field is a str, int or None, or a list/dict of them), and dumping each event's state
        would add up to ~60 % to the step for a member with a full dedupe memory (1000 ids:
        ~140 µs of dump next to ~230 µs of apply + encodes, measured on one core).
        """
        msg = event.message
        try:
            loyalty: LoyaltyEvent = codec.decode(msg.value or b"", LoyaltyEvent)
        except Exception as exc:  # SchemaError, or a record no LoyaltyEvent can be built from
            return [], [], ledger_dead_letter(msg, exc, datetime.now(UTC))
        key = loyalty.account_key
        mk = loyalty.member_key
        now = utc(datetime.now(UTC))
        outcome: Outcome | None = None
        try:
            for k in (key, mk) if key != mk else (key,):
                if k not in states:
                    # The RocksDB store reads from the *current event's* partition; in a batch
                    # that is whichever event Faust or the previous write left current, possibly
                    # of another partition, and the member would look new (its state silently
                    # reset). All of a member's accounts live in its events partition.
                    _as_current(event)
                    states[k] = load_state(members.get(k.encode()))
            outcome = apply(states[key], loyalty, now=now, offset=msg.offset, memory=memory)
            index = with_account(states[mk], loyalty, now) if key != mk else None
            kb, akb = mk.encode(), key.encode()
            outputs: list[tuple[Any, bytes, bytes]] = [
                (ledger_topic, kb, codec.encode(entry)) for entry in outcome.entries
            ]
            if outcome.tier_change is not None:
                outputs.append((tiers_topic, akb, codec.encode(outcome.tier_change)))
            if outcome.balance_changed or outcome.duplicate:
                # A duplicate re-emits the current snapshot only (harmless on a compacted topic).
                outputs.append((balances_topic, akb, codec.encode(outcome.state.to_balance())))
            written: list[tuple[str, bytes | None]] = [
                (key, dump_state(outcome.state) if serialize else None)
            ]
            if index is not None:
                written.append((mk, dump_state(index) if serialize else None))
        except Exception as exc:  # a rule bug or an unencodable value must not stop the stream
            text = str(exc)
            why = _out_of_range(outcome) + text
            if key not in text:  # fastavro's error names neither the member nor the event
                why = f"member {key}, event {loyalty.event_id} ({loyalty.type.value}): {why}"
            return [], [], ledger_dead_letter(msg, exc, now, why, loyalty)
        states[key] = outcome.state
        if index is not None:
            states[mk] = index
        if outcome.duplicate:
            metrics.duplicates.inc()
        if outcome.beyond_horizon:
            metrics.beyond_horizon.inc()
            log.warning(
                "event %s of %s is older than what the dedupe memory forgot "
                "(CONNECTOR_DEDUPE_MEMORY); taken as a redelivery and not applied",
                loyalty.event_id,
                key,
                extra={"event_id": loyalty.event_id, "member_key": key},
            )
        for entry in outcome.entries:
            metrics.entries.labels(entry.origin.value).inc()
        metrics.lag.observe(max(0.0, time.time() - loyalty.received_at.timestamp()))
        return written, outputs, None

    def ledger_dead_letter(
        msg: Any,
        exc: BaseException,
        now: datetime,
        why: str | None = None,
        loyalty: LoyaltyEvent | None = None,
    ) -> DeadLetter:
        """The DLQ record of an events-topic record the ledger could not apply."""
        record = RawRecord(
            msg.key, msg.value, list(msg.headers or ()), msg.topic, msg.partition, msg.offset
        )
        dl = dead_letter(record, "ledger", exc, header_map(msg.headers), now)
        if why is not None:
            dl = replace(dl, error_message=why[:2000])
        if loyalty is not None:  # events-topic records carry no provider/tenant headers
            dl = replace(dl, provider=loyalty.provider.key, tenant=loyalty.tenant)
        return dl

    @app.agent(events_topic, name="ledger")
    async def ledger_agent(stream: faust.StreamT) -> None:
        if eos:
            async for event in stream.events():
                states: dict[str, MemberState | None] = {}
                written, outputs, dl = ledger_step(event, states, serialize=True)
                if dl is not None:
                    await send_dead_letter(dl, event)
                for topic, kb, value in outputs:
                    await send(topic, kb, value, event)
                for key, stored in written:
                    if stored is not None:
                        members[key.encode()] = stored
            return
        async for batch in batches(stream):
            states = {}
            owner: dict[str, Any] = {}
            futures: list[Awaitable[Any]] = []
            for event in batch:
                written, outputs, dl = ledger_step(event, states, serialize=False)
                if dl is not None:
                    futures.append(await send_dead_letter(dl, event))
                for key, _ in written:
                    owner[key] = event
                for topic, kb, value in outputs:
                    futures.append(await send(topic, kb, value, event))
            await asyncio.gather(*futures)  # outputs durable before their dedupe marks
            await write_members(
                [(key, event, state) for key, event in owner.items() if (state := states[key])]
            )

    # -- web ----------------------------------------------------------------------------------

    @app.page("/members/{provider}/{tenant}/{customer_id}")
    class MemberView(View):
        async def get(
            self, request: Request, provider: str, tenant: str, customer_id: str
        ) -> Response:
            key = f"{provider}:{tenant}:{customer_id}"
            account = request.query.get("account")
            if account is not None and not ACCOUNT_RE.match(account):
                return self.json({"error": f"account {account[:80]!r} is not valid"}, status=400)
            try:
                # Faust's table routing: answered here if we own the key's partition, else
                # proxied to the worker that does. All of a member's accounts live in the
                # partition of its member key (the events topic's key).
                return await app.router.route_req(members.name, key.encode(), self.web, request)
            except SameNode:
                pass
            except Exception as exc:
                if type(exc).__name__ == "ServiceUnavailable":
                    return self.json({"error": "members table is rebalancing; retry"}, status=503)
                raise
            default = load_state(members.get(key.encode()))
            if default is None:
                return self.json({"error": f"unknown member {key}"}, status=404)
            accounts = [default] if default.events_applied else []
            for other in default.accounts:
                state = load_state(members.get(account_key(key, other).encode()))
                if state is not None:
                    accounts.append(state)
            if account is not None:
                chosen = [a for a in accounts if a.account_id == account]
                if not chosen:
                    known = ", ".join(a.account_id for a in accounts)
                    return self.json(
                        {"error": f"member {key} has no account {account!r}; accounts: {known}"},
                        status=404,
                    )
                return self.json(account_json(chosen[0]))
            return self.json(member_json(default, accounts))

    @app.page("/healthz")
    async def healthz(web: Any, request: Request) -> Response:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Request) -> Response:
        ready = not app.rebalancing and app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        return web.json(
            {"status": "ready" if ready else "recovering"}, status=200 if ready else 503
        )

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Request) -> Response:
        return web.bytes(
            generate_latest(metrics.registry), content_type="text/plain; version=0.0.4"
        )

    return Worker(
        app,
        settings,
        codec,
        metrics,
        members,
        {
            "raw": raw_topic,
            "events": events_topic,
            "ledger": ledger_topic,
            "balances": balances_topic,
            "tiers": tiers_topic,
            "dlq": dlq_topic,
        },
    )


def load_state(stored: bytes | None) -> MemberState | None:
    """A members-table value (JSON text) as a MemberState; None for an unknown member."""
    return MemberState.from_json(json.loads(stored)) if stored else None


def dump_state(state: MemberState) -> bytes:
    return json.dumps(state.to_json()).encode()


def _out_of_range(outcome: Outcome | None) -> str:
    """`Record.field=value, ...: ` for the outcome's points outside Avro decimal(18, 2), or ''.

    Only on the dead-letter path: fastavro's error names neither the record nor the field.
    """
    if outcome is None:
        return ""
    try:
        records: list[Any] = [*outcome.entries, outcome.tier_change, outcome.state.to_balance()]
        bad = [
            f"{type(record).__name__}.{name}={value}"
            for record in records
            if record is not None
            for name, value in to_dict(record).items()
            if isinstance(value, Decimal) and value.is_finite() and abs(value) >= POINTS_MAX
        ]
    except Exception:  # only a better message: never let it fail the dead letter itself
        return ""
    if not bad:
        return ""
    return f"{', '.join(bad)} out of range for decimal(18, 2) (|points| < {POINTS_MAX:.0f}): "


def account_json(state: MemberState) -> dict[str, Any]:
    """One account's figures: its MemberBalance fields (balance, counters, drift, tier,
    freshness: `updated_at`, `as_of`, `events_applied`)."""
    return to_json_obj(state.to_balance())


def member_json(default: MemberState, accounts: list[MemberState]) -> dict[str, Any]:
    """The member query's answer: the member's primary account's figures at the top level (the
    single-account answer, as before accounts existed: the default account, else the first
    account that moved), and every account under `accounts`.

    Points of different accounts are never added up: two loyalty programs' cards or two
    wallets hold different currencies.
    """
    if not accounts:  # an index-only record with no account left
        return account_json(default) | {"accounts": []}
    primary = accounts[0]
    return account_json(primary) | {"accounts": [account_json(a) for a in accounts]}
