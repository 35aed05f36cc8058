"""`loyalty-connector rebuild`: the raw topic through today's decoders and ledger rules, into
fresh state under a shadow prefix and app id, while the live workers keep serving.

One process, plain aiokafka, no Faust:

1. **Read** `<prefix>.webhooks.raw` from its beginning (or, per partition, the first record at or
   after `--since`) to the end offsets it has when the rebuild starts (or, per partition, up to
   the first record at or after `--until`), every partition, merged into one deterministic order:
   record timestamp, then partition, then offset (a k-way merge: the same records always give
   the same order, and the order is the bridge's receive order).
2. **Normalize** each record with `connector.streams.normalize.normalize`, the worker's own
   function (provider decode + Avro encode; failures become dead letters, stage and all), and
   write the events to `<shadow>.events` keyed by member key, partitioned as the worker's
   producer does (murmur2 of the key); dead letters go to `<shadow>.webhooks.dlq`.
3. **Apply** each event, decoded back from the bytes the ledger would read, with the ledger's
   `apply` / `with_account` to an in-memory dict of fresh states keyed by account key, exactly
   as the worker's ledger step does (same outputs, same dead letters, same dedupe memory:
   `CONNECTOR_DEDUPE_MEMORY`). Ledger entries and tier changes go to `<shadow>.ledger` and
   `<shadow>.tiers` as they happen; `<shadow>.balances` (compacted) gets each account's final
   `MemberBalance`, the value a compacted read of the live topic ends with.
4. **Write the members table**: every final state to `<shadow_app_id>-members-changelog`, key =
   the table key's bytes, value = the table's JSON bytes (`state_format.dump_state`), partition =
   the member key's events partition, so a worker started with `CONNECTOR_APP_ID=<shadow_app_id>`
   restores exactly this state.
5. **Commit** the consumer group `<shadow_app_id>`: on the raw topic at the offsets the rebuild
   stopped at (that worker continues after them, never re-applying one), on `<shadow>.events` at
   its end, and on the live events topic at its current end (`cutover` moves that one to the
   end it has once the live workers are stopped; see README "Rebuild and diff").
6. **Manifest** last: one JSON record on `<shadow>.rebuild`; its presence means "finished".

Because the state is fresh and each raw record is applied once, no redelivery is presented to
the ledger, and the result does not depend on how much the dedupe memory remembers: what a
consumer-group reset of the live workers would double count (every member with more events than
`CONNECTOR_DEDUPE_MEMORY` whose events carry no provider id and clock), a rebuild counts once.

All state is in memory: about 1.5 kB per account plus ~200 bytes per remembered event id
(`CONNECTOR_DEDUPE_MEMORY` bounds those per account).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import json
import logging
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import RecordMetadata

from connector.avro import AvroCodec
from connector.domain.erasure import Erasure, Reason, erasure, erasure_reason, revives
from connector.domain.ledger import MemberState, Outcome, apply, with_account
from connector.errors import BrokerError
from connector.kafka_admin import ensure_topics
from connector.models import DeadLetter, LoyaltyEvent, utc
from connector.raw import PROVIDER, ConsumedRecord, header_map
from connector.registry import codec_for, register_schemas
from connector.settings import Settings
from connector.shadow import (
    MANIFEST_KEY,
    REBUILD_BY,
    Shadow,
    ShadowError,
    _start,
    check_shadow,
    commit_offsets,
    committed_reader,
    end_offsets,
    group_offsets,
    manifest_metadata,
    ms,
)
from connector.streams.faust_compat import partitions_of
from connector.streams.ledger import record_dead_letter
from connector.streams.normalize import Normalized, normalize
from connector.streams.partitioner import CachedPartitioner
from connector.streams.state_format import dump_erasure, dump_state, erasure_key, record_key

log = logging.getLogger("connector.rebuild")

BATCH = 1000  # raw records normalized while the previous batch's events acks come back
PENDING_MAX = 20_000  # output acks outstanding before we wait for them
STALL_SECONDS = 60.0

Normalizer = Callable[[ConsumedRecord, AvroCodec], Normalized]


@dataclass(frozen=True)
class RebuildOptions:
    shadow: Shadow
    since: datetime | None = None
    until: datetime | None = None
    progress: bool | None = None  # None: a bar when stderr is a terminal


@dataclass
class RebuildResult:
    raw_topic: str
    shadow_prefix: str
    shadow_app_id: str
    records: int = 0
    events: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    by_provider: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    beyond_horizon: int = 0
    beyond_movement_horizon: int = 0  # of those, naming a movement the memory forgot too
    ledger_entries: int = 0
    tier_changes: int = 0
    erased_members: int = 0
    erased_events: int = 0  # events for an erased member, dropped as the worker drops them
    accounts: int = 0
    members: int = 0
    changelog_records: int = 0
    raw_offsets: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition: [a, b)
    from_start: bool = True
    seconds: float = 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "raw_topic": self.raw_topic,
            "shadow_prefix": self.shadow_prefix,
            "shadow_app_id": self.shadow_app_id,
            "records": self.records,
            "events": self.events,
            "dead_letters": dict(self.dead_letters),
            "by_provider": dict(self.by_provider),
            "duplicates": self.duplicates,
            "beyond_horizon": self.beyond_horizon,
            "beyond_movement_horizon": self.beyond_movement_horizon,
            "ledger_entries": self.ledger_entries,
            "tier_changes": self.tier_changes,
            "erased_members": self.erased_members,
            "erased_events": self.erased_events,
            "accounts": self.accounts,
            "members": self.members,
            "changelog_records": self.changelog_records,
            "raw_offsets": {str(p): list(r) for p, r in sorted(self.raw_offsets.items())},
            "from_start": self.from_start,
            "seconds": round(self.seconds, 3),
            "records_per_s": round(self.records_per_s, 1),
        }


# -- progress ----------------------------------------------------------------------------------


class Progress(Protocol):
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


class _Quiet:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Lines:
    """A line every few seconds (records, records/s, ETA) when tqdm is not installed."""

    def __init__(self, total: int, every: float = 5.0) -> None:
        self.total, self.every, self.done = total, every, 0
        self.start = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(
                f"rebuild: {self.done}/{self.total} records, {rate:.0f} rec/s, ETA {eta:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool | None) -> Progress:
    """tqdm on stderr (records/s and ETA), on when stderr is a terminal unless told."""
    on = sys.stderr.isatty() if enabled is None else enabled
    if not on:
        return _Quiet()
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm ships with the `analytics` extra
        return _Lines(total)
    bar: Progress = tqdm(total=total, desc="rebuild", unit="rec", file=sys.stderr, smoothing=0.1)
    return bar


# -- reading the raw topic in one deterministic order ------------------------------------------


class RawReader:
    """The records of each raw partition's range [start, stop), merged by (timestamp,
    partition, offset): a k-way merge of the partitions' heads, so the order is a function of
    the records alone, never of fetch timing. `stop` starts as the end offsets; `--until`
    moves a partition's stop to its first record at or after that time."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        start: dict[TopicPartition, int],
        end: dict[TopicPartition, int],
        until_ms: int | None,
    ) -> None:
        self.consumer, self.start, self.end, self.until_ms = consumer, start, end, until_ms
        self.stop = dict(end)

    async def batches(self, size: int) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
        consumer, end = self.consumer, self.end
        tps = sorted(self.start)
        for tp in tps:
            consumer.seek(tp, self.start[tp])
        buffers: dict[TopicPartition, deque[ConsumerRecord[bytes, bytes]]] = {
            tp: deque() for tp in tps
        }
        exhausted = {tp: self.start[tp] >= end[tp] for tp in tps}
        waiting = {tp for tp in tps if not exhausted[tp]}  # unfinished, nothing buffered
        heap: list[tuple[int, int, int, TopicPartition]] = []
        out: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + STALL_SECONDS
        while True:
            while waiting:  # every unfinished partition needs its head before the merge goes on
                got = await consumer.getmany(*waiting, timeout_ms=500, max_records=5000)
                if got:
                    deadline = time.monotonic() + STALL_SECONDS
                elif time.monotonic() > deadline:
                    where = ", ".join(f"{t.topic}[{t.partition}]" for t in sorted(waiting))
                    raise BrokerError(
                        f"no progress reading {where} for {STALL_SECONDS:.0f}s "
                        f"(end offsets {self.end})"
                    )
                for tp, messages in got.items():
                    for m in messages:
                        if exhausted[tp]:
                            break
                        if m.offset >= end[tp]:
                            exhausted[tp] = True
                            break
                        if self.until_ms is not None and m.timestamp >= self.until_ms:
                            self.stop[tp] = m.offset
                            exhausted[tp] = True
                            break
                        buffers[tp].append(m)
                for tp in list(waiting):
                    if not exhausted[tp] and await consumer.position(tp) >= end[tp]:
                        exhausted[tp] = True
                    if buffers[tp]:
                        waiting.discard(tp)
                        head = buffers[tp][0]
                        heapq.heappush(heap, (head.timestamp, tp.partition, head.offset, tp))
                    elif exhausted[tp]:
                        waiting.discard(tp)
            if not heap:
                break
            while heap:
                _, _, _, tp = heapq.heappop(heap)
                out.append(buffers[tp].popleft())
                refill = False
                if buffers[tp]:
                    head = buffers[tp][0]
                    heapq.heappush(heap, (head.timestamp, tp.partition, head.offset, tp))
                elif not exhausted[tp]:
                    waiting.add(tp)
                    refill = True
                if len(out) >= size:
                    yield out
                    out = []
                if refill:
                    break
        if out:
            yield out


