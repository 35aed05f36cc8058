"""Pipeline benchmark: the Faust worker from raw topic to balances, next to a plain-Python ceiling.

    .venv/bin/python benchmarks/pipeline.py [--quick] [--broker host:port] [--wait-quiet 900]
                                            [--rates 1000,500] [--worker-app PATH]

Four measurements, in one run, on one Kafka:

* `throughput`  N raw records (all four providers, many members, bodies made from the fixture
                shapes with distinct customers, amounts and revisions; Wix bodies are RS256 JWTs
                from `provider.sign`) are written to the raw topic of a fresh prefix first; then
                ONE `python -m connector worker` starts and we time from its first balance
                record to the moment every raw record is normalized and every event applied
                (the worker's own /metrics counters). Events/s and raw webhooks/s.
* `ceiling`     the same raw records through a plain aiokafka loop in one process: consume →
                `normalize` (provider decode + Avro encode, the worker's own function) →
                produce (acks=all) to a scratch topic. Only the first of the worker's two hops,
                with no framework and no table: what one Python process can do at best.
* `latency`     a real `python -m connector bridge` (signatures checked) in front of the same,
                still running worker; a separate open-loop sender posts signed deliveries at a
                fixed rate (one delivery per fresh member, so each balance record maps to exactly
                one webhook) and notes when each 200 arrived; a separate consumer on
                `<prefix>.balances` notes when each member's balance arrived. Latency = balance
                seen - 200 received.
* `peers`       the same raw records through other engines doing the worker's job with our own
                functions (`normalize`, the ledger step, the members-table format), each on
                its own topics, same timing rule (first events record → last output) and CPU
                per event (/proc): `quix` (Quix Streams, RocksDB state, at-least-once),
                `quix_eos` (the same, exactly-once) and `plain` (aiokafka + rocksdict, no
                framework); benchmarks/peers/. Each peer's final balances (last record per key
                of its balances topic) are compared with the worker's, so a peer doing less
                work shows. With --rounds R (3 in a full run) the worker and each peer run R
                times, interleaved, and the medians are reported.
* `recovery`    the worker is stopped (SIGTERM) and a fresh one started with the same app id and
                an EMPTY data dir: it must rebuild the members table from
                `<app_id>-members-changelog`. Changelog records / (start → /readyz 200), next to
                the start → /readyz time of a worker with an empty changelog (the fixed cost)
                and a restore ceiling: plain aiokafka reading the same changelog into
                per-partition RocksDB write batches (what Faust's recovery does, minus Faust).

Apache Kafka 4.1.1 (KRaft, single node, Kafka's default flush policy) runs on the same machine
unless --broker is given. Worker, bridge, load processes and broker share the machine's cores.

Writes benchmarks/results/pipeline.json and benchmarks/results/pipeline.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from connector.embedded import free_port  # noqa: E402
from connector.providers import PROVIDERS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PROVIDER_ORDER = ("gameball", "open_loyalty", "voucherify", "wix")
PARTITIONS = 8
TARGET_SHARE_OF_CEILING = 0.50
TARGET_P99_MS = 250.0
TARGET_RECOVERY_PER_S = 50_000
# The worker's peers (benchmarks/peers/): name -> (script, extra arguments, topic prefix tag)
PEERS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "quix": ("quix_worker.py", (), "q"),
    "quix_eos": ("quix_worker.py", ("--exactly-once",), "qe"),
    "plain": ("plain_worker.py", (), "p"),
}
PEER_LABELS = {
    "worker": "our Faust worker",
    "quix": "Quix Streams\n(at-least-once)",
    "quix_eos": "Quix Streams\n(exactly-once)",
    "plain": "plain aiokafka\n+ rocksdict",
}
# MemberBalance fields that must end equal whatever the engine. Left out: times, the last event's
# id and `events_applied`: a balances record is written when the balance changes, so the last
# one's count and id depend on the order a member's events arrived in (its raw records sit on
# several partitions), not on the work done; the applied totals are compared separately.
BALANCE_FIELDS = (
    "balance",
    "computed_balance",
    "reported_balance",
    "pending_points",
    "lifetime_earned",
    "lifetime_redeemed",
    "lifetime_expired",
    "lifetime_adjusted",
    "drift",
    "tier",
)
BASE_TIME = datetime(2025, 3, 1, tzinfo=UTC)
NS = uuid.UUID("6f1c1f3e-3b7e-4f0e-9a55-0c0ffee0b3c4")

# ---------------------------------------------------------------------------------------------
# webhook bodies (shapes of tests/fixtures/<provider>, via the integration harness's templates)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uid(*parts: object) -> str:
    return str(uuid.uuid5(NS, ":".join(str(p) for p in parts)))


def payload(provider: str, run: str, member: int, seq: int, wix_site: str) -> dict[str, Any]:
    """The seq-th webhook (0-based) of one member: valid, distinct, newer than the previous.

    Amounts depend on member and seq; snapshots (Gameball, Wix) grow and carry a newer time or
    revision, so each derives a movement; deltas (Open Loyalty, Voucherify) carry fresh
    movement ids, so none is deduplicated away.
    """
    from tests.integration import harness as h

    at = _iso(BASE_TIME + timedelta(minutes=seq, seconds=member % 60))
    step = 5 + (member * 7 + seq * 3) % 50
    total = sum(5 + (member * 7 + k * 3) % 50 for k in range(seq + 1))
    if provider == "gameball":
        return h.gb_profile(
            f"gb-{run}-{member}",
            at,
            activated=total,
            pending=seq % 3,
            tier="gold" if seq >= 5 else "basic",
            tier_order=2 if seq >= 5 else 1,
        )
    if provider == "open_loyalty":
        customer = _uid("ol", run, member)
        transfer = _uid("olt", run, member, seq)
        if seq % 2 == 0:
            return h.ol_points_transfer(customer, transfer, step, at)
        return h.ol_points_changed(customer, transfer, step, "add", total, at)
    if provider == "voucherify":
        customer = f"cust_{run}{member}"
        event_id, tx = f"evvou_{run}{member}x{seq}", f"vtx_{run}{member}x{seq}"
        make = h.vf_transaction_created if seq % 2 == 0 else h.vf_points_added
        return make(customer, event_id, tx, "POINTS_ADDITION", step, total, at)
    if provider == "wix":
        kind = "account_points_updated" if seq % 2 == 0 else "account_updated"
        return h.wix_account(
            f"wix.loyalty.v1.{kind}",
            wix_site,
            _uid("wix", run, member),
            _uid("wixe", run, member, seq),
            at,
            revision=seq + 1,
            balance=total,
            earned=total,
        )
    raise ValueError(provider)


def signed(
    provider: str, body: dict[str, Any], secrets: dict[str, dict[str, str]]
) -> tuple[bytes, dict[str, str]]:
    """Exact bytes and HTTP headers as the provider would send them (Wix: an RS256 JWT)."""
    return PROVIDERS[provider].sign(json.dumps(body).encode(), secrets[provider])


def kafka_record(
    provider: str, body: bytes, http_headers: dict[str, str]
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(key, headers) of the raw record the bridge would write for this delivery."""
    request_id = uuid.uuid4().hex
    p = PROVIDERS[provider]
    lower = {k.lower(): v for k, v in http_headers.items()}
    key = p.delivery_id(body, lower) or request_id
    from connector import raw

    headers = raw.raw_headers(
        provider=provider,
        tenant=None,
        received_ms=int(time.time() * 1000),
        request_id=request_id,
        content_type=lower.get("content-type", ""),
        verified=True,
        kept=[(n, lower[n.lower()]) for n in p.kept_headers if n.lower() in lower],
    )
    return key.encode(), headers


