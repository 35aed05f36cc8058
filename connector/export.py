"""`export`: an output topic → a typed Parquet or CSV table, for analytics (DuckDB, pandas...).

The topic is read from the beginning (or the first record at `--since`) to the end it had when
the export started (records at or after `--until` are left out), on Kafka record timestamps.
Values in either framing (single-object or Schema Registry) are decoded and resolved to our
reader schema, whose Avro types give the table's columns:

* decimal(18, 2) points → `decimal128(18, 2)`; `timestamp-millis` → `timestamp[ms, UTC]`;
* enums → strings; maps → JSON text; nested records flattened with the field as prefix
  (`tier` → `tier_id`, `tier_name`, `tier_order`);
* plus `kafka_partition`, `kafka_offset`, `kafka_timestamp` and `kafka_key`.

Needs the `analytics` extra (pyarrow; duckdb for `ledger_daily`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from connector.errors import BrokerError, ConnectorError, SchemaError
from connector.registry import codec_for
from connector.settings import Settings
from connector.streams.faust_compat import partitions_of

FORMATS = ("parquet", "csv")
IDLE_LIMIT = 15  # empty one-second fetches in a row before giving up on reaching the end

# Points earned and redeemed per day and provider, from an exported ledger (Parquet or CSV).
# POINTS_PENDING / POINTS_CANCELED move pending points, not the balance: they are left out.
LEDGER_DAILY_SQL = """\
SELECT CAST(timezone('UTC', occurred_at) AS DATE) AS day,  -- UTC days
       provider,
       account_id,  -- points of two accounts are two currencies: never summed together
       SUM(points_delta) FILTER (WHERE kind = 'POINTS_EARNED')    AS earned,
       -SUM(points_delta) FILTER (WHERE kind = 'POINTS_REDEEMED') AS redeemed,
       COUNT(*) AS entries
