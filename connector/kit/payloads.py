"""Webhooks signed as each provider would sign them, with the providers' own test secrets.

`sign` puts a payload through `PROVIDERS[provider].sign` (the same code `replay` uses) with the
secrets each provider module owns (`test_secrets()`); `secret_env` is the CONNECTOR_* variables
a bridge verifies them with. The builders below make the payloads providers really send, in the
shapes of tests/fixtures/<provider>; the numbers come from the caller.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from typing import Any

from connector.providers import PROVIDERS
from connector.providers.wix import new_keypair


@dataclass(frozen=True)
class Delivery:
    """A signed webhook, ready to POST (posting it twice = the provider retrying it)."""

    provider: str
    body: bytes
    headers: dict[str, str]
    tenant: str | None = None

    @property
    def path(self) -> str:
        return f"/webhooks/{self.provider}" + (f"/{self.tenant}" if self.tenant else "")


def secrets() -> dict[str, dict[str, str]]:
    """Each provider's test secrets, in the shape Settings hands to providers."""
    return {key: provider.test_secrets() for key, provider in PROVIDERS.items()}


def secret_env() -> dict[str, str]:
    """CONNECTOR_* variables carrying the same secrets (what a bridge verifies `sign` with)."""
    return {
        f"CONNECTOR_{key.upper()}_{name.upper()}": value
        for key, values in secrets().items()
        for name, value in values.items()
    }


@functools.cache
def other_wix_keypair() -> tuple[str, str]:
    """(private PEM, public PEM) of a second Wix key pair, unrelated to the test one."""
    return new_keypair()


def wrong_secrets(provider: str) -> dict[str, str]:
    """Secrets of the right shape that are not the bridge's: what a forger signs with."""
    private, public = other_wix_keypair()
    return {
        "gameball": {"secret_key": "not-the-secret"},
        "open_loyalty": {
            "header_name": "X-OL-Token",
            "header_value": "not-the-token",
            "hmac_secret": "not-the-hmac",
        },
        "voucherify": {"secret_key": "not-the-secret"},
        "wix": {"public_key": public, "private_key": private},
    }[provider]


def sign(
    provider: str,
    payload: Any,
    tenant: str | None = None,
    *,
    secrets: dict[str, str] | None = None,
) -> Delivery:
    """`payload` (a JSON-able object, or exact bytes) signed as `provider` would send it, with
    its test secrets unless `secrets` are given."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signed, headers = PROVIDERS[provider].sign(body, secrets or PROVIDERS[provider].test_secrets())
    return Delivery(provider, signed, headers, tenant)


# ---------------------------------------------------------------------------------------------
# Open Loyalty, Voucherify, Gameball, Wix payloads


def ol_points_transfer(
    customer: str, transfer_id: str, value: int, at: str, *, kind: str = "adding"
) -> dict[str, Any]:
    """Open Loyalty `account.points_transfer` (issuer `system`: an earn, not an adjustment)."""
    return {
        "type": "account.points_transfer",
        "createdAt": at,
        "data": {
            "storeCode": "DEFAULT",
            "accountId": f"acc-{customer}",
            "customerId": customer,
            "pointsTransferId": transfer_id,
            "value": value,
            "issuer": "system",
            "type": kind,
            "state": "active",
        },
    }


def ol_points_changed(
    customer: str | None, transfer_id: str, change: int, change_type: str, amount: int, at: str
) -> dict[str, Any]:
    """Open Loyalty `account.available_points_amount_changed` (`amount` = balance after)."""
    data: dict[str, Any] = {
        "amount": amount,
        "amountChange": change,
        "amountChangeType": change_type,
        "pointsTransferId": transfer_id,
        "transactionId": f"tx-{transfer_id}",
    }
    if customer is not None:
        data["customerId"] = customer
    return {"type": "account.available_points_amount_changed", "createdAt": at, "data": data}


def ol_level_changed(customer: str, level_id: str, level_name: str, at: str) -> dict[str, Any]:
    return {
        "type": "customer.level_changed",
        "data": {
            "customerId": customer,
            "levelId": level_id,
            "levelName": level_name,
            "levelAchievementDate": at,
        },
    }


def _vf_customer(customer: str) -> dict[str, Any]:
    return {"id": customer, "source_id": f"src-{customer}", "object": "customer"}


VF_CAMPAIGN = "camp_loyalty"  # the loyalty campaign of the builders' cards unless told


def _vf_card_id(customer: str, card: str | None) -> str:
    """The loyalty card's voucher id: `v_<customer>` unless the test names another card."""
    return card or f"v_{customer}"


