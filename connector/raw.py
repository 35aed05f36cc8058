"""The raw webhook record: one module owns its contract.

`loyalty.webhooks.raw` is the system of record. The bridge writes it (`raw_headers`), the worker
reads it (`header_map`, `received_at`, `delivery_identity`), and `replay`, the benchmarks and
the tests build records that must look exactly like the bridge's. Every Kafka header name and
meaning is here and nowhere else:

| header | value |
|---|---|
| `provider` | the provider key of the URL (`/webhooks/{provider}`) |
| `tenant` | the URL's tenant, empty for none |
| `received-at` | when the bridge received the request, epoch milliseconds |
| `request-id` | the bridge's id of the request (also the key when the provider sends none) |
| `content-type` | the request's `Content-Type` |
| `verified` | `true`, or `false` when the provider is configured as unverified |
| `first-received-at` | for a recognised provider retry: when the first (refused) attempt came |
| `retry-of` | for a recognised provider retry: the key of the first attempt's record |
| `delivery-id` | optional: the delivery's identity when the key is another (one hop) |
| the provider's `kept_headers` | lower-cased, verbatim (signatures, delivery ids; never secrets) |

The record's key is the provider's delivery id, else the request id; its value is the exact
request body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from connector.models import utc

PROVIDER = "provider"
TENANT = "tenant"
RECEIVED_AT = "received-at"
REQUEST_ID = "request-id"
CONTENT_TYPE = "content-type"
VERIFIED = "verified"
FIRST_RECEIVED_AT = "first-received-at"
RETRY_OF = "retry-of"
DELIVERY_ID = "delivery-id"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    """A record read from any of the connector's topics, with where it was read."""

    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    topic: str
    partition: int
    offset: int


def raw_headers(
    *,
    provider: str,
    tenant: str | None,
    received_ms: int,
    request_id: str,
    content_type: str,
    verified: bool,
    kept: Iterable[tuple[str, str]] = (),
    first_received_ms: int | None = None,
    retry_of: str | None = None,
) -> Headers:
    """The Kafka headers of a raw record, as the bridge writes them."""
    headers: Headers = [
        (PROVIDER, provider.encode()),
        (TENANT, (tenant or "").encode()),
        (RECEIVED_AT, str(received_ms).encode()),
        (REQUEST_ID, request_id.encode()),
        (CONTENT_TYPE, content_type.encode()),
        (VERIFIED, b"true" if verified else b"false"),
    ]
    for name, value in kept:
        headers.append((name.lower(), value.encode("utf-8", "replace")))
    if first_received_ms is not None:
        headers.append((FIRST_RECEIVED_AT, str(first_received_ms).encode()))
    if retry_of is not None:
        headers.append((RETRY_OF, retry_of.encode()))
    return headers


def header_map(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """A record's headers by lower-case name, as text."""
    out: dict[str, str] = {}
    for name, value in headers or ():
        out[str(name).lower()] = (value or b"").decode("utf-8", errors="replace")
    return out


def received_at(headers: Mapping[str, str]) -> datetime:
    """When the bridge received the delivery; for a recognised provider retry, when it received
    the first (refused) attempt, so a late retry is ordered where the delivery belongs."""
    raw = headers.get(FIRST_RECEIVED_AT) or headers.get(RECEIVED_AT, "")
    if raw.isdigit():
        try:
            return utc(datetime.fromtimestamp(int(raw) / 1000, tz=UTC))
        except (OverflowError, OSError, ValueError):
            pass
    return utc(datetime.now(UTC))


def delivery_identity(key: bytes | None, headers: Mapping[str, str]) -> str | None:
    """The delivery a raw record is a copy of: the first attempt's key for a recognised retry,
    else its `delivery-id` header (a record keyed by something else), else the record's key
    (the provider's delivery id or the bridge's request id)."""
    return (
        headers.get(RETRY_OF)
        or headers.get(DELIVERY_ID)
        or (key or b"").decode("utf-8", "replace")
        or headers.get(REQUEST_ID)
        or None
    )
