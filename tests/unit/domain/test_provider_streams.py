"""Provider-realistic delivery streams through the real decoders and ledger, against an oracle.

Each test draws what happened to one member AT THE PROVIDER (earn, spend, expire, unlock,
pending, tier changes, returns to an earlier state), turns it into the webhooks that provider
sends for it (shapes from docs/delivery-semantics.md: Open Loyalty OSS 3.x amount changes with
`amount_change: 0` for expiries, cancels and unlocks; Gameball v3 profiles without a time; Wix
accounts with revisions and `tier: null`; Voucherify accruals reported twice, pending points
then activation or cancel), then delivers them as the bridge would hand them to the worker:
re-reads of one raw record, a provider retry of a refused delivery that reached Kafka after all
(`retry-of`), a retry of one that did not (`first-received-at`), and arrival out of order.

The oracle is the provider's own account: a few numbers updated by the drawn operations. It
knows nothing of the ledger's rules, ids, marks or chain; the final member state must equal it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.domain.ledger import MemberState, apply, with_account
from connector.errors import DecodeError
from connector.models import LoyaltyEvent, Tier, account_key
from connector.providers.base import DecodeContext
from connector.providers.gameball import Gameball
from connector.providers.open_loyalty import OpenLoyalty
from connector.providers.voucherify import Voucherify
from connector.providers.wix import Wix
from tests.support import FIXTURES

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CUSTOMER = "c-1"


@dataclass
class Account:
    """The member's account at the provider: what the numbers really are."""

    balance: int = 0
    pending: int = 0
    earned: int = 0
    redeemed: int = 0
    expired: int = 0
    adjusted: int = 0
    tier: str | None = None


@dataclass
class Delivery:
    """One accepted HTTP delivery as the worker sees its raw record."""

    body: bytes
    key: str  # the raw record's key: the delivery identity
    received: datetime
    headers: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# delivering: what the bridge and Kafka do to a provider's sequence of deliveries


@st.composite
def delivered(draw: st.DrawFn, sent: list[Delivery]) -> list[Delivery]:
    """`sent` (in the provider's order) as the ledger receives it: copies, retries, reordering.

    * a re-read of one raw record (worker restart, at-least-once): the same key and time;
    * a retry of a delivery the bridge answered 503 although Kafka had it: another raw record
      whose retry-of names the first copy's key (its identity), first-received-at its time;
    * a retry of a delivery Kafka never got: the only copy, received later, but dated by the
      bridge's first-received-at, so it is the first attempt's time again;
    * arrival order: each raw record is displaced by up to 6 places (raw partitions are
      re-keyed by member; the chain and the order keys must absorb it).
    """
    out: list[Delivery] = []
    for d in sent:
        out.append(d)
        fault = draw(st.sampled_from(["none", "none", "none", "reread", "late-ack", "lost"]))
        if fault == "reread":
            out.append(d)
        elif fault == "late-ack":
            out.append(Delivery(d.body, d.key, d.received, d.headers))  # retry-of -> d.key
        elif fault == "lost":
            out[-1] = Delivery(d.body, f"{d.key}-retry", d.received, d.headers)
    jitter = [i + draw(st.integers(0, 6)) for i in range(len(out))]
    return [d for _, d in sorted(zip(jitter, out, strict=True), key=lambda p: p[0])]


def run_ledger(provider: Any, deliveries: list[Delivery]) -> MemberState | None:
    state: MemberState | None = None
    for i, d in enumerate(deliveries):
        context = DecodeContext(tenant=None, received_at=d.received, delivery=d.key)
        events: list[LoyaltyEvent] = provider.decode(d.body, d.headers, context)
        for event in events:
            out = apply(state, event, now=T0 + timedelta(days=1, seconds=i), offset=i)
            state = out.state
    return state


def at(i: int) -> datetime:
    return T0 + timedelta(seconds=10 * i)


def iso(i: int) -> str:
    return at(i).isoformat().replace("+00:00", "Z")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# ---------------------------------------------------------------------------------------------
# Open Loyalty OSS 3.x: amount changes without ids or times; expire/cancel/unlock send 0


OL_OPS = st.lists(
    st.tuples(
        st.sampled_from(["earn", "earn", "spend", "expire", "cancel", "unlock", "level"]),
        st.integers(1, 4).map(lambda n: n * 5),  # small values: repeats of one state are common
    ),
    min_size=1,
    max_size=25,
)


