"""Cross-provider properties: whatever arrives, decoding yields schema-valid events or DecodeError.

Each fixture payload is mutated structurally (keys dropped, values swapped for other JSON types,
layers wrapped in arrays/objects/strings or unwrapped) and decoded. A decoder may refuse the
result with DecodeError; anything it returns must encode with the Avro codec (a schema-invalid
event would otherwise be dead-lettered at the encode stage, far from its cause) and print as
the CLI prints it. Nothing else may escape: no KeyError, TypeError, SchemaError, ...
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.avro import default_codec
from connector.errors import DecodeError, VerificationError
from connector.models import LoyaltyEvent, to_json_obj
from connector.providers import PROVIDERS, DecodeContext
from tests.support import FIXTURES, test_secrets, wix_keypair
from tests.unit.providers.strategies import JSON

CODEC = default_codec()
CONTEXT = DecodeContext(tenant=None, received_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
KEYS = sorted(PROVIDERS)
# Per fixture file; ~60 files keep the suite fast. FUZZ_EXAMPLES=1500 for a long hunt.
MUTATION_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# Every payload file, including the doc samples that must fail (they are inputs too).
PAYLOADS = [
    (key, path)
    for key in KEYS
    for path in sorted((FIXTURES / key).glob("*.json"))
    if not path.name.endswith(".expected.json")
]
VERSION_HEADERS = st.sampled_from(
    [{}, {"X-GB-Webhook-Version": "v3"}, {"X-GB-Webhook-Version": "v4"}]
)

# JSON numbers json.dumps cannot write: placeholders swapped for the raw text after dumping.
RAW = "@raw@"
RAW_NUMBERS = ["1e999999999", "-1E+400", "1e-400", "1.0000000001", "-0.0", "123456789012345678901"]
# Values a decoder has to cope with where it expects something else: other JSON types, numbers
# the schema cannot hold (sub-cent points, ints beyond Avro int/long), odd times and strings.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, -(2**31) - 1, 2**63, 10**16, 10**18, 253402300800]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["0.001", "1.005", "1e-7", "1E+30", "-0", "12.50", "NaN", "Infinity"]),
    st.sampled_from(["", " ", "2024-02-30T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01"]),
    st.sampled_from(["2024-01-01T00:00:00.123456789+05:30", "1700000000", "\ud800", "\x00"]),
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", -62135596800]),
    st.sampled_from(["1E+999999999999999999", "1e9999999", "1e400"]),
    st.sampled_from(RAW_NUMBERS).map(lambda n: f"{RAW}{n}{RAW}"),
    st.text(max_size=12),
)
REPLACEMENTS = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
)
OPERATIONS = ("drop", "replace", "replace", "wrap_list", "wrap_object", "stringify", "unwrap")


def _expand(value: Any) -> Any:
    """Stringified JSON layers (Wix) parsed into objects, so mutations reach inside them."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return _expand(json.loads(value))
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        root = root[step]
    return root


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(list(_paths(doc))))
        op = draw(st.sampled_from(OPERATIONS))
        current = _get(doc, path)
        if op == "drop":
            if path:
                del _get(doc, path[:-1])[path[-1]]
            continue
        if op == "replace":
            new: Any = draw(REPLACEMENTS)
        elif op == "wrap_list":
            new = [current]
        elif op == "wrap_object":
            new = {draw(st.sampled_from(["data", "body", "event", "x"])): current}
        elif op == "stringify":
            new = json.dumps(current)
        elif isinstance(current, dict) and current:
            new = draw(st.sampled_from(list(current.values())))
        elif isinstance(current, list) and current:
            new = current[0]
        else:
            new = current
        doc = _set(doc, path, new)
    return doc


def _dump(doc: Any) -> bytes:
    return re.sub(f'"{RAW}(.*?){RAW}"', r"\1", json.dumps(doc)).encode()


