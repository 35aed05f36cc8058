"""Open Loyalty webhooks (legacy ``{type, data}`` and subscription names) into canonical events.

Authentication, two optional mechanisms. Which one a deployment sends: Open Loyalty OSS
(self-hosted, ``webhooks.rst``) only the static header, no HMAC; Open Loyalty Cloud the HMAC of
the ``cloud`` scheme below (when the subscription has ``hmacEnabled``); older custom setups an HMAC
over a configured template (``template`` scheme).

* legacy static header: a header name/value configured in Open Loyalty (``header_name`` /
  ``header_value``), compared in constant time;
* HMAC: ``X-Webhook-Signature`` = hex HMAC-SHA256(secret, message), with ``X-Webhook-Timestamp``
  (Unix seconds), ``X-Webhook-Request-Id`` (UUID per delivery), ``X-Webhook-Signature-Algorithm``
  (``hmac-sha256``) and ``X-Webhook-Signature-Version`` (the key rotation version; kept, not
  used: rotation invalidates the old key at once, so there is one secret per tenant).
  ``hmac_scheme`` picks the message (default ``cloud``, or ``template`` when ``hmac_template``
  is set; both ``cloud`` and a template is a ConfigError):

  - ``cloud`` (Open Loyalty Cloud,
    https://help.openloyalty.io/main-features/webhooks/hmac/verifying-the-signature): these
    lines joined by ``\\n``, no trailing newline::

        {METHOD}
        {host_length}:{host}
        {path_length}:{path}
        {sha256 hex of the raw body}
        {timestamp}
        {request_id}

    The host has no port; the path is percent-encoded as sent, without the query string, and
    "/" when empty; lengths are UTF-8 byte counts (host and path are ASCII in practice, so
    bytes = characters). Our copy of the page is cut off after ``{timestamp}\\n{r``:
    ``{request_id}`` (the X-Webhook-Request-Id value) is the best reading, since step 1 of the
    page extracts that header and nothing else uses it; validate against a captured delivery.
    The secret is shown as ``whsec_<64 hex>``: the ``whsec_`` prefix is stripped and the rest
    used as its ASCII bytes (not hex-decoded). The timestamp is always required and checked.
    The bridge passes the method, host and path (from ``CONNECTOR_PUBLIC_URL`` behind a proxy,
    else the Host header and request path); without them (offline) verification fails.
  - ``template`` (older custom setups): the message is ``hmac_template`` (default ``{body}``;
    ``{timestamp}.{body}`` also in use; placeholders ``{body}``, ``{timestamp}``,
    ``{request_id}``) and the secret is used as is. The timestamp is checked when sent, and
    required when the template signs it; only then does it protect against replays.

  A timestamp further than ``timestamp_tolerance`` seconds (default 300, ``0`` disables) from
  now is rejected as a replay.

Policy when both are configured: the legacy header is required whenever ``header_name`` is set;
a valid HMAC is required whenever ``hmac_secret`` is set AND the delivery carries
``X-Webhook-Signature`` (subscriptions without HMAC signing still pass on the header alone); and
at least one mechanism must have passed (so with only ``hmac_secret`` set, a delivery without
the signature is rejected).

Quirks: legacy and OSS bodies (``{type, data}``) have no event id, so event ids are hashes of the
body AND the delivery identity (the signed ``X-Webhook-Request-Id`` where Cloud sends it, else the
bridge's request id): a member returning to an earlier state sends byte-identical bodies that are
real movements (docs/delivery-semantics.md). Open Loyalty 5.x sends every webhook as
``{messageId, requestId, eventName, storeCode, createdAt, data}``: ``eventName`` is the type,
``messageId`` ("unique identifier for each webhook", the same on a retry; ``requestId`` is per
attempt) the event id, and points webhooks name their transfer ``data.transferId``;
OSS 3.x sends no time and sends expiries, cancels and unlocks as ``amount_change: 0``;
``amount_change``/``amountChange`` spellings vary by version; points may be floats (``100.0``);
``transaction.registered`` has no customer id (the customer is linked later by
``transaction.assigned_to_customer``); the docs' samples are invalid JSON (fixed in fixtures).

Vendor docs (see providers.md §2): legacy webhooks page (seed 001, OSS ``webhooks.rst``),
https://help.openloyalty.io/main-features/webhooks,
https://help.openloyalty.io/main-features/webhooks/webhooks-1 (what triggers a webhook),
https://help.openloyalty.io/main-features/webhooks/hmac,
https://help.openloyalty.io/implementation-guide/integrations-and-data-exchange/webhooks/hmac/verifying-the-signature.
"""