def _vf_voucher(
    customer: str,
    balance: int,
    *,
    campaign: str = VF_CAMPAIGN,
    card: str | None = None,
    pending: int | None = None,
) -> dict[str, Any]:
    """The customer's loyalty card in `campaign` (one card per customer per loyalty campaign),
    with its pending points when `pending` is given."""
    card = _vf_card_id(customer, card)
    loyalty_card: dict[str, Any] = {"points": balance, "balance": balance}
    if pending is not None:
        loyalty_card["pending_points"] = pending
    return {
        "id": card,
        "code": f"LC-{card.removeprefix('v_')}",
        "loyalty_card": loyalty_card,
        "type": "LOYALTY_CARD",
        "campaign_id": campaign,
        "holder_id": customer,
        "object": "voucher",
    }


def _vf_webhook(
    event_id: str,
    event_type: str,
    label: str,
    at: str,
    data: dict[str, Any],
    entity_id: str,
    *,
    project: bool = False,
) -> dict[str, Any]:
    """The envelope Voucherify sends an event in: a distribution's, or a project webhook's."""
    if project:
        source = {"id": "wh_test", "object": "webhook"}
    else:
        source = {"id": "distr_test", "object": "distribution"}
    return {
        "id": f"whs_{event_id}",
        "project_id": "proj_test",
        "created_at": at,
        "type": label,
        "data": data,
        "source": source,
        "event": {"id": event_id, "type": event_type, "created_at": at, "entity_id": entity_id},
    }


def vf_transaction_webhook(
    webhook: str,
    customer: str,
    event_id: str,
    tx_id: str,
    tx_type: str,
    points: int,
    balance: int,
    at: str,
    *,
    campaign: str = VF_CAMPAIGN,
    card: str | None = None,
) -> dict[str, Any]:
    """A Voucherify webhook about one loyalty-card transaction, as `webhook` is sent:

    * `points_added`: the distribution webhook `customer.voucher.loyalty_card.points_added`;
    * `transaction_created`: the project webhook `voucher.loyalty_card.transaction.created`
      (its holder is the voucher).

    `campaign` and `card`: the loyalty campaign and card (voucher id) the points are on.
    """
    card_id = _vf_card_id(customer, card)
    balance_change = {
        "type": "loyalty_card",
        "total": balance,
        "object": "balance",
        "points": points,
        "balance": balance,
        "related_object": {"id": card_id, "type": "voucher"},
    }
    tx = {
        "id": tx_id,
        "source_id": None,
        "voucher_id": card_id,
        "campaign_id": campaign,
        "source": "API",
        "reason": None,
        "type": tx_type,
        "details": {"balance": balance_change},
        "related_transaction_id": None,
        "created_at": at,
    }
    voucher = _vf_voucher(customer, balance, campaign=campaign, card=card)
    data: dict[str, Any]
    if webhook == "points_added":
        data = {
            "customer": _vf_customer(customer),
            "voucher": voucher,
            "balance": balance_change,
            "transaction": tx,
        }
        event_type = "customer.voucher.loyalty_card.points_added"
        return _vf_webhook(event_id, event_type, "Loyalty points added", at, data, customer)
    data = {"voucher": voucher, "transaction": tx, "holder_loyalty_tier": None}
    event_type = "voucher.loyalty_card.transaction.created"
    return _vf_webhook(event_id, event_type, event_type, at, data, card_id, project=True)


# The two webhooks Voucherify sends about one transaction (a movement may arrive as both).
vf_points_added = functools.partial(vf_transaction_webhook, "points_added")
vf_transaction_created = functools.partial(vf_transaction_webhook, "transaction_created")


