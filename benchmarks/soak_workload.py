"""The soak's workload and its oracle: members' movements at their provider, the webhooks
describing them (in the shapes providers really send), the trouble mixed in, and each account's
true state (`Member`), kept independently of `connector.domain.ledger`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.kit import payloads
from connector.kit.payloads import (
    Delivery,
    gb_profile,
    gb_v3_profile,
    ol_level_changed,
    ol_oss_amount_changed,
    ol_points_changed,
    ol_points_transfer,
    ol_subscription_amount_changed,
    sign,
    vf_pending,
    vf_points_added,
    vf_tier_joined,
    vf_transaction_created,
    wix_account,
)
from connector.models import DEFAULT_ACCOUNT, account_key
from connector.providers import PROVIDERS
from connector.providers.open_loyalty import OpenLoyalty

PROVIDER_KEYS = ("open_loyalty", "voucherify", "gameball", "wix")
WIX_POINTS = "wix.loyalty.v1.account_points_updated"
WIX_SITE = "soak-site"
MAX_BODY = 64 * 1024
OL_TIERS = [("lvl-bronze", "Bronze"), ("lvl-silver", "Silver"), ("lvl-gold", "Gold")]
VF_TIERS = [("ltr_bronze", "Bronze"), ("ltr_silver", "Silver"), ("ltr_gold", "Gold")]
GB_TIERS = [("Bronze", 1), ("Silver", 2), ("Gold", 3)]
WIX_TIERS = ["tier-a", "tier-b", "tier-c"]
# Point accounts: a Voucherify customer holds one loyalty card per loyalty campaign (the account
# is the campaign; tiers are the campaign's too), an Open Loyalty member points in several wallet
# types (the account is the wallet type's code; levels stay on the member's default account).
VF_CAMPAIGNS = ("camp_loyalty", "camp_travel")
OL_WALLET = "miles"
# A step of a multi-account customer that moves every account it holds (one order earning in
# both programs or wallets), so the accounts' deliveries are interleaved within one step too.
P_BOTH = 0.12


# How each member's provider delivers (one flavour per member, as one deployment does):
# * ol_pair: Open Loyalty legacy/Cloud style: every movement is `account.points_transfer` +
#   `account.available_points_amount_changed` with the same pointsTransferId and createdAt,
#   HMAC-signed (X-Webhook-Request-Id per delivery);
# * ol_oss: Open Loyalty OSS 3.x: only `account.available_points_amount_changed` as OSS builds it
#   (customerId, amount = balance after as a float, amount_change, amount_change_type; no
#   pointsTransferId, no time), with only the static header (no HMAC, no request id, no timestamp);
# * ol_oss_signed: the same bodies HMAC-signed, so they carry X-Webhook-Timestamp and
#   X-Webhook-Request-Id (the time orders them, the request id names the delivery);
# * vf: Voucherify, including pending points that are later activated or canceled;
# * gb_v4 / gb_v3: Gameball v4 `customer.profile.updated` (created_at) / v3 flat profiles
#   (playerUniqueId, activatedPoints, pendingPoints, levelName, levelOrder; no time, no id);
# * wix: Wix account snapshots (revision), whose tier may be cleared (`"tier": null`).
# Second accounts (not in FLAVOURS: `Workload` gives them to some vf and ol_pair customers):
# * vf with account camp_travel: the customer's card in a second loyalty campaign, delivered
#   as the first card's are;
# * ol_wallet: Open Loyalty 5.x subscription `AvailablePointsAmountChanged` in the member's
#   second wallet (`data.wallet.walletType.code` = OL_WALLET), HMAC-signed; the default wallet
#   keeps the ol_pair shapes (and, sometimes, the 5.x shape naming the default wallet).
FLAVOURS: dict[str, tuple[str, ...]] = {
    "open_loyalty": ("ol_pair", "ol_oss", "ol_oss_signed"),
    "voucherify": ("vf",),
    "gameball": ("gb_v4", "gb_v3"),
    "wix": ("wix",),
}
# Deliveries that carry neither a time nor an id: the bridge's receive time is their only order,
# so the soak sends them as a provider sending in order would: a member's next delivery after its
# previous one was answered (retries included), never held back, never re-sent after a 200.
ORDERED = frozenset({"ol_oss", "gb_v3"})
OL_STATIC_HEADER = {
    k: v for k, v in payloads.secrets()["open_loyalty"].items() if k.startswith("header")
}
# Steps at which a member of a flavour (`flavour@account`: of that account) does a given thing, so
# every run, however short, has each shape at least once (the random draw adds more).
FORCED: dict[int, tuple[str, str]] = {
    4: ("ol_oss", "repeat"),
    5: ("ol_oss_signed", "repeat"),
    7: ("gb_v3", "earn"),
    8: ("gb_v3", "repeat"),
    10: ("ol_oss", "unlock"),
    11: ("ol_oss", "cancel"),
    12: ("ol_oss_signed", "unlock"),
    13: ("ol_oss_signed", "expire"),
    14: ("ol_wallet", "earn"),
    15: ("vf@camp_travel", "earn"),
    16: ("ol_wallet", "spend"),
    17: ("vf@camp_travel", "tier"),
    18: ("vf", "pending"),
    19: ("vf", "cancel_pending"),
    20: ("vf", "pending"),
    21: ("vf", "activate"),
    22: ("vf", "pending"),
    24: ("wix", "tier"),
    25: ("wix", "tier_clear"),
    26: ("ol_pair", "both"),
    27: ("vf", "both"),
    28: ("ol_pair", "sub_default"),
    29: ("vf@camp_travel", "pending"),
    31: ("vf@camp_travel", "activate"),
    120: ("ol_oss", "repeat"),
    130: ("gb_v3", "repeat"),
}
# The step at which the run's one overflowing delivery is sent (issue 11, finding 8): an Open
# Loyalty amount change the decoder accepts (every value fits decimal(18, 2)) whose result the
# ledger cannot hold. It goes to an Open Loyalty member with history, which must keep its state;
# the oracle never counts it, and the ledger must dead-letter it (stage `ledger`).
OVERFLOW_STEP = 33
# The largest amountChange the decoder accepts (tests/integration/test_worker_poison.py). Added,
# with the balance after reported as its negation and dated a year ahead (the member's newest
# balance statement whatever the arrival order), it leaves drift (reported - computed) at
# -(2 * this + the balance before): out of range from any balance the workload reaches, whichever
# of the member's deliveries were applied before it.
OVERFLOW_CHANGE = "9999999999999999.99"


@dataclass
class Member:
    """One points account of a member, as the provider keeps it: the oracle.

    A customer holding several accounts (two Voucherify loyalty cards, two Open Loyalty wallets)
    is several Members with the same customer id and different `account`s.
    """

    provider: str
    customer: str
    tenant: str
    flavour: str
    # the provider's account: the Voucherify loyalty campaign of the card, the Open Loyalty
    # wallet type code, `default` for the default wallet and for Gameball and Wix
    account: str = DEFAULT_ACCOUNT
    card: str | None = None  # Voucherify: the loyalty card's voucher id
    multi: bool = False  # the customer holds another account too
    balance: int = 0
    pending: int = 0
    reported: bool = False  # the provider has stated a balance (so reported_balance is set)
    earned: int = 0
    redeemed: int = 0
    movements: int = 0
    revision: int = 0
    tier: dict[str, Any] | None = None  # the oracle's tier: the fields the provider sends
    movement_ids: list[str] = field(default_factory=list)  # ids the ledger must have booked
    open_pending: tuple[str, int] | None = None  # Voucherify pending entry id, points
    clock: int = 0  # the last X-Webhook-Timestamp given to this member (ol_oss_signed)
    last: Item | None = field(default=None, repr=False)  # its last delivery (ordered flavours)
    sent: bool = False

    @property
    def member_key(self) -> str:
        return f"{self.provider}:{self.tenant}:{self.customer}"

    @property
    def key(self) -> str:
        """The account's key on `loyalty.balances` and `loyalty.tiers`."""
        return account_key(self.member_key, self.account)

    @property
    def ordered(self) -> bool:
        return self.flavour in ORDERED

    def want(self) -> dict[str, Any]:
        """What the member API and the balances topic must say about this member."""
        return {
            "balance": Decimal(self.balance),
            "computed_balance": Decimal(self.balance),
            "reported_balance": Decimal(self.balance) if self.reported else None,
            "pending_points": Decimal(self.pending),
            "tier": self.tier,
            "account_id": self.account,
        }