def ol_sent(ops: list[tuple[str, int]], acct: Account) -> list[Delivery]:
    """The webhooks OSS sends (WebhookListener: customerId, amount, amount_change, type)."""
    sent: list[Delivery] = []
    levels = ["lvl-a", "lvl-b"]
    for i, (op, value) in enumerate(ops):
        if op == "level":
            level = levels[i % 2]
            acct.tier = level
            data: dict[str, Any] = {"customerId": CUSTOMER, "levelId": level, "levelName": level}
            body = {"type": "customer.level_changed", "data": data}
        else:
            if op in ("spend", "expire", "cancel"):
                value = min(value, acct.balance)
                if value == 0:
                    continue
            change, change_type = value, "add"
            if op == "earn":
                acct.balance += value
                acct.earned += value
            elif op == "spend":
                acct.balance -= value
                acct.redeemed += value
                change_type = "subtract"
            else:  # the event's defaults: $amountChange = 0, $operationType = 'subtract'
                delta = value if op == "unlock" else -value
                acct.balance += delta
                acct.adjusted += delta
                change, change_type = 0, "subtract"
            data = {
                "customerId": CUSTOMER,
                "amount": float(acct.balance),
                "amount_change": change,
                "amount_change_type": change_type,
            }
            body = {"type": "account.available_points_amount_changed", "data": data}
        sent.append(Delivery(dumps(body), f"req-{i}", at(i)))
    return sent


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ops=OL_OPS)
def test_open_loyalty_oss_stream_ends_at_the_providers_numbers(
    data: st.DataObject, ops: list[tuple[str, int]]
) -> None:
    acct = Account()
    sent = ol_sent(ops, acct)
    if not sent:
        return
    state = run_ledger(OpenLoyalty(), data.draw(delivered(sent)))
    assert state is not None
    if any(op != "level" for op, _ in ops) and state.reported_balance is not None:
        assert state.balance == acct.balance
        assert state.computed_balance == acct.balance  # every movement booked, none twice
        assert state.to_balance().drift == 0
    assert state.lifetime_earned == acct.earned
    assert state.lifetime_redeemed == acct.redeemed
    assert state.lifetime_adjusted == acct.adjusted  # expiries, cancels, unlocks (unlabelled)
    assert state.pending_points == 0
    assert (state.tier.id if state.tier else None) == acct.tier


def test_the_issues_open_loyalty_sequence_counts_the_repeat() -> None:
    # earn 10, spend 10, earn 10 again: the third body is byte-identical to the first
    acct = Account()
    sent = ol_sent([("earn", 10), ("spend", 10), ("earn", 10)], acct)
    assert sent[0].body == sent[2].body
    state = run_ledger(OpenLoyalty(), sent)
    assert state is not None
    assert (state.balance, state.computed_balance, state.lifetime_earned) == (10, 10, 20)


def test_an_oss_expiry_is_booked_not_hidden_in_the_drift() -> None:
    acct = Account()
    sent = ol_sent([("earn", 20), ("expire", 15), ("unlock", 5)], acct)
    for order in (sent, sent[::-1], [sent[1], sent[0], sent[2]]):
        state = run_ledger(OpenLoyalty(), order)
        assert state is not None
        assert (state.balance, state.computed_balance, state.lifetime_adjusted) == (10, 10, -10)


def test_a_recognised_retry_of_an_old_amount_change_does_not_move_the_balance_back() -> None:
    # Cloud: earn 10 (refused, its write lost), earn 5, then the retry of the first with a
    # fresh X-Webhook-Timestamp; the bridge tagged the retry with first-received-at.
    def cloud(amount: int, change: int, sent: datetime, **raw: str) -> tuple[bytes, dict[str, str]]:
        data = {
            "customerId": CUSTOMER,
            "amount": amount,
            "amountChange": change,
            "amountChangeType": "add",
        }
        body = {"type": "account.available_points_amount_changed", "data": data}
        return dumps(body), {"X-Webhook-Timestamp": str(int(sent.timestamp()))} | raw

    def ms(t: datetime) -> str:
        return str(int(t.timestamp() * 1000))

    first_body, _ = cloud(10, 10, at(0))
    second_body, second_headers = cloud(15, 5, at(1))
    retry_at = at(1) + timedelta(minutes=30)
    _, retry_headers = cloud(10, 10, retry_at, **{"first-received-at": ms(at(0))})
    retry_headers["received-at"] = ms(retry_at)
    sent = [
        Delivery(second_body, "req-2", at(1), second_headers),
        # the worker's context: received_at = first-received-at, delivery = retry-of
        Delivery(first_body, "req-1", at(0), retry_headers),
    ]
    state = run_ledger(OpenLoyalty(), sent)
    assert state is not None
    assert (state.balance, state.computed_balance, state.lifetime_earned) == (15, 15, 15)
    assert state.to_balance().drift == 0


