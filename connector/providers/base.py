"""The provider protocol every webhook module implements, and helpers they share.

A provider module turns one HTTP delivery (exact body bytes + headers) into zero or more
canonical `LoyaltyEvent`s, after `verify` checked it came from the platform. It also owns its
settings (`options`, `check_options`), its sample and test secrets, its content type and its
demo samples: the settings, `dev`, `replay`, the tests and the benchmarks read them from
`connector.providers.PROVIDERS` instead of lists of their own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Protocol

from connector.errors import DecodeError, VerificationError
from connector.models import ACCOUNT_RE, TENANT_RE, LoyaltyEvent, Provider, points, utc
from connector.resources import samples_dir

DEFAULT_TENANT = "default"
# The attribute naming the provider of an event whose `provider` symbol is OTHER (a plugin).
PROVIDER_KEY_ATTRIBUTE = "provider_key"

# Secrets and per-provider options, as plain strings keyed by the lower-case setting name
# without the provider infix: CONNECTOR_GAMEBALL_SECRET_KEY -> {"secret_key": ...}.
Secrets = Mapping[str, str]
# What an error calls an option: `where("SECRET_KEY")` is "CONNECTOR_ACME_SECRET_KEY", or
# "tenants file [acme.shop-eu] SECRET_KEY" for a tenant's table.
Where = Callable[[str], str]


def lower_headers(headers: Mapping[str, str] | Any) -> dict[str, str]:
    """Headers as a dict with lower-case names (HTTP header names are case-insensitive)."""
    items: Any = headers.items() if hasattr(headers, "items") else headers
    return {str(k).lower(): str(v) for k, v in items}


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What the bridge knew about a delivery besides its bytes."""

    tenant: str | None = None  # from the URL; None = the provider's own scope or "default"
    received_at: datetime = field(default_factory=lambda: utc(datetime.now(UTC)))
    # The identity of this accepted delivery: the raw record's key (the provider's delivery id,
    # e.g. Open Loyalty's signed X-Webhook-Request-Id, else the bridge's request id), or the key
    # of the earlier copy this one is a recognised retry of (`retry-of`). None offline
    # (`decode`), where a delivery is known only by its bytes.
    delivery: str | None = None


@dataclass(frozen=True, slots=True)
class Option:
    """One setting of a provider: `CONNECTOR_<KEY>_<NAME>`, and `<name>` in a tenants-file table.

    The provider reads it as `secrets["<name>"]` (lower case). A name ending in `_FILE` is a path
    whose contents become the option without the suffix (`PUBLIC_KEY_FILE` -> `public_key`).
    `secret=True` keeps the value out of `repr` and masks it in `loyalty-connector config`.
    `required=True`: nothing verifies without it; the provider is configured (`is_configured`)
    once every required option has a value, and refuses deliveries until then (an unset option
    is not a start-up error: a provider nobody configured stays off). `test` and `dev` are
    sample values for `test_secrets()` and `dev_secrets()` (`dev` defaults to `test`).
    """

    name: str
    default: str | None
    help: str
    secret: bool = False
    required: bool = False
    test: str | None = field(default=None, repr=False)
    dev: str | None = field(default=None, repr=False)


class Verifier(Protocol):
    """A provider's check bound to one set of secrets: keys parsed and options read once."""

    @property
    def configured(self) -> bool:
        """True if the secrets hold enough to verify (else `verify` always refuses)."""
        ...

    def verify(
        self, body: bytes, headers: Mapping[str, str], target: RequestTarget | None = None
    ) -> None:
        """Raise VerificationError unless the delivery is authentic (see `WebhookProvider`)."""
        ...