def bench_secrets(work: Path) -> dict[str, dict[str, str]]:
    """The test secrets (one Wix key pair per run), shared with children through a file."""
    path = work / "secrets.json"
    if path.exists():
        data: dict[str, dict[str, str]] = json.loads(path.read_text())
        return data
    from tests.support import test_secrets

    secrets = test_secrets()
    path.write_text(json.dumps(secrets))
    return secrets


def bridge_secret_env() -> dict[str, str]:
    """The bridge's CONNECTOR_* secrets: the test suite's, the ones `bench_secrets` signs with."""
    from tests.support import test_env

    return test_env()


def balance_key_of(provider: str, body: bytes, headers: dict[str, str]) -> str:
    """The balances-topic key of a delivery's first event: its account key (a Voucherify
    member's balance is kept per loyalty card: `voucherify:default/camp_loyalty:cust_…`)."""
    from connector.providers import DecodeContext

    lower = {k.lower(): v for k, v in headers.items()}
    return PROVIDERS[provider].decode(body, lower, DecodeContext())[0].account_key


def member_key_of(provider: str, body: bytes, headers: dict[str, str]) -> list[str]:
    """Member keys of the events a delivery decodes to (checks the body is valid, too)."""
    from connector.providers import DecodeContext

    lower = {k.lower(): v for k, v in headers.items()}
    events = PROVIDERS[provider].decode(body, lower, DecodeContext())
    return [e.member_key for e in events]


# ---------------------------------------------------------------------------------------------
# small process helpers


