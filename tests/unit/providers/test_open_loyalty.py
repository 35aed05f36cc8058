"""Open Loyalty: legacy header and HMAC verification, legacy/subscription decoding rules."""

from __future__ import annotations

import hashlib
import hmac
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
from connector.providers.base import DecodeContext, RequestTarget
from connector.providers.open_loyalty import OpenLoyalty, hmac_signature
from connector.settings import Settings
from tests import support
from tests.support import FIXTURES

NOW = 1_767_323_045.0  # 2026-01-02T03:04:05Z
OL = OpenLoyalty(clock=lambda: NOW)
ALL = support.test_secrets()["open_loyalty"]
HEADER_ONLY = {"header_name": ALL["header_name"], "header_value": ALL["header_value"]}
# The `template` scheme (older custom setups); without hmac_scheme/hmac_template it is `cloud`.
HMAC_ONLY = {"hmac_secret": ALL["hmac_secret"], "hmac_scheme": "template"}
ALL_TEMPLATE = ALL | {"hmac_scheme": "template"}
# Where `sign` addresses a cloud-scheme delivery by default: a local bridge, no tenant.
LOCAL = RequestTarget("POST", "127.0.0.1", "/webhooks/open_loyalty")
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
        OL.verify(BODY, headers, ALL_TEMPLATE)
    _, cloud = OL.sign(BODY, ALL | {"hmac_secret": "wrong"})
    with pytest.raises(VerificationError, match="does not match"):
        OL.verify(BODY, cloud, ALL, target=LOCAL)


def test_both_configured_the_header_is_required_even_with_a_valid_signature() -> None:
    with pytest.raises(VerificationError, match="missing X-OL-Token"):
        OL.verify(BODY, hmac_headers(BODY), ALL)


def test_sign_produces_header_and_fresh_hmac_that_verify() -> None:
    body, headers = OL.sign(BODY, ALL_TEMPLATE)
    assert headers["X-OL-Token"] == ALL["header_value"]
    assert headers["X-Webhook-Timestamp"] == str(int(NOW))
    uuid.UUID(headers["X-Webhook-Request-Id"])
    OL.verify(body, headers, ALL_TEMPLATE)
    OL.verify(body, headers, HMAC_ONLY)
    body, headers = OL.sign(BODY, ALL)  # cloud scheme, for a local bridge without a tenant
    assert headers["X-Webhook-Signature-Version"] == "1"
    OL.verify(body, headers, ALL, target=LOCAL)
    OL.verify(body, headers, {"hmac_secret": ALL["hmac_secret"]}, target=LOCAL)
    assert OL.delivery_id(body, headers) == headers["X-Webhook-Request-Id"]
    assert OL.delivery_id(body, {}) is None


def test_configuration_needs_a_full_header_pair_or_an_hmac_secret() -> None:
    assert OL.is_configured(HEADER_ONLY)
    assert OL.is_configured(HMAC_ONLY)
    assert not OL.is_configured({"header_name": "X-OL-Token"})
    assert not OL.is_configured({})
    with pytest.raises(VerificationError):
        OL.verify(BODY, {"X-OL-Token": "x"}, {})


# --- HMAC, Open Loyalty Cloud scheme --------------------------------------------------------

# The page's own example: POST to https://example.com/webhooks, empty body. The key is the
# secret without "whsec_", used as its 64 ASCII characters.
CLOUD_KEY = "0123456789abcdef" * 4
CLOUD_SECRET = "whsec_" + CLOUD_KEY
CLOUD = {"hmac_secret": CLOUD_SECRET}
TS = str(int(NOW))
RID = "8aaaabcd-0f85-4b7e-9c1d-000000000001"
EXAMPLE = RequestTarget("POST", "example.com", "/webhooks")


def cloud_reference(
    key: bytes, method: str, host: str, path: str, body: bytes, timestamp: str, request_id: str
) -> str:
    """The vendor's recipe, written out by hand: six lines joined by "\\n", no trailing newline."""
    lines = [
        method,
        f"{len(host.encode())}:{host}",
        f"{len(path.encode())}:{path}",
        hashlib.sha256(body).hexdigest(),
        timestamp,
        request_id,
    ]
    return hmac.new(key, "\n".join(lines).encode(), hashlib.sha256).hexdigest()


