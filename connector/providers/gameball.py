"""Gameball webhooks (v4 envelope and v3 flat payloads) into canonical loyalty events.

Signature: ``X-GB-Signature`` = plain SHA-1 (not HMAC) of ``payload + ":" + SecretKey``. The
official Node sample hashes ``JSON.stringify(req.body)`` and prints hex; some doc revisions say
base64. We try the exact body bytes first, then the compact JSON re-serialization the sample
does (JS number and key-order rules mimicked), and accept hex (any case) or base64 of the raw
digest (``signature_encoding`` = auto | hex | base64). No timestamp, so no replay window.

Quirks: no event id in any version (ids are hashes of the body); v3 has no event time (occurred_at
falls back to the receive time); no deltas at all, only profile snapshots, so the ledger derives
movements; the v3 doc sample has ``playerUniqueId: null`` (rejected: no customer).

Vendor docs (see providers.md §1):
https://docs.gameball.co/api-reference/webhooks/subscribing (v4 signature sample),
https://docs.gameball.co/api-reference/webhooks/webhook-topics/profile-updates,
https://docs.gameball.co/api-reference/webhooks/webhook-topics/notifications,
https://developer.gameball.co/v3.0/api-reference/webhooks (v3),
https://developer.gameball.co/v3.0/api-reference/webhooks/notifications-webhook-1 (v3 profile).
"""

# Mapping (Gameball -> canonical LoyaltyEvent)
#
# | Gameball payload                    | type             | fields
# |-------------------------------------|------------------|------------------------------------
# | v4 customer.profile.updated         | BALANCE_SNAPSHOT | balance=data.activated_points,
# |                                     |                  | pending_points=data.pending_points,
# |                                     |                  | counters.total=data.total_points,
# |                                     |                  | tier=(tier_name, tier_order),
# |                                     |                  | occurred_at=created_at
# | v4 customer.notification.push       | NOTIFICATION     | data[] = one message in several
# |                                     |                  | languages: title, body, icon, local
# |                                     |                  | of data[0]; title.<local>, body.<local>
# |                                     |                  | per item; locales="en,fr"
# | v4 any other event                  | OTHER            | verbatim event name
# | v3 Customer Profile (playerUniqueId | BALANCE_SNAPSHOT | balance=activatedPoints, else
# |   without "notifications")          |                  | walletPoints, else totalPoints;
# |                                     |                  | pending_points=pendingPoints;
# |                                     |                  | counters.total=totalPoints, else
# |                                     |                  | walletPoints; tier=(levelName,
# |                                     |                  | levelOrder); occurred_at=received
# | v3 Notifications (notifications[])  | NOTIFICATION     | as v4, plus the v3 int "type"
#
# customer_id: v4 customer_id, v3 playerUniqueId; missing -> DecodeError.
#
# v3 payloads carry no event name; provider_event_type is the v4 topic of the same webhook and
# attributes["webhook_version"] = "v3". Attributes use the same keys in both versions: email,
# mobile_number, referral_code, referral_link (+ gb_customer_id, client_id in v4).
#
# Balance = activated points: that is what the customer can spend now (architecture §4,
# "available balance"); pending points are reported separately and total (activated + pending)
# goes to counters.total. The oldest v3 sample has only walletPoints, used as the best available.
#
# Notifications: the docs say data[] holds "notification data in multiple languages" (the sample
# is one message in en and fr), so a delivery is ONE notification event, not one per item;
# attributes are a flat string map, hence the per-locale keys. An empty list is a valid delivery
# with nothing to report: zero events.

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from connector.errors import ConfigError, DecodeError, VerificationError
from connector.models import SYNTHETIC_ID, EventType, LoyaltyEvent, PointCounters, Provider, Tier
from connector.providers import BaseProvider, DecodeContext, Option, RequestTarget, Secrets, Where
from connector.providers.base import (
    build_event,
    constant_time_equals,
    expect_object,
    hashed_event_id,
    lower_headers,
    opt_int,
    opt_points,
    opt_str,
    parse_object,
    parse_time,
    req_str,
    require_header,
    resolve_tenant,
)

