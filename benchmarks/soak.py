"""Soak with faults: real processes, a generated workload with trouble, an independent oracle.

    .venv/bin/python benchmarks/soak.py [--minutes M] [--members N] [--rate R]
        [--faults all|none|broker,worker,rebalance,bridge,outage] [--quick] [--out FILE]
        [--seed S] [--spool/--no-spool] [--provider-retries/--no-provider-retries]
        [--outage-seconds S]

Runs Apache Kafka (`KafkaBroker`, KRaft, its own data dir), one `loyalty-connector bridge` and two
`loyalty-connector worker` processes (one app id, each with its own CONNECTOR_WEB_PORT and
CONNECTOR_DATA_DIR), started through the integration harness (`tests/integration/harness.py`).
For M minutes it sends about R webhooks/s (trouble included), signed as each of the four
providers would sign them, for N members. Each member's provider delivers in one way (its
"flavour", see FLAVOURS), in the shapes providers really send:

* Open Loyalty legacy/Cloud pairs: `account.points_transfer` and
  `account.available_points_amount_changed` with the same `pointsTransferId`, HMAC-signed;
* Open Loyalty OSS 3.x amount changes as OSS builds them (no pointsTransferId, no time, the
  balance after as a float), with only the static header or HMAC-signed: earns, spends, and
  expiries, cancels and unlocks that arrive as `amount_change: 0, amount_change_type: subtract`
  with only the new `amount` (an unlock raises it);
* legitimate repeats: a member returning to an earlier state sends a byte-identical body (Open
  Loyalty earn 10, spend 10, earn 10; Gameball v3 100 -> 150 -> 100), which must count again;
* Voucherify additions (distribution `points_added` + project `transaction.created`, one `vtx_`),
  redemptions, and pending points later activated (sometimes with the project's
  PENDING_POINTS_ACTIVATION twin) or canceled;
* Gameball v4 profiles (created_at) and v3 flat profiles (no time, no id);
* Wix account snapshots by revision, whose tier a newer revision may clear (`"tier": null`).
* point accounts: two of three Voucherify customers hold a card in a second loyalty campaign
  (`camp_travel`, its own card id and tiers), two of three Open Loyalty legacy/Cloud members
  points in a second wallet (5.x subscription `AvailablePointsAmountChanged` naming wallet type
  `miles`); each account is its own oracle member, keyed by its account key, and some steps
  move both accounts of a customer at once.

With trouble mixed in:

* redeliveries of deliveries that name themselves (Voucherify and Wix event ids, Open Loyalty's
  X-Webhook-Request-Id): the same bytes and headers again after a 200, which must count once.
  Deliveries without any id (Gameball, unsigned Open Loyalty) are never re-sent after a 200:
  their providers re-send only what was answered non-2xx, and a second delivery of the same
  bytes is a new delivery;
* late deliveries (held back for seconds), which for Wix (revisions), Gameball v4 (created_at)
  and signed Open Loyalty (X-Webhook-Timestamp) means an older delivery arriving after a newer
  one. Deliveries with neither a time nor an id (Gameball v3, unsigned Open Loyalty) are ordered
  by the bridge's receive time only, so they are sent in order, each after the member's previous
  one was answered, and never held back;
* forged requests (signed with the wrong secret, or a correctly signed body with one byte
  changed: the signature covers the exact bytes), which must get 401;
* oversized requests (over CONNECTOR_MAX_BODY_BYTES, set to 64 KiB here), which must get 413;
* poison: a correctly signed Open Loyalty webhook without `customerId` (the bridge must accept it,
  the worker must dead-letter it).

Senders behave like providers: a delivery counts as acknowledged only on 200; a 503, a 429, a
connection error or a timeout is retried with exponential backoff (0.25 s doubling, at most
Retry-After or 4 s, with jitter) until the retry horizon (10 minutes; 90 s with --quick). With
provider retry budgets (`--provider-retries`, the default when the `outage` fault runs) the
timing stays compressed like that, but each provider retries a delivery only as often as it
documents (PROVIDER_RETRIES: Open Loyalty once, Gameball 3 times, Voucherify and Wix 12 times)
and then drops it: `lost_by_provider_retry_policy`. The senders then reach the bridge as through
a load balancer that retries a refused *connection* (nothing listening: the bridge between two
processes) up to 30 times a second apart, as HAProxy's `retries` does for a restarting server;
every attempt the bridge or a broken connection answered counts against the budget.

The bridge runs with its store-and-forward spool (`CONNECTOR_SPOOL_DIR` under the run's temp
dir; `--no-spool` turns it off). With the spool, `lost_by_provider_retry_policy` must be 0 and
the spool must be empty at the end; without it, the losses are reported, and the customers
whose deliveries were lost are left out of the balance checks (counted), every other must-be-0
figure still holding.

Faults (`--faults`, default all): `broker` stops Apache Kafka with SIGTERM and later with SIGKILL
and restarts it on the same ports and data; `worker` kills a worker with SIGKILL and restarts it
(same port, same data dir); `rebalance` adds a third worker mid-run (and, in the combined phase,
stops it again with SIGTERM); `bridge` restarts the bridge (SIGTERM, then a new process on the
same port, same spool); `outage` is a long broker outage: Apache Kafka killed with SIGKILL and
kept down for `--outage-seconds` (30 s with --quick, 180 s otherwise), the bridge killed with
SIGKILL halfway through (while it spools) and a new one started on the same port and spool. Each
kind runs on its own, then (full runs) several at once. A supervisor restarts a process that
exits by itself (as systemd or Kubernetes would) and counts it.

The ORACLE is the provider's true account of each member (balance, pending points, tier, and
whether the provider has stated a balance), kept here from the operations generated,
independently of `connector.domain.ledger`: the webhooks of a step describe operations at the
provider (two webhooks may describe one), so once every delivery is accepted the member's
balance, computed balance and reported balance must all equal the true balance, and its pending
points the true pending points. At the end (after a drain
period: senders done, worker group committed past the end of raw and events) the scoreboard is
printed and written to benchmarks/results/soak.json (and a timeline PNG); the exit status is 1
when any must-be-0 figure is not 0, 2 when the processes could not be started.

"Counted twice" means: one provider movement (member + movement id + phase, where pending and
canceled are phases of their own) with two or more *different* LedgerEntry ids, or a member whose
distinct ledger entries (by entry_id) do not add up to the oracle's balance. Re-emissions of an
entry with the same entry_id (at-least-once after a crash) are counted separately and must carry
identical numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import heapq
import itertools
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from connector.avro import default_codec  # noqa: E402
from connector.embedded.kafka import KafkaBroker  # noqa: E402
from connector.inspect import read_to_end  # noqa: E402
from connector.models import DEFAULT_ACCOUNT, account_key  # noqa: E402
from connector.providers import PROVIDERS  # noqa: E402
from connector.providers.open_loyalty import OpenLoyalty  # noqa: E402
from connector.streams.faust_compat import partitions_of  # noqa: E402
from tests.integration.harness import (  # noqa: E402
    Bridge,
    Delivery,
    Harness,
    Proc,
    WorkerProc,
    gb_profile,
    ol_level_changed,
    ol_points_changed,
    ol_points_transfer,
    sign,
    vf_points_added,
    vf_tier_joined,
    vf_transaction_created,
    wix_account,
)
from tests.support import other_wix_keypair, test_secrets  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
KINDS = ("broker", "worker", "rebalance", "bridge", "outage")
PROVIDER_KEYS = ("open_loyalty", "voucherify", "gameball", "wix")
WIX_POINTS = "wix.loyalty.v1.account_points_updated"
WIX_SITE = "soak-site"
MAX_BODY = 64 * 1024
# How often each provider retries a delivery it was not answered 2xx before it drops it
# (docs/delivery-semantics.md): Open Loyalty (Cloud) once; Gameball three times (+5, +20,
# +60 min), then "the webhook request will be discarded"; Voucherify 12 times, then a project
# webhook is disabled; Wix 12 more attempts over ~47 h. The soak keeps its compressed timing.
PROVIDER_RETRIES = {"open_loyalty": 1, "gameball": 3, "voucherify": 12, "wix": 12}
# The load balancer in front of the bridge (with provider retry budgets): a connection nobody
# accepts is retried this often, this far apart (HAProxy `retries`, turn-around timer 1 s). A
# bridge stopped with SIGTERM while Kafka is down takes ~11 s to exit (its drain and the
# producer's stop wait 5 s each), then ~1 s to start: 30 s covers that with room.
LB_CONNECT_RETRIES = 30
LB_RETRY_DELAY_S = 1.0
CLIENT_TIMEOUT_S = 10.0  # a sender's wait for one answer
SPOOL_METRICS = (
    "bridge_spooled_total",
    "bridge_spool_records",
    "bridge_spool_forwarded",
    "bridge_spool_full_total",
    "bridge_spooling",
)
# Faust reads these from the environment: notice a killed worker in ~6 s instead of 60 s
FAST_FAILOVER = {"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}
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


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# the workload and its oracle

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
    k: v for k, v in test_secrets()["open_loyalty"].items() if k.startswith("header")
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

    kind: str  # valid, duplicate, forged, oversized, poison
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


def ol_oss_amount_changed(
    customer: str, amount: int, change: int, change_type: str
) -> dict[str, Any]:
    """`account.available_points_amount_changed` as Open Loyalty OSS 3.x sends it.

    OSS builds it from AvailablePointsAmountChangedSystemEvent: the balance after as a float, the
    change as an int, no pointsTransferId and no time. Expiries, cancels and unlocks pass only the
    new amount: `amount_change: 0, amount_change_type: "subtract"`, even when (unlock) the balance
    rises.
    """
    return {
        "type": "account.available_points_amount_changed",
        "data": {
            "customerId": customer,
            "amount": float(amount),
            "amount_change": change,
            "amount_change_type": change_type,
        },
    }


def ol_subscription_amount_changed(
    customer: str,
    transfer_id: str,
    change: int,
    change_type: str,
    amount: int,
    at: str,
    wallet_type: dict[str, Any],
) -> dict[str, Any]:
    """Open Loyalty 5.x subscription `AvailablePointsAmountChanged` (api-docs
    `doc/openapi-new/webhooks.yaml`): the customer nested, the wallet the points moved in
    (`walletType.code`), the balance after in that wallet (`amount`), camelCase fields."""
    return {
        "type": "AvailablePointsAmountChanged",
        "data": {
            "customer": {"customerId": customer, "loyaltyCardNumber": f"card-{customer}"},
            "wallet": {
                "walletId": f"wal-{customer}-{wallet_type['code']}",
                "walletType": wallet_type,
            },
            "amount": float(amount),
            "amountChange": float(change),
            "amountChangeType": change_type,
            "pointsTransferId": transfer_id,
            "createdAt": at.replace("Z", "+00:00"),
        },
    }


def gb_v3_profile(
    customer: str, *, activated: int, pending: int, tier: str, tier_order: int
) -> dict[str, Any]:
    """Gameball v3 player profile webhook: flat, no event name, no time, no id."""
    return {
        "playerUniqueId": customer,
        "email": f"{customer}@example.com",
        "levelName": tier,
        "levelOrder": tier_order,
        "activatedPoints": activated,
        "pendingPoints": pending,
    }


def _vf_card(customer: str, balance: int, pending: int, campaign: str, card: str) -> dict[str, Any]:
    return {
        "id": card,
        "code": f"LC-{card.removeprefix('v_')}",
        "loyalty_card": {"points": balance, "balance": balance, "pending_points": pending},
        "type": "LOYALTY_CARD",
        "campaign_id": campaign,
        "holder_id": customer,
        "object": "voucher",
    }


def _vf_pending_entry(
    customer: str, pending_id: str, points: int, at: str, campaign: str, card: str
) -> dict[str, Any]:
    return {
        "id": pending_id,
        "voucher_id": card,
        "campaign_id": campaign,
        "customer_id": customer,
        "points": points,
        "details": {"earning_rule": {"id": "ern_soak", "source": {"banner": "Order-paid"}}},
        "created_at": at,
    }


def vf_pending(
    phase: str,
    customer: str,
    event_id: str,
    pending_id: str,
    points: int,
    *,
    balance: int,
    pending_after: int,
    at: str,
    tx_id: str | None = None,
    campaign: str = VF_CAMPAIGNS[0],
    card: str | None = None,
) -> dict[str, Any]:
    """Voucherify distribution `customer.voucher.loyalty_card.pending_points.<phase>`.

    `added` and `canceled` move only pending points (`voucher_pending_points_balance`);
    `activated` moves them into the balance (`balance` + its `transaction`). Shapes as in
    tests/fixtures/voucherify/pending_points_*.json; `balance` is the available balance after,
    on `card` (default `v_<customer>`) in loyalty campaign `campaign`.
    """
    card = card or f"v_{customer}"
    data: dict[str, Any] = {
        "customer": {"id": customer, "source_id": f"src-{customer}", "object": "customer"},
        "voucher": _vf_card(customer, balance, pending_after, campaign, card),
    }
    if phase == "activated":
        data["balance"] = {
            "type": "loyalty_card",
            "total": balance + pending_after,
            "object": "balance",
            "points": points,
            "balance": balance,
            "operation_type": "AUTOMATIC",
            "related_object": {"id": card, "type": "voucher"},
        }
        data["transaction"] = {
            "id": tx_id,
            "campaign_id": campaign,
            "type": "PENDING_POINTS_ACTIVATION",
            "details": None,
            "created_at": at,
        }
    else:
        data["voucher_pending_points_balance"] = {
            "type": "loyalty_card",
            "total": pending_after,
            "object": "balance",
            "points": points if phase == "added" else -points,
            "balance": pending_after,
            "related_object": {"id": card, "type": "voucher"},
        }
    data["pending_points"] = _vf_pending_entry(customer, pending_id, points, at, campaign, card)
    return {
        "id": f"whs_{event_id}",
        "project_id": "proj_test",
        "created_at": at,
        "type": f"Pending points {phase}",
        "data": data,
        "source": {"id": "distr_test", "object": "distribution"},
        "event": {
            "id": event_id,
            "type": f"customer.voucher.loyalty_card.pending_points.{phase}",
            "created_at": at,
            "entity_id": customer,
        },
    }


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
        self.secrets = test_secrets()
        self.poison_bodies: set[bytes] = set()
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
        return out

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
        if op == "pending":
            points = rng.randint(1, 120)
            evt, pending_id = self.next_id("evcus_"), self.next_id("lopp_")
            m.pending += points
            m.open_pending = (pending_id, points)
            m.movement_ids.append(evt)  # the pending phase is named by its event
            doc = vf_pending(
                "added",
                m.customer,
                evt,
                pending_id,
                points,
                balance=m.balance,
                pending_after=m.pending,
                at=at,
                **card,
            )
            return [(sign("voucherify", doc), "vf_pending_added")]
        if op in ("activate", "cancel_pending") and m.open_pending is not None:
            pending_id, points = m.open_pending
            m.open_pending = None
            m.pending -= points
            evt = self.next_id("evcus_")
            if op == "cancel_pending":
                m.movement_ids.append(evt)
                doc = vf_pending(
                    "canceled",
                    m.customer,
                    evt,
                    pending_id,
                    points,
                    balance=m.balance,
                    pending_after=m.pending,
                    at=at,
                    **card,
                )
                return [(sign("voucherify", doc), "vf_pending_canceled")]
            vtx = self.next_id("vtx_")
            self._book(m, points)
            m.movement_ids.append(vtx)
            doc = vf_pending(
                "activated",
                m.customer,
                evt,
                pending_id,
                points,
                balance=m.balance,
                pending_after=m.pending,
                at=at,
                tx_id=vtx,
                **card,
            )
            out = [(sign("voucherify", doc), "vf_pending_activated")]
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
            secrets = {
                "gameball": {"secret_key": "not-the-secret"},
                "open_loyalty": {
                    "header_name": "X-OL-Token",
                    "header_value": "not-the-token",
                    "hmac_secret": "not-the-hmac",
                },
                "voucherify": {"secret_key": "not-the-secret"},
                "wix": {
                    "public_key": other_wix_keypair()[1],
                    "private_key": other_wix_keypair()[0],
                },
            }[provider]
            signed, headers = PROVIDERS[provider].sign(body, secrets)
        else:  # correctly signed, then one signed byte changed (JWT: in the claims segment)
            signed, headers = PROVIDERS[provider].sign(body, test_secrets()[provider])
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


# ---------------------------------------------------------------------------------------------
# the senders


class Sender:
    """Its own thread and event loop: schedules items, posts them, retries like providers."""

    def __init__(
        self,
        url: str,
        workload: Workload,
        rate: float,
        quick: bool,
        retries: dict[str, int] | None = None,
    ) -> None:
        self.url, self.workload, self.rate = url, workload, rate
        self.horizon = 90.0 if quick else 600.0
        # retries per provider (then the delivery is dropped); None: until the horizon
        self.retries = retries
        if retries is not None:  # the budget ends a delivery's retries, never the horizon
            longest = CLIENT_TIMEOUT_S + LB_CONNECT_RETRIES * LB_RETRY_DELAY_S + 4.0
            self.horizon = max(self.horizon, (max(retries.values()) + 1) * longest)
        self.lb_reconnects = 0  # refused connections the load balancer retried
        self.items: list[Item] = []
        self.start = time.monotonic()
        self.start_epoch = time.time()
        self.stop_generating = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="sender", daemon=True)

    def begin(self) -> None:
        self.start = time.monotonic()
        self.start_epoch = time.time()
        self.thread.start()

    def now(self) -> float:
        return time.monotonic() - self.start

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            traceback.print_exc()
        finally:
            self.done.set()

    async def _main(self) -> None:
        heap: list[tuple[float, int, Item]] = []
        order = itertools.count()
        tasks: set[asyncio.Task[None]] = set()
        sem = asyncio.Semaphore(48)
        connector = aiohttp.TCPConnector(limit=48)
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
        generated = 0.0
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            while True:
                now = self.now()
                if not self.stop_generating.is_set():
                    while generated < now * self.rate:
                        for it in self.workload.step():
                            delay = 0.0
                            if it.kind == "duplicate":
                                delay = self.workload.rng.uniform(0.0, 3.0)
                            if not it.ordered and self.workload.rng.random() < self.workload.p_late:
                                delay += self.workload.rng.uniform(*self.workload.late_range)
                                it.late = True
                            heapq.heappush(heap, (now + delay, next(order), it))
                            generated += 1
                while heap and heap[0][0] <= now:
                    _, _, it = heapq.heappop(heap)
                    self.items.append(it)
                    task = asyncio.ensure_future(self._deliver(http, sem, it))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if self.stop_generating.is_set() and not heap and not tasks:
                    return
                await asyncio.sleep(0.02)

    async def _deliver(self, http: aiohttp.ClientSession, sem: asyncio.Semaphore, it: Item) -> None:
        if it.after is not None:  # the member's previous delivery must be answered first
            await it.after.answered.wait()
        try:
            await self._attempts(http, sem, it)
        finally:
            it.answered.set()

    async def _attempts(
        self, http: aiohttp.ClientSession, sem: asyncio.Semaphore, it: Item
    ) -> None:
        d = it.delivery
        first = self.now()
        budget = None if self.retries is None else self.retries[d.provider]
        # with budgets, a load balancer stands between the providers and the bridge
        reconnects = 0 if budget is None else LB_CONNECT_RETRIES
        for attempt in itertools.count():
            retry_after = 4.0
            status = 0
            for reconnect in range(reconnects + 1):
                started = self.now()
                status, refused = 0, False
                try:
                    async with (
                        sem,
                        http.post(self.url + d.path, data=d.body, headers=d.headers) as r,
                    ):
                        text = await r.text()
                        status = r.status
                        if status == 200:
                            doc = json.loads(text)
                            it.request_id = str(doc["request_id"])
                            it.spooled = doc.get("spooled") is True
                        try:
                            retry_after = float(r.headers.get("Retry-After", "4"))
                        except ValueError:
                            pass
                except aiohttp.ClientConnectorError:
                    refused = True  # nothing accepted the connection: no request was sent
                except (aiohttp.ClientError, TimeoutError, OSError):
                    status = 0  # connection reset or no answer in time
                it.attempts.append((started, self.now() - started, status))
                if not refused or reconnect == reconnects:
                    break
                self.lb_reconnects += 1
                await asyncio.sleep(LB_RETRY_DELAY_S)
            it.provider_attempts = attempt + 1
            if status not in (0, 429, 503):
                it.status = status
                return
            if budget is not None and attempt >= budget:
                it.status, it.lost = status, True  # the provider's last retry: it drops it
                return
            if self.now() - first > self.horizon:
                it.status, it.gave_up = status, True
                return
            backoff = min(0.25 * 2**attempt, retry_after, 4.0)
            await asyncio.sleep(backoff * self.workload.rng.uniform(0.5, 1.0))


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


async def _end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    """End offsets of every partition of `topics` (those that exist)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await consumer.start()
    try:
        tps = [tp for t in topics for tp in await partitions_of(consumer, t)]
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        got = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: m.offset for tp, m in got.items() if m.offset >= 0}


