"""End to end on real Apache Kafka: signed webhooks of all four providers → bridge → worker →
every output topic, the member query over HTTP and the `members` / `tail` commands.

The numbers are computed by hand below (not by the ledger code). Each member's webhooks are
sent in phases and the test waits for a phase to be applied before sending the next, so a
member's arrival order at the ledger is the order written here (the raw topic is keyed by
delivery, so two deliveries in flight together may overtake each other). Phases mix in
redeliveries, two webhooks about one movement and stale snapshots.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.models import (
    DEFAULT_ACCOUNT,
    DeadLetter,
    EntryOrigin,
    EventType,
    LedgerEntry,
    MemberBalance,
    Tier,
    account_key,
)
from tests.integration.harness import (
    Delivery,
    Harness,
    Record,
    gb_profile,
    latest_by_key,
    ol_level_changed,
    ol_points_changed,
    ol_points_transfer,
    sign,
    vf_points_added,
    vf_tier_joined,
    vf_transaction_created,
    wix_account,
)

D = Decimal
EARNED, REDEEMED, ADJUSTED = (
    EventType.POINTS_EARNED,
    EventType.POINTS_REDEEMED,
    EventType.POINTS_ADJUSTED,
)
REPORTED, DERIVED = EntryOrigin.REPORTED, EntryOrigin.DERIVED

OL = ("open_loyalty", "default", "ol-anna")
VF = ("voucherify", "default", "cust_vera")
GB = ("gameball", "default", "gb-gus")
WIX = ("wix", "site-1", "wix-wendy")  # Wix: the tenant is the instanceId
MEMBERS = (OL, VF, GB, WIX)
WIX_POINTS = "wix.loyalty.v1.account_points_updated"
WIX_ACCOUNT = "wix.loyalty.v1.account_updated"


def key(member: tuple[str, str, str]) -> str:
    return ":".join(member)


# Each member's points account: Voucherify's is its loyalty campaign (the harness's card is in
# `camp_loyalty`); the others keep one account per member.
ACCOUNTS = {VF: "camp_loyalty"}


def akey(member: tuple[str, str, str]) -> str:
    """The member's account's key on loyalty.balances and loyalty.tiers."""
    return account_key(key(member), ACCOUNTS.get(member, DEFAULT_ACCOUNT))


def phases() -> list[dict[tuple[str, str, str], list[Delivery]]]:
    """Per phase, each member's deliveries (one Delivery listed twice = sent twice)."""
    ol, vf, gb, wix = OL[2], VF[2], GB[2], WIX[2]
    ol_redeem = sign(
        "open_loyalty", ol_points_changed(ol, "T2", 30, "subtract", 80, "2024-05-01T10:05:00Z")
    )
    vf_redeem = vf_transaction_created(
        vf, "evvou_2", "vtx_2", "POINTS_REDEMPTION", -20, 30, "2024-05-01T10:05:00Z"
    )
    gb_first = gb_profile(
        gb, "2024-05-01T10:00:00Z", activated=50, pending=10, tier="basic", tier_order=1
    )
    wix_rev1 = sign(
        "wix",
        wix_account(
            WIX_POINTS,
            "site-1",
            wix,
            "wx-1",
            "2024-05-01T10:00:00Z",
            revision=1,
            balance=100,
            earned=100,
        ),
    )
    return [
        {
            # OL: a transfer of 100 by the system (an earn), movement T1
            OL: [sign("open_loyalty", ol_points_transfer(ol, "T1", 100, "2024-05-01T10:00:00Z"))],
            # VF: the distribution webhook of transaction vtx_1 (+50, balance 50)
            VF: [
                sign(
                    "voucherify",
                    vf_points_added(
                        vf, "evcus_1", "vtx_1", "POINTS_ACCRUAL", 50, 50, "2024-05-01T10:00:00Z"
                    ),
                )
            ],
            # GB: first profile: 50 activated (+10 pending), tier basic
            GB: [sign("gameball", gb_first)],
            # Wix: revision 1, earned 100
            WIX: [wix_rev1],
        },
        {
            # OL: the balance webhook of the same transfer T1: no second movement; Open
            # Loyalty reports 110 (a movement of 10 we never saw: drift)
            OL: [
                sign(
                    "open_loyalty",
                    ol_points_changed(ol, "T1", 100, "add", 110, "2024-05-01T10:00:01Z"),
                )
            ],
            # VF: the project webhook of the same transaction vtx_1: counted once
            VF: [
                sign(
                    "voucherify",
                    vf_transaction_created(
                        vf, "evvou_1", "vtx_1", "POINTS_ACCRUAL", 50, 50, "2024-05-01T10:00:01Z"
                    ),
                )
            ],
            # GB: newest profile (10:20): 30 activated, nothing pending, tier silver
            GB: [
                sign(
                    "gameball",
                    gb_profile(
                        gb,
                        "2024-05-01T10:20:00Z",
                        activated=30,
                        pending=0,
                        tier="silver",
                        tier_order=2,
                    ),
                )
            ],
            # Wix: revision 3 arrives before revision 2: redeemed 40, adjusted -5 since rev 1
            WIX: [
                sign(
                    "wix",
                    wix_account(
                        WIX_ACCOUNT,
                        "site-1",
                        wix,
                        "wx-3",
                        "2024-05-01T10:30:00Z",
                        revision=3,
                        balance=55,
                        earned=100,
                        redeemed=40,
                        adjusted=-5,
                        tier_id="wix-gold",
                    ),
                )
            ],
        },
        {
            # OL: redeem 30 (T2), the same delivery twice; OL says 80 after it
            OL: [ol_redeem, ol_redeem],
            # VF: redemption of 20 (vtx_2), delivered twice
            VF: [sign("voucherify", vf_redeem), sign("voucherify", vf_redeem)],
            # GB: a stale profile (10:10) arrives late, and the first profile again: a second
            # delivery of the same bytes (Gameball sends no id), older by created_at, so it
            # is applied and changes nothing
            GB: [
                sign(
                    "gameball",
                    gb_profile(
                        gb,
                        "2024-05-01T10:10:00Z",
                        activated=999,
                        pending=999,
                        tier="bronze",
                        tier_order=0,
                    ),
                ),
                sign("gameball", gb_first),
            ],
            # Wix: stale revision 2, and the revision 1 token again
            WIX: [
                sign(
                    "wix",
                    wix_account(
                        WIX_POINTS,
                        "site-1",
                        wix,
                        "wx-2",
                        "2024-05-01T10:20:00Z",
                        revision=2,
                        balance=80,
                        earned=100,
                        redeemed=20,
                        tier_id="wix-silver",
                    ),
                ),
                wix_rev1,
            ],
        },
        {
            OL: [
                sign(
                    "open_loyalty", ol_level_changed(ol, "lvl-gold", "Gold", "2024-05-01T10:06:00Z")
                )
            ],
            VF: [
                sign(
                    "voucherify",
                    vf_tier_joined(vf, "evcus_3", "ltr_silver", "Silver", "2024-05-01T10:06:00Z"),
                )
            ],
            GB: [],
            WIX: [],
        },
    ]


