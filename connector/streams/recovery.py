"""Table recovery: Faust's, with two changes (a flow fix and a bulk changelog restore).

Faust rebuilds a table partition by feeding every changelog record through its consumer, its
changelog queue and one coroutine step per record: ~7,000 records/s on our 2-core machine
(`benchmarks/pipeline.py`), so a worker that lost its data dir needs minutes for a few million
members before it answers. `BulkRestoreRecovery` reads the missing changelog range of each
*active* partition first, with a plain aiokafka consumer of its own, straight into the
partition's RocksDB store in write batches, and records the offsets it reached, exactly as
Faust's `apply_changelog_batch` does. Faust's own recovery then starts from those offsets and
finds nothing (or only what arrived since) left to read. Standby partitions keep Faust's path:
they do not hold up readiness.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP
from mode.utils.times import want_seconds

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


class BulkRestoreRecovery(SeekBeforeResumeRecovery):
    """`SeekBeforeResumeRecovery` that bulk-restores active changelog partitions first."""

    async def _build_offsets(self, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title != "active" or not tps:
            return
        todo = {
            tp: (destination[tp], self.active_highwaters[tp])
            for tp in tps
            if self.active_highwaters.get(tp) is not None
            and self.active_highwaters[tp] > destination[tp]
            and _rocksdb_store(self.tp_to_table[tp]) is not None
        }
        if not todo:
            return
        # Faust runs this step under broker_request_timeout and treats running out of it as
        # the recovery service stopping; what is not restored by then Faust's loop reads.
        budget = BUDGET_SHARE * want_seconds(self.app.conf.broker_request_timeout)
        try:
            await self._bulk_restore(todo, destination, budget)
        except (KafkaError, OSError) as exc:  # e.g. the broker went away meanwhile
            log.warning(
                "bulk restore failed (%s: %s); Faust's recovery reads the changelog",
                type(exc).__name__,
                exc,
            )

    async def _bulk_restore(self, todo: Any, destination: Any, budget: float) -> None:
        await bulk_restore(
            _bootstrap(self.app),
            {tp: _rocksdb_store(self.tp_to_table[tp]) for tp in todo},
            todo,
            isolation_level=_isolation_level(self.app),
            client_id=f"{self.app.conf.id}-bulk-restore",
            deadline=time.monotonic() + budget,
            interrupted=self.signal_recovery_start.is_set,
            progress=lambda tp, offset: destination.__setitem__(tp, max(destination[tp], offset)),
        )


class ConnectorTableManager(TableManager):
    """Faust's TableManager with `BulkRestoreRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = BulkRestoreRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


def _rocksdb_store(table: Any) -> Any:
    """The table's Faust RocksDB store, or None (the memory store keeps Faust's recovery)."""
    store = table.data
    if hasattr(store, "_db_for_partition") and hasattr(store, "set_persisted_offset"):
        return store
    return None


def _isolation_level(app: Any) -> str:
    eos = str(app.conf.processing_guarantee.value) == "exactly_once"
    return "read_committed" if eos else "read_uncommitted"


def _bootstrap(app: Any) -> list[str]:
    return [f"{url.host}:{url.port or 9092}" for url in app.conf.broker]


async def bulk_restore(
    bootstrap: list[str],
    stores: Mapping[TP, Any],
    ranges: Mapping[TP, tuple[int, int]],
    *,
    isolation_level: str,
    client_id: str = "loyalty-connector-bulk-restore",
    deadline: float | None = None,
    interrupted: Callable[[], bool] | None = None,
    progress: Callable[[TP, int], None] | None = None,
) -> dict[TP, int]:
    """Read each changelog partition's records after `start` up to `last` into its store.

    `stores[tp]`: a Faust RocksDB store (`_db_for_partition`, `set_persisted_offset`).

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


def _write(store: Any, tp: TP, msgs: list[Any]) -> None:
    """One RocksDB write batch, then the persisted offset: Faust's apply_changelog_batch."""
    db = store._db_for_partition(tp.partition)
    batch = _write_batch(store)
    for m in msgs:
        if m.value is None:
            batch.delete(m.key)
        else:
            batch.put(m.key, m.value)
    db.write(batch)
    store.set_persisted_offset(tp, msgs[-1].offset)


def _write_batch(store: Any) -> Any:
    if getattr(store, "use_rocksdict", True):
        import rocksdict

        return rocksdict.WriteBatch(raw_mode=True)
    import rocksdb  # python-rocksdb, when Faust uses it instead of rocksdict

    return rocksdb.WriteBatch()


__all__ = [
    "BulkRestoreRecovery",
    "ConnectorTableManager",
    "SeekBeforeResumeRecovery",
    "bulk_restore",
]
