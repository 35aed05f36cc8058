"""Provider retries of refused deliveries: RetryMemory on its own, then through the bridge.

Gameball and Open Loyalty deliveries carry no event id, so the bridge tags the retry of a
delivery it answered non-2xx with `first-received-at` (the first attempt's receive time) and
`retry-of` (the first attempt's raw key), whether or not that first attempt's write ever
reached Kafka. The worker (connector.streams.normalize) then gives every copy of one delivery
(a refused attempt written after its 503, and the attempt finally answered 200) one event id and
the first attempt's receive time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.avro import AvroCodec
from connector.bridge.app import METRICS_KEY
from connector.bridge.retries import RetryMemory, RetryTag
from connector.models import LoyaltyEvent
from connector.providers import PROVIDERS
from connector.settings import Settings
from connector.streams.normalize import RawRecord, normalize
from tests.support import FIXTURES, fixture_cases, test_env, test_secrets
from tests.unit.test_bridge import bridge as front_bridge
from tests.unit.test_bridge import front  # noqa: F401  (both HTTP front ends)

GB_BODY = (FIXTURES / "gameball" / "v4_profile_updated.json").read_bytes()
OL_BODY = (FIXTURES / "open_loyalty" / "available_points_amount_changed.json").read_bytes()
WINDOWS = {"gameball": 90 * 60.0, "open_loyalty": 60 * 60.0}


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def memory(max_entries: int = 100) -> tuple[RetryMemory, Clock]:
    clock = Clock()
    return RetryMemory(WINDOWS, max_entries=max_entries, clock=clock), clock


def run(fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(fn())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# RetryMemory


def test_a_refusal_tags_its_retry_once_then_is_forgotten() -> None:
    mem, _ = memory()
    mem.refused("gameball", None, b"body", 111, "req-1")
    assert len(mem) == 1
    assert mem.match("gameball", None, b"body") == RetryTag(111, "req-1")
    assert mem.match("gameball", None, b"body") is None
    assert len(mem) == 0


def test_another_tenant_provider_or_body_does_not_match() -> None:
    mem, _ = memory()
    mem.refused("gameball", "shop-eu", b"body", 111, "req-1")
    assert mem.match("gameball", "shop-us", b"body") is None
    assert mem.match("gameball", None, b"body") is None
    assert mem.match("open_loyalty", "shop-eu", b"body") is None
    assert mem.match("gameball", "shop-eu", b"body ") is None
    # none of those used it up
    assert mem.match("gameball", "shop-eu", b"body") == RetryTag(111, "req-1")


def test_no_tenant_and_the_default_tenant_path_are_one_scope() -> None:
    mem, _ = memory()
    mem.refused("gameball", None, b"body", 111, "req-1")
    assert mem.match("gameball", "", b"body") == RetryTag(111, "req-1")


def test_a_retry_after_the_providers_window_is_not_recognised() -> None:
    mem, clock = memory()
    mem.refused("gameball", None, b"body", 111, "req-1")
    clock.now += WINDOWS["gameball"] - 1
    mem.refused("gameball", None, b"other", 222, "req-2")
    clock.now += 1  # the first is exactly at its window's end
    assert mem.match("gameball", None, b"body") is None
    assert mem.match("gameball", None, b"other") == RetryTag(222, "req-2")


def test_an_expired_entry_behind_a_longer_window_entry_is_still_refused() -> None:
    mem, clock = memory()
    mem.refused("gameball", None, b"gb", 111, "req-gb")  # 90 min window
    mem.refused("open_loyalty", None, b"ol", 222, "req-ol")  # 60 min window, refused later
    clock.now += 61 * 60
    # the oldest (Gameball) entry is alive, so expiry stops there; the Open Loyalty one behind
    # it has expired all the same
    assert mem.match("open_loyalty", None, b"ol") is None
    assert mem.match("gameball", None, b"gb") == RetryTag(111, "req-gb")


def test_expired_entries_are_dropped_when_a_later_match_runs() -> None:
    mem, clock = memory()
    mem.refused("gameball", None, b"a", 1, "req-a")
    mem.refused("gameball", None, b"b", 2, "req-b")
    mem.refused("gameball", None, b"b", 3, "req-b2")
    assert len(mem) == 3
    clock.now += WINDOWS["gameball"] + 1
    assert mem.match("gameball", None, b"c") is None
    assert len(mem) == 0


def test_a_provider_without_a_window_is_never_remembered() -> None:
    mem, _ = memory()
    for provider in ("voucherify", "wix"):
        assert not mem.watches(provider)
        mem.refused(provider, None, b"body", 111, "req-1")
        assert mem.match(provider, None, b"body") is None
    assert len(mem) == 0
    assert mem.watches("gameball") and mem.watches("open_loyalty")


def test_the_oldest_refusals_are_evicted_beyond_max_entries() -> None:
    mem, _ = memory(max_entries=3)
    for i in range(5):
        mem.refused("gameball", None, b"body %d" % i, i, f"req-{i}")
    assert len(mem) == 3
    assert mem.match("gameball", None, b"body 0") is None
    assert mem.match("gameball", None, b"body 1") is None
    assert [mem.match("gameball", None, b"body %d" % i) for i in (2, 3, 4)] == [
        RetryTag(2, "req-2"),
        RetryTag(3, "req-3"),
        RetryTag(4, "req-4"),
    ]


def test_max_entries_bounds_refusals_not_bodies() -> None:
    mem, _ = memory(max_entries=2)
    for i in range(3):  # one body refused three times: three refusals
        mem.refused("gameball", None, b"body", i, f"req-{i}")
    assert len(mem) == 2
    # the oldest refusal went; the two later ones are still there, oldest first
    assert mem.match("gameball", None, b"body") == RetryTag(1, "req-1")
    assert mem.match("gameball", None, b"body") == RetryTag(2, "req-2")
    assert mem.match("gameball", None, b"body") is None
    assert len(mem) == 0

    # two refusals of one body and one of another are three: the oldest body loses its oldest
    mem.refused("gameball", None, b"a", 10, "req-a1")
    mem.refused("gameball", None, b"a", 11, "req-a2")
    mem.refused("gameball", None, b"b", 12, "req-b")
    assert len(mem) == 2
    assert mem.match("gameball", None, b"a") == RetryTag(11, "req-a2")
    assert mem.match("gameball", None, b"a") is None
    assert mem.match("gameball", None, b"b") == RetryTag(12, "req-b")
    assert len(mem) == 0


def test_two_refusals_of_the_same_bytes_are_two_and_used_oldest_first() -> None:
    """Two concurrent identical deliveries, both refused: each retry names its own first key."""
    mem, _ = memory()
    mem.refused("gameball", None, b"body", 111, "key-1")
    mem.refused("gameball", None, b"body", 112, "key-2")
    assert len(mem) == 2
    assert mem.match("gameball", None, b"body") == RetryTag(111, "key-1")
    assert len(mem) == 1
    assert mem.match("gameball", None, b"body") == RetryTag(112, "key-2")
    assert len(mem) == 0
    assert mem.match("gameball", None, b"body") is None  # a third identical delivery: a repeat


def test_each_refusal_of_the_same_bytes_has_its_own_window() -> None:
    mem, clock = memory()
    mem.refused("gameball", None, b"body", 111, "key-1")
    clock.now += 60
    mem.refused("gameball", None, b"body", 222, "key-2")
    clock.now += WINDOWS["gameball"] - 30  # past the first refusal's window, not the second's
    assert mem.match("gameball", None, b"body") == RetryTag(222, "key-2")
    assert mem.match("gameball", None, b"body") is None
    assert len(mem) == 0


def test_a_refused_retry_carries_the_first_attempts_time_and_key_on() -> None:
    mem, _ = memory()
    mem.refused("gameball", None, b"body", 111, "key-1")
    tag = mem.match("gameball", None, b"body")
    assert tag == RetryTag(111, "key-1")
    # attempt 2 (tagged as a retry of key-1) is refused too: attempt 3 is still key-1's
    mem.refused("gameball", None, b"body", 222, "key-2", retry=tag)
    tag = mem.match("gameball", None, b"body")
    assert tag == RetryTag(111, "key-1")
    # and so on, however many times
    mem.refused("gameball", None, b"body", 333, "key-3", retry=tag)
    assert len(mem) == 1
    assert mem.match("gameball", None, b"body") == RetryTag(111, "key-1")
    assert len(mem) == 0


# ---------------------------------------------------------------------------------------------
# through the bridge

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


class ScriptedProducer:
    """In-memory RawProducer whose n-th send follows `plan[n]` (then "ok"): "ok" is written at
    once, "late" only once the test releases it (past the ack deadline), "raise" fails."""

    def __init__(self, *plan: str) -> None:
        self.plan = list(plan)
        self.attempts: list[Record] = []  # every send, written or not
        self.records: list[Record] = []  # what Kafka acknowledged
        self.gates: list[asyncio.Event] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def ready(self) -> bool:
        return True

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        record = (key, value, list(headers))
        self.attempts.append(record)
        mode = self.plan.pop(0) if self.plan else "ok"
        if mode == "raise":
            raise ConnectionError("broker gone")
        if mode == "late":
            gate = asyncio.Event()
            self.gates.append(gate)
            await gate.wait()
        self.records.append(record)

    async def write_late_sends(self) -> None:
        """Let every late send be acknowledged, and wait until it is."""
        expected = len(self.records) + sum(not g.is_set() for g in self.gates)
        for gate in self.gates:
            gate.set()
        for _ in range(500):
            if len(self.records) >= expected:
                return
            await asyncio.sleep(0.001)
        raise AssertionError("late sends were not written")


def settings(**extra: str) -> Settings:
    return Settings.from_env(
        {**test_env(), "CONNECTOR_TOPIC_PREFIX": "unit", "CONNECTOR_ACK_TIMEOUT_MS": "50", **extra}
    )


class Post:
    """Posts a signed delivery to the bridge under test; `app` is that bridge."""

    def __init__(self, app: Any, client: Any) -> None:
        self.app = app
        self.client = client

    async def __call__(
        self, provider: str, body: bytes, secrets: dict[str, str] | None = None
    ) -> int:
        await asyncio.sleep(0.003)  # a later millisecond than the previous attempt
        signed_body, headers = PROVIDERS[provider].sign(body, secrets or test_secrets()[provider])
        resp = await self.client.post(f"/webhooks/{provider}", data=signed_body, headers=headers)
        await resp.read()
        return resp.status

    def recognised(self, provider: str) -> float | None:
        registry = self.app[METRICS_KEY].registry  # type: ignore[attr-defined]
        value: float | None = registry.get_sample_value(
            "bridge_retries_recognised_total", {"provider": provider}
        )
        return value


@contextlib.asynccontextmanager
async def bridge(producer: ScriptedProducer, s: Settings | None = None) -> AsyncIterator[Post]:
    async with front_bridge(s or settings(), producer) as client:
        yield Post(client.app, client)


def h(record: Record) -> dict[str, bytes]:
    return dict(record[2])


def tags(record: Record) -> dict[str, bytes]:
    return {k: v for k, v in record[2] if k in ("first-received-at", "retry-of")}


def tagged_as_retry_of(first: Record) -> dict[str, bytes]:
    """The tags of a recognised retry whose first attempt was `first`."""
    return {"first-received-at": h(first)["received-at"], "retry-of": first[0]}


CODEC = AvroCodec()


def events(record: Record) -> list[LoyaltyEvent]:
    """What the worker makes of a raw record the bridge wrote (or would have written)."""
    key, value, headers = record
    out = normalize(RawRecord(key, value, headers, "unit.webhooks.raw", 0, 0), CODEC)
    assert out.dead_letter is None, out.dead_letter
    assert out.events
    return [ev for ev, _ in out.events]


def event(record: Record) -> LoyaltyEvent:
    [ev] = events(record)
    return ev


def ms(record: Record, header: str = "received-at") -> datetime:
    return datetime.fromtimestamp(int(h(record)[header]) / 1000, tz=UTC)


def test_the_retry_of_a_copy_written_after_its_503_is_the_same_event() -> None:
    producer = ScriptedProducer("late")

    async def go() -> None:
        async with bridge(producer) as post:
            assert await post("gameball", GB_BODY) == 503
            await producer.write_late_sends()
            assert post.recognised("gameball") is None
            assert await post("gameball", GB_BODY) == 200
            assert post.recognised("gameball") == 1

    run(go)
    first, retry = producer.records
    assert first[1] == retry[1] == GB_BODY
    assert tags(first) == {}
    assert tags(retry) == tagged_as_retry_of(first)
    assert h(retry)["received-at"] != h(first)["received-at"]
    assert retry[0] != first[0]  # the retry is its own raw record
    first_event, retry_event = event(first), event(retry)
    assert retry_event.event_id == first_event.event_id
    assert retry_event.received_at == first_event.received_at == ms(first)


def test_the_retry_of_a_failed_write_is_named_after_the_first_attempt_too() -> None:
    producer = ScriptedProducer("raise")

    async def go() -> None:
        async with bridge(producer) as post:
            assert await post("gameball", GB_BODY) == 503
            assert await post("gameball", GB_BODY) == 200
            assert post.recognised("gameball") == 1

    run(go)
    refused, _ = producer.attempts
    [retry] = producer.records
    assert tags(retry) == tagged_as_retry_of(refused)
    assert h(retry)["received-at"] != h(refused)["received-at"]
    # the one copy written is the event a copy of the first attempt would have been
    assert event(retry).event_id == event(refused).event_id
    assert event(retry).received_at == ms(refused)


def test_a_body_answered_200_and_sent_again_is_a_real_repeat() -> None:
    producer = ScriptedProducer()

    async def go() -> None:
        async with bridge(producer) as post:
            assert await post("gameball", GB_BODY) == 200
            assert await post("gameball", GB_BODY) == 200
            assert post.recognised("gameball") is None

    run(go)
    first, again = producer.records
    assert tags(first) == tags(again) == {}
    assert event(again).event_id != event(first).event_id


def test_a_refused_delivery_of_an_unwatched_provider_is_not_tagged_on_retry() -> None:
    producer = ScriptedProducer("late")
    body = fixture_cases("voucherify")[0].read_bytes()

    async def go() -> None:
        async with bridge(producer) as post:
            assert await post("voucherify", body) == 503
            await producer.write_late_sends()
            assert await post("voucherify", body) == 200
            assert post.recognised("voucherify") is None

    run(go)
    first, retry = producer.records
    assert tags(first) == tags(retry) == {}
    # Voucherify's own id already makes the two copies one event
    assert event(retry).event_id == event(first).event_id


def test_a_retry_refused_again_and_written_late_is_still_the_first_copy() -> None:
    """Kafka slow across three attempts: all three copies reach Kafka, one event."""
    producer = ScriptedProducer("late", "late")

    async def go() -> None:
        async with bridge(producer) as post:
            assert await post("gameball", GB_BODY) == 503
            await producer.write_late_sends()
            assert await post("gameball", GB_BODY) == 503
            await producer.write_late_sends()
            assert await post("gameball", GB_BODY) == 200
            assert post.recognised("gameball") == 2

    run(go)
    first, second, third = producer.records
    for retry in (second, third):
        assert tags(retry) == tagged_as_retry_of(first)
    assert len({event(r).event_id for r in producer.records}) == 1
    assert event(third).received_at == ms(first)


def test_a_retry_whose_own_write_failed_still_names_the_late_first_copy() -> None:
    producer = ScriptedProducer("late", "raise")

    async def go() -> None:
        async with bridge(producer) as post:
            assert await post("gameball", GB_BODY) == 503
            await producer.write_late_sends()
            assert await post("gameball", GB_BODY) == 503
            assert await post("gameball", GB_BODY) == 200

    run(go)
    first, third = producer.records
    assert tags(third) == tagged_as_retry_of(first)
    assert event(third).event_id == event(first).event_id


def test_retries_failing_twice_keep_the_first_attempts_time_and_key() -> None:
    producer = ScriptedProducer("raise", "raise")

    async def go() -> None:
        async with bridge(producer) as post:
            for _ in range(2):
                assert await post("gameball", GB_BODY) == 503
            assert await post("gameball", GB_BODY) == 200

    run(go)
    first_attempt, second_attempt, _ = producer.attempts
    assert tags(second_attempt) == tagged_as_retry_of(first_attempt)
    [written] = producer.records
    assert tags(written) == tagged_as_retry_of(first_attempt)
    assert event(written).event_id == event(first_attempt).event_id
    assert event(written).received_at == ms(first_attempt)


def test_a_retry_refused_for_pending_sends_keeps_the_first_attempts_time_and_key() -> None:
    producer = ScriptedProducer("raise", "late")
    other = (FIXTURES / "gameball" / "v3_profile_total_points.json").read_bytes()

    async def go() -> None:
        async with bridge(producer, settings(CONNECTOR_MAX_IN_FLIGHT="1")) as post:
            assert await post("gameball", GB_BODY) == 503  # write failed
            assert await post("gameball", other) == 503  # its write stays pending
            assert await post("gameball", GB_BODY) == 503  # Kafka not keeping up: not sent
            await producer.write_late_sends()
            assert await post("gameball", GB_BODY) == 200

    run(go)
    first_attempt = producer.attempts[0]
    assert [r[1] for r in producer.attempts] == [GB_BODY, other, GB_BODY]
    written = producer.records[-1]
    assert written[1] == GB_BODY
    assert tags(written) == tagged_as_retry_of(first_attempt)
    assert event(written).event_id == event(first_attempt).event_id
    assert event(written).received_at == ms(first_attempt)


def test_an_open_loyalty_retry_of_a_late_copy_is_tagged_too() -> None:
    producer = ScriptedProducer("late")

    async def go() -> None:
        async with bridge(producer) as post:
            assert await post("open_loyalty", OL_BODY) == 503
            await producer.write_late_sends()
            assert await post("open_loyalty", OL_BODY) == 200
            assert post.recognised("open_loyalty") == 1

    run(go)
    first, retry = producer.records
    assert retry[0] != first[0]  # Open Loyalty signs each attempt with a new request id
    assert tags(retry) == tagged_as_retry_of(first)
    assert [e.event_id for e in events(retry)] == [e.event_id for e in events(first)]


# Open Loyalty OSS: the static header only, no HMAC, so no X-Webhook-Request-Id (the raw key is
# the bridge's own request id, new on every attempt)
OL_STATIC_HEADER = {
    k: v for k, v in test_secrets()["open_loyalty"].items() if k in ("header_name", "header_value")
}


@pytest.mark.parametrize("late_writes_land", ["before the 200", "after the 200"])
def test_an_open_loyalty_delivery_written_three_times_is_one_event(late_writes_land: str) -> None:
    """The soak's case: attempts 1 and 2 time out (503) but both writes land, attempt 3 is
    answered 200. Three raw records, one event, received when attempt 1 was."""
    producer = ScriptedProducer("late", "late")

    async def go() -> None:
        async with bridge(producer) as post:
            assert await post("open_loyalty", OL_BODY, OL_STATIC_HEADER) == 503
            assert await post("open_loyalty", OL_BODY, OL_STATIC_HEADER) == 503
            if late_writes_land == "before the 200":
                await producer.write_late_sends()
            assert await post("open_loyalty", OL_BODY, OL_STATIC_HEADER) == 200
            assert post.recognised("open_loyalty") == 2
            await producer.write_late_sends()

    run(go)
    assert len(producer.records) == 3
    if late_writes_land == "after the 200":
        assert producer.records[0] == producer.attempts[2]
    first, second, third = producer.attempts
    assert sorted(producer.records) == sorted(producer.attempts)
    for record in producer.attempts:
        assert "x-webhook-request-id" not in h(record)
        assert record[0] == h(record)["request-id"]  # named by the bridge
    assert len({r[0] for r in producer.attempts}) == 3
    assert tags(first) == {}
    assert tags(second) == tags(third) == tagged_as_retry_of(first)
    assert len({e.event_id for r in producer.records for e in events(r)}) == 1
    assert {e.received_at for r in producer.records for e in events(r)} == {ms(first)}


def test_two_refused_copies_of_the_same_bytes_are_two_deliveries() -> None:
    """Two identical deliveries in flight together, both refused: their two retries name one
    first attempt each, and a third identical delivery is a real repeat."""
    producer = ScriptedProducer("late", "late")
    # an ack timeout long enough that the second is received before the first is refused (else
    # the second would be the first's retry)
    s = settings(CONNECTOR_ACK_TIMEOUT_MS="300")

    async def go() -> None:
        async with bridge(producer, s) as post:
            statuses = await asyncio.gather(post("gameball", GB_BODY), post("gameball", GB_BODY))
            assert statuses == [503, 503]
            await producer.write_late_sends()
            for _ in range(2):
                assert await post("gameball", GB_BODY) == 200
            assert post.recognised("gameball") == 2
            assert await post("gameball", GB_BODY) == 200
            assert post.recognised("gameball") == 2

    run(go)
    assert len(producer.records) == 5
    first_a, first_b, retry_1, retry_2, repeat = producer.attempts
    assert tags(first_a) == tags(first_b) == {}
    # sent in this order, so refused in this order too (the same ack timeout)
    assert tags(retry_1) == tagged_as_retry_of(first_a)
    assert tags(retry_2) == tagged_as_retry_of(first_b)
    assert tags(repeat) == {}
    ids = [event(r).event_id for r in producer.attempts]
    assert ids[0] != ids[1]
    assert ids[2:4] == ids[0:2]
    assert ids[4] not in ids[:4]
    assert event(retry_2).received_at == ms(first_b)