def _check(key: str, body: bytes, headers: dict[str, str]) -> None:
    """Decode; DecodeError is fine, anything returned must be a schema-valid LoyaltyEvent."""
    provider = PROVIDERS[key]
    try:
        events = provider.decode(body, headers, CONTEXT)
    except DecodeError:
        return
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, LoyaltyEvent)
        CODEC.encode(event)  # SchemaError here = a decoder bug
        json.dumps(to_json_obj(event), ensure_ascii=False)  # what `decode` prints
    provider.delivery_id(body, headers)  # the bridge calls it on every body


@pytest.mark.parametrize(
    ("key", "path"), PAYLOADS, ids=[f"{k}/{p.stem}" for k, p in PAYLOADS]
)  # fmt: skip
@settings(
    max_examples=MUTATION_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), headers=VERSION_HEADERS)
def test_mutated_fixture_decodes_to_schema_valid_events_or_decode_error(
    key: str, path: Path, data: st.DataObject, headers: dict[str, str]
) -> None:
    document = _expand(json.loads(path.read_text()))
    doc = data.draw(mutated(document), label="mutated payload")
    _check(key, _dump(doc), headers if key == "gameball" else {})


def _forged(key: str, body: bytes, signature: str) -> None:
    """`body` with a made-up signature in every provider's header is refused."""
    names = ("X-GB-Signature", "x-voucherify-signature", "X-OL-Token", "X-Webhook-Signature")
    with pytest.raises(VerificationError):
        PROVIDERS[key].verify(body, dict.fromkeys(names, signature), test_secrets()[key])


@pytest.mark.parametrize("key", KEYS)
@settings(max_examples=200, deadline=None)
@given(value=JSON)
def test_arbitrary_json_gives_schema_valid_events_or_decode_error(key: str, value: Any) -> None:
    body = json.dumps(value).encode()
    _check(key, body, {})
    _forged(key, body, "ab" * 32)


@pytest.mark.parametrize("key", KEYS)
@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), signature=st.text(max_size=64))
def test_arbitrary_bytes_raise_only_decode_or_verification_errors(
    key: str, body: bytes, signature: str
) -> None:
    _check(key, body, {})
    _forged(key, body, signature)


def test_mutations_reach_the_nested_layers() -> None:
    """The Wix fixtures' stringified layers are expanded, so mutations can reach the account."""
    doc = _expand(json.loads((FIXTURES / "wix" / "account_updated_claims.json").read_text()))
    paths = {path[-1] for path in _paths(doc) if path}
    assert {"currentEntity", "points", "balance", "revision"} <= paths
    # and a numeric field with sub-cent points is refused, not encoded wrongly
    doc["data"]["data"]["updatedEvent"]["currentEntity"]["points"]["balance"] = Decimal("1.005")
    body = json.dumps(doc, default=str).encode()
    with pytest.raises(DecodeError, match="balance"):
        PROVIDERS["wix"].decode(body, {}, CONTEXT)


# Each provider's body that is not JSON (cut off, a comma missing) and one that is not an object.
NOT_AN_OBJECT = {
    "gameball": (b'{"event": "customer.profile.updated",', b"[]"),
    "open_loyalty": (b'{"type": "customer.updated" "data": {}}', b'[{"type": "customer.updated"}]'),
    "voucherify": (b'{"type": "customer.created", ', b"[1, 2]"),
}


@pytest.mark.parametrize("key", sorted(NOT_AN_OBJECT))
def test_a_body_that_is_not_a_json_object_is_a_decode_error_saying_why(key: str) -> None:
    broken, array = NOT_AN_OBJECT[key]
    with pytest.raises(DecodeError, match="body is not valid JSON: .* at line 1 column"):
        PROVIDERS[key].decode(broken, {}, CONTEXT)
    with pytest.raises(DecodeError, match="body must be a JSON object, got an array"):
        PROVIDERS[key].decode(array, {}, CONTEXT)


# --- what fuzzing found (each was an exception other than DecodeError, or a SchemaError later) ---

