"""Faust's consumed messages as the `ConsumedRecord` that `normalize` and dead letters take."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from faust.types import Message

from connector.raw import ConsumedRecord


def consumed_record(msg: Message) -> ConsumedRecord:
    """`msg` with where it was read; aiokafka gives Faust headers as (name, bytes) pairs."""
    headers = list(cast(Sequence[tuple[str, bytes]], msg.headers or ()))
    return ConsumedRecord(msg.key, msg.value, headers, msg.topic, msg.partition, msg.offset)
