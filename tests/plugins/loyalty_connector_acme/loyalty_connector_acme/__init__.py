"""Acme Loyalty webhooks (a made-up platform: the connector's plugin example and test).

Signature: `X-Acme-Signature: sha256=<hex HMAC-SHA256(secret, body)>` over the exact bytes; no
timestamp, so no replay window. Every delivery is one JSON object with an event id.
"""

# Mapping (Acme `type` -> canonical type; fields)
#
# | Acme type      | canonical     | fields                                             |
# |----------------|---------------|----------------------------------------------------|
# | points.earned  | POINTS_EARNED | points_delta = +points, balance, movement_id = id  |
# | points.spent   | POINTS_REDEEMED | points_delta = -points, balance, movement_id = id |
# | anything else  | OTHER         | verbatim type                                      |
#
# customer = member (missing -> DecodeError); occurred_at = at; tenant = URL tenant or default.

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from connector.errors import DecodeError, VerificationError
from connector.models import EventType, LoyaltyEvent
from connector.providers import BaseProvider, DecodeContext, Option, RequestTarget, Secrets
from connector.providers.base import (
    build_event,
    constant_time_equals,
    opt_points,
    opt_str,
    parse_json,
    parse_object,
    parse_time,
    req_str,
    require_header,
    resolve_tenant,
)

TYPES = {"points.earned": EventType.POINTS_EARNED, "points.spent": EventType.POINTS_REDEEMED}


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Acme(BaseProvider):
    key = "acme"
    kept_headers = ("x-acme-signature",)
    options = (
        Option(
            "SECRET",
            None,
            "Acme webhook secret (`X-Acme-Signature`)",
            secret=True,
            required=True,
            test="acme-test-secret",
        ),
    )

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        secrets: Secrets,
        target: RequestTarget | None = None,
    ) -> None:
        secret = secrets.get("secret")
        if not secret:
            raise VerificationError("acme secret is not configured")
        given = require_header(headers, "X-Acme-Signature").strip().lower()
        if not constant_time_equals(given, signature(secret, body)):
            raise VerificationError("X-Acme-Signature does not match the body")

    def decode(
        self, body: bytes, headers: Mapping[str, str], context: DecodeContext
    ) -> list[LoyaltyEvent]:
        obj = parse_object(body)
        kind = req_str(obj, "type", "body")
        ctype = TYPES.get(kind, EventType.OTHER)
        delta = opt_points(obj, "points", "body")
        if delta is not None and ctype is EventType.POINTS_REDEEMED:
            delta = -delta
        event_id = req_str(obj, "id", "body")
        return [
            build_event(
                provider=self,
                tenant=resolve_tenant(context),
                customer_id=req_str(obj, "member", "body"),
                event_id=event_id,
                provider_event_type=kind,
                type=ctype,
                occurred_at=parse_time(obj.get("at"), "body.at"),
                context=context,
                movement_id=event_id if ctype is not EventType.OTHER else None,
                points_delta=delta if ctype is not EventType.OTHER else None,
                balance=opt_points(obj, "balance", "body"),
                attributes={"program": opt_str(obj, "program", "body")},
            )
        ]

    def delivery_id(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        try:
            obj = parse_json(body)
        except DecodeError:
            return None
        value = obj.get("id") if isinstance(obj, dict) else None
        return value if isinstance(value, str) and value else None

    def sign(
        self, body: bytes, secrets: Secrets, target: RequestTarget | None = None
    ) -> tuple[bytes, dict[str, str]]:
        return body, {"X-Acme-Signature": signature(secrets["secret"], body)}
