"""Read-your-writes for the member query: how far the ledger has applied each events partition.

The ledger agent reports every events-topic offset once its effect is in the members table
(at least once: after the batch's table write; exactly once: after the event's table write).
`GET /members/...?min_offset=N` waits, a bounded time, until the member's events partition has
applied offset N (the `source_offset` a balances or ledger record carries).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict


class Freshness:
    """The last applied events-topic offset per partition, and waiters for an offset."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}
        self._waiters: defaultdict[int, list[tuple[int, asyncio.Future[None]]]] = defaultdict(list)

    def applied(self, partition: int, offset: int) -> None:
        """The ledger applied `offset` of events partition `partition`."""
        if offset <= self.offsets.get(partition, -1):
            return
        self.offsets[partition] = offset
        waiting = self._waiters.get(partition)
        if not waiting:
            return
        still = []
        for wanted, future in waiting:
            if wanted <= offset:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((wanted, future))
        self._waiters[partition] = still

    def applied_offset(self, partition: int) -> int | None:
        return self.offsets.get(partition)

    async def wait(self, partition: int, offset: int, timeout: float) -> bool:
        """True once `partition` has applied `offset` (at once if it has), False after
        `timeout` seconds without."""
        if self.offsets.get(partition, -1) >= offset:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (offset, future)
        self._waiters[partition].append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if entry in self._waiters[partition]:
                self._waiters[partition].remove(entry)


__all__ = ["Freshness"]
