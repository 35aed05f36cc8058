"""Both Avro framings (single-object and Schema Registry wire format), without a network.

`RegistryCodec` gets a stand-in for the registry *client* here (ids → schemas in a dict), so
the framing, resolution and error paths are tested in isolation; the real registry is
exercised in tests/integration/test_registry.py.
"""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import fastavro
import pytest

from connector.avro import AvroCodec, default_codec, framing, registry_schema_id
from connector.errors import ConfigError, SchemaError
from connector.models import EntryOrigin, EventType, LedgerEntry, Provider
from connector.registry import (
    RegistryCodec,
    codec_for,
    make_client,
    record_subjects,
    subject_for,
)
from connector.settings import Settings
from connector.topics import Topics

AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def entry(**overrides: Any) -> LedgerEntry:
    values: dict[str, Any] = dict(
        entry_id="e1:earned",
        member_key="open_loyalty:default:c1",
        provider=Provider.OPEN_LOYALTY,
        tenant="default",
        customer_id="c1",
        event_id="e1",
        movement_id="m1",
        origin=EntryOrigin.REPORTED,
        kind=EventType.POINTS_EARNED,
        points_delta=Decimal("12.50"),
        balance_before=Decimal("0.00"),
        balance_after=Decimal("12.50"),
        reported_balance=None,
        occurred_at=AT,
        recorded_at=AT,
    )
    values.update(overrides)
    return LedgerEntry(**values)


class FakeSchema:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw_schema = raw


class StubClient:
    """Only what RegistryCodec uses of the client for reading: ids → schemas."""

    def __init__(self, by_id: dict[int, dict[str, Any]]) -> None:
        self.by_id = by_id
        self.lookups: list[int] = []
        self.conf = {"url": "http://registry.invalid"}

    def get_by_id(self, schema_id: int) -> FakeSchema | None:
        self.lookups.append(schema_id)
        raw = self.by_id.get(schema_id)
        return FakeSchema(raw) if raw is not None else None


def stub_codec(by_id: dict[int, dict[str, Any]]) -> tuple[RegistryCodec, StubClient]:
    client = StubClient(by_id)
    codec = RegistryCodec(client, Topics("loyalty"), url="http://registry.invalid")  # type: ignore[arg-type]
    return codec, client


