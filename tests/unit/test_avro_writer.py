"""The compiled Avro writers against fastavro itself, the oracle: same bytes, same refusals.

Values are generated from each schema of `schemas/` (hypothesis), valid ones of the types our
models produce and, mixed in, the kinds of wrong values a bug could produce: wrong types,
out-of-range ints, decimals finer than the scale or past the precision, naive datetimes,
symbols outside an enum, missing and extra fields.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.avro import AvroCodec, default_codec
from connector.avro_writer import Unsupported, compile_writer
from connector.errors import SchemaError

CODEC: AvroCodec = default_codec()
NAMES = sorted(CODEC.schemas)

LONGS = st.integers(-(1 << 63), (1 << 63) - 1)
INTS = st.integers(-(1 << 31), (1 << 31) - 1)
TEXT = st.text(max_size=12)
AWARE = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)


def decimals(precision: int, scale: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(
        min_value=-(10 ** (precision - scale)) + 1,
        max_value=10 ** (precision - scale) - 1,
        places=scale,
        allow_nan=False,
        allow_infinity=False,
    ) | st.integers(-(10**6), 10**6).map(Decimal)  # fewer places than the scale


def _resolve(t: Any, named: dict[str, Any]) -> Any:
    return named[t] if isinstance(t, str) and t in named else t


def valid(t: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of the Python types our models put in a record's dict."""
    t = _resolve(t, named)
    if isinstance(t, list):
        return st.one_of(*(valid(b, named) for b in t))
    if isinstance(t, str):
        return {
            "null": st.none(),
            "string": TEXT,
            "long": LONGS,
            "int": INTS,
            "bytes": st.binary(max_size=8),
        }[t]
    logical = t.get("logicalType")
    if logical == "decimal":
        return decimals(t["precision"], t.get("scale", 0))
    if logical == "timestamp-millis":
        return AWARE | st.integers(-(10**13), 10**13)
    kind = t["type"]
    if kind == "enum":
        return st.sampled_from(t["symbols"])
    if kind == "map":
        return st.dictionaries(TEXT, valid(t["values"], named), max_size=3)
    if kind == "array":
        return st.lists(valid(t["items"], named), max_size=3)
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: valid(f["type"], named) for f in t["fields"]})
    return valid(kind, named)


WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 70), 1 << 70),
    st.floats(allow_nan=True),
    TEXT,
    st.binary(max_size=4),
    st.decimals(places=5, allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("1E+30")]),
    st.datetimes(),  # naive
    st.lists(st.integers(), max_size=2),
    st.dictionaries(TEXT, st.integers(), max_size=2),
    st.just("NOT_A_SYMBOL"),
)


@st.composite
def maybe_wrong(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A valid record, then with luck one field replaced, dropped, or one extra added."""
    schema = CODEC.schemas[name]
    named = schema.get("__named_schemas", {})
    datum = dict(draw(valid(schema, named)))
    how = draw(st.sampled_from(["valid", "replace", "drop", "extra"]))
    field = draw(st.sampled_from([f["name"] for f in schema["fields"]]))
    if how == "replace":
        datum[field] = draw(WRONG)
    elif how == "drop":
        del datum[field]
    elif how == "extra":
        datum["not_in_schema"] = draw(WRONG)
    return datum


def fastavro_bytes(name: str, datum: Any) -> bytes | None:
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, CODEC.schemas[name], datum, strict=True)
    except Exception:
        return None
    return buf.getvalue()


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_writes_fastavros_bytes_for_valid_records(name: str, data: st.DataObject) -> None:
    schema = CODEC.schemas[name]
    datum = data.draw(valid(schema, schema.get("__named_schemas", {})))
    expected = fastavro_bytes(name, datum)
    assert expected is not None, "the generator made a record fastavro refuses"
    assert CODEC.writers[name](datum) == expected  # the fast path itself, no fallback


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_encode_body_is_fastavro_on_any_datum(name: str, data: st.DataObject) -> None:
    datum = data.draw(maybe_wrong(name))
    expected = fastavro_bytes(name, datum)
    try:
        fast = CODEC.writers[name](datum)
    except Unsupported:
        fast = None
    if expected is None:
        assert fast is None, "the fast path wrote a record fastavro refuses"
        with pytest.raises(SchemaError):
            CODEC.encode_body(name, datum)
    else:
        assert fast in (None, expected)
        assert CODEC.encode_body(name, datum) == expected


def test_fallback_keeps_fastavros_reading_of_values_the_fast_path_leaves() -> None:
    # a naive datetime is local time to fastavro: the fast path leaves it to fastavro
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "t",
            "fields": [{"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}],
        }
    )
    write = compile_writer(schema)
    with pytest.raises(Unsupported):
        write({"at": datetime(2026, 1, 1)})
    assert write({"at": datetime(2026, 1, 1, tzinfo=UTC)}) == (
        fastavro_bytes_of(schema, {"at": datetime(2026, 1, 1, tzinfo=UTC)})
    )


def fastavro_bytes_of(schema: Any, datum: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, datum, strict=True)
    return buf.getvalue()


def test_unknown_shapes_are_refused_at_compile_time() -> None:
    with pytest.raises(ValueError, match="union"):
        compile_writer(fastavro.parse_schema(["string", "long"]))
    with pytest.raises(ValueError, match="logical type"):
        compile_writer(fastavro.parse_schema({"type": "int", "logicalType": "date"}))
