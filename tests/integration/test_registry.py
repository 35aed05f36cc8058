"""Registry mode against a real Schema Registry (Apicurio Registry 3, Confluent-compatible API)
and real Apache Kafka: the worker registers its schemas at start, writes the Confluent wire
format, and a reader written here without any code of ours (plain HTTP to the registry for the
schema by id, fastavro for the body) reads every output topic. Schema evolution: a compatible
change registers and old readers still read; an incompatible one stops the worker at start.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import httpx
import pytest

from connector.avro import SCHEMA_DIR, default_codec
from connector.models import LedgerEntry, Provider, to_dict
from connector.registry import RegistryCodec, RegistryError, make_client
from connector.topics import Topics
from tests.integration.harness import (
    Harness,
    ol_level_changed,
    ol_points_changed,
    ol_points_transfer,
    sign,
    vf_points_added,
)

OUTPUTS = {
    "events": "loyalty.LoyaltyEvent",
    "ledger": "loyalty.LedgerEntry",
    "balances": "loyalty.MemberBalance",
    "tiers": "loyalty.MemberTier",
    "dlq": "loyalty.DeadLetter",
}


@contextmanager
def registry_harness(
    bootstrap: str, prefix: str, tmp: Path, registry_url: str, request: Any
) -> Iterator[Harness]:
    h = Harness(
        bootstrap,
        prefix,
        tmp,
        base_env={
            "CONNECTOR_SCHEMA_REGISTRY_URL": registry_url,
            "CONNECTOR_TABLE_STORE": "memory",
            "CONNECTOR_STANDBY_REPLICAS": "0",
        },
    )
    failed_before = request.session.testsfailed
    try:
        yield h
    finally:
        h.close(failed=request.session.testsfailed > failed_before)


@pytest.fixture
def h(
    kafka: Any, schema_registry: Any, topic_prefix: str, tmp_path: Path, request: Any
) -> Iterator[Harness]:
    with registry_harness(
        kafka.bootstrap, topic_prefix, tmp_path, schema_registry.url, request
    ) as harness:
        yield harness


class StandardReader:
    """Confluent wire format the textbook way: magic 0, 4-byte BE id, schema from the registry's
    `GET /schemas/ids/{id}`, body read by fastavro with that schema. Nothing of ours."""

    def __init__(self, registry_url: str) -> None:
        self.url = registry_url
        self.schemas: dict[int, Any] = {}

    def read(self, value: bytes) -> tuple[str, dict[str, Any]]:
        assert value[:1] == b"\x00", f"not the registry wire format: {value[:8]!r}"
        schema_id = int.from_bytes(value[1:5], "big")
        if schema_id not in self.schemas:
            resp = httpx.get(f"{self.url}/schemas/ids/{schema_id}", timeout=10)
            assert resp.status_code == 200, resp.text
            self.schemas[schema_id] = fastavro.parse_schema(json.loads(resp.json()["schema"]))
        schema = self.schemas[schema_id]
        datum = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)
        assert isinstance(datum, dict)
        return str(schema["name"]), datum


def test_worker_in_registry_mode_end_to_end(h: Harness, schema_registry: Any) -> None:
    url = schema_registry.url
    worker = h.start_worker()
    bridge = h.start_bridge()

    # every output subject is registered (topic-name strategy) before the worker consumes
    subjects = httpx.get(f"{url}/subjects", timeout=10).json()
    for name in OUTPUTS:
        subject = f"{h.topic(name)}-value"
        assert subject in subjects, subjects
        level = httpx.get(f"{url}/config/{subject}", timeout=10).json()
        assert level["compatibilityLevel"] == "FULL_TRANSITIVE", (subject, level)

    at = "2025-03-01T10:00:00Z"
    h.send(
        bridge,
        [
            sign("open_loyalty", ol_points_transfer("ol-reg", "T1", 100, at)),
            sign(
                "voucherify",
                vf_points_added("cust_reg", "evt_1", "vtx_1", "POINTS_ACCRUAL", 40, 40, at),
            ),
            # Open Loyalty without customerId: a dead letter
            sign("open_loyalty", ol_points_changed(None, "T9", 5, "add", 5, at)),
        ],
    )
    h.wait_member(worker, "open_loyalty", "default", "ol-reg", lambda m: float(m["balance"]) == 100)
    h.send(bridge, [sign("open_loyalty", ol_level_changed("ol-reg", "lvl-gold", "Gold", at))])
    h.wait_member(worker, "open_loyalty", "default", "ol-reg", lambda m: m["events_applied"] >= 2)
    h.wait_caught_up()

    reader = StandardReader(url)
    decoded: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, record_name in OUTPUTS.items():
        records = h.read(name, decode=False)
        assert records, f"nothing on {h.topic(name)}"
        decoded[name] = [reader.read(r.value) for r in records]
        assert {n for n, _ in decoded[name]} == {record_name}

    ledger = {d["member_key"]: d for _, d in decoded["ledger"]}
    ol = ledger["open_loyalty:default:ol-reg"]
    assert (ol["kind"], ol["points_delta"], ol["balance_after"]) == (
        "POINTS_EARNED",
        Decimal("100.00"),
        Decimal("100.00"),
    )
    assert ol["occurred_at"].isoformat() == "2025-03-01T10:00:00+00:00"
    assert ledger["voucherify:default:cust_reg"]["points_delta"] == Decimal("40.00")
    balances = {d["member_key"]: d for _, d in decoded["balances"]}
    assert balances["open_loyalty:default:ol-reg"]["tier"]["name"] == "Gold"
    tiers = [d for _, d in decoded["tiers"]]
    assert [t["tier"]["name"] for t in tiers] == ["Gold"]
    (dead,) = [d for _, d in decoded["dlq"]]
    assert dead["error_message"] == "data.customerId is missing"
    events = {d["type"] for _, d in decoded["events"]}
    assert {"POINTS_EARNED", "TIER_CHANGED"} <= events

    # our own readers agree: `tail` decodes the registry framing
    done = h.cli("tail", "ledger")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {line["member_key"] for line in lines} == set(ledger)
    assert all("undecodable" not in line for line in lines)
    # ...and without a registry URL it says what is missing instead of guessing
    env = {k: v for k, v in h.env().items() if k != "CONNECTOR_SCHEMA_REGISTRY_URL"}
    plain = subprocess.run(
        [sys.executable, "-m", "connector", "tail", "ledger", "-n", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert plain.returncode == 0, plain.stderr
    assert "CONNECTOR_SCHEMA_REGISTRY_URL" in json.loads(plain.stdout)["undecodable"]


def _evolve(tmp: Path, change: Any) -> Path:
    """A copy of schemas/ with LedgerEntry's fields changed by `change(fields)`."""
    target = tmp / "schemas"
    shutil.copytree(SCHEMA_DIR, target)
    path = target / "loyalty.LedgerEntry.avsc"
    schema = json.loads(path.read_text())
    schema["fields"] = change(list(schema["fields"]))
    path.write_text(json.dumps(schema))
    return target