# Mapping (Open Loyalty type -> canonical LoyaltyEvent). Type: body.type, else the 5.x
# body.eventName. Event id: the 5.x body.messageId, else a hash (see the module docstring).
# Customer id: data.customerId, else data.customer / data.member .customerId / .id (5.x);
# none -> DecodeError. occurred_at: top-level createdAt, else data.createdAt, else the per-type
# time named below, else X-Webhook-Timestamp (for a recognised retry no later than the first
# attempt's receive time), else the receive time. movement_id: data.pointsTransferId, else the
# 5.x data.transferId.
#
# | legacy type / subscription name          | type                 | fields
# |------------------------------------------|----------------------|---------------------------
# | customer.registered / CustomerRegistered, | CUSTOMER_REGISTERED  | tier.id=data.data.levelId,
# |   CustomerWasRegisteredWithoutActivation  |                      | time data.data.createdAt
# | customer.updated / CustomerUpdated,       | CUSTOMER_UPDATED     |
# |   CustomerEmailWasChanged,                |                      |
# |   CustomerPhoneNumberWasChanged           |                      |
# | customer.deleted                          | CUSTOMER_DELETED     |
# | customer.deactivated / CustomerDeactivated| CUSTOMER_DEACTIVATED |
# | customer.level_changed,                   | TIER_CHANGED         | tier=(levelId, levelName),
# |   customer.level_changed_automatically /  |                      | time levelAchievementDate
# |   CustomerLevelChanged                    |                      |
# | transaction.registered /                  | ORDER_RECORDED       | order.id=transactionId,
# |   TransactionRegistered                   |                      | grossValue (sum of items)
# |                                           |                      | as text; needs a customer
# | transaction.assigned_to_customer /        | ORDER_RECORDED       | order.id=transactionId,
# |   TransactionAssignedToCustomer           |                      | grossValue as text
# | account.available_points_amount_changed / | POINTS_EARNED (add,  | points_delta=+-amountChange
# |   AvailablePointsAmountChanged            |   p2p_add) or        | balance=amount,
# |                                           |   POINTS_REDEEMED    | movement_id=pointsTransferId;
# |                                           |   (subtract,         | change 0 (OSS expire/cancel/
# |                                           |   p2p_subtract);     | unlock), missing or unknown
# |                                           | POINTS_ADJUSTED gap  | type: no delta, the ledger
# |                                           |                      | sizes it from the balances
# | customer.bought_campaign /                | REWARD_REDEEMED      | campaignId, couponCode,
# |   CustomerBoughtReward                    |                      | costInPoints; no delta
# | account.expiring_points_notification /    | POINTS_EXPIRING      | points, pointsWillExpire;
# |   PointsWillExpire                        |                      | no delta
# | account.points_transfer                   | POINTS_EARNED or     | points_delta=+value (adding,
# |                                           |   POINTS_REDEEMED    | p2p_adding) / -value
# |                                           |   (any issuer)       | (spending, subtracting,
# |                                           |                      | p2p_spending...),
# |                                           |                      | movement_id=pointsTransferId;
# |                                           | POINTS_PENDING       | state pending (its phase)
# |                                           | POINTS_CANCELED      | canceled/expired: no amount
# |                                           | OTHER                | other state or unknown type
# | UnitsTransferWasAdded (5.x)               | POINTS_PENDING       | pending: true; +-units,
# |                                           |                      | movement_id=transferId
# |                                           | POINTS_EARNED /      | active adding / spending
# |                                           |   POINTS_REDEEMED    | (p2p_*): +-units, transferId
# |                                           | POINTS_CANCELED      | type expired: movement_id=
# |                                           |                      | relatedTransferId, no amount
# |                                           | OTHER                | blocked, unknown, no units
# | CampaignEffectWasApplied,                 | OTHER                | the points move in
# |   RewardRedemptionStatusChanged, anything |                      | AvailablePointsAmountChanged
# |   else                                    |                      | (docs/delivery-semantics.md)
#
# transaction.registered: Open Loyalty sends customerData without an id, because a transaction
# is often registered before it is matched to a member. The canonical model needs a customer, so
# such a delivery is a DecodeError (DLQ, replayable) naming transaction.assigned_to_customer,
# which carries the same transactionId with the customerId.
#
# account.points_transfer and account.available_points_amount_changed about one transfer carry the
# same pointsTransferId as movement_id and the same signed delta, so the ledger counts it once.
# A pending transfer claims the pending phase of that movement_id (`<id>#pending` in the ledger):
# its activation, an amount change with the same pointsTransferId, books the balance and
# releases the pending points; a canceled or expired transfer releases whatever is pending.
# occurred_at falls back to the signed X-Webhook-Timestamp before the receive time.

from __future__ import annotations

import hashlib
import hmac
import re
import string
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from connector import raw
from connector.errors import ConfigError, DecodeError, VerificationError
from connector.models import (
    DEFAULT_ACCOUNT,
    POINTS_TYPES,
    SYNTHETIC_ID,
    EventType,
    LoyaltyEvent,
    OrderRef,
    Provider,
    Tier,
)
from connector.providers import BaseProvider, DecodeContext, Option, RequestTarget, Secrets, Where
from connector.providers.base import (
    build_event,
    constant_time_equals,
    expect_object,
    hashed_event_id,
    lower_headers,
    opt_points,
    opt_str,
    parse_object,
    parse_time,
    req_str,
    resolve_tenant,
)

SIGNATURE_HEADER = "x-webhook-signature"
ALGORITHM_HEADER = "x-webhook-signature-algorithm"
TIMESTAMP_HEADER = "x-webhook-timestamp"
REQUEST_ID_HEADER = "x-webhook-request-id"
SIGNATURE_VERSION_HEADER = "x-webhook-signature-version"
DEFAULT_TEMPLATE = "{body}"
DEFAULT_TOLERANCE = "300"
TEMPLATE_FIELDS = ("body", "timestamp", "request_id")
HMAC_SCHEMES = ("cloud", "template")
WHSEC_PREFIX = "whsec_"  # Open Loyalty Cloud shows its HMAC keys as whsec_<64 hex chars>
# What `sign` signs a cloud-scheme delivery for when given no target: a local bridge, no tenant
# (the unit and integration tests); `replay` passes the URL it really posts to.
DEFAULT_SIGN_TARGET = RequestTarget("POST", "127.0.0.1", "/webhooks/open_loyalty")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


