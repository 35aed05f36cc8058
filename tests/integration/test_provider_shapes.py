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

import json
import uuid
from typing import Any

from connector.models import account_key
from tests.integration.harness import Delivery, Harness, latest_by_key, sign

OL_C, GB_C, VF_C, WIX_C = "ol-held", "gb-held", "vf-held", "wix-held"


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


# ---------------------------------------------------------------------------------------------
# point accounts: a Voucherify customer with a card in each of two loyalty campaigns, an Open
# Loyalty member with points in two wallets


VF_TWO, OL_TWO = "vf-two-cards", "ol-two-wallets"


def vf_card(card: str, campaign: str) -> dict[str, Any]:
    return {"id": card, "type": "LOYALTY_CARD", "holder_id": VF_TWO, "campaign_id": campaign}


def vf_accrual(n: int, card: str, campaign: str, points: int, balance: int, at: str) -> Delivery:
    tx = {
        "id": f"vtx_{card}_{n}",
        "type": "POINTS_ACCRUAL",
        "voucher_id": card,
        "campaign_id": campaign,
        "details": {
            "balance": {
                "type": "loyalty_card",
                "points": points,
                "balance": balance,
                "related_object": {"id": card, "type": "voucher"},
            }
        },
    }
    return vf(
        f"ev_{card}_{n}",
        "voucher.loyalty_card.transaction.created",
        {"voucher": vf_card(card, campaign), "transaction": tx},
        at,
    )


def ol_wallet(n: int, wallet: str | None, change: int, kind: str, amount: int, at: str) -> Delivery:
    """Open Loyalty 5.x AvailablePointsAmountChanged in the spec's envelope (api-docs
    `doc/openapi-new/webhooks.yaml`: messageId, requestId, eventName, storeCode, createdAt,
    data with `transferId`)."""
    data: dict[str, Any] = {
        "customer": {"customerId": OL_TWO},
        "amount": amount,
        "amountChange": change,
        "amountChangeType": kind,
        "transferId": f"pt-{wallet}-{n}",
    }
    if wallet is not None:  # where Open Loyalty 5.x names it (api-docs webhooks.yaml)
        data["wallet"] = {"walletType": {"code": wallet}}
    body = {
        "messageId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ol-wallet:{wallet}:{n}")),
        "requestId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ol-wallet-attempt:{wallet}:{n}")),
        "eventName": "AvailablePointsAmountChanged",
        "storeCode": "DEFAULT",
        "createdAt": at,
        "data": data,
    }
    return sign("open_loyalty", body)


def test_each_account_of_a_member_keeps_its_own_balance(h: Harness) -> None:
    worker = h.start_worker()
    bridge = h.start_bridge()
    h.send(
        bridge,
        [
            vf_accrual(1, "v_card_a", "camp_a", 60, 60, "2026-03-01T09:00:00Z"),
            vf_accrual(1, "v_card_b", "camp_b", 5, 5, "2026-03-01T09:00:30Z"),
            vf_accrual(2, "v_card_a", "camp_a", 40, 100, "2026-03-01T09:01:00Z"),
            # the default wallet (named, and not named as OSS and legacy payloads do) and miles
            ol_wallet(1, "default", 10, "add", 10, "2026-03-01T09:00:00Z"),
            ol_wallet(2, None, 5, "add", 15, "2026-03-01T09:02:00Z"),
            ol_wallet(1, "miles", 500, "add", 500, "2026-03-01T09:01:00Z"),
            ol_wallet(2, "miles", 200, "subtract", 300, "2026-03-01T09:03:00Z"),
        ],
    )
    vf_member = h.wait_member(
        worker,
        "voucherify",
        "default",
        VF_TWO,
        lambda m: len(m["accounts"]) == 2 and sum(a["events_applied"] for a in m["accounts"]) == 3,
    )
    ol_member = h.wait_member(
        worker,
        "open_loyalty",
        "default",
        OL_TWO,
        lambda m: len(m["accounts"]) == 2 and sum(a["events_applied"] for a in m["accounts"]) == 4,
    )

    def figures(member: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
        return {
            a["account_id"]: (a["balance"], a["computed_balance"], a["drift"], a["lifetime_earned"])
            for a in member["accounts"]
        }

    # card A at 100, card B at 5: each its own balance, no drift (before: 5, computed 105)
    assert figures(vf_member) == {"camp_a": (100, 100, 0, 100), "camp_b": (5, 5, 0, 5)}
    assert figures(ol_member) == {"default": (15, 15, 0, 15), "miles": (300, 300, 0, 500)}
    # the top level is the primary account (the single-account answer): default, else first
    assert (ol_member["account_id"], ol_member["balance"]) == ("default", 15)
    assert vf_member["account_id"] in ("camp_a", "camp_b")

    status, one = h.member(worker, "voucherify", "default", f"{VF_TWO}?account=camp_b")
    assert status == 200 and (one["account_id"], one["balance"]) == ("camp_b", 5), one
    assert "accounts" not in one
    status, none = h.member(worker, "voucherify", "default", f"{VF_TWO}?account=camp_z")
    assert status == 404 and "camp_a" in none["error"], none
    status, bad = h.member(worker, "voucherify", "default", f"{VF_TWO}?account=a:b")
    assert status == 400, bad

    # loyalty.balances: one record per account, keyed so compaction keeps each
    h.wait_caught_up()
    balances = latest_by_key(h.read("balances"))
    vf_key, ol_key = f"voucherify:default:{VF_TWO}", f"open_loyalty:default:{OL_TWO}"
    assert balances[account_key(vf_key, "camp_a")].balance == 100
    assert balances[account_key(vf_key, "camp_b")].balance == 5
    assert vf_key not in balances  # its default record only indexes the cards: not published
    assert balances[ol_key].balance == 15 and balances[ol_key].account_id == "default"
    assert balances[account_key(ol_key, "miles")].balance == 300
    # the ledger: every entry names its account, keyed by the member (one partition, in order)
    entries = [r.value for r in h.read("ledger") if r.key in (vf_key, ol_key)]
    by_account: dict[tuple[str, str], Any] = {}
    for e in entries:
        by_account[(e.member_key, e.account_id)] = (
            by_account.get((e.member_key, e.account_id), 0) + e.points_delta
        )
    assert by_account == {
        (vf_key, "camp_a"): 100,
        (vf_key, "camp_b"): 5,
        (ol_key, "default"): 15,
        (ol_key, "miles"): 300,
    }
    # the members CLI shows the accounts, and one with --account
    done = h.cli("members", "open_loyalty", "default", OL_TWO, "--url", worker.url)
    assert done.returncode == 0, done.stderr
    assert {a["account_id"] for a in json.loads(done.stdout)["accounts"]} == {"default", "miles"}
    done = h.cli(
        "members", "open_loyalty", "default", OL_TWO, "--url", worker.url, "--account", "miles"
    )
    assert done.returncode == 0 and json.loads(done.stdout)["balance"] == 300, done.stdout
