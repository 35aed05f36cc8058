"""The member ledger's rules: dedupe, ordering, derived movements, drift, pending, tiers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.domain.ledger import (
    PENDING_KINDS,
    MemberState,
    Outcome,
    apply,
)
from connector.models import (
    NO_TIER,
    ZERO,
    EntryOrigin,
    EventType,
    LedgerEntry,
    LoyaltyEvent,
    MemberTier,
    PointCounters,
    Provider,
    Tier,
    member_key,
    points,
)
from connector.streams.state_format import state_from_json, state_to_json

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 2, 1, 12, 0, 0, tzinfo=UTC)
GOLD = Tier(id="gold", name="Gold", order=2)
SILVER = Tier(id="silver", name="Silver", order=1)

E = EventType


def ev(
    event_id: str,
    type: EventType = E.POINTS_EARNED,
    *,
    provider: Provider = Provider.OPEN_LOYALTY,
    customer: str = "c1",
    delta: Any = None,
    balance: Any = None,
    movement: str | None = None,
    at: float = 0,
    revision: int | None = None,
    tier: Tier | None = None,
    pending: Any = None,
    counters: PointCounters | None = None,
) -> LoyaltyEvent:
    """A canonical event for customer `customer`, `at` seconds after T0."""
    return LoyaltyEvent(
        event_id=event_id,
        provider=provider,
        tenant="default",
        provider_event_type="test",
        type=type,
        customer_id=customer,
        member_key=member_key(provider, "default", customer),
        occurred_at=T0 + timedelta(seconds=at),
        received_at=NOW,
        movement_id=movement,
        points_delta=None if delta is None else points(delta),
        balance=None if balance is None else points(balance),
        pending_points=None if pending is None else points(pending),
        tier=tier,
        revision=revision,
        counters=counters,
    )


def wix(
    event_id: str,
    revision: int,
    *,
    balance: Any,
    earned: Any = 0,
    redeemed: Any = 0,
    expired: Any = 0,
    adjusted: Any = 0,
    at: float = 0,
    tier: Tier | None = None,
) -> LoyaltyEvent:
    return ev(
        event_id,
        E.BALANCE_SNAPSHOT,
        provider=Provider.WIX,
        balance=balance,
        revision=revision,
        at=at,
        tier=tier,
        counters=PointCounters(
            earned=points(earned),
            redeemed=points(redeemed),
            expired=points(expired),
            adjusted=points(adjusted),
        ),
    )


def gameball(
    event_id: str, *, balance: Any, at: float, pending: Any = None, tier: Tier | None = None
) -> LoyaltyEvent:
    return ev(
        event_id,
        E.BALANCE_SNAPSHOT,
        provider=Provider.GAMEBALL,
        balance=balance,
        at=at,
        pending=pending,
        tier=tier,
    )


def run(
    events: Iterable[LoyaltyEvent], state: MemberState | None = None, **kw: Any
) -> tuple[MemberState, list[Outcome]]:
    outcomes = []
    for i, event in enumerate(events):
        out = apply(state, event, now=NOW + timedelta(seconds=i), offset=i, **kw)
        outcomes.append(out)
        state = out.state
    assert state is not None
    return state, outcomes


def entries_of(outcomes: list[Outcome]) -> list[LedgerEntry]:
    return [e for o in outcomes for e in o.entries]


def D(v: Any) -> Decimal:
    return points(v)


def brief(
    entries: list[LedgerEntry],
) -> list[tuple[str, str, EventType, Decimal, Decimal, Decimal]]:
    """(entry_id, origin, kind, delta, before, after) for exact comparisons."""
    return [
        (e.entry_id, e.origin.value, e.kind, e.points_delta, e.balance_before, e.balance_after)
        for e in entries
    ]


# ---------------------------------------------------------------------------------------------
# rule 1: event-id dedupe


def test_redelivered_event_changes_nothing() -> None:
    first = apply(None, ev("e1", delta=100, balance=100), now=NOW, offset=7)
    again = apply(first.state, ev("e1", delta=100, balance=100), now=NOW + timedelta(1), offset=9)
    assert again.duplicate
    assert again.state is first.state
    assert again.entries == []
    assert again.tier_change is None
    assert not again.balance_changed
    assert again.state.computed_balance == D(100)
    assert again.state.events_applied == 1
    assert again.state.source_offset == 7


# ---------------------------------------------------------------------------------------------
# rule 2: movement dedupe


@pytest.mark.parametrize("transfer_first", [True, False], ids=["transfer-first", "amount-first"])
def test_open_loyalty_transfer_and_amount_changed_count_the_movement_once(
    transfer_first: bool,
) -> None:
    transfer = ev("ol-transfer", E.POINTS_EARNED, delta=100, movement="pt-1", at=1)
    amount = ev("ol-amount", E.POINTS_EARNED, delta=100, balance=125, movement="pt-1", at=2)
    state, outcomes = run([transfer, amount] if transfer_first else [amount, transfer])

    assert state.computed_balance == D(100)
    assert state.lifetime_earned == D(100)
    assert state.reported_balance == D(125)
    balance = state.to_balance()
    assert balance.balance == D(125)  # the provider's word wins for display
    assert balance.drift == D(25)  # 25 points the provider had before we started listening
    assert len(entries_of(outcomes)) == 1
    assert state.events_applied == 2
    assert set(state.recent_event_ids) == {"ol-transfer", "ol-amount"}
    assert state.recent_movement_ids == ("pt-1",)
    # the second webhook still delivered the reported balance when it came second
    assert outcomes[1].balance_changed is (transfer_first is True)


def test_voucherify_project_and_distribution_webhooks_count_one_redemption() -> None:
    earn = ev("vf-earn", delta=500, balance=500, movement="txn-1", at=1)
    project = ev("vf-project", E.POINTS_REDEEMED, delta=-70, balance=430, movement="txn-2", at=2)
    distribution = ev("vf-dist", E.POINTS_REDEEMED, delta=-70, balance=430, movement="txn-2", at=2)
    state, outcomes = run([earn, project, distribution])

    assert state.computed_balance == D(430)
    assert state.lifetime_redeemed == D(70)
    assert state.to_balance().drift == ZERO
    assert brief(entries_of(outcomes)) == [
        ("vf-earn:POINTS_EARNED", "REPORTED", E.POINTS_EARNED, D(500), ZERO, D(500)),
        ("vf-project:POINTS_REDEEMED", "REPORTED", E.POINTS_REDEEMED, D(-70), D(500), D(430)),
    ]
    assert outcomes[2].entries == []
    assert not outcomes[2].balance_changed


def test_event_mentioning_a_movement_without_a_delta_does_not_suppress_it() -> None:
    notice = ev("note", E.CUSTOMER_UPDATED, movement="pt-9", at=1)
    real = ev("real", E.POINTS_EARNED, delta=40, movement="pt-9", at=2)
    state, _ = run([notice, real])
    assert state.computed_balance == D(40)


def test_pending_and_activation_of_one_movement_are_separate_phases() -> None:
    pending = ev("p", E.POINTS_PENDING, delta=30, movement="pt-5", at=1)
    activated = ev("a", E.POINTS_ACTIVATED, delta=30, movement="pt-5", at=2)
    state, _ = run([pending, activated])
    assert state.pending_points == ZERO
    assert state.computed_balance == D(30)


# ---------------------------------------------------------------------------------------------
# rule 3: deltas


def test_ledger_entry_carries_the_event_and_the_balance_move() -> None:
    out = apply(None, ev("e1", delta="12.50", balance=20, movement="m1", at=3), now=NOW)
    (entry,) = out.entries
    assert entry == LedgerEntry(
        entry_id="e1:POINTS_EARNED",
        member_key="open_loyalty:default:c1",
        provider=Provider.OPEN_LOYALTY,
        tenant="default",
        customer_id="c1",
        event_id="e1",
        origin=EntryOrigin.REPORTED,
        kind=E.POINTS_EARNED,
        points_delta=D("12.50"),
        balance_before=ZERO,
        balance_after=D("12.50"),
        occurred_at=T0 + timedelta(seconds=3),
        recorded_at=NOW,
        movement_id="m1",
        reported_balance=D(20),
    )


def test_each_delta_type_moves_balance_and_lifetime_counters() -> None:
    state, outcomes = run(
        [
            ev("earn", E.POINTS_EARNED, delta=100),
            ev("redeem", E.POINTS_REDEEMED, delta=-30),
            ev("expire", E.POINTS_EXPIRED, delta=-10),
            ev("adjust", E.POINTS_ADJUSTED, delta=-5),
            ev("order", E.ORDER_RECORDED, delta=7),  # any other type: an adjustment
        ]
    )
    assert state.computed_balance == D(62)
    assert (
        state.lifetime_earned,
        state.lifetime_redeemed,
        state.lifetime_expired,
        state.lifetime_adjusted,
    ) == (D(100), D(30), D(10), D(2))
    assert [e.entry_id for e in entries_of(outcomes)] == [
        "earn:POINTS_EARNED",
        "redeem:POINTS_REDEEMED",
        "expire:POINTS_EXPIRED",
        "adjust:POINTS_ADJUSTED",
        "order:POINTS_ADJUSTED",
    ]
    assert state.reported_balance is None
    assert state.to_balance().balance == D(62)
    assert state.to_balance().drift is None


def test_the_event_type_fixes_the_sign_of_a_delta() -> None:
    state, outcomes = run(
        [
            ev("earn", E.POINTS_EARNED, delta=-20),  # a decoder that forgot the sign convention
            ev("redeem", E.POINTS_REDEEMED, delta=50),
            ev("expire", E.POINTS_EXPIRED, delta=5),
        ]
    )
    assert [e.points_delta for e in entries_of(outcomes)] == [D(20), D(-50), D(-5)]
    assert state.computed_balance == D(-35)
    assert (state.lifetime_earned, state.lifetime_redeemed, state.lifetime_expired) == (
        D(20),
        D(50),
        D(5),
    )


def test_expiring_notice_and_zero_delta_move_nothing() -> None:
    state, outcomes = run(
        [
            ev("warn", E.POINTS_EXPIRING, delta=-40, movement="m1"),
            ev("note", E.NOTIFICATION, delta=10),
            ev("zero", E.POINTS_EARNED, delta=0),
            ev("real", E.POINTS_EXPIRED, delta=-40, movement="m1"),
        ]
    )
    assert brief(entries_of(outcomes)) == [
        ("real:POINTS_EXPIRED", "REPORTED", E.POINTS_EXPIRED, D(-40), ZERO, D(-40))
    ]
    assert state.events_applied == 4


def test_pending_then_activated_then_canceled() -> None:
    state, outcomes = run(
        [
            ev("pend", E.POINTS_PENDING, delta=100, movement="o1", at=1),
            ev("act", E.POINTS_ACTIVATED, delta=60, movement="o1", at=2),
            ev("cancel", E.POINTS_CANCELED, delta=-40, movement="o1", at=3),
        ]
    )
    assert brief(entries_of(outcomes)) == [
        # pending kinds carry the pending change; the balance does not move
        ("pend:POINTS_PENDING", "REPORTED", E.POINTS_PENDING, D(100), ZERO, ZERO),
        ("act:POINTS_ACTIVATED", "REPORTED", E.POINTS_ACTIVATED, D(60), ZERO, D(60)),
        ("cancel:POINTS_CANCELED", "REPORTED", E.POINTS_CANCELED, D(-40), D(60), D(60)),
    ]
    assert state.pending_points == ZERO
    assert state.computed_balance == D(60)
    assert state.lifetime_earned == D(60)
    assert [o.balance_changed for o in outcomes] == [True, True, True]


def test_activation_overtaking_its_pending_event_ends_the_same() -> None:
    events = [
        ev("pend", E.POINTS_PENDING, delta=100, at=1),
        ev("act", E.POINTS_ACTIVATED, delta=100, at=2),
    ]
    in_order, _ = run(events)
    reversed_, outcomes = run(events[::-1])
    assert outcomes[0].state.pending_points == D(-100)  # not clamped: it must commute
    assert (reversed_.pending_points, reversed_.computed_balance) == (ZERO, D(100))
    assert (in_order.pending_points, in_order.computed_balance) == (ZERO, D(100))


# ---------------------------------------------------------------------------------------------
# rule 4: reported balance ordering and drift


def test_drift_shows_a_movement_we_never_received() -> None:
    state, _ = run(
        [
            ev("e1", delta=100, balance=100, at=1),
            # the +50 in between was never delivered
            ev("e3", delta=10, balance=160, at=3),
        ]
    )
    balance = state.to_balance()
    assert (balance.balance, balance.computed_balance, balance.reported_balance) == (
        D(160),
        D(110),
        D(160),
    )
    assert balance.drift == D(50)


def test_stale_reported_balance_is_ignored_but_its_delta_counts() -> None:
    state, outcomes = run(
        [
            ev("new", delta=10, balance=110, at=5),
            ev("old", delta=100, balance=100, at=1),  # late delivery
        ]
    )
    assert state.reported_balance == D(110)
    assert state.computed_balance == D(110)
    assert state.to_balance().drift == ZERO
    assert outcomes[1].entries[0].reported_balance == D(100)  # what that event said


def test_same_time_snapshots_are_ordered_by_event_id_whatever_the_arrival() -> None:
    a = ev("a", E.CUSTOMER_UPDATED, balance=10, at=1)
    b = ev("b", E.CUSTOMER_UPDATED, balance=20, at=1)
    assert run([a, b])[0].reported_balance == D(20)
    assert run([b, a])[0].reported_balance == D(20)


# ---------------------------------------------------------------------------------------------
# rule 5: derived movements


def test_out_of_order_wix_snapshots_keep_the_newest_revision() -> None:
    rev3 = wix("w3", 3, balance=300, earned=300, at=10)
    rev2 = wix("w2", 2, balance=200, earned=200, at=20)  # later clock, older revision
    state, outcomes = run([rev3, rev2])
    assert state.reported_balance == D(300)
    assert state.computed_balance == D(300)
    assert state.lifetime_earned == D(300)
    assert outcomes[1].entries == []
    assert not outcomes[1].balance_changed
    assert state.balance_mark is not None and state.balance_mark.revision == 3

    in_order, _ = run([rev2, rev3])
    assert seen(in_order) == seen(state)


def test_wix_counters_classify_derived_movements() -> None:
    first = wix("w1", 1, balance=100, earned=100)
    # +50 earned, +30 redeemed, +10 expired, -5 adjusted = +5, but the balance moved by +2:
    # the 3 points the counters do not explain become a residual adjustment.
    second = wix("w2", 2, balance=102, earned=150, redeemed=30, expired=10, adjusted=-5)
    state, outcomes = run([first, second])

    assert brief(outcomes[0].entries) == [
        ("w1:POINTS_EARNED", "DERIVED", E.POINTS_EARNED, D(100), ZERO, D(100)),
    ]
    assert brief(outcomes[1].entries) == [
        ("w2:POINTS_EARNED", "DERIVED", E.POINTS_EARNED, D(50), D(100), D(150)),
        ("w2:POINTS_REDEEMED", "DERIVED", E.POINTS_REDEEMED, D(-30), D(150), D(120)),
        ("w2:POINTS_EXPIRED", "DERIVED", E.POINTS_EXPIRED, D(-10), D(120), D(110)),
        ("w2:POINTS_ADJUSTED", "DERIVED", E.POINTS_ADJUSTED, D(-5), D(110), D(105)),
        ("w2:POINTS_ADJUSTED:residual", "DERIVED", E.POINTS_ADJUSTED, D(-3), D(105), D(102)),
    ]
    assert all(e.reported_balance == D(102) for e in outcomes[1].entries)
    assert state.computed_balance == D(102)
    assert state.to_balance().drift == ZERO
    assert (
        state.lifetime_earned,
        state.lifetime_redeemed,
        state.lifetime_expired,
        state.lifetime_adjusted,
    ) == (D(150), D(30), D(10), D(-8))
    assert state.last_counters == PointCounters(
        earned=D(150), redeemed=D(30), expired=D(10), adjusted=D(-5)
    )


def test_first_wix_snapshot_is_classified_against_zero_counters() -> None:
    out = apply(None, wix("w7", 7, balance=55, earned=80, redeemed=20, expired=5), now=NOW)
    assert brief(out.entries) == [
        ("w7:POINTS_EARNED", "DERIVED", E.POINTS_EARNED, D(80), ZERO, D(80)),
        ("w7:POINTS_REDEEMED", "DERIVED", E.POINTS_REDEEMED, D(-20), D(80), D(60)),
        ("w7:POINTS_EXPIRED", "DERIVED", E.POINTS_EXPIRED, D(-5), D(60), D(55)),
    ]


def test_unchanged_snapshot_derives_nothing() -> None:
    state, outcomes = run(
        [wix("w1", 1, balance=100, earned=100), wix("w2", 2, balance=100, earned=100)]
    )
    assert outcomes[1].entries == []
    assert not outcomes[1].balance_changed
    assert state.balance_mark is not None and state.balance_mark.revision == 2


def test_gameball_profiles_derive_earned_and_redeemed_from_the_balance_change() -> None:
    state, outcomes = run(
        [
            gameball("g1", balance=80, at=1, pending=20),
            gameball("g2", balance=50, at=2, pending=0),
            gameball("g3", balance=50, at=3, tier=GOLD),
        ]
    )
    assert brief(entries_of(outcomes)) == [
        ("g1:POINTS_EARNED", "DERIVED", E.POINTS_EARNED, D(80), ZERO, D(80)),
        ("g2:POINTS_REDEEMED", "DERIVED", E.POINTS_REDEEMED, D(-30), D(80), D(50)),
    ]
    assert [o.state.pending_points for o in outcomes] == [D(20), ZERO, ZERO]
    assert (state.computed_balance, state.reported_balance, state.tier) == (D(50), D(50), GOLD)
    assert (state.lifetime_earned, state.lifetime_redeemed) == (D(80), D(30))


def test_a_late_gameball_profile_takes_its_place_in_the_history() -> None:
    # The provider's history is 999 -> 80 -> 50 -> 50; g0 is read last. Its balance and pending
    # are older than what we hold, so they change nothing, but the movements on both sides of it
    # are booked: 0 -> 999 earned, and g1's +80 becomes -919 (a fall: redeemed).
    state, outcomes = run(
        [
            gameball("g1", balance=80, at=1, pending=20),
            gameball("g2", balance=50, at=2, pending=0),
            gameball("g3", balance=50, at=3, tier=GOLD),
            gameball("g0", balance=999, at=0, pending=999),
        ]
    )
    assert brief(outcomes[-1].entries) == [
        ("g0:POINTS_EARNED", "DERIVED", E.POINTS_EARNED, D(999), D(50), D(1049)),
        ("g1:correction:g0:POINTS_EARNED", "DERIVED", E.POINTS_EARNED, D(-80), D(1049), D(969)),
        ("g1:correction:g0:POINTS_REDEEMED", "DERIVED", E.POINTS_REDEEMED, D(-919), D(969), D(50)),
    ]
    assert (state.computed_balance, state.reported_balance, state.pending_points) == (50, 50, 0)
    assert (state.lifetime_earned, state.lifetime_redeemed) == (D(999), D(949))


def test_twin_wix_webhooks_of_one_revision_count_once() -> None:
    # points_updated and account_updated both describe revision 4
    a = wix("points-updated", 4, balance=40, earned=40, at=1)
    b = wix("account-updated", 4, balance=40, earned=40, at=1, tier=SILVER)
    for order in ([a, b], [b, a]):
        state, _ = run(order)
        assert (state.computed_balance, state.lifetime_earned, state.tier) == (D(40), D(40), SILVER)


# ---------------------------------------------------------------------------------------------
# rule 6: tiers


def test_tier_changes_emit_member_tier_and_stale_or_same_tiers_do_not() -> None:
    state, outcomes = run(
        [
            ev("t1", E.TIER_CHANGED, tier=GOLD, at=10),
            ev("t0", E.TIER_CHANGED, tier=SILVER, at=5),  # stale
            ev("t2", E.TIER_CHANGED, tier=GOLD, at=11),  # same tier
            ev("t3", E.TIER_CHANGED, tier=None, at=12),  # left the tier
        ]
    )
    assert outcomes[0].tier_change == MemberTier(
        member_key="open_loyalty:default:c1",
        provider=Provider.OPEN_LOYALTY,
        tenant="default",
        customer_id="c1",
        changed_at=T0 + timedelta(seconds=10),
        event_id="t1",
        tier=GOLD,
        previous=None,
    )
    assert outcomes[1].tier_change is None and outcomes[1].state.tier == GOLD
    assert outcomes[2].tier_change is None
    assert not outcomes[2].balance_changed
    change = outcomes[3].tier_change
    assert change is not None and (change.previous, change.tier) == (GOLD, None)
    assert state.tier is None
    assert outcomes[3].balance_changed  # tier is part of MemberBalance


def test_older_different_tier_cannot_win_after_a_newer_same_tier() -> None:
    events = [
        ev("a", E.TIER_CHANGED, tier=SILVER, at=1),
        ev("b", E.TIER_CHANGED, tier=GOLD, at=2),
        ev("c", E.TIER_CHANGED, tier=SILVER, at=3),
    ]
    for order in ([events[0], events[2], events[1]], [events[2], events[1], events[0]]):
        assert run(order)[0].tier == SILVER


def test_tier_on_a_snapshot_follows_its_revision() -> None:
    state, outcomes = run(
        [
            wix("w5", 5, balance=10, earned=10, tier=GOLD),
            wix("w4", 4, balance=5, earned=5, tier=SILVER),
        ]
    )
    assert state.tier == GOLD
    assert outcomes[1].tier_change is None


# ---------------------------------------------------------------------------------------------
# rule 7: bookkeeping, and apply's contract


def test_every_applied_event_updates_freshness() -> None:
    first = apply(None, ev("e1", E.CUSTOMER_REGISTERED, at=50), now=NOW, offset=3)
    assert first.balance_changed  # a new member appears in the balances table
    later = NOW + timedelta(minutes=1)
    second = apply(first.state, ev("e2", E.CUSTOMER_UPDATED, at=10), now=later, offset=4)
    s = second.state
    assert not second.balance_changed
    assert (s.events_applied, s.last_event_id, s.source_offset) == (2, "e2", 4)
    assert s.updated_at == T0 + timedelta(seconds=50)  # the max, not the last
    assert s.as_of == later
    assert s.recent_event_ids == ("e1", "e2")


def test_apply_does_not_change_its_input() -> None:
    state = apply(None, ev("e1", delta=5), now=NOW).state
    snapshot = state_to_json(state)
    apply(state, ev("e2", delta=7, balance=12, tier=GOLD), now=NOW)
    assert state_to_json(state) == snapshot


def test_event_for_another_member_is_refused() -> None:
    state = apply(None, ev("e1", customer="c1"), now=NOW).state
    with pytest.raises(ValueError, match="applied to their own account"):
        apply(state, ev("e2", customer="c2"), now=NOW)


def test_memory_bounds_the_recent_id_sets() -> None:
    events = [ev(f"e{i}", delta=1, movement=f"m{i}", at=i) for i in range(10)]
    state, _ = run(events, memory=3)
    assert state.recent_event_ids == ("e7", "e8", "e9")
    # movement keys: MOVEMENT_KEYS_PER_EVENT (2) per remembered event id
    assert state.recent_movement_ids == ("m4", "m5", "m6", "m7", "m8", "m9")
    # inside the window a redelivery is caught by its id
    assert apply(state, events[9], now=NOW, memory=3).duplicate
    assert not apply(state, events[9], now=NOW, memory=3).beyond_horizon
    # beyond it, by its provider time: as old as an event the memory forgot (the horizon)
    assert state.horizon_ms is not None
    replayed = apply(state, events[0], now=NOW, memory=3)
    assert replayed.duplicate and replayed.beyond_horizon
    assert replayed.state.computed_balance == D(10)
    # an unremembered event newer than the horizon is new, whatever its id looks like
    late = apply(state, ev("e-new", delta=1, movement="m-new", at=8.5), now=NOW, memory=3)
    assert not late.duplicate and late.state.computed_balance == D(11)
    # ids and clocks the decoder made up cannot judge that: such an event is applied
    synthetic = replace(events[0], attributes={"synthetic_event_id": "true"})
    assert apply(state, synthetic, now=NOW, memory=3).state.computed_balance == D(11)


def test_memory_must_be_positive() -> None:
    with pytest.raises(ValueError, match="memory"):
        apply(None, ev("e1"), now=NOW, memory=0)


def test_state_round_trips_through_json() -> None:
    state, _ = run(
        [
            wix("w1", 1, balance=100, earned=100, at=1, tier=GOLD),
            wix("w2", 2, balance="97.50", earned=100, redeemed="2.50", at=2),
        ]
    )
    data = json.loads(json.dumps(state_to_json(state)))
    assert data["computed_balance"] == "97.50"
    assert isinstance(data["updated_at"], int)
    assert data["tier"] == {"id": "gold", "name": "Gold", "order": 2}
    assert state_from_json(data) == state


# ---------------------------------------------------------------------------------------------
# properties: arrival order and redelivery do not change what users see

cents = st.integers(-50_000, 50_000).map(lambda c: Decimal(c).scaleb(-2))
positive_cents = st.integers(0, 20_000).map(lambda c: Decimal(c).scaleb(-2))
tiers = st.sampled_from([None, GOLD, SILVER, Tier(id="bronze")])
DELTA_TYPES = [
    E.POINTS_EARNED,
    E.POINTS_REDEEMED,
    E.POINTS_EXPIRED,
    E.POINTS_ADJUSTED,
    E.POINTS_PENDING,
    E.POINTS_ACTIVATED,
    E.POINTS_CANCELED,
    E.ORDER_RECORDED,
    E.POINTS_EXPIRING,
]


@st.composite
def delta_streams(draw: st.DrawFn) -> list[LoyaltyEvent]:
    """Open Loyalty / Voucherify-shaped: deltas (some reported twice), balances, tier events."""
    events: list[LoyaltyEvent] = []
    n = 0
    for m in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(DELTA_TYPES))
        delta = draw(cents)
        movement = draw(st.one_of(st.none(), st.just(f"mv{m}")))
        copies = draw(st.integers(1, 3)) if movement else 1
        for _ in range(copies):
            balance = draw(st.one_of(st.none(), cents))
            at = draw(st.integers(0, 15))
            events.append(ev(f"e{n}", kind, delta=delta, balance=balance, movement=movement, at=at))
            n += 1
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from([E.TIER_CHANGED, E.CUSTOMER_UPDATED]))
        tier = draw(tiers)
        balance = draw(st.one_of(st.none(), cents))
        events.append(ev(f"e{n}", kind, tier=tier, balance=balance, at=draw(st.integers(0, 15))))
        n += 1
    return events


@st.composite
def wix_streams(draw: st.DrawFn) -> list[LoyaltyEvent]:
    """Wix-shaped: successive account revisions with monotonic cumulative counters."""
    earned = redeemed = expired = adjusted = noise = ZERO
    events: list[LoyaltyEvent] = []
    for rev in range(1, draw(st.integers(1, 8)) + 1):
        earned += draw(positive_cents)
        redeemed += draw(positive_cents)
        expired += draw(positive_cents)
        adjusted += draw(cents)
        noise += draw(st.one_of(st.just(ZERO), cents))  # what the counters do not explain
        balance = earned - redeemed - expired + adjusted + noise
        tier = draw(tiers)
        at = draw(st.integers(0, 30))  # Wix clocks may disagree with revisions
        for twin in range(draw(st.integers(1, 2))):
            events.append(
                wix(
                    f"w{rev}.{twin}",
                    rev,
                    balance=balance,
                    earned=earned,
                    redeemed=redeemed,
                    expired=expired,
                    adjusted=adjusted,
                    at=at + twin,
                    tier=tier if twin == 0 else None,
                )
            )
    return events


@st.composite
def gameball_streams(draw: st.DrawFn) -> list[LoyaltyEvent]:
    """Gameball-shaped: balance-only profile snapshots ordered by time, with pending and tier.

    A tenant's profiles either always carry pending points (v4) or never (v3).
    """
    with_pending = draw(st.booleans())
    return [
        gameball(
            f"g{i}",
            balance=draw(positive_cents),
            pending=draw(positive_cents) if with_pending else None,
            tier=draw(tiers),
            at=draw(st.integers(0, 20)),
        )
        for i in range(draw(st.integers(1, 8)))
    ]


def shuffled_with_redeliveries(data: st.DataObject, events: list[LoyaltyEvent]) -> list[Any]:
    arrival = list(data.draw(st.permutations(events)))
    for i in data.draw(st.lists(st.integers(0, len(events) - 1), max_size=len(events))):
        arrival.insert(data.draw(st.integers(0, len(arrival))), events[i])
    return arrival


def seen(state: MemberState, *, lifetimes: bool = True) -> tuple[Any, ...]:
    b = state.to_balance()
    values: tuple[Any, ...] = (
        b.balance,
        b.computed_balance,
        b.reported_balance,
        b.pending_points,
        b.drift,
        b.tier,
        b.events_applied,
        b.updated_at,
    )
    if lifetimes:
        values += (b.lifetime_earned, b.lifetime_redeemed, b.lifetime_expired, b.lifetime_adjusted)
    return values


def assert_entries_explain_balances(state: MemberState, outcomes: list[Outcome]) -> None:
    entries = entries_of(outcomes)
    moving = [e for e in entries if e.kind not in PENDING_KINDS]
    assert sum((e.points_delta for e in moving), ZERO) == state.computed_balance
    assert len({e.entry_id for e in entries}) == len(entries)
    for e in entries:
        assert e.balance_after - e.balance_before == (
            ZERO if e.kind in PENDING_KINDS else e.points_delta
        )
    assert all(o.entries == [] and not o.balance_changed for o in outcomes if o.duplicate)
    lifetimes = (
        state.lifetime_earned - state.lifetime_redeemed - state.lifetime_expired
    ) + state.lifetime_adjusted
    assert lifetimes == state.computed_balance
    assert min(state.lifetime_earned, state.lifetime_redeemed, state.lifetime_expired) >= 0


PROPERTY = settings(deadline=None, max_examples=200)


@PROPERTY
@given(events=delta_streams(), data=st.data())
def test_delta_streams_end_the_same_in_any_order_with_redeliveries(
    events: list[LoyaltyEvent], data: st.DataObject
) -> None:
    expected, _ = run(events)
    state, outcomes = run(shuffled_with_redeliveries(data, events))
    assert seen(state) == seen(expected)
    assert state.events_applied == len(events)
    assert_entries_explain_balances(state, outcomes)
    pending = [e for e in entries_of(outcomes) if e.kind in PENDING_KINDS]
    activated = [e for e in entries_of(outcomes) if e.kind is E.POINTS_ACTIVATED]
    assert state.pending_points == sum((e.points_delta for e in pending), ZERO) - sum(
        (e.points_delta for e in activated), ZERO
    )


@PROPERTY
@given(events=wix_streams(), data=st.data())
def test_wix_snapshots_end_the_same_in_any_order_with_redeliveries(
    events: list[LoyaltyEvent], data: st.DataObject
) -> None:
    expected, _ = run(events)
    state, outcomes = run(shuffled_with_redeliveries(data, events))
    assert seen(state) == seen(expected)
    newest = max(events, key=lambda e: (e.revision, e.occurred_at, e.event_id))
    assert state.reported_balance == state.computed_balance == newest.balance
    assert newest.counters is not None
    assert state.lifetime_earned == newest.counters.earned
    assert_entries_explain_balances(state, outcomes)
    assert all(e.origin is EntryOrigin.DERIVED for e in entries_of(outcomes))


@PROPERTY
@given(events=gameball_streams(), data=st.data())
def test_gameball_snapshots_end_at_the_newest_profile_in_any_order(
    events: list[LoyaltyEvent], data: st.DataObject
) -> None:
    # Without counters a skipped stale profile hides how points moved in between, so lifetime
    # earned/redeemed may differ by order; balances, pending and tier may not.
    expected, _ = run(events)
    state, outcomes = run(shuffled_with_redeliveries(data, events))
    assert seen(state, lifetimes=False) == seen(expected, lifetimes=False)
    newest = max(events, key=lambda e: (e.occurred_at, e.event_id))
    assert state.computed_balance == newest.balance
    assert_entries_explain_balances(state, outcomes)


@PROPERTY
@given(events=st.one_of(delta_streams(), wix_streams(), gameball_streams()))
def test_every_intermediate_state_round_trips_through_json(events: list[LoyaltyEvent]) -> None:
    _, outcomes = run(events)
    for out in outcomes:
        data = json.loads(json.dumps(state_to_json(out.state)))
        assert state_from_json(data) == out.state


def test_gameball_total_only_counters_classify_by_sign() -> None:
    """Gameball snapshots carry only `total`: a rise is earned, a fall redeemed, never adjusted."""
    from connector.domain.ledger import derive_movements

    moves, _ = derive_movements(
        Decimal("100"),
        Decimal("150"),
        PointCounters(total=Decimal("120")),
        PointCounters(total=Decimal("150")),
    )
    assert [(m.kind, m.balance_delta) for m, _ in moves] == [
        (EventType.POINTS_EARNED, Decimal("50"))
    ]
    moves, _ = derive_movements(
        Decimal("150"),
        Decimal("110"),
        PointCounters(total=Decimal("150")),
        PointCounters(total=Decimal("150")),
    )
    assert [(m.kind, m.balance_delta) for m, _ in moves] == [
        (EventType.POINTS_REDEEMED, Decimal("-40"))
    ]


# ---------------------------------------------------------------------------------------------
# pending phases, gaps, NO_TIER, range


@pytest.mark.parametrize("order", ["pending-first", "activation-first"])
def test_open_loyalty_pending_transfer_is_released_by_its_activation(order: str) -> None:
    # account.points_transfer (state pending) and the amount change that activates it name the
    # same pointsTransferId; pending must not stay up forever, in either order
    pending = ev("pend", E.POINTS_PENDING, delta=40, movement="pt-9", at=1)
    activation = ev("act", E.POINTS_EARNED, delta=40, balance=40, movement="pt-9", at=2)
    events = [pending, activation] if order == "pending-first" else [activation, pending]
    state, _ = run(events)
    assert (state.pending_points, state.computed_balance, state.balance) == (ZERO, D(40), D(40))


@pytest.mark.parametrize("order", ["pending-first", "cancel-first"])
def test_an_ended_transfer_releases_what_it_had_pending(order: str) -> None:
    pending = ev("pend", E.POINTS_PENDING, delta=40, movement="pt-9", at=1)
    ended = ev("end", E.POINTS_CANCELED, movement="pt-9", at=2)  # no amount: "whatever is left"
    state, _ = run([pending, ended] if order == "pending-first" else [ended, pending])
    assert (state.pending_points, state.computed_balance) == (ZERO, ZERO)
    # an ended transfer that was never pending moves nothing
    other, _ = run([ev("e", E.POINTS_EARNED, delta=5, movement="pt-1"), ended])
    assert (other.pending_points, other.computed_balance) == (ZERO, D(5))


@pytest.mark.parametrize("order", ["activated-first", "accrual-first"])
def test_activation_and_accrual_of_one_transaction_release_pending_once(order: str) -> None:
    pending = ev("pa", E.POINTS_PENDING, delta=30, movement="lopp-1", at=1)
    activated = ev("act", E.POINTS_ACTIVATED, delta=30, balance=30, movement="vtx-1", at=2)
    accrual = ev("acc", E.POINTS_EARNED, delta=30, balance=30, movement="vtx-1", at=2)
    second = [activated, accrual] if order == "activated-first" else [accrual, activated]
    for events in ([pending, *second], [*second, pending], [second[0], pending, second[1]]):
        state, _ = run(events)
        assert (state.pending_points, state.computed_balance) == (ZERO, D(30)), events


def test_a_gap_is_sized_against_the_balance_before_it_in_provider_order() -> None:
    earn = ev("earn", E.POINTS_EARNED, delta=50, balance=50, at=1)
    expiry = ev("exp", E.POINTS_ADJUSTED, balance=20, at=2)  # amount_change 0: size unknown
    spend = ev("spend", E.POINTS_REDEEMED, delta=-5, balance=15, at=3)
    in_order, outcomes = run([earn, expiry, spend])
    assert brief(outcomes[1].entries) == [
        ("exp:POINTS_ADJUSTED", "DERIVED", E.POINTS_ADJUSTED, D(-30), D(50), D(20))
    ]
    late, late_outcomes = run([spend, expiry, earn])
    for state in (in_order, late):
        assert (state.computed_balance, state.balance, state.lifetime_adjusted) == (
            D(15),
            D(15),
            D(-30),
        )
    # the late earn corrects the gap it belongs before, with an entry that names both
    assert [e.entry_id for e in late_outcomes[2].entries] == [
        "earn:POINTS_EARNED",
        "exp:correction:earn",
    ]


def test_no_tier_clears_the_tier_when_newest() -> None:
    gold = wix("w1", 1, balance=10, earned=10, tier=GOLD)
    none = wix("w2", 2, balance=10, earned=10, tier=NO_TIER)
    state, outcomes = run([gold, none])
    assert state.tier is None
    assert outcomes[1].tier_change is not None and outcomes[1].tier_change.tier is None
    stale, _ = run([none, gold])
    assert stale.tier is None  # the older gold statement does not win


def test_a_snapshot_without_revision_never_overrides_a_revisioned_one() -> None:
    rev = wix("w5", 5, balance=50, earned=50, at=1)
    norev = replace(wix("wx", 1, balance=999, earned=999, at=99), revision=None)
    for events in ([rev, norev], [norev, rev]):
        assert run(events)[0].reported_balance == D(50)


def test_an_overflowing_event_is_refused_and_the_state_is_kept() -> None:
    from connector.domain.ledger import LedgerOverflow

    first = apply(None, ev("e1", delta="9999999999999999.99"), now=NOW)
    with pytest.raises(LedgerOverflow, match="computed_balance.*decimal\\(18, 2\\)"):
        apply(first.state, ev("e2", delta=1), now=NOW)
    assert first.state.computed_balance == D("9999999999999999.99")


def test_a_record_from_before_the_horizon_knew_no_times_skips_nothing_on_a_guess() -> None:
    events = [ev(f"e{i}", delta=1, movement=f"m{i}", at=100 + i) for i in range(3)]
    state, _ = run(events, memory=3)
    legacy = replace(state, recent_event_ms=(), horizon_ms=None)  # written by version 1
    after = apply(legacy, ev("e3", delta=1, movement="m3", at=200), now=NOW, memory=3).state
    assert after.horizon_ms is None
    late = apply(after, ev("late", delta=1, movement="m-late", at=50), now=NOW, memory=3)
    assert not late.duplicate and late.state.computed_balance == D(5)


# ---------------------------------------------------------------------------------------------
# the dedupe horizon of movement keys


def vf(event_id: str, type: EventType = E.POINTS_EARNED, **kw: Any) -> LoyaltyEvent:
    """A Voucherify event: the provider's own event id and clock (judged by the horizon)."""
    return ev(event_id, type, provider=Provider.VOUCHERIFY, **kw)