# -- the ledger step, as the worker's ----------------------------------------------------------


class Ledger:
    """The worker's ledger step over an in-memory members table (`states`, by table key).

    Mirrors the worker's (`connector/streams/ledger.py`): decode the events record, `apply` to
    the account's record, `with_account` on the member's default record, encode every output;
    anything failing for one event dead-letters that event and leaves the member as it was.
    """

    def __init__(self, codec: AvroCodec, shadow: Shadow, memory: int, result: RebuildResult):
        self.codec, self.memory, self.result = codec, memory, result
        topics = shadow.topics
        self.ledger_topic, self.tiers_topic = topics.ledger, topics.tiers
        self.states: dict[str, MemberState] = {}
        # account key → its newest MemberBalance record (None: erased, a tombstone)
        self.balances: dict[str, bytes | None] = {}
        self.erased: dict[str, Erasure] = {}  # member key → its erasure marker

    def step(
        self, record: ConsumedRecord
    ) -> tuple[list[tuple[str, bytes, bytes | None]], DeadLetter | None]:
        """(outputs as (topic, key, value; None a tombstone), None) or ([], the dead letter)."""
        codec, states = self.codec, self.states
        try:
            loyalty: LoyaltyEvent = codec.decode(record.value or b"", LoyaltyEvent)
        except Exception as exc:  # SchemaError, or a record no LoyaltyEvent can be built from
            return [], record_dead_letter(record, exc, datetime.now(UTC))
        key, mk = loyalty.account_key, loyalty.member_key
        now = utc(datetime.now(UTC))
        outcome: Outcome | None = None
        reason = erasure_reason(loyalty)
        erased = self.erased.get(mk)
        if erased is not None:
            if reason is not None or not revives(erased, loyalty):
                self.result.erased_events += 1
                return [], None
            del self.erased[mk]  # a new registration after the erasure: a fresh member
        elif reason is not None:
            return self.erase(loyalty, reason, now), None
        try:
            outcome = apply(
                states.get(key), loyalty, now=now, offset=record.offset, memory=self.memory
            )
            index = with_account(states.get(mk), loyalty, now) if key != mk else None
            kb, akb = mk.encode(), key.encode()
            outputs: list[tuple[str, bytes, bytes | None]] = [
                (self.ledger_topic, kb, codec.encode(e)) for e in outcome.entries
            ]
            if outcome.tier_change is not None:
                outputs.append((self.tiers_topic, akb, codec.encode(outcome.tier_change)))
            balance = None
            if outcome.balance_changed or outcome.duplicate:
                balance = codec.encode(outcome.state.to_balance())
        except Exception as exc:  # a rule bug or an unencodable value must not stop the rebuild
            text = str(exc)
            why = text
            if key not in text:  # fastavro's error names neither the member nor the event
                why = f"member {key}, event {loyalty.event_id} ({loyalty.type.value}): {text}"
            return [], record_dead_letter(record, exc, now, why, loyalty)
        states[key] = outcome.state
        if index is not None:
            states[mk] = index
        if balance is not None:
            self.balances[key] = balance
        r = self.result
        r.duplicates += outcome.duplicate
        r.beyond_horizon += outcome.beyond_horizon
        r.beyond_movement_horizon += outcome.forgotten_movement is not None
        r.ledger_entries += len(outcome.entries)
        r.tier_changes += outcome.tier_change is not None
        return outputs, None

    def erase(
        self, loyalty: LoyaltyEvent, reason: Reason, now: datetime
    ) -> list[tuple[str, bytes, bytes | None]]:
        """The worker's erasure (streams/ledger.py `LedgerStep.erase`): every account record
        deleted, its balances and tiers records tombstoned, the marker kept."""
        keys, marker = erasure(loyalty, self.states.get(loyalty.member_key), reason, now)
        outputs: list[tuple[str, bytes, bytes | None]] = []
        for k in keys:
            self.states.pop(k, None)
            self.balances[k] = None
            outputs.append((self.tiers_topic, k.encode(), None))
        self.erased[loyalty.member_key] = marker
        self.result.erased_members += 1
        return outputs


