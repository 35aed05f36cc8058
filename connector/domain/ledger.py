"""The member ledger: a canonical `LoyaltyEvent` + member state → new state + ledger entries.

Pure and deterministic (the caller passes `now`), so the Faust `ledger` agent only moves data in
and out, and every rule about dedupe, ordering and derived movements is tested here without Kafka.
`docs/delivery-semantics.md` says, per provider, which of these rules its deliveries meet.

Guarantees, per member, for events whose ids are still in the bounded dedupe memory:

* redelivering an event changes nothing (event-id dedupe), and two webhooks about one points
  movement count it once (movement-id dedupe, per phase: pending, balance, release, cancel);
* deltas commute, and absolute values (reported balance, snapshot pending points, tier) are kept
  only from the newest event by a total order, so the final user-visible state does not depend on
  arrival order;
* a balance statement inside a delta stream (Open Loyalty's `amount_change: 0` expiries, cancels
  and unlocks; amount changes without a direction) is booked as the difference to the balance
  before it *in provider order*, and corrected when an event that belongs before it arrives
  later (the balance chain), so it neither hides in the drift nor double counts;
* a pending movement is released exactly once, by its activation, its cancelation or the
  balance movement with the same movement id, whichever order they arrive in;
* every value stays inside Avro decimal(18, 2): an event that would leave it raises
  `LedgerOverflow` (the worker dead-letters that event) and leaves the state as it was.

Beyond the memory: an unremembered event with a provider id and clock that is no newer than
the newest event the memory forgot (the horizon) is taken as a redelivery (`beyond_horizon`).
A movement key is kept at least as long as the id of the event that booked it
(`MOVEMENT_KEYS_PER_EVENT`), so a twin of a forgotten movement is beyond that horizon too; the
outcome then names the movement (`Outcome.forgotten_movement`) and the worker counts it.

Snapshot streams derive their movements. Wix accounts carry cumulative counters, so the
movement since the previous applied snapshot is classified by them and a stale snapshot can be
skipped (the counters telescope). Gameball profiles say only the balance: they are gaps in the
balance chain, so a profile read late (one member's raw records sit on several partitions) is
sized in provider order and the profile after it corrected; balances and lifetime earned and
redeemed end the same in every arrival order within `CHAIN_LENGTH`.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from connector.models import (
    DEFAULT_ACCOUNT,
    NO_TIER,
    POINTS_MAX,
    SYNTHETIC_ID,
    ZERO,
    EntryOrigin,
    EventType,
    LedgerEntry,
    LoyaltyEvent,
    MemberBalance,
    MemberTier,
    PointCounters,
    Provider,
    Tier,
    account_key,
    utc,
)

DEFAULT_MEMORY = 1000
# How many balance-carrying or balance-moving events the balance chain keeps per member: how far
# back an event may arrive out of order and still correct the balance statement after it.
CHAIN_LENGTH = 16
# Providers whose delta streams hold gaps, so their explicit movements are kept in the chain to
# size the gaps against: Open Loyalty OSS sends expiries, cancels and unlocks as
# `amount_change: 0` (docs/delivery-semantics.md). A Gameball profile (a balance snapshot
# without counters) is a gap too: its first one starts a chain sized against the balance booked
# before it, and the member's later movements join it.
CHAIN_PROVIDERS = frozenset({Provider.OPEN_LOYALTY})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

# Kinds whose ledger entry's points_delta is a change of *pending* points, not of the balance
# (their balance_before == balance_after). Sum the other entries to get the computed balance.
PENDING_KINDS = frozenset({EventType.POINTS_PENDING, EventType.POINTS_CANCELED})

# Event types whose points_delta is information, not a movement: POINTS_EXPIRING announces a
# future expiry (the real one arrives as POINTS_EXPIRED), and a NOTIFICATION is a human-readable
# message about a movement reported elsewhere. Booking them would count points twice.
INFORMATIONAL_TYPES = frozenset({EventType.POINTS_EXPIRING, EventType.NOTIFICATION})

RESIDUAL_SUFFIX = "residual"

# Kinds that move the balance and may be sized by the balance chain when the provider reports
# only the balance after them (points_delta null, balance set).
GAP_KINDS = frozenset(
    {
        EventType.POINTS_EARNED,
        EventType.POINTS_REDEEMED,
        EventType.POINTS_EXPIRED,
        EventType.POINTS_ADJUSTED,
    }
)


def gap_movements(kind: EventType, booked: Decimal, want: Decimal) -> list[Movement]:
    """The movements that take a gap link from `booked` to `want`.

    A gap of a movement kind (Open Loyalty's `amount_change: 0`) keeps its kind. A balance
    snapshot without counters (Gameball profiles) says only the balance: a rise is earned and a
    fall redeemed, so a correction that flips the sign takes back the old kind's amount and books
    the new one, and the lifetime counters end as if the gap had been sized right the first time.
    """
    if want == booked:
        return []
    if kind is not EventType.BALANCE_SNAPSHOT:
        return [Movement(kind, want - booked)]

    def side(x: Decimal) -> EventType:
        return EventType.POINTS_EARNED if x > 0 else EventType.POINTS_REDEEMED

    if booked == 0 or want == 0 or (booked > 0) == (want > 0):
        return [Movement(side(want if want != 0 else booked), want - booked)]
    return [Movement(side(booked), -booked), Movement(side(want), want)]


class LedgerOverflow(ValueError):
    """Applying an event would take a points value outside Avro decimal(18, 2)."""


# ---------------------------------------------------------------------------------------------
# ordering


class OrderKey(NamedTuple):
    """Where an event sits in a member's history, for "apply only if newer" decisions.

    `received_ms` (the bridge's receive time) breaks ties between events with the same provider
    time: Open Loyalty's only clock is `X-Webhook-Timestamp`, in whole seconds, and it sends the
    webhooks of one request in order, so the receive order is the best order within a second.
    """

    revision: int | None
    occurred_ms: int
    event_id: str
    received_ms: int = 0

    def rank(self) -> tuple[int, int, int, str]:
        """The total order: revision (none sorts first), provider time, receive time, id."""
        return (
            -1 if self.revision is None else self.revision,
            self.occurred_ms,
            self.received_ms,
            self.event_id,
        )


def to_ms(dt: datetime) -> int:
    """Epoch milliseconds of a datetime (naive = UTC), exact (no float rounding)."""
    return (utc(dt) - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def order_key(event: LoyaltyEvent) -> OrderKey:
    return OrderKey(
        event.revision, to_ms(event.occurred_at), event.event_id, to_ms(event.received_at)
    )


def is_newer(key: OrderKey, mark: OrderKey | None) -> bool:
    """True if an event at `key` supersedes the absolute value last applied at `mark`.

    A provider revision (Wix `account.revision`, +1 per update) is more trustworthy than clocks,
    so it decides first; then the provider's time, then the receive time, then the event id
    (arbitrary, but the same whatever order events arrive in, which is what makes the final
    state independent of delivery order). An event without a revision ranks below every event
    with one, so the order stays total when a provider sends a revision only sometimes (a Wix
    account without `revision` can never move a revisioned balance). The same key (a redelivery
    the dedupe memory forgot) is never newer, so it cannot re-apply.
    """
    return mark is None or key.rank() > mark.rank()


# ---------------------------------------------------------------------------------------------
# dedupe memory


# The most movement keys one applied event adds: a balance movement its bare id and, for an
# activation, its release key; a cancelation without an amount its cancel and closed keys; any
# other phase one key (a test checks it). The movement memory holds this many keys per event the
# event-id memory holds, so a movement key is forgotten only after the event that booked it was
# (after `memory` newer events), and the event-id horizon (`remember_event`) covers both: a twin
# or redelivery of a forgotten movement is as old as something the event-id memory forgot.
MOVEMENT_KEYS_PER_EVENT = 2


def remember(ids: tuple[str, ...], new_id: str, memory: int) -> tuple[str, ...]:
    """`ids` with `new_id` appended (newest last), oldest evicted beyond `memory` entries.

    Bounded so a member record stays small; what an eviction forgets is tracked by
    `remember_event` (the dedupe horizon), so a redelivery from beyond it is recognised. The
    movement memory's bound is `memory * MOVEMENT_KEYS_PER_EVENT` keys, so that horizon also
    covers the movement keys it forgets.
    """
    if new_id in ids:
        kept = tuple(i for i in ids if i != new_id) + (new_id,)
    else:
        kept = ids + (new_id,)
    return kept[-memory:] if len(kept) > memory else kept


def remember_event(
    state: MemberState, event_id: str, occurred_ms: int, memory: int
) -> tuple[tuple[str, ...], tuple[int, ...], int | None]:
    """The event-id memory with `event_id` (at provider time `occurred_ms`) added.

    Returns (ids, their provider times, horizon): the horizon is the newest provider time among
    the ids evicted so far. An event at or before the horizon whose id is not remembered may be a
    redelivery the memory forgot (see `beyond_horizon`).
    """
    ids = list(state.recent_event_ids)
    times = list(state.recent_event_ms)
    if len(times) != len(ids):  # a record written before times were kept: unknown (-1)
        times = [-1] * len(ids)
    ids.append(event_id)
    times.append(occurred_ms)
    horizon = state.horizon_ms
    if len(ids) > memory:
        cut = len(ids) - memory
        forgotten = max(times[:cut])
        if forgotten >= 0:  # an id of unknown time moves no horizon: never skip on a guess
            horizon = forgotten if horizon is None else max(horizon, forgotten)
        ids, times = ids[cut:], times[cut:]
    return tuple(ids), tuple(times), horizon


def beyond_horizon(state: MemberState, event: LoyaltyEvent) -> bool:
    """True for an event the dedupe memory cannot vouch for: as old as something it forgot.

    Only events with a provider id and a provider clock are judged (Voucherify, Wix): a
    provider retry keeps both, so an unremembered event at or before the horizon is most
    likely a redelivery of an evicted one. Events whose id or time we made up (body hashes,
    receive times) cannot be told apart this way and are applied.
    """
    if state.horizon_ms is None or event.attributes.get(SYNTHETIC_ID) == "true":
        return False
    return to_ms(event.occurred_at) <= state.horizon_ms


def forgotten_movement(state: MemberState, event: LoyaltyEvent) -> str | None:
    """The movement id of `event` if the movement memory no longer holds the key of the phase
    it reports (so, applied, it would book that movement again); else None.

    Asked only of events `beyond_horizon` (not on the hot path): such an event is taken as a
    redelivery, or a twin, of an event the memory forgot, and this says whether a movement was
    at stake (a movement key forgotten: only the horizon kept it from counting twice) or not
    (the movement memory would have caught it by its key, or it moves no points).
    """
    movement_id = event.movement_id
    if movement_id is None:
        return None
    held = state.recent_movement_ids
    if event.points_delta is None:
        if event.type is EventType.POINTS_CANCELED:
            key = movement_key(EventType.POINTS_CANCELED, movement_id)
        elif is_gap(event):
            key = movement_id
        else:
            return None
        return movement_id if key not in held else None
    movement = classify_delta(event.type, event.points_delta)
    if movement is None:
        return None
    if movement.kind is EventType.POINTS_ACTIVATED:
        missing = movement_id not in held or release_key(movement_id) not in held
    else:
        missing = movement_key(movement.kind, movement_id) not in held
    return movement_id if missing else None


def movement_key(kind: EventType, movement_id: str) -> str:
    """The dedupe key of one phase of a points movement.

    A pending movement and its later activation or cancelation are different phases of the same
    provider movement (e.g. one Open Loyalty `pointsTransferId`); deduping them against each other
    would lose the activation. The balance phase keeps the bare movement id.
    """
    if kind is EventType.POINTS_PENDING:
        return f"{movement_id}#pending"
    if kind is EventType.POINTS_CANCELED:
        return f"{movement_id}#canceled"
    return movement_id


def release_key(movement_id: str) -> str:
    """The dedupe key of a movement's release from pending (activation or balance phase)."""
    return f"{movement_id}#released"


class Link(NamedTuple):
    """One event in a member's balance chain (see `apply_chain`).

    An explicit link moved the balance by `delta` (and may report the `balance` after it); a gap
    link reported only the `balance` after it, and `booked` is what the ledger booked for it so
    far (the difference to the balance before it in provider order).
    """

    key: OrderKey
    delta: Decimal | None
    balance: Decimal | None
    booked: Decimal
    kind: EventType


# ---------------------------------------------------------------------------------------------
# state


@dataclass(frozen=True, slots=True)
class MemberState:
    """Everything the ledger knows about one member: one Faust table record.

    Balances, counters, tier, ordering marks and dedupe memory live together so that an event's
    effect and its dedupe mark are persisted by a single changelog write. How the record is
    stored (its JSON bytes) is `connector.streams.state_format`'s business, not this class's.
    """

    member_key: str
    provider: Provider
    tenant: str
    customer_id: str
    updated_at: datetime  # newest occurred_at applied
    as_of: datetime  # processing time of the last change
    last_event_id: str
    computed_balance: Decimal = ZERO  # from deltas, reported and derived
    reported_balance: Decimal | None = None  # newest provider-reported available balance
    pending_points: Decimal = ZERO
    lifetime_earned: Decimal = ZERO
    lifetime_redeemed: Decimal = ZERO  # positive magnitude
    lifetime_expired: Decimal = ZERO  # positive magnitude
    lifetime_adjusted: Decimal = ZERO  # signed
    tier: Tier | None = None
    balance_mark: OrderKey | None = None
    tier_mark: OrderKey | None = None
    last_counters: PointCounters | None = None
    events_applied: int = 0
    source_offset: int | None = None
    recent_event_ids: tuple[str, ...] = ()
    recent_movement_ids: tuple[str, ...] = ()
    recent_event_ms: tuple[int, ...] = ()  # provider time of each remembered event id
    horizon_ms: int | None = None  # newest provider time among forgotten event ids
    open_pending: tuple[tuple[str, Decimal], ...] = ()  # movement id -> pending not released
    chain: tuple[str, ...] = ()  # recent balance events in provider order, as `link_text`
    chain_base: Decimal = ZERO  # the balance before chain[0]
    chain_floor: OrderKey | None = None  # the newest key evicted from the chain
    account_id: str = DEFAULT_ACCOUNT  # the points account this record is the ledger of
    # On the default account's record only: the member's other accounts (the member query's
    # index of the records keyed `account_key(member_key, account)`), in order of appearance.
    accounts: tuple[str, ...] = ()

    @classmethod
    def new(cls, event: LoyaltyEvent, now: datetime, account_id: str | None = None) -> MemberState:
        """The state of an account never seen before (nothing applied yet): `event`'s own
        account unless `account_id` says another."""
        return cls(
            member_key=event.member_key,
            provider=event.provider,
            tenant=event.tenant,
            customer_id=event.customer_id,
            updated_at=utc(event.occurred_at),
            as_of=utc(now),
            last_event_id="",
            account_id=event.account_id if account_id is None else account_id,
        )

    @property
    def key(self) -> str:
        """This record's key in the members table and on `loyalty.balances`."""
        return account_key(self.member_key, self.account_id)

    @property
    def balance(self) -> Decimal:
        """What users see as the balance: the provider's word when we have it."""
        return self.reported_balance if self.reported_balance is not None else self.computed_balance

    @property
    def drift(self) -> Decimal | None:
        """Reported minus computed: non-zero means we missed (or the provider hid) a movement."""
        if self.reported_balance is None:
            return None
        return self.reported_balance - self.computed_balance

    def visible(self) -> tuple[Any, ...]:
        """The values a `MemberBalance` reader would notice changing (not the freshness fields)."""
        return (
            self.balance,
            self.computed_balance,
            self.reported_balance,
            self.pending_points,
            self.lifetime_earned,
            self.lifetime_redeemed,
            self.lifetime_expired,
            self.lifetime_adjusted,
            self.tier,
        )

    def to_balance(self) -> MemberBalance:
        return MemberBalance(
            member_key=self.member_key,
            provider=self.provider,
            tenant=self.tenant,
            customer_id=self.customer_id,
            balance=self.balance,
            computed_balance=self.computed_balance,
            pending_points=self.pending_points,
            lifetime_earned=self.lifetime_earned,
            lifetime_redeemed=self.lifetime_redeemed,
            lifetime_expired=self.lifetime_expired,
            lifetime_adjusted=self.lifetime_adjusted,
            updated_at=self.updated_at,
            as_of=self.as_of,
            last_event_id=self.last_event_id,
            events_applied=self.events_applied,
            reported_balance=self.reported_balance,
            drift=self.drift,
            tier=self.tier,
            source_offset=self.source_offset,
            account_id=self.account_id,
        )


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(MemberState))
_set = object.__setattr__


def replace(obj: Any, **changes: Any) -> Any:
    """`dataclasses.replace`, with a fast path for MemberState (a frozen dataclass of 30 fields).

    `apply` makes a handful of new states per event; the generic replace (field checks, then
    `__init__` setting each field of a frozen class through `object.__setattr__`) cost ~20 us
    each, a third of `apply`.
    """
    if type(obj) is not MemberState:
        return dataclasses.replace(obj, **changes)
    new = object.__new__(MemberState)
    for name in _STATE_FIELDS:
        _set(new, name, changes[name] if name in changes else getattr(obj, name))
    return new


def link_text(link: Link) -> str:
    """A chain link as the table stores it: one string, parsed only when the chain is used.

    The chain is written and read with every member record: as JSON lists of Decimals and marks
    32 links cost ~230 us per read + write; as strings they pass through untouched.
    """
    k = link.key
    return "|".join(
        (
            "" if k.revision is None else str(k.revision),
            str(k.occurred_ms),
            str(k.received_ms),
            "" if link.delta is None else str(link.delta),
            "" if link.balance is None else str(link.balance),
            str(link.booked),
            link.kind.value,
            k.event_id,  # last: an id may hold "|"
        )
    )


@functools.lru_cache(maxsize=32768)
def parse_link(text: str) -> Link:
    """Inverse of `link_text` (cached: a member's links are read again by each of its events)."""
    revision, occurred, received, delta, balance, booked, kind, event_id = text.split("|", 7)
    return Link(
        OrderKey(int(revision) if revision else None, int(occurred), event_id, int(received)),
        Decimal(delta) if delta else None,
        Decimal(balance) if balance else None,
        Decimal(booked),
        EventType(kind),
    )


_COUNTER_FIELDS = ("earned", "redeemed", "adjusted", "expired", "total")


# ---------------------------------------------------------------------------------------------
# movements


class Movement(NamedTuple):
    """One points movement to book: its kind and its effect on the balance and pending points."""

    kind: EventType
    balance_delta: Decimal
    pending_delta: Decimal = ZERO


def classify_delta(event_type: EventType, delta: Decimal) -> Movement | None:
    """What a reported `points_delta` does, by event type; None if it moves nothing.

    The event type is the decoder's statement of meaning, so it fixes the sign: an earn always
    adds, a redemption or expiry always removes (some providers send magnitudes, e.g. Open
    Loyalty `amountChange` + `amountChangeType: subtract`; a forgotten negation must not turn a
    redemption into a gain). A reversal must therefore be decoded as POINTS_ADJUSTED, which keeps
    its sign. This also keeps lifetime earned/redeemed/expired monotonic.

    Pending points are not spendable: POINTS_PENDING changes only pending (signed as sent);
    POINTS_ACTIVATED moves |d| from pending into the balance (it counts as earned, once: the
    pending phase did not); POINTS_CANCELED removes |d| from pending. Pending may go below zero
    while an activation or cancelation overtakes its pending event: clamping would make the
    result depend on arrival order.

    Any other type that carries a delta is booked as an adjustment, except the informational
    ones (POINTS_EXPIRING, NOTIFICATION) which never move points. A zero delta moves nothing.
    """
    if event_type in INFORMATIONAL_TYPES or delta == 0:
        return None
    magnitude = abs(delta)
    match event_type:
        case EventType.POINTS_EARNED:
            return Movement(EventType.POINTS_EARNED, magnitude)
        case EventType.POINTS_REDEEMED:
            return Movement(EventType.POINTS_REDEEMED, -magnitude)
        case EventType.POINTS_EXPIRED:
            return Movement(EventType.POINTS_EXPIRED, -magnitude)
        case EventType.POINTS_PENDING:
            return Movement(EventType.POINTS_PENDING, ZERO, delta)
        case EventType.POINTS_ACTIVATED:
            return Movement(EventType.POINTS_ACTIVATED, magnitude, -magnitude)
        case EventType.POINTS_CANCELED:
            return Movement(EventType.POINTS_CANCELED, ZERO, -magnitude)
        case _:
            return Movement(EventType.POINTS_ADJUSTED, delta)


def derive_movements(
    before: Decimal,
    after: Decimal,
    previous: PointCounters | None,
    current: PointCounters | None,
) -> tuple[list[tuple[Movement, bool]], PointCounters | None]:
    """Movements explaining a snapshot's balance change `before → after`, and counters to keep.

    Returns `([(movement, is_residual), ...], counters)`; the movements always sum to
    `after - before`, so the computed balance follows the snapshots exactly.

    With cumulative counters on both sides (Wix `points.earned/redeemed/expired/adjusted`), the
    counter that moved says what happened: earned up → earned, redeemed up → redeemed, expired up
    → expired, adjusted changed → adjusted (signed). Whatever the counters do not explain (a
    counter going down, a refund, rounding on the provider's side) becomes a separate residual
    adjustment, so it is visible rather than silently folded into another kind. Because counters
    are cumulative, the classification telescopes: skipping a stale snapshot in between yields the
    same lifetime totals. A counter missing from `current` is taken as unchanged.

    Without counters on both sides (Gameball profiles), only the sign is known: a rise is earned,
    a fall is redeemed.
    """
    change = after - before
    if current is None or previous is None or not classifiable(current):
        kept = None if current is None else _merge_counters(current, None)
        if change > 0:
            return [(Movement(EventType.POINTS_EARNED, change), False)], kept
        if change < 0:
            return [(Movement(EventType.POINTS_REDEEMED, change), False)], kept
        return [], kept

    merged = _merge_counters(current, previous)
    prev = _merge_counters(previous, None)
    moves: list[tuple[Movement, bool]] = []
    earned = _c(merged.earned) - _c(prev.earned)
    redeemed = _c(merged.redeemed) - _c(prev.redeemed)
    expired = _c(merged.expired) - _c(prev.expired)
    adjusted = _c(merged.adjusted) - _c(prev.adjusted)
    if earned > 0:
        moves.append((Movement(EventType.POINTS_EARNED, earned), False))
    if redeemed > 0:
        moves.append((Movement(EventType.POINTS_REDEEMED, -redeemed), False))
    if expired > 0:
        moves.append((Movement(EventType.POINTS_EXPIRED, -expired), False))
    if adjusted != 0:
        moves.append((Movement(EventType.POINTS_ADJUSTED, adjusted), False))
    residual = change - sum((m.balance_delta for m, _ in moves), ZERO)
    if residual != 0:
        moves.append((Movement(EventType.POINTS_ADJUSTED, residual), True))
    return moves, merged


def classifiable(counters: PointCounters | None) -> bool:
    """Whether a snapshot's counters say what kind a balance change was (Wix's do; Gameball
    reports only `total`, activated + pending: nothing to classify by)."""
    return counters is not None and any(
        getattr(counters, n) is not None for n in ("earned", "redeemed", "adjusted", "expired")
    )


def _c(v: Decimal | None) -> Decimal:
    return ZERO if v is None else v


def _merge_counters(current: PointCounters, previous: PointCounters | None) -> PointCounters:
    """`current` with missing counters taken from `previous` (zero for earned..expired)."""

    def pick(name: str) -> Decimal | None:
        v = getattr(current, name)
        if v is None and previous is not None:
            v = getattr(previous, name)
        if v is None and name != "total":
            v = ZERO
        return v

    return PointCounters(**{f: pick(f) for f in _COUNTER_FIELDS})


def book(state: MemberState, movement: Movement) -> MemberState:
    """`state` after one movement: balance, pending and the lifetime counter of its kind.

    Activations count as earned (the points became spendable now); redeemed and expired are kept
    as positive magnitudes; adjusted is signed.
    """
    b = movement.balance_delta
    kind = movement.kind
    return replace(
        state,
        computed_balance=state.computed_balance + b,
        pending_points=state.pending_points + movement.pending_delta,
        lifetime_earned=state.lifetime_earned
        + (b if kind in (EventType.POINTS_EARNED, EventType.POINTS_ACTIVATED) else ZERO),
        lifetime_redeemed=state.lifetime_redeemed
        - (b if kind is EventType.POINTS_REDEEMED else ZERO),
        lifetime_expired=state.lifetime_expired - (b if kind is EventType.POINTS_EXPIRED else ZERO),
        lifetime_adjusted=state.lifetime_adjusted
        + (b if kind is EventType.POINTS_ADJUSTED else ZERO),
    )


def _entry(
    before: MemberState,
    after: MemberState,
    event: LoyaltyEvent,
    movement: Movement,
    origin: EntryOrigin,
    entry_id: str,
    now: datetime,
) -> LedgerEntry:
    # For pending-only kinds the entry's delta is the pending change; the balance does not move.
    delta = movement.pending_delta if movement.kind in PENDING_KINDS else movement.balance_delta
    return LedgerEntry(
        entry_id=entry_id,
        member_key=before.member_key,
        provider=before.provider,
        tenant=before.tenant,
        customer_id=before.customer_id,
        event_id=event.event_id,
        origin=origin,
        kind=movement.kind,
        points_delta=delta,
        balance_before=before.computed_balance,
        balance_after=after.computed_balance,
        occurred_at=event.occurred_at,
        recorded_at=now,
        movement_id=event.movement_id,
        reported_balance=event.balance,
        account_id=before.account_id,
    )


# ---------------------------------------------------------------------------------------------
# the rules, one per function


def apply_reported_delta(
    state: MemberState, event: LoyaltyEvent, now: datetime, memory: int
) -> tuple[MemberState, list[LedgerEntry]]:
    """Book the event's `points_delta` (or size it from the balance chain), once per phase.

    Providers send several webhooks about one movement (Open Loyalty `account.points_transfer` and
    `account.available_points_amount_changed` share a `pointsTransferId`; Voucherify reports one
    transaction by project and distribution webhooks): the movement id makes the second a no-op
    for the balance. The movement id is remembered only once a delta is actually booked, so an
    event that merely mentions a movement cannot suppress the one that carries it.

    Pending points commute: POINTS_PENDING adds, an activation or cancelation removes its own
    magnitude (each phase once per movement id). A balance movement that is not an activation
    (Open Loyalty activates a pending transfer with an amount change carrying the same
    `pointsTransferId`), and a cancelation without an amount, release what the pending phase
    with their movement id opened; if they come first, that pending phase opens nothing when it
    arrives. So pending points end the same in every order. Events that move or state the
    balance also enter the balance chain.
    """
    movement_id = event.movement_id
    keys = memory * MOVEMENT_KEYS_PER_EVENT  # the movement memory's capacity (see `remember`)
    if event.points_delta is None:
        if event.type is EventType.POINTS_CANCELED and movement_id is not None:
            return _cancel_whole(state, event, movement_id, now, keys)
        if is_gap(event):
            if movement_id is not None:
                ids = state.recent_movement_ids
                if movement_id not in ids:  # so a pending phase arriving later opens nothing
                    state = replace(state, recent_movement_ids=remember(ids, movement_id, keys))
                state = _close_pending(state, movement_id, memory)
            return apply_chain(state, event, None, now)
        return state, []
    movement = classify_delta(event.type, event.points_delta)
    if movement is None:
        if event.balance is not None and event.type not in INFORMATIONAL_TYPES:
            return apply_chain(state, event, ZERO, now)  # a zero change: a balance statement
        return state, []
    ids = state.recent_movement_ids
    kind = movement.kind
    entries: list[LedgerEntry] = []

    if kind is EventType.POINTS_PENDING:
        if movement_id is not None:
            key = movement_key(kind, movement_id)
            if key in ids:
                return state, []
            state = replace(state, recent_movement_ids=remember(ids, key, keys))
            if closed_key(movement_id) in ids:
                return state, []  # a cancel without an amount ended it first
            released = release_key(movement_id) in ids or (
                movement_key(EventType.POINTS_CANCELED, movement_id) in ids
            )
            if not released and movement_id in ids:
                return state, []  # its balance movement came first and released nothing
            if not released:
                opened = (movement_id, movement.pending_delta)
                state = replace(
                    state, open_pending=_bounded(state.open_pending + (opened,), memory)
                )
        return _book_reported(state, event, movement, now)

    if kind is EventType.POINTS_CANCELED:
        if movement_id is not None:
            key = movement_key(kind, movement_id)
            if key in ids:
                return state, []
            state = replace(state, recent_movement_ids=remember(ids, key, keys))
            state = _take_open(state, movement_id, -movement.pending_delta)[0]
        return _book_reported(state, event, movement, now)

    # a balance movement (earned, redeemed, expired, adjusted, activated)
    balance_phase = Movement(kind, movement.balance_delta)
    booked = movement_id is None or movement_id not in ids
    if booked:
        if movement_id is not None:
            state = replace(state, recent_movement_ids=remember(ids, movement_id, keys))
        after = book(state, balance_phase)
        entry_id = f"{event.event_id}:{kind.value}"
        entries.append(
            _entry(state, after, event, balance_phase, EntryOrigin.REPORTED, entry_id, now)
        )
        state = after
    if kind is EventType.POINTS_ACTIVATED:
        # An activation releases its own magnitude from pending, once per movement, even when a
        # twin (Voucherify's accrual transaction with the same vtx id) booked the balance first.
        magnitude = movement.balance_delta.copy_abs()
        if movement_id is None:
            state = replace(state, pending_points=state.pending_points - magnitude)
        elif release_key(movement_id) not in state.recent_movement_ids:
            ids = remember(state.recent_movement_ids, release_key(movement_id), keys)
            state = _take_open(replace(state, recent_movement_ids=ids), movement_id, magnitude)[0]
            state = replace(state, pending_points=state.pending_points - magnitude)
    elif movement_id is not None:
        # Open Loyalty activates a pending transfer with an amount change that carries the
        # transfer's id: the balance movement ends the pending phase opened with that id.
        state = _close_pending(state, movement_id, memory)
    if booked or event.balance is not None:
        chain_state, chain_entries = apply_chain(
            state, event, balance_phase.balance_delta if booked else ZERO, now
        )
        return chain_state, entries + chain_entries
    return state, entries


def closed_key(movement_id: str) -> str:
    """Marks a movement whose pending phase ended by an amount we did not know (see below)."""
    return f"{movement_id}#closed"


def _take_open(
    state: MemberState, movement_id: str, amount: Decimal | None
) -> tuple[MemberState, Decimal]:
    """Reduce `movement_id`'s open pending by `amount` (None: all of it); returns the amount
    taken from the open phase (zero when none is open)."""
    for i, (m, open_amount) in enumerate(state.open_pending):
        if m == movement_id:
            taken = open_amount if amount is None else min(amount, open_amount)
            left = open_amount - taken
            rest = state.open_pending[:i] + state.open_pending[i + 1 :]
            if left > 0:
                rest = rest[:i] + ((m, left),) + rest[i:]
            return replace(state, open_pending=rest), taken
    return state, ZERO


def _close_pending(state: MemberState, movement_id: str, memory: int) -> MemberState:
    """End `movement_id`'s pending phase without a known amount: release what it opened."""
    state, taken = _take_open(state, movement_id, None)
    if taken:
        state = replace(state, pending_points=state.pending_points - taken)
    return state


def _cancel_whole(
    state: MemberState, event: LoyaltyEvent, movement_id: str, now: datetime, keys: int
) -> tuple[MemberState, list[LedgerEntry]]:
    """A cancelation that names its movement but no amount (Open Loyalty `points_transfer` in
    state `canceled`/`expired`): release whatever that movement still has pending, once; a
    pending phase arriving later opens nothing. `keys`: the movement memory's capacity."""
    key = movement_key(EventType.POINTS_CANCELED, movement_id)
    ids = state.recent_movement_ids
    if key in ids:
        return state, []
    ids = remember(remember(ids, key, keys), closed_key(movement_id), keys)
    state, taken = _take_open(replace(state, recent_movement_ids=ids), movement_id, None)
    if not taken:
        return state, []
    movement = Movement(EventType.POINTS_CANCELED, ZERO, -taken)
    return _book_reported(state, event, movement, now)


def _book_reported(
    state: MemberState, event: LoyaltyEvent, movement: Movement, now: datetime
) -> tuple[MemberState, list[LedgerEntry]]:
    """`state` after booking `movement` of `event`, and its REPORTED entry `<event id>:<kind>`."""
    after = book(state, movement)
    entry_id = f"{event.event_id}:{movement.kind.value}"
    return after, [_entry(state, after, event, movement, EntryOrigin.REPORTED, entry_id, now)]


def _bounded(items: tuple[Any, ...], memory: int) -> tuple[Any, ...]:
    return items[-memory:] if len(items) > memory else items


# ---------------------------------------------------------------------------------------------
# the balance chain


def is_gap(event: LoyaltyEvent) -> bool:
    """A movement whose size the provider did not say, only the balance after it.

    Open Loyalty OSS sends expiries, cancels and unlocks as `amount_change: 0` (the event's
    default) with the new `amount`; an amount change of unknown direction is the same. The
    decoder marks them as a movement kind with `points_delta` null and `balance` set.
    """
    return event.type in GAP_KINDS and event.points_delta is None and event.balance is not None


def _balance_before(chain: list[Link], i: int, base: Decimal) -> Decimal:
    """The balance just before chain[i]: the nearest reported balance before it plus the
    deltas of the links between (those that reported no balance)."""
    acc = ZERO
    for j in range(i - 1, -1, -1):
        link = chain[j]
        if link.balance is not None:
            return link.balance + acc
        acc += link.delta if link.delta is not None else link.booked
    return base + acc


def apply_chain(
    state: MemberState, event: LoyaltyEvent, delta: Decimal | None, now: datetime
) -> tuple[MemberState, list[LedgerEntry]]:
    """Put `event` into the member's balance chain; size it if it is a gap, and re-size the gap
    after it.

    The chain holds the last `CHAIN_LENGTH` events that moved or reported the balance, in
    provider order (`OrderKey.rank`). A gap (delta None) is booked as its reported balance minus
    the balance before it in that order. An event that arrives late, between a gap and the link
    the gap was sized against, changes what the gap means: the gap is corrected by a further
    entry of its kind (id `<gap event id>:correction:<late event id>`), so the sum of the entries
    is the same whatever the arrival order. An event older than everything the chain still holds
    is booked as reported (a gap from there is booked as nothing); the drift then shows it.
    """
    if delta is not None and not state.chain and event.provider not in CHAIN_PROVIDERS:
        return state, []  # nothing will be sized against this provider's movements
    key = order_key(event)
    kind = EventType.POINTS_ADJUSTED if delta is None else event.type
    rank = key.rank()
    if state.chain_floor is not None and rank <= state.chain_floor.rank():
        return state, []
    base = state.chain_base
    if not state.chain and state.chain_floor is None:
        # the first link: what was booked before it (a record from before the chain existed,
        # or a provider outside CHAIN_PROVIDERS) is its balance before; `delta` is booked already
        base = state.computed_balance - (delta if delta is not None else ZERO)
        state = replace(state, chain_base=base)
    chain = [parse_link(text) for text in state.chain]
    i = len(chain)
    while i > 0 and chain[i - 1].key.rank() > rank:  # usually in order: found at the end
        i -= 1
    if i > 0 and chain[i - 1].key.rank() == rank:
        return state, []  # already in the chain (a redelivery the memory forgot)
    if delta is None and event.type is EventType.BALANCE_SNAPSHOT:
        # The same dated statement again (a Gameball v4 profile re-sent: no id, so another
        # event id, but the same `created_at` and balance) says nothing new. Without a
        # provider time (v3) the time is when the bridge first received the delivery, so a
        # retry collapses too, and a real return to an earlier balance never does.
        for near in chain[max(0, i - 1) : i + 1]:  # the two links it would sit between
            if (
                near.kind is EventType.BALANCE_SNAPSHOT
                and near.balance == event.balance
                and near.key.revision == key.revision
                and near.key.occurred_ms == key.occurred_ms
            ):
                return state, []
    entries: list[LedgerEntry] = []
    booked = ZERO
    if delta is None:
        assert event.balance is not None
        booked = event.balance - _balance_before(chain, i, state.chain_base)
        kind = event.type
    texts = list(state.chain)  # re-encode only the links that change
    link = Link(key, delta, event.balance, booked, kind)
    chain.insert(i, link)
    texts.insert(i, link_text(link))
    if delta is None:
        for movement in gap_movements(kind, ZERO, booked):
            after = book(state, movement)
            entry_id = f"{event.event_id}:{movement.kind.value}"
            entries.append(
                _entry(state, after, event, movement, EntryOrigin.DERIVED, entry_id, now)
            )
            state = after
    # the first later link that reports a balance: if it is a gap, it was sized without us
    for j in range(i + 1, len(chain)):
        later = chain[j]
        if later.balance is None:
            continue
        if later.delta is None:
            want = later.balance - _balance_before(chain, j, state.chain_base)
            moves = gap_movements(later.kind, later.booked, want)
            if moves:
                chain[j] = later._replace(booked=want)
                texts[j] = link_text(chain[j])
            for movement in moves:
                after = book(state, movement)
                entry_id = f"{later.key.event_id}:correction:{event.event_id}"
                if len(moves) > 1:
                    entry_id = f"{entry_id}:{movement.kind.value}"
                entries.append(
                    _entry(state, after, event, movement, EntryOrigin.DERIVED, entry_id, now)
                )
                state = after
        break
    base, floor = state.chain_base, state.chain_floor
    while len(chain) > CHAIN_LENGTH:
        oldest = chain.pop(0)
        texts.pop(0)
        if oldest.balance is not None:
            base = oldest.balance
        else:
            base += oldest.delta if oldest.delta is not None else oldest.booked
        floor = oldest.key
    return replace(state, chain=tuple(texts), chain_base=base, chain_floor=floor), entries


def is_derivable_snapshot(event: LoyaltyEvent) -> bool:
    """A balance-only snapshot (Gameball profile, Wix account): its movement must be derived."""
    return (
        event.type is EventType.BALANCE_SNAPSHOT
        and event.points_delta is None
        and event.balance is not None
    )


def apply_reported_balance(
    state: MemberState, event: LoyaltyEvent, now: datetime
) -> tuple[MemberState, list[LedgerEntry]]:
    """Take the provider's balance after the event, if this is the newest we have seen.

    Snapshots are absolute, so an older one arriving late must not move the balance backwards:
    only an event newer than `balance_mark` (see `is_newer`) replaces the reported balance. For a
    balance-only snapshot the movement since the previous applied snapshot (zero before the first)
    is derived and booked as DERIVED entries, and its pending points replace ours. A stale
    snapshot with counters derives nothing: the newer one's counters already account for
    everything up to its time. One without counters (Gameball) is a gap in the balance chain
    (`apply_chain`), newer or not, so the movements on both sides of it are booked.
    """
    if event.balance is None:
        return state, []
    key = order_key(event)
    newer = is_newer(key, state.balance_mark)
    entries: list[LedgerEntry] = []
    if is_derivable_snapshot(event) and not classifiable(event.counters):
        # only the balance is known: sized against the chain, so a snapshot that arrives late
        # (raw records of one member sit on several partitions) still books the movements on
        # both sides of it
        state, entries = apply_chain(state, event, None, now)
        if not newer:
            return state, entries
        state = replace(state, last_counters=derive_movements(ZERO, ZERO, None, event.counters)[1])
    elif not newer:
        return state, []
    elif is_derivable_snapshot(event):
        first = state.balance_mark is None
        before_balance = ZERO if first else (state.reported_balance or ZERO)
        previous = PointCounters() if first else state.last_counters
        moves, counters = derive_movements(before_balance, event.balance, previous, event.counters)
        for movement, residual in moves:
            entry_id = f"{event.event_id}:{movement.kind.value}"
            if residual:
                entry_id = f"{entry_id}:{RESIDUAL_SUFFIX}"
            after = book(state, movement)
            entries.append(
                _entry(state, after, event, movement, EntryOrigin.DERIVED, entry_id, now)
            )
            state = after
        state = replace(state, last_counters=counters)
    if event.type is EventType.BALANCE_SNAPSHOT and event.pending_points is not None:
        state = replace(state, pending_points=event.pending_points)
    state = replace(state, reported_balance=event.balance, balance_mark=key)
    return state, entries


def apply_tier(state: MemberState, event: LoyaltyEvent) -> tuple[MemberState, MemberTier | None]:
    """Take the event's tier if it is the newest tier information; report a change.

    Any event carrying a tier states the member's tier at that time (Wix and Gameball put it in
    account/profile snapshots, Voucherify on transactions); a TIER_CHANGED event without a tier
    means the member left its tier, and so does `NO_TIER` on any event (a Wix account without a
    tier: the member fell to the base level). The mark advances on every newer tier statement,
    even an unchanged one, otherwise an older different tier arriving later could win.
    """
    if event.tier is None and event.type is not EventType.TIER_CHANGED:
        return state, None
    key = order_key(event)
    if not is_newer(key, state.tier_mark):
        return state, None
    previous = state.tier
    tier = None if event.tier == NO_TIER else event.tier
    state = replace(state, tier=tier, tier_mark=key)
    if tier == previous:
        return state, None
    return state, MemberTier(
        member_key=state.member_key,
        provider=state.provider,
        tenant=state.tenant,
        customer_id=state.customer_id,
        changed_at=event.occurred_at,
        event_id=event.event_id,
        tier=tier,
        previous=previous,
        account_id=state.account_id,
    )


def stamp(
    state: MemberState, event: LoyaltyEvent, now: datetime, offset: int | None, memory: int
) -> MemberState:
    """Freshness and dedupe bookkeeping every applied event gets, whatever it changed."""
    # a synthetic id never judges the horizon (`beyond_horizon`): its time is not worth keeping
    synthetic = event.attributes.get(SYNTHETIC_ID) == "true"
    when = -1 if synthetic else to_ms(event.occurred_at)
    ids, times, horizon = remember_event(state, event.event_id, when, memory)
    return replace(
        state,
        events_applied=state.events_applied + 1,
        last_event_id=event.event_id,
        updated_at=max(state.updated_at, utc(event.occurred_at)),
        as_of=now,
        source_offset=offset,
        recent_event_ids=ids,
        recent_event_ms=times,
        horizon_ms=horizon,
        # a smaller `memory` than before trims the movement memory too (a full slice is the
        # same tuple: nothing is copied when nothing is trimmed)
        recent_movement_ids=state.recent_movement_ids[-memory * MOVEMENT_KEYS_PER_EVENT :],
        open_pending=_bounded(state.open_pending, memory),
    )


def check_range(state: MemberState, entries: list[LedgerEntry], event: LoyaltyEvent) -> None:
    """Raise LedgerOverflow if any points value would not fit Avro decimal(18, 2).

    Each amount a decoder accepts fits, but sums need not: a balance that would reach 10^16
    points is refused for this one event (the worker dead-letters it with this message), and
    the member's state stays what it was before it.
    """
    values: list[tuple[str, Decimal | None]] = [
        ("computed_balance", state.computed_balance),
        ("pending_points", state.pending_points),
        ("lifetime_earned", state.lifetime_earned),
        ("lifetime_redeemed", state.lifetime_redeemed),
        ("lifetime_expired", state.lifetime_expired),
        ("lifetime_adjusted", state.lifetime_adjusted),
        ("drift", state.drift),
    ]
    for entry in entries:
        values.append(("ledger entry points_delta", entry.points_delta))
    for name, value in values:
        if value is not None and abs(value) >= POINTS_MAX:
            raise LedgerOverflow(
                f"event {event.event_id} would make {name} of member {state.member_key} "
                f"{value}, out of range for decimal(18, 2) (|points| < 10^16): the event is "
                "refused and the member keeps its state"
            )


@dataclass(frozen=True)
class Outcome:
    """What applying one event produced."""

    state: MemberState
    entries: list[LedgerEntry] = field(default_factory=list)
    tier_change: MemberTier | None = None
    balance_changed: bool = False  # a MemberBalance reader would see a different value
    duplicate: bool = False  # already applied: nothing happened
    # not remembered, but as old as an event the dedupe memory forgot: taken as a redelivery
    beyond_horizon: bool = False
    # beyond the horizon, and naming a movement whose key the movement memory forgot too: that
    # movement's id (only the horizon kept it from counting twice; lost, if it was new)
    forgotten_movement: str | None = None


def with_account(
    index: MemberState | None, event: LoyaltyEvent, now: datetime
) -> MemberState | None:
    """The member's default-account record, listing `event`'s account; None if nothing changes.

    The member query finds a member's accounts through this list (see `MemberState.accounts`).
    A member whose events all name other accounts gets a default record that only indexes
    them (`events_applied` 0: no balance of its own is shown or published).
    """
    if event.account_id == DEFAULT_ACCOUNT:
        return None
    if index is None:
        index = MemberState.new(event, now, account_id=DEFAULT_ACCOUNT)
    if event.account_id in index.accounts:
        return None
    return replace(index, accounts=(*index.accounts, event.account_id))


def apply(
    state: MemberState | None,
    event: LoyaltyEvent,
    *,
    now: datetime,
    offset: int | None = None,
    memory: int = DEFAULT_MEMORY,
) -> Outcome:
    """Apply one canonical event to a member's state (None for a member never seen).

    Never mutates `state`. `now` is the processing time (recorded on entries and `as_of`),
    `offset` the source record's offset, `memory` how many recent event ids to keep (and up to
    `MOVEMENT_KEYS_PER_EVENT` times as many movement keys).
    A member's first event always reports `balance_changed`, so the member appears in the
    balances table even when it has no points yet.
    """
    if memory < 1:
        raise ValueError(f"memory must be at least 1 recent id, got {memory}")
    now = utc(now)
    if state is None:
        current = MemberState.new(event, now)
        is_new = True
    else:
        if state.member_key != event.member_key or state.account_id != event.account_id:
            raise ValueError(
                f"event {event.event_id} is for {event.account_key!r}, not {state.key!r}: "
                "events must be applied to their own account's record"
            )
        if event.event_id in state.recent_event_ids:
            return Outcome(state=state, duplicate=True)
        if beyond_horizon(state, event):
            return Outcome(
                state=state,
                duplicate=True,
                beyond_horizon=True,
                forgotten_movement=forgotten_movement(state, event),
            )
        current = state
        is_new = state.events_applied == 0  # a default record that only indexed accounts

    after, entries = apply_reported_delta(current, event, now, memory)
    after, derived = apply_reported_balance(after, event, now)
    after, tier_change = apply_tier(after, event)
    after = stamp(after, event, now, offset, memory)
    check_range(after, entries + derived, event)
    return Outcome(
        state=after,
        entries=entries + derived,
        tier_change=tier_change,
        balance_changed=is_new or after.visible() != current.visible(),
    )