def test_a_twin_after_a_pending_movement_used_up_the_movement_keys_counts_once() -> None:
    # An accrual reported by two webhooks (distribution + project, one vtx id), the second late;
    # meanwhile a pending movement is added and activated: three movement keys (#pending, the
    # bare id, #released) for two events. With movement keys bounded like event ids, the
    # accrual's key was evicted while its event id (and so the horizon) still stood: the late
    # twin was booked again, silently (Voucherify reports no balance here: not even drift).
    memory = 3
    first = vf("evt-1", delta=100, movement="vtx_1", at=1)
    state, _ = run(
        [
            first,
            vf("evt-2", E.POINTS_PENDING, delta=40, movement="lopp_2", at=2),
            vf("evt-3", E.POINTS_ACTIVATED, delta=40, movement="lopp_2", at=3),
        ],
        memory=memory,
    )
    assert state.recent_event_ids == ("evt-1", "evt-2", "evt-3")  # nothing forgotten yet
    assert state.horizon_ms is None
    twin = apply(state, vf("evt-1-project", delta=100, movement="vtx_1", at=1), now=NOW, memory=3)
    assert not twin.duplicate  # a new event: its reported values apply
    assert twin.entries == []  # but the movement counts once
    assert twin.state.computed_balance == D(140)
    assert twin.state.lifetime_earned == D(140)
    assert twin.state.pending_points == ZERO


