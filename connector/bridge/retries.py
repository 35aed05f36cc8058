"""What the bridge remembers about deliveries it refused, so the provider's retry is recognised.

Gameball and Open Loyalty deliveries carry no event id, and a member who returns to an earlier
state sends a byte-identical body, so the worker cannot tell a retry from a real repeat by the
bytes. The bridge can: a provider retries exactly the deliveries it answered non-2xx. When such
a delivery comes back within the provider's retry window, its raw record gets

* `retry-of: <key>`: the raw key of the FIRST refused attempt. The worker names the delivery
  by it, so every copy of one delivery that reached Kafka (a refused attempt whose write landed
  after the 503, however many times, and the attempt finally answered 200) is one event. It is
  set whether or not that first write ever lands: the key is only a name, and a name shared by
  all copies of one delivery is what counts it once;
* `first-received-at: <ms>`: the receive time of the first attempt, so a late retry of an old
  profile is ordered where it belongs and cannot move a newer balance back.

Each refusal is remembered on its own (two refused deliveries of the same bytes are two) and
used by one retry; a retry that is refused again passes its tag on to the next. A refusal is
forgotten after the provider's window. It lives in one bridge process: a retry that reaches
another replica, or a bridge that restarted in between, is not recognised
(docs/delivery-semantics.md says what that costs).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass


def retry_windows() -> dict[str, float]:
    """Seconds within which each provider re-sends a delivery it got a non-2xx for (its
    `retry_window_s`, sourced in its module); providers without one send ids that make retries
    harmless (Voucherify `event.id`, Wix event `id`)."""
    from connector.providers import PROVIDERS

    return {k: p.retry_window_s for k, p in PROVIDERS.items() if p.retry_window_s}


MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class RetryTag:
    """What a recognised retry's raw record says about the delivery's first attempt."""

    first_received_ms: int
    retry_of: str  # the raw key of the first refused attempt


@dataclass(frozen=True)
class _Refusal:
    tag: RetryTag
    expires: float


class RetryMemory:
    def __init__(
        self,
        windows: dict[str, float] | None = None,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.windows = retry_windows() if windows is None else windows
        self.max_entries = max_entries
        self.clock = clock
        # body key -> refusals of that body, oldest first; keys in order of their last refusal
        self._entries: OrderedDict[tuple[str, str, bytes], deque[_Refusal]] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def watches(self, provider: str) -> bool:
        return provider in self.windows

    def refused(
        self,
        provider: str,
        tenant: str | None,
        body: bytes,
        received_ms: int,
        delivery_id: str,
        retry: RetryTag | None = None,
    ) -> None:
        """Remember that this delivery (raw key `delivery_id`) was answered non-2xx.

        `retry` is the tag `match` gave it if it is itself a recognised retry: its own retry is
        then still one of the first attempt (that attempt's time and key).
        """
        window = self.windows.get(provider)
        if window is None:
            return
        tag = retry if retry is not None else RetryTag(received_ms, delivery_id)
        key = _key(provider, tenant, body)
        refusals = self._entries.pop(key, None) or deque()
        refusals.append(_Refusal(tag, self.clock() + window))
        self._entries[key] = refusals
        self._count += 1
        while self._count > self.max_entries:
            oldest_key, oldest = next(iter(self._entries.items()))
            oldest.popleft()
            self._count -= 1
            if not oldest:
                del self._entries[oldest_key]

    def match(self, provider: str, tenant: str | None, body: bytes) -> RetryTag | None:
        """The tag of the oldest remembered refusal of these bytes (used up), else None."""
        if not self._entries or provider not in self.windows:
            return None
        key = _key(provider, tenant, body)
        refusals = self._entries.get(key)
        now = self.clock()
        while refusals:
            refusal = refusals.popleft()
            self._count -= 1
            if refusal.expires > now:
                if not refusals:
                    del self._entries[key]
                return refusal.tag
        if refusals is not None:
            del self._entries[key]
        self._expire(now)
        return None

    def _expire(self, now: float) -> None:
        """Drop expired refusals from the front (a later one of a longer window may keep an
        earlier expired one of a shorter window a while: `match` checks each one it uses)."""
        while self._entries:
            oldest_key, oldest = next(iter(self._entries.items()))
            while oldest and oldest[0].expires <= now:
                oldest.popleft()
                self._count -= 1
            if oldest:
                break
            del self._entries[oldest_key]


def _key(provider: str, tenant: str | None, body: bytes) -> tuple[str, str, bytes]:
    return provider, tenant or "", hashlib.sha256(body).digest()
