"""The pipeline benchmark's Kafka side: producing the raw records, offsets and time spans, the
plain ceilings, the latency sender and watcher, final balances (benchmarks/pipeline.py)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from benchmarks.pipeline_records import (
    BALANCE_FIELDS,
    PARTITIONS,
    PROVIDER_ORDER,
    balance_key_of,
    bench_secrets,
    delivery,
    uid,
)


async def produce_raw(
    broker: str, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=broker, acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        for i in range(0, len(records), 2000):
            futs = [
                await producer.send(topic, key=k, value=v, headers=h)
                for k, v, h in records[i : i + 2000]
            ]
            await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def _partitions(broker: str, topics: list[str]) -> dict[str, list[int]]:
    """Partition ids of each existing topic (missing topics are left out)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t in existing]
        described = await admin.describe_topics(wanted) if wanted else []
        return {
            d["topic"]: sorted(p["partition"] for p in d["partitions"])
            for d in described
            if not d.get("error_code") and all(p.get("leader", 0) >= 0 for p in d["partitions"])
        }
    finally:
        await admin.close()


async def topic_offsets(broker: str, topics: list[str]) -> dict[str, tuple[int, int]]:
    """(sum of beginning offsets, sum of end offsets) per topic (missing topic: (0, 0))."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    known = await _partitions(broker, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await consumer.start()
    try:
        out: dict[str, tuple[int, int]] = {}
        for topic in topics:
            if topic not in known:
                out[topic] = (0, 0)
                continue
            tps = [TopicPartition(topic, p) for p in known[topic]]
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            out[topic] = (sum(begin.values()), sum(end.values()))
        return out
    finally:
        await consumer.stop()


async def time_span(broker: str, topics: list[str]) -> tuple[float, float]:
    """(earliest first-record timestamp, latest last-record timestamp) over topics, epoch s.

    The last record is looked for among a partition's last few offsets: written in Kafka
    transactions (exactly once) a partition ends with commit markers, not records.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    known = await _partitions(broker, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await consumer.start()
    first, last = float("inf"), float("-inf")
    try:
        for topic in topics:
            for p in known.get(topic, []):
                tp = TopicPartition(topic, p)
                b = (await consumer.beginning_offsets([tp]))[tp]
                e = (await consumer.end_offsets([tp]))[tp]
                if e <= b:
                    continue
                consumer.assign([tp])
                consumer.seek(tp, b)
                got = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
                for msg in got.get(tp, []):
                    first = min(first, msg.timestamp / 1000)
                consumer.seek(tp, max(b, e - 20))
                for msg in await _read_to(consumer, tp, e):
                    last = max(last, msg.timestamp / 1000)
        return first, last
    finally:
        await consumer.stop()


async def _read_to(consumer: Any, tp: Any, end: int) -> list[Any]:
    """The records from the consumer's position in `tp` up to offset `end` (markers skipped)."""
    out: list[Any] = []
    idle = 0
    while await consumer.position(tp) < end and idle < 3:
        got = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
        msgs = got.get(tp, [])
        idle = 0 if msgs else idle + 1
        out.extend(msgs)
    return out


def ensure(broker: str, prefix: str) -> None:
    from connector.kafka_admin import ensure_topics
    from connector.settings import Settings

    settings = Settings.from_env(
        {
            "CONNECTOR_BROKER_URL": broker,
            "CONNECTOR_TOPIC_PREFIX": prefix,
            "CONNECTOR_PARTITIONS": str(PARTITIONS),
        }
    )
    asyncio.run(ensure_topics(settings))
    names = list(settings.topics.all().values())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # leaders elected: no NotLeader retries on first produce
        if len(asyncio.run(_partitions(broker, names))) == len(names):
            break
        time.sleep(0.2)
    t = settings.topics
    outputs = [t.events, t.ledger, t.balances, t.tiers, t.dlq]
    asyncio.run(_log_append_time(broker, outputs, set(t.compacted())))


async def _log_append_time(broker: str, topics: list[str], compacted: set[str]) -> None:
    """The broker stamps the outputs' record times (LogAppendTime): the throughput windows are
    read from them, and engines set CreateTime differently (Quix Streams copies the input
    record's time to its outputs, aiokafka stamps the send). AlterConfigs replaces a topic's
    whole config, so the compaction ensure_topics set is given again."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        resources = []
        for name in topics:
            config = {"message.timestamp.type": "LogAppendTime"}
            if name in compacted:
                config["cleanup.policy"] = "compact"
            resources.append(ConfigResource(ConfigResourceType.TOPIC, name, config))
        await admin.alter_configs(resources)
    finally:
        await admin.close()


async def run_ceiling(broker: str, src: str, dst: str) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from connector.avro import default_codec
    from connector.streams.normalize import RawRecord, normalize

    codec = default_codec()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=0)
    parts = (await _partitions(broker, [src]))[src]
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(src, p) for p in parts]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        total = sum(end.values())
        raw = events = dead = 0
        t0: float | None = None
        cpu0 = time.process_time()
        while raw < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            if t0 is None and batch:
                t0, cpu0 = time.time(), time.process_time()
            futs = []
            for msgs in batch.values():
                for m in msgs:
                    raw += 1
                    rec = RawRecord(
                        m.key, m.value, list(m.headers or ()), m.topic, m.partition, m.offset
                    )
                    result = normalize(rec, codec)
                    dead += result.dead_letter is not None
                    for ev, value in result.events:
                        events += 1
                        futs.append(
                            await producer.send(dst, key=ev.member_key.encode(), value=value)
                        )
            await asyncio.gather(*futs)  # acked (acks=all) before the next batch, like the worker
        t1 = time.time()
        cpu = time.process_time() - cpu0
    finally:
        await consumer.stop()
        await producer.stop()
    secs = t1 - (t0 or t1)
    return {
        "raw": raw,
        "events": events,
        "dead_letters": dead,
        "seconds": round(secs, 3),
        "events_per_s": round(events / secs, 1) if secs else 0.0,
        "raw_per_s": round(raw / secs, 1) if secs else 0.0,
        "cpu_s": round(cpu, 2),
    }


def latency_deliveries(
    rate: float, duration: float, run: str, work: Path
) -> list[tuple[str, bytes, dict[str, str], str]]:
    """One signed delivery per fresh member, providers in turn: (provider, body, headers, key of
    its balance record)."""
    secrets = bench_secrets(work)
    wix_site = uid("site", run)
    out = []
    for i in range(int(rate * duration)):
        provider = PROVIDER_ORDER[i % len(PROVIDER_ORDER)]
        d = delivery(provider, run, i, 0, wix_site, secrets)
        # matched by the key its balance record has (the account key), reported by member key
        out.append((provider, d.body, d.headers, balance_key_of(provider, d.body, d.headers)))
    return out


async def send_open_loop(
    url: str, rate: float, deliveries: list[tuple[str, bytes, dict[str, str], str]]
) -> tuple[list[list[Any]], float]:
    import aiohttp

    n = len(deliveries)
    rows: list[list[Any]] = [[] for _ in range(n)]
    connector = aiohttp.TCPConnector(limit=2000, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        # A warm connection pool, so connection set-up is not in the first second's latency.
        await asyncio.gather(*(http.get(url + "/healthz") for _ in range(32)))

        async def one(i: int, scheduled: float) -> None:
            provider, body, headers, key = deliveries[i]
            sent = time.time()
            status: int | str
            try:
                async with http.post(f"{url}/webhooks/{provider}", data=body, headers=headers) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            rows[i] = [key, status, scheduled, sent, time.time()]

        tasks = []
        start = time.time() + 0.2
        for i in range(n):
            scheduled = start + i / rate
            delay = scheduled - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i, scheduled)))  # open loop: never waits
        await asyncio.gather(*tasks)
    return rows, start


async def watch_first_records(broker: str, topic: str) -> dict[str, list[float]]:
    """Until SIGTERM: when each key's first record arrived, and its Kafka timestamp."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    parts = (await _partitions(broker, [topic]))[topic]
    await consumer.start()
    seen: dict[str, list[float]] = {}
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolve the end now, before anything is sent
        print("READY", flush=True)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    key = (m.key or b"").decode()
                    if key not in seen:
                        seen[key] = [now, m.timestamp / 1000]
    finally:
        await consumer.stop()
    return seen


async def run_restore_ceiling(broker: str, topic: str, db_dir: Path) -> dict[str, Any]:
    """What Faust's table recovery does, minus Faust: read the changelog from its beginning to
    its end offsets and write each partition's records into its own RocksDB (raw mode, write
    batches), as `faust.stores.rocksdb.Store.apply_changelog_batch` does."""
    import rocksdict
    from aiokafka import AIOKafkaConsumer, TopicPartition

    parts = (await _partitions(broker, [topic]))[topic]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    t0, cpu0 = time.time(), time.process_time()
    dbs = {}
    for p in parts:
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        dbs[p] = rocksdict.Rdict(str(db_dir / f"p{p}"), options=opts)
    await consumer.start()
    records = 0
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, begin[tp])
        remaining = {tp for tp in tps if end[tp] > begin[tp]}
        while remaining:
            got = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
            for tp, msgs in got.items():
                batch = rocksdict.WriteBatch(raw_mode=True)
                for m in msgs:
                    if m.value is None:
                        batch.delete(m.key)
                    else:
                        batch.put(m.key, m.value)
                dbs[tp.partition].write(batch)
                records += len(msgs)
                if msgs and msgs[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
        for db in dbs.values():
            db.close()
    secs = time.time() - t0
    return {
        "records": records,
        "seconds": round(secs, 3),
        "records_per_s": round(records / secs, 1) if secs else 0.0,
        "cpu_s": round(time.process_time() - cpu0, 2),
    }


async def final_balances(broker: str, topic: str) -> dict[str, tuple[str, ...]]:
    """Last record per key of a balances topic, as the BALANCE_FIELDS values (tombstone: gone)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from connector.avro import default_codec
    from connector.models import MemberBalance

    codec = default_codec()
    parts = (await _partitions(broker, [topic])).get(topic, [])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    latest: dict[str, bytes | None] = {}
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        if tps:
            consumer.assign(tps)
            end = await consumer.end_offsets(tps)
            await consumer.seek_to_beginning(*tps)
            for tp in tps:  # one partition at a time: a key's records are all in one
                for m in await _read_to(consumer, tp, end[tp]):
                    latest[(m.key or b"").decode()] = m.value
    finally:
        await consumer.stop()
    out = {}
    for key, value in latest.items():
        if value is not None:
            balance = codec.decode(value, MemberBalance)
            out[key] = tuple(str(getattr(balance, f)) for f in BALANCE_FIELDS)
    return out


def compare_balances(
    ours: dict[str, tuple[str, ...]], theirs: dict[str, tuple[str, ...]]
) -> dict[str, Any]:
    """Whether a peer ended with the worker's balances, member by member (BALANCE_FIELDS)."""
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours))
    differ = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
    by_field: dict[str, int] = {}
    for k in differ:
        for f, a, b in zip(BALANCE_FIELDS, ours[k], theirs[k], strict=True):
            if a != b:
                by_field[f] = by_field.get(f, 0) + 1
    examples = [
        {
            "member": k,
            "worker": dict(zip(BALANCE_FIELDS, ours[k], strict=True)),
            "peer": dict(zip(BALANCE_FIELDS, theirs[k], strict=True)),
        }
        for k in differ[:2]
    ]
    return {
        "equal": not (missing or extra or differ) and bool(ours),
        "members_worker": len(ours),
        "members_peer": len(theirs),
        "missing_in_peer": len(missing),
        "extra_in_peer": len(extra),
        "differing": len(differ),
        "differing_by_field": by_field,
        "fields": list(BALANCE_FIELDS),
        "examples": examples + [{"missing": k} for k in missing[:2]],
    }