def test_a_twin_of_a_forgotten_movement_is_beyond_the_horizon_and_names_it() -> None:
    from connector.domain.ledger import MOVEMENT_KEYS_PER_EVENT

    memory = 3
    events = [vf(f"evt-{i}", delta=10, movement=f"vtx_{i}", at=i) for i in range(10)]
    state, _ = run(events, memory=memory)
    assert len(state.recent_movement_ids) == memory * MOVEMENT_KEYS_PER_EVENT
    assert "vtx_0" not in state.recent_movement_ids
    assert state.horizon_ms is not None
    # the other webhook about vtx_0, after its key was evicted: as old as what was forgotten
    twin = apply(state, vf("evt-0-project", delta=10, movement="vtx_0", at=0), now=NOW, memory=3)
    assert twin.duplicate and twin.beyond_horizon
    assert twin.forgotten_movement == "vtx_0"
    assert twin.state is state and twin.entries == []
    # a redelivery whose event id was forgotten but whose movement key is still held: beyond
    # the horizon, and no movement was at stake (the key would have caught it)
    again = apply(state, events[5], now=NOW, memory=memory)
    assert again.beyond_horizon and again.forgotten_movement is None
    # an event beyond the horizon that names no movement: nothing to name
    bare = apply(state, vf("evt-x", delta=10, at=0), now=NOW, memory=memory)
    assert bare.beyond_horizon and bare.forgotten_movement is None
    # within the memory a twin is caught by its key, and nothing is beyond anything
    held = apply(state, vf("evt-9-project", delta=10, movement="vtx_9", at=9), now=NOW, memory=3)
    assert not held.beyond_horizon and held.entries == []
    assert state.computed_balance == D(100)


