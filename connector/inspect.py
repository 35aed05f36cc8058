"""`members` and `tail`: read the connector's state and topics from a terminal."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, TextIO

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from connector.errors import BrokerError, SchemaError
from connector.models import to_json_obj
from connector.registry import codec_for
from connector.settings import Settings
from connector.streams.faust_compat import partitions_of


async def fetch_member(
    url: str,
    provider: str,
    tenant: str,
    customer_id: str,
    timeout: float = 5.0,
    account: str | None = None,
    token: str | None = None,
    min_offset: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """The worker's answer to a member query: (HTTP status, JSON body)."""
    target = f"{url.rstrip('/')}/members/{provider}/{tenant}/{customer_id}"
    params = {"account": account} if account else {}
    if min_offset is not None:
        params["min_offset"] = str(min_offset)
        params["wait_ms"] = str(int(max(0.0, timeout - 2) * 1000))
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.get(target, params=params, headers=headers) as resp:
            try:
                body = await resp.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                body = {"error": (await resp.text())[:500]}
            return resp.status, body


def run_members(
    settings: Settings,
    provider: str,
    tenant: str,
    customer_id: str,
    url: str | None,
    account: str | None = None,
    min_offset: int | None = None,
) -> int:
    """`loyalty-connector members`: with CONNECTOR_API_TOKENS_FILE set, it sends the file's
    first token."""
    base = url or f"http://127.0.0.1:{settings.web_port}"
    token = settings.api_tokens[0] if settings.api_tokens else None
    # with --min-offset: wait up to 10 s (or the worker's CONNECTOR_QUERY_MAX_WAIT_MS)
    timeout = 5.0 if min_offset is None else min(10_000, settings.query_max_wait_ms) / 1000 + 2
    try:
        status, body = asyncio.run(
            fetch_member(
                base,
                provider,
                tenant,
                customer_id,
                timeout=timeout,
                account=account,
                token=token,
                min_offset=min_offset,
            )
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"error: cannot reach the worker at {base}: {exc}", file=sys.stderr)
        return 1
    if status == 410:
        print(f"error: {body.get('error')} at {body.get('erased_at')}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"error: {body.get('error', status)}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return 0


def decode_value(topic: str, value: bytes | None, settings: Settings) -> dict[str, Any]:
    """A record of any connector topic as a JSON-friendly dict (either Avro framing)."""
    if value is None:
        return {"value": None}
    if topic == settings.topics.raw:
        return {"body": value.decode("utf-8", errors="replace")}
    try:
        return to_json_obj(codec_for(settings).decode(value))
    except SchemaError as exc:
        return {"undecodable": str(exc)}


async def read_to_end(
    bootstrap: str,
    topic: str,
    *,
    isolation_level: str = "read_committed",
    timeout: float = 120.0,
    batch: int = 2000,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic`, from the beginning to the end offsets seen when it starts.

    An unknown topic gives []; a topic that cannot be read to its end within `timeout`
    seconds raises BrokerError with the positions reached. read_committed (the default) leaves
    out aborted transactions' records, as a downstream consumer of exactly_once output should.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        tps = await partitions_of(consumer, topic)
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while True:
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= end[tp] for tp in tps):
                return out
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"could not read {topic} to its end {end} within {timeout:.0f}s: at {positions}"
                )
            fetched = await consumer.getmany(timeout_ms=300, max_records=batch)
            for messages in fetched.values():
                out.extend(messages)
    finally:
        await consumer.stop()


async def tail(
    settings: Settings,
    topic: str,
    *,
    follow: bool,
    limit: int | None,
    out: TextIO = sys.stdout,
    idle_timeout: float = 2.0,
) -> int:
    """Print a topic's records from the beginning as JSON lines; with `follow`, keep going."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        isolation_level="read_committed",  # never show records of aborted transactions
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await asyncio.wait_for(consumer.start(), 15)
    except (TimeoutError, OSError) as exc:
        raise BrokerError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    count = 0
    try:
        tps = await partitions_of(consumer, topic)
        if not tps:
            known = ", ".join(sorted(settings.topics.all().values()))
            raise BrokerError(f"topic {topic!r} does not exist (connector topics: {known})")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_timeout * 1000), max_records=500)
            for tp, messages in batch.items():
                for m in messages:
                    record = {
                        "partition": tp.partition,
                        "offset": m.offset,
                        "key": (m.key or b"").decode("utf-8", "replace"),
                        **decode_value(topic, m.value, settings),
                    }
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    count += 1
                    if limit is not None and count >= limit:
                        return count
            out.flush()
            if not follow:
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= end[tp] for tp in tps):
                    return count
    finally:
        await consumer.stop()


async def latest_balances(settings: Settings) -> dict[str, dict[str, Any]]:
    """The newest MemberBalance per account (key: the account key), read from the compacted
    balances topic."""
    import io

    buf = io.StringIO()
    await tail(
        settings, settings.topics.balances, follow=False, limit=None, out=buf, idle_timeout=0.5
    )
    latest: dict[str, dict[str, Any]] = {}
    for line in buf.getvalue().splitlines():
        record = json.loads(line)
        latest[record["key"]] = record
    return latest


def members_table(balances: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of members, for people at a terminal."""
    cols = [
        ("member", "member_key"),
        ("balance", "balance"),
        ("computed", "computed_balance"),
        ("pending", "pending_points"),
        ("earned", "lifetime_earned"),
        ("redeemed", "lifetime_redeemed"),
        ("expired", "lifetime_expired"),
        ("adjusted", "lifetime_adjusted"),
        ("drift", "drift"),
        ("tier", "tier"),
        ("account", "account_id"),
    ]
    rows = []
    for key in sorted(balances):
        b = balances[key]
        tier = b.get("tier") or {}
        row = []
        for _, field in cols:
            value = b.get(field)
            if field == "tier":
                value = tier.get("name") or tier.get("id") or "-"
            elif field == "account_id":
                value = value or "default"  # a record written before accounts existed
            row.append("-" if value is None else str(value))
        rows.append(row)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, (h, _) in enumerate(cols)
    ]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
