"""`loyalty-connector export` on real Apache Kafka: a ledger written in both framings (single-
object and Schema Registry, against the real Apicurio Registry) → typed Parquet and CSV, a time
range on Kafka timestamps, nested records flattened, the README's DuckDB query and the chart.
"""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connector.avro import default_codec
from connector.export import ledger_daily
from connector.kafka_admin import ensure_topics
from connector.models import (
    EntryOrigin,
    EventType,
    LedgerEntry,
    MemberBalance,
    Provider,
    Tier,
)
from connector.registry import RegistryCodec, codec_for
from connector.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
D = Decimal
DAY1 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY1 + timedelta(days=2)

# (provider, customer, kind, delta, kafka time) — the numbers the assertions are made from
MOVES = [
    (Provider.OPEN_LOYALTY, "anna", EventType.POINTS_EARNED, D("100.00"), DAY1),
    (Provider.OPEN_LOYALTY, "anna", EventType.POINTS_REDEEMED, D("-30.00"), DAY2),
    (Provider.OPEN_LOYALTY, "otto", EventType.POINTS_EARNED, D("12.50"), DAY2),
    (Provider.VOUCHERIFY, "vera", EventType.POINTS_EARNED, D("40.00"), DAY1),
    (Provider.VOUCHERIFY, "vera", EventType.POINTS_REDEEMED, D("-15.00"), DAY3),
    (Provider.WIX, "wendy", EventType.POINTS_EARNED, D("0.25"), DAY3),
    (Provider.WIX, "wendy", EventType.POINTS_PENDING, D("5.00"), DAY3),
]
# Voucherify entries are in a loyalty campaign's account; the others in `default`
ACCOUNT = {Provider.VOUCHERIFY: "camp_1"}


def ledger_entries() -> list[tuple[LedgerEntry, datetime]]:
    out = []
    balance: dict[str, Decimal] = {}
    for n, (provider, customer, kind, delta, at) in enumerate(MOVES):
        key = f"{provider.key}:default:{customer}"
        before = balance.get(key, D("0.00"))
        after = before if kind == EventType.POINTS_PENDING else before + delta
        balance[key] = after
        entry = LedgerEntry(
            entry_id=f"e{n}:{kind.value.lower()}",
            member_key=key,
            provider=provider,
            tenant="default",
            customer_id=customer,
            event_id=f"e{n}",
            movement_id=None,
            origin=EntryOrigin.REPORTED,
            kind=kind,
            points_delta=delta,
            balance_before=before,
            balance_after=after,
            reported_balance=None,
            occurred_at=at - timedelta(minutes=5),
            recorded_at=at,
            account_id=ACCOUNT.get(provider, "default"),
        )
        out.append((entry, at))
    return out


def balance(customer: str, tier: Tier | None) -> MemberBalance:
    return MemberBalance(
        member_key=f"open_loyalty:default:{customer}",
        provider=Provider.OPEN_LOYALTY,
        tenant="default",
        customer_id=customer,
        balance=D("70.00"),
        computed_balance=D("70.00"),
        pending_points=D("0.00"),
        lifetime_earned=D("100.00"),
        lifetime_redeemed=D("30.00"),
        lifetime_expired=D("0.00"),
        lifetime_adjusted=D("0.00"),
        updated_at=DAY2,
        as_of=DAY2,
        last_event_id="e1",
        events_applied=2,
        tier=tier,
    )


async def produce(
    settings: Settings, records: list[tuple[str, str, bytes | None, datetime]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for topic, key, value, at in records:
            await producer.send_and_wait(
                topic, value, key=key.encode(), timestamp_ms=int(at.timestamp() * 1000)
            )
    finally:
        await producer.stop()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


async def create_unretained(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, 2, 1, topic_configs={"retention.ms": "-1"}) for n in names]
        )
    finally:
        await admin.close()


