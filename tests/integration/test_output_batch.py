"""`OutputBatch` (connector/streams/outputs.py) on a real broker: the at-least-once worker's
outputs, sent as one Kafka record batch per topic partition through the producer beneath Faust's.

The oracle for where a keyed record goes is aiokafka's own `DefaultPartitioner` (what the
per-record path used), and for the offsets what a consumer reads back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from connector.streams.outputs import OutputBatch, acked_offsets


async def _topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def _read(bootstrap: str, topic: str, partitions: int) -> dict[int, list[Any]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        got: dict[int, list[Any]] = {p: [] for p in range(partitions)}
        remaining = set(tps)
        while remaining:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                got[tp.partition] += records
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return got
    finally:
        await consumer.stop()


def test_records_go_to_their_key_partition_in_order_across_several_kafka_batches(
    kafka: Any, topic_prefix: str
) -> None:
    outputs, explicit = f"{topic_prefix}-outputs", f"{topic_prefix}-explicit"
    # 1 KiB batches: ~200-byte records fill one every few records, so every partition's records
    # span several Kafka batches and their offsets must still come out in add order
    app = faust.App(
        f"{topic_prefix}-app",
        broker=f"kafka://{kafka.bootstrap}",
        producer_max_batch_size=1024,
        producer_acks=-1,
        web_enabled=False,
    )
    keys = [f"gameball:default:member-{i % 37}".encode() for i in range(600)]
    values: list[bytes | None] = [f"value-{i}-".encode() * 12 for i in range(600)]
    values[5] = None  # a tombstone (an erased member's balances record)

    async def run() -> tuple[list[int], dict[int, list[Any]], dict[int, list[Any]]]:
        await _topics(kafka.bootstrap, [outputs, explicit], 4)
        await app.producer.start()
        try:
            batch = OutputBatch(app)
            for i, (key, value) in enumerate(zip(keys, values, strict=True)):
                batch.add(outputs, key, value, None)
                if i % 100 == 0:
                    batch.add(explicit, key, b"x", 3)
            assert len(batch) == 606
            sent = await batch.flush()
            assert len(batch) == 0
            assert len(sent) > 8  # several Kafka batches per partition
            offsets = await acked_offsets(sent, 606)
        finally:
            await app.producer.stop()
        return (
            offsets,
            await _read(kafka.bootstrap, outputs, 4),
            await _read(kafka.bootstrap, explicit, 4),
        )

    offsets, got, got_explicit = asyncio.run(run())
    partition_of = DefaultPartitioner()
    expected: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in range(4)}
    for key, value in zip(keys, values, strict=True):
        expected[partition_of(key, [0, 1, 2, 3], [0, 1, 2, 3])].append((key, value))
    assert {p: [(r.key, r.value) for r in got[p]] for p in range(4)} == expected
    assert [len(got_explicit[p]) for p in range(4)] == [0, 0, 0, 6]
    # each record's reported offset is the one it has on the broker
    by_value = {(r.topic, r.partition, r.offset): r for p in range(4) for r in got[p]}
    by_value |= {(r.topic, r.partition, r.offset): r for r in got_explicit[3]}
    n = 0
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        record = by_value[(outputs, partition_of(key, [0, 1, 2, 3], [0, 1, 2, 3]), offsets[n])]
        assert (record.key, record.value) == (key, value), i
        n += 1
        if i % 100 == 0:
            assert by_value[(explicit, 3, offsets[n])].key == key
            n += 1


def test_an_empty_batch_sends_nothing(kafka: Any, topic_prefix: str) -> None:
    app = faust.App(f"{topic_prefix}-app", broker=f"kafka://{kafka.bootstrap}", web_enabled=False)

    async def run() -> list[Any]:
        return list(await OutputBatch(app).flush())  # no producer needed: nothing to send

    assert asyncio.run(run()) == []
