"""Table recovery: Faust's, with two changes (a flow fix and a bulk changelog restore).

Faust rebuilds a table partition by feeding every changelog record through its consumer, its
changelog queue and one coroutine step per record: ~7,000 records/s on our 2-core machine
(`benchmarks/pipeline.py`), so a worker that lost its data dir needs minutes for a few million
members before it answers. `BulkRestoreRecovery` reads the missing changelog range of each
*active* partition first, with a plain aiokafka consumer of its own, into the partition's
RocksDB store through the store's own `apply_changelog_batch` (one write batch per fetch, then
the offset reached). Faust's own recovery then starts from those offsets and finds nothing (or
only what arrived since) left to read. Standby partitions keep Faust's path: they do not hold up
readiness. The hook it runs in is `faust_compat.ActiveOffsetsHookRecovery`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from faust.tables.base import Collection
from faust.tables.recovery import Recovery
from faust.types import TP, AppT, CollectionT, StoreT
from faust.types.enums import ProcessingGuarantee
from mode.utils.times import want_seconds

from connector.streams.changelog import apply_changelog, changelog_event
from connector.streams.faust_compat import ActiveOffsetsHookRecovery, RecoveryTableManager

log = logging.getLogger("connector.worker")

STALL_SECONDS = 10.0  # no progress for this long: leave the rest to Faust's own recovery
BUDGET_SHARE = 0.75  # of Faust's broker_request_timeout, which bounds the step we run in
FETCH_RECORDS = 20_000


class SeekBeforeResumeRecovery(Recovery):
    """Faust's table recovery, with the stream flow stopped while partitions seek back.

    faust-streaming 0.15.3 (`Recovery.on_recovery_completed`) resumes the newly assigned stream
    partitions and only then seeks them to their committed offsets, while the consumer's flow
    is already running (recovery resumed it to read changelogs). A fetch that lands in between
    delivers records from before the seek and moves Faust's read offset past them; the records
    re-fetched from the committed offset are then dropped as "already read" although nothing
    processed them. Seen after `kill -9` of a worker: the survivor silently skipped the first
    records of the partitions it took over, and their offsets were never committed. Stopping
    the flow first makes the seek happen with nothing in flight; Faust resumes the flow itself
    at the end of `on_recovery_completed`.
    """

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        self.app.consumer.stop_flow()
        await super().on_recovery_completed(generation_id)


class BulkRestoreRecovery(ActiveOffsetsHookRecovery, SeekBeforeResumeRecovery):
    """`SeekBeforeResumeRecovery` that bulk-restores active changelog partitions first."""

    async def after_active_offsets(
        self,
        tps: set[TP],
        offsets: MutableMapping[TP, int],
        *,
        highwaters: Mapping[TP, int],
        tables: Mapping[TP, CollectionT],
        interrupted: Callable[[], bool],
    ) -> None:
        todo = {
            tp: (offsets[tp], last)
            for tp in tps
            if (last := highwaters.get(tp)) is not None and last > offsets[tp]
        }
        stores = {tp: store for tp in todo if (store := _rocksdb_store(tables[tp])) is not None}
        todo = {tp: todo[tp] for tp in stores}
        if not todo:
            return
        # Faust runs this step under broker_request_timeout and treats running out of it as
        # the recovery service stopping; what is not restored by then Faust's loop reads.
        budget = BUDGET_SHARE * want_seconds(self.app.conf.broker_request_timeout)
        try:
            await bulk_restore(
                _bootstrap(self.app),
                stores,
                todo,
                isolation_level=_isolation_level(self.app),
                client_id=f"{self.app.conf.id}-bulk-restore",
                deadline=time.monotonic() + budget,
                interrupted=interrupted,
                progress=lambda tp, offset: offsets.__setitem__(tp, max(offsets[tp], offset)),
            )
        except (KafkaError, OSError) as exc:  # e.g. the broker went away meanwhile
            log.warning(
                "bulk restore failed (%s: %s); Faust's recovery reads the changelog",
                type(exc).__name__,
                exc,
            )


class ConnectorTableManager(RecoveryTableManager):
    """Faust's TableManager with `BulkRestoreRecovery`."""

    recovery_class = BulkRestoreRecovery


def _rocksdb_store(table: CollectionT) -> StoreT | None:
    """The table's Faust RocksDB store, or None (the memory store keeps Faust's recovery)."""
    try:
        from faust.stores.rocksdb import Store as RocksDBStore
    except ImportError:  # pragma: no cover - faust without its rocksdb store module
        return None
    store = cast(Collection, table).data
    return store if isinstance(store, RocksDBStore) else None


