"""Voucherify webhooks (project-settings and distribution, v2024-01-01; legacy v2018-08-01).

Signature: header `x-voucherify-signature` = lowercase hex HMAC-SHA256(project webhook secret,
body). Checked over the raw bytes first, then over the body with whitespace outside JSON strings
removed (Voucherify's Java `removeWhitespaces`), because the documented signed string is the
compact JSON. No timestamp, so no replay window. Amounts are minor units; points are integers.
Docs: https://docs.voucherify.io/api-reference/introduction-to-webhooks ,
https://docs.voucherify.io/api-reference/distribution-webhooks ,
https://docs.voucherify.io/reference/migration-guide (see providers.md §3).
"""

# Mapping (provider type -> canonical type; fields). `customer.` distribution names are folded
# onto the project names (`customer.voucher.loyalty_card.X` -> `voucher.loyalty_card.X`,
# `loyalty_card.X` -> `voucher.loyalty_card.X`).
#
# | Voucherify type (folded)                   | canonical           | fields                   |
# |--------------------------------------------|---------------------|--------------------------|
# | customer.rewarded.loyalty_points           | POINTS_EARNED (1)   | delta = balance.points,  |
# | voucher.loyalty_card.points_added          | POINTS_EARNED (1)   | balance = balance.balance|
# | voucher.loyalty_card.transaction.created   | by transaction (2)  | transaction.details.     |
# |                                            |                     |   balance.points/.balance|
# | voucher.loyalty_card.points_expired        | POINTS_EXPIRED      | delta = -points          |
# | voucher.loyalty_card.pending_points.added  | POINTS_PENDING      | delta = +pending points  |
# | ...pending_points.activated                | POINTS_ACTIVATED    | delta = +balance.points  |
# | ...pending_points.canceled                 | POINTS_CANCELED     | delta = -pending points  |
# | ...pending_points.updated                  | POINTS_PENDING (3)  | delta = signed change    |
# | customer.loyalty.tier.joined / .prolonged  | TIER_CHANGED        | tier = loyalty_tier      |
# | customer.loyalty.tier.upgraded/.downgraded | TIER_CHANGED        | tier = loyalty_tier_to   |
# | customer.loyalty.tier.left                 | TIER_CHANGED        | tier = null ("no tier")  |
# | customer.created / .updated / .deleted     | CUSTOMER_REGISTERED / _UPDATED / _DELETED      |
# | customer.order.created/paid/updated/cancel.| ORDER_RECORDED      | order{id, amount, cur.}  |
# | customer.reward_redemptions.completed,     | REWARD_REDEEMED (4) | no points: the           |
# | redemption.succeeded,                      |                     |   transaction webhook    |
# | customer.redemption.succeeded              |                     |   carries them           |
# | redemption.rollback.succeeded (+customer.) | POINTS_ADJUSTED (5) | + points returned        |
# | anything else (*.failed, ...)              | OTHER               | verbatim type; no event  |
#                                                                      if it names no customer
#
# (1) When the payload carries `transaction.type`, the transaction table decides, so a manual
#     POINTS_ADDITION reported by points_added (seed 004, "Spring time" via the web UI) is an
#     adjustment exactly like the same movement reported by transaction.created.
# (2) POINTS_ACCRUAL -> EARNED(+); POINTS_REDEMPTION -> REDEEMED(-); POINTS_EXPIRATION ->
#     EXPIRED(-); POINTS_ADDITION, POINTS_REFUND (points given back, e.g. rolled-back payment
#     with points), POINTS_TRANSFER_IN -> ADJUSTED(+); POINTS_REMOVAL, POINTS_TRANSFER_OUT ->
#     ADJUSTED(-). Signs are forced by type; unknown transaction types -> OTHER.
# (3) "pending points can be updated by adding or subtracting points": the change is
#     voucher_pending_points_balance.points (signed), its own movement (its event id).
# (5) only for a loyalty card's redemption: -redemption_rollback.amount ("for loyalty cards ...
#     the number of loyalty points ... negative integers" for rollbacks); otherwise OTHER.
# (4) redemption.succeeded and customer.redemption.succeeded cover every redemption, loyalty or
#     not; created/pending reward redemptions have not happened yet and stay OTHER.
#
# Ids: event_id = envelope `event.id` (shared by the project and distribution sendouts of one
# event, so the second one dedupes), legacy: envelope `id`; else a hash of the body.
# movement_id (see `_movement_id`): an earning-rule accrual is `accrual:<card>:<cause
# event>:<earning rule>` in every webhook that reports it (customer.rewarded.loyalty_points has no
# transaction, so no vtx id); a rollback and its POINTS_REFUND are `rollback:<rr id>`; otherwise
# `transaction.id` (vtx_...) when present (points_added, transaction.created and points_expired
# about one movement carry the same vtx id), else `event.id`.
# tenant = URL tenant, else "default" (project_id is kept in attributes).
# A body without an envelope ("Raw payload" distributions) is decoded only when its shape
# identifies a points movement (see `_infer_raw_type`); otherwise it is a DecodeError.

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from connector.errors import ConfigError, DecodeError, VerificationError
from connector.models import (
    POINTS_TYPES,
    SYNTHETIC_ID,
    EventType,
    LoyaltyEvent,
    OrderRef,
    Provider,
    Tier,
)
from connector.providers import BaseProvider, DecodeContext, Option, RequestTarget, Secrets
from connector.providers.base import (
    build_event,
    constant_time_equals,
    expect_object,
    hashed_event_id,
    opt_int,
    opt_points,
    opt_str,
    parse_json,
    parse_object,
    parse_time,
    require_header,
    resolve_tenant,
)

