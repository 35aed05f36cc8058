"""Erasure rules, the erasure marker's format, the member API's token check and freshness
parameters, attribute redaction and the settings behind them (no Kafka needed)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.domain.erasure import Erasure, Reason, erasure_reason, revives
from connector.errors import ConfigError
from connector.forget import forget_event
from connector.models import EventType, LoyaltyEvent, Provider
from connector.settings import Settings
from connector.streams.freshness import Freshness
from connector.streams.state_format import dump_erasure, erasure_key, load_erasure
from connector.streams.views import BearerAuth, freshness_query

T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)


def event(type_: EventType, at: datetime = T0, **attributes: str) -> LoyaltyEvent:
    return LoyaltyEvent(
        event_id="e1",
        provider=Provider.WIX,
        tenant="site-1",
        provider_event_type="x",
        type=type_,
        customer_id="c1",
        member_key="wix:site-1:c1",
        occurred_at=at,
        received_at=at,
        attributes=dict(attributes),
    )


def test_what_erases_a_member() -> None:
    assert erasure_reason(event(EventType.CUSTOMER_DELETED)) is Reason.DELETED
    assert erasure_reason(event(EventType.BALANCE_SNAPSHOT, anonymize_request="true")) is (
        Reason.ANONYMIZE
    )
    assert erasure_reason(event(EventType.BALANCE_SNAPSHOT, anonymize_request="false")) is None
    assert erasure_reason(event(EventType.CUSTOMER_UPDATED)) is None
    forget = forget_event("gameball", "default", "p1", T0)
    assert forget.type is EventType.CUSTOMER_DELETED and forget.member_key == "gameball:default:p1"
    assert erasure_reason(forget) is Reason.FORGET


def test_only_a_later_registration_brings_an_erased_member_back() -> None:
    erased = Erasure(T0, T0, Reason.DELETED, "e0")
    later, earlier = T0 + timedelta(seconds=1), T0 - timedelta(days=1)
    assert revives(erased, event(EventType.CUSTOMER_REGISTERED, later))
    assert not revives(erased, event(EventType.CUSTOMER_REGISTERED, earlier))
    assert not revives(erased, event(EventType.CUSTOMER_REGISTERED, T0))
    for late in (EventType.POINTS_EARNED, EventType.BALANCE_SNAPSHOT, EventType.TIER_CHANGED):
        assert not revives(erased, event(late, later))


def test_the_marker_holds_no_customer_id() -> None:
    marker = Erasure(T0, T0 - timedelta(hours=1), Reason.ANONYMIZE, "evt-9")
    assert load_erasure(dump_erasure(marker)) == marker
    assert load_erasure(None) is None
    key = erasure_key("wix:site-1:customer-42")
    assert b"customer-42" not in key and b"customer-42" not in dump_erasure(marker)
    assert key.startswith(b"\x00") and erasure_key("wix:site-1:customer-43") != key


def test_bearer_tokens() -> None:
    auth = BearerAuth(["a" * 20, "b" * 20])
    assert auth.allows("Bearer " + "a" * 20) and auth.allows("bearer " + "b" * 20)
    for refused in (None, "", "Bearer", "Bearer " + "c" * 20, "Basic " + "a" * 20, "a" * 20):
        assert not auth.allows(refused), refused
    assert BearerAuth([]).allows(None)  # no tokens configured: open
    assert "a" * 20 not in repr(auth)


def test_freshness_parameters() -> None:
    assert freshness_query({}, 10_000) is None
    assert freshness_query({"min_offset": "7"}, 10_000) == (7, 5000)
    assert freshness_query({"min_offset": "7"}, 1000) == (7, 1000)
    assert freshness_query({"min_offset": "7", "wait_ms": "0"}, 10_000) == (7, 0)
    for bad in (
        {"min_offset": "-1"},
        {"min_offset": "x"},
        {"wait_ms": "5"},
        {"min_offset": "1", "wait_ms": "10001"},
    ):
        with pytest.raises(ValueError):
            freshness_query(bad, 10_000)


def test_freshness_waits_for_the_partition_to_apply_the_offset() -> None:
    async def run() -> tuple[bool, bool, bool]:
        f = Freshness()
        f.applied(0, 5)
        at_once = await f.wait(0, 5, 0)
        late = asyncio.ensure_future(f.wait(1, 3, 5))
        await asyncio.sleep(0.01)
        f.applied(0, 100)  # another partition does not wake it
        f.applied(1, 2)
        await asyncio.sleep(0.01)
        assert not late.done()
        f.applied(1, 3)
        reached = await late
        timed_out = await f.wait(1, 10, 0.05)
        return at_once, reached, timed_out

    assert asyncio.run(run()) == (True, True, False)


def test_settings_read_tokens_and_redactions(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# comment\n" + "t" * 16 + "\n\n" + "u" * 30 + "  # second\n")
    tokens.chmod(0o600)
    s = Settings.from_env(
        {
            "CONNECTOR_API_TOKENS_FILE": str(tokens),
            "CONNECTOR_REDACT_ATTRIBUTES": " email, phone ,",
        }
    )
    assert s.api_tokens == ("t" * 16, "u" * 30)
    assert s.redact_attributes == frozenset({"email", "phone"})
    assert "t" * 16 not in repr(s)
    assert Settings.from_env({}).api_tokens == () and not Settings.from_env({}).faust_table_pages
    tokens.write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16") as err:
        Settings.from_env({"CONNECTOR_API_TOKENS_FILE": str(tokens)})
    assert "short" not in str(err.value)
    tokens.write_text("# only a comment\n")
    with pytest.raises(ConfigError, match="holds no token"):
        Settings.from_env({"CONNECTOR_API_TOKENS_FILE": str(tokens)})
    with pytest.raises(ConfigError, match="anonymize_request"):
        Settings.from_env({"CONNECTOR_REDACT_ATTRIBUTES": "email,anonymize_request"})


def test_erasure_removes_every_account_the_default_record_lists() -> None:
    from dataclasses import replace

    from connector.domain.erasure import erasure
    from connector.domain.ledger import MemberState

    deleted = replace(event(EventType.CUSTOMER_DELETED), account_id="camp_b")
    default = replace(MemberState.new(event(EventType.POINTS_EARNED), T0), accounts=("camp_a",))
    keys, marker = erasure(deleted, default, Reason.DELETED, T0 + timedelta(minutes=1))
    assert keys == ["wix:site-1:c1", "wix:site-1/camp_a:c1", "wix:site-1/camp_b:c1"]
    assert marker == Erasure(T0 + timedelta(minutes=1), T0, Reason.DELETED, "e1")
    keys, _ = erasure(event(EventType.CUSTOMER_DELETED), None, Reason.DELETED, T0)
    assert keys == ["wix:site-1:c1"]  # a member never seen: its marker alone keeps it erased
