"""Compiled Avro binary writers for our schemas: fastavro's bytes, a fraction of its time.

`fastavro.schemaless_writer` spends most of a record's time deciding union branches: for every
`["null", X]` field it validates the value against each branch in turn (fastavro 1.13,
`write_union` → `validate`). Our records have a dozen or more such fields: measured on one
core, a `MemberBalance` took 33 µs through fastavro and 18 µs here, a `LoyaltyEvent` 61 and 22
(the worker encodes three to four records per event).

`compile_writer(schema)` turns a parsed schema into nested closures that know each field's
branch in advance. They accept only the exact Python types our models produce (`str`, `int`,
`Decimal`, aware `datetime`, `dict`, `None`) and otherwise raise `Unsupported`, never guessing:
`AvroCodec.encode_body` then encodes the datum with fastavro itself, which either writes it
(a value fastavro accepts that the fast path does not know, e.g. a naive datetime) or raises
the error the caller reports. So the result is always what fastavro would produce;
tests/unit/test_avro_writer.py checks the bytes against fastavro's for generated records of
every schema, and that every datum fastavro refuses is refused here too.

Encodings (Avro 1.11 specification, "Binary Encoding"): int and long as zig-zag varints; string
and bytes as a long length then the bytes; a union as the branch index then the value; an enum
as the symbol's index; a map as one block of pairs (count, then key and value each) and a 0
count; a record as its fields in order. Logical types as fastavro writes them
(`fastavro._logical_writers`): decimal as the unscaled value's minimal two's-complement bytes,
timestamp-millis of an aware datetime as days/seconds/microseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

Write = Callable[[bytearray, Any], None]

INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1
LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# the varint of every zig-zag value below 128 is one byte: most lengths, indexes and counts
_SMALL = [bytes([n]) for n in range(128)]


class Unsupported(Exception):
    """The fast path does not write this value: encode it with fastavro instead."""


def _varint(buf: bytearray, n: int) -> None:
    """Append the zig-zag varint of `n` (already range-checked)."""
    n = (n << 1) ^ (n >> 63)
    if n < 128:
        buf += _SMALL[n]
        return
    while n >= 128:
        buf.append((n & 0x7F) | 0x80)
        n >>= 7
    buf.append(n)


def _write_long(buf: bytearray, v: Any) -> None:
    if type(v) is not int or not LONG_MIN <= v <= LONG_MAX:
        raise Unsupported
    _varint(buf, v)


def _write_int(buf: bytearray, v: Any) -> None:
    if type(v) is not int or not INT_MIN <= v <= INT_MAX:
        raise Unsupported
    _varint(buf, v)


def _write_string(buf: bytearray, v: Any) -> None:
    if type(v) is not str:
        raise Unsupported
    data = v.encode()
    _varint(buf, len(data))
    buf += data


def _write_bytes(buf: bytearray, v: Any) -> None:
    if type(v) is not bytes:
        raise Unsupported
    _varint(buf, len(v))
    buf += v


def _write_null(buf: bytearray, v: Any) -> None:
    if v is not None:
        raise Unsupported


def _write_timestamp_millis(buf: bytearray, v: Any) -> None:
    if type(v) is datetime:
        if v.tzinfo is None:
            raise Unsupported  # fastavro reads a naive datetime as local time
        d = v - _EPOCH
        v = (d.days * 86400 + d.seconds) * 1000 + int(d.microseconds / 1000)
    _write_long(buf, v)


def _decimal_writer(precision: int, scale: int) -> Write:
    def write(buf: bytearray, v: Any) -> None:
        if type(v) is not Decimal:
            raise Unsupported
        sign, digits, exp = v.as_tuple()
        if type(exp) is not int or len(digits) > precision or exp + scale < 0:
            raise Unsupported  # NaN/Infinity, or fastavro's precision and scale errors
        unscaled = 0
        for digit in digits:
            unscaled = unscaled * 10 + digit
        unscaled *= 10 ** (exp + scale)
        size = (unscaled.bit_length() + 8) // 8
        data = (-unscaled if sign else unscaled).to_bytes(size, "big", signed=True)
        _varint(buf, size)
        buf += data

    return write


PRIMITIVES: dict[str, Write] = {
    "null": _write_null,
    "int": _write_int,
    "long": _write_long,
    "string": _write_string,
    "bytes": _write_bytes,
}


def compile_writer(schema: Any) -> Callable[[Any], bytes]:
    """A function datum → Avro binary body (no framing); raises `Unsupported` where the fast
    path does not apply. `schema`: a schema as `fastavro.parse_schema` returns it."""
    named: dict[str, Write] = {}
    definitions: Mapping[str, Any] = (
        schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
    )
    write = _compile(schema, named, definitions)

    def encode(datum: Any) -> bytes:
        buf = bytearray()
        try:
            write(buf, datum)
        except Unsupported:
            raise
        except Exception as exc:  # a type the checks above let through: fastavro decides
            raise Unsupported from exc
        return bytes(buf)

    return encode


def _compile(schema: Any, named: dict[str, Write], definitions: Mapping[str, Any]) -> Write:
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return PRIMITIVES[schema]
        if schema in named:
            return _by_name(named, schema)
        if schema in definitions:
            return _compile(definitions[schema], named, definitions)
        raise ValueError(f"unknown Avro type {schema!r}")
    if isinstance(schema, list):
        return _union(schema, named, definitions)
    kind = schema["type"]
    logical = schema.get("logicalType")
    if kind == "bytes" and logical == "decimal":
        return _decimal_writer(schema["precision"], schema.get("scale", 0))
    if kind == "long" and logical == "timestamp-millis":
        return _write_timestamp_millis
    if logical is not None:
        raise ValueError(f"logical type {logical!r} has no compiled writer")
    if kind == "record":
        return _record(schema, named, definitions)
    if kind == "enum":
        return _enum(schema, named)
    if kind == "map":
        return _map(_compile(schema["values"], named, definitions))
    if kind == "array":
        return _array(_compile(schema["items"], named, definitions))
    if kind in PRIMITIVES:
        return PRIMITIVES[kind]
    raise ValueError(f"Avro type {kind!r} has no compiled writer")


def _by_name(named: dict[str, Write], name: str) -> Write:
    def write(buf: bytearray, v: Any) -> None:  # late bound: a record may refer to itself
        named[name](buf, v)

    return write


def _union(branches: list[Any], named: dict[str, Write], definitions: Mapping[str, Any]) -> Write:
    if len(branches) != 2 or branches[0] != "null":
        raise ValueError(f"union {branches!r} has no compiled writer (only [null, X])")
    value = _compile(branches[1], named, definitions)
    if branches[1] == "null":
        raise ValueError("union [null, null]")

    def write(buf: bytearray, v: Any) -> None:
        if v is None:
            buf += b"\x00"
        else:
            buf += b"\x02"
            value(buf, v)

    return write


def _record(
    schema: Mapping[str, Any], named: dict[str, Write], definitions: Mapping[str, Any]
) -> Write:
    name = schema["name"]
    fields: list[tuple[str, Write]] = []

    def write(buf: bytearray, v: Any) -> None:
        # strict=True: every field present, none extra (fastavro's write_record)
        if type(v) is not dict or len(v) != len(fields):
            raise Unsupported
        for field, writer in fields:
            writer(buf, v[field])  # KeyError: a missing field, fastavro reports it

    named[name] = write
    for field in schema["fields"]:
        fields.append((field["name"], _compile(field["type"], named, definitions)))
    return write


def _enum(schema: Mapping[str, Any], named: dict[str, Write]) -> Write:
    encoded: dict[str, bytes] = {}
    for i, symbol in enumerate(schema["symbols"]):
        index = bytearray()
        _varint(index, i)
        encoded[symbol] = bytes(index)

    def write(buf: bytearray, v: Any) -> None:
        if type(v) is not str or v not in encoded:
            raise Unsupported  # fastavro refuses a symbol outside the schema
        buf += encoded[v]

    named[schema["name"]] = write
    return write


def _map(values: Write) -> Write:
    def write(buf: bytearray, v: Any) -> None:
        if type(v) is not dict:
            raise Unsupported
        if v:
            _varint(buf, len(v))
            for key, item in v.items():
                _write_string(buf, key)
                values(buf, item)
        buf += b"\x00"

    return write


def _array(items: Write) -> Write:
    def write(buf: bytearray, v: Any) -> None:
        if type(v) is not list:
            raise Unsupported
        if v:
            _varint(buf, len(v))
            for item in v:
                items(buf, item)
        buf += b"\x00"

    return write
