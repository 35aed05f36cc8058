"""Wix Loyalty webhooks: the body is a compact JWT (RS256, `kid` header) signed by Wix.

Verification checks the token with the app's public key, RS256 only (no `none`, no HMAC, so a
token "signed" with the public key as an HMAC secret is refused), and requires `exp` and `iat`
(Wix sets both). Three JSON layers sit inside: claims `data` (string) -> {eventType, instanceId,
data, identity} where `data`/`identity` are stringified JSON -> the entity event {id,
entityFqdn, slug, entityId, eventTime, actionEvent|updatedEvent|createdEvent|deletedEvent}.
Account events carry cumulative counters, not deltas; the ledger derives movements from them.
Docs: https://dev.wix.com/docs/rest/articles/getting-started/webhooks ,
https://dev.wix.com/docs/rest/crm/loyalty-program/accounts/points-updated ,
https://dev.wix.com/docs/build-apps/develop-your-app/access/authentication/verify-requests-received-from-wix
(see providers.md §4).
"""

# Mapping (eventType -> canonical type; fields). Account = actionEvent.body.account |
# updatedEvent.currentEntity | createdEvent.entity | deletedEvent.deletedEntity.
#
# | Wix eventType                                   | canonical                | fields          |
# |-------------------------------------------------|--------------------------|-----------------|
# | wix.loyalty.v1.account_points_updated           | BALANCE_SNAPSHOT         | balance =       |
# | wix.loyalty.v1.account_updated                  | BALANCE_SNAPSHOT         |  points.balance,|
# |                                                 |                          | counters earned/|
# |                                                 |                          | redeemed/       |
# |                                                 |                          | adjusted/expired|
# |                                                 |                          | revision, tier  |
# | wix.loyalty.v1.account_created                  | CUSTOMER_REGISTERED (id) | + the snapshot  |
# |                                                 | + BALANCE_SNAPSHOT       |   as a second   |
# |                                                 |   (id + ":snapshot")     |   event         |
# | wix.loyalty.v1.account_deleted (not documented) | CUSTOMER_DELETED         |                 |
# | wix.loyalty.v1.account_reward_availability_...  | OTHER (1)                | reward_available|
# | anything else                                   | OTHER, verbatim type (2) |                 |
#
# customer = account.contactId, else account.memberId (no customer -> DecodeError); tenant = URL
# tenant, else instanceId; event_id = entity event `id` ("allows clients to ignore duplicate
# webhooks"); occurred_at = eventTime; revision = int(account.revision) (a string in payloads),
# required on every snapshot (missing -> DecodeError: no total order without it).
# (1) A derived flag about rewards, not a change of the member's profile or points.
# (2) With the member taken from the entity (contactId/memberId) or the MEMBER identity; an
#     event about no member at all (earning rules, program settings) yields no events: there
#     is nothing to say about a member, and the raw topic keeps the delivery.

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from connector.errors import ConfigError, DecodeError, VerificationError
from connector.models import (
    NO_TIER,
    TENANT_RE,
    EventType,
    LoyaltyEvent,
    PointCounters,
    Provider,
    Tier,
)
from connector.providers import BaseProvider, DecodeContext, Option, RequestTarget, Secrets, Where
from connector.providers.base import (
    build_event,
    expect_object,
    opt_int,
    opt_points,
    opt_str,
    parse_object,
    parse_time,
    req_str,
    resolve_tenant,
)

ACCOUNT_FQDN = "wix.loyalty.v1.account"
_PREFIX = "wix.loyalty.v1."
SNAPSHOT_TYPES = frozenset({_PREFIX + "account_points_updated", _PREFIX + "account_updated"})
CREATED_TYPE = _PREFIX + "account_created"
DELETED_TYPE = _PREFIX + "account_deleted"
TOKEN_LIFETIME_SECONDS = 3600
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


@functools.lru_cache(maxsize=8)
def _public_key(pem: str) -> RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise ConfigError(
            "wix public_key is not a PEM public key (copy it from the app dashboard)"
        ) from None
    if not isinstance(key, RSAPublicKey):
        raise ConfigError("wix public_key must be an RSA key (Wix signs with RS256)")
    return key


@functools.lru_cache(maxsize=8)
def _private_key(pem: str) -> RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError("wix private_key is not an unencrypted PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError("wix private_key must be an RSA key (RS256)")
    return key


def _leeway(secrets: Secrets) -> float:
    raw = secrets.get("leeway") or "0"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"wix leeway must be a number of seconds >= 0, got {raw!r}")
    return value