# events applied per member after each phase (duplicates are not applied; a second webhook about
# one movement and a stale snapshot are: they just change no balance)
APPLIED = {OL: [1, 2, 3, 4], VF: [1, 2, 3, 4], GB: [1, 2, 4, 4], WIX: [1, 2, 3, 3]}
# OL redeem (same X-Webhook-Request-Id), VF redeem (same event.id), Wix revision 1 (same id)
DUPLICATES = 3

# (kind, origin, points_delta, balance_before, balance_after) per member, in ledger order
LEDGER = {
    OL: [(EARNED, REPORTED, D(100), D(0), D(100)), (REDEEMED, REPORTED, D(-30), D(100), D(70))],
    VF: [(EARNED, REPORTED, D(50), D(0), D(50)), (REDEEMED, REPORTED, D(-20), D(50), D(30))],
    # the 10:10 profile (999) arrives last and takes its place between 10:00 and 10:20: its
    # rise is booked and the 10:20 fall corrected; the 10:00 profile re-sent says nothing new
    GB: [
        (EARNED, DERIVED, D(50), D(0), D(50)),
        (REDEEMED, DERIVED, D(-20), D(50), D(30)),
        (EARNED, DERIVED, D(949), D(30), D(979)),
        (REDEEMED, DERIVED, D(-949), D(979), D(30)),
    ],
    WIX: [
        (EARNED, DERIVED, D(100), D(0), D(100)),
        (REDEEMED, DERIVED, D(-40), D(100), D(60)),
        (ADJUSTED, DERIVED, D(-5), D(60), D(55)),
    ],
}

