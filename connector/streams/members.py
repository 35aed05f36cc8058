"""The members table: its definition, and how the ledger and the member query read and write it.

One record per member account (key and value bytes: `state_format`), so an event's effect and
its dedupe mark are a single changelog write.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Iterable, Sequence
from typing import cast

from faust.tables.base import Collection
from faust.types import TP, AppT, EventT, RecordMetadata, TableT

from connector.domain.erasure import Erasure
from connector.domain.ledger import MemberState
from connector.settings import Settings
from connector.streams.changelog import apply_changelog, changelog_event
from connector.streams.faust_compat import set_current_event
from connector.streams.state_format import (
    dump_erasure,
    dump_state,
    erasure_key,
    load_erasure,
    load_state,
    record_key,
)

# What the ledger step caches per table key: a member account's state, an erasure marker, or
# None (no record: never seen, or deleted).
Cached = MemberState | Erasure | None


def stored_value(cached: Cached) -> bytes | None:
    """The table value of a cached record; None: delete the record (a changelog tombstone)."""
    if cached is None:
        return None
    if isinstance(cached, Erasure):
        return dump_erasure(cached)
    return dump_state(cached)


def members_table(app: AppT, settings: Settings) -> TableT[bytes, bytes]:
    """The table of `MemberState` records, keyed like the events topic."""
    # The key must be raw bytes, exactly the events topic's key: Faust's router finds a key's
    # owner by hashing the *changelog* key, while the record lives in the partition of the
    # events record that wrote it. Faust picks the table's serializers from key_type (a `str`
    # key is JSON-encoded, '"k"', whatever a Schema says), so key_type=bytes it is.
    # The value is the JSON text as bytes (value_type=bytes: Faust passes it through), made
    # and parsed by `state_format`; the same bytes Faust's json codec wrote.
    return app.Table(
        "members",
        default=None,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
    )


class Members:
    """Reads and writes of the members table's records as `MemberState`s."""

    def __init__(self, app: AppT, table: TableT[bytes, bytes], *, cache_bytes: int = 0) -> None:
        self.app, self.table = app, table
        self.changelog = table.changelog_topic.get_topic_name()
        self.cache = StateCache(cache_bytes)

    def read(self, key: str, event: EventT) -> MemberState | None:
        """The record `key` as processing `event` (of the member's events partition) sees it."""
        kb = record_key(key)
        hit = self.cache.get(kb)
        if hit is not MISSING:
            return cast(MemberState | None, hit)
        # The RocksDB store reads from the *current event's* partition; in a batch that is
        # whichever event Faust or the previous read left current, possibly of another
        # partition, and the member would look new (its state silently reset). All of a
        # member's accounts live in its events partition.
        set_current_event(event)
        stored = self.table.get(kb)
        state = load_state(stored)
        self.cache.put(kb, state, len(stored or b""))
        return state

    def read_erasure(self, member_key: str, event: EventT) -> Erasure | None:
        """The member's erasure marker as processing `event` sees it (None: not erased)."""
        kb = erasure_key(member_key)
        hit = self.cache.get(kb)
        if hit is not MISSING:
            return cast(Erasure | None, hit)
        set_current_event(event)
        stored = self.table.get(kb)
        marker = load_erasure(stored)
        self.cache.put(kb, marker, len(stored or b""))
        return marker

    def remember(self, rows: Iterable[tuple[bytes, Cached, int]]) -> None:
        """After the store took a batch: `(table key, decoded record, stored size)` per record
        written, so the next batch reads them from memory."""
        for kb, cached, size in rows:
            self.cache.put(kb, cached, size)

    def lookup(self, key: str) -> MemberState | None:
        """The record `key` outside stream processing (the member query): any local partition."""
        return load_state(self.table.get(record_key(key)))

    def lookup_erasure(self, member_key: str) -> Erasure | None:
        """The member's erasure marker outside stream processing (the member query)."""
        return load_erasure(self.table.get(erasure_key(member_key)))

    def write(self, key: bytes, stored: bytes | None) -> None:
        """Faust's own table write or delete (exactly_once: the changelog record joins the
        transaction). `key`: a table key (`record_key`, `erasure_key`); `stored` None deletes."""
        self.cache.drop(key)  # exactly_once: the agent remembers it once the write is done
        if stored is None:
            if key in self.table:
                del self.table[key]
        else:
            self.table[key] = stored

    async def write_batch(self, rows: Sequence[tuple[bytes, EventT, bytes | None]]) -> None:
        """Write a batch's member records to the changelog and then the store (at-least-once).

        Each record `(table key, event, value)` (value None: a tombstone) goes to the
        changelog partition of `event`, the event that last changed it (the partition
        `members[key] = value` would pick), straight through the producer, without Faust's
        per-write FutureMessage/buffer plumbing, which cost more than the write itself. The
        batch waits for the changelog acks, then writes the records and each partition's
        offset into the store (the store's own changelog batch write), so the store never
        holds a record Kafka does not, and the batch's source offsets are never committed
        ahead of the table state they produced.
        """
        producer, changelog = self.app.producer, self.changelog
        sent: list[tuple[int, bytes, bytes | None]] = []
        acks: list[Awaitable[RecordMetadata]] = []
        for kb, event, vb in rows:
            partition = event.message.partition
            sent.append((partition, kb, vb))
            acks.append(
                await producer.send(
                    topic=changelog,
                    key=kb,
                    value=vb,
                    partition=partition,
                    timestamp=None,
                    headers=None,
                )
            )
        written = await asyncio.gather(*acks)
        app = self.app
        try:
            apply_changelog(
                cast(Collection, self.table).data,
                [
                    changelog_event(app, TP(changelog, partition), md.offset, kb, vb)
                    for (partition, kb, vb), md in zip(sent, written, strict=True)
                ],
            )
        except BaseException:
            self.cache.clear()  # the store may hold part of the batch: read it again
            raise


MISSING = object()  # StateCache.get: not cached (None is a cached "no record")


class StateCache:
    """Decoded member records of the partitions this worker processes, newest use last.

    A record the ledger read or wrote stays here, so the next event of the same member skips
    the store read and the JSON parse (benchmarks/pipeline.py: ~15 % of the ledger's time).
    Only the ledger agent writes the active partitions' records, and it updates this cache
    after each write; anything else that changes a store (recovery, standby updates, the bulk
    restore) happens around a rebalance, and a rebalance empties the cache
    (`ConnectorApp`, Faust's `on_partitions_revoked`/`on_partitions_assigned` signals), as
    does a batch write that fails half way.

    Bounded by `budget`, counted in the records' stored (JSON) bytes: a member with a full
    dedupe memory weighs ~100 KB stored, one seen a few times ~1 KB; the decoded objects take
    roughly twice their stored size. 0 turns the cache off.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._entries: OrderedDict[bytes, tuple[object, int]] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> object:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return MISSING
        self.hits += 1
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: bytes, value: object, size: int) -> None:
        if self.budget <= 0:
            return
        size = max(size, 64)  # a deleted record still costs its key and slot
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= old[1]
        if size > self.budget:
            return
        self._entries[key] = (value, size)
        self.size += size
        while self.size > self.budget:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.size -= evicted

    def drop(self, key: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= old[1]

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0