SIGNATURE_HEADER = "x-gb-signature"
VERSION_HEADER = "x-gb-webhook-version"
PROFILE_UPDATED = "customer.profile.updated"
NOTIFICATION_PUSH = "customer.notification.push"
ENCODINGS = ("auto", "hex", "base64")
NOTIFICATION_FIELDS = ("title", "body", "icon", "local", "type")


def signature_digest(payload: bytes, secret_key: str) -> bytes:
    """Raw SHA-1 digest of ``payload + ":" + secret`` (Gameball's scheme; not an HMAC)."""
    return hashlib.sha1(payload + b":" + secret_key.encode("utf-8"), usedforsecurity=False).digest()


class Gameball(BaseProvider):
    key = "gameball"
    provider = Provider.GAMEBALL
    kept_headers = (SIGNATURE_HEADER, VERSION_HEADER)
    options = (
        Option(
            "SECRET_KEY",
            None,
            "Gameball SecretKey used in `X-GB-Signature`",
            secret=True,
            required=True,
            test="gb-test-secret",
            dev="dev-gameball-secret",
        ),
        Option("SIGNATURE_ENCODING", "auto", "`auto`, `hex` or `base64` (their docs conflict)"),
    )
    # retries at +5, +20, +60 min, then discards (gameball-docs api-reference/webhooks/overview)
    retry_window_s = 90 * 60

    def check_options(self, values: Secrets, where: Where) -> None:
        if values.get("signature_encoding", "auto") not in ENCODINGS:
            raise ConfigError(f"{where('SIGNATURE_ENCODING')}: expected auto, hex or base64")

    def bind(self, secrets: Secrets) -> GameballVerifier:
        return GameballVerifier(secrets)

    def decode(
        self, body: bytes, headers: Mapping[str, str], context: DecodeContext
    ) -> list[LoyaltyEvent]:
        obj = parse_object(body)
        version = lower_headers(headers).get(VERSION_HEADER, "").strip().lower()
        decoder = _Decoder(body, context)
        if "event" in obj or version in ("v4", "4"):
            return decoder.v4(obj)
        return decoder.v3(obj)

    def sign(
        self, body: bytes, secrets: Secrets, target: RequestTarget | None = None
    ) -> tuple[bytes, dict[str, str]]:
        digest = signature_digest(body, secrets["secret_key"])
        return body, {"X-GB-Signature": digest.hex(), "Content-Type": "application/json"}


class GameballVerifier:
    """`Gameball.verify` bound to one secret: the encoding checked and the suffix encoded once."""

    __slots__ = ("_encoding", "_suffix", "configured")

    def __init__(self, secrets: Secrets) -> None:
        secret_key = secrets.get("secret_key")
        self.configured = bool(secret_key)
        self._suffix = b":" + secret_key.encode("utf-8") if secret_key else b""
        self._encoding = (secrets.get("signature_encoding") or "auto").strip().lower()
        if secret_key and self._encoding not in ENCODINGS:
            raise ConfigError(
                f"gameball signature_encoding {self._encoding!r} is invalid; use one of "
                + ", ".join(ENCODINGS)
            )

    def verify(
        self, body: bytes, headers: Mapping[str, str], target: RequestTarget | None = None
    ) -> None:
        if not self.configured:
            raise VerificationError("gameball secret_key is not configured")
        given = require_header(headers, "X-GB-Signature").strip()
        for payload in _signed_payload_candidates(body):
            digest = hashlib.sha1(payload + self._suffix, usedforsecurity=False).digest()
            if _matches(given, digest, self._encoding):
                return
        raise VerificationError("X-GB-Signature does not match the body")


# ---------------------------------------------------------------------------------------------
# signature


def _matches(given: str, digest: bytes, encoding: str) -> bool:
    ok = False
    if encoding in ("auto", "hex"):
        ok |= constant_time_equals(given.lower().encode(), digest.hex().encode())
    if encoding in ("auto", "base64"):
        ok |= constant_time_equals(given.encode(), base64.b64encode(digest))
    return ok


