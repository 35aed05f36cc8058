"""Provider retries of refused deliveries: RetryMemory on its own, then through the bridge.

Gameball and Open Loyalty deliveries carry no event id, so the bridge tags the retry of a
delivery it answered non-2xx: `first-received-at` always, `retry-of` when the refused copy
reached Kafka after all. The worker (connector.streams.normalize) then gives a late-written copy
and its retry one event id and the first attempt's receive time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from connector.avro import AvroCodec
from connector.bridge.app import create_app
from connector.bridge.retries import RetryMemory, RetryTag
from connector.models import LoyaltyEvent
from connector.providers import PROVIDERS
from connector.settings import Settings
from connector.streams.normalize import RawRecord, normalize
from tests.support import FIXTURES, fixture_cases, test_env, test_secrets

GB_BODY = (FIXTURES / "gameball" / "v4_profile_updated.json").read_bytes()
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
    assert mem.match("gameball", None, b"body") == RetryTag(111, None)
    assert mem.match("gameball", None, b"body") is None
    assert len(mem) == 0


def test_another_tenant_provider_or_body_does_not_match() -> None:
    mem, _ = memory()
    mem.refused("gameball", "shop-eu", b"body", 111, "req-1")
    assert mem.match("gameball", "shop-us", b"body") is None
    assert mem.match("gameball", None, b"body") is None
    assert mem.match("open_loyalty", "shop-eu", b"body") is None
    assert mem.match("gameball", "shop-eu", b"body ") is None
    # none of those consumed it
    assert mem.match("gameball", "shop-eu", b"body") == RetryTag(111, None)


def test_no_tenant_and_the_default_tenant_path_are_one_scope() -> None:
    mem, _ = memory()
    mem.refused("gameball", None, b"body", 111, "req-1")
    assert mem.match("gameball", "", b"body") == RetryTag(111, None)


def test_a_retry_after_the_providers_window_is_not_recognised() -> None:
    mem, clock = memory()
    mem.refused("gameball", None, b"body", 111, "req-1")
    clock.now += WINDOWS["gameball"] - 1
    mem.refused("gameball", None, b"other", 222, "req-2")
    clock.now += 1  # the first is exactly at its window's end
    assert mem.match("gameball", None, b"body") is None
    assert mem.match("gameball", None, b"other") == RetryTag(222, None)


def test_an_expired_entry_behind_a_longer_window_entry_is_still_refused() -> None:
    mem, clock = memory()
    mem.refused("gameball", None, b"gb", 111, "req-gb")  # 90 min window
    mem.refused("open_loyalty", None, b"ol", 222, "req-ol")  # 60 min window, refused later
    clock.now += 61 * 60
    # the oldest (Gameball) entry is alive, so expiry stops there; the Open Loyalty one behind
    # it has expired all the same
    assert mem.match("open_loyalty", None, b"ol") is None
    assert mem.match("gameball", None, b"gb") == RetryTag(111, None)


def test_expired_entries_are_dropped_when_a_later_match_runs() -> None:
    mem, clock = memory()
    mem.refused("gameball", None, b"a", 1, "req-a")
    mem.refused("gameball", None, b"b", 2, "req-b")
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


def test_a_send_that_succeeds_after_the_refusal_makes_the_retry_a_retry_of_it() -> None:
    async def go() -> None:
        mem, _ = memory()
        send: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        mem.refused("gameball", None, b"body", 111, "key-1", send)
        send.set_result(None)
        await asyncio.sleep(0)  # done callbacks run on the next loop turn
        assert mem.match("gameball", None, b"body") == RetryTag(111, "key-1")

    run(go)


def test_a_send_already_written_when_refused_makes_the_retry_a_retry_of_it() -> None:
    async def go() -> None:
        mem, _ = memory()
        send: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        send.set_result(None)
        mem.refused("gameball", None, b"body", 111, "key-1", send)
        assert mem.match("gameball", None, b"body") == RetryTag(111, "key-1")

    run(go)


def test_a_send_not_yet_acknowledged_at_the_retry_is_not_claimed_as_written() -> None:
    async def go() -> None:
        mem, _ = memory()
        send: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        mem.refused("gameball", None, b"body", 111, "key-1", send)
        assert mem.match("gameball", None, b"body") == RetryTag(111, None)
        send.set_result(None)

    run(go)


def test_a_failed_or_cancelled_send_gives_no_retry_of() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        mem, _ = memory()
        failed: asyncio.Future[None] = loop.create_future()
        cancelled: asyncio.Future[None] = loop.create_future()
        failed_early: asyncio.Future[None] = loop.create_future()
        failed_early.set_exception(ConnectionError("broker gone"))
        mem.refused("gameball", None, b"failed", 1, "key-1", failed)
        mem.refused("gameball", None, b"cancelled", 2, "key-2", cancelled)
        mem.refused("gameball", None, b"failed early", 3, "key-3", failed_early)
        failed.set_exception(ConnectionError("broker gone"))
        cancelled.cancel()
        await asyncio.sleep(0)
        assert mem.match("gameball", None, b"failed") == RetryTag(1, None)
        assert mem.match("gameball", None, b"cancelled") == RetryTag(2, None)
        assert mem.match("gameball", None, b"failed early") == RetryTag(3, None)

    run(go)


def test_the_oldest_refusals_are_evicted_beyond_max_entries() -> None:
    mem, _ = memory(max_entries=3)
    for i in range(5):
        mem.refused("gameball", None, b"body %d" % i, i, f"req-{i}")
    assert len(mem) == 3
    assert mem.match("gameball", None, b"body 0") is None
    assert mem.match("gameball", None, b"body 1") is None
    assert [mem.match("gameball", None, b"body %d" % i) for i in (2, 3, 4)] == [
        RetryTag(2, None),
        RetryTag(3, None),
        RetryTag(4, None),
    ]


def test_refusing_the_same_body_again_keeps_the_first_time_and_renews_the_window() -> None:
    mem, clock = memory(max_entries=2)
    mem.refused("gameball", None, b"body", 111, "req-1")
    mem.refused("gameball", None, b"other", 150, "req-x")
    clock.now += 60
    mem.refused("gameball", None, b"body", 222, "req-2")
    assert len(mem) == 2
    mem.refused("gameball", None, b"third", 333, "req-3")  # evicts the oldest: `other`
    assert mem.match("gameball", None, b"other") is None
    clock.now += WINDOWS["gameball"] - 30  # past the first refusal's window, not the second's
    assert mem.match("gameball", None, b"body") == RetryTag(111, None)


def test_a_pending_write_of_an_earlier_refusal_of_the_same_body_still_counts() -> None:
    async def go() -> None:
        mem, _ = memory()
        send: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        mem.refused("gameball", None, b"body", 111, "key-1", send)
        mem.refused("gameball", None, b"body", 222, "key-2")  # failed outright
        send.set_result(None)  # the first is written after all
        await asyncio.sleep(0)
        assert mem.match("gameball", None, b"body") == RetryTag(111, "key-1")

    run(go)


def test_a_refused_retry_carries_the_first_attempts_time_and_identity_on() -> None:
    async def go() -> None:
        mem, _ = memory()
        loop = asyncio.get_running_loop()
        # attempt 1 is written late, as key-1
        first: asyncio.Future[None] = loop.create_future()
        first.set_result(None)
        mem.refused("gameball", None, b"body", 111, "key-1", first)
        tag = mem.match("gameball", None, b"body")
        assert tag == RetryTag(111, "key-1")
        # attempt 2 (tagged retry-of key-1) fails outright: attempt 3 is still key-1's copy
        mem.refused("gameball", None, b"body", 222, "key-2", retry=tag)
        assert mem.match("gameball", None, b"body") == RetryTag(111, "key-1")

        # attempt 1 failed; attempt 2 (first-received-at 333) is written late as key-5
        mem.refused("gameball", None, b"other", 333, "key-4")
        tag = mem.match("gameball", None, b"other")
        assert tag == RetryTag(333, None)
        second: asyncio.Future[None] = loop.create_future()
        mem.refused("gameball", None, b"other", 444, "key-5", second, retry=tag)
        second.set_result(None)
        await asyncio.sleep(0)
        assert mem.match("gameball", None, b"other") == RetryTag(333, "key-5")

    run(go)


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


@contextlib.asynccontextmanager
async def bridge(
    producer: ScriptedProducer, s: Settings | None = None
) -> AsyncIterator[Callable[..., Awaitable[int]]]:
    app = create_app(s or settings(), producer)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()

    async def post(provider: str, body: bytes) -> int:
        await asyncio.sleep(0.003)  # a later millisecond than the previous attempt
        signed_body, headers = PROVIDERS[provider].sign(body, test_secrets()[provider])
        resp = await client.post(f"/webhooks/{provider}", data=signed_body, headers=headers)
        await resp.read()
        return resp.status

    try:
        yield post
    finally:
        for gate in producer.gates:
            gate.set()
        await client.close()


def h(record: Record) -> dict[str, bytes]:
    return dict(record[2])


def tags(record: Record) -> dict[str, bytes]:
    return {k: v for k, v in record[2] if k in ("first-received-at", "retry-of")}


CODEC = AvroCodec()


def events(record: Record) -> list[LoyaltyEvent]:
    """What the worker makes of a raw record the bridge wrote."""
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
            assert await post("gameball", GB_BODY) == 200

    run(go)
    first, retry = producer.records
    assert first[1] == retry[1] == GB_BODY
    assert tags(first) == {}
    assert h(retry)["retry-of"] == first[0]
    assert h(retry)["first-received-at"] == h(first)["received-at"]
    assert h(retry)["received-at"] != h(first)["received-at"]
    assert retry[0] != first[0]  # the retry is its own raw record
    first_event, retry_event = event(first), event(retry)
    assert retry_event.event_id == first_event.event_id
    assert retry_event.received_at == first_event.received_at == ms(first)


def test_the_retry_of_a_failed_write_keeps_the_first_receive_time_but_no_retry_of() -> None:
    producer = ScriptedProducer("raise")

    async def go() -> None:
        async with bridge(producer) as post:
            assert await post("gameball", GB_BODY) == 503
            assert await post("gameball", GB_BODY) == 200

    run(go)
    refused, _ = producer.attempts
    [retry] = producer.records
    assert tags(retry) == {"first-received-at": h(refused)["received-at"]}
    assert h(retry)["received-at"] != h(refused)["received-at"]
    assert event(retry).received_at == ms(refused)


def test_a_body_answered_200_and_sent_again_is_a_real_repeat() -> None:
    producer = ScriptedProducer()

    async def go() -> None:
        async with bridge(producer) as post:
            assert await post("gameball", GB_BODY) == 200
            assert await post("gameball", GB_BODY) == 200

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

    run(go)
    first, second, third = producer.records
    for retry in (second, third):
        assert h(retry)["retry-of"] == first[0]
        assert h(retry)["first-received-at"] == h(first)["received-at"]
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
    assert h(third)["retry-of"] == first[0]
    assert event(third).event_id == event(first).event_id


def test_retries_failing_twice_keep_the_first_attempts_receive_time() -> None:
    producer = ScriptedProducer("raise", "raise")

    async def go() -> None:
        async with bridge(producer) as post:
            for _ in range(2):
                assert await post("gameball", GB_BODY) == 503
            assert await post("gameball", GB_BODY) == 200

    run(go)
    first_attempt = producer.attempts[0]
    [written] = producer.records
    assert tags(written) == {"first-received-at": h(first_attempt)["received-at"]}
    assert event(written).received_at == ms(first_attempt)


def test_a_retry_refused_for_pending_sends_keeps_the_first_attempts_receive_time() -> None:
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
    assert tags(written) == {"first-received-at": h(first_attempt)["received-at"]}
    assert event(written).received_at == ms(first_attempt)


def test_an_open_loyalty_retry_of_a_late_copy_is_tagged_too() -> None:
    producer = ScriptedProducer("late")
    body = (FIXTURES / "open_loyalty" / "available_points_amount_changed.json").read_bytes()

    async def go() -> None:
        async with bridge(producer) as post:
            assert await post("open_loyalty", body) == 503
            await producer.write_late_sends()
            assert await post("open_loyalty", body) == 200

    run(go)
    first, retry = producer.records
    assert retry[0] != first[0]  # Open Loyalty signs each attempt with a new request id
    assert h(retry)["retry-of"] == first[0]
    assert h(retry)["first-received-at"] == h(first)["received-at"]
    assert [e.event_id for e in events(retry)] == [e.event_id for e in events(first)]