SIGNATURE_HEADER = "x-voucherify-signature"

_SIMPLE_TYPES: dict[str, EventType] = {
    "customer.rewarded.loyalty_points": EventType.POINTS_EARNED,
    "voucher.loyalty_card.points_added": EventType.POINTS_EARNED,
    "voucher.loyalty_card.points_expired": EventType.POINTS_EXPIRED,
    "voucher.loyalty_card.pending_points.added": EventType.POINTS_PENDING,
    "voucher.loyalty_card.pending_points.activated": EventType.POINTS_ACTIVATED,
    "voucher.loyalty_card.pending_points.canceled": EventType.POINTS_CANCELED,
    "voucher.loyalty_card.pending_points.updated": EventType.POINTS_PENDING,
    "customer.loyalty.tier.joined": EventType.TIER_CHANGED,
    "customer.loyalty.tier.prolonged": EventType.TIER_CHANGED,
    "customer.loyalty.tier.upgraded": EventType.TIER_CHANGED,
    "customer.loyalty.tier.downgraded": EventType.TIER_CHANGED,
    "customer.loyalty.tier.left": EventType.TIER_CHANGED,
    "customer.created": EventType.CUSTOMER_REGISTERED,
    "customer.updated": EventType.CUSTOMER_UPDATED,
    "customer.deleted": EventType.CUSTOMER_DELETED,
    "customer.order.created": EventType.ORDER_RECORDED,
    "customer.order.paid": EventType.ORDER_RECORDED,
    "customer.order.updated": EventType.ORDER_RECORDED,
    "customer.order.canceled": EventType.ORDER_RECORDED,
    "customer.reward_redemptions.completed": EventType.REWARD_REDEEMED,
    "redemption.succeeded": EventType.REWARD_REDEEMED,
    "customer.redemption.succeeded": EventType.REWARD_REDEEMED,
}
TRANSACTION_CREATED = "voucher.loyalty_card.transaction.created"

