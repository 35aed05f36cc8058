"""The ledger agent's step: one events-topic record through the ledger rules into outputs.

Decode, read the member's records, `connector.domain.ledger.apply`, encode the outputs; a
failure for one event dead-letters that event alone. The agent (agents.py) sends what this
returns and writes the table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from faust.types import EventT, Message, TopicT

from connector.avro import AvroCodec
from connector.domain.erasure import Erasure, Reason, erasure, erasure_reason, revives
from connector.domain.ledger import MemberState, Outcome, apply, with_account
from connector.models import POINTS_MAX, DeadLetter, LoyaltyEvent, to_dict, utc
from connector.raw import ConsumedRecord, header_map
from connector.streams.members import Cached, Members
from connector.streams.messages import consumed_record
from connector.streams.metrics import WorkerMetrics
from connector.streams.normalize import dead_letter
from connector.streams.state_format import dump_erasure, dump_state, erasure_key

log = logging.getLogger("connector.worker")

# (record key, table value): the value only with serialize=True, where None deletes the record
Written = list[tuple[str, bytes | None]]
OutputRecords = list[tuple[TopicT, bytes, bytes | None]]  # (topic, key, value; None: tombstone)


class LedgerStep:
    """`step(event, states, serialize=...)`: apply one events-topic record to cached states."""

    def __init__(
        self,
        codec: AvroCodec,
        metrics: WorkerMetrics,
        members: Members,
        topics: dict[str, TopicT],
        *,
        memory: int,
    ) -> None:
        self.codec, self.metrics, self.members, self.memory = codec, metrics, members, memory
        self.ledger_topic, self.tiers_topic = topics["ledger"], topics["tiers"]
        self.balances_topic = topics["balances"]

    def __call__(
        self, event: EventT, states: dict[str, Cached], *, serialize: bool
    ) -> tuple[Written, OutputRecords, DeadLetter | None]:
        """Apply one events-topic record to the cached state.

        Returns (written, outputs, dead letter): the table keys the event changed, each with
        its stored value when `serialize` (the account's record, and the member's default
        record when it first lists a new account), and the encoded outputs; or ([], [], the
        dead letter). Everything that can fail for one event (reading the stored states, the
        rules, every Avro encode and, with `serialize`, the table values) runs before `states`
        takes the new states, so a failure dead-letters that event alone and leaves the member
        as it was before it.
        `serialize=False` (batches) leaves the table value to `Members.write_batch`, once per
        member per batch: `dump_state` has no value-dependent failure once the encodes passed
        (every field is a str, int or None, or a list/dict of them), and dumping each event's
        state would add up to ~60 % to the step for a member with a full dedupe memory (1000
        ids: ~140 µs of dump next to ~230 µs of apply + encodes, measured on one core).
        """
        msg = event.message
        try:
            loyalty: LoyaltyEvent = self.codec.decode(msg.value or b"", LoyaltyEvent)
        except Exception as exc:  # SchemaError, or a record no LoyaltyEvent can be built from
            return [], [], ledger_dead_letter(msg, exc, datetime.now(UTC))
        return self.apply_event(event, loyalty, states, serialize=serialize)

    def apply_event(
        self, event: EventT, loyalty: LoyaltyEvent, states: dict[str, Cached], *, serialize: bool
    ) -> tuple[Written, OutputRecords, DeadLetter | None]:
        """`step(...)` for an event already decoded; `event` is the consumed record it came
        from (its partition's store holds the member; its offset orders the dedupe memory).
        One hop (benchmarks/one_hop_worker.py) hands in the raw record and the event that
        `normalize` made of it."""
        codec, metrics = self.codec, self.metrics
        msg = event.message
        key = loyalty.account_key
        mk = loyalty.member_key
        now = utc(datetime.now(UTC))
        outcome: Outcome | None = None
        revived: Written = []
        try:
            ek = erasure_key(mk).decode()
            if ek not in states:
                states[ek] = self.members.read_erasure(mk, event)
            erased = states[ek]
            reason = erasure_reason(loyalty)
            if isinstance(erased, Erasure):
                if reason is not None or not revives(erased, loyalty):
                    self.metrics.erased_events.inc()
                    log.info(
                        "event %s (%s) is for an erased member; dropped",
                        loyalty.event_id,
                        loyalty.type.value,
                        extra={"event_id": loyalty.event_id, "provider": loyalty.provider.key},
                    )
                    return [], [], None
                revived = [(ek, None)]  # a new registration: the member starts fresh
            elif reason is not None:
                return self.erase(event, loyalty, states, reason, now, serialize=serialize)
            for k in (key, mk) if key != mk else (key,):
                if k not in states:
                    states[k] = self.members.read(k, event)
            state, default = _state(states[key]), _state(states[mk])
            outcome = apply(state, loyalty, now=now, offset=msg.offset, memory=self.memory)
            index = with_account(default, loyalty, now) if key != mk else None
            kb, akb = mk.encode(), key.encode()
            outputs: OutputRecords = [
                (self.ledger_topic, kb, codec.encode(entry)) for entry in outcome.entries
            ]
            if outcome.tier_change is not None:
                outputs.append((self.tiers_topic, akb, codec.encode(outcome.tier_change)))
            if outcome.balance_changed or outcome.duplicate:
                # A duplicate re-emits the current snapshot only (harmless on a compacted topic).
                balance = codec.encode(outcome.state.to_balance())
                outputs.append((self.balances_topic, akb, balance))
            written: Written = [*revived, (key, dump_state(outcome.state) if serialize else None)]
            if index is not None:
                written.append((mk, dump_state(index) if serialize else None))
        except Exception as exc:  # a rule bug or an unencodable value must not stop the stream
            text = str(exc)
            why = _out_of_range(outcome) + text
            if key not in text:  # fastavro's error names neither the member nor the event
                why = f"member {key}, event {loyalty.event_id} ({loyalty.type.value}): {why}"
            return [], [], ledger_dead_letter(msg, exc, now, why, loyalty)
        states[key] = outcome.state
        if index is not None:
            states[mk] = index
        if revived:
            states[erasure_key(mk).decode()] = None
            self.metrics.reregistered.inc()
            log.warning(
                "event %s registers an erased member again: it starts with a fresh record",
                loyalty.event_id,
                extra={"event_id": loyalty.event_id, "provider": loyalty.provider.key},
            )
        if outcome.duplicate:
            metrics.duplicates.inc()
        if outcome.beyond_horizon:
            self.beyond_horizon(loyalty, key, outcome.forgotten_movement)
        for entry in outcome.entries:
            metrics.entries.labels(entry.origin.value).inc()
        metrics.lag.observe(max(0.0, time.time() - loyalty.received_at.timestamp()))
        return written, outputs, None

    def beyond_horizon(self, loyalty: LoyaltyEvent, key: str, movement: str | None) -> None:
        """Count and log an event taken as a redelivery by the dedupe horizon (rare: off the
        hot path); `movement`: the movement whose key the memory forgot too, if any."""
        self.metrics.beyond_horizon.inc()
        if movement is None:
            log.warning(
                "event %s of %s is older than what the dedupe memory forgot "
                "(CONNECTOR_DEDUPE_MEMORY); taken as a redelivery and not applied",
                loyalty.event_id,
                key,
                extra={"event_id": loyalty.event_id, "member_key": key},
            )
            return
        self.metrics.beyond_movement_horizon.inc()
        log.warning(
            "event %s of %s names movement %s, which the dedupe memory forgot, and is older "
            "than what it forgot (CONNECTOR_DEDUPE_MEMORY); taken as a twin or redelivery of "
            "it: the movement is not booked again",
            loyalty.event_id,
            key,
            movement,
            extra={"event_id": loyalty.event_id, "member_key": key, "movement_id": movement},
        )

    def erase(
        self,
        event: EventT,
        loyalty: LoyaltyEvent,
        states: dict[str, Cached],
        reason: Reason,
        now: datetime,
        *,
        serialize: bool,
    ) -> tuple[Written, OutputRecords, DeadLetter | None]:
        """Erase the member `loyalty` names: delete every account record, tombstone its
        balances and tiers records, and keep an `Erasure` marker (domain/erasure.py)."""
        mk = loyalty.member_key
        if mk not in states:
            states[mk] = self.members.read(mk, event)
        keys, marker = erasure(loyalty, _state(states[mk]), reason, now)
        ek = erasure_key(mk).decode()
        written: Written = [(k, None) for k in keys]
        written.append((ek, dump_erasure(marker) if serialize else None))
        outputs: OutputRecords = []
        for k in keys:
            outputs.append((self.balances_topic, k.encode(), None))
            outputs.append((self.tiers_topic, k.encode(), None))
        for k in keys:
            states[k] = None
        states[ek] = marker
        self.metrics.erased_members.labels(reason.value).inc()
        log.warning(
            "member erased (%s, event %s): %d record(s) deleted, balances and tiers tombstoned",
            reason.value,
            loyalty.event_id,
            len(keys),
            extra={"event_id": loyalty.event_id, "provider": loyalty.provider.key},
        )
        return written, outputs, None


def _state(cached: Cached) -> MemberState | None:
    return cached if isinstance(cached, MemberState) else None


def ledger_dead_letter(
    msg: Message,
    exc: BaseException,
    now: datetime,
    why: str | None = None,
    loyalty: LoyaltyEvent | None = None,
) -> DeadLetter:
    """The DLQ record of an events-topic record the ledger could not apply."""
    return record_dead_letter(consumed_record(msg), exc, now, why, loyalty)


def record_dead_letter(
    record: ConsumedRecord,
    exc: BaseException,
    now: datetime,
    why: str | None = None,
    loyalty: LoyaltyEvent | None = None,
) -> DeadLetter:
    """`ledger_dead_letter` of a record read without Faust (the rebuild)."""
    dl = dead_letter(record, "ledger", exc, header_map(record.headers), now)
    if why is not None:
        dl = replace(dl, error_message=why[:2000])
    if loyalty is not None:  # events-topic records carry no provider/tenant headers
        dl = replace(dl, provider=loyalty.provider.key, tenant=loyalty.tenant)
    return dl


def _out_of_range(outcome: Outcome | None) -> str:
    """`Record.field=value, ...: ` for the outcome's points outside Avro decimal(18, 2), or ''.

    Only on the dead-letter path: fastavro's error names neither the record nor the field.
    """
    if outcome is None:
        return ""
    try:
        records: list[Any] = [*outcome.entries, outcome.tier_change, outcome.state.to_balance()]
        bad = [
            f"{type(record).__name__}.{name}={value}"
            for record in records
            if record is not None
            for name, value in to_dict(record).items()
            if isinstance(value, Decimal) and value.is_finite() and abs(value) >= POINTS_MAX
        ]
    except Exception:  # only a better message: never let it fail the dead letter itself
        return ""
    if not bad:
        return ""
    return f"{', '.join(bad)} out of range for decimal(18, 2) (|points| < {POINTS_MAX:.0f}): "