def _entry() -> LedgerEntry:
    from datetime import UTC, datetime

    from connector.models import EntryOrigin, EventType, Provider

    at = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    return LedgerEntry(
        entry_id="e1:earned",
        member_key="wix:site:c1",
        provider=Provider.WIX,
        tenant="site",
        customer_id="c1",
        event_id="e1",
        movement_id=None,
        origin=EntryOrigin.DERIVED,
        kind=EventType.POINTS_EARNED,
        points_delta=Decimal("5.00"),
        balance_before=Decimal("0.00"),
        balance_after=Decimal("5.00"),
        reported_balance=None,
        occurred_at=at,
        recorded_at=at,
    )


def test_schema_evolution_rules(schema_registry: Any, topic_prefix: str, tmp_path: Path) -> None:
    url = schema_registry.url
    topics = Topics(topic_prefix)
    subject = f"{topics.ledger}-value"

    def codec(schema_dir: Path = SCHEMA_DIR) -> RegistryCodec:
        return RegistryCodec(make_client(url), topics, url=url, schema_dir=schema_dir)

    current = codec().register_all()
    assert codec().register_all() == current  # registering again is a no-op: same ids

    # compatible: a new optional field with a default
    newer_dir = _evolve(
        tmp_path / "newer",
        lambda fields: [*fields, {"name": "channel", "type": ["null", "string"], "default": None}],
    )
    newer = codec(newer_dir)
    ids = newer.register_all()
    assert ids[subject] != current[subject]
    assert {k: v for k, v in ids.items() if k != subject} == {
        k: v for k, v in current.items() if k != subject
    }
    assert httpx.get(f"{url}/subjects/{subject}/versions", timeout=10).json() == [1, 2]

    # a record written with the newer schema (as a newer worker would) ...
    body = io.BytesIO()
    fastavro.schemaless_writer(
        body, newer.schemas["LedgerEntry"], {**to_dict(_entry()), "channel": "pos"}
    )
    written = b"\x00" + ids[subject].to_bytes(4, "big") + body.getvalue()
    # ... is read by an old reader (our current schema), which looks the id up in the registry
    assert codec().decode(written, LedgerEntry) == _entry()
    # and an old record is read by the newer reader, with the default filled in
    old_record = codec().encode(_entry())
    assert codec(newer_dir).decode_dict(old_record)[1]["channel"] is None

    # incompatible: a field without a default is dropped (readers of the registered versions
    # need it); refused before registering, naming the subject and the rule
    broken_dir = _evolve(
        tmp_path / "broken", lambda fields: [f for f in fields if f["name"] != "event_id"]
    )
    with pytest.raises(RegistryError) as refused:
        codec(broken_dir).register_all()
    message = str(refused.value)
    assert subject in message and "FULL_TRANSITIVE" in message, message
    assert httpx.get(f"{url}/subjects/{subject}/versions", timeout=10).json() == [1, 2]