def _cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def base_env(broker: str, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env.update(
        CONNECTOR_BROKER_URL=broker,
        CONNECTOR_TOPIC_PREFIX=prefix,
        CONNECTOR_PARTITIONS=str(PARTITIONS),
        CONNECTOR_LOG_FORMAT="json",
        CONNECTOR_LOG_LEVEL="WARNING",
    )
    return env


# A/B runs of proposed worker changes: --worker-app PATH runs the worker with `create_app`
# taken from PATH (a modified copy of connector/streams/app.py) instead of the package's.
WORKER_APP: str | None = None


def run_worker_with_app(path: str) -> int:
    import importlib.util

    spec = importlib.util.spec_from_file_location("connector.streams.app_variant", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    import connector.streams.worker as worker_module
    from connector.cli import main as cli_main

    worker_module.create_app = module.create_app  # type: ignore[attr-defined]
    return int(cli_main(["worker"]) or 0)


class Child:
    """`python -m connector <command>` with its own log file; stopped with SIGTERM."""

    def __init__(
        self, command: str, env: dict[str, str], log: Path, port: int, app: str | None = None
    ) -> None:
        """`app`: a worker's create_app from this file instead (default: --worker-app, if any)."""
        self.log, self.port = log, port
        self.url = f"http://127.0.0.1:{port}"
        self.started = time.time()
        cmd = [sys.executable, "-m", "connector", command]
        app = app or (WORKER_APP if command == "worker" else None)
        if app:
            cmd = [sys.executable, __file__, "--child-worker", app]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def wait_ready(self, timeout: float = 180, interval: float = 0.05) -> float:
        """Poll /readyz until 200; returns the time (epoch s) it first answered 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.log.name}: process exited:\n{self.tail()}")
            status, _ = _http_get(self.url + "/readyz", timeout=1)
            if status == 200:
                return time.time()
            time.sleep(interval)
        raise SystemExit(f"{self.log.name}: not ready within {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_worker(
    broker: str,
    prefix: str,
    app_id: str,
    work: Path,
    name: str,
    log_level: str = "WARNING",
    app: str | None = None,
) -> Child:
    port = free_port()
    data_dir = work / f"{name}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = base_env(broker, prefix)
    env.update(
        CONNECTOR_APP_ID=app_id,
        CONNECTOR_DATA_DIR=str(data_dir),
        CONNECTOR_WEB_PORT=str(port),
        CONNECTOR_WEB_HOST="127.0.0.1",
        CONNECTOR_LOG_LEVEL=log_level,
    )
    return Child("worker", env, work / f"{name}.log", port, app)


def worker_metrics(url: str) -> dict[str, float] | None:
    """raw, events, applied (event-age histogram count), dead letters by stage."""
    status, body = _http_get(url + "/metrics", timeout=2)
    if status != 200:
        return None
    out = {
        "raw": 0.0,
        "events": 0.0,
        "applied": 0.0,
        "duplicates": 0.0,
        "dl": 0.0,
        "dl_ledger": 0.0,
    }
    for line in body.decode().splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, value = line.rpartition(" ")
        v = float(value)
        if name == "worker_raw_records_total":
            out["raw"] = v
        elif name.startswith("worker_events_total{"):
            out["events"] += v
        elif name == "worker_event_age_seconds_count":
            out["applied"] = v
        elif name == "worker_duplicate_events_total":
            out["duplicates"] = v
        elif name.startswith("worker_dead_letters_total{"):
            out["dl"] += v
            if 'stage="ledger"' in name:
                out["dl_ledger"] += v
    return out


# ---------------------------------------------------------------------------------------------
# Kafka helpers (run in the orchestrator)


async def _produce_raw(
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


async def _offsets(broker: str, topics: list[str]) -> dict[str, tuple[int, int]]:
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


async def _time_span(broker: str, topics: list[str]) -> tuple[float, float]:
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


# ---------------------------------------------------------------------------------------------
# child: the Python ceiling (consume → normalize → produce, one process, no framework)


async def _ceiling(broker: str, src: str, dst: str) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------
# child: the open-loop sender (latency phase)


def latency_deliveries(
    rate: float, duration: float, run: str, work: Path
) -> list[tuple[str, bytes, dict[str, str], str]]:
    """One signed delivery per fresh member, providers in turn: (provider, body, headers, key of
    its balance record)."""
    secrets = bench_secrets(work)
    wix_site = _uid("site", run)
    out = []
    for i in range(int(rate * duration)):
        provider = PROVIDER_ORDER[i % len(PROVIDER_ORDER)]
        body, headers = signed(provider, payload(provider, run, i, 0, wix_site), secrets)
        # matched by the key its balance record has (the account key), reported by member key
        out.append((provider, body, headers, balance_key_of(provider, body, headers)))
    return out


async def _send(
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


# ---------------------------------------------------------------------------------------------
# child: the balances watcher (latency phase)


async def _watch(broker: str, topic: str) -> dict[str, list[float]]:
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


# ---------------------------------------------------------------------------------------------
# child: the restore ceiling (changelog → RocksDB with plain aiokafka + rocksdict write batches)


async def _restore_ceiling(broker: str, topic: str, db_dir: Path) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------
# phases (orchestrator)


def make_raw_records(
    n: int, members: int, run: str, secrets: dict[str, dict[str, str]]
) -> tuple[list[tuple[bytes, bytes, list[tuple[str, bytes]]]], dict[str, int]]:
    wix_site = _uid("site", run)
    records = []
    per_provider = dict.fromkeys(PROVIDER_ORDER, 0)
    checked = dict.fromkeys(PROVIDER_ORDER, 0)
    for r in range(n):
        member, seq = r % members, r // members
        provider = PROVIDER_ORDER[member % len(PROVIDER_ORDER)]
        body, headers = signed(provider, payload(provider, run, member, seq, wix_site), secrets)
        if checked[provider] < 40:  # a sample of each provider must decode to events
            checked[provider] += 1
            if not member_key_of(provider, body, headers):
                raise SystemExit(f"generated {provider} body decodes to no event: {body[:300]!r}")
        key, kafka_headers = kafka_record(provider, body, headers)
        records.append((key, body, kafka_headers))
        per_provider[provider] += 1
    return records, per_provider


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def _final_balances(broker: str, topic: str) -> dict[str, tuple[str, ...]]:
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


def measure_peer(
    peer: str,
    broker: str,
    raw_topic: str,
    peer_prefix: str,
    n: int,
    work: Path,
    kafka_pid: int | None,
    timeout: float,
) -> dict[str, Any]:
    """One run of a worker peer over `raw_topic`, onto the topics of `peer_prefix`."""
    script, extra, _ = PEERS[peer]
    ensure(broker, peer_prefix)
    state_dir = work / f"{peer_prefix}-state"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "peers" / script),
        broker,
        raw_topic,
        peer_prefix,
        str(n),
        str(state_dir),
        *extra,
    ]
    if kafka_pid:
        cmd += ["--kafka-pid", str(kafka_pid)]
    log = work / f"{peer_prefix}.log"
    started = time.time()
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    ended = time.time()
    lines = out.decode(errors="replace").strip().splitlines()
    if not lines:
        raise SystemExit(f"peer {peer} printed nothing:\n{log.read_text(errors='replace')[-3000:]}")
    row: dict[str, Any] = json.loads(lines[-1])
    outputs = [f"{peer_prefix}.{t}" for t in ("balances", "ledger", "tiers")]
    first, last_out = asyncio.run(_time_span(broker, outputs))
    first_event, _ = asyncio.run(_time_span(broker, [f"{peer_prefix}.events"]))
    offsets = asyncio.run(
        _offsets(broker, [*outputs, f"{peer_prefix}.events", f"{peer_prefix}.webhooks.dlq"])
    )
    secs = max(1e-9, last_out - first)
    whole = max(1e-9, last_out - first_event)
    row.update(
        peer=peer,
        exit_code=proc.returncode,
        process_wall_s=round(ended - started, 2),
        first_event_at=round(first_event, 3),
        first_balance_at=round(first, 3),
        last_output_at=round(last_out, 3),
        seconds=round(secs, 3),
        events_per_s=round(row["applied"] / secs, 1),
        whole_seconds=round(whole, 3),
        whole_events_per_s=round(row["applied"] / whole, 1),
        whole_raw_per_s=round(row["raw"] / whole, 1),
        startup_s=round(first_event - started, 2),
        outputs={t.removeprefix(peer_prefix + "."): e - b for t, (b, e) in offsets.items()},
        log_tail=log.read_text(errors="replace")[-600:] if proc.returncode else "",
    )
    print(
        f"peer {peer}: {row['applied']} events ({row['raw']} raw), first event → last output "
        f"{whole:.2f} s → {row['whole_events_per_s']:.0f} events/s, "
        f"{row['cpu_us_per_event']:.0f} CPU µs/event ({row['cpu_cores']} cores)"
        + ("" if row["complete"] else " INCOMPLETE"),
        flush=True,
    )
    return row


def _median_run(runs: list[dict[str, Any]], key: str = "whole_events_per_s") -> dict[str, Any]:
    """The median run by `key`, with every run's `key` and CPU per event beside it."""
    chosen = dict(sorted(runs, key=lambda r: r.get(key) or 0.0)[len(runs) // 2])
    chosen["runs_whole_events_per_s"] = [r.get(key) for r in runs]
    chosen["runs_cpu_us_per_event"] = [
        r.get("cpu_us_per_event", r.get("worker_cpu_us_per_event")) for r in runs
    ]
    return chosen


def measure_throughput(
    broker: str,
    prefix: str,
    app_id: str,
    n: int,
    work: Path,
    kafka_pid: int | None,
    timeout: float,
    name: str = "worker-1",
    app: str | None = None,
) -> tuple[Child, dict[str, Any]]:
    topics = f"{prefix}.balances", f"{prefix}.ledger", f"{prefix}.tiers"
    worker = start_worker(broker, prefix, app_id, work, name, app=app)
    samples: list[list[float]] = []
    deadline = time.monotonic() + timeout
    done_at: float | None = None
    last: dict[str, float] = {}
    cpu_start: tuple[float, float, float] | None = None
    cpu_end: tuple[float, float, float] | None = None
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise SystemExit(f"worker exited:\n{worker.tail()}")
        m = worker_metrics(worker.url)
        now = time.time()
        if m is not None:
            last = m
            samples.append([now, m["raw"], m["events"], m["applied"]])
            if cpu_start is None and m["raw"] > 0:
                cpu_start = (now, _cpu_seconds(worker.pid), _cpu_seconds(kafka_pid))
            if m["raw"] >= n and m["applied"] + m["dl_ledger"] >= m["events"] > 0:
                done_at = now
                cpu_end = (now, _cpu_seconds(worker.pid), _cpu_seconds(kafka_pid))
                break
        time.sleep(0.2)
    if done_at is None:
        print(f"throughput: worker did not finish within {timeout:.0f}s: {last}", flush=True)
    first, last_out = asyncio.run(_time_span(broker, list(topics)))
    first_event, _ = asyncio.run(_time_span(broker, [f"{prefix}.events"]))
    offsets = asyncio.run(_offsets(broker, [*topics, f"{prefix}.events", f"{prefix}.webhooks.dlq"]))
    end = last_out if done_at is None else max(last_out, min(done_at, last_out + 0.25))
    # The window: first balance record written → last output written (all applied by then;
    # the metrics poll saw it at most one poll interval later).
    secs = max(1e-9, last_out - first)
    row: dict[str, Any] = {
        "raw": int(last.get("raw", 0)),
        "events": int(last.get("events", 0)),
        "applied": int(last.get("applied", 0)),
        "duplicates": int(last.get("duplicates", 0)),
        "dead_letters": int(last.get("dl", 0)),
        "complete": done_at is not None,
        "first_balance_at": round(first, 3),
        "last_output_at": round(last_out, 3),
        "seen_done_by_poll_at": round(done_at, 3) if done_at else None,
        "seconds": round(secs, 3),
        "seconds_to_poll_done": round(end - first, 3),
        "events_per_s": round(last.get("applied", 0) / secs, 1),
        "raw_per_s": round(last.get("raw", 0) / secs, 1),
        "startup_s": round(first_event - worker.started, 2),
        # The ledger hardly runs while normalize has a backlog, so most of the normalize hop
        # happens before the first balance record: the whole worker's rate is counted from its
        # first events record (normalize's first output) too.
        "first_event_at": round(first_event, 3),
        "whole_seconds": round(last_out - first_event, 3),
        "whole_events_per_s": round(last.get("applied", 0) / max(1e-9, last_out - first_event), 1),
        "whole_raw_per_s": round(last.get("raw", 0) / max(1e-9, last_out - first_event), 1),
        "outputs": {t.removeprefix(prefix + "."): e - b for t, (b, e) in offsets.items()},
        "progress": [[round(t - first, 3), r, e, a] for t, r, e, a in samples],
    }
    if cpu_start and cpu_end and cpu_end[0] > cpu_start[0]:
        wall = cpu_end[0] - cpu_start[0]
        row["worker_cpu_cores"] = round((cpu_end[1] - cpu_start[1]) / wall, 2)
        row["kafka_cpu_cores"] = round((cpu_end[2] - cpu_start[2]) / wall, 2)
        row["worker_cpu_us_per_event"] = round(
            (cpu_end[1] - cpu_start[1]) / max(1, row["applied"]) * 1e6, 1
        )
    print(
        f"throughput: {row['applied']} events ({row['raw']} raw) in {secs:.2f} s → "
        f"{row['events_per_s']:.0f} events/s, {row['raw_per_s']:.0f} webhooks/s; from the first "
        f"event: {row['whole_events_per_s']:.0f} events/s "
        f"(worker {row.get('worker_cpu_cores', '?')} cores)",
        flush=True,
    )
    return worker, row


FLOOR_APP = ROOT / "benchmarks" / "faust_floor.py"


def measure_floor(
    broker: str, prefix: str, app_id: str, n: int, work: Path, kafka_pid: int | None
) -> dict[str, Any]:
    """The same records through `benchmarks/faust_floor.py`: Faust + Kafka I/O, no work."""
    floor, row = measure_throughput(
        broker,
        prefix,
        app_id,
        n,
        work,
        kafka_pid,
        timeout=600,
        name="worker-floor",
        app=str(FLOOR_APP),
    )
    floor.stop()
    row.pop("progress", None)
    print(
        f"faust floor: {row['events_per_s']:.0f} events/s (the worker's app and topology, "
        "no decoding, Avro, rules or table)",
        flush=True,
    )
    return row


def measure_latency(
    broker: str,
    prefix: str,
    worker: Child,
    rate: float,
    duration: float,
    warmup: float,
    run: str,
    work: Path,
) -> dict[str, Any]:
    port = free_port()
    env = base_env(broker, prefix)
    env.update(
        CONNECTOR_BRIDGE_PORT=str(port),
        CONNECTOR_BRIDGE_HOST="127.0.0.1",
        **bridge_secret_env(),
    )
    bridge = Child("bridge", env, work / "bridge.log", port)
    seen_file, sent_file = work / "seen.json", work / "sent.json"
    watch_log = open(work / "watcher.log", "wb")  # noqa: SIM115 - closed below
    watcher = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child-watch",
            broker,
            f"{prefix}.balances",
            str(seen_file),
        ],
        stdout=subprocess.PIPE,
        stderr=watch_log,
        text=True,
        cwd=ROOT,
    )
    try:
        bridge.wait_ready(60)
        assert watcher.stdout is not None
        if watcher.stdout.readline().strip() != "READY":
            raise SystemExit(f"watcher failed: {(work / 'watcher.log').read_text()[-3000:]}")
        before = worker_metrics(worker.url) or {}
        cpu0 = {"worker": _cpu_seconds(worker.pid), "bridge": _cpu_seconds(bridge.pid)}
        sent = run_child(
            ["--child-send", bridge.url, str(rate), str(duration), run, str(work), str(sent_file)],
            timeout=duration + 600,
        )
        # drain: every accepted webhook normalized, every event applied, and no raw record
        # arriving for 2 s (a 503 may still have been written after its ack timed out), so the
        # next phase starts with an idle worker.
        accepted = sum(1 for r in json.loads(sent_file.read_text()) if r[1] == 200)
        deadline = time.monotonic() + 300
        last_raw, stable_since = -1.0, time.monotonic()
        while time.monotonic() < deadline:
            m = worker_metrics(worker.url) or {}
            raw = m.get("raw", 0.0)
            if raw != last_raw:
                last_raw, stable_since = raw, time.monotonic()
            applied = m.get("applied", 0) + m.get("dl_ledger", 0)
            if (
                raw >= before.get("raw", 0) + accepted
                and applied >= m.get("events", 0)
                and time.monotonic() - stable_since >= 2.0
            ):
                break
            time.sleep(0.2)
        time.sleep(1.0)
        cpu = {
            "worker": round(_cpu_seconds(worker.pid) - cpu0["worker"], 2),
            "bridge": round(_cpu_seconds(bridge.pid) - cpu0["bridge"], 2),
        }
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
        watch_log.close()
        bridge.stop()
    rows = json.loads(sent_file.read_text())
    seen = json.loads(seen_file.read_text())
    start = sent["start"]
    lat, lat_written, lat_sent, lost, non200 = [], [], [], 0, 0
    lat_at: list[tuple[float, float]] = []
    lateness = []
    for key, status, scheduled, sent_at, ok_at, *_ in rows:
        if status != 200:
            non200 += 1
            continue
        if scheduled - start < warmup:
            continue
        lateness.append(sent_at - scheduled)
        if key not in seen:
            lost += 1
            continue
        seen_at, written_at = seen[key]
        lat.append(seen_at - ok_at)
        lat_at.append((scheduled, seen_at - ok_at))
        lat_written.append(written_at - ok_at)
        lat_sent.append(seen_at - sent_at)
    res = {
        "rate_per_s": rate,
        "duration_s": duration,
        "warmup_excluded_s": warmup,
        "sent": len(rows),
        "non_200": non200,
        "statuses": _count(str(r[1]) for r in rows),
        "measured": len(lat),
        "balance_not_seen": lost,
        "achieved_send_rate_per_s": round(len(rows) / max(1e-9, rows[-1][3] - rows[0][3]), 1),
        "sender_lateness_p99_ms": _pct(lateness, 0.99),
        "p50_ms": _pct(lat, 0.50),
        "p90_ms": _pct(lat, 0.90),
        "p99_ms": _pct(lat, 0.99),
        "max_ms": _pct(lat, 1.0),
        "written_p50_ms": _pct(lat_written, 0.50),
        "written_p99_ms": _pct(lat_written, 0.99),
        "sent_to_seen_p50_ms": _pct(lat_sent, 0.50),
        "sent_to_seen_p99_ms": _pct(lat_sent, 0.99),
        "cpu_s": cpu,
        "cpu_us_per_webhook": {k: round(v / len(rows) * 1e6, 1) for k, v in cpu.items()},
        # the CDF as 1,001 quantiles, and the median per second of sending (shows a growing queue)
        "latency_cdf_ms": _quantiles(lat, 1000),
        "p50_by_second_ms": [_pct(sec, 0.5) for sec in _by_second(lat_at, start + warmup)],
    }
    print(
        f"latency @ {rate:.0f}/s: p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, "
        f"max {res['max_ms']} ms ({res['measured']} measured, {non200} non-200, "
        f"{lost} balances not seen)",
        flush=True,
    )
    return res


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


def _quantiles(xs: list[float], n: int) -> list[float]:
    s = sorted(xs)
    if not s:
        return []
    return [round(s[min(len(s) - 1, int(i / n * len(s)))] * 1000, 2) for i in range(n + 1)]


def _by_second(points: list[tuple[float, float]], t0: float) -> list[list[float]]:
    out: list[list[float]] = []
    for at, value in points:
        i = max(0, int(at - t0))
        while len(out) <= i:
            out.append([])
        out[i].append(value)
    return out


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(p * len(s)))] * 1000, 2)