@dataclass
class Item:
    """One HTTP delivery to make (an attempt history is kept per item)."""

    kind: str  # valid, duplicate, forged, oversized, poison, overflow
    delivery: Delivery
    member: str | None
    shape: str = ""
    late: bool = False
    ordered: bool = False  # sent only after `after` got its final answer, never held back
    after: Item | None = field(default=None, repr=False)
    attempts: list[tuple[float, float, int]] = field(default_factory=list)  # start, s, status
    status: int | None = None  # final
    request_id: str | None = None
    gave_up: bool = False
    lost: bool = False  # no 200 within the provider's whole retry budget: the provider dropped it
    spooled: bool = False  # its 200 said `"spooled": true`
    provider_attempts: int = 0  # attempts counted against the budget (not the LB's reconnects)
    answered: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def expected(self) -> int:
        return {"forged": 401, "oversized": 413}.get(self.kind, 200)


def same_delivery_when_resent(d: Delivery) -> bool:
    """Whether the connector must take these exact bytes and headers, re-sent, as the SAME delivery.

    Voucherify and Wix name their events; a signed Open Loyalty delivery names itself with
    X-Webhook-Request-Id (the raw record's key). Gameball and unsigned Open Loyalty deliveries carry
    no id, so a second HTTP delivery of the same bytes is a new delivery (a member returning to an
    earlier state sends exactly these bytes): their providers re-send only what was answered
    non-2xx, which the senders do, and the bridge recognises such a retry itself.
    """
    if d.provider in ("voucherify", "wix"):
        return True
    return d.provider == "open_loyalty" and any(
        k.lower() == "x-webhook-request-id" for k in d.headers
    )