def test_incompatible_registered_schema_stops_the_worker_at_start(
    h: Harness, schema_registry: Any
) -> None:
    """Someone registered a LedgerEntry with a new required field (no default): ours cannot be
    read by readers of that version, so FULL_TRANSITIVE refuses it and the worker does not start.
    """
    url = schema_registry.url
    subject = f"{h.topic('ledger')}-value"
    # self-contained (the named types LedgerEntry refers to, inlined) plus a required field
    full = json.loads(default_codec().schema_json("LedgerEntry"))
    full["fields"].append({"name": "channel", "type": "string"})
    resp = httpx.post(
        f"{url}/subjects/{subject}/versions", json={"schema": json.dumps(full)}, timeout=10
    )
    assert resp.status_code == 200, resp.text

    worker = h.start_worker(wait=False)
    code = worker.popen.wait(90)
    log = worker.log_text()
    assert code != 0, log
    assert f"refused LedgerEntry (schemas/loyalty.LedgerEntry.avsc) for subject {subject}" in log
    assert "FULL_TRANSITIVE" in log, log
    # nothing of ours was registered under that subject
    assert httpx.get(f"{url}/subjects/{subject}/versions", timeout=10).json() == [1]


OLD_RELEASE = SCHEMA_DIR / "history" / "0.1.0"
ACCOUNTS_RELEASE = SCHEMA_DIR / "history" / "0.2.0"  # issue 13: account_id added


def test_account_ids_evolve_the_released_schemas_under_full_transitive(
    schema_registry: Any, topic_prefix: str
) -> None:
    """The account dimension (issue 13) is a compatible change of the 0.1.0 schemas.

    The five subjects are registered with the schemas as released in 0.1.0 (copied verbatim
    into schemas/history/0.1.0), under FULL_TRANSITIVE; then the 0.2.0 schemas (history/0.2.0)
    must register as second versions, and records cross both ways: an old reader reads a new
    record (it skips `account_id`), a new reader reads an old record (`default`).
    """
    url = schema_registry.url
    topics = Topics(topic_prefix)

    def codec(schema_dir: Path) -> RegistryCodec:
        return RegistryCodec(make_client(url), topics, url=url, schema_dir=schema_dir)

    old_ids = codec(OLD_RELEASE).register_all()
    new_ids = codec(ACCOUNTS_RELEASE).register_all()  # RegistryError if the registry refused it
    for record in ("events", "ledger", "balances", "tiers"):
        subject = f"{topics.all()[record]}-value"
        assert new_ids[subject] != old_ids[subject], subject
        assert httpx.get(f"{url}/subjects/{subject}/versions", timeout=10).json() == [1, 2]
        rule = httpx.get(f"{url}/config/{subject}", timeout=10).json()
        assert rule.get("compatibilityLevel", rule.get("compatibility")) == "FULL_TRANSITIVE"
    dlq = f"{topics.dlq}-value"
    assert new_ids[dlq] == old_ids[dlq]  # DeadLetter did not change

    entry = replace(_entry(), account_id="camp_a")
    written = codec(ACCOUNTS_RELEASE).encode(entry)  # a 0.2.0 worker's record, with its account
    old_view = codec(OLD_RELEASE).decode_dict(written)[1]
    assert "account_id" not in old_view and old_view["entry_id"] == entry.entry_id
    # an old worker's record: the 0.1.0 schema, registered id, no account_id
    old = codec(OLD_RELEASE)
    old.register_all()
    body = io.BytesIO()
    plain = {k: v for k, v in to_dict(_entry()).items() if k != "account_id"}
    fastavro.schemaless_writer(body, old.schemas["LedgerEntry"], plain)
    subject = f"{topics.ledger}-value"
    old_record = b"\x00" + old_ids[subject].to_bytes(4, "big") + body.getvalue()
    assert codec(ACCOUNTS_RELEASE).decode(old_record, LedgerEntry) == _entry()
    assert codec(SCHEMA_DIR).decode(old_record, LedgerEntry) == _entry()  # and today's reader


