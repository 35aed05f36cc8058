"""The members table on Faust's real RocksDB store (no broker: the producer is a stand-in).

What the ledger relies on: a batch's records go to the changelog partition of the event that
wrote them and reach the store only once Kafka acked them, with each partition's offset; a read
sees a member in its own partition whichever event Faust left current; the bulk restore writes
values, tombstones and the offset reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import faust
import pytest
from faust.events import Event
from faust.types import TP, AppT, EventT, Message, RecordMetadata

from connector.domain.ledger import MemberState
from connector.models import Provider
from connector.streams.faust_compat import set_current_event
from connector.streams.members import Members
from connector.streams.recovery import _write
from connector.streams.state_format import dump_state

T = datetime(2026, 1, 2, tzinfo=UTC)


def state(customer: str) -> MemberState:
    return MemberState(
        member_key=f"wix:default:{customer}",
        provider=Provider.WIX,
        tenant="default",
        customer_id=customer,
        updated_at=T,
        as_of=T,
        last_event_id="",
    )


class Producer:
    """Records sends; each returns a future the test resolves (Kafka's ack) or fails."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.acks: list[asyncio.Future[RecordMetadata]] = []

    async def send(self, **record: Any) -> asyncio.Future[RecordMetadata]:
        self.sent.append(record)
        fut: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        self.acks.append(fut)
        return fut

    def ack_all(self, first_offset: int = 100) -> None:
        for i, (record, fut) in enumerate(zip(self.sent, self.acks, strict=True)):
            tp = TP(record["topic"], record["partition"])
            fut.set_result(RecordMetadata(tp.topic, tp.partition, tp, first_offset + i))


class Worker:
    """What Members uses of the Faust app: its producer (a stand-in) and itself for events."""

    def __init__(self, app: faust.App) -> None:
        self.app, self.producer = app, Producer()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[faust.App]:
    app = faust.App(
        "members-test",
        broker="kafka://127.0.0.1:1",  # never contacted
        store="rocksdb://",
        datadir=str(tmp_path),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
    )
    yield app


def table(app: faust.App) -> Any:
    return app.Table("members", default=None, partitions=4, key_type=bytes, value_type=bytes)


def event(app: AppT, partition: int, offset: int = 0) -> EventT:
    message = Message("events", partition, offset, 0.0, 0, None, b"k", b"v", None)
    return Event(app, b"k", b"v", None, message)


def test_a_batch_reaches_the_store_in_its_events_partitions_only_after_the_acks(
    app: faust.App,
) -> None:
    members_table = table(app)
    worker = Worker(app)
    members = Members(cast(AppT, worker), members_table)
    changelog = members_table.changelog_topic.get_topic_name()
    rows = [
        (b"wix:default:a", event(app, 1), dump_state(state("a"))),
        (b"wix:default:b", event(app, 3), dump_state(state("b"))),
        (b"wix:default:c", event(app, 1), dump_state(state("c"))),
    ]

    async def run() -> None:
        task = asyncio.ensure_future(members.write_batch(rows))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()  # waiting for Kafka
        assert members.read("wix:default:a", event(app, 1)) is None  # nothing written yet
        worker.producer.ack_all(first_offset=100)
        await task

    asyncio.run(run())
    assert [(r["topic"], r["key"], r["partition"]) for r in worker.producer.sent] == [
        (changelog, b"wix:default:a", 1),
        (changelog, b"wix:default:b", 3),
        (changelog, b"wix:default:c", 1),
    ]
    assert worker.producer.sent[0]["value"] == dump_state(state("a"))
    assert members.read("wix:default:a", event(app, 1)) == state("a")
    assert members.read("wix:default:b", event(app, 3)) == state("b")
    store = members_table.data
    assert store.persisted_offset(TP(changelog, 1)) == 102
    assert store.persisted_offset(TP(changelog, 3)) == 101
    assert store.persisted_offset(TP(changelog, 0)) is None


def test_a_failed_ack_leaves_the_store_as_it_was(app: faust.App) -> None:
    members_table = table(app)
    worker = Worker(app)
    members = Members(cast(AppT, worker), members_table)

    async def run() -> None:
        task = asyncio.ensure_future(
            members.write_batch([(b"wix:default:a", event(app, 2), dump_state(state("a")))])
        )
        for _ in range(5):
            await asyncio.sleep(0)
        worker.producer.acks[0].set_exception(RuntimeError("broker gone"))
        with pytest.raises(RuntimeError, match="broker gone"):
            await task

    asyncio.run(run())
    assert members.read("wix:default:a", event(app, 2)) is None


def test_a_read_looks_in_the_members_partition_whatever_event_is_current(
    app: faust.App,
) -> None:
    members_table = table(app)
    worker = Worker(app)
    members = Members(cast(AppT, worker), members_table)

    async def run() -> None:
        task = asyncio.ensure_future(
            members.write_batch([(b"wix:default:a", event(app, 2), dump_state(state("a")))])
        )
        await asyncio.sleep(0)
        worker.producer.ack_all()
        await task

    asyncio.run(run())
    members.read("wix:default:zz", event(app, 0))  # leaves an event of partition 0 current
    assert members.read("wix:default:a", event(app, 2)) == state("a")
    assert members.lookup("wix:default:a") == state("a")  # the member query: any partition


def test_the_bulk_restore_write_applies_values_tombstones_and_the_offset(app: faust.App) -> None:
    members_table = table(app)
    store = members_table.data
    changelog = members_table.changelog_topic.get_topic_name()
    tp = TP(changelog, 2)

    class Record:
        def __init__(self, offset: int, key: bytes, value: bytes | None) -> None:
            self.offset, self.key, self.value, self.timestamp = offset, key, value, 1000

    _write(store, tp, [Record(10, b"a", b"1"), Record(11, b"b", b"2")])  # type: ignore[list-item]
    _write(store, tp, [Record(12, b"a", None)])  # type: ignore[list-item]
    assert store.persisted_offset(tp) == 12
    set_current_event(event(app, 2))
    assert members_table.get(b"a") is None  # the tombstone deleted it
    assert members_table.get(b"b") == b"2"


def test_a_tombstone_in_a_batch_deletes_the_record_and_the_marker_stays(app: faust.App) -> None:
    from connector.domain.erasure import Erasure, Reason
    from connector.streams.state_format import dump_erasure, erasure_key

    members_table = table(app)
    worker = Worker(app)
    members = Members(cast(AppT, worker), members_table)
    marker = Erasure(
        datetime(2024, 5, 1, tzinfo=UTC),
        datetime(2024, 5, 1, tzinfo=UTC),
        Reason.FORGET,
        "forget:1",
    )

    async def run(rows: list[tuple[bytes, EventT, bytes | None]]) -> None:
        task = asyncio.ensure_future(members.write_batch(rows))
        await asyncio.sleep(0)
        worker.producer.ack_all()
        await task

    asyncio.run(run([(b"wix:default:a", event(app, 2), dump_state(state("a")))]))
    assert members.read("wix:default:a", event(app, 2)) == state("a")
    worker.producer.acks.clear()
    worker.producer.sent.clear()
    erasure = [
        (b"wix:default:a", event(app, 2), None),
        (erasure_key("wix:default:a"), event(app, 2), dump_erasure(marker)),
    ]
    asyncio.run(run(erasure))
    assert worker.producer.sent[-2]["value"] is None  # the changelog tombstone
    assert members.read("wix:default:a", event(app, 2)) is None
    assert members.lookup("wix:default:a") is None
    assert members.lookup_erasure("wix:default:a") == marker
    assert members.read_erasure("wix:default:a", event(app, 2)) == marker
    assert members.lookup_erasure("wix:default:b") is None