# transaction type -> (canonical type, forced sign of the delta)
TRANSACTION_TYPES: dict[str, tuple[EventType, int]] = {
    "POINTS_ACCRUAL": (EventType.POINTS_EARNED, 1),
    # the transaction of a pending_points.activated webhook (OpenAPIWebhooks.json example of
    # EventVoucherLoyaltyCardPendingPointsActivatedData; LoyaltyCardTransactionsType enum)
    "PENDING_POINTS_ACTIVATION": (EventType.POINTS_ACTIVATED, 1),
    "POINTS_REDEMPTION": (EventType.POINTS_REDEEMED, -1),
    "POINTS_REFUND": (EventType.POINTS_ADJUSTED, 1),
    "POINTS_ADDITION": (EventType.POINTS_ADJUSTED, 1),
    "POINTS_REMOVAL": (EventType.POINTS_ADJUSTED, -1),
    "POINTS_EXPIRATION": (EventType.POINTS_EXPIRED, -1),
    "POINTS_TRANSFER_IN": (EventType.POINTS_ADJUSTED, 1),
    "POINTS_TRANSFER_OUT": (EventType.POINTS_ADJUSTED, -1),
}
_SIGNS: dict[EventType, int] = {
    EventType.POINTS_EARNED: 1,
    EventType.POINTS_REDEEMED: -1,
    EventType.POINTS_EXPIRED: -1,
    EventType.POINTS_PENDING: 1,
    EventType.POINTS_ACTIVATED: 1,
    EventType.POINTS_CANCELED: -1,
}
# Every system event name we map: an envelope `type` outside this set is a distribution's
# free-text event name, and the real type is `event.type`.
ROLLBACK_TYPES = frozenset(
    {"redemption.rollback.succeeded", "customer.redemption.rollback.succeeded"}
)
PENDING_UPDATED = "voucher.loyalty_card.pending_points.updated"
KNOWN_TYPES = frozenset(_SIMPLE_TYPES) | {TRANSACTION_CREATED} | ROLLBACK_TYPES

# Java's Character.isWhitespace: Unicode space/line/paragraph separators except the no-break
# ones (U+00A0, U+2007, U+202F), plus \t \n \v \f \r and U+001C..U+001F.
_JAVA_WHITESPACE = re.compile(
    "[\t\n\x0b\x0c\r\x1c-\x1f \u1680\u2000-\u2006\u2008-\u200a\u2028\u2029\u205f\u3000]"
)
_QUOTE_OR_ESCAPE = re.compile(r'["\\]')


def remove_whitespaces(text: str) -> str:
    """Voucherify's documented `removeWhitespaces` (Java): drop whitespace outside "strings".

    A backslash keeps itself and the next character verbatim, inside or outside strings,
    exactly as the Java loop does.
    """
    out: list[str] = []
    quoted = False
    i, n = 0, len(text)
    while i < n:
        m = _QUOTE_OR_ESCAPE.search(text, i)
        end = m.start() if m else n
        chunk = text[i:end]
        out.append(chunk if quoted else _JAVA_WHITESPACE.sub("", chunk))
        if m is None:
            break
        if text[end] == '"':
            quoted = not quoted
            out.append('"')
            i = end + 1
        else:
            out.append(text[end : end + 2])
            i = end + 2
    return "".join(out)