def hmac_signature(
    secret: str,
    template: str,
    body: bytes,
    timestamp: str | None = None,
    request_id: str | None = None,
) -> str:
    """Hex HMAC-SHA256 of the message `template` describes (placeholders filled byte-exactly)."""
    message = _message(template, body, {"timestamp": timestamp, "request_id": request_id})
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def cloud_message(target: RequestTarget, body: bytes, timestamp: str, request_id: str) -> bytes:
    """The canonical request Open Loyalty Cloud signs (module docstring, ``cloud`` scheme)."""
    host = _bytes(target.host, "host")
    path = _bytes(target.path or "/", "path")
    return b"\n".join(
        (
            _bytes(target.method.upper(), "method"),
            b"%d:%s" % (len(host), host),
            b"%d:%s" % (len(path), path),
            hashlib.sha256(body).hexdigest().encode("ascii"),
            _bytes(timestamp, "X-Webhook-Timestamp"),
            _bytes(request_id, "X-Webhook-Request-Id"),
        )
    )


def cloud_signature(
    secret: str, target: RequestTarget, body: bytes, timestamp: str, request_id: str
) -> str:
    """Hex HMAC-SHA256 as Open Loyalty Cloud signs: key = the secret without ``whsec_``, as text."""
    key = secret.removeprefix(WHSEC_PREFIX).encode("utf-8")
    return hmac.new(
        key, cloud_message(target, body, timestamp, request_id), hashlib.sha256
    ).hexdigest()


def hmac_scheme(secrets: Secrets) -> str:
    """``cloud`` or ``template``: ``hmac_scheme``, else ``template`` iff a template is set."""
    raw = (secrets.get("hmac_scheme") or "").strip().lower()
    template = secrets.get("hmac_template")
    if not raw:
        return "template" if template else "cloud"
    if raw not in HMAC_SCHEMES:
        raise ConfigError(f"open_loyalty hmac_scheme {raw[:32]!r}: expected cloud or template")
    if raw == "cloud" and template:
        raise ConfigError(
            "open_loyalty hmac_scheme=cloud and hmac_template are both set: the cloud scheme "
            "signs a fixed string; unset hmac_template or set hmac_scheme=template"
        )
    return raw


def _bytes(value: str, what: str) -> bytes:
    # Header values arrive decoded with surrogateescape: this gives back the bytes as sent.
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise VerificationError(f"{what} is not valid text") from None


def _template_fields(template: str) -> set[str]:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"open_loyalty hmac_template {template!r} is malformed: {exc}") from None
    unknown = names - set(TEMPLATE_FIELDS)
    if unknown:
        raise ConfigError(
            f"open_loyalty hmac_template uses unknown placeholder(s) {sorted(unknown)}; "
            "valid: {body}, {timestamp}, {request_id}"
        )
    return names


def _message(template: str, body: bytes, values: Mapping[str, str | None]) -> bytes:
    _template_fields(template)
    out = bytearray()
    for literal, name, _, _ in string.Formatter().parse(template):
        out += literal.encode("utf-8")
        if name == "body":
            out += body
        elif name is not None:
            value = values.get(name)
            header = f"X-Webhook-{name.replace('_', '-').title()}"
            if value is None:
                raise VerificationError(f"missing {header} header")
            out += _bytes(value, header)
    return bytes(out)


