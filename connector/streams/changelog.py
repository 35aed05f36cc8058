"""Changelog records as the Faust events `StoreT.apply_changelog_batch` takes.

The two places that write a table's store themselves (the ledger's batch write, the bulk
restore) hand their records to the store's own public batch write, which puts them into the
partition DBs and records each partition's last offset, exactly as Faust's recovery does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from faust.events import Event
from faust.types import TP, AppT, EventT, Message, StoreT


def changelog_event(
    app: AppT, tp: TP, offset: int, key: bytes, value: bytes | None, timestamp: float = 0.0
) -> EventT:
    """The event of the changelog record at `tp`/`offset` (`value` None: a tombstone)."""
    message = Message(tp.topic, tp.partition, offset, timestamp, 0, None, key, value, None, tp=tp)
    return Event(app, key, value, None, message)


def apply_changelog(store: StoreT[Any, Any], events: Iterable[EventT]) -> None:
    """Write changelog events into `store`: one write batch per partition, then the offsets.

    Keys and values are the raw bytes: the members table's serializers are `raw`.
    """
    store.apply_changelog_batch(events, to_key=_same, to_value=_same)


def _same(raw: Any) -> Any:
    return raw
