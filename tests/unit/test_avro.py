"""Schemas, canonical records and the single-object codec agree; bad records are loud errors."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector import models
from connector.avro import SCHEMA_DIR, SINGLE_OBJECT_MAGIC, AvroCodec, default_codec
from connector.avro import from_dict as avro_from_dict
from connector.errors import SchemaError

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def _avsc_fields(name: str) -> dict[str, object]:
    schema = json.loads((SCHEMA_DIR / f"loyalty.{name}.avsc").read_text())
    return {f["name"]: f["type"] for f in schema["fields"]}


@pytest.mark.parametrize("name", [*models.RECORD_TYPES, *models.NESTED_TYPES])
def test_python_records_mirror_the_avsc_files(name: str) -> None:
    cls = {**models.RECORD_TYPES, **models.NESTED_TYPES}[name]
    avsc = _avsc_fields(name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert list(avsc) == [f for f in avsc if f in fields] and set(avsc) == set(fields)
    for fname, ftype in avsc.items():
        nullable = isinstance(ftype, list) and "null" in ftype
        assert ("None" in str(fields[fname].type)) == nullable, fname


@pytest.mark.parametrize("name", list(models.ENUM_TYPES))
def test_python_enums_mirror_the_avsc_symbols(name: str) -> None:
    path = SCHEMA_DIR / f"loyalty.{name}.avsc"
    if path.exists():
        symbols = json.loads(path.read_text())["symbols"]
    else:  # EntryOrigin is declared inline in LedgerEntry
        symbols = _avsc_fields("LedgerEntry")["origin"]["symbols"]  # type: ignore[index]
    assert symbols == [m.value for m in models.ENUM_TYPES[name]]


def _event(**overrides: object) -> models.LoyaltyEvent:
    base: dict[str, object] = dict(
        event_id="e1",
        provider=models.Provider.OPEN_LOYALTY,
        tenant="default",
        provider_event_type="account.available_points_amount_changed",
        type=models.EventType.POINTS_EARNED,
        customer_id="c1",
        member_key="open_loyalty:default:c1",
        occurred_at=NOW,
        received_at=NOW,
    )
    base.update(overrides)
    return models.LoyaltyEvent(**base)  # type: ignore[arg-type]


def test_loyalty_event_round_trips_byte_exact_with_nulls() -> None:
    codec = default_codec()
    event = _event()
    data = codec.encode(event)
    assert data[:2] == b"\xc3\x01"
    assert codec.decode(data) == event
    assert codec.encode(codec.decode(data)) == data


def test_loyalty_event_round_trips_every_field() -> None:
    codec = default_codec()
    event = _event(
        movement_id="m1",
        points_delta=Decimal("-25.50"),
        balance=Decimal("100.00"),
        pending_points=Decimal("3.00"),
        tier=models.Tier("t1", "Gold", 3),
        revision=2**40,
        order=models.OrderRef("o1", 12345, "EUR"),
        attributes={"email": "a@b.c"},
        counters=models.PointCounters(earned=Decimal("1.00"), total=Decimal("9.99")),
    )
    assert codec.decode(codec.encode(event)) == event


def test_timestamps_keep_milliseconds_in_utc() -> None:
    codec = default_codec()
    got = codec.decode(codec.encode(_event()))
    assert got.occurred_at == NOW and got.occurred_at.tzinfo is not None


def test_points_with_more_decimals_than_the_schema_are_refused() -> None:
    with pytest.raises(SchemaError, match="points_delta"):
        default_codec().encode(_event(points_delta=Decimal("1.001")))


def test_a_record_violating_its_schema_is_a_clear_error() -> None:
    with pytest.raises(SchemaError, match="customer_id"):
        default_codec().encode(_event(customer_id=None))


def test_unknown_fingerprint_and_garbage_are_refused() -> None:
    codec = default_codec()
    with pytest.raises(SchemaError, match="single-object"):
        codec.decode(b"{}")
    with pytest.raises(SchemaError, match="fingerprint"):
        codec.decode(b"\xc3\x01" + b"\x00" * 8 + b"\x02")
    good = codec.encode(_event())
    with pytest.raises(SchemaError):
        codec.decode(good[:12])


def test_decode_checks_the_expected_type() -> None:
    codec = default_codec()
    with pytest.raises(SchemaError, match="expected a MemberBalance"):
        codec.decode(codec.encode(_event()), models.MemberBalance)


def test_fingerprints_are_distinct_and_stable() -> None:
    a, b = AvroCodec(), AvroCodec()
    assert a.fingerprints == b.fingerprints
    assert len(set(a.fingerprints.values())) == len(a.fingerprints)


def test_every_record_type_round_trips() -> None:
    codec = default_codec()
    d = Decimal("1.00")
    tier = models.Tier("t", "Gold", 1)
    records = [
        models.LedgerEntry(
            "e1:POINTS_EARNED",
            "wix:s:c",
            models.Provider.WIX,
            "s",
            "c",
            "e1",
            models.EntryOrigin.DERIVED,
            models.EventType.POINTS_EARNED,
            d,
            d,
            d,
            NOW,
            NOW,
            movement_id=None,
            reported_balance=d,
        ),
        models.MemberBalance(
            "wix:s:c",
            models.Provider.WIX,
            "s",
            "c",
            d,
            d,
            d,
            d,
            d,
            d,
            d,
            NOW,
            NOW,
            "e1",
            3,
            reported_balance=None,
            drift=None,
            tier=tier,
            source_offset=7,
        ),
        models.MemberTier("wix:s:c", models.Provider.WIX, "s", "c", NOW, "e1", tier, None),
        models.DeadLetter(
            "d1",
            "decode",
            "DecodeError",
            "bad",
            b"\x00\xff",
            "raw",
            0,
            5,
            NOW,
            "wix",
            "s",
            {"content-type": "text/plain"},
        ),
    ]
    for record in records:
        assert codec.decode(codec.encode(record)) == record


@settings(max_examples=200, deadline=None)
@given(
    delta=st.decimals(min_value=-(10**15), max_value=10**15, places=2, allow_nan=False),
    text=st.text(max_size=50),
    when=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
)
def test_round_trip_property(delta: Decimal, text: str, when: datetime) -> None:
    codec = default_codec()
    event = _event(
        points_delta=delta,
        customer_id=text or "x",
        occurred_at=models.utc(when),
        attributes={text: text},
    )
    assert codec.decode(codec.encode(event)) == event


@pytest.mark.parametrize(
    "raw,expected",
    [(100, "100.00"), ("100.0", "100.00"), (100.0, "100.00"), (-2.5, "-2.50"), ("7", "7.00")],
)
def test_points_are_exact(raw: object, expected: str) -> None:
    assert models.points(raw) == Decimal(expected)


@pytest.mark.parametrize(
    "raw",
    [True, False, None, "abc", float("nan"), "1e400", 0.001, [1], [0, [1, 2, 3], 0], (0, (1,), 0),
     "1_000", "\u0661\u0662\u0663", "\uff11\uff12", " 12 ", "12 ", " 12", "\t12", "12\n", "",
     {"n": 1}],
)  # fmt: skip
def test_points_refuse_non_numbers(raw: object) -> None:
    with pytest.raises(ValueError):
        models.points(raw)


# ---------------------------------------------------------------------------------------------
# released schemas stay readable (schemas/history/)


def test_records_written_by_the_0_1_0_release_decode_with_the_default_account() -> None:
    old = AvroCodec(SCHEMA_DIR / "history" / "0.1.0")
    d = Decimal("1.00")
    entry = models.LedgerEntry(
        "e1:POINTS_EARNED",
        "wix:s:c",
        models.Provider.WIX,
        "s",
        "c",
        "e1",
        models.EntryOrigin.DERIVED,
        models.EventType.POINTS_EARNED,
        d,
        d,
        d,
        NOW,
        NOW,
    )
    plain = {k: v for k, v in models.to_dict(entry).items() if k != "account_id"}
    body = old.encode_body("LedgerEntry", plain)  # exactly what a 0.1.0 worker wrote
    written = SINGLE_OBJECT_MAGIC + old.fingerprints["LedgerEntry"] + body
    codec = default_codec()
    assert old.fingerprints["LedgerEntry"] != codec.fingerprints["LedgerEntry"]
    assert codec.decode(written, models.LedgerEntry) == entry  # account_id: "default"


def test_every_history_version_is_complete_and_distinct_from_the_current_schemas() -> None:
    codec = default_codec()
    versions = sorted(p for p in (SCHEMA_DIR / "history").iterdir() if p.is_dir())
    assert versions, "schemas/history/ keeps the released versions"
    for version in versions:
        old = AvroCodec(version)  # loads every record: a release's files are complete
        changed = [n for n in old.fingerprints if old.fingerprints[n] != codec.fingerprints[n]]
        assert changed, f"{version.name} equals the current schemas: nothing to keep"
        for name in changed:
            assert old.fingerprints[name] in codec.history, (version.name, name)


def test_a_later_releases_provider_symbol_reads_as_other() -> None:
    """The transition release: `Provider` has OTHER and `"default": "OTHER"`, so a record a later
    release writes with a provider symbol this one lacks (`ACME`) still decodes, as OTHER."""
    codec = default_codec()
    later = json.loads(codec.schema_json("LoyaltyEvent"))
    provider_field = next(f for f in later["fields"] if f["name"] == "provider")
    provider_field["type"]["symbols"].insert(4, "ACME")  # wherever a later release puts it
    writer = fastavro.parse_schema(later)
    event = _event(member_key="acme:default:c1", attributes={"provider_key": "acme"})
    datum = {**models.to_dict(event), "provider": "ACME"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer, datum)
    body.seek(0)
    read = fastavro.schemaless_reader(body, writer, codec.schemas["LoyaltyEvent"])
    assert isinstance(read, dict) and read["provider"] == "OTHER"
    got = avro_from_dict(models.LoyaltyEvent, read)
    assert got.provider is models.Provider.OTHER and got.member_key == "acme:default:c1"


def test_records_written_by_the_0_2_0_release_decode_unchanged() -> None:
    old = AvroCodec(SCHEMA_DIR / "history" / "0.2.0")
    old_provider = json.loads(
        (SCHEMA_DIR / "history" / "0.2.0" / "loyalty.Provider.avsc").read_text()
    )
    assert "OTHER" not in old_provider["symbols"] and "default" not in old_provider
    event = _event(provider=models.Provider.WIX, member_key="wix:default:c1", account_id="a1")
    written = (
        SINGLE_OBJECT_MAGIC
        + old.fingerprints["LoyaltyEvent"]
        + old.encode_body("LoyaltyEvent", models.to_dict(event))
    )
    codec = default_codec()
    assert old.fingerprints["LoyaltyEvent"] != codec.fingerprints["LoyaltyEvent"]
    assert codec.decode(written, models.LoyaltyEvent) == event


def test_an_other_provider_event_round_trips() -> None:
    event = _event(
        provider=models.Provider.OTHER,
        member_key="acme:default:c1",
        attributes={"provider_key": "acme"},
    )
    codec = default_codec()
    assert codec.decode(codec.encode(event)) == event