# the member query / MemberBalance, by hand
EXPECTED: dict[tuple[str, str, str], dict[str, Any]] = {
    # computed 100 - 30 = 70; OL reported 80 last (10:05 is its newest balance): drift 10
    OL: dict(
        balance=80,
        computed_balance=70,
        reported_balance=80,
        drift=10,
        pending_points=0,
        lifetime_earned=100,
        lifetime_redeemed=30,
        lifetime_expired=0,
        lifetime_adjusted=0,
        tier={"id": "lvl-gold", "name": "Gold", "order": None},
    ),
    VF: dict(
        balance=30,
        computed_balance=30,
        reported_balance=30,
        drift=0,
        pending_points=0,
        lifetime_earned=50,
        lifetime_redeemed=20,
        lifetime_expired=0,
        lifetime_adjusted=0,
        tier={"id": "ltr_silver", "name": "Silver", "order": None},
    ),
    # profiles by created_at 50 (10:00), 999 (10:10, read last), 30 (10:20): the balance and
    # pending are the newest profile's; earned 50 + 949, redeemed 969
    GB: dict(
        balance=30,
        computed_balance=30,
        reported_balance=30,
        drift=0,
        pending_points=0,
        lifetime_earned=999,
        lifetime_redeemed=969,
        lifetime_expired=0,
        lifetime_adjusted=0,
        tier={"id": None, "name": "silver", "order": 2},
    ),
    # revision 3 counters: earned 100, redeemed 40, adjusted -5 → 55
    WIX: dict(
        balance=55,
        computed_balance=55,
        reported_balance=55,
        drift=0,
        pending_points=0,
        lifetime_earned=100,
        lifetime_redeemed=40,
        lifetime_expired=0,
        lifetime_adjusted=-5,
        tier={"id": "wix-gold", "name": None, "order": None},
    ),
}

# (tier, previous) per member on loyalty.tiers
TIERS = {
    OL: [(Tier(id="lvl-gold", name="Gold"), None)],
    VF: [(Tier(id="ltr_silver", name="Silver"), None)],
    GB: [
        (Tier(name="basic", order=1), None),
        (Tier(name="silver", order=2), Tier(name="basic", order=1)),
    ],
    WIX: [(Tier(id="wix-gold"), None)],
}


