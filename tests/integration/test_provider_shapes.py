"""Deliveries shaped as the providers really send them, through the bridge and the member API.

Held out from the property tests (tests/unit/domain/test_provider_streams.py): hand-written
sequences a new user would see, each from the provider's own documents or code
(docs/delivery-semantics.md), posted one at a time to a real bridge in front of a real worker on
Apache Kafka, and checked through `GET /members/...` against numbers worked out by hand:

* Open Loyalty OSS 3.x: no ids, no times; earn 10, spend 10, earn 10 again (the third body is
  byte-identical to the first); an expiry and an unlock sent as `amount_change: 0` (the
  system event's defaults); a level that goes A -> B -> A without dates.
* Gameball v3: profiles without a time, 100 -> 150 -> 100 (byte-identical first and third).
* Voucherify: an accrual reported by `customer.rewarded.loyalty_points` (no transaction) and
  by its POINTS_ACCRUAL `transaction.created`; pending points, then their activation reported
  by `pending_points.activated` and by a `transaction.created` of the same vtx.
* Wix: an account with a tier, then a newer revision without one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Delivery, Harness, open_harness, sign

OL_C, GB_C, VF_C, WIX_C = "ol-held", "gb-held", "vf-held", "wix-held"


@pytest.fixture
def h(
    kafka: Any, topic_prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Harness]:
    with open_harness(kafka.bootstrap, topic_prefix, tmp_path, request) as harness:
        yield harness


def ol_amount(amount: float, change: int, change_type: str) -> Delivery:
    # OSS WebhookListener::onAccountAvailablePointsAmountChanged: exactly these four fields
    data = {
        "customerId": OL_C,
        "amount": amount,
        "amount_change": change,
        "amount_change_type": change_type,
    }
    return sign("open_loyalty", {"type": "account.available_points_amount_changed", "data": data})


def ol_level(level: str) -> Delivery:
    data = {"customerId": OL_C, "levelId": level, "levelName": level.upper()}
    return sign("open_loyalty", {"type": "customer.level_changed", "data": data})


def gb_v3(activated: int) -> Delivery:
    return sign("gameball", {"playerUniqueId": GB_C, "activatedPoints": activated})


CARD = {"id": "v_held", "type": "LOYALTY_CARD", "holder_id": VF_C, "campaign_id": "camp_1"}


def vf(event_id: str, type_: str, data: dict[str, Any], at: str) -> Delivery:
    return sign(
        "voucherify",
        {
            "id": f"whs_{event_id}",
            "project_id": "proj_1",
            "created_at": at,
            "type": type_,
            "data": data,
            "source": {"id": "wh_1", "object": "webhook"},
            "event": {"id": event_id, "type": type_, "created_at": at},
        },
    )


def vf_balance(points: int, balance: int) -> dict[str, Any]:
    return {
        "type": "loyalty_card",
        "points": points,
        "balance": balance,
        "related_object": {"id": "v_held", "type": "voucher"},
    }


def vf_deliveries() -> list[list[Delivery]]:
    order = {"id": "evcus_order_1", "type": "customer.order.paid"}
    order2 = {"id": "evcus_order_2", "type": "customer.order.paid"}
    rule = {"id": "ern_1"}
    customer = {"id": VF_C, "object": "customer"}
    accrual_tx = {
        "id": "vtx_acc",
        "type": "POINTS_ACCRUAL",
        "voucher_id": "v_held",
        "details": {"balance": vf_balance(50, 50), "event": order, "earning_rule": rule},
    }
    pending = {
        "id": "lopp_1",
        "voucher_id": "v_held",
        "points": 30,
        "details": {"event": order2, "earning_rule": rule},
    }
    activation_tx = {
        "id": "vtx_act",
        "type": "PENDING_POINTS_ACTIVATION",
        "voucher_id": "v_held",
        "details": {
            "balance": vf_balance(30, 80),
            "event": order2,
            "earning_rule": rule,
            "pending_points": {"id": "lopp_1"},
        },
    }
    return [
        [
            vf(
                "ev_rew",
                "customer.rewarded.loyalty_points",
                {
                    "customer": customer,
                    "voucher": CARD,
                    "earning_rule": rule,
                    "event": order,
                    "balance": vf_balance(50, 50),
                },
                "2026-03-01T09:00:00Z",
            ),
            vf(
                "ev_tx_acc",
                "voucher.loyalty_card.transaction.created",
                {"voucher": CARD, "transaction": accrual_tx, "event": order},
                "2026-03-01T09:00:01Z",
            ),
            vf(
                "ev_pa",
                "voucher.loyalty_card.pending_points.added",
                {
                    "customer": customer,
                    "voucher": CARD,
                    "pending_points": pending,
                    "voucher_pending_points_balance": vf_balance(30, 30),
                },
                "2026-03-01T09:01:00Z",
            ),
        ],
        [
            # the transaction.created of the activation first, then the activation webhook
            vf(
                "ev_tx_act",
                "voucher.loyalty_card.transaction.created",
                {"voucher": CARD, "transaction": activation_tx},
                "2026-03-02T09:01:00Z",
            ),
            vf(
                "ev_act",
                "voucher.loyalty_card.pending_points.activated",
                {
                    "customer": customer,
                    "voucher": CARD,
                    "pending_points": pending,
                    "transaction": activation_tx,
                    "balance": vf_balance(30, 80),
                },
                "2026-03-02T09:01:00Z",
            ),
        ],
    ]


def wix_account(event_id: str, revision: int, tier: str | None, at: str) -> Delivery:
    account = {
        "id": "acct-held",
        "contactId": WIX_C,
        "revision": str(revision),
        "points": {"balance": 40, "earned": 40, "redeemed": 0, "adjusted": 0, "expired": 0},
        "tier": {"id": tier} if tier else None,
    }
    return sign(
        "wix",
        {
            "eventType": "wix.loyalty.v1.account_updated",
            "instanceId": "site-held",
            "data": {
                "id": event_id,
                "entityFqdn": "wix.loyalty.v1.account",
                "slug": "updated",
                "entityId": "acct-held",
                "eventTime": at,
                "updatedEvent": {"currentEntity": account},
            },
            "identity": {"identityType": "APP", "appId": "app-test"},
        },
    )


def test_real_provider_shapes_give_the_exact_balances_tiers_and_pending(h: Harness) -> None:
    worker = h.start_worker()
    bridge = h.start_bridge()
    # one delivery at a time where the provider's only clock is our receive time, as a provider
    # that sends synchronously would (Open Loyalty OSS, Gameball v3)
    sequential = [
        ol_amount(10.0, 10, "add"),
        ol_amount(0.0, 10, "subtract"),
        ol_amount(10.0, 10, "add"),  # byte-identical to the first: a real repeat
        ol_amount(6.0, 0, "subtract"),  # expiry of 4: the event's defaults
        ol_amount(26.0, 0, "subtract"),  # unlock of 20: the balance goes UP, "subtract" 0
        ol_level("lvl-a"),
        ol_level("lvl-b"),
        ol_level("lvl-a"),  # byte-identical to the first level change
        gb_v3(100),
        gb_v3(150),
        gb_v3(100),  # byte-identical to the first profile
        wix_account("wx-held-1", 1, "wix-gold", "2026-03-01T09:00:00Z"),
        wix_account("wx-held-2", 2, None, "2026-03-01T10:00:00Z"),
    ]
    for delivery in sequential:
        h.send(bridge, [delivery], concurrency=1)
    for batch in vf_deliveries():
        h.send(bridge, batch)

    ol = h.wait_member(worker, "open_loyalty", "default", OL_C, lambda m: m["events_applied"] >= 8)
    assert {k: ol[k] for k in EXPECTED_OL} == EXPECTED_OL, ol
    gb = h.wait_member(worker, "gameball", "default", GB_C, lambda m: m["events_applied"] >= 3)
    assert {k: gb[k] for k in EXPECTED_GB} == EXPECTED_GB, gb
    vfm = h.wait_member(worker, "voucherify", "default", VF_C, lambda m: m["events_applied"] >= 5)
    assert {k: vfm[k] for k in EXPECTED_VF} == EXPECTED_VF, vfm
    wix = h.wait_member(worker, "wix", "site-held", WIX_C, lambda m: m["events_applied"] >= 2)
    assert {k: wix[k] for k in EXPECTED_WIX} == EXPECTED_WIX, wix


# worked out by hand from the sequences above
EXPECTED_OL = {
    "balance": 26,  # 10 - 10 + 10 - 4 + 20
    "computed_balance": 26,
    "drift": 0,
    "pending_points": 0,
    "lifetime_earned": 20,
    "lifetime_redeemed": 10,
    "lifetime_adjusted": 16,  # the expiry (-4) and the unlock (+20): OSS does not say which
    "tier": {"id": "lvl-a", "name": "LVL-A", "order": None},
    "events_applied": 8,
}
EXPECTED_GB = {
    "balance": 100,
    "computed_balance": 100,
    "lifetime_earned": 150,
    "lifetime_redeemed": 50,
    "events_applied": 3,
}
EXPECTED_VF = {
    "balance": 80,  # 50 accrued (reported twice) + 30 activated (reported twice)
    "computed_balance": 80,
    "drift": 0,
    "pending_points": 0,
    "lifetime_earned": 80,
    "events_applied": 5,
}
EXPECTED_WIX = {"balance": 40, "tier": None, "events_applied": 2}