def vf_tier_joined(
    customer: str,
    event_id: str,
    tier_id: str,
    tier_name: str,
    at: str,
    *,
    campaign: str = VF_CAMPAIGN,
) -> dict[str, Any]:
    """Voucherify distribution `customer.loyalty.tier.joined`: a tier of `campaign`'s program."""
    data = {
        "customer": _vf_customer(customer),
        # EventCustomerLoyaltyTierBase: the campaign, and each tier's campaign_id
        # (voucherify-openapi documentation/openapi-events/events-customer.json)
        "campaign": {"id": campaign, "object": "campaign"},
        "loyalty_tier": {
            "id": tier_id,
            "name": tier_name,
            "campaign_id": campaign,
            "object": "loyalty_tier",
        },
        "created_at": at,
    }
    return _vf_webhook(event_id, "customer.loyalty.tier.joined", "Tier change", at, data, customer)


def gb_profile(
    customer: str, at: str, *, activated: int, pending: int, tier: str, tier_order: int
) -> dict[str, Any]:
    """Gameball v4 `customer.profile.updated` (a balance snapshot).

    Without `total_points`: see the report about Gameball snapshots with total_points.
    """
    return {
        "event": "customer.profile.updated",
        "client_id": "2155",
        "customer_id": customer,
        "gb_customer_id": 1234,
        "created_at": at,
        "data": {
            "email": f"{customer}@example.com",
            "tier_name": tier,
            "tier_order": tier_order,
            "activated_points": activated,
            "pending_points": pending,
        },
    }


def wix_account(
    event_type: str,
    instance: str,
    contact: str,
    event_id: str,
    at: str,
    *,
    revision: int,
    balance: int,
    earned: int = 0,
    redeemed: int = 0,
    adjusted: int = 0,
    expired: int = 0,
    tier_id: str | None = None,
) -> dict[str, Any]:
    """A Wix account event envelope (`account_points_updated` or `account_updated`).

    `sign("wix", ...)` turns it into the RS256 JWT Wix sends (nested layers stringified).
    """
    account: dict[str, Any] = {
        "id": f"acct-{contact}",
        "contactId": contact,
        "memberId": contact,
        "revision": str(revision),
        "rewardAvailable": False,
        "points": {
            "balance": balance,
            "earned": earned,
            "redeemed": redeemed,
            "adjusted": adjusted,
            "expired": expired,
        },
        "tier": {"id": tier_id} if tier_id else None,
    }
    if event_type.endswith("account_points_updated"):
        body: dict[str, Any] = {
            "slug": "points_updated",
            "actionEvent": {"body": {"account": account}},
        }
    else:
        body = {"slug": "updated", "updatedEvent": {"currentEntity": account}}
    return {
        "eventType": event_type,
        "instanceId": instance,
        "data": {
            "id": event_id,
            "entityFqdn": "wix.loyalty.v1.account",
            "entityId": account["id"],
            "eventTime": at,
            **body,
        },
        "identity": {"identityType": "APP", "appId": "app-test"},
    }


def ol_oss_amount_changed(
    customer: str, amount: int, change: int, change_type: str
) -> dict[str, Any]:
    """`account.available_points_amount_changed` as Open Loyalty OSS 3.x sends it.

    OSS builds it from AvailablePointsAmountChangedSystemEvent: the balance after as a float, the
    change as an int, no pointsTransferId and no time. Expiries, cancels and unlocks pass only the
    new amount: `amount_change: 0, amount_change_type: "subtract"`, even when (unlock) the balance
    rises.
    """
    return {
        "type": "account.available_points_amount_changed",
        "data": {
            "customerId": customer,
            "amount": float(amount),
            "amount_change": change,
            "amount_change_type": change_type,
        },
    }