class WebhookProvider(Protocol):
    """One loyalty platform's webhooks: verify on the exact bytes, then decode."""

    key: ClassVar[str]  # "gameball", "open_loyalty", "voucherify", "wix"
    # The Avro symbol; Provider.OTHER for a provider the schema has no symbol for (a plugin).
    provider: ClassVar[Provider]

    # Read-only, so that a class attribute `options = (Option(...),)` needs no annotation.
    @property
    def kept_headers(self) -> tuple[str, ...]:
        """Request headers worth keeping next to the raw body in Kafka (signature, ids)."""
        ...

    @property
    def options(self) -> tuple[Option, ...]:
        """Settings: CONNECTOR_<KEY>_<OPTION> (+ CONNECTOR_<KEY>_UNVERIFIED for every one)."""
        ...

    @property
    def content_type(self) -> str:
        """The Content-Type the provider sends (what `replay` sets when `sign` sets none)."""
        ...

    @property
    def retry_window_s(self) -> float | None:
        """How long the provider retries a refused delivery, for providers without delivery ids
        whose retries the bridge must recognise (docs/delivery-semantics.md); None: not needed."""
        ...

    def check_options(self, values: Secrets, where: Where) -> None:
        """Raise ConfigError for an option value that could only fail later (at a delivery)."""
        ...

    def test_secrets(self) -> dict[str, str]:
        """Secrets the tests sign and verify with (the shape `verify` gets)."""
        ...

    def dev_secrets(self, directory: Path) -> dict[str, str]:
        """Sample option values for `loyalty-connector dev` (lower-case option names; files,
        such as key pairs, go under `directory`)."""
        ...

    def samples(self) -> Path | None:
        """Folder of sample request bodies `dev --demo` replays (signed by `sign`), if any."""
        ...

    def is_configured(self, secrets: Secrets) -> bool:
        """True if `secrets` hold enough to verify a delivery."""
        ...

    def bind(self, secrets: Secrets) -> Verifier:
        """`verify` with these secrets, parsed once (at start): ConfigError for a bad one."""
        ...

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        secrets: Secrets,
        target: RequestTarget | None = None,
    ) -> None:
        """Raise VerificationError unless the delivery is authentic. Constant-time compares.

        `target` is where the delivery was sent (the bridge always passes it; None offline),
        for schemes that sign the method, host and path (Open Loyalty Cloud); others ignore it.
        """
        ...

    def decode(
        self, body: bytes, headers: Mapping[str, str], context: DecodeContext
    ) -> list[LoyaltyEvent]:
        """Canonical events of a delivery; DecodeError if it cannot be understood."""
        ...

    def delivery_id(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """The provider's id of this delivery (used as the raw topic's key), if it has one."""
        ...

    def sign(
        self, body: bytes, secrets: Secrets, target: RequestTarget | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Sign a payload as the provider would: (body to send, headers to add), for replay.

        `target` is where it will be posted, for schemes that sign the request line.
        """
        ...


class BaseProvider:
    """Defaults for the optional parts of `WebhookProvider`; provider classes subclass it.

    A subclass sets `key` (and `provider` if the Avro enum has its symbol) and `options`, and
    implements `verify` (or `bind`), `decode` and `sign`. The defaults: `is_configured` when
    every `required` option is set, test and dev secrets from the options' `test`/`dev`
    values, `samples` from `connector/samples/<key>/` or a `samples/` folder beside the
    provider's module, no delivery id, and `verify` as `bind(secrets).verify(...)`.
    """

    key: ClassVar[str]
    provider: ClassVar[Provider] = Provider.OTHER
    kept_headers: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    content_type: ClassVar[str] = "application/json"
    retry_window_s: ClassVar[float | None] = None

    def check_options(self, values: Secrets, where: Where) -> None:
        return None

    def test_secrets(self) -> dict[str, str]:
        return {o.name.lower(): o.test for o in self.options if o.test is not None}

    def dev_secrets(self, directory: Path) -> dict[str, str]:
        dev = {o.name.lower(): o.dev for o in self.options if o.dev is not None}
        return {**self.test_secrets(), **dev}

    def samples(self) -> Path | None:
        source = getattr(sys.modules.get(type(self).__module__), "__file__", None)
        beside = Path(source).parent / "samples" if source else None
        for folder in (samples_dir() / self.key, beside):
            if folder is not None and folder.is_dir():
                return folder
        return None

    def is_configured(self, secrets: Secrets) -> bool:
        required = {o.name.lower().removesuffix("_file") for o in self.options if o.required}
        if not required:
            raise NotImplementedError(
                f"{type(self).__name__} marks no option required=True and implements no "
                "is_configured"
            )
        return all(secrets.get(name) for name in required)

    def bind(self, secrets: Secrets) -> Verifier:
        return SecretsVerifier(self, dict(secrets))

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        secrets: Secrets,
        target: RequestTarget | None = None,
    ) -> None:
        self.bind(secrets).verify(body, headers, target)

    def delivery_id(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        return None


class SecretsVerifier:
    """`bind` for a provider that only implements `verify(body, headers, secrets, target)`."""

    __slots__ = ("_provider", "_secrets", "configured")

    def __init__(self, provider: Any, secrets: Secrets) -> None:
        if type(provider).verify is BaseProvider.verify:
            raise TypeError(f"{type(provider).__name__} implements neither verify nor bind")
        self._provider, self._secrets = provider, secrets
        self.configured: bool = provider.is_configured(secrets)

    def verify(
        self, body: bytes, headers: Mapping[str, str], target: RequestTarget | None = None
    ) -> None:
        self._provider.verify(body, headers, self._secrets, target)


def provider_key(provider: Provider | WebhookProvider | BaseProvider) -> str:
    """The key of a provider given as its Avro symbol (built-ins) or as the provider itself."""
    return provider.key if isinstance(provider, Provider) else type(provider).key


def provider_symbol(provider: Provider | WebhookProvider | BaseProvider) -> Provider:
    return provider if isinstance(provider, Provider) else type(provider).provider


# ---------------------------------------------------------------------------------------------
# helpers shared by provider modules


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    a_b = a.encode() if isinstance(a, str) else a
    b_b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_b, b_b)


def require_header(headers: Mapping[str, str], name: str) -> str:
    value = lower_headers(headers).get(name.lower())
    if not value:
        raise VerificationError(f"missing {name} header")
    return value


def parse_json(body: bytes, what: str = "body") -> Any:
    """Strict JSON (UTF-8); a DecodeError that says where parsing stopped."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc}") from None
    # JSON may escape a lone UTF-16 surrogate ("\ud800"); such a string has no UTF-8 form, so
    # an event carrying it could be neither Avro-encoded nor used as a Kafka key.
    try:
        encodable = not _SURROGATE_ESCAPE.search(text) or _utf8_encodable(value)
    except RecursionError:
        encodable = False
    if not encodable:
        raise DecodeError(f"{what} contains a lone UTF-16 surrogate escape (\\uD800-\\uDFFF)")
    return value


def parse_object(body: bytes, what: str = "body") -> dict[str, Any]:
    """`parse_json` of what must be a JSON object (the body of nearly every webhook)."""
    return expect_object(parse_json(body, what), what)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _utf8_encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_utf8_encodable(k) and _utf8_encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_utf8_encodable(v) for v in value)
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def expect_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{where} must be a JSON object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    """A string field, or None when absent/null. Numbers are accepted as their text."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise DecodeError(f"{where}.{key} must be a string, got a boolean")
    if isinstance(value, (int, Decimal)):
        return str(value)
    if not isinstance(value, str):
        raise DecodeError(f"{where}.{key} must be a string, got {_kind(value)}")
    return value


def req_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = opt_str(obj, key, where)
    if value is None or value == "":
        raise DecodeError(f"{where}.{key} is missing")
    return value


def opt_points(obj: Mapping[str, Any], key: str, where: str) -> Decimal | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.strip() == "":
        return None
    try:
        return points(value)
    except ValueError as exc:
        raise DecodeError(f"{where}.{key}: {exc}") from None
    except ArithmeticError:  # e.g. decimal.Overflow from "1E+999999999999999999"
        raise DecodeError(f"{where}.{key}: points {value!r} are out of range") from None


# An integer field (Wix `revision`, Gameball tier order, Voucherify amounts) is a JSON integer or
# a plain ASCII decimal string, nothing else: no whitespace, no `_` separators, no non-ASCII
# digits (all of which `int()` and `Decimal()` accept), no fraction, no exponent.
_INT_TEXT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_INT_TEXT_MAX = 25  # longer than any int64 with sign and leading zeros a provider would send


def _huge_number(value: Any) -> bool:
    """True for a JSON number or a number-shaped string whose magnitude is at least 1e19."""
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        value = Decimal(value)  # exact, no context: "1E+999999999999999999" cannot overflow
    return isinstance(value, Decimal) and (not value.is_finite() or value.adjusted() >= 19)


def opt_int(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise DecodeError(f"{where}.{key} must be an integer, got a boolean")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value):
        if len(value) > _INT_TEXT_MAX:  # int() of a huge string is slow, and out of range anyway
            raise DecodeError(f"{where}.{key} is out of range")
        n = int(value)
    else:
        if _huge_number(value):  # "1e9999999": not an integer form, and past int64 anyway
            raise DecodeError(f"{where}.{key} is out of range")
        text = repr(value)
        text = text if len(text) <= 40 else text[:37] + "..."
        raise DecodeError(f"{where}.{key} must be an integer, got {text}")
    if not -(2**63) <= n < 2**63:
        raise DecodeError(f"{where}.{key} is out of range")
    return n


def parse_time(value: Any, where: str) -> datetime | None:
    """ISO-8601 (with Z, offset or none = UTC) or epoch seconds; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise DecodeError(f"{where} must be a timestamp, got a boolean")
    if isinstance(value, (int, Decimal)):
        try:
            return utc(datetime.fromtimestamp(float(value), tz=UTC))
        except (OverflowError, OSError, ValueError):
            raise DecodeError(f"{where} is not a valid epoch timestamp: {value!r}") from None
    if not isinstance(value, str):
        raise DecodeError(f"{where} must be a timestamp, got {_kind(value)}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python < 3.11 could not read >6 fractional digits; trim any excess to microseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            digits += rest[i]
            i += 1
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[i:]}" if digits else head + rest[i:]
    try:
        return utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError):  # OverflowError: "0001-01-01T00:00+05:00" is before year 1
        raise DecodeError(f"{where} is not an ISO-8601 timestamp: {value!r}") from None