def cloud_headers(
    body: bytes = BODY,
    *,
    key: bytes = CLOUD_KEY.encode(),
    method: str = "POST",
    host: str = "example.com",
    path: str = "/webhooks",
    timestamp: str = TS,
    request_id: str = RID,
) -> dict[str, str]:
    return {
        "X-Webhook-Signature": cloud_reference(
            key, method, host, path, body, timestamp, request_id
        ),
        "X-Webhook-Signature-Algorithm": "hmac-sha256",
        "X-Webhook-Timestamp": timestamp,
        "X-Webhook-Request-Id": request_id,
        "X-Webhook-Signature-Version": "1",
    }


def test_cloud_test_vector_matches_an_independent_computation() -> None:
    # Canonical string and digest computed outside Python (printf | openssl dgst -sha256 -hmac).
    canonical = (
        b"POST\n11:example.com\n9:/webhooks\n"
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        b"1709467498\n8aaaabcd-0f85-4b7e-9c1d-000000000001"
    )
    digest = "f6a51952d705c8b152e4ffa558230c41d5cbc10fdf7b1e882b3f1af351b6c33e"
    assert hmac.new(CLOUD_KEY.encode(), canonical, hashlib.sha256).hexdigest() == digest
    assert (
        cloud_reference(
            CLOUD_KEY.encode(), "POST", "example.com", "/webhooks", b"", "1709467498", RID
        )
        == digest
    )
    ol = OpenLoyalty(clock=lambda: 1709467498)
    headers = {
        "X-Webhook-Signature": digest,
        "X-Webhook-Signature-Algorithm": "hmac-sha256",
        "X-Webhook-Timestamp": "1709467498",
        "X-Webhook-Request-Id": RID,
    }
    ol.verify(b"", headers, CLOUD, target=EXAMPLE)
    ol.verify(b"", headers | {"X-Webhook-Signature": digest.upper()}, CLOUD, target=EXAMPLE)


def test_cloud_signature_of_a_real_body_passes() -> None:
    OL.verify(BODY, cloud_headers(), CLOUD, target=EXAMPLE)


def test_cloud_is_the_default_scheme_without_a_template() -> None:
    with pytest.raises(VerificationError, match="does not match"):  # a {body} template HMAC
        OL.verify(BODY, hmac_headers(BODY, secret=CLOUD_SECRET), CLOUD, target=EXAMPLE)
    template = CLOUD | {"hmac_template": "{body}"}  # a template alone selects that scheme
    OL.verify(BODY, hmac_headers(BODY, secret=CLOUD_SECRET), template, target=EXAMPLE)
    with pytest.raises(VerificationError, match="does not match"):
        OL.verify(BODY, cloud_headers(), template, target=EXAMPLE)


def test_cloud_secret_loses_its_whsec_prefix_and_is_not_hex_decoded() -> None:
    OL.verify(BODY, cloud_headers(), {"hmac_secret": CLOUD_KEY}, target=EXAMPLE)  # bare key
    for wrong_key in (CLOUD_SECRET.encode(), bytes.fromhex(CLOUD_KEY)):
        with pytest.raises(VerificationError, match="does not match"):
            OL.verify(BODY, cloud_headers(key=wrong_key), CLOUD, target=EXAMPLE)


@pytest.mark.parametrize(
    "signed_for",
    [
        {"method": "PUT"},
        {"method": "post"},
        {"host": "evil.example.com"},
        {"host": "example.com:443"},
        {"path": "/webhooks/"},
        {"path": "/webhooks?foo=bar"},
        {"path": "/other"},
        {"timestamp": str(int(NOW) - 1)},
        {"request_id": "8aaaabcd-0f85-4b7e-9c1d-000000000002"},
    ],
)
def test_cloud_signature_for_another_request_is_rejected(signed_for: dict[str, str]) -> None:
    headers = cloud_headers(**signed_for)  # type: ignore[arg-type]
    headers["X-Webhook-Timestamp"] = TS
    headers["X-Webhook-Request-Id"] = RID
    with pytest.raises(VerificationError, match="does not match"):
        OL.verify(BODY, headers, CLOUD, target=EXAMPLE)


def test_cloud_tampered_body_or_wrong_secret_is_rejected_without_leaking_either() -> None:
    tampered = BODY.replace(b'"amountChange": 25', b'"amountChange": 95')
    assert tampered != BODY
    with pytest.raises(VerificationError, match="does not match") as info:
        OL.verify(tampered, cloud_headers(), CLOUD, target=EXAMPLE)
    expected = cloud_reference(
        CLOUD_KEY.encode(), "POST", "example.com", "/webhooks", tampered, TS, RID
    )
    assert expected not in str(info.value)
    assert CLOUD_KEY not in str(info.value)
    assert "POST example.com/webhooks" in str(info.value)  # says what it was checked against
    with pytest.raises(VerificationError, match="does not match") as info:
        OL.verify(BODY, cloud_headers(key=b"not-the-secret"), CLOUD, target=EXAMPLE)
    assert CLOUD_KEY not in str(info.value)