def ol_subscription_amount_changed(
    customer: str,
    transfer_id: str,
    change: int,
    change_type: str,
    amount: int,
    at: str,
    wallet_type: dict[str, Any],
    *,
    message_id: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Open Loyalty 5.x `AvailablePointsAmountChanged` in the envelope of every 5.x webhook
    (OpenLoyalty/api-docs@9aa0794 `doc/openapi-new/webhooks.yaml`): `messageId` ("unique
    identifier for each webhook", kept by a retry), `requestId` (one per send attempt),
    `eventName`, `storeCode`, `createdAt`, and `data` with the customer nested, the wallet the
    points moved in (`walletType.code`), the balance after in that wallet (`amount`) and the
    transfer as `transferId`.

    `message_id` defaults to a UUID derived from the customer and the transfer (one webhook per
    movement, reproducible); `request_id` to one derived from the message id (a first attempt).
    """
    message = message_id or str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"ol-message:{customer}:{transfer_id}")
    )
    return {
        "messageId": message,
        "requestId": request_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"ol-request:{message}")),
        "eventName": "AvailablePointsAmountChanged",
        "storeCode": "DEFAULT",
        "createdAt": at.replace("Z", "+00:00"),
        "data": {
            "customer": {"customerId": customer, "loyaltyCardNumber": f"card-{customer}"},
            "accountId": f"wal-{customer}-{wallet_type['code']}",
            "wallet": {
                "walletId": f"wal-{customer}-{wallet_type['code']}",
                "walletType": wallet_type,
            },
            "amount": float(amount),
            "amountChange": float(change),
            "amountChangeType": change_type,
            "transferId": transfer_id,
        },
    }


def gb_v3_profile(
    customer: str, *, activated: int, pending: int, tier: str, tier_order: int
) -> dict[str, Any]:
    """Gameball v3 player profile webhook: flat, no event name, no time, no id."""
    return {
        "playerUniqueId": customer,
        "email": f"{customer}@example.com",
        "levelName": tier,
        "levelOrder": tier_order,
        "activatedPoints": activated,
        "pendingPoints": pending,
    }


def _vf_pending_entry(
    customer: str, pending_id: str, points: int, at: str, campaign: str, card: str
) -> dict[str, Any]:
    return {
        "id": pending_id,
        "voucher_id": card,
        "campaign_id": campaign,
        "customer_id": customer,
        "points": points,
        "details": {"earning_rule": {"id": "ern_soak", "source": {"banner": "Order-paid"}}},
        "created_at": at,
    }


def vf_pending(
    phase: str,
    customer: str,
    event_id: str,
    pending_id: str,
    points: int,
    *,
    balance: int,
    pending_after: int,
    at: str,
    tx_id: str | None = None,
    campaign: str = VF_CAMPAIGN,
    card: str | None = None,
) -> dict[str, Any]:
    """Voucherify distribution `customer.voucher.loyalty_card.pending_points.<phase>`.

    `added` and `canceled` move only pending points (`voucher_pending_points_balance`);
    `activated` moves them into the balance (`balance` + its `transaction`). Shapes as in
    tests/fixtures/voucherify/pending_points_*.json; `balance` is the available balance after,
    on `card` (default `v_<customer>`) in loyalty campaign `campaign`.
    """
    card = _vf_card_id(customer, card)
    data: dict[str, Any] = {
        "customer": _vf_customer(customer),
        "voucher": _vf_voucher(
            customer, balance, campaign=campaign, card=card, pending=pending_after
        ),
    }
    if phase == "activated":
        data["balance"] = {
            "type": "loyalty_card",
            "total": balance + pending_after,
            "object": "balance",
            "points": points,
            "balance": balance,
            "operation_type": "AUTOMATIC",
            "related_object": {"id": card, "type": "voucher"},
        }
        data["transaction"] = {
            "id": tx_id,
            "campaign_id": campaign,
            "type": "PENDING_POINTS_ACTIVATION",
            "details": None,
            "created_at": at,
        }
    else:
        data["voucher_pending_points_balance"] = {
            "type": "loyalty_card",
            "total": pending_after,
            "object": "balance",
            "points": points if phase == "added" else -points,
            "balance": pending_after,
            "related_object": {"id": card, "type": "voucher"},
        }
    data["pending_points"] = _vf_pending_entry(customer, pending_id, points, at, campaign, card)
    event_type = f"customer.voucher.loyalty_card.pending_points.{phase}"
    return _vf_webhook(event_id, event_type, f"Pending points {phase}", at, data, customer)
