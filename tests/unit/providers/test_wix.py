"""Wix: JWT verification (RS256 only, exp/iat), the three JSON layers, account mapping."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import ConfigError, DecodeError, VerificationError
from connector.models import NO_TIER, EventType, LoyaltyEvent, to_json_obj
from connector.providers.base import DecodeContext, opt_int
from connector.providers.wix import Wix
from tests import support
from tests.support import FIXTURES
from tests.unit.providers.strategies import only_expected_errors, shaped

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CTX = DecodeContext(tenant=None, received_at=RECEIVED)
SECRETS = support.test_secrets()["wix"]
PRIVATE, PUBLIC = support.wix_keypair()
WIX = Wix()
INSTANCE = "a7b6c4d2-5e3f-4b1a-9c8d-7e6f5a4b3c2d"


def fixture(name: str) -> bytes:
    return (FIXTURES / "wix" / f"{name}.json").read_bytes()


def fixture_obj(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture(name))
    return data


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(doc: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """JWT claims for a readable envelope, stringified like Wix does."""
    envelope = dict(doc)
    for key in ("data", "identity"):
        if not isinstance(envelope.get(key), str):
            envelope[key] = json.dumps(envelope[key])
    now = int(time.time())
    return {"data": json.dumps(envelope), "iat": now, "exp": now + 300, **extra}


def token(claims: dict[str, Any], key: str = PRIVATE, alg: str = "RS256") -> bytes:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": "qG1kD2dz"}).encode()


def handmade(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> bytes:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    signature = b64(sign(f"{head}.{body}".encode())) if sign else ""
    return f"{head}.{body}.{signature}".encode()


def decode(body: bytes, tenant: str | None = None) -> list[LoyaltyEvent]:
    return WIX.decode(body, {}, DecodeContext(tenant=tenant, received_at=RECEIVED))


SEED = fixture_obj("seed003_points_updated")


# --- verification -----------------------------------------------------------------------------


def test_valid_token_passes() -> None:
    body, headers = WIX.sign(fixture("seed003_points_updated"), SECRETS)
    WIX.verify(body, headers, SECRETS)
    WIX.verify(body + b"\r\n", headers, SECRETS)  # surrounding whitespace is not the token


def test_tampered_payload_is_rejected() -> None:
    head, payload, sig = token(claims_of(SEED)).split(b".")
    claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    claims["data"] = claims["data"].replace("points_updated", "account_updated")
    forged = b".".join([head, b64(json.dumps(claims).encode()).encode(), sig])
    with pytest.raises(VerificationError, match="signature"):
        WIX.verify(forged, {}, SECRETS)


def test_tampered_signature_byte_is_rejected() -> None:
    body = bytearray(token(claims_of(SEED)))
    body[-5] = ord("A") if body[-5] != ord("A") else ord("B")
    with pytest.raises(VerificationError):
        WIX.verify(bytes(body), {}, SECRETS)


def test_token_from_another_key_is_rejected() -> None:
    other_private, _ = support.other_wix_keypair()
    with pytest.raises(VerificationError, match="signature"):
        WIX.verify(token(claims_of(SEED), other_private), {}, SECRETS)


def test_expired_token_is_rejected() -> None:
    claims = claims_of(SEED, iat=int(time.time()) - 600, exp=int(time.time()) - 60)
    with pytest.raises(VerificationError, match="expired"):
        WIX.verify(token(claims), {}, SECRETS)


def test_leeway_tolerates_a_slightly_expired_token() -> None:
    claims = claims_of(SEED, iat=int(time.time()) - 600, exp=int(time.time()) - 60)
    WIX.verify(token(claims), {}, {**SECRETS, "leeway": "120"})


def test_invalid_leeway_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="leeway"):
        WIX.verify(token(claims_of(SEED)), {}, {**SECRETS, "leeway": "soon"})


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_token_without_exp_or_iat_is_rejected(claim: str) -> None:
    claims = claims_of(SEED)
    del claims[claim]
    with pytest.raises(VerificationError, match=claim):
        WIX.verify(token(claims), {}, SECRETS)


def test_alg_none_is_rejected() -> None:
    body = handmade({"alg": "none", "typ": "JWT"}, claims_of(SEED))
    with pytest.raises(VerificationError, match="algorithm"):
        WIX.verify(body, {}, SECRETS)


def test_hs256_signed_with_the_public_key_is_rejected() -> None:
    # The classic RS/HS confusion: an attacker "signs" with the public key as HMAC secret.
    def sign(data: bytes) -> bytes:
        return hmac.new(PUBLIC.encode(), data, hashlib.sha256).digest()

    body = handmade({"alg": "HS256", "typ": "JWT", "kid": "qG1kD2dz"}, claims_of(SEED), sign)
    with pytest.raises(VerificationError, match="algorithm"):
        WIX.verify(body, {}, SECRETS)


@pytest.mark.parametrize(
    "body",
    [b"", b"hello", b"\xff\xfe", b'{"data": "x"}', b"a.b", b"a.b.c.d", "ä.b.c".encode()],
    ids=["empty", "text", "binary", "json", "two-parts", "four-parts", "non-ascii"],
)
def test_non_jwt_body_is_rejected(body: bytes) -> None:
    with pytest.raises(VerificationError):
        WIX.verify(body, {}, SECRETS)


def test_garbage_with_jwt_shape_is_rejected() -> None:
    with pytest.raises(VerificationError, match="well-formed"):
        WIX.verify(b"abc.def.ghi", {}, SECRETS)


def test_unconfigured_or_bad_public_key() -> None:
    body = token(claims_of(SEED))
    assert not WIX.is_configured({})
    with pytest.raises(VerificationError, match="not configured"):
        WIX.verify(body, {}, {})
    with pytest.raises(ConfigError, match="PEM"):
        WIX.verify(body, {}, {"public_key": "-----BEGIN PUBLIC KEY-----\nnope\n"})


# --- sign -------------------------------------------------------------------------------------


def test_sign_makes_an_rs256_token_with_kid_iat_and_exp() -> None:
    before = int(time.time())
    body, _ = WIX.sign(fixture("seed003_points_updated"), SECRETS)
    header = jwt.get_unverified_header(body.decode())
    claims = jwt.decode(body.decode(), PUBLIC, algorithms=["RS256"])
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["exp"] == claims["iat"] + 3600 and claims["iat"] >= before
    envelope = json.loads(claims["data"])
    assert isinstance(envelope["data"], str) and isinstance(envelope["identity"], str)
    assert json.loads(envelope["data"]) == SEED["data"]


def test_sign_returns_an_existing_token_unchanged() -> None:
    existing = token(claims_of(SEED))
    assert WIX.sign(existing + b"\n", SECRETS)[0] == existing


# --- decode -----------------------------------------------------------------------------------


def test_decode_does_not_verify_the_signature() -> None:
    # decode runs after the bridge verified, and offline; a foreign key must not matter here.
    other_private, _ = support.other_wix_keypair()
    events = decode(token(claims_of(SEED), other_private))
    assert [e.type for e in events] == [EventType.BALANCE_SNAPSHOT]


def test_decode_accepts_the_readable_document_too() -> None:
    signed, _ = WIX.sign(fixture("seed003_points_updated"), SECRETS)
    from_doc = [to_json_obj(e) for e in decode(fixture("seed003_points_updated"))]
    from_token = [to_json_obj(e) for e in decode(signed)]
    assert from_doc == from_token


def test_stringified_and_object_layers_decode_alike() -> None:
    stringified = dict(SEED, data=json.dumps(SEED["data"]), identity=json.dumps(SEED["identity"]))
    a = [to_json_obj(e) for e in decode(token(claims_of(SEED)))]
    b = [to_json_obj(e) for e in decode(json.dumps({"data": json.dumps(stringified)}).encode())]
    assert a == b


def test_points_updated_is_a_snapshot_with_counters_revision_and_tier() -> None:
    (event,) = decode(fixture("seed003_points_updated"))
    assert event.type is EventType.BALANCE_SNAPSHOT
    assert event.balance == Decimal(1) and event.points_delta is None
    assert event.counters is not None and event.counters.adjusted == Decimal(1)
    assert event.revision == 3
    assert event.tier is not None and event.tier.id == "1415f107-640c-4e04-870f-149cdd562093"
    assert event.attributes["email"] == "johna.linskey@yopmail.com"
    assert event.attributes["account_id"] == "fe0ca230-61a6-4ebf-9199-9c0d238619aa"


def test_account_created_emits_registration_and_first_snapshot() -> None:
    registered, snapshot = decode(fixture("account_created"))
    assert registered.type is EventType.CUSTOMER_REGISTERED
    assert snapshot.type is EventType.BALANCE_SNAPSHOT
    assert snapshot.event_id == f"{registered.event_id}:snapshot"
    assert snapshot.balance == Decimal(0)


def test_tenant_is_the_url_tenant_else_the_instance_id() -> None:
    assert decode(fixture("seed003_points_updated"))[0].tenant == INSTANCE
    assert decode(fixture("seed003_points_updated"), tenant="shop-1")[0].tenant == "shop-1"


@pytest.mark.parametrize("tier", [None, {"updatedDate": "2021-12-07T07:30:23.749Z"}, "absent"])
def test_account_without_a_tier_states_no_tier(tier: Any) -> None:
    # the base tier "has no tierId": an account without one clears an older tier
    doc = json.loads(fixture("seed003_points_updated"))
    account = doc["data"]["actionEvent"]["body"]["account"]
    if tier == "absent":
        del account["tier"]
    else:
        account["tier"] = tier
    (event,) = WIX.decode(json.dumps(doc).encode(), {}, CTX)
    assert event.tier == NO_TIER


@pytest.mark.parametrize("instance", ["shop:a", "a b", "", "x" * 65])
def test_an_instance_id_that_is_no_valid_tenant_is_refused(instance: str) -> None:
    # wix:{tenant}:{customer}: a ':' in the tenant would let two members share one key
    doc = json.loads(fixture("seed003_points_updated"))
    doc["instanceId"] = instance
    body = json.dumps(doc).encode()
    if instance == "":
        assert WIX.decode(body, {}, CTX)[0].tenant == "default"
        return
    with pytest.raises(DecodeError, match="instanceId"):
        WIX.decode(body, {}, CTX)
    # a URL tenant names the tenant instead
    assert WIX.decode(body, {}, DecodeContext(tenant="shop-1"))[0].tenant == "shop-1"


def test_customer_falls_back_to_member_id() -> None:
    doc = json.loads(fixture("seed003_points_updated"))
    del doc["data"]["actionEvent"]["body"]["account"]["contactId"]
    doc["data"]["actionEvent"]["body"]["account"]["memberId"] = "member-42"
    assert decode(json.dumps(doc).encode())[0].customer_id == "member-42"


def test_unknown_event_type_is_other() -> None:
    (event,) = decode(fixture("unknown_coupon_created"))
    assert event.type is EventType.OTHER
    assert event.provider_event_type == "wix.loyalty.v1.coupon_created"


def test_reward_availability_updated_is_other() -> None:
    doc = json.loads(fixture("seed003_points_updated"))
    doc["eventType"] = "wix.loyalty.v1.account_reward_availability_updated"
    doc["data"]["slug"] = "reward_availability_updated"
    (event,) = decode(json.dumps(doc).encode())
    assert event.type is EventType.OTHER
    assert event.attributes["reward_available"] == "false"


def test_event_about_no_member_yields_no_events() -> None:
    doc = {
        "eventType": "wix.loyalty.v1.loyalty_earning_rule_created",
        "instanceId": INSTANCE,
        "data": {
            "id": "e1",
            "entityFqdn": "wix.loyalty.v1.loyalty_earning_rule",
            "slug": "created",
            "entityId": "rule-1",
            "createdEvent": {"entity": {"id": "rule-1", "title": "Buy stuff"}},
            "eventTime": "2024-01-01T00:00:00Z",
        },
        "identity": {"identityType": "APP", "appId": "app-1"},
    }
    assert decode(json.dumps(doc).encode()) == []


def test_delivery_id_is_the_entity_event_id() -> None:
    body, headers = WIX.sign(fixture("seed003_points_updated"), SECRETS)
    assert WIX.delivery_id(body, headers) == "48b171b8-e2c1-46da-92ff-5ce4b173c751"
    assert WIX.delivery_id(b"garbage", {}) is None


def test_token_without_data_claim_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"claims\.data is missing"):
        decode(token({"iat": 1, "exp": 2}))


def test_data_claim_that_is_not_json_names_the_layer() -> None:
    with pytest.raises(DecodeError, match=r"claims\.data is not valid JSON"):
        decode(token({"data": "{not json", "iat": 1, "exp": 2}))


def test_non_object_layers_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match=r"claims\.data must be a JSON object"):
        decode(token({"data": "[1]", "iat": 1, "exp": 2}))
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode(b"{broken")


def test_missing_customer_id_names_the_fields() -> None:
    doc = json.loads(fixture("seed003_points_updated"))
    account = doc["data"]["actionEvent"]["body"]["account"]
    del account["contactId"], account["memberId"]
    with pytest.raises(DecodeError, match=r"actionEvent\.body\.account\.contactId"):
        decode(json.dumps(doc).encode())


def test_missing_event_id_names_the_field() -> None:
    doc = json.loads(fixture("seed003_points_updated"))
    del doc["data"]["id"]
    with pytest.raises(DecodeError, match=r"envelope\.data\.id is missing"):
        decode(json.dumps(doc).encode())


def test_non_numeric_revision_is_a_decode_error() -> None:
    doc = json.loads(fixture("seed003_points_updated"))
    doc["data"]["actionEvent"]["body"]["account"]["revision"] = "three"
    with pytest.raises(DecodeError, match="revision"):
        decode(json.dumps(doc).encode())


def _without_revision(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` (claims or envelope, layers stringified or not) with `account.revision` removed."""
    if "eventType" not in doc:
        return {"data": _without_revision(json.loads(doc["data"]))}
    envelope = dict(doc)
    event = envelope["data"]
    event = json.loads(event) if isinstance(event, str) else event
    for outer, inner in (("actionEvent", "body"), ("updatedEvent", "currentEntity"),
                         ("createdEvent", "entity")):  # fmt: skip
        if outer in event:
            entity = event[outer][inner]
            entity = entity.get("account", entity)
            assert "revision" in entity
            del entity["revision"]
    envelope["data"] = event
    return envelope