# -- the rebuild -------------------------------------------------------------------------------


def partition_for(key: str, partitions: int, partitioner: CachedPartitioner) -> int:
    """The partition the worker's producer gives `key` (Kafka's default: murmur2)."""
    every = list(range(partitions))
    return partitioner(key.encode(), every, every)


async def _check_fresh(consumer: AIOKafkaConsumer, settings: Settings, shadow: Shadow) -> None:
    bootstrap = settings.bootstrap_servers
    used = []
    for topic in [*shadow.outputs(), shadow.changelog, shadow.manifest_topic]:
        tps = await partitions_of(consumer, topic)
        if tps and sum((await consumer.end_offsets(tps)).values()) > 0:
            used.append(topic)
    if await group_offsets(bootstrap, shadow.app_id):
        used.append(f"consumer group {shadow.app_id}")
    if used:
        raise ShadowError(
            f"the shadow prefix/app id already hold data ({', '.join(used)}): choose another "
            "--shadow-prefix and --shadow-app-id (or delete those topics and the group)"
        )


async def _create_topic(settings: Settings, topic: str, partitions: int) -> None:
    """A compacted topic (the members changelog as Faust creates it, or the manifest)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await _start(admin, settings.bootstrap_servers)
    try:
        if topic in set(await admin.list_topics()):
            return
        spec = NewTopic(
            topic,
            partitions,
            settings.replication_factor,
            topic_configs={"cleanup.policy": "compact"},
        )
        try:
            await admin.create_topics([spec])
        except TopicAlreadyExistsError:
            pass
    except KafkaError as exc:
        raise BrokerError(f"cannot create {topic}: {exc}") from None
    finally:
        await admin.close()


async def _wait_for_leaders(settings: Settings, topics: list[str], patience: float = 30) -> None:
    """Until every partition of `topics` has a leader (a topic just created has none for a
    moment, and the first sends to it would be retried with NotLeaderForPartition)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await _start(admin, settings.bootstrap_servers)
    deadline = time.monotonic() + patience
    try:
        while time.monotonic() < deadline:
            described = await admin.describe_topics(topics)
            if all(
                not d.get("error_code")
                and d["partitions"]
                and all(p.get("leader", -1) >= 0 for p in d["partitions"])
                for d in described
            ):
                return
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def rebuild(
    settings: Settings, options: RebuildOptions, *, normalizer: Normalizer | None = None
) -> RebuildResult:
    """Run one rebuild (see the module docstring); raises ShadowError before writing anything
    if the shadow names are taken. `normalizer`: the worker's `normalize` (with the settings'
    CONNECTOR_REDACT_ATTRIBUTES) unless given."""
    if normalizer is None:
        normalizer = functools.partial(normalize, redact=settings.redact_attributes)
    shadow = options.shadow
    check_shadow(settings, shadow)
    bootstrap = settings.bootstrap_servers
    live = settings.topics
    result = RebuildResult(live.raw, shadow.prefix, shadow.app_id)
    started = time.monotonic()

    consumer = committed_reader(bootstrap)
    await _start(consumer, bootstrap)
    try:
        tps = await partitions_of(consumer, live.raw)
        if not tps:
            raise ShadowError(f"the raw topic {live.raw} does not exist: nothing to rebuild")
        events_tps = await partitions_of(consumer, live.events)
        partitions = len(events_tps) or settings.partitions
        await _check_fresh(consumer, settings, shadow)
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        start = dict(begin)
        since_ms, until_ms = ms(options.since), ms(options.until)
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                start[tp] = hit.offset if hit is not None else end[tp]
        result.from_start = since_ms is None and all(begin[tp] == 0 for tp in tps)
        if since_ms is None and not result.from_start:
            log.warning(
                "%s starts after offset 0 (%s): records before were deleted (retention); the "
                "rebuild cannot include them",
                live.raw,
                {tp.partition: begin[tp] for tp in tps if begin[tp]},
            )

        shadow_settings = settings.replace(
            topic_prefix=shadow.prefix, app_id=shadow.app_id, partitions=partitions
        )
        await ensure_topics(shadow_settings, shadow.outputs())
        await _create_topic(settings, shadow.changelog, partitions)
        await _wait_for_leaders(settings, [*shadow.outputs(), shadow.changelog])
        register_schemas(shadow_settings)  # registry mode: the shadow topics' subjects
        codec = codec_for(shadow_settings)
        partitioner = CachedPartitioner()
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=settings.idempotent_producer,
            linger_ms=5,
            max_batch_size=512 * 1024,
            partitioner=partitioner,
        )
        await _start(producer, bootstrap)
        try:
            reader = RawReader(consumer, start, end, until_ms)
            ledger = Ledger(codec, shadow, settings.dedupe_memory, result)
            total = sum(max(0, end[tp] - start[tp]) for tp in tps)
            bar = progress_bar(total, options.progress)
            try:
                await _run(reader, ledger, producer, shadow, normalizer, codec, result, bar)
            finally:
                bar.close()
            await _write_state(ledger, producer, shadow, partitions, partitioner, result)
        finally:
            await producer.stop()
        result.raw_offsets = {tp.partition: (start[tp], reader.stop[tp]) for tp in tps}
        result.accounts = sum(1 for s in ledger.states.values() if s.events_applied)
        result.members = len({s.member_key for s in ledger.states.values()})
    finally:
        await consumer.stop()

    manifest = {
        "by": REBUILD_BY,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "prefix": settings.topic_prefix,
        "app_id": settings.app_id,
        "shadow_prefix": shadow.prefix,
        "shadow_app_id": shadow.app_id,
        "raw_topic": live.raw,
        "since": options.since.isoformat() if options.since else None,
        "until": options.until.isoformat() if options.until else None,
        "from_start": result.from_start,
        "partitions": partitions,
        "dedupe_memory": settings.dedupe_memory,
    }
    await _commit(settings, shadow, result, manifest)
    result.seconds = time.monotonic() - started
    await _write_manifest(settings, shadow, manifest | {"result": result.to_json()})
    return result