def _isolation_level(app: AppT) -> str:
    eos = app.conf.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE
    return "read_committed" if eos else "read_uncommitted"


def _bootstrap(app: AppT) -> list[str]:
    return [f"{url.host}:{url.port or 9092}" for url in app.conf.broker]


async def bulk_restore(
    bootstrap: list[str],
    stores: Mapping[TP, StoreT[Any, Any]],
    ranges: Mapping[TP, tuple[int, int]],
    *,
    isolation_level: str,
    client_id: str = "loyalty-connector-bulk-restore",
    deadline: float | None = None,
    interrupted: Callable[[], bool] | None = None,
    progress: Callable[[TP, int], None] | None = None,
) -> dict[TP, int]:
    """Read each changelog partition's records after `start` up to `last` into its store.

    `stores[tp]`: a Faust store (`StoreT`); records go in with its `apply_changelog_batch`.

    `ranges[tp] = (start, last)`: Faust's convention, the last offset already in the store (-1
    for none) and the last offset to read (the highwater minus one). Returns, per partition,
    the last offset applied (or stepped over: transaction markers, aborted records), never past
    `last`, so Faust's consistency check (offset <= highwater) holds.

    Stops early, with what it has, at `deadline` (time.monotonic()), when `interrupted()` (a
    new rebalance) or after STALL_SECONDS without progress; `progress(tp, offset)` is called
    as each partition advances, so even a cancelled restore leaves its progress recorded.
    """
    started = time.monotonic()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation_level,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_wait_ms=100,
        auto_offset_reset="earliest",
    )
    reached: dict[TP, int] = {}
    records = 0
    await consumer.start()
    try:
        parts = {TopicPartition(tp.topic, tp.partition): tp for tp in ranges}
        consumer.assign(list(parts))
        for atp, tp in parts.items():
            consumer.seek(atp, max(0, ranges[tp][0] + 1))
        pending = set(parts)
        last_progress = time.monotonic()
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=FETCH_RECORDS)
            progressed = False
            for atp, msgs in batch.items():
                tp = parts[atp]
                start, last = ranges[tp]
                keep = [m for m in msgs if m.offset <= last]
                if keep:
                    _write(stores[tp], tp, keep)
                    reached[tp] = keep[-1].offset
                    records += len(keep)
                    progressed = True
            for atp in list(pending):
                tp = parts[atp]
                position = await consumer.position(atp)
                if position - 1 > reached.get(tp, ranges[tp][0]):
                    # markers/aborted records stepped over count as read, up to `last`
                    reached[tp] = min(position - 1, ranges[tp][1])
                    progressed = True
                if tp in reached and progress is not None:
                    progress(tp, reached[tp])
                if reached.get(tp, ranges[tp][0]) >= ranges[tp][1]:
                    pending.discard(atp)
            if not pending:
                break
            if interrupted is not None and interrupted():
                log.info("bulk restore: a new rebalance started; stopping")
                break
            if deadline is not None and time.monotonic() >= deadline:
                log.warning(
                    "bulk restore: time budget used up with %d partition(s) to go; "
                    "Faust's recovery reads the rest",
                    len(pending),
                )
                break
            if progressed:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_SECONDS:
                log.warning(
                    "bulk restore: no progress for %.0f s on %d partition(s); "
                    "Faust's recovery reads the rest",
                    STALL_SECONDS,
                    len(pending),
                )
                break
            await asyncio.sleep(0)  # let the web server and heartbeats run
    finally:
        await consumer.stop()
    took = time.monotonic() - started
    log.info(
        "bulk restore: %d changelog records into %d partition(s) in %.2f s (%.0f records/s)",
        records,
        len(ranges),
        took,
        records / took if took > 0 else 0.0,
    )
    return reached


def _write(store: StoreT[Any, Any], tp: TP, msgs: list[ConsumerRecord[bytes, bytes]]) -> None:
    """One write batch, then the persisted offset: the store's own apply_changelog_batch."""
    app = store.app
    apply_changelog(
        store,
        [changelog_event(app, tp, m.offset, m.key, m.value, m.timestamp / 1000) for m in msgs],
    )


__all__ = [
    "BulkRestoreRecovery",
    "ConnectorTableManager",
    "SeekBeforeResumeRecovery",
    "bulk_restore",
]