def test_export_ledger_and_balances(
    kafka: Any, schema_registry: Any, topic_prefix: str, tmp_path: Path
) -> None:
    env_vars = {
        "CONNECTOR_BROKER_URL": kafka.bootstrap,
        "CONNECTOR_TOPIC_PREFIX": topic_prefix,
        "CONNECTOR_PARTITIONS": "2",
        "CONNECTOR_SCHEMA_REGISTRY_URL": schema_registry.url,
    }
    settings = Settings.from_env(env_vars)
    topics = settings.topics
    # The records carry 2025 Kafka timestamps: with the broker's default 7-day retention its
    # periodic check may delete them mid-test (a CI failure), so these topics keep everything.
    asyncio.run(create_unretained(kafka.bootstrap, [topics.ledger, topics.balances]))
    asyncio.run(ensure_topics(settings, [topics.ledger, topics.balances]))
    registry = codec_for(settings)
    assert isinstance(registry, RegistryCodec)
    registry.register_all()
    single = default_codec()

    entries = ledger_entries()
    records: list[tuple[str, str, bytes | None, datetime]] = []
    for n, (entry, at) in enumerate(entries):
        codec = registry if n % 2 else single  # both framings on one topic
        records.append((topics.ledger, entry.member_key, codec.encode(entry), at))
    records.append((topics.ledger, "junk", b"not avro", DAY3))
    gold = Tier(id="lvl-gold", name="Gold", order=3)
    records.append(
        (topics.balances, "open_loyalty:default:anna", registry.encode(balance("anna", gold)), DAY2)
    )
    records.append(
        (topics.balances, "open_loyalty:default:otto", single.encode(balance("otto", None)), DAY2)
    )
    asyncio.run(produce(settings, records))

    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env.update(env_vars)

    # -- the whole ledger, Parquet ------------------------------------------------------------
    out = tmp_path / "ledger.parquet"
    done = cli(env, "export", "ledger", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"7 LedgerEntry records from {topics.ledger}" in done.stderr
    assert "1 undecodable" in done.stderr
    table = pq.read_table(out)
    schema = table.schema
    assert schema.field("points_delta").type == pa.decimal128(18, 2)
    assert schema.field("balance_after").type == pa.decimal128(18, 2)
    assert schema.field("reported_balance").type == pa.decimal128(18, 2)
    assert schema.field("occurred_at").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("kafka_timestamp").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("kind").type == pa.string()
    assert schema.field("provider").type == pa.string()
    assert schema.field("account_id").type == pa.string()
    rows = sorted(table.to_pylist(), key=lambda r: r["event_id"])
    assert [r["account_id"] for r in rows] == [ACCOUNT.get(p, "default") for p, *_ in MOVES]
    assert [(r["provider"], r["kind"], r["points_delta"]) for r in rows] == [
        (p.value, k.value, d) for p, _, k, d, _ in MOVES
    ]
    assert rows[0]["occurred_at"] == DAY1 - timedelta(minutes=5)
    assert rows[0]["kafka_timestamp"] == DAY1
    assert rows[1]["balance_after"] == D("70.00")

    # -- the README's DuckDB query: earned and redeemed per day and provider ------------------
    daily = ledger_daily(out).fetchall()
    got = {
        (str(day), provider, account): (earned, redeemed)
        for day, provider, account, earned, redeemed, _ in daily
    }
    assert got == {
        ("2025-03-01", "OPEN_LOYALTY", "default"): (D("100.00"), None),
        ("2025-03-01", "VOUCHERIFY", "camp_1"): (D("40.00"), None),
        ("2025-03-02", "OPEN_LOYALTY", "default"): (D("12.50"), D("30.00")),
        ("2025-03-03", "VOUCHERIFY", "camp_1"): (None, D("15.00")),
        ("2025-03-03", "WIX", "default"): (D("0.25"), None),
    }
    typed = duckdb.sql(f"SELECT typeof(points_delta) FROM read_parquet('{out}') LIMIT 1")  # noqa: S608
    assert typed.fetchall() == [("DECIMAL(18,2)",)]

    # -- a time range on Kafka timestamps, CSV ------------------------------------------------
    out_csv = tmp_path / "day2.csv"
    done = cli(
        env,
        "export",
        topics.ledger,
        "--out",
        str(out_csv),
        "--since",
        "2025-03-02T00:00:00Z",
        "--until",
        "2025-03-03",
    )
    assert done.returncode == 0, done.stderr
    with out_csv.open() as f:
        day2 = list(csv.DictReader(f))
    assert sorted((r["customer_id"], r["points_delta"]) for r in day2) == [
        ("anna", "-30.00"),
        ("otto", "12.50"),
    ]
    assert day2[0]["kafka_timestamp"].startswith("2025-03-02 09:00:00")

    # -- nested records flattened -------------------------------------------------------------
    out_bal = tmp_path / "balances.parquet"
    done = cli(env, "export", "balances", "--out", str(out_bal), "--no-progress")
    assert done.returncode == 0, done.stderr
    bal = pq.read_table(out_bal)
    assert bal.schema.field("tier_order").type == pa.int32()
    assert bal.schema.field("updated_at").type == pa.timestamp("ms", tz="UTC")
    by_customer = {r["customer_id"]: r for r in bal.to_pylist()}
    assert (
        by_customer["anna"]["tier_id"],
        by_customer["anna"]["tier_name"],
        by_customer["anna"]["tier_order"],
    ) == ("lvl-gold", "Gold", 3)
    assert by_customer["otto"]["tier_name"] is None
    assert by_customer["otto"]["lifetime_earned"] == D("100.00")

    # -- the raw topic is not a table; a bad file name is refused ---------------------------
    done = cli(env, "export", "raw", "--out", str(tmp_path / "raw.parquet"))
    assert done.returncode == 1 and "not an Avro output topic" in done.stderr
    done = cli(env, "export", "ledger", "--out", str(tmp_path / "ledger.xlsx"))
    assert done.returncode == 1 and ".parquet or .csv" in done.stderr

    # -- the chart ----------------------------------------------------------------------------
    png = tmp_path / "ledger.png"
    done = subprocess.run(
        [sys.executable, str(ROOT / "analytics" / "ledger_chart.py"), str(out), "--out", str(png)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2025-03-02  OPEN_LOYALTY" in done.stdout
