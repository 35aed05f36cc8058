"""The members table's record format: the key and value bytes of one `MemberState` record.

Key: the record's table key (`MemberState.key`, a member key or an account key) as UTF-8.
Value: JSON text, Decimals as strings, datetimes as epoch-ms ints, the fields most members never
use written only when set. Records written by older code (no `v`, missing optional keys,
version 1 order marks without a receive time) read as they always did.

An erased member's records are deleted; what stays is its `Erasure` marker under
`erasure_key(member_key)`: a key that holds a SHA-256 of the member key, not the customer id, and
a value with only the time and reason of the erasure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from connector.domain.erasure import Erasure, Reason
from connector.domain.ledger import MemberState, OrderKey, from_ms, to_ms
from connector.models import DEFAULT_ACCOUNT, PointCounters, Provider, Tier

STATE_VERSION = 2
# `last_counters` keys, in stored order (the PointCounters fields: a test keeps them equal, so a
# new counter is a deliberate format change, not a field silently dropped on write).
COUNTER_KEYS = ("earned", "redeemed", "adjusted", "expired", "total")


def record_key(key: str) -> bytes:
    """The table key of the record `key` (`MemberState.key`): the events topic's key bytes."""
    return key.encode()


ERASURE_PREFIX = b"\x00erased:"  # no member or account key starts with NUL


def erasure_key(member_key: str) -> bytes:
    """The table key of a member's erasure marker."""
    return ERASURE_PREFIX + hashlib.sha256(member_key.encode()).hexdigest().encode()


def dump_erasure(erasure: Erasure) -> bytes:
    return json.dumps(
        {
            "erased_at": to_ms(erasure.erased_at),
            "occurred_at": to_ms(erasure.occurred_at),
            "reason": erasure.reason.value,
            "event_id": erasure.event_id,
        }
    ).encode()


def load_erasure(stored: bytes | None) -> Erasure | None:
    if not stored:
        return None
    d = json.loads(stored)
    return Erasure(
        erased_at=from_ms(d["erased_at"]),
        occurred_at=from_ms(d["occurred_at"]),
        reason=Reason(d["reason"]),
        event_id=d["event_id"],
    )


def dump_state(state: MemberState) -> bytes:
    """The table value of `state`."""
    return json.dumps(state_to_json(state)).encode()


def load_state(stored: bytes | None) -> MemberState | None:
    """A table value as a MemberState; None for an unknown member (no value)."""
    return state_from_json(json.loads(stored)) if stored else None


def state_to_json(state: MemberState) -> dict[str, Any]:
    """The JSON object of a table value (the key order is part of the stored bytes)."""
    return {
        "v": STATE_VERSION,
        "member_key": state.member_key,
        "provider": state.provider.value,
        "tenant": state.tenant,
        "customer_id": state.customer_id,
        "computed_balance": str(state.computed_balance),
        "reported_balance": _dec_out(state.reported_balance),
        "pending_points": str(state.pending_points),
        "lifetime_earned": str(state.lifetime_earned),
        "lifetime_redeemed": str(state.lifetime_redeemed),
        "lifetime_expired": str(state.lifetime_expired),
        "lifetime_adjusted": str(state.lifetime_adjusted),
        "tier": _tier_out(state.tier),
        "balance_mark": _mark_out(state.balance_mark),
        "tier_mark": _mark_out(state.tier_mark),
        "last_counters": _counters_out(state.last_counters),
        "updated_at": to_ms(state.updated_at),
        "as_of": to_ms(state.as_of),
        "last_event_id": state.last_event_id,
        "events_applied": state.events_applied,
        "source_offset": state.source_offset,
        "recent_event_ids": list(state.recent_event_ids),
        "recent_movement_ids": list(state.recent_movement_ids),
        "recent_event_ms": list(state.recent_event_ms),
    } | _optional_json(state)