def new_keypair() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh RSA-2048 key pair."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@functools.cache
def test_keypair() -> tuple[str, str]:
    """The tests' key pair: made once per process, never stored."""
    return new_keypair()


test_keypair.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest


class WixVerifier:
    """`Wix.verify` bound to one public key: the PEM parsed and the leeway read once.

    The JWS check is done here rather than by `jwt.decode`, with the same rules and the same
    messages: RS256 only, strict base64url, `kid` a string, no `crit` extension but `b64`,
    `exp` and `iat` required, `iat`/`nbf` not in the future, `exp` not past (each with the
    leeway), `sub`/`jti` strings. PyJWT 2.15 spends ~80 % of a verification checking the token's
    alphabet one character at a time; `looks_like_jwt` has done that with one regex.
    """

    __slots__ = ("_key", "_leeway", "configured")
    _PADDING = padding.PKCS1v15()

    def __init__(self, secrets: Secrets) -> None:
        pem = secrets.get("public_key")
        self.configured = bool(pem)
        self._key = _public_key(pem) if pem else None
        self._leeway = _leeway(secrets) if pem else 0.0

    def verify(
        self, body: bytes, headers: Mapping[str, str], target: RequestTarget | None = None
    ) -> None:
        if self._key is None:
            raise VerificationError("wix public_key is not configured")
        token = _token_text(body)
        if token is None:
            raise VerificationError("body is not a JWT")
        header_seg, payload_seg, signature_seg = token.encode("ascii").split(b".")
        header = _json_object(_b64url(header_seg))
        if header.get("b64", True) is False:
            raise _malformed()  # a detached payload (RFC 7797): Wix never sends one
        payload = _b64url(payload_seg)
        signature = _b64url(signature_seg)
        if "kid" in header and not isinstance(header["kid"], str):
            raise VerificationError("token rejected (InvalidTokenError)")
        if "crit" in header:  # RFC 7515 4.1.11: b64 (RFC 7797) is the one extension known
            crit = header["crit"]
            if not isinstance(crit, list) or not crit or any(e != "b64" for e in crit):
                raise VerificationError("token rejected (InvalidTokenError)")
            if "b64" not in header:
                raise VerificationError("token rejected (InvalidTokenError)")
        if header.get("alg") != "RS256":
            raise VerificationError("token algorithm not allowed (RS256 only)")
        try:
            self._key.verify(
                signature, header_seg + b"." + payload_seg, self._PADDING, hashes.SHA256()
            )
        except InvalidSignature:
            raise VerificationError("token signature does not match the public key") from None
        _check_claims(_json_object(payload), time.time(), self._leeway)


def _malformed() -> VerificationError:
    return VerificationError("body is not a well-formed JWT")


def _b64url(segment: bytes) -> bytes:
    """Strict base64url (no padding, canonical trailing bits), as PyJWT decodes segments."""
    if len(segment) % 4 == 1:
        raise _malformed()
    try:
        decoded = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (ValueError, binascii.Error):
        raise _malformed() from None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment:
        raise _malformed()
    return decoded


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise _malformed() from None
    if not isinstance(value, dict):
        raise _malformed()
    return value


def _int_claim(value: Any) -> int | None:
    try:
        return int(value)
    except (ValueError, TypeError, OverflowError):
        return None