def _signed_payload_candidates(body: bytes) -> Iterator[bytes]:
    """The exact bytes, then what ``JSON.stringify(JSON.parse(body))`` would have produced.

    Lazy: re-serializing costs ~40x the hash, so it only happens when the raw bytes fail.
    """
    yield body
    compact = js_compact_json(body)
    if compact is not None and compact != body:
        yield compact


def js_compact_json(body: bytes) -> bytes | None:
    """``JSON.stringify(JSON.parse(body))`` as Node would print it, or None if not JSON."""
    try:
        value = json.loads(body.decode("utf-8"), parse_float=float, parse_constant=_no_constant)
        return _js_dump(value).encode("utf-8", errors="surrogatepass")
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def _js_dump(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return _js_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_js_dump(v) for v in value) + "]"
    # JS objects list array-index keys first (ascending), then the rest in insertion order.
    items = list(value.items())
    index_keys = sorted(
        (k for k, _ in items if _ARRAY_INDEX.fullmatch(k) and int(k) < 2**32 - 1), key=int
    )
    index_set = set(index_keys)
    ordered = [(k, value[k]) for k in index_keys] + [(k, v) for k, v in items if k not in index_set]
    return (
        "{"
        + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_js_dump(v)}" for k, v in ordered)
        + "}"
    )


def _js_number(value: int | float) -> str:
    """ECMAScript Number::toString of the double JSON.parse would have made."""
    if isinstance(value, int) and abs(value) < 2**53:
        return str(value)
    try:
        x = float(value)
    except OverflowError:
        return "null"
    if not math.isfinite(x):
        return "null"  # JSON.parse("1e400") is Infinity, which JSON.stringify prints as null
    if x == 0:
        return "0"  # also -0
    sign, digit_tuple, exp = Decimal(repr(x)).as_tuple()  # repr = shortest round-trip digits
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exp, int)
    k = len(digits)
    n = exp + len(digit_tuple)  # value = 0.digits * 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"
    return ("-" if sign else "") + text


# ---------------------------------------------------------------------------------------------
# decoding


