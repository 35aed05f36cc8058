"""Store-and-forward on real Apache Kafka: a broker SIGKILLed for minutes loses nothing.

A private broker (the session's is shared) is killed with SIGKILL for OUTAGE_S seconds while
signed Open Loyalty webhooks keep coming from senders that retry a refused delivery **once**, as
Open Loyalty does. Midway through the outage the bridge itself is killed with `kill -9` and a new
one started on the same spool; a second bridge with a 1 MiB spool shows "spool full -> 503".
Afterwards every delivery was answered 200, every one is on the raw topic, and the balances are
exact (nothing lost, nothing counted twice).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector.embedded.kafka import KafkaBroker
from connector.inspect import read_to_end
from connector.raw import header_map
from tests.integration.harness import Bridge, Delivery, Harness, sign

OUTAGE_S = 150
MEMBERS = [f"ol-spool-{i}" for i in range(6)]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture
def harness_broker(own_broker: KafkaBroker) -> KafkaBroker:
    """`h` on this module's own broker: its tests kill it."""
    return own_broker


class Provider:
    """Open Loyalty's members and the deliveries it sends, one movement each."""

    def __init__(self) -> None:
        self.balance = dict.fromkeys(MEMBERS, 0)
        self.n = 0

    def movement(self, pad: int = 0) -> tuple[str, Delivery]:
        member = MEMBERS[self.n % len(MEMBERS)]
        self.n += 1
        change = 1 + self.n % 7
        self.balance[member] += change
        data: dict[str, Any] = {
            "customer": {"customerId": member},
            "amount": self.balance[member],
            "amountChange": change,
            "amountChangeType": "add",
            "pointsTransferId": f"pt-spool-{self.n}",
            "createdAt": f"2026-03-01T09:{self.n // 60:02d}:{self.n % 60:02d}Z",
        }
        if pad:
            data["note"] = "x" * pad
        return member, sign("open_loyalty", {"type": "AvailablePointsAmountChanged", "data": data})


async def post_once_and_retry_once(url: str, d: Delivery) -> tuple[int, str | None]:
    """What Open Loyalty does: one delivery, one retry after a refusal, then it gives up."""
    status = 0
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for attempt in range(2):
            try:
                async with http.post(url + d.path, data=d.body, headers=d.headers) as r:
                    status = r.status
                    if status == 200:
                        return status, str(json.loads(await r.text())["request_id"])
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            if attempt == 0:
                await asyncio.sleep(1.0)
    return status, None


def deliver(bridge: Bridge, d: Delivery) -> tuple[int, str | None]:
    return asyncio.run(post_once_and_retry_once(bridge.url, d))


def test_a_long_broker_outage_and_a_killed_bridge_lose_nothing(
    h: Harness, own_broker: KafkaBroker, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    worker = h.start_worker()
    bridge = h.start_bridge(CONNECTOR_SPOOL_DIR=str(spool_dir))
    provider = Provider()
    answers: list[tuple[int, str | None]] = []

    for _ in range(12):  # Kafka up
        answers.append(deliver(bridge, provider.movement()[1]))

    own_broker.kill()  # SIGKILL: no clean shutdown
    started = time.monotonic()
    small = h.start_bridge(
        "small-spool",
        CONNECTOR_SPOOL_DIR=str(tmp_path / "small-spool"),
        CONNECTOR_SPOOL_MAX_BYTES=str(1024 * 1024),
    )
    full = [deliver(small, Provider().movement(pad=300_000)[1])[0] for _ in range(5)]
    small.kill()
    killed_bridge = False
    while time.monotonic() - started < OUTAGE_S:
        answers.append(deliver(bridge, provider.movement()[1]))
        if not killed_bridge and time.monotonic() - started > OUTAGE_S / 2:
            bridge.kill()  # kill -9 while spooling; a new bridge opens the same spool
            bridge = h.start_bridge("bridge-2", CONNECTOR_SPOOL_DIR=str(spool_dir))
            killed_bridge = True
        time.sleep(1.0)
    own_broker.start()  # same ports, same data

    for _ in range(12):  # Kafka back (the spool may still be draining)
        answers.append(deliver(bridge, provider.movement()[1]))

    # spool full -> 503 (the 1 MiB spool takes three ~300 kB webhooks)
    assert full[:3] == [200, 200, 200] and full[3:] == [503, 503], full
    # every delivery answered 200, so a provider that retries once lost nothing
    assert [s for s, _ in answers] == [200] * len(answers), answers
    assert len(answers) >= 12 + OUTAGE_S // 2

    # every accepted delivery is on the raw topic (the spool drained)
    accepted = {rid for _, rid in answers}
    deadline = time.monotonic() + 120
    while True:
        raw_ids = asyncio.run(_request_ids(h.bootstrap, h.topic("raw")))
        if accepted <= raw_ids or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert accepted <= raw_ids, f"{len(accepted - raw_ids)} accepted webhooks not on the raw topic"

    # and the balances are exact: nothing lost, nothing counted twice
    for member, want in provider.balance.items():
        got = h.wait_member(
            worker,
            "open_loyalty",
            "default",
            member,
            lambda m, want=want: m["computed_balance"] >= want,
            timeout=180,
        )
        assert (got["balance"], got["computed_balance"], got["drift"]) == (want, want, 0), member
    metrics = asyncio.run(_text(bridge.url + "/metrics"))
    assert "bridge_spool_records 0.0" in metrics and "bridge_spooling 0.0" in metrics
    bridge.stop()
    worker.stop()


async def _text(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return await r.text()


async def _request_ids(bootstrap: str, topic: str) -> set[str]:
    messages = await read_to_end(bootstrap, topic, isolation_level="read_uncommitted", timeout=30)
    return {header_map(m.headers).get("request-id", "") for m in messages}
