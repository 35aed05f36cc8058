"""`CONNECTOR_PROCESSING_GUARANTEE=exactly_once` on real Apache Kafka (transactions).

The end-to-end scenario of test_worker_e2e (four providers, redeliveries, two webhooks about one
movement, stale snapshots), with the worker killed -9 while a phase is being processed and
started again. With Kafka transactions a read_committed reader sees every ledger entry, tier
change and balance exactly once: the killed worker's open transactions are aborted, and the
restarted worker redoes them from the committed offsets and table.
"""

from __future__ import annotations

import pytest

from connector.models import LedgerEntry, MemberBalance, Tier
from tests.integration.harness import Harness, latest_by_key
from tests.integration.test_worker_e2e import (
    APPLIED,
    EXPECTED,
    LEDGER,
    MEMBERS,
    TIERS,
    akey,
    by_member,
    key,
    phases,
)

EOS = {
    "CONNECTOR_PROCESSING_GUARANTEE": "exactly_once",
    # Faust reads these: the killed worker's group membership expires in seconds, not a minute
    "BROKER_SESSION_TIMEOUT": "6",
    "BROKER_HEARTBEAT_INTERVAL": "1",
}


@pytest.fixture
def h(h: Harness) -> Harness:
    """The test's Harness, its processes with exactly-once processing."""
    h.base_env.update(EOS)
    return h


def test_exactly_once_counts_each_movement_once_across_a_crash(h: Harness) -> None:
    worker = h.start_worker()
    bridge = h.start_bridge()
    steps = phases()
    for n, phase in enumerate(steps):
        h.send(bridge, [d for deliveries in phase.values() for d in deliveries])
        if n == 2:
            # phase 3 (redeliveries, stale snapshots) is in flight: crash and restart
            worker.kill()
            worker = h.start_worker(port=worker.port, data_dir=worker.data_dir)
        for member in MEMBERS:
            want = APPLIED[member][n]
            h.wait_member(worker, *member, lambda m, want=want: m["events_applied"] >= want)
    h.wait_caught_up(timeout=90)

    for member in MEMBERS:
        status, body = h.member(worker, *member)
        assert status == 200, body
        assert {k: body[k] for k in EXPECTED[member]} == EXPECTED[member], member
        assert body["events_applied"] == APPLIED[member][-1], member

    # read_committed: what a transactional reader sees, each entry exactly once
    ledger = h.read("ledger")
    entries: list[LedgerEntry] = [r.value for r in ledger]
    ids = [e.entry_id for e in entries]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    grouped = by_member(ledger)
    for member in MEMBERS:
        got = [
            (e.kind, e.origin, e.points_delta, e.balance_before, e.balance_after)
            for e in grouped[key(member)]
        ]
        assert got == LEDGER[member], member

    tiers = by_member(h.read("tiers"))
    for member in MEMBERS:
        assert [(t.tier, t.previous) for t in tiers[akey(member)]] == TIERS[member], member

    balances: dict[str, MemberBalance] = latest_by_key(h.read("balances"))
    for member in MEMBERS:
        b, e = balances[akey(member)], EXPECTED[member]
        assert (b.balance, b.computed_balance, b.drift, b.pending_points, b.tier) == (
            e["balance"],
            e["computed_balance"],
            e["drift"],
            e["pending_points"],
            Tier(**e["tier"]),
        ), member

    # the broken delivery of test_worker_e2e is not part of phases(): no dead letters here
    assert h.read("dlq") == []
    worker.stop()
    bridge.stop()