async def _lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Records of `topics` the group has not committed past (-1 if it cannot tell)."""
    end = await _end_offsets(bootstrap, topics)
    if not end:
        return -1
    committed = await _committed(bootstrap, group)
    return sum(max(0, e - committed.get(tp, 0)) for tp, e in end.items())


def run_async(coro: Any, timeout: float = 20) -> Any:
    """`asyncio.run` with a deadline; None when Kafka does not answer (e.g. it is down)."""
    try:
        return asyncio.run(asyncio.wait_for(coro, timeout))
    except (Exception, asyncio.CancelledError):
        return None


def lag(bootstrap: str, group: str, topics: list[str]) -> int:
    got = run_async(_lag(bootstrap, group, topics))
    return -1 if got is None else int(got)


# ---------------------------------------------------------------------------------------------
# the run: processes, faults, supervisor


@dataclass
class Fault:
    name: str
    kind: str
    t0: float = 0.0  # seconds since the sender started
    repaired: float | None = None  # the restart (or addition) was done
    bridge_200_s: float | None = None  # first 200 to a request sent after t0
    workers_ready_s: float | None = None  # every live worker's /readyz is 200
    spool_drained_s: float | None = None  # the bridge's spool was empty again (with the spool)
    caught_up_s: float | None = None  # the group committed past what raw+events held when ready
    end: float | None = None
    notes: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.tmp = Path(tempfile.mkdtemp(prefix="soak-"))
        self.broker = KafkaBroker(self.tmp / "kafka")
        self.h: Harness | None = None
        self.bridge: Bridge | None = None
        self.bridge_port = 0
        self.workers: dict[str, WorkerProc] = {}
        self.lock = threading.Lock()
        self.busy: set[str] = set()  # processes a fault is handling (the supervisor keeps off)
        self.unexpected_exits: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.sender: Sender | None = None
        self.stopping = threading.Event()
        self.spool_dir = self.tmp / "bridge-spool" if args.spool else None
        # the last /metrics figures (SPOOL_METRICS) of each bridge process, by pid: counters
        # start at 0 in every process, so the run's totals are sums over processes
        self.bridge_metrics: dict[int, dict[str, float]] = {}
        self.spool_at_bridge_kill: list[int] = []  # spool records when a bridge was killed

    def bridge_env(self) -> dict[str, str]:
        """The bridge's own settings: the spool, the same directory for every bridge process."""
        return {} if self.spool_dir is None else {"CONNECTOR_SPOOL_DIR": str(self.spool_dir)}

    # -- processes -------------------------------------------------------------------------

    @property
    def harness(self) -> Harness:
        assert self.h is not None
        return self.h

    def setup(self) -> None:
        log(f"starting Apache Kafka in {self.tmp}")
        self.broker.start()
        self.h = Harness(self.broker.bootstrap, f"soak{uuid.uuid4().hex[:6]}", self.tmp)
        self.harness.base_env.update(
            CONNECTOR_PARTITIONS="4",
            CONNECTOR_MAX_BODY_BYTES=str(MAX_BODY),
            CONNECTOR_ACK_TIMEOUT_MS="2000",
            CONNECTOR_LOG_LEVEL="INFO",
            **FAST_FAILOVER,
        )
        self.bridge = self.harness.start_bridge(**self.bridge_env())
        self.bridge_port = self.bridge.port
        log(f"bridge at {self.bridge.url}; starting two workers")
        for name in ("worker-a", "worker-b"):
            self.workers[name] = self.harness.start_worker(name, wait=False)
        for w in self.workers.values():
            self.harness.wait_ready(w)
        log("workers ready")

    def start_bridge(self) -> Bridge:
        h = self.harness
        bridge = Bridge(
            "bridge",
            h.env(CONNECTOR_BRIDGE_PORT=str(self.bridge_port), **self.bridge_env()),
            h.tmp / "bridge.log",
            self.bridge_port,
        )
        h.procs.append(bridge)
        self.bridge = bridge
        return bridge

    def restart_worker(self, name: str) -> WorkerProc:
        old = self.workers[name]
        w = self.harness.start_worker(name, port=old.port, data_dir=old.data_dir, wait=False)
        self.workers[name] = w
        return w

    def supervise(self) -> None:
        """Restart processes that exit on their own (and count them)."""
        while not self.stopping.wait(1.0):
            with self.lock:
                procs: list[tuple[str, Proc]] = [(n, w) for n, w in self.workers.items()]
                if self.bridge is not None:
                    procs.append(("bridge", self.bridge))
                for name, p in procs:
                    if name in self.busy or p.alive:
                        continue
                    code = p.popen.returncode
                    t = self.sender.now() if self.sender else 0.0
                    log(f"{name} exited by itself ({code}); restarting it")
                    self.unexpected_exits.append(
                        {"process": name, "code": code, "t": round(t, 1), "log": p.log_tail(1500)}
                    )
                    if name == "bridge":
                        self.start_bridge()
                    else:
                        self.restart_worker(name)
            self.scrape_bridge()

    def scrape_bridge(self) -> dict[str, float] | None:
        """The live bridge's spool figures from /metrics (kept per process); None if no answer."""
        with self.lock:
            bridge = self.bridge
        if bridge is None or not bridge.alive:
            return None

        async def get() -> str:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
                async with http.get(bridge.url + "/metrics") as resp:
                    resp.raise_for_status()
                    return await resp.text()

        try:
            text = asyncio.run(get())
        except Exception:
            return None
        got: dict[str, float] = dict.fromkeys(SPOOL_METRICS, 0.0)
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            name = name.partition("{")[0]
            if name in got:  # summed over labels (bridge_spooled_total is per provider)
                got[name] += float(value.split()[0])
        with self.lock:
            self.bridge_metrics[bridge.pid] = got
        return got

    def spool_empty(self) -> bool:
        """True without a spool; else the live bridge says its spool holds no record."""
        if self.spool_dir is None:
            return True
        got = self.scrape_bridge()
        return got is not None and got["bridge_spool_records"] == 0

    # -- waiting ---------------------------------------------------------------------------

    def _http_ok(self, url: str) -> bool:
        async def get() -> int:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
                async with http.get(url) as resp:
                    return resp.status

        try:
            return asyncio.run(get()) == 200
        except Exception:
            return False

    def _poll(self, check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(interval)
        return False

    def workers_ready(self) -> bool:
        with self.lock:
            urls = [w.url for w in self.workers.values()]
        return all(self._http_ok(u + "/readyz") for u in urls)

    def measure(self, f: Fault) -> None:
        """Recovery after a fault: workers ready, then the group caught up with the backlog."""
        assert self.sender is not None
        h = self.harness
        timeout = 120 if self.quick else 300
        if self._poll(self.workers_ready, timeout):
            f.workers_ready_s = round(self.sender.now() - f.t0, 2)
        else:
            f.notes.append(f"workers not all ready within {timeout}s")
        if self.spool_dir is not None:
            # what the bridge spooled reaches raw only now: catching up means with that too
            if self._poll(self.spool_empty, timeout):
                f.spool_drained_s = round(self.sender.now() - f.t0, 2)
            else:
                f.notes.append(f"spool not empty within {timeout}s")
        topics = [h.topic("raw"), h.topic("events")]
        target = self._ends(topics)
        if target is not None:

            def caught() -> bool:
                committed = self._committed(topics)
                return committed is not None and all(
                    committed.get(tp, 0) >= end for tp, end in target.items()
                )

            if self._poll(caught, timeout, 1.0):
                f.caught_up_s = round(self.sender.now() - f.t0, 2)
            else:
                f.notes.append(f"group not caught up within {timeout}s")
        f.end = round(self.sender.now(), 2)

    def _ends(self, topics: list[str]) -> dict[TopicPartition, int] | None:
        for _ in range(30):
            got = run_async(_end_offsets(self.broker.bootstrap, topics))
            if got:
                return dict(got)
            time.sleep(1)
        return None

    def _committed(self, topics: list[str]) -> dict[TopicPartition, int] | None:
        got = run_async(_committed(self.broker.bootstrap, self.harness.app_id))
        return None if got is None else {tp: o for tp, o in got.items() if tp.topic in topics}

    # -- faults ----------------------------------------------------------------------------

    def fault(self, name: str, kind: str, action: Callable[[Fault], None]) -> Fault:
        assert self.sender is not None
        f = Fault(name, kind, t0=round(self.sender.now(), 2))
        self.faults.append(f)
        log(f"fault {name} at t={f.t0:.0f}s")
        try:
            action(f)
        except Exception as exc:  # recorded; the scoreboard shows it
            f.notes.append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
        f.repaired = round(self.sender.now(), 2)
        self.measure(f)
        log(
            f"fault {name}: repaired {f.repaired - f.t0:.1f}s, workers ready "
            f"{f.workers_ready_s}s, caught up {f.caught_up_s}s {'; '.join(f.notes)}"
        )
        return f

    def broker_bounce(self, sig: int, outage: float) -> Callable[[Fault], None]:
        def action(f: Fault) -> None:
            self.broker.stop(sig)
            time.sleep(outage)
            self.broker.start()

        return action

    def long_outage(self, outage: float) -> Callable[[Fault], None]:
        """Kafka SIGKILLed for `outage` s; halfway through, the bridge too (kill -9 while it
        spools) and a new one on the same port and spool."""

        def action(f: Fault) -> None:
            started = time.monotonic()
            self.broker.stop(signal.SIGKILL)
            try:
                time.sleep(outage / 2)
                self.bridge_kill(f)
                time.sleep(max(0.0, outage - (time.monotonic() - started)))
            finally:
                self.broker.start()

        return action

    def bridge_kill(self, f: Fault) -> None:
        """SIGKILL the bridge (no shutdown code runs) and start a new one: same port, same spool."""
        got = self.scrape_bridge()
        with self.lock:
            self.busy.add("bridge")
            old = self.bridge
        try:
            assert old is not None
            old.kill()
            if self.spool_dir is not None:
                records = -1 if got is None else int(got["bridge_spool_records"])
                self.spool_at_bridge_kill.append(records)
                f.notes.append(f"bridge SIGKILLed with {records} webhooks in its spool")
            else:
                f.notes.append("bridge SIGKILLed (no spool)")
            with self.lock:
                self.start_bridge()
            # a bridge with a spool listens at once; one without waits for Kafka first
            if self.spool_dir is not None and not self._poll(
                lambda: self._http_ok(f"{old.url}/readyz"), 60, 0.2
            ):
                f.notes.append("new bridge not ready within 60s")
        finally:
            with self.lock:
                self.busy.discard("bridge")

    def worker_kill(self, name: str) -> Callable[[Fault], None]:
        def action(f: Fault) -> None:
            with self.lock:
                self.busy.add(name)
            try:
                self.workers[name].kill()
                time.sleep(2 if self.quick else 5)
                with self.lock:
                    self.restart_worker(name)
            finally:
                with self.lock:
                    self.busy.discard(name)

        return action

    def worker_add(self, name: str) -> Callable[[Fault], None]:
        def action(f: Fault) -> None:
            with self.lock:
                self.workers[name] = self.harness.start_worker(name, wait=False)

        return action

    def worker_remove(self, name: str) -> Callable[[Fault], None]:
        def action(f: Fault) -> None:
            with self.lock:
                self.busy.add(name)
                w = self.workers.pop(name)
            try:
                w.stop()
            except AssertionError as exc:
                f.notes.append(str(exc).splitlines()[0])
            finally:
                with self.lock:
                    self.busy.discard(name)

        return action

    def bridge_restart(self, f: Fault) -> None:
        with self.lock:
            self.busy.add("bridge")
            old = self.bridge
        try:
            assert old is not None
            self.scrape_bridge()  # its counters, before they go with the process
            try:
                old.stop()
            except AssertionError as exc:
                f.notes.append(str(exc).splitlines()[0])
            with self.lock:
                self.start_bridge()
            if not self._poll(lambda: self._http_ok(f"{old.url}/readyz"), 60, 0.2):
                f.notes.append("bridge not ready within 60s")
        finally:
            with self.lock:
                self.busy.discard("bridge")

    def combined(self, f: Fault) -> None:
        """Several at once: broker SIGKILL + a worker SIGKILL + bridge restart + scale-in."""
        threads = [
            threading.Thread(target=self.broker_bounce(signal.SIGKILL, 8), args=(f,)),
            threading.Thread(target=self.worker_kill("worker-a"), args=(f,)),
            threading.Thread(target=self.bridge_restart, args=(f,)),
        ]
        if "worker-c" in self.workers:
            threads.append(threading.Thread(target=self.worker_remove("worker-c"), args=(f,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def schedule(self, kinds: set[str]) -> list[tuple[float, str, str, Callable[[Fault], None]]]:
        """(seconds after start, name, kind, action) of each fault in this run."""
        duration = self.args.minutes * 60
        outage = self.args.outage_seconds
        plan: list[tuple[float, str, str, Callable[[Fault], None]]] = []
        if self.quick:
            plan = [
                (5, "worker-b SIGKILL + restart", "worker", self.worker_kill("worker-b")),
                (14, "bridge restart", "bridge", self.bridge_restart),
                (20, "worker-c added (rebalance)", "rebalance", self.worker_add("worker-c")),
                (
                    28,
                    "broker SIGKILL + restart",
                    "broker",
                    self.broker_bounce(signal.SIGKILL, 3),
                ),
                (
                    45,
                    f"long broker outage: SIGKILL, {outage:.0f} s down, bridge SIGKILL",
                    "outage",
                    self.long_outage(outage),
                ),
            ]
        else:
            plan = [
                (
                    0.07,
                    "broker SIGTERM + restart",
                    "broker",
                    self.broker_bounce(signal.SIGTERM, 10),
                ),
                (
                    0.19,
                    "broker SIGKILL + restart",
                    "broker",
                    self.broker_bounce(signal.SIGKILL, 10),
                ),
                (0.31, "worker-b SIGKILL + restart", "worker", self.worker_kill("worker-b")),
                (0.43, "worker-c added (rebalance)", "rebalance", self.worker_add("worker-c")),
                (0.55, "bridge restart", "bridge", self.bridge_restart),
                (0.68, "together: broker, worker, bridge, worker-c out", "all", self.combined),
                (
                    0.8,
                    f"long broker outage: SIGKILL, {outage:.0f} s down, bridge SIGKILL",
                    "outage",
                    self.long_outage(outage),
                ),
            ]
            plan = [(frac * duration, n, k, a) for frac, n, k, a in plan]
        # the combined fault runs when every kind of the ones it combines does
        combined = {"broker", "worker", "rebalance", "bridge"}
        return [p for p in plan if p[2] in kinds or (p[2] == "all" and combined <= kinds)]

    # -- the whole run ---------------------------------------------------------------------

    def run(self, workload: Workload) -> dict[str, Any]:
        args = self.args
        kinds = set(args.faults)
        assert self.bridge is not None
        retries = PROVIDER_RETRIES if args.provider_retries else None
        self.sender = Sender(self.bridge.url, workload, args.rate, self.quick, retries)
        supervisor = threading.Thread(target=self.supervise, daemon=True)
        supervisor.start()
        self.sender.begin()
        duration = args.minutes * 60
        for at_s, name, kind, action in self.schedule(kinds):
            while self.sender.now() < at_s:
                time.sleep(0.2)
            self.fault(name, kind, action)
        while self.sender.now() < duration:
            time.sleep(0.2)
        log(f"load done after {self.sender.now():.0f}s; waiting for retries and late deliveries")
        self.sender.stop_generating.set()
        if not self.sender.done.wait(self.sender.horizon + 60):
            raise RuntimeError("senders did not finish")
        load_end = self.sender.now()
        drained = self.drain()
        self.stopping.set()
        supervisor.join(5)
        return {"load_seconds": round(load_end, 1), "drain_seconds": drained}

    def drain(self) -> float | None:
        """Seconds until the worker group committed past the end of raw and events."""
        assert self.sender is not None
        started = time.monotonic()
        h = self.harness
        timeout = 90 if self.quick else 600
        # the spool first: what it still holds is not on raw yet
        ok = self._poll(
            lambda: (
                self.spool_empty()
                and self.workers_ready()
                and lag(self.broker.bootstrap, h.app_id, [h.topic("raw"), h.topic("events")]) == 0
            ),
            timeout,
            1.0,
        )
        took = round(time.monotonic() - started, 1)
        log(f"drain: {'caught up' if ok else 'NOT caught up'} after {took}s")
        return took if ok else None

    def close(self) -> None:
        self.stopping.set()
        if self.h is not None:
            self.h.close(failed=False)
        self.broker.cleanup()


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


def scoreboard(soak: Soak, workload: Workload, extra: dict[str, Any]) -> dict[str, Any]:
    assert soak.sender is not None
    h = soak.harness
    bootstrap = soak.broker.bootstrap
    items = soak.sender.items
    codec = default_codec()
    oracle = workload.oracle()

    raw = read_topic(bootstrap, h.topic("raw"))
    raw_ids = {r.headers.get("request-id", b"").decode() for r in raw}
    raw_bodies = {r.value for r in raw}
    acked = [it for it in items if it.status == 200]
    missing = [it.request_id for it in acked if it.request_id not in raw_ids]

    # deliveries the provider dropped after its whole retry budget. Without the spool they are
    # expected (a long outage outlasts the budget): the customers they touched are left out of
    # the balance checks (their provider's account moved, the connector never heard of it; a
    # refused write may also have landed late). With the spool none may be lost.
    valid = [it for it in items if it.kind in ("valid", "duplicate", "poison")]
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
    balances = latest(bootstrap, h.topic("balances"), codec)
    tiers = latest(bootstrap, h.topic("tiers"), codec)
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
    ledger_records = [r for r in read_topic(bootstrap, h.topic("ledger")) if r.value]
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
    dlq = [codec.decode(r.value) for r in read_topic(bootstrap, h.topic("dlq")) if r.value]
    reasons = Counter(f"{d.stage} {d.error_class}: {d.error_message[:80]}" for d in dlq)
    unexpected_dlq = [d for d in dlq if d.raw not in workload.poison_bodies]
    poison_acked = {it.delivery.body for it in acked if it.kind == "poison"}
    poison_missing = len(poison_acked - {d.raw for d in dlq})

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
        mine = [it for it in items if it.member == key and it.kind in ("valid", "duplicate")]
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


def timeline(items: list[Item], faults: list[Fault]) -> dict[str, list[int]]:
    """Per second since the start: 200s, 503s (and 429s), connection errors, others."""
    end = int(max((s + d for it in items for s, d, _ in it.attempts), default=0)) + 1
    series = {k: [0] * end for k in ("ok", "refused", "no_answer", "other")}
    for it in items:
        for s, d, st in it.attempts:
            sec = min(end - 1, int(s + d))
            k = (
                "ok"
                if st == 200
                else "refused"
                if st in (429, 503)
                else "no_answer"
                if st == 0
                else "other"
            )
            series[k][sec] += 1
    return series


def chart(series: dict[str, list[int]], faults: list[Fault], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(12, 4.5))
    xs = list(range(len(series["ok"])))
    ax.plot(xs, series["ok"], label="200 accepted/s", color="tab:green", lw=1)
    ax.plot(xs, series["refused"], label="503/429 per s", color="tab:red", lw=1)
    ax.plot(xs, series["no_answer"], label="connection errors/s", color="tab:gray", lw=1)
    for f in faults:
        ax.axvspan(f.t0, f.end or f.t0, color="tab:orange", alpha=0.15)
        ax.axvline(f.t0, color="tab:orange", lw=1)
        ax.text(f.t0, ax.get_ylim()[1] * 0.95, " " + f.name, rotation=90, va="top", fontsize=7)
    ax.set_xlabel("seconds since load started")
    ax.set_ylabel("responses per second")
    ax.set_title("soak: bridge answers over time (orange: fault until recovered)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_board(board: dict[str, Any]) -> None:
    w = board["webhooks"]
    print("\n==== soak scoreboard ====")
    print(f"load {board.get('load_seconds')} s, drain {board.get('drain_seconds')} s")
    print(
        f"webhooks sent {w['sent']} {w['by_kind']}, late {w['late']}, acknowledged (200) "
        f"{w['acknowledged_200']}, in raw topic by request-id {w['in_raw_topic_by_request_id']}, "
        f"gave up {w['gave_up']}"
    )
    print(f"HTTP attempts {w['http_attempts']}: {w['attempt_statuses']}")
    rp, sp = board["provider_retry_policy"], board["spool"]
    print(
        f"provider retries {rp['retries'] or 'until the horizon'}: lost by provider retry policy "
        f"{rp['lost_by_provider_retry_policy']} {rp['by_provider']} by fault {rp['by_fault']}; "
        f"{rp['customers_touched']} customers touched, "
        f"{rp['accounts_excluded_from_balance_checks']} accounts left out of the balance checks; "
        f"load balancer reconnects {w['load_balancer_reconnects']}"
    )
    if sp["enabled"]:
        print(
            f"spool: {sp['acknowledged_spooled']} acknowledged as spooled; bridges counted "
            f"spooled {sp['bridge_spooled_total']}, forwarded {sp['bridge_spool_forwarded']}, "
            f"full {sp['bridge_spool_full_total']} over {sp['bridge_processes_scraped']} "
            f"processes; records at the end {sp['bridge_spool_records_at_end']}; when the bridge "
            f"was killed {sp['spool_records_when_bridge_killed']}"
        )
    else:
        print("spool: off")
    wl = board["workload"]
    print(f"members by flavour {wl['members_by_flavour']}")
    print(
        f"accounts {wl['accounts']} of {wl['customers']} customers {wl['accounts_by_id']}; "
        f"multi-account customers {wl['multi_account_customers']} "
        f"({wl['multi_account_movements']} movements)"
    )
    print(f"valid deliveries by shape {wl['valid_by_shape']}")
    print(f"byte-identical repeats (new deliveries) {wl['byte_identical_repeats']}")
    print(
        f"ledger: {board['ledger']['distinct_entries']} distinct entries, "
        f"{board['ledger']['re_emitted_same_entry_id']} re-emitted with the same entry_id"
    )
    print(f"dead letters: {board['dead_letters']['records']} {board['dead_letters']['reasons']}")
    lat = board["latency_ms"]
    print(
        f"bridge latency ms during faults {lat['during_faults']}, outside {lat['outside_faults']}"
    )
    print("recovery (s from injection):")
    for name, r in board["recovery_s"].items():
        print(f"  {name:52} {r}")
    if board["unexpected_exits"]:
        print(f"unexpected exits: {[(e['process'], e['code']) for e in board['unexpected_exits']]}")
    print("must be 0:")
    for k, v in board["must_be_zero"].items():
        print(f"  {'ok ' if v == 0 else 'BAD'} {k:45} {v}")
    print("RESULT:", "PASS" if board["ok"] else "FAIL")


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=None, help="load duration (default 15)")
    parser.add_argument("--members", type=int, default=None, help="members (default 400)")
    parser.add_argument("--rate", type=float, default=None, help="webhooks/s (default 20)")
    parser.add_argument(
        "--faults", default="all", help="all, none or a comma list of " + ",".join(KINDS)
    )
    parser.add_argument(
        "--spool",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the bridge's store-and-forward spool (CONNECTOR_SPOOL_DIR; default on)",
    )
    parser.add_argument(
        "--provider-retries",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="senders retry as often as each provider does, then drop the delivery "
        "(default: on when the outage fault runs; off: retry until the horizon)",
    )
    parser.add_argument(
        "--outage-seconds",
        type=float,
        default=None,
        help="how long the outage fault keeps Kafka down (default 180; 30 with --quick)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="~2 minutes, small, one fault of each kind"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", default=str(RESULTS / "soak.json"))
    args = parser.parse_args(argv)
    defaults = (1.0, 40, 8.0) if args.quick else (15.0, 400, 20.0)
    args.minutes = args.minutes if args.minutes is not None else defaults[0]
    args.members = args.members if args.members is not None else defaults[1]
    args.rate = args.rate if args.rate is not None else defaults[2]
    args.seed = args.seed if args.seed is not None else random.randrange(10**6)
    if args.faults == "all":
        args.faults = list(KINDS)
    elif args.faults == "none":
        args.faults = []
    else:
        args.faults = [k.strip() for k in args.faults.split(",") if k.strip()]
        unknown = set(args.faults) - set(KINDS)
        if unknown:
            parser.error(f"unknown fault kinds {sorted(unknown)}; use {','.join(KINDS)}")
    if args.outage_seconds is None:
        args.outage_seconds = 30.0 if args.quick else 180.0
    if args.provider_retries is None:
        args.provider_retries = "outage" in args.faults
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soak = Soak(args)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    keep = True  # the process logs, unless the run passes
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    try:
        try:
            soak.setup()
        except Exception as exc:
            log(f"processes did not come up: {exc}")
            if soak.h is not None:
                print(soak.h.logs())
            return 2
        workload = Workload(args.members, args.seed, args.quick)
        log(
            f"load: {args.minutes} min, {args.members} members, ~{args.rate} webhooks/s, "
            f"faults {args.faults}, seed {args.seed}, spool {'on' if args.spool else 'off'}, "
            f"provider retries {PROVIDER_RETRIES if args.provider_retries else 'off'}"
        )
        extra = soak.run(workload)
        assert soak.sender is not None
        if soak.sender.error is not None:
            raise soak.sender.error
        first_200_after(soak.sender.items, soak.faults)
        extra["started"] = started
        extra["load_average_at_start"] = load_at_start
        board = scoreboard(soak, workload, extra)
        board["timeline_per_s"] = timeline(soak.sender.items, soak.faults)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(board, indent=1, default=str) + "\n")
        chart(board["timeline_per_s"], soak.faults, out.with_suffix(".png"))
        print_board(board)
        print(f"written {out}")
        if not board["ok"]:
            print(soak.harness.logs()[-20000:])
        keep = not board["ok"]
        return 0 if board["ok"] else 1
    finally:
        soak.close()
        if keep:
            print(f"process logs and data kept in {soak.tmp}")
        else:
            shutil.rmtree(soak.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
