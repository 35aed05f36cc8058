"""Member erasure: which events erase a member, and what later events for it do.

Pure rules; the ledger step (connector/streams/ledger.py) deletes the member's records, sends
the tombstones and keeps the `Erasure` marker in the members table.

An event erases the member it names (every account of it) when it is:

* `CUSTOMER_DELETED`: Voucherify `customer.deleted`, Open Loyalty `customer.deleted`, Wix
  `account_deleted` (mapping tables in connector/providers/*.py), or the operator's
  `loyalty-connector forget PROVIDER TENANT CUSTOMER_ID` (connector/forget.py);
* any Wix delivery with `triggeredByAnonymizeRequest: true`, "triggered as a result of a privacy
  regulation application (for example, GDPR)" (Wix entity-event field docs, docs/providers.md
  [W1][W2]); the Wix decoder carries it as the attribute `anonymize_request=true`.

After an erasure the member stays erased (decided; docs/erasure.md):

* every later event for the member key is dropped, counted in
  `worker_erased_member_events_total`, logged without the customer id. Late retries and
  reordered deliveries of events from before the deletion are the common case (providers retry
  for up to ~47 hours: Wix), and most provider bodies carry no time to tell them apart from new
  activity (Open Loyalty amount changes), so nothing but a registration brings the member back;
* a `CUSTOMER_REGISTERED` whose provider time is after the erasure's is a new registration of
  the same customer id (Gameball and Wix ids are the merchant's own and can be reused): the
  marker is removed and the member starts fresh, logged as a re-registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from connector.domain.ledger import MemberState
from connector.models import EventType, LoyaltyEvent, account_key, utc

ANONYMIZE_ATTRIBUTE = "anonymize_request"  # set by the Wix decoder (providers/wix.py)


class Reason(StrEnum):
    DELETED = "customer_deleted"  # the provider's deletion event
    ANONYMIZE = "anonymize_request"  # a delivery triggered by a privacy-regulation request
    FORGET = "forget"  # the operator's `loyalty-connector forget`


@dataclass(frozen=True, slots=True)
class Erasure:
    """The marker an erased member leaves: no personal data, only when and why."""

    erased_at: datetime  # processing time of the erasure
    occurred_at: datetime  # provider time of the erasing event
    reason: Reason
    event_id: str  # the erasing event (a provider event id or `forget:<uuid>`)


def erasure_reason(event: LoyaltyEvent) -> Reason | None:
    """Why `event` erases its member, or None when it does not."""
    if event.attributes.get(ANONYMIZE_ATTRIBUTE) == "true":
        return Reason.ANONYMIZE
    if event.type is EventType.CUSTOMER_DELETED:
        return Reason.FORGET if event.event_id.startswith(FORGET_PREFIX) else Reason.DELETED
    return None


FORGET_PREFIX = "forget:"


def revives(erasure: Erasure, event: LoyaltyEvent) -> bool:
    """True when `event`, for an erased member, is a new registration after the erasure (the
    member starts fresh); False: the event is dropped."""
    return event.type is EventType.CUSTOMER_REGISTERED and event.occurred_at > erasure.occurred_at


def erasure(
    event: LoyaltyEvent, default: MemberState | None, reason: Reason, now: datetime
) -> tuple[list[str], Erasure]:
    """What erasing `event`'s member removes and keeps: the keys of every record of the member
    (its default record, each account it lists, and the event's own account) and the marker.
    `default`: the member's default record (None: not in the table)."""
    mk = event.member_key
    keys = [mk] + ([account_key(mk, a) for a in default.accounts] if default is not None else [])
    if event.account_key not in keys:
        keys.append(event.account_key)
    marker = Erasure(
        erased_at=now, occurred_at=utc(event.occurred_at), reason=reason, event_id=event.event_id
    )
    return keys, marker


__all__ = [
    "ANONYMIZE_ATTRIBUTE",
    "FORGET_PREFIX",
    "Erasure",
    "Reason",
    "erasure",
    "erasure_reason",
    "revives",
]