def test_the_phase_a_forgotten_event_reports_decides_what_is_named() -> None:
    from connector.domain.ledger import forgotten_movement

    state, _ = run([vf("evt-1", delta=10, movement="vtx_1", at=1)])
    held = replace(state, recent_movement_ids=("m#pending", "a", "c#canceled", "g"))
    cases = [
        (vf("p", E.POINTS_PENDING, delta=5, movement="m"), None),  # m#pending held
        (vf("p2", E.POINTS_PENDING, delta=5, movement="a"), "a"),  # a#pending is not
        (vf("x", E.POINTS_ACTIVATED, delta=5, movement="a"), "a"),  # a#released is not
        (vf("c", E.POINTS_CANCELED, delta=5, movement="c"), None),
        (vf("c2", E.POINTS_CANCELED, movement="c"), None),  # a cancel naming no amount
        (vf("c3", E.POINTS_CANCELED, movement="a"), "a"),
        (vf("g", E.POINTS_EXPIRED, balance=3, movement="g"), None),  # a gap, by its bare id
        (vf("g2", E.POINTS_EXPIRED, balance=3, movement="h"), "h"),
        (vf("r", E.POINTS_REDEEMED, delta=-5, movement="a"), None),
        (vf("i", E.POINTS_EXPIRING, delta=5, movement="z"), None),  # moves nothing
        (vf("t", E.TIER_CHANGED, tier=GOLD, movement="z"), None),
    ]
    for event, named in cases:
        assert forgotten_movement(held, event) == named, event.event_id


