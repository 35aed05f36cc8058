"""connector.inspect.read_to_end, the reader behind the test harness and the soak's oracle."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connector.errors import BrokerError
from connector.inspect import read_to_end


def test_reads_every_partition_to_the_end_and_skips_aborted(kafka, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.read"

    async def run() -> list[tuple[int, bytes]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap, transactional_id=f"{topic_prefix}-tx"
        )
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(30):
                    await producer.send(topic, f"c{i}".encode(), key=b"k", partition=i % 3)
            await producer.begin_transaction()
            await producer.send(topic, b"aborted", key=b"k", partition=0)
            await producer.abort_transaction()
        finally:
            await producer.stop()
        records = await read_to_end(kafka.bootstrap, topic)
        return [(r.partition, r.value) for r in records]

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 3, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    got = asyncio.run(run())
    assert sorted(v for _, v in got) == sorted(f"c{i}".encode() for i in range(30))
    assert {p for p, _ in got} == {0, 1, 2}


def test_unknown_topic_is_empty(kafka, topic_prefix: str) -> None:
    assert asyncio.run(read_to_end(kafka.bootstrap, f"{topic_prefix}.nothing-here")) == []


def test_a_topic_it_cannot_finish_in_time_is_an_error(kafka, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.long"

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            for i in range(2000):
                await producer.send(topic, b"x" * 100, key=str(i).encode())
            await producer.flush()
        finally:
            await producer.stop()
        await read_to_end(kafka.bootstrap, topic, timeout=0.0)

    with pytest.raises(BrokerError, match="could not read"):
        asyncio.run(run())
