"""What the bridge remembers about deliveries it refused, so the provider's retry is recognised.

Gameball and Open Loyalty deliveries carry no event id, and a member who returns to an earlier
state sends a byte-identical body, so the worker cannot tell a retry from a real repeat by the
bytes. The bridge can: a provider retries exactly the deliveries it answered non-2xx. When such
a delivery comes back within the provider's retry window, its raw record gets

* `retry-of: <delivery id>` if the refused attempt reached Kafka after all (the ack came after
  the deadline): the key of the first copy's raw record, so the worker gives the retry the same
  event ids as the first copy, and it counts once;
* `first-received-at: <ms>`: the receive time of the first attempt, so a late retry of an old
  profile is ordered where it belongs and cannot move a newer balance back.

A remembered refusal is used once (one retry answers one refusal) and forgotten after the
window. It lives in one bridge process: a retry that reaches another replica, or a bridge that
restarted in between, is not recognised (docs/delivery-semantics.md says what that costs).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Seconds within which a provider re-sends a delivery it got a non-2xx for; providers absent
# here send ids that make retries harmless (Voucherify `event.id`, Wix event `id`).
RETRY_WINDOWS_S: dict[str, float] = {
    # retries at +5, +20, +60 min, then discards (gameball-docs api-reference/webhooks/overview.mdx)
    "gameball": 90 * 60,
    # one retry on 4xx/5xx; its delay is not documented (help.openloyalty.io, rotate-hmac-secret-key
    # page; docs/delivery-semantics.md): an hour is assumed
    "open_loyalty": 60 * 60,
}
MAX_ENTRIES = 10_000


@dataclass
class Refusal:
    first_received_ms: int
    written_as: str | None  # raw key of the refused copy Kafka acknowledged after all
    expires: float


@dataclass(frozen=True)
class RetryTag:
    first_received_ms: int
    retry_of: str | None


class RetryMemory:
    def __init__(
        self,
        windows: dict[str, float] | None = None,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.windows = RETRY_WINDOWS_S if windows is None else windows
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str, bytes], Refusal] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def watches(self, provider: str) -> bool:
        return provider in self.windows

    def refused(
        self,
        provider: str,
        tenant: str | None,
        body: bytes,
        received_ms: int,
        delivery_id: str,
        send: asyncio.Future[Any] | None = None,
        retry: RetryTag | None = None,
    ) -> None:
        """Remember that this delivery (raw key `delivery_id`) was answered non-2xx; `send` is
        its Kafka write, which may still succeed after the answer. `retry` is the tag `match`
        gave this delivery if it is itself a recognised retry: its next retry is then still one
        of the first attempt (that attempt's receive time, and its key if it was written)."""
        window = self.windows.get(provider)
        if window is None:
            return
        key = _key(provider, tenant, body)
        first = retry.first_received_ms if retry is not None else received_ms
        expires = self.clock() + window
        entry = self._entries.pop(key, None)
        if entry is None:
            entry = Refusal(first, None, expires)
        else:
            # refused again before any retry came: the one entry keeps the first time, and stays
            # the object an earlier attempt's pending write will mark when it is acknowledged
            entry.first_received_ms = min(entry.first_received_ms, first)
            entry.expires = expires
        if retry is not None and retry.retry_of is not None and entry.written_as is None:
            entry.written_as = retry.retry_of  # the worker knows this delivery by that key
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        if send is not None:

            def written(fut: asyncio.Future[Any]) -> None:
                if not fut.cancelled() and fut.exception() is None and entry.written_as is None:
                    entry.written_as = delivery_id

            if send.done():
                written(send)
            else:
                send.add_done_callback(written)

    def match(self, provider: str, tenant: str | None, body: bytes) -> RetryTag | None:
        """The tag for a delivery that repeats a remembered refusal (consumed), else None."""
        if not self._entries or provider not in self.windows:
            return None
        self._expire()
        entry = self._entries.pop(_key(provider, tenant, body), None)
        if entry is None or entry.expires <= self.clock():
            return None
        return RetryTag(entry.first_received_ms, entry.written_as)

    def _expire(self) -> None:
        now = self.clock()
        while self._entries:
            oldest_key, oldest = next(iter(self._entries.items()))
            if oldest.expires > now:
                # entries are kept in refusal order and windows per provider are fixed, so a
                # later entry of another provider may expire sooner; it goes at its own turn
                break
            del self._entries[oldest_key]


def _key(provider: str, tenant: str | None, body: bytes) -> tuple[str, str, bytes]:
    return provider, tenant or "", hashlib.sha256(body).digest()
