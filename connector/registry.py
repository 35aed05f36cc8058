"""Schema Registry mode: the Confluent wire format against any Confluent-compatible registry.

With `CONNECTOR_SCHEMA_REGISTRY_URL` set, `codec_for(settings)` gives a `RegistryCodec`: it
writes `00` + the 4-byte big-endian schema id + the Avro body, with each record type's schema
registered under the topic-name strategy subject (`<topic>-value`), and reads both framings
(single-object and registry; a registry id is looked up once and resolved to our reader
schema). Without it, `codec_for` is the plain single-object `AvroCodec`.

The HTTP side is `python-schema-registry-client` (sync client; fastavro and httpx, which we
already use): registration, the compatibility check, per-subject compatibility config and
lookups by id. `register_schemas` runs once at worker start, before Faust: it sets the subject's
compatibility rule (`CONNECTOR_SCHEMA_COMPATIBILITY`), asks the registry whether our schema
passes it, and registers; a refusal is a `RegistryError` naming the subject and the rule.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

import httpx
from fastavro import parse_schema
from schema_registry.client import SchemaRegistryClient
from schema_registry.client.errors import ClientError
from schema_registry.client.schema import AvroSchema

from connector import models
from connector.avro import (
    NAMESPACE,
    REGISTRY_MAGIC,
    SCHEMA_DIR,
    AvroCodec,
    default_codec,
)
from connector.errors import SchemaError
from connector.settings import Settings
from connector.topics import Topics

log = logging.getLogger(__name__)
# The client logs every 404 of a lookup (an unregistered schema is expected at first start).
logging.getLogger("schema_registry.client.client").setLevel(logging.WARNING)

EVOLUTION_HINT = (
    "compatible changes add a field with a default or remove a field that has one; "
    "see docs/schemas.md"
)


class RegistryError(SchemaError):
    """The Schema Registry could not be reached, refused a schema, or gave a bad answer."""


def subject_for(topic: str) -> str:
    """The topic-name strategy subject of a topic's values."""
    return f"{topic}-value"


def record_subjects(topics: Topics) -> dict[str, str]:
    """Record name → subject, for every output topic (each record type has one topic)."""
    out: dict[str, str] = {}
    for topic in topics.all().values():
        name = topics.value_schema(topic)
        if name is not None:
            out[name] = subject_for(topic)
    return out


def make_client(
    url: str, username: str | None = None, password: str | None = None, timeout: float = 10.0
) -> SchemaRegistryClient:
    # Without credentials: a no-op auth (the library would otherwise send an empty Basic header).
    auth: httpx.Auth = httpx.BasicAuth(username, password or "") if username else httpx.Auth()
    return SchemaRegistryClient(url, auth=auth, timeout=httpx.Timeout(timeout))