async def _run(
    reader: RawReader,
    ledger: Ledger,
    producer: AIOKafkaProducer,
    shadow: Shadow,
    normalizer: Normalizer,
    codec: AvroCodec,
    result: RebuildResult,
    bar: Progress,
) -> None:
    events_topic, dlq_topic = shadow.topics.events, shadow.topics.dlq
    pending: list[Awaitable[RecordMetadata]] = []

    async def send_dead_letter(dl: DeadLetter) -> None:
        result.dead_letters[dl.stage] += 1
        pending.append(
            await producer.send(dlq_topic, codec.encode(dl), key=dl.delivery_id.encode())
        )

    Sent = list[tuple[bytes, bytes, Awaitable[RecordMetadata]]]

    async def normalize_batch(batch: list[ConsumerRecord[bytes, bytes]]) -> Sent:
        sent: Sent = []
        for m in batch:
            record = ConsumedRecord(
                m.key, m.value, list(m.headers or ()), m.topic, m.partition, m.offset
            )
            normalized = normalizer(record, codec)
            result.records += 1
            result.by_provider[header_map(record.headers).get(PROVIDER, "") or "?"] += 1
            if normalized.dead_letter is not None:
                await send_dead_letter(normalized.dead_letter)
            for event, payload in normalized.events:
                key = event.member_key.encode()
                sent.append((key, payload, await producer.send(events_topic, payload, key=key)))
        return sent

    async def apply_batch(sent: Sent) -> None:
        # the ledger reads an events record with its offset: the batch's events acks
        acks = await asyncio.gather(*(fut for _, _, fut in sent))
        result.events += len(sent)
        for (key, payload, _), md in zip(sent, acks, strict=True):
            record = ConsumedRecord(key, payload, [], events_topic, md.partition, md.offset)
            outputs, dl = ledger.step(record)
            if dl is not None:
                await send_dead_letter(dl)
            for topic, kb, value in outputs:
                pending.append(await producer.send(topic, value, key=kb))

    # Two stages in step: batch n+1 is normalized (and its events sent) while batch n's events
    # acks come back, then batch n is applied; events are applied in the order they were read.
    previous: tuple[Sent, int] | None = None
    async for batch in reader.batches(BATCH):
        sent = await normalize_batch(batch)
        if previous is not None:
            await apply_batch(previous[0])
            bar.update(previous[1])
        previous = (sent, len(batch))
        if len(pending) >= PENDING_MAX:
            await asyncio.gather(*pending)
            pending.clear()
    if previous is not None:
        await apply_batch(previous[0])
        bar.update(previous[1])
    await asyncio.gather(*pending)