def _check_claims(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    """PyJWT's claim checks for `require=["exp", "iat"]`, `verify_aud=False`, no issuer."""
    for claim in ("exp", "iat"):
        if claims.get(claim) is None:
            raise VerificationError(f"token lacks the {claim} claim")
    iat = _int_claim(claims["iat"])
    if iat is None:
        raise VerificationError("token rejected (InvalidIssuedAtError)")
    if iat > now + leeway:
        raise VerificationError("token is not valid yet (iat/nbf in the future)")
    if "nbf" in claims:
        nbf = _int_claim(claims["nbf"])
        if nbf is None:
            raise _malformed()
        if nbf > now + leeway:
            raise VerificationError("token is not valid yet (iat/nbf in the future)")
    exp = _int_claim(claims["exp"])
    if exp is None:
        raise _malformed()
    if exp <= now - leeway:
        raise VerificationError("token expired (exp is in the past)")
    if "sub" in claims and not isinstance(claims["sub"], str):
        raise VerificationError("token rejected (InvalidSubjectError)")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise VerificationError("token rejected (InvalidJTIError)")


def looks_like_jwt(text: str) -> bool:
    return bool(_JWT_SHAPE.match(text))


class Wix(BaseProvider):
    key = "wix"
    provider = Provider.WIX
    # Everything Wix asserts is inside the signed token; no request header carries ids.
    kept_headers = ()
    options = (
        Option(
            "PUBLIC_KEY",
            None,
            "the app's public key (PEM text) verifying RS256 JWTs",
            required=True,
        ),
        Option(
            "PUBLIC_KEY_FILE", None, "path of a PEM file, instead of `CONNECTOR_WIX_PUBLIC_KEY`"
        ),
        Option(
            "PRIVATE_KEY",
            None,
            "private key (PEM) used only by `replay` to sign test JWTs",
            secret=True,
        ),
        Option("PRIVATE_KEY_FILE", None, "path of that private key PEM file"),
    )
    content_type = "text/plain"  # the body is the JWT itself

    def check_options(self, values: Secrets, where: Where) -> None:
        for k in ("public_key", "private_key"):
            pem = values.get(k)
            if pem and "-----BEGIN" not in pem:
                raise ConfigError(f"{where(k.upper())}: expected PEM text (-----BEGIN ...)")

    def test_secrets(self) -> dict[str, str]:
        private, public = test_keypair()
        return {"public_key": public, "private_key": private}

    def dev_secrets(self, directory: Path) -> dict[str, str]:
        """A key pair made once under `directory` (the private key chmod 600)."""
        private = directory / "wix-private.pem"
        public = directory / "wix-public.pem"
        if not private.exists() or not public.exists():
            private_pem, public_pem = new_keypair()
            private.write_text(private_pem)
            public.write_text(public_pem)
            private.chmod(0o600)
        return {
            "public_key_file": str(public.resolve()),
            "private_key_file": str(private.resolve()),
        }

    def bind(self, secrets: Secrets) -> WixVerifier:
        return WixVerifier(secrets)

    def sign(
        self, body: bytes, secrets: Secrets, target: RequestTarget | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """A JWT as Wix would send it, from a token (returned as is) or a readable document.

        The document is the claims `{"data": ...}` or the envelope `{"eventType", "instanceId",
        "data", "identity"}`; nested objects are stringified like Wix does.
        """
        headers = {"content-type": "text/plain"}
        token = _token_text(body)
        if token is not None:
            return token.encode("ascii"), headers
        private = secrets.get("private_key")
        if not private:
            raise ConfigError("wix private_key is needed to sign a payload (replay/tests only)")
        claims = {"data": _claims_data(_document(body))}
        now = int(time.time())
        claims_all: dict[str, Any] = {**claims, "iat": now, "exp": now + TOKEN_LIFETIME_SECONDS}
        signed = jwt.encode(
            claims_all,
            _private_key(private),
            algorithm="RS256",
            headers={"kid": secrets.get("kid") or "connector-replay"},
        )
        return signed.encode("ascii"), headers

    def delivery_id(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        # The entity event id is inside the token; reading it unverified is cheap and only
        # names the raw record (retries of one webhook share it).
        try:
            event = _entity_event(_envelope(body))[0]
            return req_str(event, "id", "event")
        except DecodeError:
            return None

    def decode(
        self, body: bytes, headers: Mapping[str, str], context: DecodeContext
    ) -> list[LoyaltyEvent]:
        envelope = _envelope(body)
        event_type = req_str(envelope, "eventType", "envelope")
        instance_id = opt_str(envelope, "instanceId", "envelope")
        event, where = _entity_event(envelope)
        event_id = req_str(event, "id", where)
        occurred = parse_time(event.get("eventTime"), f"{where}.eventTime")
        if context.tenant is None and instance_id and not TENANT_RE.match(instance_id):
            # The tenant is part of the member key `wix:{tenant}:{customer}`: a ':' (or any
            # character a URL tenant may not have) would let two members share one key.
            raise DecodeError(
                f"envelope.instanceId {instance_id[:80]!r} is not a valid tenant (1-64 letters, "
                "digits, '.', '_' or '-'); post to /webhooks/wix/<tenant> to name the tenant"
            )
        tenant = resolve_tenant(context, instance_id)
        account, a_where = _account(event, where)

        is_account_event = event_type in SNAPSHOT_TYPES or event_type in (
            CREATED_TYPE,
            DELETED_TYPE,
        )
        if account is None and is_account_event:
            raise DecodeError(
                f"{where} has no account (expected actionEvent.body.account, "
                "updatedEvent.currentEntity or createdEvent.entity)"
            )
        customer_id = None
        if account is not None:
            customer_id = opt_str(account, "contactId", a_where) or opt_str(
                account, "memberId", a_where
            )
        if not customer_id and is_account_event:
            raise DecodeError(
                f"no customer id: {a_where}.contactId and {a_where}.memberId are missing"
            )
        if not customer_id:
            customer_id = _identity_member(envelope)
        if not customer_id:
            return []

        attributes: dict[str, Any] = {"instance_id": instance_id}
        if account is not None:
            contact = account.get("contact")
            attributes.update(
                account_id=opt_str(account, "id", a_where) or opt_str(event, "entityId", where),
                member_id=opt_str(account, "memberId", a_where),
                email=opt_str(contact, "email", f"{a_where}.contact")
                if isinstance(contact, dict)
                else None,
            )
            if isinstance(account.get("rewardAvailable"), bool):
                attributes["reward_available"] = str(account["rewardAvailable"]).lower()
        if event.get("triggeredByAnonymizeRequest") is True:
            attributes["anonymize_request"] = "true"

        common: dict[str, Any] = {
            "provider": self.provider,
            "tenant": tenant,
            "customer_id": customer_id,
            "provider_event_type": event_type,
            "occurred_at": occurred,
            "context": context,
            "attributes": attributes,
        }
        if event_type in SNAPSHOT_TYPES and account is not None:
            return [
                build_event(
                    event_id=event_id,
                    type=EventType.BALANCE_SNAPSHOT,
                    **common,
                    **_snapshot(account, a_where),
                )
            ]
        if event_type == CREATED_TYPE and account is not None:
            snapshot = _snapshot(account, a_where)
            return [
                build_event(
                    event_id=event_id,
                    type=EventType.CUSTOMER_REGISTERED,
                    revision=snapshot["revision"],
                    tier=snapshot["tier"],
                    **common,
                ),
                build_event(
                    event_id=f"{event_id}:snapshot",
                    type=EventType.BALANCE_SNAPSHOT,
                    **common,
                    **snapshot,
                ),
            ]
        if event_type == DELETED_TYPE:
            return [build_event(event_id=event_id, type=EventType.CUSTOMER_DELETED, **common)]
        return [build_event(event_id=event_id, type=EventType.OTHER, **common)]


# ---------------------------------------------------------------------------------------------


def _unverified_payload(token: str) -> bytes:
    """The claims segment of a compact JWS, base64url-decoded, signature NOT checked.

    What `jwt.api_jws.decode(verify_signature=False)` returns, at a twentieth of its cost
    (it parses and validates the header too, which nothing here reads): the worker decodes
    every Wix webhook, and the bridge has already verified the signature of each.
    """
    segments = token.split(".")
    if len(segments) != 3:
        raise DecodeError("body is not a decodable JWT (expected three segments)")
    claims = segments[1]
    try:
        return base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4))
    except (ValueError, binascii.Error):
        raise DecodeError("body is not a decodable JWT (claims are not base64url)") from None


def _token_text(body: bytes) -> str | None:
    try:
        text = body.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    return text if looks_like_jwt(text) else None


def _document(body: bytes) -> dict[str, Any]:
    return parse_object(body, "Wix document")


def _claims_data(doc: dict[str, Any]) -> str:
    """The `data` claim (a string) of a readable claims or envelope document."""
    if "eventType" in doc:
        envelope = dict(doc)
        for key in ("data", "identity"):
            if key in envelope and not isinstance(envelope[key], str):
                envelope[key] = _compact(envelope[key])
        return _compact(envelope)
    if "data" not in doc:
        raise DecodeError(
            "Wix document needs `eventType` (an envelope) or `data` (the token claims)"
        )
    data = doc["data"]
    if isinstance(data, str):
        return data
    return _claims_data(expect_object(data, "claims.data"))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_number)