@pytest.mark.parametrize(
    "name", ["seed003_points_updated", "account_updated_claims", "account_created"]
)
def test_an_account_snapshot_without_revision_is_refused(name: str) -> None:
    # Without a revision the order is not total: the balance never moves a revisioned one, but
    # lifetime counters would still depend on arrival order (earned 50 vs 999). Dead letter it.
    body = json.dumps(_without_revision(fixture_obj(name))).encode()
    with pytest.raises(DecodeError, match=r"\.revision is missing"):
        decode(body)


@pytest.mark.parametrize(
    "revision",
    ["1_000", "\u0661\u0662\u0663", " 12 ", "12 ", "\t12", "12\n", "+", "", "1.0", "1e3",
     "\uff11\uff12", True, False, 3.0, [0, [1, 2, 3], 0], {"n": 1}],
)  # fmt: skip
def test_revision_is_a_json_integer_or_ascii_digits_only(revision: object) -> None:
    doc = fixture_obj("seed003_points_updated")
    doc["data"]["actionEvent"]["body"]["account"]["revision"] = revision
    with pytest.raises(DecodeError, match=r"account\.revision must be an integer"):
        decode(json.dumps(doc).encode())


def test_opt_int_reads_json_integers_and_plain_ascii_digit_strings_only() -> None:
    ok = {"a": 7, "b": "42", "c": "-3", "d": "+5", "e": "007", "f": 2**63 - 1}
    assert [opt_int(ok, k, "x") for k in "abcdef"] == [7, 42, -3, 5, 7, 2**63 - 1]
    assert opt_int({}, "a", "x") is None and opt_int({"a": None}, "a", "x") is None
    refused = ["1_000", "\u0661\u0662\u0663", " 12 ", "12\n", "1.5", "", Decimal("3"), 3.0, [1]]
    for value in refused:
        with pytest.raises(DecodeError, match=r"^x\.a must be an integer, got "):
            opt_int({"a": value}, "a", "x")
    for value in (True, False):
        with pytest.raises(DecodeError, match=r"^x\.a must be an integer, got a boolean$"):
            opt_int({"a": value}, "a", "x")
    for value in (2**63, -(2**63) - 1, str(2**63), "9" * 30, Decimal("1e9999999"), "1e400"):
        with pytest.raises(DecodeError, match=r"^x\.a is out of range$"):
            opt_int({"a": value}, "a", "x")


