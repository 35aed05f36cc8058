"""The members table's record format: the bytes stay what they were, old records stay readable."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal

from connector.domain.ledger import MemberState, OrderKey
from connector.models import PointCounters, Provider, Tier
from connector.streams.state_format import (
    COUNTER_KEYS,
    dump_state,
    load_state,
    record_key,
    state_from_json,
)

T = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

MINIMAL = MemberState(
    member_key="wix:default:c1",
    provider=Provider.WIX,
    tenant="default",
    customer_id="c1",
    updated_at=T,
    as_of=T,
    last_event_id="",
)
FULL = MemberState(
    member_key="open_loyalty:acme:c-9",
    provider=Provider.OPEN_LOYALTY,
    tenant="acme",
    customer_id="c-9",
    updated_at=T,
    as_of=datetime(2026, 2, 1, tzinfo=UTC),
    last_event_id="ev-3",
    computed_balance=Decimal("97.50"),
    reported_balance=Decimal("100.00"),
    pending_points=Decimal("5.00"),
    lifetime_earned=Decimal("120.00"),
    lifetime_redeemed=Decimal("2.50"),
    lifetime_expired=Decimal("20.00"),
    lifetime_adjusted=Decimal("-0.01"),
    tier=Tier(id="gold", name="Gold", order=2),
    balance_mark=OrderKey(7, 1767323045678, "ev-3", 1767323046000),
    tier_mark=OrderKey(None, 1767323045000, "ev-2", 0),
    last_counters=PointCounters(
        earned=Decimal("120.00"),
        redeemed=None,
        adjusted=Decimal("0"),
        expired=Decimal("20.00"),
        total=Decimal("100.00"),
    ),
    events_applied=3,
    source_offset=42,
    recent_event_ids=("ev-1", "ev-2", "ev-3"),
    recent_movement_ids=("m-1", "m-\u00fc"),
    recent_event_ms=(1, 2, 3),
    horizon_ms=1767000000000,
    open_pending=(("m-9", Decimal("5.00")),),
    chain=("a|b", "c"),
    chain_base=Decimal("1.50"),
    chain_floor=OrderKey(None, 5, "x", 6),
    account_id="card-1",
    accounts=("card-2", "w:x"),
)

# Written by the code before the format had its own module (connector/domain/ledger.py's
# MemberState.to_json + streams/app.py's dump_state): the table's bytes must not change.
MINIMAL_BYTES = (
    b'{"v": 2, "member_key": "wix:default:c1", "provider": "WIX", "tenant": "default",'
    b' "customer_id": "c1", "computed_balance": "0.00", "reported_balance": null, "pen'
    b'ding_points": "0.00", "lifetime_earned": "0.00", "lifetime_redeemed": "0.00", "l'
    b'ifetime_expired": "0.00", "lifetime_adjusted": "0.00", "tier": null, "balance_ma'
    b'rk": null, "tier_mark": null, "last_counters": null, "updated_at": 1767323045678'
    b', "as_of": 1767323045678, "last_event_id": "", "events_applied": 0, "source_offs'
    b'et": null, "recent_event_ids": [], "recent_movement_ids": [], "recent_event_ms":'
    b" []}"
)
FULL_BYTES = (
    b'{"v": 2, "member_key": "open_loyalty:acme:c-9", "provider": "OPEN_LOYALTY", "ten'
    b'ant": "acme", "customer_id": "c-9", "computed_balance": "97.50", "reported_balan'
    b'ce": "100.00", "pending_points": "5.00", "lifetime_earned": "120.00", "lifetime_'
    b'redeemed": "2.50", "lifetime_expired": "20.00", "lifetime_adjusted": "-0.01", "t'
    b'ier": {"id": "gold", "name": "Gold", "order": 2}, "balance_mark": [7, 1767323045'
    b'678, "ev-3", 1767323046000], "tier_mark": [null, 1767323045000, "ev-2", 0], "las'
    b't_counters": {"earned": "120.00", "redeemed": null, "adjusted": "0", "expired": '
    b'"20.00", "total": "100.00"}, "updated_at": 1767323045678, "as_of": 1769904000000'
    b', "last_event_id": "ev-3", "events_applied": 3, "source_offset": 42, "recent_eve'
    b'nt_ids": ["ev-1", "ev-2", "ev-3"], "recent_movement_ids": ["m-1", "m-\\u00fc"], "'
    b'recent_event_ms": [1, 2, 3], "account_id": "card-1", "accounts": ["card-2", "w:x'
    b'"], "horizon_ms": 1767000000000, "open_pending": [["m-9", "5.00"]], "chain": ["a'
    b'|b", "c"], "chain_base": "1.50", "chain_floor": [null, 5, "x", 6]}'
)


def test_records_are_written_byte_for_byte_as_before() -> None:
    assert dump_state(MINIMAL) == MINIMAL_BYTES
    assert dump_state(FULL) == FULL_BYTES


def test_records_read_back_to_the_same_state() -> None:
    assert load_state(MINIMAL_BYTES) == MINIMAL
    assert load_state(FULL_BYTES) == FULL


def test_no_value_is_an_unknown_member() -> None:
    assert load_state(None) is None
    assert load_state(b"") is None


def test_the_key_is_the_events_topic_key_bytes() -> None:
    assert record_key("wix:default:c1") == b"wix:default:c1"
    assert record_key("wix:default:ü") == b"wix:default:\xc3\xbc"  # UTF-8, not JSON


def test_a_version_1_record_reads_with_defaults() -> None:
    # No "v", no optional keys, order marks without a receive time, numbers as JSON numbers.
    old = {
        "member_key": "gameball:default:p1",
        "provider": "GAMEBALL",
        "tenant": "default",
        "customer_id": "p1",
        "reported_balance": 12.5,
        "tier": {"id": "t1"},
        "balance_mark": [None, 1000, "e1"],
        "updated_at": 1000,
        "as_of": 2000,
    }
    state = load_state(json.dumps(old).encode())
    assert state == MemberState(
        member_key="gameball:default:p1",
        provider=Provider.GAMEBALL,
        tenant="default",
        customer_id="p1",
        updated_at=datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
        as_of=datetime(1970, 1, 1, 0, 0, 2, tzinfo=UTC),
        last_event_id="",
        reported_balance=Decimal("12.5"),
        tier=Tier(id="t1", name=None, order=None),
        balance_mark=OrderKey(None, 1000, "e1", 0),
    )
    assert state_from_json(old) == state


def test_counter_keys_are_the_point_counters_fields() -> None:
    # A new PointCounters field must be added to the stored format on purpose.
    assert COUNTER_KEYS == tuple(f.name for f in dataclasses.fields(PointCounters))