def _optional_json(state: MemberState) -> dict[str, Any]:
    """The fields most members never use, written only when set (smaller table records)."""
    out: dict[str, Any] = {}
    if state.account_id != DEFAULT_ACCOUNT:
        out["account_id"] = state.account_id
    if state.accounts:
        out["accounts"] = list(state.accounts)
    if state.horizon_ms is not None:
        out["horizon_ms"] = state.horizon_ms
    if state.open_pending:
        out["open_pending"] = [[m, str(v)] for m, v in state.open_pending]
    if state.chain or state.chain_floor is not None or state.chain_base:
        out["chain"] = list(state.chain)
        out["chain_base"] = str(state.chain_base)
        out["chain_floor"] = _mark_out(state.chain_floor)
    return out


def state_from_json(d: Mapping[str, Any]) -> MemberState:
    """Inverse of `state_to_json`; optional keys may be missing (records written by older code)."""
    return MemberState(
        member_key=d["member_key"],
        provider=Provider(d["provider"]),
        tenant=d["tenant"],
        customer_id=d["customer_id"],
        computed_balance=Decimal(d.get("computed_balance", "0.00")),
        reported_balance=_dec_in(d.get("reported_balance")),
        pending_points=Decimal(d.get("pending_points", "0.00")),
        lifetime_earned=Decimal(d.get("lifetime_earned", "0.00")),
        lifetime_redeemed=Decimal(d.get("lifetime_redeemed", "0.00")),
        lifetime_expired=Decimal(d.get("lifetime_expired", "0.00")),
        lifetime_adjusted=Decimal(d.get("lifetime_adjusted", "0.00")),
        tier=_tier_in(d.get("tier")),
        balance_mark=_mark_in(d.get("balance_mark")),
        tier_mark=_mark_in(d.get("tier_mark")),
        last_counters=_counters_in(d.get("last_counters")),
        updated_at=from_ms(int(d["updated_at"])),
        as_of=from_ms(int(d["as_of"])),
        last_event_id=d.get("last_event_id", ""),
        events_applied=int(d.get("events_applied", 0)),
        source_offset=d.get("source_offset"),
        recent_event_ids=tuple(d.get("recent_event_ids", ())),
        recent_movement_ids=tuple(d.get("recent_movement_ids", ())),
        recent_event_ms=tuple(d.get("recent_event_ms", ())),  # JSON ints
        horizon_ms=None if d.get("horizon_ms") is None else int(d["horizon_ms"]),
        open_pending=tuple((str(m), Decimal(v)) for m, v in d.get("open_pending", ())),
        chain=tuple(d.get("chain", ())),
        chain_base=Decimal(d.get("chain_base", "0.00")),
        chain_floor=_mark_in(d.get("chain_floor")),
        account_id=d.get("account_id", DEFAULT_ACCOUNT),
        accounts=tuple(d.get("accounts", ())),
    )


def _dec_out(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def _dec_in(v: Any) -> Decimal | None:
    return None if v is None else Decimal(str(v))


def _tier_out(t: Tier | None) -> dict[str, Any] | None:
    return None if t is None else {"id": t.id, "name": t.name, "order": t.order}


def _tier_in(d: Mapping[str, Any] | None) -> Tier | None:
    return None if d is None else Tier(id=d.get("id"), name=d.get("name"), order=d.get("order"))


def _mark_out(m: OrderKey | None) -> list[Any] | None:
    return None if m is None else [m.revision, m.occurred_ms, m.event_id, m.received_ms]


def _mark_in(v: Iterable[Any] | None) -> OrderKey | None:
    if v is None:
        return None
    revision, occurred_ms, event_id, *rest = v  # version 1 marks had no receive time
    return OrderKey(
        None if revision is None else int(revision),
        int(occurred_ms),
        str(event_id),
        int(rest[0]) if rest else 0,
    )


def _counters_out(c: PointCounters | None) -> dict[str, str | None] | None:
    return None if c is None else {f: _dec_out(getattr(c, f)) for f in COUNTER_KEYS}


def _counters_in(d: Mapping[str, Any] | None) -> PointCounters | None:
    if d is None:
        return None
    return PointCounters(**{f: _dec_in(d.get(f)) for f in COUNTER_KEYS})