SURROGATE_BODIES = {
    "gameball": b'{"event": "x", "customer_id": "\\ud800"}',
    "open_loyalty": b'{"type": "customer.updated", "data": {"customerId": "\\udfff"}}',
    "voucherify": b'{"type": "customer.created", "data": {"customer": {"id": "\\uDBFF"}}}',
    "wix": b'{"eventType": "x", "instanceId": "\\ud800", "data": {"id": "e", '
    b'"deletedEvent": {"deletedEntity": {"contactId": "c"}}}}',
}


@pytest.mark.parametrize("key", sorted(SURROGATE_BODIES))  # the providers fuzzing found it in
def test_lone_surrogate_escape_is_a_decode_error(key: str) -> None:
    # Valid JSON, but no UTF-8 form: the event could be neither Avro-encoded nor keyed.
    with pytest.raises(DecodeError, match="surrogate"):
        PROVIDERS[key].decode(SURROGATE_BODIES[key], {}, CONTEXT)


def test_lone_surrogate_inside_a_wix_token_is_a_decode_error() -> None:
    wix = PROVIDERS["wix"]
    secrets = test_secrets()["wix"]
    private_key = serialization.load_pem_private_key(wix_keypair()[0].encode(), password=None)
    now = int(time.time())
    for data in (
        {"eventType": "x", "instanceId": "\ud800", "data": {"id": "e"}},  # claims.data an object
        json.dumps({"eventType": "x", "data": json.dumps({"id": "\udc00"})}),  # stringified
    ):
        claims = json.dumps({"data": data, "iat": now, "exp": now + 60}).encode()
        token = jwt.api_jws.encode(claims, private_key, algorithm="RS256").encode()
        wix.verify(token, {}, secrets)  # authentic, yet undecodable
        with pytest.raises(DecodeError):
            wix.decode(token, {}, CONTEXT)


def test_gameball_tier_rank_beyond_avro_int_is_a_decode_error() -> None:
    body = b'{"playerUniqueId": "p1", "levelName": "Gold", "levelOrder": 2147483648}'
    with pytest.raises(DecodeError, match="levelOrder"):
        PROVIDERS["gameball"].decode(body, {}, CONTEXT)


@pytest.mark.parametrize("value", ['"1e9999999"', '"1E+999999999999999999"', "1e999999999"])
def test_huge_exponents_are_refused_at_once(value: str) -> None:
    # int(Decimal("1e9999999")) would take minutes; decimal.Overflow used to escape.
    wix_doc = {
        "eventType": "wix.loyalty.v1.account_updated",
        "data": {"id": "e", "updatedEvent": {"currentEntity": {"contactId": "c", "points": {}}}},
    }
    revision = value.strip('"') if value.startswith('"') else f"{RAW}{value}{RAW}"
    wix_doc["data"]["updatedEvent"]["currentEntity"]["revision"] = revision
    bodies = [
        ("wix", _dump(wix_doc)),
        ("gameball", f'{{"playerUniqueId": "p", "walletPoints": {value}}}'.encode()),
        ("gameball", f'{{"playerUniqueId": "p", "levelOrder": {value}}}'.encode()),
    ]
    for key, body in bodies:
        with pytest.raises(DecodeError, match="out of range|expected a number"):
            PROVIDERS[key].decode(body, {}, CONTEXT)


def test_open_loyalty_gross_value_sum_that_overflows_is_left_out() -> None:
    body = (
        b'{"type": "transaction.assigned_to_customer", "data": {"customerId": "c", '
        b'"transactionId": "t", "items": [{"grossValue": 1e999999999}, {"grossValue": 1e9}]}}'
    )
    [event] = PROVIDERS["open_loyalty"].decode(body, {}, CONTEXT)
    assert "grossValue" not in event.attributes
    CODEC.encode(event)


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_times_beyond_the_calendar_after_the_offset_are_decode_errors(when: str) -> None:
    body = json.dumps({"event": "x", "customer_id": "c", "created_at": when}).encode()
    with pytest.raises(DecodeError, match="created_at"):
        PROVIDERS["gameball"].decode(body, {}, CONTEXT)