def _number(value: Any) -> Any:
    # parse_json reads floats as Decimal; write them back as the same JSON number.
    if isinstance(value, Decimal):
        # int(Decimal("1e999999999")) would take minutes (found by benchmarks/fuzz.py)
        if value.is_finite() and abs(value.adjusted()) > 400:
            raise DecodeError(f"number {value} is out of range")
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _envelope(body: bytes) -> dict[str, Any]:
    """{eventType, instanceId, data, identity} from the token (unverified) or a readable doc.

    The signature is not checked here: the bridge verified it, and decode also runs offline.
    """
    token = _token_text(body)
    if token is not None:
        payload = _unverified_payload(token)
        # parse_json, not PyJWT's json.loads: same number and lone-surrogate rules as elsewhere
        claims = parse_object(payload, "token claims")
        if claims.get("data") is None:
            raise DecodeError("token claims.data is missing")
        data = claims["data"]
    else:
        doc = _document(body)
        data = doc if "eventType" in doc else doc.get("data")
        if data is None:
            raise DecodeError("body is neither a JWT nor a Wix claims/envelope document")
    return _json_layer(data, "claims.data")


def _json_layer(value: Any, where: str) -> dict[str, Any]:
    """A layer Wix sends as stringified JSON; objects are accepted too (docs print both)."""
    if isinstance(value, str):
        # surrogatepass: a lone surrogate in the claims becomes a "not UTF-8" DecodeError
        return parse_object(value.encode("utf-8", "surrogatepass"), where)
    return expect_object(value, where)


