"""The benchmarks' peers still do our job on real Apache Kafka (benchmarks/peers/): not timed.

The Go bridge peers (Benthos engine, plain net/http) refuse a bad X-GB-Signature with 401 and
write an accepted delivery as our bridge's raw record; the worker peers (Quix Streams, plain
aiokafka + rocksdict) turn the same raw records into the same balances.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import pipeline_kafka, pipeline_records  # the bench's records, topics, checks
from benchmarks.peers import gobuild
from connector import raw
from connector.embedded import free_port
from connector.kafka_admin import ensure_topics
from connector.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

FIXTURE = ROOT / "tests" / "fixtures" / "gameball" / "v4_profile_updated.json"
SECRET = "peer-test-secret"

pytestmark = pytest.mark.integration


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the Go peer exited before it was ready"
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url}/readyz did not answer 200 within {timeout:.0f} s")


async def _records(bootstrap: str, topic: str, count: int) -> list[Any]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(out) < count:
                got = await consumer.getmany(timeout_ms=500)
                for msgs in got.values():
                    out.extend(msgs)
    finally:
        await consumer.stop()
    return out


@pytest.fixture(params=["benthos_bridge", "go_plain_bridge"])
def go_peer(
    request: pytest.FixtureRequest, kafka: Any, topic_prefix: str, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """(url, raw topic) of a running Go peer on the session's Kafka."""
    binary = gobuild.build(request.param)  # a missing Go toolchain fails here, never skips
    settings = Settings.from_env(
        {"CONNECTOR_BROKER_URL": kafka.bootstrap, "CONNECTOR_TOPIC_PREFIX": topic_prefix}
    )
    asyncio.run(ensure_topics(settings, [settings.topics.raw]))
    port = free_port()
    cmd = [str(binary), "-addr", f"127.0.0.1:{port}", "-brokers", kafka.bootstrap]
    cmd += ["-topic", settings.topics.raw, "-secret", SECRET]
    with open(tmp_path / "peer.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        yield url, settings.topics.raw
    finally:
        proc.terminate()
        proc.wait(15)


def test_go_peer_refuses_a_bad_signature_and_writes_a_good_delivery(
    go_peer: tuple[str, str], kafka: Any
) -> None:
    url, topic = go_peer
    body = FIXTURE.read_bytes()
    good = hashlib.sha1(body + b":" + SECRET.encode(), usedforsecurity=False).hexdigest()
    endpoint = url + "/webhooks/gameball"
    headers = {"Content-Type": "application/json"}

    status, answer = _post(endpoint, body, {**headers, "X-GB-Signature": "0" * 40})
    assert status == 401, answer
    assert b"verification failed" in answer
    status, _ = _post(endpoint, body + b" ", {**headers, "X-GB-Signature": good})
    assert status == 401  # the signature covers the exact bytes
    status, answer = _post(endpoint, body, {**headers, "X-GB-Signature": good.upper()})
    assert status == 200, answer

    (record,) = asyncio.run(_records(kafka.bootstrap, topic, 1))  # the refused ones never land
    assert record.value == body
    got = raw.header_map(record.headers)
    assert got[raw.PROVIDER] == "gameball"
    assert got[raw.TENANT] == ""
    assert got[raw.VERIFIED] == "true"
    assert got[raw.CONTENT_TYPE] == "application/json"
    assert got["x-gb-signature"] == good.upper()
    assert record.key == got[raw.REQUEST_ID].encode()  # Gameball sends no delivery id
    assert got[raw.RECEIVED_AT].isdigit()


def _run_peer(script: str, bootstrap: str, raw_topic: str, prefix: str, n: int, tmp: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "peers" / script), bootstrap, raw_topic]
    cmd += [prefix, str(n), str(tmp / f"{prefix}-state")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def _reference_balances(records: list[Any]) -> dict[str, tuple[str, ...]]:
    """The balances the raw records must end in: normalize and the ledger step in-process,
    one event after the other, no Kafka (the order differs from the peers'; the balances may
    not: that is what the benchmark's check relies on too)."""
    from benchmarks.peers.common import PeerEvent, PeerMessage, StoreMembers
    from connector.avro import default_codec
    from connector.models import MemberBalance
    from connector.raw import ConsumedRecord
    from connector.streams.ledger import LedgerStep
    from connector.streams.metrics import WorkerMetrics
    from connector.streams.normalize import normalize
    from connector.streams.state_format import record_key

    codec, table = default_codec(), {}
    step = LedgerStep(
        codec,
        WorkerMetrics(),
        StoreMembers(table.get),  # type: ignore[arg-type]
        {"ledger": "ledger", "balances": "balances", "tiers": "tiers"},  # type: ignore[dict-item]
        memory=1000,
    )
    latest: dict[str, bytes | None] = {}
    for offset, (key, value, headers) in enumerate(records):
        result = normalize(ConsumedRecord(key, value, headers, "raw", 0, offset), codec)
        assert result.dead_letter is None, result.dead_letter
        for event, payload in result.events:
            message = PeerMessage(event.member_key.encode(), payload, [], "events", 0, offset)
            written, outputs, dl = step(PeerEvent(message), {}, serialize=True)  # type: ignore[arg-type]
            assert dl is None, dl
            for k, stored in written:
                table[record_key(k)] = stored
            latest.update({kb.decode(): v for t, kb, v in outputs if t == "balances"})
    return {
        k: tuple(
            str(getattr(codec.decode(v, MemberBalance), f)) for f in pipeline_records.BALANCE_FIELDS
        )
        for k, v in latest.items()
        if v is not None
    }


@pytest.fixture(scope="module")
def raw_records(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """120 raw webhooks (24 members, all four providers) on a raw topic of their own, and the
    balances they must end in."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    n, members = 120, 24
    tmp = tmp_path_factory.mktemp("peers")
    records, _ = pipeline_records.make_raw_records(
        n, members, uuid.uuid4().hex[:6], pipeline_records.bench_secrets(tmp)
    )
    pipeline_kafka.ensure(kafka.bootstrap, prefix)
    raw_topic = f"{prefix}.webhooks.raw"
    asyncio.run(pipeline_kafka.produce_raw(kafka.bootstrap, raw_topic, records))
    reference = _reference_balances(records)
    assert len(reference) == members
    return {"topic": raw_topic, "n": n, "reference": reference}


@pytest.mark.parametrize(
    "script", ["plain_worker.py", "quix_worker.py"], ids=["plain", "quix_streams"]
)
def test_worker_peer_ends_in_the_balances_of_the_ledger_rules(
    script: str, raw_records: dict[str, Any], kafka: Any, topic_prefix: str, tmp_path: Path
) -> None:
    if script == "quix_worker.py" and importlib.util.find_spec("quixstreams") is None:
        pytest.fail("the Quix Streams peer needs the bench extra: pip install -e '.[bench]'")
    n = raw_records["n"]
    pipeline_kafka.ensure(kafka.bootstrap, topic_prefix)
    report = _run_peer(script, kafka.bootstrap, raw_records["topic"], topic_prefix, n, tmp_path)
    assert report["complete"] and report["raw"] == n
    assert report["applied"] == report["events"] >= n and report["dead_letters"] == 0
    balances = asyncio.run(
        pipeline_kafka.final_balances(kafka.bootstrap, f"{topic_prefix}.balances")
    )
    check = pipeline_kafka.compare_balances(raw_records["reference"], balances)
    assert check["equal"], check
    # and the check would catch a peer that did less: one member's last balance missing
    fewer = dict(balances)
    fewer.pop(next(iter(fewer)))
    assert not pipeline_kafka.compare_balances(raw_records["reference"], fewer)["equal"]