class RegistryCodec(AvroCodec):
    """`AvroCodec` that writes the registry wire format and reads both framings."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        topics: Topics,
        *,
        compatibility: str = "FULL_TRANSITIVE",
        url: str = "",
        schema_dir: Path = SCHEMA_DIR,
    ) -> None:
        super().__init__(schema_dir)
        self.client = client
        self.url = url or str(client.conf.get("url", ""))
        self.compatibility = compatibility
        self.subjects = record_subjects(topics)
        self.ids: dict[str, int] = {}
        self._writers: dict[int, tuple[str, Any]] = {}

    # -- registration ----------------------------------------------------------------------------

    def register_all(self) -> dict[str, int]:
        """Register every output schema (subject → id); raises `RegistryError` on a refusal."""
        return {self.subjects[name]: self.register(name) for name in self.subjects}

    def register(self, name: str) -> int:
        subject = self.subjects[name]
        schema = AvroSchema(self.schema_json(name))
        try:
            known = self.client.check_version(subject, schema)
            if known is not None:
                schema_id = int(known.schema_id)
                self._ensure_rule(subject)
            else:
                versions = self.client.get_versions(subject)
                if versions:
                    rule = self._ensure_rule(subject)
                    verdict = self.client.test_compatibility(subject, schema, verbose=True)
                    ok = verdict.get("is_compatible") if isinstance(verdict, dict) else verdict
                    if not ok:
                        why = ""
                        if isinstance(verdict, dict) and verdict.get("messages"):
                            why = f": {'; '.join(map(str, verdict['messages']))}"
                        raise self._refused(name, subject, rule, why)
                try:
                    schema_id = int(self.client.register(subject, schema))
                except ClientError as exc:
                    if exc.http_code == 409:
                        rule = self._rule(subject)
                        raise self._refused(
                            name, subject, rule, f": {_server_message(exc)}"
                        ) from None
                    raise
                if not versions:
                    self._ensure_rule(subject)
        except ClientError as exc:
            raise RegistryError(
                f"schema registry {self.url}: {subject}: {exc.message} "
                f"(HTTP {exc.http_code}): {_server_message(exc)}"
            ) from None
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"cannot reach the schema registry at {self.url} "
                f"(CONNECTOR_SCHEMA_REGISTRY_URL): {type(exc).__name__}: {exc}"
            ) from None
        self.ids[name] = schema_id
        self._writers[schema_id] = (name, self.schemas[name])
        log.info("schema %s registered as %s (id %d)", name, subject, schema_id)
        return schema_id

    def _refused(self, name: str, subject: str, rule: str, why: str) -> RegistryError:
        source = f"{self.schema_dir.name}/{NAMESPACE}.{name}.avsc"
        return RegistryError(
            f"schema registry refused {name} ({source}) for subject {subject}: "
            f"not {rule}-compatible with its registered versions{why} "
            f"({EVOLUTION_HINT}; upgrading from 0.2.0? this release adds the Provider symbol "
            "OTHER: start the first worker once with CONNECTOR_SCHEMA_COMPATIBILITY=BACKWARD, "
            "see docs/schemas.md, the Provider transition)"
        )

    def _rule(self, subject: str) -> str:
        """The compatibility rule in force for a subject (its own, else the registry's)."""
        if self.compatibility != "REGISTRY":
            return self.compatibility
        try:
            return str(self.client.get_compatibility(subject))
        except ClientError:
            try:
                return str(self.client.get_compatibility())
            except ClientError:
                return "the registry's"

    def _ensure_rule(self, subject: str) -> str:
        """Put our compatibility rule on the subject (unless REGISTRY); the rule in force."""
        if self.compatibility == "REGISTRY":
            return self._rule(subject)
        self.client.update_compatibility(self.compatibility, subject)
        return self.compatibility

    def schema_id(self, name: str) -> int:
        schema_id = self.ids.get(name)
        if schema_id is None:  # not registered up front (e.g. a tool that only writes)
            schema_id = self.register(name)
        return schema_id

    # -- encoding / decoding ---------------------------------------------------------------------

    def encode(self, record: Any) -> bytes:
        """Registry wire format of a canonical record: 00, schema id (4 bytes, BE), body."""
        name = type(record).__name__
        if name not in self.schemas:
            raise SchemaError(f"{name} is not a canonical record type")
        body = self.encode_body(name, models.to_dict(record))
        return REGISTRY_MAGIC + self.schema_id(name).to_bytes(4, "big") + body

    def writer_schema(self, schema_id: int) -> tuple[str, Any]:
        cached = self._writers.get(schema_id)
        if cached is not None:
            return cached
        try:
            found = self.client.get_by_id(schema_id)
        except ClientError as exc:
            raise RegistryError(
                f"schema registry {self.url}: schema id {schema_id}: {exc.message} "
                f"(HTTP {exc.http_code})"
            ) from None
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"cannot reach the schema registry at {self.url} to look up schema id "
                f"{schema_id}: {type(exc).__name__}: {exc}"
            ) from None
        if found is None:
            raise RegistryError(f"schema id {schema_id} is not in the registry at {self.url}")
        raw = found.raw_schema
        if isinstance(raw, str):
            raw = json.loads(raw)
        if not isinstance(raw, dict) or raw.get("type") != "record":
            raise SchemaError(f"schema id {schema_id} is not an Avro record schema")
        full = str(raw.get("name", ""))
        if "." not in full and raw.get("namespace"):
            full = f"{raw['namespace']}.{full}"
        namespace, _, short = full.rpartition(".")
        if namespace != NAMESPACE or short not in self.schemas:
            raise SchemaError(f"schema id {schema_id} is {full!r}, not one of our records")
        writer = parse_schema(raw, _write_hint=False)
        self._writers[schema_id] = (short, writer)
        return short, writer


def _server_message(exc: ClientError) -> str:
    detail: Any = exc.server_traceback
    if isinstance(detail, dict):
        detail = detail.get("message", detail)
    return str(detail)[:1000]


@functools.cache
def _registry_codec(
    url: str, username: str | None, password: str | None, prefix: str, compatibility: str
) -> RegistryCodec:
    return RegistryCodec(
        make_client(url, username, password),
        Topics(prefix),
        compatibility=compatibility,
        url=url,
    )


def codec_for(settings: Settings) -> AvroCodec:
    """The codec a process uses: registry mode when a registry URL is set, else single-object.

    One instance per configuration and process, so schema ids registered at worker start are
    the ones the agents encode with.
    """
    if not settings.schema_registry_url:
        return default_codec()
    return _registry_codec(
        settings.schema_registry_url,
        settings.schema_registry_username,
        settings.schema_registry_password,
        settings.topic_prefix,
        settings.schema_compatibility,
    )


def register_schemas(settings: Settings) -> dict[str, int]:
    """Register every output schema (subject → id) in registry mode; {} without a registry."""
    codec = codec_for(settings)
    if not isinstance(codec, RegistryCodec):
        return {}
    return codec.register_all()
