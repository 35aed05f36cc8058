"""The `normalize` step: one raw webhook record → canonical LoyaltyEvents, or a dead letter.

Pure (no Kafka): the Faust agent hands in the record's bytes, headers and position and sends
whatever comes out. Nothing raised by a decoder escapes as a crash; it becomes a DeadLetter
with the stage and the error, and the raw topic still holds the bytes for a later replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from connector.avro import AvroCodec
from connector.errors import DecodeError, SchemaError
from connector.models import DeadLetter, LoyaltyEvent, utc
from connector.providers import PROVIDERS, DecodeContext
from connector.settings import TENANT_RE


@dataclass(frozen=True, slots=True)
class RawRecord:
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Normalized:
    events: list[tuple[LoyaltyEvent, bytes]]  # (event, its single-object Avro encoding)
    dead_letter: DeadLetter | None = None


def header_map(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers or ():
        out[str(name).lower()] = (value or b"").decode("utf-8", errors="replace")
    return out


def _received_at(headers: dict[str, str]) -> datetime:
    """When the bridge received the delivery; for a recognised provider retry, when it received
    the first (refused) attempt, so a late retry is ordered where the delivery belongs."""
    raw = headers.get("first-received-at") or headers.get("received-at", "")
    if raw.isdigit():
        try:
            return utc(datetime.fromtimestamp(int(raw) / 1000, tz=UTC))
        except (OverflowError, OSError, ValueError):
            pass
    return utc(datetime.now(UTC))


def dead_letter(
    record: RawRecord, stage: str, exc: BaseException, headers: dict[str, str], now: datetime
) -> DeadLetter:
    delivery = (record.key or b"").decode("utf-8", errors="replace") or headers.get(
        "request-id", f"{record.topic}:{record.partition}:{record.offset}"
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
        provider=headers.get("provider") or None,
        tenant=headers.get("tenant") or None,
        headers=headers,
    )


class UnknownProvider(Exception):
    """The raw record names no provider we know (or none at all)."""


def normalize(record: RawRecord, codec: AvroCodec, now: datetime | None = None) -> Normalized:
    now = now or datetime.now(UTC)
    headers = header_map(record.headers)
    key = headers.get("provider", "")
    provider = PROVIDERS.get(key)
    if provider is None:
        exc = UnknownProvider(
            f"raw record has provider header {key!r}; valid: {', '.join(sorted(PROVIDERS))}"
        )
        return Normalized([], dead_letter(record, "route", exc, headers, now))
    tenant = headers.get("tenant") or None
    if tenant is not None and not TENANT_RE.match(tenant):
        exc = UnknownProvider(f"raw record has an invalid tenant header {tenant!r}")
        return Normalized([], dead_letter(record, "route", exc, headers, now))
    context = DecodeContext(
        tenant=tenant,
        received_at=_received_at(headers),
        # The delivery's identity is the raw record's key: the provider's delivery id (Open
        # Loyalty's signed X-Webhook-Request-Id) or the bridge's request id. A provider retry of
        # a delivery the bridge already wrote names the first copy's key in retry-of.
        delivery=headers.get("retry-of")
        or (record.key or b"").decode("utf-8", "replace")
        or headers.get("request-id")
        or None,
    )
    try:
        events = provider.decode(record.value or b"", headers, context)
    except DecodeError as exc:
        return Normalized([], dead_letter(record, "decode", exc, headers, now))
    except Exception as exc:  # a decoder bug must not stop the stream: dead-letter it
        return Normalized([], dead_letter(record, "decode", exc, headers, now))
    out: list[tuple[LoyaltyEvent, bytes]] = []
    for event in events:
        try:
            out.append((event, codec.encode(event)))
        except SchemaError as exc:
            return Normalized([], dead_letter(record, "encode", exc, headers, now))
    return Normalized(out)
