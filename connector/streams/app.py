"""The Faust app, built once per worker by `create_app`: configuration, topics, the members table,
then the agents (agents.py) and the web views (views.py).

At-least-once (default): the ledger works on batches; it sends a batch's outputs and waits for
Kafka's acks *before* writing the members table, so a crash can only cause re-processing of
events whose table write never happened (their outputs are re-sent with the same ids), never an
output lost behind an already-written dedupe mark. `exactly_once` puts outputs, changelog and
offsets in one Kafka transaction instead. Faust internals are used in `faust_compat` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faust
from faust.types import AppT, TableT, TopicT

from connector.avro import AvroCodec
from connector.registry import codec_for
from connector.settings import Settings
from connector.streams.agents import BATCH_MAX, BATCH_WITHIN, batches, register_agents
from connector.streams.faust_compat import install_fast_wait_first, set_fetch_max_wait
from connector.streams.freshness import Freshness
from connector.streams.members import StateCache, members_table
from connector.streams.metrics import WorkerMetrics
from connector.streams.partitioner import CachedPartitioner
from connector.streams.recovery import ConnectorTableManager
from connector.streams.views import register_views


@dataclass
class ConnectorApp:
    """The Faust app with its topics and table, as built by `create_app`."""

    app: AppT
    settings: Settings
    codec: AvroCodec
    metrics: WorkerMetrics
    members: TableT[bytes, bytes]
    topics: dict[str, TopicT]
    freshness: Freshness = field(default_factory=Freshness)
    member_cache: StateCache = field(default_factory=lambda: StateCache(0))  # set by the agents


# The name this class had before `ConnectorApp` (it shadowed `faust.Worker`, the process
# runner): benchmarks/faust_floor.py still imports it.
Worker = ConnectorApp


# How long a fetch waits on the broker for partitions with no new data (Kafka's Java consumer:
# 500 ms). Faust's 1500 ms held back partitions whose buffer was drained (faust_compat, 6).
FETCH_MAX_WAIT_MS = 100


def faust_broker(settings: Settings) -> list[str]:
    return [f"kafka://{s}" for s in settings.bootstrap_servers.split(",")]


def faust_app(settings: Settings) -> faust.App:
    """The Faust app with the worker's configuration, before agents, tables and views."""
    data_dir = settings.data_dir.resolve() / f"{settings.app_id}-{settings.web_port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=faust_broker(settings),
        store="rocksdb://" if settings.table_store == "rocksdb" else "memory://",
        datadir=str(data_dir),
        processing_guarantee=settings.processing_guarantee,
        table_standby_replicas=settings.standby_replicas,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_advertised_host,
        canonical_url=f"http://{settings.web_advertised_host}:{settings.web_port}",
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        stream_recovery_delay=0.0,
        producer_acks=-1,
        web_in_thread=False,
        # Faust's /table pages read any table key over HTTP, without our authentication:
        # off unless asked for (CONNECTOR_FAUST_TABLE_PAGES; faust-streaming >= 0.15.0).
        web_tables_enabled=settings.faust_table_pages,
        TableManager=ConnectorTableManager,
        producer_partitioner=CachedPartitioner(),
        loghandlers=[],
    )

    def consumer_tweaks(*_: object, **__: object) -> None:
        # faust_compat uses 6 and 7; both idempotent, and the consumer exists by the first
        # assignment
        set_fetch_max_wait(app, FETCH_MAX_WAIT_MS)
        install_fast_wait_first(app.consumer)

    app.on_partitions_assigned.connect(consumer_tweaks)
    return app


def connector_topics(app: AppT, settings: Settings) -> dict[str, TopicT]:
    """The worker's topics by role (raw, events, ledger, balances, tiers, dlq)."""
    names, n = settings.topics, settings.partitions
    return {
        "raw": app.topic(names.raw, partitions=n),
        "events": app.topic(names.events, partitions=n),
        "ledger": app.topic(names.ledger, partitions=n),
        "balances": app.topic(names.balances, partitions=n, compacting=True),
        "tiers": app.topic(names.tiers, partitions=n, compacting=True),
        "dlq": app.topic(names.dlq, partitions=n),
    }


def create_app(settings: Settings) -> ConnectorApp:
    codec = codec_for(settings)
    app = faust_app(settings)
    topics = connector_topics(app, settings)
    connector = ConnectorApp(
        app, settings, codec, WorkerMetrics(), members_table(app, settings), topics
    )
    register_agents(connector)
    register_views(connector)

    return connector


__all__ = [
    "BATCH_MAX",
    "BATCH_WITHIN",
    "ConnectorApp",
    "Worker",
    "WorkerMetrics",
    "batches",
    "connector_topics",
    "create_app",
    "faust_app",
    "faust_broker",
]