def registry_frame(schema_id: int, schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    """The Confluent wire format written by hand with fastavro (no code of ours)."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), datum)
    return b"\x00" + schema_id.to_bytes(4, "big") + buf.getvalue()


def ledger_schema() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(default_codec().schema_json("LedgerEntry"))
    return parsed


def test_framing_is_told_by_the_first_bytes() -> None:
    single = default_codec().encode(entry())
    assert framing(single) == "single-object"
    assert framing(b"\x00\x00\x00\x00\x07body") == "registry"
    assert registry_schema_id(b"\x00\x00\x00\x01\x02") == 258
    assert framing(b"{}") == "unknown"
    assert framing(b"\x00\x01") == "unknown"  # too short for 00 + 4-byte id


def test_plain_codec_names_the_variable_for_registry_framing() -> None:
    data = registry_frame(7, ledger_schema(), _datum(entry()))
    with pytest.raises(SchemaError, match="CONNECTOR_SCHEMA_REGISTRY_URL"):
        AvroCodec().decode(data)


def test_registry_codec_encodes_wire_format_with_the_cached_id() -> None:
    codec, client = stub_codec({})
    codec.ids["LedgerEntry"] = 42
    data = codec.encode(entry())
    assert data[:1] == b"\x00" and int.from_bytes(data[1:5], "big") == 42
    # the body is plain Avro binary of our schema: a standard reader gets it back
    body = fastavro.schemaless_reader(io.BytesIO(data[5:]), fastavro.parse_schema(ledger_schema()))
    assert isinstance(body, dict)
    assert body["points_delta"] == Decimal("12.50") and body["kind"] == "POINTS_EARNED"
    # our reader looks id 42 up once, then from cache
    client.by_id[42] = ledger_schema()
    assert codec.decode(data, LedgerEntry) == entry()
    assert codec.decode(data, LedgerEntry) == entry()
    assert client.lookups == [42]


def test_registry_codec_reads_single_object_too() -> None:
    codec, _ = stub_codec({})
    assert codec.decode(default_codec().encode(entry()), LedgerEntry) == entry()


def test_a_newer_writer_schema_resolves_to_our_reader_schema() -> None:
    newer = ledger_schema()
    newer["fields"] = [
        *newer["fields"],
        {"name": "channel", "type": ["null", "string"], "default": None},
    ]
    datum = {**_datum(entry()), "channel": "pos"}
    codec, _ = stub_codec({9: newer})
    assert codec.decode(registry_frame(9, newer, datum), LedgerEntry) == entry()


def test_an_older_writer_schema_gets_our_defaults() -> None:
    older = ledger_schema()
    older["fields"] = [f for f in older["fields"] if f["name"] != "reported_balance"]
    datum = {k: v for k, v in _datum(entry()).items() if k != "reported_balance"}
    codec, _ = stub_codec({3: older})
    assert codec.decode(registry_frame(3, older, datum), LedgerEntry) == entry()


def test_foreign_and_unknown_ids_are_schema_errors() -> None:
    foreign = {"type": "record", "name": "Other", "namespace": "acme", "fields": []}
    codec, _ = stub_codec({5: foreign})
    with pytest.raises(SchemaError, match="acme.Other"):
        codec.decode(registry_frame(5, foreign, {}))
    with pytest.raises(SchemaError, match="schema id 6 is not in the registry"):
        codec.decode(b"\x00\x00\x00\x00\x06\x00")


def test_expected_type_is_checked_for_registry_framing() -> None:
    codec, _ = stub_codec({1: ledger_schema()})
    from connector.models import MemberBalance

    with pytest.raises(SchemaError, match="expected a MemberBalance, got a LedgerEntry"):
        codec.decode(registry_frame(1, ledger_schema(), _datum(entry())), MemberBalance)


def test_subjects_follow_the_topic_name_strategy() -> None:
    subjects = record_subjects(Topics("acme"))
    assert subjects == {
        "LoyaltyEvent": "acme.events-value",
        "LedgerEntry": "acme.ledger-value",
        "MemberBalance": "acme.balances-value",
        "MemberTier": "acme.tiers-value",
        "DeadLetter": "acme.webhooks.dlq-value",
    }
    assert subject_for("x") == "x-value"


def test_settings_for_registry_mode() -> None:
    s = Settings.from_env(
        {
            "CONNECTOR_SCHEMA_REGISTRY_URL": "http://reg:8080/apis/ccompat/v7/",
            "CONNECTOR_SCHEMA_REGISTRY_USERNAME": "svc",
            "CONNECTOR_SCHEMA_REGISTRY_PASSWORD": "pa55word",
            "CONNECTOR_SCHEMA_COMPATIBILITY": "backward",
        }
    )
    assert s.schema_registry_url == "http://reg:8080/apis/ccompat/v7"
    assert s.schema_compatibility == "BACKWARD"
    assert "pa55word" not in repr(s)
    assert isinstance(codec_for(s), RegistryCodec)
    plain = Settings.from_env({})
    assert plain.schema_registry_url is None and plain.schema_compatibility == "FULL_TRANSITIVE"
    assert codec_for(plain) is default_codec()
    with pytest.raises(ConfigError, match="CONNECTOR_SCHEMA_REGISTRY_URL"):
        Settings.from_env({"CONNECTOR_SCHEMA_REGISTRY_URL": "reg:8081"})
    with pytest.raises(ConfigError, match="CONNECTOR_SCHEMA_COMPATIBILITY"):
        Settings.from_env({"CONNECTOR_SCHEMA_COMPATIBILITY": "SOMETIMES"})


def test_password_is_declared_secret() -> None:
    from connector.settings import VARIABLES

    by_name = {v.name: v for v in VARIABLES}
    assert by_name["CONNECTOR_SCHEMA_REGISTRY_PASSWORD"].secret
    assert not by_name["CONNECTOR_SCHEMA_REGISTRY_URL"].secret


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).seen.append(self.headers.get("Authorization"))
        body = b'{"error_code": 40401, "message": "not found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_basic_auth_is_sent_only_when_configured() -> None:
    """What goes over the wire (an HTTP listener that records headers; no registry logic)."""
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        _Recorder.seen.clear()
        assert make_client(url, "svc", "pa55word").get_by_id(1) is None
        assert make_client(url).get_by_id(1) is None
    finally:
        server.shutdown()
        server.server_close()
    import base64

    assert _Recorder.seen == [f"Basic {base64.b64encode(b'svc:pa55word').decode()}", None]


def _datum(record: LedgerEntry) -> dict[str, Any]:
    from connector.models import to_dict

    return to_dict(record)


def test_schema_json_is_plain_avro_for_the_registry() -> None:
    """What gets registered: the self-contained schema, without fastavro's bookkeeping keys."""
    from fastavro.schema import load_schema

    from connector.avro import SCHEMA_DIR

    for name in default_codec().schemas:
        text = default_codec().schema_json(name)
        assert "__fastavro" not in text and "__named_schemas" not in text
        plain = load_schema(str(SCHEMA_DIR / f"loyalty.{name}.avsc"), _write_hint=False)
        assert json.loads(text) == json.loads(json.dumps(plain))