_RESTORE = re.compile(r"Restoring state from changelog topics|Done reading from changelog topics")


def _log_times(log: Path) -> dict[str, float]:
    """Epoch times of Faust's recovery log lines (JSON log format)."""
    out: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        msg = str(rec.get("message", rec.get("msg", "")))
        ts = rec.get("ts")
        if not ts:
            continue
        t = datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
        for key, needle in (
            ("restore_start", "Restoring state from changelog topics"),
            ("restore_done", "Done reading from changelog topics"),
            ("recovery_complete", "Recovery complete"),
            ("worker_ready", "Worker ready"),
        ):
            if needle in msg and key not in out:
                out[key] = t
    return out


def measure_recovery(
    broker: str, prefix: str, app_id: str, work: Path, sample_keys: list[str], runs: int = 3
) -> dict[str, Any]:
    """Start → /readyz of fresh workers (empty data dirs), with and without a changelog.

    Each kind is started `runs` times, one after the other, and the medians are compared: the
    difference is what replaying the changelog adds to a start, the recovery's own time.
    """
    changelog = f"{app_id}-members-changelog"
    begin, end = asyncio.run(_offsets(broker, [changelog]))[changelog]
    records = end - begin
    # the fixed cost: a worker whose changelog is empty (own prefix and app id), same machine
    empty_prefix = f"{prefix}e"
    ensure(broker, empty_prefix)
    empty_times, ready_times, bulk, found = [], [], [], 0
    last_log: Path | None = None
    for i in range(runs):
        empty = start_worker(
            broker, empty_prefix, f"{app_id}-empty", work, f"worker-empty-{i}", "INFO"
        )
        try:
            empty_times.append(empty.wait_ready(180) - empty.started)
        finally:
            empty.stop()
        worker = start_worker(broker, prefix, app_id, work, f"worker-recover-{i}", "INFO")
        try:
            ready_times.append(worker.wait_ready(600) - worker.started)
            if i == 0:
                for key in sample_keys:
                    provider, tenant, customer = key.split(":", 2)
                    tenant = tenant.split("/", 1)[0]  # an account key names the member's tenant
                    status, _ = _http_get(f"{worker.url}/members/{provider}/{tenant}/{customer}", 5)
                    found += status == 200
        finally:
            worker.stop()
        last_log = worker.log
        bulk.append(_bulk_restore_line(worker.log))
    ceiling_dir = work / "restore-ceiling"
    ceiling_dir.mkdir()
    ceiling = run_child(
        ["--child-restore-ceiling", broker, changelog, str(ceiling_dir)], timeout=600
    )
    ready, empty_ready = _median(ready_times), _median(empty_times)
    restored = [b for b in bulk if b is not None]
    restore_s = _median([b["seconds"] for b in restored]) if restored else None
    times = _log_times(last_log) if last_log else {}
    res = {
        "changelog_topic": changelog,
        "changelog_records": records,
        "runs": runs,
        "start_to_ready_s": round(ready, 3),
        "start_to_ready_runs_s": [round(x, 3) for x in ready_times],
        "empty_changelog_start_to_ready_s": round(empty_ready, 3),
        "empty_changelog_runs_s": [round(x, 3) for x in empty_times],
        # the figure with the target: changelog records / what they add to a start
        "records_per_s_net_of_empty_start": round(records / max(1e-3, ready - empty_ready), 1),
        "records_per_s": round(records / ready, 1),
        "bulk_restore": restored[-1] if restored else None,
        "bulk_restore_s": restore_s,
        "records_per_s_bulk_restore_window": round(records / restore_s, 1) if restore_s else None,
        "faust_restore_log_window_s": (
            round(times["restore_done"] - times["restore_start"], 3)
            if "restore_start" in times and "restore_done" in times
            else None
        ),
        "sample_members_found": f"{found}/{len(sample_keys)}",
        "restore_ceiling": ceiling,
    }
    print(
        f"recovery: {records} changelog records, ready after {ready:.2f} s (median of {runs}; "
        f"empty changelog: {empty_ready:.2f} s) → "
        f"{res['records_per_s_net_of_empty_start']:.0f} records/s net of the fixed start "
        f"({res['records_per_s']:.0f}/s start to ready; bulk restore window "
        f"{restore_s} s); members found {res['sample_members_found']}; "
        f"restore ceiling (aiokafka → rocksdict) {ceiling['records_per_s']:.0f} records/s",
        flush=True,
    )
    return res


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


