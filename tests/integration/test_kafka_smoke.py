"""The real broker works with our clients: Avro records go through Kafka byte-exact."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connector import models
from connector.avro import default_codec


def test_avro_loyalty_event_through_kafka_is_byte_exact(kafka, topic_prefix: str) -> None:
    codec = default_codec()
    now = models.utc(datetime.now(UTC))
    event = models.LoyaltyEvent(
        event_id="e1",
        provider=models.Provider.VOUCHERIFY,
        tenant="default",
        provider_event_type="customer.rewarded.loyalty_points",
        type=models.EventType.POINTS_EARNED,
        customer_id="cust_1",
        member_key="voucherify:default:cust_1",
        occurred_at=now,
        received_at=now,
        points_delta=Decimal("900.00"),
        balance=Decimal("900.00"),
    )
    payload = codec.encode(event)
    topic = f"{topic_prefix}.events"

    async def run() -> bytes:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, payload, key=event.member_key.encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 30)
        finally:
            await consumer.stop()
        assert msg.key == event.member_key.encode()
        return bytes(msg.value)

    got = asyncio.run(run())
    assert got == payload
    assert codec.decode(got) == event
