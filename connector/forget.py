"""`loyalty-connector forget PROVIDER TENANT CUSTOMER_ID`: the operator's member erasure.

Writes one `CUSTOMER_DELETED` event (event id `forget:<uuid>`, provider event type `forget`)
to the events topic, keyed by the member key like every event of the member, so it is applied
in order with them by the ledger agent that owns the member: the member's records are deleted,
its balances and tiers records tombstoned and an erasure marker kept (domain/erasure.py,
docs/erasure.md). Returns once Kafka has acknowledged the event (acks=all); the member query
answers 410 as soon as the worker has applied it (`members --min-offset <offset>` waits for it).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from connector.domain.erasure import FORGET_PREFIX
from connector.errors import BrokerError
from connector.models import EventType, LoyaltyEvent, json_time, utc
from connector.providers import PROVIDERS, DecodeContext
from connector.providers.base import build_event
from connector.registry import codec_for, register_schemas
from connector.settings import Settings


def forget_event(provider: str, tenant: str, customer_id: str, now: datetime) -> LoyaltyEvent:
    """The erasure event of one member (ValueError for an unknown provider or a bad tenant)."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; valid: {', '.join(sorted(PROVIDERS))}")
    if not customer_id or len(customer_id) > 200:
        raise ValueError("customer id must be 1-200 characters")
    return build_event(
        provider=PROVIDERS[provider],
        tenant=tenant,
        customer_id=customer_id,
        event_id=f"{FORGET_PREFIX}{uuid.uuid4()}",
        provider_event_type="forget",
        type=EventType.CUSTOMER_DELETED,
        occurred_at=now,
        context=DecodeContext(tenant=tenant, received_at=now),
        attributes={"requested_by": "operator"},
    )


async def forget(
    settings: Settings, provider: str, tenant: str, customer_id: str, timeout: float = 30
) -> dict[str, Any]:
    """Write the erasure event; what was written (member key, partition, offset)."""
    event = forget_event(provider, tenant, customer_id, utc(datetime.now(UTC)))
    register_schemas(settings)
    value = codec_for(settings).encode(event)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=settings.idempotent_producer,
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        await asyncio.wait_for(producer.start(), timeout)
        md = await asyncio.wait_for(
            producer.send_and_wait(settings.topics.events, value, key=event.member_key.encode()),
            timeout,
        )
    except (TimeoutError, OSError, KafkaError) as exc:
        raise BrokerError(
            f"cannot write the erasure to Kafka at {settings.bootstrap_servers}: {exc}"
        ) from None
    finally:
        await producer.stop()
    return {
        "member_key": event.member_key,
        "event_id": event.event_id,
        "requested_at": json_time(event.occurred_at),
        "topic": md.topic,
        "partition": md.partition,
        "offset": md.offset,
    }