def test_cloud_timestamp_is_required_and_checked() -> None:
    stale = str(int(NOW) - 301)
    with pytest.raises(VerificationError, match="more than 300 s"):
        OL.verify(BODY, cloud_headers(timestamp=stale), CLOUD, target=EXAMPLE)
    OL.verify(
        BODY,
        cloud_headers(timestamp=stale),
        CLOUD | {"timestamp_tolerance": "600"},
        target=EXAMPLE,
    )
    headers = cloud_headers()
    del headers["X-Webhook-Timestamp"]
    with pytest.raises(VerificationError, match="missing X-Webhook-Timestamp"):
        OL.verify(BODY, headers, CLOUD, target=EXAMPLE)
    headers = cloud_headers()
    del headers["X-Webhook-Request-Id"]
    with pytest.raises(VerificationError, match="missing X-Webhook-Request-Id"):
        OL.verify(BODY, headers, CLOUD, target=EXAMPLE)


def test_cloud_scheme_cannot_be_verified_without_the_request_target() -> None:
    with pytest.raises(VerificationError, match="method, host and path"):
        OL.verify(BODY, cloud_headers(), CLOUD)
    # a subscription that does not sign still passes on the legacy header alone, offline too
    OL.verify(BODY, {"X-OL-Token": ALL["header_value"]}, CLOUD | HEADER_ONLY)


def test_request_target_drops_port_and_query_and_defaults_the_path() -> None:
    assert RequestTarget.of("post", "example.com:8443", "/webhooks?foo=bar") == EXAMPLE
    assert RequestTarget.of("POST", "example.com", "").path == "/"
    assert RequestTarget.of("POST", "example.com", "?a=1").path == "/"
    assert RequestTarget.of("POST", "example.com", "/webhooks/").path == "/webhooks/"
    assert RequestTarget.of("POST", "example.com", "/abc%20def").path == "/abc%20def"
    assert RequestTarget.of("POST", "[::1]:8080", "/x").host == "[::1]"
    behind = RequestTarget.of(
        "POST", "10.0.0.5:8080", "/webhooks/open_loyalty", "https://hooks.example.com:8443/base/"
    )
    assert behind == RequestTarget("POST", "hooks.example.com", "/base/webhooks/open_loyalty")
    assert RequestTarget.of("POST", "b:1", "/w", "https://a.example").path == "/w"
    # a signature over the port-less host verifies a delivery whose Host had a port
    target = RequestTarget.of("POST", "example.com:8443", "/webhooks?foo=bar")
    OL.verify(BODY, cloud_headers(), CLOUD, target=target)


def test_sign_makes_cloud_signatures_for_the_given_target() -> None:
    target = RequestTarget("POST", "hooks.example.com", "/base/webhooks/open_loyalty/t1")
    body, headers = OL.sign(BODY, CLOUD, target=target)
    OL.verify(body, headers, CLOUD, target=target)
    key = CLOUD_KEY.encode()
    ts, rid = headers["X-Webhook-Timestamp"], headers["X-Webhook-Request-Id"]
    assert headers["X-Webhook-Signature"] == cloud_reference(
        key, "POST", "hooks.example.com", "/base/webhooks/open_loyalty/t1", body, ts, rid
    )
    with pytest.raises(VerificationError, match="does not match"):
        OL.verify(body, headers, CLOUD, target=LOCAL)
    _, default = OL.sign(BODY, CLOUD)
    OL.verify(BODY, default, CLOUD, target=LOCAL)