async def _write_state(
    ledger: Ledger,
    producer: AIOKafkaProducer,
    shadow: Shadow,
    partitions: int,
    partitioner: CachedPartitioner,
    result: RebuildResult,
) -> None:
    """Each account's final balance, then every table record to the changelog (acked)."""
    pending: list[Awaitable[RecordMetadata]] = []
    balances = shadow.topics.balances
    for key, value in ledger.balances.items():
        pending.append(await producer.send(balances, value, key=key.encode()))
    for key, state in ledger.states.items():
        # all of a member's records live in its member key's events partition
        partition = partition_for(state.member_key, partitions, partitioner)
        pending.append(
            await producer.send(
                shadow.changelog, dump_state(state), key=record_key(key), partition=partition
            )
        )
        if len(pending) >= PENDING_MAX:
            await asyncio.gather(*pending)
            pending.clear()
    for mk, marker in ledger.erased.items():
        partition = partition_for(mk, partitions, partitioner)
        pending.append(
            await producer.send(
                shadow.changelog, dump_erasure(marker), key=erasure_key(mk), partition=partition
            )
        )
    await asyncio.gather(*pending)
    result.changelog_records = len(ledger.states) + len(ledger.erased)


async def _commit(
    settings: Settings, shadow: Shadow, result: RebuildResult, manifest: dict[str, Any]
) -> None:
    """The shadow group's offsets: raw at where the rebuild stopped, the shadow events topic at
    its end, the live events topic at its end now (`cutover` moves it once the live workers
    are stopped)."""
    bootstrap = settings.bootstrap_servers
    raw = settings.topics.raw
    offsets = {TopicPartition(raw, p): stop for p, (_, stop) in result.raw_offsets.items()}
    for topic in (shadow.topics.events, settings.topics.events):
        for p, offset in (await end_offsets(bootstrap, topic)).items():
            offsets[TopicPartition(topic, p)] = offset
    await commit_offsets(bootstrap, shadow.app_id, offsets, manifest_metadata(manifest))


