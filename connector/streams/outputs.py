"""Sending the agents' outputs (events, ledger entries, balances, tiers, dead letters) to Kafka.

Straight to Faust's producer (aiokafka), not `Topic.send`: its channel/FutureMessage plumbing
cost ~40 % of the worker's CPU per event (benchmarks/pipeline.py) and nothing here needs it. At
least once, the agents collect a batch's outputs in an `OutputBatch`, send them as one Kafka
record batch per topic partition, and await every ack before the batch's table write and
offsets; exactly once, each output goes on its own (`Outputs.send`) into its *source*
partition's transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from faust.types import AppT, EventT, RecordMetadata, TopicT

from connector.avro import AvroCodec
from connector.models import DeadLetter
from connector.streams.faust_compat import aiokafka_producer, source_transactional_id
from connector.streams.metrics import WorkerMetrics
from connector.streams.partitioner import CachedPartitioner

log = logging.getLogger("connector.worker")

Ack = Awaitable[RecordMetadata]


class Outputs:
    """The worker's producer side: `send` one output of processing a source event."""

    def __init__(
        self,
        app: AppT,
        codec: AvroCodec,
        metrics: WorkerMetrics,
        dlq: TopicT,
        *,
        exactly_once: bool,
    ) -> None:
        self.app, self.codec, self.metrics, self.dlq = app, codec, metrics, dlq
        self.exactly_once = exactly_once

    async def send(self, topic: TopicT, key: bytes, value: bytes | None, source: EventT) -> Ack:
        """Send an output of processing `source` (the event being processed); its ack.
        `value` None: a tombstone (an erased member's balances and tiers records).

        exactly_once: Faust's TransactionManager puts a record into the transaction of its
        *destination* partition, and commits a source partition's offsets with the transaction
        of the *source* partition number. Both agents re-key (raw: delivery id → events:
        member key), so an output usually lands in another partition's transaction, which
        commits only when that partition's own input happens to commit, and aborts after the
        transaction timeout if it does not: the output is lost while its input is committed.
        So outputs go explicitly into the source partition's transaction (committed atomically
        with the source offset), via the producer's per-transaction producers.
        (docs/upstream-patches.md offers Faust the fix.)
        """
        transactional_id = None
        if self.exactly_once:
            msg = source.message
            transactional_id = source_transactional_id(self.app, msg.topic, msg.partition)
        return await self.app.producer.send(
            topic=topic.get_topic_name(),
            key=key,
            value=value,
            partition=None,
            timestamp=None,
            headers=None,
            transactional_id=transactional_id,
        )

    async def dead_letter(self, dl: DeadLetter, source: EventT) -> Ack:
        """Send `dl` (a dead letter of processing `source`) to the DLQ, counted and logged."""
        self.count_dead_letter(dl)
        return await self.send(self.dlq, dl.delivery_id.encode(), self.codec.encode(dl), source)

    def count_dead_letter(self, dl: DeadLetter) -> None:
        self.metrics.dead_letters.labels(dl.stage).inc()
        log.warning(
            "dead letter (%s): %s: %s",
            dl.stage,
            dl.error_class,
            dl.error_message,
            extra={"delivery_id": dl.delivery_id, "provider": dl.provider},
        )

    def batch(self) -> OutputBatch:
        """At least once: the outputs of one batch of source events, sent together (`flush`)."""
        assert not self.exactly_once, "exactly once, outputs join their source's transaction"
        return OutputBatch(self.app, self)


@dataclass
class SentBatch:
    """One Kafka record batch on its way: `ack` resolves to the metadata of its first record;
    `positions` are the indices (in `OutputBatch.add` order) of its records, in batch order."""

    topic: str
    partition: int
    ack: asyncio.Future[RecordMetadata]
    positions: list[int]


class OutputBatch:
    """Records collected while a batch is worked on, then sent as one Kafka record batch per
    topic partition (aiokafka's `create_batch` / `send_batch`) by `flush`.

    At least once only. The per-record path (`Outputs.send`: Faust's `Producer.send`, then
    aiokafka's `send`) costs a future, its callbacks and Faust's wrapper per record, and the
    agents await every ack anyway before their offsets commit; here a topic partition's records
    share one future. Records keep their `add` order within each partition. A keyed record with
    no partition goes where the producer's partitioner (the app's `CachedPartitioner`, Kafka's
    murmur2) would send it; the records are the same bytes the per-record path sends, without
    headers and with the producer's clock as timestamp, as there.
    """

    def __init__(self, app: AppT, outputs: Outputs | None = None) -> None:
        self.app, self.outputs = app, outputs
        self._records: list[tuple[str, int | None, bytes | None, bytes | None]] = []

    def __len__(self) -> int:
        return len(self._records)

    def add(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None
    ) -> None:
        """One record for `topic` (`partition` None: the key's partition)."""
        self._records.append((topic, partition, key, value))

    async def send(self, topic: TopicT, key: bytes, value: bytes | None, source: EventT) -> None:
        """`Outputs.send`'s signature, for code shared with the exactly-once path."""
        self._records.append((topic.get_topic_name(), None, key, value))

    async def dead_letter(self, dl: DeadLetter, source: EventT) -> None:
        outputs = self.outputs
        assert outputs is not None
        outputs.count_dead_letter(dl)
        await self.send(outputs.dlq, dl.delivery_id.encode(), outputs.codec.encode(dl), source)

    async def flush(self) -> list[SentBatch]:
        """Send what was added (and forget it); each Kafka batch's future, to be awaited."""
        records, self._records = self._records, []
        if not records:
            return []
        producer = aiokafka_producer(self.app)
        by_tp: dict[tuple[str, int], list[int]] = {}
        partitions: dict[str, list[int]] = {}
        partitioner = _PARTITIONER
        for i, (topic, partition, key, _) in enumerate(records):
            if partition is None:
                all_partitions = partitions.get(topic)
                if all_partitions is None:
                    all_partitions = partitions[topic] = sorted(
                        await producer.partitions_for(topic)
                    )
                partition = partitioner(key, all_partitions, all_partitions)
            by_tp.setdefault((topic, partition), []).append(i)
        sent: list[SentBatch] = []
        for (topic, partition), positions in by_tp.items():
            batch = producer.create_batch()
            in_batch: list[int] = []
            for i in positions:
                _, _, key, value = records[i]
                if batch.append(key=key, value=value, timestamp=None) is None:  # full
                    ack = await producer.send_batch(batch, topic, partition=partition)
                    sent.append(SentBatch(topic, partition, ack, in_batch))
                    batch, in_batch = producer.create_batch(), []
                    batch.append(key=key, value=value, timestamp=None)  # an empty batch takes one
                in_batch.append(i)
            ack = await producer.send_batch(batch, topic, partition=partition)
            sent.append(SentBatch(topic, partition, ack, in_batch))
        return sent


async def acked_offsets(sent: Sequence[SentBatch], count: int) -> list[int]:
    """Wait for every batch in `sent`; the offset of each of the `count` records, in `add`
    order (a batch's records have consecutive offsets from its first record's)."""
    offsets = [-1] * count
    for batch, md in zip(sent, await asyncio.gather(*(b.ack for b in sent)), strict=True):
        for n, i in enumerate(batch.positions):
            offsets[i] = md.offset + n
    return offsets


# One per process, like the app's producer_partitioner: Kafka's default partitioner with the
# murmur2 hash cached per key (connector/streams/partitioner.py).
_PARTITIONER = CachedPartitioner()
