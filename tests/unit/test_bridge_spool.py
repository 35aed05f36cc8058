"""The bridge's spool (store-and-forward) without a broker: the store, the forwarder, and the
bridge answering 200 from the spool while its producer cannot reach Kafka.

The same on real Apache Kafka (broker SIGKILLed for minutes, bridge kill -9 while spooling) is
tests/integration/test_bridge_spool.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from connector import raw
from connector.bridge.spool import Forwarder, Spool, SpoolFull
from tests.unit.test_bridge import (
    GB_BODY,
    FakeProducer,
    bridge,
    front,  # noqa: F401  (both HTTP front ends)
    gb_headers,
    run,
    settings,
)

HEADERS = [("provider", b"gameball"), ("request-id", b"r")]


def test_records_come_back_in_arrival_order_and_survive_a_reopen(tmp_path: Path) -> None:
    async def go() -> None:
        spool = Spool(tmp_path, 10**7)
        await spool.open()
        seqs = await asyncio.gather(
            *(spool.append("raw", f"k{i}".encode(), f"v{i}".encode(), HEADERS) for i in range(50))
        )
        assert seqs == sorted(seqs)
        assert spool.commits < 50  # one fsync covered a group of appends
        assert spool.count == 50 and spool.bytes > 0 and spool.oldest_age_s() >= 0
        first = await spool.read(limit=10)
        assert [r.key for r in first] == [f"k{i}".encode() for i in range(10)]
        assert first[0].headers == HEADERS and first[0].topic == "raw"
        await spool.delete([r.seq for r in first])
        await spool.close()
        again = Spool(tmp_path, 10**7)
        await again.open()
        assert again.count == 40
        rest = await again.read(limit=100)
        assert [r.value for r in rest] == [f"v{i}".encode() for i in range(10, 50)]
        await again.close()

    run(go)


def test_a_full_spool_refuses(tmp_path: Path) -> None:
    async def go() -> None:
        spool = Spool(tmp_path, 2000)
        await spool.open()
        await spool.append("raw", b"k", b"x" * 1000, HEADERS)
        with pytest.raises(SpoolFull, match="CONNECTOR_SPOOL_MAX_BYTES"):
            await spool.append("raw", b"k", b"x" * 1000, HEADERS)
        assert spool.count == 1
        await spool.close()

    run(go)


CRASH = """
import asyncio, os, sys
from pathlib import Path
from connector.bridge.spool import Spool

async def main():
    spool = Spool(Path(sys.argv[1]), 10**8)
    await spool.open()
    await asyncio.gather(*(spool.append("raw", b"k%d" % i, b"v", []) for i in range(200)))
    print("committed", flush=True)
    os._exit(9)  # no close, no checkpoint: what kill -9 leaves

asyncio.run(main())
"""


def test_what_append_returned_survives_a_process_killed_without_closing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CRASH, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert "committed" in done.stdout, done.stderr

    async def go() -> None:
        spool = Spool(tmp_path, 10**8)
        await spool.open()
        assert spool.count == 200
        assert len(await spool.read(limit=1000)) == 200
        await spool.close()

    run(go)


def test_the_forwarder_deletes_only_what_kafka_acknowledged(tmp_path: Path) -> None:
    async def go() -> None:
        spool = Spool(tmp_path, 10**7)
        await spool.open()
        for i in range(5):
            await spool.append("raw", f"k{i}".encode(), b"v", HEADERS)
        producer = FakeProducer("raise")
        forwarder = Forwarder(spool, producer.send)
        forwarder.backoff_s = 0.01
        forwarder.start()
        assert forwarder.spooling  # a non-empty spool at start: forward it first
        await asyncio.sleep(0.2)
        assert spool.count == 5 and forwarder.failures > 0  # Kafka away: nothing deleted
        producer.mode = "ok"
        for _ in range(200):
            if not spool.count and not forwarder.spooling:
                break
            await asyncio.sleep(0.02)
        assert [k for _, k, _, _ in producer.records] == [f"k{i}".encode() for i in range(5)]
        assert spool.count == 0 and not forwarder.spooling and forwarder.forwarded == 5
        await forwarder.stop()
        await spool.close()

    run(go)


def test_the_bridge_answers_200_from_the_spool_while_kafka_is_away(tmp_path: Path) -> None:
    async def go() -> None:
        s = settings(CONNECTOR_SPOOL_DIR=str(tmp_path), CONNECTOR_ACK_TIMEOUT_MS="100")
        producer = FakeProducer("raise")
        producer.is_ready = False
        async with bridge(s, producer) as client:
            answers = []
            for _ in range(3):
                resp = await client.post("/webhooks/gameball", data=GB_BODY, headers=gb_headers())
                answers.append((resp.status, await resp.json()))
            assert [a[0] for a in answers] == [200, 200, 200], answers
            assert all(a[1]["spooled"] for a in answers)
            ready = await client.get("/readyz")
            assert ready.status == 200 and (await ready.json())["spooling"] is True
            metrics = await (await client.get("/metrics")).text()
            assert "bridge_spool_records 3.0" in metrics and "bridge_spooling 1.0" in metrics
            assert 'bridge_spooled_total{provider="gameball"} 3.0' in metrics
            producer.mode = "ok"  # Kafka is back: the forwarder drains, in arrival order
            for _ in range(300):
                if len(producer.records) == 3:
                    break
                await asyncio.sleep(0.02)
            assert len(producer.records) == 3
            ids = [raw.header_map(h)["request-id"] for _, _, _, h in producer.records]
            assert ids == [a[1]["request_id"] for a in answers]  # the bridge's own headers
            assert all(v == GB_BODY for _, _, v, _ in producer.records)
            for _ in range(100):
                metrics = await (await client.get("/metrics")).text()
                if "bridge_spooling 0.0" in metrics:
                    break
                await asyncio.sleep(0.02)
            assert "bridge_spool_records 0.0" in metrics and "bridge_spooling 0.0" in metrics
            resp = await client.post("/webhooks/gameball", data=GB_BODY, headers=gb_headers())
            assert resp.status == 200 and "spooled" not in await resp.json()  # direct again

    run(go)


def test_a_full_spool_answers_503(tmp_path: Path) -> None:
    async def go() -> None:
        s = settings(
            CONNECTOR_SPOOL_DIR=str(tmp_path),
            CONNECTOR_SPOOL_MAX_BYTES=str(1024 * 1024),
            CONNECTOR_ACK_TIMEOUT_MS="100",
        )
        producer = FakeProducer("raise")
        body = b'{"pad": "' + b"x" * 400_000 + b'"}'
        async with bridge(s, producer) as client:
            statuses = []
            for _ in range(4):
                resp = await client.post("/webhooks/gameball", data=body, headers=gb_headers(body))
                statuses.append(resp.status)
            assert statuses == [200, 200, 503, 503], statuses
            metrics = await (await client.get("/metrics")).text()
            assert "bridge_spool_full_total 2.0" in metrics

    run(go)


def test_without_a_spool_dir_kafka_trouble_is_503_as_before() -> None:
    async def go() -> None:
        async with bridge(settings(CONNECTOR_ACK_TIMEOUT_MS="100"), FakeProducer("raise")) as c:
            resp = await c.post("/webhooks/gameball", data=GB_BODY, headers=gb_headers())
            assert resp.status == 503
            assert "bridge_spool_records" not in await (await c.get("/metrics")).text()

    run(go)
