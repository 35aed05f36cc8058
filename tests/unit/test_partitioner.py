"""The worker's cached partitioner picks exactly the partition aiokafka's default one does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from connector.streams.partitioner import CachedPartitioner

cached = CachedPartitioner(max_keys=50)  # small: the eviction path runs too


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=64))
def test_same_partition_as_default(key: bytes, n: int) -> None:
    parts = list(range(n))
    expected = DefaultPartitioner()(key, parts, parts)
    assert cached(key, parts, parts) == expected
    assert cached(key, parts, parts) == expected  # from the cache


def test_no_key_goes_to_an_available_partition() -> None:
    assert CachedPartitioner()(None, [0, 1, 2], [2]) == 2