def hashed_event_id(
    provider: Provider | WebhookProvider | BaseProvider,
    tenant: str,
    body: bytes,
    index: int = 0,
    delivery: str | None = None,
) -> str:
    """Deterministic id when the provider gives none: the same delivery -> the same id.

    `delivery` (see `DecodeContext.delivery`) makes two deliveries of the same bytes two events:
    a member who returns to an earlier state (earn 10, spend 10, earn 10) sends a byte-identical
    body, which is a real movement, not a retry. A re-read of one raw record (worker restart,
    spool re-forward) keeps its key and so its event id; a provider retry of a delivery the
    bridge already wrote carries the first copy's key in `retry-of`.
    """
    key = provider_key(provider)
    h = hashlib.sha256()
    h.update(key.encode())
    h.update(b"\0")
    h.update(tenant.encode())
    h.update(b"\0")
    h.update(body)
    if delivery:
        h.update(b"\0delivery\0")
        h.update(delivery.encode("utf-8", "surrogatepass"))
    digest = h.hexdigest()[:32]
    return f"{key}:{digest}" if index == 0 else f"{key}:{digest}:{index}"


def build_event(
    *,
    provider: Provider | WebhookProvider | BaseProvider,
    tenant: str,
    customer_id: str,
    event_id: str,
    provider_event_type: str,
    type: Any,
    occurred_at: datetime | None,
    context: DecodeContext,
    **fields: Any,
) -> LoyaltyEvent:
    """A LoyaltyEvent with the derived fields (member key, times) filled consistently.

    `provider` is the Avro symbol (built-in providers) or the provider itself (`self`, which a
    plugin must pass): the member key starts with the provider's key, and an event whose symbol
    is OTHER names the key in `attributes["provider_key"]`.

    An `account_id` outside the account alphabet (`models.ACCOUNT_RE`) is a DecodeError: the
    delivery is dead-lettered with the reason rather than booked into the wrong account.
    """
    account = fields.get("account_id")
    if account is not None and not ACCOUNT_RE.match(account):
        raise DecodeError(
            f"account {account[:80]!r} is not a valid account id (1-64 letters, digits, . _ -)"
        )
    attributes = {
        k: str(v) for k, v in (fields.pop("attributes", None) or {}).items() if v is not None
    }
    key, symbol = provider_key(provider), provider_symbol(provider)
    if symbol is Provider.OTHER:
        attributes[PROVIDER_KEY_ATTRIBUTE] = key
    if not TENANT_RE.match(tenant):  # the tenant holds no ':', so the member key is unambiguous
        raise ValueError(f"tenant {tenant[:80]!r} is not valid (1-64 letters, digits, . _ -)")
    return LoyaltyEvent(
        event_id=event_id,
        provider=symbol,
        tenant=tenant,
        provider_event_type=provider_event_type,
        type=type,
        customer_id=customer_id,
        member_key=f"{key}:{tenant}:{customer_id}",
        occurred_at=utc(occurred_at) if occurred_at else context.received_at,
        received_at=context.received_at,
        attributes=attributes,
        **fields,
    )


