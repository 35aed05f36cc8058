"""The worker's job as a Quix Streams app: benchmarks/pipeline.py's `quix` peer.

    .venv/bin/python benchmarks/peers/quix_worker.py BROKER RAW_TOPIC OUT_PREFIX EXPECTED_RAW
        STATE_DIR [--exactly-once] [--kafka-pid PID]

Two dataframes in one Application, like the worker's two agents in one process:

* raw topic → `connector.streams.normalize.normalize` (the worker's function) → `<prefix>.events`
  (key: member key) or `<prefix>.webhooks.dlq`;
* `<prefix>.events` → `connector.streams.ledger.LedgerStep` (the worker's per-event step: decode,
  erasure, dedupe, `connector.domain.ledger.apply`, Avro encodes, dead letters) with Quix's
  RocksDB state keyed by member key holding the members-table records byte for byte
  (connector/streams/state_format.py) → `<prefix>.ledger`, `.balances`, `.tiers`, `.webhooks.dlq`.

Quix's defaults otherwise (commit every 5 s, changelog topics on, at-least-once unless
--exactly-once). Quix goes message by message, so each event's member record is serialized
(`serialize=True`) where the worker's batches write each member once per batch. The app stops
itself when it has read EXPECTED_RAW raw records and applied every event it produced, and
prints one JSON line: counts, and its own CPU (/proc, all threads) from the first raw record.
Needs the `bench` extra (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import logging
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
from connector.streams.metrics import WorkerMetrics  # noqa: E402
from connector.streams.normalize import normalize  # noqa: E402
from connector.streams.state_format import record_key  # noqa: E402

# An output of either step: (topic role, key, value; None: a tombstone)
Output = tuple[str, bytes, bytes | None]


def _same(value: Any) -> Any:
    """State values are the members-table bytes already: stored as they are."""
    return value


def build_app(
    broker: str,
    raw_topic: str,
    out_prefix: str,
    progress: Progress,
    state_dir: str,
    *,
    exactly_once: bool,
) -> Any:
    from quixstreams import Application, message_context
    from quixstreams.models.serializers import Serializer
    from quixstreams.state.rocksdb import RocksDBOptions

    class OutputValue(Serializer):
        """The value of an `Output` (its key and topic come from the same tuple)."""

        def __call__(self, value: Output, ctx: Any) -> bytes | None:  # type: ignore[override]
            return value[2]

    codec = default_codec()
    names = topic_names(out_prefix)
    app = Application(
        broker_address=broker,
        consumer_group=f"{out_prefix}-quix",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once" if exactly_once else "at-least-once",
        state_dir=state_dir,
        rocksdb_options=RocksDBOptions(dumps=_same, loads=_same),
        loglevel="WARNING",
    )

    def output_topic(name: str) -> Any:
        return app.topic(
            name,
            key_serializer="bytes",
            value_serializer=OutputValue(),
            key_deserializer="bytes",
            value_deserializer="bytes",
        )

    raw = app.topic(raw_topic, key_deserializer="bytes", value_deserializer="bytes")
    outputs = {role: output_topic(names[role]) for role in ("events", "ledger", "balances")}
    outputs |= {role: output_topic(names[role]) for role in ("tiers", "dlq")}
    by_name = {names[role]: role for role in outputs}

    def route(value: Output, key: Any, timestamp: int, headers: Any) -> Any:
        return outputs[value[0]]

    def normalize_one(value: bytes, key: bytes, timestamp: int, headers: Any) -> list[Output]:
        progress.first_raw()
        ctx = message_context()
        record = ConsumedRecord(
            key, value, list(headers or ()), ctx.topic, ctx.partition, ctx.offset
        )
        result = normalize(record, codec)
        progress.raw += 1
        out: list[Output] = []
        if result.dead_letter is not None:
            progress.dead_normalize += 1
            dl = result.dead_letter
            out.append(("dlq", dl.delivery_id.encode(), codec.encode(dl)))
        for event, payload in result.events:
            out.append(("events", event.member_key.encode(), payload))
        progress.events += len(result.events)
        if progress.done:  # the last raw records made no event
            progress.finish()
            app.stop()
        return out

    members = StoreMembers()
    step = LedgerStep(
        codec,
        WorkerMetrics(),
        members,  # type: ignore[arg-type]
        {role: names[role] for role in ("ledger", "balances", "tiers")},  # type: ignore[misc]
        memory=DEFAULT_MEMORY,
    )

    def ledger_one(value: bytes, key: bytes, timestamp: int, headers: Any, state: Any) -> Any:
        ctx = message_context()
        event = PeerEvent(
            PeerMessage(key, value, list(headers or ()), ctx.topic, ctx.partition, ctx.offset)
        )
        members.get = state.get
        written, records, dl = step(event, {}, serialize=True)  # type: ignore[arg-type]
        progress.ledger_seen += 1
        out: list[Output] = []
        if dl is not None:
            progress.dead_ledger += 1
            out.append(("dlq", dl.delivery_id.encode(), codec.encode(dl)))
        for topic, kb, v in records:
            out.append((by_name[str(topic)], kb, v))
        for k, stored in written:
            if stored is None:
                state.delete(record_key(k))
            else:
                state.set(record_key(k), stored)
        if progress.done:
            progress.finish()
            app.stop()
        return out

    sdf = app.dataframe(raw)
    sdf = sdf.apply(normalize_one, metadata=True, expand=True)
    sdf.to_topic(route, key=lambda v: v[1])

    ledger = app.dataframe(outputs["events"])
    ledger = ledger.apply(ledger_one, stateful=True, metadata=True, expand=True)
    ledger.to_topic(route, key=lambda v: v[1])
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("broker")
    parser.add_argument("raw_topic")
    parser.add_argument("out_prefix")
    parser.add_argument("expected_raw", type=int)
    parser.add_argument("state_dir")
    parser.add_argument("--exactly-once", action="store_true")
    parser.add_argument("--kafka-pid", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import quixstreams

    progress = Progress(args.expected_raw, kafka_pid=args.kafka_pid)
    app = build_app(
        args.broker,
        args.raw_topic,
        args.out_prefix,
        progress,
        args.state_dir,
        exactly_once=args.exactly_once,
    )
    app.run()
    print(
        progress.report(
            engine=f"quixstreams {quixstreams.__version__}",
            processing_guarantee="exactly-once" if args.exactly_once else "at-least-once",
        ),
        flush=True,
    )
    return 0 if progress.done else 1


if __name__ == "__main__":
    raise SystemExit(main())
