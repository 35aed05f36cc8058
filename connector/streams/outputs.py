"""Sending the agents' outputs (events, ledger entries, balances, tiers, dead letters) to Kafka.

Straight to Faust's producer (aiokafka), not `Topic.send`: its channel/FutureMessage plumbing
cost ~40 % of the worker's CPU per event (benchmarks/pipeline.py) and nothing here needs it. At
least once, the agents await every output's ack themselves before the batch's table write and
offsets; exactly once, each output joins its *source* partition's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from faust.types import AppT, EventT, RecordMetadata, TopicT

from connector.avro import AvroCodec
from connector.models import DeadLetter
from connector.streams.faust_compat import source_transactional_id
from connector.streams.metrics import WorkerMetrics

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
        self.metrics.dead_letters.labels(dl.stage).inc()
        log.warning(
            "dead letter (%s): %s: %s",
            dl.stage,
            dl.error_class,
            dl.error_message,
            extra={"delivery_id": dl.delivery_id, "provider": dl.provider},
        )
        return await self.send(self.dlq, dl.delivery_id.encode(), self.codec.encode(dl), source)