# Open Loyalty 5.x: the spec envelope, messageId per webhook (kept by retries), transferId
V5_CHANGE = (FIXTURES / "open_loyalty" / "v5_available_points_amount_changed.json").read_bytes()
V5_PENDING = (FIXTURES / "open_loyalty" / "v5_units_transfer_added_pending.json").read_bytes()


def v5_retry(body: bytes) -> bytes:
    """The same webhook sent again: a new requestId ("each webhook send attempt")."""
    obj = json.loads(body)
    obj["requestId"] = f"retry-of-{obj['requestId']}"
    return dumps(obj)


def test_a_v5_retry_with_the_same_message_id_counts_once() -> None:
    # an unrecognised retry: other bytes, another raw key, no retry-of
    for sent in (
        [Delivery(V5_CHANGE, "rq-1", at(0)), Delivery(v5_retry(V5_CHANGE), "rq-2", at(5))],
        [Delivery(v5_retry(V5_CHANGE), "rq-2", at(5)), Delivery(V5_CHANGE, "rq-1", at(0))],
    ):
        state = run_ledger(OpenLoyalty(), sent)
        assert state is not None
        assert (state.balance, state.computed_balance, state.lifetime_earned) == (100, 100, 100)
        assert state.events_applied == 1


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_v5_pending_transfer_then_its_activation_leaves_no_pending(data: st.DataObject) -> None:
    sent = [
        Delivery(V5_PENDING, "rq-pending", at(0)),
        Delivery(V5_CHANGE, "rq-activated", at(1)),
        Delivery(v5_retry(V5_CHANGE), "rq-activated-again", at(2)),
    ]
    state = run_ledger(OpenLoyalty(), data.draw(delivered(sent)))
    assert state is not None
    assert state.pending_points == 0
    assert (state.balance, state.computed_balance, state.lifetime_earned) == (100, 100, 100)


def test_a_v5_pending_transfer_is_pending_until_activated() -> None:
    state = run_ledger(OpenLoyalty(), [Delivery(V5_PENDING, "rq-pending", at(0))])
    assert state is not None
    assert state.pending_points == 100
    assert state.computed_balance == 0


# ---------------------------------------------------------------------------------------------
# Gameball: profile snapshots only; v3 has no time, and repeats are byte-identical


GB_OPS = st.lists(
    st.tuples(st.sampled_from(["earn", "redeem", "pend", "activate", "tier"]), st.integers(1, 3)),
    min_size=1,
    max_size=20,
)


