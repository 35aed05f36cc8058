"""The soak's scoreboard: every topic read back and every account compared with the oracle
(balances, tiers, the member API, the ledger), dead letters, refusals, latencies, recovery, and
traces of the accounts found wrong."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp

from benchmarks.soak_faults import SPOOL_METRICS, Fault, Soak
from benchmarks.soak_workload import OVERFLOW_CHANGE, Item, Member, Workload
from connector.avro import default_codec
from connector.inspect import read_to_end
from connector.models import DEFAULT_ACCOUNT, DeadLetter, LoyaltyEvent, account_key

# ---------------------------------------------------------------------------------------------
# Kafka reading


@dataclass
class RawRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


async def _read(bootstrap: str, topic: str, timeout: float = 120) -> list[RawRecord]:
    messages = await read_to_end(
        bootstrap, topic, isolation_level="read_uncommitted", timeout=timeout, batch=5000
    )
    return [
        RawRecord(m.partition, m.offset, m.key, m.value, dict(m.headers or ())) for m in messages
    ]


def read_topic(bootstrap: str, topic: str) -> list[RawRecord]:
    return asyncio.run(_read(bootstrap, topic))


# ---------------------------------------------------------------------------------------------
# the scoreboard


def latest(bootstrap: str, topic: str, codec: Any) -> dict[str, Any]:
    """The latest record per key of a compacted topic (tombstones drop the key)."""
    out: dict[str, Any] = {}
    for r in sorted(read_topic(bootstrap, topic), key=lambda r: (r.partition, r.offset)):
        key = (r.key or b"").decode()
        if r.value is None:
            out.pop(key, None)
        else:
            out[key] = codec.decode(r.value)
    return out


def _tier_of(record: Any) -> dict[str, Any] | None:
    """A MemberTier record's tier as a dict (None: no tier, or no record)."""
    tier = None if record is None else record.tier
    return None if tier is None else dataclasses.asdict(tier)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


def _tier_matches(want: dict[str, Any] | None, got: dict[str, Any] | None) -> bool:
    if want is None:
        return got is None
    if got is None:
        return False
    return all(got.get(k) == v for k, v in want.items())


def _points(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def member_differences(m: Member, got: dict[str, Any]) -> list[str]:
    """The fields of a member (balance, computed and reported balance, pending points, tier, as
    `MemberBalance` names them) that differ from the oracle's account."""
    want = m.want()
    bad = [
        k
        for k in ("balance", "computed_balance", "reported_balance", "pending_points")
        if _points(got.get(k)) != want[k]
    ]
    if not _tier_matches(want["tier"], got.get("tier")):
        bad.append("tier")
    if got.get("account_id", DEFAULT_ACCOUNT) != want["account_id"]:
        bad.append("account_id")
    return bad


def _want_json(m: Member) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in m.want().items()}


def _phase(kind: str, movement_id: str) -> str:
    """Pending and canceled are phases of their own (an activation follows a pending)."""
    if kind in ("POINTS_PENDING", "POINTS_CANCELED"):
        return f"{movement_id}#{kind}"
    return movement_id


def overflow_movement(d: DeadLetter, workload: Workload, codec: Any) -> str | None:
    """The pointsTransferId of the run's overflowing delivery if `d` is the ledger's dead letter
    of it (stage `ledger`, out of range; its raw is the events-topic record), else None."""
    if d.stage != "ledger" or "out of range" not in d.error_message or not d.raw:
        return None
    try:
        event: LoyaltyEvent = codec.decode(d.raw, LoyaltyEvent)
    except Exception:  # not an events-topic record: not the overflow's dead letter
        return None
    movement = event.movement_id
    return movement if movement in workload.overflow.values() else None


