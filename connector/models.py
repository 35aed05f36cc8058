"""Canonical records mirroring `schemas/*.avsc` (a contract test keeps them equal).

Points are `Decimal` quantized to two places (Avro decimal(18, 2)); timestamps are aware UTC
`datetime`s (Avro timestamp-millis); money is integer minor units plus currency.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

POINTS_SCALE = 2
POINTS_QUANTUM = Decimal(1).scaleb(-POINTS_SCALE)
POINTS_MAX = Decimal(10) ** (18 - POINTS_SCALE)
ZERO = Decimal("0.00")


class Provider(enum.StrEnum):
    GAMEBALL = "GAMEBALL"
    OPEN_LOYALTY = "OPEN_LOYALTY"
    VOUCHERIFY = "VOUCHERIFY"
    WIX = "WIX"
    # A provider without a symbol of its own: an entry-point plugin, or (read by this release)
    # a symbol a later release added; the Avro enum's default. Its key is in the member key.
    OTHER = "OTHER"

    @property
    def key(self) -> str:
        """The lower-case provider key used in URLs, settings, modules and member keys."""
        return self.value.lower()

    @classmethod
    def from_key(cls, key: str) -> Provider:
        return cls[key.upper()]


class EventType(enum.StrEnum):
    POINTS_EARNED = "POINTS_EARNED"
    POINTS_REDEEMED = "POINTS_REDEEMED"
    POINTS_ADJUSTED = "POINTS_ADJUSTED"
    POINTS_EXPIRED = "POINTS_EXPIRED"
    POINTS_PENDING = "POINTS_PENDING"
    POINTS_ACTIVATED = "POINTS_ACTIVATED"
    POINTS_CANCELED = "POINTS_CANCELED"
    POINTS_EXPIRING = "POINTS_EXPIRING"
    BALANCE_SNAPSHOT = "BALANCE_SNAPSHOT"
    TIER_CHANGED = "TIER_CHANGED"
    CUSTOMER_REGISTERED = "CUSTOMER_REGISTERED"
    CUSTOMER_UPDATED = "CUSTOMER_UPDATED"
    CUSTOMER_DEACTIVATED = "CUSTOMER_DEACTIVATED"
    CUSTOMER_DELETED = "CUSTOMER_DELETED"
    ORDER_RECORDED = "ORDER_RECORDED"
    REWARD_REDEEMED = "REWARD_REDEEMED"
    NOTIFICATION = "NOTIFICATION"
    OTHER = "OTHER"


# The event types about one points balance (movements, pending points, expiry warnings and
# snapshots): where a member holds several balances (Open Loyalty wallets, Voucherify loyalty
# cards), a decoder names the account these belong to.
POINTS_TYPES = frozenset(
    {
        EventType.POINTS_EARNED,
        EventType.POINTS_REDEEMED,
        EventType.POINTS_EXPIRED,
        EventType.POINTS_ADJUSTED,
        EventType.POINTS_PENDING,
        EventType.POINTS_ACTIVATED,
        EventType.POINTS_CANCELED,
        EventType.POINTS_EXPIRING,
        EventType.BALANCE_SNAPSHOT,
    }
)


class EntryOrigin(enum.StrEnum):
    REPORTED = "REPORTED"
    DERIVED = "DERIVED"


# A points field is a JSON number or a plain decimal string, nothing else: ASCII digits, an
# optional sign and fraction, an optional exponent. `Decimal()` alone would also take tuples
# (a JSON array `[0, [1, 2, 3], 0]` reads as 123), `"1_000"`, non-ASCII digits and
# surrounding whitespace, none of which any provider sends.
_POINTS_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def points(value: Any) -> Decimal:
    """Exact points from a JSON number or a plain decimal string (`100`, `100.0`, `"25"`).

    Quantized to 2 places. Raises ValueError for anything else (booleans, arrays, objects,
    `"1_000"`, non-ASCII digits, NaN/Infinity), for more than two decimals (rounding points
    silently would make balances wrong), and for magnitudes Avro decimal(18, 2) cannot hold.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a number of points, got {value!r}")
    if isinstance(value, float):
        value = repr(value)  # shortest repr round-trips exactly what the JSON said
    if isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, Decimal):
        d = value
    elif isinstance(value, str) and _POINTS_TEXT.fullmatch(value):
        try:
            d = Decimal(value)
        except (InvalidOperation, ArithmeticError):
            raise ValueError(f"points {value!r} are out of range") from None
    else:
        raise ValueError(f"expected a number of points, got {_short(value)}")
    if not d.is_finite():
        raise ValueError(f"expected a finite number of points, got {value!r}")
    try:
        out_of_range = abs(d) >= POINTS_MAX
    except ArithmeticError:  # decimal.Overflow from "1E+999999999999999999"
        out_of_range = True
    if out_of_range:
        raise ValueError(f"points {_short(value)} are out of range")
    q = d.quantize(POINTS_QUANTUM)
    if q != d:
        raise ValueError(f"points {value!r} have more than {POINTS_SCALE} decimal places")
    return q


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def in_points_range(value: Decimal) -> bool:
    """True if `value` fits Avro decimal(18, 2) (every points field of every record)."""
    return abs(value) < POINTS_MAX


