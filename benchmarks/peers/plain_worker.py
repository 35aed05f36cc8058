"""The worker's job with no framework: benchmarks/pipeline.py's `plain` peer (aiokafka + rocksdict).

    .venv/bin/python benchmarks/peers/plain_worker.py BROKER RAW_TOPIC OUT_PREFIX EXPECTED_RAW
        STATE_DIR [--kafka-pid PID]

Two asyncio loops in one process, like the worker's two agents:

* raw topic → `connector.streams.normalize.normalize` → `<prefix>.events` / `.webhooks.dlq`,
  batches of up to 500, every ack awaited before the batch's offsets are committed;
* `<prefix>.events` → `connector.streams.ledger.LedgerStep` per event (serialize=False, as the
  worker's batches) → outputs acked, then each changed member record once per batch to
  `<prefix>-members-changelog` (the event's partition) and acked, then one RocksDB write batch
  (rocksdict, raw mode, the members-table bytes of connector/streams/state_format.py), then the
  offsets: the worker's at-least-once order.

Stops by itself when it has read EXPECTED_RAW raw records and applied every event it produced,
and prints one JSON line: counts, and its own CPU (/proc) from the first raw record.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.peers.common import (  # noqa: E402
    PeerEvent,
    PeerMessage,
    Progress,
    StoreMembers,
    topic_names,
)
from connector.avro import default_codec  # noqa: E402
from connector.domain.ledger import DEFAULT_MEMORY  # noqa: E402
from connector.raw import ConsumedRecord  # noqa: E402
from connector.streams.ledger import LedgerStep  # noqa: E402
from connector.streams.members import Cached, stored_value  # noqa: E402
from connector.streams.metrics import WorkerMetrics  # noqa: E402
from connector.streams.normalize import normalize  # noqa: E402
from connector.streams.partitioner import CachedPartitioner  # noqa: E402
from connector.streams.state_format import record_key  # noqa: E402

BATCH_MAX = 500  # as connector/streams/agents.py


def changelog_topic(out_prefix: str) -> str:
    return f"{out_prefix}-plain-members-changelog"


async def _ensure_changelog(broker: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        topic = NewTopic(name, partitions, 1, topic_configs={"cleanup.policy": "compact"})
        await admin.create_topics([topic])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def _assign_all(consumer: Any, topic: str) -> list[Any]:
    from aiokafka import TopicPartition

    for _ in range(100):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            break
        await consumer._client.force_metadata_update()  # a topic made a moment ago
        await asyncio.sleep(0.1)
    else:
        raise SystemExit(f"topic {topic} not found")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    return tps


async def run(
    broker: str, raw_topic: str, out_prefix: str, progress: Progress, state_dir: Path
) -> None:
    import rocksdict
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    codec = default_codec()
    names = topic_names(out_prefix)
    changelog = changelog_topic(out_prefix)
    producer = AIOKafkaProducer(
        bootstrap_servers=broker, acks="all", linger_ms=0, partitioner=CachedPartitioner()
    )

    def consumer(group: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=broker,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    raw_consumer = consumer(f"{out_prefix}-plain-normalize")
    events_consumer = consumer(f"{out_prefix}-plain-ledger")
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    db = rocksdict.Rdict(str(state_dir / "members"), options=options)
    await producer.start()
    await raw_consumer.start()
    await events_consumer.start()
    try:
        await _assign_all(raw_consumer, raw_topic)
        partitions = len(await _assign_all(events_consumer, names["events"]))
        await _ensure_changelog(broker, changelog, partitions)
        normalized = asyncio.Event()

        async def normalize_loop() -> None:
            while progress.raw < progress.expected_raw:
                batch = await raw_consumer.getmany(timeout_ms=200, max_records=BATCH_MAX)
                if not batch:
                    continue
                progress.first_raw()
                acks = []
                for msgs in batch.values():
                    for m in msgs:
                        record = ConsumedRecord(
                            m.key, m.value, list(m.headers or ()), m.topic, m.partition, m.offset
                        )
                        result = normalize(record, codec)
                        progress.raw += 1
                        if result.dead_letter is not None:
                            progress.dead_normalize += 1
                            dl = result.dead_letter
                            acks.append(
                                await producer.send(
                                    names["dlq"],
                                    key=dl.delivery_id.encode(),
                                    value=codec.encode(dl),
                                )
                            )
                        for event, payload in result.events:
                            progress.events += 1
                            acks.append(
                                await producer.send(
                                    names["events"], key=event.member_key.encode(), value=payload
                                )
                            )
                await asyncio.gather(*acks)  # durable before the batch's offsets commit
                await raw_consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in batch.items()})
            normalized.set()

        members = StoreMembers(db.get)
        step = LedgerStep(
            codec,
            WorkerMetrics(),
            members,  # type: ignore[arg-type]
            {role: names[role] for role in ("ledger", "balances", "tiers")},  # type: ignore[misc]
            memory=DEFAULT_MEMORY,
        )

        async def ledger_loop() -> None:
            while not (normalized.is_set() and progress.done):
                batch = await events_consumer.getmany(timeout_ms=50, max_records=BATCH_MAX)
                if not batch:
                    continue
                states: dict[str, Cached] = {}
                owner: dict[str, int] = {}  # record key -> partition of the event that wrote it
                acks = []
                for msgs in batch.values():
                    for m in msgs:
                        event = PeerEvent(
                            PeerMessage(
                                m.key,
                                m.value,
                                list(m.headers or ()),
                                m.topic,
                                m.partition,
                                m.offset,
                            )
                        )
                        written, records, dl = step(event, states, serialize=False)  # type: ignore[arg-type]
                        progress.ledger_seen += 1
                        if dl is not None:
                            progress.dead_ledger += 1
                            acks.append(
                                await producer.send(
                                    names["dlq"],
                                    key=dl.delivery_id.encode(),
                                    value=codec.encode(dl),
                                )
                            )
                        for key, _ in written:
                            owner[key] = m.partition
                        for topic, kb, value in records:
                            acks.append(await producer.send(str(topic), key=kb, value=value))
                await asyncio.gather(*acks)  # outputs durable before their dedupe marks
                rows = [(record_key(k), p, stored_value(states[k])) for k, p in owner.items()]
                await asyncio.gather(
                    *[
                        await producer.send(changelog, key=kb, value=vb, partition=p)
                        for kb, p, vb in rows
                    ]
                )
                wb = rocksdict.WriteBatch(raw_mode=True)
                for kb, _, vb in rows:
                    if vb is None:
                        wb.delete(kb)
                    else:
                        wb.put(kb, vb)
                db.write(wb)
                await events_consumer.commit(
                    {tp: msgs[-1].offset + 1 for tp, msgs in batch.items()}
                )
            progress.finish()

        await asyncio.gather(normalize_loop(), ledger_loop())
    finally:
        await raw_consumer.stop()
        await events_consumer.stop()
        await producer.stop()
        db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("broker")
    parser.add_argument("raw_topic")
    parser.add_argument("out_prefix")
    parser.add_argument("expected_raw", type=int)
    parser.add_argument("state_dir")
    parser.add_argument("--kafka-pid", type=int)
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    progress = Progress(args.expected_raw, kafka_pid=args.kafka_pid)
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    # asyncio's default loop, as the worker's (Faust's) loop: no uvloop
    asyncio.run(run(args.broker, args.raw_topic, args.out_prefix, progress, state_dir))
    print(progress.report(engine="aiokafka + rocksdict", processing_guarantee="at-least-once"))
    return 0 if progress.done else 1


if __name__ == "__main__":
    raise SystemExit(main())
