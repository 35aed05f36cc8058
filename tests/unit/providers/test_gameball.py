"""Gameball: SHA-1 signature variants, v3/v4 decoding rules and failure modes."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import ConfigError, DecodeError, VerificationError
from connector.models import EventType
from connector.providers.base import DecodeContext
from connector.providers.gameball import Gameball, js_compact_json
from tests import support
from tests.support import FIXTURES

GB = Gameball()
SECRETS = support.test_secrets()["gameball"]
SECRET = SECRETS["secret_key"]
RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CTX = DecodeContext(tenant=None, received_at=RECEIVED)
PROFILE = (FIXTURES / "gameball" / "v4_profile_updated.json").read_bytes()
NOTIFICATION = (FIXTURES / "gameball" / "v4_notification_push.json").read_bytes()


def sha1(payload: bytes, secret: str = SECRET) -> bytes:
    return hashlib.sha1(payload + b":" + secret.encode(), usedforsecurity=False).digest()


def decode(obj: Any, headers: dict[str, str] | None = None) -> list[Any]:
    return GB.decode(json.dumps(obj).encode(), headers or {}, CTX)


# --- verification ---------------------------------------------------------------------------


def test_valid_signature_passes() -> None:
    body, headers = GB.sign(PROFILE, SECRETS)
    assert headers["X-GB-Signature"] == sha1(PROFILE).hex()
    GB.verify(body, headers, SECRETS)


def test_uppercase_hex_and_lowercase_header_name_are_accepted() -> None:
    GB.verify(PROFILE, {"x-gb-signature": sha1(PROFILE).hex().upper()}, SECRETS)


def test_base64_signature_is_accepted() -> None:
    GB.verify(PROFILE, {"X-GB-Signature": base64.b64encode(sha1(PROFILE)).decode()}, SECRETS)


def test_hex_only_setting_rejects_base64_signature() -> None:
    sig = base64.b64encode(sha1(PROFILE)).decode()
    with pytest.raises(VerificationError):
        GB.verify(PROFILE, {"X-GB-Signature": sig}, {**SECRETS, "signature_encoding": "hex"})


def test_base64_only_setting_rejects_hex_signature() -> None:
    sig = sha1(PROFILE).hex()
    with pytest.raises(VerificationError):
        GB.verify(PROFILE, {"X-GB-Signature": sig}, {**SECRETS, "signature_encoding": "base64"})
    GB.verify(
        PROFILE,
        {"X-GB-Signature": base64.b64encode(sha1(PROFILE)).decode()},
        {**SECRETS, "signature_encoding": "base64"},
    )


def test_unknown_signature_encoding_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="auto, hex, base64"):
        GB.verify(PROFILE, {"X-GB-Signature": "x"}, {**SECRETS, "signature_encoding": "hexx"})


def test_signature_over_compact_json_is_accepted_for_pretty_body() -> None:
    # Gameball's Node sample signs JSON.stringify(req.body): compact, non-ASCII kept as is.
    compact = json.dumps(json.loads(NOTIFICATION), separators=(",", ":"), ensure_ascii=False)
    assert "é" in compact
    GB.verify(NOTIFICATION, {"X-GB-Signature": sha1(compact.encode()).hex()}, SECRETS)


def test_compact_json_follows_javascript_number_and_key_order_rules() -> None:
    body = b'{"b": 1.0, "a": [1e21, 1.5e-7, 0.000001, 123456789012345678901, -0.0, 2.50], "2": true, "10": null}'  # noqa: E501
    assert js_compact_json(body) == (
        b'{"2":true,"10":null,"b":1,"a":[1e+21,1.5e-7,0.000001,123456789012345680000,0,2.5]}'
    )
    signed = sha1(js_compact_json(body) or b"").hex()
    GB.verify(body, {"X-GB-Signature": signed}, SECRETS)


def test_tampered_byte_is_rejected() -> None:
    body, headers = GB.sign(PROFILE, SECRETS)
    tampered = body.replace(b'"activated_points": 90', b'"activated_points": 99')
    assert tampered != body
    with pytest.raises(VerificationError, match="does not match"):
        GB.verify(tampered, headers, SECRETS)


def test_wrong_secret_is_rejected() -> None:
    _, headers = GB.sign(PROFILE, {"secret_key": "someone-else"})
    with pytest.raises(VerificationError):
        GB.verify(PROFILE, headers, SECRETS)


def test_missing_signature_header_is_rejected() -> None:
    with pytest.raises(VerificationError, match="missing X-GB-Signature"):
        GB.verify(PROFILE, {"X-GB-Webhook-Version": "v4"}, SECRETS)


def test_rejection_message_leaks_neither_secret_nor_expected_digest() -> None:
    with pytest.raises(VerificationError) as info:
        GB.verify(PROFILE, {"X-GB-Signature": "0" * 40}, SECRETS)
    message = str(info.value)
    assert SECRET not in message
    assert sha1(PROFILE).hex() not in message


def test_configuration_needs_a_secret_key() -> None:
    assert GB.is_configured(SECRETS)
    assert not GB.is_configured({})
    with pytest.raises(VerificationError):
        GB.verify(PROFILE, {"X-GB-Signature": sha1(PROFILE).hex()}, {})


def test_gameball_has_no_delivery_id_and_keeps_signature_headers() -> None:
    assert GB.delivery_id(PROFILE, {"X-GB-Signature": "abc"}) is None
    assert {"x-gb-signature", "x-gb-webhook-version"} <= set(GB.kept_headers)


# --- decoding -------------------------------------------------------------------------------


def test_doc_sample_with_null_player_is_rejected() -> None:
    body = (FIXTURES / "gameball" / "v3_profile_doc_sample_null_player.json").read_bytes()
    with pytest.raises(DecodeError, match="playerUniqueId is missing"):
        GB.decode(body, {}, CTX)


def test_v4_without_customer_id_names_the_field() -> None:
    obj = json.loads(PROFILE)
    del obj["customer_id"]
    with pytest.raises(DecodeError, match="customer_id is missing"):
        decode(obj)


def test_v4_profile_without_data_object_names_the_field() -> None:
    obj = json.loads(PROFILE) | {"data": []}
    with pytest.raises(DecodeError, match="body.data must be a JSON object"):
        decode(obj)


def test_version_header_v4_with_flat_body_asks_for_event() -> None:
    with pytest.raises(DecodeError, match="event is missing"):
        decode({"playerUniqueId": "p1"}, {"X-GB-Webhook-Version": "v4"})


def test_body_of_neither_version_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="playerUniqueId is missing"):
        decode({"hello": "world"})


def test_unknown_v4_event_becomes_other_with_verbatim_type() -> None:
    obj = json.loads(PROFILE) | {"event": "customer.badge.won"}
    [event] = decode(obj)
    assert event.type is EventType.OTHER
    assert event.provider_event_type == "customer.badge.won"
    assert event.customer_id == "webhook-test"


def test_points_with_more_than_two_decimals_name_the_field() -> None:
    obj = json.loads(PROFILE)
    obj["data"]["activated_points"] = 1.005
    with pytest.raises(DecodeError, match=r"body\.data\.activated_points"):
        decode(obj)


def test_float_points_are_exact_decimals() -> None:
    obj = json.loads(PROFILE)
    obj["data"] |= {"activated_points": 90.1, "pending_points": 0.2, "total_points": 90.3}
    [event] = decode(obj)
    assert event.balance == Decimal("90.10")
    assert event.pending_points == Decimal("0.20")
    assert event.counters is not None and event.counters.total == Decimal("90.30")


def test_v3_balance_prefers_activated_over_total_points() -> None:
    [event] = decode({"playerUniqueId": "p1", "totalPoints": 100, "activatedPoints": 70})
    assert event.balance == Decimal(70)
    assert event.counters is not None and event.counters.total == Decimal(100)
    assert event.occurred_at == RECEIVED  # v3 has no event time


def test_notification_translations_make_one_event() -> None:
    events = GB.decode(NOTIFICATION, {}, CTX)
    assert [e.type for e in events] == [EventType.NOTIFICATION]
    assert events[0].attributes["title.fr"] == "Bravo!"


def test_empty_notification_list_yields_no_events() -> None:
    assert decode({"playerUniqueId": "p1", "notifications": []}) == []


def test_notification_data_that_is_not_a_list_is_a_decode_error() -> None:
    obj = json.loads(NOTIFICATION) | {"data": "hello"}
    with pytest.raises(DecodeError, match="body.data must be a JSON array"):
        decode(obj)


def test_same_body_gives_same_event_id_and_tenant_changes_it() -> None:
    [a] = GB.decode(PROFILE, {}, CTX)
    [b] = GB.decode(PROFILE, {}, DecodeContext(tenant=None, received_at=datetime.now(UTC)))
    [c] = GB.decode(PROFILE, {}, DecodeContext(tenant="shop-2", received_at=RECEIVED))
    assert a.event_id == b.event_id
    assert c.event_id != a.event_id
    assert c.member_key == "gameball:shop-2:webhook-test"


# --- properties -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["customer.profile.updated", "customer.notification.push", "x"])
        | JSON,
        "customer_id": st.text() | JSON,
        "playerUniqueId": st.text() | JSON,
        "created_at": st.text() | JSON,
        "data": JSON,
        "notifications": JSON,
        "activatedPoints": JSON,
        "levelOrder": JSON,
    },
)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=512), sig=st.text(max_size=64))
def test_arbitrary_bytes_only_raise_connector_errors(body: bytes, sig: str) -> None:
    for headers in ({}, {"X-GB-Signature": sig}, GB.sign(body, SECRETS)[1]):
        try:
            GB.verify(body, headers, SECRETS)
        except VerificationError:
            pass
    try:
        GB.decode(body, {}, CTX)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(obj=JSON | SHAPED, version=st.sampled_from(["", "v3", "v4"]))
def test_arbitrary_json_only_raises_decode_error(obj: Any, version: str) -> None:
    body = json.dumps(obj).encode()
    try:
        GB.decode(body, {"X-GB-Webhook-Version": version}, CTX)
    except DecodeError:
        pass
    signed, headers = GB.sign(body, SECRETS)
    GB.verify(signed, headers, SECRETS)