@st.composite
def movement_phases(draw: st.DrawFn) -> list[LoyaltyEvent]:
    """Every phase of a few movements, with and without amounts (gaps, cancels naming none)."""
    kinds = [
        E.POINTS_EARNED,
        E.POINTS_REDEEMED,
        E.POINTS_EXPIRED,
        E.POINTS_PENDING,
        E.POINTS_ACTIVATED,
        E.POINTS_CANCELED,
    ]
    events = []
    for n in range(draw(st.integers(1, 24))):
        kind = draw(st.sampled_from(kinds))
        delta = draw(st.one_of(st.none(), cents))
        balance = draw(st.one_of(st.none(), cents))
        movement = draw(st.one_of(st.none(), st.sampled_from(["mv0", "mv1", "mv2", "mv3"])))
        at = draw(st.integers(0, 30))
        events.append(ev(f"e{n}", kind, delta=delta, balance=balance, movement=movement, at=at))
    return events


@PROPERTY
@given(
    events=st.one_of(delta_streams(), movement_phases()),
    data=st.data(),
    memory=st.integers(1, 4),
)
def test_a_movement_key_is_forgotten_only_after_the_event_that_booked_it(
    events: list[LoyaltyEvent], data: st.DataObject, memory: int
) -> None:
    # Why the event-id horizon covers movement keys: a key outlives the id of the event that
    # added it, so a twin of a forgotten movement is as old as a forgotten event (or its id or
    # clock were made up, and nothing can judge it).
    from connector.domain.ledger import MOVEMENT_KEYS_PER_EVENT

    state: MemberState | None = None
    added_by: dict[str, str] = {}
    for i, event in enumerate(shuffled_with_redeliveries(data, events)):
        before = () if state is None else state.recent_movement_ids
        out = apply(state, event, now=NOW + timedelta(seconds=i), memory=memory)
        state = out.state
        new = set(state.recent_movement_ids) - set(before)
        assert len(new) <= MOVEMENT_KEYS_PER_EVENT
        for key in new:
            added_by[key] = event.event_id
        assert len(state.recent_movement_ids) <= memory * MOVEMENT_KEYS_PER_EVENT
        for key, event_id in added_by.items():
            if key not in state.recent_movement_ids:
                assert event_id not in state.recent_event_ids, (key, event_id)
