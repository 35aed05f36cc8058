"""members.StateCache: the decoded records kept between batches, bounded by stored bytes."""

from __future__ import annotations

from connector.streams.members import MISSING, StateCache


def test_a_cached_none_is_a_known_absent_record_not_a_miss() -> None:
    cache = StateCache(1000)
    assert cache.get(b"k") is MISSING
    cache.put(b"k", None, 0)
    assert cache.get(b"k") is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_least_recently_used_records_leave_first_when_over_budget() -> None:
    cache = StateCache(300)
    for key in (b"a", b"b", b"c"):
        cache.put(key, key.decode(), 100)
    assert cache.get(b"a") == "a"  # a is now the newest use
    cache.put(b"d", "d", 100)
    assert cache.get(b"b") is MISSING
    assert [cache.get(k) for k in (b"a", b"c", b"d")] == ["a", "c", "d"]
    assert cache.size == 300 and len(cache) == 3


def test_a_rewrite_replaces_the_size_and_a_record_over_budget_is_not_kept() -> None:
    cache = StateCache(500)
    cache.put(b"a", 1, 400)
    cache.put(b"a", 2, 100)
    assert cache.size == 100 and cache.get(b"a") == 2
    cache.put(b"a", 3, 600)  # larger than the whole budget: dropped, not kept stale
    assert cache.get(b"a") is MISSING and cache.size == 0


def test_drop_and_clear_forget_and_a_zero_budget_keeps_nothing() -> None:
    cache = StateCache(1000)
    cache.put(b"a", 1, 100)
    cache.put(b"b", 2, 100)
    cache.drop(b"a")
    assert cache.get(b"a") is MISSING and cache.size == 100
    cache.clear()
    assert cache.get(b"b") is MISSING and cache.size == 0 and len(cache) == 0
    off = StateCache(0)
    off.put(b"a", 1, 10)
    assert off.get(b"a") is MISSING
