"""`dlq list` and `dlq redrive` on real Kafka, through a real worker.

Two dead letters: a webhook that is really broken (Open Loyalty without a customer id), and one
an earlier decoder wrongly refused (written to the DLQ as that decoder would have: a valid signed
webhook, stage `decode`). Redriving fixes the second (its points reach the member) and sends the
first back to the DLQ with the current reason; redriving again writes nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from connector import raw
from connector.avro import default_codec
from connector.inspect import read_to_end
from connector.models import DeadLetter
from tests.integration.harness import Harness, sign

MEMBER = "ol-redriven"


def ol_change(customer: str | None, transfer: str, change: int, amount: int) -> Any:
    data: dict[str, Any] = {
        "amount": amount,
        "amountChange": change,
        "amountChangeType": "add",
        "pointsTransferId": transfer,
        "createdAt": "2026-03-01T09:00:00Z",
    }
    if customer is not None:
        data["customer"] = {"customerId": customer}
    return sign("open_loyalty", {"type": "AvailablePointsAmountChanged", "data": data})


async def produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"wrongly-refused")
    finally:
        await producer.stop()


def dlq(h: Harness, *args: str) -> dict[str, Any]:
    done = h.cli("dlq", *args)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def wait_for(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_list_and_redrive_dead_letters(h: Harness) -> None:
    worker = h.start_worker()
    bridge = h.start_bridge()
    h.send(bridge, [ol_change(None, "pt-broken", 5, 5)])  # no customer: a real dead letter
    good = ol_change(MEMBER, "pt-good", 40, 40)
    headers = raw.raw_headers(
        provider="open_loyalty",
        tenant=None,
        received_ms=int(time.time() * 1000),
        request_id="req-wrongly-refused",
        content_type="application/json",
        verified=True,
    )
    wrongly = DeadLetter(
        delivery_id="wrongly-refused",
        stage="decode",
        error_class="DecodeError",
        error_message="an earlier decoder's bug",
        raw=good.body,
        source_topic=h.topic("raw"),
        source_partition=0,
        source_offset=0,
        failed_at=datetime.now(UTC),
        provider="open_loyalty",
        tenant=None,
        headers=raw.header_map(headers),
    )
    asyncio.run(produce(h.bootstrap, h.topic("dlq"), default_codec().encode(wrongly)))
    wait_for(lambda: dlq(h, "list", "--json")["total"] == 2, "two dead letters")

    listed = dlq(h, "list", "--json", "--show", "5")
    assert listed["not_redriven"] == 2
    assert {(b["stage"], b["provider"], b["error_class"], b["count"]) for b in listed["by"]} == {
        ("decode", "open_loyalty", "DecodeError", 2)
    }
    assert any("pt-good" in s["raw"] for s in listed["samples"])  # bytes shown as text
    text = h.cli("dlq", "list", "--show", "1")
    assert text.returncode == 0 and "2 dead letters" in text.stdout, text.stdout

    assert dlq(h, "redrive", "--dry-run") == {
        "selected": 2,
        "already_redriven": 0,
        "redriven": 0,
        "by_stage": {},
        "dry_run": True,
        "would_redrive": 2,
    }
    first = dlq(h, "redrive", "--stage", "decode")
    assert (first["redriven"], first["by_stage"]) == (2, {"decode": 2})

    # the wrongly refused webhook is applied now; the broken one is a dead letter again
    member = h.wait_member(
        worker, "open_loyalty", "default", MEMBER, lambda m: m["events_applied"] >= 1
    )
    assert (member["balance"], member["computed_balance"]) == (40, 40)
    wait_for(lambda: dlq(h, "list", "--json")["total"] == 3, "the broken webhook to fail again")
    again = dlq(h, "list", "--json", "--show", "3")
    assert again["not_redriven"] == 1  # only the new failure, with the current reason
    newest = again["samples"][-1]
    assert newest["redriven"] is None and "customerId" in newest["error_message"]

    second = dlq(h, "redrive")
    assert (second["already_redriven"], second["redriven"]) == (2, 1)
    # each dead letter went back exactly once, whatever was run twice
    copies = Counter(
        raw.header_map(m.headers).get("redrive-of")
        for m in asyncio.run(read_to_end(h.bootstrap, h.topic("raw")))
    )
    redrives = {k: n for k, n in copies.items() if k is not None}
    assert len(redrives) == 3 and set(redrives.values()) == {1}, redrives
    h.wait_caught_up()
    member = h.wait_member(worker, "open_loyalty", "default", MEMBER, lambda m: True)
    assert (member["balance"], member["computed_balance"], member["events_applied"]) == (40, 40, 1)
    worker.stop()
    bridge.stop()
