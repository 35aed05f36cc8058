"""The bridge's two Kafka writers on real Apache Kafka: the same record, the same partition.

`RdKafkaRawProducer` (librdkafka, the default) replaced `KafkaRawProducer` (aiokafka) on the hot
path; anything reading the raw topic (the worker, replay, a retry's dedupe) must not see a
difference. The oracle for the partition is aiokafka's own DefaultPartitioner (the Java
client's murmur2), not the code under test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from connector.bridge.producer import KafkaRawProducer, RdKafkaRawProducer, raw_producer
from connector.kafka_admin import ensure_topics
from tests.integration.test_bridge_kafka import bridge_settings, consume, headers_of

WRITERS = {"librdkafka": RdKafkaRawProducer, "aiokafka": KafkaRawProducer}


def test_the_setting_picks_the_writer(kafka: Any, topic_prefix: str) -> None:
    s = bridge_settings(kafka.bootstrap, topic_prefix)
    assert s.bridge_kafka == "librdkafka"
    assert isinstance(raw_producer(s), RdKafkaRawProducer)
    s = bridge_settings(kafka.bootstrap, topic_prefix, CONNECTOR_BRIDGE_KAFKA="aiokafka")
    assert isinstance(raw_producer(s), KafkaRawProducer)


@pytest.mark.parametrize("client", sorted(WRITERS))
def test_records_land_exactly_on_the_java_clients_partition(
    kafka: Any, topic_prefix: str, client: str
) -> None:
    s = bridge_settings(kafka.bootstrap, topic_prefix)
    keys = [f"delivery-{n}-{uuid.uuid4().hex[:8]}".encode() for n in range(64)]
    sent = {
        k: (b'{"n": %d}' % n, [("provider", b"gameball"), ("n", b"%d" % n)])
        for n, k in enumerate(keys)
    }

    async def go() -> list[Any]:
        await ensure_topics(s, [s.topics.raw])
        producer = WRITERS[client](s)
        await producer.start()
        try:
            assert await producer.ready()
            await asyncio.gather(
                *(producer.send(s.topics.raw, k, v, h) for k, (v, h) in sent.items())
            )
        finally:
            await producer.stop()
        return await consume(kafka.bootstrap, s.topics.raw, lambda rs: len(rs) >= len(sent))

    records = asyncio.run(go())
    assert len(records) == len(sent)
    partitions = list(range(s.partitions))
    java = DefaultPartitioner()
    spread = set()
    for record in records:
        value, headers = sent[record.key]
        assert record.value == value
        assert headers_of(record) == dict(headers)
        assert record.partition == java(record.key, partitions, partitions)
        spread.add(record.partition)
    assert len(spread) > 1  # keyed, not all on one partition


def test_librdkafka_writer_refuses_to_start_without_a_broker(topic_prefix: str) -> None:
    from connector.embedded import free_port

    s = bridge_settings(f"127.0.0.1:{free_port()}", topic_prefix)

    async def go() -> float:
        producer = RdKafkaRawProducer(s)
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="Kafka unreachable"):
            await producer.start()
        failed = time.monotonic() - started
        # not started: a write fails at once (the bridge answers 503), it does not hang
        with pytest.raises(ConnectionError, match="not started"):
            await producer.send(s.topics.raw, b"k", b"v", [])
        assert not await producer.ready()
        await producer.stop()  # a no-op, not an error
        return failed

    assert asyncio.run(go()) < 15


def test_settings_reject_an_unknown_writer(kafka: Any, topic_prefix: str) -> None:
    from connector.errors import ConfigError

    with pytest.raises(ConfigError, match="CONNECTOR_BRIDGE_KAFKA"):
        bridge_settings(kafka.bootstrap, topic_prefix, CONNECTOR_BRIDGE_KAFKA="kafka-python")