# --- properties -------------------------------------------------------------------------------

SHAPED = shaped(
    ["eventType", "instanceId", "data", "identity", "id", "eventTime", "actionEvent", "body",
     "account", "updatedEvent", "currentEntity", "createdEvent", "entity", "deletedEvent",
     "contactId", "memberId", "points", "balance", "revision", "tier", "identityType"],
    [
        "wix.loyalty.v1.account_points_updated",
        "wix.loyalty.v1.account_created",
        "wix.loyalty.v1.account_deleted",
        "MEMBER",
        "2024-01-01T00:00:00Z",
        "3",
        "{}",
        "[]",
    ],
)  # fmt: skip
# Arbitrary bytes and JSON: test_fuzz.py, for every provider.


def _only_expected_errors(body: bytes) -> None:
    only_expected_errors(WIX, body, CTX, {}, SECRETS)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"\A[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}\Z"))
def test_arbitrary_jwt_shaped_text_raises_only_expected_errors(text: str) -> None:
    _only_expected_errors(text.encode())


@settings(max_examples=200, deadline=None)
@given(SHAPED)
def test_arbitrary_claims_in_a_real_token_raise_only_decode_errors(value: Any) -> None:
    # Wrap arbitrary structures at each layer inside a properly signed token.
    claims: dict[str, Any] = {"iat": int(time.time()), "exp": int(time.time()) + 60}
    claims["data"] = json.dumps({"eventType": "wix.loyalty.v1.account_updated", "data": value})
    _only_expected_errors(token(claims))
    claims["data"] = json.dumps(value)
    _only_expected_errors(token(claims))