FROM read_parquet('{path}')
GROUP BY ALL
ORDER BY day, provider, account_id"""


class ExportError(ConnectorError):
    """The export could not be done (bad arguments, missing extra, unreadable topic)."""


def _pa() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ExportError(
            "export needs pyarrow: pip install 'loyalty-connector[analytics]'"
        ) from None
    return pyarrow


# -- Avro schema → Arrow columns -----------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    path: tuple[str, ...]  # field names from the record root
    type: Any  # pyarrow.DataType
    convert: Callable[[Any], Any] | None = None  # value → what pyarrow takes


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def columns_for(schema: dict[str, Any]) -> list[Column]:
    """The flattened, typed columns of a (parsed, self-contained) Avro record schema."""
    pa = _pa()
    named: dict[str, Any] = {}

    def register(t: Any, namespace: str) -> None:
        if isinstance(t, dict) and t.get("type") in ("record", "enum", "fixed"):
            name = str(t["name"])
            ns = t.get("namespace", namespace)
            full = name if "." in name or not ns else f"{ns}.{name}"
            named[full] = t
            named.setdefault(name.rpartition(".")[2], t)

    def resolve(t: Any) -> Any:
        if isinstance(t, str) and t in named:
            return named[t]
        return t

    def leaf(t: Any) -> tuple[Any, Callable[[Any], Any] | None]:
        t = resolve(t)
        if isinstance(t, str):
            simple = {
                "string": pa.string(),
                "long": pa.int64(),
                "int": pa.int32(),
                "boolean": pa.bool_(),
                "double": pa.float64(),
                "float": pa.float32(),
                "bytes": pa.binary(),
                "null": pa.null(),
            }
            if t in simple:
                return simple[t], None
            raise SchemaError(f"cannot export Avro type {t!r}")
        kind, logical = t.get("type"), t.get("logicalType")
        if logical == "decimal":
            return pa.decimal128(int(t["precision"]), int(t.get("scale", 0))), None
        if logical == "timestamp-millis":
            return pa.timestamp("ms", tz="UTC"), None
        if logical == "timestamp-micros":
            return pa.timestamp("us", tz="UTC"), None
        if kind == "enum":
            return pa.string(), str
        if kind in ("map", "array"):
            return pa.string(), _json_text
        if kind == "fixed":
            return pa.binary(), None
        if isinstance(kind, str | dict):
            return leaf(kind)
        raise SchemaError(f"cannot export Avro type {t!r}")

    def walk(record: dict[str, Any], prefix: tuple[str, ...], namespace: str) -> list[Column]:
        register(record, namespace)
        namespace = record.get("namespace", namespace)
        out: list[Column] = []
        for f in record["fields"]:
            t = f["type"]
            branches = t if isinstance(t, list) else [t]
            for b in branches:
                register(b, namespace)
            non_null = [resolve(b) for b in branches if b != "null"]
            path = (*prefix, f["name"])
            if len(non_null) == 1 and isinstance(non_null[0], dict):
                inner = non_null[0]
                if inner.get("type") == "record":
                    out += walk(inner, path, namespace)
                    continue
            if len(non_null) != 1:
                raise SchemaError(f"cannot export the union at {'.'.join(path)}")
            arrow_type, convert = leaf(non_null[0])
            out.append(Column("_".join(path), path, arrow_type, convert))
        return out

    return walk(schema, (), str(schema.get("namespace", "")))


def _get(datum: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = datum
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def to_table(schema: dict[str, Any], rows: Iterable[tuple[dict[str, Any], dict[str, Any]]]) -> Any:
    """An Arrow table of (kafka metadata, decoded record) rows, typed by the Avro schema."""
    pa = _pa()
    cols = columns_for(schema)
    meta_cols = [
        Column("kafka_partition", ("kafka_partition",), pa.int32()),
        Column("kafka_offset", ("kafka_offset",), pa.int64()),
        Column("kafka_timestamp", ("kafka_timestamp",), pa.timestamp("ms", tz="UTC")),
        Column("kafka_key", ("kafka_key",), pa.string()),
    ]
    data: dict[str, list[Any]] = {c.name: [] for c in (*cols, *meta_cols)}
    for meta, datum in rows:
        for c in meta_cols:
            data[c.name].append(meta[c.name])
        for c in cols:
            v = _get(datum, c.path)
            data[c.name].append(c.convert(v) if v is not None and c.convert else v)
    arrays = [pa.array(data[c.name], type=c.type) for c in (*cols, *meta_cols)]
    return pa.Table.from_arrays(arrays, names=[c.name for c in (*cols, *meta_cols)])


def write_table(table: Any, out: Path, fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, out)
    else:
        raise ExportError(f"unknown format {fmt!r}: expected {' or '.join(FORMATS)}")


def format_for(out: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = out.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    raise ExportError(f"{out}: name it .parquet or .csv, or pass --format")


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 time or date; naive means UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ExportError(f"{what}={text!r}: expected an ISO time (2025-06-01T12:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- reading -------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    topic: str
    record_name: str
    rows: int
    skipped: int  # tombstones and records outside the time range
    undecodable: int
    path: Path
    format: str


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


async def read_records(
    settings: Settings,
    topic: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: bool | None = None,
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], int, int]:
    """(rows, skipped, undecodable): the topic from `since` (or its beginning) to its end now."""
    from tqdm import tqdm

    codec = codec_for(settings)
    expected = settings.topics.value_schema(topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    try:
        await asyncio.wait_for(consumer.start(), 15)
    except (TimeoutError, OSError) as exc:
        raise BrokerError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
    skipped = undecodable = 0
    try:
        tps = await partitions_of(consumer, topic)
        if not tps:
            raise BrokerError(f"topic {topic!r} does not exist")
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        start = await consumer.beginning_offsets(tps)
        since_ms, until_ms = _ms(since), _ms(until)
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                start[tp] = hit.offset if hit is not None else end[tp]
        for tp in tps:
            consumer.seek(tp, start[tp])
        total = sum(max(0, end[tp] - start[tp]) for tp in tps)
        bar = tqdm(
            total=total,
            desc=f"export {topic}",
            unit="rec",
            file=sys.stderr,
            disable=(not sys.stderr.isatty()) if progress is None else not progress,
        )
        try:
            remaining = {tp for tp in tps if start[tp] < end[tp]}
            idle = 0
            while remaining and idle < IDLE_LIMIT:
                batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
                idle = 0 if batch else idle + 1
                for tp, messages in batch.items():
                    for m in messages:
                        if m.offset >= end[tp]:
                            continue
                        bar.update(1)
                        if m.value is None or (until_ms is not None and m.timestamp >= until_ms):
                            skipped += 1
                            continue
                        if since_ms is not None and m.timestamp < since_ms:
                            skipped += 1
                            continue
                        try:
                            name, datum = codec.decode_dict(m.value)
                        except SchemaError:
                            undecodable += 1
                            continue
                        if expected is not None and name != expected:
                            undecodable += 1
                            continue
                        meta = {
                            "kafka_partition": tp.partition,
                            "kafka_offset": m.offset,
                            "kafka_timestamp": datetime.fromtimestamp(m.timestamp / 1000, UTC),
                            "kafka_key": (m.key or b"").decode("utf-8", "replace"),
                        }
                        rows.append((meta, datum))
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
        finally:
            bar.close()
    finally:
        await consumer.stop()
    return rows, skipped, undecodable


def export_topic(
    settings: Settings,
    topic: str,
    out: Path,
    *,
    fmt: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: bool | None = None,
) -> ExportResult:
    """Export one output topic (full name) to `out`; the table's schema is the topic's record."""
    fmt = format_for(out, fmt)
    name = settings.topics.value_schema(topic)
    if name is None:
        avro_topics = [t for t in settings.topics.all().values() if settings.topics.value_schema(t)]
        raise ExportError(
            f"{topic} is not an Avro output topic of this connector "
            f"(exportable: {', '.join(avro_topics)})"
        )
    _pa()
    rows, skipped, undecodable = asyncio.run(
        read_records(settings, topic, since=since, until=until, progress=progress)
    )
    codec = codec_for(settings)
    table = to_table(codec.schemas[name], rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(table, out, fmt)
    return ExportResult(topic, name, len(rows), skipped, undecodable, out, fmt)


def ledger_daily(path: Path) -> Any:
    """Points earned and redeemed per day and provider of an exported ledger (DuckDB relation)."""
    try:
        import duckdb
    except ImportError:
        raise ExportError("needs duckdb: pip install 'loyalty-connector[analytics]'") from None
    source = str(path).replace("'", "''")
    sql = LEDGER_DAILY_SQL.format(path=source)
    if path.suffix.lower() == ".csv":
        sql = sql.replace("read_parquet(", "read_csv_auto(")
    return duckdb.sql(sql)