def test_hmac_scheme_cloud_with_a_template_is_a_config_error() -> None:
    both = CLOUD | {"hmac_scheme": "cloud", "hmac_template": "{body}"}
    with pytest.raises(ConfigError, match="hmac_scheme=cloud and hmac_template"):
        OL.verify(BODY, cloud_headers(), both, target=EXAMPLE)
    with pytest.raises(ConfigError, match="expected cloud or template"):
        OL.verify(BODY, cloud_headers(), CLOUD | {"hmac_scheme": "v2"}, target=EXAMPLE)
    env = {
        "CONNECTOR_OPEN_LOYALTY_HMAC_SECRET": CLOUD_SECRET,
        "CONNECTOR_OPEN_LOYALTY_HMAC_SCHEME": "cloud",
        "CONNECTOR_OPEN_LOYALTY_HMAC_TEMPLATE": "{timestamp}.{body}",
    }
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert "CONNECTOR_OPEN_LOYALTY_HMAC_SCHEME" in message
    assert "CONNECTOR_OPEN_LOYALTY_HMAC_TEMPLATE" in message
    assert CLOUD_SECRET not in message
    with pytest.raises(ConfigError, match="expected cloud or template"):
        Settings.from_env(env | {"CONNECTOR_OPEN_LOYALTY_HMAC_SCHEME": "v2"})
    # the template scheme with a template, and either alone, are fine
    Settings.from_env(env | {"CONNECTOR_OPEN_LOYALTY_HMAC_SCHEME": "template"})
    Settings.from_env(env | {"CONNECTOR_OPEN_LOYALTY_HMAC_SCHEME": ""})


def test_tenant_template_against_a_global_cloud_scheme_is_a_config_error(tmp_path: Any) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text('[open_loyalty.shop-eu]\nhmac_template = "{timestamp}.{body}"\n')
    tenants.chmod(0o600)
    env = {
        "CONNECTOR_OPEN_LOYALTY_HMAC_SECRET": CLOUD_SECRET,
        "CONNECTOR_TENANTS_FILE": str(tenants),
    }
    s = Settings.from_env(env)  # no global scheme: the tenant's template selects its own
    assert s.provider("open_loyalty").secrets_for("shop-eu")["hmac_template"]  # type: ignore[index]
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env | {"CONNECTOR_OPEN_LOYALTY_HMAC_SCHEME": "cloud"})
    assert "CONNECTOR_OPEN_LOYALTY_HMAC_SCHEME" in str(info.value)
    assert "[open_loyalty.shop-eu] HMAC_TEMPLATE" in str(info.value)


def test_public_url_setting_is_validated() -> None:
    s = Settings.from_env({"CONNECTOR_PUBLIC_URL": "https://hooks.example.com/base/"})
    assert s.public_url == "https://hooks.example.com/base"
    assert Settings.from_env({}).public_url is None
    for bad in ("hooks.example.com", "https://hooks.example.com/?a=1", "ftp://x", "https://u@x"):
        with pytest.raises(ConfigError, match="CONNECTOR_PUBLIC_URL"):
            Settings.from_env({"CONNECTOR_PUBLIC_URL": bad})


# --- decoding -------------------------------------------------------------------------------


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


def test_pending_transfer_is_the_pending_phase_of_its_movement() -> None:
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
    # the activation names the same transfer; the ledger keeps the phases apart
    assert event.movement_id == "t-2"


def test_unknown_transfer_type_claims_no_delta() -> None:
    event = one(
        {
            "type": "account.points_transfer",
            "data": {"customerId": CUSTOMER, "pointsTransferId": "t-3", "value": 10}
            | {"type": "mystery", "state": "active"},
        }
    )
    assert event.type is EventType.OTHER
    assert event.points_delta is None
    assert event.movement_id is None


@pytest.mark.parametrize("state", ["canceled", "expired"])
def test_ended_transfer_cancels_its_movement_without_an_amount(state: str) -> None:
    # The amount is not this webhook's to book (an active transfer's balance effect arrives as
    # an amount change): it only ends whatever the transfer still has pending.
    event = one(
        {
            "type": "account.points_transfer",
            "data": {"customerId": CUSTOMER, "pointsTransferId": "t-3", "value": 10}
            | {"type": "adding", "state": state},
        }
    )
    assert event.type is EventType.POINTS_CANCELED
    assert event.points_delta is None
    assert event.movement_id == "t-3"


def test_unknown_change_type_is_a_movement_sized_by_the_balance() -> None:
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
    assert event.type is EventType.POINTS_ADJUSTED
    assert event.points_delta is None
    assert event.balance == Decimal(5)


@pytest.mark.parametrize("change_type", ["subtract", "add", None])
def test_zero_change_from_oss_expire_cancel_unlock_is_a_gap(change_type: str | None) -> None:
    # OSS 3.x AccountCommandHandler::handleExpire/Cancel/UnlockPointsTransfer dispatch
    # AvailablePointsAmountChangedSystemEvent with the default $amountChange = 0 and
    # $operationType = 'subtract' (open-loyalty-framework 3.x): only the new amount is true.
    data = {"customerId": CUSTOMER, "amount": 40.0, "amount_change": 0}
    if change_type is not None:
        data["amount_change_type"] = change_type
    event = one({"type": "account.available_points_amount_changed", "data": data})
    assert event.type is EventType.POINTS_ADJUSTED
    assert event.points_delta is None
    assert event.balance == Decimal(40)
    assert event.attributes["size"] == "derived"


