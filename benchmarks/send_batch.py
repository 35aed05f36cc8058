"""Microbenchmark of `OutputBatch` (connector/streams/outputs.py): CPU per record of the
worker's at-least-once outputs sent through Faust's producer one record at a time (Faust's
`Producer.send`, aiokafka's `send`, one future each, as before) and as one Kafka record batch
per topic partition (`OutputBatch.flush`), on a real broker.

    .venv/bin/python benchmarks/send_batch.py [--broker host:port] [--out PATH]

Starts its own Apache Kafka (KRaft) unless `--broker` is given. Both ways send the same 2,000
records of 250 bytes keyed by 2,000 members to an 8-partition topic with acks=all and the
worker's producer settings (faust_app), then await every ack; 8 interleaved rounds of 5
repetitions each, medians. Prints and writes JSON (default benchmarks/results/send_batch.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from connector.streams.outputs import OutputBatch  # noqa: E402

RECORDS = 2000
VALUE = b"x" * 250
KEYS = [f"gameball:default:member-{i}".encode() for i in range(2000)]


async def _per_record(app: Any, topic: str) -> None:
    acks = [
        await app.producer.send(
            topic=topic, key=k, value=VALUE, partition=None, timestamp=None, headers=None
        )
        for k in KEYS[:RECORDS]
    ]
    await asyncio.gather(*acks)


async def _batched(app: Any, topic: str) -> None:
    out = OutputBatch(app)
    for k in KEYS[:RECORDS]:
        out.add(topic, k, VALUE, None)
    await asyncio.gather(*(sent.ack for sent in await out.flush()))


async def _main(broker: str) -> dict[str, Any]:
    from connector.settings import Settings
    from connector.streams.app import faust_app

    topic = f"send-batch-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 8, 1)])
    finally:
        await admin.close()
    data_dir = tempfile.mkdtemp(prefix="bench-send-batch-data-")
    settings = Settings.from_env(
        {
            "CONNECTOR_BROKER_URL": broker,
            "CONNECTOR_APP_ID": f"send-batch-{uuid.uuid4().hex[:6]}",
            "CONNECTOR_DATA_DIR": data_dir,
        }
    )
    app = faust_app(settings)
    await app.producer.start()
    ways = {"per_record": _per_record, "output_batch": _batched}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    rate: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for way in ways.values():  # warm-up: metadata, connections, the partitioner's cache
            await way(app, topic)
        for _ in range(8):
            for name, way in ways.items():
                c, w = time.process_time(), time.perf_counter()
                for _ in range(5):
                    await way(app, topic)
                n = 5 * RECORDS
                cpu[name].append((time.process_time() - c) / n * 1e6)
                rate[name].append(n / (time.perf_counter() - w))
    finally:
        await app.producer.stop()
    return {
        "benchmark": "send_batch",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "records_per_round": 5 * RECORDS,
        "value_bytes": len(VALUE),
        "partitions": 8,
        "cpu_us_per_record": {k: round(statistics.median(v), 2) for k, v in cpu.items()},
        "records_per_s": {k: round(statistics.median(v)) for k, v in rate.items()},
        "cpu_us_per_record_runs": {k: [round(x, 2) for x in v] for k, v in cpu.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", help="use this Kafka (host:port) instead of starting one")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/send_batch.json"))
    args = parser.parse_args()
    kafka = None
    broker = args.broker
    if broker is None:
        from connector.embedded.kafka import KafkaBroker

        kafka = KafkaBroker(Path(tempfile.mkdtemp(prefix="bench-send-batch-")))
        kafka.start()
        broker = kafka.bootstrap
    try:
        result = asyncio.run(_main(broker))
    finally:
        if kafka is not None:
            kafka.stop()
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