def scoreboard(soak: Soak, workload: Workload, extra: dict[str, Any]) -> dict[str, Any]:
    assert soak.sender is not None
    st = soak.stack
    bootstrap = soak.broker.bootstrap
    items = soak.sender.items
    codec = default_codec()
    oracle = workload.oracle()

    raw = read_topic(bootstrap, st.topic("raw"))
    raw_ids = {r.headers.get("request-id", b"").decode() for r in raw}
    raw_bodies = {r.value for r in raw}
    acked = [it for it in items if it.status == 200]
    missing = [it.request_id for it in acked if it.request_id not in raw_ids]

    # deliveries the provider dropped after its whole retry budget. Without the spool they are
    # expected (a long outage outlasts the budget): the customers they touched are left out of
    # the balance checks (their provider's account moved, the connector never heard of it; a
    # refused write may also have landed late). With the spool none may be lost.
    valid = [it for it in items if it.kind in ("valid", "duplicate", "poison", "overflow")]
    lost = [it for it in valid if it.lost]
    lost_customers = {oracle[it.member].member_key for it in lost if it.member in oracle}
    excluded = (
        set()
        if soak.spool_dir is not None
        else {k for k, m in oracle.items() if m.member_key in lost_customers}
    )
    checked = {k: m for k, m in oracle.items() if k not in excluded}

    # accounts: the latest MemberBalance and MemberTier per key (the account key: the member key
    # for the default account), and the query API
    balances = latest(bootstrap, st.topic("balances"), codec)
    tiers = latest(bootstrap, st.topic("tiers"), codec)
    # an account the oracle's members do not hold (e.g. a Voucherify card's points under the
    # member's bare key, or a wallet's under the default account), or a record saying another
    stray_balances = sorted(
        k for k, b in balances.items() if k not in oracle or b.account_id != oracle[k].account
    )
    tiers_wrong: list[dict[str, Any]] = []
    for k in sorted((set(oracle) | set(tiers)) - excluded):
        record = tiers.get(k)
        want_tier = oracle[k].tier if k in oracle else "no such account"
        ok = (
            k in oracle
            and _tier_matches(oracle[k].tier, _tier_of(record))
            and (record is None or record.account_id == oracle[k].account)
        )
        if not ok:
            tiers_wrong.append({"account": k, "want": want_tier, "got": _tier_of(record)})
    wrong: list[dict[str, Any]] = []
    for key, m in checked.items():
        b = balances.get(key)
        got = None
        if b is not None:
            got = {
                "balance": b.balance,
                "computed_balance": b.computed_balance,
                "reported_balance": b.reported_balance,
                "pending_points": b.pending_points,
                "tier": None if b.tier is None else dataclasses.asdict(b.tier),
                "account_id": b.account_id,
            }
        bad = ["missing"] if got is None else member_differences(m, got)
        if bad:
            wrong.append(
                {
                    "member": key,
                    "flavour": m.flavour,
                    "differs": bad,
                    "want": _want_json(m),
                    "got": None
                    if got is None
                    else {k: str(v) if isinstance(v, Decimal) else v for k, v in got.items()},
                }
            )
    query_wrong, queries = query_members(soak, checked)

    # ledger: distinct entries, re-emissions, movements with two entry ids, sums per account;
    # the topic stays keyed by the member key (all of a member's accounts in one order)
    ledger_records = [r for r in read_topic(bootstrap, st.topic("ledger")) if r.value]
    ledger = [codec.decode(r.value) for r in ledger_records]
    ledger_miskeyed = sum(
        1 for r, e in zip(ledger_records, ledger, strict=True) if r.key != e.member_key.encode()
    )
    by_id: dict[str, Any] = {}
    inconsistent = 0
    for e in ledger:
        first = by_id.setdefault(e.entry_id, e)
        if (first.points_delta, first.balance_before, first.balance_after) != (
            e.points_delta,
            e.balance_before,
            e.balance_after,
        ):
            inconsistent += 1
    per_movement: dict[tuple[str, str], set[str]] = defaultdict(set)
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for e in by_id.values():
        account = account_key(e.member_key, e.account_id)
        if e.movement_id is not None:
            per_movement[(account, _phase(e.kind.value, e.movement_id))].add(e.entry_id)
        if e.kind.value not in ("POINTS_PENDING", "POINTS_CANCELED"):
            sums[account] += e.points_delta
    twice = {f"{k[0]} {k[1]}": sorted(v) for k, v in per_movement.items() if len(v) > 1}
    sum_wrong = {
        k: {"ledger_sum": str(sums.get(k, Decimal(0))), "oracle": m.balance}
        for k, m in checked.items()
        if sums.get(k, Decimal(0)) != m.balance
    }
    sum_wrong |= {
        k: {"ledger_sum": str(v), "oracle": "no such account"}
        for k, v in sums.items()
        if k not in oracle and v != 0
    }
    # booked on the account the movement was on (a movement booked on another is missing)
    booked = {
        (account_key(e.member_key, e.account_id), e.movement_id)
        for e in by_id.values()
        if e.movement_id is not None
    }
    not_booked = [
        f"{m.key} {mid}"
        for m in checked.values()
        for mid in m.movement_ids
        if (m.key, mid) not in booked
    ]

    # dead letters
    dlq = [codec.decode(r.value) for r in read_topic(bootstrap, st.topic("dlq")) if r.value]
    reasons = Counter(f"{d.stage} {d.error_class}: {d.error_message[:80]}" for d in dlq)
    overflow_dead = [overflow_movement(d, workload, codec) for d in dlq]  # one per dead letter
    unexpected_dlq = [
        d
        for d, overflow in zip(dlq, overflow_dead, strict=True)
        if d.raw not in workload.poison_bodies and overflow is None
    ]
    poison_acked = {it.delivery.body for it in acked if it.kind == "poison"}
    poison_missing = len(poison_acked - {d.raw for d in dlq})
    # the overflowing delivery: accepted by the bridge and the decoder, refused by the ledger
    # (one dead letter of stage `ledger` naming its movement), never booked, and its member as
    # the oracle says (the member checks above)
    overflow_items = [it for it in items if it.kind == "overflow"]
    overflow_acked = {workload.overflow[it.delivery.body] for it in acked if it.kind == "overflow"}
    overflow_dead_lettered = {m for m in overflow_dead if m is not None}
    overflow_booked = sorted(
        e.entry_id for e in by_id.values() if e.movement_id in workload.overflow.values()
    )

    forged = [it for it in items if it.kind == "forged"]
    forged_accepted = sum(1 for it in forged if it.status == 200 or it.delivery.body in raw_bodies)
    big = [it for it in items if it.kind == "oversized"]
    big_accepted = sum(1 for it in big if it.status == 200 or it.delivery.body in raw_bodies)
    # not acknowledged for another reason than the provider's budget (a final 4xx/5xx, or the
    # horizon when senders retry until it)
    refused_valid = [it for it in valid if it.status != 200 and not it.lost]

    # latencies: all attempts, and those that started inside a fault window
    attempts = [a for it in items for a in it.attempts]
    windows = [(f.t0, f.end if f.end is not None else f.t0) for f in soak.faults]

    def in_fault(t: float) -> bool:
        return any(a <= t <= b for a, b in windows)

    during = [d for s, d, st in attempts if in_fault(s)]
    outside = [d for s, d, st in attempts if not in_fault(s)]
    statuses = Counter(str(st) for _, _, st in attempts)

    must_be_zero = {
        "acknowledged_but_missing_from_raw": len(missing),
        "members_with_wrong_balance_or_tier": len(wrong),
        "balances_for_accounts_not_held": len(stray_balances),
        "accounts_wrong_on_tiers_topic": len(tiers_wrong),
        "members_wrong_via_query_api": len(query_wrong),
        "movements_counted_twice": len(twice),
        "members_whose_ledger_sum_differs": len(sum_wrong),
        "movements_missing_from_ledger": len(not_booked),
        "re_emitted_entries_with_different_numbers": inconsistent,
        "ledger_records_not_keyed_by_member": ledger_miskeyed,
        "forged_requests_accepted": forged_accepted,
        "oversized_requests_accepted": big_accepted,
        "valid_deliveries_never_acknowledged": len(refused_valid),
        "unexpected_dead_letters": len(unexpected_dlq),
        "poison_deliveries_not_dead_lettered": poison_missing,
        "overflow_deliveries_not_dead_lettered_by_ledger": len(
            overflow_acked - overflow_dead_lettered
        ),
        "overflow_movements_booked": len(overflow_booked),
        "drain_timed_out": 1 if extra.get("drain_seconds") is None else 0,
    }
    spool = spool_figures(soak, items)
    if soak.spool_dir is not None:  # the spool's promise: a long outage costs no delivery
        must_be_zero["lost_by_provider_retry_policy"] = len(lost)
        must_be_zero["spool_records_left_at_end"] = spool["bridge_spool_records_at_end"]
    by_kind = Counter(it.kind for it in items)
    # the workload's shapes, and legitimate repeats: a valid delivery whose exact bytes the member
    # already sent in an earlier delivery (it must count again)
    shapes = Counter(it.shape for it in items if it.kind == "valid")
    seen: set[tuple[str | None, bytes]] = set()
    repeats: Counter[str] = Counter()
    for it in sorted(
        (it for it in items if it.kind == "valid"),
        key=lambda it: it.attempts[0][0] if it.attempts else 0.0,
    ):
        if (it.member, it.delivery.body) in seen:
            repeats[it.delivery.provider] += 1
        seen.add((it.member, it.delivery.body))
    flavours = Counter(m.flavour for m in oracle.values())
    held: dict[str, list[Member]] = defaultdict(list)
    for m in oracle.values():
        held[m.member_key].append(m)
    multi = {k: ms for k, ms in held.items() if len(ms) > 1}
    board = {
        "ok": all(v == 0 for v in must_be_zero.values()),
        "must_be_zero": must_be_zero,
        "config": {
            "minutes": soak.args.minutes,
            "members": soak.args.members,
            "rate_per_s": soak.args.rate,
            "faults": sorted(soak.args.faults),
            "quick": soak.quick,
            "seed": soak.args.seed,
            "spool": soak.spool_dir is not None,
            "provider_retries": soak.sender.retries,
            "outage_seconds": soak.args.outage_seconds if "outage" in soak.args.faults else None,
            "kafka": soak.broker.version,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "started": extra.get("started"),
            "load_average_at_start": extra.get("load_average_at_start"),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "webhooks": {
            "sent": len(items),
            "by_kind": dict(by_kind),
            "late": sum(1 for it in items if it.late),
            "http_attempts": len(attempts),
            "attempt_statuses": dict(statuses),
            "acknowledged_200": len(acked),
            "in_raw_topic_by_request_id": len(raw_ids & {it.request_id for it in acked}),
            "raw_topic_records": len(raw),
            # a 503 after the ack deadline may still be stored: the retry is then a duplicate
            "raw_records_not_acknowledged": len(raw_ids - {it.request_id for it in acked}),
            "gave_up": sum(1 for it in items if it.gave_up),
            "lost_by_provider_retry_policy": len(lost),
            "acknowledged_spooled": sum(1 for it in acked if it.spooled),
            "load_balancer_reconnects": soak.sender.lb_reconnects,
            "forged_refused_401": sum(1 for it in forged if it.status == 401),
            "oversized_refused_413": sum(1 for it in big if it.status == 413),
        },
        "workload": {
            "members_by_flavour": dict(flavours),
            "valid_by_shape": dict(shapes),
            "byte_identical_repeats": dict(repeats),
            "members_with_pending_at_end": sum(1 for m in oracle.values() if m.pending),
            "customers": len(held),
            "accounts": len(oracle),
            "accounts_by_id": dict(Counter(m.account for m in oracle.values())),
            # customers with two accounts that both moved, by provider
            "multi_account_customers": dict(Counter(ms[0].provider for ms in multi.values())),
            "multi_account_movements": sum(m.movements for ms in multi.values() for m in ms),
        },
        "provider_retry_policy": provider_retry_policy(soak, lost, lost_customers, excluded),
        "spool": spool,
        "members": {
            "checked": len(checked),
            "excluded_lost_deliveries": len(excluded),
            "checked_via_query_api": queries,
            "wrong": wrong[:20],
            "stray_balances": stray_balances[:20],
            "wrong_on_tiers_topic": tiers_wrong[:20],
            "wrong_via_query_api": query_wrong[:20],
        },
        "ledger": {
            "records": len(ledger),
            "distinct_entries": len(by_id),
            "re_emitted_same_entry_id": len(ledger) - len(by_id),
            "movements_generated": sum(len(m.movement_ids) for m in oracle.values()),
            "counted_twice": dict(list(twice.items())[:20]),
            "sum_differs": dict(list(sum_wrong.items())[:20]),
            "not_booked": not_booked[:20],
            "records_not_keyed_by_member": ledger_miskeyed,
        },
        "dead_letters": {
            "records": len(dlq),
            "poison_acknowledged": len(poison_acked),
            "reasons": dict(reasons),
            "overflow": {
                "sent": len(overflow_items),
                "members": sorted({it.member for it in overflow_items if it.member}),
                "amount_change": OVERFLOW_CHANGE,
                "acknowledged": len(overflow_acked),
                "dead_lettered_by_ledger": len(overflow_dead_lettered),
                "dead_letter_records": sum(1 for m in overflow_dead if m is not None),
                "booked_entries": overflow_booked[:20],
            },
        },
        "latency_ms": {
            "during_faults": {"p50": percentile(during, 0.5), "p99": percentile(during, 0.99)},
            "outside_faults": {"p50": percentile(outside, 0.5), "p99": percentile(outside, 0.99)},
            "attempts_during_faults": len(during),
        },
        "faults": [vars(f) for f in soak.faults],
        "recovery_s": {
            f.name: {
                "bridge_200_again": f.bridge_200_s,
                "workers_ready": f.workers_ready_s,
                "spool_drained": f.spool_drained_s,
                "caught_up": f.caught_up_s,
            }
            for f in soak.faults
        },
        "traces_of_wrong_members": traces(
            [w["member"] for w in wrong]
            + [w["member"] for w in query_wrong]
            + list(sum_wrong)
            + stray_balances
            + [w["account"] for w in tiers_wrong],
            oracle,
            items,
            raw,
            ledger,
            epoch0=soak.sender.start_epoch,
        ),
        "unexpected_exits": soak.unexpected_exits,
        **extra,
    }
    return board


def spool_figures(soak: Soak, items: list[Item]) -> dict[str, Any]:
    """The spool as the senders saw it (200s saying spooled) and as the bridges counted it.

    Counters start at 0 in each bridge process: totals are sums of each process's last scrape
    (a process killed with SIGKILL: its last scrape, up to a second old, so "at least").
    """
    final = soak.scrape_bridge() if soak.spool_dir is not None else None
    with soak.lock:
        per_process = list(soak.bridge_metrics.values())
    total = {k: int(sum(m[k] for m in per_process)) for k in SPOOL_METRICS}
    return {
        "enabled": soak.spool_dir is not None,
        "acknowledged_spooled": sum(1 for it in items if it.status == 200 and it.spooled),
        "bridge_spooled_total": total["bridge_spooled_total"],
        "bridge_spool_forwarded": total["bridge_spool_forwarded"],
        "bridge_spool_full_total": total["bridge_spool_full_total"],
        # -1: the bridge did not answer /metrics at the end; None: no spool
        "bridge_spool_records_at_end": None
        if soak.spool_dir is None
        else -1
        if final is None
        else int(final["bridge_spool_records"]),
        "bridge_processes_scraped": len(per_process),
        "spool_records_when_bridge_killed": [int(x) for x in soak.spool_at_bridge_kill],
    }


def provider_retry_policy(
    soak: Soak, lost: list[Item], lost_customers: set[str], excluded: set[str]
) -> dict[str, Any]:
    """What the providers' retry budgets cost: lost deliveries by provider and by the fault in
    whose window their first attempt started."""

    def window(it: Item) -> str:
        start = it.attempts[0][0] if it.attempts else 0.0
        for f in soak.faults:
            if f.t0 <= start <= (f.end if f.end is not None else f.t0):
                return f.name
        return "outside faults"

    assert soak.sender is not None
    return {
        "retries": soak.sender.retries,
        "lost_by_provider_retry_policy": len(lost),
        "by_provider": dict(Counter(it.delivery.provider for it in lost)),
        "by_kind": dict(Counter(it.kind for it in lost)),
        "by_fault": dict(Counter(window(it) for it in lost)),
        "customers_touched": len(lost_customers),
        # without the spool: accounts of those customers, left out of the balance checks
        "accounts_excluded_from_balance_checks": len(excluded),
    }


def traces(
    keys: list[str],
    oracle: dict[str, Member],
    items: list[Item],
    raw: list[RawRecord],
    ledger: list[Any],
    epoch0: float,
    limit: int = 8,
) -> dict[str, Any]:
    """For members the checks found wrong (each flavour first, at most `limit`): what was sent,
    what the raw topic holds, what was booked.

    Enough to tell a workload mistake from a connector bug without re-running: each delivery in
    the order it was first attempted (its payload, attempts and the request id of its 200), each
    raw record carrying one of the member's bodies (key and the bridge's identity headers), and
    the member's ledger entries.
    """
    out: dict[str, Any] = {}
    unique = list(dict.fromkeys(keys))
    flavour = {k: oracle[k].flavour if k in oracle else None for k in unique}
    firsts = [k for i, k in enumerate(unique) if flavour[k] not in {flavour[j] for j in unique[:i]}]
    chosen = firsts + [k for k in unique if k not in firsts]  # every flavour shown first
    for key in chosen[:limit]:
        m = oracle.get(key)
        mine = [
            it for it in items if it.member == key and it.kind in ("valid", "duplicate", "overflow")
        ]
        mine.sort(key=lambda it: it.attempts[0][0] if it.attempts else 0.0)
        bodies = {it.delivery.body for it in mine}

        def payload(body: bytes) -> Any:
            try:
                doc = json.loads(body)
            except ValueError:
                return f"<{len(body)} bytes, not JSON (a Wix JWT)>"
            return doc.get("data", doc) if isinstance(doc, dict) else doc

        out[key] = {
            "flavour": None if m is None else m.flavour,
            "want": None if m is None else _want_json(m),
            "deliveries": [
                {
                    "kind": it.kind,
                    "shape": it.shape,
                    "late": it.late,
                    "payload": payload(it.delivery.body),
                    "x_webhook_request_id": it.delivery.headers.get("X-Webhook-Request-Id"),
                    # [started, in epoch ms like the raw record's received-at; seconds; status]
                    "attempts": [
                        [int((epoch0 + s) * 1000), round(d, 3), st] for s, d, st in it.attempts
                    ],
                    "request_id": it.request_id,
                }
                for it in mine
            ],
            "raw_records": [
                {
                    "partition": r.partition,
                    "offset": r.offset,
                    "key": (r.key or b"").decode(),
                    **{
                        h: r.headers[h].decode()
                        for h in ("request-id", "received-at", "first-received-at", "retry-of")
                        if h in r.headers
                    },
                    "payload": payload(r.value or b""),
                }
                for r in raw
                if r.value in bodies
            ],
            "ledger": [
                {
                    "entry_id": e.entry_id,
                    "kind": e.kind.value,
                    "origin": e.origin.value,
                    "delta": str(e.points_delta),
                    "before": str(e.balance_before),
                    "after": str(e.balance_after),
                    "reported_balance": None
                    if e.reported_balance is None
                    else str(e.reported_balance),
                    "movement_id": e.movement_id,
                    "account_id": e.account_id,
                }
                for e in ledger
                if account_key(e.member_key, e.account_id) == key
            ],
        }
    return out


def first_200_after(items: list[Item], faults: list[Fault]) -> None:
    """Per fault: seconds from injection until the bridge answered 200 again after refusing.

    The first refused or unanswered attempt (503, 429, connection error, timeout) that started
    after the injection opens the outage; the first 200 to an attempt started after it closes
    it. No refusal in the fault's window: 0 (senders did not notice the fault).
    """
    attempts = [a for it in items for a in it.attempts]
    for f in faults:
        end = f.end if f.end is not None else float("inf")
        fails = [s for s, _, st in attempts if st in (0, 429, 503) and f.t0 <= s <= end]
        if not fails:
            f.bridge_200_s = 0.0
            continue
        first_fail = min(fails)
        after = [s + d for s, d, st in attempts if st == 200 and s >= first_fail]
        f.bridge_200_s = round(min(after) - f.t0, 2) if after else None


def query_members(soak: Soak, oracle: dict[str, Member]) -> tuple[list[dict[str, Any]], int]:
    """The member API (from one worker; others are proxied): (what it got wrong, queries made).

    Each account by `GET /members/{p}/{t}/{c}?account=ID`, and each member once without
    `account`: its `accounts` list must be exactly the accounts the member holds (each with its
    oracle figures), and its top level the primary account's figures (`default` when the member
    holds it, else the first listed).
    """
    with soak.lock:
        base = next(iter(soak.workers.values())).url
    held: dict[str, list[Member]] = defaultdict(list)
    for m in oracle.values():
        held[m.member_key].append(m)

    async def all_members() -> list[dict[str, Any]]:
        wrong: list[dict[str, Any]] = []
        sem = asyncio.Semaphore(8)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:

            async def get(m: Member, account: str | None) -> Any:
                url = f"{base}/members/{m.provider}/{m.tenant}/{m.customer}"
                params = {} if account is None else {"account": account}
                body: Any = None
                for _ in range(10):
                    try:
                        async with sem, http.get(url, params=params) as r:
                            body = await r.json(content_type=None)
                            if r.status == 200:
                                break
                    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                        body = repr(exc)
                    await asyncio.sleep(1)
                return body

            def report(m: Member, check: str, bad: list[str], body: Any) -> None:
                if bad:
                    wrong.append(
                        {
                            "member": m.key,
                            "flavour": m.flavour,
                            "check": check,
                            "differs": bad,
                            "want": _want_json(m),
                            "got": body,
                        }
                    )

            def differences(m: Member, body: Any) -> list[str]:
                if isinstance(body, dict) and "balance" in body:
                    return member_differences(m, body)
                return ["no answer"]

            async def one(m: Member) -> None:
                body = await get(m, m.account)
                report(m, "?account=", differences(m, body), body)

            async def member(ms: list[Member]) -> None:
                body = await get(ms[0], None)
                listed = body.get("accounts") if isinstance(body, dict) else None
                if not isinstance(listed, list):
                    report(ms[0], "accounts list", ["no accounts list"], body)
                    return
                mine = {m.account: m for m in ms}
                got: dict[str, Any] = {}
                for a in listed:
                    got[str(a.get("account_id"))] = a
                for account in sorted(set(got) | set(mine)):
                    if account not in mine:
                        report(ms[0], "accounts list", [f"account {account} not held"], body)
                    elif account not in got:
                        report(mine[account], "accounts list", ["not listed"], body)
                    else:
                        bad = differences(mine[account], got[account])
                        report(mine[account], "accounts list", bad, got[account])
                if len(listed) != len(got):
                    report(ms[0], "accounts list", ["an account listed twice"], body)
                primary = DEFAULT_ACCOUNT if DEFAULT_ACCOUNT in mine else None
                if primary is None and listed:
                    primary = str(listed[0].get("account_id"))
                if primary in mine:
                    top = {k: v for k, v in body.items() if k != "accounts"}
                    report(mine[primary], "top level", differences(mine[primary], top), top)

            await asyncio.gather(
                *(one(m) for m in oracle.values()), *(member(ms) for ms in held.values())
            )
        return wrong

    return asyncio.run(all_members()), len(oracle) + len(held)