def by_member(records: list[Record]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out.setdefault(r.key, []).append(r.value)
    return out


def test_four_providers_end_to_end(h: Harness) -> None:
    started = datetime.now(UTC)
    worker = h.start_worker()
    bridge = h.start_bridge()

    # a broken delivery (Open Loyalty without customerId) goes to the DLQ, the rest goes on
    broken = sign(
        "open_loyalty", ol_points_changed(None, "T9", 5, "add", 5, "2024-05-01T10:00:00Z")
    )
    h.send(bridge, [broken])

    for n, phase in enumerate(phases()):
        h.send(bridge, [d for deliveries in phase.values() for d in deliveries])
        for member in MEMBERS:
            want = APPLIED[member][n]
            h.wait_member(worker, *member, lambda m, want=want: m["events_applied"] >= want)
    h.wait_caught_up()
    assert h.metric(worker, "worker_duplicate_events_total") == DUPLICATES

    # -- the member query -------------------------------------------------------------------
    answers = {}
    for member in MEMBERS:
        status, body = h.member(worker, *member)
        assert status == 200, body
        answers[member] = body
        expected = EXPECTED[member]
        assert {k: body[k] for k in expected} == expected, member
        assert body["events_applied"] == APPLIED[member][-1]
        assert body["member_key"] == key(member)
        assert (body["provider"], body["tenant"], body["customer_id"]) == (
            member[0].upper(),
            member[1],
            member[2],
        )
        as_of = datetime.fromisoformat(body["as_of"].replace("Z", "+00:00"))
        assert started - timedelta(seconds=1) <= as_of <= datetime.now(UTC)
    status, body = h.member(worker, "open_loyalty", "default", "nobody")
    assert status == 404 and "unknown member" in body["error"], body

    # source_offset: the events-topic offset of the member's last applied event
    events = h.read("events")
    for member in MEMBERS:
        last = answers[member]["last_event_id"]
        offsets = {r.offset for r in events if r.key == key(member) and r.value.event_id == last}
        assert answers[member]["source_offset"] in offsets, (member, offsets)

    # -- loyalty.ledger -----------------------------------------------------------------------
    ledger = h.read("ledger")
    entries: list[LedgerEntry] = [r.value for r in ledger]
    assert len({e.entry_id for e in entries}) == len(entries), "duplicated ledger entries"
    grouped = by_member(ledger)
    assert set(grouped) == {key(m) for m in MEMBERS}
    for member in MEMBERS:
        got = [
            (e.kind, e.origin, e.points_delta, e.balance_before, e.balance_after)
            for e in grouped[key(member)]
        ]
        assert got == LEDGER[member], member
    ol_entries = grouped[key(OL)]
    assert [e.movement_id for e in ol_entries] == ["T1", "T2"]
    assert [e.reported_balance for e in ol_entries] == [None, D(80)]
    assert [e.movement_id for e in grouped[key(VF)]] == ["vtx_1", "vtx_2"]
    assert [e.event_id for e in grouped[key(VF)]] == ["evcus_1", "evvou_2"]
    assert [e.event_id for e in grouped[key(WIX)]] == ["wx-1", "wx-3", "wx-3"]
    assert {e.entry_id for e in grouped[key(WIX)]} == {
        "wx-1:POINTS_EARNED",
        "wx-3:POINTS_REDEEMED",
        "wx-3:POINTS_ADJUSTED",
    }

    # -- loyalty.balances (compacted: latest per member) ---------------------------------------
    balances: dict[str, MemberBalance] = latest_by_key(h.read("balances"))
    assert set(balances) == {akey(m) for m in MEMBERS}
    for member in MEMBERS:
        b = balances[akey(member)]
        e = EXPECTED[member]
        assert (b.balance, b.computed_balance, b.reported_balance, b.drift, b.pending_points) == (
            e["balance"],
            e["computed_balance"],
            e["reported_balance"],
            e["drift"],
            e["pending_points"],
        ), member
        assert (
            b.lifetime_earned,
            b.lifetime_redeemed,
            b.lifetime_expired,
            b.lifetime_adjusted,
        ) == (
            e["lifetime_earned"],
            e["lifetime_redeemed"],
            e["lifetime_expired"],
            e["lifetime_adjusted"],
        ), member
        assert b.tier == Tier(**e["tier"]), member
        # a MemberBalance is written when a visible value changes (or on a redelivery), so an
        # event that changed nothing (a stale snapshot) may leave the freshness fields behind
        assert 1 <= b.events_applied <= APPLIED[member][-1]

    # -- loyalty.tiers ----------------------------------------------------------------------
    tiers = by_member(h.read("tiers"))
    for member in MEMBERS:
        assert [(t.tier, t.previous) for t in tiers[akey(member)]] == TIERS[member], member

    # -- loyalty.webhooks.dlq ------------------------------------------------------------------
    dlq = h.read("dlq")
    assert len(dlq) == 1, [r.value for r in dlq]
    dead: DeadLetter = dlq[0].value
    assert dead.stage == "decode"
    assert dead.error_class == "DecodeError"
    assert dead.error_message == "data.customerId is missing"
    assert dead.provider == "open_loyalty"
    assert dead.raw == broken.body
    assert dead.delivery_id == broken.headers["X-Webhook-Request-Id"] == dlq[0].key
    assert dead.source_topic == h.topic("raw")

    # -- the commands -----------------------------------------------------------------------
    for member in (OL, WIX):
        done = h.cli("members", *member, "--url", worker.url)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == answers[member]
    done = h.cli("members", "gameball", "default", "nobody", "--url", worker.url)
    assert done.returncode == 1 and "unknown member" in done.stderr

    done = h.cli("tail", "balances")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == len(h.read("balances"))
    latest = {line["key"]: line for line in lines}  # one partition per key: file order = offsets
    for member in MEMBERS:
        line = latest[akey(member)]
        assert line["member_key"] == key(member)
        assert line["account_id"] == ACCOUNTS.get(member, DEFAULT_ACCOUNT)
        for field in ("balance", "computed_balance", "drift", "pending_points", "tier"):
            assert line[field] == EXPECTED[member][field], (member, field)
        assert line["events_applied"] == balances[akey(member)].events_applied

    worker.stop()
    bridge.stop()
