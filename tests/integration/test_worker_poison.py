"""A poison event on real Apache Kafka: one accepted event whose result Avro cannot hold.

Every points field is Avro decimal(18, 2): |value| < 10**16. The Open Loyalty decoder accepts
an `amountChange` up to 9999999999999999.99, so adding that to a member who already has points
computes a balance of 10**16 or more. Whichever layer refuses it (the ledger rules or the Avro
encoder of the worker's outputs), the worker must dead-letter that one event (stage `ledger`,
saying what is out of range for whom), keep the member as it was before it, apply every other
event of the same batch, that member's included, and go on with later events; under both
processing guarantees.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from connector.avro import default_codec
from connector.models import (
    DeadLetter,
    EventType,
    LedgerEntry,
    LoyaltyEvent,
    MemberBalance,
    account_key,
)
from tests.integration.harness import (
    Delivery,
    Harness,
    latest_by_key,
    ol_points_changed,
    sign,
    vf_points_added,
)
from tests.integration.test_worker_e2e import by_member, key
from tests.integration.test_worker_eos import EOS

D = Decimal
POISON_CHANGE = "9999999999999999.99"  # the largest amountChange the decoder accepts

PA = ("open_loyalty", "default", "ol-poisoned")  # gets the poison event
PB = ("open_loyalty", "default", "ol-bystander")
PC = ("voucherify", "default", "cust_bystander")
MEMBERS = (PA, PB, PC)

GUARANTEES = {
    "at_least_once": {"CONNECTOR_PROCESSING_GUARANTEE": "at_least_once"},
    "exactly_once": EOS,
}


@pytest.fixture(params=sorted(GUARANTEES))
def h(h: Harness, request: pytest.FixtureRequest) -> Harness:
    """The test's Harness, once per processing guarantee."""
    h.base_env.update(GUARANTEES[request.param])
    return h


def ol(
    customer: str, transfer: str, change: int | str, kind: str, amount: int, at: str
) -> Delivery:
    """A signed Open Loyalty `account.available_points_amount_changed`.

    `change` as a str is written as that JSON number literal verbatim (a float would not
    round-trip 9999999999999999.99; the decoder reads JSON numbers as exact decimals).
    """
    payload = ol_points_changed(customer, transfer, 0, kind, amount, at)
    if isinstance(change, int):
        payload["data"]["amountChange"] = change
        return sign("open_loyalty", payload)
    text = json.dumps(payload)
    assert text.count('"amountChange": 0') == 1
    body = text.replace('"amountChange": 0', f'"amountChange": {change}').encode()
    return sign("open_loyalty", body)


def vf(event: str, tx: str, points: int, balance: int, at: str) -> Delivery:
    return sign(
        "voucherify", vf_points_added(PC[2], event, tx, "POINTS_ACCRUAL", points, balance, at)
    )