class _Decoder:
    def __init__(self, body: bytes, context: DecodeContext) -> None:
        self.body = body
        self.context = context
        self.tenant = resolve_tenant(context)

    def event(
        self,
        customer_id: str,
        name: str,
        kind: EventType,
        occurred_at: datetime | None,
        attributes: Mapping[str, Any],
        **fields: Any,
    ) -> list[LoyaltyEvent]:
        """The delivery's one event (so no index suffix is needed in its id).

        Gameball sends no id, and a profile that returns to an earlier state is byte-identical
        to it, so the id is the hash of the body AND the delivery (docs/delivery-semantics.md).
        """
        event_id = hashed_event_id(
            Provider.GAMEBALL, self.tenant, self.body, delivery=self.context.delivery
        )
        return [
            build_event(
                provider=Provider.GAMEBALL,
                tenant=self.tenant,
                customer_id=customer_id,
                event_id=event_id,
                provider_event_type=name,
                type=kind,
                occurred_at=occurred_at,
                context=self.context,
                attributes={SYNTHETIC_ID: "true"} | dict(attributes),
                **fields,
            )
        ]

    def snapshot(
        self,
        customer_id: str,
        occurred_at: datetime | None,
        balance: Decimal | None,
        pending: Decimal | None,
        total: Decimal | None,
        tier: Tier | None,
        attributes: Mapping[str, Any],
    ) -> list[LoyaltyEvent]:
        """The profile as a BALANCE_SNAPSHOT (v3 and v4 name its fields differently)."""
        return self.event(
            customer_id,
            PROFILE_UPDATED,
            EventType.BALANCE_SNAPSHOT,
            occurred_at,
            attributes,
            balance=balance,
            pending_points=pending,
            counters=PointCounters(total=total) if total is not None else None,
            tier=tier,
        )

    def notification(
        self,
        customer_id: str,
        occurred_at: datetime | None,
        items: list[dict[str, Any]],
        where: str,
        attributes: dict[str, Any],
    ) -> list[LoyaltyEvent]:
        """One event for the notification; its items are the same message in several languages."""
        if not items:
            return []
        attrs = dict(attributes)
        for i, item in enumerate(items):
            text = {k: opt_str(item, k, f"{where}[{i}]") for k in NOTIFICATION_FIELDS}
            if i == 0:
                attrs |= text  # the first item is the primary language
            if text["local"]:
                attrs |= {f"{k}.{text['local']}": text[k] for k in ("title", "body")}
        locales = [opt_str(item, "local", f"{where}[{i}]") for i, item in enumerate(items)]
        attrs["locales"] = ",".join(loc for loc in locales if loc) or None
        return self.event(
            customer_id, NOTIFICATION_PUSH, EventType.NOTIFICATION, occurred_at, attrs
        )

    def v4(self, env: dict[str, Any]) -> list[LoyaltyEvent]:
        event_name = req_str(env, "event", "body")
        customer_id = req_str(env, "customer_id", "body")
        occurred_at = parse_time(env.get("created_at"), "body.created_at")
        common = {
            "gb_customer_id": opt_str(env, "gb_customer_id", "body"),
            "client_id": opt_str(env, "client_id", "body"),
        }
        if event_name == PROFILE_UPDATED:
            data = expect_object(env.get("data"), "body.data")
            total = opt_points(data, "total_points", "body.data")
            return self.snapshot(
                customer_id,
                occurred_at,
                opt_points(data, "activated_points", "body.data"),
                opt_points(data, "pending_points", "body.data"),
                total,
                _tier(data, "tier_name", "tier_order", "body.data"),
                common | _profile_attributes(data, "body.data", snake=True),
            )
        if event_name == NOTIFICATION_PUSH:
            items = _notification_list(env.get("data"), "body.data")
            return self.notification(customer_id, occurred_at, items, "body.data", common)
        return self.event(customer_id, event_name, EventType.OTHER, occurred_at, common)

    def v3(self, obj: dict[str, Any]) -> list[LoyaltyEvent]:
        if "playerUniqueId" not in obj and "notifications" not in obj:
            raise DecodeError(
                "body is neither a Gameball v4 envelope (event, customer_id, data) nor a v3 "
                "payload (playerUniqueId): playerUniqueId is missing"
            )
        customer_id = req_str(obj, "playerUniqueId", "body")
        version = {"webhook_version": "v3"}
        if "notifications" in obj:
            items = _notification_list(obj.get("notifications"), "body.notifications")
            return self.notification(customer_id, None, items, "body.notifications", version)
        activated = opt_points(obj, "activatedPoints", "body")
        wallet = opt_points(obj, "walletPoints", "body")
        total = opt_points(obj, "totalPoints", "body")
        return self.snapshot(
            customer_id,
            None,  # v3 carries no time: the receive time is used
            next((p for p in (activated, wallet, total) if p is not None), None),
            opt_points(obj, "pendingPoints", "body"),
            total if total is not None else wallet,
            _tier(obj, "levelName", "levelOrder", "body"),
            version | _profile_attributes(obj, "body", snake=False),
        )


def _tier(obj: Mapping[str, Any], name_key: str, order_key: str, where: str) -> Tier | None:
    name = opt_str(obj, name_key, where)
    order = opt_int(obj, order_key, where)
    if order is not None and not -(2**31) <= order < 2**31:  # Tier.order is an Avro int
        raise DecodeError(f"{where}.{order_key} is out of range for a tier rank: {order}")
    if name is None and order is None:
        return None
    return Tier(name=name, order=order)


_PROFILE_KEYS = {  # canonical attribute -> (v4 key, v3 key)
    "email": ("email", "email"),
    "mobile_number": ("mobile_number", "mobileNumber"),
    "referral_code": ("referral_code", "referralCode"),
    "referral_link": ("referral_link", "referralDeepLink"),
}


def _profile_attributes(obj: Mapping[str, Any], where: str, *, snake: bool) -> dict[str, Any]:
    return {
        name: opt_str(obj, keys[0] if snake else keys[1], where)
        for name, keys in _PROFILE_KEYS.items()
    }


def _notification_list(value: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(value, dict):  # tolerate a single notification sent as an object
        return [value]
    if not isinstance(value, list):
        raise DecodeError(f"{where} must be a JSON array of notifications")
    return [expect_object(item, f"{where}[{i}]") for i, item in enumerate(value)]
