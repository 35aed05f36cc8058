"""Kafka's default key partitioner (the Java client's murmur2), with the hash cached per key.

aiokafka computes murmur2 in pure Python on every send (~10 us for a member key); the worker
sends three or four records per event, all keyed by the member key, and members recur. The
partition chosen is exactly aiokafka's `DefaultPartitioner`'s (so Java producers, the bridge
and the worker agree on a member's partition); only the hash is remembered.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.partitioner import DefaultPartitioner, murmur2

CACHE_KEYS = 100_000


class CachedPartitioner:
    def __init__(self, max_keys: int = CACHE_KEYS) -> None:
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys
        self._default = DefaultPartitioner()

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:
            return int(self._default(key, all_partitions, available))
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            h = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[h % len(all_partitions)]