def signature(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def normalize_type(name: str) -> str:
    """Fold distribution event names onto the project ones used in the mapping table."""
    if name.startswith("customer.voucher."):
        return name[len("customer.") :]
    if name.startswith("loyalty_card."):
        return "voucher." + name
    return name


class Voucherify(BaseProvider):
    key = "voucherify"
    provider = Provider.VOUCHERIFY
    kept_headers = (SIGNATURE_HEADER,)
    options = (
        Option(
            "SECRET_KEY",
            None,
            "project webhook secret for `x-voucherify-signature`",
            secret=True,
            required=True,
            test="vf-test-secret",
            dev="dev-voucherify-secret",
        ),
    )

    def bind(self, secrets: Secrets) -> VoucherifyVerifier:
        return VoucherifyVerifier(secrets)

    def sign(
        self, body: bytes, secrets: Secrets, target: RequestTarget | None = None
    ) -> tuple[bytes, dict[str, str]]:
        secret = secrets.get("secret_key")
        if not secret:
            raise ConfigError("voucherify secret_key is needed to sign a payload")
        return body, {
            "content-type": "application/json",
            SIGNATURE_HEADER: signature(secret, body),
        }

    def delivery_id(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        try:
            root = parse_json(body)
        except DecodeError:
            return None
        if not isinstance(root, dict) or "data" not in root:
            return None
        # v2024: `id` is the sendout (whs_...); v2018: `id` is the event, `webhook_id` the sendout.
        sendout = root.get("webhook_id") if _is_legacy(root) else root.get("id")
        return sendout if isinstance(sendout, str) and sendout else None

    def decode(
        self, body: bytes, headers: Mapping[str, str], context: DecodeContext
    ) -> list[LoyaltyEvent]:
        root = parse_object(body)
        env = _Envelope.parse(root)
        tenant = resolve_tenant(context)
        data = env.data
        where = env.data_where
        ptype = env.event_type
        ctype, sign = _canonical(ptype, data, where)
        found = _customer(data, where)
        if found is None:
            if ctype is EventType.OTHER:
                # Project-level events about no customer (campaigns, validation rules, ...):
                # nothing to say about a member; the raw topic keeps the delivery.
                return []
            raise DecodeError(
                f"no customer id: {where}.customer.id, {where}.holder.id and "
                f"{where}.voucher.holder_id are all missing ({ptype})"
            )
        customer_id, customer = found
        transaction = _opt_object(data, "transaction", where)
        tx_where = f"{where}.transaction"
        tx_id = opt_str(transaction, "id", tx_where) if transaction else None

        fields: dict[str, Any] = {}
        delta, balance = _points(ctype, normalize_type(ptype), data, where)
        if delta is not None and sign:
            delta = abs(delta) * sign
        if ctype in _SIGNS or ctype is EventType.POINTS_ADJUSTED:
            fields["points_delta"] = delta
            fields["balance"] = balance
            fields["movement_id"] = _movement_id(
                normalize_type(ptype), ctype, data, where, tx_id, env.event_id
            )
        voucher = _opt_object(data, "voucher", where)
        loyalty_card = _opt_object(voucher, "loyalty_card", f"{where}.voucher") if voucher else None
        if loyalty_card is not None and normalize_type(ptype).startswith(
            "voucher.loyalty_card.pending_points."
        ):
            fields["pending_points"] = opt_points(
                loyalty_card, "pending_points", f"{where}.voucher.loyalty_card"
            )
        fields["tier"] = _tier(ctype, normalize_type(ptype), data, where)
        order = _order(data, where, required=ctype is EventType.ORDER_RECORDED)
        if order is not None:
            fields["order"] = order

        occurred = (
            env.event_time
            or (
                parse_time(transaction.get("created_at"), f"{tx_where}.created_at")
                if transaction
                else None
            )
            or parse_time(data.get("created_at"), f"{where}.created_at")
            or env.created_at
            or (
                parse_time(voucher.get("updated_at"), f"{where}.voucher.updated_at")
                if voucher
                else None
            )
        )
        campaign = _opt_object(data, "campaign", where)
        pending = _opt_object(data, "pending_points", where)
        order_obj = _opt_object(data, "order", where)
        fields["attributes"] = {
            "project_id": env.project_id,
            "source_id": opt_str(customer, "source_id", f"{where}.customer"),
            "email": opt_str(customer, "email", f"{where}.customer"),
            "voucher_id": opt_str(voucher, "id", f"{where}.voucher") if voucher else None,
            "voucher_code": opt_str(voucher, "code", f"{where}.voucher") if voucher else None,
            "campaign_id": (opt_str(campaign, "id", f"{where}.campaign") if campaign else None)
            or (opt_str(voucher, "campaign_id", f"{where}.voucher") if voucher else None),
            "transaction_id": tx_id,
            "transaction_type": opt_str(transaction, "type", tx_where) if transaction else None,
            "transaction_source": opt_str(transaction, "source", tx_where) if transaction else None,
            "reason": opt_str(transaction, "reason", tx_where) if transaction else None,
            "pending_points_id": opt_str(pending, "id", f"{where}.pending_points")
            if pending
            else None,
            "order_status": opt_str(order_obj, "status", f"{where}.order")
            if order_obj and ctype is EventType.ORDER_RECORDED
            else None,
            "distribution_event_name": env.distribution_name,
            "payload": "raw" if env.raw else None,
        }
        account = _account(ctype, fields, data, where, campaign, voucher, transaction)
        if account is not None:
            fields["account_id"] = account
        event_id = env.event_id
        if not event_id:
            # a "Raw payload" distribution has no ids: the body and the delivery (movement ids
            # still count each movement once across retries)
            event_id = hashed_event_id(self.provider, tenant, body, delivery=context.delivery)
            fields["attributes"][SYNTHETIC_ID] = "true"
        return [
            build_event(
                provider=self.provider,
                tenant=tenant,
                customer_id=customer_id,
                event_id=event_id,
                provider_event_type=ptype,
                type=ctype,
                occurred_at=occurred,
                context=context,
                **fields,
            )
        ]


# ---------------------------------------------------------------------------------------------


# Points live on a loyalty card, one per customer per loyalty campaign, and loyalty tiers are
# defined per campaign too (docs/delivery-semantics.md, "Accounts"): the account of a points or
# tier event is its campaign. Every points payload names it (`campaign.id`,
# `voucher.campaign_id`, `transaction.campaign_id`: the seeds' project, distribution and raw
# payloads alike), tier changes by `campaign.id` and each tier's `campaign_id`
# (voucherify-openapi documentation/openapi-events/events-customer.json,
# EventCustomerLoyaltyTierBase).
ACCOUNT_TYPES = POINTS_TYPES | {EventType.TIER_CHANGED}


class VoucherifyVerifier:
    """`Voucherify.verify` bound to one secret: the HMAC key schedule computed once."""

    __slots__ = ("_mac", "configured")

    def __init__(self, secrets: Secrets) -> None:
        secret = secrets.get("secret_key")
        self.configured = bool(secret)
        self._mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256) if secret else None

    def _signature(self, payload: bytes) -> str:
        assert self._mac is not None
        mac = self._mac.copy()
        mac.update(payload)
        return mac.hexdigest()

    def verify(
        self, body: bytes, headers: Mapping[str, str], target: RequestTarget | None = None
    ) -> None:
        if self._mac is None:
            raise VerificationError("voucherify secret_key is not configured")
        given = require_header(headers, SIGNATURE_HEADER).strip().lower()
        if constant_time_equals(given, self._signature(body)):
            return
        try:
            compact = remove_whitespaces(body.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            compact = body
        if compact != body and constant_time_equals(given, self._signature(compact)):
            return
        raise VerificationError(f"{SIGNATURE_HEADER} does not match the body")


def _account(
    ctype: EventType,
    fields: Mapping[str, Any],
    data: Mapping[str, Any],
    where: str,
    campaign: Mapping[str, Any] | None,
    voucher: Mapping[str, Any] | None,
    transaction: Mapping[str, Any] | None,
) -> str | None:
    """The loyalty campaign a points or tier event belongs to; None (the default account) for
    other events, or one that names no campaign."""
    if ctype not in ACCOUNT_TYPES and fields.get("tier") is None and fields.get("balance") is None:
        return None
    sources: list[tuple[Mapping[str, Any] | None, str]] = [
        (campaign, "campaign"),
        (voucher, "voucher"),
        (transaction, "transaction"),
    ]
    for name in ("loyalty_tier", "loyalty_tier_to", "loyalty_tier_from"):
        tier = data.get(name)
        sources.append((tier if isinstance(tier, dict) else None, name))
    for obj, path in sources:
        if not obj:
            continue
        found = opt_str(obj, "id" if path == "campaign" else "campaign_id", f"{where}.{path}")
        if found:
            return found
    return None


def _is_legacy(root: Mapping[str, Any]) -> bool:
    return root.get("object") == "event" or "webhook_id" in root


class _Envelope:
    """Where the event type, ids and times of a delivery live, per payload generation."""

    def __init__(self) -> None:
        self.event_type = ""
        self.data: dict[str, Any] = {}
        self.data_where = "body.data"
        self.event_id: str | None = None
        self.event_time: datetime | None = None
        self.created_at: datetime | None = None
        self.project_id: str | None = None
        self.distribution_name: str | None = None
        self.raw = False

    @classmethod
    def parse(cls, root: dict[str, Any]) -> _Envelope:
        env = cls()
        if "type" not in root and "data" not in root:
            env.raw = True
            env.data = root
            env.data_where = "body"
            env.event_type = _infer_raw_type(root)
            return env
        env_type = opt_str(root, "type", "body")
        if not env_type:
            raise DecodeError("body.type is missing (expected a Voucherify event name)")
        if root.get("data") is None:
            raise DecodeError(f"body.data is missing (type {env_type!r})")
        env.data = expect_object(root["data"], "body.data")
        env.project_id = opt_str(root, "project_id", "body")
        env.created_at = parse_time(root.get("created_at"), "body.created_at")
        if _is_legacy(root):
            env.event_type = env_type
            env.event_id = opt_str(root, "id", "body") or None
            return env
        event = root.get("event")
        event = expect_object(event, "body.event") if event is not None else {}
        source = root.get("source")
        source = expect_object(source, "body.source") if source is not None else {}
        inner_type = opt_str(event, "type", "body.event")
        distribution = source.get("object") == "distribution"
        if inner_type and (distribution or env_type not in KNOWN_TYPES):
            env.event_type = inner_type
            if env_type != inner_type:
                env.distribution_name = env_type
        else:
            env.event_type = env_type
        env.event_id = opt_str(event, "id", "body.event") or None
        env.event_time = parse_time(event.get("created_at"), "body.event.created_at")
        return env


def _infer_raw_type(data: dict[str, Any]) -> str:
    """The event behind an envelope-less ("Raw payload") body, if its shape says so.

    Only points movements are recognisable: the nested `event` of such payloads is the
    *cause* (seed 002 carries `customer.order.paid` there), so it must not be read as the type.
    """
    transaction = data.get("transaction")
    balance = data.get("balance")
    if isinstance(transaction, dict) and isinstance(transaction.get("type"), str):
        if "buckets" in data or transaction.get("type") == "POINTS_EXPIRATION":
            return "customer.voucher.loyalty_card.points_expired"
        return "customer.voucher.loyalty_card.points_added"
    if isinstance(balance, dict) and balance.get("type") == "loyalty_card":
        return "customer.rewarded.loyalty_points"
    raise DecodeError(
        "body has no Voucherify envelope (`type` and `data` are missing) and is not a "
        "recognisable loyalty points payload; send the default v2024-01-01 webhook payload"
    )


def _opt_object(obj: Mapping[str, Any] | None, key: str, where: str) -> dict[str, Any] | None:
    if obj is None:
        return None
    value = obj.get(key)
    if value is None:
        return None
    return expect_object(value, f"{where}.{key}")


def _customer(data: dict[str, Any], where: str) -> tuple[str, dict[str, Any]] | None:
    """(customer id, the object describing them) or None when the payload names nobody."""
    for key in ("customer", "holder"):
        obj = _opt_object(data, key, where)
        if obj is not None:
            cid = opt_str(obj, "id", f"{where}.{key}")
            if cid:
                return cid, obj
    voucher = _opt_object(data, "voucher", where)
    if voucher is not None:
        cid = opt_str(voucher, "holder_id", f"{where}.voucher")
        if cid:
            return cid, _opt_object(data, "customer", where) or {}
    return None


def _canonical(ptype: str, data: dict[str, Any], where: str) -> tuple[EventType, int]:
    """Canonical type and the sign forced on the delta (0 = keep the reported sign)."""
    name = normalize_type(ptype)
    transaction = _opt_object(data, "transaction", where)
    tx_type = opt_str(transaction, "type", f"{where}.transaction") if transaction else None
    if name == TRANSACTION_CREATED:
        return TRANSACTION_TYPES.get(tx_type or "", (EventType.OTHER, 0))
    if name in ("customer.rewarded.loyalty_points", "voucher.loyalty_card.points_added"):
        if tx_type in TRANSACTION_TYPES:
            return TRANSACTION_TYPES[tx_type]
    if name in ROLLBACK_TYPES and _rollback_points(data, where) is not None:
        return EventType.POINTS_ADJUSTED, 1
    if name == PENDING_UPDATED:
        return EventType.POINTS_PENDING, 0  # an adjustment either way: keep the sign sent
    ctype = _SIMPLE_TYPES.get(name, EventType.OTHER)
    return ctype, _SIGNS.get(ctype, 0)


def _points(
    ctype: EventType, name: str, data: dict[str, Any], where: str
) -> tuple[Decimal | None, Decimal | None]:
    """(delta as reported, available balance after) of a points event."""
    balance = _opt_object(data, "balance", where)
    b_where = f"{where}.balance"
    if balance is None:
        transaction = _opt_object(data, "transaction", where)
        details = _opt_object(transaction, "details", f"{where}.transaction")
        balance = _opt_object(details, "balance", f"{where}.transaction.details")
        b_where = f"{where}.transaction.details.balance"
    delta = opt_points(balance, "points", b_where) if balance else None
    after = opt_points(balance, "balance", b_where) if balance else None
    if name in ROLLBACK_TYPES:
        return _rollback_points(data, where), None
    if name == PENDING_UPDATED:
        # "pending points can be updated by adding or subtracting points": the signed change is
        # voucher_pending_points_balance.points (pending_points.points is the entry's new amount)
        change = _opt_object(data, "voucher_pending_points_balance", where)
        if change is None:
            raise DecodeError(f"{where}.voucher_pending_points_balance is missing ({name})")
        return opt_points(change, "points", f"{where}.voucher_pending_points_balance"), None
    if name == "voucher.loyalty_card.points_expired":
        expired = opt_points(data, "points", where)
        delta = expired if expired is not None else delta
    elif ctype in (EventType.POINTS_PENDING, EventType.POINTS_CANCELED):
        # Pending movements do not touch the available balance.
        pending = _opt_object(data, "pending_points", where)
        pending_balance = _opt_object(data, "voucher_pending_points_balance", where)
        delta = opt_points(pending, "points", f"{where}.pending_points") if pending else None
        if delta is None and pending_balance:
            delta = opt_points(pending_balance, "points", f"{where}.voucher_pending_points_balance")
        after = None
    elif ctype is EventType.POINTS_ACTIVATED and delta is None:
        pending = _opt_object(data, "pending_points", where)
        delta = opt_points(pending, "points", f"{where}.pending_points") if pending else None
    if ctype not in _SIGNS and ctype is not EventType.POINTS_ADJUSTED:
        return None, None
    return delta, after


def _movement_id(
    name: str,
    ctype: EventType,
    data: dict[str, Any],
    where: str,
    tx_id: str | None,
    event_id: str | None,
) -> str | None:
    """The id that names one points movement in every webhook that reports it.

    * An earning-rule accrual is reported by `customer.rewarded.loyalty_points` (no transaction
      object, so no vtx id: EventCustomerRewardedLoyaltyPointsData in OpenAPIWebhooks.json), by
      `transaction.created` / `points_added` (POINTS_ACCRUAL, vtx id) and, for pending points, by
      `pending_points.added` and `.activated` (PENDING_POINTS_ACTIVATION). What they all carry
      is the card, the cause event (`data.event` / `transaction.details.event`, e.g. the
      `customer.order.paid` that earned the points) and the earning rule, so that is the key:
      `accrual:<card>:<cause event>:<earning rule>`.
    * A rollback and its POINTS_REFUND transaction share the rollback id (`rr_...`):
      `rollback:<rr id>`.
    * Otherwise the transaction id (vtx), else the event id. A pending adjustment
      (`pending_points.updated`) is its own movement: its event id.
    """
    if name == PENDING_UPDATED:
        return event_id
    transaction = _opt_object(data, "transaction", where)
    tx_where = f"{where}.transaction"
    details = _opt_object(transaction, "details", tx_where) if transaction else None
    tx_type = opt_str(transaction, "type", tx_where) if transaction else None
    if name in ROLLBACK_TYPES or tx_type == "POINTS_REFUND":
        rollback = _opt_object(data, "redemption_rollback", where) or (
            _opt_object(details, "rollback", f"{tx_where}.details") if details else None
        )
        rollback_id = opt_str(rollback, "id", f"{where}.rollback") if rollback else None
        if rollback_id:
            return f"rollback:{rollback_id}"
    accrual = tx_type in ("POINTS_ACCRUAL", "PENDING_POINTS_ACTIVATION") or (
        transaction is None and ctype in (EventType.POINTS_EARNED, EventType.POINTS_ACTIVATED)
    )
    if name.startswith("voucher.loyalty_card.pending_points."):
        pending = _opt_object(data, "pending_points", where)
        details = details or (
            _opt_object(pending, "details", f"{where}.pending_points") if pending else None
        )
        accrual = True
    if accrual:
        key = _accrual_key(data, where, details)
        if key is not None:
            return key
    return tx_id or event_id


def _accrual_key(data: dict[str, Any], where: str, details: dict[str, Any] | None) -> str | None:
    voucher = _opt_object(data, "voucher", where)
    balance = _opt_object(data, "balance", where)
    related = _opt_object(balance, "related_object", f"{where}.balance") if balance else None
    card = (opt_str(voucher, "id", f"{where}.voucher") if voucher else None) or (
        opt_str(related, "id", f"{where}.balance.related_object") if related else None
    )
    cause = _opt_object(details, "event", "details") if details else None
    cause = cause or _opt_object(data, "event", where)
    cause_id = opt_str(cause, "id", f"{where}.event") if cause else None
    rule = _opt_object(details, "earning_rule", "details") if details else None
    rule = rule or _opt_object(data, "earning_rule", where)
    rule_id = opt_str(rule, "id", f"{where}.earning_rule") if rule else None
    if not card or not cause_id:
        return None
    return f"accrual:{card}:{cause_id}:{rule_id or '-'}"


def _rollback_points(data: dict[str, Any], where: str) -> Decimal | None:
    """Points a rollback returns to a loyalty card, or None when it is not a card's.

    SimpleRedemption.amount: "For loyalty cards, this is the number of loyalty points used in
    the transaction. In the case of redemption rollback, the numbers are expressed as negative
    integers." (OpenAPIWebhooks.json)
    """
    rollback = _opt_object(data, "redemption_rollback", where)
    if rollback is None:
        return None
    r_where = f"{where}.redemption_rollback"
    voucher = _opt_object(rollback, "voucher", r_where) or _opt_object(data, "voucher", where)
    is_card = voucher is not None and (
        voucher.get("type") == "LOYALTY_CARD" or isinstance(voucher.get("loyalty_card"), dict)
    )
    if not is_card:
        return None
    amount = opt_points(rollback, "amount", r_where)
    return None if amount is None else abs(amount)


def _tier(ctype: EventType, name: str, data: dict[str, Any], where: str) -> Tier | None:
    if ctype is EventType.TIER_CHANGED:
        if name.endswith(".left"):
            return None  # left the tier structure: the member has no tier now
        key = "loyalty_tier_to" if name.endswith(("upgraded", "downgraded")) else "loyalty_tier"
        obj = _opt_object(data, key, where)
        if obj is None:
            raise DecodeError(f"{where}.{key} is missing for {name}")
        return _tier_of(obj, f"{where}.{key}")
    # Points events may report the holder's current tier; informative only.
    for key in ("holder_loyalty_tier", "loyalty_tier"):
        obj = _opt_object(data, key, where)
        if obj is not None:
            return _tier_of(obj, f"{where}.{key}")
    return None


def _tier_of(obj: dict[str, Any], where: str) -> Tier:
    tier_id = opt_str(obj, "id", where)
    if not tier_id:
        raise DecodeError(f"{where}.id is missing")
    return Tier(id=tier_id, name=opt_str(obj, "name", where))


def _order(data: dict[str, Any], where: str, *, required: bool) -> OrderRef | None:
    order = _opt_object(data, "order", where)
    if order is None:
        if required:
            raise DecodeError(f"{where}.order is missing")
        return None
    o_where = f"{where}.order"
    order_id = opt_str(order, "id", o_where)
    if not order_id:
        if required:
            raise DecodeError(f"{o_where}.id is missing")
        return None
    metadata = order.get("metadata")
    currency = metadata.get("currency") if isinstance(metadata, dict) else None
    return OrderRef(
        id=order_id,
        amount_minor=opt_int(order, "amount", o_where),
        currency=currency if isinstance(currency, str) and currency else None,
    )
