"""The raw record's contract has one owner (connector/raw.py): what the bridge writes is what
the worker reads, and no other module spells the header names."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from connector import raw

ROOT = Path(__file__).resolve().parents[2]


def test_headers_written_are_the_headers_read() -> None:
    headers = raw.raw_headers(
        provider="gameball",
        tenant="shop-eu",
        received_ms=1_700_000_000_123,
        request_id="req-1",
        content_type="application/json",
        verified=True,
        kept=[("X-GB-Signature", "abc")],
    )
    got = raw.header_map(headers)
    assert got == {
        "provider": "gameball",
        "tenant": "shop-eu",
        "received-at": "1700000000123",
        "request-id": "req-1",
        "content-type": "application/json",
        "verified": "true",
        "x-gb-signature": "abc",
    }
    assert raw.received_at(got) == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert raw.delivery_identity(b"gb-delivery", got) == "gb-delivery"
    assert raw.delivery_identity(None, got) == "req-1"


def test_a_recognised_retry_is_dated_and_named_by_its_first_attempt() -> None:
    got = raw.header_map(
        raw.raw_headers(
            provider="open_loyalty",
            tenant=None,
            received_ms=2_000,
            request_id="req-2",
            content_type="",
            verified=False,
            first_received_ms=1_000,
            retry_of="req-1",
        )
    )
    assert got["tenant"] == "" and got["verified"] == "false"
    assert raw.received_at(got) == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert raw.delivery_identity(b"req-2", got) == "req-1"
    assert raw.delivery_identity(b"req-2", {**got, raw.DELIVERY_ID: "d-9"}) == "req-1"


def test_a_delivery_id_header_names_a_record_keyed_by_something_else() -> None:
    got = {raw.REQUEST_ID: "req-3", raw.DELIVERY_ID: "gb-delivery"}
    assert raw.delivery_identity(b"gameball:default:c-1", got) == "gb-delivery"
    assert raw.delivery_identity(b"gameball:default:c-1", {raw.REQUEST_ID: "req-3"}) == (
        "gameball:default:c-1"
    )


def written(text: str, name: str) -> bool:
    """Whether `text` builds a (name, value) header tuple for `name`."""
    return re.search(rf"\(\s*[\"']{re.escape(name)}[\"']\s*,\s*(?![\"'])", text) is not None


def test_no_other_module_writes_the_raw_headers() -> None:
    names = (raw.RECEIVED_AT, raw.FIRST_RECEIVED_AT, raw.RETRY_OF)
    offenders = [
        f"{path.relative_to(ROOT)} writes {name!r}"
        for folder in ("connector", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if path != ROOT / "connector" / "raw.py"
        for name in names
        if written(path.read_text(), name)
    ]
    assert offenders == []
    # the check sees the kind of code it forbids
    assert written('headers = [("received-at", str(ms).encode())]', raw.RECEIVED_AT)
    assert not written('for h in ("request-id", "received-at"):', raw.RECEIVED_AT)


def test_a_dead_letter_names_the_delivery_id_header_before_the_key() -> None:
    """A raw record keyed by member (one hop) dead-letters under its delivery, not its member."""
    from connector.avro import AvroCodec
    from connector.streams.normalize import normalize

    headers = [(raw.PROVIDER, b"no-such-provider"), (raw.REQUEST_ID, b"req-4")]
    key = b"gameball:default:c-1"
    named = raw.ConsumedRecord(key, b"{}", [*headers, (raw.DELIVERY_ID, b"gb-9")], "raw", 3, 7)
    keyed = normalize(named, AvroCodec()).dead_letter
    plain = normalize(raw.ConsumedRecord(key, b"{}", headers, "raw", 3, 7), AvroCodec()).dead_letter
    assert keyed is not None and keyed.delivery_id == "gb-9"
    assert plain is not None and plain.delivery_id == "gameball:default:c-1"