def gb_sent(ops: list[tuple[str, int]], acct: Account, v3: bool) -> list[Delivery]:
    sent: list[Delivery] = []
    tiers = [("basic", 1), ("silver", 2)]
    for i, (op, n) in enumerate(ops):
        value = n * 50
        if op == "earn":
            acct.balance += value
            acct.earned += value
        elif op == "redeem":
            spent = min(value, acct.balance)
            acct.balance -= spent
            acct.redeemed += spent
        elif op == "pend":
            acct.pending += value
        elif op == "activate":
            moved = min(value, acct.pending)
            acct.pending -= moved
            acct.balance += moved
            acct.earned += moved  # an activation makes points spendable: earned
        else:
            acct.tier = tiers[i % 2][0]
        tier = next(((t, o) for t, o in tiers if t == acct.tier), None)
        if v3:
            body: dict[str, Any] = {
                "playerUniqueId": CUSTOMER,
                "activatedPoints": acct.balance,
                "pendingPoints": acct.pending,
            }
            if tier:
                body |= {"levelName": tier[0], "levelOrder": tier[1]}
        else:
            profile: dict[str, Any] = {
                "activated_points": acct.balance,
                "pending_points": acct.pending,
            }
            if tier:
                profile |= {"tier_name": tier[0], "tier_order": tier[1]}
            body = {
                "event": "customer.profile.updated",
                "customer_id": CUSTOMER,
                "created_at": iso(i),
                "data": profile,
            }
        sent.append(Delivery(dumps(body), f"req-{i}", at(i)))
    return sent


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ops=GB_OPS, v3=st.booleans())
def test_gameball_profiles_end_at_the_providers_numbers(
    data: st.DataObject, ops: list[tuple[str, int]], v3: bool
) -> None:
    acct = Account()
    state = run_ledger(Gameball(), data.draw(delivered(gb_sent(ops, acct, v3))))
    assert state is not None
    assert state.balance == acct.balance
    assert state.computed_balance == acct.balance
    assert state.pending_points == acct.pending
    # a profile says only the balance: every rise is earned, every fall redeemed, whatever
    # order the raw partitions deliver the profiles in
    assert (state.lifetime_earned, state.lifetime_redeemed) == (acct.earned, acct.redeemed)
    assert (state.tier.name if state.tier else None) == acct.tier


def test_the_issues_gameball_v3_return_to_an_earlier_balance_counts() -> None:
    # 100 -> 150 -> 100: the third profile is byte-identical to the first
    sent = [
        Delivery(dumps({"playerUniqueId": CUSTOMER, "activatedPoints": b}), f"req-{i}", at(i))
        for i, b in enumerate([100, 150, 100])
    ]
    assert sent[0].body == sent[2].body
    state = run_ledger(Gameball(), sent)
    assert state is not None
    assert (state.balance, state.computed_balance) == (100, 100)
    assert (state.lifetime_earned, state.lifetime_redeemed) == (150, 50)


def test_a_gameball_profile_processed_late_still_counts_both_movements_around_it() -> None:
    # 100 -> 150 -> 100 sent one at a time; the raw records sit on different partitions, so the
    # worker may read the middle one last (CI saw exactly this)
    sent = [
        Delivery(dumps({"playerUniqueId": CUSTOMER, "activatedPoints": b}), f"req-{i}", at(i))
        for i, b in enumerate([100, 150, 100])
    ]
    for order in ([0, 2, 1], [2, 0, 1], [1, 2, 0], [2, 1, 0]):
        state = run_ledger(Gameball(), [sent[i] for i in order])
        assert state is not None
        assert (state.balance, state.computed_balance) == (100, 100), order
        assert (state.lifetime_earned, state.lifetime_redeemed) == (150, 50), order


def test_a_late_gameball_v3_retry_dated_by_its_first_attempt_does_not_move_the_balance_back() -> (
    None
):
    old = Delivery(dumps({"playerUniqueId": CUSTOMER, "activatedPoints": 100}), "r-1", at(0))
    new = Delivery(dumps({"playerUniqueId": CUSTOMER, "activatedPoints": 150}), "r-2", at(1))
    # the first attempt of `old` was refused; its retry arrives after `new`, with the bridge's
    # first-received-at (the worker's received_at), so it sorts before `new`
    retry = Delivery(old.body, "r-3", old.received)
    state = run_ledger(Gameball(), [new, retry])
    assert state is not None and state.balance == 150


# ---------------------------------------------------------------------------------------------
# Wix: account snapshots with revisions, counters, tier null; out of order by design


WIX_OPS = st.lists(
    st.tuples(
        st.sampled_from(["earn", "redeem", "expire", "adjust", "tier", "untier"]), st.integers(1, 5)
    ),
    min_size=1,
    max_size=20,
)