async def _write_manifest(settings: Settings, shadow: Shadow, manifest: dict[str, Any]) -> None:
    await _create_topic(settings, shadow.manifest_topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await _start(producer, settings.bootstrap_servers)
    try:
        await producer.send_and_wait(
            shadow.manifest_topic, json.dumps(manifest).encode(), key=MANIFEST_KEY
        )
    finally:
        await producer.stop()


def summary(result: RebuildResult) -> str:
    dls = ", ".join(f"{stage} {n}" for stage, n in sorted(result.dead_letters.items())) or "none"
    lines = [
        f"rebuilt {result.records} raw records of {result.raw_topic} in {result.seconds:.1f} s "
        f"({result.records_per_s:.0f} records/s): {result.events} events, "
        f"{result.ledger_entries} ledger entries, dead letters: {dls}",
        f"  {result.accounts} accounts of {result.members} members -> {result.shadow_prefix}.* "
        f"and {result.shadow_app_id}-members-changelog ({result.changelog_records} records)",
        f"  consumer group {result.shadow_app_id} committed at raw offsets "
        + ", ".join(f"{p}:{stop}" for p, (_, stop) in sorted(result.raw_offsets.items())),
    ]
    if not result.from_start:
        lines.append(
            "  partial: the rebuild did not start at the raw topic's first record (--since, or "
            "records deleted by retention); fine for a diff, refused by cutover"
        )
    lines.append(f"next: loyalty-connector diff --shadow-prefix {result.shadow_prefix}")
    return "\n".join(lines)