def resolve_tenant(context: DecodeContext, provider_scope: str | None = None) -> str:
    """URL tenant, else the provider's own scope (e.g. Wix instanceId), else "default"."""
    return context.tenant or provider_scope or DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """Where a delivery was sent, as a provider that signs the request line sees it.

    `host` has no port; `path` is percent-encoded as sent, without the query string.
    """

    method: str
    host: str
    path: str

    @classmethod
    def of(cls, method: str, host: str, path: str, public_url: str | None = None) -> RequestTarget:
        """The target of a request for `host` + `path`, or, behind a proxy, for `public_url`.

        With `public_url` (e.g. ``https://hooks.example.com/base``) its host replaces `host` and
        its path (without a trailing "/") is put in front of `path`. The port is always dropped
        and the query string (if `path` has one) is not part of the target.
        """
        path = path.split("?", 1)[0].split("#", 1)[0]
        if public_url:
            rest = public_url.split("://", 1)[-1]
            authority, slash, prefix = rest.partition("/")
            host = authority
            path = (slash + prefix).split("?", 1)[0].rstrip("/") + path
        host = host.rpartition("@")[2]
        if host.startswith("["):  # IPv6 literal: the port follows the bracket
            host = host[: host.find("]") + 1] if "]" in host else host
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        return cls(method.upper(), host, path or "/")