class OpenLoyalty(BaseProvider):
    key = "open_loyalty"
    provider = Provider.OPEN_LOYALTY
    # Never the legacy shared-secret header: its value is a password.
    kept_headers = (
        SIGNATURE_HEADER,
        ALGORITHM_HEADER,
        TIMESTAMP_HEADER,
        REQUEST_ID_HEADER,
        SIGNATURE_VERSION_HEADER,
        "user-agent",
    )
    options = (
        Option(
            "HEADER_NAME",
            None,
            "name of the custom request header set in Open Loyalty",
            test="X-OL-Token",
            dev="X-Loyalty-Token",
        ),
        Option(
            "HEADER_VALUE",
            None,
            "value of that header (compared in constant time)",
            secret=True,
            test="ol-test-token",
            dev="dev-open-loyalty-token",
        ),
        Option(
            "HMAC_SECRET",
            None,
            "secret of the optional `X-Webhook-Signature` HMAC (Cloud: `whsec_...`, as shown)",
            secret=True,
            test="ol-test-hmac",
            dev="dev-open-loyalty-hmac",
        ),
        Option(
            "HMAC_SCHEME",
            None,
            "what the HMAC signs: `cloud` (Open Loyalty Cloud's method, host, path, body hash, "
            "timestamp, request id; the default) or `template` (the default when "
            "`HMAC_TEMPLATE` is set)",
        ),
        Option(
            "HMAC_TEMPLATE",
            None,
            "signed string of the `template` scheme (older custom setups): `{body}` (when unset) "
            "or `{timestamp}.{body}`",
        ),
        Option("TIMESTAMP_TOLERANCE", "300", "seconds `X-Webhook-Timestamp` may differ; 0 = off"),
    )
    # one retry on 4xx/5xx; its delay is not documented (help.openloyalty.io, rotate-hmac-secret-
    # key page; docs/delivery-semantics.md): an hour is assumed
    retry_window_s = 60 * 60

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def check_options(self, values: Secrets, where: Where) -> None:
        tol = values.get("timestamp_tolerance", "300")
        if not tol.isdigit():
            raise ConfigError(
                f"{where('TIMESTAMP_TOLERANCE')}={tol!r}: expected whole seconds >= 0"
            )
        if "{body}" not in values.get("hmac_template", "{body}"):
            raise ConfigError(f"{where('HMAC_TEMPLATE')} must contain {{body}}")
        if bool(values.get("header_name")) != bool(values.get("header_value")):
            raise ConfigError(
                f"{where('HEADER_NAME')} and {where('HEADER_VALUE')} must be set together"
            )
        scheme = values.get("hmac_scheme", "").strip().lower()
        if scheme and scheme not in HMAC_SCHEMES:
            raise ConfigError(f"{where('HMAC_SCHEME')}={scheme!r}: expected cloud or template")
        if scheme == "cloud" and values.get("hmac_template"):
            raise ConfigError(
                f"{where('HMAC_SCHEME')}=cloud and {where('HMAC_TEMPLATE')} are both set: the "
                "cloud scheme signs a fixed string; unset HMAC_TEMPLATE or set HMAC_SCHEME=template"
            )

    def is_configured(self, secrets: Secrets) -> bool:
        return _header_configured(secrets) or bool(secrets.get("hmac_secret"))

    def bind(self, secrets: Secrets) -> OpenLoyaltyVerifier:
        return OpenLoyaltyVerifier(secrets, self._clock)

    def decode(
        self, body: bytes, headers: Mapping[str, str], context: DecodeContext
    ) -> list[LoyaltyEvent]:
        obj = parse_object(body)
        return [_Delivery(body, obj, context, lower_headers(headers)).decode()]

    def delivery_id(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        return lower_headers(headers).get(REQUEST_ID_HEADER) or None

    def sign(
        self, body: bytes, secrets: Secrets, target: RequestTarget | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Headers Open Loyalty would send; a cloud-scheme HMAC signs `target`.

        Without `target`, the cloud scheme signs for `DEFAULT_SIGN_TARGET` (POST to a local
        bridge at 127.0.0.1, no tenant).
        """
        headers = {"Content-Type": "application/json", "User-Agent": "OpenLoyalty"}
        if _header_configured(secrets):
            headers[secrets["header_name"]] = secrets["header_value"]
        secret = secrets.get("hmac_secret")
        if secret:
            timestamp = str(int(self._clock()))
            request_id = str(uuid.uuid4())
            if hmac_scheme(secrets) == "cloud":
                signature = cloud_signature(
                    secret, target or DEFAULT_SIGN_TARGET, body, timestamp, request_id
                )
                headers["X-Webhook-Signature-Version"] = "1"
            else:
                template = secrets.get("hmac_template") or DEFAULT_TEMPLATE
                signature = hmac_signature(secret, template, body, timestamp, request_id)
            headers.update(
                {
                    "X-Webhook-Signature": signature,
                    "X-Webhook-Signature-Algorithm": "hmac-sha256",
                    "X-Webhook-Timestamp": timestamp,
                    "X-Webhook-Request-Id": request_id,
                }
            )
        return body, headers


def _header_configured(secrets: Secrets) -> bool:
    return bool(secrets.get("header_name") and secrets.get("header_value"))


class OpenLoyaltyVerifier:
    """`OpenLoyalty.verify` bound to one set of secrets: scheme, template, tolerance and HMAC
    key read once (a bad one is a ConfigError here, not at a delivery)."""

    __slots__ = (
        "_clock",
        "_header",
        "_header_value",
        "_mac",
        "_scheme",
        "_template",
        "_fields",
        "_tolerance",
        "configured",
    )

    def __init__(self, secrets: Secrets, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._header = secrets["header_name"] if _header_configured(secrets) else None
        self._header_value = secrets.get("header_value", "")
        secret = secrets.get("hmac_secret")
        self.configured = self._header is not None or bool(secret)
        self._mac: Any = None
        self._scheme = self._template = ""
        self._fields: set[str] = set()
        self._tolerance = 0
        if secret:
            self._scheme = hmac_scheme(secrets)
            if self._scheme == "cloud":
                key = secret.removeprefix(WHSEC_PREFIX)
            else:
                key = secret
                self._template = secrets.get("hmac_template") or DEFAULT_TEMPLATE
                self._fields = _template_fields(self._template)
            self._mac = hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)
            raw = secrets.get("timestamp_tolerance") or DEFAULT_TOLERANCE
            try:
                self._tolerance = int(raw)
            except ValueError:
                raise ConfigError(
                    f"open_loyalty timestamp_tolerance {raw!r} must be whole seconds (0 disables)"
                ) from None

    def verify(
        self, body: bytes, headers: Mapping[str, str], target: RequestTarget | None = None
    ) -> None:
        if not self.configured:
            raise VerificationError("open_loyalty has no header_name/header_value or hmac_secret")
        h = lower_headers(headers)
        passed = False
        if self._header is not None:
            name = self._header
            given = h.get(name.lower())
            if not given:
                raise VerificationError(f"missing {name} header")
            if not constant_time_equals(_bytes(given, name), self._header_value):
                raise VerificationError(f"{name} header value is wrong")
            passed = True
        if self._mac is not None and (SIGNATURE_HEADER in h or not passed):
            self._verify_hmac(body, h, target)
            passed = True
        if not passed:  # unreachable today; keeps "at least one passed" explicit
            raise VerificationError("no verification mechanism passed")

    def _hexdigest(self, message: bytes) -> str:
        mac = self._mac.copy()
        mac.update(message)
        return str(mac.hexdigest())

    def _verify_hmac(self, body: bytes, h: Mapping[str, str], target: RequestTarget | None) -> None:
        given = h.get(SIGNATURE_HEADER, "").strip().lower()
        if not given:
            raise VerificationError("missing X-Webhook-Signature header")
        given = given.removeprefix("sha256=")
        if not given.isascii():
            raise VerificationError("X-Webhook-Signature is not a hex digest")
        algorithm = h.get(ALGORITHM_HEADER, "hmac-sha256").strip().lower()
        if algorithm != "hmac-sha256":
            raise VerificationError(f"unsupported X-Webhook-Signature-Algorithm {algorithm[:32]!r}")
        timestamp = h.get(TIMESTAMP_HEADER)
        if self._scheme == "cloud":
            if target is None:
                raise VerificationError(
                    "the Open Loyalty Cloud signature covers the request method, host and path, "
                    "which are not known here (offline); verify it at the bridge"
                )
            signed_at = self._check_timestamp(timestamp)
            request_id = h.get(REQUEST_ID_HEADER)
            if not request_id:
                raise VerificationError("missing X-Webhook-Request-Id header")
            expected = self._hexdigest(cloud_message(target, body, signed_at, request_id))
            if not constant_time_equals(given, expected):
                raise VerificationError(
                    "X-Webhook-Signature does not match the delivery as sent to "
                    f"{target.method[:10]} {target.host[:100]}{target.path[:200]} "
                    "(behind a proxy, set CONNECTOR_PUBLIC_URL)"
                )
            return
        if "timestamp" in self._fields or timestamp is not None:
            self._check_timestamp(timestamp)
        values = {"timestamp": timestamp, "request_id": h.get(REQUEST_ID_HEADER)}
        expected = self._hexdigest(_message(self._template, body, values))
        if not constant_time_equals(given, expected):
            raise VerificationError("X-Webhook-Signature does not match the body")

    def _check_timestamp(self, value: str | None) -> str:
        """`value` without surrounding blanks, once it is Unix seconds within the tolerance."""
        if value is None:
            raise VerificationError("missing X-Webhook-Timestamp header")
        if not _UNIX_SECONDS.fullmatch(value.strip()):
            raise VerificationError("X-Webhook-Timestamp is not Unix seconds")
        ts = int(value.strip())
        if self._tolerance > 0 and abs(self._clock() - ts) > self._tolerance:
            raise VerificationError(
                f"X-Webhook-Timestamp is more than {self._tolerance} s from now (replay?)"
            )
        return value.strip()


# ---------------------------------------------------------------------------------------------
# decoding

_POSITIVE_CHANGES = {"add", "p2p_add"}
_NEGATIVE_CHANGES = {"subtract", "p2p_subtract"}
_POSITIVE_TRANSFERS = {"adding", "p2p_adding"}
_NEGATIVE_TRANSFERS = {"spending", "subtracting", "p2p_spending", "p2p_subtracting"}


class _Delivery:
    def __init__(
        self,
        body: bytes,
        obj: dict[str, Any],
        context: DecodeContext,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.body = body
        self.obj = obj
        self.context = context
        self.headers = headers or {}
        self.tenant = resolve_tenant(context)
        # Legacy and OSS bodies are `{type, data}`; Open Loyalty 5.x sends every webhook as
        # `{messageId, requestId, eventName, storeCode, createdAt, data}` (api-docs
        # `doc/openapi-new/webhooks.yaml`), so the event name is the type when `type` is absent.
        name = opt_str(obj, "type", "body") or opt_str(obj, "eventName", "body")
        if not name:
            raise DecodeError("body.type is missing (nor is there a 5.x body.eventName)")
        self.type = name
        # 5.x `messageId`: "Unique identifier for each webhook" (`requestId` is per send
        # attempt, so a retry keeps messageId and changes requestId).
        self.message_id = opt_str(obj, "messageId", "body") or None
        if obj.get("data") is None:
            raise DecodeError(f"data is missing ({self.type} needs a data object)")
        self.data = expect_object(obj["data"], "data")

    def decode(self) -> LoyaltyEvent:
        handler = _HANDLERS.get(self.type)
        if handler is None:
            return self.event(EventType.OTHER)
        return handler(self)

    def customer_id(self) -> str:
        customer_id = opt_str(self.data, "customerId", "data")
        # 5.x nests the member (WebhookCustomer) as data.customer, or as data.member
        # (UnitsTransferWasAdded, CampaignEffectWasApplied); RewardRedemptionStatusChanged names
        # it in data.issuedReward.customerId.
        for key in ("customer", "member", "issuedReward"):
            if customer_id:
                break
            nested = self.data.get(key)
            if isinstance(nested, dict):
                customer_id = opt_str(nested, "customerId", f"data.{key}") or opt_str(
                    nested, "id", f"data.{key}"
                )
        if not customer_id:
            raise DecodeError("data.customerId is missing")
        return customer_id

    def wallet(self) -> str | None:
        """The wallet type a points movement is in; None for the default wallet.

        Open Loyalty 5.x subscription events name it at `data.wallet.walletType.code`
        (AvailablePointsAmountChanged, UnitsTransferWasAdded: api-docs
        `doc/openapi-new/webhooks.yaml`); the REST API takes `walletCode`. A program has one
        default wallet ("Each program needs one default wallet", help.openloyalty.io), which is
        our `default` account: a wallet type marked `isDefault`, or coded `default` (the spec's
        examples; that the default's code is always `default` is UNVERIFIED). OSS 3.x has one
        account per customer and names no wallet: the default account.
        """
        wallet = self.data.get("wallet")
        wallet_type = wallet.get("walletType") if isinstance(wallet, dict) else None
        if not isinstance(wallet_type, dict):
            wallet_type = self.data.get("walletType")
        code = None
        if isinstance(wallet_type, dict):
            if wallet_type.get("isDefault") is True:
                return None
            code = opt_str(wallet_type, "code", "data.wallet.walletType")
        code = code or opt_str(self.data, "walletCode", "data")
        if not code or code == DEFAULT_ACCOUNT:
            return None
        return code

    def time(self, *fallbacks: tuple[Mapping[str, Any], str, str]) -> Any:
        candidates = [
            (self.obj, "createdAt", "createdAt"),
            (self.data, "createdAt", "data.createdAt"),
        ]
        for obj, key, where in [*candidates, *fallbacks]:
            t = parse_time(obj.get(key), where)
            if t is not None:
                return t
        # No time in the payload (OSS amount and level changes never carry one): the signed
        # X-Webhook-Timestamp (Unix seconds) of the delivery where sent, else the receive time.
        stamp = self.headers.get(TIMESTAMP_HEADER, "").strip()
        if _UNIX_SECONDS.fullmatch(stamp):
            sent = parse_time(int(stamp), "X-Webhook-Timestamp")
            if sent is not None and self.recognised_retry():
                # Cloud signs each attempt with a fresh timestamp, so a retry of an old amount
                # change would rank newest and move the shown balance back: a recognised retry
                # is no later than the first attempt's receive time (the context's received_at
                # is first-received-at, connector/raw.py `received_at`).
                return min(sent, self.context.received_at)
            return sent
        return None

    def recognised_retry(self) -> bool:
        """True when the raw record is a provider retry the bridge recognised: it carries a
        `first-received-at` earlier than its own `received-at` (connector/raw.py)."""
        first = self.headers.get(raw.FIRST_RECEIVED_AT, "").strip()
        if not first.isdigit():
            return False
        received = self.headers.get(raw.RECEIVED_AT, "").strip()
        return not received.isdigit() or int(first) < int(received)

    def has_provider_time(self) -> bool:
        """True when the body dates itself (5.x always sends a top-level createdAt)."""
        return parse_time(self.obj.get("createdAt"), "createdAt") is not None

    def movement_id(self) -> str | None:
        """The transfer a points webhook is about: legacy `pointsTransferId`, 5.x `transferId`."""
        return opt_str(self.data, "pointsTransferId", "data") or opt_str(
            self.data, "transferId", "data"
        )

    def event(
        self,
        type: EventType,
        *,
        customer_id: str | None = None,
        occurred_at: Any = None,
        attributes: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> LoyaltyEvent:
        store = self.data.get("storeCode", self.obj.get("storeCode"))
        attrs: dict[str, Any] = {"storeCode": _text(store)}
        if self.message_id is None or not self.has_provider_time():
            # A made-up id or clock: the ledger's horizon never judges it (ledger.beyond_horizon).
            attrs[SYNTHETIC_ID] = "true"
        attrs |= dict(attributes or {})
        # Points kinds belong to a wallet (`wallet`); tiers stay per member (a tier set's
        # conditions may read a wallet, but CustomerLevelChanged names none:
        # docs/delivery-semantics.md).
        if type in POINTS_TYPES and "account_id" not in fields:
            wallet = self.wallet()
            if wallet is not None:
                fields["account_id"] = wallet
        # 5.x: messageId, the same on every attempt of one webhook. Legacy and OSS send no id:
        # the hash of the body and the delivery, because a member who returns to an earlier
        # state sends a byte-identical body (docs/delivery-semantics.md).
        event_id = self.message_id or hashed_event_id(
            Provider.OPEN_LOYALTY, self.tenant, self.body, delivery=self.context.delivery
        )
        return build_event(
            provider=Provider.OPEN_LOYALTY,
            tenant=self.tenant,
            customer_id=customer_id or self.customer_id(),
            event_id=event_id,
            provider_event_type=self.type,
            type=type,
            occurred_at=occurred_at or self.time(),
            context=self.context,
            attributes=attrs,
            **fields,
        )


def _text(value: Any) -> str | None:
    """Scalar JSON values as attribute text (verbatim numbers, e.g. "1.0"); objects/arrays: None."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _attrs(obj: Mapping[str, Any], *keys: str) -> dict[str, str | None]:
    return {k: _text(obj.get(k)) for k in keys}


def _customer_plain(kind: EventType) -> Callable[[_Delivery], LoyaltyEvent]:
    def handle(d: _Delivery) -> LoyaltyEvent:
        return d.event(kind)

    return handle


def _registered(d: _Delivery) -> LoyaltyEvent:
    profile = d.data.get("data")
    profile = profile if isinstance(profile, dict) else d.data
    level_id = opt_str(profile, "levelId", "data.data")
    return d.event(
        EventType.CUSTOMER_REGISTERED,
        occurred_at=d.time((profile, "createdAt", "data.data.createdAt")),
        tier=Tier(id=level_id) if level_id else None,
        attributes=_attrs(
            profile, "email", "phone", "firstName", "lastName", "loyaltyCardNumber", "levelId"
        ),
    )


def _level_changed(d: _Delivery) -> LoyaltyEvent:
    level_id = opt_str(d.data, "levelId", "data")
    level_name = opt_str(d.data, "levelName", "data")
    for key in ("tier", "level"):  # subscription payloads may nest the level
        nested = d.data.get(key)
        if isinstance(nested, dict):
            level_id = (
                level_id
                or opt_str(nested, "levelId", f"data.{key}")
                or opt_str(nested, "id", f"data.{key}")
            )
            level_name = level_name or opt_str(nested, "name", f"data.{key}")
    return d.event(
        EventType.TIER_CHANGED,
        occurred_at=d.time((d.data, "levelAchievementDate", "data.levelAchievementDate")),
        tier=Tier(id=level_id, name=level_name) if level_id or level_name else None,
        attributes=_attrs(d.data, "levelMove", "levelAchievementDate"),
    )


def _transaction_customer_id(d: _Delivery) -> str:
    try:
        return d.customer_id()
    except DecodeError:
        pass
    customer_data = d.data.get("customerData")
    if isinstance(customer_data, dict):
        for key in ("customerId", "id"):
            found = opt_str(customer_data, key, "data.customerData")
            if found:
                return found
    raise DecodeError(
        f"{d.type} carries no customerId (data.customerId / data.customerData.customerId): "
        "Open Loyalty assigns the customer later with transaction.assigned_to_customer"
    )


def _transaction_registered(d: _Delivery) -> LoyaltyEvent:
    customer_id = _transaction_customer_id(d)
    transaction_id = req_str(d.data, "transactionId", "data")
    tx = d.data.get("transactionData")
    tx = tx if isinstance(tx, dict) else {}
    gross = _gross_value(d.data)
    return d.event(
        EventType.ORDER_RECORDED,
        customer_id=customer_id,
        occurred_at=d.time((tx, "purchaseDate", "data.transactionData.purchaseDate")),
        order=OrderRef(id=transaction_id),
        attributes=_attrs(tx, "documentType", "documentNumber", "purchasePlace")
        | {"grossValue": gross, "posId": _text(d.data.get("posId") or d.data.get("postId"))},
    )


def _gross_value(data: Mapping[str, Any]) -> str | None:
    """grossValue, else the sum over items (unit undocumented, kept as text, not as money)."""
    if data.get("grossValue") is not None:
        return _text(data["grossValue"])
    items = data.get("items")
    if not isinstance(items, list) or not items:
        return None
    total = Decimal(0)
    for item in items:
        value = item.get("grossValue") if isinstance(item, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            return None
        try:
            total += value
        except ArithmeticError:  # decimal.Overflow (e.g. 1e999999999): no usable sum
            return None
    return str(total)


def _transaction_assigned(d: _Delivery) -> LoyaltyEvent:
    return d.event(
        EventType.ORDER_RECORDED,
        order=OrderRef(id=req_str(d.data, "transactionId", "data")),
        attributes={"grossValue": _gross_value(d.data)},
    )


def _amount_changed(d: _Delivery) -> LoyaltyEvent:
    # Legacy docs spell these camelCase; OSS 3.x sends snake_case. OSS builds the webhook from
    # AvailablePointsAmountChangedSystemEvent($account, $customer, $currentAmount,
    # $amountChange = 0, $operationType = 'subtract'): cancel, expire and unlock pass only the
    # new amount, so they arrive as `amount_change: 0, amount_change_type: subtract` although an
    # unlock RAISES the balance (AccountCommandHandler::handleCancel/Expire/UnlockPointsTransfer,
    # open-loyalty-framework 3.x). Such a change, and one without a known direction, is a gap:
    # a movement of unknown size whose balance after is known; the ledger sizes it against the
    # balance before it in provider order.
    change_key = "amountChange" if d.data.get("amountChange") is not None else "amount_change"
    change = opt_points(d.data, change_key, "data")
    change_type = _text(d.data.get("amountChangeType", d.data.get("amount_change_type")))
    balance = opt_points(d.data, "amount", "data")
    attributes = _attrs(d.data, "transactionId", "expiresAt") | {"amountChangeType": change_type}
    movement_id = d.movement_id()
    kind = (change_type or "").lower()
    if change is None or change == 0 or kind not in _POSITIVE_CHANGES | _NEGATIVE_CHANGES:
        if balance is None:
            return d.event(EventType.OTHER, attributes=attributes)
        return d.event(
            EventType.POINTS_ADJUSTED,
            balance=balance,
            movement_id=movement_id,
            attributes=attributes | {"size": "derived"},
        )
    positive = kind in _POSITIVE_CHANGES
    return d.event(
        EventType.POINTS_EARNED if positive else EventType.POINTS_REDEEMED,
        points_delta=abs(change) if positive else -abs(change),
        balance=balance,
        movement_id=movement_id,
        attributes=attributes,
    )


def _bought_campaign(d: _Delivery) -> LoyaltyEvent:
    # No points_delta: the spend arrives separately as account.available_points_amount_changed
    # (subtract); counting costInPoints here too would deduct the reward twice.
    return d.event(
        EventType.REWARD_REDEEMED,
        attributes=_attrs(d.data, "campaignId", "rewardId", "couponCode", "costInPoints"),
    )


def _expiring(d: _Delivery) -> LoyaltyEvent:
    # A warning about a future expiry: no delta (the expiry itself changes available points).
    return d.event(
        EventType.POINTS_EXPIRING,
        attributes=_attrs(d.data, "points", "pointsWillExpire", "customerEmail"),
    )


def _points_transfer(d: _Delivery) -> LoyaltyEvent:
    transfer_type = (_text(d.data.get("type")) or "").lower()
    state = (_text(d.data.get("state")) or "active").lower()
    attributes = _attrs(
        d.data, "type", "state", "issuer", "pointsTransferId", "accountId", "expiresAt"
    )
    value = opt_points(d.data, "value", "data")
    occurred_at = d.time()
    movement_id = d.movement_id()
    known = transfer_type in _POSITIVE_TRANSFERS | _NEGATIVE_TRANSFERS
    if state in ("canceled", "cancelled", "expired") and movement_id:
        # Ends the transfer: if it was still pending, its pending points go (the ledger
        # releases what the pending phase with this id opened, nothing otherwise); the balance
        # effect of an active transfer's cancel/expiry arrives as an amount change.
        return d.event(
            EventType.POINTS_CANCELED,
            movement_id=movement_id,
            occurred_at=occurred_at,
            attributes=attributes,
        )
    if value is None or not known or state not in ("active", "pending"):
        # The balance effect of unknown transfers arrives as
        # account.available_points_amount_changed; no guessing of a sign here.
        return d.event(EventType.OTHER, occurred_at=occurred_at, attributes=attributes)
    positive = transfer_type in _POSITIVE_TRANSFERS
    delta = abs(value) if positive else -abs(value)
    if state == "pending":
        # The pending phase of the transfer; its activation (an amount change or an active
        # transfer with the same pointsTransferId) releases it.
        return d.event(
            EventType.POINTS_PENDING,
            points_delta=delta,
            movement_id=movement_id,
            occurred_at=occurred_at,
            attributes=attributes,
        )
    # Same kinds as account.available_points_amount_changed for the same transfer: the two
    # webhooks share a movement_id and the first to arrive is booked, so if their kinds differed
    # the member's lifetime counters would depend on arrival order. The issuer stays an attribute.
    kind = EventType.POINTS_EARNED if positive else EventType.POINTS_REDEEMED
    return d.event(
        kind,
        points_delta=delta,
        movement_id=movement_id,
        occurred_at=occurred_at,
        attributes=attributes,
    )


def _units_transfer_added(d: _Delivery) -> LoyaltyEvent:
    """5.x `UnitsTransferWasAdded` (api-docs `doc/openapi-new/webhooks.yaml`): `data.member`,
    `units`, `type` (adding, spending, p2p_adding, p2p_spending, blocked, expired), `pending`,
    `lockedUntil`, `transferId`, and `relatedTransferId` on an `expired` transfer.

    * pending (`pending: true`): the pending phase of transfer `transferId`, like a legacy
      `points_transfer` in state pending; the AvailablePointsAmountChanged that fires "when
      pending units get activated" carries the same `transferId` and releases it;
    * `expired` naming `relatedTransferId`: ends that transfer, releasing whatever it still has
      pending (POINTS_CANCELED without an amount); the balance effect of an active transfer's
      expiry arrives as AvailablePointsAmountChanged;
    * an active adding/spending transfer: the same movement as the AvailablePointsAmountChanged
      with its `transferId`, booked once, like a legacy `points_transfer`;
    * `blocked`, unknown types, no units or no transferId: OTHER (no sign is guessed).
    """
    transfer_type = (_text(d.data.get("type")) or "").lower()
    pending = d.data.get("pending") is True
    attributes = _attrs(
        d.data, "type", "pending", "transferId", "relatedTransferId", "expiresAt", "lockedUntil"
    )
    occurred_at = d.time()
    transfer_id = opt_str(d.data, "transferId", "data") or None
    if transfer_type == "expired":
        related = opt_str(d.data, "relatedTransferId", "data") or None
        if related is None:
            return d.event(EventType.OTHER, occurred_at=occurred_at, attributes=attributes)
        return d.event(
            EventType.POINTS_CANCELED,
            movement_id=related,
            occurred_at=occurred_at,
            attributes=attributes,
        )
    units = opt_points(d.data, "units", "data")
    known = transfer_type in _POSITIVE_TRANSFERS | _NEGATIVE_TRANSFERS
    if units is None or not known or transfer_id is None:
        return d.event(EventType.OTHER, occurred_at=occurred_at, attributes=attributes)
    positive = transfer_type in _POSITIVE_TRANSFERS
    delta = abs(units) if positive else -abs(units)
    if pending:
        kind = EventType.POINTS_PENDING
    else:
        kind = EventType.POINTS_EARNED if positive else EventType.POINTS_REDEEMED
    return d.event(
        kind,
        points_delta=delta,
        movement_id=transfer_id,
        occurred_at=occurred_at,
        attributes=attributes,
    )


_HANDLERS: dict[str, Callable[[_Delivery], LoyaltyEvent]] = {
    "customer.registered": _registered,
    "CustomerRegistered": _registered,
    "CustomerWasRegisteredWithoutActivation": _registered,
    "customer.updated": _customer_plain(EventType.CUSTOMER_UPDATED),
    "CustomerUpdated": _customer_plain(EventType.CUSTOMER_UPDATED),
    "CustomerEmailWasChanged": _customer_plain(EventType.CUSTOMER_UPDATED),
    "CustomerPhoneNumberWasChanged": _customer_plain(EventType.CUSTOMER_UPDATED),
    "customer.deleted": _customer_plain(EventType.CUSTOMER_DELETED),
    "customer.deactivated": _customer_plain(EventType.CUSTOMER_DEACTIVATED),
    "CustomerDeactivated": _customer_plain(EventType.CUSTOMER_DEACTIVATED),
    "customer.level_changed": _level_changed,
    "customer.level_changed_automatically": _level_changed,
    "CustomerLevelChanged": _level_changed,
    "transaction.registered": _transaction_registered,
    "TransactionRegistered": _transaction_registered,
    "transaction.assigned_to_customer": _transaction_assigned,
    "TransactionAssignedToCustomer": _transaction_assigned,
    "account.available_points_amount_changed": _amount_changed,
    "AvailablePointsAmountChanged": _amount_changed,
    "customer.bought_campaign": _bought_campaign,
    "CustomerBoughtReward": _bought_campaign,
    "account.expiring_points_notification": _expiring,
    "PointsWillExpire": _expiring,
    "account.points_transfer": _points_transfer,
    "UnitsTransferWasAdded": _units_transfer_added,
}

__all__ = ["OpenLoyalty", "hmac_signature"]