class Workload:
    """Generates members' movements, the webhooks describing them, trouble, and the oracle."""

    def __init__(self, members: int, seed: int, quick: bool) -> None:
        self.rng = random.Random(seed)
        run = uuid.UUID(int=self.rng.getrandbits(128)).hex[:6]
        self.members: list[Member] = []
        # a customer's accounts (one Member each), by member key
        self.accounts: dict[str, list[Member]] = {}
        ordinal: Counter[str] = Counter()
        for i in range(members):
            p = PROVIDER_KEYS[i % 4]
            flavours = FLAVOURS[p]
            tenant = WIX_SITE if p == "wix" else "default"
            flavour = flavours[(i // 4) % len(flavours)]
            customer = f"{p[:2]}-{run}-{i}"
            # two of every three Voucherify and Open Loyalty (legacy/Cloud) customers hold a
            # second account: a card in a second loyalty campaign, points in a second wallet
            multi = flavour in ("vf", "ol_pair") and ordinal[flavour] % 3 != 2
            ordinal[flavour] += 1
            mine: list[Member] = []
            if flavour == "vf":
                for n, campaign in enumerate(VF_CAMPAIGNS[: 2 if multi else 1]):
                    card = f"v_{customer}" if n == 0 else f"v_{customer}_{campaign[5:]}"
                    mine.append(Member(p, customer, tenant, flavour, campaign, card, multi))
            else:
                mine.append(Member(p, customer, tenant, flavour, multi=multi))
                if multi:
                    mine.append(Member(p, customer, tenant, "ol_wallet", OL_WALLET, multi=True))
            self.members.extend(mine)
            self.accounts[mine[0].member_key] = mine
        # provider time: strictly increasing, one second per movement (unique per member)
        self.t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
        self.seq = 0
        self.steps = 0
        self.ids = itertools.count(1)
        self.late_range = (2.0, 8.0) if quick else (5.0, 40.0)
        self.p_dup, self.p_late, self.p_forged, self.p_big, self.p_poison = (
            0.06,
            0.05,
            0.012,
            0.006,
            0.004,
        )
        self.secrets = payloads.secrets()
        self.poison_bodies: set[bytes] = set()
        # overflowing deliveries' bodies -> their pointsTransferId (the dead letter names it)
        self.overflow: dict[bytes, str] = {}
        self.forged_bodies: set[bytes] = set()
        self.big_bodies: set[bytes] = set()

    def at(self) -> str:
        self.seq += 1
        return (self.t0 + timedelta(seconds=self.seq)).isoformat().replace("+00:00", "Z")

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self.ids)}"

    def step(self) -> list[Item]:
        """One movement (or tier change) of a random member: its webhooks, plus trouble."""
        rng = self.rng
        self.steps += 1
        always = self.steps in (3, 60, 200)  # every run, however short, has each kind of trouble
        m, op = self._forced(*FORCED[self.steps]) if self.steps in FORCED else (None, None)
        if m is None:
            m = rng.choice(self.members)
        group = [m]
        if m.multi and (op == "both" or (op is None and rng.random() < P_BOTH)):
            group, op = self.accounts[m.member_key], "earn"  # one order, points in every account
        items: list[Item] = []
        for account in group:
            account.sent = True
            items += [
                Item("valid", d, account.key, shape) for d, shape in self._movement(account, op)
            ]
        if m.ordered:  # in the provider's order, one after the other (never multi-account)
            for it in items:
                it.ordered, it.after, m.last = True, m.last, it
        else:
            rng.shuffle(items)  # e.g. amount_changed before points_transfer
        out: list[Item] = []
        for it in items:
            out.append(it)
            if same_delivery_when_resent(it.delivery) and rng.random() < self.p_dup:
                out.append(Item("duplicate", it.delivery, it.member, it.shape))
        if always or rng.random() < self.p_forged:
            out.append(Item("forged", self._forged(m), m.key))
        if always or rng.random() < self.p_big:
            out.append(Item("oversized", self._oversized(m), m.key))
        if always or rng.random() < self.p_poison:
            body = ol_points_changed(None, self.next_id("poison-"), 5, "add", 5, self.at())
            d = sign("open_loyalty", body)
            self.poison_bodies.add(d.body)
            out.append(Item("poison", d, None))
        if self.steps == OVERFLOW_STEP:
            out.append(self._overflow())
        return out

    def _overflow(self) -> Item:
        """The run's overflowing delivery (see OVERFLOW_CHANGE), to an Open Loyalty legacy/Cloud
        member's default wallet (one that has sent already if any has: the ledger holds its
        state, which must stay as it was)."""
        pairs = [m for m in self.members if m.flavour == "ol_pair"]
        m = self.rng.choice([m for m in pairs if m.sent] or pairs)
        tid = self.next_id(f"{m.customer}-overflow-")
        ahead = (self.t0 + timedelta(days=365)).isoformat().replace("+00:00", "Z")
        text = json.dumps(ol_points_changed(m.customer, tid, 0, "add", 0, ahead))
        # JSON number literals written verbatim: a float would not hold 9999999999999999.99
        for field_, value in (("amount", f"-{OVERFLOW_CHANGE}"), ("amountChange", OVERFLOW_CHANGE)):
            assert text.count(f'"{field_}": 0,') == 1, text
            text = text.replace(f'"{field_}": 0,', f'"{field_}": {value},')
        d = sign("open_loyalty", text.encode())
        self.overflow[d.body] = tid
        return Item("overflow", d, m.key, "ol_overflow")

    def _forced(self, flavour: str, op: str) -> tuple[Member | None, str | None]:
        ok: dict[str, Callable[[Member], bool]] = {
            "activate": lambda m: m.open_pending is not None,
            "cancel_pending": lambda m: m.open_pending is not None,
            "pending": lambda m: m.open_pending is None,
            "expire": lambda m: m.balance > 0,
            "cancel": lambda m: m.balance > 0,
            "tier_clear": lambda m: m.tier is not None,
            "repeat": lambda m: m.movements > 0 or m.provider != "gameball",
            "spend": lambda m: m.balance > 0,
            "both": lambda m: m.multi,
        }
        check = ok.get(op, lambda m: True)
        flavour, _, account = flavour.partition("@")
        candidates = [
            m
            for m in self.members
            if m.flavour == flavour and (not account or m.account == account) and check(m)
        ]
        if not candidates:
            return None, None
        return self.rng.choice(candidates), op

    def _movement(self, m: Member, op: str | None = None) -> list[tuple[Delivery, str]]:
        """The deliveries (with their shape) of one step of `m`; `op` forces what happens."""
        if m.flavour == "ol_pair":
            return self._ol_pair(m, op)
        if m.flavour in ("ol_oss", "ol_oss_signed"):
            return self._ol_oss(m, op)
        if m.flavour == "ol_wallet":
            return self._ol_wallet(m, op)
        if m.flavour == "vf":
            return self._vf(m, op)
        if m.provider == "gameball":
            return self._gb(m, op)
        return self._wix(m, op)

    def _value(self, m: Member, op: str | None = None) -> tuple[bool, int]:
        """(spend?, points) for a plain earn or spend (`op` "earn" or "spend" says which)."""
        if op == "spend" and m.balance > 0:
            spend = True
        else:
            spend = op != "earn" and m.balance >= 20 and self.rng.random() < 0.35
        return spend, self.rng.randint(1, min(m.balance, 60)) if spend else self.rng.randint(1, 120)

    def _book(self, m: Member, change: int, *, reported: bool = True) -> None:
        """The provider's account after a plain movement of `change` points."""
        m.movements += 1
        m.balance += change
        if change < 0:
            m.redeemed -= change
        else:
            m.earned += change
        m.reported = m.reported or reported

    def _tier_step(self, m: Member, op: str | None) -> bool:
        return op == "tier" or (op is None and m.movements > 0 and self.rng.random() < 0.08)

    # -- Open Loyalty ----------------------------------------------------------------------

    def _ol_sign(self, m: Member, doc: dict[str, Any]) -> Delivery:
        body = json.dumps(doc).encode()
        if m.flavour == "ol_oss":  # OSS: the static header, nothing else
            signed, headers = OpenLoyalty().sign(body, OL_STATIC_HEADER)
            return Delivery("open_loyalty", signed, headers)
        if m.flavour == "ol_oss_signed":
            # X-Webhook-Timestamp is whole seconds: one member's deliveries get distinct seconds
            # (two within one second are ordered by arrival, which late delivery upsets)
            m.clock = max(int(time.time()), m.clock + 1)
            stamp = m.clock
            signed, headers = OpenLoyalty(clock=lambda: stamp).sign(
                body, self.secrets["open_loyalty"]
            )
            return Delivery("open_loyalty", signed, headers)
        return sign("open_loyalty", doc)

    def _ol_pair(self, m: Member, op: str | None) -> list[tuple[Delivery, str]]:
        if self._tier_step(m, op):
            return [(self._tier(m), "tier")]
        spend, value = self._value(m, op)
        self._book(m, -value if spend else value)
        at = self.at()
        tid = self.next_id(f"{m.customer}-T")
        m.movement_ids.append(tid)
        kind = "spending" if spend else "adding"
        change = "subtract" if spend else "add"
        if op == "sub_default" or (op is None and self.rng.random() < 0.15):
            # the Cloud's 5.x subscription about the same movement, naming the default wallet
            wallet_type = self.rng.choice(
                [{"code": "default"}, {"code": "default", "isDefault": True}]
            )
            doc = ol_subscription_amount_changed(
                m.customer,
                tid,
                value,
                change,
                m.balance,
                at,
                {"walletTypeId": "wt-default", **wallet_type},
            )
            return [(self._ol_sign(m, doc), "ol_sub_default_wallet")]
        return [
            (
                self._ol_sign(m, ol_points_transfer(m.customer, tid, value, at, kind=kind)),
                "ol_transfer",
            ),
            (
                self._ol_sign(m, ol_points_changed(m.customer, tid, value, change, m.balance, at)),
                "ol_amount_changed",
            ),
        ]

    def _ol_oss(self, m: Member, op: str | None) -> list[tuple[Delivery, str]]:
        rng = self.rng
        if self._tier_step(m, op):
            return [(self._tier(m), "tier")]
        if op is None:
            r = rng.random()
            if r < 0.08:
                op = "repeat"
            elif r < 0.15 and m.balance > 0:
                op = "expire"
            elif r < 0.21 and m.balance > 0:
                op = "cancel"
            elif r < 0.28:
                op = "unlock"
        out: list[tuple[Delivery, str]] = []

        def send(change: int, change_type: str, shape: str) -> None:
            doc = ol_oss_amount_changed(m.customer, m.balance, change, change_type)
            out.append((self._ol_sign(m, doc), shape))

        if op == "repeat":  # earn v, spend v, earn v: the third body is the first one again
            v = rng.randint(1, 120)
            for change, change_type in ((v, "add"), (-v, "subtract"), (v, "add")):
                self._book(m, change)
                send(abs(change), change_type, "ol_oss_repeat")
        elif op in ("expire", "cancel"):  # amount_change 0, subtract: only the new amount
            x = rng.randint(1, min(m.balance, 60))
            self._book(m, -x)
            send(0, "subtract", f"ol_oss_{op}")
        elif op == "unlock":  # the same shape, and the balance RISES
            x = rng.randint(1, 80)
            self._book(m, x)
            send(0, "subtract", "ol_oss_unlock")
        else:
            spend, value = self._value(m)
            self._book(m, -value if spend else value)
            send(value, "subtract" if spend else "add", "ol_oss_spend" if spend else "ol_oss_earn")
        return out

    def _ol_wallet(self, m: Member, op: str | None) -> list[tuple[Delivery, str]]:
        """A movement in the member's second wallet: the 5.x subscription shape naming it."""
        spend, value = self._value(m, op)
        self._book(m, -value if spend else value)
        tid = self.next_id(f"{m.customer}-W")
        m.movement_ids.append(tid)
        wallet_type = {"walletTypeId": f"wt-{m.account}", "code": m.account}
        change = "subtract" if spend else "add"
        doc = ol_subscription_amount_changed(
            m.customer, tid, value, change, m.balance, self.at(), wallet_type
        )
        return [(self._ol_sign(m, doc), "ol_sub_wallet")]

    def _tier(self, m: Member) -> Delivery:
        at = self.at()
        if m.provider == "open_loyalty":
            lid, name = self.rng.choice(OL_TIERS)
            m.tier = {"id": lid, "name": name}
            doc = ol_level_changed(m.customer, lid, name, at)
            if m.flavour != "ol_pair":
                del doc["data"]["levelAchievementDate"]  # OSS sends no date
            return self._ol_sign(m, doc)
        # a tier of the card's campaign: each loyalty campaign defines its own tiers
        tid, name = self.rng.choice(VF_TIERS)
        if m.account != VF_CAMPAIGNS[0]:
            tid = f"{tid}_{m.account.removeprefix('camp_')}"
        m.tier = {"id": tid, "name": name}
        doc = vf_tier_joined(m.customer, self.next_id("evt_"), tid, name, at, campaign=m.account)
        return sign("voucherify", doc)

    # -- Voucherify ------------------------------------------------------------------------

    def _vf(self, m: Member, op: str | None) -> list[tuple[Delivery, str]]:
        rng = self.rng
        card = {"campaign": m.account, "card": m.card}  # the card this member's points are on
        if self._tier_step(m, op):
            return [(self._tier(m), "tier")]
        if op is None:
            if m.open_pending is not None and rng.random() < 0.5:
                op = "activate" if rng.random() < 0.7 else "cancel_pending"
            elif m.open_pending is None and rng.random() < 0.15:
                op = "pending"
        at = self.at()

        def pending(phase: str, evt: str, pending_id: str, points: int, **tx: str) -> Delivery:
            """A pending-points webhook of this card, with the balances as they are now."""
            doc = vf_pending(
                phase,
                m.customer,
                evt,
                pending_id,
                points,
                balance=m.balance,
                pending_after=m.pending,
                at=at,
                **tx,
                **card,
            )
            return sign("voucherify", doc)

        if op == "pending":
            points = rng.randint(1, 120)
            evt, pending_id = self.next_id("evcus_"), self.next_id("lopp_")
            m.pending += points
            m.open_pending = (pending_id, points)
            m.movement_ids.append(evt)  # the pending phase is named by its event
            return [(pending("added", evt, pending_id, points), "vf_pending_added")]
        if op in ("activate", "cancel_pending") and m.open_pending is not None:
            pending_id, points = m.open_pending
            m.open_pending = None
            m.pending -= points
            evt = self.next_id("evcus_")
            if op == "cancel_pending":
                m.movement_ids.append(evt)
                return [(pending("canceled", evt, pending_id, points), "vf_pending_canceled")]
            vtx = self.next_id("vtx_")
            self._book(m, points)
            m.movement_ids.append(vtx)
            out = [
                (pending("activated", evt, pending_id, points, tx_id=vtx), "vf_pending_activated")
            ]
            if rng.random() < 0.5:  # the project webhook about the same transaction
                twin = vf_transaction_created(
                    m.customer,
                    self.next_id("evt_"),
                    vtx,
                    "PENDING_POINTS_ACTIVATION",
                    points,
                    m.balance,
                    at,
                    **card,
                )
                out.append((sign("voucherify", twin), "vf_pending_activated"))
            return out
        spend, value = self._value(m, op)
        self._book(m, -value if spend else value)
        vtx = self.next_id("vtx_")
        m.movement_ids.append(vtx)
        if spend:
            doc = vf_transaction_created(
                m.customer,
                self.next_id("evt_"),
                vtx,
                "POINTS_REDEMPTION",
                -value,
                m.balance,
                at,
                **card,
            )
            return [(sign("voucherify", doc), "vf_redemption")]
        args = (vtx, "POINTS_ADDITION", value, m.balance, at)
        added = vf_points_added(m.customer, self.next_id("evt_"), *args, **card)
        created = vf_transaction_created(m.customer, self.next_id("evt_"), *args, **card)
        return [(sign("voucherify", added), "vf_add"), (sign("voucherify", created), "vf_add")]

    # -- Gameball --------------------------------------------------------------------------

    def _gb(self, m: Member, op: str | None) -> list[tuple[Delivery, str]]:
        rng = self.rng

        def profile(shape: str) -> tuple[Delivery, str]:
            assert m.tier is not None
            if m.flavour == "gb_v3":
                doc = gb_v3_profile(
                    m.customer,
                    activated=m.balance,
                    pending=m.pending,
                    tier=m.tier["name"],
                    tier_order=m.tier["order"],
                )
            else:
                doc = gb_profile(
                    m.customer,
                    self.at(),
                    activated=m.balance,
                    pending=m.pending,
                    tier=m.tier["name"],
                    tier_order=m.tier["order"],
                )
            return sign("gameball", doc), shape

        if op is None and m.flavour == "gb_v3" and rng.random() < 0.12:
            op = "repeat"
        if op == "repeat" and m.flavour == "gb_v3" and m.movements > 0:
            # 100 -> 150 -> 100: the second profile is byte-identical to the previous one
            v = rng.randint(1, 120)
            self._book(m, v)
            first = profile("gb_v3_repeat")
            self._book(m, -v)
            return [first, profile("gb_v3_repeat")]
        if m.tier is None or rng.random() < 0.08:
            name, order = rng.choice(GB_TIERS)
            m.tier = {"name": name, "order": order}
        if rng.random() < 0.2:
            m.pending = rng.choice([0, rng.randint(1, 80)])
        spend, value = self._value(m)
        self._book(m, -value if spend else value)
        return [profile(f"{m.flavour}_profile")]

    # -- Wix -------------------------------------------------------------------------------

    def _wix(self, m: Member, op: str | None) -> list[tuple[Delivery, str]]:
        rng = self.rng
        shape = "wix_account"
        if op in ("tier", "tier_clear") or rng.random() < 0.08:
            if m.tier is not None and (op == "tier_clear" or (op is None and rng.random() < 0.4)):
                m.tier = None  # a newer revision without a tier: the member has none now
                shape = "wix_tier_cleared"
            else:
                m.tier = {"id": rng.choice(WIX_TIERS)}
        spend, value = self._value(m)
        self._book(m, -value if spend else value)
        m.revision += 1
        doc = wix_account(
            WIX_POINTS,
            WIX_SITE,
            m.customer,
            self.next_id(f"{m.customer}-e"),
            self.at(),
            revision=m.revision,
            balance=m.balance,
            earned=m.earned,
            redeemed=m.redeemed,
            tier_id=m.tier["id"] if m.tier else None,
        )
        return [(sign("wix", doc), shape)]

    def _bogus(self, m: Member) -> tuple[str, bytes]:
        """A payload that would add a million points to `m` if anyone accepted it."""
        at = self.at()
        if m.flavour == "ol_wallet":
            wallet_type = {"walletTypeId": f"wt-{m.account}", "code": m.account}
            doc = ol_subscription_amount_changed(
                m.customer, self.next_id("forged-"), 10**6, "add", 10**6, at, wallet_type
            )
        elif m.provider == "open_loyalty":
            doc = ol_points_changed(m.customer, self.next_id("forged-"), 10**6, "add", 10**6, at)
        elif m.provider == "voucherify":
            doc = vf_transaction_created(
                m.customer,
                self.next_id("forged"),
                "vtx_forged",
                "POINTS_ADDITION",
                10**6,
                10**6,
                at,
                campaign=m.account,
                card=m.card,
            )
        elif m.provider == "gameball":
            doc = gb_profile(
                m.customer, at, activated=10**6, pending=0, tier="Forged", tier_order=9
            )
        else:
            doc = wix_account(
                WIX_POINTS,
                WIX_SITE,
                m.customer,
                self.next_id("forged-"),
                at,
                revision=10**6,
                balance=10**6,
                earned=10**6,
            )
        return m.provider, json.dumps(doc).encode()

    def _forged(self, m: Member) -> Delivery:
        provider, body = self._bogus(m)
        if self.rng.random() < 0.5:  # signed with a secret that is not the bridge's
            signed, headers = PROVIDERS[provider].sign(body, payloads.wrong_secrets(provider))
        else:  # correctly signed, then one signed byte changed (JWT: in the claims segment)
            signed, headers = PROVIDERS[provider].sign(body, self.secrets[provider])
            if provider == "wix":
                head, claims, sig = signed.split(b".")
                i = len(claims) // 2
                flipped = b"A" if claims[i : i + 1] != b"A" else b"B"
                signed = b".".join([head, claims[:i] + flipped + claims[i + 1 :], sig])
            else:
                signed = signed.replace(b"1000000", b"9000000", 1)
        self.forged_bodies.add(signed)
        return Delivery(provider, signed, headers)

    def _oversized(self, m: Member) -> Delivery:
        provider, body = self._bogus(m)
        doc = json.loads(body)
        doc["padding"] = "x" * (MAX_BODY + 1024)
        d = sign(provider, doc)
        self.big_bodies.add(d.body)
        return d

    def oracle(self) -> dict[str, Member]:
        return {m.key: m for m in self.members if m.sent}