def wix_sent(ops: list[tuple[str, int]], acct: Account) -> list[Delivery]:
    sent: list[Delivery] = []
    for i, (op, n) in enumerate(ops):
        value = n * 10
        if op == "earn":
            acct.balance += value
            acct.earned += value
        elif op == "redeem":
            value = min(value, acct.balance)
            acct.balance -= value
            acct.redeemed += value
        elif op == "expire":
            value = min(value, acct.balance)
            acct.balance -= value
            acct.expired += value
        elif op == "adjust":
            acct.balance += value
            acct.adjusted += value
        elif op == "tier":
            acct.tier = f"tier-{n}"
        else:
            acct.tier = None
        account = {
            "id": "acct-1",
            "contactId": CUSTOMER,
            "revision": str(i + 1),
            "points": {
                "balance": acct.balance,
                "earned": acct.earned,
                "redeemed": acct.redeemed,
                "expired": acct.expired,
                "adjusted": acct.adjusted,
            },
            "tier": {"id": acct.tier} if acct.tier else None,
        }
        envelope = {
            "eventType": "wix.loyalty.v1.account_points_updated",
            "instanceId": "site-1",
            "data": {
                "id": f"wx-{i}",
                "entityFqdn": "wix.loyalty.v1.account",
                "slug": "points_updated",
                "entityId": "acct-1",
                "eventTime": iso(i),
                "actionEvent": {"body": {"account": account}},
            },
        }
        # Wix retries keep the event id ("allows clients to ignore duplicate webhooks")
        sent.append(Delivery(dumps(envelope), f"wx-{i}", at(i)))
    return sent


@settings(max_examples=200, deadline=None)
@given(data=st.data(), ops=WIX_OPS)
def test_wix_accounts_end_at_the_providers_numbers(
    data: st.DataObject, ops: list[tuple[str, int]]
) -> None:
    acct = Account()
    state = run_ledger(Wix(), data.draw(delivered(wix_sent(ops, acct))))
    assert state is not None
    assert (state.balance, state.computed_balance) == (acct.balance, acct.balance)
    assert (state.lifetime_earned, state.lifetime_redeemed, state.lifetime_expired) == (
        acct.earned,
        acct.redeemed,
        acct.expired,
    )
    assert state.tier == (Tier(id=acct.tier) if acct.tier else None)


def wix_stray(acct: Account) -> Delivery:
    """A points_updated without `revision` whose counters disagree with the revisioned ones."""
    account = {
        "id": "acct-1",
        "contactId": CUSTOMER,
        "points": {"balance": acct.balance, "earned": 999, "adjusted": -949, "redeemed": 0},
    }
    envelope = {
        "eventType": "wix.loyalty.v1.account_points_updated",
        "instanceId": "site-1",
        "data": {
            "id": "wx-stray",
            "entityFqdn": "wix.loyalty.v1.account",
            "slug": "points_updated",
            "entityId": "acct-1",
            "eventTime": iso(0),
            "actionEvent": {"body": {"account": account}},
        },
    }
    return Delivery(dumps(envelope), "wx-stray", at(0))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), ops=WIX_OPS)
def test_wix_a_snapshot_without_revision_is_dead_lettered_in_any_position(
    data: st.DataObject, ops: list[tuple[str, int]]
) -> None:
    # Without a revision the order of snapshots is not total: the balance stays right, but the
    # lifetime counters would depend on where the stray one arrives. The decoder refuses it.
    acct = Account()
    sent = wix_sent(ops, acct)
    sent.insert(data.draw(st.integers(0, len(sent)), label="stray at"), wix_stray(acct))
    kept: list[Delivery] = []
    for d in data.draw(delivered(sent)):
        context = DecodeContext(tenant=None, received_at=d.received, delivery=d.key)
        try:
            Wix().decode(d.body, d.headers, context)
        except DecodeError as exc:  # the worker's dead letter
            assert d.key.startswith("wx-stray") and "revision is missing" in str(exc)
            continue
        kept.append(d)
    state = run_ledger(Wix(), kept)
    assert state is not None
    assert (state.balance, state.lifetime_earned, state.lifetime_adjusted) == (
        acct.balance,
        acct.earned,
        acct.adjusted,
    )


# ---------------------------------------------------------------------------------------------
# Voucherify: accruals reported by two webhooks, pending points then activation or cancel


def vf_envelope(event_id: str, type_: str, data: dict[str, Any], i: int) -> dict[str, Any]:
    return {
        "id": f"whs_{event_id}",
        "project_id": "proj_1",
        "created_at": iso(i),
        "type": type_,
        "data": data,
        "source": {"id": "wh_1", "object": "webhook"},
        "event": {"id": event_id, "type": type_, "created_at": iso(i)},
    }


