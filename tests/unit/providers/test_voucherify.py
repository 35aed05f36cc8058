"""Voucherify: signature checks (incl. the documented test vectors), envelopes, mapping, ids."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings

from connector.errors import DecodeError, VerificationError
from connector.models import EventType, LoyaltyEvent
from connector.providers.base import DecodeContext
from connector.providers.voucherify import Voucherify, remove_whitespaces
from tests import support
from tests.support import FIXTURES
from tests.unit.providers.strategies import only_expected_errors, shaped

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CTX = DecodeContext(tenant=None, received_at=RECEIVED)
SECRETS = support.test_secrets()["voucherify"]
VF = Voucherify()


def fixture(name: str) -> bytes:
    return (FIXTURES / "voucherify" / f"{name}.json").read_bytes()


def fixture_obj(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture(name))
    return data


def decode_obj(obj: Any, tenant: str | None = None) -> list[LoyaltyEvent]:
    body = json.dumps(obj).encode()
    return VF.decode(body, {}, DecodeContext(tenant=tenant, received_at=RECEIVED))


def decode_one(obj: Any) -> LoyaltyEvent:
    events = decode_obj(obj)
    assert len(events) == 1
    return events[0]


# --- signatures -------------------------------------------------------------------------------


def test_valid_signature_passes() -> None:
    body, headers = VF.sign(fixture("seed004_points_added"), SECRETS)
    VF.verify(body, headers, SECRETS)


def test_signature_header_name_is_case_insensitive() -> None:
    body, headers = VF.sign(b'{"a":1}', SECRETS)
    VF.verify(body, {"X-Voucherify-Signature": headers["x-voucherify-signature"]}, SECRETS)


def test_tampered_byte_is_rejected() -> None:
    body, headers = VF.sign(fixture("seed004_points_added"), SECRETS)
    tampered = body.replace(b'"points": 40', b'"points": 90', 1)
    assert tampered != body
    with pytest.raises(VerificationError):
        VF.verify(tampered, headers, SECRETS)


def test_wrong_secret_is_rejected() -> None:
    body, headers = VF.sign(fixture("seed004_points_added"), {"secret_key": "not-the-secret"})
    with pytest.raises(VerificationError):
        VF.verify(body, headers, SECRETS)


def test_missing_signature_header_is_rejected() -> None:
    with pytest.raises(VerificationError, match="x-voucherify-signature"):
        VF.verify(b'{"a":1}', {"content-type": "application/json"}, SECRETS)


def test_unconfigured_secret_is_rejected() -> None:
    body, headers = VF.sign(b'{"a":1}', SECRETS)
    assert not VF.is_configured({})
    with pytest.raises(VerificationError, match="not configured"):
        VF.verify(body, headers, {})


def test_rejection_message_leaks_neither_secret_nor_expected_digest() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"vf-test-secret", body, hashlib.sha256).hexdigest()
    with pytest.raises(VerificationError) as info:
        VF.verify(body, {"x-voucherify-signature": "00" * 32}, SECRETS)
    assert expected not in str(info.value)
    assert "vf-test-secret" not in str(info.value)


def test_non_ascii_signature_header_is_rejected_not_crashing() -> None:
    with pytest.raises(VerificationError):
        VF.verify(b'{"a":1}', {"x-voucherify-signature": "é" * 64}, SECRETS)


def test_whitespace_stripped_fallback_is_accepted() -> None:
    # Voucherify signs the compact JSON; a pretty-printed body must verify via the fallback.
    pretty = json.dumps(fixture_obj("seed004_points_added"), indent=2).encode()
    compact = remove_whitespaces(pretty.decode()).encode()
    signature = hmac.new(b"vf-test-secret", compact, hashlib.sha256).hexdigest()
    assert hmac.new(b"vf-test-secret", pretty, hashlib.sha256).hexdigest() != signature
    VF.verify(pretty, {"x-voucherify-signature": signature}, SECRETS)


def test_whitespace_inside_strings_is_not_stripped_by_the_fallback() -> None:
    body = b'{"reason": "Spring time"}'
    wrong = remove_whitespaces(body.decode()).replace("Spring time", "Springtime").encode()
    signature = hmac.new(b"vf-test-secret", wrong, hashlib.sha256).hexdigest()
    with pytest.raises(VerificationError):
        VF.verify(body, {"x-voucherify-signature": signature}, SECRETS)


# Official test vectors (secret "secretKey"), providers.md §3.2 / introduction-to-webhooks.
@pytest.mark.parametrize(
    ("body", "signature"),
    [
        (b'{"a":1}', "a17d2ac229d1ebbb5f10e839c7985c4818e5986eab297f7e5979196d4d7d3ed2"),
        (b'{\n  "a": 1\n}', "a17d2ac229d1ebbb5f10e839c7985c4818e5986eab297f7e5979196d4d7d3ed2"),
        (b'{"a\\"b":1}', "f7cf97814a03146abedb9793f56e1dec34f618f82d10395310d053f749483ffb"),
        (b'{\n  "a\\"b": 1\n}', "f7cf97814a03146abedb9793f56e1dec34f618f82d10395310d053f749483ffb"),
        (b"  message  ", "53ff92957e1427ce23ad5bda9d0c5f2f4ff384d0806b83eeacb510c842d3a358"),
    ],
    ids=["compact", "pretty", "escaped-quote", "escaped-quote-pretty", "plain-string"],
)
def test_official_test_vectors_verify(body: bytes, signature: str) -> None:
    VF.verify(body, {"x-voucherify-signature": signature}, {"secret_key": "secretKey"})
    with pytest.raises(VerificationError):
        VF.verify(body, {"x-voucherify-signature": signature}, {"secret_key": "secretKeY"})


def test_remove_whitespaces_follows_the_java_algorithm() -> None:
    assert remove_whitespaces('{\n  "a\\"b": 1\n}') == '{"a\\"b":1}'
    assert (
        remove_whitespaces('{ "k" : "a b\\\\" , "x" : [ 1 , 2 ] }') == '{"k":"a b\\\\","x":[1,2]}'
    )
    assert remove_whitespaces("\u00a0{ }\u2003") == "\u00a0{}"  # no-break space is kept (Java)


def test_sign_signs_the_raw_bytes() -> None:
    body = b'{\n "a": 1\n}'
    signed, headers = VF.sign(body, SECRETS)
    assert signed == body
    assert headers["x-voucherify-signature"] == (
        hmac.new(b"vf-test-secret", body, hashlib.sha256).hexdigest()
    )


# --- envelopes and ids ------------------------------------------------------------------------


def test_delivery_id_is_the_sendout_id() -> None:
    assert VF.delivery_id(fixture("seed004_points_added"), {}) == "whs_0e6d4404c1de51d3a4"
    assert VF.delivery_id(fixture("legacy_v2018_points_added"), {}) == "wh_0e30615d7259b70121"
    assert VF.delivery_id(fixture("seed004_raw_payload"), {}) is None
    assert VF.delivery_id(b"\xff not json", {}) is None


def test_legacy_envelope_uses_its_id_as_event_id() -> None:
    event = decode_one(fixture_obj("legacy_v2018_points_added"))
    assert event.event_id == "evvou_0e30615d6e99b7011e"
    assert event.attributes["project_id"] == "proj_5T4Rpl4T1nuM"


def test_distribution_type_comes_from_event_type_even_if_name_looks_like_a_system_event() -> None:
    body = fixture_obj("seed002_rewarded_loyalty_points")
    body["type"] = "customer.order.paid"  # free-text distribution name that happens to match
    event = decode_one(body)
    assert event.provider_event_type == "customer.rewarded.loyalty_points"
    assert event.type is EventType.POINTS_EARNED
    assert event.attributes["distribution_event_name"] == "customer.order.paid"


def test_project_and_distribution_sendouts_of_one_event_share_the_event_id() -> None:
    distribution = fixture_obj("seed002_rewarded_loyalty_points")
    project = copy.deepcopy(distribution)
    project.update(id="whs_0e2905d5a2185a04ff", type="customer.rewarded.loyalty_points")
    project["source"] = {"id": "wh_0e16e42bc6e0c65a11", "object": "webhook", "target_url": "x"}
    a, b = decode_one(distribution), decode_one(project)
    assert VF.delivery_id(json.dumps(distribution).encode(), {}) != VF.delivery_id(
        json.dumps(project).encode(), {}
    )
    assert (a.event_id, a.movement_id, a.type) == (b.event_id, b.movement_id, b.type)


def test_one_movement_reported_by_two_webhooks_has_one_movement_id() -> None:
    # seed 004 (distribution points_added) and the project transaction.created webhook describe
    # the same vtx_ transaction: different events, same movement, same canonical meaning.
    distribution = decode_one(fixture_obj("seed004_points_added"))
    project = decode_one(fixture_obj("transaction_created_addition"))
    assert distribution.event_id != project.event_id
    assert distribution.movement_id == project.movement_id == "vtx_0e6d44043e9e51d377"
    assert distribution.member_key == project.member_key
    assert (distribution.type, distribution.points_delta) == (project.type, project.points_delta)


def test_rewarded_points_and_their_accrual_transaction_name_one_movement() -> None:
    # customer.rewarded.loyalty_points has no transaction (no vtx id): what it shares with the
    # POINTS_ACCRUAL transaction.created of the same accrual is the card, the cause event and
    # the earning rule (EventCustomerRewardedLoyaltyPointsData / ...TransactionCreatedData).
    rewarded = fixture_obj("seed002_rewarded_loyalty_points")
    data = rewarded["data"]
    card, cause, rule = data["voucher"]["id"], data["event"]["id"], data["earning_rule"]["id"]
    accrual = fixture_obj("transaction_created_addition")
    tx = accrual["data"]["transaction"]
    tx["type"] = "POINTS_ACCRUAL"
    tx["voucher_id"] = card
    tx["details"]["event"] = {"id": cause, "type": "customer.order.paid"}
    tx["details"]["earning_rule"] = {"id": rule}
    accrual["data"]["voucher"]["id"] = card
    a, b = decode_one(rewarded), decode_one(accrual)
    assert a.event_id != b.event_id
    assert a.movement_id == b.movement_id == f"accrual:{card}:{cause}:{rule}"
    assert (a.type, b.type) == (EventType.POINTS_EARNED, EventType.POINTS_EARNED)
    # another cause (another order) is another movement
    tx["details"]["event"]["id"] = "evcus_other"
    assert decode_one(accrual).movement_id != a.movement_id


def test_manual_addition_keeps_its_transaction_id() -> None:
    event = decode_one(fixture_obj("transaction_created_addition"))
    assert event.movement_id == "vtx_0e6d44043e9e51d377"


def test_pending_activation_transaction_is_an_activation() -> None:
    body = fixture_obj("transaction_created_addition")
    body["data"]["transaction"]["type"] = "PENDING_POINTS_ACTIVATION"
    event = decode_one(body)
    assert event.type is EventType.POINTS_ACTIVATED
    assert event.points_delta == Decimal(40)


def test_rollback_of_a_loyalty_card_redemption_returns_its_points() -> None:
    # SimpleRedemption.amount: "For loyalty cards, this is the number of loyalty points used in
    # the transaction. In the case of redemption rollback ... negative integers."
    body = fixture_obj("doc_openapi_redemption_succeeded")
    body["type"] = "redemption.rollback.succeeded"
    body["data"]["redemption_rollback"] = {
        "id": "rr_1",
        "amount": -250,
        "voucher": {"id": "v_card", "type": "LOYALTY_CARD", "loyalty_card": {"points": 1000}},
    }
    event = decode_one(body)
    assert event.type is EventType.POINTS_ADJUSTED
    assert event.points_delta == Decimal(250)
    assert event.movement_id == "rollback:rr_1"
    # the POINTS_REFUND transaction of the same rollback names the same movement
    refund = fixture_obj("transaction_created_addition")
    refund["data"]["transaction"]["type"] = "POINTS_REFUND"
    refund["data"]["transaction"]["details"]["rollback"] = {"id": "rr_1"}
    assert decode_one(refund).movement_id == "rollback:rr_1"
    # a rollback of a discount voucher moves no points
    body["data"]["redemption_rollback"]["voucher"] = {"id": "v_disc", "type": "DISCOUNT_VOUCHER"}
    assert decode_one(body).points_delta is None


def test_raw_payload_does_not_mistake_the_nested_cause_for_the_event_type() -> None:
    # seed 002 carries event.type "customer.order.paid": the cause of the reward, not the webhook.
    event = decode_one(fixture_obj("seed002_raw_payload"))
    assert event.type is EventType.POINTS_EARNED
    assert event.attributes["payload"] == "raw"


def test_raw_payload_event_id_is_deterministic_per_tenant() -> None:
    body = fixture("seed002_raw_payload")
    a = VF.decode(body, {}, CTX)[0].event_id
    b = VF.decode(body, {}, DecodeContext(tenant="acme", received_at=RECEIVED))[0].event_id
    assert a == VF.decode(body, {}, CTX)[0].event_id
    assert a != b


def test_tenant_comes_from_the_url_else_default() -> None:
    body = fixture_obj("customer_created")
    assert decode_obj(body)[0].member_key.startswith("voucherify:default:")
    assert decode_obj(body, tenant="acme")[0].member_key == (
        "voucherify:acme:cust_7LvqCsUB9c8WyFP8JaLXchtF"
    )


# --- mapping ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tx_type", "reported", "expected_type", "expected_delta"),
    [
        ("POINTS_ACCRUAL", 25, EventType.POINTS_EARNED, 25),
        ("POINTS_REDEMPTION", -25, EventType.POINTS_REDEEMED, -25),
        ("POINTS_REDEMPTION", 25, EventType.POINTS_REDEEMED, -25),  # sign forced by type
        ("POINTS_REFUND", 25, EventType.POINTS_ADJUSTED, 25),
        ("POINTS_ADDITION", 25, EventType.POINTS_ADJUSTED, 25),
        ("POINTS_REMOVAL", -25, EventType.POINTS_ADJUSTED, -25),
        ("POINTS_EXPIRATION", -25, EventType.POINTS_EXPIRED, -25),
        ("POINTS_TRANSFER_IN", 25, EventType.POINTS_ADJUSTED, 25),
        ("POINTS_TRANSFER_OUT", -25, EventType.POINTS_ADJUSTED, -25),
    ],
)
def test_transaction_created_maps_by_transaction_type(
    tx_type: str, reported: int, expected_type: EventType, expected_delta: int
) -> None:
    body = fixture_obj("transaction_created_redemption")
    tx = body["data"]["transaction"]
    tx["type"] = tx_type
    tx["details"]["balance"]["points"] = reported
    event = decode_one(body)
    assert event.type is expected_type
    assert event.points_delta == Decimal(expected_delta)
    assert event.balance == Decimal(920)
    assert event.movement_id == "vtx_0e4a1f6e2b1d3c9e0a"


def test_unknown_transaction_type_is_other() -> None:
    body = fixture_obj("transaction_created_redemption")
    body["data"]["transaction"]["type"] = "POINTS_SOMETHING_NEW"
    event = decode_one(body)
    assert event.type is EventType.OTHER
    assert event.points_delta is None
    assert event.attributes["transaction_type"] == "POINTS_SOMETHING_NEW"


def test_points_added_without_transaction_is_earned() -> None:
    body = fixture_obj("seed004_points_added")
    del body["data"]["transaction"]
    event = decode_one(body)
    assert event.type is EventType.POINTS_EARNED
    assert event.points_delta == Decimal(40)
    assert event.movement_id == "evcus_0e6d440461de51d38e"


def test_points_expired_without_points_uses_the_negative_balance_delta() -> None:
    body = fixture_obj("points_expired")
    del body["data"]["points"]
    event = decode_one(body)
    assert event.type is EventType.POINTS_EXPIRED
    assert event.points_delta == Decimal(-70)


def test_pending_points_updated_changes_pending_by_the_signed_adjustment() -> None:
    # "The pending points can be updated by adding or subtracting points" (Adjust Member
    # Pending Points): the change is voucher_pending_points_balance.points, signed.
    body = fixture_obj("pending_points_added")
    body["event"]["type"] = "loyalty_card.pending_points.updated"
    body["data"]["voucher_pending_points_balance"]["points"] = -20
    body["data"]["pending_points"]["points"] = 100
    event = decode_one(body)
    assert event.type is EventType.POINTS_PENDING
    assert event.provider_event_type == "loyalty_card.pending_points.updated"
    assert event.points_delta == Decimal(-20)
    # its own movement: not the pending phase of the entry it adjusts
    assert event.movement_id == event.event_id


def test_tier_left_means_no_tier() -> None:
    event = decode_one(fixture_obj("tier_left"))
    assert event.type is EventType.TIER_CHANGED
    assert event.tier is None


def test_tier_prolonged_keeps_the_tier() -> None:
    body = fixture_obj("tier_joined")
    body["event"]["type"] = "customer.loyalty.tier.prolonged"
    event = decode_one(body)
    assert event.type is EventType.TIER_CHANGED
    assert event.tier is not None and event.tier.name == "Bronze"


@pytest.mark.parametrize(
    "event_type",
    ["redemption.failed", "redemption.rollback.succeeded", "customer.reward_redemptions.pending"],
)
def test_failed_or_unfinished_redemptions_are_other(event_type: str) -> None:
    body = fixture_obj("reward_redemption_completed")
    body["event"]["type"] = event_type
    assert decode_one(body).type is EventType.OTHER


def test_unknown_type_is_other_with_verbatim_type() -> None:
    body = fixture_obj("customer_created")
    body["type"] = body["event"]["type"] = "customer.consents.given"
    event = decode_one(body)
    assert event.type is EventType.OTHER
    assert event.provider_event_type == "customer.consents.given"


def test_unknown_type_about_no_customer_yields_no_events() -> None:
    body = {
        "id": "whs_1",
        "type": "campaign.created",
        "data": {"campaign": {"id": "camp_iRMdcq07g9W4dOSRXuTovupi"}},
        "source": {"object": "webhook"},
        "event": {"id": "evcam_1", "type": "campaign.created"},
    }
    assert decode_obj(body) == []


def test_customer_falls_back_to_voucher_holder() -> None:
    event = decode_one(fixture_obj("transaction_created_addition"))
    assert event.customer_id == "cust_2p0TvCOvB25HWUrW9JFf4czJ"


# --- decode errors ----------------------------------------------------------------------------


def test_missing_customer_id_names_the_fields() -> None:
    body = fixture_obj("customer_created")
    del body["data"]["customer"]["id"]
    with pytest.raises(DecodeError, match=r"body\.data\.customer\.id"):
        decode_obj(body)


def test_tier_event_without_tier_names_the_field() -> None:
    body = fixture_obj("tier_upgraded")
    del body["data"]["loyalty_tier_to"]
    with pytest.raises(DecodeError, match=r"body\.data\.loyalty_tier_to is missing"):
        decode_obj(body)


def test_order_event_without_order_names_the_field() -> None:
    body = fixture_obj("order_paid")
    body["data"]["order"] = None
    with pytest.raises(DecodeError, match=r"body\.data\.order is missing"):
        decode_obj(body)


def test_malformed_points_name_the_field() -> None:
    body = fixture_obj("seed004_points_added")
    body["data"]["balance"]["points"] = "forty"
    with pytest.raises(DecodeError, match=r"body\.data\.balance\.points"):
        decode_obj(body)


def test_envelope_without_data_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"body\.data is missing"):
        decode_obj({"id": "whs_1", "type": "customer.created"})


def test_unrecognisable_raw_payload_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="no Voucherify envelope"):
        decode_obj({"customer": {"id": "cust_1"}, "hello": "world"})


# --- properties -------------------------------------------------------------------------------

SHAPED = shaped(
    ["id", "type", "data", "event", "source", "object", "customer", "holder", "voucher",
     "balance", "transaction", "points", "order", "loyalty_tier", "loyalty_tier_to",
     "pending_points", "created_at", "holder_id", "details", "metadata", "webhook_id"],
    [
        "customer.rewarded.loyalty_points",
        "voucher.loyalty_card.transaction.created",
        "customer.loyalty.tier.left",
        "customer.order.paid",
        "distribution",
        "event",
        "POINTS_REDEMPTION",
        "loyalty_card",
        "2024-01-01T00:00:00Z",
        "cust_1",
        "vtx_1",
    ],
)  # fmt: skip
# Arbitrary bytes and JSON: test_fuzz.py, for every provider.


@settings(max_examples=200, deadline=None)
@given(SHAPED)
def test_envelope_shaped_json_raises_only_decode_errors(value: Any) -> None:
    body = json.dumps(value).encode()
    only_expected_errors(VF, body, CTX, {"x-voucherify-signature": "ab" * 32}, SECRETS)
