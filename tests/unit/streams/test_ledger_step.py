"""The worker's ledger step without Kafka: what it counts and logs when the dedupe memory's
horizon decides (an event-id redelivery, and a twin of a movement whose key was forgotten)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from connector.avro import default_codec
from connector.domain.erasure import Erasure
from connector.domain.ledger import MemberState
from connector.models import EventType, LoyaltyEvent, MemberBalance, Provider, member_key, points
from connector.streams.ledger import LedgerStep
from connector.streams.metrics import WorkerMetrics
from connector.streams.state_format import load_state, record_key

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MEMORY = 3
CUSTOMER = "cust_1"
KEY = member_key(Provider.VOUCHERIFY, "default", CUSTOMER)


@dataclass(frozen=True)
class Message:
    """The attributes of a Faust `Message` the step and its dead letters read."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Event:
    message: Message


class Table:
    """`Members.read` / `read_erasure` over a dict of table values."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes | None] = {}

    def read(self, key: str, event: Any) -> MemberState | None:
        return load_state(self.values.get(record_key(key)))

    def read_erasure(self, member_key: str, event: Any) -> Erasure | None:
        return None


def vf(event_id: str, movement: str | None, at: int, delta: int = 10) -> LoyaltyEvent:
    """A Voucherify earn with the provider's own event id and clock (the horizon judges it)."""
    return LoyaltyEvent(
        event_id=event_id,
        provider=Provider.VOUCHERIFY,
        tenant="default",
        provider_event_type="customer.rewarded.loyalty_points",
        type=EventType.POINTS_EARNED,
        customer_id=CUSTOMER,
        member_key=KEY,
        occurred_at=T0 + timedelta(seconds=at),
        received_at=T0 + timedelta(seconds=at),
        movement_id=movement,
        points_delta=points(delta),
    )


class Worker:
    """A LedgerStep writing into a dict, one event per batch, as the agent would."""

    def __init__(self) -> None:
        self.codec = default_codec()
        self.metrics = WorkerMetrics()
        self.table = Table()
        topics: Any = {"ledger": "ledger", "balances": "balances", "tiers": "tiers"}
        self.step = LedgerStep(self.codec, self.metrics, self.table, topics, memory=MEMORY)  # type: ignore[arg-type]
        self.offset = 0

    def send(self, event: LoyaltyEvent) -> list[tuple[Any, bytes, bytes | None]]:
        message = Message(KEY.encode(), self.codec.encode(event), [], "events", 0, self.offset)
        self.offset += 1
        written, outputs, dead = self.step(Event(message), {}, serialize=True)  # type: ignore[arg-type]
        assert dead is None, dead
        for key, value in written:
            self.table.values[record_key(key)] = value
        return outputs

    def metric(self, name: str) -> float:
        value = self.metrics.registry.get_sample_value(name)
        assert value is not None, name
        return value

    def counts(self) -> tuple[float, float, float]:
        return (
            self.metric("worker_duplicate_events_total"),
            self.metric("worker_beyond_dedupe_horizon_total"),
            self.metric("worker_beyond_movement_horizon_total"),
        )

    def balance(self) -> Decimal:
        state = self.table.read(KEY, None)
        assert state is not None
        return state.computed_balance


def horizon_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "connector.worker" and r.levelno == logging.WARNING and "forgot" in r.msg
    ]


@pytest.fixture
def worker() -> Worker:
    w = Worker()
    for i in range(10):  # the memory keeps 3 event ids and 6 movement keys
        w.send(vf(f"evt_{i}", f"vtx_{i}", at=i))
    assert w.balance() == Decimal(100)
    assert w.counts() == (0, 0, 0)
    return w


def test_a_redelivery_beyond_the_event_id_memory_is_counted_and_logged(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="connector.worker")
    # evt_5's id is forgotten (evt_7..9 are kept); its movement key vtx_5 is still held
    outputs = worker.send(vf("evt_5", "vtx_5", at=5))
    assert worker.counts() == (1, 1, 0)
    assert worker.balance() == Decimal(100)
    assert [topic for topic, _, _ in outputs] == ["balances"]  # re-emitted, nothing booked
    balance = worker.codec.decode(outputs[0][2] or b"", MemberBalance)
    assert balance.computed_balance == Decimal(100)
    (record,) = horizon_warnings(caplog)
    assert record.getMessage() == (
        f"event evt_5 of {KEY} is older than what the dedupe memory forgot "
        "(CONNECTOR_DEDUPE_MEMORY); taken as a redelivery and not applied"
    )
    assert (record.event_id, record.member_key) == ("evt_5", KEY)  # type: ignore[attr-defined]
    assert not hasattr(record, "movement_id")


def test_a_twin_of_a_forgotten_movement_is_counted_and_logged_not_booked(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="connector.worker")
    # the project webhook about vtx_0, after both evt_0 and the key vtx_0 were forgotten
    outputs = worker.send(vf("evt_0_project", "vtx_0", at=0))
    assert worker.counts() == (1, 1, 1)
    assert worker.balance() == Decimal(100)  # not 110: the movement counted once
    assert [topic for topic, _, _ in outputs] == ["balances"]
    (record,) = horizon_warnings(caplog)
    assert record.getMessage() == (
        f"event evt_0_project of {KEY} names movement vtx_0, which the dedupe memory forgot, "
        "and is older than what it forgot (CONNECTOR_DEDUPE_MEMORY); taken as a twin or "
        "redelivery of it: the movement is not booked again"
    )
    assert record.movement_id == "vtx_0"  # type: ignore[attr-defined]
    assert (record.event_id, record.member_key) == ("evt_0_project", KEY)  # type: ignore[attr-defined]


def test_events_the_memory_or_the_horizon_vouch_for_are_not_counted(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="connector.worker")
    worker.send(vf("evt_9", "vtx_9", at=9))  # a redelivery the memory holds
    worker.send(vf("evt_9_project", "vtx_9", at=9))  # a twin whose key it holds
    assert worker.counts() == (1, 0, 0)
    worker.send(vf("evt_10", "vtx_10", at=10))  # new, and newer than the horizon
    assert worker.counts() == (1, 0, 0)
    assert worker.balance() == Decimal(110)
    assert horizon_warnings(caplog) == []
