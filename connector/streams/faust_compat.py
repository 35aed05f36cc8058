"""Every use of faust-streaming internals (and the one of aiokafka's), in one place: what, why
no public API does it, and the version it was checked against. `tests/unit/test_faust_compat.py`
fails when one of them changes, so an upgrade fails in CI, not in production. No other module of
the package touches Faust's or aiokafka's private names (that test checks it too).

Checked against faust-streaming 0.15.3 (mode-streaming 0.7.1, aiokafka 0.14.0). Before widening
FAUST_RANGE (and pyproject's pin with it), read each use below against the new source.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Coroutine, Generator, Mapping, MutableMapping
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.streams import _current_event  # noqa: PLC2701 - use 1 below
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer, TopicPartitionGroup, TransactionManager
from faust.types import TP, AppT, CollectionT, ConsumerT, EventT
from mode.services import WaitResults

FAUST_CHECKED = "0.15.3"
FAUST_RANGE = ">=0.15.3,<0.16"  # pyproject's faust-streaming requirement (a test keeps them equal)


# -- 1. the current event --------------------------------------------------------------------
# Faust's RocksDB store reads and writes the partition DB of the *current event*
# (`faust.streams.current_event()`), and Faust sets it per event as the stream iterates. A batch
# is processed after `take_events` iterated all of it, so the current event is the batch's last,
# possibly of another partition: a read would look in the wrong partition DB and see a known
# member as new. Faust has a getter only (`current_event()`); `Stream._set_current_event` is
# private too and needs the stream. Checked: faust.streams._current_event, a
# ContextVar[Optional[weakref.ref[EventT]]] (0.15.3).


def set_current_event(event: EventT) -> None:
    """Make `event` Faust's current event, so a table read goes to its partition's store."""
    _current_event.set(weakref.ref(event))


# -- 2. the recovery service a TableManager uses ---------------------------------------------
# `TableManager.recovery` builds a plain `Recovery` into `self._recovery` on first use; there is
# no setting or constructor argument for another class. Checked (0.15.3): the class attribute
# `_recovery = None`, the `recovery` property, `Recovery(app, tables, beacon=, loop=)`, and
# `TableManager.on_stop` stopping `self._recovery`.


class RecoveryTableManager(TableManager):
    """Faust's TableManager with `recovery_class` as its recovery service."""

    recovery_class: ClassVar[type[Recovery]] = Recovery

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = self.recovery_class(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


# -- 3. a step between "offsets to read from" and reading the changelogs -----------------------
# Recovery's task (`Recovery._restart_recovery`) computes, per active changelog partition, the
# highwater (`_build_highwaters`) and the offset already in the store (`_build_offsets`, from
# `persisted_offset`), then seeks there and reads the rest record by record. The bulk restore
# must run in between, and move the start offsets past what it wrote; there is no public hook
# (the public `on_rebalance` runs before the offsets exist, inside the rebalance callback).
# Checked (0.15.3): `_build_offsets(self, consumer, tps, destination, title)` is awaited for the
# active partitions (title "active", destination `active_offsets`) under
# `broker_request_timeout`, after `_build_highwaters` filled `active_highwaters` and before
# `_seek_offsets` seeks to `active_offsets`; `tp_to_table` maps each changelog TP to its table;
# `signal_recovery_start` is set when a new rebalance restarts recovery.


class ActiveOffsetsHookRecovery(Recovery):
    """Faust's Recovery, calling `after_active_offsets` once the active start offsets are known."""

    async def _build_offsets(
        self,
        consumer: ConsumerT,
        tps: set[TP],
        destination: Counter[TP],
        title: str,
    ) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title == "active" and tps:
            await self.after_active_offsets(
                set(tps),
                destination,
                highwaters=self.active_highwaters,
                tables=self.tp_to_table,
                interrupted=self.signal_recovery_start.is_set,
            )

    async def after_active_offsets(
        self,
        tps: set[TP],
        offsets: MutableMapping[TP, int],
        *,
        highwaters: Mapping[TP, int],
        tables: Mapping[TP, CollectionT],
        interrupted: Callable[[], bool],
    ) -> None:
        """Called with the active changelog partitions and Faust's start offsets for them.

        `offsets[tp]`: the last offset already in the store (-1: none); raising it makes Faust
        read from there. `highwaters[tp]`: the last offset to read. `interrupted()`: a new
        rebalance started meanwhile. Runs within Faust's `broker_request_timeout` for the step.
        """


# -- 4. the transaction that commits a source partition's offsets ----------------------------
# Under exactly_once, `TransactionManager.commit` commits a source partition's offsets in the
# transaction of transactional id f"{app.conf.id}-{group_for_topic(topic)}-{partition}" (the
# format is `transactional_id_format`, also used to begin each assigned partition's
# transaction), and there is no public function for "the transaction of this source partition".
# Checked (0.15.3): `transactional_id_format == "{group_id}-{tpg.group}-{tpg.partition}"`, and
# `commit` builds the same id inline.


def source_transactional_id(app: AppT, topic: str, partition: int) -> str:
    """The transactional id of the transaction that commits `topic`/`partition`'s offsets."""
    tpg = TopicPartitionGroup(topic, partition, app.assignor.group_for_topic(topic))
    return TransactionManager.transactional_id_format.format(group_id=app.conf.id, tpg=tpg)


# -- 5. refreshing an aiokafka consumer's metadata ---------------------------------------------
# A consumer started before a topic was created does not know its partitions until its next
# metadata refresh (metadata_max_age_ms, 5 min by default). `AIOKafkaConsumer.topics()` asks the
# broker but keeps the answer to itself; the consumer's client has the refresh the consumer uses
# internally, `force_metadata_update()`, and nothing public reaches it. Used by the operator
# tools (export, inspect, rebuild, diff), never on the hot path. Checked (aiokafka 0.14.0):
# `AIOKafkaConsumer._client` is the AIOKafkaClient, whose `force_metadata_update()` returns an
# awaitable that resolves once the cluster metadata is refreshed.

AIOKAFKA_CHECKED = "0.14.0"


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, refreshing the consumer's metadata once if it does not know the
    topic ([] for a topic that does not exist)."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(partitions or ())]


# -- 6. the worker consumer's fetch wait ------------------------------------------------------
# Faust creates the worker's AIOKafkaConsumer with `fetch_max_wait_ms=1500`, a literal with no
# setting (faust/transport/drivers/aiokafka.py, `_create_worker_consumer`). aiokafka keeps one
# fetch in flight per broker and asks only for partitions with nothing buffered: once the
# buffered ones are drained, they wait until the fetch for the idle ones returns, up to that
# 1.5 s (benchmarks/pipeline.py: the ledger stood still 0.4-0.6 s at a time while its events
# were on the broker). Checked (faust-streaming 0.15.3, aiokafka 0.14.0): `Consumer._thread`
# is the AIOKafkaConsumerThread, whose `_ensure_consumer()` returns the started
# AIOKafkaConsumer; its `_fetcher._fetch_max_wait_ms` is read each time a fetch request is
# built (aiokafka/consumer/fetcher.py, `_get_actions_per_node`).


def set_fetch_max_wait(app: AppT, ms: int) -> bool:
    """Make the worker consumer's fetches wait at most `ms` for data; False if not started."""
    thread = getattr(app.consumer, "_thread", None)
    if thread is None:
        return False
    try:
        consumer = thread._ensure_consumer()
    except Exception:  # ConsumerNotStarted: the next assignment tries again
        return False
    fetcher = consumer._fetcher
    if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
        return False
    fetcher._fetch_max_wait_ms = ms
    return True


# -- 7. the consumer's wait for each message's delivery ----------------------------------------
# Faust's `Consumer._drain_messages` hands every fetched message to the conductor with
# `await self.wait_first(callback(message), self.suspend_flow.wait())`: mode's
# `Service.wait_first` wraps both coroutines and the service's stopped/crashed events in four
# Tasks and an `asyncio.wait`, per message. The conductor's callback nearly always finishes
# without suspending (decode, `put_nowait` into the stream's queue), so that machinery is pure
# overhead: 35-43 us per message measured against 0.1 us for a plain await (two messages per
# event here, raw and events). There is no setting for it. `install_fast_wait_first` puts a
# `wait_first` on the consumer instance (the method `_drain_messages` looks up per message):
# for exactly that call (two coroutines, no timeout, flow not suspended, service not stopping)
# it runs the callback one step; if that finishes it, the suspend wait is closed unstarted and
# the result is what mode's would be. Otherwise, or for any other call, mode's own `wait_first`
# decides, given the callback resumed where it stopped, so a full queue, a suspended flow or a
# stop behave exactly as before. Checked (faust-streaming 0.15.3, mode-streaming 0.7.1):
# `_drain_messages` calls `self.wait_first(callback(message), self.suspend_flow.wait())`,
# `Service.wait_first(*coros, timeout=None) -> WaitResults(done, results, stopped)`.


class _Resume:
    """Awaitable continuing a coroutine that already ran one step and yielded `yielded`."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self._coro, self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # CancelledError included: the coroutine decides
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resumed(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _Resume(coro, yielded)


def install_fast_wait_first(consumer: ConsumerT) -> bool:
    """Give `consumer` the per-message fast path above; False if already installed (or not a
    Faust transport consumer)."""
    if not isinstance(consumer, Consumer) or getattr(consumer, "_connector_fast_wait_first", False):
        return False
    original = consumer.wait_first

    async def wait_first(*coros: Any, timeout: Any = None) -> WaitResults:
        if (
            len(coros) != 2
            or timeout is not None
            or consumer.suspend_flow.is_set()
            or consumer.should_stop  # stopped or crashed
            or not isinstance(coros[0], Coroutine)
            or not isinstance(coros[1], Coroutine)
        ):
            return await original(*coros, timeout=timeout)
        first, other = coros
        try:
            yielded = first.send(None)
        except StopIteration as stop:
            other.close()
            return WaitResults([first], [stop.value], False)
        except BaseException:
            other.close()
            raise
        return await original(_resumed(first, yielded), other)

    consumer.wait_first = wait_first  # type: ignore[method-assign]
    consumer._connector_fast_wait_first = True  # type: ignore[attr-defined]
    return True


# -- 8. the aiokafka producer beneath Faust's producer ----------------------------------------
# At least once, the worker sends each batch's outputs and changelog records as one Kafka record
# batch per topic partition, through aiokafka's public `create_batch()` / `send_batch()`
# (connector/streams/outputs.py, `OutputBatch`): one future per Kafka batch instead of one per
# record, 19.6 -> 10.2 us of CPU per record against Faust's `Producer.send`
# (benchmarks/send_batch.py). Faust's `Producer` has `send` and `send_and_wait` only, per
# record. Checked (faust-streaming 0.15.3): `faust.transport.drivers.aiokafka.Producer._producer`
# is the started AIOKafkaProducer (None before `on_start`), built with the app's
# `producer_partitioner`, acks and idempotence; `send` uses the same object when no
# transactional id is given.


def aiokafka_producer(app: AppT) -> AIOKafkaProducer:
    """The started AIOKafkaProducer that Faust's producer sends through (at least once)."""
    producer = getattr(app.producer, "_producer", None)
    if not isinstance(producer, AIOKafkaProducer):
        raise RuntimeError(f"Faust's producer has no started aiokafka producer: {producer!r}")
    return producer


__all__ = [
    "AIOKAFKA_CHECKED",
    "FAUST_CHECKED",
    "FAUST_RANGE",
    "ActiveOffsetsHookRecovery",
    "RecoveryTableManager",
    "aiokafka_producer",
    "install_fast_wait_first",
    "partitions_of",
    "set_fetch_max_wait",
    "set_current_event",
    "source_transactional_id",
]
