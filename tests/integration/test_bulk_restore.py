"""The bulk changelog restore on a real broker: what it writes into RocksDB and where it stops.

The worker-level check (a fresh data dir answers the same balances) is in
test_worker_cluster.py; here the edges: tombstones, a start offset already in the store, the
`last` bound Faust's consistency check needs, and read_committed over transaction markers and
an aborted transaction (exactly_once changelogs).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from connector.streams.recovery import bulk_restore

OFFSET_KEY = b"__faust\x00offset__"


class Store:
    """A real Faust RocksDB store (the members table's), in `root`; what bulk_restore writes to."""

    def __init__(self, root: Path) -> None:
        app = faust.App(
            "test-bulk-restore", broker="kafka://unused:1", store="rocksdb://", datadir=root
        )
        self.table = app.Table("members", partitions=2, key_type=bytes, value_type=bytes)
        self.store = self.table.data

    def db(self, partition: int) -> Any:
        return self.store._db_for_partition(partition)  # the test reads the DB as it is on disk

    def contents(self, partition: int) -> dict[bytes, bytes]:
        return dict(self.db(partition).items())


async def _topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


def test_bulk_restore_writes_values_tombstones_and_offsets(
    kafka, topic_prefix: str, tmp_path: Path
) -> None:
    topic = f"{topic_prefix}-members-changelog"

    async def run() -> tuple[dict[TP, int], Store]:
        await _topic(kafka.bootstrap, topic, 2)
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(3000):
                await producer.send(
                    topic, f"v{i}".encode(), key=f"k{i % 700}".encode(), partition=0
                )
            await producer.send(topic, None, key=b"k5", partition=0)  # tombstone
            for i in range(10):
                await producer.send(topic, f"w{i}".encode(), key=f"j{i}".encode(), partition=1)
            await producer.flush()
        finally:
            await producer.stop()
        store = Store(tmp_path)
        store.db(0).put(b"stale", b"x")
        tp0, tp1 = TP(topic, 0), TP(topic, 1)
        # partition 0: nothing in the store yet, read to the end (3000 values + 1 tombstone:
        # offsets 0..3000); partition 1: offsets 0..3 already in the store, read only 4..6
        reached = await bulk_restore(
            [kafka.bootstrap],
            {tp0: store.store, tp1: store.store},
            {tp0: (-1, 3000), tp1: (3, 6)},
            isolation_level="read_uncommitted",
        )
        return reached, store

    reached, store = asyncio.run(run())
    assert reached == {TP(topic, 0): 3000, TP(topic, 1): 6}
    p0 = store.contents(0)
    assert p0[OFFSET_KEY] == b"3000"
    expected = {
        f"k{k}".encode(): f"v{max(i for i in range(3000) if i % 700 == k)}".encode()
        for k in range(700)
        if k != 5
    }
    assert {k: v for k, v in p0.items() if k.startswith(b"k")} == expected
    assert b"k5" not in p0 and p0[b"stale"] == b"x"
    p1 = store.contents(1)
    assert p1[OFFSET_KEY] == b"6"
    assert {k: v for k, v in p1.items() if k != OFFSET_KEY} == {
        b"j4": b"w4",
        b"j5": b"w5",
        b"j6": b"w6",
    }


def test_bulk_restore_read_committed_skips_aborted_and_steps_over_markers(
    kafka, topic_prefix: str, tmp_path: Path
) -> None:
    topic = f"{topic_prefix}-members-changelog"

    async def run() -> tuple[dict[TP, int], Store, int]:
        await _topic(kafka.bootstrap, topic, 1)
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap, transactional_id=f"{topic_prefix}-tx"
        )
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send(topic, b"committed-1", key=b"a", partition=0)
                await producer.send(topic, b"committed-1", key=b"b", partition=0)
            await producer.begin_transaction()
            await producer.send(topic, b"aborted", key=b"a", partition=0)
            await producer.send(topic, b"aborted", key=b"c", partition=0)
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send(topic, b"committed-2", key=b"b", partition=0)
        finally:
            await producer.stop()
        # offsets: 0 a, 1 b, 2 commit marker, 3 a(aborted), 4 c(aborted), 5 abort marker,
        # 6 b, 7 commit marker → highwater (end offset) 8, Faust's "last" = 7
        store = Store(tmp_path)
        tp = TP(topic, 0)
        reached = await bulk_restore(
            [kafka.bootstrap], {tp: store.store}, {tp: (-1, 7)}, isolation_level="read_committed"
        )
        return reached, store, 7

    reached, store, last = asyncio.run(run())
    assert reached == {TP(topic, 0): last}
    p0 = store.contents(0)
    assert {k: v for k, v in p0.items() if k != OFFSET_KEY} == {
        b"a": b"committed-1",
        b"b": b"committed-2",
    }
    assert int(p0[OFFSET_KEY]) == 6  # the last record written (the marker after it is skipped)


def test_bulk_restore_stops_at_its_deadline_with_progress_recorded(
    kafka, topic_prefix: str, tmp_path: Path
) -> None:
    """Faust runs the restore under a timeout: out of time, it returns what it has, consistently."""
    topic = f"{topic_prefix}-members-changelog"

    async def run() -> tuple[dict[TP, int], dict[TP, int], Store]:
        await _topic(kafka.bootstrap, topic, 1)
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(50_000):
                await producer.send(topic, b"v" * 200, key=f"k{i}".encode(), partition=0)
            await producer.flush()
        finally:
            await producer.stop()
        store, seen = Store(tmp_path), {}
        tp = TP(topic, 0)
        reached = await bulk_restore(
            [kafka.bootstrap],
            {tp: store.store},
            {tp: (-1, 49_999)},
            isolation_level="read_uncommitted",
            deadline=time.monotonic(),  # already due: one fetch round, then stop
            progress=seen.__setitem__,
        )
        return reached, seen, store

    reached, seen, store = asyncio.run(run())
    tp = TP(topic, 0)
    assert reached == seen  # the caller's offsets follow the restore as it goes
    done = reached[tp]
    assert 0 <= done < 49_999, "a 10 MB partition in one fetch round: the deadline did not bite"
    p0 = store.contents(0)
    assert int(p0[OFFSET_KEY]) == done
    assert len(p0) - 1 == done + 1  # exactly the records up to the recorded offset
