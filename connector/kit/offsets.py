"""Consumer-group committed offsets and topic end offsets by partition: has a worker group
processed everything, and how far behind is it (built on `connector.shadow`'s readers)."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import TopicPartition

from connector.shadow import end_offsets as topic_end_offsets
from connector.shadow import group_offsets


async def committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """The group's committed offset per partition (a partition it never committed: absent)."""
    return {tp: meta.offset for tp, meta in (await group_offsets(bootstrap, group)).items()}


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The end offset of every partition of `topics` (a topic that does not exist has none)."""
    out: dict[TopicPartition, int] = {}
    for topic in topics:
        for partition, offset in (await topic_end_offsets(bootstrap, topic)).items():
            out[TopicPartition(topic, partition)] = offset
    return out


async def lag(bootstrap: str, group: str, topics: Iterable[str]) -> int:
    """Records of `topics` the group has not committed past; -1 when none of them exists."""
    end = await end_offsets(bootstrap, topics)
    if not end:
        return -1
    done = await committed(bootstrap, group)
    return sum(max(0, e - done.get(tp, 0)) for tp, e in end.items())