# OSS 3.x: an amount change carries no time, and the same change twice is the same bytes
EARN_10 = json.dumps(
    {
        "type": "account.available_points_amount_changed",
        "data": {
            "customerId": CUSTOMER,
            "amount": 10,
            "amount_change": 10,
            "amount_change_type": "add",
        },
    }
).encode()


def test_webhook_timestamp_orders_payloads_without_a_time() -> None:
    body = EARN_10
    [event] = OL.decode(body, {"X-Webhook-Timestamp": "1767225600"}, CTX)
    assert event.occurred_at == datetime(2026, 1, 1, tzinfo=UTC)
    [offline] = OL.decode(body, {}, CTX)
    assert offline.occurred_at == CTX.received_at


def test_identical_bodies_of_two_deliveries_are_two_events_and_a_reread_is_one() -> None:
    # earn 10, spend 10, earn 10 again: the third body is byte-identical to the first
    body = EARN_10
    first = OL.decode(body, {}, DecodeContext(received_at=RECEIVED, delivery="req-1"))[0]
    again = OL.decode(body, {}, DecodeContext(received_at=RECEIVED, delivery="req-3"))[0]
    reread = OL.decode(body, {}, DecodeContext(received_at=RECEIVED, delivery="req-1"))[0]
    assert first.event_id != again.event_id
    assert first.event_id == reread.event_id
    assert first.attributes["synthetic_event_id"] == "true"


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


def test_a_recognised_retry_is_dated_no_later_than_its_first_attempt() -> None:
    # Cloud signs every attempt with a fresh X-Webhook-Timestamp; the bridge tags a recognised
    # retry with first-received-at, which the worker makes the context's received_at.
    first = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    resent = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    first_ms, resent_ms = int(first.timestamp() * 1000), int(resent.timestamp() * 1000)
    headers = {
        "X-Webhook-Timestamp": str(int(resent.timestamp())),
        "first-received-at": str(first_ms),
        "received-at": str(resent_ms),
    }
    context = DecodeContext(received_at=first, delivery="req-first")
    [event] = OL.decode(EARN_10, headers, context)
    assert event.occurred_at == first
    # not a recognised retry (no first-received-at, or not earlier): the signed time stands
    plain = {k: v for k, v in headers.items() if k != "first-received-at"}
    [fresh] = OL.decode(EARN_10, plain, DecodeContext(received_at=first))
    assert fresh.occurred_at == resent
    same = headers | {"first-received-at": str(resent_ms)}
    [untagged] = OL.decode(EARN_10, same, DecodeContext(received_at=first))
    assert untagged.occurred_at == resent


# --- Open Loyalty 5.x: {messageId, requestId, eventName, storeCode, createdAt, data} -----------

V5_CHANGE = fixture("v5_available_points_amount_changed")
V5_PENDING = fixture("v5_units_transfer_added_pending")
V5_CUSTOMER = "7f3a9c1e-2b4d-4e6f-8a0b-1c2d3e4f5a6b"
V5_TRANSFER = "b10c0a7e-1111-4222-8333-444455550001"


