"""Workers as a Faust cluster on real Apache Kafka: query routing between two workers, `kill -9`
of one while webhooks keep flowing, rejoin, leave again; and a single worker's restarts with its
own data dir and with a fresh one (tables recovered from the changelog).

Open Loyalty members get deltas (+k for k = 1..K, with the running total as the reported
balance): final balance K(K+1)/2. Wix members get account snapshots (revision r: earned = balance
= 10r), in whatever order they arrive: final balance 10K. Redeliveries are mixed in.
"""

from __future__ import annotations

import asyncio
import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.models import EntryOrigin, EventType, LedgerEntry
from tests.integration.harness import (
    Delivery,
    Harness,
    WorkerProc,
    latest_by_key,
    ol_points_changed,
    partition_of,
    post_all,
    sign,
    wait_until,
    wix_account,
)

# Faust reads these from the environment: notice a killed worker in ~6 s instead of 60 s
FAST_FAILOVER = {"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}
WIX_POINTS = "wix.loyalty.v1.account_points_updated"
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def ol_earn(customer: str, k: int) -> Delivery:
    """The k-th earn of an Open Loyalty member: +k, balance after = 1 + 2 + ... + k."""
    total = k * (k + 1) // 2
    return sign(
        "open_loyalty", ol_points_changed(customer, f"{customer}-T{k}", k, "add", total, at(k))
    )


def wix_snapshot(contact: str, revision: int) -> Delivery:
    """Revision r of a Wix account: earned = balance = 10 r."""
    return sign(
        "wix",
        wix_account(
            WIX_POINTS,
            "site-1",
            contact,
            f"{contact}-r{revision}",
            at(revision),
            revision=revision,
            balance=10 * revision,
            earned=10 * revision,
        ),
    )


def expected_balance(member: tuple[str, str, str], k: int) -> int:
    return k * (k + 1) // 2 if member[0] == "open_loyalty" else 10 * k


def deliveries(members: list[tuple[str, str, str]], ks: range) -> list[Delivery]:
    """Round-robin over members for each k in `ks`; every 7th delivery is sent twice."""
    out: list[Delivery] = []
    for k in ks:
        for member in members:
            d = ol_earn(member[2], k) if member[0] == "open_loyalty" else wix_snapshot(member[2], k)
            out.append(d)
            if len(out) % 7 == 0:
                out.append(d)
    return out


def assert_members(
    h: Harness, worker: WorkerProc, members: list[tuple[str, str, str]], k: int
) -> dict[str, Any]:
    """Every member's query answer, waiting until it shows all K movements; then exact values."""
    answers = {}
    for member in members:
        want = expected_balance(member, k)
        body = h.wait_member(worker, *member, lambda m, want=want: m["computed_balance"] >= want)
        assert (body["balance"], body["computed_balance"], body["drift"]) == (want, want, 0), body
        assert body["lifetime_earned"] == want, body
        answers[":".join(member)] = body
    return answers


def assert_ledger(h: Harness, members: list[tuple[str, str, str]], k: int) -> None:
    """Distinct ledger entries add up to each member's balance; re-sent copies are identical."""
    by_id: dict[str, LedgerEntry] = {}
    for r in h.read("ledger"):
        e: LedgerEntry = r.value
        first = by_id.setdefault(e.entry_id, e)
        # at-least-once: an entry may be re-sent after a crash, but always the same entry
        assert (first.points_delta, first.balance_before, first.balance_after) == (
            e.points_delta,
            e.balance_before,
            e.balance_after,
        ), e.entry_id
    for member in members:
        mine = [e for e in by_id.values() if e.member_key == ":".join(member)]
        assert sum(e.points_delta for e in mine) == expected_balance(member, k), member
        assert {e.kind for e in mine} == {EventType.POINTS_EARNED}
        if member[0] == "open_loyalty":
            assert len(mine) == k and {e.origin for e in mine} == {EntryOrigin.REPORTED}
        else:
            assert {e.origin for e in mine} == {EntryOrigin.DERIVED}
    balances = latest_by_key(h.read("balances"))
    for member in members:
        b = balances[":".join(member)]
        want = Decimal(expected_balance(member, k))
        assert (b.balance, b.computed_balance, b.lifetime_earned) == (want, want, want), member


def same_answers(
    h: Harness, a: WorkerProc, b: WorkerProc, members: list[tuple[str, str, str]]
) -> None:
    """Each member's answer is the same from both workers' ports (one of them proxies)."""
    for member in members:

        def both(member: tuple[str, str, str] = member) -> bool:
            sa, ja = h.member(a, *member)
            sb, jb = h.member(b, *member)
            assert sa == sb == 200, (sa, ja, sb, jb)
            assert ja == jb, (ja, jb)
            return True

        wait_until(both, 60, f"the same answer for {member} from both workers", on_timeout=h.logs)


def test_two_workers_route_queries_and_survive_kill_9(h: Harness) -> None:
    K = 15
    ol = [("open_loyalty", "default", f"ol-{j}") for j in range(12)]
    wix = [("wix", "site-1", f"wx-{j}") for j in range(8)]
    members = ol + wix
    env = {"CONNECTOR_PARTITIONS": "4", **FAST_FAILOVER}
    h.base_env.update(env)
    bridge = h.start_bridge()
    a = h.start_worker("worker-a", wait=False)
    b = h.start_worker("worker-b", wait=False)
    h.wait_ready(a)
    h.wait_ready(b)

    # first movement of everyone; both workers answer every member identically
    h.send(bridge, deliveries(members, range(1, 2)))
    assert_members(h, a, members, 1)
    same_answers(h, a, b, members)
    assert_split(h, a, b, members)  # so half of the answers above were proxied

    # the rest while worker b is killed -9 in the middle
    stream = deliveries(members, range(2, K + 1))
    sent: list[str] = []
    failure: list[BaseException] = []

    def sender() -> None:
        async def go() -> None:
            for i in range(0, len(stream), 10):
                sent.extend(await post_all(bridge.url, stream[i : i + 10], concurrency=5))
                await asyncio.sleep(0.05)

        try:
            asyncio.run(go())
        except BaseException as exc:  # surfaced by the main thread
            failure.append(exc)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    wait_until(lambda: len(sent) >= len(stream) // 3, 60, "a third of the webhooks sent")
    b.kill()
    thread.join(120)
    assert not thread.is_alive() and not failure, failure
    assert len(sent) == len(stream)

    # worker a takes over b's partitions (standby copies, else the changelog): nothing lost,
    # nothing counted twice
    h.wait_ready(a)
    h.wait_caught_up(timeout=90)
    answers = assert_members(h, a, members, K)
    assert_ledger(h, members, K)

    # b restarts with its data dir and rejoins: the answers stay the same from both ports
    b2 = h.start_worker("worker-b", port=b.port, data_dir=b.data_dir, wait=False)
    h.wait_ready(b2)
    h.wait_ready(a)
    same_answers(h, a, b2, members)
    for member in members:
        status, body = h.member(b2, *member)
        assert status == 200 and body == answers[":".join(member)], body
    assert_split(h, a, b2, members)

    # and the cluster keeps counting exactly
    h.send(bridge, deliveries(members, range(K + 1, K + 3)))
    h.wait_caught_up(timeout=60)
    assert_members(h, b2, members, K + 2)
    assert_ledger(h, members, K + 2)
    same_answers(h, a, b2, members)

    # b leaves again: a gets back partitions it processed before b's return, whose records b
    # changed since; a must read them anew (store kept by its standby copies), not from what
    # it kept in memory when it last owned them (members.StateCache, emptied per rebalance)
    b2.stop()
    h.send(bridge, deliveries(members, range(K + 3, K + 5)))
    h.wait_caught_up(timeout=90)
    assert_members(h, a, members, K + 4)
    assert_ledger(h, members, K + 4)

    a.stop()
    bridge.stop()


def assert_split(
    h: Harness, a: WorkerProc, b: WorkerProc, members: list[tuple[str, str, str]]
) -> None:
    """Both workers own members-table partitions (as Faust routes them), and members on each."""

    def split() -> dict[str, list[int]] | None:
        routes = h.routes(a)
        if routes != h.routes(b) or set(routes) != {a.url, b.url} or not all(routes.values()):
            return None
        return routes

    routes = wait_until(split, 60, "both workers to own partitions", on_timeout=h.logs)
    assert sorted(p for ps in routes.values() for p in ps) == [0, 1, 2, 3], routes
    homes = {partition_of(":".join(m), 4) for m in members}
    for url, partitions in routes.items():
        assert homes & set(partitions), f"no member lives on {url}: {routes}"


def test_single_worker_restarts_recover_tables(h: Harness) -> None:
    members = [("open_loyalty", "default", f"ol-{j}") for j in range(3)] + [
        ("wix", "site-1", f"wx-{j}") for j in range(2)
    ]
    bridge = h.start_bridge()
    worker = h.start_worker()
    first = deliveries(members, range(1, 5))
    h.send(bridge, first)
    before = assert_members(h, worker, members, 4)
    worker.stop()  # SIGTERM: exit 0 within 20 s

    # same data dir (and port: the store lives in <data dir>/<app id>-<port>)
    worker = h.start_worker(port=worker.port, data_dir=worker.data_dir)
    for member in members:
        status, body = h.member(worker, *member)
        assert status == 200 and body == before[":".join(member)], body
    # the first deliveries again (provider retries) and new ones: counted once
    h.send(bridge, first + deliveries(members, range(5, 7)))
    h.wait_caught_up()
    assert_members(h, worker, members, 6)
    worker.stop()

    # a fresh data dir: the members table is rebuilt from its changelog topic
    fresh = h.tmp / "fresh-data"
    worker = h.start_worker("worker-fresh", data_dir=fresh)
    assert list(fresh.iterdir()), "the fresh worker should have written its store there"
    # rebuilt by the bulk restore (connector/streams/recovery.py), not record by record
    restored = re.search(r"bulk restore: (\d+) changelog records", worker.log_text())
    assert restored and int(restored.group(1)) > 0, worker.log_tail()
    recovered = assert_members(h, worker, members, 6)
    h.send(bridge, first + deliveries(members, range(7, 9)))
    h.wait_caught_up()
    final = assert_members(h, worker, members, 8)
    assert_ledger(h, members, 8)
    for member in members:
        k = ":".join(member)
        assert final[k]["events_applied"] > recovered[k]["events_applied"]
    worker.stop()
    bridge.stop()