def utc(dt: datetime) -> datetime:
    """Aware UTC datetime truncated to milliseconds (what timestamp-millis can hold)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.replace(microsecond=(dt.microsecond // 1000) * 1000)


# A tenant: from the URL, a tenants file or a provider's own scope (Wix instanceId). It can
# hold no ':', so `{provider}:{tenant}:{customer_id}` names exactly one member whatever the
# customer id holds (provider keys hold no ':' either).
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def member_key(provider: Provider, tenant: str, customer_id: str) -> str:
    """`{provider}:{tenant}:{customer_id}`; unambiguous because the tenant holds no ':'."""
    if not TENANT_RE.match(tenant):
        raise ValueError(f"tenant {tenant[:80]!r} is not valid (1-64 letters, digits, . _ -)")
    return f"{provider.key}:{tenant}:{customer_id}"


# A member's points account: the provider's own name for one balance the member holds (a
# Voucherify loyalty campaign's card, an Open Loyalty wallet type), `default` where a provider
# keeps one account per member. Held to the tenant's alphabet so an account key is unambiguous.
DEFAULT_ACCOUNT = "default"
ACCOUNT_RE = TENANT_RE


def account_key(member_key: str, account_id: str) -> str:
    """The key of one account's records (members table, `loyalty.balances`, `loyalty.tiers`).

    The default account keeps the bare member key, so every record written before accounts
    existed is the same key's older value (compaction supersedes it, readers keep working).
    Another account's key puts the account after the tenant, `{provider}:{tenant}/{account}:
    {customer_id}`: neither the tenant nor the account holds ':' or '/', so the key names one
    account of one member whatever the customer id holds.
    """
    if account_id == DEFAULT_ACCOUNT:
        return member_key
    provider, tenant, customer = member_key.split(":", 2)
    return f"{provider}:{tenant}/{account_id}:{customer}"


def check_account(account_id: str) -> str:
    if not ACCOUNT_RE.match(account_id):
        raise ValueError(
            f"account {account_id[:80]!r} is not valid (1-64 letters, digits, . _ -, first a "
            "letter or digit)"
        )
    return account_id


@dataclass(frozen=True, slots=True)
class Tier:
    id: str | None = None
    name: str | None = None
    order: int | None = None


# Attribute a decoder sets ("true") when the event id is not the provider's but a hash of the
# delivery (and the time may be the receive time): the ledger cannot judge such an event's age
# against its dedupe horizon. See docs/delivery-semantics.md.
SYNTHETIC_ID = "synthetic_event_id"


# A tier with no id, name or order states that the member has NO tier (a Wix account without a
# tier, the base level): unlike an absent tier (`None`: the event says nothing about tiers), it
# clears the member's tier when it is the newest tier statement.
NO_TIER = Tier()


@dataclass(frozen=True, slots=True)
class OrderRef:
    id: str
    amount_minor: int | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class PointCounters:
    earned: Decimal | None = None
    redeemed: Decimal | None = None
    adjusted: Decimal | None = None
    expired: Decimal | None = None
    total: Decimal | None = None


@dataclass(frozen=True, slots=True)
class LoyaltyEvent:
    event_id: str
    provider: Provider
    tenant: str
    provider_event_type: str
    type: EventType
    customer_id: str
    member_key: str
    occurred_at: datetime
    received_at: datetime
    movement_id: str | None = None
    points_delta: Decimal | None = None
    balance: Decimal | None = None
    pending_points: Decimal | None = None
    tier: Tier | None = None
    revision: int | None = None
    order: OrderRef | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    counters: PointCounters | None = None
    account_id: str = DEFAULT_ACCOUNT

    @property
    def account_key(self) -> str:
        return account_key(self.member_key, self.account_id)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    entry_id: str
    member_key: str
    provider: Provider
    tenant: str
    customer_id: str
    event_id: str
    origin: EntryOrigin
    kind: EventType
    points_delta: Decimal
    balance_before: Decimal
    balance_after: Decimal
    occurred_at: datetime
    recorded_at: datetime
    movement_id: str | None = None
    reported_balance: Decimal | None = None
    account_id: str = DEFAULT_ACCOUNT


@dataclass(frozen=True, slots=True)
class MemberBalance:
    member_key: str
    provider: Provider
    tenant: str
    customer_id: str
    balance: Decimal
    computed_balance: Decimal
    pending_points: Decimal
    lifetime_earned: Decimal
    lifetime_redeemed: Decimal
    lifetime_expired: Decimal
    lifetime_adjusted: Decimal
    updated_at: datetime
    as_of: datetime
    last_event_id: str
    events_applied: int
    reported_balance: Decimal | None = None
    drift: Decimal | None = None
    tier: Tier | None = None
    source_offset: int | None = None
    account_id: str = DEFAULT_ACCOUNT


@dataclass(frozen=True, slots=True)
class MemberTier:
    member_key: str
    provider: Provider
    tenant: str
    customer_id: str
    changed_at: datetime
    event_id: str
    tier: Tier | None = None
    previous: Tier | None = None
    account_id: str = DEFAULT_ACCOUNT


@dataclass(frozen=True, slots=True)
class DeadLetter:
    delivery_id: str
    stage: str
    error_class: str
    error_message: str
    raw: bytes
    source_topic: str
    source_partition: int
    source_offset: int
    failed_at: datetime
    provider: str | None = None
    tenant: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


RECORD_TYPES: dict[str, type[Any]] = {
    "LoyaltyEvent": LoyaltyEvent,
    "LedgerEntry": LedgerEntry,
    "MemberBalance": MemberBalance,
    "MemberTier": MemberTier,
    "DeadLetter": DeadLetter,
}
NESTED_TYPES: dict[str, type[Any]] = {
    "Tier": Tier,
    "OrderRef": OrderRef,
    "PointCounters": PointCounters,
}
ENUM_TYPES: dict[str, type[enum.StrEnum]] = {
    "Provider": Provider,
    "EventType": EventType,
    "EntryOrigin": EntryOrigin,
}


def to_dict(record: Any) -> dict[str, Any]:
    """A record as a plain dict of Avro-ready values (enums as symbols, nested records as dicts)."""
    return {name: _plain(getattr(record, name)) for name in _field_names(record.__class__)}


@functools.cache
def _field_names(cls: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


# Values passed through as they are (checked by exact type first: the worker converts several
# records per event, and the generic checks below cost more than the conversion itself).
_PLAIN_TYPES = frozenset({type(None), str, int, float, bool, bytes, Decimal, datetime})


def _plain(value: Any) -> Any:
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def to_json_obj(record: Any) -> dict[str, Any]:
    """A record as JSON-friendly values: enums as symbols, ISO-8601 times, points as numbers."""
    return {k: _jsonable(v) for k, v in to_dict(record).items()}


def json_time(value: datetime) -> str:
    """A time as the JSON outputs write it: UTC, milliseconds, `Z`."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return json_time(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
