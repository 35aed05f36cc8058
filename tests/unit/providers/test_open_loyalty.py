"""Open Loyalty: legacy header and HMAC verification, legacy/subscription decoding rules."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import ConfigError, DecodeError, VerificationError
from connector.models import EventType
from connector.providers.base import DecodeContext
from connector.providers.open_loyalty import OpenLoyalty, hmac_signature
from tests import support
from tests.support import FIXTURES

NOW = 1_767_323_045.0  # 2026-01-02T03:04:05Z
OL = OpenLoyalty(clock=lambda: NOW)
ALL = support.test_secrets()["open_loyalty"]
HEADER_ONLY = {"header_name": ALL["header_name"], "header_value": ALL["header_value"]}
HMAC_ONLY = {"hmac_secret": ALL["hmac_secret"]}
RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CTX = DecodeContext(tenant=None, received_at=RECEIVED)
CUSTOMER = "32c764d9-ddd5-401f-ac13-a7fcba0982ff"


def fixture(name: str) -> bytes:
    return (FIXTURES / "open_loyalty" / f"{name}.json").read_bytes()


BODY = fixture("available_points_amount_changed")


def hmac_headers(
    body: bytes,
    *,
    secret: str = ALL["hmac_secret"],
    template: str = "{body}",
    timestamp: float = NOW,
    request_id: str = "8aaaabcd-0f85-4b7e-9c1d-000000000001",
) -> dict[str, str]:
    ts = str(int(timestamp))
    return {
        "X-Webhook-Signature": hmac_signature(secret, template, body, ts, request_id),
        "X-Webhook-Signature-Algorithm": "hmac-sha256",
        "X-Webhook-Timestamp": ts,
        "X-Webhook-Request-Id": request_id,
    }


def decode(obj: Any) -> list[Any]:
    return OL.decode(json.dumps(obj).encode(), {}, CTX)


def one(obj: Any) -> Any:
    [event] = decode(obj)
    return event


# --- legacy header --------------------------------------------------------------------------


def test_valid_legacy_header_passes_case_insensitively() -> None:
    OL.verify(BODY, {"x-ol-token": ALL["header_value"]}, HEADER_ONLY)


def test_wrong_legacy_header_value_is_rejected_without_leaking_it() -> None:
    with pytest.raises(VerificationError, match="X-OL-Token header value is wrong") as info:
        OL.verify(BODY, {"X-OL-Token": "guess"}, HEADER_ONLY)
    assert ALL["header_value"] not in str(info.value)


def test_missing_legacy_header_is_rejected() -> None:
    with pytest.raises(VerificationError, match="missing X-OL-Token header"):
        OL.verify(BODY, {}, HEADER_ONLY)


def test_shared_secret_header_is_never_kept() -> None:
    _, headers = OL.sign(BODY, ALL)
    assert "x-ol-token" not in OL.kept_headers
    kept = {k for k in (h.lower() for h in headers) if k in OL.kept_headers}
    assert kept >= {"x-webhook-signature", "x-webhook-timestamp", "x-webhook-request-id"}


# --- HMAC -----------------------------------------------------------------------------------


def test_hmac_over_body_passes() -> None:
    OL.verify(BODY, hmac_headers(BODY), HMAC_ONLY)


def test_hmac_over_timestamp_dot_body_passes() -> None:
    secrets = HMAC_ONLY | {"hmac_template": "{timestamp}.{body}"}
    headers = hmac_headers(BODY, template="{timestamp}.{body}")
    OL.verify(BODY, headers, secrets)
    with pytest.raises(VerificationError, match="does not match"):
        OL.verify(BODY, headers, HMAC_ONLY)  # same signature, other template


def test_hmac_template_can_include_request_id() -> None:
    template = "{request_id}:{timestamp}:{body}"
    OL.verify(BODY, hmac_headers(BODY, template=template), HMAC_ONLY | {"hmac_template": template})


def test_unknown_template_placeholder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown placeholder"):
        OL.verify(BODY, hmac_headers(BODY), HMAC_ONLY | {"hmac_template": "{nonce}.{body}"})


def test_stale_timestamp_is_rejected_as_replay() -> None:
    secrets = HMAC_ONLY | {"hmac_template": "{timestamp}.{body}"}
    old = hmac_headers(BODY, template="{timestamp}.{body}", timestamp=NOW - 301)
    with pytest.raises(VerificationError, match="more than 300 s"):
        OL.verify(BODY, old, secrets)
    future = hmac_headers(BODY, template="{timestamp}.{body}", timestamp=NOW + 3600)
    with pytest.raises(VerificationError, match="replay"):
        OL.verify(BODY, future, secrets)


def test_timestamp_within_custom_tolerance_passes_and_zero_disables_the_check() -> None:
    headers = hmac_headers(BODY, timestamp=NOW - 3000)
    OL.verify(BODY, headers, HMAC_ONLY | {"timestamp_tolerance": "3600"})
    OL.verify(BODY, headers, HMAC_ONLY | {"timestamp_tolerance": "0"})
    with pytest.raises(VerificationError):
        OL.verify(BODY, headers, HMAC_ONLY)


def test_non_numeric_timestamp_is_rejected() -> None:
    headers = hmac_headers(BODY) | {"X-Webhook-Timestamp": "yesterday"}
    with pytest.raises(VerificationError, match="not Unix seconds"):
        OL.verify(BODY, headers, HMAC_ONLY)


def test_template_with_timestamp_requires_the_header() -> None:
    headers = hmac_headers(BODY, template="{timestamp}.{body}")
    del headers["X-Webhook-Timestamp"]
    with pytest.raises(VerificationError, match="missing X-Webhook-Timestamp"):
        OL.verify(BODY, headers, HMAC_ONLY | {"hmac_template": "{timestamp}.{body}"})


def test_tampered_byte_is_rejected() -> None:
    headers = hmac_headers(BODY)
    tampered = BODY.replace(b'"amountChange": 25', b'"amountChange": 95')
    assert tampered != BODY
    with pytest.raises(VerificationError, match="does not match"):
        OL.verify(tampered, headers, HMAC_ONLY)


def test_wrong_hmac_secret_is_rejected_without_leaking_digest() -> None:
    headers = hmac_headers(BODY, secret="not-the-secret")
    with pytest.raises(VerificationError) as info:
        OL.verify(BODY, headers, HMAC_ONLY)
    expected = hmac_signature(ALL["hmac_secret"], "{body}", BODY)
    assert expected not in str(info.value)
    assert ALL["hmac_secret"] not in str(info.value)


def test_missing_signature_is_rejected_when_only_hmac_is_configured() -> None:
    with pytest.raises(VerificationError, match="missing X-Webhook-Signature"):
        OL.verify(BODY, {}, HMAC_ONLY)


def test_unsupported_algorithm_is_rejected() -> None:
    headers = hmac_headers(BODY) | {"X-Webhook-Signature-Algorithm": "hmac-md5"}
    with pytest.raises(VerificationError, match="unsupported"):
        OL.verify(BODY, headers, HMAC_ONLY)


# --- both mechanisms ------------------------------------------------------------------------


def test_both_configured_header_alone_passes_when_no_signature_is_sent() -> None:
    OL.verify(BODY, {"X-OL-Token": ALL["header_value"]}, ALL)


def test_both_configured_a_present_signature_must_be_valid() -> None:
    headers = hmac_headers(BODY, secret="wrong") | {"X-OL-Token": ALL["header_value"]}
    with pytest.raises(VerificationError, match="does not match"):
        OL.verify(BODY, headers, ALL)


def test_both_configured_the_header_is_required_even_with_a_valid_signature() -> None:
    with pytest.raises(VerificationError, match="missing X-OL-Token"):
        OL.verify(BODY, hmac_headers(BODY), ALL)


def test_sign_produces_header_and_fresh_hmac_that_verify() -> None:
    body, headers = OL.sign(BODY, ALL)
    assert headers["X-OL-Token"] == ALL["header_value"]
    assert headers["X-Webhook-Timestamp"] == str(int(NOW))
    uuid.UUID(headers["X-Webhook-Request-Id"])
    OL.verify(body, headers, ALL)
    OL.verify(body, headers, HMAC_ONLY)
    assert OL.delivery_id(body, headers) == headers["X-Webhook-Request-Id"]
    assert OL.delivery_id(body, {}) is None


def test_configuration_needs_a_full_header_pair_or_an_hmac_secret() -> None:
    assert OL.is_configured(HEADER_ONLY)
    assert OL.is_configured(HMAC_ONLY)
    assert not OL.is_configured({"header_name": "X-OL-Token"})
    assert not OL.is_configured({})
    with pytest.raises(VerificationError):
        OL.verify(BODY, {"X-OL-Token": "x"}, {})


# --- decoding -------------------------------------------------------------------------------


def test_broken_json_is_a_decode_error_with_position() -> None:
    with pytest.raises(DecodeError, match="not valid JSON.*line"):
        OL.decode(b'{"type": "customer.updated" "data": {}}', {}, CTX)


def test_json_array_body_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="body must be a JSON object, got an array"):
        OL.decode(b'[{"type": "customer.updated"}]', {}, CTX)


def test_missing_customer_id_names_the_field() -> None:
    with pytest.raises(DecodeError, match="data.customerId is missing"):
        decode({"type": "customer.updated", "data": {"id": CUSTOMER}})


def test_missing_type_and_data_are_named() -> None:
    with pytest.raises(DecodeError, match="body.type is missing"):
        decode({"data": {"customerId": CUSTOMER}})
    with pytest.raises(DecodeError, match="data is missing"):
        decode({"type": "customer.updated"})


def test_transaction_registered_without_customer_points_to_assignment() -> None:
    with pytest.raises(DecodeError, match="transaction.assigned_to_customer"):
        OL.decode(fixture("transaction_registered_doc_sample"), {}, CTX)


def test_unknown_type_becomes_other_with_verbatim_type() -> None:
    event = one({"type": "customer.became_vip", "data": {"customerId": CUSTOMER}})
    assert event.type is EventType.OTHER
    assert event.provider_event_type == "customer.became_vip"


def test_unknown_type_without_customer_is_still_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="data.customerId is missing"):
        decode({"type": "LevelWillExpire", "data": {}})


def test_transfer_and_amount_change_about_one_movement_agree() -> None:
    transfer = one(
        {
            "type": "account.points_transfer",
            "data": {
                "customerId": CUSTOMER,
                "pointsTransferId": "t-1",
                "value": 30.0,
                "issuer": "system",
                "type": "spending",
                "state": "active",
            },
        }
    )
    change = one(
        {
            "type": "account.available_points_amount_changed",
            "data": {
                "customerId": CUSTOMER,
                "amount": 70,
                "amountChange": 30,
                "amountChangeType": "subtract",
                "pointsTransferId": "t-1",
            },
        }
    )
    assert transfer.type is change.type is EventType.POINTS_REDEEMED
    assert transfer.movement_id == change.movement_id == "t-1"
    assert transfer.points_delta == change.points_delta == Decimal("-30.00")


def test_pending_transfer_does_not_claim_the_movement() -> None:
    event = one(
        {
            "type": "account.points_transfer",
            "data": {
                "customerId": CUSTOMER,
                "pointsTransferId": "t-2",
                "value": 10,
                "type": "adding",
                "state": "pending",
            },
        }
    )
    assert event.type is EventType.POINTS_PENDING
    assert event.points_delta == Decimal(10)
    assert event.movement_id is None


def test_canceled_or_unknown_transfer_type_claims_no_delta() -> None:
    for data in ({"type": "adding", "state": "canceled"}, {"type": "mystery", "state": "active"}):
        event = one(
            {
                "type": "account.points_transfer",
                "data": {"customerId": CUSTOMER, "pointsTransferId": "t-3", "value": 10} | data,
            }
        )
        assert event.type is EventType.OTHER
        assert event.points_delta is None
        assert event.movement_id is None


def test_unknown_change_type_keeps_only_the_balance() -> None:
    event = one(
        {
            "type": "account.available_points_amount_changed",
            "data": {
                "customerId": CUSTOMER,
                "amount": 5,
                "amountChange": 1,
                "amountChangeType": "teleport",
            },
        }
    )
    assert event.type is EventType.BALANCE_SNAPSHOT
    assert event.points_delta is None
    assert event.balance == Decimal(5)


def test_float_points_are_exact_and_sub_cent_points_are_rejected() -> None:
    data = {"customerId": CUSTOMER, "amount": 100.1, "amountChange": 0.1, "amountChangeType": "add"}
    event = one({"type": "account.available_points_amount_changed", "data": data})
    assert event.points_delta == Decimal("0.10")
    assert event.balance == Decimal("100.10")
    with pytest.raises(DecodeError, match=r"data\.amountChange"):
        decode(
            {
                "type": "account.available_points_amount_changed",
                "data": data | {"amountChange": 0.001},
            }
        )


def test_bought_campaign_does_not_move_points() -> None:
    [event] = OL.decode(fixture("customer_bought_campaign"), {}, CTX)
    assert event.type is EventType.REWARD_REDEEMED
    assert event.points_delta is None


def test_bad_timestamp_names_the_field() -> None:
    with pytest.raises(DecodeError, match="createdAt is not an ISO-8601 timestamp"):
        decode({"type": "customer.updated", "createdAt": "soon", "data": {"customerId": CUSTOMER}})


def test_retries_with_new_request_ids_keep_the_event_id() -> None:
    first, h1 = OL.sign(BODY, ALL)
    second, h2 = OL.sign(BODY, ALL)
    assert h1["X-Webhook-Request-Id"] != h2["X-Webhook-Request-Id"]
    [a] = OL.decode(first, h1, CTX)
    [b] = OL.decode(second, h2, CTX)
    assert a.event_id == b.event_id


# --- properties -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
TYPES = st.sampled_from(
    [
        "customer.registered",
        "customer.level_changed",
        "transaction.registered",
        "transaction.assigned_to_customer",
        "account.available_points_amount_changed",
        "account.points_transfer",
        "customer.bought_campaign",
        "CustomerLevelChanged",
        "Whatever",
    ]
)
DATA = st.fixed_dictionaries(
    {},
    optional={
        "customerId": st.text() | JSON,
        "customer": JSON,
        "customerData": JSON,
        "data": JSON,
        "transactionId": JSON,
        "amount": JSON,
        "amountChange": JSON,
        "amount_change_type": st.sampled_from(["add", "subtract", "p2p_add"]) | JSON,
        "value": JSON,
        "type": st.sampled_from(["adding", "spending"]) | JSON,
        "state": JSON,
        "items": JSON,
        "levelAchievementDate": JSON,
        "tier": JSON,
    },
)
SHAPED = st.fixed_dictionaries(
    {"type": TYPES | JSON}, optional={"data": DATA | JSON, "createdAt": JSON}
)


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=512),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "X-OL-Token",
                "X-Webhook-Signature",
                "X-Webhook-Timestamp",
                "X-Webhook-Signature-Algorithm",
                "X-Webhook-Request-Id",
            ]
        ),
        st.text(max_size=40),
    ),
)
def test_arbitrary_bytes_only_raise_connector_errors(body: bytes, headers: dict[str, str]) -> None:
    for secrets in (ALL, HEADER_ONLY, HMAC_ONLY | {"hmac_template": "{timestamp}.{body}"}):
        try:
            OL.verify(body, headers, secrets)
        except VerificationError:
            pass
    try:
        OL.decode(body, headers, CTX)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(obj=JSON | SHAPED)
def test_arbitrary_json_only_raises_decode_error(obj: Any) -> None:
    body = json.dumps(obj).encode()
    try:
        OL.decode(body, {}, CTX)
    except DecodeError:
        pass
    signed, headers = OL.sign(body, ALL)
    OL.verify(signed, headers, ALL)