def _with_provider_symbol(tmp: Path, symbol: str) -> Path:
    """A copy of schemas/ as a later release would write it: `symbol` added to Provider."""
    target = tmp / "schemas"
    shutil.copytree(SCHEMA_DIR, target)
    path = target / "loyalty.Provider.avsc"
    schema = json.loads(path.read_text())
    schema["symbols"].insert(-1, symbol)
    path.write_text(json.dumps(schema))
    return target


def test_the_provider_transition_registers_once_under_backward(
    schema_registry: Any, topic_prefix: str, tmp_path: Path
) -> None:
    """The transition release (OTHER + an enum default on Provider) is backward- but not
    forward-compatible with 0.2.0: FULL_TRANSITIVE refuses it, its first start runs with
    CONNECTOR_SCHEMA_COMPATIBILITY=BACKWARD (docs/schemas.md). Afterwards readers of this
    release read a later release's new provider symbol as OTHER."""
    url = schema_registry.url
    topics = Topics(topic_prefix)
    ledger = f"{topics.ledger}-value"

    def codec(schema_dir: Path = SCHEMA_DIR, rule: str = "FULL_TRANSITIVE") -> RegistryCodec:
        return RegistryCodec(
            make_client(url), topics, url=url, schema_dir=schema_dir, compatibility=rule
        )

    released = codec(ACCOUNTS_RELEASE)
    old_ids = released.register_all()
    with pytest.raises(RegistryError) as refused:
        codec().register_all()
    message = str(refused.value)  # the first subject registered, LoyaltyEvent's
    assert f"for subject {topics.events}-value" in message and "FULL_TRANSITIVE" in message
    new_ids = codec(rule="BACKWARD").register_all()  # the one-time upgrade step
    for record in ("events", "ledger", "balances", "tiers"):
        subject = f"{topics.all()[record]}-value"
        assert new_ids[subject] != old_ids[subject], subject
        assert httpx.get(f"{url}/subjects/{subject}/versions", timeout=10).json() == [1, 2]
    assert codec().register_all() == new_ids  # later starts: registered already, rule restored
    rule = httpx.get(f"{url}/config/{ledger}", timeout=10).json()
    assert rule.get("compatibilityLevel", rule.get("compatibility")) == "FULL_TRANSITIVE"

    # new readers read what 0.2.0 workers wrote; 0.2.0 readers read new records of its symbols
    old_record = released.encode(_entry())
    assert codec().decode(old_record, LedgerEntry) == _entry()
    assert released.decode(codec().encode(_entry()), LedgerEntry) == _entry()

    # a later release adds a provider symbol: this release reads its records as OTHER. The
    # subjects' 0.2.0 versions cannot (no default), so FULL_TRANSITIVE still refuses it while
    # they are registered; FULL checks it against this release's versions only.
    later_dir = _with_provider_symbol(tmp_path, "ACME")
    with pytest.raises(RegistryError, match="FULL_TRANSITIVE"):
        codec(later_dir).register_all()
    later = codec(later_dir, rule="FULL")
    later_ids = later.register_all()
    body = io.BytesIO()
    fastavro.schemaless_writer(
        body, later.schemas["LedgerEntry"], {**to_dict(_entry()), "provider": "ACME"}
    )
    written = b"\x00" + later_ids[ledger].to_bytes(4, "big") + body.getvalue()
    assert codec().decode(written, LedgerEntry) == replace(_entry(), provider=Provider.OTHER)