def v5(body: bytes, **changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(body)
    data = changes.pop("data", None)
    if data is not None:
        obj["data"] = obj["data"] | data
    return obj | changes


def test_a_v5_body_decodes_with_its_message_id_and_transfer_id() -> None:
    [event] = OL.decode(V5_CHANGE, {}, CTX)
    assert event.provider_event_type == "AvailablePointsAmountChanged"
    assert event.event_id == "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"
    assert "synthetic_event_id" not in event.attributes  # a provider id and a provider clock
    assert event.customer_id == V5_CUSTOMER
    assert event.movement_id == V5_TRANSFER
    assert (event.type, event.points_delta, event.balance) == (
        EventType.POINTS_EARNED,
        Decimal(100),
        Decimal(100),
    )
    assert event.occurred_at == datetime(2025, 6, 1, 8, 40, tzinfo=UTC)
    assert event.attributes["storeCode"] == "DEFAULT"


def test_a_v5_retry_has_a_new_request_id_and_the_same_event_id() -> None:
    [first] = OL.decode(V5_CHANGE, {}, DecodeContext(received_at=RECEIVED, delivery="req-1"))
    retry = json.dumps(v5(V5_CHANGE, requestId=str(uuid.uuid4()))).encode()
    [again] = OL.decode(retry, {}, DecodeContext(received_at=RECEIVED, delivery="req-2"))
    assert again.event_id == first.event_id
    # another webhook with the same bytes otherwise is another event
    other = json.dumps(v5(V5_CHANGE, messageId=str(uuid.uuid4()))).encode()
    assert one(json.loads(other)).event_id != first.event_id


def test_a_v5_message_id_without_a_provider_time_stays_synthetic() -> None:
    obj = v5(V5_CHANGE)
    del obj["createdAt"]
    event = one(obj)
    assert event.event_id == obj["messageId"]
    assert event.attributes["synthetic_event_id"] == "true"  # the ledger's horizon ignores it


def test_type_wins_over_event_name_and_neither_is_named() -> None:
    assert one(v5(V5_CHANGE, type="customer.updated")).type is EventType.CUSTOMER_UPDATED
    obj = v5(V5_CHANGE)
    del obj["eventName"]
    with pytest.raises(DecodeError, match="body.type is missing"):
        decode(obj)


def test_a_pending_v5_units_transfer_is_the_pending_phase_of_its_transfer() -> None:
    [event] = OL.decode(V5_PENDING, {}, CTX)
    assert event.type is EventType.POINTS_PENDING
    assert event.points_delta == Decimal(100)
    assert event.movement_id == V5_TRANSFER  # the activation's amount change names it too
    assert event.customer_id == V5_CUSTOMER  # data.member
    assert event.event_id == "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e30"


def test_an_active_v5_units_transfer_is_the_same_movement_as_its_amount_change() -> None:
    transfer = one(v5(V5_PENDING, data={"pending": False}))
    [change] = OL.decode(V5_CHANGE, {}, CTX)
    assert transfer.type is change.type is EventType.POINTS_EARNED
    assert transfer.movement_id == change.movement_id == V5_TRANSFER
    assert transfer.points_delta == change.points_delta == Decimal(100)
    spend = one(v5(V5_PENDING, data={"pending": False, "type": "p2p_spending"}))
    assert (spend.type, spend.points_delta) == (EventType.POINTS_REDEEMED, Decimal(-100))


def test_an_expired_v5_units_transfer_ends_its_related_transfer_without_an_amount() -> None:
    expired = {"type": "expired", "pending": False, "transferId": "t-exp"}
    assert one(v5(V5_PENDING, data=expired)).type is EventType.OTHER  # no relatedTransferId
    event = one(v5(V5_PENDING, data=expired | {"relatedTransferId": V5_TRANSFER}))
    assert event.type is EventType.POINTS_CANCELED
    assert (event.movement_id, event.points_delta) == (V5_TRANSFER, None)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("blocked", {"type": "blocked"}),
        ("no transfer id", {"transferId": None}),
        ("no units", {"units": None}),
    ],
)
def test_other_v5_units_transfers_claim_no_delta(name: str, data: dict[str, Any]) -> None:
    event = one(v5(V5_PENDING, data=data))
    assert event.type is EventType.OTHER
    assert event.points_delta is None


@pytest.mark.parametrize(
    ("name", "data"),
    [
        # the spec's data: the member, the campaign, the effects given (units among them)
        (
            "CampaignEffectWasApplied",
            {
                "member": {"customerId": V5_CUSTOMER},
                "campaign": {"campaignId": "camp-1"},
                "effectsGiven": [{"effect": "give_points", "pointsRule": "10"}],
            },
        ),
        # the spec's data: the issued reward (its customerId, costInPoints) and the statuses
        (
            "RewardRedemptionStatusChanged",
            {
                "issuedReward": {"customerId": V5_CUSTOMER, "costInPoints": 50.0},
                "newStatus": "canceled",
                "oldStatus": "pending",
            },
        ),
    ],
)
def test_campaign_effects_and_redemption_status_changes_move_no_points(
    name: str, data: dict[str, Any]
) -> None:
    # The units either moves arrive as AvailablePointsAmountChanged (docs/delivery-semantics.md),
    # so booking them here too would count them twice.
    body = v5(V5_CHANGE, eventName=name) | {"data": data}
    event = one(body)
    assert event.type is EventType.OTHER
    assert event.provider_event_type == name
    assert event.customer_id == V5_CUSTOMER
    assert event.points_delta is None


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
    OL.verify(signed, headers, ALL, target=LOCAL)