CARD = {"id": "v_card", "type": "LOYALTY_CARD", "holder_id": CUSTOMER, "campaign_id": "camp_1"}
CUST = {"id": CUSTOMER, "object": "customer"}


def balance_obj(points: int, balance: int, card_id: str = "v_card") -> dict[str, Any]:
    return {
        "type": "loyalty_card",
        "points": points,
        "balance": balance,
        "related_object": {"id": card_id, "type": "voucher"},
    }


VF_OPS = st.lists(
    st.tuples(
        st.sampled_from(["accrue", "redeem", "pend-activate", "pend-cancel"]),
        st.integers(1, 5),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


def vf_sent(
    ops: list[tuple[str, int, bool]],
    acct: Account,
    card_id: str = "v_card",
    campaign: str = "camp_1",
) -> list[Delivery]:
    """Voucherify webhooks of one loyalty card (in `campaign`); `twin` = the movement is also
    reported by a second webhook."""
    sent: list[Delivery] = []
    n = 0
    card = {**CARD, "id": card_id, "campaign_id": campaign}
    tag = "" if card_id == "v_card" else f"{card_id}_"

    def bal(points: int, balance: int) -> dict[str, Any]:
        return balance_obj(points, balance, card_id)

    def send(event_id: str, type_: str, data: dict[str, Any]) -> None:
        nonlocal n
        event_id = tag + event_id
        sent.append(
            Delivery(dumps(vf_envelope(event_id, type_, data, n)), f"whs_{event_id}", at(n))
        )
        n += 1

    for i, (op, k, twin) in enumerate(ops):
        value = k * 10
        cause = {"id": f"{tag}evcus_order_{i}", "type": "customer.order.paid"}
        rule = {"id": "ern_1"}
        if op == "accrue":
            acct.balance += value
            # customer.rewarded.loyalty_points: no transaction object (no vtx id)
            send(
                f"ev_rew_{i}",
                "customer.rewarded.loyalty_points",
                {
                    "customer": CUST,
                    "voucher": card,
                    "earning_rule": rule,
                    "event": cause,
                    "balance": bal(value, acct.balance),
                },
            )
            if twin:  # ... and the POINTS_ACCRUAL transaction of the same accrual
                tx = {
                    "id": f"{tag}vtx_acc_{i}",
                    "type": "POINTS_ACCRUAL",
                    "voucher_id": card_id,
                    "details": {
                        "balance": bal(value, acct.balance),
                        "event": cause,
                        "earning_rule": rule,
                    },
                }
                send(
                    f"ev_tx_{i}",
                    "voucher.loyalty_card.transaction.created",
                    {"voucher": card, "transaction": tx, "event": cause},
                )
        elif op == "redeem":
            value = min(value, acct.balance)
            if value == 0:
                continue
            acct.balance -= value
            tx = {
                "id": f"{tag}vtx_red_{i}",
                "type": "POINTS_REDEMPTION",
                "voucher_id": card_id,
                "details": {"balance": bal(-value, acct.balance)},
            }
            send(
                f"ev_red_{i}",
                "voucher.loyalty_card.transaction.created",
                {"voucher": card, "transaction": tx},
            )
        else:
            pending = {
                "id": f"{tag}lopp_{i}",
                "voucher_id": card_id,
                "points": value,
                "details": {"event": cause, "earning_rule": rule},
            }
            send(
                f"ev_pa_{i}",
                "voucher.loyalty_card.pending_points.added",
                {
                    "customer": CUST,
                    "voucher": card,
                    "pending_points": pending,
                    "voucher_pending_points_balance": bal(value, value),
                },
            )
            if op == "pend-cancel":
                send(
                    f"ev_pc_{i}",
                    "voucher.loyalty_card.pending_points.canceled",
                    {
                        "customer": CUST,
                        "voucher": card,
                        "pending_points": pending,
                        "voucher_pending_points_balance": bal(-value, 0),
                    },
                )
                continue
            acct.balance += value
            tx = {
                "id": f"{tag}vtx_act_{i}",
                "type": "PENDING_POINTS_ACTIVATION",
                "voucher_id": card_id,
                "details": {
                    "balance": bal(value, acct.balance),
                    "event": cause,
                    "earning_rule": rule,
                    "pending_points": {"id": f"{tag}lopp_{i}"},
                },
            }
            send(
                f"ev_act_{i}",
                "voucher.loyalty_card.pending_points.activated",
                {
                    "customer": CUST,
                    "voucher": card,
                    "pending_points": pending,
                    "transaction": tx,
                    "balance": bal(value, acct.balance),
                },
            )
            if twin:  # a transaction.created for the activation's transaction (same vtx)
                send(
                    f"ev_acttx_{i}",
                    "voucher.loyalty_card.transaction.created",
                    {"voucher": card, "transaction": tx},
                )
    return sent


@settings(max_examples=300, deadline=None)
@given(data=st.data(), ops=VF_OPS)
def test_voucherify_streams_count_each_movement_once_and_release_pending(
    data: st.DataObject, ops: list[tuple[str, int, bool]]
) -> None:
    acct = Account()
    sent = vf_sent(ops, acct)
    if not sent:
        return
    state = run_ledger(Voucherify(), data.draw(delivered(sent)))
    assert state is not None
    assert state.computed_balance == acct.balance
    assert state.balance == acct.balance
    assert state.pending_points == 0


# ---------------------------------------------------------------------------------------------
# accounts: a customer with a loyalty card in each of two campaigns


def run_accounts(provider: Any, deliveries: list[Delivery]) -> dict[str, MemberState]:
    """The ledger over `deliveries` as the worker runs it: one record per account (key
    `account_key`), and the member's default record indexing the other accounts."""
    states: dict[str, MemberState] = {}
    for i, d in enumerate(deliveries):
        context = DecodeContext(tenant=None, received_at=d.received, delivery=d.key)
        for event in provider.decode(d.body, d.headers, context):
            now = T0 + timedelta(days=1, seconds=i)
            states[event.account_key] = apply(
                states.get(event.account_key), event, now=now, offset=i
            ).state
            index = with_account(states.get(event.member_key), event, now)
            if index is not None:
                states[event.member_key] = index
    return states


@settings(max_examples=200, deadline=None)
@given(data=st.data(), ops_a=VF_OPS, ops_b=VF_OPS)
def test_two_voucherify_cards_never_mix_whatever_the_interleaving(
    data: st.DataObject, ops_a: list[tuple[str, int, bool]], ops_b: list[tuple[str, int, bool]]
) -> None:
    a, b = Account(), Account()
    sent_a = vf_sent(ops_a, a, "v_card_a", "camp_a")
    sent_b = vf_sent(ops_b, b, "v_card_b", "camp_b")
    # the two cards' webhooks interleaved in any order, each card's with the usual faults
    mixed = data.draw(st.permutations(data.draw(delivered(sent_a)) + data.draw(delivered(sent_b))))
    states = run_accounts(Voucherify(), mixed)
    member = f"voucherify:default:{CUSTOMER}"
    for campaign, acct, sent in (("camp_a", a, sent_a), ("camp_b", b, sent_b)):
        key = account_key(member, campaign)
        if not sent:
            assert key not in states
            continue
        state = states[key]
        assert state.account_id == campaign
        assert (state.computed_balance, state.balance) == (acct.balance, acct.balance)
        assert state.pending_points == 0
    if not sent_a and not sent_b:
        assert states == {}
        return
    index = states[member]
    assert sorted(index.accounts) == sorted(
        c for c, s in (("camp_a", sent_a), ("camp_b", sent_b)) if s
    )
    assert index.events_applied == 0  # only an index: no points of its own


def test_the_issues_two_card_customer_shows_each_cards_balance() -> None:
    # card A at 100, card B at 10: before accounts, the member showed whichever moved last
    # (10), computed 110, drift -100
    sent = vf_sent([("accrue", 10, False)], Account(), "v_card_a", "camp_a") + vf_sent(
        [("accrue", 1, True)], Account(), "v_card_b", "camp_b"
    )
    states = run_accounts(Voucherify(), sent)
    member = f"voucherify:default:{CUSTOMER}"
    got = {
        s.account_id: (s.balance, s.computed_balance, s.to_balance().drift)
        for k, s in states.items()
        if k != member
    }
    assert got == {"camp_a": (100, 100, 0), "camp_b": (10, 10, 0)}
    assert states[member].accounts == ("camp_a", "camp_b")
