"""The `normalize` step: one raw webhook record → canonical LoyaltyEvents, or a dead letter.

Pure (no Kafka): the Faust agent hands in the record's bytes, headers and position and sends
whatever comes out. Nothing raised by a decoder escapes as a crash; it becomes a DeadLetter
with the stage and the error, and the raw topic still holds the bytes for a later replay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime

from connector import raw
from connector.avro import AvroCodec
from connector.errors import DecodeError, InvalidTenantError, SchemaError, UnknownProviderError
from connector.models import TENANT_RE, DeadLetter, LoyaltyEvent, utc
from connector.providers import PROVIDERS, DecodeContext
from connector.raw import ConsumedRecord, header_map

__all__ = ["ConsumedRecord", "Normalized", "RawRecord", "dead_letter", "header_map", "normalize"]


# Kept for callers of the old name (records of any topic, not only raw ones).
RawRecord = ConsumedRecord


@dataclass(frozen=True, slots=True)
class Normalized:
    events: list[tuple[LoyaltyEvent, bytes]]  # (event, its single-object Avro encoding)
    dead_letter: DeadLetter | None = None


def dead_letter(
    record: ConsumedRecord, stage: str, exc: BaseException, headers: dict[str, str], now: datetime
) -> DeadLetter:
    delivery = (
        headers.get(raw.DELIVERY_ID)
        or (record.key or b"").decode("utf-8", errors="replace")
        or headers.get(raw.REQUEST_ID, f"{record.topic}:{record.partition}:{record.offset}")
    )
    return DeadLetter(
        delivery_id=delivery,
        stage=stage,
        error_class=type(exc).__name__,
        error_message=str(exc)[:2000] or type(exc).__name__,
        raw=record.value or b"",
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        failed_at=utc(now),
        provider=headers.get(raw.PROVIDER) or None,
        tenant=headers.get(raw.TENANT) or None,
        headers=headers,
    )


def normalize(
    record: ConsumedRecord,
    codec: AvroCodec,
    now: datetime | None = None,
    *,
    redact: frozenset[str] = frozenset(),
) -> Normalized:
    """The events of one raw webhook (or its dead letter). `redact`: attribute names
    (CONNECTOR_REDACT_ATTRIBUTES, e.g. email, phone) left out of every event."""
    now = now or datetime.now(UTC)
    headers = header_map(record.headers)
    key = headers.get(raw.PROVIDER, "")
    provider = PROVIDERS.get(key)
    if provider is None:
        exc: Exception = UnknownProviderError(
            f"raw record has provider header {key!r}; valid: {', '.join(sorted(PROVIDERS))}"
        )
        return Normalized([], dead_letter(record, "route", exc, headers, now))
    tenant = headers.get(raw.TENANT) or None
    if tenant is not None and not TENANT_RE.match(tenant):
        exc = InvalidTenantError(f"raw record has an invalid tenant header {tenant!r}")
        return Normalized([], dead_letter(record, "route", exc, headers, now))
    context = DecodeContext(
        tenant=tenant,
        received_at=raw.received_at(headers),
        # The delivery's identity (connector/raw.py): the provider's delivery id (Open Loyalty's
        # signed X-Webhook-Request-Id) or the bridge's request id; a provider retry of a
        # delivery the bridge already wrote names the first copy's key in retry-of.
        delivery=raw.delivery_identity(record.key, headers),
    )
    try:
        events = provider.decode(record.value or b"", headers, context)
    except DecodeError as exc:
        return Normalized([], dead_letter(record, "decode", exc, headers, now))
    except Exception as exc:  # a decoder bug must not stop the stream: dead-letter it
        return Normalized([], dead_letter(record, "decode", exc, headers, now))
    out: list[tuple[LoyaltyEvent, bytes]] = []
    for event in events:
        if redact and not redact.isdisjoint(event.attributes):
            kept = {k: v for k, v in event.attributes.items() if k not in redact}
            event = dataclasses.replace(event, attributes=kept)
        try:
            out.append((event, codec.encode(event)))
        except SchemaError as exc:
            return Normalized([], dead_letter(record, "encode", exc, headers, now))
    return Normalized(out)