def test_poison_event_is_dead_lettered_and_the_stream_goes_on(h: Harness) -> None:
    worker = h.start_worker()
    bridge = h.start_bridge()
    a, b = PA[2], PB[2]
    poison = ol(a, "PA2", POISON_CHANGE, "add", 100, "2024-05-01T10:01:00Z")

    # phase 1: every member has points (so the poison's sum overflows whatever the order below)
    h.send(
        bridge,
        [
            ol(a, "PA1", 100, "add", 100, "2024-05-01T10:00:00Z"),
            ol(b, "PB1", 50, "add", 50, "2024-05-01T10:00:00Z"),
            vf("evcus_p1", "vtx_p1", 50, 50, "2024-05-01T10:00:00Z"),
        ],
    )
    for member in MEMBERS:
        h.wait_member(worker, *member, lambda m: m["events_applied"] >= 1)

    # phase 2, sent together (one ledger batch, as far as timing allows): the poison event
    # between ordinary events of its own member and of two others
    h.send(
        bridge,
        [
            ol(b, "PB2", 25, "add", 75, "2024-05-01T10:01:00Z"),
            poison,
            ol(a, "PA3", 30, "subtract", 70, "2024-05-01T10:02:00Z"),
            vf("evcus_p2", "vtx_p2", 20, 70, "2024-05-01T10:01:00Z"),
        ],
        concurrency=4,
    )
    applied = {PA: 2, PB: 2, PC: 2}
    for member in MEMBERS:
        want = applied[member]
        h.wait_member(worker, *member, lambda m, want=want: m["events_applied"] >= want)

    # phase 3: the worker keeps going, for the poisoned member too
    h.send(
        bridge,
        [
            ol(a, "PA4", 5, "add", 75, "2024-05-01T10:03:00Z"),
            ol(b, "PB3", 10, "subtract", 65, "2024-05-01T10:03:00Z"),
        ],
    )
    applied = {PA: 3, PB: 3, PC: 2}
    for member in MEMBERS:
        want = applied[member]
        h.wait_member(worker, *member, lambda m, want=want: m["events_applied"] >= want)
    h.wait_caught_up(timeout=90)

    # -- the member query: exact, as if the poison event had never been sent -----------------
    expected = {
        PA: dict(balance=75, computed_balance=75, reported_balance=75, drift=0),
        PB: dict(balance=65, computed_balance=65, reported_balance=65, drift=0),
        PC: dict(balance=70, computed_balance=70, reported_balance=70, drift=0),
    }
    lifetime = {PA: (105, 30), PB: (75, 10), PC: (70, 0)}  # (earned, redeemed)
    for member in MEMBERS:
        status, body = h.member(worker, *member)
        assert status == 200, body
        assert {k: body[k] for k in expected[member]} == expected[member], (member, body)
        assert (body["lifetime_earned"], body["lifetime_redeemed"]) == lifetime[member], member
        assert body["events_applied"] == applied[member], (member, body)

    # -- the dead letter -----------------------------------------------------------------------
    dlq = h.read("dlq")
    assert len(dlq) == 1, [r.value for r in dlq]
    dead: DeadLetter = dlq[0].value
    assert dead.stage == "ledger", dead
    assert dead.error_class, dead
    assert re.search(r"out of range|overflow", dead.error_message, re.IGNORECASE), dead
    assert key(PA) in dead.error_message, dead.error_message
    assert dead.source_topic == h.topic("events")
    assert dead.raw  # the events-topic record, for a replay once the cause is fixed
    failed: LoyaltyEvent = default_codec().decode(dead.raw, LoyaltyEvent)
    assert (failed.member_key, failed.movement_id) == (key(PA), "PA2")
    assert failed.points_delta == D(POISON_CHANGE)
    assert failed.type is EventType.POINTS_EARNED
    assert h.metric(worker, "worker_dead_letters_total") == 1

    # -- outputs: every other event's, none of the poison event's -----------------------------
    grouped = by_member(h.read("ledger"))
    entries: list[LedgerEntry] = [e for member in MEMBERS for e in grouped.get(key(member), [])]
    assert all(e.event_id != failed.event_id for e in entries), entries
    assert all(e.movement_id != "PA2" for e in entries), entries
    # PA's entries: +100, then -30 and +5 (phase 2's order of PA3 vs the poison is free)
    got = [(e.movement_id, e.points_delta, e.balance_before, e.balance_after) for e in entries]
    assert [g for g in got if g[0] and g[0].startswith("PA")] == [
        ("PA1", D(100), D(0), D(100)),
        ("PA3", D(-30), D(100), D(70)),
        ("PA4", D(5), D(70), D(75)),
    ]
    assert [(e.movement_id, e.balance_after) for e in grouped[key(PB)]] == [
        ("PB1", D(50)),
        ("PB2", D(75)),
        ("PB3", D(65)),
    ]
    assert [(e.movement_id, e.balance_after) for e in grouped[key(PC)]] == [
        ("vtx_p1", D(50)),
        ("vtx_p2", D(70)),
    ]
    balances: dict[str, MemberBalance] = latest_by_key(h.read("balances"))
    # the Voucherify bystander's card is in the harness's campaign: its own account's key
    accounts = {PC: "camp_loyalty"}
    assert {
        m: balances[account_key(key(m), accounts.get(m, "default"))].computed_balance
        for m in MEMBERS
    } == {
        PA: D(75),
        PB: D(65),
        PC: D(70),
    }
    for record in h.read("balances"):
        assert record.value.last_event_id != failed.event_id, record
    assert h.read("tiers") == []

    worker.stop()
    bridge.stop()
