"""Avro codecs for the canonical records: schemas loaded from `schemas/*.avsc`.

Default framing is the Avro single-object encoding (`C3 01` + CRC-64-AVRO fingerprint, little
endian + body): no registry needed, and any reader can find the writer's schema in `schemas/`
by its fingerprint.

Readers also accept the Confluent Schema Registry wire format (`00` + 4-byte big-endian schema
id + body), which `connector.registry.RegistryCodec` writes: the writer's schema is looked up by
id (`writer_schema`, which needs a registry) and resolved to our reader schema, so a record
written with an older or newer compatible version of a schema still decodes.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form
from fastavro.validation import validate

from connector import models
from connector.avro_writer import Unsupported, compile_writer
from connector.errors import SchemaError
from connector.resources import schema_dir

SCHEMA_DIR = schema_dir()  # inside the package (connector/resources.py)
NAMESPACE = "loyalty"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
HEADER_LEN = 10
REGISTRY_MAGIC = b"\x00"
REGISTRY_HEADER_LEN = 5


def framing(data: bytes) -> str:
    """`single-object`, `registry` or `unknown`: how a message is framed (by its first bytes)."""
    if len(data) >= HEADER_LEN and data[:2] == SINGLE_OBJECT_MAGIC:
        return "single-object"
    if len(data) >= REGISTRY_HEADER_LEN and data[:1] == REGISTRY_MAGIC:
        return "registry"
    return "unknown"


def registry_schema_id(data: bytes) -> int:
    """The schema id of a registry-framed message."""
    return int.from_bytes(data[1:REGISTRY_HEADER_LEN], "big")


class AvroCodec:
    """Encode and decode the records named in `models.RECORD_TYPES` with their .avsc schemas."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        if not schema_dir.is_dir():
            raise SchemaError(f"schema directory {schema_dir} does not exist")
        self.schema_dir = schema_dir
        self.schemas: dict[str, Any] = {}
        self.writers: dict[str, Any] = {}  # compiled writers (avro_writer): fastavro's bytes
        self.raw_schemas: dict[str, Any] = {}
        self.fingerprints: dict[str, bytes] = {}
        self.by_fingerprint: dict[bytes, str] = {}
        for name in models.RECORD_TYPES:
            path = schema_dir / f"{NAMESPACE}.{name}.avsc"
            try:
                parsed = load_schema(str(path))
            except Exception as exc:  # fastavro raises several types for bad schema files
                raise SchemaError(f"cannot load {path.name}: {exc}") from exc
            fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
            self.schemas[name] = parsed
            self.writers[name] = compile_writer(parsed)
            self.fingerprints[name] = fp
            self.by_fingerprint[fp] = name
        # Fingerprints of released schemas (schemas/history/<version>/): records an earlier
        # release wrote are read with their own writer schema, resolved to ours.
        self.history: dict[bytes, tuple[str, Any, str]] = {}
        history = schema_dir / "history"
        for version_dir in sorted(history.iterdir()) if history.is_dir() else ():
            for name in models.RECORD_TYPES:
                path = version_dir / f"{NAMESPACE}.{name}.avsc"
                if not path.is_file():
                    continue
                try:
                    old = load_schema(str(path))
                except Exception as exc:
                    raise SchemaError(f"cannot load {version_dir.name}/{path.name}: {exc}") from exc
                fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(old), "CRC-64-AVRO"))
                if fp not in self.by_fingerprint:
                    self.history[fp] = (name, old, version_dir.name)

    def canonical_form(self, name: str) -> str:
        return str(to_parsing_canonical_form(self.schemas[name]))

    def schema_json(self, name: str) -> str:
        """The full (self-contained) schema of a record as JSON text (what a registry stores)."""
        return json.dumps(_without_fastavro_keys(self.schemas[name]))

    # -- encoding ------------------------------------------------------------------------------

    def encode_body(self, name: str, datum: Mapping[str, Any]) -> bytes:
        """Avro binary body (no framing) of a dict, strictly checked against the schema.

        The compiled writer first; a value it does not take goes through fastavro itself,
        which writes it or says what is wrong (`avro_writer`).
        """
        try:
            return self.writers[name](datum)
        except Unsupported:
            pass
        schema = self.schemas[name]
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, schema, datum, strict=True)
        except Exception as exc:
            why = self._why(name, datum, exc)
            raise SchemaError(f"{name} does not match its schema: {why}") from None
        return buf.getvalue()

    def _why(self, name: str, datum: Mapping[str, Any], exc: Exception) -> str:
        bad = sorted(_bad_decimals(datum))
        if bad:
            return f"{', '.join(bad)}: more decimal places than the schema's scale ({exc})"
        try:
            validate(datum, self.schemas[name], raise_errors=True)
        except Exception as detail:  # ValidationError lists the failing field paths
            return str(detail)
        return f"{type(exc).__name__}: {exc}"

    def encode(self, record: Any) -> bytes:
        """Single-object encoding of a canonical record (a dataclass from `models`)."""
        name = type(record).__name__
        if name not in self.schemas:
            raise SchemaError(f"{name} is not a canonical record type")
        body = self.encode_body(name, models.to_dict(record))
        return SINGLE_OBJECT_MAGIC + self.fingerprints[name] + body

    # -- decoding ------------------------------------------------------------------------------

    def writer_schema(self, schema_id: int) -> tuple[str, Any]:
        """(record name, parsed writer schema) of a registry schema id.

        Without a registry there is nothing to look an id up in; `RegistryCodec` overrides this.
        """
        raise SchemaError(
            f"message is in the Schema Registry wire format (schema id {schema_id}): "
            "set CONNECTOR_SCHEMA_REGISTRY_URL to read it"
        )

    def decode_dict(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """(record name, plain dict) of a single-object or registry-framed message."""
        kind = framing(data)
        if kind == "registry":
            return self._decode_registry(data)
        if kind != "single-object":
            raise SchemaError(
                "not an Avro single-object (C3 01) or Schema Registry (00 + id) framed message"
            )
        fp = bytes(data[2:HEADER_LEN])
        name = self.by_fingerprint.get(fp)
        writer = None
        if name is None:
            released = self.history.get(fp)
            if released is None:
                raise SchemaError(
                    f"unknown schema fingerprint {fp.hex()}: not a schema in {self.schema_dir} "
                    "or its history/"
                )
            name, writer, _ = released
        try:
            body = io.BytesIO(data[HEADER_LEN:])
            if writer is None:
                datum = fastavro.schemaless_reader(body, self.schemas[name])
            else:  # written by an earlier release: resolve its schema to ours
                datum = fastavro.schemaless_reader(body, writer, self.schemas[name])
        except Exception as exc:
            raise SchemaError(f"{name} body is malformed: {type(exc).__name__}: {exc}") from None
        if not isinstance(datum, dict):
            raise SchemaError(f"{name} body is not a record")
        return name, datum

    def _decode_registry(self, data: bytes) -> tuple[str, dict[str, Any]]:
        schema_id = registry_schema_id(data)
        name, writer = self.writer_schema(schema_id)
        if name not in self.schemas:
            raise SchemaError(f"schema id {schema_id} is a {name}, not one of our records")
        try:
            datum = fastavro.schemaless_reader(
                io.BytesIO(data[REGISTRY_HEADER_LEN:]), writer, self.schemas[name]
            )
        except Exception as exc:  # malformed body, or a writer schema ours cannot resolve
            raise SchemaError(
                f"{name} (schema id {schema_id}) cannot be read: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(datum, dict):
            raise SchemaError(f"{name} body is not a record")
        return name, datum

    def decode(self, data: bytes, expected: type[Any] | None = None) -> Any:
        """The canonical record of a single-object or registry-framed message."""
        name, datum = self.decode_dict(data)
        if expected is not None and name != expected.__name__:
            raise SchemaError(f"expected a {expected.__name__}, got a {name}")
        return from_dict(models.RECORD_TYPES[name], datum)


def _without_fastavro_keys(schema: Any) -> Any:
    """A parsed schema minus fastavro's bookkeeping (`__fastavro_parsed`, `__named_schemas`)."""
    if isinstance(schema, dict):
        return {k: _without_fastavro_keys(v) for k, v in schema.items() if not k.startswith("__")}
    if isinstance(schema, list):
        return [_without_fastavro_keys(v) for v in schema]
    return schema


def _bad_decimals(datum: Any, path: str = "") -> list[str]:
    """Paths of Decimal values finer than the points scale (fastavro's error names none)."""
    out: list[str] = []
    if isinstance(datum, Mapping):
        for k, v in datum.items():
            out += _bad_decimals(v, f"{path}.{k}" if path else str(k))
    elif isinstance(datum, Decimal):
        exponent = datum.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -models.POINTS_SCALE:
            out.append(path)
    return out


def from_dict(cls: Any, datum: Mapping[str, Any]) -> Any:
    """Build a `models` dataclass from an Avro-decoded dict (enums and nested records restored)."""
    kwargs: dict[str, Any] = {}
    for name, convert in _plan(cls):
        if name in datum:
            value = datum[name]
            if value is not None and convert is not None:
                value = convert(value)
            kwargs[name] = value
    return cls(**kwargs)


@functools.cache
def _plan(cls: Any) -> tuple[tuple[str, Any], ...]:
    """(field name, converter or None) per field: enum constructor or nested from_dict."""
    hints = _field_kinds(cls)
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(cls):
        kind = hints.get(f.name)
        convert: Any = None
        if kind in models.ENUM_TYPES:
            convert = models.ENUM_TYPES[kind]
        elif kind in models.NESTED_TYPES:
            convert = functools.partial(from_dict, models.NESTED_TYPES[kind])
        out.append((f.name, convert))
    return tuple(out)


@functools.cache
def _field_kinds(cls: Any) -> dict[str, str]:
    """Field name → enum or nested record type name, read from the dataclass annotations."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        ann = str(f.type)
        for name in (*models.ENUM_TYPES, *models.NESTED_TYPES):
            if ann == name or ann.startswith(f"{name} ") or ann.startswith(f"{name}|"):
                out[f.name] = name
    return out


@functools.cache
def default_codec() -> AvroCodec:
    return AvroCodec()