def _entity_event(envelope: dict[str, Any]) -> tuple[dict[str, Any], str]:
    if envelope.get("data") is None:
        raise DecodeError("envelope.data is missing (the entity event)")
    return _json_layer(envelope["data"], "envelope.data"), "envelope.data"


def _account(event: dict[str, Any], where: str) -> tuple[dict[str, Any] | None, str]:
    """The entity the event is about, wherever its kind of event puts it."""
    for outer, inner in (
        ("actionEvent", "body"),
        ("updatedEvent", "currentEntity"),
        ("createdEvent", "entity"),
        ("deletedEvent", "deletedEntity"),
    ):
        obj = event.get(outer)
        if obj is None:
            continue
        obj = expect_object(obj, f"{where}.{outer}")
        entity = obj.get(inner)
        if entity is None:
            continue
        e_where = f"{where}.{outer}.{inner}"
        entity = expect_object(entity, e_where)
        if outer == "actionEvent":
            # action bodies wrap the entity: {"account": {...}} (or {"coupon": ...} etc.)
            nested = entity.get("account")
            if nested is not None:
                return expect_object(nested, f"{e_where}.account"), f"{e_where}.account"
            for key, value in entity.items():
                if isinstance(value, dict):
                    return value, f"{e_where}.{key}"
        return entity, e_where
    return None, where


def _identity_member(envelope: dict[str, Any]) -> str | None:
    identity = envelope.get("identity")
    if identity is None:
        return None
    try:
        ident = _json_layer(identity, "envelope.identity")
    except DecodeError:
        return None
    if ident.get("identityType") != "MEMBER":
        return None
    member = ident.get("memberId")
    return member if isinstance(member, str) and member else None


def _snapshot(account: dict[str, Any], where: str) -> dict[str, Any]:
    pts = account.get("points")
    p_where = f"{where}.points"
    if pts is None:
        raise DecodeError(f"{p_where} is missing (the account balance)")
    pts = expect_object(pts, p_where)
    # The account is the member's whole state, so its tier is a statement either way: no `tier`,
    # or a tier without an id (the base tier "has no tierId"), means the member has no tier and
    # clears an older one (NO_TIER), rather than saying nothing about tiers.
    tier_obj = account.get("tier")
    tier = NO_TIER
    if tier_obj is not None:
        tier_obj = expect_object(tier_obj, f"{where}.tier")
        tier_id = opt_str(tier_obj, "id", f"{where}.tier")
        tier = Tier(id=tier_id) if tier_id else NO_TIER
    return {
        "balance": opt_points(pts, "balance", p_where),
        "counters": PointCounters(
            earned=opt_points(pts, "earned", p_where),
            redeemed=opt_points(pts, "redeemed", p_where),
            adjusted=opt_points(pts, "adjusted", p_where),
            expired=opt_points(pts, "expired", p_where),
        ),
        "revision": _revision(account, where),
        "tier": tier,
    }


def _revision(account: dict[str, Any], where: str) -> int:
    """`account.revision`, required: the only total order of one account's snapshots.

    Wix keeps it on every stored account ("increments by 1 each time the loyalty account is
    updated"; "the current revision must be passed when updating"), and every documented
    payload carries it. A snapshot without one cannot be placed among the others: its balance
    would never move a revisioned one, but its lifetime counters (earned, adjusted...) would
    still depend on arrival order. It is refused (dead letter) rather than guessed.
    """
    revision = opt_int(account, "revision", where)
    if revision is None:
        raise DecodeError(
            f"{where}.revision is missing (Wix sends it on every account; without it the "
            "snapshot cannot be ordered against the account's others)"
        )
    return revision