_BULK_LINE = re.compile(
    r"bulk restore: (\d+) changelog records into (\d+) partition\(s\) in ([0-9.]+) s"
)


def _bulk_restore_line(log: Path) -> dict[str, Any] | None:
    """The worker's own figure for its bulk changelog restore (connector/streams/recovery.py)."""
    match = _BULK_LINE.search(log.read_text(errors="replace"))
    if match is None:
        return None
    records, partitions, seconds = match.groups()
    return {"records": int(records), "partitions": int(partitions), "seconds": float(seconds)}


# ---------------------------------------------------------------------------------------------
# chart


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tp, ce = result["throughput"], result["ceiling"]
    lat_points, rec = result["latency"], result["recovery"]
    peers = result.get("peers") or {}
    fig, axes = plt.subplots(3 if peers else 2, 2, figsize=(12, 12.4 if peers else 8.2))
    ax = axes[0][0]
    names = [
        "worker, first balance\n→ all applied",
        "worker, first event\n→ all applied",
        "Python ceiling\n(1 hop, no framework)",
    ]
    vals = [tp["events_per_s"], tp["whole_events_per_s"], ce["events_per_s"]]
    colors = ["C0", "C9", "C2"]
    floor = result.get("faust_floor")
    if floor:
        names.append("Faust floor\n(same app, no work)")
        vals.append(floor["events_per_s"])
        colors.append("C7")
    bars = ax.bar(names, vals, color=colors)
    ax.tick_params(axis="x", labelsize=7)
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in vals])
    ax.axhline(
        ce["events_per_s"] * TARGET_SHARE_OF_CEILING,
        color="grey",
        ls=":",
        label=f"target: {TARGET_SHARE_OF_CEILING:.0%} of ceiling",
    )
    ax.set_ylabel("events / s (one process)")
    ax.set_title(f"throughput, {tp['raw']:,} raw webhooks, 4 providers", fontsize=10)
    ax.legend(fontsize=8)

    ax = axes[0][1]
    prog = [p for p in tp["progress"] if p[0] >= -2]
    ax.plot([p[0] for p in prog], [p[1] for p in prog], label="raw normalized")
    ax.plot([p[0] for p in prog], [p[2] for p in prog], label="events produced")
    ax.plot([p[0] for p in prog], [p[3] for p in prog], label="events applied")
    ax.axvline(0, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("seconds since the first balance record")
    ax.set_ylabel("count (worker /metrics)")
    ax.set_title("worker progress", fontsize=10)
    ax.legend(fontsize=8)

    ax = axes[1][0]
    for i, point in enumerate(lat_points):
        xs = point["latency_cdf_ms"]
        if not xs:
            continue
        label = (
            f"{point['rate_per_s']:.0f}/s: p50 {point['p50_ms']:,.0f} ms, "
            f"p99 {point['p99_ms']:,.0f} ms"
        )
        ax.plot(xs, [(k + 1) / len(xs) for k in range(len(xs))], color=f"C{i}", label=label)
    ax.set_xscale("log")
    ax.axvline(TARGET_P99_MS, color="grey", ls=":", label=f"target p99 {TARGET_P99_MS:.0f} ms")
    ax.axhline(0.99, color="grey", ls="--", lw=0.6)
    ax.set_xlabel("200 received → balance seen (ms)")
    ax.set_ylabel("fraction of webhooks")
    ax.set_title("latency through bridge + worker (open loop, fresh member each)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)

    ax = axes[1][1]
    rc = rec.get("restore_ceiling") or {}
    net = rec.get("records_per_s_net_of_empty_start", rec["records_per_s"])
    restore_s = rec.get("bulk_restore_s")
    names = [
        "worker start → ready,\nempty changelog",
        f"worker start → ready,\n{rec['changelog_records']:,} records",
        "bulk restore\n(worker's log)",
        "restore ceiling\n(aiokafka → rocksdict)",
    ]
    vals = [
        rec["empty_changelog_start_to_ready_s"],
        rec["start_to_ready_s"],
        restore_s or 0.0,
        rc.get("seconds", 0),
    ]
    bars = ax.bar(names, vals, color=["C7", "C0", "C1", "C2"])
    labels = [
        f"{vals[0]:.1f} s",
        f"{vals[1]:.1f} s\n{net:,.0f} rec/s net",
        f"{vals[2]:.2f} s\n{rec.get('records_per_s_bulk_restore_window') or 0:,.0f} rec/s",
        f"{vals[3]:.2f} s\n{rc.get('records_per_s', 0):,.0f} rec/s",
    ]
    ax.bar_label(bars, labels=labels, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylabel("seconds")
    ax.margins(y=0.2)
    ax.set_title(
        f"table recovery: {net:,.0f} records/s net of start-up (target {TARGET_RECOVERY_PER_S:,})",
        fontsize=10,
    )
    if peers:
        _peer_panels(result, axes[2][0], axes[2][1])
    fig.suptitle(result["chart_title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ours(tp: dict[str, Any]) -> tuple[float, float | None]:
    """The worker's events/s (first events record → last output) and CPU µs/event: the median
    over --rounds when there were several, else the one run."""
    m = tp.get("median_of_rounds") or tp
    return m["whole_events_per_s"], m.get("worker_cpu_us_per_event")


def _peer_panels(result: dict[str, Any], ax_rate: Any, ax_cpu: Any) -> None:
    peers = result["peers"]
    rate, cpu = _ours(result["throughput"])
    names = ["worker", *peers]
    rates = [rate] + [peers[p]["whole_events_per_s"] for p in peers]
    cpus = [cpu or 0.0] + [peers[p]["cpu_us_per_event"] for p in peers]
    colors = ["C0", "C4", "C6", "C2", "C8"][: len(names)]
    labels = [PEER_LABELS.get(n, n) for n in names]
    equal = ["(reference)"] + [
        "balances equal" if peers[p]["balances_equal_to_worker"] else "BALANCES DIFFER"
        for p in peers
    ]
    bars = ax_rate.bar(labels, rates, color=colors)
    ax_rate.bar_label(bars, labels=[f"{v:,.0f}\n{e}" for v, e in zip(rates, equal, strict=True)])
    ax_rate.margins(y=0.25)
    ax_rate.tick_params(axis="x", labelsize=7)
    ax_rate.set_ylabel("events / s (first event → all applied)")
    rounds = result["setup"].get("rounds", 1)
    ax_rate.set_title(
        f"worker vs peers, same {result['throughput']['raw']:,} raw records"
        + (f" (median of {rounds} interleaved runs)" if rounds > 1 else " (one run each)"),
        fontsize=10,
    )
    bars = ax_cpu.bar(labels, cpus, color=colors)
    ax_cpu.bar_label(bars, labels=[f"{v:,.0f}" for v in cpus])
    ax_cpu.margins(y=0.2)
    ax_cpu.tick_params(axis="x", labelsize=7)
    ax_cpu.set_ylabel("process CPU µs / event (/proc, all threads)")
    goals = result["verdict"].get("peers", {}).get("goals", {})
    r = goals.get("events_per_s_vs_quix", {}).get("ratio")
    c = goals.get("cpu_per_event_vs_quix", {}).get("ratio")
    ax_cpu.set_title(
        "CPU per event"
        + (f"; worker/Quix: {r:.2f}x events/s, {c:.2f}x CPU/event" if r and c else ""),
        fontsize=10,
    )


# ---------------------------------------------------------------------------------------------
# main


def _source_state() -> dict[str, Any]:
    """The commit measured, and whether the worker's modules differed from it (read-only git)."""

    def git(*a: str) -> str:
        try:
            out = subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT, timeout=10)
        except OSError:
            return ""
        return out.stdout.strip()

    changed = git("status", "--porcelain", "--", "connector")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_in_connector": changed.splitlines()}


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _other_workers() -> int:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if "connector worker" in line)


def wait_quiet(max_wait: float, load_max: float = 1.5) -> dict[str, Any]:
    waited = 0.0
    while True:
        load1 = os.getloadavg()[0]
        others = _other_workers()
        if (others == 0 and load1 < load_max) or waited >= max_wait:
            return {"waited_s": waited, "load1": load1, "other_workers": others}
        print(f"waiting for a quiet machine: load {load1:.2f}, {others} other workers", flush=True)
        time.sleep(30)
        waited += 30


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    tp, ce = result["throughput"], result["ceiling"]
    share = tp["events_per_s"] / ce["events_per_s"] if ce["events_per_s"] else 0.0
    whole = tp["whole_events_per_s"] / ce["events_per_s"] if ce["events_per_s"] else 0.0
    lat, rec = result["latency"][0], result["recovery"]
    return {
        "worker_share_of_ceiling": round(share, 3),
        "faust_floor_share_of_ceiling": round(
            result["faust_floor"]["events_per_s"] / ce["events_per_s"], 3
        )
        if result.get("faust_floor") and ce["events_per_s"]
        else None,
        "meets_throughput": share >= TARGET_SHARE_OF_CEILING,
        "worker_share_of_ceiling_whole_run": round(whole, 3),
        "meets_throughput_whole_run": whole >= TARGET_SHARE_OF_CEILING,
        "latency_rate_per_s": lat["rate_per_s"],
        "meets_latency_p99": lat["p99_ms"] <= TARGET_P99_MS and lat["balance_not_seen"] == 0,
        "recovery_records_per_s": rec["records_per_s_net_of_empty_start"],
        "meets_recovery": rec["records_per_s_net_of_empty_start"] >= TARGET_RECOVERY_PER_S,
        "targets": {
            "worker_share_of_ceiling": TARGET_SHARE_OF_CEILING,
            "latency_p99_ms": TARGET_P99_MS,
            "recovery_records_per_s": TARGET_RECOVERY_PER_S,
        },
        "peers": peer_verdict(result),
    }


def peer_verdict(result: dict[str, Any]) -> dict[str, Any]:
    """Issue 15's goals as ratios: worker events/s >= Quix's, worker CPU/event <= Quix's."""
    peers = result.get("peers") or {}
    if not peers:
        return {}
    rate, cpu = _ours(result["throughput"])
    rows = {}
    for name, p in peers.items():
        rows[name] = {
            "events_per_s": p["whole_events_per_s"],
            "cpu_us_per_event": p["cpu_us_per_event"],
            "worker_over_peer_events_per_s": round(rate / p["whole_events_per_s"], 3)
            if p["whole_events_per_s"]
            else None,
            "worker_over_peer_cpu_per_event": round(cpu / p["cpu_us_per_event"], 3)
            if cpu and p["cpu_us_per_event"]
            else None,
            "balances_equal_to_worker": p["balances_equal_to_worker"],
            "complete": p["complete"],
        }
    quix = rows.get("quix", {})
    r, c = quix.get("worker_over_peer_events_per_s"), quix.get("worker_over_peer_cpu_per_event")
    goals = {
        "events_per_s_vs_quix": {"ratio": r, "target": ">= 1.0", "met": r is not None and r >= 1},
        "cpu_per_event_vs_quix": {"ratio": c, "target": "<= 1.0", "met": c is not None and c <= 1},
    }
    return {
        "worker_events_per_s": rate,
        "worker_cpu_us_per_event": cpu,
        "by_peer": rows,
        "goals": goals,
        "all_met": all(g["met"] for g in goals.values()),
        "all_peers_balances_equal": all(p["balances_equal_to_worker"] for p in rows.values()),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child-worker":
        return run_worker_with_app(argv[1])
    if argv and argv[0] == "--child-restore-ceiling":
        print(json.dumps(asyncio.run(_restore_ceiling(argv[1], argv[2], Path(argv[3])))))
        return 0
    if argv and argv[0] == "--child-ceiling":
        print(json.dumps(asyncio.run(_ceiling(argv[1], argv[2], argv[3]))))
        return 0
    if argv and argv[0] == "--child-send":
        url, rate, duration, run, work, out = argv[1:7]
        deliveries = latency_deliveries(float(rate), float(duration), run, Path(work))
        rows, start = asyncio.run(_send(url, float(rate), deliveries))
        Path(out).write_text(json.dumps(rows))
        print(json.dumps({"sent": len(rows), "start": start}))
        return 0
    if argv and argv[0] == "--child-watch":
        seen = asyncio.run(_watch(argv[1], argv[2]))
        Path(argv[3]).write_text(json.dumps(seen))
        print(json.dumps({"seen": len(seen)}))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small runs (smoke test)")
    parser.add_argument("--broker", help="use this Kafka (host:port) instead of starting one")
    parser.add_argument("--records", type=int, help="raw records for throughput")
    parser.add_argument("--members", type=int, help="members for throughput")
    parser.add_argument(
        "--rates",
        default="1000,500",
        help="latency phase webhooks/s, comma-separated; the first is the one with the target",
    )
    parser.add_argument("--duration", type=float, help="latency phase seconds")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="wait up to S seconds for load < 1.5 and no other `connector worker` process",
    )
    parser.add_argument(
        "--worker-app",
        help="A/B: run the worker with create_app from this modified copy of "
        "connector/streams/app.py",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"worker peers to run beside ours, comma-separated subset of {', '.join(PEERS)}, "
        "or 'none'",
    )
    parser.add_argument(
        "--rounds", type=int, help="interleaved runs of the worker and each peer (1 quick, 3 full)"
    )
    parser.add_argument("--out", default=str(RESULTS / "pipeline.json"))
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.replot:
        chart(json.loads(out.read_text()), out.with_suffix(".png"))
        return 0
    global WORKER_APP
    WORKER_APP = str(Path(args.worker_app).resolve()) if args.worker_app else None
    n = args.records or (8_000 if args.quick else 40_000)
    members = args.members or (1_000 if args.quick else 2_000)
    duration = args.duration or (8.0 if args.quick else 20.0)
    rounds = args.rounds or (1 if args.quick else 3)
    peers = [] if args.peers == "none" else [p.strip() for p in args.peers.split(",") if p]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; valid: {', '.join(PEERS)}, none")
    if any(p.startswith("quix") for p in peers) and _version("quixstreams") is None:
        parser.error("the quix peers need Quix Streams: pip install -e '.[bench]'")
    warmup = 1.0
    # aiokafka logs each NotLeaderForPartition retry right after topic creation; they are harmless
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    quiet = wait_quiet(args.wait_quiet) if args.wait_quiet else None
    load_before = os.getloadavg()
    others_before = _other_workers()

    broker_obj = None
    kafka_version = "external"
    if args.broker:
        broker = args.broker
    else:
        from connector.embedded import kafka as embedded_kafka

        # The test broker fsyncs every message; production Kafka leaves that to the OS.
        broker_obj = embedded_kafka.KafkaBroker(properties=embedded_kafka.PRODUCTION_FLUSH)
        print("starting Apache Kafka ...", flush=True)
        broker_obj.start()
        broker = broker_obj.bootstrap
        kafka_version = broker_obj.version
    kafka_pid = broker_obj.proc.pid if broker_obj and broker_obj.proc else None
    run = uuid.uuid4().hex[:6]
    prefix, app_id = f"pipe{run}", f"pipe-bench-{run}"
    result: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    worker: Child | None = None
    try:
        secrets = bench_secrets(work)
        print(f"generating {n} signed webhooks for {members} members ...", flush=True)
        t = time.time()
        records, per_provider = make_raw_records(n, members, run, secrets)
        print(f"  {time.time() - t:.1f} s; producing to {prefix}.webhooks.raw ...", flush=True)
        ensure(broker, prefix)
        ensure(broker, f"{prefix}x")  # the ceiling's scratch output: <prefix>x.events
        asyncio.run(_produce_raw(broker, f"{prefix}.webhooks.raw", records))
        ensure(broker, f"{prefix}f")  # the Faust floor's own topics
        asyncio.run(_produce_raw(broker, f"{prefix}f.webhooks.raw", records))
        # Extra rounds of the worker (--rounds) each need a raw topic of their own; the peers
        # all read <prefix>.webhooks.raw with consumer groups of their own.
        worker_prefixes = [f"{prefix}w{i}" for i in range(rounds - 1)] + [prefix]
        for extra_prefix in worker_prefixes[:-1]:
            ensure(broker, extra_prefix)
            asyncio.run(_produce_raw(broker, f"{extra_prefix}.webhooks.raw", records))
        del records

        runs = [
            run_child(
                ["--child-ceiling", broker, f"{prefix}.webhooks.raw", f"{prefix}x.events"],
                timeout=900,
            )
            for _ in range(1 if args.quick else 3)
        ]
        ceiling = dict(sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2])
        ceiling["runs_events_per_s"] = [r["events_per_s"] for r in runs]
        print(
            f"ceiling: {ceiling['events']} events ({ceiling['raw']} raw) in "
            f"{ceiling['seconds']:.2f} s → {ceiling['events_per_s']:.0f} events/s "
            f"(median of {ceiling['runs_events_per_s']})",
            flush=True,
        )
        floor = measure_floor(broker, f"{prefix}f", f"{app_id}-floor", n, work, kafka_pid)
        # Rounds: each peer, then the worker; the last round's worker stays up for latency.
        peer_runs: dict[str, list[dict[str, Any]]] = {p: [] for p in peers}
        peer_balances: dict[str, list[dict[str, tuple[str, ...]]]] = {p: [] for p in peers}
        worker_runs: list[dict[str, Any]] = []
        worker_balances: list[dict[str, tuple[str, ...]]] = []
        for i, worker_prefix in enumerate(worker_prefixes):
            for peer in peers:
                peer_prefix = f"{prefix}{PEERS[peer][2]}{i}"
                row = measure_peer(
                    peer, broker, f"{prefix}.webhooks.raw", peer_prefix, n, work, kafka_pid, 900
                )
                peer_runs[peer].append(row)
                peer_balances[peer].append(
                    asyncio.run(_final_balances(broker, f"{peer_prefix}.balances"))
                )
            last = worker_prefix == prefix
            worker, row = measure_throughput(
                broker,
                worker_prefix,
                app_id if last else f"{app_id}-w{i}",
                n,
                work,
                kafka_pid,
                timeout=900,
                name="worker-1" if last else f"worker-round-{i}",
            )
            # before the latency phase adds members to <prefix>.balances
            worker_balances.append(
                asyncio.run(_final_balances(broker, f"{worker_prefix}.balances"))
            )
            if not last:
                worker.stop()
                row.pop("progress", None)
            worker_runs.append(row)
        throughput = worker_runs[-1]
        if len(worker_runs) > 1:
            median = _median_run(worker_runs)
            throughput["median_of_rounds"] = {
                k: median[k]
                for k in (
                    "whole_events_per_s",
                    "events_per_s",
                    "worker_cpu_us_per_event",
                    "runs_whole_events_per_s",
                    "runs_cpu_us_per_event",
                )
                if k in median
            }
        reference = worker_balances[-1]
        peer_results: dict[str, Any] = {}
        for peer in peers:
            chosen = _median_run(peer_runs[peer])
            checks = [compare_balances(reference, b) for b in peer_balances[peer]]
            chosen["balances_equal_to_worker"] = all(c["equal"] for c in checks)
            chosen["applied_equal_to_worker"] = all(
                r["applied"] == throughput["applied"] for r in peer_runs[peer]
            )
            chosen["balances_check"] = checks[-1]
            chosen["rounds"] = len(peer_runs[peer])
            peer_results[peer] = chosen
            print(
                f"peer {peer}: median {chosen['whole_events_per_s']:.0f} events/s, "
                f"{chosen['cpu_us_per_event']:.0f} CPU µs/event; balances equal to the "
                f"worker's: {chosen['balances_equal_to_worker']}",
                flush=True,
            )
        worker_rounds_equal = all(
            compare_balances(reference, b)["equal"] for b in worker_balances[:-1]
        )
        latency = [
            measure_latency(broker, prefix, worker, rate, duration, warmup, f"{run}r{i}", work)
            for i, rate in enumerate(float(r) for r in args.rates.split(","))
        ]
        worker.stop()
        sent = json.loads((work / "sent.json").read_text())
        sample = [r[0] for r in random.Random(1).sample(sent, min(20, len(sent)))]
        recovery = measure_recovery(broker, prefix, app_id, work, sample)
        result = {
            "benchmark": "pipeline",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "setup": {
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "kafka": f"Apache Kafka {kafka_version} (KRaft, single node, same machine, "
                "default flush policy)"
                if broker_obj
                else f"external broker {broker}",
                "partitions": PARTITIONS,
                "raw_records": n,
                "members": members,
                "per_provider": per_provider,
                "worker": "one `python -m connector worker`, at_least_once, rocksdb, "
                "CONNECTOR_LOG_LEVEL=WARNING",
                "worker_app": WORKER_APP or "connector/streams/app.py",
                "rounds": rounds,
                "peers": {
                    "quix": f"Quix Streams {_version('quixstreams')}, RocksDB state, "
                    "at-least-once, default commit interval (5 s), changelog on",
                    "quix_eos": "the same, processing_guarantee=exactly-once",
                    "plain": "aiokafka + rocksdict in one asyncio process, batches of 500, "
                    "outputs then changelog acked before the RocksDB write and the commit",
                    "work": "all run connector.streams.normalize.normalize and "
                    "connector.streams.ledger.LedgerStep (connector.domain.ledger) with the "
                    "members-table format of connector/streams/state_format.py",
                    "timing": "first events record → last ledger/balances/tiers record "
                    "(Kafka timestamps); CPU: the process's /proc utime+stime from its first "
                    "raw record to all applied",
                }
                if peers
                else {},
                "source": _source_state(),
                "quick": args.quick,
                "load_before": [round(x, 2) for x in load_before],
                "load_after": [round(x, 2) for x in os.getloadavg()],
                "other_connector_workers_before": others_before,
                "quiet_wait": quiet,
            },
            "throughput": throughput,
            "peers": peer_results,
            "worker_rounds_balances_equal": worker_rounds_equal,
            "ceiling": ceiling,
            "faust_floor": floor,
            "latency": latency,
            "recovery": recovery,
        }
        result["verdict"] = verdict(result)
        result["chart_title"] = (
            f"loyalty-connector worker pipeline, {os.cpu_count()} cores shared by worker, "
            f"load generators and Kafka ({'quick' if args.quick else 'full'} run, "
            f"{result['when']})"
        )
    finally:
        if worker is not None:
            worker.stop()
        if broker_obj is not None:
            broker_obj.cleanup()
            shutil.rmtree(broker_obj.work_dir, ignore_errors=True)
        if result:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    chart(result, out.with_suffix(".png"))
    v = result["verdict"]
    print(f"wrote {out} and {out.with_suffix('.png')}")
    print(
        f"worker {throughput['events_per_s']:.0f} events/s = {v['worker_share_of_ceiling']:.0%} "
        f"of the ceiling ({'meets' if v['meets_throughput'] else 'misses'} "
        f"{TARGET_SHARE_OF_CEILING:.0%}); latency p99 {latency[0]['p99_ms']} ms "
        f"({'meets' if v['meets_latency_p99'] else 'misses'} {TARGET_P99_MS:.0f} ms); recovery "
        f"{v['recovery_records_per_s']:.0f} records/s net of start-up "
        f"({'meets' if v['meets_recovery'] else 'misses'} {TARGET_RECOVERY_PER_S:,})"
    )
    for name, goal in (v.get("peers") or {}).get("goals", {}).items():
        print(f"issue 15 goal {name}: {goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
